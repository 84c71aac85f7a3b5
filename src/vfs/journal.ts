// The durable write-back journal: an append-only file of JSON lines recording which closed files
// still have to reach the server (with their mtime/mode at the close), which metadata changes alone
// (utimens/chmod, `a` records, one per path) do, and renames/cancellations that affect both, deletes
// (`x`), folders made (`m`) and file moves (`v`) answered to programs but not yet confirmed. A record is durable
// before the operation that wrote it returns, so after a crash (kill -9) the next start() knows
// every closed file whose upload had not been confirmed. Appends are group-committed (one write
// for everything queued meanwhile) and the file is compacted to the live state when it grows.
//
// Durability costs one disk flush per commit, not two: the journal fd is O_DSYNC, so the write
// that hands a batch to the kernel also puts it on the disk (one syscall, one threadpool hop,
// instead of write + fdatasync). Records go into space written with zeros (and flushed) ahead of
// them, so that flush is a data write only: appending at the end of the file would change its
// size, and every such flush would wait for a file system journal commit as well. Replay reads up
// to the first zero byte.
// A small closed file travels inside its record (`b`, base64): its cache file then needs no
// fdatasync of its own. Replay puts such content back into the cache file when the file lost it
// (power loss before writeback) or changed it afterwards (writes after the close that were never
// closed). Bigger files (or past the memory budget for inline content) are fdatasync'd by the
// caller before their record is appended, as before.
// What holds: on kill -9 of the drive, everything written before it (the kernel has it). On power
// loss it depends on the sync mode:
// - syncDelayMs 0 (`-o sync_close`): every file whose close() returned (its record is on the disk,
//   with the content or after the content).
// - syncDelayMs > 0 (the default, 1 s): records of closed files reach the disk within that delay,
//   group-committed (one device flush for everything closed meanwhile), as a local file system
//   commits within seconds; a power loss can lose what was closed in that last window (fsync()
//   waits for the server either way). What must never be undone by a replay is flushed before it
//   takes effect: a cancel (delete) or rename record, and every record before a durable() waiter,
//   are on the disk before the server is told to delete or move, so a power loss cannot bring
//   back an old upload over them. A device flush per close cost about 1 ms of every create (half
//   of a `create 200 small files` run on the reference machine), which rclone does not pay either.
import fs, { promises as fsp } from 'node:fs';
import { PathIndex, deleteIndexed, rekeyIndexed, setIndexed } from './paths.js';

/** Content up to this size may travel inside its record. */
export const INLINE_MAX_BYTES = 64 * 1024;
/** Inline content of pending uploads is kept in memory (compaction writes it again): this bounds it. */
const INLINE_BUDGET_BYTES = 32 * 1024 * 1024;
const LAZY_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT;
const DSYNC_FLAGS = LAZY_FLAGS | (fs.constants.O_DSYNC ?? 0);
/** Zeros written ahead of the records at a time. */
const AHEAD_BYTES = 1024 * 1024;

export interface PendingUpload {
  /** Unique per enqueued upload; `done` refers to it. */
  uid: string;
  /** Current target path on the server. */
  path: string;
  /** Cache file id (data/<id>) holding the content. */
  id: string;
  size: number;
  /** The content itself, when the record carries it (small files; see the top of this file). */
  data?: Buffer;
  /** The file's mtime and mode as they were at the close (services that keep them get them with the upload). */
  mtimeMs?: number;
  mode?: number;
  /** When the change was made (epoch ms; records of older versions carry none). */
  atMs?: number;
}

/**
 * A change of a file's metadata alone (utimens, chmod) not yet confirmed by the server. One per
 * path: a newer change merges into it under a new uid, so `done` of an older send completes
 * nothing. Cancelled and renamed with the path like uploads.
 */
export interface PendingAttrs {
  uid: string;
  path: string;
  mtimeMs?: number;
  mode?: number;
  /** When the first change merged into it was made (epoch ms). */
  atMs?: number;
}

/**
 * A delete answered to the program but not yet confirmed by the server (namespace/deletes.ts).
 * One per path (a newer delete of the same path takes its place under a new uid). Its record also
 * cancels what was pending at or under the path before it, and a folder's delete folds the
 * deletes below it: the server removes folders recursively.
 */
