// Write-back of metadata alone: a utimens or chmod of a file whose service keeps times or modes
// (remote.fileMeta: mtimes, modeBits) is a journalled operation like an upload. The change is
// durable in the journal (an `a` record, one per path, newer changes merged in) before the call
// returns; it reaches the server after the write-back delay, survives a crash (replayed at
// start), and is cancelled or renamed with its path.
//
// Owns: the per-path send state (timer, task in flight, failure). The pending changes themselves
// are the journal's (`Journal.attrs`): nothing here outlives a crash that the journal does not.
//
// Ordering rules:
// - Content first: while the path's content has an upload pending or unclosed writes, nothing is
//   sent; the content upload carries the newest times and mode itself (Uploader, attrsNow), and
//   its confirmation completes this record when it carried what the record asks (sent()).
// - One request per path at a time: a content upload of the path waits for a metadata send in
//   flight (idle()), since on vBoxx both are a files_put and the older bytes must not land last.
// - Namespace changes stop us like uploads (stop()): timers cleared, a task that sent nothing
//   aborted, a send in flight waited for (bounded); a task waits at the barriers before it sends.
// - A completed send finishes its own record only (uid): a change made meanwhile stays pending.
// - A folder's times (remote.fileMeta.folderTimes) go after the pending changes below it: on the
//   server each upload, delete or mkdir inside moves the folder's mtime, so one sent before them
//   would be lost (rsync -a sets a folder's times after its files; a second run would re-send them).
import { randomUUID } from 'node:crypto';
import { isRemoteError } from '../../errors.js';
import { Priority, type AttrChange, type RemoteEntry } from '../../remote/types.js';
import { backoffDelay } from '../../util/backoff.js';
import { sleep } from '../../util/sleep.js';
import type { UploadFailure } from '../api.js';
import { CLOSING, MUTATION, errText, type Ctx } from '../context.js';
import type { Obj } from '../content/obj.js';
import type { PendingAttrs } from '../journal.js';
import type { BarrierGate } from '../namespace/barriers.js';
import { isUnder, rebase, rekeyMap } from '../paths.js';

/** After the attempts of a send are used up with a transient error, it is tried again this much later. */
const RETRY_LATER_MS = 60_000;

export interface AttrJournal {
  readonly attrs: Map<string, PendingAttrs>;
  /** The paths of attrs at or under path (without a walk of all of them). */
  attrsUnder(path: string): string[];
  setAttrs(uid: string, path: string, change: AttrChange): Promise<void>;
  done(uid: string): Promise<void>;
}

export interface AttrPorts {
  /** The content object of path, if cached. */
  obj(path: string): Obj | undefined;
  /** Where o's bytes are. */
  file(o: Obj): string;
  /** A fresh file name in the cache folder for a download the service needs (attrsNeedContent). */
  scratch(): string;
  /** The server now holds entry at path. */
  landed(path: string, e: RemoteEntry, o: Obj | undefined): void;
  /**
   * The times/mode path shows now, as they would be sent (a write after a utimens replaced its
   * mtime by the write's time: the record's older value must not be sent after it).
   */
  wanted(path: string, o: Obj | undefined): AttrChange;
  /** Whether a change below folder dir is still to reach the server. */
  busyBelow(dir: string): boolean;
}

interface Task {
  timer: NodeJS.Timeout | null;
  running: Promise<void> | null;
  abort: AbortController | null;
  sending: boolean;
  stopGen: number;
}

/** o's content has changes not yet on the server (pending, unclosed, or being uploaded). */
export function contentUnsent(o: Obj): boolean {
  return o.wb.pendingUid !== null || o.gen !== o.wb.journaledGen || !!o.wb.uploading;
}

/** Same time as far as a service of this resolution can tell. */
export function sameTime(a: number | undefined, b: number | undefined, resMs: number): boolean {
  if (a === undefined || b === undefined) return a === b;
  return Math.floor(a / resMs) === Math.floor(b / resMs);
}

export class AttrWriter {
  readonly failures = new Map<string, UploadFailure>();
  private readonly tasks = new Map<string, Task>();
  /**
   * Pending records known to be of folders (the service is told, so that a file another client
   * put in a folder's place keeps its time). Not journalled: a replayed record goes without.
   */
  private readonly folders = new Set<string>();

