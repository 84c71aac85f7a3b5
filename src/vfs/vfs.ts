// The FUSE-free core of the drive: metadata caches, open handles, the on-disk content cache with
// read-ahead, and the write-back journal/upload queue. Semantics are DESIGN.md's "Semantics".
//
// Design decisions (why):
// - Namespace changes (mkdir, rmdir, unlink, rename) go to the server before the call returns, so
//   the program gets the server's verdict (EEXIST, ENOTEMPTY, EXDEV...) and the cached view never
//   has to replay a tree of pending namespace edits. Only file *content* is written back later.
//   Ordering against pending uploads is kept by the journal: a delete cancels the pending upload
//   (durably) before the server delete is sent, a rename retargets pending uploads to the new name
//   after in-flight uploads of the source were stopped, so nothing is overtaken or resurrected.
// - A file's content is fetched whole before its first write, so every dirty cache file is a
//   complete copy that can be uploaded as is, also after a crash.
// - One content object (Obj) per path owns one cache file and one fd shared by all handles; reads
//   and writes go straight between the caller's buffer and that fd.
import { randomUUID } from 'node:crypto';
import fs, { promises as fsp } from 'node:fs';
import { setMaxListeners } from 'node:events';
import os from 'node:os';
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';
import { createLogger } from '../log.js';
import {
  AlreadyExists, BadRequest, BadResponse, Cancelled, IsADirectory, NoXattr, NotADirectory, NotEmpty,
  NotFound, ReadOnly, RemoteError, Timeout, Unsupported, isRemoteError,
} from '../remote/errors.js';
import { Priority, type RangeRead, type RangeServed, type Remote, type RemoteEntry } from '../remote/types.js';
import type { Attr, DriveStatus, FlushResult, FsStats, UploadFailure, VfsApi, VfsOptions } from './api.js';
import { Journal } from './journal.js';
import { baseOf, isUnder, joinPath, normPath, parentOf, rebase } from './paths.js';
import { RangeSet, isSequential, readAheadPlan } from './ranges.js';
import { sleep } from '../util/sleep.js';

export const SHARE_LINK_XATTR = 'user.cloudmount.share_link';

const O_ACCMODE = 3;
const O_RDONLY = 0;
const O_CREAT = fs.constants.O_CREAT;
const O_EXCL = fs.constants.O_EXCL;
const O_TRUNC = fs.constants.O_TRUNC;
const O_APPEND = fs.constants.O_APPEND;
const W_OK = 2;
const MiB = 1024 * 1024;
/** After an upload finally failed with a transient error, it is tried again this much later. */
const RETRY_LATER_MS = 60_000;

export function defaultVfsOptions(accountId: string): VfsOptions {
  const xdg = process.env.XDG_CACHE_HOME;
  const base = xdg && xdg.startsWith('/') ? xdg : join(os.homedir(), '.cache');
  return {
    accountId,
    cacheDir: join(base, 'cloudmount'),
    cacheMaxBytes: 2 * 1024 * MiB,
    attrTtlMs: 10_000,
    dirTtlMs: 30_000,
    negativeTtlMs: 5_000,
    readAheadBytes: 1 * MiB,
    readAheadMaxBytes: 64 * MiB,
    readParallel: 4,
    writebackDelayMs: 2_000,
    readOnly: false,
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    opTimeoutMs: 60_000,
    log: createLogger('warn'),
  };
}

/** Account ids become one directory name: anything but a plain safe name is escaped. */
function safeComponent(id: string): string {
  let s = id.replace(/[^A-Za-z0-9._@+-]/g, (c) => '_' + c.charCodeAt(0).toString(16));
  if (s === '' || s.startsWith('.')) s = '_' + s;
  return s.slice(0, 200);
}

interface AttrSlot { entry: RemoteEntry | null; expires: number }
interface DirSlot {
  entries: Map<string, RemoteEntry>;
  hash?: string;
  expires: number;
  /** Prefetch of this listing's subfolder listings / small files was started. */
  dirsPrefetched?: boolean;
  filesPrefetched?: boolean;
  /**
   * Fetched because names were looked up one by one, not because a program listed the folder: its
   * entries answer lookups, but a name missing from it is still asked of the server (a file another
   * client just made must not vanish for a listing's TTL when nobody ran ls).
   */
  implicit?: boolean;
  siblings?: SiblingPrefetch;
}
/** The small-file prefetch of one listed folder, sliding ahead of the program that reads it. */
interface SiblingPrefetch {
  /** The listing's names in order, and how far the picks got. */
  names: string[];
  next: number;
  picked: number;
  /** Picked files the program has not opened yet (with sizes): how far the prefetch is ahead. */
  ahead: Map<string, number>;
  aheadBytes: number;
}
interface LocalAttrs { perm?: number; mtimeMs?: number; atimeMs?: number; ctimeMs?: number }
/** A folder's listing started together with its first stat, and when that stat answered. */
interface SpecListing {
  gen: number;
  /** The listing; undefined if it failed. */
  p: Promise<DirSlot | undefined>;
  started: number;
  /** Resolves with the paired stat's round trip (ms) once it answered, however it ended. */
  statTook: Promise<number>;
  /** Once landed: the listing, and until when its misses answer lookups (one round trip more). */
  slot?: DirSlot;
  missesUntil?: number;
}

const MUTATION = Symbol('mutation');
const CLOSING = Symbol('closing');

/** One content object: the cache file of one path and everything in flight for it. */
/** Lazy journal mode: how soon closed files' records reach the disk (one flush for all of them). */
const JOURNAL_SYNC_DELAY_MS = 1000;

class Obj {
  fd = -1;
  fdOpening: Promise<void> | null = null;
  refs = 0;
  writers = 0;
  readonly ranges = new RangeSet();
  /** Bumped whenever cached bytes are thrown away, so a fetch started before drops its result. */
  epoch = 0;
  /** Server identity the clean content belongs to (null: never on the server as far as we know). */
  ident: RemoteEntry | null = null;
  gen = 0;
  uploadedGen = 0;
  journaledGen = 0;
  /** Journal record of the newest closed content not yet confirmed by the server. */
  pendingUid: string | null = null;
  timer: NodeJS.Timeout | null = null;
  uploading: Promise<void> | null = null;
  uploadAbort: AbortController | null = null;
  /** An upload was attempted: the server may hold the path even though no upload succeeded. */
  attempted = false;
  onServer: boolean;
  localMtime = 0;
  refused: RemoteError | null = null;
  unlinked = false;
  metaOnDisk = false;
  /** The upload task waits at a namespace barrier and has sent nothing. */
  parked = false;
  /**
   * The upload request is on its way: aborting it now would not take it back (the server may
   * have the whole body and apply it after our abort), so namespace changes wait for it instead.
   */
  sending = false;
  /** Bumped by stopUpload: an upload task that sees it change gives up instead of retrying. */
  stopGen = 0;
  /** Journal record whose upload used up its retry budget (a flush does not try it again). */
  failedUid: string | null = null;
  // ranged fetches
  readonly inflight = new Map<number, Promise<void>>();
  inflightCount = 0;
  /** Readers waiting for bytes of a fetch still streaming in. */
  waiters: RangeWaiter[] = [];
  /**
   * The last bytes streamed in, as received (clean content only): a sequential reader right
   * behind the read-ahead gets them by a copy instead of a pread of the cache file they were just
   * written to (one threadpool round trip less per 128 KiB FUSE read). Valid while epoch and gen
   * are those of the segment.
   */
  recent: RecentSeg[] = [];
  recentBytes = 0;
  // whole-file download
  download: Promise<void> | null = null;
  dlAbort: AbortController | null = null;
  downloaded = 0;
  dlWaiters: { need: number; resolve: () => void; reject: (e: unknown) => void }[] = [];

  constructor(public readonly id: string, public path: string, public size: number, onServer: boolean) {
    this.onServer = onServer;
  }

  get dirty(): boolean { return this.gen !== this.uploadedGen; }
  /** Local state overrides what the server says about this path. */
  get authoritative(): boolean {
    return this.gen !== this.uploadedGen || this.pendingUid !== null || this.uploading !== null || !this.onServer;
  }
  get complete(): boolean { return this.ranges.covers(0, this.size); }
}

interface Handle {
  obj: Obj;
  writable: boolean;
  append: boolean;
  nextPos: number;
  window: number;
  raEnd: number;
}

interface Barrier { paths: string[]; promise: Promise<void> }
interface RangeWaiter { s: number; e: number; resolve: () => void }
interface Lane { limit: number; running: number; queue: (() => Promise<void>)[] }

