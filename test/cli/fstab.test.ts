// The real mount(8) path: `mount -t fuse.cloudmount NAME DIR -o ...` and an fstab line (through
// `mount --fstab FILE DIR`, so /etc/fstab is never touched) run /sbin/mount.fuse.cloudmount,
// which this test installs for its own duration (as root, as the README's install line does).
// `umount DIR` is plain umount(8); the background mount process notices, flushes and exits.
// Credentials come from a saved login and must never appear in options, argv or environments.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, symlinkSync, readlinkSync, unlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import { createVboxxRemote } from '../../src/remote/vboxx/index.js';
import { createMaxxoRemote } from '../../src/remote/maxxo/index.js';
import { run } from '../../src/util/run.js';
import { cli, makeHome, isMounted, waitFor, REPO, type Home } from './helpers.js';
import { alive, cmdline, environ, envLeak } from './pty.js';

const HELPER = join(REPO, 'scripts', 'mount.fuse.cloudmount');
const SBIN = '/sbin/mount.fuse.cloudmount';
const PASSWORD = 'demo-password';

let emu: Emulator;
// /sbin/mount.fuse.cloudmount -> <tmp>/cloudmount-fstab-helper-*/mount.fuse.cloudmount -> our
// helper: the middle link marks the install as a test run's (the README's install line points
// straight at a checkout) and names our pid, and the helper follows both links to this checkout.
let link: string | undefined;
test.before(async () => {
  if (process.getuid?.() !== 0) throw new Error('mount(8) with a helper in /sbin needs root');
  const dir = mkdtempSync(join(tmpdir(), `cloudmount-fstab-helper-${process.pid}-`));
  symlinkSync(HELPER, join(dir, 'mount.fuse.cloudmount'));
  // Another checkout's run of this test may hold the path for a minute: wait for it. Anything
  // else there is someone's installed helper, never replaced (their fstab mounts use it).
  const end = Date.now() + 180_000;
  for (;;) {
    try { symlinkSync(join(dir, 'mount.fuse.cloudmount'), SBIN); link = join(dir, 'mount.fuse.cloudmount'); break; } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let existing = '(not a symlink)';
    try { existing = readlinkSync(SBIN); } catch (e) { if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; }
    const run = /\/cloudmount-fstab-helper-(\d+)-[^/]+\/mount\.fuse\.cloudmount$/.exec(existing);
    // Left by a run that was killed: its process is gone, so the path is free.
    if (run && !alive(Number(run[1]))) { try { unlinkSync(SBIN); } catch { /* someone else did */ } continue; }
    if (!run || Date.now() > end) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`${SBIN} exists (-> ${existing}); remove it to run this test`);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  emu = await startEmulator();
});
test.after.always(async () => {
  try { if (link && readlinkSync(SBIN) === link) unlinkSync(SBIN); } catch { /* not ours or gone */ }
  if (link) rmSync(join(link, '..'), { recursive: true, force: true });
  await emu?.close();
});

function mountpoint(t: { teardown(fn: () => void): void }): string {
  const mp = mkdtempSync(join(tmpdir(), 'cloudmount-fstab-mnt-'));
  t.teardown(() => { if (isMounted(mp)) spawnSync('fusermount', ['-uz', mp]); rmSync(mp, { recursive: true, force: true }); });
  return mp;
}

/** A home with the saved accounts box (vBoxx demo) and mx (Maxxo demo), passwords saved. */
async function savedLogin(t: { teardown(fn: () => void): void }): Promise<Home> {
  const h = makeHome();
  t.teardown(() => rmSync(h.dir, { recursive: true, force: true }));
  const pw = h.pwFile(PASSWORD);
  for (const args of [['box', '--kind', 'vboxx', '--username', 'demo'], ['mx', '--kind', 'maxxo', '--email', 'demo@maxxo.test']]) {
    const r = await cli(['login', ...args, '--server', emu.url, '--password-file', pw], { env: h.env });
    if (r.code !== 0) throw new Error(`login: ${r.stderr}`);
  }
  return h;
}

