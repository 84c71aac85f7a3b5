// The byte ranges of an object that the cache file holds: sorted, disjoint, non-adjacent
// half-open intervals in one flat array [s0, e0, s1, e1, ...] (no per-range objects on the hot path).

export class RangeSet {
  private r: number[] = [];
  /** Sum of the lengths. */
  bytes = 0;

  static from(pairs: [number, number][]): RangeSet {
    const s = new RangeSet();
    for (const [a, b] of pairs) s.add(a, b);
    return s;
  }

  /** Index of the first interval whose end is >= pos (binary search over ends). */
  private firstEndingAtOrAfter(pos: number): number {
    let lo = 0, hi = this.r.length >> 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.r[2 * mid + 1]! < pos) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  /** True when [start, end) is held completely. */
  covers(start: number, end: number): boolean {
    if (end <= start) return true;
    const i = this.firstEndingAtOrAfter(end);
    return 2 * i < this.r.length && this.r[2 * i]! <= start && this.r[2 * i + 1]! >= end;
  }

  /** End of the held run that contains pos, or pos when pos is not held. */
  contiguousEnd(pos: number): number {
    const i = this.firstEndingAtOrAfter(pos + 1);
    if (2 * i < this.r.length && this.r[2 * i]! <= pos) return this.r[2 * i + 1]!;
    return pos;
  }

  add(start: number, end: number): void {
    if (end <= start) return;
    const r = this.r;
    // intervals touching [start, end] are merged (adjacent ones too)
    let i = this.firstEndingAtOrAfter(start);
    let j = i;
    let s = start, e = end;
    while (2 * j < r.length && r[2 * j]! <= end) {
      s = Math.min(s, r[2 * j]!);
      e = Math.max(e, r[2 * j + 1]!);
      this.bytes -= r[2 * j + 1]! - r[2 * j]!;
      j++;
    }
    r.splice(2 * i, 2 * (j - i), s, e);
    this.bytes += e - s;
  }

  /** Drops everything at or after `size` (truncate). */
  truncate(size: number): void {
    const r = this.r;
    const out: number[] = [];
    let bytes = 0;
    for (let k = 0; k < r.length; k += 2) {
      const s = r[k]!, e = Math.min(r[k + 1]!, size);
      if (s < e) { out.push(s, e); bytes += e - s; }
    }
    this.r = out;
    this.bytes = bytes;
  }

  clear(): void {
    this.r = [];
    this.bytes = 0;
  }

  toPairs(): [number, number][] {
    const out: [number, number][] = [];
    for (let k = 0; k < this.r.length; k += 2) out.push([this.r[k]!, this.r[k + 1]!]);
    return out;
  }
}

export interface ReadAheadPlan {
  /** First byte to request (block aligned). */
  start: number;
  /** Request up to here (the window's end, at most the size). */
  target: number;
  /** Length of one request: the window split over the parallel requests, whole blocks. */
  reqBytes: number;
}

/**
 * The next read-ahead requests of a sequential reader at `from` with `window` bytes of
 * read-ahead, `raEnd` requested so far and `inflight` requests under way; null when nothing is
 * to start. Requests start as soon as a request slot is free and a whole request fits in the
 * window (the file's last bytes excepted), so the connections stay busy without pauses (an idle
 * connection also falls back to TCP slow start) while each request stays long (few round trips).
 */
export function readAheadPlan(from: number, window: number, raEnd: number, size: number, inflight: number,
  parallel: number, block: number): ReadAheadPlan | null {
  if (inflight >= parallel) return null;
  const target = Math.min(size, from + window);
  const reqBytes = Math.max(block, Math.floor(window / Math.max(1, parallel) / block) * block);
  const start = Math.floor(Math.max(from, raEnd) / block) * block;
  if (start >= target) return null;
  if (target - start < reqBytes && target < size) return null;
  return { start, target, reqBytes };
}

/** How far before the front of a sequential run a read may start and still belong to it. */
export const SEQ_SLACK_BEHIND = 2 * 1024 * 1024;
/** How far past the front a read may start (a skipped read still under way). */
export const SEQ_SLACK_AHEAD = 512 * 1024;

/**
 * Whether a read at `position` continues the sequential run whose furthest end so far is
 * `front`. Exact continuation is not required: the kernel's concurrent read-ahead reads reach
 * us slightly out of order, and resetting the window on each of them would keep it small.
 */
export function isSequential(position: number, front: number): boolean {
  if (front === 0) return position === 0;
  return position >= front - SEQ_SLACK_BEHIND && position <= front + SEQ_SLACK_AHEAD;
}
