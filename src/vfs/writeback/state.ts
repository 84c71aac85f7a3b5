// The write-back state of one content object (one path's cache file): what of its content is
// closed, recorded in the journal, in flight, on the server. Only writeback/ changes these
// fields (the Uploader and its commit path); every other component reads them through Obj's
// getters (dirty, authoritative) or the phase below.
//
// Generations: Obj.gen counts modifications of the content (content/ bumps it at each write or
// truncate). The write-back side follows it with two marks, always journaledGen <= gen and
// uploadedGen <= journaledGen (uploadedGen is the journaledGen an upload started from):
//   gen          the content as it is now
//   journaledGen the newest content a close()/fsync() recorded (pendingUid names that record)
//   uploadedGen  the newest content the server confirmed
//
// The state machine (phase() names the state; see also src/vfs/README.md):
//
// | phase     | holds when                                  | -> next, on                                              |
// |-----------|---------------------------------------------|----------------------------------------------------------|
// | clean     | gen == uploadedGen, pendingUid null         | modified: a write / truncate / create                    |
// | modified  | gen > journaledGen (not closed yet)         | recorded: commitClose (close, fsync, flush)               |
// |           |                                             | clean: refused at close (policy): local changes discarded |
// | recorded  | pendingUid set, no timer, no task           | scheduled: schedule() (release, flush, rename, replay)   |
// |           |                                             | running: uploadUntilClean (fsync, flushAll, getxattr)    |
// | scheduled | timer set                                   | running: timer fires (no writer holds unclosed content)  |
// |           |                                             | recorded: stopUpload (a namespace change), close()       |
// | parked    | task waits at a namespace barrier           | running: the barrier is gone (nothing was sent)          |
// | running   | task checks policy / parent, or is queued   | sending; recorded: stopped (abort MUTATION / stopGen)    |
// |           | in a batch (nothing sent yet)               |                                                          |
// | sending   | the request is on its way (sending)         | clean: confirmed and gen unchanged (journal record done) |
// |           | (a namespace change waits for it, never     | recorded/modified: confirmed, but newer content exists   |
// |           |  aborts it: the server may still apply it)  | backoff: retryable failure, attempts left                |
// |           |                                             | failed: attempts used up, or a refusal                   |
// | backoff   | task sleeps before the next attempt         | running; recorded: aborted (namespace change, close)     |
// | failed    | failedUid == pendingUid                     | scheduled: retryable, RETRY_LATER_MS later               |
// |           | (stays in the journal, listed in status)    | running: fsync / flushAll(retryFailed) / a new close     |
// | (any)     | the Obj is unlinked                         | terminal: the journal record was cancelled first         |
//
// Ordering rules the machine keeps (the namespace side, namespace/ops.ts, relies on them):
// - A task never sends while a namespace barrier covers its path (parked).
// - stopUpload: clears the timer, bumps stopGen, aborts a task that has sent nothing, and waits
//   for one that is sending (bounded by opTimeoutMs): a delete or rename is never overtaken.
// - A task that sees stopGen change, or its record superseded (pendingUid), gives up; whoever
//   stopped it schedules again at the new state.
import type { RemoteError } from '../../errors.js';

export type WritePhase = 'clean' | 'modified' | 'recorded' | 'scheduled' | 'parked' | 'running' | 'sending' | 'backoff' | 'failed';

export class WriteState {
  journaledGen = 0;
  uploadedGen = 0;
  /** Journal record of the newest closed content not yet confirmed by the server. */
  pendingUid: string | null = null;
  /** Journal record whose upload used up its retry budget (a flush does not try it again). */
  failedUid: string | null = null;
  timer: NodeJS.Timeout | null = null;
  uploading: Promise<void> | null = null;
  /** Aborts the task's current step: a check, a queued batch entry, the backoff sleep, or (not yet sending) the request. */
  uploadAbort: AbortController | null = null;
  /** The task sleeps between attempts. */
  backoff = false;
  /** An upload was attempted: the server may hold the path even though no upload succeeded. */
  attempted = false;
  /**
   * This never-uploaded content was renamed over a file the server holds (the save pattern:
   * write a temp file, rename it over the original). That old copy stays on the server until our
   * upload replaces it, so a later unlink or rename of the path must reach the server too.
   */
  shadowsServer = false;
  /** The server holds content at this path (as far as we know). */
  onServer: boolean;
  /** The policy refused this content at close: it is discarded at the last release. */
  refused: RemoteError | null = null;
  /** The upload task waits at a namespace barrier and has sent nothing. */
  parked = false;
  /**
   * The upload request is on its way: aborting it now would not take it back (the server may
   * have the whole body and apply it after our abort), so namespace changes wait for it instead.
   */
  sending = false;
  /** Bumped by stopUpload: an upload task that sees it change gives up instead of retrying. */
  stopGen = 0;

  constructor(onServer: boolean) {
    this.onServer = onServer;
  }

  /** Neither on the server nor ever sent there: a delete or rename has nothing to tell the server. */
  get localOnly(): boolean {
    return !this.onServer && !this.attempted && !this.shadowsServer;
  }

  /** What the server may hold at this path after a namespace change that sends nothing. */
  get serverMayHold(): boolean {
    return this.onServer || this.attempted || this.shadowsServer;
  }

  /** The state of the table above, for a content generation gen. */
  phase(gen: number): WritePhase {
    if (this.sending) return 'sending';
    if (this.uploading) return this.parked ? 'parked' : this.backoff ? 'backoff' : 'running';
    if (this.timer) return 'scheduled';
    if (this.pendingUid !== null && this.failedUid === this.pendingUid) return 'failed';
    if (gen !== this.journaledGen) return 'modified';
    if (this.pendingUid !== null) return 'recorded';
    return 'clean';
  }
}
