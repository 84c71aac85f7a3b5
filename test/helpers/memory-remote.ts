// An in-memory Remote for unit tests of vfs/ and fuse/: a file tree in a Map, with switchable
// capabilities (ranged reads like vBoxx or whole-file downloads like Maxxo, listing hash, batchStat),
// per-method call counters, injectable latency and failures, and gates that hold a call until the
// test releases it (to observe ordering and in-flight states).
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import {
  AlreadyExists, Cancelled, IsADirectory, NotADirectory, NotFound, PolicyExcludedExtension,
  PolicyFileTooLarge, QuotaExceeded, RemoteError,
} from '../../src/errors.js';
import type {
  AttrChange, BatchMkdir, BatchStat, CallOptions, StatOptions, FileMetadata, ListResult, RangeRead, RangeSink, RangedReads, Remote, RemoteEntry, ShareLinks, StatFs, TransferOptions,
} from '../../src/remote/types.js';
import { sleep as waitMs } from '../support/wait.js';

export type MemoryMethod = 'list' | 'stat' | 'statMany' | 'read' | 'download' | 'downloadMany' | 'upload' | 'checkUpload'
  | 'mkdir' | 'mkdirMany' | 'move' | 'remove' | 'statfs' | 'shareLink' | 'close' | 'setAttrs';

export interface MemoryRemoteOptions {
  /** true: ranged reads (vBoxx-like); false: whole-file downloads only (Maxxo-like). Default true. */
  rangedReads?: boolean;
  /** list() honours `hash` and answers unchanged. Default true. */
  listingRevalidation?: boolean;
  /** statMany() exists. Default false. */
  batchStat?: boolean;
  /** shareLink() exists. Default true. */
  shareLinks?: boolean;
  /** Entries carry `rev`. Default true. */
  serverRevision?: boolean;
  /** Milliseconds added to every call (default 0). */
  latencyMs?: number;
  /** download() writes in chunks of this many bytes, waiting downloadChunkDelayMs between them. */
  downloadChunkBytes?: number;
  downloadChunkDelayMs?: number;
  /** readTo() hands the sink chunks of this many bytes (default 64 KiB), waiting readChunkDelayMs between them. */
  readChunkBytes?: number;
  readChunkDelayMs?: number;
  /** move() onto an existing path replaces it (true) or throws AlreadyExists (false, default). */
  moveReplaces?: boolean;
  /** Policy checked by checkUpload() and upload(); absent = no checkUpload method at all. */
  policy?: { maxFileSize?: number | null; excludedExtensions?: string[]; quota?: number | null };
  /** statfs total; null = unlimited. Default 1 GiB. */
  total?: number | null;
  /**
   * The service keeps file mtimes and modes given at upload or by setAttrs (metadata alone, no
   * content), and folder mtimes (moved by every change inside, set by setAttrs), as a service
   * with such calls would (Maxxo). Default false (times are the upload time).
   */
  keepsAttrs?: boolean;
  /** with keepsAttrs: the time resolution the service keeps (Maxxo: 1000) */
  mtimeResolutionMs?: number;
  /** remove() takes this many paths as one request (Maxxo-like); absent = one path per request. */
  removeBatchMax?: number;
  /** batchMkdir exists (Maxxo-like: the drive writes mkdirs back). Default false. */
  batchMkdir?: boolean;
  /** move() gives a moved file a new revision and answers with its entry (vBoxx-like). Default false. */
  revOnMove?: boolean;
  /** Sets Remote.listBeforeType (vBoxx-like). Default false. */
  listBeforeType?: boolean;
  /** Remote.likelyFolder answers from this set (Maxxo-like: folders a kept daemon listing has). */
  likelyFolders?: ReadonlySet<string>;
  /** statMany() tells the types (onTypes) this many ms before it answers (Maxxo-like: times take a daemon run). */
  typesAheadMs?: number;
}

interface Node {
  type: 'file' | 'dir';
  data: Buffer;
  mtimeMs: number;
  rev: number;
  mode?: number;
}

