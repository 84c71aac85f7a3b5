// FUSE ops -> VfsApi calls. Translation only: mode bits, times, uid/gid, callback shapes and
// errno (through errno.ts). Semantics live in vfs/; nothing here decides what an op means.
import fs from 'node:fs';
import type { Attr, FsStats, VfsApi } from '../vfs/api.js';
import type { Logger } from '../log.js';
import { errno, toErrno } from './errno.js';

const S_IFREG = fs.constants.S_IFREG;
const S_IFDIR = fs.constants.S_IFDIR;
/** st_blksize: programs size their I/O buffers from it (cp, stdio); matches the 128 KiB libfuse 2 max_write. */
const BLKSIZE = 128 * 1024;
/**
 * fuse-native passes times as milliseconds; libfuse 2 turns UTIME_NOW/UTIME_OMIT into
 * {tv_sec: 0, tv_nsec: 2^30-1 | 2^30-2}, which arrive here as 1073 ms.
 */
const UTIME_SPECIAL_MS = 1073;

export interface AdapterOptions {
  uid: number;
  gid: number;
  log: Logger;
  /** Answer EIO when a vfs call has not settled after this long (vfs opTimeoutMs + margin). */
  opBoundMs: number;
  /** Same for calls that wait for uploads to reach the server (flush, release, fsync). */
  longOpBoundMs: number;
  /** Log every op at info level (mount -o debug). */
  debug?: boolean;
  /** Permission bits taken away from every file and folder (mount -o umask=022, as sshfs). */
  umask?: number;
}

/** Ops whose vfs call may wait for a whole upload. */
export const LONG_OPS = new Set(['flush', 'release', 'fsync', 'fsyncdir']);

export interface FuseStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  blksize: number;
  blocks: number;
  mtime: number;
  atime: number;
  ctime: number;
}

export function toStat(a: Attr, uid: number, gid: number, umask = 0): FuseStat {
  return {
    mode: (a.type === 'dir' ? S_IFDIR : S_IFREG) | (a.perm & 0o7777 & ~umask),
    uid,
    gid,
    size: a.size,
    nlink: a.nlink || (a.type === 'dir' ? 2 : 1),
    blksize: BLKSIZE,
    blocks: Math.ceil(a.size / 512),
    mtime: a.mtimeMs,
    atime: a.atimeMs,
    ctime: a.ctimeMs,
  };
}

export interface FuseStatfs extends FsStats {
  fsid: number;
  flag: number;
}

/** fuse-native hands statfs to C as uint32s: scale the block size up until the counts fit. */
export function toStatfs(s: FsStats): FuseStatfs {
  let { frsize, blocks, bfree, bavail } = s;
  let bsize = s.bsize;
  if (!frsize) frsize = bsize || 4096;
  while (blocks > 0xffffffff) {
    frsize *= 2;
    bsize = Math.max(bsize, frsize);
    blocks = Math.floor(blocks / 2);
    bfree = Math.floor(bfree / 2);
    bavail = Math.floor(bavail / 2);
  }
  const u32 = (n: number) => Math.max(0, Math.min(0xffffffff, Math.floor(n)));
  return {
    bsize: u32(bsize), frsize: u32(frsize), blocks: u32(blocks), bfree: u32(bfree), bavail: u32(bavail),
    files: u32(s.files), ffree: u32(s.ffree), favail: u32(s.favail), namemax: u32(s.namemax || 255),
    fsid: 0, flag: 0,
  };
}

/** NAME_MAX, also what statfs reports as namemax. */
const NAME_MAX = 255;
/** libfuse 2's name for an unlinked open file: `.fuse_hidden%08x%08x` (node id, counter). */
const HIDDEN_NAME = /^\.fuse_hidden[0-9a-f]{16}$/;
/** Ops on an open handle: the kernel sends them per 128 KiB, their path was checked at open. */
const DATA_OPS = new Set(['read', 'write', 'flush', 'release', 'fsync', 'ftruncate', 'fgetattr', 'releasedir', 'fsyncdir']);

