// The plumbing the namespace write-back queues share (deletes.ts, mkdirs.ts): a journalled
// record per path answers the program at once, and the queue tells the server later, coalesced.
// It collects records while they keep coming (the idle window since the last, at most the max
// delay since the first), sends, retries with backoff, and reports refusals. What a queue sends
// at once, how, and what a record means for lookups is the queue's own (the hooks below).
//
// Owns, for its subclass: the records not yet confirmed (`pending`, path -> record, mirrored by
// the journal), of those the ones not sent yet (`queued`), the sends in flight, the batch timer,
// the retry time, the failures and the waiters. Ordering rules:
// - A record completes its own uid only: a newer record of the same path (made again, deleted
//   again) stays pending.
// - A waiter (`whenSent`: settle, fsync, an upload at a pending delete) makes the queue send at
//   once instead of after the window (a queue that sends one at a time: when the send in flight
//   ends). A send that ends while someone waits (`waiting`, the queue's own test), or while a
//   failure's backoff is set (`retryAt`), kicks what is queued at once (the timer still honours
//   `retryAt`), not after another window.
// - A flush gives each record `uploadAttempts` rounds (sends ended) at most: it must end even
//   when the server is gone; what is left stays in the journal for the next mount.
// - A retryable failure queues the record again and sets `retryAt` (backoff growing with its
//   attempts; any confirmation resets it); a refusal is the subclass's (`drop`), then reported:
//   log, status failures, flush result, and once per refusal the fsync of its folder (`syncDir`).
import { TransferFailed, isRemoteError } from '../../errors.js';
import { backoffDelay } from '../../util/backoff.js';
import type { UploadFailure } from '../api.js';
import { errText, type Ctx } from '../context.js';
import { PathIndex, deleteIndexed, isUnder, setIndexed } from '../paths.js';

const RETRY_MAX_MS = 30_000;

/** What the rest of the drive hears of a record's end. */
export interface QueuePorts<R = unknown> {
  confirmed(path: string, rec: R): void;
  refused(path: string, rec: R): void;
}

/** A queue's names and options (log lines, status failures, its collecting window). */
export interface QueueTerms {
  /** The record's op in status failures, and the noun of the log lines. */
  op: 'delete' | 'mkdir' | 'move';
  /** Many paths in a log line: `${n} ${many}`. */
  many: string;
  /** What a waiter waits for (the time bound's message): `${waitingFor} of/in <paths>`. */
  waitingFor: string;
  /** The error of a record a flush leaves without one. */
  notYet: string;
  /** The options of its window: a batch goes idleMs after the last record, at most maxDelayMs after the first. */
  idleMs: 'deleteIdleMs' | 'mkdirIdleMs' | 'moveIdleMs';
  maxDelayMs: 'deleteMaxDelayMs' | 'mkdirMaxDelayMs' | 'moveMaxDelayMs';
}

interface Sent {
  uids: Map<string, string>;
  p: Promise<void>;
}

export abstract class CoalescingQueue<R extends { uid: string }, J extends { done(uid: string): Promise<void> }> {
  /**
   * Records not yet confirmed, by path (queued or being sent). Changed only through setPending and
   * deletePending, so that pendingPaths knows every key: a folder's delete folds the records below
   * it by visiting that tree (a walk of every pending delete cost each unlink of an rm -rf ~0.17 ms
   * on average over 20,000 held back).
   */
  protected readonly pending: ReadonlyMap<string, R> = new Map<string, R>();
  private readonly pendingPaths = new PathIndex((k) => this.pending.has(k));
  /** Of those, the paths not sent yet. */
  protected readonly queued = new Set<string>();
  protected readonly inFlight = new Set<Sent>();
  readonly failures = new Map<string, UploadFailure>();
  /** Refusals a folder's fsync already failed for. */
  private readonly reported = new WeakSet<UploadFailure>();
  private timer: NodeJS.Timeout | null = null;
  private firstQueuedAt = 0;
  /** Sends finished (a flush counts its rounds by them). */
  private sends = 0;
  private retryAt = 0;
  /** Settles when nothing is queued or in flight. */
  protected idleWaiters: (() => void)[] = [];

  constructor(protected readonly ctx: Ctx, protected readonly journal: J, protected readonly ports: QueuePorts<R>,
    private readonly terms: QueueTerms) {}

  get size(): number { return this.pending.size; }

