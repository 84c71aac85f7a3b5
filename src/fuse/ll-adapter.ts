// libfuse 3 low-level requests -> the vfs's InodeApi. Translation only: mode bits, times, reply
// shapes and errno (through errno.ts); the inode table, lookup counts and every semantic live in
// vfs/ (vfs/inodes.ts). The one state kept here is a listing snapshot per open folder handle, so
// that readdir offsets stay valid while a program pages through a folder that changes.
import fs from 'node:fs';
import type { FsStats, InoAttr, InodeApi, Invalidation, SetAttrChanges, TimeChange } from '../vfs/api.js';
import type { Logger } from '../log.js';
import { LONG_OPS, answerOnce, nameTooLong, type AdapterOptions } from './adapter.js';
import { errno } from './errno.js';
import {
  RENAME_EXCHANGE, RENAME_NOREPLACE,
  type Attr as LlAttr, type DirPlusEntry, type Handlers, type Request, type StatFs, type Timespec,
} from './lowlevel.js';

const S_IFREG = fs.constants.S_IFREG;
const S_IFDIR = fs.constants.S_IFDIR;
/** st_blksize: cp and stdio size their buffers from it; one request of the 1 MiB the session negotiates. */
const BLKSIZE = 1024 * 1024;

/** The fuse-native adapter's options, plus what only this backend does. */
export interface LlAdapterOptions extends AdapterOptions {
  /** opendir: let the kernel cache listings, kept while the vfs says the folder's is unchanged. */
  cacheReaddir?: boolean;
  /** Filled with the number of requests that reached JS, by op (status, bench). */
  counts?: Record<string, number>;
}

function ts(ms: number): Timespec {
  const sec = Math.floor(ms / 1000);
  // microsecond steps: the float milliseconds carry no more, and 999999999 ns artefacts would show
  const nsec = Math.min(999_999_000, Math.round((ms - sec * 1000) * 1000) * 1000);
  return { sec, nsec };
}

function ms(t: Timespec | 'now' | undefined): TimeChange | undefined {
  if (t === undefined || t === 'now') return t;
  return t.sec * 1000 + t.nsec / 1e6;
}

export function toLlAttr(a: InoAttr, uid: number, gid: number, umask = 0): LlAttr {
  return {
    ino: a.ino,
    mode: (a.type === 'dir' ? S_IFDIR : S_IFREG) | (a.perm & 0o7777 & ~umask),
    nlink: a.nlink ?? (a.type === 'dir' ? 2 : 1),
    uid,
    gid,
    size: a.size,
    blocks: Math.ceil(a.size / 512),
    blksize: BLKSIZE,
    atime: ts(a.atimeMs),
    mtime: ts(a.mtimeMs),
    ctime: ts(a.ctimeMs),
  };
}

function toStatFs(s: FsStats): StatFs {
  return {
    bsize: s.bsize, frsize: s.frsize || s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail,
    files: s.files, ffree: s.ffree, favail: s.favail, namemax: s.namemax || 255,
  };
}

/** Smallest record of a readdir / readdirplus answer (fuse_dirent, fuse_direntplus, 8-byte aligned):
 *  at most size / this many entries fit, so a page of a 100,000-name folder costs no more than that. */
const DIRENT_MIN = 32;
const DIRENTPLUS_MIN = 160;
const fits = (size: number, min: number) => Math.max(1, Math.ceil((size || 4096) / min));

interface Listing {
  names: string[];
  attrs: LlAttr[];
}

