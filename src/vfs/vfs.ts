// The Vfs facade: the VfsApi the FUSE adapter calls, in path terms. It normalizes paths, keeps
// the open file and folder handles, checks read-only, and wires the components together; the
// work is theirs (src/vfs/README.md has the module table, who owns which state, the write-back
// state machine and the ordering rules):
//   meta/       attribute + listing caches, lookup, inode table        content/   cached file objects,
//   prefetch.ts background listings and small files                    store, fetch, read/write
//   writeback/  commit, upload state machine, batches, policy          namespace/ mkdir/rmdir/unlink/rename
// Semantics are DESIGN.md's "Semantics".
//
// Design decisions (why):
// - File content, deletes, mkdirs and renames of files are written back (journalled, sent
//   later, replayed after a crash); renames of folders go to the server before the call returns
//   (namespace/ops.ts and the queues there).
// - A file's content is fetched whole before its first write, so every dirty cache file is a
//   complete copy that can be uploaded as is, also after a crash (content/obj.ts).
// - One content object (Obj) per path owns one cache file and one fd shared by all handles; reads
//   and writes go straight between the caller's buffer and that fd.
import { randomUUID } from 'node:crypto';
import fs, { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import {
  AlreadyExists, BadRequest, Cancelled, IsADirectory, NotFound, ReadOnly, Unsupported,
} from '../errors.js';
import { Priority, type Remote, type RemoteEntry, type StatFs } from '../remote/types.js';
import type { Attr, DirEntry, DriveStatus, FileExtent, FlushResult, FsStats, RenameFlags, TimeChange, VfsApi, VfsOptions } from './api.js';
import { InodeVfs } from './inodes.js';
import { Ctx, errText } from './context.js';
import { ContentIo } from './content/io.js';
import { Fetcher, type ReadCursor } from './content/fetch.js';
import { sameIdent, type Obj } from './content/obj.js';
import { ContentStore } from './content/store.js';
import { Journal } from './journal.js';
import { AttrTable } from './meta/attrs.js';
import { MetaCache } from './meta/cache.js';
import { Lookup } from './meta/lookup.js';
import { Barriers } from './namespace/barriers.js';
import { Namespace } from './namespace/ops.js';
import { NamespaceQueues } from './namespace/queues.js';
import { resolveOptions, safeComponent, type ResolvedOptions } from './options.js';
import { baseOf, normPath, parentOf } from './paths.js';
import { Prefetcher } from './prefetch.js';
import { PolicyGate } from './writeback/policy.js';
import { Uploader } from './writeback/uploader.js';
import { AttrWriter, contentUnsent } from './writeback/attrs.js';
import { usableDir } from '../util/dirs.js';
import { untilAborted } from '../util/sleep.js';
import { ShareLinkAttr } from './meta/sharelinks.js';

export { defaultVfsOptions } from './options.js';
export { SHARE_LINK_XATTR } from './meta/sharelinks.js';

const O_ACCMODE = 3;
const O_RDONLY = 0;
const O_CREAT = fs.constants.O_CREAT;
const O_EXCL = fs.constants.O_EXCL;
const O_TRUNC = fs.constants.O_TRUNC;
const O_APPEND = fs.constants.O_APPEND;
const W_OK = 2;

/** Lazy journal mode: how soon closed files' records reach the disk (one flush for all of them). */
const JOURNAL_SYNC_DELAY_MS = 1000;

/** An open file: its content object and its read-ahead state. */
interface Handle extends ReadCursor {
  obj: Obj;
  writable: boolean;
  append: boolean;
}

export class Vfs implements VfsApi {
  private readonly log;
  private readonly root: string;
  private readonly journal: Journal;
  private readonly handles = new Map<number, Handle>();
  private readonly dirHandles = new Set<number>();
  private nextFh = 1;
  private readonly shareLinks: ShareLinkAttr;
  private statfsCache: { value: FsStats; expires: number } | null = null;
  private startP: Promise<void> | null = null;


  private readonly ctx: Ctx;
  private readonly meta: MetaCache;
  private readonly lookups: Lookup;
  private readonly attrTable: AttrTable;
  private readonly attrWriter: AttrWriter;
  private readonly store: ContentStore;
  private readonly fetcher: Fetcher;
  private readonly prefetch: Prefetcher;
  private readonly barriers = new Barriers();
  private readonly policy: PolicyGate;
  private readonly uploader: Uploader;
  private readonly ns: Namespace;
  /** Deletes, mkdirs (where the service makes folders in batches) and renames of files, written back. */
  private readonly queues: NamespaceQueues;
  private readonly io: ContentIo;
  private readonly opts: ResolvedOptions;
  readonly inodes: InodeVfs;

  constructor(private readonly remote: Remote, options: VfsOptions) {
    const opts = this.opts = resolveOptions(options);
    this.ctx = new Ctx(remote, opts);
    this.remote.revalidation?.cacheTtls({ attrTtlMs: opts.attrTtlMs, dirTtlMs: opts.dirTtlMs });
    this.attrTable = new AttrTable(remote.fileMeta);
    this.meta = new MetaCache(this.ctx, (path) => this.queues.hides(path), {
      pending: (path) => this.queues.overlay.pending(path),
      childrenOf: (dir) => this.queues.overlay.childrenOf(dir),
      movedInto: (dir) => this.queues.overlay.movedInto(dir),
    });
    this.lookups = new Lookup(this.ctx, this.meta, {
      hidden: (path) => {
        const hid = this.hiddenAt(path);
        return hid && { name: baseOf(path), type: 'file', size: hid.size, mtimeMs: hid.localMtime || hid.ident?.mtimeMs };
      },
      local: (path) => {
        const o = this.store.objs.get(path);
        return o && o.authoritative ? this.store.localEntry(o) : this.queues.entry(path);
      },
      deleted: (path) => this.queues.hides(path),
    });
    this.log = opts.log;
    this.root = join(opts.cacheDir, safeComponent(opts.accountId));
    this.store = new ContentStore(this.ctx, join(this.root, 'data'), {
      detached: (o) => {
        // its handles keep its mode and times (Obj.ownAttrs): the path's entry is the next file's.
        // Every detach comes before the table's entry for the path is dropped or replaced, except
        // a local-only rename's target, which takes its copy itself before the table moves.
        o.ownAttrs ??= this.attrTable.copyOf(o.path);
        this.uploader.detached(o);
      },
    });
    this.fetcher = new Fetcher(this.ctx, this.store, (path, e) => {
      this.meta.setInParent(path, e);
      this.inodes.serverChanged(path, 'attr');
    });
    this.prefetch = new Prefetcher(this.ctx, this.meta, this.store, this.fetcher);
    this.journal = new Journal(join(this.root, 'journal'), undefined, { syncDelayMs: this.opts.syncClose ? 0 : JOURNAL_SYNC_DELAY_MS });
    this.policy = new PolicyGate(this.ctx);
    const serverKeeps = (path: string, gone: boolean) => {
      this.meta.forgetTree(path);
      this.meta.dropListing(parentOf(path));
      if (!gone) return;
      // the kernel's entry names what is not there (a new lookup gets a new number)
      this.inodes.serverChanged(path, 'gone');
      this.attrTable.forget(path);
    };
    this.queues = new NamespaceQueues(this.ctx, this.journal, remote, this.barriers, {
      landed: (dir) => this.meta.bumpDir(dir),
      serverKeeps,
      moveRefused: (m) => {
        // what is ours at or below the target goes back to the file or folder the server keeps
        const o = this.store.objs.get(m.to);
        if (m.dir || o?.authoritative) {
          const back = this.ns.moveBack(m.from, m.to);
          if (back) back.catch((e) => this.log.error(`after the refused rename of ${m.from}: ${errText(e)}`));
          else if (!m.dir) {
            // something of ours took the old name meanwhile: the content goes to the target (its upload)
            serverKeeps(m.from, false);
            return;
          }
        } else if (o) this.store.detach(o);
        serverKeeps(m.to, true);
        serverKeeps(m.from, false);
      },
      contentPending: (path) => !!this.journal.forPath(path),
      moveLanded: (m, e) => {
        // a service that gives a moved file a new revision (vBoxx): the bytes cached of it are the
        // same, so the drive takes the new revision instead of fetching them again. Only where the
        // file is still shown there (no later rename of it or onto it pending) and unchanged.
        if (m.dir || e.type !== 'file' || this.queues.moves.serverPath(m.to) !== m.to || this.queues.hides(m.to)) return;
        const o = this.store.objs.get(m.to);
        if (!o || o.authoritative || !o.ident || o.ident.size !== e.size || o.ident.mtimeMs !== e.mtimeMs) return;
        o.ident = { ...e, name: baseOf(m.to) };
        this.meta.setInParent(m.to, o.ident);
        if (o.ranges.bytes > 0 && o.refs === 0) this.store.writeMeta(o).catch(() => {});
        else o.metaCurrent = false;
      },
    });
    const moves = this.queues.moves;
    this.ctx.names = { serverPath: (path) => moves.serverPath(path), moving: (path) => moves.sendingInto(path), moved: (path) => moves.settleInto(path) };
    const gate = this.queues.gate;
    this.attrWriter = new AttrWriter(this.ctx, this.journal, {
      obj: (path) => this.store.objs.get(path),
      file: (o) => this.store.file(o),
      scratch: () => join(this.store.dataDir, `attrs-${randomUUID()}`),
      landed: (path, e, o) => {
        const entry: RemoteEntry = { ...e, name: baseOf(path) };
        if (o && !o.dirty && !o.unlinked) o.ident = { ...entry };
        if (path === '/') this.lookups.setRoot(entry); else this.meta.setInParent(path, entry);
      },
      wanted: (path, o) => this.attrWriter.held(this.attrTable.toSend(path, o?.localMtime ?? 0)),
      // (a folder not made yet, or one made below it, moves its time when made: --existing would
      // also drop a time sent before the folder is there)
      busyBelow: (dir) => this.queues.below(dir)
        || this.store.under(dir).some((o) => o.path !== dir && this.store.localObjs.has(o) && contentUnsent(o)),
    }, gate);
    if (remote.fileMeta?.folderTimes) this.attrTable.onDirChanged = (dir, ms) => this.attrWriter.implied(dir, ms);
    this.uploader = new Uploader(this.ctx, this.journal, this.store, this.meta, gate, {
      now: (o) => this.attrTable.toSend(o.path, o.localMtime),
      sent: (path, carried) => this.attrWriter.sent(path, carried),
      idle: (path) => this.attrWriter.idle(path),
    });
    this.io = new ContentIo(this.ctx, this.store, this.fetcher, this.policy, this.attrTable);
    this.shareLinks = new ShareLinkAttr(this.ctx, remote.shareLinks, !!opts.listShareLinkXattr, async (path) => {
      // the link is the server's file's: a rename of it (or of a folder above it) lands first,
      // then a pending mkdir of the folder (or above it), else the server has no such path yet
      await this.queues.moves.settleInto(path);
      await this.queues.mkdirs?.settleMade(path);
      const o = this.store.objs.get(path);
      if (o && o.wb.pendingUid !== null) await this.ctx.within(`upload of ${path}`, this.uploader.uploadUntilClean(o));
    });
    this.ns = new Namespace({
      ctx: this.ctx, meta: this.meta, lookups: this.lookups, store: this.store, attrs: this.attrTable, uploader: this.uploader,
      attrWriter: this.attrWriter,
      barriers: this.barriers, deletes: this.queues.deletes, mkdirs: this.queues.mkdirs, moves: this.queues.moves, policy: this.policy,
      ensureWhole: (o) => this.fetcher.ensureWhole(o),
      forgetShareLinks: (path, tree) => this.shareLinks.forget(path, tree),
      writable: () => this.assertWritable(),
    });
    this.inodes = new InodeVfs(this, this.attrTable, {
      handleObj: (fh) => this.handles.get(fh)?.obj,
      objAt: (path) => this.store.objs.get(path),
      objAttr: (o) => this.objAttr(o),
      setObjAttrs: (o, c) => this.setObjAttrs(o, c),
      listingStamp: (path) => {
        const slot = this.meta.freshListing(path);
        return slot ? { slot, gen: this.meta.dirGen(path) } : undefined;
      },
    });
    this.meta.onServerChange = (path, what) => this.inodes.serverChanged(path, what);
  }

  // ------------------------------------------------------------------ lifecycle

  start(): Promise<void> {
    this.startP ??= this.doStart();
    return this.startP;
  }

  private async doStart(): Promise<void> {
    await usableDir(this.opts.cacheDir);
    await fsp.mkdir(this.store.dataDir, { recursive: true, mode: 0o700 });
    await fsp.chmod(this.root, 0o700);
    await fsp.chmod(this.store.dataDir, 0o700);
    this.lookups.fetchRoot();
    const pending = await this.journal.open();
    // deletes, folders made and renames not confirmed: shown as the programs left them, sent again
    // (before any upload at or under them: the gate)
    this.queues.restore();
    const restored = await this.store.recover(pending, (p) => {
      this.uploader.lost(p, 'cache file of a pending upload is missing');
      this.log.error(`pending upload of ${p.path} cannot be replayed: its cache file is missing`);
    });
    // closed files whose upload was not confirmed: they are the local truth until uploaded
    for (const { obj: o, rec } of restored) {
      this.uploader.restore(o, rec);
      if (rec.mode !== undefined) this.attrTable.update(o.path, { perm: rec.mode });
    }
    if (pending.length > 0) this.log.info(`replaying ${pending.length} pending upload(s) from the journal`);
    for (const o of this.store.localObjs) this.uploader.schedule(o, 0);
    // metadata changes not confirmed: shown as the programs set them, sent again
    for (const a of this.journal.attrs.values()) {
      this.attrTable.update(a.path, { ...(a.mtimeMs !== undefined ? { mtimeMs: a.mtimeMs } : {}), ...(a.mode !== undefined ? { perm: a.mode } : {}) });
      this.attrWriter.schedule(a.path, 0);
    }
    if (this.journal.attrs.size > 0) this.log.info(`replaying ${this.journal.attrs.size} pending metadata change(s) from the journal`);
    this.store.maybeEvict();
    if (this.opts.warmStart) this.prefetch.warm();
  }

  /**
   * Uploads every pending change. Each upload gets its retry budget (uploadAttempts) and no more:
   * one that used it up stays in the journal (replayed at the next mount) and is reported in the
   * result, so a flush, and the unmount that waits for it, ends even when the server is gone.
   * `retryFailed: false` skips uploads whose current content already used up its budget.
   */
  async flushAll(opts: { signal?: AbortSignal; retryFailed?: boolean } = {}): Promise<FlushResult> {
    // content first: its uploads carry the times and modes, the metadata sends go after
    const retry = opts.retryFailed !== false;
    // namespace changes first: uploads at their names wait for them anyway
    const all = this.queues.flush().then(() => this.uploader.flush([...this.store.localObjs], retry)).then(() => this.attrWriter.flush(retry));
    await untilAborted(all, opts.signal, () => new Cancelled('flush aborted'));
    return {
      pending: this.journal.live,
      failed: [...this.queues.stillPending(), ...this.uploader.stillPending(this.store.localObjs), ...this.attrWriter.stillPending()],
    };
  }

  status(): DriveStatus {
    let dirtyBytes = 0;
    for (const o of this.store.localObjs) if (o.dirty) dirtyBytes += o.size;
    const oldest = this.journal.oldestAtMs();
    const act = this.ctx.remote.activity?.();
    const remoteCounters = this.ctx.remote.counters?.();
    return {
      pending: this.journal.live,
      pendingBytes: this.journal.pendingBytes,
      pendingDeletes: this.journal.deletes.size,
      ...(this.queues.mkdirs ? { pendingMkdirs: this.journal.mkdirs.size } : {}),
      pendingMoves: this.journal.moves.size,
      pendingAttrs: this.journal.attrs.size,
      failures: [...this.queues.failures(), ...this.uploader.failures.values(), ...this.attrWriter.failures.values()],
      notices: [...this.ctx.notices.list],
      cacheBytes: this.store.cacheBytes,
      dirtyBytes,
      inodes: { ...this.attrTable.sizes, invalidations: this.inodes.invalidations },
      counters: { reads: { ...this.io.readsFrom }, journalSyncs: this.journal.syncs, ...(remoteCounters ? { remote: remoteCounters } : {}) },
      ...(oldest !== undefined ? { oldestPendingMs: oldest } : {}),
      ...(act ? {
        link: { state: act.state, sinceMs: act.sinceMs, ...(act.error ? { error: act.error } : {}) },
        sentBytes: act.sentBytes, sendingBytes: act.sendingBytes,
      } : {}),
    };
  }
  /** Test hook: resolves once the deletes written back so far reached the server (or failed). */
  async deletesSent(): Promise<void> {
    await this.queues.deletes.flush();
  }

  async close(opts: { force?: boolean } = {}): Promise<void> {
    if (this.ctx.closed) return;
    if (this.startP) await this.startP.catch(() => {});
    // Files still open for writing (a forced or lazy unmount, a signal): what the programs wrote
    // is kept as if they had closed them now, so it is uploaded here or replayed at the next mount
    // (an uncommitted cache file is removed at start as a crash leftover).
    await this.commitOpenWriters();
    // an upload that used up its budget in the flush before this close is not tried again here
    if (!opts.force) await this.flushAll({ retryFailed: false });
    this.ctx.closed = true;
    this.prefetch.stop();
    const objs = [...this.store.objs.values()];
    await Promise.all([this.uploader.shutdown(objs), this.fetcher.shutdown(objs), this.attrWriter.shutdown(), this.queues.shutdown()]);
    // writes that arrived while the flush ran: into the journal, for the next mount
    await this.commitOpenWriters();
    await this.store.closeAll();
    this.handles.clear();
    const kept = this.journal.live;
    if (kept > 0) {
      this.log.warn(`${kept} pending change(s) (${this.journal.summary()}) stay in the journal under ${this.root}; ` +
        'they are delivered at the next mount of this account');
    }
    await this.journal.close().catch(() => {});
    await this.remote.close();
  }

  private async commitOpenWriters(): Promise<void> {
    const open = new Set<Obj>();
    for (const h of this.handles.values()) {
      const o = h.obj;
      if (h.writable && !o.unlinked && !o.wb.refused && o.fd >= 0 && o.gen !== o.wb.journaledGen) open.add(o);
    }
    for (const o of open) {
      try {
        await this.uploader.commit(o);
        this.log.warn(`${o.path} was still open for writing: its content so far (${o.size} bytes) is kept`);
      } catch (err) {
        this.log.error(`keeping ${o.path}, still open for writing, failed: ${errText(err)}`);
      }
    }
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

  async getattr(path: string): Promise<Attr> {
    const a = await this.stat(path);
    if (!a) throw new NotFound('no such file or directory', { path });
    return a;
  }

  statCached(path: string): Attr | undefined {
    path = normPath(path);
    const e = this.lookups.peekSettled(path);
    return e ? this.attrOf(path, e) : undefined;
  }

  async stat(path: string): Promise<Attr | null> {
    path = normPath(path);
    const e = await this.lookups.lookup(path);
    return e ? this.attrOf(path, e) : null;
  }

  /** The unlinked open file libfuse 2 names path (.fuse_hidden*), if any. */
  private hiddenAt(path: string): Obj | undefined {
    return this.store.hidden.size > 0 ? this.store.hidden.get(path) : undefined;
  }

  /** What the drive shows at path, whose entry is e. */
  private attrOf(path: string, e: RemoteEntry): Attr {
    // a hidden name (libfuse 2) shows its unlinked file's own mode and times
    const o = this.store.objs.get(path) ?? this.hiddenAt(path);
    return this.attrTable.toAttr(path, e, o, e.type === 'dir' ? this.subdirs(path) : undefined);
  }

  /** Subfolders of dir when its listing is cached (for nlink), else undefined. */
  private subdirs(dir: string): number | undefined {
    const d = this.meta.dirs.peek(dir);
    if (!d) return undefined;
    if (d.subdirs === undefined) {
      let n = 0;
      for (const e of d.entries.values()) if (e.type === 'dir') n++;
      d.subdirs = n;
    }
    return d.subdirs;
  }

  async fgetattr(path: string, fh: number): Promise<Attr> {
    const h = this.handles.get(fh);
    if (!h) return this.getattr(path);
    const a = this.objAttr(h.obj);
    const o = h.obj;
    // deleted while open (libfuse 3 backend: no hidden name): no name links to it any more
    return o.unlinked ? { ...a, nlink: 0 } : a;
  }

  private objAttr(o: Obj): Attr {
    const base: RemoteEntry = o.ident && !o.authoritative ? o.ident : this.store.localEntry(o);
    return this.attrTable.toAttr(o.path, base, o);
  }

  async readdir(path: string): Promise<DirEntry[]> {
    path = normPath(path);
    this.lookups.checkDirCached(path);
    const kids = await this.ns.children(path);
    // the program has seen this listing: a name missing from it is missing (no stat per create)
    const seen = this.meta.dirs.get(path);
    if (seen) seen.implicit = false;
    // an array, not a name -> attr map: a big folder's warm listing spends its time per entry
    const out: DirEntry[] = [];
    for (const [name, { e: ce, o, path: p }] of kids) {
      out.push({ name, attr: this.attrTable.toAttr(p, ce, o, ce.type === 'dir' ? this.subdirs(p) : undefined) });
    }
    this.prefetch.subdirs(path);
    return out;
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

  async fsyncdir(path: string): Promise<void> {
    await this.queues.syncDir(normPath(path));
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
    const at = Date.now();
    const s = await this.ctx.bounded('statfs', (signal) => this.remote.statfs({ signal, priority: Priority.interactive }));
    return this.primeStatfs(s, at);
  }

  /**
   * Takes the account's figures the mount itself fetched (its login check) as statfs's first
   * answer: `find` asks statfs of every tree it walks, and on a fresh mount that cost it a round
   * trip more than `ls -l` of the same folder.
   */
  primeStatfs(s: StatFs, at: number): FsStats {
    const bsize = 4096;
    const total = s.total ?? 2 ** 50;
    const blocks = Math.max(1, Math.ceil(total / bsize));
    const bfree = Math.max(0, Math.floor((total - s.used) / bsize));
    const value: FsStats = {
      bsize, frsize: bsize, blocks, bfree, bavail: bfree,
      files: 1_000_000, ffree: 1_000_000, favail: 1_000_000, namemax: 255,
    };
    this.statfsCache = { value, expires: at + this.opts.attrTtlMs };
    return value;
  }

  /**
   * An undefined time is left as it is (UTIME_OMIT). A file's mtime, where the service keeps it,
   * is a journalled write-back change (writeback/attrs.ts): durable before this returns, sent
   * after the write-back delay, alone or with the content upload; so is a folder's mtime where the
   * service keeps folder times (Maxxo). atime is kept for the mount only (no service holds it).
   */
  utimens(path: string, atimeMs: number | undefined, mtimeMs: number | undefined): Promise<void> {
    return this.setTimes(path, { ...(atimeMs !== undefined ? { atime: atimeMs } : {}), ...(mtimeMs !== undefined ? { mtime: mtimeMs } : {}) });
  }

  async setTimes(path: string, times: { atime?: TimeChange; mtime?: TimeChange }): Promise<void> {
    await this.setTimesNamed(path, times);
  }

  /**
   * setTimes; with `names` (see openCached) false, and nothing changed, when path no longer names
   * the caller's file: a rename over path landing during the lookups gave the time to the file
   * that took the name (and journalled it to the server for that file).
   */
  async setTimesNamed(path: string, times: { atime?: TimeChange; mtime?: TimeChange }, names?: () => boolean): Promise<boolean> {
    path = normPath(path);
    this.assertWritable();
    const hid = this.hiddenAt(path);
    if (hid) { this.setObjAttrs(hid, times); return true; }
    const e = await this.existingNamed(path, names);
    if (!e) return false;
    // one clock reading: "now" in both slots is the same instant (touch sets atime == mtime)
    const now = Date.now();
    const ms = (t: TimeChange) => (t === 'now' ? now : t);
    const change: { atimeMs?: number; mtimeMs?: number; ctimeMs: number } = { ctimeMs: now };
    if (times.atime !== undefined) change.atimeMs = ms(times.atime);
    if (times.mtime !== undefined) change.mtimeMs = ms(times.mtime);
    if (change.atimeMs === undefined && change.mtimeMs === undefined) return true;
    // an mtime set alone must not drag the shown atime along (toAttr falls back to mtime for it)
    if (change.atimeMs === undefined && this.attrTable.localOf(path)?.atimeMs === undefined) {
      const shown = await this.existingNamed(path, names);
      if (!shown) return false;
      change.atimeMs = this.attrOf(path, shown).atimeMs;
    }
    // after the last wait: nothing comes between this check and the change
    if (names && !names()) return false;
    this.attrTable.update(path, change);
    if (change.mtimeMs !== undefined && this.timesHeld(e)) await this.attrWriter.record(path, { mtimeMs: change.mtimeMs }, e.type === 'dir');
    return true;
  }

  /**
   * What path holds; null, rather than NotFound, when it holds nothing because the caller's file
   * (`names` false) went elsewhere: the caller looks for it again.
   */
  private async existingNamed(path: string, names?: () => boolean): Promise<RemoteEntry | null> {
    const e = await this.lookups.lookup(path);
    if (e) return e;
    if (names && !names()) return null;
    throw new NotFound('no such file or directory', { path });
  }

  /** Whether the service keeps e's mtime (files: where it keeps any; folders: fileMeta.folderTimes). */
  private timesHeld(e: RemoteEntry): boolean {
    return e.type === 'file' || (e.type === 'dir' && !!this.remote.fileMeta?.folderTimes);
  }

  /**
   * chmod / utimens of a file deleted (or replaced) while open, through its handle, its inode
   * number or its hidden name: its own attributes change (Obj.ownAttrs); nothing is sent, the
   * server no longer has it.
   */
  private setObjAttrs(o: Obj, c: { mode?: number; atime?: TimeChange; mtime?: TimeChange }): void {
    if (!o.unlinked) throw new Error(`setObjAttrs of ${o.path}, which a name still holds`);
    const now = Date.now();
    const ms = (t: TimeChange) => (t === 'now' ? now : t);
    // an mtime set alone must not drag the shown atime along (as in setTimesNamed)
    const shownAtime = c.atime === undefined && c.mtime !== undefined && o.ownAttrs?.atimeMs === undefined ? this.objAttr(o).atimeMs : undefined;
    const la = o.ownAttrs ??= {};
    if (c.mode !== undefined) la.perm = c.mode & 0o7777;
    if (c.atime !== undefined) la.atimeMs = ms(c.atime);
    else if (shownAtime !== undefined) la.atimeMs = shownAtime;
    if (c.mtime !== undefined) la.mtimeMs = ms(c.mtime);
    la.ctimeMs = now;
  }

  /** Bits the service cannot hold are accepted without effect (see AttrTable.toAttr). */
  async chmod(path: string, mode: number): Promise<void> {
    await this.chmodNamed(path, mode);
  }

  /** chmod; with `names` false, and nothing changed, when path no longer names the caller's file (see setTimesNamed). */
  async chmodNamed(path: string, mode: number, names?: () => boolean): Promise<boolean> {
    path = normPath(path);
    this.assertWritable();
    const hid = this.hiddenAt(path);
    if (hid) { this.setObjAttrs(hid, { mode }); return true; }
    const e = await this.existingNamed(path, names);
    if (!e || (names && !names())) return false;
    this.attrTable.update(path, { perm: mode & 0o7777, ctimeMs: Date.now() });
    if (e.type === 'file') await this.attrWriter.record(path, { mode: mode & 0o7777 });
    return true;
  }

  async getxattr(path: string, name: string): Promise<Buffer> {
    path = normPath(path);
    await this.lookups.existing(path);
    // Only user.* names can be held here. ENOTSUP (not ENODATA) for the rest, as the kernel answers
    // for a namespace without a handler: coreutils' ls then stops probing security.selinux and
    // ACLs after the first name of the drive (two round trips per file of an ls -l otherwise). The
    // libfuse 3 binding answers these natively the same way.
    if (!name.startsWith('user.')) throw new Unsupported(`no ${name.slice(0, name.indexOf('.') + 1) || name} attributes on this drive`, { path });
    return this.shareLinks.get(path, name);
  }

  async listxattr(path: string): Promise<string[]> {
    path = normPath(path);
    await this.lookups.existing(path);
    return this.shareLinks.list();
  }

  async setxattr(path: string, _name: string, _value: Buffer, _flags: number): Promise<void> {
    throw new Unsupported('extended attributes cannot be set on this drive', { path });
  }

  async removexattr(path: string, _name: string): Promise<void> {
    throw new Unsupported('extended attributes cannot be removed on this drive', { path });
  }

  // ------------------------------------------------------------------ namespace changes (namespace/ops.ts)

  mkdir(path: string, mode: number): Promise<void> { return this.ns.mkdir(path, mode); }
  rmdir(path: string): Promise<void> { return this.ns.rmdir(path); }
  unlink(path: string, opts: { keepOpenAs?: string } = {}): Promise<void> { return this.ns.unlink(path, opts); }
  rename(from: string, to: string, flags: RenameFlags = {}): Promise<void> { return this.ns.rename(from, to, flags); }

  // ------------------------------------------------------------------ open / create / release

  async open(path: string, flags: number): Promise<number> {
    return (await this.openCached(path, flags))!.fh;
  }

  /**
   * open, and whether the kernel may keep what it cached of the file from earlier opens: only when
   * this content object outlived them unchanged (not evicted, not found stale on the server now).
   *
   * `names`: whether path still names the file the caller means (the inode layer: the number it
   * resolved to path). Checked where the handle is bound to the path's content, after the last
   * wait: a rename over path, or an unlink of it, that landed while the open waited (lookup,
   * revalidation) has given path other content, or none. Then nothing is opened and the answer is
   * null (the caller resolves its file again). Without it a handle of the replaced file read the
   * new file's bytes, and with the kernel's pages of the inode shared by its handles, readers got
   * the two versions mixed in one read (libfuse 3, Maxxo under ASan).
   */
  async openCached(path: string, flags: number, names?: () => boolean): Promise<{ fh: number; keepCache: boolean; noFlush: boolean } | null> {
    path = normPath(path);
    await this.start();
    const writable = (flags & O_ACCMODE) !== O_RDONLY;
    if (writable || (flags & O_TRUNC)) this.assertWritable();
    let e = await this.lookups.lookup(path);
    if (!e) {
      if (names && !names()) return null;
      if (flags & O_CREAT) return { fh: await this.create(path, 0o644, flags), keepCache: false, noFlush: false };
      throw new NotFound('no such file', { path });
    }
    if (e.type === 'dir') throw new IsADirectory('is a folder', { path });
    if ((flags & O_CREAT) && (flags & O_EXCL)) throw new AlreadyExists('already exists', { path });
    let o = this.store.objs.get(path);
    if (this.mustRevalidate(e, o, flags)) {
      e = await this.revalidated(path, e);
      // another open of the path may have made its content object meanwhile
      o = this.store.objs.get(path);
    }
    if (o && !o.authoritative && !sameIdent(o.ident, e)) {
      // the server has other content now: cached bytes are stale (their epoch ends: no keep_cache)
      await this.fetcher.resetContent(o, e);
    }
    // synchronous from here to openObj's count of the handle: no rename or unlink comes between
    if (names && !names()) return null;
    if (!o) {
      o = this.store.add(path, e.size, true, e);
    }
    // a program reading one file of a listed folder often reads its siblings next (cat *, grep -r)
    if (!writable) this.prefetch.siblings(parentOf(path), path);
    const fh = await this.openObj(o, flags, writable);
    // the kernel's pages are these bytes only if none were thrown away since they were handed out
    // (a new object has handed out none: kernelEpoch -1)
    const keepCache = o.kernelEpoch === o.epoch && !(flags & O_TRUNC);
    o.kernelEpoch = o.epoch;
    // flush() commits what a writable handle changed; a read-only one has nothing to flush
    return { fh, keepCache, noFlush: !writable };
  }

  /**
   * A remote whose listings may hold older version information than their sizes (Maxxo's
   * mtimes) is asked for a version no older than dir_timeout before cached bytes are served again
   * (and before content whose version is unknown gets cached): this check, not the listings,
   * bounds how long another client's same-size change goes unseen, so listings stay cheap.
   * Content a program truncates at open, and content of ours not yet on the server, need none.
   */
  private mustRevalidate(e: RemoteEntry, o: Obj | undefined, flags: number): boolean {
    if (!this.remote.revalidation || (flags & O_TRUNC) || o?.authoritative) return false;
    const known = (o?.ident ?? e).mtimeMs !== undefined;
    return !known || !!(o && o.ranges.bytes > 0);
  }

  private async revalidated(path: string, e: RemoteEntry): Promise<RemoteEntry> {
    const rv = this.remote.revalidation!;
    // (a file renamed, or a folder above it, its move not sent: the server has it at its old name)
    const fresh = await this.ctx.atServer(path, (at) => this.ctx.bounded(`revalidation of ${path}`, (signal) => rv.revalidate(at, e, this.opts.dirTtlMs, { signal })));
    if (fresh.size !== e.size || fresh.mtimeMs !== e.mtimeMs) this.meta.setInParent(path, fresh);
    return fresh;
  }

  private async openObj(o: Obj, flags: number, writable: boolean): Promise<number> {
    o.refs++;
    if (writable) o.writers++;
    try {
      await this.store.openFd(o);
      this.store.touchLru(o);
      if (writable && (flags & O_TRUNC) && (o.size > 0 || !o.dirty)) await this.io.truncate(o, 0);
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
    await this.policy.checkName(path);
    const stale = this.store.objs.get(path);
    if (stale) this.store.detach(stale);
    const o = this.store.addNew(path);
    // what the creator writes through its handle is what the drive holds
    o.kernelEpoch = o.epoch;
    o.gen = 1;
    o.localMtime = Date.now();
    this.store.markLocal(o);
    this.meta.localChange(path);
    const perm = mode & 0o7777;
    // mode 0 is a mode too (the creator's handle is open already): only the default is not stored
    this.attrTable.setLocal(path, perm !== 0o644 ? { perm } : undefined);
    this.attrTable.dirChanged(parentOf(path));
    // even O_RDONLY|O_CREAT made a file: the handle commits it like a writer
    return this.openObj(o, flags & ~O_TRUNC, true);
  }

  async flush(_path: string, fh: number): Promise<void> {
    const h = this.handle(fh);
    if (!h.writable) return;
    const o = h.obj;
    if (o.unlinked || !o.dirty) return;
    await this.uploader.commit(o);
    if (this.opts.writebackDelayMs === 0) {
      await this.ctx.within(`upload of ${o.path}`, this.uploader.uploadUntilClean(o));
    } else {
      this.uploader.schedule(o, this.opts.writebackDelayMs);
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
        try { await this.uploader.commit(o); } catch (err) {
          if (o.wb.refused) this.discardLocal(o);
          else this.log.error(`keeping ${o.path} failed: ${errText(err)}`);
        }
      }
    }
    if (o.writers === 0) this.uploader.scheduleIfIdle(o);
    this.store.afterRelease(o);
  }

  /** A refused (policy) file cannot reach the server: the server's state is shown again. */
  private discardLocal(o: Obj): void {
    const message = `${o.path}: ${errText(o.wb.refused)}; the program was told at close, and the local changes were discarded`;
    this.ctx.notices.add(o.path, message);
    this.store.detach(o);
    this.meta.localChange(o.path);
  }

  // ------------------------------------------------------------------ content

  async read(_path: string, fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    const h = this.handle(fh);
    return this.io.read(h.obj, h, buf, length, position);
  }

  async readExtent(fh: number, length: number, position: number): Promise<FileExtent> {
    const h = this.handle(fh);
    return this.io.extent(h.obj, h, length, position);
  }

  async write(_path: string, fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    const h = this.handle(fh);
    if (!h.writable) throw new BadRequest('file not open for writing');
    this.assertWritable();
    return this.io.write(h.obj, h.append, buf, length, position);
  }

  async ftruncate(_path: string, fh: number, size: number): Promise<void> {
    const h = this.handle(fh);
    this.assertWritable();
    if (size < 0) throw new BadRequest('negative size');
    await this.io.truncate(h.obj, size);
  }

  async truncate(path: string, size: number): Promise<void> {
    await this.truncateNamed(path, size);
  }

  /** truncate; with `names` (see openCached) false, and nothing changed, when path no longer names the caller's file. */
  async truncateNamed(path: string, size: number, names?: () => boolean): Promise<boolean> {
    path = normPath(path);
    this.assertWritable();
    if (size < 0) throw new BadRequest('negative size', { path });
    const r = await this.openCached(path, size === 0 ? (1 | O_TRUNC) : 2, names);
    if (!r) return false;
    try {
      if (size > 0) await this.ftruncate(path, r.fh, size);
      await this.flush(path, r.fh);
    } finally {
      await this.release(path, r.fh);
    }
    return true;
  }

  async fsync(_path: string, fh: number, _datasync: boolean): Promise<void> {
    const h = this.handle(fh);
    const o = h.obj;
    if (o.unlinked) return;
    if (h.writable && o.dirty && o.gen !== o.wb.journaledGen) await this.uploader.commit(o);
    if (o.wb.pendingUid !== null) await this.ctx.within(`upload of ${o.path}`, this.uploader.uploadUntilClean(o));
  }
}
