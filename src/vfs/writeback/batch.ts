// Sending one upload: alone, or in a batch (remotes with uploadMany, e.g. Maxxo's rsync: one run
// costs more than a small file's bytes). A closed file due for upload joins the queue; a free
// lane takes what gathered in a short window, or at once what queued while both lanes were busy,
// so the batches grow with the backlog.
//
// Owns: the queue, the lanes, the batch transfers in flight (stop() aborts them at close).
// Ordering (the Uploader relies on it): a queued upload is not sent yet, and an abort of its
// signal takes it out of the queue (Cancelled); once a batch takes it, markSending() is called
// and from then on only the batch answers (the Uploader waits for it, never aborts it). Each
// file's result is its own: the Uploader completes its journal record, or retries it alone.
import { setMaxListeners } from 'node:events';
import { BadResponse, Cancelled } from '../../errors.js';
import { Priority, type RemoteEntry } from '../../remote/types.js';
import { CLOSING, MiB, type Ctx } from '../context.js';

/** Concurrent batch uploads. */
const UP_LANES = 2;
/** How long the first due upload of a burst waits for others to join its batch. */
const UP_GATHER_MS = 10;
/** Bigger files go alone: they would hold back the confirmation of the small ones in their batch. */
const UP_BATCH_FILE_MAX = 16 * MiB;
const UP_BATCH_MAX_BYTES = 64 * MiB;
const UP_BATCH_MAX_FILES = 1000;

export interface UploadJob {
  localFile: string;
  path: string;
  size: number;
  signal: AbortSignal;
  /**
   * Called once the upload is on its way: alone, when the request leaves the client's queue (or at
   * once if the remote cannot say: TransferOptions.onSend); batched, when a batch takes it.
   */
  markSending: () => void;
  /** The file's mtime and mode to keep, where the service keeps them. */
  mtimeMs?: number;
  mode?: number;
  /** The bytes of localFile, when read already (small files on a remote without batches). */
  data?: Buffer;
}

function attrsOf(job: UploadJob): { mtimeMs?: number; mode?: number } {
  return { ...(job.mtimeMs !== undefined ? { mtimeMs: job.mtimeMs } : {}), ...(job.mode !== undefined ? { mode: job.mode } : {}) };
}

interface UpItem {
  job: UploadJob;
  onAbort: () => void;
  resolve: (e: RemoteEntry) => void;
  reject: (e: unknown) => void;
}

export class UploadBatcher {
  private readonly queue: UpItem[] = [];
  private running = 0;
  private gather: NodeJS.Timeout | null = null;
  private readonly aborts = new Set<AbortController>();

  constructor(private readonly ctx: Ctx) {}

  /** One upload of job.localFile to job.path: alone, or (mayBatch) in the next batch. */
  send(job: UploadJob, mayBatch: boolean): Promise<RemoteEntry> {
    const { remote } = this.ctx;
    if (!mayBatch || !remote.batchUpload || job.size > UP_BATCH_FILE_MAX) {
      // Until the request leaves the client's queue an abort takes it back for sure, so a rename
      // or delete need not wait behind a busy queue (it did, up to the op timeout, then EIO).
      return remote.upload(job.localFile, job.path, {
        signal: job.signal, priority: Priority.background, onSend: job.markSending, ...attrsOf(job), ...(job.data ? { data: job.data } : {}),
      });
    }
    return new Promise<RemoteEntry>((resolve, reject) => {
      const it: UpItem = {
        job, resolve, reject,
        onAbort: () => {
          const i = this.queue.indexOf(it);
          if (i < 0) return; // taken: the batch answers (close() aborts the batch itself)
          this.queue.splice(i, 1);
          reject(new Cancelled('upload stopped before it was sent', { path: job.path }));
        },
      };
      if (job.signal.aborted) return reject(new Cancelled('upload stopped before it was sent', { path: job.path }));
      job.signal.addEventListener('abort', it.onAbort, { once: true });
      this.queue.push(it);
      this.pump(false);
    });
  }

  /** The drive is closing: batches in flight are aborted. */
  stop(): void {
    for (const ac of this.aborts) ac.abort(CLOSING);
  }

  private pump(backlog: boolean): void {
    if (this.queue.length === 0 || this.running >= UP_LANES || this.ctx.closed) return;
    if (!backlog) {
      // the first closes of a burst: wait a moment for their siblings
      this.gather ??= setTimeout(() => { this.gather = null; this.pump(true); }, UP_GATHER_MS);
      return;
    }
    if (this.gather) { clearTimeout(this.gather); this.gather = null; }
    const take: UpItem[] = [];
    let bytes = 0;
    while (this.queue.length > 0 && take.length < UP_BATCH_MAX_FILES) {
      const it = this.queue[0]!;
      if (take.length > 0 && bytes + it.job.size > UP_BATCH_MAX_BYTES) break;
      this.queue.shift();
      it.job.signal.removeEventListener('abort', it.onAbort);
      it.job.markSending();
      bytes += it.job.size;
      take.push(it);
    }
    this.running++;
    void this.runBatch(take).finally(() => {
      this.running--;
      this.pump(true);
    });
    this.pump(true);
  }

  private async runBatch(take: UpItem[]): Promise<void> {
    const stop = new AbortController();
    // one listener per file when the batch falls back to single uploads
    setMaxListeners(0, stop.signal);
    this.aborts.add(stop);
    try {
      const res = await this.ctx.remote.batchUpload!.uploadMany(take.map((it) => ({ localFile: it.job.localFile, path: it.job.path, ...attrsOf(it.job) })),
        { signal: stop.signal, priority: Priority.background });
      take.forEach((it, i) => {
        const r = res[i];
        if (r?.entry) it.resolve(r.entry);
        else it.reject(r ? r.error : new BadResponse('no result for this upload', { path: it.job.path }));
      });
    } catch (err) {
      for (const it of take) it.reject(err);
    } finally {
      this.aborts.delete(stop);
    }
  }
}
