// The rsync daemon's listings of folders (`rsync --list-only`), cached per folder: Maxxo's REST
// API gives names, types and sizes only, the daemon's listing also gives mtimes (and modes).
//
// A listing costs an rsync run (200-300 ms on a loaded machine, against a few ms for ops/list),
// so it is kept off the hot path:
// - list() and stat() take mtimes from the folder's cached listing (rows whose size agrees with
//   what ops/list or ops/filesize just said); only a folder with none, or one unused for long,
//   waits for one (source()). It is renewed in the background every max(2 x dir_timeout, 60 s),
//   or sooner when the sizes show another client's new or resized file.
// - revalidate(), which the drive calls before it serves cached bytes again, takes a listing no
//   older than dir_timeout (get(dir, maxAge): one run per folder at a time, shared): that check
//   bounds how long another client's same-size change goes unseen (one second resolution: a
//   same-size change within the second of the previous version is not seen).
// - our own uploads (-t: the server file gets the mtime we hold), time changes, moves, deletes
//   and mkdirs are written into the cached listings (own()), so folders we write into cost no runs.
// - the first listing of a folder takes two levels in one run (-r, nothing below the
//   subfolders' own entries): a cold walk (find, ls -lR, a file manager opening folders) then waits
//   for one run per two levels, not one per folder. Each subfolder's part is a complete listing of
//   it, kept unless a run of its own or a change of ours since makes it stale. Past DEEP_ROWS_MAX
//   rows the folder's own one-level run starts alongside, and its listing is whichever of the two
//   lands first (a big tree below a folder no longer holds up its `ls -l`); the two-level run goes
//   on up to DEEP_ROWS_HARD rows for the subfolders (stopped there, it keeps the ones it
//   completed). It used to be given up at 5,000 rows and the folder run again one level deep, a
//   run per subfolder then: a cold `find` of 10 folders of 1,000 files took 2.6-3.0 s at 20 ms
//   RTT, the aborted run's ~0.5 s on its path; each subfolder kept: 1.1-1.4 s.
//   Not for a listing asked to answer lookups (ListOptions.forLookups: the parent of a name a
//   path walk looks up): that walk goes into one subfolder, and the rows of all the others cost
//   the walk's next levels their CPU and the folder's own names come last (rsync lists a
//   subfolder's rows right after its row): a cold `ls -l bench/small/d01` with 10 folders of
//   1,000 files in small waited for a 10,000-row run (530 ms) and the one-level run it started.
import type { RemoteEntry } from '../types.js';
import type { ListedRow } from './rsync.js';
import { pathParts } from '../url.js';
import { isRemoteError } from '../../errors.js';
import type { Logger } from '../../log.js';

/**
 * One folder as the rsync daemon listed it (the run started at `at`): file rows by name, and the
 * mtimes of its subfolders (the daemon's filesystem keeps folder times: what rsync -t sets, moved
 * by every change inside, POSIX-like).
 */
export interface DaemonListing {
  at: number; rows: Map<string, ListedRow>; dirs: Map<string, number>;
  /** The folder's own mtime (its "." row): the top folder has no parent to take it from. */
  self?: number;
}

/** A folder's daemon listings: the last one fetched, the one in flight. */
interface Slot {
  value?: DaemonListing;
  inflight?: Promise<DaemonListing | undefined>;
  inflightAt: number;
  /** The run in flight lists the subfolders too. */
  inflightDeep?: boolean;
  /** When the last run failed (not tried again for LIST_RETRY_MS). */
  failedAt?: number;
  /** Our own changes while a run was in flight (null: no such file now): it may have missed them. */
  own: Map<string, ListedRow | null>;
  /** The folder's own time, set by us while a run was in flight. */
  ownSelf?: number;
  /**
   * A change of ours whose row is unknown landed while the run was in flight (own(path,
   * undefined)): the run may have listed the folder before it, so its waiters take the next one.
   */
  staleSince?: number;
  /** The run in flight is told the folder's names (expect()). */
  expect?: (names: ReadonlySet<string>) => void;
  /** The run in flight's "." row: the folder's own time (undefined if the run ended without it). */
  selfP?: Promise<number | undefined>;
  /** A two-level run's last rows (its subfolders' parts) after the folder's own listing landed
   * by its names (see expect()): about the end of the run, worth waiting for. */
  deepTail?: Promise<void>;
  /** The two-level run going on (in flight, or its tail): what it collected so far. */
  deepRun?: DeepRun;
}

