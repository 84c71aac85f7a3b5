// cloudmount's own FUSE binding on libfuse 3's low-level (inode) API: the TypeScript face of
// native/cmfuse3.c. Not wired to the vfs yet (issue 12, first milestone); fuse-native stays the
// portable backend. native-notes/lowlevel.md explains the threading model and the contract.
//
// Contract, in short:
//  - Everything is by inode number (`ino`, `parent`); 1 is the root. The kernel counts lookups:
//    every successful entry()/create() reply, and every readdirplus entry that went into the
//    buffer (except "." and ".." and ino 0), adds one to that inode's lookup count; forget(ino, n)
//    takes n away. An inode may be dropped only when its count is 0 (and it has no links).
//  - Every request gets exactly one reply. Reply methods return false when the request was already
//    answered or the session has ended; they never throw for that. A handler that throws, or whose
//    promise rejects, without replying gets EIO (and the session emits 'error').
//  - Replies may be sent at any time from the JS thread; nothing native waits for them, so a slow
//    handler blocks only its own request. Buffers passed to bytes() are copied to the kernel before
//    it returns. Write data (req.data) is owned by JS: keep it as long as you like.
//  - Names are UTF-8 strings. A name that is not valid UTF-8 is answered natively (ENOENT for
//    lookup, EILSEQ otherwise). xattr names outside user.* are answered natively too (getxattr and
//    setxattr ENOTSUP, removexattr ENODATA): JS sees only user.* names.
//  - An interrupted request (the caller got a signal) aborts req.signal; answer EINTR soon.
//  - Ops without a handler are not registered: the kernel gets libfuse's default (ENOSYS, or
//    success for open/opendir/release/releasedir/forget), and learns not to ask again.
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanUnmount, findMountAsync, isMountedAsync, lazyUnmount } from '../util/mounts.js';
import { errno } from './errno.js';


// ---------- the native binding ----------

interface RawRequest {
  op: number;
  id: number;
  uid: number;
  gid: number;
  pid: number;
  [k: string]: unknown;
}

interface Binding {
  ops: string[];
  caps: Record<string, number>;
  entryStride: number;
  libfuseVersion: string;
  mount(mnt: string, args: string[], cfg: Record<string, unknown>, onBatch: (batch: RawRequest[]) => void): object;
  destroy(h: object): boolean;
  ref(h: object, on: boolean): void;
  stats(h: object): NativeStats;
  replyErr(h: object, id: number, errno: number): boolean;
  replyEntry(h: object, id: number, e: Float64Array): boolean;
  replyCreate(h: object, id: number, e: Float64Array, fh: number, openFlags: number): boolean;
  replyAttr(h: object, id: number, e: Float64Array): boolean;
  replyOpen(h: object, id: number, fh: number, openFlags: number): boolean;
  replyWrite(h: object, id: number, n: number): boolean;
  replyBuf(h: object, id: number, buf?: Uint8Array | null, len?: number): boolean;
  replyFd(h: object, id: number, fd: number, offset: number, len: number, splice: boolean): boolean;
  replyFdAsync(h: object, id: number, fd: number, offset: number, len: number): boolean;
  replyReadlink(h: object, id: number, target: string): boolean;
  replyStatfs(h: object, id: number, v: Float64Array): boolean;
  replyXattr(h: object, id: number, size: number): boolean;
  replyDir(h: object, id: number, names: string[], e: Float64Array, first: number): number | false;
  attrTicket(h: object, id: number, ino: number): number;
  cacheAttr(h: object, id: number, e: Float64Array, ticket: number): boolean;
  notifyInvalInode(h: object, ino: number, off: number, len: number): Promise<number>;
  notifyInvalEntry(h: object, parent: number, name: string): Promise<number>;
}

export interface NativeStats {
  /** Requests the reader threads decoded, by op (including the ones answered natively). */
  received: Record<string, number>;
  /** Requests answered without a trip to JS (xattr probes outside user.*, non-UTF-8 names). */
  nativeAnswered: number;
  /** GETATTRs of folders answered from the attributes JS handed over with a change (Request.dirAttr). */
  attrSlotHits?: number;
  /** READs answered by the data thread (dataFromFdAsync). */
  dataThreadReplies?: number;
  /** JS wake-ups, requests handed over, the largest batch. */
  batches: number;
  delivered: number;
  maxBatch: number;
  /** Write bytes handed to JS without a copy. */
  bytesZeroCopy: number;
  /** FUSE_INTERRUPTs for requests JS held (each aborts that Request's signal). */
  interrupts: number;
  /** Requests JS holds and has not answered. */
  outstanding: number;
  threads: number;
  /** spinUs > 0: times the JS thread polled its event loop before sleeping, and how many of them
   *  ended because something arrived (a request, an answer from the threadpool, a socket). */
  spins: number;
  spinHits: number;
  latency: OpLatency;
}

