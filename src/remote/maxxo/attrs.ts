// Changes of a file's mtime or executability alone, or of a folder's mtime (FileMetadata.setAttrs).
import { mkdir, rm, stat as fsStat, utimes } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import type { AttrChange, CallOptions, RemoteEntry } from '../types.js';
import { toWholeSecond } from '../types.js';
import { IsADirectory, BadRequest, TransferFailed } from '../../errors.js';
import { pathParts } from '../url.js';
import { parentOf, baseName, modeOf, FILE_MODE_BITS } from './listings.js';
import { carryAttrs, push, PUSH_DEST_MAX, type TransferPorts } from './push.js';
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
  async setAttrs(path: string, attrs: AttrChange, o: CallOptions & { localFile?: string; serverMtimeMs?: number; scratch?: string } = {}): Promise<RemoteEntry | null> {
    const asked = Date.now();
    const parts = pathParts(path);
    toWire(path);
    const [cur] = await this.p.sizes([path], o);
    if (parts.length === 0) {
      if (attrs.mode !== undefined && attrs.mtimeMs === undefined) throw new IsADirectory('the top folder has no mode to change', { path });
      return this.setFolderTime(path, { name: '', type: 'dir', size: 0 }, attrs, o);
    }
    if (cur?.type === 'dir') return this.setFolderTime(path, cur, attrs, o);
    if (!cur || cur.type !== 'file') return null;
    // the version on the server now: a listing that started after this call did (the changes of
    // many files of a folder, as `touch *` makes them, share the next one)
    const listed = await this.p.listings.since(parentOf(path), asked);
    const row = listed?.rows.get(baseName(path));
    if (!row || row.size !== cur.size) throw new TransferFailed('the daemon listing does not show the file as ops/filesize does', { path });
    if (o.serverMtimeMs !== undefined && row.mtimeMs !== toWholeSecond(o.serverMtimeMs)) return null;
    const mtimeMs = attrs.mtimeMs !== undefined ? toWholeSecond(attrs.mtimeMs) : row.mtimeMs;
    const exec = attrs.mode !== undefined ? (attrs.mode & FILE_MODE_BITS) !== 0 : row.exec;
    const entry: RemoteEntry = { ...cur, mtimeMs, ...(exec !== undefined ? { mode: modeOf(exec) } : {}) };
    if (mtimeMs === row.mtimeMs && exec === row.exec) return entry;
    let source = o.localFile !== undefined ? resolvePath(o.localFile) : undefined;
    if (source !== undefined && (await fsStat(source).catch(() => null))?.size !== cur.size) source = undefined;
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
   * A folder's mtime: one rsync run of an empty folder's contents ("." with the time) onto it,
   * -d (no recursion), -t, --existing (a folder deleted meanwhile is not made again). Nothing
   * else of the folder is touched; a later change inside it moves the time on the server again.
   */
  private async setFolderTime(path: string, cur: RemoteEntry, attrs: AttrChange, o: CallOptions): Promise<RemoteEntry> {
    if (attrs.mtimeMs === undefined) return cur;
    const mtimeMs = toWholeSecond(attrs.mtimeMs);
    const wire = pathParts(path).join('/');
    if (Buffer.byteLength(wire) > PUSH_DEST_MAX) throw new BadRequest('the folder path is too long for a time change through the rsync daemon', { path });
    const stage = await this.p.stages.make();
    try {
      const src = join(stage, 'd');
      await mkdir(src);
      await utimes(src, mtimeMs / 1000, mtimeMs / 1000);
      await this.p.rsync(path, o, (url) => ['-d', '-t', '--existing', `${src}/`, wire ? `${url}/${wire}/` : `${url}/`], undefined);
    } finally {
      await rm(stage, { recursive: true, force: true });
    }
    this.p.listings.folderTime(path, mtimeMs);
    return { ...cur, mtimeMs };
  }

}
