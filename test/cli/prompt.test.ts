// The hidden password prompt, on a real pseudo-terminal: what is typed is not echoed, the login
// works, and the password never shows up in a process's argv or environment, on the terminal, in
// a log, or in any file but the 0600 accounts file (and not even there with --no-save-password).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startEmulator, createMaxxoAccount } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import { run } from '../../src/util/run.js';
import { createMaxxoRemote } from '../../src/remote/maxxo/index.js';
import { cli, makeHome, isMounted, waitFor, readJson, type Home } from './helpers.js';
import { ptyCli, ptyRun, hasScript, cmdline, envLeak, descendants, alive, type Pty } from './pty.js';

let emu: Emulator;
test.before(async () => { emu = await startEmulator(); });
test.after.always(async () => { await emu?.close(); });

/** A fresh account whose password is unique, so any trace of it anywhere is a leak. */
async function freshAccount(): Promise<{ email: string; password: string }> {
  const tag = randomBytes(6).toString('hex');
  const a = { email: `prompt-${tag}@maxxo.test`, password: `pw-${randomBytes(9).toString('hex')}` };
  await createMaxxoAccount(emu.url, { ...a, quota: 100 * 1024 * 1024 });
  return a;
}

function home(t: { teardown(fn: () => void): void }): Home {
  const h = makeHome();
  t.teardown(() => rmSync(h.dir, { recursive: true, force: true }));
  return h;
}

function session(t: { teardown(fn: () => void): void }, args: string[], h: Home): Pty {
  const p = ptyCli(args, { env: h.env });
  t.teardown(() => p.kill());
  return p;
}

function mountpoint(t: { teardown(fn: () => void): void }): string {
  const mp = mkdtempSync(join(tmpdir(), 'cloudmount-prompt-mnt-'));
  t.teardown(() => { if (isMounted(mp)) spawnSync('fusermount', ['-uz', mp]); rmSync(mp, { recursive: true, force: true }); });
  return mp;
}

/** Every regular file under dir holding needle (dir never contains a mountpoint). */
function filesContaining(dir: string, needle: string): string[] {
  const hits: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && readFileSync(p).includes(needle)) hits.push(p);
    }
  };
  walk(dir);
  return hits;
}

/** Leaks of the password into argv or the environment of pid and everything under it. */
function processLeaks(pid: number, password: string): string[] {
  return [pid, ...descendants(pid)].flatMap((p) => [
    ...(cmdline(p).includes(password) ? [`argv of ${p}: ${cmdline(p)}`] : []),
    ...(envLeak(p, password) ? [`environment of ${p}`] : []),
  ]);
}

test.before(() => { if (!hasScript) throw new Error('util-linux `script` is needed for the terminal tests'); });

test('the terminal harness echoes typed text when a program leaves echo on (control)', async (t) => {
  const h = home(t);
  const p = ptyRun(['/bin/sh', '-c', 'printf "say: "; read x; echo "read=$x"'], { env: h.env });
  t.teardown(() => p.kill());
  await p.waitFor(/say: /);
  p.type('visible-control-text\r');
  t.is(await p.exited, 0);
  // Once from the echo, once from the program's own line: a missing echo below is the CLI's doing.
  t.regex(p.output(), /say: visible-control-text\r?\n/);
  t.regex(p.output(), /read=visible-control-text/);
});

