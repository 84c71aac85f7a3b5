// Option defaults, in one place: the facade resolves VfsOptions once (resolveOptions) and every
// component reads the resolved values, never `opts.x ?? default` of its own.
import os from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../log.js';
import type { VfsOptions } from './api.js';

const MiB = 1024 * 1024;

/** The optional options of VfsOptions with their defaults (api.ts documents each). */
export const OPTIONAL_DEFAULTS = {
  syncClose: false,
  readBlockBytes: 256 * 1024,
  readWholeMaxBytes: 8 * MiB,
  uploadAttempts: 5,
  uploadBackoffMs: 500,
  deleteIdleMs: 100,
  deleteMaxDelayMs: 2000,
  mkdirIdleMs: 300,
  mkdirMaxDelayMs: 2000,
  moveIdleMs: 300,
  moveMaxDelayMs: 2000,
  listShareLinkXattr: false,
  prefetchFiles: 1000,
  prefetchFileMaxBytes: 2 * MiB,
  prefetchBytes: 64 * MiB,
  prefetchDirs: 64,
  warmStart: true,
  listAfterStats: 4,
  speculativeListMaxEntries: 5000,
} as const;

export type ResolvedOptions = Required<VfsOptions>;

export function defaultVfsOptions(accountId: string): VfsOptions {
  const xdg = process.env.XDG_CACHE_HOME;
  const base = xdg && xdg.startsWith('/') ? xdg : join(os.homedir(), '.cache');
  return {
    accountId,
    cacheDir: join(base, 'cloudmount'),
    cacheMaxBytes: 2 * 1024 * MiB,
    attrTtlMs: 10_000,
    dirTtlMs: 30_000,
    negativeTtlMs: 5_000,
    readAheadBytes: 1 * MiB,
    readAheadMaxBytes: 64 * MiB,
    readParallel: 4,
    writebackDelayMs: 2_000,
    readOnly: false,
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    opTimeoutMs: 60_000,
    log: createLogger('warn'),
  };
}

/** Every optional option filled with its default (an option given as undefined gets it too). */
export function resolveOptions(opts: VfsOptions): ResolvedOptions {
  const out = { ...opts } as Record<string, unknown>;
  for (const [k, v] of Object.entries(OPTIONAL_DEFAULTS)) out[k] ??= v;
  const r = out as unknown as ResolvedOptions;
  // bounds the core relies on
  r.uploadAttempts = Math.max(1, r.uploadAttempts);
  r.uploadBackoffMs = Math.max(0, r.uploadBackoffMs);
  r.readBlockBytes = Math.max(64 * 1024, Math.min(r.readAheadBytes, r.readBlockBytes));
  return r;
}

/** Account ids become one directory name: anything but a plain safe name is escaped. */
export function safeComponent(id: string): string {
  let s = id.replace(/[^A-Za-z0-9._@+-]/g, (c) => '_' + c.charCodeAt(0).toString(16));
  if (s === '' || s.startsWith('.')) s = '_' + s;
  return s.slice(0, 200);
}
