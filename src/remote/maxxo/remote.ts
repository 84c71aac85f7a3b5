// Maxxo as a Remote: control plane through MaxxoClient, file bytes through rsync against the
// slice's daemon (rsync://LOGIN@IP:PORT/LOGIN/<path>).
//
// Decisions where the Maxxo text is silent:
// - Mount paths "/a/b" are sent as "a/b" (relative to the user's top folder, as in the spec's
//   examples); the top folder itself as "/".
// - stat() uses /ops/filesize. It tells files from folders by the row's `type` when the server
//   sends one (the reference server does); otherwise the parent folder is listed to find out.
// - move/remove are not repeated blindly (a lost answer may hide a done move): after a transient
//   failure the paths are checked with filesize and only what is left is done again.
// - mkdir: the parent must exist (NotFound) and the path must not (AlreadyExists); then an empty
//   folder is pushed with rsync. upload creates missing parents (--mkpath).
// - download truncates localFile, then `rsync --append-verify` writes it in place: the file only
//   grows, so a retry continues where the last attempt stopped, and readers may follow the bytes
//   (onProgress reports the size on disk, polled while rsync runs). --append skips a file that
//   is not shorter on our side unchecked: a resume that appended nothing is followed by a
//   verifying --inplace run, so bytes of a version replaced meanwhile never pass for the file.
// - mtimes: the REST API has none (ops/list and ops/filesize give names, types and sizes only), so
//   a file replaced by another client with bytes of the same size would look unchanged. They come
//   from the rsync daemon's listings, cached per folder (listings.ts, which says what it costs).
//   Folder mtimes too: the daemon's filesystem keeps them (moved by each change inside, set by
//   rsync -t), so a folder's time is written back like a file's (setFolderTime()). The top
//   folder's is not listed anywhere: it shows the mount's.
// - Times and modes: the daemon keeps what rsync -t and -E send (the reference daemon refuses no
//   option; the Maxxo text says nothing of modes), so uploads carry the mtime the drive holds and,
//   when a program set a mode, whether the file is executable; the rest of a mode is not kept.
//   A change of them alone sends no bytes (setAttrs(): --size-only).
// - The slice (daemon address, login, Cloudstore password) is cached; an rsync that cannot reach
//   the daemon or is refused its password reads /slice again before the next attempt (the storage
//   server moved, or restarted on another port).
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir as fsMkdir, readdir, rm, open, rename, symlink, writeFile, stat as fsStat, utimes, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve as resolvePath } from 'node:path';
import PQueue from 'p-queue';
import type {
  AttrChange, BatchStat, BatchUpload, CallOptions, DownloadedVersion, FileMetadata, ListOptions, ListResult, Remote, RemoteEntry, Revalidation, StatFs,
  TransferOptions, UploadResult,
} from '../types.js';
import { Priority } from '../types.js';
import {
  RemoteError, NotFound, NotADirectory, IsADirectory, AlreadyExists, NotEmpty, InvalidName, BadRequest, TransferFailed,
  Cancelled, Timeout, isRemoteError, type ErrorContext,
} from '../../errors.js';
import type { ClientOptions } from '../options.js';
import { validName } from '../names.js';
import { pathParts } from '../url.js';
import { enqueue } from '../http.js';
import { MaxxoClient, type MaxxoSlice, type MaxxoSizeRow } from './client.js';
import { toGeneric } from './errors.js';
import {
  runRsync, rsyncFailure, skippedDirectory, escapeSource, parseProgress, parseListLine, type ListedRow, type RsyncResult,
} from './rsync.js';
import { InflightUploads } from './inflight.js';
import { DaemonListings, withMtime, parentOf, baseName, modeOf, FILE_MODE_BITS } from './listings.js';
import { silentLogger, type Logger } from '../../log.js';
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
}


const SAFE_LOGIN = /^[A-Za-z0-9_.-]+$/;

type UploadItem = { localFile: string; path: string; mtimeMs?: number; mode?: number };

/**
 * Longest destination folder (bytes) a push names. The rsync daemon's receiver changes into the
 * destination folder first and refuses one whose path, joined to its module folder, passes about
 * 2 KiB ("change_dir#2 ... File name too long"; mkdir of a 2 KiB path answered EIO after the
 * folder was made), while it creates entries by relative names up to PATH_MAX. A deeper target is
 * pushed by its name relative to an ancestor within this bound (--files-from).
 */
const PUSH_DEST_MAX = 1024;

/** base: the longest proper ancestor of the target within PUSH_DEST_MAX bytes; rel: the rest. */
function pushSplit(parts: string[]): { base: string; rel: string } {
  let n = 0;
  let bytes = 0;
  for (let i = 0; i < parts.length - 1; i++) {
    const b = Buffer.byteLength(parts[i]!) + 1;
    if (bytes + b > PUSH_DEST_MAX) break;
    bytes += b;
    n = i + 1;
  }
  return { base: parts.slice(0, n).join('/'), rel: parts.slice(n).join('/') };
}

/** The client boundary: Maxxo's own error codes leave this Remote as their generic kind. */
const generic = (e: unknown): never => { throw toGeneric(e); };