  /** Something is queued or on its way (a pending record is always one of them). */
  private get busy(): boolean { return this.queued.size > 0 || this.inFlight.size > 0 || this.timer !== null; }

  /** Paths still pending (status, flush result). */
  paths(): string[] { return [...this.pending.keys()]; }

  /** The path a record is kept under (one record per path). */
  protected abstract key(r: R): string;
  /** Sends what queued picks (the uids it carries), then confirms or fails each. */
  protected abstract sendQueued(): void;
  protected abstract send(uids: Map<string, string>): Promise<void>;
  /** A refused record (already counted in failures) leaves pending: what goes with it, the log line. */
  protected abstract drop(path: string, rec: R, error: string, attempts: number): void;
  /** Whether a waiter wants the next send at once (asked when a send ends). */
  protected abstract waiting(): boolean;
  /** The records a folder's fsync waits for and reports the refusals of. */
  protected abstract ofDir(dir: string): (k: string) => boolean;
  /** What waiters ask for (match; 'all': a flush) before the queue is kicked for them. */
  protected want(_match: ((k: string) => boolean) | 'all'): void {}
  /** A record left pending, confirmed: what the subclass keeps beside it goes too. */
  protected forget(_path: string, _rec: R): void {}
  /** Whether the record at key k is at, above or below path (settle waits for those). */
  protected related(k: string, path: string): boolean {
    return k === path || isUnder(k, path) || isUnder(path, k);
  }

  /** Whether the record at key k is at or below path. */
  protected within(k: string, path: string): boolean {
    return k === path || isUnder(k, path);
  }

  /** The records an earlier run left: sent at once. */
  protected replay(records: Iterable<R>): void {
    for (const r of records) this.enqueue(r);
    if (this.pending.size > 0) {
      this.ctx.log.info(`replaying ${this.pending.size} pending ${this.terms.op}(s) from the journal`);
      this.kick(0);
    }
  }

  /** Queues rec, whose journal record `written` is on its way; resolves when it is durable. */
  protected async queue(rec: R, written: Promise<void>): Promise<void> {
    this.failures.delete(this.key(rec));
    this.enqueue(rec);
    this.kick();
    await written;
  }

  protected setPending(k: string, r: R): void {
    setIndexed(this.pending as Map<string, R>, this.pendingPaths, k, r);
  }

  protected deletePending(k: string): void {
    deleteIndexed(this.pending as Map<string, R>, this.pendingPaths, k);
  }

  /** The pending keys below path (not path itself). */
  protected pendingBelow(path: string): string[] {
    return this.pendingPaths.under(path).filter((k) => k !== path);
  }

  /** The pending keys directly in folder dir. */
  protected pendingIn(dir: string): string[] {
    return this.pendingPaths.childKeys(dir);
  }

  protected enqueue(r: R): void {
    this.setPending(this.key(r), r);
    if (this.queued.size === 0) this.firstQueuedAt = Date.now();
    this.queued.add(this.key(r));
  }

  /**
   * Waits (bounded by opTimeoutMs) until no record at, above or below any of paths is pending
   * (atOrBelow: at or below only): a namespace change that reaches the server at once goes after them.
   */
  async settle(paths: string[], atOrBelow = false): Promise<void> {
    if (this.pending.size === 0) return;
    const touches = (k: string) => paths.some((p) => atOrBelow ? this.within(k, p) : this.related(k, p));
    await this.settleWhere(`${this.terms.waitingFor} of ${paths.join(', ')}`, touches);
  }

  /** Waits (bounded; `what` names the wait in its timeout) until no pending record matches; at once if none does. */
  protected async settleWhere(what: string, match: (k: string) => boolean): Promise<void> {
    if (![...this.pending.keys()].some(match)) return;
    await this.ctx.within(what, this.whenSent(match));
  }

  protected async whenSent(match: (k: string) => boolean): Promise<void> {
    this.want(match);
    this.kick(0);
    while (this.busy && [...this.pending.keys()].some(match)) {
      await new Promise<void>((r) => this.idleWaiters.push(r));
    }
  }

