// Fetching content into the cache file: ranged reads streamed in block by block with read-ahead
// (remotes with ranged reads: vBoxx), the whole-file download that reads follow as it arrives
// (Maxxo: rsync), and the joining of batch downloads (prefetch).
//
// Owns: nothing of its own beyond the fetch bookkeeping on each Obj (inflight blocks,
// recent segments, download state); byte accounting goes through ContentStore.
//
// Rules:
// - Every fetch captures o.epoch when it starts and lands nothing once it changed (STALE_RUN): a
//   reset, truncate or destroy in between wins, and no read mixes bytes of two versions.
// - A fetch answered from another revision than the cached bytes (the file changed on the server
//   while open) drops the cached bytes and follows the server's version (serverChanged).
// - Readers join fetches in flight and wait only until their own bytes landed (arrival), not for
//   the end of a long request; every wait is bounded by opTimeoutMs.
// - Read-ahead and fetches of clean content only: dirty content is complete and never fetched.
// - A fetch asks the server for the path where it has the file (`ServerNames.serverPath`: the old
//   name while a rename written back is not sent yet); a fetch that failed while that path changed
//   (the move landed meanwhile) is asked again at the new one, and one the old name answered
//   NOT_FOUND (the move on its way) hurries the move and waits for it first.
import fs, { promises as fsp } from 'node:fs';
import { BadResponse, Cancelled } from '../../errors.js';
import { Priority, type RangeRead, type RangeServed, type RemoteEntry } from '../../remote/types.js';
import { CLOSING, MUTATION, MiB, errText, type Ctx } from '../context.js';
import { baseOf } from '../paths.js';
import { readAheadPlan } from '../ranges.js';
import { fstatFd, ftruncateFd, pwritevAll } from './fileio.js';
import { wake, waitFor, type Obj } from './obj.js';
import type { ContentStore } from './store.js';

/** A streamed fetch whose content object was reset meanwhile: it stops without an error. */
const STALE_RUN = Symbol('stale run');
/** Bytes of a streamed fetch collected before one write to the cache file. */
const LAND_BYTES = 1024 * 1024;
/** Bytes of just-landed content kept in memory per file being read (see Obj.recent). */
const RECENT_BYTES = 8 * 1024 * 1024;

/** A handle's read-ahead state (sequential detection and window). */
export interface ReadCursor {
  nextPos: number;
  window: number;
  raEnd: number;
}

export class Fetcher {
  constructor(
    private readonly ctx: Ctx,
    private readonly store: ContentStore,
    /** The file changed on the server while being read: o follows entry e now (the caches should too). */
    private readonly onServerChanged: (path: string, e: RemoteEntry) => void,
  ) {}

  /** The drive is closing: downloads aborted; settles when every fetch of objs did. */
  shutdown(objs: Iterable<Obj>): Promise<unknown> {
    const settle: Promise<unknown>[] = [];
    for (const o of objs) {
      o.dlAbort?.abort(CLOSING);
      if (o.download) settle.push(o.download.catch(() => {}));
      for (const p of o.inflight.values()) settle.push(p.catch(() => {}));
    }
    return Promise.all(settle);
  }

  /** Forgets cached bytes (server content changed or O_TRUNC). Waits for fetches to settle. */
  async quiesce(o: Obj): Promise<void> {
    o.epoch++;
    if (o.download) { o.dlAbort?.abort(MUTATION); await o.download.catch(() => {}); }
    if (o.inflightCount > 0) await Promise.all([...o.inflight.values()].map((p) => p.catch(() => {})));
  }

  async resetContent(o: Obj, e: RemoteEntry): Promise<void> {
    await this.quiesce(o);
    this.store.clearRanges(o);
    o.ident = { ...e };
    o.size = e.size;
    o.localMtime = 0;
    await this.store.dropMeta(o, true);
    if (o.fd >= 0) await ftruncateFd(o.fd, 0);
    else await fsp.truncate(this.store.file(o), 0).catch(() => {});
  }

