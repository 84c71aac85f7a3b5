// The system integration files: the mount(8) helper (fstab, mount -t fuse.cloudmount) and the
// systemd user unit, run the way mount(8) and systemd would run them.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, symlinkSync, mkdirSync, rmSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import { run } from '../../src/util/run.js';
import { cli, makeHome, isMounted, waitFor, REPO } from './helpers.js';
import { spawn } from 'node:child_process';

let emu: Emulator;
test.before(async () => { emu = await startEmulator(); });
test.after.always(async () => { await emu?.close(); });

const HELPER = join(REPO, 'scripts', 'mount.fuse.cloudmount');
const UNIT = join(REPO, 'scripts', 'systemd', 'cloudmount@.service');

function mountpoint(t: { teardown(fn: () => void): void }): string {
  const mp = mkdtempSync(join(tmpdir(), 'cloudmount-cli-int-'));
  t.teardown(() => {
    if (isMounted(mp)) spawnSync('fusermount', ['-uz', mp]);
    try { rmdirSync(mp); } catch { /* busy or not empty */ }
  });
  return mp;
}

test('mount.fuse.cloudmount NAME MNT -o fstab,options mounts in the background (as mount -t fuse.cloudmount does)', async (t) => {
  const h = makeHome();
  t.is((await cli(['login', 'box', '--kind', 'vboxx', '--server', emu.url, '--username', 'demo', '--password-file', h.pwFile('demo-password')], { env: h.env })).code, 0);
  const mp = mountpoint(t);
  // Installed as a symlink in /sbin: the helper must find the checkout through it.
  const sbin = mkdtempSync(join(tmpdir(), 'cloudmount-sbin-'));
  t.teardown(() => rmSync(sbin, { recursive: true, force: true }));
  symlinkSync(HELPER, join(sbin, 'mount.fuse.cloudmount'));
  const r = await run(join(sbin, 'mount.fuse.cloudmount'), ['box', mp, '-n', '-o', 'rw,noauto,user,_netdev,nofail,x-systemd.automount,cache_size=1G,writeback_delay=0'], { env: h.env, timeoutMs: 90_000 });
  t.is(r.code, 0, r.stderr + r.stdout);
  t.true(isMounted(mp));
  const mounts = readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === mp)!;
  t.regex(mounts, / fuse\.cloudmount /);
  const cat = await run('cat', [join(mp, 'Files', 'readme.txt')], { timeoutMs: 30_000 });
  t.is(cat.code, 0);
  t.true(cat.stdout.length > 0);
  const um = await cli(['unmount', mp], { env: h.env, timeoutMs: 60_000 });
  t.is(um.code, 0, um.stderr);
  t.false(isMounted(mp));
});

test('mount.fuse.cloudmount: -f mounts nothing, unknown accounts and arguments fail', async (t) => {
  const h = makeHome();
  const mp = mountpoint(t);
  const fake = await run(HELPER, ['box', mp, '-f', '-o', 'ro'], { env: h.env });
  t.is(fake.code, 0);
  t.regex(fake.stderr, /would run: .*mount box .* --daemon -o ro/);
  t.false(isMounted(mp));
  const unknown = await run(HELPER, ['nosuch', mp, '-o', 'ro'], { env: h.env, timeoutMs: 60_000 });
  t.not(unknown.code, 0);
  t.regex(unknown.stderr, /no saved account 'nosuch'/);
  const badArg = await run(HELPER, ['box', mp, '--weird'], { env: h.env });
  t.is(badArg.code, 1);
  t.regex(badArg.stderr, /unknown argument/);
  const badOpt = await run(HELPER, ['box', mp, '-o', 'frobnicate'], { env: h.env, timeoutMs: 60_000 });
  t.is(badOpt.code, 2);
  t.regex(badOpt.stderr, /unknown mount option -o frobnicate/);
  t.false(isMounted(mp));
});

/** The unit's ExecX= lines with systemd's %h/%i filled in (it runs ~/.local/bin/cloudmount, linked as the README shows). */
function unitCommands(home: string, instance: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const line of readFileSync(UNIT, 'utf8').split('\n')) {
    const m = /^(Exec\w+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    const cmd = m[2]!.replace(/%h/g, home).replace(/%i/g, instance);
    out[m[1]!] = cmd.split(/\s+/);
  }
  return out;
}

test('the systemd unit example: ExecStart mounts in the foreground, ExecStop flushes and unmounts it', async (t) => {
  const h = makeHome();
  t.is((await cli(['login', 'work', '--kind', 'maxxo', '--server', emu.url, '--email', 'demo@maxxo.test', '--password-file', h.pwFile('demo-password')], { env: h.env })).code, 0);
  const home = h.env.HOME!;
  mkdirSync(join(home, '.local', 'bin'), { recursive: true });
  symlinkSync(join(REPO, 'scripts', 'cloudmount'), join(home, '.local', 'bin', 'cloudmount'));
  const cmds = unitCommands(home, 'work');
  t.truthy(cmds.ExecStart && cmds.ExecStop && cmds.ExecStartPre);
  const mp = join(home, 'Cloud', 'work');
  t.teardown(() => { if (isMounted(mp)) spawnSync('fusermount', ['-uz', mp]); });
  const pre = await run(cmds.ExecStartPre![0]!, cmds.ExecStartPre!.slice(1), { env: h.env });
  t.is(pre.code, 0, pre.stderr);
  const [bin, ...args] = cmds.ExecStart!;
  const svc = spawn(bin!, args, { env: h.env, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { try { svc.kill('SIGKILL'); } catch { /* gone */ } });
  let out = '';
  svc.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  svc.stderr!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const exited = new Promise<number | null>((r) => svc.once('exit', (c) => r(c)));
  await waitFor(() => isMounted(mp) || svc.exitCode !== null, 90_000, 'unit mount');
  t.true(isMounted(mp), out);
  const w = await run('sh', ['-c', 'printf unit > "$1/unit.txt" && cat "$1/unit.txt"', 'sh', mp], { timeoutMs: 30_000 });
  t.is(w.stdout, 'unit');
  const stop = await run(cmds.ExecStop![0]!, cmds.ExecStop!.slice(1), { env: h.env, timeoutMs: 90_000 });
  t.is(stop.code, 0, stop.stderr);
  t.is(await exited, 0, 'the service process ends cleanly');
  t.false(isMounted(mp));
});