export interface Failure {
  /** Method to fail. */
  method: MemoryMethod;
  /** Error to throw (default ServerError-like retryable RemoteError). */
  error?: Error;
  /** How many calls fail (default 1; Infinity = until cleared). */
  times?: number;
  /** Only calls whose first path argument satisfies this. */
  match?: (path: string) => boolean;
}

const SEP = '/';

function norm(p: string): string {
  if (!p.startsWith(SEP)) p = SEP + p;
  if (p.length > 1 && p.endsWith(SEP)) p = p.slice(0, -1);
  return p;
}
function parentOf(p: string): string {
  const i = p.lastIndexOf(SEP);
  return i <= 0 ? SEP : p.slice(0, i);
}
function baseOf(p: string): string {
  return p.slice(p.lastIndexOf(SEP) + 1);
}
function under(p: string, dir: string): boolean {
  return dir === SEP ? p !== SEP : p.startsWith(dir + SEP);
}

export class MemoryRemote implements Remote {
  readonly kind = 'memory' as const;
  /** Calls per method (including failed ones). */
  readonly calls: Record<MemoryMethod, number>;
  /** Every call in order, as "method path[ path2]" strings, for ordering assertions. */
  readonly log: string[] = [];
  /** Folders list() was asked with forLookups, in order. */
  readonly listedForLookups: string[] = [];
  latencyMs: number;
  private readonly nodes = new Map<string, Node>();
  private readonly failures: Failure[] = [];
  private readonly gates = new Map<MemoryMethod, { promise: Promise<void>; release: () => void; waiting: number }>();
  private revCounter = 1;
  private readonly opts: MemoryRemoteOptions;
  private readonly links = new Map<string, string>();
  closed = false;

  // Capabilities are set up in the constructor so that `remote.ranged === undefined` on a
  // Maxxo-like instance, exactly as vfs sees a real client. Tests may wrap their methods.
  ranged?: RangedReads;
  batchStat?: BatchStat;
  shareLinks?: ShareLinks;
  fileMeta?: FileMetadata;
  checkUpload?: (path: string, size: number, opts?: CallOptions) => Promise<void>;
  downloadMany?: (items: { path: string; localFile: string }[], opts?: TransferOptions) => Promise<string[]>;
  removeBatchMax?: number;
  moveReplaces?: boolean;
  batchMkdir?: BatchMkdir;
  listBeforeType?: boolean;
  likelyFolder?: (path: string) => boolean;

  constructor(opts: MemoryRemoteOptions = {}) {
    this.opts = opts;
    if (opts.listBeforeType) this.listBeforeType = true;
    const hints = opts.likelyFolders;
    if (hints) this.likelyFolder = (path: string) => hints.has(path);
    if (opts.removeBatchMax) this.removeBatchMax = opts.removeBatchMax;
    if (opts.moveReplaces) this.moveReplaces = true;
    this.latencyMs = opts.latencyMs ?? 0;
    this.calls = {
      list: 0, stat: 0, statMany: 0, read: 0, download: 0, downloadMany: 0, upload: 0, checkUpload: 0, mkdir: 0, mkdirMany: 0, move: 0,
      remove: 0, statfs: 0, shareLink: 0, close: 0, setAttrs: 0,
    };
    this.nodes.set(SEP, { type: 'dir', data: Buffer.alloc(0), mtimeMs: Date.now(), rev: this.revCounter++ });
    if (opts.rangedReads ?? true) this.ranged = { readTo: (p, o, l, k, c) => this.doReadTo(p, o, l, k, c) };
    if (opts.keepsAttrs) {
      this.fileMeta = { modeBits: 0o7777, folderTimes: true, setAttrs: (p, a, c) => this.doSetAttrs(p, a, c), ...(opts.mtimeResolutionMs ? { mtimeResolutionMs: opts.mtimeResolutionMs } : {}) };
    }
    else this.downloadMany = (items, c) => this.doDownloadMany(items, c);
    if (opts.batchStat) this.batchStat = { statMany: (ps, c) => this.doStatMany(ps, c) };
    if (opts.shareLinks ?? true) this.shareLinks = { shareLink: (p, c) => this.doShareLink(p, c) };
    if (opts.policy) this.checkUpload = (p, s, c) => this.doCheckUpload(p, s, c);
    if (opts.batchMkdir) this.batchMkdir = { check: () => {}, mkdirMany: (ps, c) => this.doMkdirMany(ps, c) };
  }