  /**
   * Sends everything pending now and waits, giving each record `uploadAttempts` tries (a flush
   * must end even when the server is gone). Returns the records still pending, with their errors.
   */
  async flush(): Promise<UploadFailure[]> {
    for (let round = 0; this.pending.size > 0 && round < this.ctx.opts.uploadAttempts && !this.ctx.closed; round++) {
      if (this.retryAt > Date.now()) await new Promise((r) => setTimeout(r, this.retryAt - Date.now()));
      this.want('all');
      this.kick(0);
      const before = this.sends;
      while (this.pending.size > 0 && this.sends === before && this.busy) await new Promise<void>((r) => this.idleWaiters.push(r));
    }
    return this.stillPending();
  }

  /**
   * fsync of a folder: waits (bounded) until its records (`ofDir`) reached the server, then fails
   * once (EIO) for each refused since the last fsync of the folder.
   */
  async syncDir(dir: string): Promise<void> {
    const mine = this.ofDir(dir);
    await this.settleWhere(`${this.terms.waitingFor} in ${dir}`, mine);
    for (const [p, f] of this.failures) {
      if (!mine(p) || this.pending.has(p) || this.reported.has(f)) continue;
      this.reported.add(f);
      throw new TransferFailed(`${this.terms.op} of ${p} refused by the server: ${f.error}`, { path: p });
    }
  }

  stillPending(): UploadFailure[] {
    return this.paths().map((p) => this.failures.get(p) ?? { path: p, op: this.terms.op, error: this.terms.notYet, attempts: 0, atMs: Date.now() });
  }

  shutdown(): Promise<unknown> {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    return Promise.all([...this.inFlight].map((s) => s.p));
  }

  /** Starts the batch timer (or sends at once with delay 0). */
  protected kick(delay?: number): void {
    if (this.queued.size === 0 || this.ctx.closed) return;
    const now = Date.now();
    let wait = delay ?? Math.min(this.ctx.opts[this.terms.idleMs], Math.max(0, this.firstQueuedAt + this.ctx.opts[this.terms.maxDelayMs] - now));
    if (this.retryAt > now) wait = Math.max(wait, this.retryAt - now);
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => { this.timer = null; this.sendQueued(); }, wait);
  }

  protected wakeWaiters(): void {
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const r of w) r();
  }

  /** Sends uids (taken off `queued` by the caller); when it ends, what was queued meanwhile goes. */
  protected launch(uids: Map<string, string>): void {
    const s: Sent = { uids, p: Promise.resolve() };
    s.p = this.send(uids).finally(() => {
      this.inFlight.delete(s);
      this.sends++;
      // someone waits, or a retry: after its backoff, not after another collecting window
      const hurry = this.waiting() || this.retryAt > 0;
      this.wakeWaiters();
      if (this.queued.size > 0) this.kick(hurry ? 0 : undefined);
    });
    this.inFlight.add(s);
  }

  /** The journal record of a record that left pending is done (a failure to write it is logged). */
  protected done(uid: string): void {
    this.journal.done(uid).catch((e) => this.ctx.log.warn(`journal: ${errText(e)}`));
  }

  protected confirmed(path: string, uid: string): void {
    this.retryAt = 0;
    this.failures.delete(path);
    const cur = this.pending.get(path);
    if (cur?.uid !== uid) return;
    this.deletePending(path);
    this.forget(path, cur);
    this.done(uid);
    this.ports.confirmed(path, cur);
  }

  protected failed(paths: string[], uids: Map<string, string>, err: unknown): void {
    const retryable = isRemoteError(err) ? err.retryable : true;
    const error = errText(err);
    for (const p of paths) {
      const cur = this.pending.get(p);
      if (!cur || cur.uid !== uids.get(p)) continue;
      const attempts = (this.failures.get(p)?.attempts ?? 0) + 1;
      this.failures.set(p, { path: p, op: this.terms.op, error, attempts, atMs: Date.now() });
      if (retryable) {
        this.queued.add(p);
        continue;
      }
      this.drop(p, cur, error, attempts);
      this.ports.refused(p, cur);
    }
    if (retryable) {
      const n = Math.max(1, ...paths.map((p) => this.failures.get(p)?.attempts ?? 1));
      const delay = backoffDelay(n, this.ctx.opts.uploadBackoffMs, RETRY_MAX_MS, 'spread');
      this.retryAt = Date.now() + delay;
      this.ctx.log.warn(`${this.terms.op} of ${paths.length === 1 ? paths[0] : `${paths.length} ${this.terms.many}`} failed (attempt ${n}), retrying in ${Math.round(delay)} ms: ${error}`);
    }
  }
}
