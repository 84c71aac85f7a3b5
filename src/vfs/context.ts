// What every component of the core shares, and nothing more: the remote, the options, the log,
// whether the drive is closing, the time bound of remote calls, and the user-facing notices.
// Components get this one small object instead of reaching into the Vfs facade.
import type { Logger } from '../log.js';
import { RemoteError, Timeout } from '../errors.js';
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

export class Ctx {
  readonly log: Logger;
  readonly notices: Notices;
  /** Set once by Vfs.close(): background work stops, nothing new is scheduled. */
  closed = false;

  constructor(readonly remote: Remote, readonly opts: ResolvedOptions) {
    this.log = opts.log;
    this.notices = new Notices(opts.log);
  }

  /** The remote serves byte ranges (vBoxx): reads fetch blocks, not whole files. */
  get ranged(): boolean {
    return !!this.remote.ranged;
  }

  /** Runs fn with an AbortSignal and fails with Timeout after opTimeoutMs even if fn ignores it. */
  bounded<T>(what: string, fn: (signal: AbortSignal) => Promise<T>, ms = this.opts.opTimeoutMs): Promise<T> {
    const ac = new AbortController();
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

  /** Waits for p for at most opTimeoutMs. */
  within<T>(what: string, p: Promise<T>): Promise<T> {
    return this.bounded(what, () => p);
  }
}
