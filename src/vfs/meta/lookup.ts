// Lookup: what the drive shows at a path — local state first, then the caches, then the server —
// with the ways a lookup avoids a round trip per name: stats batched into one call (statMany),
// a folder listed after a few stats of its names, and the speculative listing started with the
// first stat in a folder, whose answer serves the misses that follow (a rename's missing target,
// the file a program is about to create); where the remote lists a file as cheaply as it stats it
// (Remote.listBeforeType), the name stat'ed is listed too, in case it is a folder a program walks
// into.
//
// Owns: stats in flight, per-folder stat counts, speculative listings, the pending stat batch.
// Depends on: MetaCache (caches and listings), a LocalView (what local content overrides).
// Rules: an in-flight stat or listing is joined only by callers of the same folder generation
// (MetaCache.dirGen); an answer that raced our own change is not cached.
import { BadRequest, BadResponse, NotADirectory, NotFound, isRemoteError } from '../../errors.js';
import { Priority, type RemoteEntry } from '../../remote/types.js';
import { errText, type Ctx } from '../context.js';
import { baseOf, parentOf } from '../paths.js';
import type { DirSlot, MetaCache } from './cache.js';

/** What local state says of a path, before any cache: content that overrides the server. */
export interface LocalView {
  /** A deleted file still open under a local-only name (never on the server). */
  hidden(path: string): RemoteEntry | undefined;
  /** Local content (dirty, pending, local-only) at path. */
  local(path: string): RemoteEntry | undefined;
  /** Deleted by us, the delete not yet confirmed: gone whatever the server still says. */
  deleted?(path: string): boolean;
}

/** A folder's listing started together with its first stat, and when that stat answered. */
interface SpecListing {
  gen: number;
  /** The listing; undefined if it failed. */
  p: Promise<DirSlot | undefined>;
  started: number;
  /** Resolves with the paired stat's round trip (ms) once it answered, however it ended. */
  statTook: Promise<number>;
  /** Once landed: the listing, and until when its misses answer lookups (one round trip more). */
  slot?: DirSlot;
  missesUntil?: number;
  /**
   * The folder's names, where the remote tells them before the whole listing (Remote.list
   * onNames: Maxxo's mtimes take an rsync run more), and until when they answer misses.
   */
  names?: ReadonlySet<string>;
  namesUntil?: number;
  /** Settles when the names came, or the listing ended without them. */
  namesIn: Promise<void>;
}

interface StatBatch {
  /** The drive's paths, and where the server has each (a rename written back not sent yet). */
  paths: string[];
  ats: string[];
  waiters: Map<string, { resolve: (e: RemoteEntry | null) => void; reject: (e: unknown) => void }[]>;
}

const ROOT_ENTRY: RemoteEntry = { name: '', type: 'dir', size: 0 };

function missingFolder(e: unknown): undefined {
  // a folder gone (or now a file) is the stat's to answer; any other failure (timeout, 5xx) is
  // this lookup's: a stat after it would only double the wait for the same error
  if (isRemoteError(e, 'NOT_FOUND') || isRemoteError(e, 'NOT_A_DIRECTORY')) return undefined;
  throw e;
}

export class Lookup {
  /** In-flight fetches, each with the generation it started at: a later caller joins only an unchanged one. */
  private readonly statInflight = new Map<string, { gen: number; p: Promise<RemoteEntry | null> }>();
  /** Per folder without a listing: how many of its names were stat'ed since when. */
  private readonly statCounts = new Map<string, { n: number; since: number }>();
  /** Listings started alongside the first stat in a folder: lookups after it wait for them (bounded). */
  private readonly specLists = new Map<string, SpecListing>();
  private statBatch: StatBatch | null = null;
  /** The top folder: no parent lists it; its time is the service's where it keeps one (fetchRoot). */
  private root: RemoteEntry = ROOT_ENTRY;
  private rootP: Promise<void> | undefined;