/** Per op: requests answered, and the sums over them of microseconds from a reader decoding the
 *  request to JS receiving it (handoffUs) and to JS answering it (totalUs). */
export type OpLatency = Record<string, { n: number; handoffUs: number; totalUs: number }>;

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
let binding: Binding | undefined;
let loadError: string | undefined;

/** Where the addon is looked for: CMFUSE3_ADDON, then build/Release (node-gyp), then build/Debug. */
function candidates(): string[] {
  const c = [path.join(root, 'build', 'Release', 'cmfuse3.node'), path.join(root, 'build', 'Debug', 'cmfuse3.node')];
  if (process.env.CMFUSE3_ADDON) c.unshift(process.env.CMFUSE3_ADDON);
  return c;
}

/** Loads the addon once; says why not when it cannot (not Linux, not built, libfuse3 missing). */
export function lowlevelAvailable(): { ok: true; libfuseVersion: string } | { ok: false; reason: string } {
  if (!binding && !loadError) {
    if (process.platform !== 'linux') loadError = 'the libfuse 3 backend is Linux-only (fuse-native serves macOS)';
    else {
      const file = candidates().find((p) => existsSync(p));
      if (!file) loadError = 'cmfuse3 addon not built: run `npm run build:native` (needs libfuse3-dev, pkg-config, a C compiler)';
      else {
        try {
          binding = createRequire(import.meta.url)(file) as Binding;
        } catch (e) {
          loadError = `cmfuse3 addon at ${file} does not load: ${(e as Error).message}`;
        }
      }
    }
  }
  return binding ? { ok: true, libfuseVersion: binding.libfuseVersion } : { ok: false, reason: loadError! };
}

function native(): Binding {
  const a = lowlevelAvailable();
  if (!a.ok) throw new Error(a.reason);
  return binding!;
}

// ---------- types of the contract ----------

export interface Timespec {
  sec: number;
  nsec: number;
}

export interface Attr {
  ino: number;
  mode: number;
  nlink?: number;
  uid?: number;
  gid?: number;
  rdev?: number;
  size: number;
  /** 512-byte blocks; computed from size when absent. */
  blocks?: number;
  /** What programs see as st_blksize (cat and cp size their reads from it). */
  blksize?: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
}

export interface Entry {
  attr: Attr;
  generation?: number;
  /** Seconds the kernel may keep the attributes / the name; default: the session's options. */
  attrTimeout?: number;
  entryTimeout?: number;
}

export interface DirEntry {
  name: string;
  /** Cookie of the NEXT entry: a later readdir with this offset continues after this one. */
  off: number;
  /** readdir needs ino and the type bits of mode; readdirplus needs a full Entry (ino 0 = no lookup). */
  ino: number;
  mode: number;
}

export interface DirPlusEntry {
  name: string;
  off: number;
  entry: Entry;
}

export interface OpenReply {
  /** Bypass the page cache for this open (reads and writes go straight to us, in the caller's sizes). */
  directIo?: boolean;
  /** Keep what the page cache holds for this inode from earlier opens (else it is dropped at open). */
  keepCache?: boolean;
  nonSeekable?: boolean;
  /** opendir: let the kernel cache the listing (until notifyInvalInode or the dir changes). */
  cacheReaddir?: boolean;
  /** The kernel sends no FLUSH at close for this open (FOPEN_NOFLUSH, Linux 5.16+; older kernels
   *  ignore it and flush as before): for handles whose flush would do nothing. */
  noFlush?: boolean;
}

export interface StatFs {
  bsize: number;
  frsize?: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail?: number;
  namemax?: number;
}

/** What a setattr asks to change; absent = leave it. 'now' = the server's (our) current time. */
export interface SetAttrChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: Timespec | 'now';
  mtime?: Timespec | 'now';
  ctime?: Timespec;
}

export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const RENAME_WHITEOUT = 4;

const FATTR = { MODE: 1, UID: 2, GID: 4, SIZE: 8, ATIME: 16, MTIME: 32, ATIME_NOW: 128, MTIME_NOW: 256, CTIME: 1024 };

const scratch = new Float64Array(19);

function encodeEntry(out: Float64Array, at: number, e: Entry, defaults: { attr: number; entry: number }) {
  const a = e.attr;
  out[at] = a.ino;
  out[at + 1] = e.generation ?? 0;
  out[at + 2] = e.attrTimeout ?? defaults.attr;
  out[at + 3] = e.entryTimeout ?? defaults.entry;
  encodeAttrFields(out, at, a);
}

