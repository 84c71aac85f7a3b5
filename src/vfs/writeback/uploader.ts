// The uploader: the one owner of each content object's write-back state (Obj.wb; the state
// machine is the table in writeback/state.ts and src/vfs/README.md). It records closed content in
// the journal (commit), schedules and runs uploads with retries and backoff, stops them for
// namespace changes, and completes the journal record once the server confirmed.
//
// Owns: Obj.wb of every object, the failure list (path -> last failure), the "is the folder still
// there" answers asked before uploads into a folder. Talks to the rest through small ports: the
// journal (persistence only), the content files (UploaderFiles), the metadata caches
// (UploaderMeta), the namespace barriers (BarrierGate) and the batcher.
//
// Ordering rules:
// - commit: policy check, then (with no write half done: exclusiveIo) the size, generation and
//   bytes are snapshotted together; the data is made durable before (or inside) its journal
//   record; from then on the record is the content to upload.
// - A task waits at namespace barriers before it sends (parked); once sending it is waited for,
//   never aborted (stop()): a delete or rename is never overtaken by an upload of the old name.
// - A confirmed upload completes its own record only (pendingUid === uid): content closed again
//   meanwhile stays pending and goes after its own delay.
// - Failures: retryable ones are retried uploadAttempts times with jittered exponential backoff,
//   then reported (failures, failedUid) and tried again RETRY_LATER_MS later; refusals wait for a
//   new close. A failed upload stays in the journal: never dropped silently.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { BadResponse, Timeout, isRemoteError } from '../../errors.js';
import { Priority, type AttrChange, type RemoteEntry } from '../../remote/types.js';
import { sleep, untilAborted } from '../../util/sleep.js';
import { backoffDelay } from '../../util/backoff.js';
import type { UploadFailure } from '../api.js';
import { CLOSING, MUTATION, errText, type Ctx } from '../context.js';
import { fdatasyncFd, ftruncateFd, readStartSync } from '../content/fileio.js';
import { exclusiveIo, type Obj } from '../content/obj.js';
import type { PendingUpload } from '../journal.js';
import type { BarrierGate } from '../namespace/barriers.js';
import { baseOf, parentOf, rekeyMap } from '../paths.js';
import { UploadBatcher } from './batch.js';

/** Files up to this size are read inline and handed to a remote without batches as bytes (smallContent). */
const UPLOAD_FROM_MEMORY_MAX = 64 * 1024;
/** After an upload finally failed with a transient error, it is tried again this much later. */
const RETRY_LATER_MS = 60_000;
/** How long one "the folder is still there" answer serves the uploads into that folder. */
const PARENT_CHECK_MS = 500;

/** The journal as the uploader uses it: persistence of pending records only. */
export interface UploaderJournal {
  canInline(size: number): boolean;
  upload(p: PendingUpload): Promise<void>;
  done(uid: string): Promise<void>;
  cancel(path: string, durable?: boolean): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  forPath(path: string): PendingUpload | undefined;
}

/** The content side: where an object's bytes are, and its bookkeeping after a task ended. */
export interface UploaderFiles {
  file(o: Obj): string;
  /** o's write-back state changed: whether it overrides the server may have too. */
  markLocal(o: Obj): void;
  /** A task ended on an object nobody has open. */
  afterRelease(o: Obj): void;
}

/** The metadata caches: what an upload changes there. */
export interface UploaderMeta {
  setInParent(path: string, e: RemoteEntry | null): void;
  /** Our listing of dir predates a change on the server. */
  dropListing(dir: string): void;
}

/** The file's metadata that travels with its content (services that keep times or modes). */
export interface UploaderAttrs {
  /** The times and mode to send with o's content now (only what the service keeps). */
  now(o: Obj): AttrChange;
  /** A content upload of path carried these and was confirmed. */
  sent(path: string, carried: AttrChange): void;
  /** Settles when no metadata send of path is in flight (both may be the same kind of request). */
  idle(path: string): Promise<void> | undefined;
}

