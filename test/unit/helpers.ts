// Shared setup for vfs unit tests: a Vfs over a MemoryRemote in a fresh cache directory.
import fs from 'node:fs';
import type { ExecutionContext } from 'ava';
import { createLogger, type Logger } from '../../src/log.js';
import { MemoryRemote, type MemoryRemoteOptions } from '../helpers/memory-remote.js';
import type { VfsOptions } from '../../src/vfs/api.js';
import { Vfs, defaultVfsOptions } from '../../src/vfs/vfs.js';
export { sleep, until, within } from '../support/wait.js';
export { sha256, tempDir } from '../support/files.js';
import { tempDir } from '../support/files.js';

export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const { O_CREAT, O_TRUNC, O_APPEND, O_EXCL } = fs.constants;

export function quietLog(lines: string[] = []): Logger {
  return createLogger('warn', (l) => lines.push(l));
}


export interface Setup {
  remote: MemoryRemote;
  vfs: Vfs;
  opts: VfsOptions;
  logs: string[];
  /** A second Vfs on the same cache dir (after a simulated crash of the first). */
  reopen(overrides?: Partial<VfsOptions>): Promise<Vfs>;
}

export async function setup(t: ExecutionContext, remoteOpts: MemoryRemoteOptions = {}, overrides: Partial<VfsOptions> = {},
  remote = new MemoryRemote(remoteOpts)): Promise<Setup> {
  const logs: string[] = [];
  const opts: VfsOptions = {
    ...defaultVfsOptions('acct'),
    cacheDir: tempDir(t),
    log: quietLog(logs),
    writebackDelayMs: 0,
    uploadBackoffMs: 1,
    uploadAttempts: 3,
    deleteIdleMs: 0,
    opTimeoutMs: 10_000,
    // (the tests count requests and change the server after start; vfs-warm-start tests it)
    warmStart: false,
    ...overrides,
  };
  const vfs = new Vfs(remote, opts);
  await vfs.start();
  const all: Vfs[] = [vfs];
  t.teardown(async () => { for (const v of all) await v.close({ force: true }).catch(() => {}); });
  return {
    remote, vfs, opts, logs,
    async reopen(o = {}) {
      const v = new Vfs(remote, { ...opts, ...o });
      all.push(v);
      await v.start();
      return v;
    },
  };
}


/** Deterministic pseudo-random bytes. */
export function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 0x100000000;
  };
}

/** Reads a whole file through the vfs in chunks of `chunk` bytes. */
export async function readAll(vfs: Vfs, path: string, chunk = 128 * 1024): Promise<Buffer> {
  const fh = await vfs.open(path, O_RDONLY);
  try {
    const parts: Buffer[] = [];
    for (let pos = 0; ; ) {
      const buf = Buffer.alloc(chunk);
      const n = await vfs.read(path, fh, buf, chunk, pos);
      if (n === 0) break;
      parts.push(buf.subarray(0, n));
      pos += n;
    }
    return Buffer.concat(parts);
  } finally {
    await vfs.release(path, fh);
  }
}

/** Creates (or replaces) a file through the vfs with `data`, closing it (flush + release). */
export async function writeFile(vfs: Vfs, path: string, data: Buffer | string): Promise<void> {
  const b = Buffer.from(data);
  const fh = await vfs.create(path, 0o644, O_WRONLY | O_CREAT | O_TRUNC);
  try {
    if (b.length) await vfs.write(path, fh, b, b.length, 0);
    await vfs.flush(path, fh);
  } finally {
    await vfs.release(path, fh);
  }
}