  constructor(
    private readonly ctx: Ctx,
    private readonly journal: AttrJournal,
    private readonly ports: AttrPorts,
    private readonly gate: BarrierGate,
  ) {}

  private get res(): number { return this.ctx.remote.fileMeta?.mtimeResolutionMs ?? 1; }

  /** What of a change the service can hold (the rest stays local: see AttrTable). */
  held(change: AttrChange): AttrChange {
    const c = this.ctx.remote.fileMeta;
    const out: AttrChange = {};
    if (!c) return out;
    if (change.mtimeMs !== undefined) out.mtimeMs = change.mtimeMs;
    if (c.modeBits && change.mode !== undefined) out.mode = change.mode & c.modeBits;
    return out;
  }

  /** utimens/chmod of a file: durable in the journal, then sent after the write-back delay. */
  async record(path: string, change: AttrChange, folder = false): Promise<void> {
    const h = this.held(change);
    if (h.mtimeMs === undefined && h.mode === undefined) return;
    if (folder) this.folders.add(path);
    await this.journal.setAttrs(randomUUID(), path, h);
    this.schedule(path, this.ctx.opts.writebackDelayMs);
  }

  /**
   * Our own change inside folder dir moved its time (AttrTable.dirChanged), on a service that keeps
   * folder times: sent like a utimens of the folder, after the changes below it (busyBelow). Each
   * move is a new record (merged into the pending one), so a send already in flight with an older
   * time does not complete it. Not waited for: the record goes with the change's own journal writes.
   * A pending record with a time the service cannot tell from this one (the same second on Maxxo)
   * stands for it: what is sent is the time the folder shows then (wanted), and a send of the
   * record lands that same service time. A burst of creates in one folder writes one record a second.
   */
  implied(dir: string, mtimeMs: number): void {
    this.folders.add(dir);
    const rec = this.journal.attrs.get(dir);
    if (!rec || !sameTime(rec.mtimeMs, mtimeMs, this.res)) {
      this.journal.setAttrs(randomUUID(), dir, { mtimeMs }).catch((e) => this.ctx.log.warn(`journal: ${errText(e)}`));
    }
    this.schedule(dir, this.ctx.opts.writebackDelayMs);
  }

  get pending(): number { return this.journal.attrs.size; }

  /** A change of path is pending. */
  has(path: string): boolean { return this.journal.attrs.has(path); }

  /** What to send for rec: the fields it names, at the values the path shows now. */
  private change(rec: PendingAttrs, o: Obj | undefined): AttrChange {
    const now = this.ports.wanted(rec.path, o);
    const out: AttrChange = {};
    if (rec.mtimeMs !== undefined) out.mtimeMs = now.mtimeMs ?? rec.mtimeMs;
    if (rec.mode !== undefined) out.mode = now.mode ?? rec.mode;
    return out;
  }

  /** A content upload of path carried these: a pending record asking no more is complete. */
  sent(path: string, carried: AttrChange): void {
    const rec = this.journal.attrs.get(path);
    if (!rec) return;
    const want = this.change(rec, this.ports.obj(path));
    if (want.mtimeMs !== undefined && !sameTime(want.mtimeMs, carried.mtimeMs, this.res)) return;
    if (want.mode !== undefined && want.mode !== carried.mode) return;
    this.journal.done(rec.uid).catch((e) => this.ctx.log.warn(`journal: ${errText(e)}`));
    this.failures.delete(path);
  }

  /** Settles when no metadata send of path is in flight (a content upload goes after it). */
  idle(path: string): Promise<void> | undefined {
    const t = this.tasks.get(path);
    return t?.sending && t.running ? t.running.catch(() => {}) : undefined;
  }

  schedule(path: string, delayMs: number): void {
    if (this.ctx.closed || !this.journal.attrs.has(path)) return;
    const t = this.task(path);
    if (t.timer) clearTimeout(t.timer);
    t.timer = setTimeout(() => {
      t.timer = null;
      this.run(path).catch(() => { /* in failures */ });
    }, delayMs);
  }

