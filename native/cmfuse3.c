/*
 * cmfuse3: cloudmount's FUSE binding on libfuse 3's low-level (inode) API.
 *
 * Threading model (native-notes/lowlevel.md has the long version):
 *  - N reader threads block in read(/dev/fuse) and let libfuse decode each
 *    request (in poll mode the JS thread reads them itself: pump()). Our op
 *    callbacks never wait for JS: they copy what the request carries into a
 *    cm_item, append it to one queue and return, so a reader is back in
 *    read() within microseconds.
 *  - The JS thread is woken once per empty->non-empty transition of the queue
 *    (a napi_threadsafe_function used only as a doorbell) and takes the whole
 *    queue in one go: one wake-up serves every request queued meanwhile.
 *  - JS answers whenever it likes by calling reply*(handle, id, ...), which
 *    calls fuse_reply_* on the JS thread (libfuse replies are thread-safe).
 *    Pending requests live in a slot table owned by the JS thread; ids carry a
 *    generation so a second answer to one request is refused, never a crash.
 *  - Some requests never reach JS: xattr names outside user.* (security.*,
 *    system.posix_acl_*, trusted.*), names that are not UTF-8, and a folder's
 *    GETATTR right after JS changed that folder (the attribute slots below).
 */
#define FUSE_USE_VERSION 35
#define _GNU_SOURCE
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CM_MAX_THREADS 16
#define CM_SLOT_SPAN 4194304.0 /* 2^22 slots; id = generation * span + index */
#define CM_STEAL_MIN 65536     /* writes this big keep libfuse's receive buffer instead of a copy */
#define CM_NAME_MAX 4096
#define CM_AC_SLOTS 256         /* folder attribute slots (power of two), indexed by ino */

/* Order is the JS contract: lowlevel.ts reads the names from binding.ops. */
#define CM_OPS(X) \
	X(NONE, "none") X(INIT, "init") X(ENDED, "ended") X(FORGET, "forget") \
	X(LOOKUP, "lookup") X(GETATTR, "getattr") X(SETATTR, "setattr") \
	X(READLINK, "readlink") X(MKNOD, "mknod") X(MKDIR, "mkdir") \
	X(UNLINK, "unlink") X(RMDIR, "rmdir") X(SYMLINK, "symlink") \
	X(RENAME, "rename") X(LINK, "link") X(OPEN, "open") X(READ, "read") \
	X(WRITE, "write") X(FLUSH, "flush") X(RELEASE, "release") \
	X(FSYNC, "fsync") X(OPENDIR, "opendir") X(READDIR, "readdir") \
	X(READDIRPLUS, "readdirplus") X(RELEASEDIR, "releasedir") \
	X(FSYNCDIR, "fsyncdir") X(STATFS, "statfs") X(SETXATTR, "setxattr") \
	X(GETXATTR, "getxattr") X(LISTXATTR, "listxattr") \
	X(REMOVEXATTR, "removexattr") X(ACCESS, "access") X(CREATE, "create") \
	X(INTERRUPT, "interrupt")

#define CM_ENUM(e, s) CM_##e,
enum cm_op { CM_OPS(CM_ENUM) CM_NOPS };
#define CM_NAME(e, s) s,
static const char *cm_op_names[] = { CM_OPS(CM_NAME) };

/* Float64Array layout of an entry/attr reply (lowlevel.ts writes the same). */
enum { E_INO, E_GEN, E_ATTR_TO, E_ENTRY_TO, E_MODE, E_NLINK, E_UID, E_GID,
       E_RDEV, E_SIZE, E_BLOCKS, E_BLKSIZE, E_ATIME, E_ATIMENS, E_MTIME,
       E_MTIMENS, E_CTIME, E_CTIMENS, E_OFF, E_STRIDE };

typedef struct cm_item {
	struct cm_item *next;
	fuse_req_t req;
	int op;
	uint32_t uid, gid, pid, umask;
	uint64_t ino, ino2, fh, off, size;
	int32_t flags;
	int32_t valid;
	int has_fh;
	int writepage;
	int interrupted;   /* the kernel interrupted it before JS saw it */
	uint64_t seq;      /* order of creation: an interrupt only matches older requests */
	uint64_t t_recv;   /* CLOCK_MONOTONIC ns when a reader decoded it (latency counters) */
	uintptr_t intr_key; /* CM_INTERRUPT: the fuse_req it is about (compared, never dereferenced) */
	uint32_t mode;
	uint64_t rdev;
	struct stat st;
	const char *name, *name2;
	char *data;
	size_t datalen;
	void *data_base; /* what free() takes for data; NULL once JS owns it */
	size_t nforget;
	struct fuse_forget_data *forgets;
	struct fuse_conn_info conn;
	/* inodes this request may change the attributes of (attribute slots, below) */
	uint64_t hold[2];
	int nhold;
	struct cm_session *held; /* counted in its slots' busy (under qlock) until answered */
	char tail[] __attribute__((aligned(8)));
} cm_item;

/*
 * Folder attributes answered natively. Every CREATE, MKDIR, UNLINK, RMDIR and
 * RENAME makes the kernel drop its parent's attributes, and with
 * default_permissions the next path walk through that folder asks for them
 * again: one GETATTR round trip to JS per file of tar x, cp -r or rm -rf. JS
 * hands the folder's new attributes over with its answer to the change
 * (cacheAttr, before the reply), and the GETATTR that follows is answered here.
 *
 * Coherence: a slot is emptied when any request that may change an inode
 * mapping to it arrives (reader thread, under qlock), and counts such requests
 * until they are answered (busy). The kernel sends one change of a folder at
 * a time (each holds the folder's inode lock), but slots are shared by inodes
 * and JS runs requests concurrently: attributes computed while another change
 * of the slot was running could miss it. So JS takes a ticket (attrTicket)
 * before it computes them, good only if no other change of the slot is in
 * flight then, and the attributes are taken only if no change arrived since
 * (arrivals unchanged). Changes answered before the ticket were applied before
 * their answer, so the attributes include them. A
 * slot answers for at most the
 * attribute timeout JS gave, the time the kernel itself would have kept those
 * attributes had it not dropped them; server changes empty it with the kernel's
 * invalidation (notify), a FORGET empties it before its number can be reused.
 */
typedef struct {
	uint64_t ino;
	uint64_t until;    /* CLOCK_MONOTONIC ns; 0 = empty */
	uint64_t arrivals; /* changes received, ever: a ticket is good while this stays */
	uint32_t busy;
	struct stat st;
} cm_acslot;

typedef struct cm_session {
	struct fuse_session *se;
	napi_threadsafe_function tsfn;
	napi_env env;
	char *mountpoint;

	pthread_mutex_t qlock;
	cm_item *qhead, *qtail;
	int closing;       /* under qlock: no more JS deliveries */
	int running;       /* under qlock: live reader threads */
	int nthreads;
	pthread_t threads[CM_MAX_THREADS];

	/* init() parameters, set before the readers start */
	unsigned want_on, want_off, max_write, max_readahead, max_background, congestion;

	/* JS thread only */
	cm_item **slots;
	uint32_t *gens;
	uint32_t *freestack;
	uint32_t nslots, free_top, outstanding;
	int destroyed;
	int hook_added;
	int inflight_notify;
	int emergency_done;
	struct cm_session *live_next; /* the live list: what exit() still has to unmount */
	char *fdbuf; /* replyFd's read buffer, reused: a fresh 1 MiB per reply costs an mmap and 256 page faults */
	size_t fdbuf_size;

	/* replyFdAsync: the data thread reads cache-file bytes and answers READs off the JS thread */
	pthread_mutex_t dlock;
	pthread_cond_t dcond;
	struct cm_fdjob *dhead, *dtail; /* under dlock */
	int dstop;                      /* under dlock */
	int dstarted;                   /* JS thread only */
	pthread_t dthread;
	atomic_ulong data_replies;

	atomic_ulong count[CM_NOPS];
	atomic_ulong native_answered;
	atomic_ulong batches;
	atomic_ulong delivered;
	atomic_ulong max_batch;
	atomic_ulong bytes_stolen;
	atomic_ulong seq;
	atomic_ulong interrupts;
	cm_acslot ac[CM_AC_SLOTS]; /* under qlock */
	atomic_ulong ac_hits;
	/* Poll mode (reader "poll"): the JS thread reads /dev/fuse itself (uv_poll on the
	 * non-blocking fd) and no reader thread exists; see pump() and spin(). JS thread only. */
	int poll_mode;
	uv_poll_t *upoll;
	uv_prepare_t *uprep;
	struct fuse_buf pbuf;
	uint64_t last_req_ns;
	uint64_t spin_ns;
	unsigned long spins, spin_hits;
	/* JS thread only: per op, requests answered, ns from decoding to JS's call and to the answer */
	double lat_n[CM_NOPS], lat_handoff[CM_NOPS], lat_total[CM_NOPS];
} cm_session;

static __thread char *tl_mem;
static __thread int tl_stolen;
static __thread fuse_req_t tl_registering;
static __thread int tl_intr;

/* ---- libfuse log capture: turns stderr noise into the Error JS sees ---- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_log[512];
static int log_line_done = 1;
static int log_to_stderr = 1;

static void cm_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
	char line[512];
	va_list ap2;
	va_copy(ap2, ap);
	vsnprintf(line, sizeof line, fmt, ap2);
	va_end(ap2);
	pthread_mutex_lock(&log_lock);
	if (level <= FUSE_LOG_ERR) {
		/* libfuse writes one message in several calls: gather them up to the newline */
		size_t have = strlen(last_log), n;
		if (log_line_done) {
			have = 0;
			last_log[0] = 0;
		}
		snprintf(last_log + have, sizeof last_log - have, "%s", line);
		n = strlen(last_log);
		log_line_done = n && last_log[n - 1] == '\n';
		while (n && last_log[n - 1] == '\n')
			last_log[--n] = 0;
	}
	pthread_mutex_unlock(&log_lock);
	if (log_to_stderr || level <= FUSE_LOG_ERR)
		fprintf(stderr, "%s", line);
}

/* ---- items ---- */

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		unsigned c = *p++;
		int n;
		if (c < 0x80) continue;
		else if ((c & 0xe0) == 0xc0 && c >= 0xc2) n = 1;
		else if ((c & 0xf0) == 0xe0) n = 2;
		else if ((c & 0xf8) == 0xf0 && c <= 0xf4) n = 3;
		else return 0;
		for (int i = 0; i < n; i++)
			if ((p[i] & 0xc0) != 0x80) return 0;
		if (n == 2 && ((c == 0xe0 && p[0] < 0xa0) || (c == 0xed && p[0] > 0x9f))) return 0;
		if (n == 3 && ((c == 0xf0 && p[0] < 0x90) || (c == 0xf4 && p[0] > 0x8f))) return 0;
		p += n;
	}
	return 1;
}

static void item_free(cm_item *it)
{
	if (it->data_base) free(it->data_base);
	free(it);
}