/** A two-level run going on, and the subfolders' listings asked of it before their parts were whole. */
interface DeepRun {
  at: number;
  rows: RunRows;
  waiting: Map<string, { p: Promise<DaemonListing | undefined>; resolve: (v: DaemonListing | undefined) => void }>;
}

/** When source() renews a folder's listing in the background (RENEW_TTLS x dir_timeout, at least RENEW_MIN_MS), or waits for one. */
const RENEW_TTLS = 2;
const RENEW_MIN_MS = 60_000;
const WAIT_RENEWS = 5;
/** How long a folder whose listing failed goes without another try (ms). */
const LIST_RETRY_MS = 5000;
/** Folders whose listing is kept (least recently fetched go first). */
const MAX_FOLDERS = 2000;
/**
 * Rows of a two-level run past which the folder's own one-level run starts alongside (see the top
 * of this file), and past which the two-level run is stopped.
 */
export const DEEP_ROWS_MAX = 5000;
export const DEEP_ROWS_HARD = 20_000;

/** What one listing run collected: the folder's own rows, and its subfolders' in a two-level run. */
class RunRows {
  readonly rows = new Map<string, ListedRow>();
  readonly dirs = new Map<string, number>();
  readonly subs = new Map<string, { rows: Map<string, ListedRow>; dirs: Map<string, number> }>();
  /** The folder's own time (its "." row). */
  self: number | undefined;
  /** Rows seen (the two-level run's bound). */
  seen = 0;
  /** Subfolders in the order their rows came, and whether one's rows came apart (see complete()). */
  private readonly order: string[] = [];
  private apart = false;
  /** The subfolder whose row came last of the folder's own (its rows follow it), and those passed. */
  private current: string | undefined;
  private readonly passed = new Set<string>();
  /** Rows of a subfolder came other than right after its own row: no part is served early. */
  private strayed = false;

  add(r: ListedRow): void {
    const slash = r.name.indexOf('/');
    if (slash < 0) {
      if (r.name === '.') this.self = r.mtimeMs;
      else if (r.type === 'file') this.rows.set(r.name, r);
      else this.dirs.set(r.name, r.mtimeMs);
      if (r.name !== '.') {
        if (this.current !== undefined) this.passed.add(this.current);
        this.current = r.type === 'dir' ? r.name : undefined;
      }
      return;
    }
    const sub = r.name.slice(0, slash);
    const name = r.name.slice(slash + 1);
    if (name.includes('/')) return;
    if (sub !== this.current) this.strayed = true;
    let m = this.subs.get(sub);
    if (!m) {
      this.subs.set(sub, m = { rows: new Map(), dirs: new Map() });
      this.order.push(sub);
    } else if (this.order[this.order.length - 1] !== sub) this.apart = true;
    if (r.type === 'file') m.rows.set(name, { ...r, name });
    else m.dirs.set(name, r.mtimeMs);
  }

  /** The run listed everything: the last subfolder's part is whole too. */
  end(): void {
    if (this.current !== undefined) this.passed.add(this.current);
    this.current = undefined;
  }

  /** Rows of subfolders came. */
  get below(): boolean { return this.order.length > 0; }

  /** Whether the folder's own rows name `name` (a file or a subfolder). */
  has(name: string): boolean { return this.rows.has(name) || this.dirs.has(name); }

  /** The folder's own rows so far, apart from what the run adds later. */
  top(): RunRows {
    const t = new RunRows();
    for (const [k, v] of this.rows) t.rows.set(k, v);
    for (const [k, v] of this.dirs) t.dirs.set(k, v);
    t.self = this.self;
    return t;
  }

  /**
   * A subfolder's part while the run goes on, once whole: rsync lists a folder's rows right after
   * the folder's own row, so the part ended when the next row of the folder itself came (checked:
   * none came apart so far). Undefined while it may grow.
   */
  part(sub: string): { rows: Map<string, ListedRow>; dirs: Map<string, number>; self: number } | undefined {
    if (this.apart || this.strayed || !this.passed.has(sub)) return undefined;
    const m = this.subs.get(sub);
    return { rows: new Map(m?.rows), dirs: new Map(m?.dirs), self: this.dirs.get(sub)! };
  }