function mountLine(mp: string): string | undefined {
  return readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === mp);
}

/**
 * Our processes (the chain mount -> helper -> cloudmount -> daemon inherits this test's XDG dirs,
 * or names our mountpoint) whose argv or environment holds the password. Other processes on the
 * machine (benchmarks with CLOUDMOUNT_PASSWORD) are not ours to judge.
 */
function leaks(h: Home, mp: string): string[] {
  const hits: string[] = [];
  for (const n of readdirSync('/proc')) {
    if (!/^\d+$/.test(n) || Number(n) === process.pid) continue;
    if (!environ(Number(n)).includes(h.dir) && !cmdline(Number(n)).includes(mp)) continue;
    if (cmdline(Number(n)).includes(PASSWORD)) hits.push(`argv of ${n}: ${cmdline(Number(n))}`);
    if (envLeak(Number(n), PASSWORD)) hits.push(`environment of ${n}: ${cmdline(Number(n))}`);
  }
  return hits;
}

/** Mounted through mount(8): works, registered, no secret anywhere; then `umount` ends it cleanly. */
async function checkAndUmount(t: import('ava').ExecutionContext, h: Home, mp: string, file: string, kind: 'vboxx' | 'maxxo' = 'vboxx'): Promise<void> {
  const line = mountLine(mp);
  t.truthy(line, 'listed in /proc/mounts');
  t.regex(line!, / fuse\.cloudmount /);
  t.false(line!.includes(PASSWORD), `no secret in the mount options: ${line}`);
  const st = await cli(['status', '--json'], { env: h.env });
  const rec = JSON.parse(st.stdout).mounts.find((m: { mountpoint: string }) => m.mountpoint === mp);
  t.truthy(rec, `the background mount process registered itself: ${st.stdout}`);
  const pid: number = rec.pid;
  t.teardown(() => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } });
  t.true(alive(pid));

  // Maxxo reads and writes go through rsync, run by a process whose environment mount(8) scrubbed.
  const dir = kind === 'vboxx' ? '/Files' : '/';
  const cat = await run('sh', ['-c', 'f=$(find "$1" -type f | head -n1) && [ -n "$f" ] && cat "$f"', 'sh', join(mp, dir)], { timeoutMs: 60_000 });
  t.is(cat.code, 0, cat.stderr);
  t.true(cat.stdout.length > 0);
  const w = await run('sh', ['-c', 'printf "%s" "$2" > "$1"', 'sh', join(mp, dir, file), `written via mount(8) ${file}`], { timeoutMs: 30_000 });
  t.is(w.code, 0, w.stderr);
  const ours = readdirSync('/proc').filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid && environ(Number(n)).includes(h.dir));
  t.true(ours.includes(String(pid)), 'the scan below sees the mount process');
  t.deepEqual(leaks(h, mp), [], 'no process of ours has the password in argv or environment');

  const um = await run('umount', [mp], { timeoutMs: 60_000 });
  t.is(um.code, 0, um.stderr);
  t.false(isMounted(mp));
  // The mount process sees the unmount, delivers the pending upload and exits.
  await waitFor(() => !alive(pid), 60_000, 'the mount process to exit after umount');
  const server = kind === 'vboxx' ? createVboxxRemote({ server: emu.url, user: 'demo', password: PASSWORD })
    : createMaxxoRemote({ server: emu.url, user: 'demo@maxxo.test', password: PASSWORD });
  try {
    const { entries } = await server.list(dir);
    t.true(entries.some((e) => e.name === file && e.size === `written via mount(8) ${file}`.length), `${file} reached the server`);
  } finally {
    await server.close();
  }
  const after = await cli(['status', '--json'], { env: h.env });
  t.deepEqual(JSON.parse(after.stdout).mounts, [], 'registry is empty');
  const logs = join(h.env.XDG_CACHE_HOME!, 'cloudmount', 'log');
  for (const f of readdirSync(logs)) t.false(readFileSync(join(logs, f), 'utf8').includes(PASSWORD), `log ${f} has no password`);
}