function pread(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}
function pwrite(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.write(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}
function pwritev(fd: number, bufs: Buffer[], pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.writev(fd, bufs, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}
/** All of bufs at pos (writev may write less than asked). */
async function pwritevAll(fd: number, bufs: Buffer[], pos: number): Promise<void> {
  let total = 0;
  for (const b of bufs) total += b.length;
  let done = await pwritev(fd, bufs, pos);
  while (done < total) {
    let skip = done;
    const rest: Buffer[] = [];
    for (const b of bufs) {
      if (skip >= b.length) { skip -= b.length; continue; }
      rest.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    done += await pwritev(fd, rest, pos + done);
  }
}
/** A streamed fetch whose content object was reset meanwhile: it stops without an error. */
const STALE_RUN = Symbol('stale run');
/** Bytes of a streamed fetch collected before one write to the cache file. */
const LAND_BYTES = 1024 * 1024;
/** Bytes of just-landed content kept in memory per file being read (see Obj.recent). */
const RECENT_BYTES = 8 * 1024 * 1024;

interface RecentSeg { pos: number; end: number; bufs: Buffer[]; bytes: number; epoch: number; gen: number }

/** Copies [pos, end) from recent segments into buf; false (nothing usable) when any byte is missing. */
function copyRecent(o: { recent: RecentSeg[]; epoch: number; gen: number }, buf: Buffer, pos: number, end: number): boolean {
  let at = pos;
  while (at < end) {
    let seg: RecentSeg | undefined;
    for (const r of o.recent) if (r.pos <= at && at < r.end && r.epoch === o.epoch && r.gen === o.gen) { seg = r; break; }
    if (!seg) return false;
    const was = at;
    // walk the segment's buffers to the one holding `at`
    let off = seg.pos;
    for (const b of seg.bufs) {
      if (at >= off + b.length) { off += b.length; continue; }
      const from = at - off;
      const n = Math.min(b.length - from, end - at);
      b.copy(buf, at - pos, from, from + n);
      at += n;
      off += b.length;
      if (at >= end || at >= seg.end) break;
    }
    if (at === was) return false;
  }
  return true;
}
function errText(e: unknown): string {
  if (e instanceof RemoteError) return e.toString();
  return e instanceof Error ? e.message : String(e);
}
// Cached content is reused while this holds: how soon another client's change is seen is bounded
// by how old the entry compared may be (dir_timeout for a listed one, attr_timeout for a stat's,
// plus what the Remote caches itself, kept within them through Remote.cacheTtls). Maxxo's mtimes
// come from its rsync daemon's listing, to the second (see remote/maxxo/remote.ts).
function sameIdent(a: RemoteEntry | null, b: RemoteEntry): boolean {
  if (!a || a.type !== 'file' || a.size !== b.size) return false;
  if (a.rev !== undefined && b.rev !== undefined) return a.rev === b.rev;
  return a.mtimeMs === b.mtimeMs;
}

const ROOT_ENTRY: RemoteEntry = { name: '', type: 'dir', size: 0 };

export class Vfs implements VfsApi {
  private readonly log;
  private readonly root: string;
  private readonly dataDir: string;
  private readonly journal: Journal;
  private readonly attrs: LRUCache<string, AttrSlot>;
  private readonly dirs: LRUCache<string, DirSlot>;
  private readonly dirEpoch = new Map<string, number>();
  private readonly localAttrs = new Map<string, LocalAttrs>();
  /** The path/inode table: one stable number per path seen, moved by renames. */
  private readonly inos = new Map<string, number>([['/', 1]]);
  private nextIno = 2;
  /** Content objects by current path; Map order is LRU order (touched on open). */
  private readonly objs = new Map<string, Obj>();
  /** Objects whose local state overrides the server (dirty, pending, local-only). */
  private readonly localObjs = new Set<Obj>();
  private readonly handles = new Map<number, Handle>();
  /**
   * Deleted files still open, by the local-only name the FUSE layer keeps them under until the
   * last close (libfuse 2 renames them to .fuse_hiddenNNNN): never listed, never uploaded. The
   * name stays until it is unlinked too (libfuse does that right after the last release).
   */
  private readonly hidden = new Map<string, Obj>();
  private readonly dirHandles = new Set<number>();
  private nextFh = 1;
  /** In-flight fetches, each with the generation it started at: a later caller joins only an unchanged one. */
  private readonly statInflight = new Map<string, { gen: number; p: Promise<RemoteEntry | null> }>();
  /** Per folder without a listing: how many of its names were stat'ed since when. */
  private readonly statCounts = new Map<string, { n: number; since: number }>();
  /** Folders whose last listing had more names than speculativeListMaxEntries: their lookups stat only. */
  private readonly bigDirs = new Set<string>();
  /** Listings started alongside the first stat in a folder: lookups after it wait for them (bounded). */
  private readonly specLists = new Map<string, SpecListing>();
  private readonly listInflight = new Map<string, { gen: number; p: Promise<DirSlot> }>();
  /** Bumped when a folder is renamed or removed: it changes the listings of every folder below. */
  private treeGen = 0;
  private readonly dirLane: Lane = { limit: 8, running: 0, queue: [] };
  /** Batch transfers in flight: close() stops them instead of waiting for them. */
  private readonly batchAborts = new Set<AbortController>();
  private readonly fileLane: Lane;
  private statBatch: { paths: string[]; waiters: Map<string, { resolve: (e: RemoteEntry | null) => void; reject: (e: unknown) => void }[]> } | null = null;
  private readonly barriers = new Set<Barrier>();
  private readonly failures = new Map<string, UploadFailure>();
  private readonly shareLinks = new Map<string, string>();
  private statfsCache: { value: FsStats; expires: number } | null = null;
  private cacheBytes = 0;
  private evicting = false;
  private startP: Promise<void> | null = null;
  private closed = false;
  private readonly mountTime = Date.now();
  private readonly blockBytes: number;
  private readonly uploadAttempts: number;
  private readonly uploadBackoffMs: number;

  /** Where reads of cached content were served from (tests and profiling read it). */
  readonly readsFrom = { memory: 0, file: 0 };

  constructor(private readonly remote: Remote, private readonly opts: VfsOptions) {
    this.log = opts.log;
    this.root = join(opts.cacheDir, safeComponent(opts.accountId));
    this.dataDir = join(this.root, 'data');
    this.journal = new Journal(join(this.root, 'journal'), undefined, { syncDelayMs: this.opts.syncClose ? 0 : JOURNAL_SYNC_DELAY_MS });
    this.attrs = new LRUCache({ max: 200_000 });
    this.dirs = new LRUCache({ max: 20_000 });
    this.blockBytes = Math.max(64 * 1024, Math.min(opts.readAheadBytes, opts.readBlockBytes ?? 256 * 1024));
    this.uploadAttempts = Math.max(1, opts.uploadAttempts ?? 5);
    this.uploadBackoffMs = Math.max(0, opts.uploadBackoffMs ?? 500);
    // batches (one transfer run each) go a few at a time; single-request fetches more widely
    // (ranged: a few connections of the account's pool stay free for what a program waits for)
    this.fileLane = { limit: this.remote.read && this.remote.capabilities.rangedReads ? 12 : 2, running: 0, queue: [] };
    this.remote.cacheTtls?.({ attrTtlMs: opts.attrTtlMs, dirTtlMs: opts.dirTtlMs });
  }

  // ------------------------------------------------------------------ lifecycle

  start(): Promise<void> {
    this.startP ??= this.doStart();
    return this.startP;
  }

  private async doStart(): Promise<void> {
    await fsp.mkdir(this.opts.cacheDir, { recursive: true, mode: 0o700 });
    await fsp.mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    await fsp.chmod(this.root, 0o700);
    await fsp.chmod(this.dataDir, 0o700);
    const pending = await this.journal.open();
    const pendingIds = new Set(pending.map((p) => p.id));
    const names = await fsp.readdir(this.dataDir);
    const metas = new Set(names.filter((n) => n.endsWith('.meta')).map((n) => n.slice(0, -5)));
    // clean content kept by an earlier run, reused while the server's identity is unchanged
    for (const id of metas) {
      const metaFile = join(this.dataDir, id + '.meta');
      try {
        if (pendingIds.has(id)) { await fsp.rm(metaFile, { force: true }); continue; }
        const m = JSON.parse(await fsp.readFile(metaFile, 'utf8')) as { path: string; ident: RemoteEntry; ranges: [number, number][] };
        if (typeof m.path !== 'string' || !m.ident || this.objs.has(m.path)) throw new Error('stale');
        const o = new Obj(id, m.path, m.ident.size, true);
        o.ident = m.ident;
        for (const [s, e] of m.ranges) o.ranges.add(s, Math.min(e, o.size));
        o.metaOnDisk = true;
        this.cacheBytes += o.ranges.bytes;
        this.objs.set(o.path, o);
      } catch {
        await fsp.rm(metaFile, { force: true });
        await fsp.rm(join(this.dataDir, id), { force: true });
      }
    }
    // closed files whose upload was not confirmed: they are the local truth until uploaded
    for (const p of pending) {
      const file = join(this.dataDir, p.id);
      // the record holds the closed content: the cache file may have lost it (power loss before
      // writeback) or been written after the close without a close: the record wins
      if (p.data) await this.restoreInline(file, p.data);
      let size: number;
      try { size = (await fsp.stat(file)).size; } catch {
        const f: UploadFailure = { path: p.path, error: 'cache file of a pending upload is missing', attempts: 0, atMs: Date.now() };
        this.failures.set(p.path, f);
        this.log.error(`pending upload of ${p.path} cannot be replayed: its cache file is missing`);
        continue;
      }
      const old = this.objs.get(p.path);
      if (old) this.dropObj(old);
      // whether an earlier attempt reached the server is unknown: treat as possibly there
      const o = new Obj(p.id, p.path, size, true);
      o.attempted = true;
      o.gen = 1; o.journaledGen = 1; o.uploadedGen = 0;
      o.pendingUid = p.uid;
      o.localMtime = Date.now();
      o.ranges.add(0, size);
      this.cacheBytes += size;
      this.objs.set(o.path, o);
      this.localObjs.add(o);
    }
    // cache files nobody refers to (crash while writing an unclosed file, or before meta was written)
    const known = new Set<string>();
    for (const o of this.objs.values()) known.add(o.id);
    for (const n of names) {
      const id = n.endsWith('.meta') ? n.slice(0, -5) : n;
      // recursive: a batch download killed midway leaves its staging folder (.rsync-many-*) here
      if (!known.has(id)) await fsp.rm(join(this.dataDir, n), { force: true, recursive: true });
    }
    if (pending.length > 0) this.log.info(`replaying ${pending.length} pending upload(s) from the journal`);
    for (const o of this.localObjs) this.schedule(o, 0);
    this.maybeEvict();
  }

  private async restoreInline(file: string, data: Buffer): Promise<void> {
    const cur = await fsp.readFile(file).catch(() => null);
    if (cur && cur.equals(data)) return;
    // no fsync: the journal keeps the inline copy until the upload is confirmed
    await fsp.writeFile(file, data, { mode: 0o600 });
  }

  /**
   * Uploads every pending change. Each upload gets its retry budget (uploadAttempts) and no more:
   * one that used it up stays in the journal (replayed at the next mount) and is reported in the
   * result, so a flush, and the unmount that waits for it, ends even when the server is gone.
   * `retryFailed: false` skips uploads whose current content already used up its budget.
   */
  async flushAll(opts: { signal?: AbortSignal; retryFailed?: boolean } = {}): Promise<FlushResult> {
    const work: Promise<unknown>[] = [];
    for (const o of [...this.localObjs]) {
      if (o.pendingUid === null || o.unlinked) continue;
      if (opts.retryFailed === false && o.failedUid === o.pendingUid) continue;
      work.push(this.uploadUntilClean(o).catch(() => {}));
    }
    const all = Promise.all(work);
    if (opts.signal) {
      const signal = opts.signal;
      if (signal.aborted) throw new Cancelled('flush aborted');
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(new Cancelled('flush aborted'));
        signal.addEventListener('abort', onAbort, { once: true });
        all.then(() => { signal.removeEventListener('abort', onAbort); resolve(); }, reject);
      });
    } else {
      await all;
    }
    const kept: UploadFailure[] = [];
    for (const o of this.localObjs) {
      if (o.pendingUid === null || o.unlinked) continue;
      kept.push(this.failures.get(o.path) ?? { path: o.path, error: 'not uploaded', attempts: 0, atMs: Date.now() });
    }
    return { pending: this.journal.pending.size, failed: kept };
  }

  status(): DriveStatus {
    let pendingBytes = 0;
    for (const p of this.journal.pending.values()) pendingBytes += p.size;
    let dirtyBytes = 0;
    for (const o of this.localObjs) if (o.dirty) dirtyBytes += o.size;
    return {
      pending: this.journal.pending.size,
      pendingBytes,
      failures: [...this.failures.values()],
      cacheBytes: this.cacheBytes,
      dirtyBytes,
    };
  }

  async close(opts: { force?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    if (this.startP) await this.startP.catch(() => {});
    // an upload that used up its budget in the flush before this close is not tried again here
    if (!opts.force) await this.flushAll({ retryFailed: false });
    this.closed = true;
    for (const ac of this.batchAborts) ac.abort(CLOSING);
    const settle: Promise<unknown>[] = [];
    for (const o of this.objs.values()) {
      if (o.timer) { clearTimeout(o.timer); o.timer = null; }
      o.uploadAbort?.abort(CLOSING);
      o.dlAbort?.abort(CLOSING);
      if (o.uploading) settle.push(o.uploading.catch(() => {}));
      if (o.download) settle.push(o.download.catch(() => {}));
      for (const p of o.inflight.values()) settle.push(p.catch(() => {}));
    }
    await Promise.all(settle);
    for (const o of this.objs.values()) {
      if (!o.authoritative && o.ranges.bytes > 0) await this.writeMeta(o).catch(() => {});
      if (o.fd >= 0) { try { fs.closeSync(o.fd); } catch { /* already closed */ } o.fd = -1; }
    }
    this.handles.clear();
    const kept = this.journal.pending.size;
    if (kept > 0) {
      this.log.warn(`${kept} pending change(s) stay in the journal under ${this.root}; ` +
        'they are delivered at the next mount of this account');
    }
    await this.journal.close().catch(() => {});
    await this.remote.close();
  }

  // ------------------------------------------------------------------ helpers

  /** Runs fn with an AbortSignal and fails with Timeout after opTimeoutMs even if fn ignores it. */
  private bounded<T>(what: string, fn: (signal: AbortSignal) => Promise<T>, ms = this.opts.opTimeoutMs): Promise<T> {
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new Timeout(`${what} did not finish within ${ms} ms`);
        ac.abort(err);
        reject(err);
      }, ms);
    });
    return Promise.race([fn(ac.signal), t]).finally(() => clearTimeout(timer));
  }

  /** Waits for p for at most opTimeoutMs. */
  private within<T>(what: string, p: Promise<T>): Promise<T> {
    return this.bounded(what, () => p);
  }

  private assertWritable(): void {
    if (this.opts.readOnly) throw new ReadOnly('the drive is mounted read-only');
  }

  private handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (!h) throw new BadRequest(`unknown file handle ${fh}`);
    return h;
  }

  private file(o: Obj): string {
    return join(this.dataDir, o.id);
  }

  private bumpDir(dir: string): void {
    this.dirEpoch.set(dir, (this.dirEpoch.get(dir) ?? 0) + 1);
  }

  /**
   * The generation of a folder's contents as we changed them: an answer fetched while it moved
   * may predate our change, so it is neither cached nor handed to callers that came after it.
   */
  private dirGen(dir: string): number {
    return (this.dirEpoch.get(dir) ?? 0) * 65536 + this.treeGen;
  }

  private markLocal(o: Obj): void {
    if (o.authoritative && !o.unlinked) this.localObjs.add(o); else this.localObjs.delete(o);
  }

  private toAttr(path: string, e: RemoteEntry, o?: Obj): Attr {
    const la = this.localAttrs.get(path);
    const isDir = e.type === 'dir';
    let mtimeMs: number;
    let size: number;
    if (o && o.authoritative) {
      size = o.size;
      mtimeMs = la?.mtimeMs ?? (o.localMtime || e.mtimeMs || this.mountTime);
    } else {
      size = isDir ? 4096 : (o && o.refs > 0 ? o.size : e.size);
      // Our own upload must not move the mtime a program saw while the file was local:
      // editors (vim E949 "file changed while writing") compare it before they save.
      const own = o && o.localMtime && !isDir && sameIdent(o.ident, e) ? o.localMtime : undefined;
      mtimeMs = la?.mtimeMs ?? own ?? e.mtimeMs ?? this.mountTime;
    }
    let ino = this.inos.get(path);
    if (ino === undefined) { ino = this.nextIno++; this.inos.set(path, ino); }
    return {
      ino,
      type: e.type,
      size,
      perm: la?.perm ?? (isDir ? 0o755 : 0o644),
      mtimeMs,
      ctimeMs: la?.ctimeMs ?? mtimeMs,
      atimeMs: la?.atimeMs ?? mtimeMs,
      nlink: isDir ? 2 : 1,
    };
  }

  private localEntry(o: Obj): RemoteEntry {
    return { name: baseOf(o.path), type: 'file', size: o.size, mtimeMs: o.localMtime || undefined };
  }

  // ------------------------------------------------------------------ metadata

  /** What the drive shows at path: local state first, then caches, then the server. */
  private async lookup(path: string): Promise<RemoteEntry | null> {
    const known = this.peek(path);
    if (known !== undefined) return known;
    const dir = parentOf(path);
    // A listing that ran out only just now (ls -l of a big folder outlasting dirTtlMs): one
    // refetch answers this name and every sibling still to come, where a stat per name costs a
    // round trip each (100,000 names at 20 ms: over half an hour). Long-idle listings are not
    // refetched for one name: a stat is cheaper than a big listing.
    const stale = path === '/' ? undefined : this.dirs.get(dir);
    if (stale && stale.expires > Date.now() - this.opts.dirTtlMs) {
      // a folder gone (or now a file) is the stat's to answer; any other failure (timeout,
      // 5xx) is this lookup's: a stat after it would only double the wait for the same error
      const fresh = await this.listing(dir).catch((e) => {
        if (isRemoteError(e, 'NOT_FOUND') || isRemoteError(e, 'NOT_A_DIRECTORY')) return undefined;
        throw e;
      });
      if (fresh) {
        if (fresh !== stale && stale.implicit && this.dirs.get(dir) === fresh) fresh.implicit = true;
        const again = this.peek(path);
        if (again !== undefined) return again;
      }
    }
    const gen0 = this.dirGen(dir);
    const inf0 = this.statInflight.get(path);
    if (inf0 && inf0.gen === gen0) return inf0.p;
    // A listing started with the first stat in this folder answers misses too while it is as fresh
    // as a stat sent now would be: still in flight (asked before this lookup, so for a small
    // folder it answers sooner than our own stat), or landed less than its own round trip ago.
    // That is the negative lookup of a rename's target or of a file about to be made.
    const spec = path === '/' ? undefined : this.specLists.get(dir);
    if (spec) {
      const d = await this.specAnswer(dir, spec, gen0);
      if (d) {
        const again = this.peek(path);
        if (again !== undefined) return again;
        // cached like a stat's negative answer
        this.attrs.set(path, { entry: null, expires: Date.now() + this.opts.negativeTtlMs });
        return null;
      }
    }
    const cur = path === '/' ? undefined : this.dirs.get(dir);
    let speculate = false;
    if (path !== '/' && !(cur && cur.expires > Date.now())) {
      const worth = this.statsWorthListing(dir);
      if (worth === 'list') {
        const listed = await this.listing(dir).catch((e) => {
          if (isRemoteError(e, 'NOT_FOUND') || isRemoteError(e, 'NOT_A_DIRECTORY')) return undefined;
          throw e;
        });
        if (listed) {
          if (listed !== cur && this.dirs.get(dir) === listed) listed.implicit = true;
          const again = this.peek(path);
          if (again !== undefined) return again;
        }
      } else if (worth === 'first') {
        speculate = this.speculationWorth(dir);
      }
    }
    const gen = this.dirGen(dir);
    const inf = this.statInflight.get(path);
    if (inf && inf.gen === gen) return inf.p;
    const slot = { gen, p: this.fetchStat(path, gen) };
    slot.p.finally(() => { if (this.statInflight.get(path) === slot) this.statInflight.delete(path); }).catch(() => {});
    this.statInflight.set(path, slot);
    if (speculate) this.speculativeListing(dir, cur, slot.p);
    return slot.p;
  }

  /**
   * Whether the first stat in a folder should also list it: one listing answers every later lookup
   * there (`mv a b` looks up both names, a build opens its siblings), for one more request in
   * parallel. Not in folders known to be big, nor when a listing is on its way anyway.
   */
  private speculationWorth(dir: string): boolean {
    const max = this.opts.speculativeListMaxEntries ?? 5000;
    if (max <= 0 || (this.opts.listAfterStats ?? 4) <= 0) return false;
    if (this.bigDirs.has(dir)) return false;
    const inf = this.listInflight.get(dir);
    return !(inf && inf.gen === this.dirGen(dir));
  }

  private speculativeListing(dir: string, cur: DirSlot | undefined, stat: Promise<unknown>): void {
    const gen = this.dirGen(dir);
    const started = Date.now();
    const s: SpecListing = { gen, started, p: undefined!, statTook: stat.then(() => Date.now() - started, () => Date.now() - started) };
    s.p = this.listing(dir).then((d) => {
      // fetched for lookups, not shown to a program: later misses are asked of the server again
      if (d !== cur && this.dirs.get(dir) === d) d.implicit = true;
      s.slot = d;
      s.missesUntil = 2 * Date.now() - started;
      // the record (and the listing it holds) goes with its window
      setTimeout(() => { if (this.specLists.get(dir) === s) this.specLists.delete(dir); }, s.missesUntil - Date.now() + 1).unref();
      return d;
    }, (e) => {
      this.log.debug(`listing ${dir} for lookups: ${errText(e)}`);
      if (this.specLists.get(dir) === s) this.specLists.delete(dir);
      return undefined;
    });
    if (this.specLists.size >= 1000) this.specLists.clear();
    this.specLists.set(dir, s);
  }

  /**
   * The speculative listing if it may answer a miss of a lookup starting now (see lookup), else
   * undefined. In flight, it is waited for until it took twice the paired stat's round trip (plus
   * a little): slower than that, it is of a big folder, and the lookup stats its name after all.
   */
  private async specAnswer(dir: string, s: SpecListing, gen: number): Promise<DirSlot | undefined> {
    if (s.gen !== gen || (s.missesUntil !== undefined && s.missesUntil <= Date.now())) {
      if (this.specLists.get(dir) === s) this.specLists.delete(dir);
      return undefined;
    }
    let d = s.slot;
    if (s.missesUntil === undefined) {
      let timer: NodeJS.Timeout | undefined;
      const limit = s.statTook.then((took) => new Promise<undefined>((res) => {
        timer = setTimeout(() => res(undefined), Math.max(0, s.started + 2 * took + 10 - Date.now()));
      }));
      d = await Promise.race([s.p, limit]).finally(() => clearTimeout(timer));
    }
    // our own change of the folder since: its answer may predate it
    if (!d || this.dirs.get(dir) !== d || !(d.expires > Date.now()) || this.dirGen(dir) !== s.gen) return undefined;
    return d;
  }

  /**
   * Counts stats of names in a folder we have no listing of. A program opening many files by name
   * (a build, `cat a b c`, a checker) costs a round trip per name and gets no prefetch; past a few
   * the folder's listing is cheaper. Once listed (or the count goes stale) the count starts over.
   */
  private statsWorthListing(dir: string): 'first' | 'stat' | 'list' {
    const max = this.opts.listAfterStats ?? 4;
    if (max <= 0) return 'stat';
    const now = Date.now();
    const c = this.statCounts.get(dir);
    if (!c || c.since < now - this.opts.dirTtlMs) {
      if (this.statCounts.size >= 1000) this.statCounts.clear();
      this.statCounts.set(dir, { n: 1, since: now });
      return max <= 1 ? 'list' : 'first';
    }
    if (++c.n < max) return 'stat';
    this.statCounts.delete(dir);
    return 'list';
  }

  private async fetchStat(path: string, gen: number): Promise<RemoteEntry | null> {
    let e: RemoteEntry | null;
    const batched = !!(this.remote.statMany && this.remote.capabilities.batchStat);
    try {
      e = batched
        ? await this.batchedStat(path)
        : await this.bounded(`stat ${path}`, (signal) => this.remote.stat(path, { signal, priority: Priority.interactive }));
    } catch (err) {
      // a parent that is a file reads as "no such entry" below it. Not for a batch: statMany
      // answers null per missing path, so its failure as a whole (a bare 404, a lost route) says
      // nothing about each path and must not become a negative entry for all of them.
      const missing = isRemoteError(err, 'NOT_A_DIRECTORY') || isRemoteError(err, 'NOT_FOUND');
      if (missing && !batched) e = null;
      else if (missing) throw new BadResponse(`stat of ${path} failed: ${(err as Error).message}`, { path });
      else throw err;
    }
    // our own change raced this request: its answer may predate the change, so do not cache it
    if (this.dirGen(parentOf(path)) === gen) {
      this.attrs.set(path, { entry: e, expires: Date.now() + (e ? this.opts.attrTtlMs : this.opts.negativeTtlMs) });
    }
    const o = this.objs.get(path);
    if (o && o.authoritative) return this.localEntry(o);
    return e;
  }

  private batchedStat(path: string): Promise<RemoteEntry | null> {
    return new Promise((resolve, reject) => {
      let b = this.statBatch;
      if (!b) {
        b = this.statBatch = { paths: [], waiters: new Map() };
        setTimeout(() => this.runStatBatch(b!), 2);
      }
      let w = b.waiters.get(path);
      if (!w) { w = []; b.waiters.set(path, w); b.paths.push(path); }
      w.push({ resolve, reject });
      if (b.paths.length >= 200) this.runStatBatch(b);
    });
  }

  private runStatBatch(b: NonNullable<Vfs['statBatch']>): void {
    if (this.statBatch !== b) return;
    this.statBatch = null;
    const paths = b.paths;
    this.bounded(`stat of ${paths.length} paths`, (signal) => this.remote.statMany!(paths, { signal, priority: Priority.interactive }))
      .then((res) => {
        if (!Array.isArray(res) || res.length !== paths.length) throw new BadResponse('statMany answered a different number of entries');
        paths.forEach((p, i) => { for (const w of b.waiters.get(p)!) w.resolve(res[i] ?? null); });
      })
      .catch((err) => { for (const ws of b.waiters.values()) for (const w of ws) w.reject(err); });
  }

  /** A directory's listing, from cache, revalidated by hash, or fetched. */
  private async listing(dir: string, force = false, priority: number = Priority.interactive): Promise<DirSlot> {
    const d = this.dirs.get(dir);
    if (d && !force && d.expires > Date.now()) return d;
    // a fetch that started before our latest change of this folder may answer the old state
    const gen = this.dirGen(dir);
    const inf = this.listInflight.get(dir);
    if (inf && inf.gen === gen) return inf.p;
    const slot = { gen, p: this.fetchListing(dir, d, 0, priority) };
    slot.p.finally(() => { if (this.listInflight.get(dir) === slot) this.listInflight.delete(dir); }).catch(() => {});
    this.listInflight.set(dir, slot);
    return slot.p;
  }

  private async fetchListing(dir: string, old: DirSlot | undefined, tries = 0, priority: number = Priority.interactive): Promise<DirSlot> {
    const gen = this.dirGen(dir);
    const useHash = !!(old?.hash && this.remote.capabilities.listingRevalidation);
    const r = await this.bounded(`list ${dir}`, (signal) =>
      this.remote.list(dir, { signal, priority, ...(useHash ? { hash: old!.hash } : {}) }));
    const changedMeanwhile = this.dirGen(dir) !== gen;
    if (changedMeanwhile) {
      // the answer may predate our own change: ask again (a folder changed by us without end
      // gets the cached view, which our changes keep right, or the last answer)
      const cur = this.dirs.get(dir);
      if (tries < 3) return this.fetchListing(dir, cur, tries + 1, priority);
      if (cur) return cur;
      if (r.unchanged) return old!;
    }
    if (r.unchanged && useHash && !changedMeanwhile) {
      old!.expires = Date.now() + this.opts.dirTtlMs;
      this.dirs.set(dir, old!);
      return old!;
    }
    if (r.unchanged) return this.fetchListing(dir, undefined, tries + 1, priority);
    const entries = new Map<string, RemoteEntry>();
    for (const e of r.entries) entries.set(e.name, e);
    const slot: DirSlot = { entries, hash: r.hash, expires: Date.now() + this.opts.dirTtlMs };
    this.noteSize(dir, entries.size);
    if (!changedMeanwhile) {
      this.dirs.set(dir, slot);
      this.attrs.set(dir, { entry: { name: baseOf(dir), type: 'dir', size: 0 }, expires: Date.now() + this.opts.dirTtlMs });
    }
    return slot;
  }

  /** Remembers (a bounded number of) big folders, whose lookups are not worth a speculative listing. */
  private noteSize(dir: string, n: number): void {
    if (n <= (this.opts.speculativeListMaxEntries ?? 5000)) { this.bigDirs.delete(dir); return; }
    this.bigDirs.delete(dir);
    if (this.bigDirs.size >= 1000) this.bigDirs.delete(this.bigDirs.values().next().value!);
    this.bigDirs.add(dir);
  }

  /** Reflects one of our own changes in the cached parent listing (kept fresh: it is still right). */
  private setInParent(path: string, e: RemoteEntry | null): void {
    const dir = parentOf(path);
    this.bumpDir(dir);
    const d = this.dirs.get(dir);
    if (d) {
      if (e) d.entries.set(baseOf(path), { ...e, name: baseOf(path) }); else d.entries.delete(baseOf(path));
    }
    if (e) this.attrs.set(path, { entry: { ...e, name: baseOf(path) }, expires: Date.now() + this.opts.attrTtlMs });
    else this.attrs.set(path, { entry: null, expires: Date.now() + this.opts.negativeTtlMs });
  }

  /** Forgets cached metadata of path and everything below it. */
  private forgetTree(path: string, isDir = true): void {
    // listings of folders below are not all cached (nor bumped one by one): one tree generation
    if (isDir) this.treeGen++;
    for (const k of [...this.attrs.keys()]) if (k === path || isUnder(k, path)) this.attrs.delete(k);
    for (const k of [...this.dirs.keys()]) if (k === path || isUnder(k, path)) { this.dirs.delete(k); this.bumpDir(k); }
    for (const k of [...this.shareLinks.keys()]) if (k === path || isUnder(k, path)) this.shareLinks.delete(k);
  }

  /** What the caches alone know: an entry, null (known missing), or undefined (ask the server). */
  private peek(path: string): RemoteEntry | null | undefined {
    if (path === '/') return ROOT_ENTRY;
    const hid = this.hidden.size > 0 ? this.hidden.get(path) : undefined;
    if (hid) return { name: baseOf(path), type: 'file', size: hid.size, mtimeMs: hid.localMtime || hid.ident?.mtimeMs };
    const o = this.objs.get(path);
    if (o && o.authoritative) return this.localEntry(o);
    const now = Date.now();
    const a = this.attrs.get(path);
    if (a && a.expires > now) return a.entry;
    const d = this.dirs.get(parentOf(path));
    if (d && d.expires > now) {
      const e = d.entries.get(baseOf(path));
      if (e || !d.implicit) return e ?? null;
    }
    return undefined;
  }

  /** A folder about to be listed: unknown ones are checked by the listing itself (one call, not two). */
  private checkDirCached(path: string): void {
    const e = this.peek(path);
    if (e === null) throw new NotFound('no such folder', { path });
    if (e && e.type !== 'dir') throw new NotADirectory('not a folder', { path });
  }

  private async existing(path: string): Promise<RemoteEntry> {
    const e = await this.lookup(path);
    if (!e) throw new NotFound('no such file or directory', { path });
    return e;
  }

  private async parentDir(path: string): Promise<void> {
    if (path === '/') throw new BadRequest('the top folder cannot be changed', { path });
    const pe = await this.lookup(parentOf(path));
    if (!pe) throw new NotFound('parent folder does not exist', { path });
    if (pe.type !== 'dir') throw new NotADirectory('parent is not a folder', { path });
  }

  /** Children of dir as the drive shows them: server listing plus local-only files. */
  private async children(dir: string, force = false): Promise<Map<string, { e: RemoteEntry; o?: Obj }>> {
    const d = await this.listing(dir, force);
    const out = new Map<string, { e: RemoteEntry; o?: Obj }>();
    for (const [name, e] of d.entries) {
      const p = joinPath(dir, name);
      const o = this.objs.get(p);
      out.set(name, { e, o });
    }
    for (const o of this.localObjs) {
      if (!o.unlinked && parentOf(o.path) === dir && o.path !== '/') {
        const name = baseOf(o.path);
        out.set(name, { e: out.get(name)?.e ?? this.localEntry(o), o });
      }
    }
    return out;
  }

  async getattr(path: string): Promise<Attr> {
    path = normPath(path);
    const e = await this.existing(path);
    return this.toAttr(path, e, this.objs.get(path));
  }

  async fgetattr(path: string, fh: number): Promise<Attr> {
    const h = this.handles.get(fh);
    if (!h) return this.getattr(path);
    const o = h.obj;
    const base: RemoteEntry = o.ident && !o.authoritative ? o.ident : this.localEntry(o);
    return this.toAttr(o.path, base, o);
  }

  async readdir(path: string): Promise<{ names: string[]; attrs: Map<string, Attr> }> {
    path = normPath(path);
    this.checkDirCached(path);
    const kids = await this.children(path);
    // the program has seen this listing: a name missing from it is missing (no stat per create)
    const seen = this.dirs.get(path);
    if (seen) seen.implicit = false;
    const names: string[] = [];
    const attrs = new Map<string, Attr>();
    for (const [name, { e: ce, o }] of kids) {
      names.push(name);
      attrs.set(name, this.toAttr(joinPath(path, name), ce, o));
    }
    this.prefetchSubdirs(path);
    return { names, attrs };
  }

  async opendir(path: string): Promise<number> {
    path = normPath(path);
    this.checkDirCached(path);
    // the listing readdir will want anyway also proves the folder exists
    await this.listing(path);
    const fh = this.nextFh++;
    this.dirHandles.add(fh);
    return fh;
  }

  async releasedir(_path: string, fh: number): Promise<void> {
    this.dirHandles.delete(fh);
  }

  async access(path: string, mode: number): Promise<void> {
    path = normPath(path);
    await this.existing(path);
    if ((mode & W_OK) && this.opts.readOnly) throw new ReadOnly('the drive is mounted read-only', { path });
  }

  async statfs(_path: string): Promise<FsStats> {
    const c = this.statfsCache;
    if (c && c.expires > Date.now()) return c.value;
    const s = await this.bounded('statfs', (signal) => this.remote.statfs({ signal, priority: Priority.interactive }));
    const bsize = 4096;
    const total = s.total ?? 2 ** 50;
    const blocks = Math.max(1, Math.ceil(total / bsize));
    const bfree = Math.max(0, Math.floor((total - s.used) / bsize));
    const value: FsStats = {
      bsize, frsize: bsize, blocks, bfree, bavail: bfree,
      files: 1_000_000, ffree: 1_000_000, favail: 1_000_000, namemax: 255,
    };
    this.statfsCache = { value, expires: Date.now() + this.opts.attrTtlMs };
    return value;
  }

  async utimens(path: string, atimeMs: number, mtimeMs: number): Promise<void> {
    path = normPath(path);
    this.assertWritable();
    await this.existing(path);
    const la = this.localAttrs.get(path) ?? {};
    la.atimeMs = atimeMs;
    la.mtimeMs = mtimeMs;
    la.ctimeMs = Date.now();
    this.localAttrs.set(path, la);
  }

  async chmod(path: string, mode: number): Promise<void> {
    path = normPath(path);
    this.assertWritable();
    await this.existing(path);
    const la = this.localAttrs.get(path) ?? {};
    la.perm = mode & 0o7777;
    la.ctimeMs = Date.now();
    this.localAttrs.set(path, la);
  }

  async getxattr(path: string, name: string): Promise<Buffer> {
    path = normPath(path);
    await this.existing(path);
    if (name !== SHARE_LINK_XATTR || !this.remote.capabilities.shareLinks || !this.remote.shareLink) {
      throw new NoXattr(`no attribute ${name}`, { path });
    }
    let url = this.shareLinks.get(path);
    if (!url) {
      const o = this.objs.get(path);
      // a link to content the server has not got yet would share the wrong bytes
      if (o && o.pendingUid !== null) await this.within(`upload of ${path}`, this.uploadUntilClean(o));
      const r = await this.bounded(`share link ${path}`, (signal) => this.remote.shareLink!(path, { signal, priority: Priority.interactive }));
      url = r.url;
      this.shareLinks.set(path, url);
    }
    return Buffer.from(url, 'utf8');
  }

  async listxattr(path: string): Promise<string[]> {
    path = normPath(path);
    await this.existing(path);
    // Not listed by default: programs that copy every listed attribute (vim's write-rename,
    // cp -a, rsync -X, file managers) would read it, which creates a public share link of each
    // file they touch, and then fail setting it on the copy. `getfattr -n NAME` still works.
    return this.opts.listShareLinkXattr && this.remote.capabilities.shareLinks && this.remote.shareLink ? [SHARE_LINK_XATTR] : [];
  }

  async setxattr(path: string, _name: string, _value: Buffer, _flags: number): Promise<void> {
    throw new Unsupported('extended attributes cannot be set on this drive', { path });
  }

  async removexattr(path: string, _name: string): Promise<void> {
    throw new Unsupported('extended attributes cannot be removed on this drive', { path });
  }

  // ------------------------------------------------------------------ namespace changes

  async mkdir(path: string, mode: number): Promise<void> {
    path = normPath(path);
    this.assertWritable();
    await this.parentDir(path);
    if (await this.lookup(path)) throw new AlreadyExists('already exists', { path });
    await this.bounded(`mkdir ${path}`, (signal) => this.remote.mkdir(path, { signal, priority: Priority.interactive }));
    const now = Date.now();
    this.setInParent(path, { name: baseOf(path), type: 'dir', size: 0, mtimeMs: now });
    this.dirs.set(path, { entries: new Map(), expires: now + this.opts.dirTtlMs });
    this.bumpDir(path);
    if (mode && (mode & 0o7777) !== 0o755) this.localAttrs.set(path, { perm: mode & 0o7777 });
    else this.localAttrs.delete(path);
  }

  async rmdir(path: string): Promise<void> {
    path = normPath(path);
    this.assertWritable();
    if (path === '/') throw new BadRequest('cannot remove the top folder', { path });
    const e = await this.existing(path);
    if (e.type !== 'dir') throw new NotADirectory('not a folder', { path });
    // the server deletes folders recursively: only a fresh listing may say "empty"
    const kids = await this.children(path, true);
    if (kids.size > 0) throw new NotEmpty('folder is not empty', { path });
    await this.bounded(`remove ${path}`, (signal) => this.remote.remove([path], { signal, priority: Priority.interactive }));
    this.forgetTree(path);
    this.setInParent(path, null);
    this.localAttrs.delete(path);
    this.inos.delete(path);
  }

  async unlink(path: string, opts: { keepOpenAs?: string } = {}): Promise<void> {
    path = normPath(path);
    this.assertWritable();
    if (this.hidden.delete(path)) return;
    const e = await this.existing(path);
    if (e.type === 'dir') throw new IsADirectory('is a folder', { path });
    await this.withBarrier([path], async () => {
      const o = this.objs.get(path);
      if (o) await this.stopUpload(o);
      // POSIX: an open file keeps its content after the unlink. Once the server copy is gone it
      // cannot be fetched any more, so the part not cached yet comes first.
      if (o && o.refs > 0 && !o.complete) await this.ensureWhole(o);
      // durable first: after a crash the upload must not come back
      await this.journal.cancel(path);
      const localOnly = !!o && !o.onServer && !o.attempted;
      if (!localOnly) {
        try {
          await this.bounded(`remove ${path}`, (signal) => this.remote.remove([path], { signal, priority: Priority.interactive }));
        } catch (err) {
          if (!(isRemoteError(err, 'NOT_FOUND') && o && (o.attempted || !o.onServer))) throw err;
        }
      }
      if (o) {
        this.detach(o);
        if (opts.keepOpenAs && o.refs > 0) this.hidden.set(normPath(opts.keepOpenAs), o);
      }
      this.failures.delete(path);
      this.localAttrs.delete(path);
      this.shareLinks.delete(path);
      this.inos.delete(path);
      this.setInParent(path, null);
    });
  }

  async rename(from: string, to: string): Promise<void> {
    from = normPath(from);
    to = normPath(to);
    this.assertWritable();
    if (from === '/' || to === '/') throw new BadRequest('the top folder cannot be renamed', { path: from });
    const src = await this.existing(from);
    if (from === to) return;
    if (isUnder(to, from)) throw new BadRequest('cannot move a folder into itself', { path: to });
    await this.parentDir(to);
    const dst = await this.lookup(to);
    if (dst) {
      if (src.type === 'dir' && dst.type !== 'dir') throw new NotADirectory('target is not a folder', { path: to });
      if (src.type !== 'dir' && dst.type === 'dir') throw new IsADirectory('target is a folder', { path: to });
      if (dst.type === 'dir' && (await this.children(to, true)).size > 0) throw new NotEmpty('target folder is not empty', { path: to });
    }
    await this.withBarrier([from, to], async () => {
      const moving = [...this.objs.values()].filter((o) => o.path === from || isUnder(o.path, from));
      const replaced = this.objs.get(to);
      for (const o of moving) await this.stopUpload(o);
      if (replaced) await this.stopUpload(replaced);
      const so = this.objs.get(from);
      const srcLocalOnly = src.type === 'file' && !!so && !so.onServer && !so.attempted;
      const replacedPending = replaced ? this.journal.forPath(to) : undefined;
      if (dst) await this.journal.cancel(to);
      const jr = this.journal.rename(from, to);
      // local view first, so a close() journaling meanwhile already records the new name
      if (replaced) { this.objs.delete(to); this.localObjs.delete(replaced); }
      this.rekey(from, to, moving);
      try {
        await jr;
        if (!srcLocalOnly) await this.serverMove(from, to, src, dst, so);
      } catch (err) {
        this.rekey(to, from, moving);
        await this.journal.rename(to, from).catch(() => {});
        if (replaced) {
          // the target was not replaced after all: its own pending content is kept
          this.objs.set(to, replaced);
          this.markLocal(replaced);
          if (replacedPending) await this.journal.upload(replacedPending).catch(() => {});
        }
        throw err;
      }
      if (replaced) this.detach(replaced);
      this.forgetTree(from, src.type === 'dir');
      this.forgetTree(to, src.type === 'dir' || dst?.type === 'dir');
      this.setInParent(from, null);
      this.setInParent(to, { ...src, name: baseOf(to) });
    });
    for (const o of this.localObjs) {
      if ((o.path === to || isUnder(o.path, to)) && o.pendingUid !== null && !o.timer && !o.uploading) {
        this.schedule(o, this.opts.writebackDelayMs);
      }
    }
  }

  /**
   * The move itself: one request when the caches knew source and target. The target's absence
   * may come from a cache that is stale (another client made it since): the service's conflict
   * answer is then decided as rename(2) would, from fresh answers about the target.
   */
  private async serverMove(from: string, to: string, src: RemoteEntry, dst: RemoteEntry | null, so: Obj | undefined): Promise<void> {
    const move = () => this.bounded(`move ${from} -> ${to}`, (signal) => this.remote.move(from, to, { signal, priority: Priority.interactive }));
    try {
      await move();
    } catch (err) {
      // Maxxo explains its refusal by the types it finds (a folder onto any folder is NOT_EMPTY)
      const conflict = isRemoteError(err, 'ALREADY_EXISTS') || isRemoteError(err, 'NOT_EMPTY') ||
        isRemoteError(err, 'IS_A_DIRECTORY') || isRemoteError(err, 'NOT_A_DIRECTORY');
      if (conflict) {
        const cur = await this.bounded(`stat ${to}`, (signal) => this.remote.stat(to, { signal, priority: Priority.interactive }));
        if (!cur) throw err;
        if (!dst) this.log.debug(`rename ${from} -> ${to}: the target exists on the server after all (stale cache)`);
        if (src.type === 'dir' && cur.type !== 'dir') throw new NotADirectory('target is not a folder', { path: to });
        if (src.type !== 'dir' && cur.type === 'dir') throw new IsADirectory('target is a folder', { path: to });
        if (cur.type === 'dir') {
          const l = await this.bounded(`list ${to}`, (signal) => this.remote.list(to, { signal, priority: Priority.interactive }));
          if (l.entries.length > 0) throw new NotEmpty('target folder is not empty', { path: to });
        }
        // POSIX rename replaces the target; the service would not, so remove it first
        await this.bounded(`remove ${to}`, (signal) => this.remote.remove([to], { signal, priority: Priority.interactive }));
        await move();
        return;
      }
      // a file whose pending upload never reached the server has nothing to move there
      if (isRemoteError(err, 'NOT_FOUND') && src.type === 'file' && so && so.pendingUid !== null) return;
      throw err;
    }
  }

  /** Moves local state (objects, local attributes, failures) from `from` to `to`. */
  private rekey(from: string, to: string, objs: Obj[]): void {
    for (const o of objs) if (this.objs.get(o.path) === o) this.objs.delete(o.path);
    for (const o of objs) {
      o.path = rebase(o.path, from, to);
      const prev = this.objs.get(o.path);
      if (prev && prev !== o) this.detach(prev);
      this.objs.set(o.path, o);
      if (o.metaOnDisk) {
        // the index names the old path; it is written again at the next release
        o.metaOnDisk = false;
        fsp.rm(this.file(o) + '.meta', { force: true }).catch(() => {});
      }
    }
    for (const m of [this.localAttrs, this.failures, this.inos] as Map<string, unknown>[]) {
      const moved: [string, unknown][] = [];
      for (const [k, v] of m) if (k === from || isUnder(k, from)) moved.push([k, v]);
      for (const [k] of moved) m.delete(k);
      for (const [k, v] of moved) {
        const nk = rebase(k, from, to);
        if (m === this.failures) (v as UploadFailure).path = nk;
        m.set(nk, v);
      }
    }
  }

  private async withBarrier<T>(paths: string[], fn: () => Promise<T>): Promise<T> {
    // one namespace change at a time per path: wait for barriers that cover ours
    for (;;) {
      const busy = [...this.barriers].find((b) => b.paths.some((bp) => paths.some((p) => p === bp || isUnder(p, bp) || isUnder(bp, p))));
      if (!busy) break;
      await busy.promise.catch(() => {});
    }
    let release!: () => void;
    const b: Barrier = { paths, promise: new Promise<void>((r) => { release = r; }) };
    this.barriers.add(b);
    try {
      return await fn();
    } finally {
      this.barriers.delete(b);
      release();
    }
  }

  private async waitBarriers(o: Obj): Promise<void> {
    if (this.barriers.size === 0) return;
    o.parked = true;
    try {
      for (;;) {
        const b = [...this.barriers].find((x) => x.paths.some((bp) => o.path === bp || isUnder(o.path, bp)));
        if (!b) return;
        await b.promise;
      }
    } finally {
      o.parked = false;
    }
  }

  /**
   * Stops a pending upload of o (it stays pending) and waits until its task settled. An upload
   * whose request is already sent is not aborted but waited for: an abort only closes our socket,
   * the server may still apply the upload after our delete or move (a resurrected file), so the
   * namespace change goes after the server answered it.
   */
  private async stopUpload(o: Obj): Promise<void> {
    if (o.timer) { clearTimeout(o.timer); o.timer = null; }
    o.stopGen++;
    // an upload parked at our own barrier has sent nothing; waiting for it would deadlock
    if (o.uploading && !o.parked) {
      if (!o.sending) o.uploadAbort?.abort(MUTATION);
      // a client that ignores the abort must not make us overtake its upload: fail (EIO) instead
      await this.within(`stopping the upload of ${o.path}`, o.uploading.catch(() => {}));
    }
  }

  /** The path no longer names o (deleted or replaced); its bytes go once the last handle closes. */
  private detach(o: Obj): void {
    if (o.timer) { clearTimeout(o.timer); o.timer = null; }
    o.unlinked = true;
    if (this.objs.get(o.path) === o) this.objs.delete(o.path);
    this.localObjs.delete(o);
    if (o.refs === 0) this.destroy(o);
  }

  /** Forgets o and removes its cache files; the promise settles once they are gone. */
  private destroy(o: Obj): Promise<void> {
    o.epoch++;
    o.dlAbort?.abort(MUTATION);
    this.cacheBytes -= o.ranges.bytes;
    o.ranges.clear();
    if (this.objs.get(o.path) === o) this.objs.delete(o.path);
    this.localObjs.delete(o);
    // the space of a removed file comes back only once its fd is closed too (evictForSpace waits)
    const close = () => new Promise<void>((r) => {
      if (o.fd >= 0 && o.inflightCount === 0 && !o.download) { const fd = o.fd; o.fd = -1; fs.close(fd, () => r()); } else r();
    });
    const first = close();
    const file = this.file(o);
    const settle = [...o.inflight.values(), ...(o.download ? [o.download] : [])].map((p) => p.catch(() => {}));
    return Promise.all(settle).then(() => Promise.all([first, close()])).then(() => {
      return Promise.all([fsp.rm(file, { force: true }), fsp.rm(file + '.meta', { force: true })]);
    }).then(() => {}, (e) => this.log.warn(`cache cleanup of ${o.path}: ${errText(e)}`));
  }

  private dropObj(o: Obj): void {
    this.destroy(o);
  }

  // ------------------------------------------------------------------ open / create / release

  private async openFd(o: Obj): Promise<void> {
    if (o.fd >= 0) return;
    if (!o.fdOpening) {
      o.fdOpening = (async () => {
        o.fd = await new Promise<number>((resolve, reject) =>
          fs.open(this.file(o), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600, (err, fd) => (err ? reject(err) : resolve(fd))));
      })().finally(() => { o.fdOpening = null; });
    }
    await o.fdOpening;
  }

  private touchLru(o: Obj): void {
    if (this.objs.get(o.path) === o) { this.objs.delete(o.path); this.objs.set(o.path, o); }
  }

  async open(path: string, flags: number): Promise<number> {
    path = normPath(path);
    await this.start();
    const writable = (flags & O_ACCMODE) !== O_RDONLY;
    if (writable || (flags & O_TRUNC)) this.assertWritable();
    const e = await this.lookup(path);
    if (!e) {
      if (flags & O_CREAT) return this.create(path, 0o644, flags);
      throw new NotFound('no such file', { path });
    }
    if (e.type === 'dir') throw new IsADirectory('is a folder', { path });
    if ((flags & O_CREAT) && (flags & O_EXCL)) throw new AlreadyExists('already exists', { path });
    let o = this.objs.get(path);
    if (o && !o.authoritative && !sameIdent(o.ident, e)) {
      // the server has other content now: cached bytes are stale
      await this.resetContent(o, e);
    }
    if (!o) {
      o = new Obj(randomUUID(), path, e.size, true);
      o.ident = { ...e };
      this.objs.set(path, o);
    }
    // a program reading one file of a listed folder often reads its siblings next (cat *, grep -r)
    if (!writable) this.prefetchSiblings(parentOf(path), path);
    return this.openObj(o, flags, writable);
  }

  private async openObj(o: Obj, flags: number, writable: boolean): Promise<number> {
    o.refs++;
    if (writable) o.writers++;
    try {
      await this.openFd(o);
      this.touchLru(o);
      if (writable && (flags & O_TRUNC) && (o.size > 0 || !o.dirty)) await this.truncateObj(o, 0);
    } catch (err) {
      o.refs--;
      if (writable) o.writers--;
      this.afterRelease(o);
      throw err;
    }
    const fh = this.nextFh++;
    this.handles.set(fh, {
      obj: o, writable, append: !!(flags & O_APPEND), nextPos: 0, window: this.opts.readAheadBytes, raEnd: 0,
    });
    return fh;
  }

  async create(path: string, mode: number, flags: number): Promise<number> {
    path = normPath(path);
    await this.start();
    this.assertWritable();
    await this.parentDir(path);
    const e = await this.lookup(path);
    if (e) {
      if (flags & O_EXCL) throw new AlreadyExists('already exists', { path });
      if (e.type === 'dir') throw new IsADirectory('is a folder', { path });
      return this.open(path, flags & ~O_CREAT);
    }
    const stale = this.objs.get(path);
    if (stale) this.detach(stale);
    const o = new Obj(randomUUID(), path, 0, false);
    o.gen = 1;
    o.localMtime = Date.now();
    this.objs.set(path, o);
    this.markLocal(o);
    this.attrs.delete(path);
    this.bumpDir(parentOf(path));
    const perm = mode & 0o7777;
    if (perm && perm !== 0o644) this.localAttrs.set(path, { perm }); else this.localAttrs.delete(path);
    // even O_RDONLY|O_CREAT made a file: the handle commits it like a writer
    return this.openObj(o, flags & ~O_TRUNC, true);
  }

  async flush(_path: string, fh: number): Promise<void> {
    const h = this.handle(fh);
    if (!h.writable) return;
    const o = h.obj;
    if (o.unlinked || !o.dirty) return;
    await this.commitClose(o);
    if (this.opts.writebackDelayMs === 0) {
      await this.within(`upload of ${o.path}`, this.uploadUntilClean(o));
    } else {
      this.schedule(o, this.opts.writebackDelayMs);
    }
  }

  async release(_path: string, fh: number): Promise<void> {
    const h = this.handles.get(fh);
    if (!h) return;
    this.handles.delete(fh);
    const o = h.obj;
    o.refs--;
    if (h.writable) o.writers--;
    if (h.writable && !o.unlinked && o.gen !== o.journaledGen && o.writers === 0) {
      if (o.refused) {
        this.discardLocal(o);
      } else {
        // flush was skipped or failed: the content still has to be kept
        try { await this.commitClose(o); } catch (err) {
          if (o.refused) this.discardLocal(o);
          else this.log.error(`keeping ${o.path} failed: ${errText(err)}`);
        }
      }
    }
    if (!o.unlinked && o.writers === 0 && o.pendingUid !== null && !o.timer && !o.uploading) {
      this.schedule(o, this.opts.writebackDelayMs);
    }
    this.afterRelease(o);
  }

  private afterRelease(o: Obj): void {
    if (o.refs > 0) return;
    o.recent = [];
    o.recentBytes = 0;
    if (o.unlinked) { this.destroy(o); return; }
    if (o.fd >= 0 && o.inflightCount === 0 && !o.download && !o.uploading) {
      const fd = o.fd; o.fd = -1; fs.close(fd, () => {});
    }
    if (!o.authoritative && o.ranges.bytes > 0 && !o.metaOnDisk) {
      this.writeMeta(o).catch((e) => this.log.debug(`cache index of ${o.path}: ${errText(e)}`));
    }
    this.maybeEvict();
  }

  /** A refused (policy) file cannot reach the server: the server's state is shown again. */
  private discardLocal(o: Obj): void {
    this.log.warn(`${o.path}: ${errText(o.refused)}; local changes discarded`);
    this.detach(o);
    this.attrs.delete(o.path);
    this.bumpDir(parentOf(o.path));
  }

  private async writeMeta(o: Obj): Promise<void> {
    if (!o.ident || o.authoritative) return;
    const m = { path: o.path, ident: o.ident, ranges: o.ranges.toPairs() };
    const tmp = this.file(o) + '.meta.tmp';
    await fsp.writeFile(tmp, JSON.stringify(m), { mode: 0o600 });
    await fsp.rename(tmp, this.file(o) + '.meta');
    o.metaOnDisk = true;
  }

  // ------------------------------------------------------------------ content

  /** Forgets cached bytes (server content changed or O_TRUNC). Waits for fetches to settle. */
  private async quiesce(o: Obj): Promise<void> {
    o.epoch++;
    if (o.download) { o.dlAbort?.abort(MUTATION); await o.download.catch(() => {}); }
    if (o.inflightCount > 0) await Promise.all([...o.inflight.values()].map((p) => p.catch(() => {})));
  }

  private async resetContent(o: Obj, e: RemoteEntry): Promise<void> {
    await this.quiesce(o);
    this.cacheBytes -= o.ranges.bytes;
    o.ranges.clear();
    o.ident = { ...e };
    o.size = e.size;
    o.localMtime = 0;
    if (o.metaOnDisk) { o.metaOnDisk = false; await fsp.rm(this.file(o) + '.meta', { force: true }); }
    if (o.fd >= 0) await new Promise<void>((r, j) => fs.ftruncate(o.fd, 0, (err) => (err ? j(err) : r())));
    else await fsp.truncate(this.file(o), 0).catch(() => {});
  }

  private async beforeModify(o: Obj): Promise<void> {
    if (!o.dirty && o.metaOnDisk) {
      // a clean index entry for bytes that are about to change would serve them after a crash
      o.metaOnDisk = false;
      await fsp.rm(this.file(o) + '.meta', { force: true });
    }
  }

  private modified(o: Obj): void {
    o.gen++;
    o.localMtime = Date.now();
    const la = this.localAttrs.get(o.path);
    if (la && la.mtimeMs !== undefined) { la.mtimeMs = undefined; }
    this.markLocal(o);
  }

  private async truncateObj(o: Obj, size: number): Promise<void> {
    if (size > 0 && !o.complete) await this.ensureWhole(o);
    await this.beforeModify(o);
    if (size === 0) await this.quiesce(o);
    await new Promise<void>((r, j) => fs.ftruncate(o.fd, size, (err) => (err ? j(err) : r())));
    const before = o.ranges.bytes;
    if (size < o.size) o.ranges.truncate(size); else o.ranges.add(o.size, size);
    this.cacheBytes += o.ranges.bytes - before;
    o.size = size;
    this.modified(o);
  }

  async read(_path: string, fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    const h = this.handle(fh);
    const o = h.obj;
    const size = o.size;
    if (position >= size || length <= 0) return 0;
    let end = position + length;
    if (end > size) end = size;
    // the kernel sends its read-ahead reads concurrently and they may arrive a little out of
    // order: reads near the front of a sequential run still count as sequential
    const seq = isSequential(position, h.nextPos);
    if (!seq) { h.window = this.opts.readAheadBytes; h.raEnd = 0; h.nextPos = end; } else if (end > h.nextPos) h.nextPos = end;
    if (!o.ranges.covers(position, end)) {
      if (this.remote.read && this.remote.capabilities.rangedReads) {
        end = await this.fillRanged(o, h, position, end, seq);
      } else {
        await this.ensureDownloaded(o, end);
        if (o.size < end) end = Math.max(position, o.size);
      }
    } else if (seq && !o.dirty && this.remote.read && this.remote.capabilities.rangedReads) {
      this.readAhead(o, h, end);
    }
    if (o.recent.length > 0 && copyRecent(o, buf, position, end)) { this.readsFrom.memory++; return end - position; }
    this.readsFrom.file++;
    let n = 0;
    const want = end - position;
    while (n < want) {
      const r = await pread(o.fd, buf, n, want - n, position + n);
      if (r === 0) break;
      n += r;
    }
    return n;
  }

  async write(_path: string, fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    const h = this.handle(fh);
    if (!h.writable) throw new BadRequest('file not open for writing');
    this.assertWritable();
    const o = h.obj;
    if (!o.complete) await this.ensureWhole(o);
    if (!o.dirty) await this.beforeModify(o);
    if (h.append) position = o.size;
    let n = 0;
    let evicted = false;
    while (n < length) {
      try {
        n += await pwrite(o.fd, buf, n, length - n, position + n);
      } catch (err) {
        // cache disk full: clean cached content goes first; only then does the program see ENOSPC
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC' || evicted) { if (n > 0) break; throw err; }
        evicted = true;
        if ((await this.evictForSpace()) === 0) { if (n > 0) break; throw err; }
      }
    }
    length = n;
    const end = position + length;
    if (end > o.size || position > o.size) {
      const before = o.ranges.bytes;
      o.ranges.add(Math.min(position, o.size), end);
      this.cacheBytes += o.ranges.bytes - before;
      o.size = end;
    }
    o.gen++;
    o.localMtime = Date.now();
    if (!this.localObjs.has(o)) {
      this.markLocal(o);
      const la = this.localAttrs.get(o.path);
      if (la) la.mtimeMs = undefined;
    }
    return length;
  }

  async ftruncate(_path: string, fh: number, size: number): Promise<void> {
    const h = this.handle(fh);
    this.assertWritable();
    if (size < 0) throw new BadRequest('negative size');
    await this.truncateObj(h.obj, size);
  }

  async truncate(path: string, size: number): Promise<void> {
    path = normPath(path);
    this.assertWritable();
    if (size < 0) throw new BadRequest('negative size', { path });
    const fh = await this.open(path, size === 0 ? (1 | O_TRUNC) : 2);
    try {
      if (size > 0) await this.ftruncate(path, fh, size);
      await this.flush(path, fh);
    } finally {
      await this.release(path, fh);
    }
  }

  async fsync(_path: string, fh: number, _datasync: boolean): Promise<void> {
    const h = this.handle(fh);
    const o = h.obj;
    if (o.unlinked) return;
    if (h.writable && o.dirty && o.gen !== o.journaledGen) await this.commitClose(o);
    if (o.pendingUid !== null) await this.within(`upload of ${o.path}`, this.uploadUntilClean(o));
  }

  /** Whole content present locally (before the first write, so the dirty file is complete). */
  private async ensureWhole(o: Obj): Promise<void> {
    if (o.complete) return;
    if (this.remote.read && this.remote.capabilities.rangedReads) {
      // a window of readParallel requests at a time keeps memory bounded for huge files
      const req = 8 * MiB;
      for (let stalls = 0; !o.complete && stalls < 3;) {
        const start = o.ranges.contiguousEnd(0);
        await this.fetchRequired(o, start, Math.min(o.size, start + req * this.opts.readParallel), req);
        if (o.ranges.contiguousEnd(0) === start) stalls++;
      }
      if (!o.complete) throw new BadResponse('the server sent less content than the file size', { path: o.path });
    } else {
      await this.ensureDownloaded(o, o.size);
    }
  }

  /** Ranged remotes: makes [start, end) present; returns how far the bytes from start are present. */
  private async fillRanged(o: Obj, h: Handle, start: number, end: number, seq: boolean): Promise<number> {
    for (let round = 0; ; round++) {
      const epoch = o.epoch;
      if (round === 0) this.fetchWholeAtFirstRead(o, start);
      const waits = this.startRequired(o, start, end, 8 * MiB);
      if (seq && round === 0) this.readAhead(o, h, end);
      await this.within(`read of ${o.path}`, Promise.all(waits));
      // the server's copy changed under the fetch (o follows it now): read its new bytes
      if (o.epoch !== epoch && round < 3) {
        if (start >= o.size) return start;
        end = Math.min(end, o.size);
        continue;
      }
      if (o.ranges.covers(start, end)) return end;
      const have = Math.min(end, o.ranges.contiguousEnd(start));
      if (have > start) return have;
      throw new BadResponse('the server sent less content than the file size', { path: o.path });
    }
  }

  /**
   * A small or medium file read for the first time from its start comes whole with one request
   * (a program that reads its start mostly reads all of it), instead of a run of block-sized
   * requests. A first read further in (an index at the end of an archive) is not made to wait
   * for the bytes before it, unless the file is small enough for that not to matter.
   */
  private fetchWholeAtFirstRead(o: Obj, start: number): void {
    const max = this.opts.readWholeMaxBytes ?? 8 * MiB;
    if (o.size <= 0 || o.size > max || o.ranges.bytes > 0 || o.inflightCount > 0 || o.dirty) return;
    if (start >= this.blockBytes && o.size > 1 * MiB) return;
    this.fetchRun(o, 0, o.size, Priority.interactive).catch(() => { /* its readers get the error */ });
  }

  private async fetchRequired(o: Obj, start: number, end: number, maxReq: number): Promise<void> {
    await this.within(`read of ${o.path}`, Promise.all(this.startRequired(o, start, end, maxReq)));
  }

  /**
   * Starts fetches of the missing blocks of [start, end) and joins fetches in flight: a join
   * waits only until its own bytes have landed, not for the end of a long fetch.
   */
  private startRequired(o: Obj, start: number, end: number, maxReq: number): Promise<void>[] {
    const B = this.blockBytes;
    const waits: Promise<void>[] = [];
    let b = Math.floor(start / B);
    const last = Math.floor((end - 1) / B);
    while (b <= last) {
      const inf = o.inflight.get(b);
      if (inf) {
        let e = b + 1;
        while (e <= last && o.inflight.get(e) === inf) e++;
        waits.push(this.arrival(o, Math.max(start, b * B), Math.min(end, e * B, o.size), inf));
        b = e;
        continue;
      }
      if (this.blockHeld(o, b)) { b++; continue; }
      let e = b + 1;
      while (e <= last && (e - b) * B < maxReq && !o.inflight.has(e) && !this.blockHeld(o, e)) e++;
      waits.push(this.fetchRun(o, b * B, Math.min(e * B, o.size), Priority.interactive));
      b = e;
    }
    return waits;
  }

  /** Resolves once [s, e) is cached or the fetch `run` ended (rejects with its error). */
  private arrival(o: Obj, s: number, e: number, run: Promise<void>): Promise<void> {
    if (o.ranges.covers(s, e)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const w: RangeWaiter = { s, e, resolve };
      o.waiters.push(w);
      const drop = () => {
        const i = o.waiters.indexOf(w);
        if (i >= 0) o.waiters.splice(i, 1);
      };
      run.then(() => { drop(); resolve(); }, (err) => { drop(); reject(err); });
    });
  }

  /** Wakes the readers whose bytes are all cached now. */
  private wakeWaiters(o: Obj): void {
    if (o.waiters.length === 0) return;
    const still: RangeWaiter[] = [];
    for (const w of o.waiters) if (o.ranges.covers(w.s, w.e)) w.resolve(); else still.push(w);
    o.waiters = still;
  }

  private blockHeld(o: Obj, b: number): boolean {
    const s = b * this.blockBytes;
    return o.ranges.covers(s, Math.min(s + this.blockBytes, o.size));
  }

  /**
   * Sequential reader: keeps up to `window` bytes ahead in flight as up to readParallel
   * concurrent ranged requests (each on its own pooled connection), the window doubling each
   * round up to readAheadMaxBytes. With streamed fetches a request costs only a few socket
   * chunks of memory whatever its length, so the requests can be long (few round trips).
   * A request that ends starts the next one at once (not only the reader's next read does), so
   * the connections do not all finish together and then pause.
   */
  private readAhead(o: Obj, h: Handle, from: number): void {
    const B = this.blockBytes;
    const plan = readAheadPlan(from, h.window, h.raEnd, o.size, o.inflightCount, this.opts.readParallel, B);
    if (!plan) return;
    const epoch = o.epoch;
    const next = () => {
      if (o.refs > 0 && o.epoch === epoch && !this.closed && !o.dirty) this.readAhead(o, h, h.nextPos);
    };
    let s = plan.start;
    while (s < plan.target && o.inflightCount < this.opts.readParallel) {
      const b = s / B;
      if (o.inflight.has(b) || this.blockHeld(o, b)) { s += B; continue; }
      let e = s + B;
      while (e < plan.target && e - s < plan.reqBytes && !o.inflight.has(e / B) && !this.blockHeld(o, e / B)) e += B;
      // a reader that needs the bytes of a failed request fetches them again
      this.fetchRun(o, s, Math.min(e, o.size), Priority.normal).then(next, () => {});
      s = e;
    }
    h.raEnd = Math.min(s, plan.target);
    if (h.window < this.opts.readAheadMaxBytes) h.window = Math.min(h.window * 2, this.opts.readAheadMaxBytes);
  }

  private fetchRun(o: Obj, s: number, e: number, priority: number): Promise<void> {
    const B = this.blockBytes;
    const epoch = o.epoch;
    const path = o.path;
    const p = (async () => {
      if (o.fd < 0) await this.openFd(o);
      if (this.remote.readTo) { await this.streamRun(o, s, e, epoch, priority); return; }
      const data = await this.bounded(`read of ${path}`, (signal) => this.remote.read!(path, s, e - s, { signal, priority }));
      if (o.epoch !== epoch) return;
      let n = 0;
      while (n < data.length) n += await pwrite(o.fd, data, n, data.length - n, s + n);
      if (o.epoch !== epoch) return;
      const before = o.ranges.bytes;
      o.ranges.add(s, Math.min(s + data.length, o.size));
      this.cacheBytes += o.ranges.bytes - before;
      o.metaOnDisk = false;
      this.wakeWaiters(o);
    })().finally(() => {
      for (let b = s / B; b * B < e; b++) if (o.inflight.get(b) === p) o.inflight.delete(b);
      o.inflightCount--;
      if (o.refs === 0) this.afterRelease(o);
      else if (this.cacheBytes > this.opts.cacheMaxBytes) this.maybeEvict();
    });
    for (let b = s / B; b * B < e; b++) o.inflight.set(b, p);
    o.inflightCount++;
    return p;
  }

  /**
   * One ranged request streamed into the cache file: bytes count as cached as they land (in
   * writes of LAND_BYTES), so readers go on before the request ends, and memory holds a few
   * socket chunks per request, never a whole range.
   */
  private async streamRun(o: Obj, s: number, e: number, epoch: number, priority: number): Promise<void> {
    const path = o.path;
    let pend: Buffer[] = [];
    let pendPos = s;
    let pendLen = 0;
    const land = async (): Promise<void> => {
      if (pendLen === 0) return;
      const bufs = pend, pos = pendPos, len = pendLen;
      pend = []; pendPos = pos + len; pendLen = 0;
      await pwritevAll(o.fd, bufs, pos);
      if (o.epoch !== epoch) throw STALE_RUN;
      if (!o.dirty && o.refs > 0) {
        o.recent.push({ pos, end: Math.min(pos + len, o.size), bufs, bytes: len, epoch, gen: o.gen });
        o.recentBytes += len;
        while (o.recentBytes > RECENT_BYTES && o.recent.length > 1) o.recentBytes -= o.recent.shift()!.bytes;
      }
      const before = o.ranges.bytes;
      o.ranges.add(pos, Math.min(pos + len, o.size));
      this.cacheBytes += o.ranges.bytes - before;
      o.metaOnDisk = false;
      this.wakeWaiters(o);
    };
    const sink = (chunk: Buffer, pos: number, served: RangeServed): void | Promise<void> => {
      if (o.epoch !== epoch) throw STALE_RUN;
      if (this.otherVersion(o, served.rev)) {
        // bytes of another version than the cached ones never land next to them
        this.serverChanged(o, served.rev!, served.size ?? o.size);
        throw STALE_RUN;
      }
      if (pos !== pendPos + pendLen) {
        // the transfer started over: what is pending lands first, the rest follows from pos
        return land().then(() => { pendPos = pos; pend.push(chunk); pendLen = chunk.length; });
      }
      pend.push(chunk);
      pendLen += chunk.length;
      if (pendLen >= LAND_BYTES) return land();
    };
    let got: RangeRead;
    try {
      got = await this.bounded(`read of ${path}`, (signal) => this.remote.readTo!(path, s, e - s, sink, { signal, priority }));
      await land();
    } catch (err) {
      if (err === STALE_RUN || o.epoch !== epoch) return;
      throw err;
    }
    if (o.epoch === epoch && this.otherVersion(o, got.rev)) this.serverChanged(o, got.rev!, got.size ?? o.size);
  }

  /** The server answered with content of another revision than o's clean cached bytes. */
  private otherVersion(o: Obj, rev: string | undefined): boolean {
    return rev !== undefined && o.ident?.rev !== undefined && rev !== o.ident.rev && !o.authoritative;
  }

  /**
   * A fetch was answered from other content than the cached bytes belong to (the file changed
   * on the server while open): the cached bytes are dropped and o follows the server's version,
   * so no read mixes bytes of two versions from the cache; fetches of the old epoch stop.
   */
  private serverChanged(o: Obj, rev: string, size: number): void {
    this.log.info(`${o.path} changed on the server while being read; its cached bytes are dropped`);
    o.epoch++;
    this.cacheBytes -= o.ranges.bytes;
    o.ranges.clear();
    // the server's time comes with the next listing; a new one now makes the kernel drop its pages
    const e: RemoteEntry = { ...(o.ident ?? { name: baseOf(o.path), type: 'file' }), size, rev, mtimeMs: Date.now() };
    o.ident = { ...e };
    o.size = size;
    if (o.metaOnDisk) {
      o.metaOnDisk = false;
      fsp.rm(this.file(o) + '.meta', { force: true }).catch(() => {});
    }
    this.setInParent(o.path, e);
    this.wakeWaiters(o);
  }

  /** Non-ranged remotes: the whole file streams into the cache file; reads follow its progress. */
  private async ensureDownloaded(o: Obj, need: number): Promise<void> {
    if (o.complete) return;
    if (!o.download) this.startDownload(o);
    if (o.downloaded >= need) return;
    await this.within(`read of ${o.path}`, new Promise<void>((resolve, reject) => {
      o.dlWaiters.push({ need, resolve, reject });
    }));
  }

  private startDownload(o: Obj): void {
    const ac = new AbortController();
    o.dlAbort = ac;
    o.downloaded = 0;
    const epoch = o.epoch;
    const path = o.path;
    const wake = () => {
      const still: typeof o.dlWaiters = [];
      for (const w of o.dlWaiters) if (w.need <= o.downloaded) w.resolve(); else still.push(w);
      o.dlWaiters = still;
    };
    o.download = (async () => {
      if (o.fd < 0) await this.openFd(o);
      await this.remote.download(path, this.file(o), {
        signal: ac.signal,
        priority: Priority.interactive,
        onProgress: (n) => { if (o.epoch === epoch) { o.downloaded = n; wake(); } },
      });
      if (o.epoch !== epoch) throw new Cancelled('download superseded', { path });
      // the client may have replaced the file instead of writing in place: follow the new inode
      const [a, b] = await Promise.all([fsp.stat(this.file(o)), new Promise<fs.Stats>((r, j) => fs.fstat(o.fd, (err, st) => (err ? j(err) : r(st))))]);
      if (a.ino !== b.ino) {
        const old = o.fd;
        o.fd = -1;
        fs.close(old, () => {});
        await this.openFd(o);
      }
      const before = o.ranges.bytes;
      o.size = a.size;
      if (o.ident) o.ident.size = a.size;
      o.ranges.clear();
      o.ranges.add(0, a.size);
      this.cacheBytes += o.ranges.bytes - before;
      o.downloaded = a.size;
      o.metaOnDisk = false;
    })();
    o.download.then(() => {
      for (const w of o.dlWaiters) w.resolve();
      o.dlWaiters = [];
    }, (err) => {
      for (const w of o.dlWaiters) w.reject(err);
      o.dlWaiters = [];
    }).finally(() => {
      o.download = null;
      o.dlAbort = null;
      if (o.refs === 0) this.afterRelease(o);
      else this.maybeEvict();
    });
  }

  // ------------------------------------------------------------------ prefetch

  /**
   * Background work with its own concurrency bound (so a thousand prefetches never hold a
   * thousand fds or queue ahead of what a program waits for: they also go at background priority).
   */
  private bg(lane: Lane, task: () => Promise<void>): boolean {
    if (this.closed || lane.queue.length >= 10_000) return false;
    lane.queue.push(task);
    this.pump(lane);
    return true;
  }

  private pump(lane: Lane): void {
    while (lane.running < lane.limit && lane.queue.length > 0 && !this.closed) {
      const task = lane.queue.shift()!;
      lane.running++;
      task().catch((e) => this.log.debug(`prefetch: ${errText(e)}`)).finally(() => { lane.running--; this.pump(lane); });
    }
  }

  /** After a program listed a folder: its subfolders' listings, so `find` / `ls -R` go on from cache. */
  private prefetchSubdirs(dir: string): void {
    const max = this.opts.prefetchDirs ?? 64;
    const d = this.dirs.get(dir);
    if (max <= 0 || !d || d.dirsPrefetched) return;
    d.dirsPrefetched = true;
    const now = Date.now();
    let n = 0;
    for (const [name, e] of d.entries) {
      if (e.type !== 'dir') continue;
      const p = joinPath(dir, name);
      const c = this.dirs.get(p);
      if ((c && c.expires > now) || this.listInflight.has(p)) continue;
      if (++n > max) break;
      this.bg(this.dirLane, async () => {
        const c2 = this.dirs.get(p);
        if ((c2 && c2.expires > Date.now()) || this.listInflight.has(p)) return;
        await this.listing(p, false, Priority.normal);
      });
    }
  }

  /**
   * After a program opened a file of a listed folder for reading: the folder's other small files,
   * bounded by count, file size and bytes ahead of the program (and only while the cache has
   * room), so `cat *` or `grep -r` pay no round trip per file. The byte budget slides: as the
   * program opens the files taken, the next ones of the listing follow. Ranged remotes fetch each whole with one request at
   * background priority; others in batches (Maxxo: one rsync run for many files).
   */
  private prefetchSiblings(dir: string, opening: string): void {
    const maxFiles = this.opts.prefetchFiles ?? 1000;
    const d = this.dirs.get(dir);
    if (maxFiles <= 0 || !d || d.expires <= Date.now()) return;
    const ranged = !!(this.remote.read && this.remote.capabilities.rangedReads);
    if (!ranged && !this.remote.downloadMany) return;
    let st = d.siblings;
    if (!st) {
      if (d.filesPrefetched) return;
      d.filesPrefetched = true;
      st = d.siblings = { names: [...d.entries.keys()], next: 0, picked: 0, ahead: new Map(), aheadBytes: 0 };
    } else {
      // the program went on to a file the prefetch took: the budget slides along with it
      const sz = st.ahead.get(opening);
      if (sz !== undefined) { st.ahead.delete(opening); st.aheadBytes -= sz; }
      if (st.next >= st.names.length || st.picked >= maxFiles) return;
    }
    // one request per file (ranged) or one batch transfer: files up to a few block sizes are
    // cheap to take along; bigger ones come whole at their first read (fetchWholeAtFirstRead)
    const maxFile = this.opts.prefetchFileMaxBytes ?? 2 * MiB;
    const limit = Math.min(this.opts.prefetchBytes ?? 64 * MiB, (this.opts.cacheMaxBytes - this.cacheBytes) / 2);
    // topped up once half of it was consumed, so whole-file remotes still get batches
    if (st.picked > 0 && st.aheadBytes > limit / 2) return;
    let budget = limit - st.aheadBytes;
    const picks: Obj[] = [];
    while (st.next < st.names.length && st.picked < maxFiles) {
      const name = st.names[st.next]!;
      const e = d.entries.get(name);
      if (!e || e.type !== 'file' || e.size <= 0 || e.size > maxFile || e.size > limit) { st.next++; continue; }
      // in listing order (the order `cat *` and most programs read in): wait until it fits
      if (e.size > budget) break;
      st.next++;
      const p = joinPath(dir, name);
      if (p === opening) continue;
      let o = this.objs.get(p);
      if (o) {
        // only idle clean objects of the same content that miss bytes
        if (o.authoritative || o.refs > 0 || o.complete || o.inflightCount > 0 || o.download || !sameIdent(o.ident, e)) continue;
      } else {
        o = new Obj(randomUUID(), p, e.size, true);
        o.ident = { ...e };
        this.objs.set(p, o);
      }
      budget -= e.size;
      picks.push(o);
      st.picked++;
      st.ahead.set(p, e.size);
      st.aheadBytes += e.size;
    }
    if (picks.length === 0) return;
    if (ranged) {
      for (const o of picks) {
        this.bg(this.fileLane, async () => {
          if (o.unlinked || o.complete || o.inflightCount > 0 || o.authoritative || o.size === 0) return;
          await this.fetchRun(o, 0, o.size, Priority.background);
        });
      }
      return;
    }
    // batches that grow: the first files arrive soon, the rest with few transfer runs
    for (let i = 0, size = 16; i < picks.length; i += size, size = Math.min(size * 4, 256)) {
      const batch = picks.slice(i, i + size);
      const done = this.batchDownload(batch);
      for (const o of batch) this.attachBatch(o, done);
    }
  }

  /** Marks o as being downloaded by a batch: readers wait for it like for their own download. */
  private attachBatch(o: Obj, done: Promise<Set<Obj>>): void {
    o.dlAbort = new AbortController();
    o.downloaded = 0;
    const epoch = o.epoch;
    const p = done.then((got) => got.has(o) && o.epoch === epoch);
    o.download = p.then(() => {});
    p.then((ok) => {
      o.download = null;
      o.dlAbort = null;
      if (ok) {
        for (const w of o.dlWaiters) w.resolve();
        o.dlWaiters = [];
      } else if (o.dlWaiters.length > 0 && !o.unlinked) {
        // not in the batch after all: the readers waiting get a download of their own
        this.startDownload(o);
      }
      if (o.refs === 0) this.afterRelease(o);
    }).catch((e) => this.log.debug(`prefetch of ${o.path}: ${errText(e)}`));
  }

  private batchDownload(objs: Obj[]): Promise<Set<Obj>> {
    return new Promise((resolve) => {
      const queued = this.bg(this.fileLane, async () => {
        const got = new Set<Obj>();
        const stage = join(this.root, 'stage-' + randomUUID());
        try {
          await fsp.mkdir(stage, { mode: 0o700 });
          const epochs = objs.map((o) => o.epoch);
          const items = objs.map((o, i) => ({ path: o.path, localFile: join(stage, String(i)) }));
          let delivered: string[] = [];
          const stop = new AbortController();
          this.batchAborts.add(stop);
          try {
            delivered = await this.bounded(`prefetch of ${objs.length} files`, (signal) =>
              this.remote.downloadMany!(items, { signal: AbortSignal.any([signal, stop.signal]), priority: Priority.background }));
          } catch (e) {
            this.log.debug(`prefetch of ${objs.length} files: ${errText(e)}`);
          } finally {
            this.batchAborts.delete(stop);
          }
          const ok = new Set(delivered);
          for (let i = 0; i < objs.length; i++) {
            const o = objs[i]!;
            if (!ok.has(items[i]!.path) || o.epoch !== epochs[i] || o.unlinked || o.path !== items[i]!.path) continue;
            if (o.fdOpening) await o.fdOpening.catch(() => {});
            if (o.epoch !== epochs[i] || o.unlinked) continue;
            try {
              // synchronous from here: no read, open or fetch of o can interleave with the swap
              fs.renameSync(items[i]!.localFile, this.file(o));
              if (o.fd >= 0) {
                const nfd = fs.openSync(this.file(o), fs.constants.O_RDWR);
                fs.closeSync(o.fd);
                o.fd = nfd;
              }
              const size = fs.statSync(this.file(o)).size;
              const before = o.ranges.bytes;
              o.size = size;
              if (o.ident) o.ident.size = size;
              o.ranges.clear();
              o.ranges.add(0, size);
              this.cacheBytes += o.ranges.bytes - before;
              o.downloaded = size;
              o.metaOnDisk = false;
              got.add(o);
            } catch (e) {
              this.log.debug(`prefetch of ${o.path}: ${errText(e)}`);
            }
          }
        } finally {
          await fsp.rm(stage, { recursive: true, force: true }).catch(() => {});
          resolve(got);
        }
      });
      if (!queued) resolve(new Set());
    });
  }

  /** The cache disk is full: drops all clean unused content and waits until its files are gone. */
  private async evictForSpace(): Promise<number> {
    let freed = 0;
    const gone: Promise<void>[] = [];
    for (const o of [...this.objs.values()]) {
      if (o.refs > 0 || o.authoritative || o.inflightCount > 0 || o.download || o.ranges.bytes === 0) continue;
      freed += o.ranges.bytes;
      gone.push(this.destroy(o));
    }
    await Promise.all(gone);
    if (freed > 0) this.log.warn(`cache disk full: evicted ${freed} bytes of clean cached content`);
    return freed;
  }

  /** LRU eviction of clean content, never of dirty, pending or open objects. */
  private maybeEvict(): void {
    if (this.evicting || this.cacheBytes <= this.opts.cacheMaxBytes) return;
    this.evicting = true;
    try {
      for (const o of [...this.objs.values()]) {
        if (this.cacheBytes <= this.opts.cacheMaxBytes) break;
        if (o.refs > 0 || o.authoritative || o.inflightCount > 0 || o.download || o.ranges.bytes === 0) continue;
        this.destroy(o);
      }
    } finally {
      this.evicting = false;
    }
  }

  // ------------------------------------------------------------------ write-back

  /**
   * close()/fsync() of changed content: policy check (so EFBIG/EPERM/EDQUOT reach the program),
   * data made durable, then the durable journal record.
   */
  private async commitClose(o: Obj): Promise<void> {
    if (o.gen === o.journaledGen || o.unlinked) return;
    const gen = o.gen;
    if (this.remote.checkUpload) {
      try {
        await this.bounded(`policy check of ${o.path}`, (signal) => this.remote.checkUpload!(o.path, o.size, { signal, priority: Priority.interactive }));
        o.refused = null;
      } catch (err) {
        if (!isRemoteError(err) || !err.retryable) {
          if (isRemoteError(err)) o.refused = err;
          throw err;
        }
        // the service is unreachable now: keep the content; the upload checks the policy again
        this.log.warn(`policy check of ${o.path} not possible now (${errText(err)}); checked again before the upload`);
      }
    }
    // the size on disk is the size programs saw
    const trunc = new Promise<void>((r, j) => fs.ftruncate(o.fd, o.size, (err) => (err ? j(err) : r())));
    // A small file's content goes inside its journal record, so its cache file needs no fdatasync;
    // replay restores the cache file from the record. A bigger one is flushed itself, then
    // recorded, so a record on the disk never points at content that is not. Once this returns
    // the content survives a kill -9; a power loss too with sync_close, else once the journal's
    // group commit (within a second) has run (journal.ts).
    let data: Buffer | undefined;
    if (this.journal.canInline(o.size)) {
      // page-cache bytes of our own cache file (never the mount): read inline, no threadpool hop
      data = Buffer.allocUnsafe(o.size);
      for (let off = 0; off < o.size;) {
        const n = fs.readSync(o.fd, data, off, o.size - off, off);
        if (n === 0) { trunc.catch(() => {}); throw new BadResponse(`cache file of ${o.path} is shorter than its content`, { path: o.path }); }
        off += n;
      }
    } else {
      await trunc;
      await new Promise<void>((r, j) => fs.fdatasync(o.fd, (err) => (err ? j(err) : r())));
    }
    if (o.unlinked || o.journaledGen >= gen) { await trunc; return; }
    const uid = randomUUID();
    o.pendingUid = uid;
    o.journaledGen = gen;
    this.markLocal(o);
    // the truncate and the record's write run side by side (two threadpool jobs, one wait)
    await Promise.all([trunc, this.journal.upload({ uid, path: o.path, id: o.id, size: o.size, ...(data ? { data } : {}) })]);
  }

  private schedule(o: Obj, delayMs: number): void {
    if (this.closed || o.unlinked) return;
    if (o.timer) clearTimeout(o.timer);
    o.timer = setTimeout(() => {
      o.timer = null;
      // still being written by someone: the last close schedules again
      if (o.writers > 0 && o.gen !== o.journaledGen) return;
      this.runUpload(o).catch(() => { /* recorded in failures */ });
    }, delayMs);
  }

  /** Uploads until the newest closed content of o is on the server; throws the final failure. */
  private async uploadUntilClean(o: Obj): Promise<void> {
    for (let guard = 0; o.pendingUid !== null && !o.unlinked && !this.closed; guard++) {
      if (o.timer) { clearTimeout(o.timer); o.timer = null; }
      await this.runUpload(o);
      if (guard > 50) throw new Timeout('upload kept being superseded', { path: o.path });
    }
  }

  private runUpload(o: Obj): Promise<void> {
    if (o.uploading) return o.uploading;
    const p = this.doUpload(o).then(() => {
      // closed again while this upload ran: that newer content goes after its own delay
      if (o.uploading === p) o.uploading = null;
      if (o.pendingUid !== null && !o.unlinked && !o.timer && !this.closed) this.schedule(o, this.opts.writebackDelayMs);
    }, (err) => {
      // a transient failure (network, server) is tried again later; a refusal waits for a new close
      if (o.uploading === p) o.uploading = null;
      if (isRemoteError(err) && err.retryable && o.pendingUid !== null && !o.unlinked && !o.timer && !this.closed) {
        this.schedule(o, RETRY_LATER_MS);
      }
      throw err;
    }).finally(() => {
      if (o.uploading === p) o.uploading = null;
      this.markLocal(o);
      if (o.refs === 0) this.afterRelease(o);
    });
    o.uploading = p;
    this.markLocal(o);
    return p;
  }

  private async doUpload(o: Obj): Promise<void> {
    await this.waitBarriers(o);
    const uid = o.pendingUid;
    if (uid === null || o.unlinked || this.closed) return;
    const gen = o.journaledGen;
    const stop = o.stopGen;
    let attempts = 0;
    for (;;) {
      await this.waitBarriers(o);
      if (o.pendingUid !== uid || o.unlinked || this.closed) return;
      const path = o.path;
      const ac = new AbortController();
      o.uploadAbort = ac;
      attempts++;
      try {
        if (this.remote.checkUpload) await this.remote.checkUpload(path, o.size, { signal: ac.signal, priority: Priority.background });
        // stopped while checking (nothing was sent): the namespace change reschedules us
        if (ac.signal.aborted || o.stopGen !== stop) { o.uploadAbort = null; return; }
        o.attempted = true;
        let entry: RemoteEntry;
        try {
          // a retry goes alone: whatever made the batch fail does not hold the file back again
          entry = await this.sendUpload(o, path, ac.signal, attempts === 1);
        } finally {
          o.sending = false;
        }
        o.uploadAbort = null;
        if (o.unlinked) return;
        this.uploaded(o, uid, gen, path, entry);
        return;
      } catch (err) {
        o.uploadAbort = null;
        if (ac.signal.aborted && (ac.signal.reason === MUTATION || ac.signal.reason === CLOSING)) return;
        // a namespace change waits for this attempt to end; it retries at the new state itself
        if (o.stopGen !== stop && o.pendingUid === uid) return;
        const retryable = isRemoteError(err) ? err.retryable : false;
        if (!retryable || attempts >= this.uploadAttempts) {
          const f: UploadFailure = { path, error: errText(err), attempts, atMs: Date.now() };
          this.failures.set(path, f);
          if (o.pendingUid === uid) o.failedUid = uid;
          this.log.error(`upload of ${path} failed after ${attempts} attempt(s), kept for a later retry: ${f.error}`);
          throw err;
        }
        const delay = Math.min(30_000, this.uploadBackoffMs * 2 ** (attempts - 1)) * (0.75 + Math.random() * 0.5);
        this.log.warn(`upload of ${path} failed (attempt ${attempts}), retrying in ${Math.round(delay)} ms: ${errText(err)}`);
        const sleeper = new AbortController();
        o.uploadAbort = sleeper;
        try { await sleep(delay, sleeper.signal); } catch { o.uploadAbort = null; return; }
        o.uploadAbort = null;
      }
    }
  }

  // Batched uploads (remotes with uploadMany, e.g. Maxxo's rsync: one run costs more than a small
  // file's bytes). A closed file due for upload joins the queue; a free lane takes what gathered
  // in a short window, or at once what queued while both lanes were busy, so the batches grow
  // with the backlog. Ordering stays with doUpload: a queued upload is not sent yet (sending is
  // false) and a namespace change aborts it out of the queue; a taken one is sending and is waited
  // for. Each file's result is its own: doUpload completes its journal record, or retries alone.
  private readonly upQueue: UpItem[] = [];
  private upRunning = 0;
  private upGather: NodeJS.Timeout | null = null;

  /** One upload of o's cache file to path: alone, or in the next batch. Sets o.sending once it goes. */
  private sendUpload(o: Obj, path: string, signal: AbortSignal, mayBatch: boolean): Promise<RemoteEntry> {
    if (!mayBatch || !this.remote.uploadMany || !this.remote.capabilities.batchUpload || o.size > UP_BATCH_FILE_MAX) {
      o.sending = true;
      return this.remote.upload(this.file(o), path, { signal, priority: Priority.background });
    }
    return new Promise<RemoteEntry>((resolve, reject) => {
      const it: UpItem = {
        o, path, resolve, reject, signal,
        onAbort: () => {
          const i = this.upQueue.indexOf(it);
          if (i < 0) return; // taken: the batch answers (close() aborts the batch itself)
          this.upQueue.splice(i, 1);
          reject(new Cancelled('upload stopped before it was sent', { path }));
        },
      };
      if (signal.aborted) return reject(new Cancelled('upload stopped before it was sent', { path }));
      signal.addEventListener('abort', it.onAbort, { once: true });
      this.upQueue.push(it);
      this.pumpUploads(false);
    });
  }

  private pumpUploads(backlog: boolean): void {
    if (this.upQueue.length === 0 || this.upRunning >= UP_LANES || this.closed) return;
    if (!backlog) {
      // the first closes of a burst: wait a moment for their siblings
      this.upGather ??= setTimeout(() => { this.upGather = null; this.pumpUploads(true); }, UP_GATHER_MS);
      return;
    }
    if (this.upGather) { clearTimeout(this.upGather); this.upGather = null; }
    const take: UpItem[] = [];
    let bytes = 0;
    while (this.upQueue.length > 0 && take.length < UP_BATCH_MAX_FILES) {
      const it = this.upQueue[0]!;
      if (take.length > 0 && bytes + it.o.size > UP_BATCH_MAX_BYTES) break;
      this.upQueue.shift();
      it.signal.removeEventListener('abort', it.onAbort);
      it.o.sending = true;
      bytes += it.o.size;
      take.push(it);
    }
    this.upRunning++;
    void this.runBatch(take).finally(() => {
      this.upRunning--;
      this.pumpUploads(true);
    });
    this.pumpUploads(true);
  }

  private async runBatch(take: UpItem[]): Promise<void> {
    const stop = new AbortController();
    // one listener per file when the batch falls back to single uploads
    setMaxListeners(0, stop.signal);
    this.batchAborts.add(stop);
    try {
      const res = await this.remote.uploadMany!(take.map((it) => ({ localFile: this.file(it.o), path: it.path })),
        { signal: stop.signal, priority: Priority.background });
      take.forEach((it, i) => {
        const r = res[i];
        if (r?.entry) it.resolve(r.entry);
        else it.reject(r ? r.error : new BadResponse('no result for this upload', { path: it.path }));
      });
    } catch (err) {
      for (const it of take) it.reject(err);
    } finally {
      this.batchAborts.delete(stop);
    }
  }

  private uploaded(o: Obj, uid: string, gen: number, path: string, entry: RemoteEntry): void {
    o.onServer = true;
    o.uploadedGen = gen;
    this.failures.delete(path);
    if (o.pendingUid === uid) {
      o.pendingUid = null;
      this.journal.done(uid).catch((e) => this.log.warn(`journal: ${errText(e)}`));
    }
    if (o.path !== path) return;
    const e: RemoteEntry = { ...entry, name: baseOf(path), type: 'file' };
    if (!o.dirty) o.ident = { ...e };
    this.setInParent(path, e);
  }
}

/** An upload waiting in the batch queue of Vfs.sendUpload. */
interface UpItem {
  o: Obj;
  path: string;
  signal: AbortSignal;
  onAbort: () => void;
  resolve: (e: RemoteEntry) => void;
  reject: (e: unknown) => void;
}
/** Concurrent batch uploads. */
const UP_LANES = 2;
/** How long the first due upload of a burst waits for others to join its batch. */
const UP_GATHER_MS = 10;
/** Bigger files go alone: they would hold back the confirmation of the small ones in their batch. */
const UP_BATCH_FILE_MAX = 16 * MiB;
const UP_BATCH_MAX_BYTES = 64 * MiB;
const UP_BATCH_MAX_FILES = 1000;