  private async doMkdirMany(paths: string[], opts: CallOptions = {}): Promise<(unknown | undefined)[]> {
    await this.enter('mkdirMany', paths.join(','), opts);
    return paths.map((p) => {
      p = norm(p);
      const n = this.nodes.get(p);
      if (n) return n.type === 'dir' ? undefined : new AlreadyExists('a file is there', { path: p });
      if (this.nodes.get(norm(p.slice(0, p.lastIndexOf('/')) || '/'))?.type !== 'dir') return new NotFound('parent folder does not exist', { path: p });
      this.mkdirp(p);
      return undefined;
    });
  }

  // ---- test helpers (no counters, no latency) ----

  /** Creates or replaces a file (parents created). */
  putFile(path: string, data: Buffer | string, mtimeMs = Date.now()): void {
    path = norm(path);
    this.mkdirp(parentOf(path));
    this.nodes.set(path, { type: 'file', data: Buffer.from(data), mtimeMs, rev: this.revCounter++ });
    this.touchDir(parentOf(path));
  }
  mkdirp(path: string): void {
    path = norm(path);
    if (this.nodes.has(path)) return;
    this.mkdirp(parentOf(path));
    this.nodes.set(path, { type: 'dir', data: Buffer.alloc(0), mtimeMs: Date.now(), rev: this.revCounter++ });
    this.touchDir(parentOf(path));
  }
  getFile(path: string): Buffer | undefined {
    const n = this.nodes.get(norm(path));
    return n && n.type === 'file' ? n.data : undefined;
  }
  has(path: string): boolean {
    return this.nodes.has(norm(path));
  }
  typeOf(path: string): 'file' | 'dir' | undefined {
    return this.nodes.get(norm(path))?.type;
  }
  /** Deletes without counting (simulates another client). */
  deleteExternal(path: string): void {
    path = norm(path);
    for (const k of [...this.nodes.keys()]) if (k === path || under(k, path)) this.nodes.delete(k);
    this.touchDir(parentOf(path));
  }
  /** All paths, sorted (for assertions). */
  paths(): string[] {
    return [...this.nodes.keys()].sort();
  }
  resetCalls(): void {
    for (const k of Object.keys(this.calls) as MemoryMethod[]) this.calls[k] = 0;
    this.log.length = 0;
  }
  /** Makes the next matching calls fail. */
  failNext(f: Failure): void {
    this.failures.push({ times: 1, ...f });
  }
  clearFailures(): void {
    this.failures.length = 0;
  }
  /** Holds every call of `method` (after counting) until the returned release() is called. */
  hold(method: MemoryMethod): () => void {
    let release!: () => void;
    const promise = new Promise<void>((r) => { release = r; });
    const g = { promise, release: () => { this.gates.delete(method); release(); }, waiting: 0 };
    this.gates.set(method, g);
    return g.release;
  }
  /** Number of calls currently waiting at a hold() gate of `method`. */
  held(method: MemoryMethod): number {
    return this.gates.get(method)?.waiting ?? 0;
  }

  // ---- Remote ----

