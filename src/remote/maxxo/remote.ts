// Maxxo as a Remote: control plane through MaxxoClient, file bytes through rsync against the
// slice's daemon (rsync://LOGIN@IP:PORT/LOGIN/<path>).
//
// The modules: transport.ts (the slice and rsync runs with retries), listings.ts (daemon listings
// for mtimes), uploads.ts, downloads.ts, attrs.ts (times/modes alone), push.ts (what a push to the
// daemon needs), inflight.ts (rsync temp files of our uploads). This file: metadata, moves,
// deletes, mkdir, and the wiring.
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
// - The slice is cached and read again when the daemon cannot be reached (transport.ts).
import { mkdtemp, mkdir as fsMkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import PQueue from 'p-queue';
import type {
  AttrChange, BatchMkdir, BatchStat, BatchUpload, CallOptions, StatOptions, DownloadedVersion, FileMetadata, ListOptions, ListResult, Remote, RemoteEntry, Revalidation, StatFs,
  TransferOptions, UploadResult,
} from '../types.js';
import { Priority } from '../types.js';
import {
  RemoteError, NotFound, NotADirectory, IsADirectory, AlreadyExists, NotEmpty, BadRequest, isRemoteError, type ErrorContext,
} from '../../errors.js';
import { validName } from '../names.js';
import { pathParts } from '../url.js';
import { MaxxoClient, type MaxxoSizeRow } from './client.js';
import { toGeneric, generic } from './errors.js';
import { parseListLine, type ListedRow, type RsyncResult } from './rsync.js';
import { InflightUploads } from './inflight.js';
import { batchMkdir } from './mkdirs.js';
import { DaemonListings, withMtime, parentOf, baseName, modeOf, FILE_MODE_BITS } from './listings.js';
import { DaemonTransport, backoff, type MaxxoRemoteOptions, type RunOptions } from './transport.js';
import { PUSH_DEST_MAX, pushSplit, UploadStages, type TransferPorts } from './push.js';
import { Uploads, type UploadItem } from './uploads.js';
import { Downloads } from './downloads.js';
import { AttrChanges } from './attrs.js';
import { toWire } from './wire.js';
import { silentLogger, type Logger } from '../../log.js';
import { sleep } from '../../util/sleep.js';

export type { MaxxoRemoteOptions } from './transport.js';

export class MaxxoRemote implements Remote {
  readonly kind = 'maxxo' as const;
  readonly batchStat: BatchStat = { statMany: (paths, o) => this.statMany(paths, o) };
  /** /ops/delete takes many file[] (a form of this many paths stays far below request limits). */
  readonly removeBatchMax = 500;
  /** ops/move is rename(2): an existing file or empty folder at the target is replaced. */
  readonly moveReplaces = true;
  readonly batchUpload: BatchUpload = { uploadMany: (items, o) => this.uploadMany(items, o) };
  /** Many folders with one rsync run (mkdirs.ts): the drive writes mkdirs back. */
  readonly batchMkdir: BatchMkdir = batchMkdir({
    wire: toWire, sizes: (p, o) => this.sizes(p, o), rsync: (path, o, args, run) => this.rsync(path, o, args, undefined, run),
    workBase: () => this.stages.workBase(), made: (p, since) => this.listings.madeFolder(p, since),
  });
  readonly revalidation: Revalidation = {
    cacheTtls: (t) => this.cacheTtls(t),
    revalidate: (path, e, maxAgeMs) => this.revalidate(path, e, maxAgeMs),
  };
  /**
   * The daemon keeps what rsync -t and -E send: mtimes (listed to the second) and whether a file
   * is executable. A change of them alone is an rsync run that sends no bytes (--size-only).
   */
  readonly fileMeta?: FileMetadata;
  readonly client: MaxxoClient;
  private readonly transport: DaemonTransport;
  /** Running rsync children (tests check that cancel really ends them). */
  get children(): DaemonTransport['children'] { return this.transport.children; }
  private readonly log: Logger;
  private readonly opts: MaxxoRemoteOptions;
  /** Daemon listings by folder (mount path): fetched or in flight. */
  private readonly listings: DaemonListings;
  /**
   * Listings go in their own queue: a stat must not wait behind whole-file transfers. As wide as
   * the transfer lanes: the first stats in many folders each wait for their folder's listing.
   */
  private readonly listQueue = new PQueue({ concurrency: 4 });
  /** false (-o no_modtime): no daemon listings; entries carry no mtime (see ClientOptions.modtimes). */
  private readonly mtimes: boolean;
  private closed = false;
  private readonly stages = new UploadStages();
  private readonly inflight = new InflightUploads();
  private readonly uploads: Uploads;
  private readonly downloads: Downloads;
  private readonly attrChanges: AttrChanges;

  constructor(opts: MaxxoRemoteOptions) {
    this.opts = opts;
    this.mtimes = opts.modtimes !== false;
    if (this.mtimes) {
      this.fileMeta = {
        mtimeResolutionMs: 1000, modeBits: FILE_MODE_BITS, attrsNeedContent: true, folderTimes: true,
        setAttrs: (path, attrs, o) => this.setAttrs(path, attrs, o),
      };
    }
    this.client = new MaxxoClient(opts);
    this.log = opts.log ?? silentLogger;
    this.transport = new DaemonTransport(this.client, opts, this.log);
    this.listings = new DaemonListings({
      run: (dir, onRow, o) => this.listRun(dir, onRow, o),
      uploading: (wireDir, name) => this.inflight.has(wireDir, name),
      closed: () => this.closed,
      log: this.log,
    }, opts.listingTtlMs ?? 30_000, opts.listingBounds);
    const ports: TransferPorts = {
      rsync: this.transport.run, stages: this.stages, sizes: (paths, o) => this.sizes(paths, o),
      listings: this.listings, inflight: this.inflight, log: this.log,
    };
    this.uploads = new Uploads(ports);
    this.downloads = new Downloads(this.transport.run, this.listings, this.log, opts.progressIntervalMs);
    this.attrChanges = new AttrChanges(ports, (path, local, o) => this.download(path, local, o));
  }

  /** The drive's cache lifetimes: a daemon listing serves stat()s for as long as a listing is cached. */
  cacheTtls(t: { attrTtlMs: number; dirTtlMs: number }): void {
    // (see the top of this file: revalidate() takes listings no older than this)
    this.listings.ttlMs = Math.max(0, t.dirTtlMs);
  }

  toString(): string { return `MaxxoRemote(${this.client.http.origin})`; }

  /** Diagnostics (Remote.counters): the API client's, its logins, rsync runs (see DaemonTransport.counts). */
  counters(): Record<string, number> {
    return { ...this.client.http.stats(), logins: this.client.logins, ...this.transport.counts };
  }

  get offline(): boolean { return this.client.http.silent; }
  toJSON(): unknown { return { kind: 'maxxo', server: this.client.http.origin }; }

  // ---- metadata ----

  async list(dir: string, opts: ListOptions = {}): Promise<ListResult> {
    const wire = toWire(dir);
    // its mtimes come from the daemon listing: both runs at once
    const deep = !opts.forLookups;
    if (this.mtimes) this.listings.prime(dir, deep);
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
    if (!this.mtimes) return { entries };
    this.listings.expect(dir, seen);
    const listed = await this.listings.source(dir, entries, deep);
    for (const e of entries) withMtime(e, listed);
    return { entries };
  }

  /** See DaemonListings.likelyFolder (without daemon listings the guess would cost two API calls for nothing). */
  likelyFolder(path: string): boolean {
    return this.mtimes && this.listings.likelyFolder(path);
  }

  async stat(path: string, opts: CallOptions = {}): Promise<RemoteEntry | null> {
    return (await this.statMany([path], opts))[0]!;
  }

  /** Entries with the mtimes of files and folders (see the top of this file and mtimeSource()). */
  async statMany(paths: string[], opts: StatOptions = {}): Promise<(RemoteEntry | null)[]> {
    const out = await this.sizes(paths, opts);
    if (!this.mtimes) return out;
    // what they are is known now; a folder's time may wait for a daemon run (told only then: the
    // drive lists a folder it is told of, one API call)
    if (opts.onTypes && out.some((e, i) => e?.type === 'dir' && !this.listings.dirTimeAtHand(paths[i]!))) opts.onTypes(out.map((e) => e && { ...e }));
    const byDir = new Map<string, RemoteEntry[]>();
    const tops: RemoteEntry[] = [];
    const folders: Promise<void>[] = [];
    for (const [i, e] of out.entries()) {
      // (a folder's mtime too: shown as the mount time until its parent is listed, it would
      // change under programs that already saw it; the first look at a folder costs the run)
      if (!e) continue;
      // the top folder has no parent to be listed in: its own listing's "." row has its time
      if (pathParts(paths[i]!).length === 0) { tops.push(e); continue; }
      if (e.type === 'dir') {
        // a folder looked up is about to be listed, or looked into (its files' mtimes): its own
        // run starts now, and may tell its time before its parent's does
        folders.push(this.listings.dirTime(paths[i]!).then((m) => { if (m !== undefined) e.mtimeMs = m; }));
        continue;
      }
      const dir = parentOf(paths[i]!);
      byDir.set(dir, [...(byDir.get(dir) ?? []), e]);
    }
    await Promise.all([...folders, ...[...byDir].map(async ([dir, es]) => {
      const listed = await this.listings.source(dir, es);
      for (const e of es) withMtime(e, listed);
    })]);
    if (tops.length) {
      const self = (await this.listings.source('/', []))?.self;
      if (self !== undefined) for (const e of tops) e.mtimeMs = self;
    }
    return out;
  }

  /**
   * e with the mtime (and size) the daemon lists for path now, or at most maxAgeMs ago: a shared
   * run per folder and maxAgeMs at most. A file missing from that listing loses its mtime (the
   * drive then takes its cached bytes for another version); e as it is when the daemon cannot be
   * reached (the last known version stays usable rather than every file looking changed).
   */
  async revalidate(path: string, e: RemoteEntry, maxAgeMs: number): Promise<RemoteEntry> {
    if (e.type !== 'file' || !this.mtimes) return e;
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
      // (no row of the source: a folder, or a file of a folder never listed; not known there)
      this.listings.own(to, row ? { ...row, name: baseName(to) } : undefined);
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
    return this.noMtime(await this.uploads.upload(localFile, path, opts));
  }

  /** -o no_modtime: no entry carries an mtime (one from a transfer would differ from the listings'). */
  private noMtime<T extends { mtimeMs?: number }>(e: T): T {
    if (!this.mtimes && e.mtimeMs !== undefined) delete e.mtimeMs;
    return e;
  }

  /** Many uploads with one rsync run (see Uploads.uploadMany()). */
  async uploadMany(items: UploadItem[], opts: CallOptions = {}): Promise<UploadResult[]> {
    const res = await this.uploads.uploadMany(items, opts);
    for (const r of res) if (r.entry) this.noMtime(r.entry);
    return res;
  }

  /** A change of a file's mtime or executability alone (see AttrChanges.setAttrs()). */
  setAttrs(path: string, attrs: AttrChange, o: CallOptions & { localFile?: string; serverMtimeMs?: number; scratch?: string; folder?: boolean } = {}): Promise<RemoteEntry | null> {
    return this.attrChanges.setAttrs(path, attrs, o);
  }

  async download(path: string, localFile: string, opts: TransferOptions = {}): Promise<DownloadedVersion> {
    return this.noMtime(await this.downloads.download(path, localFile, opts));
  }

  /** Many whole files with one rsync run (see Downloads.downloadMany()). */
  downloadMany(items: { path: string; localFile: string }[], opts: TransferOptions = {}): Promise<string[]> {
    return this.downloads.downloadMany(items, opts);
  }

  /** A private folder for the symlinks a push presents to rsync (see UploadStages). */
  private uploadStage(): Promise<string> {
    return this.stages.make();
  }

  /** One rsync run with retries (see DaemonTransport.run()). */
  private rsync(path: string, opts: CallOptions, args: (url: string) => string[],
    onLine: ((l: string) => void) | undefined, o: RunOptions = {}): Promise<RsyncResult> {
    return this.transport.run(path, opts, args, onLine, o);
  }

  /**
   * One daemon listing of a folder (see listings.ts), in its own queue. The folder is named in a
   * --files-from list ("dir/." with --no-relative: its contents, named from it), not in argv, so
   * the run takes a child started ahead (WarmRuns in transport.ts); the list is not glob-expanded
   * by the daemon, so no name needs escaping. The destination is never written (--list-only).
   */
  private async listRun(dir: string, onRow: (r: ListedRow) => void, o: { deep?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    const parts = pathParts(dir);
    await this.rsync(dir, { priority: Priority.interactive, ...(o.signal ? { signal: o.signal } : {}) },
      // deep: the subfolders' entries too, nothing below them ("/*/*/*" is the third level)
      (url) => ['--list-only', '--no-h', '--no-relative', '--from0', '--files-from=-', ...(o.deep ? ['-r', '--exclude=/*/*/*'] : []), `${url}/`, '/dev/null'],
      (l) => {
        const r = parseListLine(l);
        if (r && (r.name === '.' || (o.deep ? r.name.split('/').every(validName) : validName(r.name)))) onRow(r);
      }, { queue: this.listQueue, attempts: 2, listing: true, input: `${parts.length ? parts.join('/') + '/.' : '.'}\0` });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.transport.close();
    await this.stages.dispose();
    await this.client.close();
  }
}

export function createMaxxoRemote(opts: MaxxoRemoteOptions): MaxxoRemote {
  return new MaxxoRemote(opts);
}

function errCtx(e: RemoteError): ErrorContext {
  return { status: e.status, method: e.method };
}
