// Creating the folders cloudmount keeps its state in. Node's mkdir({recursive: true}) never
// returns for a path it cannot create under a pseudo file system (mkdir("/proc/x") answers
// ENOENT, Node retries the parent, which exists, then the child again, forever: a mount with
// cache_dir=/proc/x spun at 95 % CPU). These walk the parents themselves and fail once.
import fs, { promises as fsp } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

function notAFolder(p: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${p} exists and is not a folder`), { code: 'ENOTDIR', path: p });
}

function explain(e: unknown, p: string, what: string): NodeJS.ErrnoException {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'ENOTDIR' && err.message.startsWith(p)) return err;
  const reason: Record<string, string> = {
    ENOENT: 'cannot be created there', EROFS: 'read-only file system', EACCES: 'permission denied',
    EPERM: 'not permitted', ENOTDIR: 'a parent is not a folder', ENOSPC: 'no space left', EDQUOT: 'disk quota exceeded',
  };
  const why = reason[err.code ?? ''] ?? err.message;
  return Object.assign(new Error(`${what} ${p}: ${why} (${err.code ?? 'error'})`), { code: err.code, path: p });
}

/** mkdir -p with `mode` for created folders; throws one clear error instead of looping. */
export async function makeDirs(dir: string, mode = 0o700): Promise<void> {
  const p = resolve(dir);
  try {
    await fsp.mkdir(p, { mode });
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      if (!(await fsp.stat(p).catch(() => undefined))?.isDirectory()) throw notAFolder(p);
      return;
    }
    if (code !== 'ENOENT' || dirname(p) === p) throw explain(e, p, 'cannot create folder');
  }
  await makeDirs(dirname(p), mode);
  try {
    await fsp.mkdir(p, { mode });
  } catch (e) {
    // the parent exists now: ENOENT again means this file system takes no new folders here
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw explain(e, p, 'cannot create folder');
    if (!(await fsp.stat(p).catch(() => undefined))?.isDirectory()) throw notAFolder(p);
  }
}

/** makeDirs, synchronous (the CLI's own config/run/log folders). */
export function makeDirsSync(dir: string, mode = 0o700): void {
  const p = resolve(dir);
  try {
    fs.mkdirSync(p, { mode });
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      if (!fs.statSync(p, { throwIfNoEntry: false })?.isDirectory()) throw notAFolder(p);
      return;
    }
    if (code !== 'ENOENT' || dirname(p) === p) throw explain(e, p, 'cannot create folder');
  }
  makeDirsSync(dirname(p), mode);
  try {
    fs.mkdirSync(p, { mode });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw explain(e, p, 'cannot create folder');
    if (!fs.statSync(p, { throwIfNoEntry: false })?.isDirectory()) throw notAFolder(p);
  }
}

/**
 * A folder cloudmount can keep files in: created when missing, then a probe file is written and
 * removed (permissions alone say nothing for root, nor for a read-only or full file system).
 */
export async function usableDir(dir: string, mode = 0o700): Promise<void> {
  await makeDirs(dir, mode);
  const probe = join(resolve(dir), `.cloudmount-probe-${process.pid}`);
  try {
    await fsp.writeFile(probe, 'x', { flag: 'w', mode: 0o600 });
  } catch (e) {
    throw explain(e, resolve(dir), 'cannot write in');
  } finally {
    await fsp.rm(probe, { force: true }).catch(() => {});
  }
}