function encodeAttrFields(out: Float64Array, at: number, a: Attr) {
  out[at] = a.ino;
  out[at + 4] = a.mode;
  out[at + 5] = a.nlink ?? 1;
  out[at + 6] = a.uid ?? 0;
  out[at + 7] = a.gid ?? 0;
  out[at + 8] = a.rdev ?? 0;
  out[at + 9] = a.size;
  out[at + 10] = a.blocks ?? Math.ceil(a.size / 512);
  out[at + 11] = a.blksize ?? 4096;
  out[at + 12] = a.atime.sec;
  out[at + 13] = a.atime.nsec;
  out[at + 14] = a.mtime.sec;
  out[at + 15] = a.mtime.nsec;
  out[at + 16] = a.ctime.sec;
  out[at + 17] = a.ctime.nsec;
}

function openBits(o?: OpenReply): number {
  if (!o) return 0;
  return (o.directIo ? 1 : 0) | (o.keepCache ? 2 : 0) | (o.nonSeekable ? 4 : 0) | (o.cacheReaddir ? 8 : 0) | (o.noFlush ? 16 : 0);
}

// ---------- requests ----------

export type OpName =
  | 'lookup' | 'getattr' | 'setattr' | 'readlink' | 'mknod' | 'mkdir' | 'unlink' | 'rmdir' | 'symlink'
  | 'rename' | 'link' | 'open' | 'read' | 'write' | 'flush' | 'release' | 'fsync' | 'opendir'
  | 'readdir' | 'readdirplus' | 'releasedir' | 'fsyncdir' | 'statfs' | 'setxattr' | 'getxattr'
  | 'listxattr' | 'removexattr' | 'access' | 'create';

/**
 * One kernel request. Which fields are set depends on the op (see the handler types below);
 * uid/gid/pid are the caller's. Exactly one reply method must be called.
 */
export class Request {
  readonly op: OpName;
  readonly id: number;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  /** The inode the op is about (getattr, open, read, ...). */
  readonly ino: number;
  /** The directory for name-based ops (lookup, create, mkdir, unlink, rmdir, rename, symlink, mknod). */
  readonly parent: number;
  readonly name: string;
  /** File handle our open/opendir/create answered; getattr/setattr carry it only when made through an open file. */
  readonly fh: number | undefined;
  readonly flags: number;
  readonly mode: number;
  readonly umask: number;
  readonly offset: number;
  readonly size: number;
  private readonly raw: RawRequest;
  private done = false;
  private abort?: AbortController;
  private wasInterrupted = false;

  constructor(private readonly s: LowLevelSession, raw: RawRequest, op: OpName) {
    this.raw = raw;
    this.op = op;
    this.id = raw.id;
    this.uid = raw.uid;
    this.gid = raw.gid;
    this.pid = raw.pid;
    this.ino = (raw.ino as number) ?? 0;
    this.parent = (raw.parent as number) ?? 0;
    this.name = (raw.name as string) ?? '';
    this.fh = raw.fh as number | undefined;
    this.flags = (raw.flags as number) ?? 0;
    this.mode = (raw.mode as number) ?? 0;
    this.umask = (raw.umask as number) ?? 0;
    this.offset = (raw.offset as number) ?? 0;
    this.size = (raw.size as number) ?? 0;
  }

  get replied(): boolean {
    return this.done;
  }

  /** The kernel interrupted this request (the caller got a signal). */
  get interrupted(): boolean {
    return this.wasInterrupted;
  }

  /**
   * Aborted when the kernel interrupts the request (the calling program got a signal, e.g. Ctrl-C on
   * a read that waits for the network). Answering error(EINTR) soon is then the right thing; a
   * normal answer is still allowed.
   */
  get signal(): AbortSignal {
    this.abort ??= new AbortController();
    if (this.wasInterrupted && !this.abort.signal.aborted) this.abort.abort();
    return this.abort.signal;
  }

  /** @internal */
  _interrupt() {
    if (this.done || this.wasInterrupted) return;
    this.wasInterrupted = true;
    this.abort?.abort();
  }

  // op-specific fields
  /** rename, link */
  get newParent(): number { return this.raw.newParent as number; }
  get newName(): string { return this.raw.newName as string; }
  /** symlink: what the link points to */
  get target(): string { return this.raw.target as string; }
  /** write: the bytes (owned by JS); setxattr: the value */
  get data(): Buffer { return this.raw.data as Buffer; }
  get value(): Buffer { return this.raw.value as Buffer; }
  /** write through the page cache's writeback (no valid uid/pid, maybe no matching fh) */
  get writepage(): boolean { return !!this.raw.writepage; }
  /** fsync/fsyncdir: only the data, not the metadata */
  get datasync(): boolean { return !!this.raw.datasync; }
  get rdev(): number { return (this.raw.rdev as number) ?? 0; }
  /** access: R_OK/W_OK/X_OK bits */
  get mask(): number { return (this.raw.mask as number) ?? 0; }