static cm_item *item_new(cm_session *s, int op, fuse_req_t req, uint64_t ino,
			 const char *name, const char *name2, size_t extra)
{
	size_t l1 = name ? strlen(name) + 1 : 0, l2 = name2 ? strlen(name2) + 1 : 0;
	cm_item *it;

	atomic_fetch_add_explicit(&s->count[op], 1, memory_order_relaxed);
	/* JS sees names as strings: a name that is not UTF-8 could alias another
	 * one after conversion, so it is refused here (it cannot exist in a store
	 * whose names are UTF-8, hence ENOENT for lookups). */
	if ((name && !valid_utf8(name)) || (name2 && !valid_utf8(name2))) {
		atomic_fetch_add_explicit(&s->native_answered, 1, memory_order_relaxed);
		if (req) fuse_reply_err(req, op == CM_LOOKUP ? ENOENT : EILSEQ);
		return NULL;
	}
	extra = (extra + 7) & ~(size_t)7;
	it = malloc(sizeof *it + extra + l1 + l2);
	if (!it) {
		if (req) fuse_reply_err(req, ENOMEM);
		return NULL;
	}
	memset(it, 0, sizeof *it);
	it->t_recv = now_ns();
	it->seq = atomic_fetch_add_explicit(&s->seq, 1, memory_order_relaxed);
	it->op = op;
	it->req = req;
	it->ino = ino;
	if (name) { memcpy(it->tail + extra, name, l1); it->name = it->tail + extra; }
	if (name2) { memcpy(it->tail + extra + l1, name2, l2); it->name2 = it->tail + extra + l1; }
	if (req) {
		const struct fuse_ctx *c = fuse_req_ctx(req);
		it->uid = c->uid;
		it->gid = c->gid;
		it->pid = c->pid;
		it->umask = c->umask;
	}
	return it;
}

/* FUSE_INTERRUPT for a request JS holds (a reader thread, or our own registration below when the
 * request was interrupted already). libfuse keeps the request alive while this runs, so its address
 * cannot be reused by a newer request before the interrupt item is queued: JS matches the interrupt
 * to a pending request with that address and a smaller seq. */
static void enqueue(cm_session *s, cm_item *it);

static void ll_interrupt(fuse_req_t req, void *data)
{
	cm_session *s = data;
	cm_item *it;
	if (req == tl_registering) {
		tl_intr = 1; /* already interrupted: flag the item itself (we hold qlock here) */
		return;
	}
	it = item_new(s, CM_INTERRUPT, NULL, 0, NULL, NULL, 0);
	if (!it) return;
	it->intr_key = (uintptr_t)req;
	atomic_fetch_add_explicit(&s->interrupts, 1, memory_order_relaxed);
	enqueue(s, it);
}

static void enqueue(cm_session *s, cm_item *it)
{
	pthread_mutex_lock(&s->qlock);
	if (s->closing && it->op != CM_ENDED) {
		pthread_mutex_unlock(&s->qlock);
		if (it->req) fuse_reply_err(it->req, EIO);
		item_free(it);
		return;
	}
	for (int i = 0; i < it->nhold; i++) {
		cm_acslot *a = &s->ac[it->hold[i] & (CM_AC_SLOTS - 1)];
		a->until = 0;
		a->busy++;
		a->arrivals++;
	}
	if (it->nhold) it->held = s;
	if (it->req) {
		/* Registered under qlock: an interrupt from another reader then queues after this
		 * request, never before it. */
		tl_registering = it->req;
		tl_intr = 0;
		fuse_req_interrupt_func(it->req, ll_interrupt, s);
		tl_registering = NULL;
		it->interrupted = tl_intr;
	}
	it->next = NULL;
	if (s->qtail) s->qtail->next = it;
	else {
		s->qhead = it;
		/* Ring only on empty -> non-empty: JS takes the whole queue per ring. */
		if (!s->closing)
			napi_call_threadsafe_function(s->tsfn, NULL, napi_tsfn_nonblocking);
	}
	s->qtail = it;
	pthread_mutex_unlock(&s->qlock);
}

#define S(req) ((cm_session *)fuse_req_userdata(req))

static void hold(cm_item *it, uint64_t ino)
{
	if (it->nhold < 2) it->hold[it->nhold++] = ino;
}

/* The request was answered: it no longer keeps its slots from answering. */
static void ac_release(cm_item *it)
{
	cm_session *s = it->held;
	if (!s) return;
	pthread_mutex_lock(&s->qlock);
	for (int i = 0; i < it->nhold; i++) s->ac[it->hold[i] & (CM_AC_SLOTS - 1)].busy--;
	pthread_mutex_unlock(&s->qlock);
	it->held = NULL;
}

static void ac_drop(cm_session *s, uint64_t ino)
{
	cm_acslot *a = &s->ac[ino & (CM_AC_SLOTS - 1)];
	pthread_mutex_lock(&s->qlock);
	if (a->ino == ino) a->until = 0;
	pthread_mutex_unlock(&s->qlock);
}

/* A reader's GETATTR: 1 with *st and *timeout when the slot holds ino's attributes. */
static int ac_answer(cm_session *s, uint64_t ino, struct stat *st, double *timeout)
{
	cm_acslot *a = &s->ac[ino & (CM_AC_SLOTS - 1)];
	uint64_t now = now_ns();
	int ok = 0;
	pthread_mutex_lock(&s->qlock);
	if (a->until > now && a->ino == ino && a->busy == 0) {
		*st = a->st;
		*timeout = (double)(a->until - now) / 1e9;
		ok = 1;
	}
	pthread_mutex_unlock(&s->qlock);
	return ok;
}

static void fill_fi(cm_item *it, struct fuse_file_info *fi)
{
	if (!fi) return;
	it->has_fh = 1;
	it->fh = fi->fh;
	it->writepage = fi->writepage;
}

/* ---- low-level op callbacks (reader threads) ---- */

static void ll_init(void *ud, struct fuse_conn_info *conn)
{
	cm_session *s = ud;
	cm_item *it;

	conn->want |= s->want_on & conn->capable;
	conn->want &= ~s->want_off;
	if (s->max_write && s->max_write < conn->max_write)
		conn->max_write = s->max_write;
	if (s->max_readahead && s->max_readahead < conn->max_readahead)
		conn->max_readahead = s->max_readahead;
	if (s->max_background) conn->max_background = s->max_background;
	if (s->congestion) conn->congestion_threshold = s->congestion;
	it = item_new(s, CM_INIT, NULL, 0, NULL, NULL, 0);
	if (!it) return;
	it->conn = *conn;
	enqueue(s, it);
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	cm_item *it = item_new(S(req), CM_LOOKUP, req, parent, name, NULL, 0);
	if (it) enqueue(S(req), it);
}

static void push_forgets(cm_session *s, size_t n, const struct fuse_forget_data *f)
{
	cm_item *it = item_new(s, CM_FORGET, NULL, 0, NULL, NULL, n * sizeof *f);
	if (!it) return; /* out of memory: the inode stays counted in JS, a leak not a bug */
	it->forgets = (struct fuse_forget_data *)it->tail;
	memcpy(it->forgets, f, n * sizeof *f);
	for (size_t i = 0; i < n; i++) ac_drop(s, f[i].ino);
	it->nforget = n;
	enqueue(s, it);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	cm_session *s = S(req);
	struct fuse_forget_data f = { .ino = ino, .nlookup = nlookup };
	fuse_reply_none(req);
	push_forgets(s, 1, &f);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	cm_session *s = S(req);
	/* the kernel's array lives in the receive buffer: copy before replying */
	push_forgets(s, count, forgets);
	fuse_reply_none(req);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	cm_session *s = S(req);
	struct stat st;
	double timeout;
	cm_item *it;
	if (ac_answer(s, ino, &st, &timeout)) {
		atomic_fetch_add_explicit(&s->count[CM_GETATTR], 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->native_answered, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->ac_hits, 1, memory_order_relaxed);
		fuse_reply_attr(req, &st, timeout);
		return;
	}
	it = item_new(s, CM_GETATTR, req, ino, NULL, NULL, 0);
	if (!it) return;
	fill_fi(it, fi);
	enqueue(S(req), it);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	cm_item *it = item_new(S(req), CM_SETATTR, req, ino, NULL, NULL, 0);
	if (!it) return;
	hold(it, ino);
	it->st = *attr;
	it->valid = to_set;
	fill_fi(it, fi);
	enqueue(S(req), it);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino)
{
	cm_item *it = item_new(S(req), CM_READLINK, req, ino, NULL, NULL, 0);
	if (it) enqueue(S(req), it);
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	cm_item *it = item_new(S(req), CM_MKNOD, req, parent, name, NULL, 0);
	if (!it) return;
	hold(it, parent);
	it->mode = mode;
	it->rdev = rdev;
	enqueue(S(req), it);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	cm_item *it = item_new(S(req), CM_MKDIR, req, parent, name, NULL, 0);
	if (!it) return;
	hold(it, parent);
	it->mode = mode;
	enqueue(S(req), it);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	cm_item *it = item_new(S(req), CM_UNLINK, req, parent, name, NULL, 0);
	if (!it) return;
	hold(it, parent);
	enqueue(S(req), it);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	cm_item *it = item_new(S(req), CM_RMDIR, req, parent, name, NULL, 0);
	if (!it) return;
	hold(it, parent);
	enqueue(S(req), it);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	cm_item *it = item_new(S(req), CM_SYMLINK, req, parent, name, link, 0);
	if (!it) return;
	hold(it, parent);
	enqueue(S(req), it);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	cm_item *it = item_new(S(req), CM_RENAME, req, parent, name, newname, 0);
	if (!it) return;
	hold(it, parent);
	hold(it, newparent);
	it->ino2 = newparent;
	it->flags = (int32_t)flags;
	enqueue(S(req), it);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	cm_item *it = item_new(S(req), CM_LINK, req, ino, NULL, newname, 0);
	if (!it) return;
	hold(it, newparent);
	it->ino2 = newparent;
	enqueue(S(req), it);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	cm_item *it = item_new(S(req), CM_OPEN, req, ino, NULL, NULL, 0);
	if (!it) return;
	it->flags = fi->flags;
	enqueue(S(req), it);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	cm_item *it = item_new(S(req), CM_READ, req, ino, NULL, NULL, 0);
	if (!it) return;
	fill_fi(it, fi);
	it->size = size;
	it->off = (uint64_t)off;
	it->flags = fi->flags;
	enqueue(S(req), it);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	cm_session *s = S(req);
	cm_item *it = item_new(s, CM_WRITE, req, ino, NULL, NULL, 0);
	if (!it) return;
	fill_fi(it, fi);
	it->off = (uint64_t)off;
	it->size = size;
	it->flags = fi->flags;
	if (size >= CM_STEAL_MIN && tl_mem && buf >= tl_mem) {
		/* Zero copy: the request keeps this receive buffer (the data already
		 * sits in it) and the reader loop allocates a fresh one. */
		it->data = (char *)buf;
		it->data_base = tl_mem;
		tl_stolen = 1;
		atomic_fetch_add_explicit(&s->bytes_stolen, size, memory_order_relaxed);
	} else if (size) {
		it->data = malloc(size);
		if (!it->data) {
			fuse_reply_err(req, ENOMEM);
			item_free(it);
			return;
		}
		memcpy(it->data, buf, size);
		it->data_base = it->data;
	}
	it->datalen = size;
	enqueue(s, it);
}

