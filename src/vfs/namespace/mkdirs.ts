// Mkdir write-back, for services that make folders in batches (`Remote.batchMkdir`, Maxxo: one
// rsync run for many folders, where each mkdir alone cost a run of ~200 ms). mkdir answers once
// its `m` record is in the journal; the server hears of it here, coalesced: the queue collects
// mkdirs while they keep coming (mkdirIdleMs since the last, at most mkdirMaxDelayMs since the
// first) and sends them as one call, parents first.
//
// Owns: the mkdirs not yet confirmed (`pending`, path -> record, mirrored by the journal's `m`
// records; insertion order: a parent before its children), the batch timer, the one send in
// flight, the mkdir failures. Ordering rules:
// - A pending folder exists for lookups and listings (`entry`, `childrenOf`: the facade's local
//   view and MetaCache's listing overlay), and its own listing is empty without asking the server.
// - One send at a time: a folder queued while its parent is on its way goes in the next call,
//   which the service can then make below the parent.
// - An upload into a pending folder does not wait for it: the service makes the missing parents
//   of an upload (Maxxo: --mkpath, or implied by --files-from), so the upload carries its folders
//   in its own rsync run; `covering` only marks the pending folders above it as `carried` (the
//   server may have them now), and the record stays until the batch confirms it (finding the
//   folder there costs the filesize request alone, no rsync run). The uploader skips its check
//   for a parent deleted by another client on such folders (`pendingFolder`).
// - A rename that reaches the server `settle`s the mkdirs at, above or below its paths first (the
//   server needs the target's parent, and a moved folder must not be made again at its old name
//   afterwards).
// - rmdir of a folder not sent yet and not carried cancels both (`cancel`: the record is done,
//   nothing is sent); one carried is dropped too, but deleted like any folder (deletes.ts; not
//   there counts as deleted); one on its way is waited for, then deleted.
// - A folder the server already has counts as made (a replay after a crash that came after the
//   server made it, or another client). A refusal (a file in the way, a parent gone, a name the
//   service refuses) drops the record and the folders below it, the folder disappears from the
//   drive, and it is reported: log, status failures (`op: 'mkdir'`), fsync of its parent folder,
//   the flush result (unmount). A transient failure is retried with backoff and stays in the
//   journal for the next mount if the unmount's flush used up its attempts.
import { randomUUID } from 'node:crypto';
import { TransferFailed, isRemoteError } from '../../errors.js';
import { Priority, type BatchMkdir, type RemoteEntry } from '../../remote/types.js';
import { backoffDelay } from '../../util/backoff.js';
import type { UploadFailure } from '../api.js';
import { errText, type Ctx } from '../context.js';
import type { PendingMkdir } from '../journal.js';
import { baseOf, isUnder, parentOf } from '../paths.js';

/** The journal as the mkdir queue uses it. */
export interface MkdirJournal {
  readonly mkdirs: Map<string, PendingMkdir>;
  mkdirRec(m: PendingMkdir): Promise<void>;
  done(uid: string): Promise<void>;
}

const RETRY_MAX_MS = 30_000;

const depth = (p: string) => p.split('/').length;

export class MkdirQueue {
  private readonly pending = new Map<string, PendingMkdir>();
  /** Of those, the paths not sent yet. */
  private readonly queued = new Set<string>();
  /** Pending folders an upload below may have made (see the top of this file). */
  private readonly carried = new Set<string>();
  /** The send in flight and the uids it carries. */
  private sending: { uids: Map<string, string>; p: Promise<void> } | null = null;
  readonly failures = new Map<string, UploadFailure>();
  /** Refusals a folder's fsync already failed for. */
  private readonly reported = new WeakSet<UploadFailure>();
  private timer: NodeJS.Timeout | null = null;
  private firstQueuedAt = 0;
  private sends = 0;
  private retryAt = 0;
  private idleWaiters: (() => void)[] = [];
  /**
   * What waiters need now (a rename's folders, an fsync's): the next send takes only those (with
   * their pending parents), the rest keeps its window. `all`: a flush, everything.
   */
  private urgent: ((k: string) => boolean)[] = [];
  private urgentAll = false;

  constructor(private readonly ctx: Ctx, private readonly journal: MkdirJournal, private readonly batch: BatchMkdir,
    private readonly ports: { confirmed(path: string): void; refused(path: string): void }) {}

  get size(): number { return this.pending.size; }

  private get busy(): boolean { return this.queued.size > 0 || this.sending !== null || this.timer !== null; }

  paths(): string[] { return [...this.pending.keys()]; }

  /** The entry of a pending folder (the drive shows it before the server has it). */
  entry(path: string): RemoteEntry | undefined {
    if (this.pending.size === 0) return undefined;
    const m = this.pending.get(path);
    return m && { name: baseOf(path), type: 'dir', size: 0, ...(m.atMs !== undefined ? { mtimeMs: m.atMs } : {}) };
  }