  /**
   * Of a run stopped early, the subfolders whose parts are whole: rsync lists a folder's rows
   * together, so every one but the last begun ended when the next began. None if the rows came
   * interleaved after all (then no part is trusted), nor folders of which no row came.
   */
  complete(): string[] {
    return this.apart ? [] : this.order.slice(0, -1).filter((sub) => this.dirs.has(sub));
  }
}
const TOO_MANY = new Error('more rows than a two-level listing takes');

export interface ListingHooks {
  /**
   * Runs `rsync --list-only` of the folder (mount path), each row to onRow (the folder's own as
   * "."); with deep, the subfolders' entries too, named "sub/name"; rejects as rsync() does (and
   * when signal ends).
   */
  run(dir: string, onRow: (r: ListedRow) => void, o?: { deep?: boolean; signal?: AbortSignal }): Promise<void>;
  /** True while an upload of ours of dir/name (dir in wire form) is not confirmed yet. */
  uploading(wireDir: string, name: string): boolean;
  closed(): boolean;
  log: Logger;
}

export class DaemonListings {
  /** The drive's dir_timeout: how old a listing revalidate() may use. */
  ttlMs: number;
  private readonly slots = new Map<string, Slot>();
  private readonly touched = new Map<string, number>();
  /** Two-level runs still listing subfolders after their folder's own listing landed. */
  private readonly tails = new Set<Promise<void>>();
  private failLogged = 0;

  private readonly deepRowsMax: number;
  private readonly deepRowsHard: number;

  /** bounds: DEEP_ROWS_MAX and DEEP_ROWS_HARD unless told (tests). */
  constructor(private readonly hooks: ListingHooks, ttlMs: number, bounds: { deepRowsMax?: number; deepRowsHard?: number } = {}) {
    this.ttlMs = Math.max(0, ttlMs);
    this.deepRowsMax = bounds.deepRowsMax ?? DEEP_ROWS_MAX;
    this.deepRowsHard = Math.max(this.deepRowsMax, bounds.deepRowsHard ?? DEEP_ROWS_HARD);
  }

  /**
   * Where list() and stat() take mtimes from: the folder's cached listing (revalidate(), not
   * this, bounds what cached content may rely on). Waited for only when the folder has none
   * (once per folder: a listing is then kept up to date by our own changes), or one older than
   * WAIT_RENEWS renewal periods (a folder nobody looked at for long). Renewed in the background
   * when older than the renewal period, or older than dir_timeout with a file that the sizes just
   * read and its row disagree on (another client's new or resized file), except dot files
   * (rsync's temporary files) and our uploads in flight: a folder we write into, or read from,
   * costs no runs after its first.
   */
  async source(dir: string, es: RemoteEntry[], deep = true): Promise<DaemonListing | undefined> {
    const s = this.slots.get(dir);
    const v = s?.value;
    if (!v) return this.since(dir, -Infinity, deep);
    const age = Date.now() - v.at;
    const renew = Math.max(this.ttlMs * RENEW_TTLS, RENEW_MIN_MS);
    if (age > renew * WAIT_RENEWS) return this.get(dir, renew * WAIT_RENEWS);
    const wireDir = pathParts(dir).join('/');
    const stale = age > renew || (age > this.ttlMs && es.some((e) => e.type === 'file' && !e.name.startsWith('.')
      && !matches(e, v.rows.get(e.name)) && !this.hooks.uploading(wireDir, e.name)));
    if (stale && !s!.inflight) void this.get(dir, 0);
    return v;
  }

  /**
   * Starts the first listing of a folder that has none (nor one in flight), without waiting: the
   * caller will want it soon (list() before its ops/list call, a folder's stat for its own
   * listing), and a cold `ls -l a/b/c` then runs the listings of each level side by side, where
   * each waited for the one before (one rsync run each, 150-500 ms).
   */
  prime(path: string, deep = true): void {
    // slots are keyed as parentOf() spells folders
    const dir = '/' + pathParts(path).join('/');
    const s = this.slots.get(dir);
    if (s?.value || s?.inflight) return;
    void this.since(dir, -Infinity, deep);
  }

