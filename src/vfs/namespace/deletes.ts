// Delete write-back: unlink and rmdir answer once their record is in the journal; the server hears
// of them here, coalesced: the queue collects deletes while they keep coming (deleteIdleMs since
// the last, at most deleteMaxDelayMs since the first), a folder's delete folds every delete below
// it (the server removes folders recursively: `rm -rf` of a tree is one delete), and the rest go
// as few requests as the service allows (Maxxo: one /ops/delete with many file[]; vBoxx: one
// request per path, a few at a time).
//
// Owns: the deletes not yet confirmed (`pending`, path -> record, mirrored by the journal's `x`
// records), the batch timer, the sends in flight (several at a time), the delete failures; the
// queue plumbing (window, waiters, flush rounds, retries, refusal reports) is coalescing.ts's.
// Ordering rules:
// - A pending-deleted path and everything under it is gone for lookups and listings
//   (`hides`), even while the server still lists it, until the server confirmed (or refused).
// - Whatever reaches the server at a path after its delete was made waits for that delete:
//   uploads and metadata sends park at `covering` (an upload at or under a pending delete), mkdir
//   and rename call `settle` for their paths first (a rename onto or out of a pending delete
//   would otherwise have its result deleted, or leave a name behind). Waiters make the batch go
//   at once instead of after the collecting window.
// - The journal is on the disk (`flushed`) before a batch is sent: a power loss can then not
//   bring back an upload the delete cancelled after the server applied the delete.
// - A delete completes its own record only (uid): a newer delete of the same path (deleted,
//   made again, deleted again) stays pending.
// - A refusal (not retryable) drops the record, shows the name again (the server keeps it) and is
//   reported: log, status failures, flush result (fsync of a folder, unmount). A transient
//   failure is retried with backoff and stays in the journal for the next mount if the
//   unmount's flush used up its attempts.
import { randomUUID } from 'node:crypto';
import { isRemoteError } from '../../errors.js';
import { Priority } from '../../remote/types.js';
import type { Ctx } from '../context.js';
import type { PendingDelete } from '../journal.js';
import { isUnder, parentOf } from '../paths.js';
import { CoalescingQueue, type QueuePorts } from './coalescing.js';

/** The journal as the delete queue uses it. */
export interface DeleteJournal {
  readonly deletes: Map<string, PendingDelete>;
  deleteRec(d: PendingDelete, endsMove?: string): Promise<void>;
  done(uid: string): Promise<void>;
  flushed(): Promise<void>;
}

/** A batch goes this long after the last delete came... */
export const DELETE_IDLE_MS = 100;
/** ...and at most this long after the first one waiting. */
export const DELETE_MAX_DELAY_MS = 2000;
/** Requests of one-path services (vBoxx) in flight at a time. */
const SINGLE_CONCURRENCY = 4;

export class DeleteQueue extends CoalescingQueue<PendingDelete, DeleteJournal> {
  constructor(ctx: Ctx, journal: DeleteJournal, ports: QueuePorts<PendingDelete>) {
    super(ctx, journal, ports, {
      op: 'delete', many: 'items', waitingFor: 'sending the pending deletes', notYet: 'not deleted yet',
      idleMs: 'deleteIdleMs', maxDelayMs: 'deleteMaxDelayMs',
    });
  }

  /** Whether path is gone by a pending delete of it or of a folder above it. */
  hides(path: string): boolean {
    if (this.pending.size === 0) return false;
    for (let p = path; ; p = parentOf(p)) {
      if (this.pending.has(p)) return true;
      if (p === '/') return false;
    }
  }

  /** Whether a delete below dir is pending (it will move dir's mtime on the server). */
  below(dir: string): boolean {
    return this.pendingBelow(dir).length > 0;
  }

  protected key(r: PendingDelete): string {
    return r.path;
  }

  /** The records an earlier run left: sent at once. */
  restore(): void {
    this.replay(this.journal.deletes.values());
  }