export class Uploader {
  /** The last failure of each path whose upload used up its budget (status, flush results). */
  readonly failures = new Map<string, UploadFailure>();
  /** Recent answers to "is this folder still on the server?", asked before uploads into it. */
  private readonly parentChecks = new Map<string, { at: number; p: Promise<boolean> }>();
  private readonly batcher: UploadBatcher;

  constructor(
    private readonly ctx: Ctx,
    private readonly journal: UploaderJournal,
    private readonly files: UploaderFiles,
    private readonly meta: UploaderMeta,
    private readonly gate: BarrierGate,
    private readonly attrs?: UploaderAttrs,
  ) {
    this.batcher = new UploadBatcher(ctx);
  }

  // ---------------------------------------------------------------- state changes from outside

  /** A pending record replayed from the journal at start (whether it reached the server is unknown). */
  restore(o: Obj, rec: PendingUpload): void {
    o.wb.attempted = true;
    o.gen = 1; o.wb.journaledGen = 1; o.wb.uploadedGen = 0;
    o.wb.pendingUid = rec.uid;
    // the mtime programs saw before the crash, not the time of the replay
    if (rec.mtimeMs !== undefined) o.localMtime = rec.mtimeMs;
    this.files.markLocal(o);
  }

  /** Never-uploaded content was renamed over a file the server holds (see WriteState.shadowsServer). */
  shadowsServer(o: Obj): void {
    o.wb.shadowsServer = true;
  }

  /** A record that cannot be replayed (its cache file is gone): reported, never silent. */
  lost(p: PendingUpload, why: string): void {
    this.failures.set(p.path, { path: p.path, error: why, attempts: 0, atMs: Date.now() });
  }

  /** The path no longer names o (deleted, replaced): no timer may start a task for it. */
  detached(o: Obj): void {
    if (o.wb.timer) { clearTimeout(o.wb.timer); o.wb.timer = null; }
  }

  // The journal side of namespace changes: the Uploader is the only one that writes the journal,
  // so its records and Obj.wb cannot drift apart.

  /** path is being deleted: its pending record is cancelled, durably, before the server hears of it. */
  cancelPath(path: string, durable = true): Promise<void> {
    return this.journal.cancel(path, durable);
  }

  /** Pending records of `from` (and below it) name `to` now, durably before the server move. */
  retarget(from: string, to: string): Promise<void> {
    return this.journal.rename(from, to);
  }

  /** The pending record of path (a rename that replaces it may have to put it back). */
  pendingRecord(path: string): PendingUpload | undefined {
    return this.journal.forPath(path);
  }

  /** Puts back a record a failed rename had cancelled. */
  putBack(rec: PendingUpload): Promise<void> {
    return this.journal.upload(rec);
  }

  /** The path is gone (unlink): its failure goes too. */
  forget(path: string): void {
    this.failures.delete(path);
  }

  rekey(from: string, to: string): void {
    rekeyMap(this.failures, from, to, (f, nk) => { f.path = nk; });
  }

  /** The drive is closing: timers cleared, tasks that sent nothing aborted; settles when all tasks did. */
  shutdown(objs: Iterable<Obj>): Promise<unknown> {
    this.batcher.stop();
    const settle: Promise<unknown>[] = [];
    for (const o of objs) {
      if (o.wb.timer) { clearTimeout(o.wb.timer); o.wb.timer = null; }
      o.wb.uploadAbort?.abort(CLOSING);
      if (o.wb.uploading) settle.push(o.wb.uploading.catch(() => {}));
    }
    return Promise.all(settle);
  }

