// Where cloudmount keeps its files, following the XDG base directory rules.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { chmodSync } from 'node:fs';
import { makeDirsSync } from '../util/dirs.js';

const home = () => process.env.HOME || homedir();

export function configDir(): string {
  return join(process.env.XDG_CONFIG_HOME || join(home(), '.config'), 'cloudmount');
}
export function cacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(home(), '.cache'), 'cloudmount');
}
/** Live mount registry: $XDG_RUNTIME_DIR/cloudmount, else ~/.cache/cloudmount/run. */
export function runDir(): string {
  return process.env.XDG_RUNTIME_DIR ? join(process.env.XDG_RUNTIME_DIR, 'cloudmount') : join(cacheDir(), 'run');
}
export function logDir(): string {
  return join(cacheDir(), 'log');
}

/** Creates dir (and parents) and forces it to 0700: it holds account data of one user. */
export function privateDir(dir: string): string {
  makeDirsSync(dir, 0o700);
  chmodSync(dir, 0o700);
  return dir;
}