  /**
   * The folder's names as the API listed them (all of them, our own temporary files aside): its
   * run in flight serves the listing once each has its row (see since()).
   */
  expect(path: string, names: ReadonlySet<string>): void {
    this.slots.get('/' + pathParts(path).join('/'))?.expect?.(names);
  }

  /**
   * Whether path is likely a folder, with no request (a hint, not an answer): what the parent's
   * last daemon listing says (however old); with none, whether the name has no extension (most
   * folders have none, most files one: `d01`, `src`, not `notes.txt`).
   */
  likelyFolder(path: string): boolean {
    const parts = pathParts(path);
    if (parts.length === 0) return true;
    const name = parts[parts.length - 1]!;
    const listed = this.slots.get(parentOf(path))?.value;
    if (listed) return listed.dirs.has(name);
    return name.lastIndexOf('.') <= 0;
  }

  /** dirTime() answers at once (the parent's listing is cached; the top folder has none to wait for). */
  dirTimeAtHand(path: string): boolean {
    return pathParts(path).length === 0 || !!this.slots.get(parentOf(path))?.value;
  }

  /**
   * A folder's mtime for a lookup of the folder: from its parent's cached listing, as before; with
   * none, from whichever comes first of the parent's run in flight and the folder's own run (its
   * "." row), started at once. A path walk (`ls -l a/b/c`) looks up each level right after the
   * one above; the parent's two-level run is then still on its way (it started with the parent's
   * lookup), and if its two levels hold more than DEEP_ROWS_MAX rows it is given up and run again
   * one level deep: the folder's time waited for both runs and then its own listing a third
   * (measured at 20 ms RTT: 1.3 s of a 1.8 s `ls -l` of 1,000 files). Its own run is the one the
   * listing that usually follows needs anyway.
   */
  async dirTime(path: string): Promise<number | undefined> {
    const dir = '/' + pathParts(path).join('/');
    const parent = parentOf(path);
    const name = baseName(path);
    const ps = this.slots.get(parent);
    if (ps?.value) {
      // (the folder is about to be listed, or looked into: its own run starts now all the same)
      this.prime(path);
      return (await this.source(parent, []))?.dirs.get(name);
    }
    const ownRun = this.since(dir, -Infinity, true, true);
    // its "." row, the run's first: the time is known long before the folder's other rows
    const s = this.slots.get(dir);
    const own = s?.inflight && s.selfP ? firstDefined([s.selfP, ownRun.then((v) => v?.self)]) : ownRun.then((v) => v?.self);
    if (!ps?.inflight) return (await own) ?? (await this.source(parent, []))?.dirs.get(name);
    return firstDefined([own, this.source(parent, []).then((v) => v?.dirs.get(name))]);
  }

  /**
   * A folder's listing no older than maxAgeMs (one in flight that started within it counts), or
   * the last one when a new one cannot be had (the daemon out of reach), or undefined. Never
   * rejects. Not tied to a caller's signal: other callers may share it; rsync's own timeouts
   * bound it.
   */
  get(dir: string, maxAgeMs: number): Promise<DaemonListing | undefined> {
    return this.since(dir, Date.now() - maxAgeMs);
  }

