// The rsync daemon as a transport: the slice (daemon address, login, Cloudstore password) cached,
// one rsync run at a time per queue lane, bounded retries with backoff.
//
// - The slice is cached; an rsync that cannot reach the daemon or is refused its password reads
//   /slice again before the next attempt (the storage server moved, or restarted on another port).
//   One re-read serves every transfer that used the old slice; one warning per address in trouble.
// - The password goes to the child's environment only (StartedRsync), never into argv or the log.
// - While the API server of the account is silent, no run starts (fail fast like the API requests).
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import PQueue from 'p-queue';
import type { CallOptions } from '../types.js';
import { Priority } from '../types.js';
import { RemoteError, Cancelled, Timeout, type ErrorContext } from '../../errors.js';
import type { ClientOptions } from '../options.js';
import { enqueue } from '../http.js';
import type { MaxxoClient, MaxxoSlice } from './client.js';
import { generic } from './errors.js';
import { StartedRsync, rsyncFailure, type RsyncResult } from './rsync.js';
import type { Logger } from '../../log.js';
import { sleep } from '../../util/sleep.js';
import { backoffDelay } from '../../util/backoff.js';

export interface MaxxoRemoteOptions extends ClientOptions {
  /** rsync binary (default: `rsync` from PATH). */
  rsyncPath?: string;
  /** Extra rsync arguments (tests and benchmarks, e.g. --bwlimit). */
  rsyncExtraArgs?: string[];
  /** Parallel rsync transfers (default: min(concurrency, 4)). */
  transfers?: number;
  /** How often download progress is sampled from the file size (ms, default 50). */
  progressIntervalMs?: number;
  /**
   * The drive's dir_timeout (ms, default 30 s; a drive sets its own through cacheTtls()): how old
   * a daemon listing revalidate() may use (list/stat renew theirs less often: see mtimeSource()).
   */
  listingTtlMs?: number;
  /** Row bounds of two-level daemon listings (tests; see DEEP_ROWS_MAX in listings.ts). */
  listingBounds?: { deepRowsMax?: number; deepRowsHard?: number };
}

/** How one run goes: its queue (the transfer lanes unless told), attempts, a hook before each run. */
export interface RunOptions {
  queue?: PQueue; attempts?: number; listing?: boolean; folderTimes?: boolean; beforeRun?: () => Promise<void>;
  /**
   * Children are started ahead for this argv only while its runs come in a burst (the last one
   * began within BURST_MS): runs that come one at a time (the folders of one tar x go as one run)
   * would leave two children unused, whose starts cost the drive's process and CPU (measured:
   * tar x and rm -rf rows 10-17 % slower with children started after every mkdir run).
   */
  aheadInBursts?: boolean;
  /**
   * The run's --files-from=- list, written to its stdin. Its argv then names no path, so a child
   * started ahead with the same argv takes it (see WarmRuns).
   */
  input?: string;
  /**
   * Each child works in a folder of its own made in this one (a relative destination in argv
   * lands there), told to onWorkdir when a run takes the child: the caller's to remove, those of
   * failed attempts too. Folders of children no run took are removed here.
   */
  workdirIn?: string;
  /** May fill the folder first: the list is written once what it returns settled. */
  onWorkdir?: (dir: string) => void | Promise<void>;
}

/** One rsync run against the daemon: argv from the module URL, each output line to onLine. */
export type RsyncRunner = (path: string, opts: CallOptions, args: (url: string) => string[],
  onLine: ((l: string) => void) | undefined, o?: RunOptions) => Promise<RsyncResult>;

const SAFE_LOGIN = /^[A-Za-z0-9_.-]+$/;

export function backoff(attempt: number): number {
  return backoffDelay(attempt, 200, 5000);
}

/**
 * rsync children started ahead of the runs that will take them, WARM_PER_KEY per argv (those of
 * runs that give their names on stdin: listings, downloads of small files and batches):
 * by the time a run comes, its child has connected to the daemon, authenticated and agreed the
 * protocol, and waits for its --files-from list on stdin. Those are 5 round trips (greeting, auth
 * challenge, auth, arguments, checksum negotiation) before the first row of a cold run: at 20 ms
 * RTT a cold --list-only of 1,000 files gave its first row after 125-165 ms, a started one 28-32
 * ms after its list was written. A child is started when a run of its argv begins, so an idle
 * drive keeps none, and ended unused after WARM_MAX_MS (half the run timeout if shorter: rsync's
 * and the daemon's own --timeout would end it).
 */
