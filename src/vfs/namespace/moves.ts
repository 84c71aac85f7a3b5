// Rename write-back, for files and folders: rename(2) of a file the server holds, or of a folder,
// answers once its `v` record is in the journal; the server hears of it here, later: the queue
// collects renames while they keep coming (moveIdleMs since the last, at most moveMaxDelayMs since
// the first) and sends them in the order they were made, those that share no name (and none below
// another's) side by side. RENAME_NOREPLACE (what `mv` asks where the kernel passes the flag: the
// libfuse 3 backend) is decided on the drive's view of the target; a file another client put there
// meanwhile is not replaced when the move is sent (a refusal, reported).
//
// Owns: the moves not yet confirmed (`pending`, target -> record, mirrored by the journal's `v`
// records; Map order is the order they were made), the latest pending move of each name (`last`:
// whether the drive shows that name or hides it), the batch timer, the one send in flight, the move
// failures; the queue plumbing (window, waiters, flush rounds, retries, refusal reports) is
// coalescing.ts's. Ordering rules:
// - Until the server confirmed, the drive shows the file at `to` (`entry`, `movedInto`: the
//   facade's local view, MetaCache's listing overlay, which also fixes listings fetched from the
//   server meanwhile) and not at `from` (`hides`); reads of `to` not cached yet fetch the server's
//   `from` (`serverPath`). Both hold whether or not the server applied the move already. A folder's
//   move does the same for everything below it: `serverPath` undoes the pending moves newest first
//   (below a moved folder's `to` leads below its `from`), `hides` is true at or below a `from`
//   nothing moved to since; listings and stats below `to` ask the server's old names
//   (Ctx.atServer). While no folder move is pending both answer from `last` (one name each).
// - Whatever reaches the server at `from` or `to` (or below a moved folder's) afterwards waits for
//   the move: uploads and metadata sends park at `covering`; a delete of `to` takes the move back
//   where it can (`withdraw`: the unlink then deletes `from`), else waits for it; rmdir, mkdir and
//   a folder's rename `settle` the moves at, above or below their paths first; an unlink below a
//   moved folder sends its move first (`settleAbove`). Waiters hurry the batch. A folder's rename
//   is made only after the moves, deletes and mkdirs at or below its names were sent (ops.ts): the
//   records made later below its new name name the paths the server has once it is sent.
// - A move goes after the deletes and mkdirs at, above or below its names (`before`, for the whole
//   send: they were all made before it, since a later one settles the move first), after the
//   journal is on the disk (no replay may undo it), and after the earlier moves that share a name
//   with it (or have one at or below one of its names): one send at a time, each in the order made;
//   one that failed holds back those after it that share a name (they go with the next send, after
//   its retry).
// - A chain (a->b, then b->c) folds into one move of the server's file (a->c) while the first is
//   not on its way, replaced nothing on the server and no other move shares a name with them; a
//   chain back to the start moves nothing.
// - The service may refuse to move onto an existing file (vBoxx): the target is then deleted first
//   (rename(2) replaces it), unless the rename was RENAME_NOREPLACE (refused; where the service
//   would replace it, Maxxo, the target is asked for first). A source missing on the server counts
//   as moved when the target is there (a replay after a crash that came after the server moved it)
//   or when an upload of the file is pending at its final name (the target, or where later moves
//   take it: its upload puts the content there; soak seed 140009).
// - A refusal drops the record and those after it that share one of its names (or one below), the
//   drive shows what the server holds again (what is ours below a refused folder move's target goes
//   back below its source: Namespace.moveBack), and it is reported: log, status failures (`op:
//   'move'`), fsync of the target's folder, the flush result. A transient failure is retried with
//   backoff and stays in the journal for the next mount if the unmount's flush used up its
//   attempts.
import { randomUUID } from 'node:crypto';
import { AlreadyExists, IsADirectory, NotADirectory, NotEmpty, isRemoteError } from '../../errors.js';
import { Priority, type RemoteEntry } from '../../remote/types.js';
import type { Ctx } from '../context.js';
import type { MoveRecOpts, PendingMove } from '../journal.js';
import { baseOf, isUnder, parentOf, rebase } from '../paths.js';
import { CoalescingQueue, type QueuePorts } from './coalescing.js';

/** The journal as the move queue uses it. */
export interface MoveJournal {
  readonly moves: Map<string, PendingMove>;
  moveRec(m: PendingMove, o?: MoveRecOpts): Promise<void>;
  done(uid: string): Promise<void>;
  flushed(): Promise<void>;
}

