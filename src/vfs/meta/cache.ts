// The attribute and listing caches, and the fetch of listings.
//
// Owns: attrs (path -> entry or negative entry, with expiry), dirs (folder -> listing), the
// change generations of folders (dirGen), the big-folder set and the listings in flight.
//
// Rules:
// - Our own changes are reflected in the caches at once (setInParent, forgetTree), which bumps
//   the folder's generation. An answer fetched while the generation moved may predate our change:
//   it is neither cached nor handed to callers that came after it (they start their own fetch).
//   Nor is a listing of a folder we removed meanwhile (its delete pending, or our negative entry):
//   it must not bring the folder back.
// - A listing is revalidated by hash where the remote can (vBoxx: 304 Not Modified).
// - A listing marked implicit was fetched for lookups, not shown to a program: its entries answer
//   lookups, but a name missing from it is still asked of the server.
import { LRUCache } from 'lru-cache';
import { NotFound } from '../../errors.js';
import { Priority, type RemoteEntry } from '../../remote/types.js';
import type { Ctx } from '../context.js';
import { PathIndex, baseOf, joinPath, parentOf } from '../paths.js';

/** Folders whose change generation is kept (as many as cached listings). */
const EPOCHS_KEPT = 20_000;

export interface AttrSlot { entry: RemoteEntry | null; expires: number }
export interface DirSlot {
  entries: Map<string, RemoteEntry>;
  hash?: string;
  expires: number;
  /**
   * Fetched because names were looked up one by one, not because a program listed the folder: its
   * entries answer lookups, but a name missing from it is still asked of the server (a file another
   * client just made must not vanish for a listing's TTL when nobody ran ls).
   */
  implicit?: boolean;
  /**
   * How many entries are folders (a folder's st_nlink), counted once and kept with setInParent:
   * counting at every stat was O(n) per file of a create or rm -rf in a big folder (the folder's
   * attributes are computed after each change, for the kernel's GETATTR that follows).
   */
  subdirs?: number;
}

/**
 * What a server answer told that differs from what an earlier one said (another client's change):
 * 'attr' the entry at path (size, mtime, type), 'gone' the name went away, 'listing' the names of
 * the folder at path changed. Our own changes never come here (they are written into the caches).
 */
export type ServerChange = 'attr' | 'gone' | 'listing';

const differs = (a: RemoteEntry, b: RemoteEntry) =>
  a.type !== b.type || (a.type === 'file' && (a.size !== b.size || (a.mtimeMs !== undefined && b.mtimeMs !== undefined && a.mtimeMs !== b.mtimeMs)));

/** Names of ours the server may not have yet: folders made (namespace/mkdirs.ts), files and folders renamed (moves.ts). */
export interface PendingNames {
  /** A folder made, not on the server yet (its listing is ours alone). */
  pending(path: string): boolean;
  /** The folders made in dir, not on the server yet. */
  childrenOf(dir: string): RemoteEntry[];
  /** Files and folders renamed into dir, the moves not confirmed: they replace what a listing says of their names. */
  movedInto(dir: string): RemoteEntry[];
}

/** An LRU of path-keyed slots whose keys idx follows (added on insert, dropped on evict or delete). */
export function indexedLru<V extends object>(max: number, idx: PathIndex): LRUCache<string, V> {
  return new LRUCache<string, V>({
    max,
    onInsert: (_v, k, reason) => { if (reason === 'add') idx.add(k); },
    // 'set' replaces the value of a key that stays
    dispose: (_v, k, reason) => { if (reason !== 'set') idx.delete(k); },
  });
}

export class MetaCache {
  /** Told of server changes (InodeVfs: kernel cache invalidation). */
  onServerChange: ((path: string, what: ServerChange) => void) | undefined;

  /** The keys of attrs and dirs by folder (forgetTree visits only the tree it forgets). */
  private readonly attrPaths = new PathIndex((k) => this.attrs.has(k));
  private readonly dirPaths = new PathIndex((k) => this.dirs.has(k));
  readonly attrs = indexedLru<AttrSlot>(200_000, this.attrPaths);
  readonly dirs = indexedLru<DirSlot>(20_000, this.dirPaths);
  /** The last change generation of recently changed or fetched folders (see trackEpoch). */
  private readonly dirEpoch = new Map<string, number>();
  private epochSeq = 0;
  private epochFloor = 0;
  /** Bumped when a folder is renamed or removed: it changes the listings of every folder below. */
  private treeGen = 0;
  /** Folders whose last listing had more names than speculativeListMaxEntries: their lookups stat only. */
  private readonly bigDirs = new Set<string>();
  private readonly listInflight = new Map<string, { gen: number; p: Promise<DirSlot> }>();
  /**
   * Negative slots in the order they were set (= the order they expire: one TTL for all). An
   * expired negative slot answers nothing (cached() skips it, a listing or stat is asked), yet it
   * held its path in the LRU until 200,000 newer slots pushed it out: a churn of deleted names
   * filled the LRU with them. Each new one drops those expired.
   */
  private readonly negatives: Array<{ path: string; slot: AttrSlot }> = [];
  private negHead = 0;