/** PATH_MAX with its NUL: the longest path inside the mount a program can name in one call. */
const PATH_MAX = 4096;
/** Errors that are ordinary answers (a probe for a name or attribute that is not there). */
const EXPECTED_ERRNOS = new Set([errno.ENOENT, errno.ENODATA, errno.ENOTSUP, errno.ENOSYS, errno.ERANGE, errno.EEXIST]);

/**
 * The kernel never checks FUSE names against NAME_MAX (it passes up to 1024 bytes): a longer
 * component is refused here, before any lookup, as POSIX has ENAMETOOLONG win over ENOENT. Nor
 * does it bound the whole path (a program that cd's down step by step reaches any depth): what
 * no program could name from the mount's root is refused too, rather than sent to the service.
 */
export function nameTooLong(p: string | undefined): boolean {
  // ops on an open handle may come without a usable path (libfuse 2 has none for a file whose
  // folder was removed while it was open): that is no name at all
  if (typeof p !== 'string' || !p) return false;
  if (p.length >= PATH_MAX / 4 && Buffer.byteLength(p) >= PATH_MAX) return true;
  for (const c of p.split('/')) if (c.length > NAME_MAX / 4 && Buffer.byteLength(c) > NAME_MAX) return true;
  return false;
}

function fixTime(ms: number, now: number): number {
  return ms === UTIME_SPECIAL_MS ? now : ms;
}

type Cb = (...args: any[]) => void;
export type FuseOps = Record<string, (...args: any[]) => void>;

/**
 * The bounds of requests in flight, one list per bound length. A bound per request as its own
 * setTimeout cost the JS thread a timer object, an insert and a clearTimeout for every FUSE op
 * (1.2-1.6 us hot in a loop, up to ~7 us per op in a CPU profile of small-file creates); here an
 * op costs a Map insert and a delete (~0.3 us), and one timer per list waits for the oldest. Same
 * bound for all in a list, so insertion order is deadline order. Monotonic time: a clock step must
 * not time out a request early.
 */
class BoundList {
  private readonly inFlight = new Map<number, { at: number; expire: () => void }>();
  private timer: NodeJS.Timeout | null = null;
  private seq = 0;

  constructor(private readonly boundMs: number) {}

  add(expire: () => void): number {
    const id = ++this.seq;
    if (this.inFlight.size === 0) this.timer?.ref();
    this.inFlight.set(id, { at: performance.now() + this.boundMs, expire });
    if (!this.timer) this.arm(this.boundMs);
    return id;
  }

  settle(id: number): void {
    // an emptied list's timer keeps running (re-arming costs more) but holds no process alive
    if (this.inFlight.delete(id) && this.inFlight.size === 0) this.timer?.unref();
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => this.sweep(), Math.max(1, Math.ceil(ms)));
  }

  private sweep(): void {
    this.timer = null;
    const now = performance.now();
    const expired: (() => void)[] = [];
    for (const [id, e] of this.inFlight) {
      if (e.at > now) { this.arm(e.at - now); break; }
      this.inFlight.delete(id);
      expired.push(e.expire);
    }
    // after the list is consistent again: an answer may start a request (add) at once
    for (const expire of expired) expire();
  }
}

const boundLists = new Map<number, BoundList>();

/** EIO lines per EIO_WINDOW_MS: a server that is down fails every request, the log says so a few times. */
const EIO_LINES = 10;
const EIO_WINDOW_MS = 10_000;
/** Per drive (its log): a window opened by its first EIO; at its end, the count of lines left out. */
const eioWindows = new WeakMap<Logger, { lines: number; dropped: number }>();

/**
 * An EIO reached a program: a failure without a cause it can see (the drive's other errnos say what
 * went wrong themselves), so the cause goes to the log at warn, where a user (and a failed test's
 * dump of the drive's log) finds it.
 */
function eioLine(log: Logger, line: string): void {
  let w = eioWindows.get(log);
  if (!w) {
    const win = { lines: 0, dropped: 0 };
    eioWindows.set(log, w = win);
    setTimeout(() => {
      eioWindows.delete(log);
      if (win.dropped > 0) log.warn(`${win.dropped} more requests answered EIO in the last ${EIO_WINDOW_MS / 1000} s (not logged one by one)`);
    }, EIO_WINDOW_MS).unref();
  }
  if (w.lines++ < EIO_LINES) log.warn(line);
  else w.dropped++;
}