static void simple_fh(fuse_req_t req, int op, fuse_ino_t ino, struct fuse_file_info *fi, int flags)
{
	cm_item *it = item_new(S(req), op, req, ino, NULL, NULL, 0);
	if (!it) return;
	fill_fi(it, fi);
	it->flags = flags;
	enqueue(S(req), it);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	simple_fh(req, CM_FLUSH, ino, fi, 0);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	simple_fh(req, CM_RELEASE, ino, fi, fi->flags);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	simple_fh(req, CM_FSYNC, ino, fi, datasync);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	cm_item *it = item_new(S(req), CM_OPENDIR, req, ino, NULL, NULL, 0);
	if (!it) return;
	it->flags = fi->flags;
	enqueue(S(req), it);
}

static void dir_read(fuse_req_t req, int op, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	cm_item *it = item_new(S(req), op, req, ino, NULL, NULL, 0);
	if (!it) return;
	fill_fi(it, fi);
	it->size = size;
	it->off = (uint64_t)off;
	enqueue(S(req), it);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	dir_read(req, CM_READDIR, ino, size, off, fi);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	dir_read(req, CM_READDIRPLUS, ino, size, off, fi);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	simple_fh(req, CM_RELEASEDIR, ino, fi, 0);
}

static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	simple_fh(req, CM_FSYNCDIR, ino, fi, datasync);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
	cm_item *it = item_new(S(req), CM_STATFS, req, ino, NULL, NULL, 0);
	if (it) enqueue(S(req), it);
}

/* Only user.* can exist in our stores; everything else is a probe by the
 * kernel or a tool (security.selinux on ls, security.capability before each
 * write, ACLs on cp -a) and never deserves a trip to JS. getxattr of those
 * names answers ENOTSUP (a namespace we do not hold, as the kernel answers for
 * a prefix without a handler), not ENODATA: coreutils' ls then takes the
 * device for one without SELinux labels and ACLs and stops asking, where
 * ENODATA cost two round trips per file of every ls -l (2,000 for 1,000 files,
 * 85-100 ms). */
static int xattr_for_js(const char *name)
{
	return strncmp(name, "user.", 5) == 0;
}

static int xattr_native(fuse_req_t req, int op, const char *name, int err)
{
	cm_session *s = S(req);
	if (xattr_for_js(name)) return 0;
	atomic_fetch_add_explicit(&s->count[op], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->native_answered, 1, memory_order_relaxed);
	fuse_reply_err(req, err);
	return 1;
}

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	cm_item *it;
	if (xattr_native(req, CM_SETXATTR, name, ENOTSUP)) return;
	it = item_new(S(req), CM_SETXATTR, req, ino, name, NULL, 0);
	if (!it) return;
	hold(it, ino);
	it->flags = flags;
	if (size) {
		it->data = malloc(size);
		if (!it->data) {
			fuse_reply_err(req, ENOMEM);
			item_free(it);
			return;
		}
		memcpy(it->data, value, size);
		it->data_base = it->data;
	}
	it->datalen = size;
	enqueue(S(req), it);
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	cm_item *it;
	if (xattr_native(req, CM_GETXATTR, name, ENOTSUP)) return;
	it = item_new(S(req), CM_GETXATTR, req, ino, name, NULL, 0);
	if (!it) return;
	it->size = size;
	enqueue(S(req), it);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	cm_item *it = item_new(S(req), CM_LISTXATTR, req, ino, NULL, NULL, 0);
	if (!it) return;
	it->size = size;
	enqueue(S(req), it);
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	cm_item *it;
	if (xattr_native(req, CM_REMOVEXATTR, name, ENODATA)) return;
	it = item_new(S(req), CM_REMOVEXATTR, req, ino, name, NULL, 0);
	if (!it) return;
	hold(it, ino);
	enqueue(S(req), it);
}

static void ll_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	cm_item *it = item_new(S(req), CM_ACCESS, req, ino, NULL, NULL, 0);
	if (!it) return;
	it->flags = mask;
	enqueue(S(req), it);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	cm_item *it = item_new(S(req), CM_CREATE, req, parent, name, NULL, 0);
	if (!it) return;
	hold(it, parent);
	it->mode = mode;
	it->flags = fi->flags;
	enqueue(S(req), it);
}

/* ---- reader threads ---- */

static void *reader(void *arg)
{
	cm_session *s = arg;
	struct fuse_buf fbuf;
	sigset_t all;

	/* Signals belong to Node's main thread; a reader must not eat SIGINT. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	memset(&fbuf, 0, sizeof fbuf);
	while (!fuse_session_exited(s->se)) {
		int r = fuse_session_receive_buf(s->se, &fbuf);
		if (r == -EINTR || r == -EAGAIN) continue;
		if (r <= 0) break;
		tl_mem = fbuf.mem;
		tl_stolen = 0;
		fuse_session_process_buf(s->se, &fbuf);
		if (tl_stolen) fbuf.mem = NULL;
		tl_mem = NULL;
	}
	free(fbuf.mem);
	pthread_mutex_lock(&s->qlock);
	s->running--;
	if (s->running == 0) {
		pthread_mutex_unlock(&s->qlock);
		/* the last reader tells JS the kernel side is gone */
		cm_item *it = item_new(s, CM_ENDED, NULL, 0, NULL, NULL, 0);
		if (it) enqueue(s, it);
		return NULL;
	}
	pthread_mutex_unlock(&s->qlock);
	return NULL;
}

/*
 * Poll mode. Each synchronous request a program makes (open, write, close of a
 * small file...) crosses threads twice with reader threads: kernel -> reader,
 * reader -> JS. On a VM an idle vCPU halts, and waking it costs tens of
 * microseconds per crossing (native-notes/lowlevel.md, "The poll reader and
 * spinning"). Here the JS thread reads requests itself when libuv reports the
 * fd readable, and after recent requests (spin(), both modes) it polls the
 * event loop's own epoll fd for a short while before letting libuv sleep, so
 * the program's next request finds it awake. The doorbell still rings (from
 * this thread: no cross-thread wake), so JS gets requests through the same
 * call_js path as with readers.
 */
static void poll_end(cm_session *s);

static void pump(uv_poll_t *h, int status, int events)
{
	cm_session *s = h->data;
	(void)events;
	for (int n = 0; n < 64; n++) {
		int r;
		if (status < 0 || fuse_session_exited(s->se)) {
			poll_end(s);
			return;
		}
		r = fuse_session_receive_buf(s->se, &s->pbuf);
		if (r == -EAGAIN) break;
		if (r == -EINTR) continue;
		if (r <= 0) {
			poll_end(s);
			return;
		}
		tl_mem = s->pbuf.mem;
		tl_stolen = 0;
		fuse_session_process_buf(s->se, &s->pbuf);
		if (tl_stolen) s->pbuf.mem = NULL;
		tl_mem = NULL;
	}
	/* here, not only in call_js: requests answered natively (xattr probes, folder GETATTRs) reach
	 * no call_js, and the program's next call after them is as near */
	s->last_req_ns = now_ns();
}

static void spin(uv_prepare_t *h)
{
	cm_session *s = h->data;
	uv_loop_t *loop = h->loop;
	struct pollfd p;
	uint64_t t0, until;
	if (!s->spin_ns || s->closing) return;
	/* JS still owes answers: it waits for the network or the disk, whose answer wakes it anyway;
	 * spinning then only takes a CPU from the server and the program */
	if (s->outstanding) return;
	t0 = now_ns();
	/* only right after requests: an idle mount never spins */
	if (t0 - s->last_req_ns > 2000000) return;
	if (uv_backend_timeout(loop) == 0) return; /* something is due now anyway */
	s->spins++;
	p.fd = uv_backend_fd(loop); /* readable when any fd of the loop is: ours, the doorbell, sockets, the pool */
	p.events = POLLIN;
	until = t0 + s->spin_ns;
	do {
		p.revents = 0;
		if (poll(&p, 1, 0) > 0) {
			s->spin_hits++;
			return;
		}
		/* polite: whatever else is runnable here (the program itself, a pool thread) goes first */
		sched_yield();
	} while (now_ns() < until);
}

static void free_handle(uv_handle_t *h)
{
	free(h);
}

static void spin_stop(cm_session *s)
{
	if (!s->uprep) return;
	uv_prepare_stop(s->uprep);
	uv_close((uv_handle_t *)s->uprep, free_handle);
	s->uprep = NULL;
}

static void poll_end(cm_session *s)
{
	cm_item *it;
	if (s->upoll) {
		uv_poll_stop(s->upoll);
		uv_close((uv_handle_t *)s->upoll, free_handle);
		s->upoll = NULL;
	}
	spin_stop(s);
	free(s->pbuf.mem);
	s->pbuf.mem = NULL;
	pthread_mutex_lock(&s->qlock);
	s->running = 0;
	pthread_mutex_unlock(&s->qlock);
	it = item_new(s, CM_ENDED, NULL, 0, NULL, NULL, 0);
	if (it) enqueue(s, it);
}

static int poll_start(napi_env env, cm_session *s)
{
	uv_loop_t *loop = NULL;
	int fd = fuse_session_fd(s->se);
	int fl = fcntl(fd, F_GETFL);
	if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) return -1;
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
	s->upoll = calloc(1, sizeof *s->upoll);
	if (!s->upoll) goto fail;
	if (uv_poll_init(loop, s->upoll, fd) != 0) goto fail;
	s->upoll->data = s;
	uv_poll_start(s->upoll, UV_READABLE, pump);
	s->running = 1;
	return 0;
fail:
	free(s->upoll);
	s->upoll = NULL;
	return -1;
}

/* Spinning is an optimisation: without a loop or memory the session runs without it. */
static void spin_start(napi_env env, cm_session *s)
{
	uv_loop_t *loop = NULL;
	if (!s->spin_ns) return;
	if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) return;
	s->uprep = calloc(1, sizeof *s->uprep);
	if (!s->uprep) return;
	uv_prepare_init(loop, s->uprep);
	s->uprep->data = s;
	/* never keeps the loop alive */
	uv_unref((uv_handle_t *)s->uprep);
	uv_prepare_start(s->uprep, spin);
}

/* ---- N-API helpers ---- */

#define NAPI(call) do { if ((call) != napi_ok) goto napi_fail; } while (0)

static void throw_err(napi_env env, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	napi_throw_error(env, NULL, msg);
}

static void set_num(napi_env env, napi_value o, const char *k, double v)
{
	napi_value x;
	napi_create_double(env, v, &x);
	napi_set_named_property(env, o, k, x);
}

static void set_str(napi_env env, napi_value o, const char *k, const char *v)
{
	napi_value x;
	napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &x);
	napi_set_named_property(env, o, k, x);
}

static void free_external(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)data;
	free(hint);
}

static napi_value undef(napi_env env)
{
	napi_value u;
	napi_get_undefined(env, &u);
	return u;
}

static napi_value boolean(napi_env env, int b)
{
	napi_value v;
	napi_get_boolean(env, b, &v);
	return v;
}

