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
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';
import {
  AlreadyExists, BadRequest, BadResponse, Cancelled, IsADirectory, NoXattr, NotADirectory, NotEmpty,
  NotFound, PolicyFileTooLarge, ReadOnly, Timeout, Unsupported, isRemoteError,
} from '../remote/errors.js';
import { Priority, type RangeRead, type RangeServed, type Remote, type RemoteEntry } from '../remote/types.js';
import type { Attr, DriveStatus, FlushResult, FsStats, UploadFailure, VfsApi, VfsOptions } from './api.js';
import { CLOSING, Ctx, MUTATION, MiB, errText } from './context.js';
import { Obj, copyRecent, exclusiveIo, sameIdent, sharedIo, type RangeWaiter } from './content/obj.js';
import { ftruncateFd, pread, pwrite } from './content/fileio.js';
import { Fetcher } from './content/fetch.js';
import { ContentStore } from './content/store.js';
import { Journal } from './journal.js';
import { Prefetcher } from './prefetch.js';
import { AttrTable } from './meta/attrs.js';
import { MetaCache, type DirSlot } from './meta/cache.js';
import { Lookup } from './meta/lookup.js';
import { resolveOptions, safeComponent, type ResolvedOptions } from './options.js';
import { baseOf, isUnder, joinPath, normPath, parentOf, rebase, rekeyMap } from './paths.js';
import { isSequential, readAheadPlan } from './ranges.js';
import { sleep } from '../util/sleep.js';

export { defaultVfsOptions } from './options.js';
export const SHARE_LINK_XATTR = 'user.cloudmount.share_link';

const O_ACCMODE = 3;
const O_RDONLY = 0;
const O_CREAT = fs.constants.O_CREAT;
const O_EXCL = fs.constants.O_EXCL;
const O_TRUNC = fs.constants.O_TRUNC;
const O_APPEND = fs.constants.O_APPEND;
const W_OK = 2;
/** After an upload finally failed with a transient error, it is tried again this much later. */
const RETRY_LATER_MS = 60_000;

/** Lazy journal mode: how soon closed files' records reach the disk (one flush for all of them). */
const JOURNAL_SYNC_DELAY_MS = 1000;

interface Handle {
  obj: Obj;
  writable: boolean;
  append: boolean;
  nextPos: number;
  window: number;
  raEnd: number;
}

interface Barrier { paths: string[]; promise: Promise<void> }

/** A streamed fetch whose content object was reset meanwhile: it stops without an error. */
const STALE_RUN = Symbol('stale run');
/** Bytes of a streamed fetch collected before one write to the cache file. */
const LAND_BYTES = 1024 * 1024;
/** Bytes of just-landed content kept in memory per file being read (see Obj.recent). */
const RECENT_BYTES = 8 * 1024 * 1024;


export class Vfs implements VfsApi {
  private readonly log;
  private readonly root: string;
  private readonly journal: Journal;
  private readonly handles = new Map<number, Handle>();
  private readonly dirHandles = new Set<number>();
  private nextFh = 1;
  /** Batch transfers in flight: close() stops them instead of waiting for them. */
  private readonly batchAborts = new Set<AbortController>();
  private readonly barriers = new Set<Barrier>();
  private readonly failures = new Map<string, UploadFailure>();
  private maxSize: { at: number; value: number | null } | undefined;
  private maxSizeP: Promise<number | null> | undefined;
  /** Recent answers to "is this folder still on the server?", asked before uploads into it. */
  private readonly parentChecks = new Map<string, { at: number; p: Promise<boolean> }>();
  private readonly shareLinks = new Map<string, string>();
  private statfsCache: { value: FsStats; expires: number } | null = null;
  private startP: Promise<void> | null = null;
  private readonly blockBytes: number;
  private readonly uploadAttempts: number;
  private readonly uploadBackoffMs: number;

  /** Where reads of cached content were served from (tests and profiling read it). */
  readonly readsFrom = { memory: 0, file: 0 };

  private readonly ctx: Ctx;
  private readonly meta: MetaCache;
  private readonly lookups: Lookup;
  private readonly attrTable = new AttrTable();
  private readonly store: ContentStore;
  private readonly fetcher: Fetcher;
  private readonly prefetch: Prefetcher;
  private readonly opts: ResolvedOptions;

  constructor(private readonly remote: Remote, options: VfsOptions) {
    const opts = this.opts = resolveOptions(options);
    this.ctx = new Ctx(remote, opts);
    this.meta = new MetaCache(this.ctx);
    this.lookups = new Lookup(this.ctx, this.meta, {
      hidden: (path) => {
        const hid = this.store.hidden.size > 0 ? this.store.hidden.get(path) : undefined;
        return hid && { name: baseOf(path), type: 'file', size: hid.size, mtimeMs: hid.localMtime || hid.ident?.mtimeMs };
      },
      local: (path) => {
        const o = this.store.objs.get(path);
        return o && o.authoritative ? this.store.localEntry(o) : undefined;
      },
    });
    this.log = opts.log;
    this.root = join(opts.cacheDir, safeComponent(opts.accountId));
    this.store = new ContentStore(this.ctx, join(this.root, 'data'));
    this.fetcher = new Fetcher(this.ctx, this.store, (path, e) => this.meta.setInParent(path, e));
    this.prefetch = new Prefetcher(this.ctx, this.meta, this.store, this.fetcher, this.root);
    this.journal = new Journal(join(this.root, 'journal'), undefined, { syncDelayMs: this.opts.syncClose ? 0 : JOURNAL_SYNC_DELAY_MS });
    this.blockBytes = opts.readBlockBytes;
    this.uploadAttempts = opts.uploadAttempts;
    this.uploadBackoffMs = opts.uploadBackoffMs;
    // batches (one transfer run each) go a few at a time; single-request fetches more widely
    // (ranged: a few connections of the account's pool stay free for what a program waits for)
  }