  /**
   * Uploads the pending content of objs, each with its retry budget and no more; returns the ones
   * still pending after it, with their last failure. retryFailed false: skip content that already
   * used up its budget.
   */
  async flush(objs: Obj[], retryFailed = true): Promise<void> {
    const work: Promise<unknown>[] = [];
    for (const o of objs) {
      if (o.wb.pendingUid === null || o.unlinked) continue;
      if (!retryFailed && o.wb.failedUid === o.wb.pendingUid) continue;
      work.push(this.uploadUntilClean(o).catch(() => {}));
    }
    await Promise.all(work);
  }

  /** The pending uploads among objs, each with its last failure. */
  stillPending(objs: Iterable<Obj>): UploadFailure[] {
    const kept: UploadFailure[] = [];
    for (const o of objs) {
      if (o.wb.pendingUid === null || o.unlinked) continue;
      kept.push(this.failures.get(o.path) ?? { path: o.path, error: 'not uploaded', attempts: 0, atMs: Date.now() });
    }
    return kept;
  }

  /** After a close (release/flush) or a rename: pending content nobody is uploading goes after the write-back delay. */
  scheduleIfIdle(o: Obj): void {
    if (!o.unlinked && o.wb.pendingUid !== null && !o.wb.timer && !o.wb.uploading) this.schedule(o, this.ctx.opts.writebackDelayMs);
  }

  // ---------------------------------------------------------------- the machine

  /**
   * close()/fsync() of changed content: policy check (so EFBIG/EPERM/EDQUOT reach the program),
   * data made durable, then the durable journal record.
   */
  async commit(o: Obj): Promise<void> {
    if (o.gen === o.wb.journaledGen || o.unlinked) return;
    if (this.ctx.remote.checkUpload) {
      try {
        // from the remote's caches without a wait where it can; else asked, bounded
        if (!this.ctx.remote.checkUploadCached?.(o.path, o.size)) {
          await this.ctx.bounded(`policy check of ${o.path}`, (signal) => this.ctx.remote.checkUpload!(o.path, o.size, { signal, priority: Priority.interactive }));
        }
        o.wb.refused = null;
      } catch (err) {
        if (!isRemoteError(err) || !err.retryable) {
          if (isRemoteError(err)) o.wb.refused = err;
          throw err;
        }
        // the service is unreachable now: keep the content; the upload checks the policy again
        this.ctx.log.warn(`policy check of ${o.path} not possible now (${errText(err)}); checked again before the upload`);
      }
    }
    // The snapshot is taken with no write in flight (other handles may still be appending): the
    // size, generation and bytes recorded belong together.
    let gen = 0;
    let size = 0;
    let record: Promise<void> | undefined;
    await exclusiveIo(o, async () => {
      gen = o.gen;
      size = o.size;
      if (gen === o.wb.journaledGen) return;
      // The size on disk is the size programs saw. A small file's content goes inside its journal
      // record, so its cache file needs no fdatasync; replay restores the cache file from the
      // record. A bigger one is flushed itself, then recorded, so a record on the disk never
      // points at content that is not. Once this returns the content survives a kill -9; a power
      // loss too with sync_close, else once the journal's group commit (within a second) has run
      // (journal.ts).
      if (this.journal.canInline(size)) {
        // Our own cache file (never the mount), a few pages: truncated and read inline, where two
        // threadpool hops cost a create of a small file ~0.1-0.2 ms on a busy machine. The file
        // is at most a failed write's reservation longer than size, so the truncate frees little.
        fs.ftruncateSync(o.fd, size);
        const data = readStartSync(o.fd, size);
        if (data.length < size) throw new BadResponse(`cache file of ${o.path} is shorter than its content`, { path: o.path });
        record = this.recordClose(o, gen, size, data);
      } else {
        // writes start again once the file has the size they extend
        await ftruncateFd(o.fd, size);
        await fdatasyncFd(o.fd);
      }
    }).catch((err) => { record?.catch(() => {}); throw err; });
    await (record ?? this.recordClose(o, gen, size, undefined));
  }