/** The handlers for LowLevelSession.mount. */
export function createLowLevelHandlers(vfs: InodeApi, o: LlAdapterOptions): Handlers {
  const { uid, gid, log } = o;
  const umask = o.umask ?? 0;
  const attr = (a: InoAttr) => toLlAttr(a, uid, gid, umask);
  const listings = new Map<number, Listing>();

  /** Whether op lines are logged: callers whose arguments cost something to format ask first. */
  const tracing = () => !!o.debug || log.level === 'trace';
  const trace = (req: Request, ...args: unknown[]) => {
    if (!tracing()) return;
    const line = `fuse ${req.op} ino=${req.ino || req.parent}${req.name ? ` ${JSON.stringify(req.name)}` : ''} ${args.map(String).join(' ')}`;
    if (o.debug) log.info(line); else log.trace(line);
  };

  /**
   * Runs one vfs call and answers the request exactly once: through ok() with its result, its
   * errno, or EIO when it outlives our bound (the vfs call may settle later; that answer is dropped,
   * the binding refuses a second reply anyway).
   */
  function run<T>(req: Request, call: () => Promise<T>, ok: (v: T) => void): void {
    if (req.name && nameTooLong(req.name)) { req.error(errno.ENAMETOOLONG); return; }
    if (req.op === 'rename' && nameTooLong(req.newName)) { req.error(errno.ENAMETOOLONG); return; }
    // a reply from ok() may have gone out before it threw: then the binding refuses a second one
    answerOnce(log, req.op, () => `${req.op} ino ${req.ino || req.parent}${req.name ? ` ${req.name}` : ''}`,
      LONG_OPS.has(req.op) ? o.longOpBoundMs : o.opBoundMs, !!o.debug, call, ok, (n) => { if (!req.replied) req.error(n); });
  }

  const okVoid = (req: Request) => () => { req.ok(); };

  /**
   * Right before the answer to a change in folders inos: their attributes after it, handed to the
   * binding (Request.dirAttr), for the GETATTR the kernel sends next (one round trip per file of
   * tar x or rm -rf). From the caches only: a folder whose attributes would need the server is
   * left to that GETATTR, never a wait added to the change.
   */
  const handOver = (req: Request, ...inos: number[]) => {
    for (const ino of new Set(inos)) {
      // the ticket first: a change of the folder arriving while the attributes are read voids it
      const ticket = req.dirTicket(ino);
      if (ticket < 0) continue;
      let a: InoAttr | undefined;
      try { a = vfs.cachedAttr(ino); } catch { a = undefined; }
      if (a?.type === 'dir') req.dirAttr(attr(a), ticket);
    }
  };

  /** The folder's listing for a paging reader: taken at offset 0 (or when the kernel skipped it). */
  async function listing(req: Request): Promise<Listing> {
    const have = req.fh !== undefined ? listings.get(req.fh) : undefined;
    if (have && req.offset > 0) return have;
    const r = await vfs.readdir(req.ino, req.fh);
    const dot = (ino: number): LlAttr => ({ ino, mode: S_IFDIR | 0o755, nlink: 2, size: 0, atime: ts(0), mtime: ts(0), ctime: ts(0) });
    const l: Listing = { names: ['.', '..'], attrs: [dot(r.self), dot(r.parent)] };
    for (const e of r.entries) {
      l.names.push(e.name);
      l.attrs.push(attr(e.attr));
    }
    if (req.fh !== undefined) listings.set(req.fh, l);
    return l;
  }

  const h: Handlers = {
    lookup(req) {
      trace(req);
      // a name that is not there is an answer, not a failure (every file a program makes is one)
      run(req, () => vfs.find(req.parent, req.name), (a) => { if (a) req.entry({ attr: attr(a) }); else req.error(errno.ENOENT); });
    },

    forget(ino, n) {
      vfs.forget(ino, n);
    },

    getattr(req) {
      trace(req, req.fh ?? '');
      run(req, () => vfs.getattr(req.ino, req.fh), (a) => { req.attr(attr(a)); });
    },

    setattr(req) {
      const c = req.changes;
      if (tracing()) trace(req, JSON.stringify(c));
      const changes: SetAttrChanges = {
        size: c.size,
        mode: c.mode === undefined ? undefined : c.mode & 0o7777,
        uid: c.uid,
        gid: c.gid,
        atime: ms(c.atime),
        mtime: ms(c.mtime),
      };
      run(req, () => vfs.setattr(req.ino, changes, req.fh), (a) => { req.attr(attr(a)); });
    },

    opendir(req) {
      trace(req);
      run(req, () => vfs.opendir(req.ino), (fh) => {
        // keepCache on a folder keeps the kernel's cached listing (else dropped at this open)
        req.open(fh, o.cacheReaddir ? { cacheReaddir: true, keepCache: vfs.listingUnchanged(req.ino) } : undefined);
      });
    },

    readdir(req) {
      trace(req, req.offset);
      run(req, () => listing(req), (l) => {
        const out = [];
        const end = Math.min(l.names.length, req.offset + fits(req.size, DIRENT_MIN));
        for (let i = req.offset; i < end; i++) out.push({ name: l.names[i]!, ino: l.attrs[i]!.ino, mode: l.attrs[i]!.mode, off: i + 1 });
        req.dir(out);
      });
    },

    readdirplus(req) {
      trace(req, req.offset);
      run(req, () => listing(req), (l) => {
        const out: DirPlusEntry[] = [];
        const end = Math.min(l.names.length, req.offset + fits(req.size, DIRENTPLUS_MIN));
        for (let i = req.offset; i < end; i++) out.push({ name: l.names[i]!, off: i + 1, entry: { attr: l.attrs[i]! } });
        const sent = req.dirplus(out);
        // each entry that went into the buffer is a kernel reference, but . and .. (never linked)
        for (let i = 0; i < sent; i++) {
          const name = out[i]!.name;
          if (name !== '.' && name !== '..') vfs.counted(out[i]!.entry.attr.ino);
        }
      });
    },

    releasedir(req) {
      trace(req);
      if (req.fh !== undefined) listings.delete(req.fh);
      run(req, () => vfs.releasedir(req.ino, req.fh ?? 0), okVoid(req));
    },

    fsyncdir(req) {
      // deletes of names in the folder are written back: fsync of it waits for them (and reports a refusal)
      trace(req);
      if (!vfs.fsyncdir) { req.ok(); return; }
      run(req, () => vfs.fsyncdir!(req.ino), okVoid(req));
    },

    open(req) {
      if (tracing()) trace(req, req.flags.toString(8));
      run(req, () => vfs.open(req.ino, req.flags), (r) => { req.open(r.fh, { keepCache: r.keepCache, noFlush: r.noFlush }); });
    },

    create(req) {
      if (tracing()) trace(req, req.mode.toString(8), req.flags.toString(8));
      run(req, () => vfs.create(req.parent, req.name, req.mode & 0o7777, req.flags), (r) => {
        handOver(req, req.parent);
        req.create({ attr: attr(r.attr) }, r.fh);
      });
    },

    read(req) {
      trace(req, req.fh, req.size, req.offset);
      // The binding's data thread reads the bytes from the cache file and answers: the JS thread
      // neither copies them nor writes them to the kernel.
      run(req, () => vfs.readExtent(req.fh!, req.size, req.offset), (x) => { req.dataFromFdAsync(x.fd, x.offset, x.length); });
    },

    write(req) {
      const data = req.data;
      trace(req, req.fh, data.length, req.offset);
      run(req, () => vfs.write(req.fh!, data, data.length, req.offset), (n) => { req.written(n); });
    },

    flush(req) {
      trace(req, req.fh);
      run(req, () => vfs.flush(req.fh!), okVoid(req));
    },

    release(req) {
      trace(req, req.fh);
      run(req, () => vfs.release(req.fh!), okVoid(req));
    },

    fsync(req) {
      trace(req, req.fh, req.datasync);
      run(req, () => vfs.fsync(req.fh!, req.datasync), okVoid(req));
    },

    mkdir(req) {
      if (tracing()) trace(req, req.mode.toString(8));
      run(req, () => vfs.mkdir(req.parent, req.name, req.mode & 0o7777), (a) => { handOver(req, req.parent); req.entry({ attr: attr(a) }); });
    },

    unlink(req) {
      trace(req);
      run(req, () => vfs.unlink(req.parent, req.name), () => { handOver(req, req.parent); req.ok(); });
    },

    rmdir(req) {
      trace(req);
      run(req, () => vfs.rmdir(req.parent, req.name), () => { handOver(req, req.parent); req.ok(); });
    },

    rename(req) {
      if (tracing()) trace(req, req.newParent, JSON.stringify(req.newName), req.flags);
      // EXCHANGE would need a two-sided server move the services do not have; WHITEOUT is for overlayfs
      if (req.flags & ~RENAME_NOREPLACE) { req.error(errno.EINVAL); return; }
      void RENAME_EXCHANGE;
      const noReplace = !!(req.flags & RENAME_NOREPLACE);
      run(req, () => vfs.rename(req.parent, req.name, req.newParent, req.newName, { noReplace }), () => {
        handOver(req, req.parent, req.newParent);
        req.ok();
      });
    },

    statfs(req) {
      trace(req);
      run(req, () => vfs.statfs(), (s) => { req.statfs(toStatFs(s)); });
    },

    access(req) {
      trace(req, req.mask);
      run(req, () => vfs.access(req.ino, req.mask), okVoid(req));
    },

    getxattr(req) {
      trace(req, req.size);
      run(req, () => vfs.getxattr(req.ino, req.name), (v) => { req.xattr(v); });
    },

    listxattr(req) {
      trace(req, req.size);
      run(req, () => vfs.listxattr(req.ino), (names) => { req.xattr(Buffer.from(names.map((n) => n + '\0').join(''), 'utf8')); });
    },

    setxattr(req) {
      trace(req);
      run(req, () => vfs.setxattr(req.ino, req.name, req.value, req.flags), okVoid(req));
    },

    removexattr(req) {
      trace(req);
      run(req, () => vfs.removexattr(req.ino, req.name), okVoid(req));
    },

    // Neither service has links or special files: EPERM, as POSIX says for a file system that
    // does not support the kind of node asked for.
    link(req) { req.error(errno.EPERM); },
    symlink(req) { req.error(errno.EPERM); },
    mknod(req) { req.error(errno.EPERM); },
    readlink(req) { req.error(errno.EINVAL); },
  };
  const counts = o.counts;
  if (counts) {
    for (const [op, fn] of Object.entries(h) as [string, (...a: unknown[]) => void][]) {
      (h as Record<string, unknown>)[op] = (...a: unknown[]) => { counts[op] = (counts[op] ?? 0) + 1; fn(...a); };
    }
  }
  return h;
}

