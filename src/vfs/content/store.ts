// The content store: every content object by path, the cache files under data/, the byte
// accounting of the cache, eviction, and the recovery of both at start.
//
// Owns: objs (path -> Obj, Map order = LRU order), localObjs (objects whose local state overrides
// the server: dirty, pending, local-only), hidden (deleted files still open under a local-only
// name; a rename of their folder moves that name too, as it moves objs), cacheBytes (sum of ranges.bytes of all objects; change ranges through addRange,
// truncateRanges, clearRanges, setWhole so it stays right), the .meta index files of clean content.
//
// Rules:
// - Eviction (LRU, over cacheMaxBytes) and evictForSpace (cache disk full) drop only idle clean
//   content (Obj.evictable): never dirty, pending, open or in-flight objects.
// - detach(o): the path no longer names o (deleted, replaced); its bytes go at the last release.
//   destroy(o): bumps the epoch (fetches in flight drop their result), forgets o, removes its
//   files once its fetches settled and its fd is closed.
// - A .meta index describes clean bytes only and is removed before those bytes change (dropMeta).
import { randomUUID } from 'node:crypto';
import fs, { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { RemoteEntry } from '../../remote/types.js';
import type { PendingUpload } from '../journal.js';
import { MUTATION, errText, type Ctx } from '../context.js';
import { PathIndex, baseOf, deleteIndexed, isUnder, rebase, rekeyMap, setIndexed } from '../paths.js';
import { openRw } from './fileio.js';
import { Obj } from './obj.js';

/**
 * Empty cache files kept made ahead (see ContentStore.spares): from the drive's first new file on,
 * up to SPARE_TARGET, made while no file is being created (SPARE_IDLE_MS since the last),
 * SPARE_CHUNK at a time; during a burst only when fewer than SPARE_URGENT are left. Making them
 * during a burst cost its creates: a create loop (200 x 1 KiB, vBoxx, two mounts side by side, 12
 * loops each, twice) took a median 0.206 / 0.215 s with 32 made whenever half were used, 0.180 /
 * 0.181 s with a pool made beforehand. Not at mount time: 256 creates cost 0.1-0.27 s of CPU here
 * (ext4), which a drive that only reads (and every short test mount) would pay for nothing.
 */
export const SPARE_TARGET = 256;
const SPARE_CHUNK = 32;
const SPARE_URGENT = 16;
const SPARE_IDLE_MS = 50;

export class ContentStore {
  /**
   * Content objects by current path; Map order is LRU order (touched on open). Changed only here
   * (setObj, deleteObj), so that objPaths knows every key: a folder's rename, a listing's local
   * names and a folder's pending work visit the objects at or under one path, not all of them (a
   * scan per listing of every object with local changes, per folder rename of every cached one).
   */
  readonly objs: ReadonlyMap<string, Obj> = new Map<string, Obj>();
  private readonly objPaths = new PathIndex((k) => this.objs.has(k));
  /** Objects whose local state overrides the server (dirty, pending, local-only). */
  readonly localObjs = new Set<Obj>();
  /**
   * Deleted files still open, by the local-only name the FUSE layer keeps them under until the
   * last close (libfuse 2 renames them to .fuse_hiddenNNNN): never listed, never uploaded. The
   * name stays until it is unlinked too (libfuse does that right after the last release).
   */
  readonly hidden = new Map<string, Obj>();
  cacheBytes = 0;
  private evicting = false;
  /**
   * Empty cache files made ahead, open (id, fd): a file being made takes one. Making a file costs
   * 0.3-0.4 ms of the cache disk's metadata journal here (ext4 on a virtual disk), a third of
   * what a create of a small file costs in all; made ahead, that wait is off the create's path.
   * Nothing refers to a spare, so a crash leaves only empty files that recover() removes.
   */
  private readonly spares: { id: string; fd: number }[] = [];
  private sparesFilling = false;
  private sparesStopped = false;
  private lastNewAt = 0;
  private sparesTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly ctx: Ctx,
    readonly dataDir: string,
    /** detached(o): the path no longer names o (the write-back side drops its timer). */
    private readonly hooks: { detached(o: Obj): void },
  ) {}

  file(o: Obj): string {
    return join(this.dataDir, o.id);
  }

  get(path: string): Obj | undefined {
    return this.objs.get(path);
  }

  private setObj(path: string, o: Obj): void {
    setIndexed(this.objs as Map<string, Obj>, this.objPaths, path, o);
  }

  /** Removes o's entry if the path is still o's (another object may have taken it meanwhile). */
  private deleteObj(o: Obj): void {
    if (this.objs.get(o.path) === o) deleteIndexed(this.objs as Map<string, Obj>, this.objPaths, o.path);
  }

  /** Objects in folder dir (not below its subfolders). */
  objsIn(dir: string): Obj[] {
    return this.objPaths.childKeys(dir).map((k) => this.objs.get(k)!);
  }

  /** A new content object for path (not yet open), registered under it. */
  add(path: string, size: number, onServer: boolean, ident?: RemoteEntry): Obj {
    const o = new Obj(randomUUID(), path, size, onServer);
    if (ident) o.ident = { ...ident };
    this.setObj(path, o);
    return o;
  }

  /** Spare cache files ready (made and open). */
  get spareCount(): number {
    return this.spares.length;
  }

  /** A new empty object for a file being made at path, with an open cache file when a spare is ready. */
  addNew(path: string): Obj {
    const spare = this.spares.pop();
    const o = new Obj(spare?.id ?? randomUUID(), path, 0, false);
    if (spare) o.fd = spare.fd;
    this.setObj(path, o);
    this.lastNewAt = performance.now();
    // after the create's answer: the filling's first open costs the JS thread a little too
    if (this.spares.length < SPARE_URGENT && !this.sparesFilling) setImmediate(() => this.fillSpares());
    else this.sparesWhenIdle();
    return o;
  }

  /**
   * Fills now if no file was made for SPARE_IDLE_MS, else looks again when that will be so. A timer
   * that finds new files made meanwhile sets the next one (creates touch only lastNewAt); a fill
   * under way calls this when it ends.
   */
  private sparesWhenIdle(): void {
    if (this.sparesTimer || this.sparesFilling || this.sparesStopped || this.spares.length >= SPARE_TARGET) return;
    const wait = this.lastNewAt + SPARE_IDLE_MS - performance.now();
    if (wait <= 0) { this.fillSpares(); return; }
    this.sparesTimer = setTimeout(() => { this.sparesTimer = null; this.sparesWhenIdle(); }, wait);
    this.sparesTimer.unref();
  }

  /**
   * SPARE_CHUNK more, all handed to the threadpool at once (each job handed over alone costs the
   * JS thread a wake-up of a pool thread); the next chunk follows while no file is being made. A
   * failure (disk full) stops the filling until the next create.
   */
  private fillSpares(): void {
    if (this.sparesFilling || this.sparesStopped || this.spares.length >= SPARE_TARGET) return;
    this.sparesFilling = true;
    const made = Array.from({ length: Math.min(SPARE_CHUNK, SPARE_TARGET - this.spares.length) }, async () => {
      const id = randomUUID();
      const file = join(this.dataDir, id);
      const fd = await openRw(file, true);
      if (this.sparesStopped) fs.close(fd, () => fs.rm(file, { force: true }, () => {}));
      else this.spares.push({ id, fd });
    });
    void Promise.allSettled(made).then((r) => {
      this.sparesFilling = false;
      const failed = r.find((x) => x.status === 'rejected');
      if (failed) {
        this.ctx.log.debug(`making spare cache files: ${errText((failed as PromiseRejectedResult).reason)}`);
        return;
      }
      this.sparesWhenIdle();
    });
  }

  /** o (and what is under it) moved from `from` to `to` (a rename): re-registered under the new paths, hidden names too. */
  move(objs: Obj[], from: string, to: string): void {
    for (const o of objs) this.deleteObj(o);
    for (const o of objs) {
      o.path = rebase(o.path, from, to);
      const prev = this.objs.get(o.path);
      if (prev && prev !== o) this.detach(prev);
      this.setObj(o.path, o);
      // the index names the old path; it is written again at the next release
      this.dropMeta(o);
    }
    // A hidden name lives inside the renamed folder like any other name: libfuse asks for it by its
    // new path from now on (fstat of a file unlinked while open, after its folder moved).
    if (this.hidden.size > 0) rekeyMap(this.hidden, from, to);
  }

  /** dir is gone (removed, replaced): hidden names below it name nothing any more. */
  forgetHiddenUnder(dir: string): void {
    for (const name of [...this.hidden.keys()]) if (isUnder(name, dir)) this.hidden.delete(name);
  }

  /** Objects at path or below it. */
  under(path: string): Obj[] {
    return this.objPaths.under(path).map((k) => this.objs.get(k)!);
  }

  /** o leaves the table for now (a rename's replaced target; put back by register if the rename fails). */
  unregister(o: Obj): void {
    this.deleteObj(o);
    this.localObjs.delete(o);
  }

  register(o: Obj): void {
    this.setObj(o.path, o);
    this.markLocal(o);
  }

  markLocal(o: Obj): void {
    if (o.authoritative && !o.unlinked) this.localObjs.add(o); else this.localObjs.delete(o);
  }

  localEntry(o: Obj): RemoteEntry {
    return { name: baseOf(o.path), type: 'file', size: o.size, mtimeMs: o.localMtime || undefined };
  }

  // ---------------------------------------------------------------- byte accounting

  addRange(o: Obj, s: number, e: number): void {
    const before = o.ranges.bytes;
    o.ranges.add(s, e);
    this.cacheBytes += o.ranges.bytes - before;
  }

  truncateRanges(o: Obj, end: number): void {
    const before = o.ranges.bytes;
    o.ranges.truncate(end);
    this.cacheBytes += o.ranges.bytes - before;
  }

  clearRanges(o: Obj): void {
    this.cacheBytes -= o.ranges.bytes;
    o.ranges.clear();
  }

  /** The cache file holds the whole content, size bytes (a download or batch landed). */
  setWhole(o: Obj, size: number): void {
    const before = o.ranges.bytes;
    o.size = size;
    if (o.ident) o.ident.size = size;
    o.ranges.clear();
    o.ranges.add(0, size);
    this.cacheBytes += o.ranges.bytes - before;
    o.downloaded = size;
    o.metaCurrent = false;
  }

  // ---------------------------------------------------------------- files

  async openFd(o: Obj): Promise<void> {
    if (o.fd >= 0) return;
    if (!o.fdOpening) {
      o.fdOpening = (async () => { o.fd = await openRw(this.file(o)); })().finally(() => { o.fdOpening = null; });
    }
    await o.fdOpening;
  }

  touchLru(o: Obj): void {
    // the key stays: the index is not touched
    const m = this.objs as Map<string, Obj>;
    if (m.get(o.path) === o) { m.delete(o.path); m.set(o.path, o); }
  }

  /** The .meta index of o's clean bytes is about to be wrong: it goes first (awaitable), or in the background. */
  dropMeta(o: Obj, wait: true): Promise<void>;
  dropMeta(o: Obj): void;
  dropMeta(o: Obj, wait = false): Promise<void> | void {
    // an index being written now would land after the removal: the removal waits for it
    const p = o.metaWriting ? o.metaWriting.then(() => this.removeMeta(o)) : this.removeMeta(o);
    if (wait) return p;
    p.catch(() => {});
  }

  private removeMeta(o: Obj): Promise<void> {
    o.metaCurrent = false;
    if (!o.metaOnDisk) return Promise.resolve();
    o.metaOnDisk = false;
    return fsp.rm(this.file(o) + '.meta', { force: true });
  }

  /**
   * Writes o's .meta index now (no-op for dirty or unidentified content). The index says what the
   * cache file holds: one that would describe other bytes than these is removed again (the
   * content changed, was dropped or renamed while it was being written).
   */
  async writeMeta(o: Obj): Promise<void> {
    while (o.metaWriting) await o.metaWriting;
    if (!o.ident || o.authoritative) return;
    const { epoch, gen, path } = o;
    const bytes = o.ranges.bytes;
    const m = { path, ident: o.ident, ranges: o.ranges.toPairs() };
    const meta = this.file(o) + '.meta';
    const run = (async () => {
      // On the threadpool, not inline: a creating open on ext4 waits for its journal (measured
      // inline over 3,000 creates: ~260 us per open on the JS thread). Written in place, not as a
      // temp file renamed over it: a write cut short leaves a prefix of the JSON object, which
      // never parses, and recover() then drops the index and its cache file (content fetched
      // again, nothing wrong served); the rename cost ~100 us of mount CPU per uploaded file.
      // (from the open on, a file is there for a removal to take away, even if the write fails)
      o.metaOnDisk = true;
      await fsp.writeFile(meta, JSON.stringify(m), { mode: 0o600 });
      if (o.epoch !== epoch || o.gen !== gen || o.path !== path || o.authoritative) {
        o.metaOnDisk = false;
        o.metaCurrent = false;
        await fsp.rm(meta, { force: true });
      } else {
        // bytes that landed meanwhile are not in it (a subset is still true): written again later
        o.metaCurrent = o.ranges.bytes === bytes;
      }
    })();
    o.metaWriting = run.then(() => {}, () => {}).finally(() => { o.metaWriting = null; });
    await run;
  }

  /** After the last handle (or fetch) of o ended: fd closed, index written, eviction considered. */
  afterRelease(o: Obj): void {
    if (o.refs > 0) return;
    for (const r of o.recent) this.ctx.recycle(r.bufs);
    o.recent = [];
    o.recentBytes = 0;
    if (o.unlinked) { this.destroy(o); return; }
    if (o.fd >= 0 && o.inflightCount === 0 && !o.download && !o.wb.uploading) {
      // inline: a close of a cache file is a syscall of microseconds, where handing it to the
      // threadpool cost the JS thread ~50 us of wake-up per file here (2 cores)
      const fd = o.fd; o.fd = -1;
      try { fs.closeSync(fd); } catch (e) { this.ctx.log.debug(`closing the cache file of ${o.path}: ${errText(e)}`); }
    }
    if (!o.authoritative && o.ranges.bytes > 0 && !o.metaCurrent) {
      this.writeMeta(o).catch((e) => this.ctx.log.debug(`cache index of ${o.path}: ${errText(e)}`));
    }
    this.maybeEvict();
  }

  /** The path no longer names o (deleted or replaced); its bytes go once the last handle closes. */
  detach(o: Obj): void {
    this.hooks.detached(o);
    o.unlinked = true;
    this.deleteObj(o);
    this.localObjs.delete(o);
    if (o.refs === 0) this.destroy(o);
  }

  /** Forgets o and removes its cache files; the promise settles once they are gone. */
  destroy(o: Obj): Promise<void> {
    o.epoch++;
    o.dlAbort?.abort(MUTATION);
    this.clearRanges(o);
    this.deleteObj(o);
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
    }).then(() => {}, (e) => this.ctx.log.warn(`cache cleanup of ${o.path}: ${errText(e)}`));
  }

  /** The cache disk is full: drops all clean unused content and waits until its files are gone. */
  async evictForSpace(): Promise<number> {
    let freed = 0;
    const gone: Promise<void>[] = [];
    for (const o of [...this.objs.values()]) {
      if (!o.evictable) continue;
      freed += o.ranges.bytes;
      gone.push(this.destroy(o));
    }
    await Promise.all(gone);
    if (freed > 0) this.ctx.log.warn(`cache disk full: evicted ${freed} bytes of clean cached content`);
    return freed;
  }

  /** LRU eviction of clean content, never of dirty, pending or open objects. */
  maybeEvict(): void {
    const max = this.ctx.opts.cacheMaxBytes;
    if (this.evicting || this.cacheBytes <= max) return;
    this.evicting = true;
    try {
      // in place, not over a copy: at the cap every close and landed block comes here, and a copy
      // of 100,000 objects cost 1.26 ms each time (destroy's delete of the current entry is safe
      // while a Map is iterated)
      for (const o of this.objs.values()) {
        if (this.cacheBytes <= max) break;
        if (!o.evictable) continue;
        this.destroy(o);
      }
    } finally {
      this.evicting = false;
    }
  }

  // ---------------------------------------------------------------- recovery

  /**
   * At start: clean content kept by an earlier run (reused while the server's identity is
   * unchanged), then the closed files whose upload was not confirmed (the journal's pending
   * records: they are the local truth until uploaded), then cache files nobody refers to.
   * Returns the objects restored from pending records (their write-back state is the caller's).
   */
  async recover(pending: PendingUpload[], onMissing: (p: PendingUpload) => void): Promise<{ obj: Obj; rec: PendingUpload }[]> {
    const pendingIds = new Set(pending.map((p) => p.id));
    const names = await fsp.readdir(this.dataDir);
    const metas = new Set(names.filter((n) => n.endsWith('.meta')).map((n) => n.slice(0, -5)));
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
        o.metaCurrent = true;
        this.cacheBytes += o.ranges.bytes;
        this.setObj(o.path, o);
      } catch {
        await fsp.rm(metaFile, { force: true });
        await fsp.rm(join(this.dataDir, id), { force: true });
      }
    }
    const restored: { obj: Obj; rec: PendingUpload }[] = [];
    for (const p of pending) {
      const file = join(this.dataDir, p.id);
      // the record holds the closed content: the cache file may have lost it (power loss before
      // writeback) or been written after the close without a close: the record wins
      if (p.data) await restoreInline(file, p.data);
      let size: number;
      try { size = (await fsp.stat(file)).size; } catch {
        onMissing(p);
        continue;
      }
      const old = this.objs.get(p.path);
      if (old) this.destroy(old);
      // whether an earlier attempt reached the server is unknown: treat as possibly there
      const o = new Obj(p.id, p.path, size, true);
      o.localMtime = Date.now();
      this.addRange(o, 0, size);
      this.setObj(o.path, o);
      restored.push({ obj: o, rec: p });
    }
    // cache files nobody refers to (crash while writing an unclosed file, or before meta was written)
    const known = new Set<string>();
    for (const o of this.objs.values()) known.add(o.id);
    for (const n of names) {
      const id = n.endsWith('.meta') ? n.slice(0, -5) : n;
      // recursive: a download killed midway leaves its files (.prefetch-*) and working folder (.rsync-run-*) here
      if (!known.has(id)) await fsp.rm(join(this.dataDir, n), { force: true, recursive: true });
    }
    return restored;
  }

  /** Closes every fd (the drive is closing); clean content keeps its index for the next run. */
  async closeAll(): Promise<void> {
    this.sparesStopped = true;
    if (this.sparesTimer) { clearTimeout(this.sparesTimer); this.sparesTimer = null; }
    for (const s of this.spares.splice(0)) {
      try { fs.closeSync(s.fd); } catch { /* already closed */ }
      fs.rmSync(join(this.dataDir, s.id), { force: true });
    }
    for (const o of this.objs.values()) {
      // (one on disk that describes these bytes already is not written again)
      if (!o.authoritative && o.ranges.bytes > 0 && !o.metaCurrent) await this.writeMeta(o).catch(() => {});
      if (o.fd >= 0) { try { fs.closeSync(o.fd); } catch { /* already closed */ } o.fd = -1; }
    }
  }
}

async function restoreInline(file: string, data: Buffer): Promise<void> {
  const cur = await fsp.readFile(file).catch(() => null);
  if (cur && cur.equals(data)) return;
  // no fsync: the journal keeps the inline copy until the upload is confirmed
  await fsp.writeFile(file, data, { mode: 0o600 });
}
