// Pushing local files to the daemon: the private staging folders a push presents to rsync, the
// split of a destination too deep for the daemon, and the mtime/executability a push carries.
import { mkdtemp, mkdir as fsMkdir, readdir, rm, symlink, writeFile, utimes, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { CallOptions, RemoteEntry } from '../types.js';
import { toWholeSecond } from '../types.js';
import { FILE_MODE_BITS, type DaemonListings } from './listings.js';
import type { InflightUploads } from './inflight.js';
import type { Logger } from '../../log.js';
import type { RsyncRunner } from './transport.js';

/**
 * Longest destination folder (bytes) a push names. The rsync daemon's receiver changes into the
 * destination folder first and refuses one whose path, joined to its module folder, passes about
 * 2 KiB ("change_dir#2 ... File name too long"; mkdir of a 2 KiB path answered EIO after the
 * folder was made), while it creates entries by relative names up to PATH_MAX. A deeper target is
 * pushed by its name relative to an ancestor within this bound (--files-from).
 */
export const PUSH_DEST_MAX = 1024;

/** base: the longest proper ancestor of the target within PUSH_DEST_MAX bytes; rel: the rest. */
export function pushSplit(parts: string[]): { base: string; rel: string } {
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

const STAGE_PREFIX = 'cloudmount-up-';

/**
 * Private folders for the symlinks an upload presents to rsync. They are named after our pid: the
 * first one a process makes removes the folders of processes that are gone (killed mid-upload).
 */
export class UploadStages {
  private swept = false;
  private kept?: Promise<string>;

  async make(): Promise<string> {
    if (!this.swept) {
      this.swept = true;
      await sweepStaleStages().catch(() => {});
    }
    return mkdtemp(join(tmpdir(), `${STAGE_PREFIX}${process.pid}-`));
  }

  /**
   * One private folder kept for the remote's life: where rsync children started ahead work
   * (RunOptions.workdirIn must stay the same for a started child to fit the next run).
   */
  workBase(): Promise<string> {
    if (!this.kept) {
      const p = this.make();
      this.kept = p;
      p.catch(() => { if (this.kept === p) this.kept = undefined; });
    }
    return this.kept;
  }

  /** Removes the kept folder (the remote closed: its children were ended). */
  async dispose(): Promise<void> {
    const p = this.kept;
    this.kept = undefined;
    const dir = await p?.catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

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

/**
 * One rsync run that sends local as the file at parts (stage: a private folder for the run).
 * The source goes by its server name (a symlink to it, followed with -L) into the parent
 * folder: named as a file path, rsync would put it *inside* a folder another client made there,
 * under the cache file's name; this way the folder is in the way and the run fails. A parent
 * path too long for the daemon goes by its relative name below a short one (see PUSH_DEST_MAX).
 */
export async function push(rsync: RsyncRunner, stage: string, parts: string[], local: string, flags: string[], opts: CallOptions,
  onLine: ((l: string) => void) | undefined, mkpath = true): Promise<void> {
  const path = '/' + parts.join('/');
  const parent = parts.slice(0, -1).join('/');
  if (Buffer.byteLength(parent) <= PUSH_DEST_MAX) {
    const link = join(stage, parts[parts.length - 1]!);
    await symlink(local, link);
    await rsync(path, opts, (url) => [...flags, '-L', ...(mkpath ? ['--mkpath'] : []), link, parent ? `${url}/${parent}/` : `${url}/`], onLine);
    return;
  }
  const { base, rel } = pushSplit(parts);
  const root = join(stage, 'd');
  const link = join(root, rel);
  await fsMkdir(dirname(link), { recursive: true });
  await symlink(local, link);
  const list = join(stage, 'list');
  await writeFile(list, rel + '\0', { mode: 0o600 });
  // as in uploadMany: missing parents are made (--no-implied-dirs: not over another client's file),
  // and so is a missing base (--mkpath: folders made by a drive's mkdir are carried by the first
  // upload into them, vfs/namespace/mkdirs.ts)
  await rsync(path, opts, (url) => [...flags, '-L', ...(mkpath ? ['--mkpath'] : []), '--no-implied-dirs', '--from0', `--files-from=${list}`,
    root + '/', base ? `${url}/${base}/` : `${url}/`], onLine);
}

/**
 * Gives the local file the mtime and executability an upload is to keep: rsync -t sends the
 * source's mtime, -E its executability (the cache file is ours; its times and mode mean nothing
 * else). Without a mode to keep, no -E: an existing server file keeps its own, and a new one gets
 * the local file's, which is made to say "not executable".
 */
export async function carryAttrs(local: string, st: { atimeMs: number; mtimeMs: number; mode: number }, o: { mtimeMs?: number; mode?: number }):
  Promise<{ flags: string[]; sent: { mtimeMs: number; exec?: boolean } }> {
  // whole seconds, as the daemon lists them (it would keep the fraction: a remount would show less)
  const mtimeMs = o.mtimeMs !== undefined ? toWholeSecond(o.mtimeMs) : st.mtimeMs;
  if (mtimeMs !== st.mtimeMs) await utimes(local, st.atimeMs / 1000, mtimeMs / 1000);
  if (o.mode !== undefined) {
    const exec = (o.mode & FILE_MODE_BITS) !== 0;
    await chmod(local, exec ? 0o700 : 0o600);
    return { flags: ['-E'], sent: { mtimeMs, exec } };
  }
  if (st.mode & 0o111) await chmod(local, 0o600);
  return { flags: [], sent: { mtimeMs } };
}

/** What the modules that move file bytes (uploads, downloads, attribute changes) use of the Remote. */
export interface TransferPorts {
  rsync: RsyncRunner;
  stages: UploadStages;
  /** Entries from ops/filesize alone (no mtimes). */
  sizes(paths: string[], opts: CallOptions): Promise<(RemoteEntry | null)[]>;
  listings: DaemonListings;
  inflight: InflightUploads;
  log: Logger;
}