  /**
   * As get(), for a listing whose run started at `oldest` (ms since the epoch) or later; deep: a
   * new run also lists the subfolders (the first listing of a folder, see the top of this file);
   * own: a run of its own even while its parent's two-level run is on its way (see dirTime()).
   */
  async since(dir: string, oldest: number, deep = false, own = false): Promise<DaemonListing | undefined> {
    const now = Date.now();
    let s = this.slots.get(dir);
    if (s?.value && s.value.at >= oldest) return s.value;
    if (s?.inflight && s.inflightAt >= oldest) return oldest === -Infinity ? this.orEarly(dir, s.inflight) : s.inflight;
    // a listing that just failed is not tried again for every call meanwhile
    if (s?.failedAt !== undefined && now - s.failedAt < LIST_RETRY_MS) return s.value;
    if (s?.inflight) {
      // one run per folder at a time: the one in flight started too early for this caller (the
      // callers that waited for it share the next one)
      await s.inflight;
      return this.since(dir, oldest, deep, own);
    }
    // a folder never listed whose parent's two-level run is on its way, or finishing its
    // subfolders after the parent's own listing landed by its names: that run lists it (a cold
    // walk looks a folder up, which primes it, while its parent's run is still going)
    const ps = dir === '/' || s?.value || own ? undefined : this.slots.get(parentOf(dir));
    const parentRun = ps && ps.inflightAt >= oldest ? (ps.inflightDeep && ps.inflight) || ps.deepTail : undefined;
    if (parentRun) {
      const after = parentRun.then(() => this.since(dir, oldest, deep));
      return oldest === -Infinity ? this.orEarly(dir, after) : after;
    }
    if (!s) s = this.add(dir, { inflightAt: 0, own: new Map() });
    const slot = s;
    const at = Date.now();
    slot.inflightAt = at;
    slot.inflightDeep = deep;
    const p = (async () => {
      const whole = new RunRows();
      const stop = new AbortController();
      // the folder's own one-level run, started once the two-level one grew past deepRowsMax
      let aloneOn = false;
      let startAlone!: () => void;
      const alone = new Promise<RunRows>((resolve, reject) => {
        startAlone = () => {
          aloneOn = true;
          const one = new RunRows();
          this.hooks.run(dir, (r) => one.add(r)).then(() => resolve(one), reject);
        };
      });
      // The folder's own rows are complete once every name the API gave (expect()) has its row:
      // the listing is served then, not after rsync's closing exchange (three round trips and a
      // 20 ms exit poll: ~110 ms of a run at 20 ms RTT) nor, in a two-level run, after the rows
      // of the subfolders that come after its last name.
      let resolveByNames!: (r: RunRows) => void;
      let named: RunRows | undefined;
      const byNames = new Promise<RunRows>((res) => { resolveByNames = (r) => { named = r; res(r); }; });
      let namesWanted: Set<string> | undefined;
      let missing = -1;
      let resolveSelf!: (t: number | undefined) => void;
      slot.selfP = new Promise((res) => { resolveSelf = res; });
      const expect = (names: ReadonlySet<string>) => {
        if (namesWanted) return;
        namesWanted = new Set(names);
        missing = 0;
        for (const n of namesWanted) if (!whole.has(n)) missing++;
        if (missing === 0 && whole.self !== undefined) resolveByNames(whole.top());
      };
      slot.expect = expect;
      const onRow = (r: ListedRow) => {
        if (deep) {
          const n = ++whole.seen;
          // Rows of the folder itself alone, as many as they are, are what a one-level run lists:
          // the bounds count once rows of subfolders came (a flat folder of 100,000 files stopped
          // at the hard bound left its listing to a one-level run never started: EIO)
          if (n > this.deepRowsHard && whole.below) { if (!stop.signal.aborted) stop.abort(TOO_MANY); return; }
          // (not once the folder's names told its own rows complete)
          if (n > this.deepRowsMax && !aloneOn && !named && whole.below) startAlone();
        }
        const wanted = missing > 0 && namesWanted!.has(r.name) && !whole.has(r.name);
        whole.add(r);
        if (r.name === '.') resolveSelf(r.mtimeMs);
        if (wanted && --missing === 0 && whole.self !== undefined) resolveByNames(whole.top());
        if (live && live.waiting.size > 0 && !r.name.includes('/')) this.servePartsAsked(dir, live);
      };
      const live: DeepRun | undefined = deep ? { at, rows: whole, waiting: new Map() } : undefined;
      if (live) slot.deepRun = live;
      const run = this.hooks.run(dir, onRow, deep ? { deep, signal: stop.signal } : undefined)
        .then(() => true, (e) => { if (stop.signal.reason === TOO_MANY) return false; throw e; });
      if (live) {
        void run.then((done) => { if (done) whole.end(); }, () => {}).then(() => {
          if (slot.deepRun === live) slot.deepRun = undefined;
          this.servePartsAsked(dir, live, true);
        });
      }
      void run.then(() => resolveSelf(whole.self), () => resolveSelf(undefined))
        .finally(() => { if (slot.expect === expect) slot.expect = undefined; });
      let got: RunRows;
      try {
        if (!deep) {
          got = await Promise.race([run.then(() => whole), byNames]);
        } else {
          // the folder's own rows: from the two-level run if it completes first, else from the
          // one-level one (a stopped or failed two-level run falls back on it once it started)
          const fromWhole = run.then((done) => {
            if (done) return whole;
            // stopped at the hard bound: the folder's own rows come from the one-level run
            if (!aloneOn) startAlone();
            return alone;
          }, (e) => { if (aloneOn) return alone; throw e; });
          got = await Promise.race([fromWhole, alone.catch(() => fromWhole), byNames]);
          if (got !== whole) {
            // the subfolders' parts are kept when the two-level run ends. A subfolder asked for
            // meanwhile waits for that end when the folder's names told it complete (what is left
            // is its closing exchange and the last subfolder's rows); when the one-level run
            // told it, a run of its own rather than all the rows (a big tree's tail can take a
            // second)
            const tail = run.then((done) => this.adoptSubfolders(dir, at, whole.dirs, whole.subs, done ? undefined : whole.complete()), () => {});
            this.tails.add(tail);
            if (got === named) slot.deepTail = tail;
            void tail.finally(() => {
              this.tails.delete(tail);
              if (slot.deepTail === tail) slot.deepTail = undefined;
            });
          }
        }
      } catch (e) {
        // (a folder gone, or a name guessed to be one that is a file: nothing to warn of)
        const missing = isRemoteError(e, 'NOT_FOUND') || isRemoteError(e, 'NOT_A_DIRECTORY');
        if (!missing) slot.failedAt = Date.now();
        if (!missing && !this.hooks.closed() && Date.now() - this.failLogged > 60_000) {
          this.failLogged = Date.now();
          this.hooks.log.warn(`maxxo: no mtimes for ${JSON.stringify(dir)} (rsync listing failed: ${(e as Error).message}); changes of the same size by other clients go unseen meanwhile`);
        }
        slot.own.clear();
        return slot.value;
      }
      slot.failedAt = undefined;
      // our own changes made while it ran may be missing from it
      const { rows, dirs, subs } = got;
      let self = got.self;
      for (const [name, row] of slot.own) setRow(rows, dirs, name, row);
      slot.own.clear();
      // a time we set on the folder while it ran (the top folder's: folderTime('/'))
      if (slot.ownSelf !== undefined) self = slot.ownSelf;
      slot.ownSelf = undefined;
      const value: DaemonListing = { at, rows, dirs, ...(self !== undefined ? { self } : {}) };
      slot.value = value;
      if (this.slots.get(dir) === slot) {
        // refreshed ones go to the end: the first in the map is the least recently fetched
        this.slots.delete(dir);
        this.slots.set(dir, slot);
      }
      if (deep && got === whole) this.adoptSubfolders(dir, at, dirs, subs);
      if (slot.staleSince !== undefined) return this.since(dir, slot.staleSince, deep);
      return value;
    })();
    slot.inflight = p;
    void p.finally(() => { if (slot.inflight === p) slot.inflight = undefined; });
    return oldest === -Infinity ? this.orEarly(dir, p) : p;
  }