static int64_t slot_put(cm_session *s, cm_item *it)
{
	uint32_t idx;
	if (s->free_top == 0) {
		uint32_t n = s->nslots ? s->nslots * 2 : 256, i;
		cm_item **sl = realloc(s->slots, n * sizeof *sl);
		uint32_t *g, *f;
		if (!sl) return -1;
		s->slots = sl;
		g = realloc(s->gens, n * sizeof *g);
		if (!g) return -1;
		s->gens = g;
		f = realloc(s->freestack, n * sizeof *f);
		if (!f) return -1;
		s->freestack = f;
		for (i = n; i > s->nslots; i--) {
			s->slots[i - 1] = NULL;
			s->gens[i - 1] = 0;
			s->freestack[s->free_top++] = i - 1;
		}
		s->nslots = n;
	}
	idx = s->freestack[--s->free_top];
	s->slots[idx] = it;
	s->gens[idx] = (s->gens[idx] + 1) & 0x3fffffff;
	if (s->gens[idx] == 0) s->gens[idx] = 1;
	s->outstanding++;
	return (int64_t)s->gens[idx] * (int64_t)CM_SLOT_SPAN + idx;
}

/* The unanswered request id, still in its slot, or NULL (stale id, destroyed session). */
static cm_item *slot_peek(cm_session *s, double id)
{
	int64_t v = (int64_t)id, idx;
	if (s->destroyed || id < CM_SLOT_SPAN || (double)v != id) return NULL;
	idx = v % (int64_t)CM_SLOT_SPAN;
	if (idx >= s->nslots || !s->slots[idx] || s->gens[idx] != v / (int64_t)CM_SLOT_SPAN) return NULL;
	return s->slots[idx];
}

static cm_item *slot_take(cm_session *s, double id)
{
	int64_t idx;
	cm_item *it = slot_peek(s, id);
	if (!it) return NULL;
	idx = (int64_t)id % (int64_t)CM_SLOT_SPAN;
	s->slots[idx] = NULL;
	s->freestack[s->free_top++] = (uint32_t)idx;
	s->outstanding--;
	return it;
}

static napi_value item_to_js(napi_env env, cm_session *s, cm_item *it)
{
	napi_value o, v;
	int parent_op;

	napi_create_object(env, &o);
	set_num(env, o, "op", it->op);
	switch (it->op) {
	case CM_INIT:
		set_num(env, o, "protoMajor", it->conn.proto_major);
		set_num(env, o, "protoMinor", it->conn.proto_minor);
		set_num(env, o, "maxWrite", it->conn.max_write);
		set_num(env, o, "maxRead", it->conn.max_read);
		set_num(env, o, "maxReadahead", it->conn.max_readahead);
		set_num(env, o, "capable", it->conn.capable);
		set_num(env, o, "want", it->conn.want);
		set_num(env, o, "maxBackground", it->conn.max_background);
		set_num(env, o, "congestionThreshold", it->conn.congestion_threshold);
		set_num(env, o, "timeGran", it->conn.time_gran);
		return o;
	case CM_ENDED:
		return o;
	case CM_INTERRUPT: {
		/* the pending request it is about, if JS has not answered it yet */
		for (uint32_t i = 0; i < s->nslots; i++) {
			cm_item *p = s->slots[i];
			if (p && (uintptr_t)p->req == it->intr_key && p->seq < it->seq) {
				set_num(env, o, "target", (double)s->gens[i] * CM_SLOT_SPAN + i);
				return o;
			}
		}
		return NULL;
	}
	case CM_FORGET: {
		void *ab;
		napi_value buf, arr;
		size_t n = it->nforget * 2;
		double *d;
		napi_create_arraybuffer(env, n * sizeof(double), &ab, &buf);
		d = ab;
		for (size_t i = 0; i < it->nforget; i++) {
			d[2 * i] = (double)it->forgets[i].ino;
			d[2 * i + 1] = (double)it->forgets[i].nlookup;
		}
		napi_create_typedarray(env, napi_float64_array, n, buf, 0, &arr);
		napi_set_named_property(env, o, "forgets", arr);
		return o;
	}
	default:
		break;
	}

	{
		int64_t id = slot_put(s, it);
		if (id < 0) return NULL;
		s->lat_handoff[it->op] += (double)(now_ns() - it->t_recv);
		set_num(env, o, "id", (double)id);
	}
	set_num(env, o, "uid", it->uid);
	set_num(env, o, "gid", it->gid);
	set_num(env, o, "pid", it->pid);
	parent_op = it->op == CM_LOOKUP || it->op == CM_MKNOD || it->op == CM_MKDIR ||
		    it->op == CM_UNLINK || it->op == CM_RMDIR || it->op == CM_SYMLINK ||
		    it->op == CM_RENAME || it->op == CM_CREATE;
	set_num(env, o, parent_op ? "parent" : "ino", (double)it->ino);
	if (it->has_fh) set_num(env, o, "fh", (double)it->fh);
	if (it->interrupted) set_num(env, o, "interrupted", 1);

	switch (it->op) {
	case CM_LOOKUP: case CM_UNLINK: case CM_RMDIR: case CM_REMOVEXATTR:
		set_str(env, o, "name", it->name);
		break;
	case CM_SETATTR:
		set_num(env, o, "valid", it->valid);
		set_num(env, o, "mode", it->st.st_mode);
		set_num(env, o, "setUid", it->st.st_uid);
		set_num(env, o, "setGid", it->st.st_gid);
		set_num(env, o, "size", (double)it->st.st_size);
		set_num(env, o, "atimeSec", (double)it->st.st_atim.tv_sec);
		set_num(env, o, "atimeNsec", (double)it->st.st_atim.tv_nsec);
		set_num(env, o, "mtimeSec", (double)it->st.st_mtim.tv_sec);
		set_num(env, o, "mtimeNsec", (double)it->st.st_mtim.tv_nsec);
		set_num(env, o, "ctimeSec", (double)it->st.st_ctim.tv_sec);
		set_num(env, o, "ctimeNsec", (double)it->st.st_ctim.tv_nsec);
		break;
	case CM_MKNOD:
		set_num(env, o, "rdev", (double)it->rdev);
		/* fallthrough */
	case CM_MKDIR:
		set_str(env, o, "name", it->name);
		set_num(env, o, "mode", it->mode);
		set_num(env, o, "umask", it->umask);
		break;
	case CM_CREATE:
		set_str(env, o, "name", it->name);
		set_num(env, o, "mode", it->mode);
		set_num(env, o, "umask", it->umask);
		set_num(env, o, "flags", it->flags);
		break;
	case CM_SYMLINK:
		set_str(env, o, "name", it->name);
		set_str(env, o, "target", it->name2);
		break;
	case CM_RENAME:
		set_str(env, o, "name", it->name);
		set_num(env, o, "newParent", (double)it->ino2);
		set_str(env, o, "newName", it->name2);
		set_num(env, o, "flags", it->flags);
		break;
	case CM_LINK:
		set_num(env, o, "newParent", (double)it->ino2);
		set_str(env, o, "newName", it->name2);
		break;
	case CM_OPEN: case CM_OPENDIR: case CM_RELEASE:
		set_num(env, o, "flags", it->flags);
		break;
	case CM_READ: case CM_READDIR: case CM_READDIRPLUS:
		set_num(env, o, "offset", (double)it->off);
		set_num(env, o, "size", (double)it->size);
		break;
	case CM_WRITE:
	case CM_SETXATTR:
		if (it->datalen) {
			napi_create_external_buffer(env, it->datalen, it->data, free_external,
						    it->data_base, &v);
			it->data_base = NULL; /* the Buffer's finalizer frees it now */
		} else {
			void *p;
			napi_create_buffer(env, 0, &p, &v);
		}
		napi_set_named_property(env, o, it->op == CM_WRITE ? "data" : "value", v);
		if (it->op == CM_WRITE) {
			set_num(env, o, "offset", (double)it->off);
			set_num(env, o, "writepage", it->writepage);
		} else {
			set_str(env, o, "name", it->name);
		}
		set_num(env, o, "flags", it->flags);
		break;
	case CM_FSYNC: case CM_FSYNCDIR:
		set_num(env, o, "datasync", it->flags);
		break;
	case CM_GETXATTR:
		set_str(env, o, "name", it->name);
		set_num(env, o, "size", (double)it->size);
		break;
	case CM_LISTXATTR:
		set_num(env, o, "size", (double)it->size);
		break;
	case CM_ACCESS:
		set_num(env, o, "mask", it->flags);
		break;
	default:
		break;
	}
	return o;
}

static void call_js(napi_env env, napi_value js_cb, void *ctx, void *data)
{
	cm_session *s = ctx;
	cm_item *list, *it, *next;
	napi_value arr, recv;
	uint32_t n = 0, i = 0;
	unsigned long mb;
	(void)data;

	pthread_mutex_lock(&s->qlock);
	list = s->qhead;
	s->qhead = s->qtail = NULL;
	pthread_mutex_unlock(&s->qlock);
	if (!list) return;
	if (env == NULL || js_cb == NULL) {
		for (it = list; it; it = next) {
			next = it->next;
			if (it->req) fuse_reply_err(it->req, EIO);
			item_free(it);
		}
		return;
	}
	for (it = list; it; it = it->next) n++;
	s->last_req_ns = now_ns();
	atomic_fetch_add(&s->batches, 1);
	atomic_fetch_add(&s->delivered, n);
	mb = atomic_load(&s->max_batch);
	if (n > mb) atomic_store(&s->max_batch, n);
	napi_create_array(env, &arr); /* an interrupt of a request already answered adds nothing */
	for (it = list; it; it = next) {
		napi_value o;
		next = it->next;
		o = item_to_js(env, s, it);
		if (!o) {
			if (it->req) fuse_reply_err(it->req, ENOMEM);
			item_free(it);
			continue;
		}
		napi_set_element(env, arr, i++, o);
		/* items without a reply to wait for are done once converted */
		if (!it->req) item_free(it);
	}
	napi_get_undefined(env, &recv);
	napi_call_function(env, recv, js_cb, 1, &arr, NULL);
}

static cm_session *get_session(napi_env env, napi_value v)
{
	void *p = NULL;
	if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
		throw_err(env, "cmfuse3: not a session handle");
		return NULL;
	}
	return p;
}

/* Common prologue of reply*(handle, id, ...): NULL = stale id (already
 * answered, or the session ended); the caller then returns false to JS. */
/* (handle, id, ...): up to want arguments into argv, at least need; 0 after a thrown error. */
static int req_args(napi_env env, napi_callback_info info, size_t want, size_t need, napi_value *argv,
		    cm_session **ps, double *id)
{
	size_t argc = want;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < need) {
		throw_err(env, "cmfuse3: missing arguments");
		return 0;
	}
	*ps = get_session(env, argv[0]);
	if (!*ps) return 0;
	if (napi_get_value_double(env, argv[1], id) != napi_ok) {
		throw_err(env, "cmfuse3: request id must be a number");
		return 0;
	}
	return 1;
}

static cm_item *take(napi_env env, napi_callback_info info, size_t want, napi_value *argv,
		     cm_session **ps, int *bad)
{
	double id;
	*bad = !req_args(env, info, want, 2, argv, ps, &id);
	if (*bad || (*ps)->destroyed) return NULL;
	return slot_take(*ps, id);
}

static double num_arg(napi_env env, napi_value v, double dflt)
{
	double d;
	if (napi_get_value_double(env, v, &d) != napi_ok) return dflt;
	return d;
}