  constructor(private readonly ctx: Ctx, private readonly meta: MetaCache, private readonly view: LocalView) {}

  /** What the caches alone know: an entry, null (known missing), or undefined (ask the server). */
  peek(path: string): RemoteEntry | null | undefined {
    if (path === '/') return this.root;
    return this.view.hidden(path) ?? this.view.local(path) ?? (this.view.deleted?.(path) ? null : this.meta.cached(path));
  }

  /** peek, but nothing for the top folder while its own entry is on its way (lookup waits for it). */
  peekSettled(path: string): RemoteEntry | null | undefined {
    return path === '/' && this.rootP ? undefined : this.peek(path);
  }

  /**
   * Asks the service for the top folder's own entry (its mtime, on a service that keeps folder
   * times): started at mount, waited for by the first lookup of '/', so the time a program first
   * sees is the one it keeps seeing. A failure leaves the entry without a time (mount time shown).
   */
  fetchRoot(): void {
    if (!this.ctx.remote.fileMeta?.folderTimes) return;
    this.rootP = this.ctx.bounded('stat of the top folder', (signal) => this.ctx.remote.stat('/', { signal, priority: Priority.interactive }))
      .then((e) => { if (e?.type === 'dir' && this.root === ROOT_ENTRY) this.root = { ...e, name: '' }; })
      .catch(() => {})
      .finally(() => { this.rootP = undefined; });
  }

  /** Our change of the top folder's time reached the server. */
  setRoot(e: RemoteEntry): void {
    this.root = { ...e, name: '', type: 'dir' };
  }

  async existing(path: string): Promise<RemoteEntry> {
    const e = await this.lookup(path);
    if (!e) throw new NotFound('no such file or directory', { path });
    return e;
  }

  async parentDir(path: string): Promise<void> {
    if (path === '/') throw new BadRequest('the top folder cannot be changed', { path });
    const pe = await this.lookup(parentOf(path));
    if (!pe) throw new NotFound('parent folder does not exist', { path });
    if (pe.type !== 'dir') throw new NotADirectory('parent is not a folder', { path });
  }

  /** A folder about to be listed: unknown ones are checked by the listing itself (one call, not two). */
  checkDirCached(path: string): void {
    const e = this.peek(path);
    if (e === null) throw new NotFound('no such folder', { path });
    if (e && e.type !== 'dir') throw new NotADirectory('not a folder', { path });
  }