  /**
   * A folder's listing from its parent's two-level run going on, once its part is whole there
   * (see RunRows.part()): a cold walk (`ls -l a/b`) looks b up while a's run lists b's rows, and
   * b's own run (started by the lookup) gives its first row a round trip later. Only for callers
   * that take any listing (the first of a folder): the part is as old as the parent's run. Not
   * when a change of ours landed in the folder, or in its parent, since that run began.
   */
  private earlyPart(dir: string): Promise<DaemonListing | undefined> | undefined {
    if (dir === '/') return undefined;
    const live = this.slots.get(parentOf(dir))?.deepRun;
    if (!live || this.changedSince(dir, live.at)) return undefined;
    const name = baseName(dir);
    const part = live.rows.part(name);
    if (part) return Promise.resolve({ at: live.at, ...part });
    let w = live.waiting.get(name);
    if (!w) {
      let resolve!: (v: DaemonListing | undefined) => void;
      const p = new Promise<DaemonListing | undefined>((r) => { resolve = r; });
      live.waiting.set(name, w = { p, resolve });
    }
    return w.p;
  }

  /** p, or dir's part of its parent's run going on if that comes first (see earlyPart()). */
  private orEarly(dir: string, p: Promise<DaemonListing | undefined>): Promise<DaemonListing | undefined> {
    const early = this.earlyPart(dir);
    return early ? firstDefined([p, early]) : p;
  }

