// Delete write-back: unlink and rmdir answer once their record is in the journal; the server hears
// of them here, coalesced: the queue collects deletes while they keep coming (deleteIdleMs since
// the last, at most deleteMaxDelayMs since the first), a folder's delete folds every delete below
// it (the server removes folders recursively: `rm -rf` of a tree is one delete), and the rest go
// as few requests as the service allows (Maxxo: one /ops/delete with many file[]; vBoxx: one
// request per path, a few at a time).
//
// Owns: the deletes not yet confirmed (`pending`, path -> record, mirrored by the journal's `x`
// records), the batch timer, the sends in flight, the delete failures. Ordering rules:
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
import { TransferFailed, isRemoteError } from '../../errors.js';
import { Priority } from '../../remote/types.js';
import { backoffDelay } from '../../util/backoff.js';
import type { UploadFailure } from '../api.js';
import { errText, type Ctx } from '../context.js';
import type { PendingDelete } from '../journal.js';
import { isUnder, parentOf } from '../paths.js';

/** The journal as the delete queue uses it. */
export interface DeleteJournal {
  readonly deletes: Map<string, PendingDelete>;
  deleteRec(d: PendingDelete): Promise<void>;
  done(uid: string): Promise<void>;
  flushed(): Promise<void>;
}

/** A batch goes this long after the last delete came... */
export const DELETE_IDLE_MS = 100;
/** ...and at most this long after the first one waiting. */
export const DELETE_MAX_DELAY_MS = 2000;
/** Requests of one-path services (vBoxx) in flight at a time. */
const SINGLE_CONCURRENCY = 4;
const RETRY_MAX_MS = 30_000;

interface Sent {
  uids: Map<string, string>;
  p: Promise<void>;
}