  /**
   * @param gone names the server may still list but the drive does not show (a delete written
   *   back and not yet confirmed): dropped from every listing as it arrives.
   * @param ours names of ours the server may not have yet: folders made (mkdirs written back), a
   *   pending one's listing empty without asking the server, each shown in its parent's listings;
   *   files and folders renamed, the moves not sent yet (shown at their new names; `gone` hides the
   *   old ones).
   */
  constructor(private readonly ctx: Ctx, private readonly gone: (path: string) => boolean = () => false,
    private readonly ours: PendingNames = { pending: () => false, childrenOf: () => [], movedInto: () => [] }) {}

  bumpDir(dir: string): void {
    this.dirEpoch.delete(dir);
    this.trackEpoch(dir, ++this.epochSeq);
  }

  /**
   * The generation of a folder's contents as we changed them: an answer fetched while it moved
   * may predate our change, so it is neither cached nor handed to callers that came after it.
   * Monotonic per folder (epochs come from one sequence): never the same value after a change.
   */
  dirGen(dir: string): number {
    let e = this.dirEpoch.get(dir);
    // asked at the start of a fetch: tracked from now, so dropping others' epochs cannot move it
    if (e === undefined) this.trackEpoch(dir, e = this.epochFloor);
    return e * 65536 + this.treeGen;
  }

  /**
   * Epochs are kept for a bounded number of paths (every deleted file's path was kept forever: a
   * soak of create/delete churn grew the heap by 38,000 path strings in 8 minutes). One dropped
   * raises the floor untracked paths answer to, so no path's generation ever goes back.
   */
  private trackEpoch(dir: string, e: number): void {
    this.dirEpoch.set(dir, e);
    if (this.dirEpoch.size <= EPOCHS_KEPT) return;
    const [oldest, v] = this.dirEpoch.entries().next().value!;
    this.dirEpoch.delete(oldest);
    if (v > this.epochFloor) this.epochFloor = v;
  }

  isBig(dir: string): boolean {
    return this.bigDirs.has(dir);
  }

  /** A listing of dir is on its way (one of the current generation, if `current`). */
  listingInFlight(dir: string, current = false): boolean {
    const inf = this.listInflight.get(dir);
    return !!inf && (!current || inf.gen === this.dirGen(dir));
  }

  /** A fresh cached listing of dir, if any. */
  freshListing(dir: string): DirSlot | undefined {
    const d = this.dirs.get(dir);
    return d && d.expires > Date.now() ? d : undefined;
  }

  /**
   * d, the listing of dir a fetch for lookups returned, is marked implicit if it is a new one now
   * cached (not `before`, which a program may have seen; not one our change replaced meanwhile).
   */
  markImplicit(dir: string, before: DirSlot | undefined, d: DirSlot): void {
    if (d !== before && this.dirs.get(dir) === d) d.implicit = true;
  }

  /** What the caches know of path: an entry, null (known missing), or undefined (ask the server). */
  cached(path: string): RemoteEntry | null | undefined {
    const now = Date.now();
    const a = this.attrs.get(path);
    if (a && a.expires > now) return a.entry;
    const d = this.dirs.get(parentOf(path));
    if (d && d.expires > now) {
      const e = d.entries.get(baseOf(path));
      if (e || !d.implicit) return e ?? null;
    }
    return undefined;
  }

  /** A server's answer about one path (a stat, or a listing's miss). */
  setAttr(path: string, e: RemoteEntry | null): void {
    const prev = this.onServerChange ? this.attrs.get(path)?.entry : undefined;
    if (prev && this.onServerChange) {
      if (!e) this.onServerChange(path, 'gone');
      else if (differs(prev, e)) this.onServerChange(path, 'attr');
    }
    if (e) this.attrs.set(path, { entry: e, expires: Date.now() + this.ctx.opts.attrTtlMs });
    else this.setNegative(path);
  }