  /** setattr: what to change, with utimens' UTIME_NOW and UTIME_OMIT kept apart. */
  get changes(): SetAttrChanges {
    const r = this.raw;
    const v = r.valid as number;
    const c: SetAttrChanges = {};
    if (v & FATTR.MODE) c.mode = r.mode as number;
    if (v & FATTR.UID) c.uid = r.setUid as number;
    if (v & FATTR.GID) c.gid = r.setGid as number;
    if (v & FATTR.SIZE) c.size = r.size as number;
    if (v & FATTR.ATIME_NOW) c.atime = 'now';
    else if (v & FATTR.ATIME) c.atime = { sec: r.atimeSec as number, nsec: r.atimeNsec as number };
    if (v & FATTR.MTIME_NOW) c.mtime = 'now';
    else if (v & FATTR.MTIME) c.mtime = { sec: r.mtimeSec as number, nsec: r.mtimeNsec as number };
    if (v & FATTR.CTIME) c.ctime = { sec: r.ctimeSec as number, nsec: r.ctimeNsec as number };
    return c;
  }

  private settle(sent: boolean): boolean {
    this.done = true;
    this.s._settled(this);
    return sent;
  }

  private b(): [Binding, object] {
    return [this.s._binding, this.s._handle];
  }

  /** Answers an error; errno as a positive number (ENOENT) or a negative one. 0 = success. */
  error(errno: number): boolean {
    const [n, h] = this.b();
    return this.settle(n.replyErr(h, this.id, Math.abs(errno)));
  }

  /** Success without data: unlink, rmdir, rename, flush, release, fsync, setxattr, removexattr, access... */
  ok(): boolean {
    return this.error(0);
  }

  /** lookup, mkdir, mknod, symlink, link: counts one lookup of entry.attr.ino. */
  entry(e: Entry): boolean {
    const [n, h] = this.b();
    encodeEntry(scratch, 0, e, this.s._timeouts);
    return this.settle(n.replyEntry(h, this.id, scratch));
  }

  /** lookup: "no such name", cached by the kernel for `timeoutS` seconds (0 = not cached). */
  noEntry(timeoutS = this.s._timeouts.negative): boolean {
    if (timeoutS <= 0) return this.error(errno.ENOENT);
    const [n, h] = this.b();
    scratch.fill(0);
    scratch[3] = timeoutS;
    return this.settle(n.replyEntry(h, this.id, scratch));
  }

  /** a and its timeout in the scratch array, as replyAttr and cacheAttr read them */
  private attrScratch(a: Attr, timeoutS?: number): Float64Array {
    scratch.fill(0);
    encodeAttrFields(scratch, 0, a);
    scratch[2] = timeoutS ?? this.s._timeouts.attr;
    return scratch;
  }

  /** getattr, setattr */
  attr(a: Attr, timeoutS?: number): boolean {
    const [n, h] = this.b();
    return this.settle(n.replyAttr(h, this.id, this.attrScratch(a, timeoutS)));
  }

  /**
   * A change in folder ino (create, mkdir, unlink, rmdir, rename), before it computes ino's
   * attributes to hand over with dirAttr: -1 when another change of ino is in flight.
   */
  dirTicket(ino: number): number {
    const [n, h] = this.b();
    return n.attrTicket(h, this.id, ino);
  }

  /**
   * Before answering that change: the folder's attributes after it, for the GETATTR the kernel
   * sends next (it drops a changed folder's attributes; with default_permissions the next path
   * walk asks for them), answered natively. Taken only if no change of the folder arrived since
   * the ticket; false when not taken.
   */
  dirAttr(a: Attr, ticket: number, timeoutS?: number): boolean {
    if (ticket < 0) return false;
    const [n, h] = this.b();
    return n.cacheAttr(h, this.id, this.attrScratch(a, timeoutS), ticket);
  }

  /** open, opendir */
  open(fh: number, o?: OpenReply): boolean {
    const [n, h] = this.b();
    return this.settle(n.replyOpen(h, this.id, fh, openBits(o)));
  }

  /** create: the new entry (one lookup) and its open handle. */
  create(e: Entry, fh: number, o?: OpenReply): boolean {
    const [n, h] = this.b();
    encodeEntry(scratch, 0, e, this.s._timeouts);
    return this.settle(n.replyCreate(h, this.id, scratch, fh, openBits(o)));
  }

  /** read (at most req.size bytes are sent), getxattr/listxattr values (prefer xattr() there). The buffer is free again on return. */
  bytes(buf: Uint8Array | null, length?: number): boolean {
    const [n, h] = this.b();
    return this.settle(n.replyBuf(h, this.id, buf, length));
  }

