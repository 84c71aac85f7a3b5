// mount / unmount / status / share through the CLI against the reference servers. The server
// runs in this process and the mount in a CLI child, so this process only ever reaches the mount
// through further child processes (sh, cat, getfattr), never with fs calls of its own.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, existsSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import { createVboxxRemote } from '../../src/remote/vboxx/index.js';
import { createMaxxoRemote } from '../../src/remote/maxxo/index.js';
import { run } from '../../src/util/run.js';
import { cli, cliSpawn, makeHome, isMounted, waitFor, sleep, type Home } from './helpers.js';

let emu: Emulator;
test.before(async () => { emu = await startEmulator(); });
test.after.always(async () => { await emu?.close(); });

function mountpoint(t: { teardown(fn: () => void): void }): string {
  const mp = mkdtempSync(join(tmpdir(), 'cloudmount-cli-mnt-'));
  t.teardown(() => {
    if (isMounted(mp)) spawnSync('fusermount', ['-uz', mp]);
    // rmdir only: an empty mountpoint goes, anything still mounted or holding files stays
    try { rmdirSync(mp); } catch { /* busy or not empty */ }
  });
  return mp;
}

function killOnTeardown(t: { teardown(fn: () => void): void }, pid: () => number | undefined): void {
  t.teardown(() => { const p = pid(); if (p) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } } });
}

const registry = (h: Home) => {
  const d = join(h.env.XDG_RUNTIME_DIR!, 'cloudmount');
  return existsSync(d) ? readdirSync(d).filter((n) => n.endsWith('.json')) : [];
};

async function sh(script: string, ...args: string[]) {
  return run('sh', ['-c', script, 'sh', ...args], { timeoutMs: 60_000 });
}

test('foreground mount of a saved vBoxx account: status, share, write, unmount with the upload on the server', async (t) => {
  const h = makeHome();
  const mp = mountpoint(t);
  t.is((await cli(['login', 'box', '--kind', 'vboxx', '--server', emu.url, '--username', 'demo', '--password-file', h.pwFile('demo-password')], { env: h.env })).code, 0);
  const m = cliSpawn(['mount', 'box', mp, '-o', 'writeback_delay=5'], { env: h.env });
  killOnTeardown(t, () => m.child.pid);
  await waitFor(() => /mounted vboxx demo at/.test(m.output()) || m.child.exitCode !== null, 60_000, 'mounted');
  t.true(isMounted(mp), m.output());

  const cmdline = readFileSync(`/proc/${m.child.pid}/cmdline`, 'utf8');
  t.false(cmdline.includes('demo-password'));
  t.false(readFileSync(`/proc/${m.child.pid}/environ`, 'utf8').includes('demo-password'));

  const st = await cli(['status', '--json'], { env: h.env });
  t.is(st.code, 0);
  const rec = JSON.parse(st.stdout).mounts[0];
  t.like(rec, { mountpoint: mp, kind: 'vboxx', name: 'box', user: 'demo', state: 'mounted', pid: m.child.pid });
  t.is(typeof rec.status.pending, 'number');
  const table = await cli(['status'], { env: h.env });
  t.regex(table.stdout, new RegExp(`${mp}\\s+vboxx\\s+box`));

  const share = await cli(['share', join(mp, 'Files', 'readme.txt')], { env: h.env });
  t.is(share.code, 0, share.stderr);
  t.regex(share.stdout.trim(), /^http:\/\/127\.0\.0\.1:\d+\/s\/\S+$/);
  const noFile = await cli(['share', join(mp, 'Files', 'nope.txt')], { env: h.env });
  t.is(noFile.code, 1);
  t.regex(noFile.stderr, /no share link for/);

  // 2 MB written; with writeback_delay=5 it is still pending when unmount starts.
  const w = await sh('head -c 2000000 /dev/urandom > "$1/Files/cli-up.bin" && sha256sum "$1/Files/cli-up.bin"', mp);
  t.is(w.code, 0, w.stderr);
  const sum = w.stdout.split(' ')[0];
  const pend = JSON.parse((await cli(['status', '--json'], { env: h.env })).stdout).mounts[0];
  await sleep(1200);
  const um = await cli(['unmount', mp], { env: h.env, timeoutMs: 120_000 });
  t.is(um.code, 0, um.stderr);
  t.regex(um.stderr, /unmounted/);
  t.is(await m.exited, 0);
  t.false(isMounted(mp));
  t.deepEqual(registry(h), []);
  t.true(pend.status.pending >= 0);

  const remote = createVboxxRemote({ server: emu.url, user: 'demo', password: 'demo-password' });
  t.teardown(() => remote.close());
  const local = join(h.dir, 'back.bin');
  await remote.download('/Files/cli-up.bin', local);
  const back = await run('sha256sum', [local]);
  t.is(back.stdout.split(' ')[0], sum, 'uploaded before unmount returned');
});