export interface PendingDelete {
  uid: string;
  path: string;
  dir: boolean;
  /** When the delete was made (epoch ms). */
  atMs?: number;
}

/**
 * A folder made by mkdir, answered to the program but not yet confirmed by the server
 * (namespace/mkdirs.ts, services that make folders in batches). One per path. Replayed until
 * `done`; an rmdir before it was sent cancels it with `done` alone.
 */
export interface PendingMkdir {
  uid: string;
  path: string;
  /** When the mkdir was made (epoch ms). */
  atMs?: number;
}

/**
 * A rename of a file or folder answered to the program but not yet sent to the server
 * (namespace/moves.ts). One per target name. Its record also retargets what was pending at or
 * below `from` to `to` (as `r` does) and cancels what was pending at or below `to`; a chain (a->b,
 * then b->c) may be folded into one move of the server's file (`from` a, `to` c).
 */
export interface PendingMove {
  uid: string;
  /** Where the server has the file until the move is sent. */
  from: string;
  /** The name the drive shows it under. */
  to: string;
  /** A folder's rename (what is below `to` is below `from` on the server until it is sent). */
  dir?: boolean;
  /** The rename replaced a file the server may hold at `to` (a merge with a later unlink must delete it). */
  replaces?: boolean;
  /** RENAME_NOREPLACE: a file the server has at `to` when the move is sent is not replaced (refused). */
  noReplace?: boolean;
  /** What the drive shows at `to` until then (the file's entry at the rename). */
  size: number;
  mtimeMs?: number;
  /** When the rename was made (epoch ms). */
  atMs?: number;
}

/** How a move record was made: the local rename it retargets, and the pending move it folds in. */
export interface MoveRecOpts {
  /** The local name the rename came from (pending records there move to `to`); default m.from. */
  renamed?: string;
  /** The uid of the pending move this one replaces (a chain folded into one move). */
  replaces?: string;
}

type Rec =
  | { t: 'm'; uid: string; p: string; at?: number }
  | { t: 'x'; uid: string; p: string; dir?: 1; at?: number; mv?: string }
  | { t: 'v'; uid: string; f: string; to: string; s?: string; rep?: string; rp?: 1; nr?: 1; d?: 1; n: number; mt?: number; at?: number }
  | { t: 'u'; uid: string; p: string; id: string; n: number; b?: string; mt?: number; mo?: number; at?: number }
  | { t: 'a'; uid: string; p: string; mt?: number; mo?: number; at?: number }
  | { t: 'd'; uid: string }
  | { t: 'c'; p: string }
  | { t: 'r'; f: string; to: string };