  /** read: the answer is `length` bytes at `offset` of our own file `fd` (the vfs's cache file), read
   *  natively on this thread (a page-cache copy; the bytes never become a JS Buffer). splice: moved
   *  by splice(2) instead, when the session negotiated it (MountOptions.splice). */
  dataFromFd(fd: number, offset: number, length: number, splice = false): boolean {
    const [n, h] = this.b();
    return this.settle(n.replyFd(h, this.id, fd, offset, Math.min(length, this.size || length), splice));
  }

  /** read: as dataFromFd, but the bytes are read and sent by the binding's data thread, off the JS
   *  thread; true once queued. The binding reads a duplicate of fd, so the caller may close its own
   *  at once; the bytes it sends are the file's at the time the data thread reads them. */
  dataFromFdAsync(fd: number, offset: number, length: number): boolean {
    const [n, h] = this.b();
    return this.settle(n.replyFdAsync(h, this.id, fd, offset, Math.min(length, this.size || length)));
  }

  /** write: how many bytes were taken. */
  written(count: number): boolean {
    const [n, h] = this.b();
    return this.settle(n.replyWrite(h, this.id, count));
  }

  readlink(target: string): boolean {
    const [n, h] = this.b();
    return this.settle(n.replyReadlink(h, this.id, target));
  }

  statfs(st: StatFs): boolean {
    const [n, h] = this.b();
    const v = new Float64Array([st.bsize, st.frsize ?? st.bsize, st.blocks, st.bfree, st.bavail, st.files, st.ffree,
      st.favail ?? st.ffree, st.namemax ?? 255, 0]);
    return this.settle(n.replyStatfs(h, this.id, v));
  }

  /** getxattr/listxattr: the size query (req.size === 0) gets the length, a short buffer ERANGE. */
  xattr(value: Buffer): boolean {
    if (this.size === 0) {
      const [n, h] = this.b();
      return this.settle(n.replyXattr(h, this.id, value.length));
    }
    if (value.length > this.size) return this.error(errno.ERANGE);
    return this.bytes(value);
  }

  /** readdir: packs entries until the kernel's buffer is full; returns how many went in. */
  dir(entries: DirEntry[]): number {
    const stride = this.s._binding.entryStride;
    const names = new Array<string>(entries.length);
    const v = new Float64Array(entries.length * stride);
    entries.forEach((d, i) => {
      names[i] = d.name;
      v[i * stride] = d.ino;
      v[i * stride + 4] = d.mode;
      v[i * stride + 18] = d.off;
    });
    return this.sendDir(names, v);
  }

  /**
   * readdirplus: like dir() but each entry carries attributes, so `ls -l` needs no lookup. Returns
   * how many went in: each of those with entry.attr.ino != 0, other than "." and "..", now counts
   * one lookup (forget will take it back).
   */
  dirplus(entries: DirPlusEntry[]): number {
    const stride = this.s._binding.entryStride;
    const names = new Array<string>(entries.length);
    const v = new Float64Array(entries.length * stride);
    entries.forEach((d, i) => {
      names[i] = d.name;
      encodeEntry(v, i * stride, d.entry, this.s._timeouts);
      v[i * stride + 18] = d.off;
    });
    return this.sendDir(names, v);
  }

  private sendDir(names: string[], v: Float64Array): number {
    const [n, h] = this.b();
    const r = n.replyDir(h, this.id, names, v, 0);
    this.settle(r !== false);
    return r === false ? 0 : r;
  }
}

// ---------- handlers ----------

type H = (req: Request) => unknown;

/** Request handlers keyed by op. Field use per op:
 *  lookup(parent, name) -> entry | noEntry | error
 *  getattr(ino, fh?) -> attr;  setattr(ino, changes, fh?) -> attr
 *  readlink(ino) -> readlink;  mknod(parent, name, mode, umask, rdev) / mkdir(parent, name, mode, umask) -> entry
 *  unlink/rmdir(parent, name) -> ok;  symlink(parent, name, target) -> entry
 *  rename(parent, name, newParent, newName, flags: RENAME_NOREPLACE|RENAME_EXCHANGE) -> ok
 *  link(ino, newParent, newName) -> entry
 *  open(ino, flags) -> open;  create(parent, name, mode, umask, flags) -> create
 *  read(ino, fh, offset, size) -> bytes | dataFromFd;  write(ino, fh, offset, data, writepage) -> written
 *  flush(ino, fh) / release(ino, fh, flags) / fsync(ino, fh, datasync) -> ok
 *  opendir(ino, flags) -> open;  readdir/readdirplus(ino, fh, offset, size) -> dir / dirplus
 *  releasedir/fsyncdir -> ok;  statfs(ino) -> statfs
 *  setxattr(ino, name, value, flags) -> ok;  getxattr(ino, name, size) / listxattr(ino, size) -> xattr
 *  removexattr(ino, name) -> ok;  access(ino, mask) -> ok
 *  forget(ino, nlookup): no reply (the kernel dropped nlookup references). */