  // ------------------------------------------------------------------ lifecycle

  start(): Promise<void> {
    this.startP ??= this.doStart();
    return this.startP;
  }

  private async doStart(): Promise<void> {
    await fsp.mkdir(this.opts.cacheDir, { recursive: true, mode: 0o700 });
    await fsp.mkdir(this.store.dataDir, { recursive: true, mode: 0o700 });
    await fsp.chmod(this.root, 0o700);
    await fsp.chmod(this.store.dataDir, 0o700);
    const pending = await this.journal.open();
    const restored = await this.store.recover(pending, (p) => {
      const f: UploadFailure = { path: p.path, error: 'cache file of a pending upload is missing', attempts: 0, atMs: Date.now() };
      this.failures.set(p.path, f);
      this.log.error(`pending upload of ${p.path} cannot be replayed: its cache file is missing`);
    });
    // closed files whose upload was not confirmed: they are the local truth until uploaded
    for (const { obj: o, rec } of restored) {
      // whether an earlier attempt reached the server is unknown: treat as possibly there
      o.wb.attempted = true;
      o.gen = 1; o.wb.journaledGen = 1; o.wb.uploadedGen = 0;
      o.wb.pendingUid = rec.uid;
      this.store.localObjs.add(o);
    }
    if (pending.length > 0) this.log.info(`replaying ${pending.length} pending upload(s) from the journal`);
    for (const o of this.store.localObjs) this.schedule(o, 0);
    this.store.maybeEvict();
  }