  /** Every pending record sent now (flushAll, close); failures stay in the journal. */
  async flush(retryFailed = true): Promise<void> {
    const work: Promise<unknown>[] = [];
    for (const path of [...this.journal.attrs.keys()]) {
      if (!retryFailed && this.failures.has(path)) continue;
      work.push(this.untilDone(path).catch(() => {}));
    }
    await Promise.all(work);
  }

  /**
   * A folder's time waiting for a change below it that failed is not a failure of its own: that
   * change is reported, and the time goes once it lands (or is given up).
   */
  stillPending(): UploadFailure[] {
    return [...this.journal.attrs.keys()].filter((p) => this.failures.has(p) || !this.waitsBelow(p, this.ports.obj(p))).map((p) => this.failures.get(p) ?? { path: p, error: 'metadata change not sent', attempts: 0, atMs: Date.now() });
  }

  private async untilDone(path: string): Promise<void> {
    for (let guard = 0; this.journal.attrs.has(path) && !this.ctx.closed && guard < 20; guard++) {
      const t = this.task(path);
      if (t.timer) { clearTimeout(t.timer); t.timer = null; }
      const o = this.ports.obj(path);
      // the content goes first and carries the times; the caller flushes it beside us
      if (o && (o.wb.pendingUid !== null || o.gen !== o.wb.journaledGen)) {
        if (o.wb.uploading) await o.wb.uploading.catch(() => {});
        else return;
        continue;
      }
      // a folder: what goes below it first. The caller flushed that before: what is still there
      // failed (or came since) and keeps the folder's time pending with it (not a failure of its own)
      if (this.waitsBelow(path, o)) return;
      await this.run(path);
    }
  }

  /**
   * A namespace change of path (tree: and everything under it) comes: timers cleared, a task
   * that sent nothing aborted, one that is sending waited for (never overtaken).
   */
  async stop(path: string, tree: boolean): Promise<void> {
    const waits: Promise<unknown>[] = [];
    for (const [p, t] of this.tasks) {
      if (p !== path && !(tree && isUnder(p, path))) continue;
      if (t.timer) { clearTimeout(t.timer); t.timer = null; }
      t.stopGen++;
      if (!t.running) continue;
      // a task that sent nothing is aborted, or gives up when it sees stopGen (one parked at our
      // own barrier: waiting for it would deadlock); only one that is sending is waited for
      if (t.sending) waits.push(t.running.catch(() => {}));
      else t.abort?.abort(MUTATION);
    }
    if (waits.length) await this.ctx.within(`stopping the metadata change of ${path}`, Promise.all(waits));
  }

  /** After a namespace change: the records now under `to` go after the write-back delay. */
  resume(path: string): void {
    for (const p of this.journal.attrsUnder(path)) this.schedule(p, this.ctx.opts.writebackDelayMs);
  }

  rekey(from: string, to: string): void {
    rekeyMap(this.failures, from, to, (f, nk) => { f.path = nk; });
    const moved = [...this.folders].filter((p) => p === from || isUnder(p, from));
    for (const p of moved) this.folders.delete(p);
    for (const p of moved) this.folders.add(rebase(p, from, to));
    // tasks are not moved: a running one finds no record at its old path and ends; resume() starts anew
  }

  forget(path: string): void {
    this.failures.delete(path);
    for (const p of [...this.folders]) if (p === path || isUnder(p, path)) this.folders.delete(p);
    // a task stop() left idle (its record gone with the path) would stay in the map for good
    for (const [p, t] of this.tasks) if ((p === path || isUnder(p, path)) && !t.timer && !t.running) this.tasks.delete(p);
  }

  shutdown(): Promise<unknown> {
    const settle: Promise<unknown>[] = [];
    for (const t of this.tasks.values()) {
      if (t.timer) { clearTimeout(t.timer); t.timer = null; }
      t.abort?.abort(CLOSING);
      if (t.running) settle.push(t.running.catch(() => {}));
    }
    return Promise.all(settle);
  }

  /** A record without content (a folder's time) whose folder still has changes below it to land first. */
  private waitsBelow(path: string, o: Obj | undefined): boolean {
    return !o && this.ports.busyBelow(path);
  }

  private task(path: string): Task {
    let t = this.tasks.get(path);
    if (!t) { t = { timer: null, running: null, abort: null, sending: false, stopGen: 0 }; this.tasks.set(path, t); }
    return t;
  }