class WarmRuns {
  private readonly idle = new Map<string, StartedRsync[]>();
  /** Keys with a start scheduled (one at a time per key), and whether it is the short delay. */
  private readonly refilling = new Map<string, { timer: NodeJS.Timeout; urgent: boolean }>();
  private closed = false;

  /** The oldest child waiting for key's argv that is still fit to take a run. */
  take(key: string): StartedRsync | undefined {
    const list = this.idle.get(key);
    while (list?.length) {
      const c = list.shift()!;
      if (c.alive) return c;
      discard(c);
    }
    return undefined;
  }

  /**
   * Starts children for key until WARM_PER_KEY wait: one at a time, REFILL_DELAY_MS apart, the
   * first that long after the run that took one. Starting a child blocks this process until the
   * child has exec'd (libuv waits for it): 5-12 ms each on this kind of machine, measured. Started
   * at once, before the run that took a child wrote its list, two of them held that list back by
   * ~20 ms; started 10 ms after it, they blocked the loop just when the walk's answers came (the
   * stat, the listings a cold `ls -l a/b/c` asks together: 46-62 ms for requests of one round
   * trip). 100 ms later the walk is over, and the pool of two still serves the next levels of a
   * cold `find` (measured, with children of both listing depths started then, since reverted:
   * ls -l 0.137-0.148 s -> 0.099-0.103 s; find cold 0.82-0.90 s, base 0.86-0.88 s, in the same
   * runs). Only when none is left waiting: 10 ms, as before.
   */
  refill(key: string, maxAgeMs: number, start: () => StartedRsync): void {
    if (this.closed) return;
    // none left waiting: the next run of this argv would start cold, which costs it more than
    // the loop a start blocks (runs back to back, faster than the delay)
    const urgent = (this.idle.get(key)?.length ?? 0) === 0;
    const pending = this.refilling.get(key);
    if (pending && (pending.urgent || !urgent)) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.refilling.delete(key);
      this.startOne(key, maxAgeMs, start);
    }, urgent ? REFILL_URGENT_MS : REFILL_DELAY_MS).unref();
    this.refilling.set(key, { timer, urgent });
  }

  private startOne(key: string, maxAgeMs: number, start: () => StartedRsync): void {
    if (this.closed) return;
    let list = this.idle.get(key);
    if (!list) this.idle.set(key, list = []);
    if (list.length < WARM_PER_KEY) {
      let c: StartedRsync;
      // From a timer: a throw here (the working folder's parent removed meanwhile, no process
      // slot) would end the whole drive. A run then starts its own child, as without this pool.
      try { c = start(); } catch { if (list.length === 0) this.idle.delete(key); return; }
      list.push(c);
      const drop = () => {
        const i = list!.indexOf(c);
        if (i >= 0) list!.splice(i, 1);
        if (list!.length === 0 && this.idle.get(key) === list) this.idle.delete(key);
        return i >= 0;
      };
      c.child.once('close', () => { if (drop()) discard(c); });
      setTimeout(() => { if (drop()) discard(c); }, maxAgeMs).unref();
      if (list.length < WARM_PER_KEY) this.refill(key, maxAgeMs, start);
    }
  }

  close(): void {
    this.closed = true;
    for (const r of this.refilling.values()) clearTimeout(r.timer);
    this.refilling.clear();
    for (const list of this.idle.values()) for (const c of list) discard(c);
    this.idle.clear();
  }
}

/** Ends a child no run took, and removes its working folder. */
function discard(c: StartedRsync): void {
  c.kill();
  // (its child may still be writing the folder: it got no list, so nothing lands there)
  if (c.cwd !== undefined) rmSync(c.cwd, { recursive: true, force: true });
}

/**
 * Children kept waiting per argv: a cold path walk starts a run per level ~1 RTT apart, and a
 * child started by the run before is still in its handshake then.
 */
const WARM_PER_KEY = 2;
const WARM_MAX_MS = 10_000;
/** See WarmRuns.refill. */
const REFILL_DELAY_MS = 100;
const REFILL_URGENT_MS = 10;
/** See RunOptions.aheadInBursts. */
const BURST_MS = 1000;

export class DaemonTransport {
  /** Running rsync children (tests check that cancel really ends them). */
  readonly children = new Set<ChildProcess>();
  /**
   * Diagnostics (MaxxoRemote.counters()): rsync runs started, retries included; of those, daemon
   * listings (--list-only) for mtimes, and runs that set folder times alone; runs that took a
   * child started ahead (WarmRuns); times /slice was fetched (the first time included).
   */
  readonly counts = { rsyncRuns: 0, listRuns: 0, folderTimeRuns: 0, warmRuns: 0, sliceFetches: 0 };
  private readonly transfers: PQueue;
  private readonly warm = new WarmRuns();
  /** When the last run of each argv with aheadInBursts began. */
  private readonly lastRunOf = new Map<string, number>();
  private slicePromise?: Promise<MaxxoSlice>;
  /** Address of the last slice fetched, to tell when the storage server moved. */
  private sliceAddr?: string;
  /** Address of the daemon last found out of reach (one warning per address, not per transfer). */
  private daemonTrouble?: string;
  private closed = false;