  /**
   * Uploads every pending change. Each upload gets its retry budget (uploadAttempts) and no more:
   * one that used it up stays in the journal (replayed at the next mount) and is reported in the
   * result, so a flush, and the unmount that waits for it, ends even when the server is gone.
   * `retryFailed: false` skips uploads whose current content already used up its budget.
   */
  async flushAll(opts: { signal?: AbortSignal; retryFailed?: boolean } = {}): Promise<FlushResult> {
    const work: Promise<unknown>[] = [];
    for (const o of [...this.store.localObjs]) {
      if (o.wb.pendingUid === null || o.unlinked) continue;
      if (opts.retryFailed === false && o.wb.failedUid === o.wb.pendingUid) continue;
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
    for (const o of this.store.localObjs) {
      if (o.wb.pendingUid === null || o.unlinked) continue;
      kept.push(this.failures.get(o.path) ?? { path: o.path, error: 'not uploaded', attempts: 0, atMs: Date.now() });
    }
    return { pending: this.journal.pending.size, failed: kept };
  }

  status(): DriveStatus {
    let pendingBytes = 0;
    for (const p of this.journal.pending.values()) pendingBytes += p.size;
    let dirtyBytes = 0;
    for (const o of this.store.localObjs) if (o.dirty) dirtyBytes += o.size;
    return {
      pending: this.journal.pending.size,
      pendingBytes,
      failures: [...this.failures.values()],
      notices: [...this.ctx.notices.list],
      cacheBytes: this.store.cacheBytes,
      dirtyBytes,
    };
  }

  async close(opts: { force?: boolean } = {}): Promise<void> {
    if (this.ctx.closed) return;
    if (this.startP) await this.startP.catch(() => {});
    // an upload that used up its budget in the flush before this close is not tried again here
    if (!opts.force) await this.flushAll({ retryFailed: false });
    this.ctx.closed = true;
    for (const ac of this.batchAborts) ac.abort(CLOSING);
    this.prefetch.stop();
    const settle: Promise<unknown>[] = [];
    for (const o of this.store.objs.values()) {
      if (o.wb.timer) { clearTimeout(o.wb.timer); o.wb.timer = null; }
      o.wb.uploadAbort?.abort(CLOSING);
      o.dlAbort?.abort(CLOSING);
      if (o.wb.uploading) settle.push(o.wb.uploading.catch(() => {}));
      if (o.download) settle.push(o.download.catch(() => {}));
      for (const p of o.inflight.values()) settle.push(p.catch(() => {}));
    }
    await Promise.all(settle);
    await this.store.closeAll();
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

  private assertWritable(): void {
    if (this.opts.readOnly) throw new ReadOnly('the drive is mounted read-only');
  }

  private handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (!h) throw new BadRequest(`unknown file handle ${fh}`);
    return h;
  }

  // ------------------------------------------------------------------ metadata

  /** Forgets cached metadata (and share links) of path and everything below it. */
  private forgetTree(path: string, isDir = true): void {
    this.meta.forgetTree(path, isDir);
    for (const k of [...this.shareLinks.keys()]) if (k === path || isUnder(k, path)) this.shareLinks.delete(k);
  }

  /** Children of dir as the drive shows them: server listing plus local-only files. */
  private async children(dir: string, force = false): Promise<Map<string, { e: RemoteEntry; o?: Obj }>> {
    const d = await this.meta.listing(dir, force);
    const out = new Map<string, { e: RemoteEntry; o?: Obj }>();
    for (const [name, e] of d.entries) {
      const p = joinPath(dir, name);
      const o = this.store.objs.get(p);
      out.set(name, { e, o });
    }
    for (const o of this.store.localObjs) {
      if (!o.unlinked && parentOf(o.path) === dir && o.path !== '/') {
        const name = baseOf(o.path);
        out.set(name, { e: out.get(name)?.e ?? this.store.localEntry(o), o });
      }
    }
    return out;
  }

  async getattr(path: string): Promise<Attr> {
    path = normPath(path);
    const e = await this.lookups.existing(path);
    return this.attrTable.toAttr(path, e, this.store.objs.get(path));
  }

  async fgetattr(path: string, fh: number): Promise<Attr> {
    const h = this.handles.get(fh);
    if (!h) return this.getattr(path);
    const o = h.obj;
    const base: RemoteEntry = o.ident && !o.authoritative ? o.ident : this.store.localEntry(o);
    return this.attrTable.toAttr(o.path, base, o);
  }

  async readdir(path: string): Promise<{ names: string[]; attrs: Map<string, Attr> }> {
    path = normPath(path);
    this.lookups.checkDirCached(path);
    const kids = await this.children(path);
    // the program has seen this listing: a name missing from it is missing (no stat per create)
    const seen = this.meta.dirs.get(path);
    if (seen) seen.implicit = false;
    const names: string[] = [];
    const attrs = new Map<string, Attr>();
    for (const [name, { e: ce, o }] of kids) {
      names.push(name);
      attrs.set(name, this.attrTable.toAttr(joinPath(path, name), ce, o));
    }
    this.prefetch.subdirs(path);
    return { names, attrs };
  }

  async opendir(path: string): Promise<number> {
    path = normPath(path);
    this.lookups.checkDirCached(path);
    // the listing readdir will want anyway also proves the folder exists
    await this.meta.listing(path);
    const fh = this.nextFh++;
    this.dirHandles.add(fh);
    return fh;
  }

  async releasedir(_path: string, fh: number): Promise<void> {
    this.dirHandles.delete(fh);
  }

  async access(path: string, mode: number): Promise<void> {
    path = normPath(path);
    await this.lookups.existing(path);
    if ((mode & W_OK) && this.opts.readOnly) throw new ReadOnly('the drive is mounted read-only', { path });
  }

  async statfs(_path: string): Promise<FsStats> {
    const c = this.statfsCache;
    if (c && c.expires > Date.now()) return c.value;
    const s = await this.ctx.bounded('statfs', (signal) => this.remote.statfs({ signal, priority: Priority.interactive }));
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
    await this.lookups.existing(path);
    this.attrTable.update(path, { atimeMs, mtimeMs, ctimeMs: Date.now() });
  }

  async chmod(path: string, mode: number): Promise<void> {
    path = normPath(path);
    this.assertWritable();
    await this.lookups.existing(path);
    this.attrTable.update(path, { perm: mode & 0o7777, ctimeMs: Date.now() });
  }

  async getxattr(path: string, name: string): Promise<Buffer> {
    path = normPath(path);
    await this.lookups.existing(path);
    if (name !== SHARE_LINK_XATTR || !this.remote.capabilities.shareLinks || !this.remote.shareLink) {
      throw new NoXattr(`no attribute ${name}`, { path });
    }
    let url = this.shareLinks.get(path);
    if (!url) {
      const o = this.store.objs.get(path);
      // a link to content the server has not got yet would share the wrong bytes
      if (o && o.wb.pendingUid !== null) await this.ctx.within(`upload of ${path}`, this.uploadUntilClean(o));
      const r = await this.ctx.bounded(`share link ${path}`, (signal) => this.remote.shareLink!(path, { signal, priority: Priority.interactive }));
      url = r.url;
      this.shareLinks.set(path, url);
    }
    return Buffer.from(url, 'utf8');
  }

  async listxattr(path: string): Promise<string[]> {
    path = normPath(path);
    await this.lookups.existing(path);
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
    await this.lookups.parentDir(path);
    if (await this.lookups.lookup(path)) throw new AlreadyExists('already exists', { path });
    await this.ctx.bounded(`mkdir ${path}`, (signal) => this.remote.mkdir(path, { signal, priority: Priority.interactive }));
    const now = Date.now();
    this.meta.setInParent(path, { name: baseOf(path), type: 'dir', size: 0, mtimeMs: now });
    this.meta.dirs.set(path, { entries: new Map(), expires: now + this.opts.dirTtlMs });
    this.meta.bumpDir(path);
    if (mode && (mode & 0o7777) !== 0o755) this.attrTable.local.set(path, { perm: mode & 0o7777 });
    else this.attrTable.local.delete(path);
  }

  async rmdir(path: string): Promise<void> {
    path = normPath(path);
    this.assertWritable();
    if (path === '/') throw new BadRequest('cannot remove the top folder', { path });
    const e = await this.lookups.existing(path);
    if (e.type !== 'dir') throw new NotADirectory('not a folder', { path });
    // the server deletes folders recursively: only a fresh listing may say "empty"
    const kids = await this.children(path, true);
    if (kids.size > 0) throw new NotEmpty('folder is not empty', { path });
    await this.ctx.bounded(`remove ${path}`, (signal) => this.remote.remove([path], { signal, priority: Priority.interactive }));
    this.forgetTree(path);
    this.meta.setInParent(path, null);
    this.attrTable.forget(path);
  }

  async unlink(path: string, opts: { keepOpenAs?: string } = {}): Promise<void> {
    path = normPath(path);
    this.assertWritable();
    if (this.store.hidden.delete(path)) return;
    const e = await this.lookups.existing(path);
    if (e.type === 'dir') throw new IsADirectory('is a folder', { path });
    await this.withBarrier([path], async () => {
      const o = this.store.objs.get(path);
      if (o) await this.stopUpload(o);
      // POSIX: an open file keeps its content after the unlink. Once the server copy is gone it
      // cannot be fetched any more, so the part not cached yet comes first.
      if (o && o.refs > 0 && !o.complete) await this.fetcher.ensureWhole(o);
      // durable first: after a crash the upload must not come back
      await this.journal.cancel(path);
      const localOnly = !!o && !o.wb.onServer && !o.wb.attempted && !o.wb.shadowsServer;
      if (!localOnly) {
        try {
          await this.ctx.bounded(`remove ${path}`, (signal) => this.remote.remove([path], { signal, priority: Priority.interactive }));
        } catch (err) {
          if (!(isRemoteError(err, 'NOT_FOUND') && o && (o.wb.attempted || o.wb.shadowsServer || !o.wb.onServer))) throw err;
        }
      }
      if (o) {
        this.store.detach(o);
        if (opts.keepOpenAs && o.refs > 0) this.store.hidden.set(normPath(opts.keepOpenAs), o);
      }
      this.failures.delete(path);
      this.attrTable.forget(path);
      this.shareLinks.delete(path);
      this.meta.setInParent(path, null);
    });
  }

  async rename(from: string, to: string): Promise<void> {
    from = normPath(from);
    to = normPath(to);
    this.assertWritable();
    if (from === '/' || to === '/') throw new BadRequest('the top folder cannot be renamed', { path: from });
    const src = await this.lookups.existing(from);
    if (from === to) return;
    if (isUnder(to, from)) throw new BadRequest('cannot move a folder into itself', { path: to });
    await this.lookups.parentDir(to);
    if (src.type === 'file') await this.policyName(to);
    const dst = await this.lookups.lookup(to);
    if (dst) {
      if (src.type === 'dir' && dst.type !== 'dir') throw new NotADirectory('target is not a folder', { path: to });
      if (src.type !== 'dir' && dst.type === 'dir') throw new IsADirectory('target is a folder', { path: to });
      if (dst.type === 'dir' && (await this.children(to, true)).size > 0) throw new NotEmpty('target folder is not empty', { path: to });
    }
    await this.withBarrier([from, to], async () => {
      const moving = [...this.store.objs.values()].filter((o) => o.path === from || isUnder(o.path, from));
      const replaced = this.store.objs.get(to);
      for (const o of moving) await this.stopUpload(o);
      if (replaced) await this.stopUpload(replaced);
      const so = this.store.objs.get(from);
      const srcLocalOnly = src.type === 'file' && !!so && !so.wb.onServer && !so.wb.attempted && !so.wb.shadowsServer;
      // what the server holds at the target after a move that sends nothing (see shadowsServer)
      const dstOnServer = replaced ? replaced.wb.onServer || replaced.wb.attempted || replaced.wb.shadowsServer : !!dst;
      const replacedPending = replaced ? this.journal.forPath(to) : undefined;
      if (dst) await this.journal.cancel(to);
      const jr = this.journal.rename(from, to);
      // local view first, so a close() journaling meanwhile already records the new name
      if (replaced) { this.store.objs.delete(to); this.store.localObjs.delete(replaced); }
      this.rekey(from, to, moving);
      try {
        await jr;
        if (!srcLocalOnly) await this.serverMove(from, to, src, dst, so);
      } catch (err) {
        this.rekey(to, from, moving);
        await this.journal.rename(to, from).catch(() => {});
        if (replaced) {
          // the target was not replaced after all: its own pending content is kept
          this.store.objs.set(to, replaced);
          this.store.markLocal(replaced);
          if (replacedPending) await this.journal.upload(replacedPending).catch(() => {});
        }
        throw err;
      }
      if (replaced) this.store.detach(replaced);
      if (srcLocalOnly && dstOnServer) so!.wb.shadowsServer = true;
      this.forgetTree(from, src.type === 'dir');
      this.forgetTree(to, src.type === 'dir' || dst?.type === 'dir');
      this.meta.setInParent(from, null);
      this.meta.setInParent(to, { ...src, name: baseOf(to) });
    });
    for (const o of this.store.localObjs) {
      if ((o.path === to || isUnder(o.path, to)) && o.wb.pendingUid !== null && !o.wb.timer && !o.wb.uploading) {
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
    const move = () => this.ctx.bounded(`move ${from} -> ${to}`, (signal) => this.remote.move(from, to, { signal, priority: Priority.interactive }));
    try {
      await move();
    } catch (err) {
      // Maxxo explains its refusal by the types it finds (a folder onto any folder is NOT_EMPTY)
      const conflict = isRemoteError(err, 'ALREADY_EXISTS') || isRemoteError(err, 'NOT_EMPTY') ||
        isRemoteError(err, 'IS_A_DIRECTORY') || isRemoteError(err, 'NOT_A_DIRECTORY');
      if (conflict) {
        const cur = await this.ctx.bounded(`stat ${to}`, (signal) => this.remote.stat(to, { signal, priority: Priority.interactive }));
        if (!cur) throw err;
        if (!dst) this.log.debug(`rename ${from} -> ${to}: the target exists on the server after all (stale cache)`);
        if (src.type === 'dir' && cur.type !== 'dir') throw new NotADirectory('target is not a folder', { path: to });
        if (src.type !== 'dir' && cur.type === 'dir') throw new IsADirectory('target is a folder', { path: to });
        if (cur.type === 'dir') {
          const l = await this.ctx.bounded(`list ${to}`, (signal) => this.remote.list(to, { signal, priority: Priority.interactive }));
          if (l.entries.length > 0) throw new NotEmpty('target folder is not empty', { path: to });
        }
        // POSIX rename replaces the target; the service would not, so remove it first
        await this.ctx.bounded(`remove ${to}`, (signal) => this.remote.remove([to], { signal, priority: Priority.interactive }));
        await move();
        return;
      }
      // a file whose pending upload never reached the server has nothing to move there
      if (isRemoteError(err, 'NOT_FOUND') && src.type === 'file' && so && so.wb.pendingUid !== null) return;
      throw err;
    }
  }

  /** Moves local state (objects, local attributes, failures) from `from` to `to`. */
  private rekey(from: string, to: string, objs: Obj[]): void {
    for (const o of objs) if (this.store.objs.get(o.path) === o) this.store.objs.delete(o.path);
    for (const o of objs) {
      o.path = rebase(o.path, from, to);
      const prev = this.store.objs.get(o.path);
      if (prev && prev !== o) this.store.detach(prev);
      this.store.objs.set(o.path, o);
      // the index names the old path; it is written again at the next release
      this.store.dropMeta(o);
    }
    this.attrTable.rekey(from, to);
    rekeyMap(this.failures, from, to, (f, nk) => { f.path = nk; });
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
    o.wb.parked = true;
    try {
      for (;;) {
        const b = [...this.barriers].find((x) => x.paths.some((bp) => o.path === bp || isUnder(o.path, bp)));
        if (!b) return;
        await b.promise;
      }
    } finally {
      o.wb.parked = false;
    }
  }

  /**
   * Stops a pending upload of o (it stays pending) and waits until its task settled. An upload
   * whose request is already sent is not aborted but waited for: an abort only closes our socket,
   * the server may still apply the upload after our delete or move (a resurrected file), so the
   * namespace change goes after the server answered it.
   */
  private async stopUpload(o: Obj): Promise<void> {
    if (o.wb.timer) { clearTimeout(o.wb.timer); o.wb.timer = null; }
    o.wb.stopGen++;
    // an upload parked at our own barrier has sent nothing; waiting for it would deadlock
    if (o.wb.uploading && !o.wb.parked) {
      if (!o.wb.sending) o.wb.uploadAbort?.abort(MUTATION);
      // a client that ignores the abort must not make us overtake its upload: fail (EIO) instead
      await this.ctx.within(`stopping the upload of ${o.path}`, o.wb.uploading.catch(() => {}));
    }
  }

  // ------------------------------------------------------------------ open / create / release

  async open(path: string, flags: number): Promise<number> {
    path = normPath(path);
    await this.start();
    const writable = (flags & O_ACCMODE) !== O_RDONLY;
    if (writable || (flags & O_TRUNC)) this.assertWritable();
    const e = await this.lookups.lookup(path);
    if (!e) {
      if (flags & O_CREAT) return this.create(path, 0o644, flags);
      throw new NotFound('no such file', { path });
    }
    if (e.type === 'dir') throw new IsADirectory('is a folder', { path });
    if ((flags & O_CREAT) && (flags & O_EXCL)) throw new AlreadyExists('already exists', { path });
    let o = this.store.objs.get(path);
    if (o && !o.authoritative && !sameIdent(o.ident, e)) {
      // the server has other content now: cached bytes are stale
      await this.fetcher.resetContent(o, e);
    }
    if (!o) {
      o = this.store.add(path, e.size, true, e);
    }
    // a program reading one file of a listed folder often reads its siblings next (cat *, grep -r)
    if (!writable) this.prefetch.siblings(parentOf(path), path);
    return this.openObj(o, flags, writable);
  }

  private async openObj(o: Obj, flags: number, writable: boolean): Promise<number> {
    o.refs++;
    if (writable) o.writers++;
    try {
      await this.store.openFd(o);
      this.store.touchLru(o);
      if (writable && (flags & O_TRUNC) && (o.size > 0 || !o.dirty)) await this.truncateObj(o, 0);
    } catch (err) {
      o.refs--;
      if (writable) o.writers--;
      this.store.afterRelease(o);
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
    await this.lookups.parentDir(path);
    const e = await this.lookups.lookup(path);
    if (e) {
      if (flags & O_EXCL) throw new AlreadyExists('already exists', { path });
      if (e.type === 'dir') throw new IsADirectory('is a folder', { path });
      return this.open(path, flags & ~O_CREAT);
    }
    // a name the service refuses fails here, not at close() after the program wrote it all
    await this.policyName(path);
    const stale = this.store.objs.get(path);
    if (stale) this.store.detach(stale);
    const o = this.store.add(path, 0, false);
    o.gen = 1;
    o.localMtime = Date.now();
    this.store.markLocal(o);
    this.meta.attrs.delete(path);
    this.meta.bumpDir(parentOf(path));
    const perm = mode & 0o7777;
    if (perm && perm !== 0o644) this.attrTable.local.set(path, { perm }); else this.attrTable.local.delete(path);
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
      await this.ctx.within(`upload of ${o.path}`, this.uploadUntilClean(o));
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
    if (h.writable && !o.unlinked && o.gen !== o.wb.journaledGen && o.writers === 0) {
      if (o.wb.refused) {
        this.discardLocal(o);
      } else {
        // flush was skipped or failed: the content still has to be kept
        try { await this.commitClose(o); } catch (err) {
          if (o.wb.refused) this.discardLocal(o);
          else this.log.error(`keeping ${o.path} failed: ${errText(err)}`);
        }
      }
    }
    if (!o.unlinked && o.writers === 0 && o.wb.pendingUid !== null && !o.wb.timer && !o.wb.uploading) {
      this.schedule(o, this.opts.writebackDelayMs);
    }
    this.store.afterRelease(o);
  }

  /** A refused (policy) file cannot reach the server: the server's state is shown again. */
  private discardLocal(o: Obj): void {
    const message = `${o.path}: ${errText(o.wb.refused)}; the program was told at close, and the local changes were discarded`;
    this.ctx.notices.add(o.path, message);
    this.store.detach(o);
    this.meta.attrs.delete(o.path);
    this.meta.bumpDir(parentOf(o.path));
  }

  // ------------------------------------------------------------------ content

  private async beforeModify(o: Obj): Promise<void> {
    // a clean index entry for bytes that are about to change would serve them after a crash
    if (!o.dirty) await this.store.dropMeta(o, true);
  }

  private modified(o: Obj): void {
    o.gen++;
    o.localMtime = Date.now();
    this.attrTable.contentModified(o.path);
    this.store.markLocal(o);
  }

  private async truncateObj(o: Obj, size: number): Promise<void> {
    const max = size > o.size ? await this.policyMaxSize(o.path) : null;
    if (max !== null && size > max) throw new PolicyFileTooLarge(`the organization policy allows files of at most ${max} bytes`, { path: o.path });
    if (size > 0 && !o.complete) await this.fetcher.ensureWhole(o);
    await this.beforeModify(o);
    if (size === 0) await this.fetcher.quiesce(o);
    await exclusiveIo(o, async () => {
      await ftruncateFd(o.fd, size);
      if (size < o.size) this.store.truncateRanges(o, size); else this.store.addRange(o, o.size, size);
      o.size = size;
      this.modified(o);
    });
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
        end = await this.fetcher.fillRanged(o, h, position, end, seq);
      } else {
        await this.fetcher.ensureDownloaded(o, end);
        if (o.size < end) end = Math.max(position, o.size);
      }
    } else if (seq && !o.dirty && this.remote.read && this.remote.capabilities.rangedReads) {
      this.fetcher.readAhead(o, h, end);
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
    if (!o.complete) await this.fetcher.ensureWhole(o);
    if (!o.dirty) await this.beforeModify(o);
    const max = await this.policyMaxSize(o.path);
    return sharedIo(o, async () => {
      // An append's place is taken now, before any await: two appends in flight get two places.
      if (h.append) position = o.size;
      if (max !== null && position + length > max) {
        // as with RLIMIT_FSIZE: what fits is written, the write at the limit fails with EFBIG
        if (position >= max) throw new PolicyFileTooLarge(`the organization policy allows files of at most ${max} bytes`, { path: o.path });
        length = max - position;
      }
      const reserved = position + length;
      const grow = (end: number) => {
        if (end <= o.size) return;
        this.store.addRange(o, o.size, end);
        o.size = end;
      };
      const prev = o.size;
      grow(reserved);
      let n = 0;
      let evicted = false;
      try {
        while (n < length) {
          try {
            n += await pwrite(o.fd, buf, n, length - n, position + n);
          } catch (err) {
            // cache disk full: clean cached content goes first; only then does the program see ENOSPC
            if ((err as NodeJS.ErrnoException).code !== 'ENOSPC' || evicted) { if (n > 0) break; throw err; }
            evicted = true;
            if ((await this.store.evictForSpace()) === 0) { if (n > 0) break; throw err; }
          }
        }
      } finally {
        // a short or failed write gives back the part of its reservation nobody wrote after it
        if (n < length && o.size === reserved && reserved > prev) {
          const end = n > 0 ? Math.max(prev, position + n) : prev;
          this.store.truncateRanges(o, end);
          o.size = end;
        }
        if (n > 0) {
          o.gen++;
          o.localMtime = Date.now();
          if (!this.store.localObjs.has(o)) {
            this.store.markLocal(o);
            this.attrTable.contentModified(o.path);
          }
        }
      }
      return n;
    });
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
    if (h.writable && o.dirty && o.gen !== o.wb.journaledGen) await this.commitClose(o);
    if (o.wb.pendingUid !== null) await this.ctx.within(`upload of ${o.path}`, this.uploadUntilClean(o));
  }

  // ------------------------------------------------------------------ prefetch


  // ------------------------------------------------------------------ write-back

  /** Refuses a file name the service's policy excludes (nothing when the service has no policy). */
  private async policyName(path: string): Promise<void> {
    const pol = this.remote.uploadPolicy;
    if (!pol) return;
    try {
      await this.ctx.bounded(`policy check of ${path}`, (signal) => pol.checkName(path, { signal, priority: Priority.interactive }));
    } catch (err) {
      // the policy unreadable now: the checks before the upload still hold
      if (isRemoteError(err) && err.retryable) return;
      throw err;
    }
  }

  /** The policy's size limit for writes, refreshed in the background once it is old. */
  private async policyMaxSize(path: string): Promise<number | null> {
    const pol = this.remote.uploadPolicy;
    if (!pol) return null;
    const now = Date.now();
    const c = this.maxSize;
    if (c && now - c.at < POLICY_REFRESH_MS) return c.value;
    if (this.maxSizeP) return c ? c.value : this.maxSizeP;
    const p = this.maxSizeP = pol.maxFileSize(path, { priority: Priority.interactive }).then((value) => {
      this.maxSize = { at: Date.now(), value };
      return value;
    }, (err) => {
      // unknown now: the check at close and before the upload still hold
      this.log.debug(`policy size limit not readable: ${errText(err)}`);
      if (c) c.at = Date.now();
      return c?.value ?? null;
    }).finally(() => { this.maxSizeP = undefined; });
    // an old answer serves while the new one is on its way; only the first write waits
    return c ? c.value : p;
  }

  /**
   * close()/fsync() of changed content: policy check (so EFBIG/EPERM/EDQUOT reach the program),
   * data made durable, then the durable journal record.
   */
  private async commitClose(o: Obj): Promise<void> {
    if (o.gen === o.wb.journaledGen || o.unlinked) return;
    if (this.remote.checkUpload) {
      try {
        await this.ctx.bounded(`policy check of ${o.path}`, (signal) => this.remote.checkUpload!(o.path, o.size, { signal, priority: Priority.interactive }));
        o.wb.refused = null;
      } catch (err) {
        if (!isRemoteError(err) || !err.retryable) {
          if (isRemoteError(err)) o.wb.refused = err;
          throw err;
        }
        // the service is unreachable now: keep the content; the upload checks the policy again
        this.log.warn(`policy check of ${o.path} not possible now (${errText(err)}); checked again before the upload`);
      }
    }
    // The snapshot is taken with no write in flight (other handles may still be appending): the
    // size, generation and bytes recorded belong together.
    let gen = 0;
    let size = 0;
    let record: Promise<void> | undefined;
    await exclusiveIo(o, async () => {
      gen = o.gen;
      size = o.size;
      if (gen === o.wb.journaledGen) return;
      // the size on disk is the size programs saw
      const trunc = new Promise<void>((r, j) => fs.ftruncate(o.fd, size, (err) => (err ? j(err) : r())));
      // A small file's content goes inside its journal record, so its cache file needs no
      // fdatasync; replay restores the cache file from the record. A bigger one is flushed
      // itself, then recorded, so a record on the disk never points at content that is not. Once
      // this returns the content survives a kill -9; a power loss too with sync_close, else once
      // the journal's group commit (within a second) has run (journal.ts).
      if (this.journal.canInline(size)) {
        // page-cache bytes of our own cache file (never the mount): read inline, no threadpool hop
        const data = Buffer.allocUnsafe(size);
        for (let off = 0; off < size;) {
          const n = fs.readSync(o.fd, data, off, size - off, off);
          if (n === 0) { trunc.catch(() => {}); throw new BadResponse(`cache file of ${o.path} is shorter than its content`, { path: o.path }); }
          off += n;
        }
        // the record's write runs beside the truncate (two threadpool jobs, one wait)
        record = this.recordClose(o, gen, size, data);
      }
      // writes start again once the file has the size they extend
      await trunc;
      if (!record) await new Promise<void>((r, j) => fs.fdatasync(o.fd, (err) => (err ? j(err) : r())));
    }).catch((err) => { record?.catch(() => {}); throw err; });
    await (record ?? this.recordClose(o, gen, size, undefined));
  }

  /** The journal record of closed content: from now on it is the content to upload. */
  private recordClose(o: Obj, gen: number, size: number, data: Buffer | undefined): Promise<void> {
    if (o.unlinked || o.wb.journaledGen >= gen) return Promise.resolve();
    const uid = randomUUID();
    o.wb.pendingUid = uid;
    o.wb.journaledGen = gen;
    this.store.markLocal(o);
    return this.journal.upload({ uid, path: o.path, id: o.id, size, ...(data ? { data } : {}) });
  }

  private schedule(o: Obj, delayMs: number): void {
    if (this.ctx.closed || o.unlinked) return;
    if (o.wb.timer) clearTimeout(o.wb.timer);
    o.wb.timer = setTimeout(() => {
      o.wb.timer = null;
      // still being written by someone: the last close schedules again
      if (o.writers > 0 && o.gen !== o.wb.journaledGen) return;
      this.runUpload(o).catch(() => { /* recorded in failures */ });
    }, delayMs);
  }

  /** Uploads until the newest closed content of o is on the server; throws the final failure. */
  private async uploadUntilClean(o: Obj): Promise<void> {
    for (let guard = 0; o.wb.pendingUid !== null && !o.unlinked && !this.ctx.closed; guard++) {
      if (o.wb.timer) { clearTimeout(o.wb.timer); o.wb.timer = null; }
      await this.runUpload(o);
      if (guard > 50) throw new Timeout('upload kept being superseded', { path: o.path });
    }
  }

  private runUpload(o: Obj): Promise<void> {
    if (o.wb.uploading) return o.wb.uploading;
    const p = this.doUpload(o).then(() => {
      // closed again while this upload ran: that newer content goes after its own delay
      if (o.wb.uploading === p) o.wb.uploading = null;
      if (o.wb.pendingUid !== null && !o.unlinked && !o.wb.timer && !this.ctx.closed) this.schedule(o, this.opts.writebackDelayMs);
    }, (err) => {
      // a transient failure (network, server) is tried again later; a refusal waits for a new close
      if (o.wb.uploading === p) o.wb.uploading = null;
      if (isRemoteError(err) && err.retryable && o.wb.pendingUid !== null && !o.unlinked && !o.wb.timer && !this.ctx.closed) {
        this.schedule(o, RETRY_LATER_MS);
      }
      throw err;
    }).finally(() => {
      if (o.wb.uploading === p) o.wb.uploading = null;
      this.store.markLocal(o);
      if (o.refs === 0) this.store.afterRelease(o);
    });
    o.wb.uploading = p;
    this.store.markLocal(o);
    return p;
  }

  private async doUpload(o: Obj): Promise<void> {
    await this.waitBarriers(o);
    const uid = o.wb.pendingUid;
    if (uid === null || o.unlinked || this.ctx.closed) return;
    const gen = o.wb.journaledGen;
    const stop = o.wb.stopGen;
    let attempts = 0;
    for (;;) {
      await this.waitBarriers(o);
      if (o.wb.pendingUid !== uid || o.unlinked || this.ctx.closed) return;
      const path = o.path;
      const ac = new AbortController();
      o.wb.uploadAbort = ac;
      attempts++;
      try {
        if (this.remote.checkUpload) await this.remote.checkUpload(path, o.size, { signal: ac.signal, priority: Priority.background });
        await this.checkParent(path, ac.signal);
        // stopped while checking (nothing was sent): the namespace change reschedules us
        if (ac.signal.aborted || o.wb.stopGen !== stop) { o.wb.uploadAbort = null; return; }
        o.wb.attempted = true;
        let entry: RemoteEntry;
        try {
          // a retry goes alone: whatever made the batch fail does not hold the file back again
          entry = await this.sendUpload(o, path, ac.signal, attempts === 1);
        } finally {
          o.wb.sending = false;
        }
        o.wb.uploadAbort = null;
        if (o.unlinked) return;
        this.uploaded(o, uid, gen, path, entry);
        return;
      } catch (err) {
        o.wb.uploadAbort = null;
        if (ac.signal.aborted && (ac.signal.reason === MUTATION || ac.signal.reason === CLOSING)) return;
        // a namespace change waits for this attempt to end; it retries at the new state itself
        if (o.wb.stopGen !== stop && o.wb.pendingUid === uid) return;
        const retryable = isRemoteError(err) ? err.retryable : false;
        if (!retryable || attempts >= this.uploadAttempts) {
          const f: UploadFailure = { path, error: errText(err), attempts, atMs: Date.now() };
          this.failures.set(path, f);
          if (o.wb.pendingUid === uid) o.wb.failedUid = uid;
          this.log.error(`upload of ${path} failed after ${attempts} attempt(s), kept for a later retry: ${f.error}`);
          throw err;
        }
        const delay = Math.min(30_000, this.uploadBackoffMs * 2 ** (attempts - 1)) * (0.75 + Math.random() * 0.5);
        this.log.warn(`upload of ${path} failed (attempt ${attempts}), retrying in ${Math.round(delay)} ms: ${errText(err)}`);
        const sleeper = new AbortController();
        o.wb.uploadAbort = sleeper;
        o.wb.backoff = true;
        try { await sleep(delay, sleeper.signal); } catch { o.wb.uploadAbort = null; return; } finally { o.wb.backoff = false; }
        o.wb.uploadAbort = null;
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

  /** One upload of o's cache file to path: alone, or in the next batch. Sets o.wb.sending once it goes. */
  private sendUpload(o: Obj, path: string, signal: AbortSignal, mayBatch: boolean): Promise<RemoteEntry> {
    if (!mayBatch || !this.remote.uploadMany || !this.remote.capabilities.batchUpload || o.size > UP_BATCH_FILE_MAX) {
      o.wb.sending = true;
      return this.remote.upload(this.store.file(o), path, { signal, priority: Priority.background });
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
    if (this.upQueue.length === 0 || this.upRunning >= UP_LANES || this.ctx.closed) return;
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
      it.o.wb.sending = true;
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
      const res = await this.remote.uploadMany!(take.map((it) => ({ localFile: this.store.file(it.o), path: it.path })),
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

  /**
   * Another client may have deleted the folder of a file whose changes are not uploaded yet. The
   * upload recreates it (both services make missing parents), so what the program wrote is kept:
   * our bytes win, and that is said (log and status), never silent. One answer serves the uploads
   * into a folder for PARENT_CHECK_MS, so a delete in that window before an upload goes unnoticed.
   */
  private async checkParent(path: string, signal: AbortSignal): Promise<void> {
    const dir = parentOf(path);
    if (dir === '/') return;
    const now = Date.now();
    let c = this.parentChecks.get(dir);
    if (!c || now - c.at > PARENT_CHECK_MS) {
      const p = this.remote.stat(dir, { signal, priority: Priority.background }).then((e) => e?.type === 'dir', (err) => {
        // no answer is no evidence: the upload goes ahead and the next one asks again
        if (this.parentChecks.get(dir)?.p === p) this.parentChecks.delete(dir);
        if (signal.aborted) throw err;
        return true;
      });
      c = { at: now, p };
      this.parentChecks.set(dir, c);
      if (this.parentChecks.size > 1000) this.parentChecks.delete(this.parentChecks.keys().next().value!);
    }
    if (await c.p) return;
    // gone: said once per folder and burst (the uploads that follow make it exist again)
    if (this.parentChecks.get(dir) === c) this.parentChecks.set(dir, { at: now, p: Promise.resolve(true) });
    const message = `folder ${dir} was deleted on the server by another client while ${path} had changes not uploaded yet; ` +
      'it is made again to keep them (what else the other client deleted stays deleted)';
    this.ctx.notices.add(dir, message);
    // our listing of it predates the delete
    this.meta.dirs.delete(dir);
    this.meta.bumpDir(dir);
  }

  private uploaded(o: Obj, uid: string, gen: number, path: string, entry: RemoteEntry): void {
    o.wb.onServer = true;
    o.wb.uploadedGen = gen;
    this.failures.delete(path);
    if (o.wb.pendingUid === uid) {
      o.wb.pendingUid = null;
      this.journal.done(uid).catch((e) => this.log.warn(`journal: ${errText(e)}`));
    }
    if (o.path !== path) return;
    const e: RemoteEntry = { ...entry, name: baseOf(path), type: 'file' };
    if (!o.dirty) o.ident = { ...e };
    this.meta.setInParent(path, e);
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
/** How old the policy's size limit may get before a write asks for it again (in the background). */
const POLICY_REFRESH_MS = 30_000;
/** How long one "the folder is still there" answer serves the uploads into that folder. */
const PARENT_CHECK_MS = 500;
/** Concurrent batch uploads. */
const UP_LANES = 2;
/** How long the first due upload of a burst waits for others to join its batch. */
const UP_GATHER_MS = 10;
/** Bigger files go alone: they would hold back the confirmation of the small ones in their batch. */
const UP_BATCH_FILE_MAX = 16 * MiB;
const UP_BATCH_MAX_BYTES = 64 * MiB;
const UP_BATCH_MAX_FILES = 1000;