export type Handlers = Partial<Record<OpName, H>> & {
  forget?: (ino: number, nlookup: number) => void;
};

export interface ConnInfo {
  protoMajor: number;
  protoMinor: number;
  maxWrite: number;
  maxRead: number;
  maxReadahead: number;
  capable: number;
  want: number;
  maxBackground: number;
  congestionThreshold: number;
  timeGran: number;
  /** Names of the capabilities in `want`. */
  features: string[];
  /** read_ahead_kb of the mount's bdi, when we could set it. */
  readAheadKb?: number;
}

export interface MountOptions {
  fsname?: string;
  subtype?: string;
  allowOther?: boolean;
  /** The kernel checks mode bits itself (default true). */
  defaultPermissions?: boolean;
  readOnly?: boolean;
  /** libfuse's -d: every request and reply on stderr. */
  debug?: boolean;
  /** Reader threads (default 1: they never wait for JS, one keeps up). Ignored with reader 'poll'. */
  threads?: number;
  /** Who reads /dev/fuse: 'threads' (reader threads hand requests to JS) or 'poll' (the JS thread
   *  reads them itself when libuv reports the fd readable: one thread crossing less per request). */
  reader?: 'threads' | 'poll';
  /** After requests, while JS owes no answer, poll the event loop this long (microseconds) before it
   *  may sleep, so the next request of a program finds the JS thread awake (either reader; default 0). */
  spinUs?: number;
  /** Largest write request (default 1 MiB: libfuse 3 negotiates max_pages). */
  maxWrite?: number;
  /** The kernel's read-ahead for the mount, in KiB, set through /sys/class/bdi (root only; default 1024):
   *  buffered reads arrive in requests of this size (bounded by maxWrite's pages). 0 = leave it. */
  readAheadKb?: number;
  maxBackground?: number;
  congestionThreshold?: number;
  /** readdirplus: 'always' (default), 'auto' (the kernel picks), 'off'. */
  readdirplus?: 'always' | 'auto' | 'off';
  /** Reads in parallel on one file (default true). */
  asyncRead?: boolean;
  /** Lookups/readdirs in one directory in parallel (default true). */
  parallelDirops?: boolean;
  /** The kernel buffers writes in the page cache and sends them later, big (default false). */
  writebackCache?: boolean;
  /**
   * The kernel drops a file's cached pages when it sees its mtime/size change (default false: it
   * races with the kernel's own writes, see native-notes/lowlevel.md "AUTO_INVAL_DATA"; the vfs
   * tells the kernel of server changes itself, notifyInvalInode and keep_cache per open).
   */
  autoInvalData?: boolean;
  /** Negotiate SPLICE_WRITE/MOVE so dataFromFd(..., splice=true) moves file pages to the kernel by
   *  splice instead of copying them through memory (default false). */
  splice?: boolean;
  /** Symlink targets cached in the page cache (default false). */
  cacheSymlinks?: boolean;
  /** Defaults for entry()/attr() timeouts, in seconds (1, 1), and noEntry() (0). */
  attrTimeout?: number;
  entryTimeout?: number;
  negativeTimeout?: number;
  /** libfuse's auto_unmount: a fusermount3 helper process unmounts when this process dies, even by
   *  SIGKILL (process.exit and uncaught exceptions are covered without it). */
  autoUnmount?: boolean;
  /** More -o options, passed to libfuse as they are. */
  extraOptions?: string[];
  /** How long to wait for the kernel's INIT (default 10 s). */
  initTimeoutMs?: number;
}

/**
 * A mounted low-level session. Events: 'error' (a handler failed; the request got EIO),
 * 'close' (the kernel side is gone: unmounted by us or from outside, or the connection aborted).
 */
export class LowLevelSession extends EventEmitter {
  readonly mountpoint: string;
  conn!: ConnInfo;
  readonly closed: Promise<void>;
  /** @internal */ _binding: Binding;
  /** @internal */ _handle!: object;
  /** @internal */ _timeouts: { attr: number; entry: number; negative: number };
  private handlers: Handlers;
  private byOp: (H | undefined)[];
  private opNames: string[];
  private ended = false;
  private destroyed = false;
  private notifies = new Set<Promise<unknown>>();
  private resolveInit?: (c: ConnInfo) => void;
  private resolveClosed!: () => void;
  /** Requests JS still owes a reply, by id (for inspection and the end-of-session sweep). */
  readonly pending = new Map<number, Request>();