  private setNegative(path: string): void {
    const now = Date.now();
    const slot: AttrSlot = { entry: null, expires: now + this.ctx.opts.negativeTtlMs };
    this.attrs.set(path, slot);
    const q = this.negatives;
    q.push({ path, slot });
    while (this.negHead < q.length) {
      const n = q[this.negHead]!;
      if (n.slot.expires > now) break;
      // only the slot queued: the path may hold a newer answer since
      if (this.attrs.peek(n.path) === n.slot) this.attrs.delete(n.path);
      this.negHead++;
    }
    // (a TTL longer than the LRU lasts: what the LRU dropped needs no queue entry either)
    if (q.length - this.negHead > this.attrs.max) this.negHead = q.length - this.attrs.max;
    if (this.negHead > 1024 && this.negHead * 2 > q.length) { q.splice(0, this.negHead); this.negHead = 0; }
  }

  /**
   * A directory's listing, from cache, revalidated by hash, or fetched. `guess`: asked while a
   * stat of dir is still on its way (Lookup: a name listed before its type is known), so a fetch
   * this call starts leaves dir's own entry to that stat, which has its time (an entry made up
   * from the listing has none, and would be shown if the listing landed first). `forLookups`:
   * asked to answer lookups in dir, not for a program's listing (Remote ListOptions.forLookups).
   */
  async listing(dir: string, force = false, priority: number = Priority.interactive, onNames?: (names: ReadonlySet<string>) => void,
    guess = false, forLookups = false): Promise<DirSlot> {
    const d = this.dirs.get(dir);
    if (d && !force && d.expires > Date.now()) return d;
    // a fetch that started before our latest change of this folder may answer the old state
    const gen = this.dirGen(dir);
    const inf = this.listInflight.get(dir);
    if (inf && inf.gen === gen) return inf.p;
    // onNames only for the caller whose call starts the fetch (see Remote.list)
    const slot = { gen, p: this.fetchListing(dir, d, 0, priority, onNames, guess, forLookups) };
    slot.p.finally(() => { if (this.listInflight.get(dir) === slot) this.listInflight.delete(dir); }).catch(() => {});
    this.listInflight.set(dir, slot);
    return slot.p;
  }

  private async fetchListing(dir: string, old: DirSlot | undefined, tries = 0, priority: number = Priority.interactive,
    onNames?: (names: ReadonlySet<string>) => void, guess = false, forLookups = false): Promise<DirSlot> {
    const { remote, opts } = this.ctx;
    if (this.ours.pending(dir)) {
      // nothing of it is on the server yet (what goes into it waits for it): no request; what our
      // own changes put into the cached listing stays
      const entries = new Map<string, RemoteEntry>(this.dirs.peek(dir)?.entries ?? []);
      for (const e of this.ours.childrenOf(dir)) entries.set(e.name, e);
      for (const e of this.ours.movedInto(dir)) entries.set(e.name, e);
      const slot: DirSlot = { entries, expires: Date.now() + opts.dirTtlMs };
      this.dirs.set(dir, slot);
      return slot;
    }
    const gen = this.dirGen(dir);
    const useHash = !!old?.hash;
    // (a folder renamed, or one above it, its move not sent: the server lists it at its old name)
    const r = await this.ctx.atServer(dir, (at) => this.ctx.bounded(`list ${dir}`, (signal) =>
      remote.list(at, { signal, priority, ...(useHash ? { hash: old!.hash } : {}), ...(onNames ? { onNames } : {}), ...(forLookups ? { forLookups } : {}) })));
    // a folder we removed (its delete pending: the server still has it) is not made to exist again
    // by an answer about it: the listing would set the folder's own entry below (soak seed 812957:
    // a listing of the folder refetched after its rmdir answered EISDIR to a later create there)
    if (this.gone(dir)) throw new NotFound('no such folder', { path: dir });
    const changedMeanwhile = this.dirGen(dir) !== gen;
    if (changedMeanwhile) {
      // the answer may predate our own change: ask again (a folder changed by us without end
      // gets the cached view, which our changes keep right, or the last answer)
      const cur = this.dirs.get(dir);
      if (tries < 3) return this.fetchListing(dir, cur, tries + 1, priority, undefined, guess, forLookups);
      if (cur) return cur;
      if (r.unchanged) return old!;
    }
    if (r.unchanged && useHash && !changedMeanwhile) {
      old!.expires = Date.now() + opts.dirTtlMs;
      this.dirs.set(dir, old!);
      return old!;
    }
    if (r.unchanged) return this.fetchListing(dir, undefined, tries + 1, priority, undefined, guess, forLookups);
    const entries = new Map<string, RemoteEntry>();
    for (const e of r.entries) if (!this.gone(joinPath(dir, e.name))) entries.set(e.name, e);
    for (const e of this.ours.childrenOf(dir)) if (!entries.has(e.name)) entries.set(e.name, e);
    // (the server may list another file there still: one our rename replaces)
    for (const e of this.ours.movedInto(dir)) entries.set(e.name, e);
    const slot: DirSlot = { entries, hash: r.hash, expires: Date.now() + opts.dirTtlMs };
    this.noteSize(dir, entries.size);
    // the folder removed by us with its delete already settled (the negative entry our rmdir left;
    // a pending delete threw above): an answer from before the delete must not bring it back (a
    // file renamed onto its name then answered EISDIR: mk14 soak seed 810065)
    const self = this.attrs.get(dir);
    const removed = !!self && self.entry === null && self.expires > Date.now();
    if (!changedMeanwhile && !removed) {
      if (old && this.onServerChange) this.compare(dir, old.entries, entries);
      this.dirs.set(dir, slot);
      // the folder's own entry (its mtime from the parent's listing or a stat) stays: a listing
      // says nothing about the folder itself
      const had = this.attrs.get(dir)?.entry ?? this.dirs.peek(parentOf(dir))?.entries.get(baseOf(dir));
      if (had?.type === 'dir' || !guess) {
        this.attrs.set(dir, { entry: had?.type === 'dir' ? had : { name: baseOf(dir), type: 'dir', size: 0 }, expires: Date.now() + opts.dirTtlMs });
      }
    }
    return slot;
  }

