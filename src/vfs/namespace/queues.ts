// The namespace changes written back, together: the DeleteQueue, the MkdirQueue (services that
// make folders in batches) and the MoveQueue (renames of files), built with their ports, and what
// the rest of the drive asks of all three at once: the gate uploads and metadata sends wait at,
// the names they show or hide, replay, flush, status, fsync of a folder, shutdown.
//
// Owns: nothing of its own (each queue owns its records). Ordering rules it wires: uploads and
// metadata sends wait at namespace barriers, at pending deletes of their path and at pending
// moves of or to their path; pending mkdirs of their folders do not hold them (they carry their
// folders: mkdirs.ts). A move goes after the deletes and mkdirs at, above or below its names.
// Replay, flushes and shutdown take deletes, then mkdirs, then moves (uploads after them all).
import type { RemoteEntry, Remote } from '../../remote/types.js';
import type { UploadFailure } from '../api.js';
import type { Ctx } from '../context.js';
import type { PendingMove } from '../journal.js';
import { parentOf } from '../paths.js';
import type { BarrierGate, Barriers } from './barriers.js';
import type { PendingNames } from '../meta/cache.js';
import { DeleteQueue, type DeleteJournal } from './deletes.js';
import { MkdirQueue, type MkdirJournal } from './mkdirs.js';
import { MoveQueue, type MoveJournal } from './moves.js';

/** What the queues' ends change in the rest of the drive. */
export interface ViewPorts {
  /** Our change of dir's names landed: an answer fetched before it must not be cached. */
  landed(dir: string): void;
  /**
   * The server keeps what it holds at path (our change of it was refused): what the drive showed
   * there goes (gone: the kernel's entry of it and its local attributes too).
   */
  serverKeeps(path: string, gone: boolean): void;
  /** A refused move: the drive shows what the server holds at `from` and `to` again; what is ours at `to` goes back to `from`. */
  moveRefused(m: PendingMove): void;
  /** An upload of path is pending (a move of a source the server never got is then done). */
  contentPending(path: string): boolean;
  /** A move landed and the service answered with what it holds at the target now. */
  moveLanded(m: PendingMove, e: RemoteEntry): void;
}

export class NamespaceQueues {
  readonly deletes: DeleteQueue;
  /** Mkdirs written back (services that make folders in batches); undefined: mkdir goes at once. */
  readonly mkdirs: MkdirQueue | undefined;
  readonly moves: MoveQueue;
  /** The gate uploads and metadata sends wait at (see the top of this file). */
  readonly gate: BarrierGate;
  /** The listing overlay of MetaCache: pending folders and renamed files. */
  readonly overlay: PendingNames;

  constructor(ctx: Ctx, journal: DeleteJournal & MkdirJournal & MoveJournal, remote: Remote, barriers: Barriers, ports: ViewPorts) {
    const deletes = this.deletes = new DeleteQueue(ctx, journal, {
      // an answer listed before the delete landed must not be cached after it
      // (and one about the removed folder itself, a listing of it in flight, must not be either)
      confirmed: (path) => { ports.landed(parentOf(path)); ports.landed(path); },
      // the server keeps it: shown again
      refused: (path) => ports.serverKeeps(path, false),
    });
    const mkdirs = this.mkdirs = remote.batchMkdir ? new MkdirQueue(ctx, journal, remote.batchMkdir, {
      // a listing asked before the folder landed must not be cached after it
      confirmed: (path) => { ports.landed(parentOf(path)); ports.landed(path); },
      // not made: gone from the drive (another client may have a file there: a new lookup gets a
      // new number, not the folder's)
      refused: (path) => ports.serverKeeps(path, true),
    }) : undefined;
    const moves = this.moves = new MoveQueue(ctx, journal, {
      before: async (paths) => { await deletes.settle(paths); await mkdirs?.settle(paths); },
      contentPending: (path) => ports.contentPending(path),
      landed: (m, e) => ports.moveLanded(m, e),
    }, {
      confirmed: (_to, m) => { ports.landed(parentOf(m.from)); ports.landed(parentOf(m.to)); },
      refused: (_to, m) => ports.moveRefused(m),
    });
    this.gate = {
      get idle() { return barriers.idle && deletes.size === 0 && (mkdirs?.size ?? 0) === 0 && moves.size === 0; },
      // (mkdirs last: its covering marks the folders the upload about to go carries)
      covering: (path) => barriers.covering(path) ?? deletes.covering(path) ?? moves.covering(path) ?? mkdirs?.covering(path),
      pendingFolder: (dir) => !!mkdirs?.entry(dir),
    };
    this.overlay = {
      pending: (path) => !!mkdirs?.entry(path),
      childrenOf: (dir) => mkdirs?.childrenOf(dir) ?? [],
      movedInto: (dir) => moves.movedInto(dir),
    };
  }

  private get all(): (DeleteQueue | MkdirQueue | MoveQueue)[] {
    return this.mkdirs ? [this.deletes, this.mkdirs, this.moves] : [this.deletes, this.moves];
  }

  /** Names the server may still list that the drive does not show (deleted, renamed away). */
  hides(path: string): boolean {
    return this.deletes.hides(path) || this.moves.hides(path);
  }

  /** What the drive shows at path before the server has it (a folder made, a file renamed). */
  entry(path: string): RemoteEntry | undefined {
    return this.mkdirs?.entry(path) ?? this.moves.entry(path);
  }

  /** Whether a change below folder dir is still to reach the server (it will move dir's time there). */
  below(dir: string): boolean {
    return this.deletes.below(dir) || !!this.mkdirs?.atOrBelow(dir) || this.moves.below(dir);
  }

  /** The records an earlier run left: sent again. */
  restore(): void {
    for (const q of this.all) q.restore();
  }

  /** Every queue sent now, in order; each record gets its attempts (see CoalescingQueue.flush). */
  async flush(): Promise<void> {
    for (const q of this.all) await q.flush();
  }

  stillPending(): UploadFailure[] {
    return this.all.flatMap((q) => q.stillPending());
  }

  failures(): UploadFailure[] {
    return this.all.flatMap((q) => [...q.failures.values()]);
  }

  /** fsync of a folder: its pending names reached the server; a refusal fails it once. */
  async syncDir(dir: string): Promise<void> {
    for (const q of this.all) await q.syncDir(dir);
  }

  shutdown(): Promise<unknown> {
    return Promise.all(this.all.map((q) => q.shutdown()));
  }
}