export class Journal {
  readonly pending = new Map<string, PendingUpload>();
  /** uid of the pending upload of each path (a close must not scan every pending upload). */
  private readonly byPath = new Map<string, string>();
  /** Metadata changes not yet confirmed, by path. */
  readonly attrs = new Map<string, PendingAttrs>();
  /** Deletes not yet confirmed, by path (in the order they were made). */
  readonly deletes = new Map<string, PendingDelete>();
  /** Folders made but not yet confirmed, by path (in the order they were made: parents first). */
  readonly mkdirs = new Map<string, PendingMkdir>();
  /** File moves not yet sent, by target name (in the order they were made). */
  readonly moves = new Map<string, PendingMove>();
  /**
   * The paths of byPath and attrs by folder: a rename or delete visits the records of its tree
   * only (walking every pending record cost ~1.6 ms per rename with 20,000 uploads pending).
   */
  private readonly uploadPaths = new PathIndex((k) => this.byPath.has(k));
  private readonly attrPaths = new PathIndex((k) => this.attrs.has(k));
  /**
   * The deletes' and mkdirs' paths by folder, and the live record of each uid among metadata
   * changes, deletes, mkdirs and moves: a delete cancels what is below it and a done finds its
   * record without a walk of every pending one (with 20,000 deletes pending, as an rm -rf of a
   * big tree makes while the server is slow or away, each unlink cost 0.56 ms, and each
   * confirmation a walk of them all twice). The maps change only through putRec and dropRec.
   */
  private readonly deletePaths = new PathIndex((k) => this.deletes.has(k));
  private readonly mkdirPaths = new PathIndex((k) => this.mkdirs.has(k));
  private readonly byUid = new Map<string, PendingAttrs | PendingDelete | PendingMkdir | PendingMove>();
  private fh: fsp.FileHandle | null = null;
  /** Where the next record goes; the file holds zeros from here to `ahead`. */
  private end = 0;
  private ahead = 0;
  /** A write failed midway: the file is written anew from the live state before the next one. */
  private damaged = false;
  private queue: { line: string; sync: boolean; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private writing: Promise<void> | null = null;
  /** Cleared synchronously when drain() finds the queue empty, so no append is ever stranded. */
  private draining = false;
  private records = 0;
  /** Bytes of inline content held by pending uploads. */
  private inlineBytes = 0;

  /**
   * Lazy mode: batches written (writtenSeq) and covered by a finished device flush (syncedSeq).
   * The flush runs beside the appends, never in front of them: under a large writeback (a 256 MiB
   * file just written) one fdatasync waited 0.35-0.46 s for the file system's commit, and every
   * close() queued behind it waited as long (a create loop measured 0.6 s for 200 files instead of
   * 0.2). Appends need only the page cache (kill -9 safe); only durable() waiters wait for a flush.
   */
  private writtenSeq = 0;
  private syncedSeq = 0;
  private syncInFlight: Promise<void> | null = null;
  private syncWaiters: { seq: number; resolve: () => void; reject: (e: unknown) => void }[] = [];
  /** rewrite() is replacing the file: no flush may start on the handle it closes. */
  private replacing = false;
  private syncTimer: NodeJS.Timeout | null = null;
  /** Device flushes of the journal made in lazy mode (diagnostics: DriveStatus.counters). */
  syncs = 0;
  private readonly syncDelayMs: number;

  constructor(private readonly file: string, private readonly compactAfter = 1000, opts: { syncDelayMs?: number } = {}) {
    this.syncDelayMs = Math.max(0, opts.syncDelayMs ?? 0);
  }

  private get lazy(): boolean { return this.syncDelayMs > 0; }

  /** Reads what an earlier run left, compacts it, and opens for appending. */
  async open(): Promise<PendingUpload[]> {
    let text = '';
    try { text = await fsp.readFile(this.file, 'utf8'); } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const zero = text.indexOf('\0');
    if (zero >= 0) text = text.slice(0, zero);
    for (const line of text.split('\n')) {
      if (!line) continue;
      let rec: Rec;
      // a torn last line from a crash mid-append is skipped; everything before it is intact
      try { rec = JSON.parse(line) as Rec; } catch { continue; }
      this.apply(rec, rec.t === 'u' && typeof rec.b === 'string' ? Buffer.from(rec.b, 'base64') : undefined);
    }
    await this.rewrite();
    return [...this.pending.values()];
  }

  /** Whether content of this size may go inline now (size and memory budget). */
  canInline(size: number): boolean {
    return size <= INLINE_MAX_BYTES && this.inlineBytes + size <= INLINE_BUDGET_BYTES;
  }

  upload(p: PendingUpload): Promise<void> {
    // the time of the change goes with it, so `status` tells the age of a change replayed after a restart
    return this.append(this.uploadRec({ ...p, atMs: p.atMs ?? Date.now() }), p.data);
  }
  /** A metadata change of path: merged into the one pending, under a new uid. */
  setAttrs(uid: string, path: string, change: { mtimeMs?: number; mode?: number }): Promise<void> {
    const old = this.attrs.get(path);
    const mt = change.mtimeMs ?? old?.mtimeMs;
    const mo = change.mode ?? old?.mode;
    const at = old?.atMs ?? Date.now();
    return this.append({ t: 'a', uid, p: path, ...(mt !== undefined ? { mt } : {}), ...(mo !== undefined ? { mo } : {}), at });
  }
  done(uid: string): Promise<void> {
    if (!this.pending.has(uid) && !this.byUid.has(uid)) return Promise.resolve();
    return this.append({ t: 'd', uid });
  }
  /**
   * A delete of path, written back: cancels what is pending at or under path (uploads, metadata,
   * deletes below a folder) and is replayed until `done`. Written like a close's record (the
   * device flush may follow within syncDelayMs); the sender calls flushed() before the server
   * hears of it, so no replay can undo a delete the server applied.
   */
  deleteRec(d: PendingDelete, endsMove?: string): Promise<void> {
    return this.append({ ...this.deleteRecOf({ ...d, atMs: d.atMs ?? Date.now() }), ...(endsMove ? { mv: endsMove } : {}) });
  }
  /**
   * A rename written back (a file's or a folder's): retargets what is pending at `renamed` (default m.from) to m.to,
   * cancels what was pending at m.to, and is replayed until `done`; `replaces` folds a pending
   * move into it (a chain). Written like a close's record; the sender calls flushed() first.
   */
  moveRec(m: PendingMove, o: MoveRecOpts = {}): Promise<void> {
    return this.append(this.moveRecOf({ ...m, atMs: m.atMs ?? Date.now() }, o));
  }
  /** A folder made (written back): replayed until `done`. */
  mkdirRec(m: PendingMkdir): Promise<void> {
    return this.append(this.mkdirRecOf({ ...m, atMs: m.atMs ?? Date.now() }));
  }
  /** Resolves once every record appended so far is on the disk. */
  flushed(): Promise<void> {
    return this.durable();
  }
  /**
   * Forgets pending uploads and metadata changes of path and of everything under it (deleted).
   * durable false: no wait for the disk (what a lost record would bring back is harmless).
   */
  cancel(path: string, durable = true): Promise<void> {
    if (!this.anyUnder(path)) return durable ? this.durable() : Promise.resolve();
    return this.append({ t: 'c', p: path }, undefined, durable);
  }
  rename(from: string, to: string): Promise<void> {
    if (!this.anyUnder(from)) return this.durable();
    return this.append({ t: 'r', f: from, to }, undefined, true);
  }

  /**
   * Resolves once every record appended so far is on disk. A cancel or rename with nothing
   * pending writes no record, but the caller's server change must still not overtake an earlier
   * record that is only queued: a `done` of an upload that finished just before (nobody waits for
   * it) would otherwise be lost in a crash right after the server delete/move, and the replay
   * would upload that old content again, resurrecting the name or overwriting what was moved there.
   */
  private durable(): Promise<void> {
    if (!this.draining && !this.unsynced) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ line: '', sync: true, resolve, reject });
      this.kick();
    });
  }


  /** What is pending, by kind: "1 upload, 2 time/mode changes". */
  summary(): string {
    const kinds = [[this.pending.size, 'upload'], [this.deletes.size, 'delete'], [this.mkdirs.size, 'mkdir'], [this.moves.size, 'rename'], [this.attrs.size, 'time/mode change']] as const;
    return kinds.filter(([n]) => n > 0).map(([n, what]) => `${n} ${what}${n === 1 ? '' : 's'}`).join(', ');
  }

  /** Records of the live state. */
  get live(): number {
    return this.pending.size + this.attrs.size + this.deletes.size + this.mkdirs.size + this.moves.size;
  }

  /** Bytes of the uploads not yet confirmed. */
  get pendingBytes(): number {
    let n = 0;
    for (const p of this.pending.values()) n += p.size;
    return n;
  }

  /** When oldestAtMs() first saw each live record that carries no time (see there). */
  private readonly firstSeen = new Map<string, number>();

  /**
   * When the oldest live change was made. Records carry the time of their change; those written
   * by older versions carry none and are dated when this is first asked (status() is polled).
   */
  oldestAtMs(now = Date.now()): number | undefined {
    let oldest: number | undefined;
    const untimed = new Set<string>();
    const consider = (uid: string, atMs: number | undefined) => {
      let at = atMs;
      if (at === undefined) {
        untimed.add(uid);
        at = this.firstSeen.get(uid);
        if (at === undefined) this.firstSeen.set(uid, at = now);
      }
      if (oldest === undefined || at < oldest) oldest = at;
    };
    for (const p of this.pending.values()) consider(p.uid, p.atMs);
    for (const d of this.deletes.values()) consider(d.uid, d.atMs);
    for (const m of this.mkdirs.values()) consider(m.uid, m.atMs);
    for (const m of this.moves.values()) consider(m.uid, m.atMs);
    for (const x of this.attrs.values()) consider(x.uid, x.atMs);
    for (const uid of this.firstSeen.keys()) if (!untimed.has(uid)) this.firstSeen.delete(uid);
    return oldest;
  }

  private anyUnder(path: string): boolean {
    return this.uploadPaths.under(path).length > 0 || this.attrPaths.under(path).length > 0;
  }

  private moveUid(uid: string): PendingMove | undefined {
    const m = this.byUid.get(uid) as PendingMove | undefined;
    return m && this.moves.get(m.to) === m ? m : undefined;
  }

  /** uids indexed (tests: one per metadata change, delete, mkdir and move pending, no more). */
  get uidCount(): number {
    return this.byUid.size;
  }

  /**
   * r becomes the record of key in m (and its uid the index's): one already there keeps its place
   * in m's order (a mkdir's parents first, the moves as made) and leaves the uid index.
   */
  private putRec<V extends PendingAttrs | PendingDelete | PendingMkdir | PendingMove>(m: Map<string, V>, idx: PathIndex | null, key: string, r: V): void {
    const old = m.get(key);
    if (old) this.byUid.delete(old.uid);
    if (idx) setIndexed(m, idx, key, r); else m.set(key, r);
    this.byUid.set(r.uid, r);
  }

  private dropRec<V extends PendingAttrs | PendingDelete | PendingMkdir | PendingMove>(m: Map<string, V>, idx: PathIndex | null, key: string): void {
    const old = m.get(key);
    if (!old) return;
    this.byUid.delete(old.uid);
    if (idx) deleteIndexed(m, idx, key); else m.delete(key);
  }

  /** Pending upload of exactly `path`, if any. */
  forPath(path: string): PendingUpload | undefined {
    const uid = this.byPath.get(path);
    return uid === undefined ? undefined : this.pending.get(uid);
  }

  async close(): Promise<void> {
    while (this.draining) await this.writing;
    if (this.syncTimer) { clearTimeout(this.syncTimer); this.syncTimer = null; }
    await this.syncsIdle();
    if (this.fh) {
      // the zeros ahead are not needed by a reader; a next run finds the records only
      await this.fh.truncate(this.end).catch(() => {});
      if (this.unsynced) {
        const ok = await this.fh.datasync().then(() => true, () => false);
        this.syncs++;
        if (ok) this.syncedTo(this.writtenSeq);
      }
      await this.fh.close();
      this.fh = null;
    }
  }

  /** Lazy-mode records written and not yet covered by a device flush. */
  private get unsynced(): boolean {
    return this.writtenSeq > this.syncedSeq;
  }

  /** Resolves once a device flush that started after batch `seq` was written has finished. */
  private syncUpTo(seq: number): Promise<void> {
    if (this.syncedSeq >= seq) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.syncWaiters.push({ seq, resolve, reject });
      this.startSync();
    });
  }

  /** One flush at a time; the next one (if anyone waits for more) starts when it ends. */
  private startSync(): void {
    if (this.syncInFlight || this.replacing || !this.fh || !this.syncWaiters.length) return;
    const covers = this.writtenSeq;
    this.syncInFlight = this.fh.datasync().then(() => {
      this.syncs++;
      this.syncedTo(covers);
    }, (e: unknown) => {
      // a failed flush leaves the records unsynced: their waiters hear it, the timer tries again
      const failed = this.syncWaiters.filter((w) => w.seq <= covers);
      this.syncWaiters = this.syncWaiters.filter((w) => w.seq > covers);
      for (const w of failed) w.reject(e);
      this.scheduleSync();
    }).finally(() => {
      this.syncInFlight = null;
      this.startSync();
    });
  }

  private syncedTo(seq: number): void {
    this.syncedSeq = Math.max(this.syncedSeq, seq);
    const done = this.syncWaiters.filter((w) => w.seq <= this.syncedSeq);
    this.syncWaiters = this.syncWaiters.filter((w) => w.seq > this.syncedSeq);
    for (const w of done) w.resolve();
  }

  private async syncsIdle(): Promise<void> {
    while (this.syncInFlight) await this.syncInFlight;
  }

  private apply(rec: Rec, data?: Buffer): void {
    this.records++;
    switch (rec.t) {
      case 'u': {
        const older = this.byPath.get(rec.p);
        if (older !== undefined) this.forget(older, this.pending.get(older)!);
        const same = this.pending.get(rec.uid);
        if (same) this.forget(rec.uid, same);
        // inline content that does not match the record's size is not trusted (the cache file is)
        const inline = data && data.length === rec.n ? data : undefined;
        this.pending.set(rec.uid, {
          uid: rec.uid, path: rec.p, id: rec.id, size: rec.n, ...(inline ? { data: inline } : {}),
          ...(typeof rec.mt === 'number' ? { mtimeMs: rec.mt } : {}), ...(typeof rec.mo === 'number' ? { mode: rec.mo } : {}),
          ...(typeof rec.at === 'number' ? { atMs: rec.at } : {}),
        });
        setIndexed(this.byPath, this.uploadPaths, rec.p, rec.uid);
        if (inline) this.inlineBytes += inline.length;
        break;
      }
      case 'a':
        this.putRec(this.attrs, this.attrPaths, rec.p, {
          uid: rec.uid, path: rec.p,
          ...(typeof rec.mt === 'number' ? { mtimeMs: rec.mt } : {}), ...(typeof rec.mo === 'number' ? { mode: rec.mo } : {}),
          ...(typeof rec.at === 'number' ? { atMs: rec.at } : {}),
        });
        break;
      case 'd': {
        const p = this.pending.get(rec.uid);
        if (p) { this.forget(rec.uid, p); break; }
        const r = this.byUid.get(rec.uid);
        if (!r) break;
        if ('to' in r) this.dropRec(this.moves, null, r.to);
        else if (this.attrs.get(r.path) === r) this.dropRec(this.attrs, this.attrPaths, r.path);
        else if (this.deletes.get(r.path) === r) this.dropRec(this.deletes, this.deletePaths, r.path);
        else if (this.mkdirs.get(r.path) === r) this.dropRec(this.mkdirs, this.mkdirPaths, r.path);
        break;
      }
      case 'x':
        this.cancelAt(rec.p);
        for (const k of this.deletePaths.under(rec.p)) this.dropRec(this.deletes, this.deletePaths, k);
        // (the queue settles a mkdir before a delete of it or above it: this only keeps replay safe)
        for (const k of this.mkdirPaths.under(rec.p)) this.dropRec(this.mkdirs, this.mkdirPaths, k);
        // an unlink of a move's target before it was sent: the server's file goes instead, and
        // what was pending at the target with it
        if (rec.mv) {
          const v = this.moveUid(rec.mv);
          if (v) { this.dropRec(this.moves, null, v.to); this.cancelAt(v.to); }
        }
        // (a delete goes to the end of the order: the one at rec.p left above)
        this.putRec(this.deletes, this.deletePaths, rec.p, { uid: rec.uid, path: rec.p, dir: rec.dir === 1, ...(typeof rec.at === 'number' ? { atMs: rec.at } : {}) });
        break;
      case 'm':
        this.putRec(this.mkdirs, this.mkdirPaths, rec.p, { uid: rec.uid, path: rec.p, ...(typeof rec.at === 'number' ? { atMs: rec.at } : {}) });
        break;
      case 'c':
        this.cancelAt(rec.p);
        break;
      case 'r':
        this.retarget(rec.f, rec.to);
        break;
      case 'v': {
        if (rec.rep) { const old = this.moveUid(rec.rep); if (old) this.dropRec(this.moves, null, old.to); }
        this.retarget(rec.f, rec.to);
        const from = rec.s ?? rec.f;
        // a chain back to where the server has the file moves nothing
        if (from !== rec.to) {
          this.putRec(this.moves, null, rec.to, {
            uid: rec.uid, from, to: rec.to, size: rec.n, ...(rec.rp ? { replaces: true } : {}), ...(rec.nr ? { noReplace: true } : {}),
            ...(rec.d ? { dir: true } : {}),
            ...(typeof rec.mt === 'number' ? { mtimeMs: rec.mt } : {}), ...(typeof rec.at === 'number' ? { atMs: rec.at } : {}),
          });
        }
        break;
      }
    }
  }

  /** Uploads and metadata changes pending at or under path are forgotten. */
  private cancelAt(path: string): void {
    for (const k of this.uploadPaths.under(path)) {
      const uid = this.byPath.get(k)!;
      this.forget(uid, this.pending.get(uid)!);
    }
    for (const k of this.attrPaths.under(path)) this.dropRec(this.attrs, this.attrPaths, k);
  }

  /** Pending records of `from` (and below it) name `to` now; those pending at `to` are replaced. */
  private retarget(from: string, to: string): void {
    if (from === to) return;
    this.cancelAt(to);
    rekeyIndexed(this.attrs, this.attrPaths, from, to, (a, nk) => { a.path = nk; });
    rekeyIndexed(this.byPath, this.uploadPaths, from, to, (uid, nk) => { this.pending.get(uid)!.path = nk; });
  }

  /** The paths with a metadata change pending at or under path. */
  attrsUnder(path: string): string[] {
    return this.attrPaths.under(path);
  }

  private forget(uid: string, p: PendingUpload): void {
    this.pending.delete(uid);
    if (this.byPath.get(p.path) === uid) deleteIndexed(this.byPath, this.uploadPaths, p.path);
    if (p.data) this.inlineBytes -= p.data.length;
  }

  private uploadRec(p: PendingUpload): Rec {
    return {
      t: 'u', uid: p.uid, p: p.path, id: p.id, n: p.size, ...(p.data ? { b: p.data.toString('base64') } : {}),
      ...(p.mtimeMs !== undefined ? { mt: p.mtimeMs } : {}), ...(p.mode !== undefined ? { mo: p.mode } : {}),
      ...(p.atMs !== undefined ? { at: p.atMs } : {}),
    };
  }

  private deleteRecOf(d: PendingDelete): Rec {
    return { t: 'x', uid: d.uid, p: d.path, ...(d.dir ? { dir: 1 as const } : {}), ...(d.atMs !== undefined ? { at: d.atMs } : {}) };
  }

  private mkdirRecOf(m: PendingMkdir): Rec {
    return { t: 'm', uid: m.uid, p: m.path, ...(m.atMs !== undefined ? { at: m.atMs } : {}) };
  }

  private moveRecOf(m: PendingMove, o: MoveRecOpts = {}): Rec {
    const f = o.renamed ?? m.from;
    return {
      t: 'v', uid: m.uid, f, to: m.to, ...(f !== m.from ? { s: m.from } : {}), ...(o.replaces ? { rep: o.replaces } : {}),
      ...(m.replaces ? { rp: 1 as const } : {}), ...(m.noReplace ? { nr: 1 as const } : {}), ...(m.dir ? { d: 1 as const } : {}), n: m.size, ...(m.mtimeMs !== undefined ? { mt: m.mtimeMs } : {}),
      ...(m.atMs !== undefined ? { at: m.atMs } : {}),
    };
  }

  private attrsRec(a: PendingAttrs): Rec {
    return {
      t: 'a', uid: a.uid, p: a.path, ...(a.mtimeMs !== undefined ? { mt: a.mtimeMs } : {}), ...(a.mode !== undefined ? { mo: a.mode } : {}),
      ...(a.atMs !== undefined ? { at: a.atMs } : {}),
    };
  }

  private append(rec: Rec, data?: Buffer, sync = false): Promise<void> {
    // state changes at once (callers see it synchronously); durability follows with the promise
    this.apply(rec, data);
    const line = JSON.stringify(rec) + '\n';
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ line, sync, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (!this.draining) {
      this.draining = true;
      this.writing = this.drainLoop();
    }
  }

  /** Lazy mode: the group commit of what was written, at most syncDelayMs later. */
  private scheduleSync(): void {
    if (this.syncTimer || !this.lazy) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = null;
      // a failed flush stays unsynced: the next write schedules another, close() tries again
      if (this.unsynced) this.durable().catch(() => {});
    }, this.syncDelayMs);
    this.syncTimer.unref();
  }

  /**
   * There is no await between the last queue check and clearing `draining`: an append that runs
   * after it (e.g. the continuation of a caller just resolved) starts a new drain.
   */
  private async drainLoop(): Promise<void> {
    for (;;) {
      if (this.queue.length === 0) { this.draining = false; return; }
      const batch = this.queue;
      this.queue = [];
      try {
        if (this.damaged) await this.rewrite();
        else if (!this.fh) await this.openForWrite();
        const text = batch.length === 1 ? batch[0]!.line : batch.map((b) => b.line).join('');
        // O_DSYNC (sync mode): on the disk when the write returns (a batch of only waiters writes nothing)
        if (text) {
          const buf = Buffer.from(text);
          const fh = this.fh!;
          if (this.end + buf.length > this.ahead) {
            const to = this.end + buf.length + AHEAD_BYTES;
            await this.write(fh, Buffer.alloc(to - this.ahead), this.ahead);
            this.ahead = to;
          }
          try {
            await this.write(fh, buf, this.end);
          } catch (e) {
            this.damaged = true;
            throw e;
          }
          this.end += buf.length;
        }
        if (this.lazy && text) this.writtenSeq++;
        if (this.records > this.compactAfter && this.records > 4 * this.live) await this.rewrite();
        // durable() waiters get the next flush; the other records are written (kill -9 safe)
        const flushed = batch.some((b) => b.sync) ? this.syncUpTo(this.writtenSeq) : null;
        if (this.unsynced) this.scheduleSync();
        for (const b of batch) {
          if (b.sync && flushed) flushed.then(b.resolve, b.reject);
          else b.resolve();
        }
      } catch (e) {
        for (const b of batch) b.reject(e);
      }
    }
  }

  /**
   * Lazy mode writes into the page cache: done synchronously, in microseconds, where a thread
   * pool round trip costs milliseconds on a busy machine, and every close() or rm of a file waits
   * for its record (sequential programs like tar or rm -rf pay it per file). The O_DSYNC mode
   * waits for the device: that stays off the event loop.
   */
  private async write(fh: fsp.FileHandle, buf: Buffer, at: number): Promise<void> {
    if (!this.lazy) return this.writeAll(fh, buf, at);
    for (let off = 0; off < buf.length;) off += fs.writeSync(fh.fd, buf, off, buf.length - off, at + off);
  }

  private async writeAll(fh: fsp.FileHandle, buf: Buffer, at: number): Promise<void> {
    for (let off = 0; off < buf.length;) off += (await fh.write(buf, off, buf.length - off, at + off)).bytesWritten;
  }

  /** Opens the file as rewrite() or close() left it: records only, the next one goes at its end. */
  private async openForWrite(): Promise<void> {
    const fh = await fsp.open(this.file, this.lazy ? LAZY_FLAGS : DSYNC_FLAGS, 0o600);
    try {
      this.end = this.ahead = (await fh.stat()).size;
    } catch (e) {
      await fh.close();
      throw e;
    }
    this.fh = fh;
  }

  /** Replaces the file by the live state only (atomically: temp file, fsync, rename, fsync dir). */
  private async rewrite(): Promise<void> {
    this.replacing = true;
    try {
      await this.syncsIdle();
      await this.replace();
    } catch (e) {
      // the handle their flush was for is gone: the waiters hear it (as the batch does)
      const waiting = this.syncWaiters;
      this.syncWaiters = [];
      for (const w of waiting) w.reject(e);
      throw e;
    } finally {
      this.replacing = false;
    }
    // the new file holds the whole live state, flushed: everything written so far is covered
    this.syncedTo(this.writtenSeq);
  }

  private async replace(): Promise<void> {
    if (this.fh) { await this.fh.close(); this.fh = null; }
    const tmp = this.file + '.tmp';
    // deletes first: each cancels what is under it, and every upload still pending came after it;
    // then the folders made, parents first, before the uploads into them; then the moves in the
    // order they were made (their retargets find nothing: the uploads written after them already
    // name the targets)
    const lines = [...this.deletes.values()].map((d) => JSON.stringify(this.deleteRecOf(d)) + '\n');
    for (const m of this.mkdirs.values()) lines.push(JSON.stringify(this.mkdirRecOf(m)) + '\n');
    for (const m of this.moves.values()) lines.push(JSON.stringify(this.moveRecOf(m)) + '\n');
    for (const p of this.pending.values()) lines.push(JSON.stringify(this.uploadRec(p)) + '\n');
    for (const a of this.attrs.values()) lines.push(JSON.stringify(this.attrsRec(a)) + '\n');
    const fh = await fsp.open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(lines.join(''));
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, this.file);
    const dir = await fsp.open(this.file.slice(0, this.file.lastIndexOf('/')) || '/', 'r');
    try { await dir.sync(); } catch { /* some filesystems refuse fsync on directories */ } finally { await dir.close(); }
    this.records = this.live;
    this.damaged = false;
    await this.openForWrite();
  }
}