  /** Whether dir or a folder below it is pending (a folder's time waits for them). */
  atOrBelow(dir: string): boolean {
    if (this.pending.size === 0) return false;
    for (const k of this.pending.keys()) if (k === dir || isUnder(k, dir)) return true;
    return false;
  }

  /** The pending folders directly in dir. */
  childrenOf(dir: string): RemoteEntry[] {
    const out: RemoteEntry[] = [];
    if (this.pending.size === 0) return out;
    for (const p of this.pending.keys()) if (parentOf(p) === dir) out.push(this.entry(p)!);
    return out;
  }

  /** Throws at once for a name the service would refuse (the program's error, not a later one). */
  check(path: string): void {
    this.batch.check(path);
  }

  /** The records an earlier run left: sent at once. */
  restore(): void {
    for (const m of this.journal.mkdirs.values()) this.enqueue(m);
    if (this.pending.size > 0) {
      this.ctx.log.info(`replaying ${this.pending.size} pending mkdir(s) from the journal`);
      this.kick(0);
    }
  }

  /** Records the mkdir of path (durable in the journal when this resolves) and queues it. */
  async add(path: string): Promise<void> {
    const m: PendingMkdir = { uid: randomUUID(), path, atMs: Date.now() };
    const rec = this.journal.mkdirRec(m);
    this.failures.delete(path);
    this.enqueue(m);
    this.kick();
    await rec;
  }

  private enqueue(m: PendingMkdir): void {
    this.pending.set(m.path, m);
    if (this.queued.size === 0) this.firstQueuedAt = Date.now();
    this.queued.add(m.path);
  }

  /**
   * rmdir of path: a mkdir not sent yet is cancelled (true: nothing to tell the server; false
   * when an upload may have carried it there: the caller deletes it). One on its way is waited
   * for (false: the folder may be on the server now).
   */
  async cancel(path: string): Promise<boolean> {
    const m = this.pending.get(path);
    if (!m) return false;
    if (this.sending?.uids.get(path) === m.uid) {
      await this.settle([path]);
      return false;
    }
    const carried = this.carried.delete(path);
    this.pending.delete(path);
    this.queued.delete(path);
    this.failures.delete(path);
    await this.journal.done(m.uid);
    if (this.pending.size === 0) this.wakeWaiters();
    return !carried;
  }

  /**
   * An upload (or metadata send) of path is about to go: it waits for nothing here, but the
   * pending folders above it may be on the server once it went (it makes missing parents).
   */
  covering(path: string): Promise<void> | undefined {
    if (this.pending.size === 0) return undefined;
    for (let p = parentOf(path); p !== '/'; p = parentOf(p)) if (this.pending.has(p)) this.carried.add(p);
    return undefined;
  }

  /** Waits (bounded by opTimeoutMs) until no mkdir at, above or below any of paths is pending. */
  async settle(paths: string[]): Promise<void> {
    if (this.pending.size === 0) return;
    const touches = (k: string) => paths.some((p) => k === p || isUnder(k, p) || isUnder(p, k));
    if (![...this.pending.keys()].some(touches)) return;
    await this.ctx.within(`making the pending folders of ${paths.join(', ')}`, this.whenSent(touches));
  }

  private async whenSent(match: (k: string) => boolean): Promise<void> {
    this.urgent.push(match);
    this.kick(0);
    while (this.busy && [...this.pending.keys()].some(match)) {
      await new Promise<void>((r) => this.idleWaiters.push(r));
    }
  }

  /** Sends everything pending now and waits, `uploadAttempts` rounds at most. */
  async flush(): Promise<UploadFailure[]> {
    for (let round = 0; this.pending.size > 0 && round < this.ctx.opts.uploadAttempts && !this.ctx.closed; round++) {
      if (this.retryAt > Date.now()) await new Promise((r) => setTimeout(r, this.retryAt - Date.now()));
      this.urgentAll = true;
      this.kick(0);
      const before = this.sends;
      while (this.pending.size > 0 && this.sends === before && this.busy) await new Promise<void>((r) => this.idleWaiters.push(r));
    }
    return this.stillPending();
  }

  /**
   * fsync of a folder: waits (bounded) until the folder itself and the folders made in it reached
   * the server, then fails once (EIO) for each refused since the last fsync of the folder.
   */
  async syncDir(dir: string): Promise<void> {
    const mine = (k: string) => k === dir || parentOf(k) === dir;
    if ([...this.pending.keys()].some(mine)) {
      await this.ctx.within(`making the pending folders in ${dir}`, this.whenSent(mine));
    }
    for (const [p, f] of this.failures) {
      if (!mine(p) || this.pending.has(p) || this.reported.has(f)) continue;
      this.reported.add(f);
      throw new TransferFailed(`mkdir of ${p} refused by the server: ${f.error}`, { path: p });
    }
  }

