// The cached file object: one per path (plus deleted files still open), owning one cache file
// (data/<id>) and one fd shared by all handles of the path. Reads and writes go straight between
// the caller's buffer and that fd.
//
// Invariants (what every component may rely on):
// - ranges lists the bytes of [0, size) present in the cache file; ContentStore.cacheBytes is the
//   sum of ranges.bytes over all objects (change ranges through the store's helpers).
// - Content is clean (gen == wb.uploadedGen) or dirty. Dirty content is complete (the whole file
//   is fetched before the first write), so a dirty cache file can be uploaded as is, also after
//   a crash. Dirty, pending or local-only content is `authoritative`: it overrides the server.
// - epoch is bumped whenever cached bytes are thrown away (server changed, O_TRUNC, destroy): a
//   fetch started at an older epoch drops its result and never lands bytes of two versions.
// - ident is the server identity (size + rev or mtime) the clean bytes belong to.
// - metaOnDisk: data/<id>.meta may exist; it is removed (dropMeta) before any change of the bytes
//   it names (a write, a truncate, content thrown away, a rename of the path). metaCurrent: it
//   describes exactly the cached bytes (more landing since clears it: the index on disk names a
//   subset, still true, and is written again at the next release). Only a removal clears
//   metaOnDisk: with one flag, bytes landing before a first write left the old index on disk,
//   and a crash before that file's close then presented the changed bytes as the server's.
// - unlinked: the path no longer names this object; its bytes go at the last release.
// - The write-back state (wb) belongs to writeback/ alone (see writeback/state.ts).
//
// Ordering rule, the I/O gate (sharedIo / exclusiveIo): writes of the cache file run shared (they
// may overlap each other); a truncate, and the snapshot a close records (size, gen and bytes that
// must belong together), run exclusive: none starts while a write is half done, and no write
// starts while they wait or run. Without it a close's truncate to the size it read ran after
// another appender's write had landed past that size: lost lines, then a hole of NULs (issue 10).
//
// One waiter mechanism (waitFor / wake): a waiter names the condition it waits for (a range
// present, a download's prefix arrived, no write half done) and, where one exists, the run whose
// end settles it (a fetch or download: resolves, or rejects with its error). Whoever changes what
// a condition reads calls wake(o): a fetch landing bytes, a download's progress, the last shared
// write ending.
import type { RemoteEntry } from '../../remote/types.js';
import type { LocalAttrs } from '../meta/attrs.js';
import { RangeSet } from '../ranges.js';
import { WriteState } from '../writeback/state.js';

interface Waiter { ready: () => boolean; resolve: () => void }
export interface RecentSeg { pos: number; end: number; bufs: Buffer[]; bytes: number; epoch: number; gen: number }

export class Obj {
  fd = -1;
  fdOpening: Promise<void> | null = null;
  refs = 0;
  writers = 0;
  readonly ranges = new RangeSet();
  /** Bumped whenever cached bytes are thrown away, so a fetch started before drops its result. */
  epoch = 0;
  /**
   * The epoch of the bytes the kernel may hold in its page cache from opens of this object (-1:
   * none handed out yet). An open may let the kernel keep its pages only while it is still the
   * current epoch: a server change noticed while a file is read (serverChanged) keeps the same
   * identity checks passing afterwards (ident follows the server), and fuse-native cannot tell the
   * kernel to drop those pages.
   */
  kernelEpoch = -1;
  /** Server identity the clean content belongs to (null: never on the server as far as we know). */
  ident: RemoteEntry | null = null;
  /** Modifications of the content (writes, truncates); see writeback/state.ts for the marks that follow it. */
  gen = 0;
  /** The write-back state of this content (owned by writeback/). */
  readonly wb: WriteState;
  localMtime = 0;
  unlinked = false;
  /**
   * Once unlinked (deleted or replaced while open): the mode and times that were kept for its path,
   * now its own. The path's entry in the attribute table belongs to whatever takes the name next;
   * fstat, fchmod, futimens and writes through the handles still open read and change these.
   */
  ownAttrs: LocalAttrs | undefined = undefined;
  metaOnDisk = false;
  metaCurrent = false;
  /** The .meta index being written (ContentStore.writeMeta): a removal waits for it. */
  metaWriting: Promise<void> | null = null;
  /** The I/O gate of the cache file (see the top of this file). */
  ioShared = 0;
  ioExclusive: Promise<void> | null = null;
  /** Everyone waiting for a condition on this object (see waitFor at the top of this file). */
  waiters: Waiter[] = [];
  // ranged fetches
  readonly inflight = new Map<number, Promise<void>>();
  inflightCount = 0;
  /**
   * The last bytes streamed in, as received (clean content only): a sequential reader right
   * behind the read-ahead gets them by a copy instead of a pread of the cache file they were just
   * written to (one threadpool round trip less per 128 KiB FUSE read). Valid while epoch and gen
   * are those of the segment.
   */
  recent: RecentSeg[] = [];
  recentBytes = 0;
  /**
   * Some reader of this object copies its bytes (ContentIo.read, fuse-native). Only then are
   * recent segments kept: readers of extents (the libfuse3 backend) take the bytes from the cache
   * file, and segments nobody copies from would only hold memory (up to RECENT_BYTES per file).
   */
  copyReader = false;
  // whole-file download
  download: Promise<void> | null = null;
  dlAbort: AbortController | null = null;
  /** Bytes of the whole-file download in progress present from the start of the file. */
  downloaded = 0;