  /** What the drive shows at path: local state first, then caches, then the server. */
  async lookup(path: string): Promise<RemoteEntry | null> {
    if (path === '/' && this.rootP) await this.rootP;
    const known = this.peek(path);
    if (known !== undefined) return known;
    const { meta } = this;
    const dir = parentOf(path);
    // A listing that ran out only just now (ls -l of a big folder outlasting dirTtlMs): one
    // refetch answers this name and every sibling still to come, where a stat per name costs a
    // round trip each (100,000 names at 20 ms: over half an hour). Long-idle listings are not
    // refetched for one name: a stat is cheaper than a big listing.
    const stale = path === '/' ? undefined : meta.dirs.get(dir);
    if (stale && stale.expires > Date.now() - this.ctx.opts.dirTtlMs) {
      const fresh = await meta.listing(dir).catch(missingFolder);
      if (fresh) {
        if (fresh !== stale && stale.implicit && meta.dirs.get(dir) === fresh) fresh.implicit = true;
        const again = this.peek(path);
        if (again !== undefined) return again;
      }
    }
    const gen0 = meta.dirGen(dir);
    const inf0 = this.statInflight.get(path);
    if (inf0 && inf0.gen === gen0) return inf0.p;
    // A listing started with the first stat in this folder answers misses too while it is as fresh
    // as a stat sent now would be: still in flight (asked before this lookup, so for a small
    // folder it answers sooner than our own stat), or landed less than its own round trip ago.
    // That is the negative lookup of a rename's target or of a file about to be made.
    const spec = path === '/' ? undefined : this.specLists.get(dir);
    if (spec) {
      const d = await this.specAnswer(dir, spec, gen0, baseOf(path));
      if (d === 'missing') {
        // made locally while we waited
        const again = this.peek(path);
        if (again !== undefined) return again;
        meta.setAttr(path, null);
        return null;
      }
      if (d) {
        const again = this.peek(path);
        if (again !== undefined) return again;
        // cached like a stat's negative answer
        meta.setAttr(path, null);
        return null;
      }
    }
    const cur = path === '/' ? undefined : meta.dirs.get(dir);
    let speculate = false;
    let guess = false;
    if (path !== '/' && !(cur && cur.expires > Date.now())) {
      const worth = this.statsWorthListing(dir);
      if (worth === 'list') {
        const listed = await meta.listing(dir).catch(missingFolder);
        if (listed) {
          meta.markImplicit(dir, cur, listed);
          const again = this.peek(path);
          if (again !== undefined) return again;
        }
      } else if (worth === 'first') {
        speculate = this.speculationWorth(dir);
        guess = this.guessWorth(path);
      }
    }
    const gen = meta.dirGen(dir);
    const inf = this.statInflight.get(path);
    if (inf && inf.gen === gen) return inf.p;
    const slot = { gen, p: this.fetchStat(path, gen) };
    slot.p.finally(() => { if (this.statInflight.get(path) === slot) this.statInflight.delete(path); }).catch(() => {});
    this.statInflight.set(path, slot);
    if (speculate) this.speculativeListing(dir, cur, slot.p);
    if (guess) this.speculativeListing(path, meta.dirs.get(path), slot.p, true);
    return slot.p;
  }

  /**
   * Whether the first stat in a folder should also list the name it asks for, before the stat
   * says whether it is a folder. A cold path walk (`ls -l a/b/c`) costs a round trip per level
   * plus the listing of the last; with the name's listing asked alongside its stat, the next
   * level's lookup is answered from it and the last level's listing is on its way with its own
   * lookup: two round trips for a/b/c instead of four (measured at 20 ms RTT on vBoxx). Only
   * where such a listing of a file costs a stat's worth (Remote.listBeforeType), or where the
   * remote tells the name is likely a folder (Remote.likelyFolder: on Maxxo, where a listing costs
   * two API calls and an rsync run, its listing then starts a round trip before the stat says
   * it is one, and is about landed when the opendir that follows comes), once per folder (the
   * first stat in it), and not for names known to be big folders.
   */
  private guessWorth(path: string): boolean {
    const { remote } = this.ctx;
    return (!!remote.listBeforeType || !!remote.likelyFolder?.(path)) && this.mayListAhead(path);
  }

  /** A listing of path asked ahead of need: none landed or on its way, not a big folder, not turned off. */
  private mayListAhead(path: string): boolean {
    if (this.ctx.opts.speculativeListMaxEntries <= 0 || this.meta.isBig(path) || this.meta.freshListing(path)) return false;
    return !this.meta.listingInFlight(path, true);
  }

  /**
   * Whether the first stat in a folder should also list it: one listing answers every later lookup
   * there (`mv a b` looks up both names, a build opens its siblings), for one more request in
   * parallel. Not in folders known to be big, nor when a listing is on its way anyway.
   */
  private speculationWorth(dir: string): boolean {
    const max = this.ctx.opts.speculativeListMaxEntries;
    if (max <= 0 || this.ctx.opts.listAfterStats <= 0) return false;
    if (this.meta.isBig(dir)) return false;
    return !this.meta.listingInFlight(dir, true);
  }

