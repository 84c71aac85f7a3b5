#!/usr/bin/env node
// `npm test`: ava, with the run's temporary files (mountpoints, cache folders, the reference
// servers' storage) in one folder of the run's own, on a tmpfs when the machine has one with room.
//
// Why a tmpfs: the suite creates and deletes tens of thousands of cache files. On this kind of
// machine / is ext4 without a journal, where every file creation scans the inode table for
// recently deleted inodes and the creating threads spin on the folder's lock: measured on e2e
// basic + integrity, system CPU 16.5 s on /tmp against 7.5 s on /dev/shm, wall 40 s against 36 s,
// the whole suite being CPU-bound on two cores. Nothing a test checks depends on the file system
// under TMPDIR (the disk-full test mounts a tmpfs of its own).
//
// Afterwards: a mount a failed test left under the folder is cut loose (and named), then the
// folder is removed. CLOUDMOUNT_TEST_TMP=DIR picks the base folder instead.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const TMPFS_MAGIC = 0x01021994;
const ROOM = 4 * 2 ** 30;

function pickBase() {
  if (process.env.CLOUDMOUNT_TEST_TMP) return process.env.CLOUDMOUNT_TEST_TMP;
  try {
    const s = statfsSync('/dev/shm');
    if (s.type === TMPFS_MAGIC && s.bavail * s.bsize >= ROOM) return '/dev/shm';
  } catch { /* none */ }
  return tmpdir();
}

let dir;
try {
  dir = mkdtempSync(join(pickBase(), 'cloudmount-test.'));
} catch {
  dir = mkdtempSync(join(tmpdir(), 'cloudmount-test.'));
}
// Like /tmp itself: the allow_other test lists a mount as another user.
chmodSync(dir, 0o1777);
console.error(`[test] temporary files under ${dir}`);

/** Mountpoints under dir, deepest first (a mount inside another comes off first). */
function mountsUnder(d) {
  let text = '';
  try { text = readFileSync('/proc/mounts', 'utf8'); } catch { return []; }
  const decode = (s) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  return text.split('\n').map((l) => decode(l.split(' ')[1] ?? ''))
    .filter((m) => m.startsWith(`${d}/`)).sort((a, b) => b.length - a.length);
}

function cleanUp() {
  for (const m of mountsUnder(dir)) {
    console.error(`[test] leftover mount: ${m}`);
    if (spawnSync('fusermount3', ['-uz', m], { stdio: 'ignore' }).status !== 0
      && spawnSync('fusermount', ['-uz', m], { stdio: 'ignore' }).status !== 0) {
      spawnSync('umount', ['-l', m], { stdio: 'ignore' });
    }
  }
  // only when nothing is mounted there any more: rm must never walk into a live mount
  if (mountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
  else console.error(`[test] ${dir} kept: mounts under it could not be removed`);
}

const ava = join(root, 'node_modules', 'ava', 'entrypoints', 'cli.mjs');
const child = spawn(process.execPath, [ava, ...process.argv.slice(2)], {
  cwd: root, stdio: 'inherit', env: { ...process.env, TMPDIR: dir },
});
// Ctrl-C reaches ava through the terminal's process group; a SIGTERM sent to us alone is passed on.
process.on('SIGTERM', () => child.kill('SIGTERM'));
process.on('SIGINT', () => { /* ava got it too, and ends its run */ });
child.on('exit', (code, signal) => {
  cleanUp();
  process.exit(code ?? (signal ? 1 : 0));
});