test('--daemon mount of Maxxo: password only through the pipe, parent exits once mounted, unmount flushes', async (t) => {
  const h = makeHome();
  const mp = mountpoint(t);
  const env = { ...h.env, CLOUDMOUNT_PASSWORD: 'demo-password' };
  const r = await cli(['mount', 'maxxo', mp, '--server', emu.url, '--email', 'demo@maxxo.test', '--daemon', '-o', 'writeback_delay=3'], { env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /mounted .* in the background \(pid (\d+)/);
  const pid = Number(/pid (\d+)/.exec(r.stdout)![1]);
  killOnTeardown(t, () => pid);
  t.true(isMounted(mp));
  t.false(readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('demo-password'), 'not in argv');
  t.false(readFileSync(`/proc/${pid}/environ`, 'utf8').includes('demo-password'), 'not in the environment');

  const ls = await run('ls', [mp], { timeoutMs: 30_000 });
  t.regex(ls.stdout, /Welcome to Maxxo\.txt/);
  const w = await sh('printf "daemon write\\n" > "$1/from-daemon.txt"', mp);
  t.is(w.code, 0, w.stderr);
  const um = await cli(['unmount', mp], { env: h.env, timeoutMs: 120_000 });
  t.is(um.code, 0, um.stderr);
  await waitFor(() => { try { process.kill(pid, 0); return false; } catch { return true; } }, 10_000, 'daemon exit');
  t.false(isMounted(mp));
  t.deepEqual(registry(h), []);
  const remote = createMaxxoRemote({ server: emu.url, user: 'demo@maxxo.test', password: 'demo-password' });
  t.teardown(() => remote.close());
  const e = await remote.stat('/from-daemon.txt');
  t.is(e?.size, 'daemon write\n'.length);
});

test('a wrong password fails the mount with one clear line, foreground and --daemon, leaving nothing behind', async (t) => {
  const h = makeHome();
  const mp = mountpoint(t);
  for (const extra of [[], ['--daemon']]) {
    const r = await cli(['mount', 'vboxx', mp, '--server', emu.url, '--username', 'demo', '--password-file', h.pwFile('wrong'), ...extra], { env: h.env });
    t.is(r.code, 1, `${extra} ${r.stderr}`);
    t.regex(r.stderr, /login failed for vboxx demo/);
    t.false(isMounted(mp));
    t.deepEqual(registry(h), []);
  }
  const missing = await cli(['mount', 'vboxx', join(mp, 'nope'), '--server', emu.url, '--username', 'demo', '--password-file', h.pwFile('demo-password')], { env: h.env });
  t.is(missing.code, 1);
  t.regex(missing.stderr, /does not exist/);
  const unknownAcct = await cli(['mount', 'nosuch', mp], { env: h.env });
  t.is(unknownAcct.code, 2);
  t.regex(unknownAcct.stderr, /no saved account 'nosuch'/);
});

test('unmount of something that is not a cloudmount mount fails clearly', async (t) => {
  const h = makeHome();
  const mp = mountpoint(t);
  const r = await cli(['unmount', mp], { env: h.env });
  t.is(r.code, 1);
  t.regex(r.stderr, /is not a cloudmount mount/);
  const proc = await cli(['unmount', '/proc'], { env: h.env });
  t.is(proc.code, 1);
  t.regex(proc.stderr, /not a cloudmount mount/);
  const share = await cli(['share', mp], { env: h.env });
  t.is(share.code, 1);
  t.regex(share.stderr, /not inside a cloudmount mount/);
  const st = await cli(['status'], { env: h.env });
  t.is(st.code, 0);
  t.regex(st.stdout, /no cloudmount mounts/);
});

test('SIGINT unmounts a foreground mount (-vv log free of the password); a second mount on the same place is refused', async (t) => {
  const h = makeHome();
  const mp = mountpoint(t);
  const env = { ...h.env, CLOUDMOUNT_PASSWORD: 'demo-password' };
  const m = cliSpawn(['mount', 'vboxx', mp, '--server', emu.url, '--username', 'demo', '--root', 'Files', '-vv'], { env });
  killOnTeardown(t, () => m.child.pid);
  await waitFor(() => /mounted vboxx/.test(m.output()) || m.child.exitCode !== null, 60_000, 'mounted');
  t.true(isMounted(mp), m.output());
  const ls = await run('ls', [mp], { timeoutMs: 30_000 });
  t.regex(ls.stdout, /readme\.txt/, '--root Files mounts the root itself');
  const again = await cli(['mount', 'vboxx', mp, '--server', emu.url, '--username', 'demo'], { env });
  t.is(again.code, 1);
  t.regex(again.stderr, /already mounted/);
  m.child.kill('SIGINT');
  t.is(await m.exited, 130, "Ctrl-C (SIGINT) ends with 130 after a clean unmount");
  t.false(isMounted(mp));
  t.deepEqual(registry(h), []);
  t.regex(m.output(), /DEBUG/, '-vv logs');
  t.false(m.output().includes('demo-password'), 'the password is not in the -vv log');
});

test('unmount --force cuts loose at once and says the journal is kept', async (t) => {
  const h = makeHome();
  const mp = mountpoint(t);
  const env = { ...h.env, CLOUDMOUNT_PASSWORD: 'demo-password' };
  const m = cliSpawn(['mount', 'maxxo', mp, '--server', emu.url, '--email', 'demo@maxxo.test', '-o', 'writeback_delay=600'], { env });
  killOnTeardown(t, () => m.child.pid);
  await waitFor(() => /mounted maxxo/.test(m.output()) || m.child.exitCode !== null, 60_000, 'mounted');
  t.true(isMounted(mp), m.output());
  const w = await sh('printf "kept\\n" > "$1/forced.txt"', mp);
  t.is(w.code, 0, w.stderr);
  const r = await cli(['unmount', '--force', mp], { env: h.env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /journal/);
  await m.exited;
  t.false(isMounted(mp));
  t.deepEqual(registry(h), []);
});

test('an unusable cache_dir fails the mount at once with one clear line, foreground and --daemon, leaving nothing behind', async (t) => {
  const h = makeHome();
  const mp = mountpoint(t);
  const file = join(h.dir, 'a-file');
  writeFileSync(file, 'x');
  const dirs: Array<[string, RegExp]> = [
    ['/proc/cloudmount-cache', /cache_dir: cannot create folder \/proc\/cloudmount-cache/],
    [file, /cache_dir: .*a-file exists and is not a folder/],
    [join(file, 'sub'), /cache_dir: .*a parent is not a folder/],
  ];
  // a read-only file system, where this test may mount one (root)
  const ro = mkdtempSync(join(tmpdir(), 'cloudmount-ro-'));
  t.teardown(() => { if (isMounted(ro)) spawnSync('umount', [ro]); try { rmdirSync(ro); } catch { /* busy */ } });
  if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', ro]).status === 0) {
    dirs.push([ro, /cache_dir: cannot write in .*read-only file system/], [join(ro, 'sub'), /cache_dir: .*read-only file system/]);
  } else t.log('no read-only tmpfs here (not root): that case is skipped');
  const env = { ...h.env, CLOUDMOUNT_PASSWORD: 'demo-password' };
  for (const [dir, msg] of dirs) {
    for (const extra of [[], ['--daemon']]) {
      // the bound is a hang detector, not a speed claim: a working check answers in well under 2 s
      const r = await cli(['mount', 'maxxo', mp, '--server', emu.url, '--email', 'demo@maxxo.test', '-o', `cache_dir=${dir}`, ...extra], { env, timeoutMs: 10_000 });
      t.is(r.code, 1, `${dir} ${extra}: ${r.stderr}`);
      t.regex(r.stderr, msg);
      t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
      t.false(isMounted(mp));
      t.deepEqual(registry(h), []);
    }
  }
});

// A program holding a file open for writing: it writes its first chunk, then waits for a line
// on stdin before it writes the second and closes (or reports the errno it got).
const WRITER = `
const fs = require('fs');
const [file, first, second] = process.argv.slice(1);
const fd = fs.openSync(file, 'w');
fs.writeSync(fd, first);
console.log('wrote');
process.stdin.once('data', () => {
  try { fs.writeSync(fd, second); fs.closeSync(fd); console.log('closed'); } catch (e) { console.log('error ' + e.code); }
  process.exit(0);
});
`;
function openWriter(file: string, first: string, second: string) {
  const child = spawn(process.execPath, ['-e', WRITER, file, first, second], { stdio: ['pipe', 'pipe', 'pipe'] });
  let outp = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { outp += d; });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { outp += d; });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    pid: child.pid!,
    output: () => outp,
    ready: () => waitFor(() => /wrote/.test(outp) || child.exitCode !== null, 30_000, 'writer ready'),
    async finish(): Promise<string> { child.stdin!.end('go\n'); await exited; return outp; },
    kill() { try { child.kill('SIGKILL'); } catch { /* gone */ } },
  };
}