/**
 * Runs one vfs call for a FUSE request and settles it exactly once (both backends): ok() with its
 * result, fail() with its errno, or fail(EIO) when it outlives boundMs (the vfs call may settle
 * later; that answer is dropped) or when ok() throws. `what` names the request in log lines (made
 * only when a line is written).
 */
export function answerOnce<T>(log: Logger, op: string, what: () => string, boundMs: number, debug: boolean,
  call: () => Promise<T>, ok: (v: T) => void, fail: (errno: number) => void): void {
  let done = false;
  let bounds = boundLists.get(boundMs);
  if (!bounds) boundLists.set(boundMs, bounds = new BoundList(boundMs));
  const bound = bounds.add(() => {
    if (done) return;
    done = true;
    log.warn(`${what()}: no answer from the drive after ${boundMs} ms, answered EIO`);
    fail(errno.EIO);
  });
  let p: Promise<T>;
  try {
    p = call();
  } catch (e) {
    p = Promise.reject(e);
  }
  p.then(
    (v) => {
      if (done) return;
      done = true;
      bounds.settle(bound);
      try {
        ok(v);
      } catch (e) {
        log.error(`${what()}: answering the kernel failed: ${(e as Error).message}`);
        fail(errno.EIO);
      }
    },
    (e) => {
      if (done) return;
      done = true;
      bounds.settle(bound);
      const n = toErrno(e, log, op);
      if (n === errno.EIO && !debug) eioLine(log, `${what()}: answered EIO: ${(e as Error)?.message ?? e}`);
      // Answers programs ask for all the time (a missing name, no such xattr: every exec asks for
      // security.capability) are FUSE tracing, not news: -vv stays readable.
      if (debug || log.level === 'trace' || (log.level === 'debug' && !EXPECTED_ERRNOS.has(n))) {
        (debug ? log.info : EXPECTED_ERRNOS.has(n) ? log.trace : log.debug)(`${what()}: errno ${n} (${(e as Error)?.message ?? e})`);
      }
      fail(n);
    },
  );
}

/**
 * The ops object for fuse-native. Callback conventions follow node_modules/fuse-native/index.js:
 * most ops answer cb(errOrZero, result); read/write answer cb(bytes) or cb(-errno).
 */