static int f64_arg(napi_env env, napi_value v, double **p, size_t *len)
{
	napi_typedarray_type t;
	void *data;
	size_t n, off;
	napi_value ab;
	if (napi_get_typedarray_info(env, v, &t, &n, &data, &ab, &off) != napi_ok ||
	    t != napi_float64_array) {
		throw_err(env, "cmfuse3: expected a Float64Array");
		return 0;
	}
	*p = data;
	*len = n;
	return 1;
}

static void fill_stat(const double *e, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = (ino_t)e[E_INO];
	st->st_mode = (mode_t)e[E_MODE];
	st->st_nlink = (nlink_t)e[E_NLINK];
	st->st_uid = (uid_t)e[E_UID];
	st->st_gid = (gid_t)e[E_GID];
	st->st_rdev = (dev_t)e[E_RDEV];
	st->st_size = (off_t)e[E_SIZE];
	st->st_blocks = (blkcnt_t)e[E_BLOCKS];
	st->st_blksize = (blksize_t)e[E_BLKSIZE];
	st->st_atim.tv_sec = (time_t)e[E_ATIME];
	st->st_atim.tv_nsec = (long)e[E_ATIMENS];
	st->st_mtim.tv_sec = (time_t)e[E_MTIME];
	st->st_mtim.tv_nsec = (long)e[E_MTIMENS];
	st->st_ctim.tv_sec = (time_t)e[E_CTIME];
	st->st_ctim.tv_nsec = (long)e[E_CTIMENS];
}

static void fill_entry(const double *e, struct fuse_entry_param *ep)
{
	memset(ep, 0, sizeof *ep);
	ep->ino = (fuse_ino_t)e[E_INO];
	ep->generation = (uint64_t)e[E_GEN];
	ep->attr_timeout = e[E_ATTR_TO];
	ep->entry_timeout = e[E_ENTRY_TO];
	fill_stat(e, &ep->attr);
}

static void fill_open(struct fuse_file_info *fi, double fh, double flags)
{
	unsigned f = (unsigned)flags;
	memset(fi, 0, sizeof *fi);
	fi->fh = (uint64_t)fh;
	fi->direct_io = !!(f & 1);
	fi->keep_cache = !!(f & 2);
	fi->nonseekable = !!(f & 4);
	fi->cache_readdir = !!(f & 8);
#if FUSE_VERSION >= FUSE_MAKE_VERSION(3, 11)
	/* no FLUSH at close (FOPEN_NOFLUSH; kernels without it ignore the bit and flush as before) */
	fi->noflush = !!(f & 16);
#endif
}

/* ---- reply functions (JS thread) ----
 * Each takes its request's slot (take_reply), answers the kernel exactly once,
 * and frees the slot (replied / reply_failed). */

/* take() for a reply: NULL when there is nothing to answer, *ret then being
 * what the reply function returns (NULL after a thrown error, false for a
 * stale id or a destroyed session). */
static cm_item *take_reply(napi_env env, napi_callback_info info, size_t want, napi_value *argv,
			   cm_session **ps, napi_value *ret)
{
	int bad;
	cm_item *it = take(env, info, want, argv, ps, &bad);
	*ret = bad || it ? NULL : boolean(env, 0);
	if (it) {
		(*ps)->lat_n[it->op] += 1;
		(*ps)->lat_total[it->op] += (double)(now_ns() - it->t_recv);
	}
	return it;
}

/* The kernel got its answer: the slot is freed, JS gets true. */
static napi_value replied(napi_env env, cm_item *it)
{
	ac_release(it);
	item_free(it);
	return boolean(env, 1);
}

/* JS's arguments could not make the answer: err goes to the kernel instead;
 * JS gets ret (NULL: undefined, or the error thrown before). */
static napi_value reply_failed(cm_item *it, int err, napi_value ret)
{
	fuse_reply_err(it->req, err);
	ac_release(it);
	item_free(it);
	return ret;
}

/* The attribute numbers of an entry or attr reply (at least E_OFF of them). */
static int attrs_arg(napi_env env, napi_value v, double **e)
{
	size_t n;
	return f64_arg(env, v, e, &n) && n >= E_OFF;
}

/* How many of it's holds map to ino's slot; 0 when it holds ino itself not at all. */
static uint32_t holds_of(cm_item *it, uint64_t ino)
{
	uint32_t mine = 0;
	int own = 0;
	if (!it->held) return 0;
	for (int i = 0; i < it->nhold; i++) {
		if ((it->hold[i] & (CM_AC_SLOTS - 1)) == (ino & (CM_AC_SLOTS - 1))) mine++;
		if (it->hold[i] == ino) own = 1;
	}
	return own ? mine : 0;
}

/* attrTicket(handle, id, ino): taken by request id (a change of folder ino) before it computes
 * ino's attributes; -1 when another change of the folder is in flight (then none are taken). */
static napi_value n_attr_ticket(napi_env env, napi_callback_info info)
{
	napi_value argv[3], v;
	cm_session *s;
	cm_item *it;
	double id, t = -1;
	uint64_t ino;
	uint32_t mine;
	if (!req_args(env, info, 3, 3, argv, &s, &id)) return NULL;
	ino = (uint64_t)num_arg(env, argv[2], 0);
	it = slot_peek(s, id);
	if (it && (mine = holds_of(it, ino)) > 0) {
		cm_acslot *a = &s->ac[ino & (CM_AC_SLOTS - 1)];
		pthread_mutex_lock(&s->qlock);
		if (a->busy == mine) t = (double)a->arrivals;
		pthread_mutex_unlock(&s->qlock);
	}
	napi_create_double(env, t, &v);
	return v;
}

/* cacheAttr(handle, id, attrs, ticket): before answering request id, the
 * folder's attributes after it, for the GETATTR that follows. true when taken
 * (see the attribute slots at the top). */
static napi_value n_cache_attr(napi_env env, napi_callback_info info)
{
	napi_value argv[4];
	cm_session *s;
	cm_item *it;
	struct stat st;
	double id, *e, ticket;
	uint64_t ino;
	int ok = 0;
	if (!req_args(env, info, 4, 4, argv, &s, &id)) return NULL;
	if (!attrs_arg(env, argv[2], &e)) return NULL;
	ticket = num_arg(env, argv[3], -1);
	it = slot_peek(s, id);
	fill_stat(e, &st);
	ino = (uint64_t)e[E_INO];
	if (it && ticket >= 0 && S_ISDIR(st.st_mode) && e[E_ATTR_TO] > 0 && holds_of(it, ino) > 0) {
		cm_acslot *a = &s->ac[ino & (CM_AC_SLOTS - 1)];
		pthread_mutex_lock(&s->qlock);
		if ((double)a->arrivals == ticket) {
			a->ino = ino;
			a->st = st;
			a->until = now_ns() + (uint64_t)(e[E_ATTR_TO] * 1e9);
			ok = 1;
		}
		pthread_mutex_unlock(&s->qlock);
	}
	return boolean(env, ok);
}

static napi_value n_reply_err(napi_env env, napi_callback_info info)
{
	napi_value argv[3], ret;
	cm_session *s;
	int e;
	cm_item *it = take_reply(env, info, 3, argv, &s, &ret);
	if (!it) return ret;
	e = (int)num_arg(env, argv[2], EIO);
	fuse_reply_err(it->req, e < 0 ? -e : e);
	return replied(env, it);
}

static napi_value n_reply_entry(napi_env env, napi_callback_info info)
{
	napi_value argv[3], ret;
	cm_session *s;
	double *e;
	struct fuse_entry_param ep;
	cm_item *it = take_reply(env, info, 3, argv, &s, &ret);
	if (!it) return ret;
	if (!attrs_arg(env, argv[2], &e)) return reply_failed(it, EIO, NULL);
	fill_entry(e, &ep);
	fuse_reply_entry(it->req, &ep);
	return replied(env, it);
}

static napi_value n_reply_create(napi_env env, napi_callback_info info)
{
	napi_value argv[5], ret;
	cm_session *s;
	double *e;
	struct fuse_entry_param ep;
	struct fuse_file_info fi;
	cm_item *it = take_reply(env, info, 5, argv, &s, &ret);
	if (!it) return ret;
	if (!attrs_arg(env, argv[2], &e)) return reply_failed(it, EIO, NULL);
	fill_entry(e, &ep);
	fill_open(&fi, num_arg(env, argv[3], 0), num_arg(env, argv[4], 0));
	fi.flags = it->flags;
	fuse_reply_create(it->req, &ep, &fi);
	return replied(env, it);
}

static napi_value n_reply_attr(napi_env env, napi_callback_info info)
{
	napi_value argv[3], ret;
	cm_session *s;
	double *e;
	struct stat st;
	cm_item *it = take_reply(env, info, 3, argv, &s, &ret);
	if (!it) return ret;
	if (!attrs_arg(env, argv[2], &e)) return reply_failed(it, EIO, NULL);
	fill_stat(e, &st);
	fuse_reply_attr(it->req, &st, e[E_ATTR_TO]);
	return replied(env, it);
}

static napi_value n_reply_open(napi_env env, napi_callback_info info)
{
	napi_value argv[4], ret;
	cm_session *s;
	struct fuse_file_info fi;
	cm_item *it = take_reply(env, info, 4, argv, &s, &ret);
	if (!it) return ret;
	fill_open(&fi, num_arg(env, argv[2], 0), num_arg(env, argv[3], 0));
	fi.flags = it->flags;
	fuse_reply_open(it->req, &fi);
	return replied(env, it);
}

static napi_value n_reply_write(napi_env env, napi_callback_info info)
{
	napi_value argv[3], ret;
	cm_session *s;
	cm_item *it = take_reply(env, info, 3, argv, &s, &ret);
	if (!it) return ret;
	fuse_reply_write(it->req, (size_t)num_arg(env, argv[2], 0));
	return replied(env, it);
}

static napi_value n_reply_xattr(napi_env env, napi_callback_info info)
{
	napi_value argv[3], ret;
	cm_session *s;
	cm_item *it = take_reply(env, info, 3, argv, &s, &ret);
	if (!it) return ret;
	fuse_reply_xattr(it->req, (size_t)num_arg(env, argv[2], 0));
	return replied(env, it);
}

/* replyBuf(handle, id, buffer?, length?): the bytes go to the kernel before
 * this returns, so JS may reuse the buffer at once. */
static napi_value n_reply_buf(napi_env env, napi_callback_info info)
{
	napi_value argv[4], ret;
	cm_session *s;
	void *data = NULL;
	size_t len = 0;
	napi_valuetype t = napi_undefined;
	cm_item *it = take_reply(env, info, 4, argv, &s, &ret);
	if (!it) return ret;
	napi_typeof(env, argv[2], &t);
	if (t == napi_object) {
		bool isbuf = false;
		napi_is_buffer(env, argv[2], &isbuf);
		if (isbuf) napi_get_buffer_info(env, argv[2], &data, &len);
		else {
			napi_typedarray_type tt;
			napi_value ab;
			size_t off;
			if (napi_get_typedarray_info(env, argv[2], &tt, &len, &data, &ab, &off) != napi_ok) {
				reply_failed(it, EIO, NULL);
				throw_err(env, "cmfuse3: replyBuf wants a Buffer or Uint8Array");
				return NULL;
			}
		}
		napi_typeof(env, argv[3], &t);
		if (t == napi_number) {
			double l = num_arg(env, argv[3], (double)len);
			if (l >= 0 && l < (double)len) len = (size_t)l;
		}
	}
	if (it->size && len > it->size && it->op == CM_READ) len = it->size;
	fuse_reply_buf(it->req, data, len);
	return replied(env, it);
}