  /**
   * Records the delete of path (durable in the journal when this resolves) and queues it.
   * endsMove: the uid of a move of this (server) file not sent yet, which the delete replaces (an
   * unlink of the move's target): one record, so no replay sees one without the other.
   */
  async add(path: string, dir: boolean, endsMove?: string): Promise<void> {
    const d: PendingDelete = { uid: randomUUID(), path, dir };
    // the journal folds the records below a folder itself; the queue follows it
    const rec = this.journal.deleteRec(d, endsMove);
    for (const k of this.pendingBelow(path)) { this.deletePending(k); this.queued.delete(k); }
    await this.queue(d, rec);
  }

  /** A pending delete at path or above it: the promise settles when it was sent (sooner than the window). */
  covering(path: string): Promise<void> | undefined {
    if (!this.hides(path)) return undefined;
    return this.whenSent((p) => p === path || isUnder(path, p));
  }

  /** fsync of a folder waits for the deletes of names in it. */
  protected ofDir(dir: string): (k: string) => boolean {
    return (k) => isUnder(k, dir);
  }

  /** Anyone waiting hurries what is queued (it may wait for a path queued after this send left). */
  protected waiting(): boolean {
    return this.idleWaiters.length > 0;
  }

  /** All queued go, several sends in flight at a time. */
  protected sendQueued(): void {
    if (this.queued.size === 0 || this.ctx.closed) return;
    const uids = new Map<string, string>();
    for (const p of this.queued) uids.set(p, this.pending.get(p)!.uid);
    this.queued.clear();
    this.launch(uids);
  }

  protected async send(uids: Map<string, string>): Promise<void> {
    const paths = [...uids.keys()];
    try {
      // no replay may bring back what this delete cancels once the server applied it
      await this.journal.flushed();
    } catch (err) {
      this.failed(paths, uids, err);
      return;
    }
    const max = Math.max(1, this.ctx.remote.removeBatchMax ?? 1);
    const chunks: string[][] = [];
    for (let i = 0; i < paths.length; i += max) chunks.push(paths.slice(i, i + max));
    const conc = max > 1 ? 2 : SINGLE_CONCURRENCY;
    let next = 0;
    const lane = async () => {
      while (next < chunks.length) {
        const c = chunks[next++]!;
        try {
          await this.removeChunk(c);
          for (const p of c) this.confirmed(p, uids.get(p)!);
        } catch (err) {
          this.failed(c, uids, err);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(conc, chunks.length) }, lane));
  }

  /** One request; a path already gone counts as deleted (a folded child, another client). */
  private async removeChunk(c: string[]): Promise<void> {
    const { remote } = this.ctx;
    const rm = (ps: string[]) => this.ctx.bounded(`delete ${ps.length === 1 ? ps[0] : `${ps.length} items`}`,
      (signal) => remote.remove(ps, { signal, priority: Priority.background }));
    try {
      await rm(c);
    } catch (err) {
      if (!isRemoteError(err, 'NOT_FOUND')) throw err;
      if (c.length === 1) return;
      // one of many was missing: the service may have skipped the rest, so what is left goes again
      const st = remote.batchStat
        ? await this.ctx.bounded('stat of deleted paths', (signal) => remote.batchStat!.statMany(c, { signal, priority: Priority.background }))
        : await Promise.all(c.map((p) => this.ctx.bounded(`stat ${p}`, (signal) => remote.stat(p, { signal, priority: Priority.background }))));
      const left = c.filter((_, i) => st[i]);
      for (const p of left) {
        try { await rm([p]); } catch (e) { if (!isRemoteError(e, 'NOT_FOUND')) throw e; }
      }
    }
  }

  /** The server keeps it: shown again, and reported. */
  protected drop(path: string, rec: PendingDelete, error: string): void {
    this.deletePending(path);
    this.done(rec.uid);
    this.ctx.log.error(`delete of ${path} refused by the server, the server keeps it: ${error}`);
  }
}