  /** Whole content present locally (before the first write, so the dirty file is complete). */
  async ensureWhole(o: Obj): Promise<void> {
    if (o.complete) return;
    if (this.ctx.ranged) {
      // a window of readParallel requests at a time keeps memory bounded for huge files
      const req = 8 * MiB;
      for (let stalls = 0; !o.complete && stalls < 3;) {
        const start = o.ranges.contiguousEnd(0);
        await this.fetchRequired(o, start, Math.min(o.size, start + req * this.ctx.opts.readParallel), req);
        if (o.ranges.contiguousEnd(0) === start) stalls++;
      }
      if (!o.complete) throw new BadResponse('the server sent less content than the file size', { path: o.path });
    } else {
      // Not at "all bytes arrived" (readers may go on then): the download writes the cache file
      // until it ends (rsync's final verify may send the file again; --inplace ends with a
      // truncate) and sets size and ranges from it at its end, so a change let in earlier is
      // undone (soak seeds 800303, 801063). No byte count satisfies Infinity: changes wait for
      // the end itself (o.complete).
      await this.ensureDownloaded(o, Infinity);
    }
  }

  /** Ranged remotes: makes [start, end) present; returns how far the bytes from start are present. */
  async fillRanged(o: Obj, h: ReadCursor, start: number, end: number, seq: boolean): Promise<number> {
    for (let round = 0; ; round++) {
      const epoch = o.epoch;
      if (round === 0) this.fetchWholeAtFirstRead(o, start);
      const waits = this.startRequired(o, start, end, 8 * MiB);
      if (seq && round === 0) this.readAhead(o, h, end);
      await this.ctx.within(`read of ${o.path}`, Promise.all(waits));
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
    const max = this.ctx.opts.readWholeMaxBytes;
    if (o.size <= 0 || o.size > max || o.ranges.bytes > 0 || o.inflightCount > 0 || o.dirty) return;
    if (start >= this.ctx.opts.readBlockBytes && o.size > 1 * MiB) return;
    this.fetchRun(o, 0, o.size, Priority.interactive).catch(() => { /* its readers get the error */ });
  }

  private async fetchRequired(o: Obj, start: number, end: number, maxReq: number): Promise<void> {
    await this.ctx.within(`read of ${o.path}`, Promise.all(this.startRequired(o, start, end, maxReq)));
  }

  /**
   * Starts fetches of the missing blocks of [start, end) and joins fetches in flight: a join
   * waits only until its own bytes have landed, not for the end of a long fetch.
   */
  private startRequired(o: Obj, start: number, end: number, maxReq: number): Promise<void>[] {
    const B = this.ctx.opts.readBlockBytes;
    const waits: Promise<void>[] = [];
    let b = Math.floor(start / B);
    const last = Math.floor((end - 1) / B);
    while (b <= last) {
      const inf = o.inflight.get(b);
      if (inf) {
        let e = b + 1;
        while (e <= last && o.inflight.get(e) === inf) e++;
        const s = Math.max(start, b * B);
        const until = Math.min(end, e * B, o.size);
        waits.push(waitFor(o, () => o.ranges.covers(s, until), inf));
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

  private blockHeld(o: Obj, b: number): boolean {
    const s = b * this.ctx.opts.readBlockBytes;
    return o.ranges.covers(s, Math.min(s + this.ctx.opts.readBlockBytes, o.size));
  }

  /**
   * Sequential reader: keeps up to `window` bytes ahead in flight as up to readParallel
   * concurrent ranged requests (each on its own pooled connection), the window doubling each
   * round up to readAheadMaxBytes. With streamed fetches a request costs only a few socket
   * chunks of memory whatever its length, so the requests can be long (few round trips).
   * A request that ends starts the next one at once (not only the reader's next read does), so
   * the connections do not all finish together and then pause.
   */
  readAhead(o: Obj, h: ReadCursor, from: number): void {
    const B = this.ctx.opts.readBlockBytes;
    const plan = readAheadPlan(from, h.window, h.raEnd, o.size, o.inflightCount, this.ctx.opts.readParallel, B);
    if (!plan) return;
    const epoch = o.epoch;
    const next = () => {
      if (o.refs > 0 && o.epoch === epoch && !this.ctx.closed && !o.dirty) this.readAhead(o, h, h.nextPos);
    };
    let s = plan.start;
    while (s < plan.target && o.inflightCount < this.ctx.opts.readParallel) {
      const b = s / B;
      if (o.inflight.has(b) || this.blockHeld(o, b)) { s += B; continue; }
      let e = s + B;
      while (e < plan.target && e - s < plan.reqBytes && !o.inflight.has(e / B) && !this.blockHeld(o, e / B)) e += B;
      // a reader that needs the bytes of a failed request fetches them again
      this.fetchRun(o, s, Math.min(e, o.size), Priority.normal).then(next, () => {});
      s = e;
    }
    h.raEnd = Math.min(s, plan.target);
    if (h.window < this.ctx.opts.readAheadMaxBytes) h.window = Math.min(h.window * 2, this.ctx.opts.readAheadMaxBytes);
  }

  fetchRun(o: Obj, s: number, e: number, priority: number): Promise<void> {
    const B = this.ctx.opts.readBlockBytes;
    const epoch = o.epoch;
    const p = (async () => {
      if (o.fd < 0) await this.store.openFd(o);
      await this.streamRun(o, s, e, epoch, priority);
    })().finally(() => {
      for (let b = s / B; b * B < e; b++) if (o.inflight.get(b) === p) o.inflight.delete(b);
      o.inflightCount--;
      if (o.refs === 0) this.store.afterRelease(o);
      else if (this.store.cacheBytes > this.ctx.opts.cacheMaxBytes) this.store.maybeEvict();
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
      // changed content is complete (changes wait for it): server bytes never go over it
      if (o.epoch !== epoch || o.dirty) throw STALE_RUN;
      await pwritevAll(o.fd, bufs, pos);
      if (o.epoch !== epoch) throw STALE_RUN;
      if (!o.dirty && o.refs > 0 && o.copyReader) {
        // bytes landed again (a run that started over) replace the older copy: copyRecent takes
        // the first segment that covers a position
        const end = Math.min(pos + len, o.size);
        // (copyRecent copies out synchronously, so a segment dropped here has no other reader)
        for (let i = o.recent.length - 1; i >= 0; i--) {
          const r = o.recent[i]!;
          if (r.pos < end && r.end > pos) { o.recentBytes -= r.bytes; o.recent.splice(i, 1); this.ctx.recycle(r.bufs); }
        }
        o.recent.push({ pos, end, bufs, bytes: len, epoch, gen: o.gen });
        o.recentBytes += len;
        while (o.recentBytes > RECENT_BYTES && o.recent.length > 1) {
          const r = o.recent.shift()!;
          o.recentBytes -= r.bytes;
          this.ctx.recycle(r.bufs);
        }
      } else {
        // landed, and nobody keeps a view of them: their memory may carry the next bytes
        this.ctx.recycle(bufs);
      }
      this.store.addRange(o, pos, Math.min(pos + len, o.size));
      o.metaCurrent = false;
      wake(o);
    };
    const sink = (chunk: Buffer, pos: number, served: RangeServed): void | Promise<void> => {
      if (o.epoch !== epoch) throw STALE_RUN;
      if (this.otherVersion(o, served.rev)) {
        // bytes of another version than the cached ones never land next to them
        this.serverChanged(o, served.rev!, served.size ?? o.size);
        throw STALE_RUN;
      }
      if (pos !== pendPos + pendLen) {
        // The transfer started over: the run the pending bytes came from was abandoned, so they
        // are dropped, never landed (the new run sends its bytes again from pos).
        pend = [chunk]; pendPos = pos; pendLen = chunk.length;
        return pendLen >= LAND_BYTES ? land() : undefined;
      }
      pend.push(chunk);
      pendLen += chunk.length;
      if (pendLen >= LAND_BYTES) return land();
    };
    let got: RangeRead;
    try {
      got = await this.ctx.atServer(o.path, (at) => this.ctx.bounded(`read of ${path}`, (signal) => this.ctx.remote.ranged!.readTo(at, s, e - s, sink, { signal, priority })));
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
    this.ctx.log.info(`${o.path} changed on the server while being read; its cached bytes are dropped`);
    o.epoch++;
    this.store.clearRanges(o);
    // the server's time comes with the next listing; a new one now makes the kernel drop its pages
    const e: RemoteEntry = { ...(o.ident ?? { name: baseOf(o.path), type: 'file' }), size, rev, mtimeMs: Date.now() };
    o.ident = { ...e };
    o.size = size;
    this.store.dropMeta(o);
    this.onServerChanged(o.path, e);
    wake(o);
  }

  /**
   * Non-ranged remotes: the whole file streams into the cache file; reads follow its progress.
   * A batch download that settles without o (prefetch) leaves the reader to start one of its own.
   */
  async ensureDownloaded(o: Obj, need: number): Promise<void> {
    for (let round = 0; !o.complete && !(o.download && o.downloaded >= need); round++) {
      if (round >= 4) throw new BadResponse('the download ended without the file', { path: o.path });
      if (!o.download) this.startDownload(o);
      await this.ctx.within(`read of ${o.path}`, waitFor(o, () => o.complete || o.downloaded >= need, o.download!));
    }
  }

  startDownload(o: Obj): void {
    const ac = new AbortController();
    o.dlAbort = ac;
    o.downloaded = 0;
    const epoch = o.epoch;
    const gen = o.gen;
    const path = o.path;
    o.download = (async () => {
      if (o.fd < 0) await this.store.openFd(o);
      const got = await this.ctx.atServer(o.path, (at) => this.ctx.remote.download(at, this.store.file(o), {
        signal: ac.signal,
        priority: Priority.interactive,
        ...(o.ident ? { sizeHint: o.size } : {}),
        onProgress: (n) => { if (o.epoch === epoch) { o.downloaded = n; wake(o); } },
      }));
      // the client may have replaced the file instead of writing in place: follow the new inode
      const [a, b] = await Promise.all([fsp.stat(this.store.file(o)), fstatFd(o.fd)]);
      // a reset, or a change made anyway (changes wait for the end: ensureWhole), is not undone here
      if (o.epoch !== epoch || o.gen !== gen) throw new Cancelled('download superseded', { path });
      if (a.ino !== b.ino) {
        const old = o.fd;
        o.fd = -1;
        fs.close(old, () => {});
        await this.store.openFd(o);
      }
      // the version the data plane says it sent (size checked: the cache file is what counts)
      const mtimeMs = got && got.size === a.size ? got.mtimeMs : undefined;
      if (o.ident && !o.authoritative && (a.size !== o.size || (mtimeMs !== undefined && mtimeMs !== o.ident.mtimeMs))) {
        // the server's file is not the one listed (replaced meanwhile): its attributes follow the
        // content now cached, with the mtime it has on the server (one the remote knows too, so
        // the next revalidation finds it unchanged), else a new one: either way the kernel drops
        // pages of the old version
        const e: RemoteEntry = { ...o.ident, size: a.size, mtimeMs: mtimeMs ?? Date.now() };
        o.ident = { ...e };
        this.onServerChanged(o.path, e);
      }
      this.store.setWhole(o, a.size);
    })();
    // its readers' waits settle with it (waitFor's run)
    o.download.catch(() => {}).finally(() => {
      o.download = null;
      o.dlAbort = null;
      if (o.refs === 0) this.store.afterRelease(o);
      else this.store.maybeEvict();
    });
  }

  /**
   * Marks o as being downloaded by a batch: readers wait for it like for their own download, and
   * start their own when it settles without o.
   */
  attachBatch(o: Obj, done: Promise<Set<Obj>>): void {
    o.dlAbort = new AbortController();
    o.downloaded = 0;
    const epoch = o.epoch;
    const p = done.then((got) => got.has(o) && o.epoch === epoch);
    o.download = p.then(() => {});
    p.then((ok) => {
      o.download = null;
      o.dlAbort = null;
      if (ok) wake(o);
      if (o.refs === 0) this.store.afterRelease(o);
    }).catch((e) => this.ctx.log.debug(`prefetch of ${o.path}: ${errText(e)}`));
  }
}