/** What a move needs of the rest of the drive when it is sent. */
export interface MoveSendPorts {
  /** Sends the deletes and mkdirs at, above or below paths first (bounded wait). */
  before(paths: string[]): Promise<void>;
  /** An upload of path is pending: it puts the content there whatever the server holds. */
  contentPending(path: string): boolean;
  /** The service answered m's move with the entry it holds at m.to now (a new revision: vBoxx). */
  landed(m: PendingMove, e: RemoteEntry): void;
}

/** Moves sent side by side within one send (those sharing no name). */
const CONCURRENCY = 4;

/**
 * Moves from to `to` on the server as rename(2) would: the service's conflict answer is decided
 * from fresh answers about the target, and a target rename(2) replaces is deleted first where the
 * service would not replace it. Throws the service's error otherwise (NOT_FOUND included).
 */
async function moveOnServer(ctx: Ctx, from: string, to: string, o: { dir: boolean; noReplace?: boolean; priority: number }): Promise<RemoteEntry | void> {
  const { remote } = ctx;
  const move = () => ctx.bounded(`move ${from} -> ${to}`, (signal) => remote.move(from, to, { signal, priority: o.priority }));
  if (o.noReplace && remote.moveReplaces) {
    // the service would replace it without a word
    if (await ctx.bounded(`stat ${to}`, (signal) => remote.stat(to, { signal, priority: o.priority }))) {
      throw new AlreadyExists('target exists (RENAME_NOREPLACE)', { path: to });
    }
  }
  try {
    return await move();
  } catch (err) {
    // Maxxo explains its refusal by the types it finds (a folder onto any folder is NOT_EMPTY)
    const conflict = isRemoteError(err, 'ALREADY_EXISTS') || isRemoteError(err, 'NOT_EMPTY') ||
      isRemoteError(err, 'IS_A_DIRECTORY') || isRemoteError(err, 'NOT_A_DIRECTORY');
    if (!conflict) throw err;
    const cur = await ctx.bounded(`stat ${to}`, (signal) => remote.stat(to, { signal, priority: o.priority }));
    if (!cur) throw err;
    if (o.noReplace) throw new AlreadyExists('target exists (RENAME_NOREPLACE)', { path: to });
    if (o.dir && cur.type !== 'dir') throw new NotADirectory('target is not a folder', { path: to });
    if (!o.dir && cur.type === 'dir') throw new IsADirectory('target is a folder', { path: to });
    if (cur.type === 'dir') {
      const l = await ctx.bounded(`list ${to}`, (signal) => remote.list(to, { signal, priority: o.priority }));
      if (l.entries.length > 0) throw new NotEmpty('target folder is not empty', { path: to });
    }
    // POSIX rename replaces the target; the service would not, so remove it first
    await ctx.bounded(`remove ${to}`, (signal) => remote.remove([to], { signal, priority: o.priority }));
    return move();
  }
}

/** a is b, or one of them is below the other (a rename of one moves the other, or its place). */
function near(a: string, b: string): boolean {
  return a === b || isUnder(a, b) || isUnder(b, a);
}

/** One of names is near one of m's names. */
function touches(names: Iterable<string>, m: PendingMove): boolean {
  for (const n of names) if (near(n, m.from) || near(n, m.to)) return true;
  return false;
}

export class MoveQueue extends CoalescingQueue<PendingMove, MoveJournal> {
  /** Pending moves of folders: while there are none, every name question is about one name. */
  private dirMoves = 0;
  /**
   * The latest pending move of each name, as its source or target: it decides what the drive shows
   * there (a swap through a temporary name leaves two moves on one name).
   */
  private readonly last = new Map<string, PendingMove>();
  /** The records of the send in flight. */
  private sendingNow = new Set<string>();

  constructor(ctx: Ctx, journal: MoveJournal, private readonly sendPorts: MoveSendPorts, ports: QueuePorts<PendingMove>) {
    super(ctx, journal, ports, {
      op: 'move', many: 'renames', waitingFor: 'sending the pending renames', notYet: 'not renamed on the server yet',
      idleMs: 'moveIdleMs', maxDelayMs: 'moveMaxDelayMs',
    });
  }

  protected key(m: PendingMove): string {
    return m.to;
  }

  /** The records an earlier run left: sent at once. */
  restore(): void {
    for (const m of this.journal.moves.values()) this.noteLast(m);
    this.replay(this.journal.moves.values());
  }

  /** The pending move whose target the drive shows at path. */
  to(path: string): PendingMove | undefined {
    if (this.last.size === 0) return undefined;
    const m = this.last.get(path);
    return m?.to === path ? m : undefined;
  }