  /** The journal record of closed content: from now on it is the content to upload. */
  private recordClose(o: Obj, gen: number, size: number, data: Buffer | undefined): Promise<void> {
    if (o.unlinked || o.wb.journaledGen >= gen) return Promise.resolve();
    const uid = randomUUID();
    o.wb.pendingUid = uid;
    o.wb.journaledGen = gen;
    this.files.markLocal(o);
    const a = this.attrs?.now(o) ?? {};
    return this.journal.upload({ uid, path: o.path, id: o.id, size, ...(data ? { data } : {}), ...a });
  }

  schedule(o: Obj, delayMs: number): void {
    if (this.ctx.closed || o.unlinked) return;
    if (o.wb.timer) clearTimeout(o.wb.timer);
    o.wb.timer = setTimeout(() => {
      o.wb.timer = null;
      // still being written by someone: the last close schedules again
      if (o.writers > 0 && o.gen !== o.wb.journaledGen) return;
      this.runUpload(o).catch(() => { /* recorded in failures */ });
    }, delayMs);
  }

  /** Uploads until the newest closed content of o is on the server; throws the final failure. */
  async uploadUntilClean(o: Obj): Promise<void> {
    for (let guard = 0; o.wb.pendingUid !== null && !o.unlinked && !this.ctx.closed; guard++) {
      if (o.wb.timer) { clearTimeout(o.wb.timer); o.wb.timer = null; }
      await this.runUpload(o);
      if (guard > 50) throw new Timeout('upload kept being superseded', { path: o.path });
    }
  }

  private runUpload(o: Obj): Promise<void> {
    if (o.wb.uploading) return o.wb.uploading;
    const p = this.doUpload(o).then(() => {
      // closed again while this upload ran: that newer content goes after its own delay
      if (o.wb.uploading === p) o.wb.uploading = null;
      if (o.wb.pendingUid !== null && !o.unlinked && !o.wb.timer && !this.ctx.closed) this.schedule(o, this.ctx.opts.writebackDelayMs);
    }, (err) => {
      // a transient failure (network, server) is tried again later; a refusal waits for a new close
      if (o.wb.uploading === p) o.wb.uploading = null;
      if (isRemoteError(err) && err.retryable && o.wb.pendingUid !== null && !o.unlinked && !o.wb.timer && !this.ctx.closed) {
        this.schedule(o, RETRY_LATER_MS);
      }
      throw err;
    }).finally(() => {
      if (o.wb.uploading === p) o.wb.uploading = null;
      this.files.markLocal(o);
      if (o.refs === 0) this.files.afterRelease(o);
    });
    o.wb.uploading = p;
    this.files.markLocal(o);
    return p;
  }