  /** Answers the subfolders asked of a two-level run whose parts are whole now (all: the run is over). */
  private servePartsAsked(dir: string, live: DeepRun, all = false): void {
    const base = dir === '/' ? '' : dir;
    for (const [name, w] of live.waiting) {
      const part = live.rows.part(name);
      if (!part && !all) continue;
      live.waiting.delete(name);
      w.resolve(part && !this.changedSince(`${base}/${name}`, live.at) ? { at: live.at, ...part } : undefined);
    }
  }

  /**
   * A change of ours landed in dir, or in its parent, since `at`; or we set dir's time while its
   * parent's run is in flight (folderTime()).
   */
  private changedSince(dir: string, at: number): boolean {
    const parent = parentOf(dir);
    return (this.touched.get(dir) ?? -1) >= at || (this.touched.get(parent) ?? -1) >= at
      || !!this.slots.get(parent)?.own.has(baseName(dir));
  }

  /**
   * The subfolders' parts of a two-level listing of dir, run from `at`: each a complete listing of
   * its folder (an empty folder has no rows), kept where no newer one is cached or on its way and
   * no change of ours landed in it, or in dir, since the run began (it may have missed that).
   * only: the subfolders to keep (of a run stopped early, those whose parts are whole).
   */
  private adoptSubfolders(dir: string, at: number, dirs: Map<string, number>,
    subs: Map<string, { rows: Map<string, ListedRow>; dirs: Map<string, number> }>, only?: string[]): void {
    const base = dir === '/' ? '' : dir;
    if ((this.touched.get(dir) ?? -1) >= at) return;
    for (const name of only ?? dirs.keys()) {
      const child = `${base}/${name}`;
      const s = this.slots.get(child);
      if (s?.inflight || (s?.value && s.value.at >= at) || (this.touched.get(child) ?? -1) >= at) continue;
      const m = subs.get(name);
      const value: DaemonListing = { at, rows: m?.rows ?? new Map(), dirs: m?.dirs ?? new Map(), self: dirs.get(name)! };
      if (s) s.value = value;
      else this.add(child, { value, inflightAt: 0, own: new Map() });
    }
  }

  /** Settles once no two-level run is still listing subfolders (tests: what such a run kept). */
  async settled(): Promise<void> {
    while (this.tails.size) await Promise.all(this.tails);
  }

  /** The cached row of a file (any age); null: not in its folder's cached listing; undefined: no listing of the folder. */
  row(path: string): ListedRow | null | undefined {
    const v = this.slots.get(parentOf(path))?.value;
    return v ? v.rows.get(baseName(path)) ?? null : undefined;
  }

  /**
   * One of our own changes to path is done (row: the file as it is now; null: none there, or a
   * version to be checked again; undefined: something is there whose row we do not know, a file
   * moved from a folder never listed): the cached listing of its folder says so, so folders we
   * write into need no new runs; for an unknown row it is dropped (the next revalidation lists
   * the folder, where "no row" would have dropped the cached bytes of the moved file). Listings
   * of what was below path (a folder moved or deleted) are dropped.
   */
  own(path: string, row: ListedRow | null | undefined): void {
    const name = baseName(path);
    this.noteTouched(parentOf(path));
    if (row === undefined) {
      // (its run in flight would still answer the callers waiting for it, with the folder as it
      // was before this change: an entry without a time (model soak seeds 275248, 275279), which
      // the drive then kept as the identity of the file it opened)
      const was = this.slots.get(parentOf(path));
      if (was?.inflight) was.staleSince = Date.now();
      this.slots.delete(parentOf(path));
    }
    const s = this.slots.get(parentOf(path));
    if (s) {
      if (s.inflight) s.own.set(name, row!);
      if (s.value) setRow(s.value.rows, s.value.dirs, name, row!);
    }
    const norm = '/' + pathParts(path).join('/');
    for (const k of [...this.slots.keys()]) if (k === norm || k.startsWith(norm + '/')) this.slots.delete(k);
  }

  /** We set folder path's mtime: its parent's cached listing says so (its own listing stays). */
  folderTime(path: string, mtimeMs: number): void {
    if (pathParts(path).length === 0) {
      // the top folder: its own listing's "." row
      const top = this.slots.get('/');
      if (top?.inflight) top.ownSelf = mtimeMs;
      if (top?.value) top.value.self = mtimeMs;
      return;
    }
    const s = this.slots.get(parentOf(path));
    const row: ListedRow = { name: baseName(path), type: 'dir', size: 0, mtimeMs };
    if (s?.inflight) s.own.set(row.name, row);
    if (s?.value) setRow(s.value.rows, s.value.dirs, row.name, row);
  }

