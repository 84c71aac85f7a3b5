// Prefetch: work a program will probably ask for next, done in the background at lower priority.
// - After a program listed a folder: its subfolders' listings (find, ls -R go on from cache).
// - After a program opened a file of a listed folder for reading: the folder's other small files
//   (cat *, grep -r), bounded by count, file size and bytes ahead of the program, and only while
//   the cache has room. Ranged remotes fetch each file with one request; others in growing
//   batches (Maxxo: one rsync run for many files), which readers of a picked file join.
// - At start (warmStart): the top folder and its subfolders, listed for lookups (implicit).
//
// Owns: the background lanes (bounded concurrency, so prefetch never holds a thousand fds nor
// queues ahead of what a program waits for), the per-listing prefetch state (it goes with the
// listing), the batch transfers in flight (stop() aborts them when the drive closes).
// Rules: only idle clean objects of the listed identity are prefetched; a batch result lands only
// if the object's epoch, path and identity are unchanged (see batchDownload).
import { randomUUID } from 'node:crypto';
import fs, { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { Priority } from '../remote/types.js';
import { CLOSING, errText, type Ctx } from './context.js';
import type { Fetcher } from './content/fetch.js';
import { sameIdent, type Obj } from './content/obj.js';
import type { ContentStore } from './content/store.js';
import type { DirSlot, MetaCache } from './meta/cache.js';
import { joinPath } from './paths.js';

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

/** A queued task, and what tells its waiters it will not run (the drive closed first). */
interface Queued { run: () => Promise<void>; dropped?: () => void }
interface Lane { limit: number; running: number; queue: Queued[] }

export class Prefetcher {
  private readonly dirLane: Lane = { limit: 8, running: 0, queue: [] };
  private readonly fileLane: Lane;
  /** What was prefetched for a listing (it goes with the listing). */
  private readonly prefetchState = new WeakMap<DirSlot, { dirs?: boolean; files?: boolean; siblings?: SiblingPrefetch }>();
  /** Batch transfers in flight: stop() ends them instead of waiting for them. */
  private readonly batchAborts = new Set<AbortController>();

  constructor(
    private readonly ctx: Ctx,
    private readonly meta: MetaCache,
    private readonly store: ContentStore,
    private readonly fetcher: Fetcher,
  ) {
    // batches (one transfer run each) go a few at a time; single-request fetches more widely
    // (ranged: a few connections of the account's pool stay free for what a program waits for)
    this.fileLane = { limit: ctx.ranged ? 12 : 2, running: 0, queue: [] };
  }

  /**
   * The drive is closing: batch transfers in flight are aborted, and queued work is dropped, its
   * waiters told (a batch's files wait for it: without that an unmount waited for them forever).
   */
  stop(): void {
    for (const ac of this.batchAborts) ac.abort(CLOSING);
    for (const lane of [this.dirLane, this.fileLane]) for (const q of lane.queue.splice(0)) q.dropped?.();
  }

  /**
   * Background work with its own concurrency bound (so a thousand prefetches never hold a
   * thousand fds or queue ahead of what a program waits for: they also go at background priority).
   */
  private bg(lane: Lane, run: () => Promise<void>, dropped?: () => void): boolean {
    if (this.ctx.closed || lane.queue.length >= 10_000) return false;
    lane.queue.push({ run, dropped });
    this.pump(lane);
    return true;
  }

  private pump(lane: Lane): void {
    while (lane.running < lane.limit && lane.queue.length > 0 && !this.ctx.closed) {
      const task = lane.queue.shift()!;
      lane.running++;
      task.run().catch((e) => this.ctx.log.debug(`prefetch: ${errText(e)}`)).finally(() => { lane.running--; this.pump(lane); });
    }
  }

  private prefetched(d: DirSlot): { dirs?: boolean; files?: boolean; siblings?: SiblingPrefetch } {
    let ps = this.prefetchState.get(d);
    if (!ps) { ps = {}; this.prefetchState.set(d, ps); }
    return ps;
  }

  /**
   * At start (warmStart): the top folder's listing, then its subfolders' as after a program listed
   * it. A cold `ls -l a/b/c` walks a level per round trip; with the first two levels listed the
   * walk starts at the third. Both are marked fetched for lookups (implicit): a name missing from
   * them is still asked of the server, since no program saw them.
   */
  warm(): void {
    if (this.ctx.opts.prefetchDirs <= 0) return;
    this.bg(this.dirLane, async () => {
      const before = this.meta.dirs.get('/');
      this.meta.markImplicit('/', before, await this.meta.listing('/', false, Priority.normal));
      this.subdirs('/', true);
    });
  }

  /**
   * After a program listed a folder: its subfolders' listings, so `find` / `ls -R` go on from
   * cache. `implicit`: listed for lookups (the warm start), not because a program listed dir.
   */
  subdirs(dir: string, implicit = false): void {
    const max = this.ctx.opts.prefetchDirs;
    const d = this.meta.dirs.get(dir);
    if (max <= 0 || !d) return;
    const ps = this.prefetched(d);
    if (ps.dirs) return;
    ps.dirs = true;
    const now = Date.now();
    let n = 0;
    for (const [name, e] of d.entries) {
      if (e.type !== 'dir') continue;
      const p = joinPath(dir, name);
      const c = this.meta.dirs.get(p);
      if ((c && c.expires > now) || this.meta.listingInFlight(p)) continue;
      if (++n > max) break;
      this.bg(this.dirLane, async () => {
        const c2 = this.meta.dirs.get(p);
        if ((c2 && c2.expires > Date.now()) || this.meta.listingInFlight(p)) return;
        const got = await this.meta.listing(p, false, Priority.normal);
        if (implicit) this.meta.markImplicit(p, c2, got);
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
  siblings(dir: string, opening: string): void {
    const maxFiles = this.ctx.opts.prefetchFiles;
    const d = this.meta.dirs.get(dir);
    if (maxFiles <= 0 || !d || d.expires <= Date.now()) return;
    const ranged = this.ctx.ranged;
    if (!ranged && !this.ctx.remote.downloadMany) return;
    const ps = this.prefetched(d);
    let st = ps.siblings;
    if (!st) {
      if (ps.files) return;
      ps.files = true;
      st = ps.siblings = { names: [...d.entries.keys()], next: 0, picked: 0, ahead: new Map(), aheadBytes: 0 };
    } else {
      // the program went on to a file the prefetch took: the budget slides along with it
      const sz = st.ahead.get(opening);
      if (sz !== undefined) { st.ahead.delete(opening); st.aheadBytes -= sz; }
      if (st.next >= st.names.length || st.picked >= maxFiles) return;
    }
    // one request per file (ranged) or one batch transfer: files up to a few block sizes are
    // cheap to take along; bigger ones come whole at their first read (fetchWholeAtFirstRead)
    const maxFile = this.ctx.opts.prefetchFileMaxBytes;
    const limit = Math.min(this.ctx.opts.prefetchBytes, (this.ctx.opts.cacheMaxBytes - this.store.cacheBytes) / 2);
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
      // (a file renamed, or a folder above it, the move not sent: the server has it under its old name)
      if (p === opening || this.ctx.names.serverPath(p) !== p) continue;
      let o = this.store.objs.get(p);
      if (o) {
        // only idle clean objects of the same content that miss bytes
        if (o.authoritative || o.refs > 0 || o.complete || o.inflightCount > 0 || o.download || !sameIdent(o.ident, e)) continue;
      } else {
        o = this.store.add(p, e.size, true, e);
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
          await this.fetcher.fetchRun(o, 0, o.size, Priority.background);
        });
      }
      return;
    }
    // batches that grow: the first files arrive soon, the rest with few transfer runs
    for (let i = 0, size = 16; i < picks.length; i += size, size = Math.min(size * 4, 256)) {
      const batch = picks.slice(i, i + size);
      const done = this.batchDownload(batch);
      for (const o of batch) this.fetcher.attachBatch(o, done);
    }
  }

  private batchDownload(objs: Obj[]): Promise<Set<Obj>> {
    return new Promise((resolve) => {
      const queued = this.bg(this.fileLane, async () => {
        const got = new Set<Obj>();
        // next to the cache files, as a download's: a remote that starts its transfers ahead
        // (Maxxo) makes their working folders next to the files asked, and keys them by that
        // folder (what a killed run leaves there goes with the store's sweep at the next start)
        const batch = randomUUID();
        let items: { path: string; localFile: string }[] = [];
        try {
          const epochs = objs.map((o) => o.epoch);
          items = objs.map((o, i) => ({ path: o.path, localFile: join(this.store.dataDir, `.prefetch-${batch}-${i}`) }));
          let delivered: string[] = [];
          const stop = new AbortController();
          this.batchAborts.add(stop);
          try {
            delivered = await this.ctx.bounded(`prefetch of ${objs.length} files`, (signal) =>
              this.ctx.remote.downloadMany!(items, { signal: AbortSignal.any([signal, stop.signal]), priority: Priority.background }));
          } catch (e) {
            this.ctx.log.debug(`prefetch of ${objs.length} files: ${errText(e)}`);
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
              fs.renameSync(items[i]!.localFile, this.store.file(o));
              if (o.fd >= 0) {
                const nfd = fs.openSync(this.store.file(o), fs.constants.O_RDWR);
                fs.closeSync(o.fd);
                o.fd = nfd;
              }
              this.store.setWhole(o, fs.statSync(this.store.file(o)).size);
              got.add(o);
            } catch (e) {
              this.ctx.log.debug(`prefetch of ${o.path}: ${errText(e)}`);
            }
          }
        } finally {
          for (const it of items) await fsp.rm(it.localFile, { force: true }).catch(() => {});
          resolve(got);
        }
      }, () => resolve(new Set()));
      if (!queued) resolve(new Set());
    });
  }
}