/* replyFd(handle, id, fd, offset, length, splice): the answer to a read is read
 * from a file of ours (the vfs's cache file) by libfuse, with splice when
 * asked, without the bytes crossing into JS. */
static napi_value n_reply_fd(napi_env env, napi_callback_info info)
{
	napi_value argv[6], ret;
	cm_session *s;
	int fd;
	double off, len;
	bool splice = false;
	cm_item *it = take_reply(env, info, 6, argv, &s, &ret);
	if (!it) return ret;
	fd = (int)num_arg(env, argv[2], -1);
	off = num_arg(env, argv[3], 0);
	len = num_arg(env, argv[4], 0);
	napi_get_value_bool(env, argv[5], &splice);
	if (fd < 0 || off < 0 || len < 0) return reply_failed(it, EINVAL, boolean(env, 1));
	if (splice) {
		/* libfuse splices file -> pipe -> /dev/fuse when SPLICE_WRITE was negotiated
		 * (MountOptions.splice), else it copies through a buffer of its own */
		struct fuse_bufvec bv = FUSE_BUFVEC_INIT((size_t)len);
		bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
		bv.buf[0].fd = fd;
		bv.buf[0].pos = (off_t)off;
		fuse_reply_data(it->req, &bv, FUSE_BUF_SPLICE_MOVE);
	} else {
		size_t want = (size_t)len, got = 0;
		if (s->fdbuf_size < want) {
			char *nb = realloc(s->fdbuf, want);
			if (!nb) return reply_failed(it, ENOMEM, boolean(env, 1));
			s->fdbuf = nb;
			s->fdbuf_size = want;
		}
		while (got < want) {
			ssize_t r = pread(fd, s->fdbuf + got, want - got, (off_t)off + (off_t)got);
			if (r < 0 && errno == EINTR) continue;
			if (r < 0) return reply_failed(it, errno, boolean(env, 1));
			if (r == 0) break;
			got += (size_t)r;
		}
		fuse_reply_buf(it->req, s->fdbuf, got);
	}
	return replied(env, it);
}

/* ---- replyFdAsync: READ answers from a file of ours, off the JS thread ----
 * The JS thread only takes the request and a dup of the fd; the data thread
 * preads and writes the answer to /dev/fuse. On a cold sequential read the
 * answer's two copies (cache file -> buffer -> kernel pages) were the biggest
 * share of the JS thread's time, and every READ waited behind socket and
 * landing work there. The dup keeps the bytes' file open whatever JS does with
 * its own fd meanwhile (close on eviction: a reused number would be another
 * file). */

typedef struct cm_fdjob {
	struct cm_fdjob *next;
	cm_item *it;
	int fd;
	off_t off;
	size_t len;
} cm_fdjob;

static void fdjob_run(cm_session *s, cm_fdjob *j, char **buf, size_t *bufsize)
{
	size_t got = 0;
	int err = 0;
	if (*bufsize < j->len) {
		char *nb = realloc(*buf, j->len);
		if (!nb) err = ENOMEM;
		else {
			*buf = nb;
			*bufsize = j->len;
		}
	}
	while (!err && got < j->len) {
		ssize_t r = pread(j->fd, *buf + got, j->len - got, j->off + (off_t)got);
		if (r < 0 && errno == EINTR) continue;
		if (r < 0) err = errno;
		if (r <= 0) break;
		got += (size_t)r;
	}
	if (err && got == 0) fuse_reply_err(j->it->req, err);
	else fuse_reply_buf(j->it->req, *buf, got);
	atomic_fetch_add_explicit(&s->data_replies, 1, memory_order_relaxed);
	close(j->fd);
	ac_release(j->it);
	item_free(j->it);
	free(j);
}

static void *data_thread(void *arg)
{
	cm_session *s = arg;
	char *buf = NULL;
	size_t bufsize = 0;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		cm_fdjob *j;
		pthread_mutex_lock(&s->dlock);
		while (!s->dhead && !s->dstop) pthread_cond_wait(&s->dcond, &s->dlock);
		j = s->dhead;
		if (j) {
			s->dhead = j->next;
			if (!s->dhead) s->dtail = NULL;
		}
		pthread_mutex_unlock(&s->dlock);
		if (!j) break; /* stopped and drained */
		fdjob_run(s, j, &buf, &bufsize);
	}
	free(buf);
	return NULL;
}

/* Before the session is freed: every queued answer is sent, then the thread ends. */
static void data_stop(cm_session *s)
{
	if (!s->dstarted) return;
	pthread_mutex_lock(&s->dlock);
	s->dstop = 1;
	pthread_cond_signal(&s->dcond);
	pthread_mutex_unlock(&s->dlock);
	pthread_join(s->dthread, NULL);
	s->dstarted = 0;
}

/* replyFdAsync(handle, id, fd, offset, length): as replyFd without splice, but
 * the bytes are read and sent by the data thread; true once queued. */
static napi_value n_reply_fd_async(napi_env env, napi_callback_info info)
{
	napi_value argv[5], ret;
	cm_session *s;
	cm_fdjob *j;
	int fd, dfd;
	double off, len;
	cm_item *it = take_reply(env, info, 5, argv, &s, &ret);
	if (!it) return ret;
	fd = (int)num_arg(env, argv[2], -1);
	off = num_arg(env, argv[3], 0);
	len = num_arg(env, argv[4], 0);
	if (fd < 0 || off < 0 || len < 0) return reply_failed(it, EINVAL, boolean(env, 1));
	if (it->size && len > (double)it->size && it->op == CM_READ) len = (double)it->size;
	if (len == 0) {
		fuse_reply_buf(it->req, NULL, 0);
		return replied(env, it);
	}
	if (!s->dstarted) {
		if (pthread_create(&s->dthread, NULL, data_thread, s) != 0) return reply_failed(it, EAGAIN, boolean(env, 1));
		s->dstarted = 1;
	}
	dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dfd < 0) return reply_failed(it, errno, boolean(env, 1));
	j = malloc(sizeof *j);
	if (!j) {
		close(dfd);
		return reply_failed(it, ENOMEM, boolean(env, 1));
	}
	j->next = NULL;
	j->it = it;
	j->fd = dfd;
	j->off = (off_t)off;
	j->len = (size_t)len;
	pthread_mutex_lock(&s->dlock);
	if (s->dtail) s->dtail->next = j;
	else s->dhead = j;
	s->dtail = j;
	pthread_cond_signal(&s->dcond);
	pthread_mutex_unlock(&s->dlock);
	return boolean(env, 1);
}

static napi_value n_reply_readlink(napi_env env, napi_callback_info info)
{
	napi_value argv[3], ret;
	cm_session *s;
	char buf[CM_NAME_MAX + 1];
	size_t n = 0;
	cm_item *it = take_reply(env, info, 3, argv, &s, &ret);
	if (!it) return ret;
	if (napi_get_value_string_utf8(env, argv[2], buf, sizeof buf, &n) != napi_ok || n >= CM_NAME_MAX)
		return reply_failed(it, ENAMETOOLONG, boolean(env, 1));
	fuse_reply_readlink(it->req, buf);
	return replied(env, it);
}

static napi_value n_reply_statfs(napi_env env, napi_callback_info info)
{
	napi_value argv[3], ret;
	cm_session *s;
	double *d;
	size_t n;
	struct statvfs sv;
	cm_item *it = take_reply(env, info, 3, argv, &s, &ret);
	if (!it) return ret;
	if (!f64_arg(env, argv[2], &d, &n) || n < 10) return reply_failed(it, EIO, NULL);
	memset(&sv, 0, sizeof sv);
	sv.f_bsize = (unsigned long)d[0];
	sv.f_frsize = (unsigned long)d[1];
	sv.f_blocks = (fsblkcnt_t)d[2];
	sv.f_bfree = (fsblkcnt_t)d[3];
	sv.f_bavail = (fsblkcnt_t)d[4];
	sv.f_files = (fsfilcnt_t)d[5];
	sv.f_ffree = (fsfilcnt_t)d[6];
	sv.f_favail = (fsfilcnt_t)d[7];
	sv.f_namemax = (unsigned long)d[8];
	sv.f_flag = (unsigned long)d[9];
	fuse_reply_statfs(it->req, &sv);
	return replied(env, it);
}

/* replyDir(handle, id, names[], Float64Array entries, first): packs entries
 * from index `first` until the kernel's buffer is full; returns how many went
 * in (for readdirplus each one with a nonzero ino, other than . and .., now
 * counts one lookup), or false for a stale id. */
static napi_value n_reply_dir(napi_env env, napi_callback_info info)
{
	napi_value argv[5], ret;
	cm_session *s;
	int plus;
	double *e;
	size_t n, used = 0;
	uint32_t count, i, first, added = 0;
	char *buf;
	cm_item *it = take_reply(env, info, 5, argv, &s, &ret);
	if (!it) return ret;
	plus = it->op == CM_READDIRPLUS;
	if (napi_get_array_length(env, argv[2], &count) != napi_ok || !f64_arg(env, argv[3], &e, &n) ||
	    n < (size_t)count * E_STRIDE) {
		reply_failed(it, EIO, NULL);
		throw_err(env, "cmfuse3: replyDir wants names[] and a Float64Array of %d per name", E_STRIDE);
		return NULL;
	}
	first = (uint32_t)num_arg(env, argv[4], 0);
	buf = malloc(it->size ? it->size : 1);
	if (!buf) return reply_failed(it, ENOMEM, boolean(env, 1));
	for (i = first; i < count; i++) {
		napi_value nv;
		char name[CM_NAME_MAX + 1];
		size_t nl = 0, sz;
		const double *d = e + (size_t)i * E_STRIDE;
		if (napi_get_element(env, argv[2], i, &nv) != napi_ok ||
		    napi_get_value_string_utf8(env, nv, name, sizeof name, &nl) != napi_ok || nl >= CM_NAME_MAX)
			continue;
		if (plus) {
			struct fuse_entry_param ep;
			fill_entry(d, &ep);
			sz = fuse_add_direntry_plus(it->req, buf + used, it->size - used, name, &ep, (off_t)d[E_OFF]);
		} else {
			struct stat st;
			fill_stat(d, &st);
			sz = fuse_add_direntry(it->req, buf + used, it->size - used, name, &st, (off_t)d[E_OFF]);
		}
		if (sz > it->size - used) break;
		used += sz;
		added++;
	}
	fuse_reply_buf(it->req, buf, used);
	free(buf);
	item_free(it);
	napi_create_uint32(env, added, &ret);
	return ret;
}

/* ---- notifications: on a libuv worker, never on the JS thread ----
 * The kernel may hold the very inode lock a notification waits for while it
 * waits for our answer to another request; the JS thread is the only one that
 * answers, so it must never block here. */