  private constructor(mountpoint: string, handlers: Handlers, opts: MountOptions, b: Binding) {
    super();
    this.mountpoint = mountpoint;
    this.handlers = handlers;
    this._binding = b;
    this.opNames = b.ops;
    // forget has no request to answer: it is dispatched apart (onBatch)
    this.byOp = b.ops.map((n) => (n === 'forget' ? undefined : (handlers as Record<string, H | undefined>)[n]));
    this._timeouts = { attr: opts.attrTimeout ?? 1, entry: opts.entryTimeout ?? 1, negative: opts.negativeTimeout ?? 0 };
    this.closed = new Promise((r) => (this.resolveClosed = r));
  }

  /** Mounts and resolves once the kernel's INIT is answered (the mount is usable). */
  static async mount(mountpoint: string, handlers: Handlers, opts: MountOptions = {}): Promise<LowLevelSession> {
    const b = native();
    const mnt = path.resolve(mountpoint);
    const s = new LowLevelSession(mnt, handlers, opts, b);
    const o: string[] = [
      `fsname=${opts.fsname ?? 'cloudmount'}`,
      `subtype=${opts.subtype ?? 'cloudmount'}`,
    ];
    if (opts.defaultPermissions ?? true) o.push('default_permissions');
    if (opts.allowOther) o.push('allow_other');
    if (opts.readOnly) o.push('ro');
    if (opts.autoUnmount) o.push('auto_unmount');
    o.push(...(opts.extraOptions ?? []));
    const args = ['cloudmount', '-o', o.join(',')];
    if (opts.debug) args.push('-d');

    const c = b.caps;
    let on = 0;
    let off = 0;
    const flag = (v: boolean | undefined, dflt: boolean, bit: number) => {
      if (v ?? dflt) on |= bit;
      else off |= bit;
    };
    flag(opts.asyncRead, true, c.ASYNC_READ);
    flag(opts.parallelDirops, true, c.PARALLEL_DIROPS);
    flag(opts.writebackCache, false, c.WRITEBACK_CACHE);
    // off: with it, a getattr showing the mtime of an earlier write made the kernel drop pages whose
    // WRITE had not reached us yet, and the READ that followed cached the bytes before that write
    flag(opts.autoInvalData, false, c.AUTO_INVAL_DATA);
    flag(opts.cacheSymlinks, false, c.CACHE_SYMLINKS);
    // without a readdirplus handler libfuse would answer the kernel's READDIRPLUS with ENOSYS
    const rdp = handlers.readdirplus ? (opts.readdirplus ?? 'always') : 'off';
    if (rdp === 'off') off |= c.READDIRPLUS | c.READDIRPLUS_AUTO;
    else if (rdp === 'auto') on |= c.READDIRPLUS | c.READDIRPLUS_AUTO;
    else {
      on |= c.READDIRPLUS;
      off |= c.READDIRPLUS_AUTO;
    }
    // SPLICE_READ (requests spliced from /dev/fuse) is never asked for: write data would arrive in
    // a pipe we would have to copy out anyway. SPLICE_WRITE only serves dataFromFd(splice).
    flag(opts.splice, false, c.SPLICE_WRITE | c.SPLICE_MOVE);

    const handled = Object.keys(handlers).filter((k) => typeof (handlers as Record<string, unknown>)[k] === 'function');
    if (rdp === 'off') {
      const i = handled.indexOf('readdirplus');
      if (i >= 0) handled.splice(i, 1);
    }
    const init = new Promise<ConnInfo>((r) => (s.resolveInit = r));
    s._handle = b.mount(mnt, args, {
      threads: opts.threads ?? 1,
      poll: opts.reader === 'poll' ? 1 : 0,
      spinUs: opts.spinUs ?? 0,
      debug: opts.debug ? 1 : 0,
      wantOn: on,
      wantOff: off,
      maxWrite: opts.maxWrite ?? 1 << 20,
      maxBackground: opts.maxBackground ?? 0,
      congestionThreshold: opts.congestionThreshold ?? 0,
      handled,
    }, (batch) => s.onBatch(batch));

    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`no FUSE INIT from the kernel within ${opts.initTimeoutMs ?? 10_000} ms`)), opts.initTimeoutMs ?? 10_000);
    });
    try {
      s.conn = await Promise.race([init, timeout]);
    } catch (e) {
      await s.unmount({ lazy: true }).catch(() => undefined);
      throw e;
    } finally {
      clearTimeout(timer);
    }
    const ra = opts.readAheadKb ?? 1024;
    if (ra > 0) s.conn.readAheadKb = await setReadAhead(mnt, ra);
    return s;
  }

  /** @internal */
  _settled(req: Request) {
    this.pending.delete(req.id);
  }

  private onBatch(batch: RawRequest[]) {
    for (const raw of batch) {
      const op = raw.op;
      const h = this.byOp[op];
      if (h) {
        const req = new Request(this, raw, this.opNames[op] as OpName);
        this.pending.set(req.id, req);
        if (raw.interrupted) req._interrupt();
        try {
          const r = h(req);
          if (r && typeof (r as Promise<unknown>).then === 'function') {
            (r as Promise<unknown>).then(undefined, (e) => this.fail(req, e));
          }
        } catch (e) {
          this.fail(req, e);
        }
        continue;
      }
      switch (this.opNames[op]) {
        case 'forget': {
          const f = raw.forgets as Float64Array;
          if (this.handlers.forget) for (let i = 0; i < f.length; i += 2) this.handlers.forget(f[i], f[i + 1]);
          break;
        }
        case 'interrupt':
          this.pending.get(raw.target as number)?._interrupt();
          break;
        case 'init': {
          const conn = raw as unknown as ConnInfo;
          conn.features = Object.entries(this._binding.caps).filter(([, bit]) => conn.want & bit).map(([n]) => n);
          this.resolveInit?.(conn);
          break;
        }
        case 'ended':
          this.onEnded();
          break;
        default:
          // registered only for ops with handlers: cannot happen, but never leave a request hanging
          if (raw.id) this._binding.replyErr(this._handle, raw.id, errno.ENOSYS);
      }
    }
  }

  private fail(req: Request, e: unknown) {
    if (!req.replied) req.error(typeof (e as { errno?: unknown })?.errno === 'number' ? Math.abs((e as { errno: number }).errno) : errno.EIO);
    if (this.listenerCount('error')) this.emit('error', e);
  }

  private async onEnded() {
    this.ended = true;
    await Promise.allSettled([...this.notifies]);
    if (!this.destroyed) {
      this.destroyed = true;
      this._binding.destroy(this._handle);
      this.pending.clear();
    }
    this.resolveClosed();
    this.emit('close');
  }

  /** Counters of the native side. */
  stats(): NativeStats {
    return this._binding.stats(this._handle);
  }

  /** A mounted session keeps the process alive; unref() lets it exit (the mount is then cut at exit). */
  unref() {
    if (!this.destroyed) this._binding.ref(this._handle, false);
  }

  ref() {
    if (!this.destroyed) this._binding.ref(this._handle, true);
  }

  /**
   * Drops the kernel's cached pages of an inode from `off` for `len` bytes (len 0: to the end) and its
   * attributes; off < 0 drops only the attributes. Resolves with 0 or a negative errno (-ENOENT: the
   * kernel does not know the inode, which is fine). Runs on a libuv worker, never blocking JS.
   */
  notifyInvalInode(ino: number, off = 0, len = 0): Promise<number> {
    return this.track(this._binding.notifyInvalInode(this._handle, ino, off, len));
  }

  /** Makes the kernel forget the name `name` in `parent` (its next use is a lookup). */
  notifyInvalEntry(parent: number, name: string): Promise<number> {
    return this.track(this._binding.notifyInvalEntry(this._handle, parent, name));
  }

  private track(p: Promise<number>): Promise<number> {
    if (this.ended) return Promise.resolve(-errno.ENOTCONN);
    this.notifies.add(p);
    void p.finally(() => this.notifies.delete(p));
    return p;
  }

  /**
   * Unmounts with fusermount3 (in a child process: a umount in this process could wait for a
   * request only this thread can answer) and resolves when the session is closed. Throws EBUSY
   * (code 'EBUSY') when files are open and `lazy` is not set; lazy detaches now, and the session
   * closes when the last user lets go.
   */
  async unmount(o: { lazy?: boolean } = {}): Promise<void> {
    if (this.ended) return this.closed;
    const r = await (o.lazy ? lazyUnmount : cleanUnmount)(this.mountpoint);
    if (r.code !== 0 && !this.ended) {
      if (!(await isMountedAsync(this.mountpoint))) {
        // already gone (fusermount raced an outside unmount): the 'ended' event follows
      } else {
        const err = new Error(`unmount ${this.mountpoint}: ${r.stderr.trim() || `fusermount exit ${r.code}`}`) as NodeJS.ErrnoException;
        err.code = /busy/i.test(r.stderr) ? 'EBUSY' : 'EUNMOUNT';
        throw err;
      }
    }
    return this.closed;
  }
}

/** The kernel's read-ahead bounds the size of buffered READ requests: raise it on our bdi (0:N of
 *  the mount, found in mountinfo, without touching the mount itself). Root only; undefined if not. */
async function setReadAhead(mnt: string, kb: number): Promise<number | undefined> {
  const m = await findMountAsync(mnt);
  if (!m) return undefined;
  const file = `/sys/class/bdi/${m.dev}/read_ahead_kb`;
  try {
    await writeFile(file, String(kb));
    return Number((await readFile(file, 'utf8')).trim());
  } catch {
    return undefined;
  }
}
