// Namespace barriers: one namespace change (unlink, rename) at a time per path and subtree, and
// the fence upload tasks wait at before they send (writeback/uploader.ts: the parked phase).
//
// Owns: the set of barriers in force. Rules: run(paths, fn) waits for every barrier that covers,
// or is covered by, one of its paths, then holds its own until fn settled; covering(path) names a
// barrier on path or one of its parent folders (an upload into a folder being renamed waits).
import { isUnder } from '../paths.js';

interface Barrier { paths: string[]; promise: Promise<void> }

/** What the upload side needs of the barriers. */
export interface BarrierGate {
  /** No barrier at all (the common case: nothing to check). */
  readonly idle: boolean;
  /** A barrier on path or a folder above it, if any: settles when that barrier is lifted. */
  covering(path: string): Promise<void> | undefined;
  /** A folder made by us that the server may not have yet (its uploads make it: no parent check). */
  pendingFolder?(dir: string): boolean;
}

export class Barriers implements BarrierGate {
  private readonly barriers = new Set<Barrier>();

  get idle(): boolean {
    return this.barriers.size === 0;
  }

  covering(path: string): Promise<void> | undefined {
    for (const b of this.barriers) if (b.paths.some((bp) => path === bp || isUnder(path, bp))) return b.promise;
    return undefined;
  }

  async run<T>(paths: string[], fn: () => Promise<T>): Promise<T> {
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
}