test('login on a terminal: the password prompt does not echo, the login is saved in a 0600 file', async (t) => {
  const a = await freshAccount();
  const h = home(t);
  const p = session(t, ['login', 'work', '--kind', 'maxxo', '--server', emu.url, '--email', a.email], h);
  await p.waitFor(/Password for maxxo .* at .*: /);
  const pid = p.cliPid();
  t.truthy(pid, 'the CLI runs under the terminal');
  t.deepEqual(processLeaks(pid!, a.password), []);
  p.type(`${a.password}\r`);
  t.is(await p.exited, 0, p.output());
  t.regex(p.output(), /saved account work: maxxo/);
  t.false(p.output().includes(a.password), `typed password echoed: ${JSON.stringify(p.output())}`);

  const dir = join(h.env.XDG_CONFIG_HOME!, 'cloudmount');
  const file = join(dir, 'accounts.json');
  t.is(statSync(dir).mode & 0o777, 0o700);
  t.is(statSync(file).mode & 0o777, 0o600);
  // Saved on purpose (the default), but only there.
  t.is(readJson(file).accounts.work.password, a.password);
  t.deepEqual(filesContaining(h.dir, a.password), [file]);

  // The saved login works without a prompt (stdin is no terminal here).
  const q = await cli(['maxxo', 'quota', '--account', 'work', '--json'], { env: h.env });
  t.is(q.code, 0, q.stderr);
});

test('login --no-save-password on a terminal; a wrong password or Ctrl-C at the prompt saves nothing', async (t) => {
  const a = await freshAccount();
  const h = home(t);
  const wrong = session(t, ['login', 'w', '--kind', 'maxxo', '--server', emu.url, '--email', a.email], h);
  await wrong.waitFor(/Password for /);
  wrong.type('not-the-password\r');
  t.is(await wrong.exited, 1);
  t.regex(wrong.output(), /login failed for maxxo .*AUTH_FAILED/);
  t.false(wrong.output().includes('not-the-password'));

  const cancel = session(t, ['login', 'w', '--kind', 'maxxo', '--server', emu.url, '--email', a.email], h);
  await cancel.waitFor(/Password for /);
  cancel.type('half');
  cancel.type('\x03');
  t.is(await cancel.exited, 2);
  t.regex(cancel.output(), /cancelled/);
  t.deepEqual(readdirSync(h.env.XDG_CONFIG_HOME!).filter((n) => n === 'cloudmount').flatMap((d) => readdirSync(join(h.env.XDG_CONFIG_HOME!, d))), [], 'nothing saved');

  const ok = session(t, ['login', 'w', '--kind', 'maxxo', '--server', emu.url, '--email', a.email, '--no-save-password'], h);
  await ok.waitFor(/Password for /);
  ok.type(`${a.password}\r`);
  t.is(await ok.exited, 0, ok.output());
  t.regex(ok.output(), /saved account w: .*\(password not saved\)/);
  t.false(ok.output().includes(a.password));
  const file = join(h.env.XDG_CONFIG_HOME!, 'cloudmount', 'accounts.json');
  t.is(statSync(file).mode & 0o777, 0o600);
  t.is(readJson(file).accounts.w.password, undefined);
  t.deepEqual(filesContaining(h.dir, a.password), []);
});

test('mount of a saved account without its password: prompted on the terminal, never in argv, environment, logs or files; Ctrl-C unmounts', async (t) => {
  const a = await freshAccount();
  const h = home(t);
  const login = await cli(['login', 'nopw', '--kind', 'maxxo', '--server', emu.url, '--email', a.email, '--no-save-password'],
    { env: { ...h.env, CLOUDMOUNT_PASSWORD: a.password } });
  t.is(login.code, 0, login.stderr);
  const mp = mountpoint(t);
  // -vvv: even trace logging must not show it.
  const p = session(t, ['mount', 'nopw', mp, '-vvv'], h);
  await p.waitFor(/Password for maxxo /);
  p.type(`${a.password}\r`);
  await p.waitFor(/mounted maxxo .* at /, 90_000);
  t.true(isMounted(mp));
  const w = await run('sh', ['-c', 'printf typed > "$1/t.txt" && cat "$1/t.txt"', 'sh', mp], { timeoutMs: 30_000 });
  t.is(w.stdout, 'typed', w.stderr);
  const pid = p.cliPid()!;
  t.truthy(pid);
  t.deepEqual(processLeaks(pid, a.password), [], 'no process under the mount has it in argv or environment');
  t.deepEqual(filesContaining(h.dir, a.password), [], 'no file (registry, cache, journal, log) has it');

  p.type('\x03');
  t.is(await p.exited, 130, p.output()); // Ctrl-C: 130 once cleanly unmounted
  t.false(isMounted(mp));
  t.false(alive(pid));
  t.false(p.output().includes(a.password), 'not on the terminal, not in the trace log');
  t.deepEqual(filesContaining(h.dir, a.password), []);
});