  private speculativeListing(dir: string, cur: DirSlot | undefined, stat: Promise<unknown>, guess = false): void {
    const gen = this.meta.dirGen(dir);
    const started = Date.now();
    let namesIn!: () => void;
    const s: SpecListing = {
      gen, started, p: undefined!, statTook: stat.then(() => Date.now() - started, () => Date.now() - started),
      namesIn: new Promise<void>((res) => { namesIn = res; }),
    };
    const onNames = (names: ReadonlySet<string>) => {
      s.names = names;
      s.namesUntil = 2 * Date.now() - started;
      namesIn();
    };
    s.p = this.meta.listing(dir, false, Priority.interactive, onNames, guess, !guess).then((d) => {
      // fetched for lookups, not shown to a program: later misses are asked of the server again
      this.meta.markImplicit(dir, cur, d);
      s.slot = d;
      s.missesUntil = 2 * Date.now() - started;
      // the record (and the listing it holds) goes with its window
      setTimeout(() => { if (this.specLists.get(dir) === s) this.specLists.delete(dir); }, s.missesUntil - Date.now() + 1).unref();
      namesIn();
      return d;
    }, (e) => {
      namesIn();
      this.ctx.log.debug(`listing ${dir} for lookups: ${errText(e)}`);
      if (this.specLists.get(dir) === s) this.specLists.delete(dir);
      return undefined;
    });
    if (this.specLists.size >= 1000) this.specLists.clear();
    this.specLists.set(dir, s);
  }

  /**
   * A folder the remote said is one before its stat is complete (Remote statMany onTypes: on
   * Maxxo a folder's time takes a daemon run, 300-500 ms at 20 ms RTT): its listing starts now, so
   * the opendir that usually follows the lookup finds it landed, where it was asked only then
   * (one API round trip and the parse of the listing after the run; 50-80 ms of a cold `ls -l`
   * of 1,000 files). On Maxxo that listing waits for the same run, so it lands about when the
   * stat answers; as the speculative listing of the folder it then answers the lookups in it
   * (the next level of a path walk, a rename's target).
   */
  private listAhead(path: string): void {
    if (!this.mayListAhead(path)) return;
    const stat = this.statInflight.get(path)?.p ?? Promise.resolve();
    this.speculativeListing(path, this.meta.dirs.get(path), stat, true);
  }

  /**
   * The speculative listing if it may answer a miss of name in a lookup starting now (see lookup),
   * 'missing' if the names the remote told ahead of it answer that, else undefined. In flight, it
   * is waited for until it took twice the paired stat's round trip (plus a little): slower than
   * that, it is of a big folder (or its remote slow to complete it), and the lookup stats its
   * name after all. Names that came ahead are as fresh as a stat for as long as they took.
   */
  private async specAnswer(dir: string, s: SpecListing, gen: number, name: string): Promise<DirSlot | 'missing' | undefined> {
    if (s.gen !== gen || (s.missesUntil !== undefined && s.missesUntil <= Date.now())) {
      if (this.specLists.get(dir) === s) this.specLists.delete(dir);
      return undefined;
    }
    let d = s.slot;
    if (s.missesUntil === undefined) {
      let timer: NodeJS.Timeout | undefined;
      const limit = s.statTook.then((took) => new Promise<undefined>((res) => {
        timer = setTimeout(() => res(undefined), Math.max(0, s.started + 2 * took + 10 - Date.now()));
      }));
      const first = s.names ? undefined : await Promise.race([s.p, s.namesIn.then(() => undefined), limit]);
      d = s.slot ?? first;
      if (!d && s.names) {
        if (!s.names.has(name)) {
          clearTimeout(timer);
          if (this.meta.dirGen(dir) === s.gen && s.namesUntil! > Date.now()) return 'missing';
          // too old to say it is missing, and the rest of the listing adds no names: a stat asks
          // now. (Waiting for the listing cost a Maxxo rename's target lookup up to twice the
          // paired stat's time, which includes a daemon run: 450 ms of a 0.9 s folder rename.)
          return undefined;
        }
        // a name that is there: its entry (with what the rest of the listing adds) is still to come
        d = s.slot ?? await Promise.race([s.p, limit]);
      }
      clearTimeout(timer);
    }
    // our own change of the folder since: its answer may predate it
    if (!d || this.meta.dirs.get(dir) !== d || !(d.expires > Date.now()) || this.meta.dirGen(dir) !== s.gen) return undefined;
    return d;
  }