/** What forwardInvalidations needs of the session (LowLevelSession). */
export interface Notifier {
  notifyInvalInode(ino: number): Promise<number>;
  notifyInvalEntry(parent: number, name: string): Promise<number>;
}

/**
 * The vfs's invalidations (server changes it learned of) -> the kernel, one notification at a
 * time. Why one: each runs on a libuv pool thread (never the JS thread: the kernel may hold the
 * inode or the parent's lock a notification needs while it waits for our answer to another
 * request, and only the JS thread answers). A notification waiting on such a lock holds its pool
 * thread until that request is answered; several could take every pool thread, and the answer
 * itself may need one (cache file I/O), which would deadlock. Queued duplicates are merged.
 * Returns the stop function (before unmount).
 */
export function forwardInvalidations(vfs: InodeApi, s: Notifier, log: Logger): () => void {
  const queue = new Map<string, Invalidation>();
  let running = false;
  let stopped = false;
  const pump = async () => {
    running = true;
    while (queue.size > 0 && !stopped) {
      const [k, x] = queue.entries().next().value as [string, Invalidation];
      queue.delete(k);
      try {
        const r = 'ino' in x ? await s.notifyInvalInode(x.ino) : await s.notifyInvalEntry(x.parent, x.name);
        // -ENOENT: the kernel no longer holds it, nothing to drop
        if (r < 0 && r !== -errno.ENOENT) log.debug(`kernel invalidation ${k}: errno ${-r}`);
      } catch (e) {
        log.debug(`kernel invalidation ${k}: ${(e as Error).message}`);
      }
    }
    running = false;
  };
  vfs.onInvalidate((x) => {
    if (stopped) return;
    const k = 'ino' in x ? `ino ${x.ino}` : `entry ${x.parent}/${x.name}`;
    queue.set(k, x);
    if (!running) void pump();
  });
  return () => { stopped = true; queue.clear(); vfs.onInvalidate(undefined); };
}