export class MaxxoRemote implements Remote {
  readonly kind = 'maxxo' as const;
  readonly batchStat: BatchStat = { statMany: (paths, o) => this.statMany(paths, o) };
  /** /ops/delete takes many file[] (a form of this many paths stays far below request limits). */
  readonly removeBatchMax = 500;
  readonly batchUpload: BatchUpload = { uploadMany: (items, o) => this.uploadMany(items, o) };
  readonly revalidation: Revalidation = {
    cacheTtls: (t) => this.cacheTtls(t),
    revalidate: (path, e, maxAgeMs) => this.revalidate(path, e, maxAgeMs),
  };
  /**
   * The daemon keeps what rsync -t and -E send: mtimes (listed to the second) and whether a file
   * is executable. A change of them alone is an rsync run that sends no bytes (--size-only).
   */
  readonly fileMeta: FileMetadata = {
    mtimeResolutionMs: 1000, modeBits: FILE_MODE_BITS, attrsNeedContent: true, folderTimes: true,
    setAttrs: (path, attrs, o) => this.setAttrs(path, attrs, o),
  };
  readonly client: MaxxoClient;
  /** Running rsync children (tests check that cancel really ends them). */
  readonly children = new Set<ChildProcess>();
  /** rsync runs started, retries included. */
  rsyncRuns = 0;
  /** Of those, daemon listings (--list-only) for mtimes. */
  listRuns = 0;
  /** Times /slice was fetched (the first time included). */
  sliceFetches = 0;
  private readonly log: Logger;
  private readonly transfers: PQueue;
  private readonly opts: MaxxoRemoteOptions;
  private slicePromise?: Promise<MaxxoSlice>;
  /** Address of the last slice fetched, to tell when the storage server moved. */
  private sliceAddr?: string;
  /** Daemon listings by folder (mount path): fetched or in flight. */
  private readonly listings: DaemonListings;
  /**
   * Listings go in their own queue: a stat must not wait behind whole-file transfers. As wide as
   * the transfer lanes: the first stats in many folders each wait for their folder's listing.
   */
  private readonly listQueue = new PQueue({ concurrency: 4 });
  /** Address of the daemon last found out of reach (one warning per address, not per transfer). */
  private daemonTrouble?: string;
  private closed = false;
  private stagesSwept = false;
  private readonly inflight = new InflightUploads();

  constructor(opts: MaxxoRemoteOptions) {
    this.opts = opts;
    this.client = new MaxxoClient(opts);
    this.log = opts.log ?? silentLogger;
    this.transfers = new PQueue({ concurrency: Math.max(1, opts.transfers ?? Math.min(opts.concurrency ?? 8, 4)) });
    this.listings = new DaemonListings({
      run: (dir, onRow) => this.listRun(dir, onRow),
      uploading: (wireDir, name) => this.inflight.has(wireDir, name),
      closed: () => this.closed,
      log: this.log,
    }, opts.listingTtlMs ?? 30_000);
  }

  /** The drive's cache lifetimes: a daemon listing serves stat()s for as long as a listing is cached. */
  cacheTtls(t: { attrTtlMs: number; dirTtlMs: number }): void {
    // (see the top of this file: revalidate() takes listings no older than this)
    this.listings.ttlMs = Math.max(0, t.dirTtlMs);
  }

  toString(): string { return `MaxxoRemote(${this.client.http.origin})`; }

  get offline(): boolean { return this.client.http.silent; }
  toJSON(): unknown { return { kind: 'maxxo', server: this.client.http.origin }; }

  // ---- metadata ----

  async list(dir: string, opts: ListOptions = {}): Promise<ListResult> {
    const wire = toWire(dir);
    let rows;
    let ours: (name: string) => boolean;
    try {
      ({ result: rows, ours } = await this.inflight.during(pathParts(dir).join('/'), () => this.client.list(wire, opts)));
    } catch (e) {
      if (isRemoteError(e, 'FILE_NOT_FOUND')) throw new NotFound(`no such folder`, { ...errCtx(e), path: dir });
      if (isRemoteError(e, 'METHOD_BAD_REQUEST')) {
        const [st] = await this.sizes([dir], opts).catch(() => [undefined]);
        if (st && st.type === 'file') throw new NotADirectory('not a folder', { ...errCtx(e), path: dir });
      }
      throw toGeneric(e);
    }
    const entries: RemoteEntry[] = [];
    const seen = new Set<string>();
    for (const r of rows) {
      const name = r.file.slice(r.file.lastIndexOf('/') + 1);
      // rsync's temp file of an upload of ours into this folder (see inflight.ts)
      if (ours(name)) continue;
      if (!validName(name) || seen.has(name)) {
        this.log.warn(`maxxo: listing of ${JSON.stringify(dir)} has an unusable entry name ${JSON.stringify(r.file.slice(0, 300))}: dropped`);
        continue;
      }
      seen.add(name);
      entries.push({ name, type: r.type === 'd' ? 'dir' : 'file', size: Math.max(0, r.size) });
    }
    opts.onNames?.(seen);
    const listed = await this.listings.source(dir, entries);
    for (const e of entries) withMtime(e, listed);
    return { entries };
  }

  async stat(path: string, opts: CallOptions = {}): Promise<RemoteEntry | null> {
    return (await this.statMany([path], opts))[0]!;
  }

  /** Entries with the mtimes of files and folders (see the top of this file and mtimeSource()). */
  async statMany(paths: string[], opts: CallOptions = {}): Promise<(RemoteEntry | null)[]> {
    const out = await this.sizes(paths, opts);
    const byDir = new Map<string, RemoteEntry[]>();
    for (const [i, e] of out.entries()) {
      // the top folder has no parent to be listed in
      // (a folder's mtime too: shown as the mount time until its parent is listed, it would
      // change under programs that already saw it; the first look at a folder costs the run)
      if (!e || pathParts(paths[i]!).length === 0) continue;
      const dir = parentOf(paths[i]!);
      byDir.set(dir, [...(byDir.get(dir) ?? []), e]);
    }
    await Promise.all([...byDir].map(async ([dir, es]) => {
      const listed = await this.listings.source(dir, es);
      for (const e of es) withMtime(e, listed);
    }));
    return out;
  }

