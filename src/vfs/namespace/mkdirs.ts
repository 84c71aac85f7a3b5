// Mkdir write-back, for services that make folders in batches (`Remote.batchMkdir`; Maxxo: one
// rsync run for many folders, where each mkdir alone cost a run of ~200 ms; vBoxx: a round trip
// per folder that mkdir, tar x or git clone no longer wait for). mkdir answers once
// its `m` record is in the journal; the server hears of it here, coalesced: the queue collects
// mkdirs while they keep coming (mkdirIdleMs since the last, at most mkdirMaxDelayMs since the
// first) and sends them as one call, parents first.
//
// Owns: the mkdirs not yet confirmed (`pending`, path -> record, mirrored by the journal's `m`
// records; insertion order: a parent before its children), the batch timer, the one send in
// flight, the mkdir failures, the folders carried by uploads; the queue plumbing (window, waiters,
// flush rounds, retries, refusal reports) is coalescing.ts's. Ordering rules:
// - A pending folder exists for lookups and listings (`entry`, `childrenOf`: the facade's local
//   view and MetaCache's listing overlay), and its own listing is empty without asking the server.
// - One send at a time: a folder queued while its parent is on its way goes in the next call,
//   which the service can then make below the parent.
// - An upload into a pending folder does not wait for it: the service makes the missing parents
//   of an upload (Maxxo: --mkpath, or implied by --files-from; vBoxx: files_put), so the upload carries its folders
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
import { Priority, type BatchMkdir, type RemoteEntry } from '../../remote/types.js';
import type { Ctx } from '../context.js';
import type { PendingMkdir } from '../journal.js';
import { baseOf, isUnder, parentOf } from '../paths.js';
import { CoalescingQueue, type QueuePorts } from './coalescing.js';

/** The journal as the mkdir queue uses it. */
export interface MkdirJournal {
  readonly mkdirs: Map<string, PendingMkdir>;
  mkdirRec(m: PendingMkdir): Promise<void>;
  done(uid: string): Promise<void>;
}

const depth = (p: string) => p.split('/').length;

export class MkdirQueue extends CoalescingQueue<PendingMkdir, MkdirJournal> {
  /** Pending folders an upload below may have made (see the top of this file). */
  private readonly carried = new Set<string>();
  /**
   * What waiters need now (a rename's folders, an fsync's): the next send takes only those (with
   * their pending parents), the rest keeps its window. `all`: a flush, everything.
   */
  private urgent: ((k: string) => boolean)[] = [];
  private urgentAll = false;

  constructor(ctx: Ctx, journal: MkdirJournal, private readonly batch: BatchMkdir, ports: QueuePorts<PendingMkdir>) {
    super(ctx, journal, ports, {
      op: 'mkdir', many: 'folders', waitingFor: 'making the pending folders', notYet: 'not made yet',
      idleMs: 'mkdirIdleMs', maxDelayMs: 'mkdirMaxDelayMs',
    });
  }

  /** The entry of a pending folder (the drive shows it before the server has it). */
  entry(path: string): RemoteEntry | undefined {
    if (this.pending.size === 0) return undefined;
    const m = this.pending.get(path);
    return m && { name: baseOf(path), type: 'dir', size: 0, ...(m.atMs !== undefined ? { mtimeMs: m.atMs } : {}) };
  }

  /** Whether dir or a folder below it is pending (a folder's time waits for them). */
  atOrBelow(dir: string): boolean {
    return this.pending.has(dir) || this.pendingBelow(dir).length > 0;
  }

  /** The pending folders directly in dir. */
  childrenOf(dir: string): RemoteEntry[] {
    return this.pendingIn(dir).map((p) => this.entry(p)!);
  }

  /**
   * Waits (bounded) until path and the folders above it are on the server, if any of them is
   * pending: something asked of the server by that path (a share link) needs it there. Folders
   * below it are not waited for (a tar x still making them must not hold a share link of the top).
   */
  async settleMade(path: string): Promise<void> {
    if (this.pending.size === 0) return;
    await this.settleWhere(`making the pending folders of ${path}`, (k) => k === path || isUnder(path, k));
  }

  /** Throws at once for a name the service would refuse (the program's error, not a later one). */
  check(path: string): void {
    this.batch.check(path);
  }

  protected key(r: PendingMkdir): string {
    return r.path;
  }

  /** The records an earlier run left: sent at once. */
  restore(): void {
    this.replay(this.journal.mkdirs.values());
  }

  /** Records the mkdir of path (durable in the journal when this resolves) and queues it. */
  async add(path: string): Promise<void> {
    const m: PendingMkdir = { uid: randomUUID(), path, atMs: Date.now() };
    await this.queue(m, this.journal.mkdirRec(m));
  }

  /** The one send in flight (at most one: see sendQueued). */
  private get sending(): { uids: Map<string, string> } | undefined {
    for (const s of this.inFlight) return s;
    return undefined;
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
    this.deletePending(path);
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

  /** fsync of a folder waits for the folder itself and the folders made in it. */
  protected ofDir(dir: string): (k: string) => boolean {
    return (k) => k === dir || parentOf(k) === dir;
  }

  protected want(match: ((k: string) => boolean) | 'all'): void {
    if (match === 'all') this.urgentAll = true;
    else this.urgent.push(match);
  }

  /**
   * A waiter that came meanwhile hurries what is queued (the waiters this send served are done:
   * what is left keeps its window).
   */
  protected waiting(): boolean {
    return this.urgent.length > 0 || this.urgentAll;
  }

  protected kick(delay?: number): void {
    // the one in flight sends what is queued when it ends
    if (this.sending) return;
    super.kick(delay);
  }

  protected sendQueued(): void {
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
    this.launch(uids);
  }

  protected async send(uids: Map<string, string>): Promise<void> {
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

  protected forget(path: string): void {
    this.carried.delete(path);
  }

  /** Not made: gone from the drive, with what was to be made below it, and reported. */
  protected drop(path: string, _rec: PendingMkdir, error: string, attempts: number): void {
    for (const [k, m] of [...this.pending]) {
      if (k !== path && !isUnder(k, path)) continue;
      this.deletePending(k);
      this.queued.delete(k);
      this.carried.delete(k);
      if (k !== path) this.failures.set(k, { path: k, op: 'mkdir', error: `its parent ${path} was refused`, attempts, atMs: Date.now() });
      this.done(m.uid);
    }
    this.ctx.log.error(`mkdir of ${path} refused by the server, the folder is not made: ${error}`);
  }
}