test.serial('mount -t fuse.cloudmount NAME DIR -o fstab-options (vBoxx, then Maxxo with rsync): mounted by mount(8) through the helper, umount flushes and ends it', async (t) => {
  t.timeout(150_000);
  const h = await savedLogin(t);
  const mp = mountpoint(t);
  // mount(8) scrubs PATH and HOME before running the helper; the XDG dirs of this test pass.
  const r = await run('mount', ['-t', 'fuse.cloudmount', 'box', mp, '-o', 'noauto,user,_netdev,nofail,x-systemd.automount,cache_size=1G,writeback_delay=1'], { env: h.env, timeoutMs: 90_000 });
  t.is(r.code, 0, r.stdout + r.stderr);
  t.regex(r.stdout, /mounted .* in the background/);
  await checkAndUmount(t, h, mp, 'via-mount-t.txt');

  const mp2 = mountpoint(t);
  const m = await run('mount', ['-t', 'fuse.cloudmount', 'mx', mp2, '-o', 'noauto,_netdev,writeback_delay=1'], { env: h.env, timeoutMs: 90_000 });
  t.is(m.code, 0, m.stdout + m.stderr);
  await checkAndUmount(t, h, mp2, 'maxxo-via-mount-t.txt', 'maxxo');
});

test.serial('an fstab line (mount --fstab FILE DIR) mounts the saved account the same way', async (t) => {
  t.timeout(150_000);
  const h = await savedLogin(t);
  const mp = mountpoint(t);
  const fstab = join(h.dir, 'fstab');
  writeFileSync(fstab, `# test fstab\nbox  ${mp}  fuse.cloudmount  noauto,_netdev,cache_size=1G,writeback_delay=1,ro  0  0\n`);
  const r = await run('mount', ['--fstab', fstab, mp], { env: h.env, timeoutMs: 90_000 });
  t.is(r.code, 0, r.stdout + r.stderr);
  const line = mountLine(mp);
  t.regex(line ?? '', /\sro[,\s]/, `ro from the fstab line reaches the kernel: ${line}`);
  const wr = await run('sh', ['-c', 'printf x > "$1/Files/ro.txt"', 'sh', mp], { timeoutMs: 30_000 });
  t.not(wr.code, 0, 'a read-only mount refuses writes');
  t.regex(wr.stderr, /Read-only file system/);
  const um = await run('umount', [mp], { timeoutMs: 60_000 });
  t.is(um.code, 0, um.stderr);
  t.false(isMounted(mp));
  await waitFor(async () => JSON.parse((await cli(['status', '--json'], { env: h.env })).stdout).mounts.length === 0, 60_000, 'the mount process to exit');

  // The same line without ro: read-write, and umount delivers what was written.
  writeFileSync(fstab, `box  ${mp}  fuse.cloudmount  noauto,_netdev,cache_size=1G,writeback_delay=1  0  0\n`);
  const rw = await run('mount', ['--fstab', fstab, mp], { env: h.env, timeoutMs: 90_000 });
  t.is(rw.code, 0, rw.stdout + rw.stderr);
  await checkAndUmount(t, h, mp, 'via-fstab.txt');
});

test.serial('mount -t fuse.cloudmount: an unknown account or a bad option fails with a clear message and mounts nothing', async (t) => {
  t.timeout(120_000);
  const h = await savedLogin(t);
  const mp = mountpoint(t);
  const unknown = await run('mount', ['-t', 'fuse.cloudmount', 'nosuch', mp], { env: h.env, timeoutMs: 60_000 });
  t.not(unknown.code, 0);
  t.regex(unknown.stderr, /no saved account 'nosuch'/);
  const bad = await run('mount', ['-t', 'fuse.cloudmount', 'box', mp, '-o', 'frobnicate=1'], { env: h.env, timeoutMs: 60_000 });
  t.not(bad.code, 0);
  t.regex(bad.stderr, /unknown mount option -o frobnicate/);
  t.false(isMounted(mp));
});