  private run(path: string): Promise<void> {
    const t = this.task(path);
    if (t.running) return t.running;
    const p = this.send(path, t).finally(() => {
      if (t.running === p) t.running = null;
      if (!t.timer && !t.running && !this.journal.attrs.has(path)) this.tasks.delete(path);
    });
    t.running = p;
    return p;
  }

  private async send(path: string, t: Task): Promise<void> {
    const stop = t.stopGen;
    for (let attempts = 1; ; attempts++) {
      while (!this.gate.idle) {
        // Waiting at a pending delete hurries its whole window. A record stopped or gone meanwhile
        // (a folder removed while this was parked at its rmdir's barrier: the folder's delete then
        // covers it), and a folder's time waiting for changes below it, must not do that.
        if (t.stopGen !== stop || !this.journal.attrs.has(path)) break;
        if (this.waitsBelow(path, this.ports.obj(path))) break;
        const b = this.gate.covering(path);
        if (!b) break;
        await b;
      }
      const rec = this.journal.attrs.get(path);
      if (!rec || this.ctx.closed) return;
      // stopped for a namespace change: whoever stopped us resumes what is still pending
      if (t.stopGen !== stop) { this.schedule(path, this.ctx.opts.writebackDelayMs); return; }
      const o = this.ports.obj(path);
      if (o && contentUnsent(o)) {
        // the content upload carries the times; if it fails, we are tried again later
        this.schedule(path, Math.max(this.ctx.opts.writebackDelayMs, 1000));
        return;
      }
      if (o?.unlinked) return;
      if (this.waitsBelow(path, o)) {
        this.schedule(path, Math.max(this.ctx.opts.writebackDelayMs, 1000));
        return;
      }
      const ac = new AbortController();
      t.abort = ac;
      try {
        const whole = o && o.complete && !o.dirty && o.ident ? { localFile: this.ports.file(o), rev: o.ident.rev, written: o.ident.written, serverMtimeMs: o.ident.mtimeMs } : {};
        const meta = this.ctx.remote.fileMeta!;
        const needScratch = meta.attrsNeedContent && !('localFile' in whole);
        t.sending = true;
        const change = this.change(rec, o);
        const e = await meta.setAttrs(path, change, {
          signal: ac.signal, priority: Priority.background, ...whole, ...(needScratch ? { scratch: this.ports.scratch() } : {}),
          ...(this.folders.has(path) ? { folder: true } : {}),
        });
        t.sending = false;
        t.abort = null;
        this.failures.delete(path);
        // gone or changed by another client: its own state stands, our change has nothing to apply
        // to; or written here since: its upload carries the times and mode (AttrTable.toSend)
        if (!e) this.ctx.log.info(`metadata change of ${path} dropped: the file is gone or was changed since (on the server, or here: its upload carries it)`);
        else this.ports.landed(path, e, o);
        if (this.journal.attrs.get(path)?.uid === rec.uid) {
          this.folders.delete(path);
          await this.journal.done(rec.uid);
        }
        // a newer change arrived meanwhile: it goes after its own delay
        if (this.journal.attrs.has(path)) this.schedule(path, this.ctx.opts.writebackDelayMs);
        return;
      } catch (err) {
        t.sending = false;
        t.abort = null;
        if (ac.signal.aborted && (ac.signal.reason === MUTATION || ac.signal.reason === CLOSING)) return;
        const retryable = isRemoteError(err) ? err.retryable : false;
        if (!retryable || attempts >= this.ctx.opts.uploadAttempts) {
          this.failures.set(path, { path, error: errText(err), attempts, atMs: Date.now() });
          this.ctx.log.error(`metadata change of ${path} failed after ${attempts} attempt(s), kept for a later retry: ${errText(err)}`);
          if (retryable) this.schedule(path, RETRY_LATER_MS);
          throw err;
        }
        const delay = backoffDelay(attempts, this.ctx.opts.uploadBackoffMs, 30_000, 'spread');
        const sleeper = new AbortController();
        t.abort = sleeper;
        try { await sleep(delay, sleeper.signal); } catch { return; } finally { t.abort = null; }
      }
    }
  }
}
