// `login --ca FILE` against an https server with a private CA: the CA is saved with the account,
// so later mounts (foreground and --daemon) and account commands trust it without --ca; a --ca
// given later takes its place; a saved CA that disappeared is a clear error.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator } from '../helpers/emulator.js';
import { makePki, tlsFront } from '../helpers/tls.js';
import type { Emulator } from '../../src/emulator/server.js';
import { run } from '../../src/util/run.js';
import { cli, cliSpawn, makeHome, isMounted, waitFor, readJson, type Home } from './helpers.js';

let emu: Emulator;
let front: Awaited<ReturnType<typeof tlsFront>> | undefined;
let url: string;
let pki: string;

test.before(async () => {
  emu = await startEmulator();
  pki = mkdtempSync(join(tmpdir(), 'cloudmount-cli-ca-'));
  makePki(pki, 'cloudmount cli test CA', { other: true });
  front = await tlsFront(emu.url, pki);
  url = front.url;
});
test.after.always(async () => {
  await front?.close();
  await emu?.close();
  if (pki) rmSync(pki, { recursive: true, force: true });
});

function home(t: { teardown(fn: () => void): void }): Home {
  const h = makeHome();
  t.teardown(() => rmSync(h.dir, { recursive: true, force: true }));
  return h;
}

function mountpoint(t: { teardown(fn: () => void): void }): string {
  const mp = mkdtempSync(join(tmpdir(), 'cloudmount-cli-ca-mnt-'));
  t.teardown(() => { if (isMounted(mp)) spawnSync('fusermount', ['-uz', mp]); rmSync(mp, { recursive: true, force: true }); });
  return mp;
}

const accountsFile = (h: Home) => join(h.env.XDG_CONFIG_HOME!, 'cloudmount', 'accounts.json');

test.serial('login --ca saves the CA: mounts (foreground and --daemon) and account commands trust it without --ca', async (t) => {
  t.timeout(150_000);
  const h = home(t);
  const pw = h.pwFile('demo-password');
  // Without the CA the login fails (TLS is verified) and nothing is saved.
  const refused = await cli(['login', 'box', '--kind', 'vboxx', '--server', url, '--username', 'demo', '--password-file', pw], { env: h.env, timeoutMs: 60_000 });
  t.is(refused.code, 1);
  t.regex(refused.stderr, /TLS|certificate/i);
  t.throws(() => statSync(accountsFile(h)));

  // A relative --ca, from the directory that holds it: saved as an absolute path.
  const login = await cli(['login', 'box', '--kind', 'vboxx', '--server', url, '--username', 'demo', '--password-file', pw, '--ca', 'ca.pem'], { env: h.env, cwd: pki, timeoutMs: 60_000 });
  t.is(login.code, 0, login.stderr);
  t.regex(login.stdout, new RegExp(`saved account box: .*trusting CA ${join(pki, 'ca.pem')}`));
  t.is(readJson(accountsFile(h)).accounts.box.ca, join(pki, 'ca.pem'));
  t.is(statSync(accountsFile(h)).mode & 0o777, 0o600);
  const list = await cli(['accounts'], { env: h.env });
  t.regex(list.stdout, new RegExp(`box\\s+vboxx\\s+${url.replace(/[.:/]/g, '\\$&')}\\s+demo\\s+saved\\s+\\S+\\s+${join(pki, 'ca.pem').replace(/[.:/]/g, '\\$&')}`), list.stdout);

  // Account command from another directory, no --ca.
  const info = await cli(['vboxx', 'info', '--account', 'box', '--json'], { env: h.env, cwd: h.dir, timeoutMs: 60_000 });
  t.is(info.code, 0, info.stderr);

  // Foreground mount, no --ca.
  const mp = mountpoint(t);
  const m = cliSpawn(['mount', 'box', mp], { env: h.env, cwd: h.dir });
  t.teardown(() => { try { m.child.kill('SIGKILL'); } catch { /* gone */ } });
  await waitFor(() => isMounted(mp) || m.child.exitCode !== null, 60_000, 'mount');
  t.true(isMounted(mp), m.output());
  const ls = await run('ls', [join(mp, 'Files')], { timeoutMs: 30_000 });
  t.regex(ls.stdout, /readme\.txt/, 'the drive works over https with the saved CA');
  m.child.kill('SIGINT');
  t.is(await m.exited, 130, m.output());
  t.false(isMounted(mp));

  // --daemon: the background process resolves the saved account (and its CA) itself.
  const d = await cli(['mount', 'box', mp, '--daemon'], { env: h.env, cwd: h.dir, timeoutMs: 90_000 });
  t.is(d.code, 0, d.stderr);
  const pid = Number(/pid (\d+)/.exec(d.stdout)?.[1]);
  t.teardown(() => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } });
  const cat = await run('cat', [join(mp, 'Files', 'readme.txt')], { timeoutMs: 30_000 });
  t.is(cat.code, 0, cat.stderr);
  const um = await cli(['unmount', mp], { env: h.env, timeoutMs: 60_000 });
  t.is(um.code, 0, um.stderr);
  t.false(isMounted(mp));
});