  constructor(public readonly id: string, public path: string, public size: number, onServer: boolean) {
    this.wb = new WriteState(onServer);
  }

  get dirty(): boolean { return this.gen !== this.wb.uploadedGen; }
  /** Local state overrides what the server says about this path. */
  get authoritative(): boolean {
    const w = this.wb;
    return this.gen !== w.uploadedGen || w.pendingUid !== null || w.uploading !== null || !w.onServer;
  }
  get complete(): boolean { return this.ranges.covers(0, this.size); }
  /** Idle clean content that may be dropped (eviction, disk full). */
  get evictable(): boolean {
    return this.refs === 0 && !this.authoritative && this.inflightCount === 0 && !this.download && this.ranges.bytes > 0;
  }
}

// Cached content is reused while this holds: how soon another client's change is seen is bounded
// by how old the entry compared may be (dir_timeout for a listed one, attr_timeout for a stat's,
// plus what the Remote caches itself, kept within them through Remote.revalidation). Maxxo's mtimes
// come from its rsync daemon's listing, to the second (see remote/maxxo/listings.ts).
export function sameIdent(a: RemoteEntry | null, b: RemoteEntry): boolean {
  if (!a || a.type !== 'file' || a.size !== b.size) return false;
  if (a.rev !== undefined && b.rev !== undefined) return a.rev === b.rev;
  return a.mtimeMs === b.mtimeMs;
}

/**
 * Runs fn as one of the writes of o's cache file. Writes may overlap each other; none starts
 * while an exclusive section (truncate, the snapshot a close records) runs or waits.
 */
export async function sharedIo<T>(o: Obj, fn: () => Promise<T>): Promise<T> {
  while (o.ioExclusive) await o.ioExclusive;
  o.ioShared++;
  try {
    return await fn();
  } finally {
    if (--o.ioShared === 0) wake(o);
  }
}

/**
 * Runs fn with no write of o in progress or starting: the size, generation and bytes it sees
 * belong together (see the top of this file).
 */
export async function exclusiveIo<T>(o: Obj, fn: () => Promise<T>): Promise<T> {
  while (o.ioExclusive) await o.ioExclusive;
  let done!: () => void;
  o.ioExclusive = new Promise<void>((r) => { done = r; });
  try {
    await waitFor(o, () => o.ioShared === 0);
    return await fn();
  } finally {
    o.ioExclusive = null;
    done();
  }
}

/**
 * Resolves once ready() holds: now, or at a wake(o) after which it does. With `run` (the fetch or
 * download that brings what ready() looks for), it also settles when run does: resolves with it
 * (the caller checks again what it got), rejects with its error.
 */
export function waitFor(o: Obj, ready: () => boolean, run?: Promise<unknown>): Promise<void> {
  if (ready()) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const w: Waiter = { ready, resolve };
    o.waiters.push(w);
    const drop = () => {
      const i = o.waiters.indexOf(w);
      if (i >= 0) o.waiters.splice(i, 1);
    };
    run?.then(() => { drop(); resolve(); }, (err) => { drop(); reject(err); });
  });
}

/** Resolves the waiters of o whose condition holds now. */
export function wake(o: Obj): void {
  if (o.waiters.length === 0) return;
  const still: Waiter[] = [];
  for (const w of o.waiters) if (w.ready()) w.resolve(); else still.push(w);
  o.waiters = still;
}

/** Copies [pos, end) from recent segments into buf; false (nothing usable) when any byte is missing. */
export function copyRecent(o: { recent: RecentSeg[]; epoch: number; gen: number }, buf: Buffer, pos: number, end: number): boolean {
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