const ACCOUNTS = {
  maxxo: { args: ['--email', 'demo@maxxo.test'], dir: '', remote: () => createMaxxoRemote({ server: emu.url, user: 'demo@maxxo.test', password: 'demo-password' }) },
  vboxx: { args: ['--username', 'demo'], dir: 'Files', remote: () => createVboxxRemote({ server: emu.url, user: 'demo', password: 'demo-password' }) },
} as const;

async function mountFg(t: { teardown(fn: () => void): void }, kind: 'maxxo' | 'vboxx', mp: string, env: NodeJS.ProcessEnv, extra: string[] = []) {
  const m = cliSpawn(['mount', kind, mp, '--server', emu.url, ...ACCOUNTS[kind].args, ...extra], { env });
  killOnTeardown(t, () => m.child.pid);
  await waitFor(() => /mounted (maxxo|vboxx)/.test(m.output()) || m.child.exitCode !== null, 60_000, 'mounted');
  return m;
}

for (const kind of ['maxxo', 'vboxx'] as const) {
  test(`${kind}: unmount refuses while a file is open for writing (naming the process); --force keeps what was written`, async (t) => {
    const h = makeHome();
    const mp = mountpoint(t);
    const env = { ...h.env, CLOUDMOUNT_PASSWORD: 'demo-password' };
    const m = await mountFg(t, kind, mp, env, ['-o', 'writeback_delay=600']);
    t.true(isMounted(mp), m.output());
    const dir = join(mp, ACCOUNTS[kind].dir);
    const name = `open-${kind}-${process.pid}.txt`;

    const w1 = openWriter(join(dir, name), 'part1', 'part2');
    t.teardown(() => w1.kill());
    await w1.ready();
    const busy = await cli(['unmount', '--wait', '1', mp], { env: h.env, timeoutMs: 60_000 });
    t.is(busy.code, 1, busy.stderr);
    t.regex(busy.stderr, /busy \(EBUSY\)/);
    t.regex(busy.stderr, new RegExp(`pid ${w1.pid} \\(node\\): .*${name} \\(open for writing\\)`));
    t.regex(busy.stderr, /cloudmount unmount --force/);
    t.true(isMounted(mp), 'still mounted');
    t.regex(await w1.finish(), /closed/, 'the writer went on undisturbed');

    const forcedName = `forced-${kind}-${process.pid}.txt`;
    const w2 = openWriter(join(dir, forcedName), 'kept so far', ' and more');
    t.teardown(() => w2.kill());
    await w2.ready();
    const forced = await cli(['unmount', '--force', mp], { env: h.env, timeoutMs: 60_000 });
    t.is(forced.code, 0, forced.stderr);
    t.regex(forced.stderr, new RegExp(`cut off: pid ${w2.pid} \\(node\\)`));
    t.regex(forced.stdout, /kept as written so far/);
    await m.exited;
    t.regex(await w2.finish(), /error E/, 'the writer\'s later call fails');
    t.false(isMounted(mp));
    t.deepEqual(registry(h), []);

    // the next mount of the account replays the journal; a clean unmount waits for the uploads
    const m2 = await mountFg(t, kind, mp, env);
    const um = await cli(['unmount', mp], { env: h.env, timeoutMs: 120_000 });
    t.is(um.code, 0, um.stderr + m2.output());
    await m2.exited;
    const remote = ACCOUNTS[kind].remote();
    t.teardown(() => remote.close());
    const base = ACCOUNTS[kind].dir ? `/${ACCOUNTS[kind].dir}` : '';
    const back = async (n: string) => { const f = join(h.dir, `back-${n}`); await remote.download(`${base}/${n}`, f); return readFileSync(f, 'utf8'); };
    t.is(await back(name), 'part1part2');
    t.is(await back(forcedName), 'kept so far', 'bytes written before the forced unmount are on the server');
  });
}