  constructor(private readonly client: MaxxoClient, private readonly opts: MaxxoRemoteOptions, private readonly log: Logger) {
    this.transfers = new PQueue({ concurrency: Math.max(1, opts.transfers ?? Math.min(opts.concurrency ?? 8, 4)) });
  }

  /**
   * One rsync run through a queue (the transfer queue unless told otherwise) with bounded retries:
   * transient exit codes are repeated with backoff. A run that could not reach the daemon, or was
   * refused its password, drops the cached slice first, so the next attempt uses what /slice says
   * now: the storage server may have moved or restarted on another port, or the Cloudstore
   * password changed (an auth failure is tried again at once, once).
   */
  readonly run: RsyncRunner = async (path, opts, args, onLine, o = {}) => {
    const ctx: ErrorContext = { path };
    const max = Math.max(1, o.attempts ?? this.opts.maxAttempts ?? 5);
    const deadline = Date.now() + (this.opts.maxRetryTimeMs ?? 60_000);
    const secs = Math.max(1, Math.ceil((this.opts.timeoutMs ?? 30_000) / 1000));
    let reSliced = false;
    // a started child that failed is not trusted twice: the next attempt starts its own at once
    let cold = false;
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw new Cancelled('remote closed', ctx);
      if (opts.signal?.aborted) throw new Cancelled('transfer cancelled', ctx);
      // The API server of this account stopped answering: fetching the slice again is the probe (it
      // fails at once while another request probes), so a transfer does not wait out rsync's own
      // timeouts against a stopped server, and a good answer lets the transfers go again.
      if (this.client.http.silent) this.slicePromise = undefined;
      const sp = this.slice(opts);
      const slice = await sp;
      const host = slice.ip.includes(':') ? `[${slice.ip}]` : slice.ip;
      const url = `rsync://${slice.login}@${host}:${slice.port}/${slice.login}`;
      // TCP_NODELAY: rsync writes its arguments and protocol setup in many small writes, which
      // Nagle's algorithm held until the daemon's delayed ACK: 40 ms stalled in every run (an
      // rsync --list-only of a folder took 120 ms on the loopback, 60-80 with it)
      const argv = ['-s', '--no-motd', '--sockopts=TCP_NODELAY', `--contimeout=${secs}`, `--timeout=${secs}`, ...(this.opts.rsyncExtraArgs ?? []), ...args(url)];
      const warmKey = o.input !== undefined ? `${argv.join('\0')}\0${slice.rsync}\0${o.workdirIn ?? ''}` : undefined;
      let warmed = false;
      const r = await enqueue(o.queue ?? this.transfers, () => {
        // turned silent while this transfer waited in the queue: fail fast like the API requests
        if (this.client.http.silent) return Promise.reject(new Timeout('server not answering (transfer not started)', ctx));
        this.counts.rsyncRuns++;
        if (o.listing) this.counts.listRuns++;
        if (o.folderTimes) this.counts.folderTimeRuns++;
        return (o.beforeRun?.() ?? Promise.resolve()).then(() => {
          const startedAt = Date.now();
          let child = warmKey !== undefined && !cold ? this.warm.take(warmKey) : undefined;
          warmed = child !== undefined;
          if (warmed) this.counts.warmRuns++;
          const workdir = () => (o.workdirIn !== undefined ? mkdtempSync(join(o.workdirIn, '.rsync-run-')) : undefined);
          const c = child ?? new StartedRsync(argv, slice.rsync, this.opts.rsyncPath, o.input !== undefined, workdir());
          const attach = () => c.attach({ signal: opts.signal, onLine, children: this.children, input: o.input }, ctx).then((res) => {
            // -vv: one line per run; the password is in the child's environment only, never here
            this.log.debug(`rsync run for ${path}: exit ${res.code ?? res.signal} in ${Date.now() - startedAt} ms${warmed ? ' (started ahead)' : ''}${attempt > 1 ? ` (attempt ${attempt})` : ''}`);
            return res;
          });
          // the caller fills the child's folder before the list goes out; a child it failed to
          // fill is ended (it would wait for a list that never comes)
          const filling = c.cwd !== undefined ? o.onWorkdir?.(c.cwd) : undefined;
          const running = filling ? filling.then(attach, (e: unknown) => { c.kill(); throw e; }) : attach();
          // children for the next runs of this argv, started a little later: see WarmRuns.refill
          if (warmKey !== undefined && (!o.aheadInBursts || this.inBurst(warmKey))) {
            this.warm.refill(warmKey, Math.min(WARM_MAX_MS, secs * 500), () => new StartedRsync(argv, slice.rsync, this.opts.rsyncPath, true, workdir()));
          }
          return running;
        });
      }, opts.priority ?? Priority.background, opts.signal)
        .catch((e) => { throw opts.signal?.aborted ? new Cancelled('transfer cancelled', ctx) : e; });
      const addr = `${host}:${slice.port}`;
      if (r.code === 0) {
        if (this.daemonTrouble) {
          this.daemonTrouble = undefined;
          this.log.warn(`maxxo: rsync transfers work again (daemon at ${addr})`);
        }
        return r;
      }
      const f = rsyncFailure(r, ctx, slice.rsync);
      if ((f.unreachable || f.authFailed) && this.slicePromise === sp) {
        // one re-read for every transfer that used this slice; one warning per address in trouble
        this.slicePromise = undefined;
        // (no "password:" in the line: the log's secret filter would eat what follows)
        const what = f.authFailed ? 'refused our Cloudstore password' : `cannot be reached (${f.error.message})`;
        const line = `maxxo: rsync daemon at ${addr} ${what}; reading /slice again for its current address and credentials`;
        if (this.daemonTrouble !== addr) this.log.warn(line); else this.log.debug(line);
        this.daemonTrouble = addr;
      }
      if (warmed && !cold && (f.transient || f.unreachable || f.authFailed || r.signal !== null)) {
        // the daemon may have ended the connection it held (its own timeout, a restart)
        cold = true;
        attempt--;
        continue;
      }
      if (f.authFailed && !reSliced) {
        reSliced = true;
        attempt--;
        continue;
      }
      const delay = backoff(attempt);
      if (!f.transient || attempt >= max || Date.now() + delay > deadline) {
        // what failed, and why, where an EIO alone would leave the user guessing (not for the
        // ordinary outcomes: a missing file, a full disk)
        if ((f.transient || f.unreachable || f.authFailed) && !o.listing) {
          this.log.warn(`maxxo: rsync for ${JSON.stringify(path)} failed after ${attempt} attempt(s): ${f.error.message}`);
        }
        throw f.error;
      }
      this.log.debug(`maxxo: rsync transfer failed (${f.error.code}), retrying (attempt ${attempt + 1}/${max})`);
      await sleep(delay, opts.signal).catch(() => { throw new Cancelled('transfer cancelled', ctx); });
    }
  };

  /** Whether a run of key began within BURST_MS before this one (see RunOptions.aheadInBursts). */
  private inBurst(key: string): boolean {
    const now = Date.now();
    const prev = this.lastRunOf.get(key);
    this.lastRunOf.delete(key);
    this.lastRunOf.set(key, now);
    if (this.lastRunOf.size > 64) this.lastRunOf.delete(this.lastRunOf.keys().next().value!);
    return prev !== undefined && now - prev < BURST_MS;
  }

  /** The slice (rsync host, login, password), fetched once and cached. */
  private slice(opts: CallOptions): Promise<MaxxoSlice> {
    if (!this.slicePromise) {
      this.counts.sliceFetches++;
      const p = this.client.slice({ signal: opts.signal, priority: Priority.interactive }).catch(generic).then((s) => {
        if (!SAFE_LOGIN.test(s.login) || /[/@\s]/.test(s.ip)) throw new RemoteError('BAD_RESPONSE', 'unusable slice login or address', { path: '/api/1/slice' });
        const addr = `${s.login}@${s.ip.includes(':') ? `[${s.ip}]` : s.ip}:${s.port}`;
        if (this.sliceAddr !== undefined && this.sliceAddr !== addr) this.log.warn(`maxxo: the slice moved the rsync daemon from ${this.sliceAddr} to ${addr}`);
        this.sliceAddr = addr;
        return s;
      });
      this.slicePromise = p;
      p.catch(() => { if (this.slicePromise === p) this.slicePromise = undefined; });
    }
    return this.slicePromise;
  }

  /** No run starts after this; queued ones are dropped, running ones ended. */
  close(): void {
    this.closed = true;
    this.transfers.clear();
    this.warm.close();
    for (const c of this.children) c.kill('SIGTERM');
  }
}