  private async doUpload(o: Obj): Promise<void> {
    await this.waitBarriers(o);
    const uid = o.wb.pendingUid;
    if (uid === null || o.unlinked || this.ctx.closed) return;
    const gen = o.wb.journaledGen;
    const stop = o.wb.stopGen;
    let attempts = 0;
    for (let first = true; ; first = false) {
      // a retry stopped during its backoff gives up before it could park at the stopper's barrier
      if (!first && o.wb.stopGen !== stop) return;
      await this.waitBarriers(o);
      if (o.wb.pendingUid !== uid || o.unlinked || this.ctx.closed) return;
      const path = o.path;
      const ac = new AbortController();
      o.wb.uploadAbort = ac;
      attempts++;
      try {
        if (this.ctx.remote.checkUpload) await this.ctx.remote.checkUpload(path, o.size, { signal: ac.signal, priority: Priority.background });
        await this.checkParent(path, ac.signal);
        // stopped while checking (nothing was sent): the namespace change reschedules us
        if (ac.signal.aborted || o.wb.stopGen !== stop) { o.wb.uploadAbort = null; return; }
        // a metadata-only send of this path (on vBoxx also a files_put) must not land after us
        const busy = this.attrs?.idle(path);
        if (busy) await busy;
        if (ac.signal.aborted || o.wb.stopGen !== stop) { o.wb.uploadAbort = null; return; }
        o.wb.attempted = true;
        const carried = this.attrs?.now(o) ?? {};
        let entry: RemoteEntry;
        try {
          // a retry goes alone: whatever made the batch fail does not hold the file back again
          const data = this.smallContent(o, uid);
          entry = await this.batcher.send({
            localFile: this.files.file(o), path, size: o.size, signal: ac.signal, markSending: () => { o.wb.sending = true; },
            ...carried, ...(data ? { data } : {}),
          }, attempts === 1);
        } finally {
          o.wb.sending = false;
        }
        o.wb.uploadAbort = null;
        if (o.unlinked) return;
        this.uploaded(o, uid, gen, path, entry);
        if (o.path === path) this.attrs?.sent(path, carried);
        return;
      } catch (err) {
        o.wb.uploadAbort = null;
        if (ac.signal.aborted && (ac.signal.reason === MUTATION || ac.signal.reason === CLOSING)) return;
        // A namespace change waits for this attempt to end and reschedules at the new state
        // itself; content closed again meanwhile goes after its own delay. Neither may retry here:
        // the next attempt would wait at the barrier of the very change that waits for this task
        // (soak seed 300452: unlink EIO after the opTimeout).
        if (o.wb.stopGen !== stop || o.wb.pendingUid !== uid) return;
        const retryable = isRemoteError(err) ? err.retryable : false;
        if (!retryable || attempts >= this.ctx.opts.uploadAttempts) {
          const f: UploadFailure = { path, error: errText(err), attempts, atMs: Date.now() };
          this.failures.set(path, f);
          if (o.wb.pendingUid === uid) o.wb.failedUid = uid;
          this.ctx.log.error(`upload of ${path} failed after ${attempts} attempt(s), kept for a later retry: ${f.error}`);
          throw err;
        }
        const delay = backoffDelay(attempts, this.ctx.opts.uploadBackoffMs, 30_000, 'spread');
        this.ctx.log.warn(`upload of ${path} failed (attempt ${attempts}), retrying in ${Math.round(delay)} ms: ${errText(err)}`);
        const sleeper = new AbortController();
        o.wb.uploadAbort = sleeper;
        o.wb.backoff = true;
        try { await sleep(delay, sleeper.signal); } catch { o.wb.uploadAbort = null; return; } finally { o.wb.backoff = false; }
        o.wb.uploadAbort = null;
      }
    }
  }

  /**
   * The bytes of a small file to upload, read inline (no batches on this remote): the remote then
   * sends them as they are, where reading the cache file cost it three stats and an open, a read
   * and a close on the threadpool, ~300 us of the JS thread's time per file on 2 cores. Read now
   * rather than at the send: newer bytes than the journalled close are fine either way (the
   * generation check after the upload sends them again), as with the file read at the send.
   */
  private smallContent(o: Obj, uid: string): Buffer | undefined {
    const size = o.size;
    if (size > UPLOAD_FROM_MEMORY_MAX || this.ctx.remote.batchUpload) return undefined;
    // The journal record of this close carries its bytes (small files, within the memory
    // budget): exactly the content being uploaded, with no open, read and close of the cache
    // file (an upload of a closed file finds its fd closed), ~60 us of the JS thread per file.
    const rec = this.journal.forPath(o.path);
    if (rec?.uid === uid && rec.data && rec.data.length === rec.size) return rec.data;
    let fd = o.fd;
    const own = fd < 0;
    try {
      if (own) fd = fs.openSync(this.files.file(o), 'r');
      const buf = readStartSync(fd, size);
      // shorter than the size it had a moment ago (truncated meanwhile): the file path decides
      return buf.length === size ? buf : undefined;
    } catch {
      return undefined;
    } finally {
      if (own && fd >= 0) try { fs.closeSync(fd); } catch { /* closed */ }
    }
  }