  /**
   * e with the mtime (and size) the daemon lists for path now, or at most maxAgeMs ago: a shared
   * run per folder and maxAgeMs at most. A file missing from that listing loses its mtime (the
   * drive then takes its cached bytes for another version); e as it is when the daemon cannot be
   * reached (the last known version stays usable rather than every file looking changed).
   */
  async revalidate(path: string, e: RemoteEntry, maxAgeMs: number): Promise<RemoteEntry> {
    if (e.type !== 'file') return e;
    const listed = await this.listings.get(parentOf(path), maxAgeMs);
    if (!listed) return e;
    const row = listed.rows.get(pathParts(path).pop()!);
    return row && row.type === 'file' ? { ...e, size: row.size, mtimeMs: row.mtimeMs, ...(row.exec !== undefined ? { mode: modeOf(row.exec) } : {}) } : { ...e, mtimeMs: undefined };
  }

  /** Entries from ops/filesize alone (no mtimes): what the checks around our own changes need. */
  private async sizes(paths: string[], opts: CallOptions = {}): Promise<(RemoteEntry | null)[]> {
    if (paths.length === 0) return [];
    const wires = paths.map(toWire);
    const rows = await this.client.filesize(wires, opts).catch(generic);
    const out: (RemoteEntry | null)[] = rows.map((r, i) => this.entryOf(paths[i]!, r));
    // Rows without `type` (a server that does not send it): the parent listing tells folders apart.
    const untyped = rows.map((r, i) => (r.size >= 0 && !r.type && pathParts(paths[i]!).length > 0 ? i : -1)).filter((i) => i >= 0);
    if (untyped.length) {
      const byParent = new Map<string, number[]>();
      for (const i of untyped) {
        const parent = parentOf(paths[i]!);
        byParent.set(parent, [...(byParent.get(parent) ?? []), i]);
      }
      await Promise.all([...byParent].map(async ([parent, idx]) => {
        // A failed listing must not leave the guess 'file' for what may be a folder (creates in
        // it would then fail): a parent gone meanwhile means the entry is gone, anything else
        // (500, 503, a cut connection) fails the stat as a whole.
        let listing: ListResult | undefined;
        try {
          listing = await this.list(parent, opts);
        } catch (e) {
          if (!isRemoteError(e, 'NOT_FOUND') && !isRemoteError(e, 'NOT_A_DIRECTORY')) throw e;
        }
        for (const i of idx) {
          const name = pathParts(paths[i]!).pop()!;
          const e = listing?.entries.find((x) => x.name === name);
          if (!listing) out[i] = null;
          else if (e) out[i] = { ...e };
        }
      }));
    }
    return out;
  }

  private entryOf(path: string, r: MaxxoSizeRow): RemoteEntry | null {
    if (r.size < 0) return null;
    const parts = pathParts(path);
    if (parts.length === 0) return { name: '', type: 'dir', size: 0 };
    return { name: parts[parts.length - 1]!, type: r.type === 'd' ? 'dir' : 'file', size: r.size };
  }

  async move(from: string, to: string, opts: CallOptions = {}): Promise<void> {
    const src = toWire(from);
    const dst = toWire(to);
    if (pathParts(from).length === 0 || pathParts(to).length === 0) throw new BadRequest('cannot move the top folder', { path: from });
    const row = this.listings.row(from);
    await this.safely(opts, async () => {
      try {
        await this.client.move(src, dst, opts);
      } catch (e) {
        if (isRemoteError(e, 'FILE_NOT_FOUND')) throw new NotFound('no such file or folder', { ...errCtx(e), path: from });
        if (isRemoteError(e, 'METHOD_BAD_REQUEST')) throw toGeneric(await this.explainMoveRefusal(from, to, e, opts));
        throw toGeneric(e);
      }
    }, async () => {
      const [a, b] = await this.sizes([from, to], opts);
      return a === null && b !== null;
    }).finally(() => {
      this.listings.own(from, null);
      this.listings.own(to, row ? { ...row, name: baseName(to) } : null);
    });
  }

  /** METHOD_BAD_REQUEST from ops/move -> what rename(2) would say. */
  private async explainMoveRefusal(from: string, to: string, e: RemoteError, opts: CallOptions): Promise<RemoteError> {
    const toParts = pathParts(to);
    const fromParts = pathParts(from);
    const ctx = { ...errCtx(e), path: to };
    if (toParts.length > fromParts.length && fromParts.every((p, i) => toParts[i] === p)) {
      return new BadRequest('cannot move a folder into itself', ctx);
    }
    const [a, b] = await this.sizes([from, to], opts).catch(() => [undefined, undefined]);
    if (a && b) {
      if (a.type === 'dir' && b.type === 'dir') return new NotEmpty('destination folder is not empty', ctx);
      if (a.type === 'file' && b.type === 'dir') return new IsADirectory('destination is a folder', ctx);
      if (a.type === 'dir' && b.type === 'file') return new NotADirectory('destination is not a folder', ctx);
      return new AlreadyExists('destination exists', ctx);
    }
    return e;
  }

  async remove(paths: string[], opts: CallOptions = {}): Promise<void> {
    if (paths.length === 0) return;
    if (paths.some((p) => pathParts(p).length === 0)) throw new BadRequest('cannot delete the top folder', { path: '/' });
    let left = paths;
    await this.safely(opts, async () => {
      try {
        await this.client.delete(left.map(toWire), opts);
      } catch (e) {
        if (isRemoteError(e, 'FILE_NOT_FOUND')) throw new NotFound('no such file or folder', { ...errCtx(e), path: left[0] });
        throw toGeneric(e);
      }
    }, async () => {
      const st = await this.sizes(left, opts);
      left = left.filter((_, i) => st[i] !== null);
      return left.length === 0;
    }).finally(() => { for (const p of paths) this.listings.own(p, null); });
  }