  /**
   * Where the server has the file the drive shows at path (path itself unless a move to it is
   * pending): the source of that move, followed back through the earlier moves to that source.
   */
  serverPath(path: string): string {
    if (this.dirMoves > 0) return this.resolve(path) ?? path;
    const m = this.to(path);
    if (!m) return path;
    const list = [...this.pending.values()];
    let at = m.from;
    for (let i = list.indexOf(m) - 1; i >= 0; i--) if (list[i]!.to === at) at = list[i]!.from;
    return at;
  }

  /** Whether path is (or is below) the old name of a pending move (the server may still list it). */
  hides(path: string): boolean {
    if (this.dirMoves > 0) return this.resolve(path) === null;
    return this.last.size > 0 && this.last.get(path)?.from === path;
  }

  /**
   * path through the pending moves back to where the server has it now: the moves undone newest
   * first (a move to path or to a folder above it leads to its source); null when the newest move
   * that decides path took it away (path is, or is below, a source, and nothing moved there since).
   */
  private resolve(path: string): string | null {
    const list = [...this.pending.values()];
    let at = path;
    for (let i = list.length - 1; i >= 0; i--) {
      const m = list[i]!;
      if (at === m.to || (m.dir && isUnder(at, m.to))) at = rebase(at, m.to, m.from);
      else if (at === m.from || (m.dir && isUnder(at, m.from))) return null;
    }
    return at;
  }

  /** What the drive shows at a pending move's target. */
  entry(path: string): RemoteEntry | undefined {
    const m = this.to(path);
    return m && entryOf(m);
  }

  /** The pending moves' targets directly in dir (they replace what a listing says of those names). */
  movedInto(dir: string): RemoteEntry[] {
    const out: RemoteEntry[] = [];
    if (this.pending.size === 0) return out;
    for (const m of this.pending.values()) if (parentOf(m.to) === dir && this.last.get(m.to) === m) out.push(entryOf(m));
    return out;
  }

  /** Whether a move into or out of folder dir (or below it) is pending (it moves dir's time on the server). */
  below(dir: string): boolean {
    for (const m of this.pending.values()) if (isUnder(m.to, dir) || isUnder(m.from, dir)) return true;
    return false;
  }

  /** A pending move of or to path, or of a folder above it: settles when it was sent (sooner than the window). */
  covering(path: string): Promise<void> | undefined {
    if (this.dirMoves === 0) {
      if (!this.last.has(path)) return undefined;
      return this.whenSent((k) => k === path || this.pending.get(k)?.from === path);
    }
    const match = (k: string) => {
      const m = this.pending.get(k);
      return !!m && (k === path || m.from === path || (!!m.dir && (isUnder(path, m.to) || isUnder(path, m.from))));
    };
    if (![...this.pending.keys()].some(match)) return undefined;
    return this.whenSent(match);
  }

  /** Waits (bounded) until the move to path, if any, reached the server. */
  async settleTo(path: string): Promise<void> {
    if (!this.pending.has(path)) return;
    await this.ctx.within(`sending the rename to ${path}`, this.whenSent((k) => k === path));
  }

  /**
   * Waits (bounded) until the moves that put path where the drive shows it (a move to path, or of
   * a folder to above it) reached the server: then the server has it at path.
   */
  async settleInto(path: string): Promise<void> {
    if (this.dirMoves === 0) return this.settleTo(path);
    await this.settleWhere(`sending the renames above ${path}`, (k) => this.into(k, path));
  }

  /** Whether a move that puts path where the drive shows it (to path, or of a folder to above it) is being sent now. */
  sendingInto(path: string): boolean {
    for (const k of this.sendingNow) if (this.into(k, path)) return true;
    return false;
  }

  /** The pending move to k puts path where the drive shows it: k is path, or a folder moved to above it. */
  private into(k: string, path: string): boolean {
    return k === path || (isUnder(path, k) && !!this.pending.get(k)?.dir);
  }

  /**
   * Waits (bounded) until the pending folder moves to or from a folder above path reached the
   * server: a change at path that the server hears of by its name (a delete) goes after them.
   */
  async settleAbove(path: string): Promise<void> {
    if (this.dirMoves === 0) return;
    await this.settleWhere(`sending the folder renames above ${path}`, (k) => {
      const m = this.pending.get(k);
      return !!m?.dir && (isUnder(path, m.to) || isUnder(path, m.from));
    });
  }