  /**
   * Another client may have deleted the folder of a file whose changes are not uploaded yet. The
   * upload recreates it (both services make missing parents), so what the program wrote is kept:
   * our bytes win, and that is said (log and status), never silent. One answer serves the uploads
   * into a folder for PARENT_CHECK_MS, so a delete in that window before an upload goes unnoticed.
   */
  private async checkParent(path: string, signal: AbortSignal): Promise<void> {
    const dir = parentOf(path);
    // a folder of ours not made on the server yet: this upload makes it (missing parents are made)
    if (dir === '/' || this.gate.pendingFolder?.(dir)) return;
    const now = Date.now();
    let c = this.parentChecks.get(dir);
    if (!c || now - c.at > PARENT_CHECK_MS) {
      // Shared by the uploads into dir, so it carries none of their signals: with the first one's,
      // a rename that stopped that upload failed every other waiting for the answer (CANCELLED,
      // not retried: "upload failed after 1 attempt(s)", soak seed 271845). Each waits until its
      // own signal ends instead.
      const p = this.ctx.remote.stat(dir, { priority: Priority.background }).then((e) => e?.type === 'dir', () => {
        // no answer is no evidence: the upload goes ahead and the next one asks again
        if (this.parentChecks.get(dir)?.p === p) this.parentChecks.delete(dir);
        return true;
      });
      c = { at: now, p };
      this.parentChecks.set(dir, c);
      if (this.parentChecks.size > 1000) this.parentChecks.delete(this.parentChecks.keys().next().value!);
    }
    if (await untilAborted(c.p, signal)) return;
    // gone: said once per folder and burst (the uploads that follow make it exist again)
    if (this.parentChecks.get(dir) === c) this.parentChecks.set(dir, { at: now, p: Promise.resolve(true) });
    const message = `folder ${dir} was deleted on the server by another client while ${path} had changes not uploaded yet; ` +
      'it is made again to keep them (what else the other client deleted stays deleted)';
    this.ctx.notices.add(dir, message);
    // our listing of it predates the delete
    this.meta.dropListing(dir);
  }

  private uploaded(o: Obj, uid: string, gen: number, path: string, entry: RemoteEntry): void {
    o.wb.onServer = true;
    o.wb.uploadedGen = gen;
    this.failures.delete(path);
    if (o.wb.pendingUid === uid) {
      o.wb.pendingUid = null;
      this.journal.done(uid).catch((e) => this.ctx.log.warn(`journal: ${errText(e)}`));
    }
    if (o.path !== path) return;
    const e: RemoteEntry = { ...entry, name: baseOf(path), type: 'file' };
    if (!o.dirty) o.ident = { ...e };
    this.meta.setInParent(path, e);
  }

  private async waitBarriers(o: Obj): Promise<void> {
    if (this.gate.idle) return;
    o.wb.parked = true;
    try {
      for (;;) {
        const b = this.gate.covering(o.path);
        if (!b) return;
        await b;
      }
    } finally {
      o.wb.parked = false;
    }
  }

  /**
   * Stops a pending upload of o (it stays pending) and waits until its task settled. An upload
   * whose request is already sent is not aborted but waited for: an abort only closes our socket,
   * the server may still apply the upload after our delete or move (a resurrected file), so the
   * namespace change goes after the server answered it.
   */
  async stop(o: Obj): Promise<void> {
    if (o.wb.timer) { clearTimeout(o.wb.timer); o.wb.timer = null; }
    o.wb.stopGen++;
    // an upload parked at our own barrier has sent nothing; waiting for it would deadlock
    if (o.wb.uploading && !o.wb.parked) {
      if (!o.wb.sending) o.wb.uploadAbort?.abort(MUTATION);
      // a client that ignores the abort must not make us overtake its upload: fail (EIO) instead
      await this.ctx.within(`stopping the upload of ${o.path}`, o.wb.uploading.catch(() => {}));
    }
  }
}