test('SIGTERM of a foreground mount with a file open for writing: detaches after the busy wait, what was written is uploaded', async (t) => {
  const h = makeHome();
  const mp = mountpoint(t);
  const env = { ...h.env, CLOUDMOUNT_PASSWORD: 'demo-password' };
  const m = await mountFg(t, 'maxxo', mp, env, ['-o', 'writeback_delay=600']);
  const name = `sigterm-${process.pid}.txt`;
  const w = openWriter(join(mp, name), 'written before stop', ' after');
  t.teardown(() => w.kill());
  await w.ready();
  m.child.kill('SIGTERM');
  t.is(await m.exited, 0, m.output());
  t.regex(m.output(), new RegExp(`is busy \\(pid ${w.pid} \\(node\\): .*${name} \\(open for writing\\)\\)`));
  t.regex(m.output(), new RegExp(`${name} was still open for writing: its content so far \\(19 bytes\\) is kept`));
  t.regex(await w.finish(), /error E/);
  t.false(isMounted(mp));
  const remote = createMaxxoRemote({ server: emu.url, user: 'demo@maxxo.test', password: 'demo-password' });
  t.teardown(() => remote.close());
  const f = join(h.dir, 'back-sigterm');
  await remote.download(`/${name}`, f);
  t.is(readFileSync(f, 'utf8'), 'written before stop');
});