  /**
   * A rename of the file the drive shows at `renamed` (the server has it there, or at the source
   * of a pending move to `renamed`) to `to`: durable in the journal when this resolves, which also
   * retargets what is pending at `renamed`. Folds into a pending move to `renamed` where it can.
   */
  add(renamed: string, to: string, e: { size: number; mtimeMs?: number }, replaces: boolean, noReplace = false, dir = false): Promise<void> {
    // one record per target: the caller took back or settled a move onto `to` first
    if (this.pending.has(to)) return Promise.reject(new Error(`a move to ${to} is still pending`));
    const prev = this.to(renamed);
    const fold = prev && this.canFold(prev, to) ? prev : undefined;
    const m: PendingMove = {
      uid: randomUUID(), from: fold ? fold.from : renamed, to, size: dir ? 0 : e.size, atMs: Date.now(), ...(dir ? { dir: true } : {}),
      ...(e.mtimeMs !== undefined ? { mtimeMs: e.mtimeMs } : {}), ...(replaces ? { replaces: true } : {}),
      ...(noReplace ? { noReplace: true } : {}),
    };
    if (fold) this.take(fold);
    const written = this.journal.moveRec(m, { renamed, ...(fold ? { replaces: fold.uid } : {}) });
    // (who waited for the folded move waits for this one, or for nothing)
    if (fold) this.wakeWaiters();
    // a chain back to the start: nothing to move (the record says so to a replay)
    if (m.from === m.to) return written;
    this.noteLast(m);
    return this.queue(m, written);
  }

  /**
   * The target of a pending move is deleted or replaced before the move was sent: the move is taken
   * back (the caller deletes the server's file instead, with `uid`) when it is not on its way,
   * shares no name with another pending move, and `free(from)` says nothing else of ours is
   * pending at its old name. Else undefined: the caller waits for it (settleTo).
   */
  withdraw(path: string, free: (from: string) => boolean): PendingMove | undefined {
    const m = this.pending.get(path);
    if (!m || m.dir || this.sendingNow.has(path) || !free(m.from) || this.entangled(m, [m.from, m.to])) return undefined;
    this.take(m);
    return m;
  }

  /** Nothing else pending shares a name with prev, nor the new target; prev is not on its way and replaced nothing. */
  private canFold(prev: PendingMove, to: string): boolean {
    return !this.sendingNow.has(prev.to) && !prev.replaces && !this.entangled(prev, [prev.from, prev.to, to]);
  }

  /**
   * Another pending move than m has one of names, or a name at or below one, as its source or
   * target (with files alone only the same names meet: a name moved away is settled before a
   * folder is made there).
   */
  private entangled(m: PendingMove, names: string[]): boolean {
    for (const o of this.pending.values()) if (o !== m && touches(names, o)) return true;
    return false;
  }

  /** m leaves the queue (folded or withdrawn; the journal record that says so is the caller's). */
  private take(m: PendingMove): void {
    this.remove(m);
    this.failures.delete(m.to);
  }

  private remove(m: PendingMove): void {
    this.deletePending(m.to);
    this.queued.delete(m.to);
    this.forget(m.to, m);
  }

  private noteLast(m: PendingMove): void {
    this.last.set(m.from, m);
    this.last.set(m.to, m);
    if (m.dir) this.dirMoves++;
  }

  protected forget(_path: string, m: PendingMove): void {
    if (m.dir) this.dirMoves--;
    for (const name of [m.from, m.to]) {
      if (this.last.get(name) !== m) continue;
      this.last.delete(name);
      // an earlier move of the name decides again
      for (const o of [...this.pending.values()].reverse()) if (o.from === name || o.to === name) { this.last.set(name, o); break; }
    }
  }

  protected related(k: string, path: string): boolean {
    const m = this.pending.get(k);
    return super.related(k, path) || (!!m && super.related(m.from, path));
  }

  protected within(k: string, path: string): boolean {
    const m = this.pending.get(k);
    return super.within(k, path) || (!!m && super.within(m.from, path));
  }

  /** fsync of a folder waits for the moves into and out of it. */
  protected ofDir(dir: string): (k: string) => boolean {
    return (k) => parentOf(k) === dir || parentOf(this.pending.get(k)?.from ?? k) === dir;
  }

  protected waiting(): boolean {
    return this.idleWaiters.length > 0;
  }

  protected kick(delay?: number): void {
    // the one in flight sends what is queued when it ends
    if (this.inFlight.size > 0) return;
    super.kick(delay);
  }

  /** Everything queued goes, in the order made (pending's order; a retried one keeps its place). */
  protected sendQueued(): void {
    if (this.queued.size === 0 || this.ctx.closed || this.inFlight.size > 0) { this.wakeWaiters(); return; }
    const uids = new Map<string, string>();
    for (const [k, m] of this.pending) if (this.queued.has(k)) { uids.set(k, m.uid); this.queued.delete(k); }
    this.launch(uids);
  }