  /**
   * A folder we just made is empty: its listing is known without a run. Not when one of our own
   * changes landed in it since `since` (when the making began): an upload that carried the folder
   * (it makes missing parents) found no listing to write its row into, and an empty one would say
   * its file is not there (revalidate: no mtime, the drive drops the cached content).
   */
  madeFolder(path: string, since = 0): void {
    const dir = '/' + pathParts(path).join('/');
    if (this.slots.has(dir) || (this.touched.get(dir) ?? -1) >= since) return;
    this.add(dir, { value: { at: Date.now(), rows: new Map(), dirs: new Map() }, inflightAt: 0, own: new Map() });
  }

  /** When our own change of a name in dir last landed (a bounded number of folders). */
  private noteTouched(dir: string): void {
    const k = '/' + pathParts(dir).join('/');
    this.touched.delete(k);
    this.touched.set(k, Date.now());
    if (this.touched.size > MAX_FOLDERS) this.touched.delete(this.touched.keys().next().value!);
  }

  private add(dir: string, s: Slot): Slot {
    this.slots.set(dir, s);
    if (this.slots.size > MAX_FOLDERS) this.slots.delete(this.slots.keys().next().value!);
    return s;
  }
}

/** The first of ps to settle with a value, else undefined once all settled. */
function firstDefined<T>(ps: Promise<T | undefined>[]): Promise<T | undefined> {
  return new Promise((resolve) => {
    let left = ps.length;
    const one = (v: T | undefined) => {
      if (v !== undefined) resolve(v);
      else if (--left === 0) resolve(undefined);
    };
    for (const p of ps) p.then(one, () => one(undefined));
  });
}

/**
 * A row of ours (null: none there now) into a listing's maps. A row that does not say whether the
 * file is executable (a download's: rsync into a cache file carries no -E) keeps what the listing
 * says of the same version (size and mtime): without that, a download while the folder's run was
 * in flight made the file show 0644 for its listing's life (model soak seed 275005).
 */
function setRow(rows: Map<string, ListedRow>, dirs: Map<string, number>, name: string, row: ListedRow | null): void {
  const had = rows.get(name);
  rows.delete(name);
  dirs.delete(name);
  if (row?.type === 'file') {
    const same = row.exec === undefined && had?.exec !== undefined && had.size === row.size && had.mtimeMs === row.mtimeMs;
    rows.set(name, same ? { ...row, exec: had.exec } : row);
  } else if (row) dirs.set(name, row.mtimeMs);
}

/** Same file, same size: the daemon's row is of the version ops/list or ops/filesize described. */
function matches(e: RemoteEntry, row: ListedRow | undefined): boolean {
  return !!row && row.type === 'file' && row.size === e.size;
}

/**
 * Gives an entry its mtime from the daemon listing: a file's (and its executability) when the row
 * is of the same version, a folder's as the daemon's filesystem has it.
 */
export function withMtime(e: RemoteEntry, listed: DaemonListing | undefined): void {
  if (e.type === 'dir') {
    const m = listed?.dirs.get(e.name);
    if (m !== undefined) e.mtimeMs = m;
    return;
  }
  if (e.type !== 'file') return;
  const row = listed?.rows.get(e.name);
  if (!matches(e, row)) return;
  e.mtimeMs = row!.mtimeMs;
  if (row!.exec !== undefined) e.mode = modeOf(row!.exec);
}

/**
 * The mode an entry reports: the daemon holds whether a file is executable (rsync -E), shown as
 * 0755 or 0644 (only FILE_MODE_BITS of it mean anything: see FileMetadata.modeBits).
 */
export function modeOf(exec: boolean): number {
  return exec ? 0o755 : 0o644;
}

/** The bits of a file's mode the service holds: executable or not. */
export const FILE_MODE_BITS = 0o111;

export function baseName(path: string): string {
  return pathParts(path).pop() ?? '';
}

export function parentOf(path: string): string {
  const parts = pathParts(path);
  parts.pop();
  return '/' + parts.join('/');
}
