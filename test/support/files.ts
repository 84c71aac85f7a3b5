// Content checks and temporary folders shared by every suite.
import type { ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import fs, { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isMounted } from '../../src/util/mounts.js';

export function sha256(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}


/** A fresh temp dir, removed at teardown unless something is still mounted on it (the mount's own teardown reports that). */
export function tempDir(t: ExecutionContext, prefix = 'cm-test-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(async () => {
    if (!isMounted(d)) await fsp.rm(d, { recursive: true, force: true }).catch(() => {});
  });
  return d;
}