export class DeleteQueue {
  /** Deletes not yet confirmed, by path (queued or being sent). */
  private readonly pending = new Map<string, PendingDelete>();
  /** Of those, the paths not sent yet. */
  private readonly queued = new Set<string>();
  private readonly inFlight = new Set<Sent>();
  readonly failures = new Map<string, UploadFailure>();
  /** Refusals a folder's fsync already failed for. */
  private readonly reported = new WeakSet<UploadFailure>();
  private timer: NodeJS.Timeout | null = null;
  private firstQueuedAt = 0;
  /** Sends finished (a flush counts its rounds by them). */
  private sends = 0;
  private retryAt = 0;
  /** Settles when nothing is queued or in flight. */
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly ctx: Ctx, private readonly journal: DeleteJournal,
    private readonly ports: { confirmed(path: string): void; refused(path: string): void }) {}

  get size(): number { return this.pending.size; }

  /** Something is queued or on its way (a pending delete is always one of them). */
  private get busy(): boolean { return this.queued.size > 0 || this.inFlight.size > 0 || this.timer !== null; }

  /** Paths still pending (status, flush result). */
  paths(): string[] { return [...this.pending.keys()]; }

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
    for (const k of this.pending.keys()) if (isUnder(k, dir)) return true;
    return false;
  }

  /** The records an earlier run left: sent at once. */
  restore(): void {
    for (const d of this.journal.deletes.values()) this.enqueue(d);
    if (this.pending.size > 0) {
      this.ctx.log.info(`replaying ${this.pending.size} pending delete(s) from the journal`);
      this.kick(0);
    }
  }

  /** Records the delete of path (durable in the journal when this resolves) and queues it. */
  async add(path: string, dir: boolean): Promise<void> {
    const d: PendingDelete = { uid: randomUUID(), path, dir };
    // the journal folds the records below a folder itself; the queue follows it
    const rec = this.journal.deleteRec(d);
    for (const k of [...this.pending.keys()]) if (isUnder(k, path)) { this.pending.delete(k); this.queued.delete(k); }
    this.failures.delete(path);
    this.enqueue(d);
    this.kick();
    await rec;
  }

  private enqueue(d: PendingDelete): void {
    this.pending.set(d.path, d);
    if (this.queued.size === 0) this.firstQueuedAt = Date.now();
    this.queued.add(d.path);
  }

  /** A pending delete at path or above it: the promise settles when it was sent (sooner than the window). */
  covering(path: string): Promise<void> | undefined {
    if (!this.hides(path)) return undefined;
    return this.whenSent((p) => p === path || isUnder(path, p));
  }

  /**
   * Waits (bounded by opTimeoutMs) until no delete at, above or below any of paths is pending:
   * a namespace change that reaches the server at once goes after them.
   */
  async settle(paths: string[]): Promise<void> {
    if (this.pending.size === 0) return;
    const touches = (k: string) => paths.some((p) => k === p || isUnder(k, p) || isUnder(p, k));
    if (![...this.pending.keys()].some(touches)) return;
    await this.ctx.within(`sending the pending deletes of ${paths.join(', ')}`, this.whenSent(touches));
  }

  private async whenSent(match: (k: string) => boolean): Promise<void> {
    this.kick(0);
    while (this.busy && [...this.pending.keys()].some(match)) {
      await new Promise<void>((r) => this.idleWaiters.push(r));
    }
  }

  /**
   * Sends everything pending now and waits, giving each delete `uploadAttempts` tries (a flush
   * must end even when the server is gone). Returns the deletes still pending, with their errors.
   */
  async flush(): Promise<UploadFailure[]> {
    for (let round = 0; this.pending.size > 0 && round < this.ctx.opts.uploadAttempts && !this.ctx.closed; round++) {
      if (this.retryAt > Date.now()) await new Promise((r) => setTimeout(r, this.retryAt - Date.now()));
      this.kick(0);
      const before = this.sends;
      while (this.pending.size > 0 && this.sends === before && this.busy) await new Promise<void>((r) => this.idleWaiters.push(r));
    }
    return this.stillPending();
  }

  /**
   * fsync of a folder: waits (bounded) until the deletes of names in it reached the server, then
   * fails once (EIO) for each refused since the last fsync of the folder.
   */
  async syncDir(dir: string): Promise<void> {
    const inDir = (k: string) => isUnder(k, dir);
    if ([...this.pending.keys()].some(inDir)) {
      await this.ctx.within(`sending the pending deletes in ${dir}`, this.whenSent(inDir));
    }
    for (const [p, f] of this.failures) {
      if (!inDir(p) || this.pending.has(p) || this.reported.has(f)) continue;
      this.reported.add(f);
      throw new TransferFailed(`delete of ${p} refused by the server: ${f.error}`, { path: p });
    }
  }

  stillPending(): UploadFailure[] {
    return this.paths().map((p) => this.failures.get(p) ?? { path: p, op: 'delete', error: 'not deleted yet', attempts: 0, atMs: Date.now() });
  }

  shutdown(): Promise<unknown> {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    return Promise.all([...this.inFlight].map((s) => s.p));
  }

  /** Starts the batch timer (or sends at once with delay 0). */
  private kick(delay?: number): void {
    if (this.queued.size === 0 || this.ctx.closed) return;
    const now = Date.now();
    let wait = delay ?? Math.min(this.ctx.opts.deleteIdleMs, Math.max(0, this.firstQueuedAt + this.ctx.opts.deleteMaxDelayMs - now));
    if (this.retryAt > now) wait = Math.max(wait, this.retryAt - now);
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => { this.timer = null; this.sendQueued(); }, wait);
  }

  private wakeWaiters(): void {
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const r of w) r();
  }

  private sendQueued(): void {
    if (this.queued.size === 0 || this.ctx.closed) return;
    const uids = new Map<string, string>();
    for (const p of this.queued) uids.set(p, this.pending.get(p)!.uid);
    this.queued.clear();
    const s: Sent = { uids, p: Promise.resolve() };
    s.p = this.send(uids).finally(() => {
      this.inFlight.delete(s);
      this.sends++;
      // someone waits, or a retry: after its backoff, not after another collecting window
      const hurry = this.idleWaiters.length > 0 || this.retryAt > 0;
      this.wakeWaiters();
      if (this.queued.size > 0) this.kick(hurry ? 0 : undefined);
    });
    this.inFlight.add(s);
  }

  private async send(uids: Map<string, string>): Promise<void> {
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

  private confirmed(path: string, uid: string): void {
    this.retryAt = 0;
    this.failures.delete(path);
    const cur = this.pending.get(path);
    if (cur?.uid !== uid) return;
    this.pending.delete(path);
    this.journal.done(uid).catch((e) => this.ctx.log.warn(`journal: ${errText(e)}`));
    this.ports.confirmed(path);
  }

  private failed(paths: string[], uids: Map<string, string>, err: unknown): void {
    const retryable = isRemoteError(err) ? err.retryable : true;
    const error = errText(err);
    for (const p of paths) {
      const cur = this.pending.get(p);
      if (!cur || cur.uid !== uids.get(p)) continue;
      const prev = this.failures.get(p);
      const attempts = (prev?.attempts ?? 0) + 1;
      this.failures.set(p, { path: p, op: 'delete', error, attempts, atMs: Date.now() });
      if (retryable) {
        this.queued.add(p);
        continue;
      }
      // the server keeps it: shown again, and reported
      this.pending.delete(p);
      this.journal.done(cur.uid).catch((e) => this.ctx.log.warn(`journal: ${errText(e)}`));
      this.ctx.log.error(`delete of ${p} refused by the server, the server keeps it: ${error}`);
      this.ports.refused(p);
    }
    if (retryable) {
      const n = Math.max(1, ...paths.map((p) => this.failures.get(p)?.attempts ?? 1));
      const delay = backoffDelay(n, this.ctx.opts.uploadBackoffMs, RETRY_MAX_MS, 'spread');
      this.retryAt = Date.now() + delay;
      this.ctx.log.warn(`delete of ${paths.length === 1 ? paths[0] : `${paths.length} items`} failed (attempt ${n}), retrying in ${Math.round(delay)} ms: ${error}`);
    }
  }
}