  /**
   * Counts stats of names in a folder we have no listing of. A program opening many files by name
   * (a build, `cat a b c`, a checker) costs a round trip per name and gets no prefetch; past a few
   * the folder's listing is cheaper. Once listed (or the count goes stale) the count starts over.
   */
  private statsWorthListing(dir: string): 'first' | 'stat' | 'list' {
    const max = this.ctx.opts.listAfterStats;
    if (max <= 0) return 'stat';
    const now = Date.now();
    const c = this.statCounts.get(dir);
    if (!c || c.since < now - this.ctx.opts.dirTtlMs) {
      if (this.statCounts.size >= 1000) this.statCounts.clear();
      this.statCounts.set(dir, { n: 1, since: now });
      return max <= 1 ? 'list' : 'first';
    }
    if (++c.n < max) return 'stat';
    this.statCounts.delete(dir);
    return 'list';
  }

  private async fetchStat(path: string, gen: number): Promise<RemoteEntry | null> {
    const { remote } = this.ctx;
    let e: RemoteEntry | null;
    const batched = !!remote.batchStat;
    try {
      // (a file or folder renamed, or one above it, its move not sent: the server has it at its old name)
      e = await this.ctx.atServer(path, (at) => batched
        ? this.batchedStat(path, at)
        : this.ctx.bounded(`stat ${path}`, (signal) => remote.stat(at, { signal, priority: Priority.interactive })), (r) => r === null);
      if (e && e.name !== baseOf(path)) e = { ...e, name: baseOf(path) };
    } catch (err) {
      // a parent that is a file reads as "no such entry" below it. Not for a batch: statMany
      // answers null per missing path, so its failure as a whole (a bare 404, a lost route) says
      // nothing about each path and must not become a negative entry for all of them.
      const missing = isRemoteError(err, 'NOT_A_DIRECTORY') || isRemoteError(err, 'NOT_FOUND');
      if (missing && !batched) e = null;
      else if (missing) throw new BadResponse(`stat of ${path} failed: ${(err as Error).message}`, { path });
      else throw err;
    }
    if (e && this.view.deleted?.(path)) e = null;
    // our own change raced this request: its answer may predate the change, so do not cache it
    if (this.meta.dirGen(parentOf(path)) === gen) this.meta.setAttr(path, e);
    return this.view.local(path) ?? e;
  }

  private batchedStat(path: string, at: string): Promise<RemoteEntry | null> {
    return new Promise((resolve, reject) => {
      let b = this.statBatch;
      if (!b) {
        b = this.statBatch = { paths: [], ats: [], waiters: new Map() };
        setTimeout(() => this.runStatBatch(b!), 2);
      }
      let w = b.waiters.get(path);
      if (!w) { w = []; b.waiters.set(path, w); b.paths.push(path); b.ats.push(at); }
      w.push({ resolve, reject });
      if (b.paths.length >= 200) this.runStatBatch(b);
    });
  }

  private runStatBatch(b: StatBatch): void {
    if (this.statBatch !== b) return;
    this.statBatch = null;
    const paths = b.paths;
    const onTypes = (es: readonly (RemoteEntry | null)[]) => es.forEach((e, i) => { if (e?.type === 'dir') this.listAhead(paths[i]!); });
    this.ctx.bounded(`stat of ${paths.length} paths`, (signal) => this.ctx.remote.batchStat!.statMany(b.ats, { signal, priority: Priority.interactive, onTypes }))
      .then((res) => {
        if (!Array.isArray(res) || res.length !== paths.length) throw new BadResponse('statMany answered a different number of entries');
        paths.forEach((p, i) => { for (const w of b.waiters.get(p)!) w.resolve(res[i] ?? null); });
      })
      .catch((err) => { for (const ws of b.waiters.values()) for (const w of ws) w.reject(err); });
  }
}
