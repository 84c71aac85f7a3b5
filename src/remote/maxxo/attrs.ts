// Changes of a file's mtime or executability alone, or of a folder's mtime (FileMetadata.setAttrs).
import { mkdir, rm, stat as fsStat, utimes, writeFile } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import { Priority, type AttrChange, type CallOptions, type RemoteEntry } from '../types.js';
import { toWholeSecond } from '../types.js';
import { IsADirectory, BadRequest, TransferFailed } from '../../errors.js';
import { pathParts } from '../url.js';
import { parentOf, baseName, modeOf, FILE_MODE_BITS } from './listings.js';
import { carryAttrs, push, type TransferPorts } from './push.js';
import { toWire } from './wire.js';

export class AttrChanges {
  constructor(private readonly p: TransferPorts,
    private readonly download: (path: string, localFile: string, opts: CallOptions) => Promise<unknown>) {}

  /**
   * A change of a file's mtime or executability alone: an rsync run with -t (and -E) and
   * --size-only of a source as long as the server file, which rsync then finds up to date and
   * only gives the source's time (and executability), sending no bytes. The source is our copy of
   * the content (localFile, or one downloaded into scratch), so that should the server file
   * change size between the check below and the run, what rsync sends is those bytes (the window
   * vBoxx has too), never filler. Nothing is sent when the server already holds the change; null
   * when the file is gone or is no longer the version the caller holds (serverMtimeMs).
   */
  async setAttrs(path: string, attrs: AttrChange, o: CallOptions & { localFile?: string; serverMtimeMs?: number; scratch?: string; folder?: boolean } = {}): Promise<RemoteEntry | null> {
    const asked = Date.now();
    const parts = pathParts(path);
    toWire(path);
    const cur = await this.sizeOf(path, o);
    if (parts.length === 0) {
      if (attrs.mode !== undefined && attrs.mtimeMs === undefined) throw new IsADirectory('the top folder has no mode to change', { path });
      return this.setFolderTime(path, { name: '', type: 'dir', size: 0 }, attrs, o);
    }
    if (cur?.type === 'dir') return this.setFolderTime(path, cur, attrs, o);
    if (o.folder) return null;
    const notSet = (why: string) => { this.p.log.debug(`maxxo: times/mode of ${path} not set: ${why}`); return null; };
    if (!cur || cur.type !== 'file') return notSet(`${cur ? 'a folder' : 'no file'} there now`);
    // the version on the server now: a listing that started after this call did (the changes of
    // many files of a folder, as `touch *` makes them, share the next one)
    const listed = await this.p.listings.since(parentOf(path), asked);
    const row = listed?.rows.get(baseName(path));
    if (!row || row.size !== cur.size) throw new TransferFailed('the daemon listing does not show the file as ops/filesize does', { path });
    if (o.serverMtimeMs !== undefined && row.mtimeMs !== toWholeSecond(o.serverMtimeMs)) {
      return notSet(`the server's version has mtime ${row.mtimeMs}, the caller's ${o.serverMtimeMs}`);
    }
    const mtimeMs = attrs.mtimeMs !== undefined ? toWholeSecond(attrs.mtimeMs) : row.mtimeMs;
    const exec = attrs.mode !== undefined ? (attrs.mode & FILE_MODE_BITS) !== 0 : row.exec;
    const entry: RemoteEntry = { ...cur, mtimeMs, ...(exec !== undefined ? { mode: modeOf(exec) } : {}) };
    if (mtimeMs === row.mtimeMs && exec === row.exec) return entry;
    let source = o.localFile !== undefined ? resolvePath(o.localFile) : undefined;
    // The caller's copy is not the server's version (by size): written here since it asked (that
    // upload carries the times and mode) or changed there; either way not this change's to make.
    // It used to want a scratch download instead, which callers with a copy do not give: a
    // non-retryable error, the change left pending until another one came (soak seed 271520).
    if (source !== undefined && (await fsStat(source).catch(() => null))?.size !== cur.size) {
      return notSet(`the caller's copy is not the server's ${cur.size} bytes`);
    }
    const stage = await this.p.stages.make();
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
      await push(this.p.rsync, stage, parts, source, ['-t', ...meta.flags, '--size-only', '--existing'], o, undefined, false);
    } finally {
      if (o.scratch) await rm(o.scratch, { force: true });
      await rm(stage, { recursive: true, force: true });
    }
    this.p.listings.own(path, { name: cur.name, type: 'file', size: cur.size, mtimeMs, exec });
    return entry;
  }

  /**
   * A folder's mtime. The drive sends one for every folder its own changes moved (the server moves
   * it again when they land, see vfs/writeback/attrs.ts), so many come at once (tar x, git
   * checkout): they are coalesced, as mkdirs.ts does with folders, into one rsync run of a stage
   * of empty folders carrying the times, named in a NUL-separated --files-from list (implies -d,
   * no recursion: nothing inside a folder is touched), -t, --existing (a folder deleted meanwhile
   * is not made again), --no-implied-dirs (a parent not asked for keeps its time). Changes asked
   * while a run is on go in the next one. The top folder goes alone ("." of an empty folder).
   */
  private setFolderTime(path: string, cur: RemoteEntry, attrs: AttrChange, o: CallOptions): Promise<RemoteEntry> {
    if (attrs.mtimeMs === undefined) return Promise.resolve(cur);
    const mtimeMs = toWholeSecond(attrs.mtimeMs);
    if (pathParts(path).length === 0) return this.setTopFolderTime(cur, mtimeMs, o);
    return new Promise<RemoteEntry>((resolve, reject) => {
      this.folderQueue.push({ path, cur, mtimeMs, opts: o, resolve, reject });
      if (!this.folderRun) this.folderRun = this.runFolderTimes().finally(() => { this.folderRun = null; });
    });
  }

  private readonly folderQueue: FolderTimeAsk[] = [];
  private folderRun: Promise<void> | null = null;
  private sizeAsks: { path: string; priority: number; resolve: (e: RemoteEntry | null) => void; reject: (e: unknown) => void }[] = [];

  /**
   * ops/filesize of path, shared by the setAttrs calls of the same turn (a flush sends the times of
   * every folder it changed at once: one request, not one per folder). A caller whose signal ends
   * stops waiting; the shared request goes on for the others.
   */
  private sizeOf(path: string, o: CallOptions): Promise<RemoteEntry | null> {
    if (o.signal?.aborted) return Promise.reject(o.signal.reason ?? new Error('aborted'));
    return new Promise((resolve, reject) => {
      if (this.sizeAsks.length === 0) {
        setImmediate(() => {
          const asks = this.sizeAsks;
          this.sizeAsks = [];
          const priority = Math.max(...asks.map((a) => a.priority));
          this.p.sizes(asks.map((a) => a.path), { priority }).then(
            (rows) => asks.forEach((a, k) => a.resolve(rows[k] ?? null)),
            (e) => asks.forEach((a) => a.reject(e)));
        });
      }
      o.signal?.addEventListener('abort', () => reject(o.signal!.reason ?? new Error('aborted')), { once: true });
      this.sizeAsks.push({ path, priority: o.priority ?? Priority.background, resolve, reject });
    });
  }

  private async runFolderTimes(): Promise<void> {
    // asks made in the same turn (many tasks' timers at once) share the first run
    await new Promise<void>((r) => setImmediate(r));
    while (this.folderQueue.length > 0) {
      const asks = this.folderQueue.splice(0);
      const live = asks.filter((a) => {
        if (!a.opts.signal?.aborted) return true;
        a.reject(a.opts.signal.reason ?? new Error('aborted'));
        return false;
      });
      // the newest ask of a path wins
      const byPath = new Map<string, FolderTimeAsk>();
      for (const a of live) byPath.set(a.path, a);
      if (byPath.size === 0) continue;
      try {
        await this.sendFolderTimes([...byPath.values()]);
        for (const a of live) a.resolve({ ...a.cur, mtimeMs: byPath.get(a.path)!.mtimeMs });
      } catch (e) {
        for (const a of live) a.reject(e);
      }
    }
  }

  private async sendFolderTimes(asks: FolderTimeAsk[]): Promise<void> {
    const rels = asks.map((a) => pathParts(a.path).join('/'));
    // the run is cancelled only when every ask in it is (one rename does not stop the others)
    const ac = new AbortController();
    const signals = asks.map((a) => a.opts.signal).filter((s): s is AbortSignal => !!s);
    if (signals.length === asks.length) {
      const check = () => { if (signals.every((s) => s.aborted)) ac.abort(signals[0]!.reason); };
      for (const s of signals) s.addEventListener('abort', check, { once: true });
    }
    const priority = Math.max(...asks.map((a) => a.opts.priority ?? Priority.background));
    const stage = await this.p.stages.make();
    try {
      const root = join(stage, 'd');
      for (const r of rels) await mkdir(join(root, r), { recursive: true });
      // after every folder is made: making a child moves its parent's time in the stage too
      for (const [k, r] of rels.entries()) await utimes(join(root, r), asks[k]!.mtimeMs / 1000, asks[k]!.mtimeMs / 1000);
      const list = join(stage, 'list');
      await writeFile(list, rels.join('\0') + '\0', { mode: 0o600 });
      await this.p.rsync(asks[0]!.path, { signal: ac.signal, priority },
        (url) => ['-d', '-t', '--existing', '--no-implied-dirs', '--from0', `--files-from=${list}`, root + '/', `${url}/`], undefined, { folderTimes: true });
    } finally {
      await rm(stage, { recursive: true, force: true });
    }
    for (const a of asks) this.p.listings.folderTime(a.path, a.mtimeMs);
  }

  private async setTopFolderTime(cur: RemoteEntry, mtimeMs: number, o: CallOptions): Promise<RemoteEntry> {
    const stage = await this.p.stages.make();
    try {
      const src = join(stage, 'd');
      await mkdir(src);
      await utimes(src, mtimeMs / 1000, mtimeMs / 1000);
      await this.p.rsync('/', o, (url) => ['-d', '-t', '--existing', `${src}/`, `${url}/`], undefined, { folderTimes: true });
    } finally {
      await rm(stage, { recursive: true, force: true });
    }
    this.p.listings.folderTime('/', mtimeMs);
    return { ...cur, mtimeMs };
  }
}

interface FolderTimeAsk {
  path: string;
  cur: RemoteEntry;
  mtimeMs: number;
  opts: CallOptions;
  resolve: (e: RemoteEntry) => void;
  reject: (e: unknown) => void;
}
