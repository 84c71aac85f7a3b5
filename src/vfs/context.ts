// What every component of the core shares, and nothing more: the remote, the options, the log,
// whether the drive is closing, the time bound of remote calls, and the user-facing notices.
// Components get this one small object instead of reaching into the Vfs facade.
import { setMaxListeners } from 'node:events';
import type { Logger } from '../log.js';
import { RemoteError, Timeout, isRemoteError } from '../errors.js';
import type { Remote } from '../remote/types.js';
import type { DriveNotice } from './api.js';
import type { ResolvedOptions } from './options.js';

export const MiB = 1024 * 1024;

/** Why an upload or fetch was aborted (a namespace change, or the drive closing): not a failure. */
export const MUTATION = Symbol('mutation');
export const CLOSING = Symbol('closing');

export function errText(e: unknown): string {
  if (e instanceof RemoteError) return e.toString();
  return e instanceof Error ? e.message : String(e);
}

/** Things the drive did on its own that a user should hear of (newest last, bounded). */
export class Notices {
  readonly list: DriveNotice[] = [];
  constructor(private readonly log: Logger) {}
  add(path: string, message: string): void {
    this.log.warn(message);
    this.list.push({ path, message, atMs: Date.now() });
    if (this.list.length > 100) this.list.shift();
  }
}

/** Where the server has what the drive shows (renames written back: namespace/moves.ts). */
export interface ServerNames {
  /** The server's path of what the drive shows at path (its old place while a rename of it or above it is not sent). */
  serverPath(path: string): string;
  /** Whether a rename that decides path's server path is being sent now. */
  moving(path: string): boolean;
  /** Settles (bounded) once the pending renames that decide path's server path reached the server (sent at once). */
  moved(path: string): Promise<void>;
}

export class Ctx {
  readonly log: Logger;
  readonly notices: Notices;
  /** Set once by Vfs.close(): background work stops, nothing new is scheduled. */
  closed = false;
  /** Set by the facade once the move queue exists; until then every name is the server's. */
  names: ServerNames = { serverPath: (path) => path, moving: () => false, moved: async () => {} };

  constructor(readonly remote: Remote, readonly opts: ResolvedOptions) {
    this.log = opts.log;
    this.notices = new Notices(opts.log);
  }

  /** The remote serves byte ranges (vBoxx): reads fetch blocks, not whole files. */
  get ranged(): boolean {
    return !!this.remote.ranged;
  }

  /**
   * Chunks of a ranged read that nothing holds any more (landed, or dropped from o.recent): the
   * remote may read later bodies into their memory (RangedReads.recycle).
   */
  recycle(chunks: readonly Buffer[]): void {
    this.remote.ranged?.recycle?.(chunks);
  }

  /** Runs fn with an AbortSignal and fails with Timeout after opTimeoutMs even if fn ignores it. */
  bounded<T>(what: string, fn: (signal: AbortSignal) => Promise<T>, ms = this.opts.opTimeoutMs): Promise<T> {
    const ac = new AbortController();
    // One call may fan out (vBoxx makes a batch's folders of one depth side by side): every
    // request listens on this signal until it ends, and more than 10 at once made Node print a
    // "possible EventTarget memory leak" warning into the mount's log.
    setMaxListeners(0, ac.signal);
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new Timeout(`${what} did not finish within ${ms} ms`);
        ac.abort(err);
        reject(err);
      }, ms);
    });
    return Promise.race([fn(ac.signal), t]).finally(() => clearTimeout(timer));
  }

  /**
   * Runs a request about path at its server path. A failure, or an answer that says "not there"
   * (`absent`), at an old name (a rename written back not sent yet) may come from the move landing
   * meanwhile: a NOT_FOUND or absent answer while the move is on its way waits for it, and if the
   * server path changed the request goes once more at the new one. (While the move is only queued
   * the old name's answer is the server's word.)
   */
  async atServer<T>(path: string, call: (at: string) => Promise<T>, absent?: (r: T) => boolean): Promise<T> {
    const at = this.names.serverPath(path);
    let r: T | undefined;
    let failure: { err: unknown } | undefined;
    try {
      r = await call(at);
      if (!absent?.(r)) return r;
    } catch (err) {
      // (an abort of our own, a fetch gone stale: not the server's answer)
      if (this.closed || !isRemoteError(err)) throw err;
      failure = { err };
    }
    if (at !== path && (!failure || isRemoteError(failure.err, 'NOT_FOUND')) && this.names.moving(path)) await this.names.moved(path).catch(() => {});
    const now = this.names.serverPath(path);
    if (now === at) {
      if (failure) throw failure.err;
      return r!;
    }
    return call(now);
  }

  /** Waits for p for at most opTimeoutMs. */
  within<T>(what: string, p: Promise<T>): Promise<T> {
    return this.bounded(what, () => p);
  }
}