test('mount --daemon with the password typed at the prompt: the background process gets it through a pipe only', async (t) => {
  const a = await freshAccount();
  const h = home(t);
  const mp = mountpoint(t);
  const p = session(t, ['mount', 'maxxo', mp, '--server', emu.url, '--email', a.email, '--daemon', '-vv'], h);
  await p.waitFor(/Password for maxxo /);
  p.type(`${a.password}\r`);
  const code = await p.exited;
  t.is(code, 0, `exit ${code}: ${JSON.stringify(p.output())}`);
  t.regex(p.output(), /mounted .* in the background \(pid \d+, log [^)]+\)/);
  // From the registry, not the terminal: the daemon's own record.
  const st = await cli(['status', '--json'], { env: h.env });
  const rec = JSON.parse(st.stdout).mounts.find((r: { mountpoint: string }) => r.mountpoint === mp);
  t.truthy(rec, st.stdout);
  const daemon: number = rec.pid;
  const logDir = join(h.env.XDG_CACHE_HOME!, 'cloudmount', 'log');
  t.teardown(() => { try { process.kill(daemon, 'SIGKILL'); } catch { /* gone */ } });
  t.true(isMounted(mp));
  t.false(p.output().includes(a.password));
  t.deepEqual(processLeaks(daemon, a.password), []);
  const ls = await run('ls', [mp], { timeoutMs: 30_000 });
  t.is(ls.code, 0, ls.stderr);
  const um = await cli(['unmount', mp], { env: h.env, timeoutMs: 60_000 });
  t.is(um.code, 0, um.stderr);
  await waitFor(() => !alive(daemon), 30_000, 'daemon exit');
  t.false(isMounted(mp));
  // The daemon's log (written at -vv) and everything else under the home: no password.
  const logs = readdirSync(logDir);
  t.true(logs.length > 0 && logs.every((f) => readFileSync(join(logDir, f), 'utf8').length > 0), 'the daemon wrote a log');
  t.deepEqual(filesContaining(h.dir, a.password), []);
});

test('a foreground mount whose terminal closes (SIGHUP, output now fails) uploads what is pending and unmounts', async (t) => {
  const a = await freshAccount();
  const h = home(t);
  const mp = mountpoint(t);
  const p = session(t, ['mount', 'maxxo', mp, '--server', emu.url, '--email', a.email, '-o', 'writeback_delay=30', '-v'], h);
  await p.waitFor(/Password for maxxo /);
  p.type(`${a.password}\r`);
  await p.waitFor(/mounted maxxo .* at /, 90_000);
  const pid = p.cliPid()!;
  t.truthy(pid);
  // Still pending when the terminal goes (30 s write-back delay): only the hangup's flush sends it.
  const w = await run('sh', ['-c', 'printf hangup > "$1/hup.txt"', 'sh', mp], { timeoutMs: 30_000 });
  t.is(w.code, 0, w.stderr);
  p.child.kill('SIGKILL');
  await waitFor(() => !alive(pid), 90_000, 'the mount process to end after the hangup');
  t.false(isMounted(mp));
  const server = createMaxxoRemote({ server: emu.url, user: a.email, password: a.password });
  try {
    const { entries } = await server.list('/');
    t.true(entries.some((e) => e.name === 'hup.txt' && e.size === 6), 'the pending upload reached the server');
  } finally {
    await server.close();
  }
  const reg = join(h.env.XDG_RUNTIME_DIR!, 'cloudmount');
  t.deepEqual(readdirSync(reg).filter((n) => n.endsWith('.json')), [], 'registry is empty');
});