export function createOps(vfs: VfsApi, o: AdapterOptions): FuseOps {
  const { uid, gid, log } = o;
  const umask = o.umask ?? 0;

  /**
   * Runs one vfs call and answers the kernel exactly once: with its result, its errno, or EIO
   * when it outlives our bound (fuse-native's own timeout is set above this, so its ETIMEDOUT
   * never wins). The vfs call may still settle later; that answer is dropped.
   */
  function run<T>(op: string, path: string, call: () => Promise<T>, ok: (v: T) => void, fail: (errNeg: number) => void, to?: string): void {
    // data ops name a path already checked at open; sparing the split keeps them allocation-light
    if (!DATA_OPS.has(op) && (nameTooLong(path) || nameTooLong(to))) return fail(-errno.ENAMETOOLONG);
    answerOnce(log, op, () => `${op} ${path}`, LONG_OPS.has(op) ? o.longOpBoundMs : o.opBoundMs, !!o.debug, call, ok, (n) => fail(-n));
  }

  /** Ops answering cb(0) or cb(-errno). */
  const voidOp = (op: string, path: string, cb: Cb, call: () => Promise<unknown>, to?: string) =>
    run(op, path, call, () => cb(0), (n) => cb(n), to);

  const tracing = () => o.debug || log.level === 'trace';
  const trace = (op: string, ...args: unknown[]) => {
    if (o.debug) log.info(`fuse ${op} ${args.map((a) => (typeof a === 'string' ? JSON.stringify(a) : String(a))).join(' ')}`);
    else if (log.level === 'trace') log.trace(`fuse ${op} ${args.map((a) => (typeof a === 'string' ? JSON.stringify(a) : String(a))).join(' ')}`);
  };

  return {
    init(cb: Cb) {
      cb(0);
    },

    getattr(path: string, cb: Cb) {
      trace('getattr', path);
      run('getattr', path, () => vfs.getattr(path), (a) => cb(0, toStat(a, uid, gid, umask)), (n) => cb(n));
    },

    fgetattr(path: string, fh: number, cb: Cb) {
      trace('fgetattr', path, fh);
      run('fgetattr', path, () => vfs.fgetattr(path, fh), (a) => cb(0, toStat(a, uid, gid, umask)), (n) => cb(n));
    },

    readdir(path: string, cb: Cb) {
      trace('readdir', path);
      run('readdir', path, () => vfs.readdir(path), (listed) => {
        const dot: FuseStat = { mode: S_IFDIR | (0o755 & ~umask), uid, gid, size: 0, nlink: 2, blksize: BLKSIZE, blocks: 0, mtime: 0, atime: 0, ctime: 0 };
        const outNames = ['.', '..'];
        const outStats: FuseStat[] = [dot, dot];
        // libfuse 2 uses only the type bits of these (d_type)
        for (const { name, attr } of listed) {
          outNames.push(name);
          outStats.push(toStat(attr, uid, gid, umask));
        }
        cb(0, outNames, outStats);
      }, (n) => cb(n));
    },

    opendir(path: string, _flags: number, cb: Cb) {
      trace('opendir', path);
      run('opendir', path, () => vfs.opendir(path), (fh) => cb(0, fh), (n) => cb(n));
    },

    releasedir(path: string, fh: number, cb: Cb) {
      trace('releasedir', path, fh);
      voidOp('releasedir', path, cb, () => vfs.releasedir(path, fh));
    },

    fsyncdir(path: string, _datasync: number, _fh: number, cb: Cb) {
      // deletes of names in the folder are written back: fsync of it waits for them (and reports a refusal)
      if (!vfs.fsyncdir) { cb(0); return; }
      voidOp('fsyncdir', path, cb, () => vfs.fsyncdir!(path));
    },

    open(path: string, flags: number, cb: Cb) {
      trace('open', path, flags.toString(8));
      run('open', path, () => vfs.open(path, flags), (fh) => cb(0, fh), (n) => cb(n));
    },

    create(path: string, mode: number, cb: Cb) {
      trace('create', path, mode.toString(8));
      // fuse-native does not pass create's open flags on; the kernel applies O_APPEND/O_EXCL
      // itself, so read-write is the right handle for any of them.
      const flags = fs.constants.O_CREAT | fs.constants.O_RDWR;
      run('create', path, () => vfs.create(path, mode & 0o7777, flags), (fh) => cb(0, fh), (n) => cb(n));
    },

    read(path: string, fh: number, buf: Buffer, len: number, pos: number, cb: Cb) {
      if (tracing()) trace('read', path, fh, len, pos);
      run('read', path, () => vfs.read(path, fh, buf, len, pos), (n) => cb(n), (n) => cb(n));
    },

    write(path: string, fh: number, buf: Buffer, len: number, pos: number, cb: Cb) {
      if (tracing()) trace('write', path, fh, len, pos);
      run('write', path, () => vfs.write(path, fh, buf, len, pos), (n) => cb(n), (n) => cb(n));
    },

    flush(path: string, fh: number, cb: Cb) {
      trace('flush', path, fh);
      voidOp('flush', path, cb, () => vfs.flush(path, fh));
    },

    release(path: string, fh: number, cb: Cb) {
      trace('release', path, fh);
      voidOp('release', path, cb, () => vfs.release(path, fh));
    },

    fsync(path: string, datasync: number, fh: number, cb: Cb) {
      trace('fsync', path, fh, datasync);
      voidOp('fsync', path, cb, () => vfs.fsync(path, fh, !!datasync));
    },

    truncate(path: string, size: number, cb: Cb) {
      trace('truncate', path, size);
      voidOp('truncate', path, cb, () => vfs.truncate(path, size));
    },

    ftruncate(path: string, fh: number, size: number, cb: Cb) {
      trace('ftruncate', path, fh, size);
      voidOp('ftruncate', path, cb, () => vfs.ftruncate(path, fh, size));
    },

    unlink(path: string, cb: Cb) {
      trace('unlink', path);
      voidOp('unlink', path, cb, () => vfs.unlink(path));
    },

    mkdir(path: string, mode: number, cb: Cb) {
      trace('mkdir', path, mode.toString(8));
      voidOp('mkdir', path, cb, () => vfs.mkdir(path, mode & 0o7777));
    },

    rmdir(path: string, cb: Cb) {
      trace('rmdir', path);
      voidOp('rmdir', path, cb, () => vfs.rmdir(path));
    },

    rename(from: string, to: string, cb: Cb) {
      trace('rename', from, to);
      // libfuse 2 "hides" a file unlinked while open by renaming it to .fuse_hidden<node><counter>
      // and unlinks that name at the last release: for the server it is a delete now (POSIX), the
      // open handles keep its content locally.
      if (HIDDEN_NAME.test(to.slice(to.lastIndexOf('/') + 1))) {
        voidOp('unlink', from, cb, () => vfs.unlink(from, { keepOpenAs: to }));
        return;
      }
      voidOp('rename', from, cb, () => vfs.rename(from, to), to);
    },

    statfs(path: string, cb: Cb) {
      trace('statfs', path);
      run('statfs', path, () => vfs.statfs(path), (s) => cb(0, toStatfs(s)), (n) => cb(n));
    },

    utimens(path: string, atime: number, mtime: number, cb: Cb) {
      trace('utimens', path, atime, mtime);
      // fuse-native 2.2.6 passes atime in both slots (see native-notes/fuse.md): the value we get
      // is the only time we know, so it sets both.
      // one clock reading: "now" in both slots is the same instant (touch sets atime == mtime)
      const now = Date.now();
      voidOp('utimens', path, cb, () => vfs.utimens(path, fixTime(atime, now), fixTime(mtime, now)));
    },

    chmod(path: string, mode: number, cb: Cb) {
      trace('chmod', path, mode.toString(8));
      voidOp('chmod', path, cb, () => vfs.chmod(path, mode & 0o7777));
    },

    chown(path: string, _uid: number, _gid: number, cb: Cb) {
      // Neither service has owners: accepted quietly (cp -p, rsync -o), but only for paths that exist.
      trace('chown', path);
      voidOp('chown', path, cb, () => vfs.getattr(path));
    },

    access(path: string, mode: number, cb: Cb) {
      trace('access', path, mode);
      voidOp('access', path, cb, () => vfs.access(path, mode));
    },

    getxattr(path: string, name: string, _position: number, cb: Cb) {
      trace('getxattr', path, name);
      run('getxattr', path, () => vfs.getxattr(path, name), (v) => cb(0, v), (n) => cb(n));
    },

    listxattr(path: string, cb: Cb) {
      trace('listxattr', path);
      run('listxattr', path, () => vfs.listxattr(path), (names) => cb(0, names), (n) => cb(n));
    },

    setxattr(path: string, name: string, value: Buffer, _position: number, flags: number, cb: Cb) {
      trace('setxattr', path, name);
      // value is native memory that fuse-native detaches once we answer: the vfs gets a copy.
      const copy = Buffer.from(value);
      voidOp('setxattr', path, cb, () => vfs.setxattr(path, name, copy, flags));
    },

    removexattr(path: string, name: string, cb: Cb) {
      trace('removexattr', path, name);
      voidOp('removexattr', path, cb, () => vfs.removexattr(path, name));
    },

    // Neither service has links or special files; POSIX answers EPERM for a file system that
    // does not support the kind of node asked for (link(2), symlink(2), mknod(2)).
    link(_from: string, _to: string, cb: Cb) {
      cb(-errno.EPERM);
    },
    symlink(_from: string, _to: string, cb: Cb) {
      cb(-errno.EPERM);
    },
    mknod(_path: string, _mode: number, _dev: number, cb: Cb) {
      cb(-errno.EPERM);
    },
    readlink(_path: string, cb: Cb) {
      cb(-errno.EINVAL);
    },
  };
}