typedef struct {
	cm_session *s;
	napi_async_work work;
	napi_deferred deferred;
	int kind;
	uint64_t ino;
	int64_t off, len;
	char *name;
	int result;
} cm_notify;

static void notify_exec(napi_env env, void *data)
{
	cm_notify *n = data;
	(void)env;
	if (n->kind == 0)
		n->result = fuse_lowlevel_notify_inval_inode(n->s->se, n->ino, n->off, n->len);
	else
		n->result = fuse_lowlevel_notify_inval_entry(n->s->se, n->ino, n->name, strlen(n->name));
}

static void notify_done(napi_env env, napi_status status, void *data)
{
	cm_notify *n = data;
	napi_value v;
	n->s->inflight_notify--;
	napi_create_int32(env, status == napi_ok ? n->result : -ECANCELED, &v);
	napi_resolve_deferred(env, n->deferred, v);
	napi_delete_async_work(env, n->work);
	free(n->name);
	free(n);
}

static napi_value n_notify(napi_env env, napi_callback_info info, int kind)
{
	napi_value argv[4], promise, res;
	size_t argc = 4;
	cm_session *s;
	cm_notify *n;
	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 3) {
		throw_err(env, "cmfuse3: notify needs (handle, ino, ...)");
		return NULL;
	}
	s = get_session(env, argv[0]);
	if (!s) return NULL;
	if (s->destroyed) {
		throw_err(env, "cmfuse3: session is closed");
		return NULL;
	}
	n = calloc(1, sizeof *n);
	if (!n) {
		throw_err(env, "cmfuse3: out of memory");
		return NULL;
	}
	n->s = s;
	n->kind = kind;
	n->ino = (uint64_t)num_arg(env, argv[1], 0);
	/* the kernel is told to drop what it has of ino (or of a name in folder ino, whose own
	 * attributes change with it): so is our slot, before the kernel can ask again */
	ac_drop(s, n->ino);
	if (kind == 0) {
		n->off = (int64_t)num_arg(env, argv[2], 0);
		n->len = argc > 3 ? (int64_t)num_arg(env, argv[3], 0) : 0;
	} else {
		size_t l = 0;
		char name[CM_NAME_MAX + 1];
		if (napi_get_value_string_utf8(env, argv[2], name, sizeof name, &l) != napi_ok || l >= CM_NAME_MAX) {
			free(n);
			throw_err(env, "cmfuse3: bad name");
			return NULL;
		}
		n->name = strdup(name);
	}
	napi_create_promise(env, &n->deferred, &promise);
	napi_create_string_utf8(env, "cmfuse3.notify", NAPI_AUTO_LENGTH, &res);
	napi_create_async_work(env, NULL, res, notify_exec, notify_done, n, &n->work);
	s->inflight_notify++;
	napi_queue_async_work(env, n->work);
	return promise;
}

static napi_value n_notify_inval_inode(napi_env env, napi_callback_info info)
{
	return n_notify(env, info, 0);
}

static napi_value n_notify_inval_entry(napi_env env, napi_callback_info info)
{
	return n_notify(env, info, 1);
}

/* ---- session lifecycle ---- */

/* Process exit (process.exit(), an uncaught exception) with a live mount: stop deliveries and
 * let the kernel forget the mount (lazily) instead of leaving a dead one behind. The session is
 * never freed here: readers may still be in libfuse. SIGKILL skips this: the kernel then aborts
 * the connection and the dead mount needs fusermount -uz (mount.ts does that at the next mount). */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static cm_session *live_head;
static int atexit_set;

static void emergency_unmount(cm_session *s)
{
	pthread_mutex_lock(&s->qlock);
	s->closing = 1;
	pthread_mutex_unlock(&s->qlock);
	if (s->destroyed || s->emergency_done) return;
	s->emergency_done = 1;
	fuse_session_exit(s->se);
	if (s->mountpoint) fuse_session_unmount(s->se);
}

static void live_add(cm_session *s)
{
	pthread_mutex_lock(&live_lock);
	s->live_next = live_head;
	live_head = s;
	pthread_mutex_unlock(&live_lock);
}

static void live_remove(cm_session *s)
{
	cm_session **pp;
	pthread_mutex_lock(&live_lock);
	for (pp = &live_head; *pp; pp = &(*pp)->live_next)
		if (*pp == s) {
			*pp = s->live_next;
			break;
		}
	pthread_mutex_unlock(&live_lock);
}

static void at_exit(void)
{
	cm_session *s;
	pthread_mutex_lock(&live_lock);
	for (s = live_head; s; s = s->live_next) emergency_unmount(s);
	pthread_mutex_unlock(&live_lock);
}

static void env_cleanup(void *arg)
{
	emergency_unmount(arg);
}

static void session_finalize(napi_env env, void *data, void *hint)
{
	cm_session *s = data;
	(void)env;
	(void)hint;
	/* Only a destroyed session is safe to free: otherwise reader threads
	 * still point at it (JS dropped a live mount; leak rather than crash). */
	if (!s->destroyed) return;
	pthread_mutex_destroy(&s->qlock);
	pthread_mutex_destroy(&s->dlock);
	pthread_cond_destroy(&s->dcond);
	free(s->slots);
	free(s->gens);
	free(s->freestack);
	free(s->fdbuf);
	free(s->mountpoint);
	free(s);
}

static int get_prop_u32(napi_env env, napi_value o, const char *k, unsigned *out)
{
	napi_value v;
	bool has = false;
	double d;
	if (napi_has_named_property(env, o, k, &has) != napi_ok || !has) return 0;
	napi_get_named_property(env, o, k, &v);
	if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
	*out = (unsigned)d;
	return 1;
}

/* mount(mountpoint, args[], config, onBatch) -> handle */
static napi_value n_mount(napi_env env, napi_callback_info info)
{
	napi_value argv[4], ext, name;
	size_t argc = 4, l;
	char mnt[CM_NAME_MAX + 1], arg[CM_NAME_MAX + 1];
	uint32_t nargs = 0, i, nhandled = 0;
	struct fuse_args fargs = FUSE_ARGS_INIT(0, NULL);
	struct fuse_lowlevel_ops ops;
	cm_session *s = NULL;
	unsigned threads = 1, debug = 0, handled_mask[2] = { 0, 0 };
	napi_value handled;
	int tsfn_made = 0;
	const char *start_err = NULL;

	NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	if (argc < 4) {
		throw_err(env, "cmfuse3.mount(mountpoint, args, config, onBatch)");
		return NULL;
	}
	NAPI(napi_get_value_string_utf8(env, argv[0], mnt, sizeof mnt, &l));
	NAPI(napi_get_array_length(env, argv[1], &nargs));

	s = calloc(1, sizeof *s);
	if (!s) {
		throw_err(env, "cmfuse3: out of memory");
		return NULL;
	}
	pthread_mutex_init(&s->qlock, NULL);
	pthread_mutex_init(&s->dlock, NULL);
	pthread_cond_init(&s->dcond, NULL);
	s->env = env;

	get_prop_u32(env, argv[2], "threads", &threads);
	get_prop_u32(env, argv[2], "debug", &debug);
	get_prop_u32(env, argv[2], "wantOn", &s->want_on);
	get_prop_u32(env, argv[2], "wantOff", &s->want_off);
	get_prop_u32(env, argv[2], "maxWrite", &s->max_write);
	get_prop_u32(env, argv[2], "maxReadahead", &s->max_readahead);
	get_prop_u32(env, argv[2], "maxBackground", &s->max_background);
	get_prop_u32(env, argv[2], "congestionThreshold", &s->congestion);
	{
		unsigned pm = 0, spin_us = 0;
		get_prop_u32(env, argv[2], "poll", &pm);
		get_prop_u32(env, argv[2], "spinUs", &spin_us);
		s->poll_mode = pm != 0;
		s->spin_ns = (uint64_t)spin_us * 1000;
	}
	if (threads < 1) threads = 1;
	if (threads > CM_MAX_THREADS) threads = CM_MAX_THREADS;
	log_to_stderr = debug ? 1 : 0;

	/* Unregistered ops get libfuse's default (ENOSYS, or success for
	 * open/opendir/release/releasedir): JS only pays for what it handles. */
	NAPI(napi_get_named_property(env, argv[2], "handled", &handled));
	NAPI(napi_get_array_length(env, handled, &nhandled));
	for (i = 0; i < nhandled; i++) {
		napi_value v;
		char opn[32];
		size_t ol;
		NAPI(napi_get_element(env, handled, i, &v));
		NAPI(napi_get_value_string_utf8(env, v, opn, sizeof opn, &ol));
		for (int k = 0; k < CM_NOPS; k++)
			if (!strcmp(opn, cm_op_names[k])) handled_mask[k / 32] |= 1u << (k % 32);
	}
#define H(k) (handled_mask[(k) / 32] & (1u << ((k) % 32)))
	memset(&ops, 0, sizeof ops);
	ops.init = ll_init;
	if (H(CM_LOOKUP)) ops.lookup = ll_lookup;
	if (H(CM_FORGET)) { ops.forget = ll_forget; ops.forget_multi = ll_forget_multi; }
	if (H(CM_GETATTR)) ops.getattr = ll_getattr;
	if (H(CM_SETATTR)) ops.setattr = ll_setattr;
	if (H(CM_READLINK)) ops.readlink = ll_readlink;
	if (H(CM_MKNOD)) ops.mknod = ll_mknod;
	if (H(CM_MKDIR)) ops.mkdir = ll_mkdir;
	if (H(CM_UNLINK)) ops.unlink = ll_unlink;
	if (H(CM_RMDIR)) ops.rmdir = ll_rmdir;
	if (H(CM_SYMLINK)) ops.symlink = ll_symlink;
	if (H(CM_RENAME)) ops.rename = ll_rename;
	if (H(CM_LINK)) ops.link = ll_link;
	if (H(CM_OPEN)) ops.open = ll_open;
	if (H(CM_READ)) ops.read = ll_read;
	if (H(CM_WRITE)) ops.write = ll_write;
	if (H(CM_FLUSH)) ops.flush = ll_flush;
	if (H(CM_RELEASE)) ops.release = ll_release;
	if (H(CM_FSYNC)) ops.fsync = ll_fsync;
	if (H(CM_OPENDIR)) ops.opendir = ll_opendir;
	if (H(CM_READDIR)) ops.readdir = ll_readdir;
	if (H(CM_READDIRPLUS)) ops.readdirplus = ll_readdirplus;
	if (H(CM_RELEASEDIR)) ops.releasedir = ll_releasedir;
	if (H(CM_FSYNCDIR)) ops.fsyncdir = ll_fsyncdir;
	if (H(CM_STATFS)) ops.statfs = ll_statfs;
	if (H(CM_SETXATTR)) ops.setxattr = ll_setxattr;
	if (H(CM_GETXATTR)) ops.getxattr = ll_getxattr;
	if (H(CM_LISTXATTR)) ops.listxattr = ll_listxattr;
	if (H(CM_REMOVEXATTR)) ops.removexattr = ll_removexattr;
	if (H(CM_ACCESS)) ops.access = ll_access;
	if (H(CM_CREATE)) ops.create = ll_create;
#undef H

	for (i = 0; i < nargs; i++) {
		napi_value v;
		NAPI(napi_get_element(env, argv[1], i, &v));
		NAPI(napi_get_value_string_utf8(env, v, arg, sizeof arg, &l));
		if (fuse_opt_add_arg(&fargs, arg) != 0) goto napi_fail;
	}

	NAPI(napi_create_string_utf8(env, "cmfuse3", NAPI_AUTO_LENGTH, &name));
	NAPI(napi_create_threadsafe_function(env, argv[3], NULL, name, 0, 1, NULL, NULL, s, call_js, &s->tsfn));
	tsfn_made = 1;

	pthread_mutex_lock(&log_lock);
	last_log[0] = 0;
	log_line_done = 1;
	pthread_mutex_unlock(&log_lock);
	fuse_set_log_func(cm_log);
	s->se = fuse_session_new(&fargs, &ops, sizeof ops, s);
	fuse_opt_free_args(&fargs);
	if (!s->se) {
		napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
		pthread_mutex_destroy(&s->qlock);
		free(s);
		throw_err(env, "cmfuse3: fuse_session_new failed: %s", last_log[0] ? last_log : "bad options");
		return NULL;
	}
	if (fuse_session_mount(s->se, mnt) != 0) {
		fuse_session_destroy(s->se);
		napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
		pthread_mutex_destroy(&s->qlock);
		free(s);
		throw_err(env, "cmfuse3: mount of %s failed: %s", mnt, last_log[0] ? last_log : "see stderr");
		return NULL;
	}
	s->mountpoint = strdup(mnt);

	s->running = 0;
	if (s->poll_mode) {
		if (poll_start(env, s) != 0) start_err = "could not watch /dev/fuse on the event loop";
	} else {
		for (i = 0; i < threads; i++) {
			pthread_mutex_lock(&s->qlock);
			s->running++;
			pthread_mutex_unlock(&s->qlock);
			if (pthread_create(&s->threads[i], NULL, reader, s) != 0) {
				pthread_mutex_lock(&s->qlock);
				s->running--;
				pthread_mutex_unlock(&s->qlock);
				break;
			}
			s->nthreads++;
		}
		if (s->nthreads == 0) start_err = "could not start a reader thread";
	}
	if (start_err) {
		fuse_session_unmount(s->se);
		fuse_session_destroy(s->se);
		napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
		pthread_mutex_destroy(&s->qlock);
		free(s->mountpoint);
		free(s);
		throw_err(env, "cmfuse3: %s", start_err);
		return NULL;
	}
	/* after the readers: nothing on the loop may point at a session freed above */
	spin_start(env, s);
	napi_add_env_cleanup_hook(env, env_cleanup, s);
	s->hook_added = 1;
	live_add(s);
	pthread_mutex_lock(&live_lock);
	if (!atexit_set) atexit_set = atexit(at_exit) == 0;
	pthread_mutex_unlock(&live_lock);
	NAPI(napi_create_external(env, s, session_finalize, NULL, &ext));
	return ext;

napi_fail:
	fuse_opt_free_args(&fargs);
	if (s && !s->se) {
		if (tsfn_made) napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
		pthread_mutex_destroy(&s->qlock);
		free(s);
	}
	{
		bool pending = false;
		napi_is_exception_pending(env, &pending);
		if (!pending) throw_err(env, "cmfuse3.mount: bad arguments");
	}
	return NULL;
}

