// A cache folder the drive cannot use makes start() fail with one clear error, at once (Node's
// recursive mkdir spun forever on /proc/x, so a mount never came up nor failed).
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryRemote } from '../helpers/memory-remote.js';
import { Vfs, defaultVfsOptions } from '../../src/vfs/vfs.js';
import { quietLog, tempDir, within } from './helpers.js';

test('start() with an unusable cache folder rejects with a clear error instead of hanging', async (t) => {
  const base = tempDir(t);
  const file = join(base, 'a-file');
  writeFileSync(file, 'x');
  const cases: Array<[string, RegExp]> = [
    ['/proc/cloudmount-cache', /cannot create folder \/proc\/cloudmount-cache/],
    [file, /exists and is not a folder/],
    [join(file, 'sub'), /a parent is not a folder/],
  ];
  for (const [dir, msg] of cases) {
    const vfs = new Vfs(new MemoryRemote(), { ...defaultVfsOptions('acct'), cacheDir: dir, log: quietLog() });
    const err = await t.throwsAsync(within(vfs.start(), 10_000, 'start()'), undefined, dir);
    t.regex(err!.message, msg);
    await vfs.close({ force: true }).catch(() => {});
  }
});