  stillPending(): UploadFailure[] {
    return this.paths().map((p) => this.failures.get(p) ?? { path: p, op: 'mkdir', error: 'not made yet', attempts: 0, atMs: Date.now() });
  }

  shutdown(): Promise<unknown> {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    return this.sending?.p ?? Promise.resolve();
  }

  private kick(delay?: number): void {
    if (this.queued.size === 0 || this.ctx.closed) return;
    // the one in flight sends what is queued when it ends
    if (this.sending) return;
    const now = Date.now();
    let wait = delay ?? Math.min(this.ctx.opts.mkdirIdleMs, Math.max(0, this.firstQueuedAt + this.ctx.opts.mkdirMaxDelayMs - now));
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
    if (this.queued.size === 0 || this.ctx.closed || this.sending) { this.wakeWaiters(); return; }
    let picked = [...this.queued];
    if (!this.urgentAll && this.urgent.length > 0) {
      // what the waiters need, with the parents it needs on the server first
      const need = new Set<string>();
      for (const k of picked) {
        if (!this.urgent.some((m) => m(k))) continue;
        for (let p = k; p !== '/'; p = parentOf(p)) if (this.queued.has(p)) need.add(p);
      }
      picked = [...need];
    }
    this.urgent = [];
    this.urgentAll = false;
    if (picked.length === 0) { this.wakeWaiters(); this.kick(); return; }
    // parents first (a retried parent may have been queued again after its children)
    const paths = picked.sort((a, b) => depth(a) - depth(b));
    const uids = new Map<string, string>();
    for (const p of paths) { uids.set(p, this.pending.get(p)!.uid); this.queued.delete(p); }
    const s = { uids, p: Promise.resolve() };
    s.p = this.send(uids).finally(() => {
      this.sending = null;
      this.sends++;
      // a waiter that came meanwhile, or a retry: after its backoff, not after another window
      // (the waiters this send served are done: what is left keeps its window)
      const hurry = this.urgent.length > 0 || this.urgentAll || this.retryAt > 0;
      this.wakeWaiters();
      if (this.queued.size > 0) this.kick(hurry ? 0 : undefined);
    });
    this.sending = s;
  }

  private async send(uids: Map<string, string>): Promise<void> {
    const paths = [...uids.keys()];
    let res: (unknown | undefined)[];
    try {
      res = await this.ctx.bounded(paths.length === 1 ? `mkdir ${paths[0]}` : `mkdir of ${paths.length} folders`,
        (signal) => this.batch.mkdirMany(paths, { signal, priority: Priority.background }));
    } catch (err) {
      this.failed(paths, uids, err);
      return;
    }
    paths.forEach((p, i) => {
      if (res[i] === undefined) this.confirmed(p, uids.get(p)!);
      else this.failed([p], uids, res[i]);
    });
  }

  private confirmed(path: string, uid: string): void {
    this.retryAt = 0;
    this.failures.delete(path);
    const cur = this.pending.get(path);
    if (cur?.uid !== uid) return;
    this.pending.delete(path);
    this.carried.delete(path);
    this.journal.done(uid).catch((e) => this.ctx.log.warn(`journal: ${errText(e)}`));
    this.ports.confirmed(path);
  }

  private failed(paths: string[], uids: Map<string, string>, err: unknown): void {
    const retryable = isRemoteError(err) ? err.retryable : true;
    const error = errText(err);
    for (const p of paths) {
      const cur = this.pending.get(p);
      if (!cur || cur.uid !== uids.get(p)) continue;
      const attempts = (this.failures.get(p)?.attempts ?? 0) + 1;
      this.failures.set(p, { path: p, op: 'mkdir', error, attempts, atMs: Date.now() });
      if (retryable) {
        this.queued.add(p);
        continue;
      }
      // not made: gone from the drive, with what was to be made below it, and reported
      for (const [k, m] of [...this.pending]) {
        if (k !== p && !isUnder(k, p)) continue;
        this.pending.delete(k);
        this.queued.delete(k);
        this.carried.delete(k);
        if (k !== p) this.failures.set(k, { path: k, op: 'mkdir', error: `its parent ${p} was refused`, attempts, atMs: Date.now() });
        this.journal.done(m.uid).catch((e) => this.ctx.log.warn(`journal: ${errText(e)}`));
      }
      this.ctx.log.error(`mkdir of ${p} refused by the server, the folder is not made: ${error}`);
      this.ports.refused(p);
    }
    if (retryable) {
      const n = Math.max(1, ...paths.map((p) => this.failures.get(p)?.attempts ?? 1));
      const delay = backoffDelay(n, this.ctx.opts.uploadBackoffMs, RETRY_MAX_MS, 'spread');
      this.retryAt = Date.now() + delay;
      this.ctx.log.warn(`mkdir of ${paths.length === 1 ? paths[0] : `${paths.length} folders`} failed (attempt ${n}), retrying in ${Math.round(delay)} ms: ${error}`);
    }
  }
}