/* destroy(handle): after the 'ended' event (kernel side gone). Joins the
 * readers, fails whatever JS never answered, frees libfuse's session. */
static napi_value n_destroy(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	size_t argc = 1;
	cm_session *s;
	cm_item *list, *it, *next;
	int running;
	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	s = argc ? get_session(env, argv[0]) : NULL;
	if (!s) return NULL;
	if (s->destroyed) return boolean(env, 0);
	pthread_mutex_lock(&s->qlock);
	running = s->running;
	pthread_mutex_unlock(&s->qlock);
	if (running) {
		throw_err(env, "cmfuse3: still mounted (%d reader threads); unmount first", running);
		return NULL;
	}
	if (s->inflight_notify) {
		throw_err(env, "cmfuse3: %d notifications in flight", s->inflight_notify);
		return NULL;
	}
	for (int i = 0; i < s->nthreads; i++) pthread_join(s->threads[i], NULL);
	spin_stop(s);
	data_stop(s);
	live_remove(s);
	pthread_mutex_lock(&s->qlock);
	s->closing = 1;
	list = s->qhead;
	s->qhead = s->qtail = NULL;
	pthread_mutex_unlock(&s->qlock);
	for (it = list; it; it = next) {
		next = it->next;
		if (it->req) fuse_reply_err(it->req, EIO);
		item_free(it);
	}
	for (uint32_t i = 0; i < s->nslots; i++) {
		if (!s->slots[i]) continue;
		fuse_reply_err(s->slots[i]->req, EIO);
		item_free(s->slots[i]);
		s->slots[i] = NULL;
	}
	s->outstanding = 0;
	fuse_session_unmount(s->se);
	fuse_session_destroy(s->se);
	s->se = NULL;
	if (s->hook_added) napi_remove_env_cleanup_hook(env, env_cleanup, s);
	napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
	s->destroyed = 1;
	return boolean(env, 1);
}

/* ref(handle, bool): a mounted session keeps the event loop alive unless told not to */
static napi_value n_ref(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	size_t argc = 2;
	bool on = true;
	cm_session *s;
	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	s = argc ? get_session(env, argv[0]) : NULL;
	if (!s) return NULL;
	if (argc > 1) napi_get_value_bool(env, argv[1], &on);
	if (!s->destroyed) {
		if (on) napi_ref_threadsafe_function(env, s->tsfn);
		else napi_unref_threadsafe_function(env, s->tsfn);
		if (s->upoll) {
			if (on) uv_ref((uv_handle_t *)s->upoll);
			else uv_unref((uv_handle_t *)s->upoll);
		}
	}
	return undef(env);
}

static napi_value n_stats(napi_env env, napi_callback_info info)
{
	napi_value argv[1], o, per;
	size_t argc = 1;
	cm_session *s;
	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	s = argc ? get_session(env, argv[0]) : NULL;
	if (!s) return NULL;
	napi_create_object(env, &o);
	napi_create_object(env, &per);
	for (int k = CM_FORGET; k < CM_NOPS; k++) {
		unsigned long c = atomic_load(&s->count[k]);
		if (c) set_num(env, per, cm_op_names[k], (double)c);
	}
	napi_set_named_property(env, o, "received", per);
	{
		napi_value lat;
		napi_create_object(env, &lat);
		for (int k = CM_FORGET; k < CM_NOPS; k++) {
			napi_value e;
			if (!s->lat_n[k]) continue;
			napi_create_object(env, &e);
			set_num(env, e, "n", s->lat_n[k]);
			set_num(env, e, "handoffUs", s->lat_handoff[k] / 1000);
			set_num(env, e, "totalUs", s->lat_total[k] / 1000);
			napi_set_named_property(env, lat, cm_op_names[k], e);
		}
		napi_set_named_property(env, o, "latency", lat);
	}
	set_num(env, o, "nativeAnswered", (double)atomic_load(&s->native_answered));
	set_num(env, o, "attrSlotHits", (double)atomic_load(&s->ac_hits));
	set_num(env, o, "dataThreadReplies", (double)atomic_load(&s->data_replies));
	set_num(env, o, "batches", (double)atomic_load(&s->batches));
	set_num(env, o, "delivered", (double)atomic_load(&s->delivered));
	set_num(env, o, "maxBatch", (double)atomic_load(&s->max_batch));
	set_num(env, o, "bytesZeroCopy", (double)atomic_load(&s->bytes_stolen));
	set_num(env, o, "interrupts", (double)atomic_load(&s->interrupts));
	set_num(env, o, "outstanding", s->outstanding);
	set_num(env, o, "threads", s->nthreads);
	set_num(env, o, "spins", (double)s->spins);
	set_num(env, o, "spinHits", (double)s->spin_hits);
	return o;
}

static napi_value init_module(napi_env env, napi_value exports)
{
	napi_value ops, caps, v;
	struct { const char *name; napi_callback cb; } fns[] = {
		{ "mount", n_mount }, { "destroy", n_destroy }, { "ref", n_ref }, { "stats", n_stats },
		{ "replyErr", n_reply_err }, { "replyEntry", n_reply_entry },
		{ "replyCreate", n_reply_create }, { "replyAttr", n_reply_attr },
		{ "replyOpen", n_reply_open }, { "replyWrite", n_reply_write },
		{ "replyBuf", n_reply_buf }, { "replyFd", n_reply_fd }, { "replyFdAsync", n_reply_fd_async },
		{ "replyReadlink", n_reply_readlink }, { "replyStatfs", n_reply_statfs },
		{ "replyXattr", n_reply_xattr }, { "replyDir", n_reply_dir },
		{ "notifyInvalInode", n_notify_inval_inode }, { "cacheAttr", n_cache_attr },
		{ "attrTicket", n_attr_ticket },
		{ "notifyInvalEntry", n_notify_inval_entry },
	};
	struct { const char *name; unsigned bit; } capv[] = {
		{ "ASYNC_READ", FUSE_CAP_ASYNC_READ }, { "ATOMIC_O_TRUNC", FUSE_CAP_ATOMIC_O_TRUNC },
		{ "SPLICE_WRITE", FUSE_CAP_SPLICE_WRITE }, { "SPLICE_MOVE", FUSE_CAP_SPLICE_MOVE },
		{ "AUTO_INVAL_DATA", FUSE_CAP_AUTO_INVAL_DATA }, { "READDIRPLUS", FUSE_CAP_READDIRPLUS },
		{ "READDIRPLUS_AUTO", FUSE_CAP_READDIRPLUS_AUTO }, { "ASYNC_DIO", FUSE_CAP_ASYNC_DIO },
		{ "WRITEBACK_CACHE", FUSE_CAP_WRITEBACK_CACHE }, { "PARALLEL_DIROPS", FUSE_CAP_PARALLEL_DIROPS },
		{ "HANDLE_KILLPRIV", FUSE_CAP_HANDLE_KILLPRIV }, { "CACHE_SYMLINKS", FUSE_CAP_CACHE_SYMLINKS },
		{ "EXPLICIT_INVAL_DATA", FUSE_CAP_EXPLICIT_INVAL_DATA }, { "DONT_MASK", FUSE_CAP_DONT_MASK },
	};
	for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
		napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &v);
		napi_set_named_property(env, exports, fns[i].name, v);
	}
	napi_create_array_with_length(env, CM_NOPS, &ops);
	for (int k = 0; k < CM_NOPS; k++) {
		napi_create_string_utf8(env, cm_op_names[k], NAPI_AUTO_LENGTH, &v);
		napi_set_element(env, ops, (uint32_t)k, v);
	}
	napi_set_named_property(env, exports, "ops", ops);
	napi_create_object(env, &caps);
	for (size_t i = 0; i < sizeof capv / sizeof capv[0]; i++) set_num(env, caps, capv[i].name, capv[i].bit);
	napi_set_named_property(env, exports, "caps", caps);
	set_num(env, exports, "entryStride", E_STRIDE);
	set_str(env, exports, "libfuseVersion", fuse_pkgversion());
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
