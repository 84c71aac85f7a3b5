// Downloads: one whole file written in place as it arrives (readers may follow its bytes), or many
// whole files with one rsync run (--files-from) into the working folder of a child started ahead.
import { rm, open, rename, stat as fsStat, utimes } from 'node:fs/promises';
import { dirname, join, resolve as resolvePath } from 'node:path';
import type { DownloadedVersion, TransferOptions } from '../types.js';
import { toWholeSecond } from '../types.js';
import { RemoteError, IsADirectory } from '../../errors.js';
import { pathParts } from '../url.js';
import { skippedDirectory, escapeSource } from './rsync.js';
import type { RsyncRunner } from './transport.js';
import type { DaemonListings } from './listings.js';
import type { Logger } from '../../log.js';
import { toWire } from './wire.js';

export class Downloads {
  constructor(private readonly rsync: RsyncRunner, private readonly listings: DaemonListings, private readonly log: Logger,
    private readonly progressIntervalMs = 50) {}

  /**
   * In place with --append-verify, then verified if a resume appended nothing (see remote.ts); a
   * file expected small (sizeHint) whole through a batch run of one, which takes a child started
   * ahead (~5 round trips sooner), replacing localFile.
   */
  async download(path: string, localFile: string, opts: TransferOptions = {}): Promise<DownloadedVersion> {
    const parts = pathParts(path);
    toWire(path);
    if (parts.length === 0) throw new IsADirectory('the top folder is not a file', { path });
    if (opts.sizeHint !== undefined && opts.sizeHint <= SMALL_WHOLE) return this.downloadSmall(path, localFile, opts);
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
    const timer = setInterval(() => { void poll(); }, this.progressIntervalMs);
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
    const version = { size: got.size, mtimeMs: toWholeSecond(got.mtimeMs) };
    this.downloaded(path, version);
    return version;
  }

  private async downloadSmall(path: string, localFile: string, opts: TransferOptions): Promise<DownloadedVersion> {
    const rel = pathParts(path).join('/');
    return this.batchRun(path, [rel], localFile, opts, async (dest, error) => {
      if (error !== undefined) throw error;
      const got = join(dest!, rel);
      const st = await fsStat(got);
      // (files-from implies --dirs: a folder named comes as an empty folder)
      if (st.isDirectory()) throw new IsADirectory('is a folder', { path });
      // (no onProgress: a reader told of bytes would read them through its descriptor of the
      // file this one replaces)
      await rename(got, resolvePath(localFile));
      const version = { size: st.size, mtimeMs: toWholeSecond(st.mtimeMs) };
      this.downloaded(path, version);
      return version;
    });
  }

  /**
   * One run of BATCH_ARGS for rels (a child started ahead takes it), into the child's working
   * folder made next to `near`; `take` gets the folder files land in (of the last attempt, which
   * holds what came; undefined if no attempt started) and the run's error, and moves what it keeps
   * out before every attempt's folder is removed.
   */
  private async batchRun<T>(first: string, rels: string[], near: string, opts: TransferOptions,
    take: (dest: string | undefined, error: unknown) => Promise<T>): Promise<T> {
    const workdirs: string[] = [];
    try {
      let error: unknown;
      // files-from names are literal (no wildcards); -s keeps them from the remote shell
      await this.rsync(first, opts, BATCH_ARGS, undefined, {
        input: rels.join('\0') + '\0', workdirIn: dirname(resolvePath(near)), onWorkdir: (d) => { workdirs.push(d); },
      }).catch((e: unknown) => { error = e; });
      const last = workdirs[workdirs.length - 1];
      return await take(last === undefined ? undefined : join(last, 'd'), error);
    } finally {
      for (const d of workdirs) await rm(d, { recursive: true, force: true });
    }
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
   * start, a connection and the daemon's auth. The names go on stdin, so the run takes a child
   * started ahead (WarmRuns in transport.ts); files land in the child's working folder, made next
   * to the first localFile, and are renamed into place; a file that vanished meanwhile (rsync code
   * 23) is only missing from the answer.
   */
  async downloadMany(items: { path: string; localFile: string }[], opts: TransferOptions = {}): Promise<string[]> {
    if (items.length === 0) return [];
    const rels = items.map((it) => {
      toWire(it.path);
      const parts = pathParts(it.path);
      if (parts.length === 0) throw new IsADirectory('the top folder is not a file', { path: it.path });
      return parts.join('/');
    });
    return this.batchRun(items[0]!.path, rels, items[0]!.localFile, opts, async (dest, error) => {
      if (error !== undefined) {
        if (opts.signal?.aborted || (error instanceof RemoteError && error.code === 'CANCELLED')) throw error;
        this.log.debug(`maxxo: batch download of ${items.length} files partly failed: ${(error as Error).message}`);
      }
      const got: string[] = [];
      for (let i = 0; dest !== undefined && i < items.length; i++) {
        const src = join(dest, rels[i]!);
        try {
          if (!(await fsStat(src)).isFile()) continue;
          await rename(src, resolvePath(items[i]!.localFile));
          got.push(items[i]!.path);
        } catch { /* not delivered */ }
      }
      return got;
    });
  }
}

/**
 * Batch downloads (and small single ones): names on stdin, into the child's working folder; -t
 * (the server's mtime: the version a single download got); files made private (0600: they become
 * cache files; without it rsync makes them with the server's mode under our umask). One argv for
 * both, so they share the children started ahead.
 */
const BATCH_ARGS = (url: string) => ['-I', '-t', '--chmod=F600,D700', '--from0', '--files-from=-', `${url}/`, 'd/'];

/** Files up to this size (sizeHint) come whole through a started child rather than in place. */
const SMALL_WHOLE = 1 << 20;
