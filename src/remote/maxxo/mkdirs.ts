// Maxxo folders made many at a time: an rsync run costs a process start, a connection and the
// daemon's auth (~200 ms against the reference daemon), far more than a folder itself, so the
// drive's write-back (vfs/namespace/mkdirs.ts) hands over every folder made meanwhile and they go
// as one run: a skeleton of empty folders in the working folder of the rsync child that takes
// the run (so one started ahead fits, see mkdirMany), named literally in a NUL-separated
// --files-from list on its stdin (implies -d: no recursion, and --relative: the names are made below the
// module, so a deep path needs no short destination as push() does), --no-implied-dirs: a parent
// is made only when it is listed itself (the caller lists parents first), never over another
// client's file.
//
// Before the run one ops/filesize answers for the folders and their parents not in the batch:
// a folder already there counts as made (a replay after a crash, another client); a file in the
// way is a refusal (rsync would replace it by the folder: another client's data); a parent gone
// (or a file) is a refusal too. After a run that failed for some items (exit 23), filesize tells
// which were made.
import { mkdir as fsMkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AlreadyExists, NotADirectory, NotFound, RemoteError, TransferFailed } from '../../errors.js';
import type { BatchMkdir, CallOptions, RemoteEntry } from '../types.js';
import { pathParts } from '../url.js';
import { parentOf } from './listings.js';
import type { RunOptions } from './transport.js';

export interface MkdirPorts {
  /** Mount path -> wire path; throws InvalidName for a name the service does not take. */
  wire(path: string): string;
  sizes(paths: string[], opts: CallOptions): Promise<(RemoteEntry | null)[]>;
  /** One rsync run (with the remote's retries), args built around the daemon URL. */
  rsync(path: string, opts: CallOptions, args: (url: string) => string[], run: RunOptions): Promise<unknown>;
  /** A private folder kept for the remote's life, where the runs' children work. */
  workBase(): Promise<string>;
  /**
   * A folder this call made on the server: the daemon listing cache knows it is empty, unless a
   * change of ours landed in it since `since` (an upload that carried it).
   */
  made(path: string, since: number): void;
}

export function batchMkdir(ports: MkdirPorts): BatchMkdir {
  return {
    check: (path) => {
      if (pathParts(path).length === 0) throw new AlreadyExists('the top folder exists', { path });
      ports.wire(path);
    },
    mkdirMany: (paths, opts = {}) => mkdirMany(ports, paths, opts),
  };
}

async function mkdirMany(ports: MkdirPorts, paths: string[], opts: CallOptions): Promise<(unknown | undefined)[]> {
  const out: (unknown | undefined)[] = new Array(paths.length).fill(undefined);
  const valid: number[] = [];
  for (const [i, p] of paths.entries()) {
    try {
      if (pathParts(p).length === 0) continue; // the top folder exists
      ports.wire(p);
      valid.push(i);
    } catch (e) {
      out[i] = e;
    }
  }
  if (valid.length === 0) return out;
  const since = Date.now();
  const inBatch = new Set(valid.map((i) => paths[i]!));
  const parents = [...new Set(valid.map((i) => parentOf(paths[i]!)).filter((d) => d !== '/' && !inBatch.has(d)))];
  const st = await ports.sizes([...valid.map((i) => paths[i]!), ...parents], opts);
  const parentOk = new Map(parents.map((d, k) => [d, st[valid.length + k]?.type === 'dir']));
  const refusedParents = new Set<string>();
  const toMake: number[] = [];
  for (const [k, i] of valid.entries()) {
    const p = paths[i]!;
    const e = st[k];
    const par = parentOf(p);
    // (already there: made by an upload that carried it, or another client; not known empty)
    if (e?.type === 'dir') continue;
    if (e) { out[i] = new AlreadyExists('a file of that name is in the way on the server', { path: p }); refusedParents.add(p); continue; }
    if (refusedParents.has(par)) { out[i] = new NotFound('its parent folder could not be made', { path: p }); refusedParents.add(p); continue; }
    if (par !== '/' && !inBatch.has(par) && !parentOk.get(par)) {
      out[i] = new NotFound('the parent folder is not on the server (deleted by another client?)', { path: par });
      refusedParents.add(p);
      continue;
    }
    toMake.push(i);
  }
  if (toMake.length === 0) return out;
  const rels = toMake.map((i) => pathParts(paths[i]!).join('/'));
  // The argv names no path of this run (the list goes on stdin, the source is the child's own
  // working folder), so an rsync child started ahead (connected, authenticated: WarmRuns) can take
  // it; the folders are made there before the list is written. A burst of mkdirs (git's
  // objects/NN) paid a cold run each: ~55 ms on the loopback, 125+ ms at 20 ms RTT. Children are
  // started ahead only within a burst (RunOptions.aheadInBursts). workdirs collects the children's
  // folders, of failed attempts too.
  const workdirs: string[] = [];
  try {
    let failed: unknown;
    try {
      await ports.rsync(paths[toMake[0]!]!, opts, (url) => ['-d', '--no-implied-dirs', '--from0', '--files-from=-', './', `${url}/`], {
        input: rels.join('\0') + '\0', workdirIn: await ports.workBase(), aheadInBursts: true,
        onWorkdir: async (d) => { workdirs.push(d); for (const r of rels) await fsMkdir(join(d, r), { recursive: true }); },
      });
    } catch (e) {
      failed = e;
    }
    if (failed === undefined) {
      for (const i of toMake) ports.made(paths[i]!, since);
      return out;
    }
    if (opts.signal?.aborted || !(failed instanceof RemoteError) || failed.retryable || failed.code === 'CANCELLED') throw failed;
    // some made, some refused (exit 23): the server says which
    const after = await ports.sizes(toMake.map((i) => paths[i]!), opts);
    toMake.forEach((i, k) => {
      const e = after[k];
      if (e?.type === 'dir') ports.made(paths[i]!, since);
      else if (e) out[i] = new NotADirectory('a file of that name is in the way on the server', { path: paths[i]! });
      else out[i] = new TransferFailed(`the server did not make the folder: ${(failed as Error).message}`, { path: paths[i]! });
    });
    // (a TransferFailed is retryable: the next attempt asks again; the refusal above is not)
    return out;
  } finally {
    await Promise.all(workdirs.map((d) => rm(d, { recursive: true, force: true })));
  }
}
