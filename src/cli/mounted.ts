// Paths given to account commands that lie inside a mounted cloudmount drive: mapped to the
// path in the account (the service then acts on its own copy, no download/upload round trip),
// after the drive has put what programs wrote there on the server.
import { resolve } from 'node:path';
import { open, readdir, stat } from 'node:fs/promises';
import { findByPath, type MountRecord } from './registry.js';
import { CliError } from './context.js';
import type { Target } from './target.js';

export interface DrivePath {
  /** Path in the account, without leading slash ('' = the top). */
  remote: string;
  /** The local path through the mount, when the argument was one. */
  local?: string;
  mount?: MountRecord;
}

const sameAccount = (r: MountRecord, t: Target) => r.kind === t.kind && r.server === t.server && r.user === t.user;

/**
 * `arg` as a path in the account of `t`: a path inside a live mount of that account (absolute,
 * or relative to a working directory inside it) maps to its place in the drive; a path in a
 * mount of another account is refused; anything else is taken as a path in the drive already.
 */
export function drivePath(arg: string, t: Target, cwd = process.cwd()): DrivePath {
  const abs = resolve(cwd, arg);
  const hit = findByPath(abs);
  if (!hit) return { remote: arg.split('/').filter((s) => s && s !== '.').join('/') };
  const { rec, inner } = hit;
  if (!sameAccount(rec, t)) {
    throw new CliError(`${arg} is in the drive of ${rec.kind} ${rec.user} at ${rec.server} (mounted at ${rec.mountpoint}), ` +
      `not of ${t.kind} ${t.user}${rec.kind === t.kind ? `: use --account${rec.name ? ` ${rec.name}` : ''} for that account` : ''}`);
  }
  return { remote: inner.replace(/^\/+/, ''), local: abs, mount: rec };
}

/**
 * Waits until the drive has uploaded what programs wrote under `local` (a file, or a folder with
 * its subfolders and files): fsync through the mount returns once the server has it. Runs
 * in this process, never in the mount's own (that would deadlock it).
 */
export async function flushThroughMount(local: string, onFile?: () => void): Promise<'file' | 'dir'> {
  let st;
  try { st = await stat(local); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CliError(`${local}: no such file or folder in the mounted drive`);
    throw new CliError(`${local}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const sync = async (p: string) => {
    const fh = await open(p, 'r');
    try { await fh.sync(); } finally { await fh.close(); }
  };
  const syncFile = async (p: string) => { await sync(p); onFile?.(); };
  if (!st.isDirectory()) { await syncFile(local); return 'file'; }
  const walk = async (d: string): Promise<void> => {
    // fsync of a folder makes it and its subfolders if they are still pending mkdirs (written
    // back): an empty folder made a moment ago is otherwise unknown to the server
    await sync(d);
    for (const ent of await readdir(d, { withFileTypes: true })) {
      const p = `${d}/${ent.name}`;
      if (ent.isDirectory()) await walk(p);
      else if (ent.isFile()) await syncFile(p);
    }
  };
  await walk(local);
  return 'dir';
}