  async list(dir: string, opts: CallOptions & { hash?: string; forLookups?: boolean } = {}): Promise<ListResult> {
    dir = norm(dir);
    if (opts.forLookups) this.listedForLookups.push(dir);
    await this.enter('list', dir, opts);
    const n = this.nodes.get(dir);
    if (!n) throw new NotFound('no such folder', { path: dir });
    if (n.type !== 'dir') throw new NotADirectory('not a folder', { path: dir });
    const entries: RemoteEntry[] = [];
    for (const [p, c] of this.nodes) {
      if (p !== SEP && parentOf(p) === dir) entries.push(this.entryOf(p, c));
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    if (this.opts.listingRevalidation === false) return { entries };
    const h = createHash('sha1');
    for (const e of entries) h.update(`${e.name}\0${e.type}\0${e.size}\0${e.rev}\0${e.mtimeMs}\n`);
    const hash = h.digest('hex');
    if (opts.hash && opts.hash === hash) return { entries: [], hash, unchanged: true };
    return { entries, hash };
  }

  async stat(path: string, opts: CallOptions = {}): Promise<RemoteEntry | null> {
    path = norm(path);
    await this.enter('stat', path, opts);
    const n = this.nodes.get(path);
    return n ? this.entryOf(path, n) : null;
  }

  private async doStatMany(paths: string[], opts: StatOptions = {}): Promise<(RemoteEntry | null)[]> {
    await this.enter('statMany', paths.join(','), opts);
    const out = paths.map((p) => {
      p = norm(p);
      const n = this.nodes.get(p);
      return n ? this.entryOf(p, n) : null;
    });
    if (this.opts.typesAheadMs !== undefined) {
      // as Maxxo: types first, times after a daemon listing
      opts.onTypes?.(out.map((e) => e && { ...e, mtimeMs: undefined }));
      await waitMs(this.opts.typesAheadMs);
    }
    return out;
  }

  /** Streamed in chunks of readChunkBytes (counted as a read call). */
  private async doReadTo(path: string, offset: number, length: number, sink: RangeSink, opts: CallOptions = {}): Promise<RangeRead> {
    path = norm(path);
    await this.enter('read', path, opts);
    const n = this.fileNode(path);
    // the content as it was when the request was answered, like a server streaming one version
    const data = n.data;
    const rev = this.opts.serverRevision !== false ? String(n.rev) : undefined;
    const end = Math.min(data.length, offset + length);
    const step = Math.max(1, this.opts.readChunkBytes ?? 64 * 1024);
    const served = { size: data.length, ...(rev !== undefined ? { rev } : {}) };
    let pos = offset;
    while (pos < end) {
      if (opts.signal?.aborted) throw new Cancelled('read cancelled', { path });
      const next = Math.min(end, pos + step);
      await sink(Buffer.from(data.subarray(pos, next)), pos, served);
      pos = next;
      if (this.opts.readChunkDelayMs && pos < end) await sleep(this.opts.readChunkDelayMs, opts.signal);
    }
    return { bytes: Math.max(0, end - offset), size: data.length, ...(rev !== undefined ? { rev } : {}) };
  }

  async download(path: string, localFile: string, opts: TransferOptions = {}): Promise<void> {
    path = norm(path);
    await this.enter('download', path, opts);
    const data = Buffer.from(this.fileNode(path).data);
    // In place: open with truncation, keep the inode, so a reader of the file follows the bytes.
    const fh = await fsp.open(localFile, 'w', 0o600);
    try {
      const chunk = this.opts.downloadChunkBytes ?? (data.length || 1);
      let done = 0;
      while (done < data.length) {
        if (opts.signal?.aborted) throw new Cancelled('download aborted', { path });
        const n = Math.min(chunk, data.length - done);
        await fh.write(data, done, n, done);
        done += n;
        opts.onProgress?.(done);
        if (done < data.length && this.opts.downloadChunkDelayMs) await sleep(this.opts.downloadChunkDelayMs);
      }
      if (data.length === 0) opts.onProgress?.(0);
    } finally {
      await fh.close();
    }
  }

  /** Whole-file remotes (Maxxo-like): many files in one call; missing ones are left out. */
  private async doDownloadMany(items: { path: string; localFile: string }[], opts: TransferOptions = {}): Promise<string[]> {
    await this.enter('downloadMany', items.map((i) => norm(i.path)).join(','), opts);
    const got: string[] = [];
    for (const it of items) {
      const n = this.nodes.get(norm(it.path));
      if (!n || n.type !== 'file') continue;
      await fsp.writeFile(it.localFile, n.data, { mode: 0o600 });
      got.push(it.path);
    }
    return got;
  }

  async upload(localFile: string, path: string, opts: TransferOptions = {}): Promise<RemoteEntry> {
    opts.onSend?.(); // sent at once (like Maxxo; vBoxx tells when its queue lets the request go)
    path = norm(path);
    await this.enter('upload', path, opts);
    const data = await fsp.readFile(localFile);
    if (opts.signal?.aborted) throw new Cancelled('upload aborted', { path });
    this.policyCheck(path, data.length);
    const existing = this.nodes.get(path);
    if (existing && existing.type === 'dir') throw new IsADirectory('is a folder', { path });
    this.mkdirp(parentOf(path));
    const node: Node = { type: 'file', data, mtimeMs: Date.now(), rev: this.revCounter++ };
    if (this.opts.keepsAttrs && opts.mtimeMs !== undefined) node.mtimeMs = opts.mtimeMs;
    if (this.opts.keepsAttrs && opts.mode !== undefined) node.mode = opts.mode;
    this.nodes.set(path, node);
    this.touchDir(parentOf(path));
    opts.onProgress?.(data.length);
    return this.entryOf(path, node);
  }

  private async doSetAttrs(path: string, attrs: AttrChange, opts: CallOptions & { rev?: string; folder?: boolean } = {}): Promise<RemoteEntry | null> {
    path = norm(path);
    await this.enter('setAttrs', path, opts);
    const n = this.nodes.get(path);
    if (!n) return null;
    // a folder: its mtime (each change inside moves it, see touchDir)
    if (n.type === 'dir') {
      if (attrs.mtimeMs !== undefined) n.mtimeMs = attrs.mtimeMs;
      return this.entryOf(path, n);
    }
    if (opts.folder) return null;
    if (opts.rev !== undefined && this.opts.serverRevision !== false && String(n.rev) !== opts.rev) return null;
    if (attrs.mtimeMs !== undefined) n.mtimeMs = attrs.mtimeMs;
    if (attrs.mode !== undefined) n.mode = attrs.mode;
    return this.entryOf(path, n);
  }

  private async doCheckUpload(path: string, size: number, opts: CallOptions = {}): Promise<void> {
    path = norm(path);
    await this.enter('checkUpload', path, opts);
    this.policyCheck(path, size);
  }

  async mkdir(path: string, opts: CallOptions = {}): Promise<void> {
    path = norm(path);
    await this.enter('mkdir', path, opts);
    if (this.nodes.has(path)) throw new AlreadyExists('already exists', { path });
    this.mkdirp(path);
  }

  async move(from: string, to: string, opts: CallOptions = {}): Promise<RemoteEntry | void> {
    from = norm(from); to = norm(to);
    await this.enter('move', `${from} ${to}`, opts);
    const n = this.nodes.get(from);
    if (!n) throw new NotFound('source does not exist', { path: from });
    if (from === to) return;
    if (under(to, from)) throw new RemoteError('BAD_REQUEST', 'cannot move a folder into itself', { path: to, status: 400 });
    const tp = this.nodes.get(parentOf(to));
    if (!tp) throw new NotFound('target folder does not exist', { path: to });
    if (tp.type !== 'dir') throw new NotADirectory('target parent is a file', { path: to });
    if (this.nodes.has(to)) {
      if (!this.opts.moveReplaces) throw new AlreadyExists('target exists', { path: to });
      this.deleteExternal(to);
    }
    const moved: [string, Node][] = [];
    for (const [k, v] of this.nodes) if (k === from || under(k, from)) moved.push([k, v]);
    for (const [k] of moved) this.nodes.delete(k);
    for (const [k, v] of moved) this.nodes.set(to + k.slice(from.length), v);
    this.touchDir(parentOf(from));
    this.touchDir(parentOf(to));
    if (this.opts.revOnMove && n.type === 'file') {
      n.rev = this.revCounter++;
      return this.entryOf(to, n);
    }
  }

  async remove(paths: string[], opts: CallOptions = {}): Promise<void> {
    const ps = paths.map(norm);
    await this.enter('remove', ps.join(' '), opts);
    for (const p of ps) if (!this.nodes.has(p)) throw new NotFound('does not exist', { path: p });
    for (const p of ps) this.deleteExternal(p);
  }

  async statfs(opts: CallOptions = {}): Promise<StatFs> {
    await this.enter('statfs', '/', opts);
    let used = 0;
    for (const n of this.nodes.values()) used += n.data.length;
    return { total: this.opts.total === undefined ? 1024 ** 3 : this.opts.total, used };
  }

  private async doShareLink(path: string, opts: CallOptions = {}): Promise<{ url: string; expires?: string | null }> {
    path = norm(path);
    await this.enter('shareLink', path, opts);
    if (!this.nodes.has(path)) throw new NotFound('does not exist', { path });
    let url = this.links.get(path);
    if (!url) {
      url = `https://share.example/s/${createHash('sha1').update(path).digest('hex').slice(0, 12)}`;
      this.links.set(path, url);
    }
    return { url, expires: null };
  }

  async close(): Promise<void> {
    this.calls.close++;
    this.closed = true;
  }

  // ---- internals ----

  private async enter(method: MemoryMethod, path: string, opts: CallOptions): Promise<void> {
    this.calls[method]++;
    this.log.push(`${method} ${path}`);
    if (opts.signal?.aborted) throw new Cancelled('aborted', { path });
    if (this.latencyMs > 0) await sleep(this.latencyMs, opts.signal);
    const g = this.gates.get(method);
    if (g) {
      g.waiting++;
      try { await abortable(g.promise, opts.signal); } finally { g.waiting--; }
    }
    const first = path.split(' ')[0]!.split(',')[0]!;
    for (let i = 0; i < this.failures.length; i++) {
      const f = this.failures[i]!;
      if (f.method !== method) continue;
      if (f.match && !f.match(first)) continue;
      f.times = (f.times ?? 1) - 1;
      if (f.times <= 0) this.failures.splice(i, 1);
      throw f.error ?? new RemoteError('SERVER_ERROR', `injected failure of ${method}`, { path: first, status: 500 }, true);
    }
  }

  private fileNode(path: string): Node {
    const n = this.nodes.get(path);
    if (!n) throw new NotFound('does not exist', { path });
    if (n.type !== 'file') throw new IsADirectory('is a folder', { path });
    return n;
  }

  private entryOf(path: string, n: Node): RemoteEntry {
    const e: RemoteEntry = { name: path === SEP ? '' : baseOf(path), type: n.type, size: n.type === 'file' ? n.data.length : 0, mtimeMs: n.mtimeMs };
    if (this.opts.serverRevision !== false) e.rev = String(n.rev);
    if (n.mode !== undefined) e.mode = n.mode;
    return e;
  }

  private touchDir(dir: string): void {
    const d = this.nodes.get(dir);
    if (d) { d.mtimeMs = Date.now(); d.rev = this.revCounter++; }
  }

  private policyCheck(path: string, size: number): void {
    const pol = this.opts.policy;
    if (!pol) return;
    const name = baseOf(path).toLowerCase();
    for (const e of pol.excludedExtensions ?? []) {
      if (name.endsWith(e.toLowerCase())) throw new PolicyExcludedExtension(`files ending in ${e} are excluded`, { path });
    }
    if (pol.maxFileSize != null && size > pol.maxFileSize) throw new PolicyFileTooLarge('file too large', { path });
    if (pol.quota != null) {
      let used = 0;
      for (const [p, n] of this.nodes) if (p !== path) used += n.data.length;
      if (used + size > pol.quota) throw new QuotaExceeded('quota exceeded', { path });
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return abortable(waitMs(ms), signal);
}

function abortable<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(new Cancelled('aborted'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Cancelled('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e) => { signal.removeEventListener('abort', onAbort); reject(e); });
  });
}