  /**
   * Runs a non-idempotent operation; after a transient failure, `done()` checks whether it took
   * effect anyway (answer lost) and the operation is repeated only if not, within the retry bounds.
   */
  private async safely(opts: CallOptions, op: () => Promise<void>, done: () => Promise<boolean>): Promise<void> {
    const max = Math.max(1, this.opts.maxAttempts ?? 5);
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (e) {
        if (!(e instanceof RemoteError) || !e.retryable || attempt >= max || opts.signal?.aborted) throw e;
        let finished = false;
        try { finished = await done(); } catch { throw e; }
        if (finished) return;
        await sleep(backoff(attempt), opts.signal);
      }
    }
  }

  async statfs(opts: CallOptions = {}): Promise<StatFs> {
    const q = await this.client.quota(opts).catch(generic);
    return { total: q.quota > 0 ? q.quota : null, used: Math.max(0, q.normal) };
  }

  // ---- data plane ----

  async mkdir(path: string, opts: CallOptions = {}): Promise<void> {
    const parts = pathParts(path);
    toWire(path);
    if (parts.length === 0) throw new AlreadyExists('the top folder exists', { path });
    const parent = parentOf(path);
    const [self, par] = await this.sizes([path, parent], opts);
    if (self) throw new AlreadyExists('already exists', { path });
    if (!par) throw new NotFound('parent folder does not exist', { path: parent });
    if (par.type !== 'dir') throw new NotADirectory('parent is not a folder', { path: parent });
    if (Buffer.byteLength(parts.join('/')) <= PUSH_DEST_MAX) {
      const empty = await mkdtemp(join(tmpdir(), 'cloudmount-mkdir-'));
      try {
        await this.rsync(path, opts, (url) => ['-d', empty + '/', `${url}/${parts.join('/')}/`], undefined);
      } finally {
        await rm(empty, { recursive: true, force: true });
      }
      this.listings.madeFolder(path);
      return;
    }
    const { base, rel } = pushSplit(parts);
    const stage = await this.uploadStage();
    try {
      const root = join(stage, 'd');
      await fsMkdir(join(root, rel), { recursive: true });
      const list = join(stage, 'list');
      await writeFile(list, rel + '\0', { mode: 0o600 });
      await this.rsync(path, opts, (url) => ['-d', '--no-implied-dirs', '--from0', `--files-from=${list}`, root + '/', base ? `${url}/${base}/` : `${url}/`], undefined);
      this.listings.madeFolder(path);
    } catch (e) {
      // the daemon may have made the folder before it failed: the program is told it was not made
      const made = await this.stat(path, opts).catch(() => null);
      if (made?.type === 'dir') await this.remove([path], opts).catch(() => {});
      throw e;
    } finally {
      await rm(stage, { recursive: true, force: true });
    }
  }

  async upload(localFile: string, path: string, opts: TransferOptions = {}): Promise<RemoteEntry> {
    // rsync does not say when it starts changing the server: count it as sent from the start
    opts.onSend?.();
    const parts = pathParts(path);
    toWire(path);
    if (parts.length === 0) throw new IsADirectory('cannot upload onto the top folder', { path });
    const local = resolvePath(localFile);
    const st = await fsStat(local);
    if (!st.isFile()) throw new BadRequest('upload source is not a regular file', { path });
    const meta = await carryAttrs(local, st, opts);
    let last = -1;
    const onLine = (l: string) => {
      const n = parseProgress(l);
      if (n !== undefined && n > last) { last = n; opts.onProgress?.(n); }
    };
    const stage = await this.uploadStage();
    const done = this.inflight.begin(parts.slice(0, -1).join('/'), parts[parts.length - 1]!);
    try {
      // -I: never skip by size+mtime; the temp-file-and-rename of rsync keeps readers from half files.
      // -t: the server file gets our mtime, so the entry below has it without a daemon listing.
      await this.push(stage, parts, local, ['-I', '-t', ...meta.flags, '--info=progress2', '--outbuf=L'], opts, onLine);
      const [e] = await this.sizes([path], opts);
      if (!e) throw new TransferFailed('uploaded file is not on the server', { path });
      if (e.type !== 'file') throw new IsADirectory('a folder is in the way on the server', { path });
      this.uploaded(path, e, { size: st.size, ...meta.sent });
      if (e.size > last) opts.onProgress?.(e.size);
      return e;
    } finally {
      // in flight until confirmed (see DaemonListings.source())
      done();
      await rm(stage, { recursive: true, force: true });
    }
  }

  /**
   * One rsync run that sends local as the file at parts (stage: a private folder for the run).
   * The source goes by its server name (a symlink to it, followed with -L) into the parent
   * folder: named as a file path, rsync would put it *inside* a folder another client made there,
   * under the cache file's name; this way the folder is in the way and the run fails. A parent
   * path too long for the daemon goes by its relative name below a short one (see PUSH_DEST_MAX).
   */
  private async push(stage: string, parts: string[], local: string, flags: string[], opts: CallOptions,
    onLine: ((l: string) => void) | undefined, mkpath = true): Promise<void> {
    const path = '/' + parts.join('/');
    const parent = parts.slice(0, -1).join('/');
    if (Buffer.byteLength(parent) <= PUSH_DEST_MAX) {
      const link = join(stage, parts[parts.length - 1]!);
      await symlink(local, link);
      await this.rsync(path, opts, (url) => [...flags, '-L', ...(mkpath ? ['--mkpath'] : []), link, parent ? `${url}/${parent}/` : `${url}/`], onLine);
      return;
    }
    const { base, rel } = pushSplit(parts);
    const root = join(stage, 'd');
    const link = join(root, rel);
    await fsMkdir(dirname(link), { recursive: true });
    await symlink(local, link);
    const list = join(stage, 'list');
    await writeFile(list, rel + '\0', { mode: 0o600 });
    // as in uploadMany: missing parents are made (--no-implied-dirs: not over another client's file)
    await this.rsync(path, opts, (url) => [...flags, '-L', '--no-implied-dirs', '--from0', `--files-from=${list}`,
      root + '/', base ? `${url}/${base}/` : `${url}/`], onLine);
  }

  /**
   * A change of a file's mtime or executability alone: an rsync run with -t (and -E) and
   * --size-only of a source as long as the server file, which rsync then finds up to date and
   * only gives the source's time (and executability), sending no bytes. The source is our copy of
   * the content (localFile, or one downloaded into scratch), so that should the server file
   * change size between the check below and the run, what rsync sends is those bytes (the window
   * vBoxx has too), never filler. Nothing is sent when the server already holds the change; null
   * when the file is gone or is no longer the version the caller holds (serverMtimeMs).
   */
  async setAttrs(path: string, attrs: AttrChange, o: CallOptions & { localFile?: string; serverMtimeMs?: number; scratch?: string } = {}): Promise<RemoteEntry | null> {
    const asked = Date.now();
    const parts = pathParts(path);
    toWire(path);
    if (parts.length === 0) throw new IsADirectory('the top folder is not a file', { path });
    const [cur] = await this.sizes([path], o);
    if (cur?.type === 'dir') return this.setFolderTime(path, cur, attrs, o);
    if (!cur || cur.type !== 'file') return null;
    // the version on the server now: a listing that started after this call did (the changes of
    // many files of a folder, as `touch *` makes them, share the next one)
    const listed = await this.listings.since(parentOf(path), asked);
    const row = listed?.rows.get(baseName(path));
    if (!row || row.size !== cur.size) throw new TransferFailed('the daemon listing does not show the file as ops/filesize does', { path });
    if (o.serverMtimeMs !== undefined && row.mtimeMs !== Math.floor(o.serverMtimeMs / 1000) * 1000) return null;
    const mtimeMs = attrs.mtimeMs !== undefined ? Math.floor(attrs.mtimeMs / 1000) * 1000 : row.mtimeMs;
    const exec = attrs.mode !== undefined ? (attrs.mode & FILE_MODE_BITS) !== 0 : row.exec;
    const entry: RemoteEntry = { ...cur, mtimeMs, ...(exec !== undefined ? { mode: modeOf(exec) } : {}) };
    if (mtimeMs === row.mtimeMs && exec === row.exec) return entry;
    let source = o.localFile !== undefined ? resolvePath(o.localFile) : undefined;
    if (source !== undefined && (await fsStat(source).catch(() => null))?.size !== cur.size) source = undefined;
    const stage = await this.uploadStage();
    try {
      if (source === undefined) {
        if (!o.scratch) throw new BadRequest('a scratch file is needed to change the times of a file not cached', { path });
        await this.download(path, o.scratch, o);
        if ((await fsStat(o.scratch)).size !== cur.size) return null;
        source = resolvePath(o.scratch);
      }
      const st = await fsStat(source);
      const meta = await carryAttrs(source, st, { mtimeMs, ...(attrs.mode !== undefined ? { mode: attrs.mode } : {}) });
      // --existing: a file deleted meanwhile is not made again
      await this.push(stage, parts, source, ['-t', ...meta.flags, '--size-only', '--existing'], o, undefined, false);
    } finally {
      if (o.scratch) await rm(o.scratch, { force: true });
      await rm(stage, { recursive: true, force: true });
    }
    this.listings.own(path, { name: cur.name, type: 'file', size: cur.size, mtimeMs, exec });
    return entry;
  }

  /**
   * A folder's mtime: one rsync run of an empty folder's contents ("." with the time) onto it,
   * -d (no recursion), -t, --existing (a folder deleted meanwhile is not made again). Nothing
   * else of the folder is touched; a later change inside it moves the time on the server again.
   */
  private async setFolderTime(path: string, cur: RemoteEntry, attrs: AttrChange, o: CallOptions): Promise<RemoteEntry> {
    if (attrs.mtimeMs === undefined) return cur;
    const mtimeMs = Math.floor(attrs.mtimeMs / 1000) * 1000;
    const wire = pathParts(path).join('/');
    if (Buffer.byteLength(wire) > PUSH_DEST_MAX) throw new BadRequest('the folder path is too long for a time change through the rsync daemon', { path });
    const stage = await this.uploadStage();
    try {
      const src = join(stage, 'd');
      await fsMkdir(src);
      await utimes(src, mtimeMs / 1000, mtimeMs / 1000);
      await this.rsync(path, o, (url) => ['-d', '-t', '--existing', `${src}/`, `${url}/${wire}/`], undefined);
    } finally {
      await rm(stage, { recursive: true, force: true });
    }
    this.listings.folderTime(path, mtimeMs);
    return { ...cur, mtimeMs };
  }

  /**
   * The mtime of a file we just uploaded with -t: the one we sent, to the second as the daemon
   * lists it, when the server has as many bytes as we sent (else another client's write came
   * between, and no mtime makes the drive check the content again); its executability the one we
   * sent with -E, else the one the server file had (rsync keeps an existing file's mode; a new
   * one gets the local file's, not executable: see carryAttrs()). It also goes into the cached
   * daemon listing, whose row for this name is the old version's.
   */
  private uploaded(path: string, e: RemoteEntry, local: { size: number; mtimeMs: number; exec?: boolean }): void {
    if (e.size === local.size) {
      e.mtimeMs = Math.floor(local.mtimeMs / 1000) * 1000;
      const before = this.listings.row(path);
      const exec = local.exec ?? (before === null ? false : before?.exec);
      if (exec !== undefined) e.mode = modeOf(exec);
      this.listings.own(path, { name: e.name, type: 'file', size: e.size, mtimeMs: e.mtimeMs, exec });
    } else {
      this.listings.own(path, null);
    }
  }

  /**
   * Many uploads with one rsync run: every upload() costs a process start, a connection and the
   * daemon's auth (about 90 ms at 20 ms RTT, more than a small file's bytes). The local files
   * (cache files under names of their own) are presented under their server paths as a staging
   * tree of symlinks that rsync follows (-L); the names go literally in a NUL-separated
   * --files-from list (no wildcards, no option parsing, any byte but NUL and "/"), and missing
   * parents are created like --mkpath. A run that exits 0 confirms every file; after a
   * transient failure (connection, timeout, after rsync()'s own retries) each item gets that
   * retryable error, after any other failure (e.g. exit 23: some file refused) each item is
   * uploaded alone, so one bad file neither fails nor falsely confirms the others. Items with a
   * mode to keep go in a run of their own: -E would give the others the local files' modes.
   */
  async uploadMany(items: UploadItem[], opts: CallOptions = {}): Promise<UploadResult[]> {
    const moded = items.map((it, i) => (it.mode !== undefined ? i : -1)).filter((i) => i >= 0);
    if (moded.length === 0 || moded.length === items.length) return this.uploadBatch(items, opts);
    const plain = items.map((_, i) => i).filter((i) => items[i]!.mode === undefined);
    const [a, b] = await Promise.all([this.uploadBatch(moded.map((i) => items[i]!), opts), this.uploadBatch(plain.map((i) => items[i]!), opts)]);
    const out: UploadResult[] = new Array(items.length);
    moded.forEach((i, k) => { out[i] = a[k]!; });
    plain.forEach((i, k) => { out[i] = b[k]!; });
    return out;
  }

  private async uploadBatch(items: UploadItem[], opts: CallOptions): Promise<UploadResult[]> {
    const out: (UploadResult | undefined)[] = new Array(items.length);
    const rels: string[] = [];
    const batch: number[] = [];
    const alone: number[] = [];
    const later: number[] = [];
    const seen = new Set<string>();
    for (const [i, it] of items.entries()) {
      try {
        toWire(it.path);
        const parts = pathParts(it.path);
        if (parts.length === 0) throw new IsADirectory('cannot upload onto the top folder', { path: it.path });
        rels[i] = parts.join('/');
        // the same path twice in one run: which bytes would win is up to rsync; the later goes alone
        if (seen.has(rels[i]!)) { later.push(i); continue; }
        seen.add(rels[i]!);
        batch.push(i);
      } catch (error) {
        out[i] = { error };
      }
    }
    if (batch.length === 1) alone.push(batch.pop()!);
    if (batch.length > 0) {
      const stage = await this.uploadStage();
      try {
        const root = join(stage, 'd');
        const listed: number[] = [];
        const locals: { size: number; mtimeMs: number; exec?: boolean }[] = [];
        for (const i of batch) {
          const link = join(root, rels[i]!);
          try {
            const st = await fsStat(resolvePath(items[i]!.localFile));
            if (!st.isFile()) throw new BadRequest('upload source is not a regular file', { path: items[i]!.path });
            locals[i] = { size: st.size, ...(await carryAttrs(resolvePath(items[i]!.localFile), st, items[i]!)).sent };
            await fsMkdir(dirname(link), { recursive: true });
            await symlink(resolvePath(items[i]!.localFile), link);
            listed.push(i);
          } catch (e) {
            // a source gone, or a path that is a file for one item and a folder for another
            if (e instanceof RemoteError) out[i] = { error: e };
            else alone.push(i);
          }
        }
        if (listed.length > 0) {
          const list = join(stage, 'list');
          await writeFile(list, listed.map((i) => rels[i]!).join('\0') + '\0', { mode: 0o600 });
          let failed: unknown;
          // in flight until confirmed (see DaemonListings.source())
          const dones = listed.map((i) => { const ps = rels[i]!.split('/'); return this.inflight.begin(ps.slice(0, -1).join('/'), ps[ps.length - 1]!); });
          try {
            try {
              // -I: never skip by size+mtime; -L: send the files the links point to; -t: our
              // mtimes, -E: executability (see carryAttrs()); --no-implied-dirs: missing parents
              // are made, but a parent that is a file on the server fails that one file (implied
              // dirs would replace the other client's file)
              const flags = items[listed[0]!]!.mode !== undefined ? ['-E'] : [];
              await this.rsync(items[listed[0]!]!.path, opts,
                (url) => ['-I', '-t', ...flags, '-L', '--no-implied-dirs', '--from0', `--files-from=${list}`, root + '/', `${url}/`], undefined);
            } catch (e) {
              failed = e;
            }
            if (failed === undefined) {
              try {
                const st = await this.sizes(listed.map((i) => items[i]!.path), opts);
                listed.forEach((i, k) => {
                  const e = st[k];
                  if (e && e.type === 'file') this.uploaded(items[i]!.path, e, locals[i]!);
                  out[i] = e && e.type === 'file' ? { entry: e } : { error: new TransferFailed('uploaded file is not on the server', { path: items[i]!.path }) };
                });
              } catch (error) {
                // the bytes went, the confirmation did not: the items are tried again
                for (const i of listed) out[i] = { error };
              }
            } else if (opts.signal?.aborted || (failed instanceof RemoteError && (failed.retryable || failed.code === 'CANCELLED'))) {
              for (const i of listed) out[i] = { error: failed };
            } else {
              this.log.debug(`maxxo: batch upload of ${listed.length} files failed, each goes alone: ${(failed as Error).message}`);
              alone.push(...listed);
            }
          } finally {
            for (const d of dones) d();
          }
        }
      } finally {
        await rm(stage, { recursive: true, force: true });
      }
    }
    const one = async (i: number) => {
      try {
        const { mtimeMs, mode } = items[i]!;
        out[i] = { entry: await this.upload(items[i]!.localFile, items[i]!.path, { ...opts, ...(mtimeMs !== undefined ? { mtimeMs } : {}), ...(mode !== undefined ? { mode } : {}) }) };
      } catch (error) {
        out[i] = { error };
      }
    };
    await Promise.all(alone.map(one));
    for (const i of later) await one(i);
    return out.map((r) => r ?? { error: new TransferFailed('not uploaded', {}) });
  }

  async download(path: string, localFile: string, opts: TransferOptions = {}): Promise<DownloadedVersion> {
    const parts = pathParts(path);
    toWire(path);
    if (parts.length === 0) throw new IsADirectory('the top folder is not a file', { path });
    const local = resolvePath(localFile);
    await (await open(local, 'w')).close();
    // -t gives the file the server's mtime when bytes came; one still at 0 after the runs means
    // none came (an empty file: --append skips it), and the version is then not known
    await utimes(local, 0, 0);
    let reported = 0;
    const poll = async () => {
      try {
        const s = await fsStat(local);
        if (s.size > reported) { reported = s.size; opts.onProgress?.(s.size); }
      } catch { /* not there yet */ }
    };
    const timer = setInterval(() => { void poll(); }, this.opts.progressIntervalMs ?? 50);
    const src = (url: string) => `${url}/${escapeSource(parts.join('/'))}`;
    try {
      let runs = 0;
      let before = 0;
      const r = await this.rsync(path, opts, (url) => ['-I', '-t', '--append-verify', src(url), local], undefined, {
        beforeRun: async () => {
          runs++;
          before = (await fsStat(local)).size;
        },
      });
      const dirErr = skippedDirectory(r, { path });
      if (dirErr) throw dirErr;
      // --append skips, unverified, a file whose local copy is not shorter than the server's: a
      // retry after a cut that appended nothing may have kept bytes of a version the server no
      // longer has (replaced meanwhile by one as long or shorter). Such a copy is checked and
      // brought to the server's content with a normal in-place run (delta against it, verified).
      if (runs > 1 && before > 0 && (await fsStat(local)).size === before) {
        this.log.debug(`maxxo: resumed download of ${path} appended nothing; verifying it in place`);
        await this.rsync(path, opts, (url) => ['-I', '-t', '--inplace', src(url), local], undefined);
      }
    } finally {
      clearInterval(timer);
    }
    await poll();
    const got = await fsStat(local);
    if (got.mtimeMs === 0) return { size: got.size };
    // listed to the second, as the daemon's listings say it
    const version = { size: got.size, mtimeMs: Math.floor(got.mtimeMs / 1000) * 1000 };
    this.downloaded(path, version);
    return version;
  }

  /**
   * The version a download got is at least as new as the folder's cached listing: the file may
   * have been replaced since that listing ran, and a revalidation against the older row would
   * take the bytes just fetched for stale and fetch them again (at every open, while the row
   * lives), the drive meanwhile believing the listed size.
   */
  private downloaded(path: string, v: { size: number; mtimeMs: number }): void {
    const before = this.listings.row(path);
    if (before && before.size === v.size && before.mtimeMs === v.mtimeMs) return;
    // whether the new version is executable is not carried by the download (no -E into cache files)
    this.listings.own(path, { name: pathParts(path).pop()!, type: 'file', size: v.size, mtimeMs: v.mtimeMs, exec: before?.exec });
  }

  /**
   * Many whole files with one rsync run (`--files-from`): every file otherwise costs a process
   * start, a connection and the daemon's auth. Files land in a staging folder next to the first
   * localFile and are renamed into place; a file that vanished meanwhile (rsync code 23) is only
   * missing from the answer.
   */
  async downloadMany(items: { path: string; localFile: string }[], opts: TransferOptions = {}): Promise<string[]> {
    if (items.length === 0) return [];
    const rels = items.map((it) => {
      toWire(it.path);
      const parts = pathParts(it.path);
      if (parts.length === 0) throw new IsADirectory('the top folder is not a file', { path: it.path });
      return parts.join('/');
    });
    const stage = await mkdtemp(join(dirname(resolvePath(items[0]!.localFile)), '.rsync-many-'));
    const dest = join(stage, 'd');
    const list = join(stage, 'list');
    try {
      await writeFile(list, rels.join('\0') + '\0', { mode: 0o600 });
      try {
        // files-from names are literal (no wildcards); -s keeps them from the remote shell
        await this.rsync(items[0]!.path, opts, (url) => ['-I', '--from0', `--files-from=${list}`, `${url}/`, dest + '/'], undefined);
      } catch (e) {
        if (opts.signal?.aborted || (e instanceof RemoteError && e.code === 'CANCELLED')) throw e;
        this.log.debug(`maxxo: batch download of ${items.length} files partly failed: ${(e as Error).message}`);
      }
      const got: string[] = [];
      for (let i = 0; i < items.length; i++) {
        const src = join(dest, rels[i]!);
        try {
          if (!(await fsStat(src)).isFile()) continue;
          await rename(src, resolvePath(items[i]!.localFile));
          got.push(items[i]!.path);
        } catch { /* not delivered */ }
      }
      return got;
    } finally {
      await rm(stage, { recursive: true, force: true });
    }
  }

  /**
   * A private folder for the symlinks an upload presents to rsync. It is named after our pid: the
   * first upload of a process removes the folders of processes that are gone (killed mid-upload).
   */
  private async uploadStage(): Promise<string> {
    if (!this.stagesSwept) {
      this.stagesSwept = true;
      await sweepStaleStages().catch(() => {});
    }
    return mkdtemp(join(tmpdir(), `${STAGE_PREFIX}${process.pid}-`));
  }

  /**
   * One rsync run through a queue (the transfer queue unless told otherwise) with bounded retries:
   * transient exit codes are repeated with backoff. A run that could not reach the daemon, or was
   * refused its password, drops the cached slice first, so the next attempt uses what /slice says
   * now: the storage server may have moved or restarted on another port, or the Cloudstore
   * password changed (an auth failure is tried again at once, once).
   */
  private async rsync(path: string, opts: CallOptions, args: (url: string) => string[],
    onLine: ((l: string) => void) | undefined,
    o: { queue?: PQueue; attempts?: number; listing?: boolean; beforeRun?: () => Promise<void> } = {}): Promise<RsyncResult> {
    const ctx: ErrorContext = { path };
    const max = Math.max(1, o.attempts ?? this.opts.maxAttempts ?? 5);
    const deadline = Date.now() + (this.opts.maxRetryTimeMs ?? 60_000);
    const secs = Math.max(1, Math.ceil((this.opts.timeoutMs ?? 30_000) / 1000));
    let reSliced = false;
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
      const argv = ['-s', '--no-motd', `--contimeout=${secs}`, `--timeout=${secs}`, ...(this.opts.rsyncExtraArgs ?? []), ...args(url)];
      const r = await enqueue(o.queue ?? this.transfers, () => {
        // turned silent while this transfer waited in the queue: fail fast like the API requests
        if (this.client.http.silent) return Promise.reject(new Timeout('server not answering (transfer not started)', ctx));
        this.rsyncRuns++;
        if (o.listing) this.listRuns++;
        return (o.beforeRun?.() ?? Promise.resolve()).then(() => {
          const startedAt = Date.now();
          return runRsync({
            args: argv, password: slice.rsync, signal: opts.signal, onLine, children: this.children, rsyncPath: this.opts.rsyncPath,
          }, ctx).then((res) => {
            // -vv: one line per run; the password is in the child's environment only, never here
            this.log.debug(`rsync run for ${path}: exit ${res.code ?? res.signal} in ${Date.now() - startedAt} ms${attempt > 1 ? ` (attempt ${attempt})` : ''}`);
            return res;
          });
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
  }

  /** The slice (rsync host, login, password), fetched once and cached. */
  private slice(opts: CallOptions): Promise<MaxxoSlice> {
    if (!this.slicePromise) {
      this.sliceFetches++;
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

  /** One daemon listing of a folder (see listings.ts), in its own queue. */
  private async listRun(dir: string, onRow: (r: ListedRow) => void): Promise<void> {
    const parts = pathParts(dir);
    await this.rsync(dir, { priority: Priority.interactive },
      (url) => ['--list-only', '--no-h', parts.length ? `${url}/${escapeSource(parts.join('/'))}/` : `${url}/`],
      (l) => {
        const r = parseListLine(l);
        if (r && validName(r.name)) onRow(r);
      }, { queue: this.listQueue, attempts: 2, listing: true });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.transfers.clear();
    for (const c of this.children) c.kill('SIGTERM');
    await this.client.close();
  }
}

export function createMaxxoRemote(opts: MaxxoRemoteOptions): MaxxoRemote {
  return new MaxxoRemote(opts);
}

const STAGE_PREFIX = 'cloudmount-up-';

async function sweepStaleStages(): Promise<void> {
  const dir = tmpdir();
  for (const n of await readdir(dir)) {
    if (!n.startsWith(STAGE_PREFIX)) continue;
    const pid = Number(/^\d+(?=-)/.exec(n.slice(STAGE_PREFIX.length))?.[0]);
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
      continue; // still running
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') continue; // someone else's, alive
    }
    // another user's folder cannot be removed by us: that fails quietly
    await rm(join(dir, n), { recursive: true, force: true }).catch(() => {});
  }
}

/** Mount path -> Maxxo path ("/" for the top). Refuses components that are not plain names. */
function toWire(path: string): string {
  const parts = pathParts(path);
  for (const p of path.split('/')) {
    if (p === '..' || p.includes('\0')) throw new InvalidName('invalid path component', { path });
  }
  for (const p of parts) if (!validName(p)) throw new InvalidName('invalid path component', { path });
  return parts.length ? parts.join('/') : '/';
}

/**
 * Gives the local file the mtime and executability an upload is to keep: rsync -t sends the
 * source's mtime, -E its executability (the cache file is ours; its times and mode mean nothing
 * else). Without a mode to keep, no -E: an existing server file keeps its own, and a new one gets
 * the local file's, which is made to say "not executable".
 */
async function carryAttrs(local: string, st: { atimeMs: number; mtimeMs: number; mode: number }, o: { mtimeMs?: number; mode?: number }):
  Promise<{ flags: string[]; sent: { mtimeMs: number; exec?: boolean } }> {
  // whole seconds, as the daemon lists them (it would keep the fraction: a remount would show less)
  const mtimeMs = o.mtimeMs !== undefined ? Math.floor(o.mtimeMs / 1000) * 1000 : st.mtimeMs;
  if (mtimeMs !== st.mtimeMs) await utimes(local, st.atimeMs / 1000, mtimeMs / 1000);
  if (o.mode !== undefined) {
    const exec = (o.mode & FILE_MODE_BITS) !== 0;
    await chmod(local, exec ? 0o700 : 0o600);
    return { flags: ['-E'], sent: { mtimeMs, exec } };
  }
  if (st.mode & 0o111) await chmod(local, 0o600);
  return { flags: [], sent: { mtimeMs } };
}

function errCtx(e: RemoteError): ErrorContext {
  return { status: e.status, method: e.method };
}

function backoff(attempt: number): number {
  return backoffDelay(attempt, 200, 5000);
}