  /** A new listing against the one it replaces: tells what another client changed. */
  private compare(dir: string, was: Map<string, RemoteEntry>, now: Map<string, RemoteEntry>): void {
    const tell = this.onServerChange!;
    const at = (name: string) => joinPath(dir, name);
    let names = was.size !== now.size;
    for (const [name, e] of was) {
      const n = now.get(name);
      if (!n) { names = true; tell(at(name), 'gone'); } else if (differs(e, n)) tell(at(name), 'attr');
    }
    if (!names) for (const name of now.keys()) if (!was.has(name)) { names = true; break; }
    if (names) tell(dir, 'listing');
  }

  /** Remembers (a bounded number of) big folders, whose lookups are not worth a speculative listing. */
  private noteSize(dir: string, n: number): void {
    if (n <= this.ctx.opts.speculativeListMaxEntries) { this.bigDirs.delete(dir); return; }
    this.bigDirs.delete(dir);
    if (this.bigDirs.size >= 1000) this.bigDirs.delete(this.bigDirs.values().next().value!);
    this.bigDirs.add(dir);
  }

  /** Reflects one of our own changes in the cached parent listing (kept fresh: it is still right). */
  setInParent(path: string, e: RemoteEntry | null): void {
    const dir = parentOf(path);
    this.bumpDir(dir);
    const d = this.dirs.get(dir);
    if (d) {
      const name = baseOf(path);
      const was = d.entries.get(name);
      if (e) d.entries.set(name, { ...e, name }); else d.entries.delete(name);
      if (d.subdirs !== undefined) d.subdirs += (e?.type === 'dir' ? 1 : 0) - (was?.type === 'dir' ? 1 : 0);
    }
    if (e) this.attrs.set(path, { entry: { ...e, name: baseOf(path) }, expires: Date.now() + this.ctx.opts.attrTtlMs });
    else this.setNegative(path);
  }

  /** A new empty folder of ours: its listing is known. */
  setEmptyDir(path: string): void {
    this.dirs.set(path, { entries: new Map(), expires: Date.now() + this.ctx.opts.dirTtlMs });
    this.bumpDir(path);
  }

  /** A file of ours appeared or changed locally: cached answers about it are dropped. */
  localChange(path: string): void {
    this.attrs.delete(path);
    this.bumpDir(parentOf(path));
  }

  /** Our listing of dir predates a change on the server (another client deleted it). */
  dropListing(dir: string): void {
    this.dirs.delete(dir);
    this.bumpDir(dir);
  }

  /** Forgets cached metadata of path and everything below it. */
  forgetTree(path: string, isDir = true): void {
    // listings of folders below are not all cached (nor bumped one by one): one tree generation
    if (isDir) this.treeGen++;
    for (const k of this.attrPaths.under(path)) this.attrs.delete(k);
    for (const k of this.dirPaths.under(path)) { this.dirs.delete(k); this.bumpDir(k); }
  }
}