test.serial('a --ca given later replaces the saved one; a saved CA file that is gone is a clear error', async (t) => {
  t.timeout(120_000);
  const h = home(t);
  const own = mkdtempSync(join(tmpdir(), 'cloudmount-cli-ca-own-'));
  t.teardown(() => rmSync(own, { recursive: true, force: true }));
  writeFileSync(join(own, 'ca.pem'), readFileSync(join(pki, 'ca.pem')));
  const login = await cli(['login', 'mx', '--kind', 'maxxo', '--server', url, '--email', 'demo@maxxo.test', '--ca', join(own, 'ca.pem')],
    { env: { ...h.env, CLOUDMOUNT_PASSWORD: 'demo-password' }, timeoutMs: 60_000 });
  t.is(login.code, 0, login.stderr);
  const q = await cli(['maxxo', 'quota', '--account', 'mx', '--json'], { env: h.env, timeoutMs: 60_000 });
  t.is(q.code, 0, q.stderr);
  t.true(typeof JSON.parse(q.stdout).quota === 'number');

  // An explicit --ca wins over the saved one: the unrelated CA does not verify the server.
  const other = await cli(['maxxo', 'quota', '--account', 'mx', '--ca', join(pki, 'other.pem')], { env: h.env, timeoutMs: 60_000 });
  t.is(other.code, 1);
  t.regex(other.stderr, /TLS|certificate/i);
  const mp = mountpoint(t);
  const otherMount = await cli(['mount', 'mx', mp, '--ca', join(pki, 'other.pem')], { env: h.env, timeoutMs: 60_000 });
  t.is(otherMount.code, 1);
  t.regex(otherMount.stderr, /TLS|certificate/i);
  t.false(isMounted(mp));

  renameSync(join(own, 'ca.pem'), join(own, 'moved.pem'));
  const gone = await cli(['maxxo', 'quota', '--account', 'mx'], { env: h.env, timeoutMs: 60_000 });
  t.is(gone.code, 1);
  t.regex(gone.stderr, new RegExp(`cannot read the CA file ${join(own, 'ca.pem').replace(/[.:/]/g, '\\$&')} saved with account mx: ENOENT \\(give --ca FILE, or log in again with --ca\\)`));
  const goneMount = await cli(['mount', 'mx', mp], { env: h.env, timeoutMs: 60_000 });
  t.is(goneMount.code, 1);
  t.regex(goneMount.stderr, /cannot read the CA file .* saved with account mx/);
  t.false(isMounted(mp));
  // --ca on the command line still works while the saved path is gone.
  const given = await cli(['maxxo', 'quota', '--account', 'mx', '--ca', join(own, 'moved.pem')], { env: h.env, timeoutMs: 60_000 });
  t.is(given.code, 0, given.stderr);
});