  protected async send(uids: Map<string, string>): Promise<void> {
    const all = [...uids.keys()];
    this.sendingNow = new Set(all);
    try {
      // no replay may undo what the server applied (the retargets of the renames are in the journal too)
      await this.journal.flushed();
      // the deletes and mkdirs at their names were all made before them (a later one settles the
      // move first, so waiting for them here never waits for what waits for this send)
      const names = new Set<string>();
      for (const k of all) { const m = this.pending.get(k); if (m) { names.add(m.from); names.add(m.to); } }
      await this.sendPorts.before([...names]);
    } catch (err) {
      this.sendingNow = new Set();
      this.failed(all, uids, err);
      return;
    }
    // names of moves of this send that did not land: a later one sharing one goes with the next send
    const held = new Set<string>();
    for (let i = 0; i < all.length;) {
      const wave: PendingMove[] = [];
      const used = new Set<string>();
      for (; i < all.length && wave.length < CONCURRENCY; i++) {
        const m = this.pending.get(all[i]!);
        if (!m || m.uid !== uids.get(all[i]!)) continue;
        if (touches(held, m)) {
          held.add(m.from); held.add(m.to);
          this.queued.add(m.to);
          continue;
        }
        // an earlier move of this wave shares a name (or a folder moved above one): this one starts the next wave
        if (touches(used, m)) break;
        used.add(m.from); used.add(m.to);
        wave.push(m);
      }
      await Promise.all(wave.map(async (m) => {
        try {
          const e = await this.moveOne(m);
          this.confirmed(m.to, m.uid);
          if (e) this.sendPorts.landed(m, e);
        } catch (err) {
          held.add(m.from); held.add(m.to);
          this.failed([m.to], uids, err);
        }
      }));
    }
    this.sendingNow = new Set();
  }

  private async moveOne(m: PendingMove): Promise<RemoteEntry | void> {
    try {
      return await moveOnServer(this.ctx, m.from, m.to, { dir: !!m.dir, noReplace: !!m.noReplace, priority: Priority.background });
    } catch (err) {
      if (!isRemoteError(err, 'NOT_FOUND')) throw err;
      // the source is not there: moved already (a replay), or its content never got there
      const st = (p: string) => this.ctx.bounded(`stat ${p}`, (signal) => this.ctx.remote.stat(p, { signal, priority: Priority.background }));
      const [a, b] = await Promise.all([st(m.from), st(m.to)]);
      if (!a && m.dir && b?.type === 'dir') return;
      if (m.dir) throw err;
      if (!a && b?.type === 'file' && b.size === m.size) return;
      // (the upload goes to where the later renames of the file took it: what this move would have
      // replaced at `to` is moved on or replaced by them)
      if (!a && this.sendPorts.contentPending(this.finalName(m))) return;
      throw err;
    }
  }

  /** Where the file m moves ends, after the renames of it made later. */
  private finalName(m: PendingMove): string {
    let at = m.to;
    let later = false;
    for (const r of this.pending.values()) {
      if (r === m) later = true;
      else if (later && r.from === at) at = r.to;
    }
    return at;
  }

  /**
   * The server keeps the file at `from`: the record goes, with those after it that share one of
   * its names (they were made on top of it), and the drive shows what the server holds again.
   */
  protected drop(path: string, rec: PendingMove, error: string, attempts: number): void {
    this.remove(rec);
    this.done(rec.uid);
    this.ctx.log.error(`rename of ${rec.from} to ${rec.to} refused by the server, the server keeps it at ${rec.from}: ${error}`);
    const names = new Set([rec.from, rec.to]);
    const dropped: PendingMove[] = [];
    for (const m of [...this.pending.values()]) {
      if (!touches(names, m)) continue;
      names.add(m.from); names.add(m.to);
      this.remove(m);
      this.done(m.uid);
      this.failures.set(m.to, { path: m.to, op: 'move', error: `an earlier rename it depends on (${path}) was refused`, attempts, atMs: Date.now() });
      dropped.push(m);
    }
    // undone newest first (what is ours follows a chain back to where the server keeps it; the
    // refused one itself comes last, from the caller)
    for (const m of dropped.reverse()) this.ports.refused(m.to, m);
  }
}

function entryOf(m: PendingMove): RemoteEntry {
  return { name: baseOf(m.to), type: m.dir ? 'dir' : 'file', size: m.size, ...(m.mtimeMs !== undefined ? { mtimeMs: m.mtimeMs } : {}) };
}
