// Maxxo data plane: the real rsync daemon (right and wrong passwords, per-user modules, new users),
// agreement with the API, and restart persistence on the same --data directory.
import test from 'ava';
import { execFile } from 'node:child_process';
import { greets as greetsWithin } from '../../src/emulator/rsyncd.js';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator, maxxoToken, maxxoCall, createMaxxoAccount, MAXXO_FRIEND } from '../helpers/emulator.js';
import { demoBinary } from '../../src/emulator/maxxo/demo.js';
import type { Emulator } from '../../src/emulator/server.js';

function tmp(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `cm-maxxo-${prefix}-`));
}

interface RsyncResult { code: number; stdout: string; stderr: string }
/** Runs the real rsync client; the password only in RSYNC_PASSWORD, never in argv. */
function rsync(args: string[], password: string): Promise<RsyncResult> {
  return new Promise((resolve) => {
    execFile('rsync', args, { env: { ...process.env, RSYNC_PASSWORD: password }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

async function slice(url: string, token: string) {
  const r = await maxxoCall(url, 'GET', 'slice', { token });
  return r.body as { ip: string; login: string; rsync: string; rsync_port?: number; tracker: string };
}

const base = (s: { ip: string; login: string; rsync_port?: number }, login = s.login) =>
  `rsync://${login}@${s.ip}:${s.rsync_port ?? 873}`;

const greets = (host: string, port: number) => greetsWithin(host, port, 2000);

let em: Emulator;
let url: string;
let dataDir: string;

test.before(async () => {
  dataDir = tmp('data');
  em = await startEmulator({ dataDir });
  url = em.url;
});
test.after.always(async () => {
  await em?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

test('slice names the running rsync daemon; its port is not 873, so rsync_port is given', async (t) => {
  const s = await slice(url, await maxxoToken(url));
  t.is(s.ip, '127.0.0.1');
  t.is(s.rsync_port, em.ctx.rsync!.port);
  t.not(s.rsync_port, 873);
  t.true(await greets(s.ip, s.rsync_port!));
});

test('rsync with the right password: upload shows in ops/list at once, download is byte-exact', async (t) => {
  const token = await maxxoToken(url);
  const s = await slice(url, token);
  const local = tmp('up');
  t.teardown(() => rmSync(local, { recursive: true, force: true }));
  mkdirSync(join(local, 'tree/sub'), { recursive: true });
  writeFileSync(join(local, 'tree/hello.txt'), 'hello over rsync');
  writeFileSync(join(local, 'tree/sub/ünïcode name.bin'), Buffer.alloc(70000, 7));
  const up = await rsync(['-r', `${local}/tree/`, `${base(s)}/${s.login}/Uploaded/`], s.rsync);
  t.is(up.code, 0, up.stderr);
  const ls = await maxxoCall(url, 'GET', 'ops/list', { token, query: { path: 'Uploaded' } });
  t.deepEqual(ls.body, [
    { file: 'Uploaded/hello.txt', size: 16, type: 'f' },
    { file: 'Uploaded/sub', size: 4096, type: 'd' },
  ]);
  const fsz = await maxxoCall(url, 'POST', 'ops/filesize', { token, form: { 'files[]': 'Uploaded/sub/ünïcode name.bin' } });
  t.is(fsz.body[0].size, 70000);
  // Download the demo's 10 MiB binary and a name with spaces and non-ASCII letters.
  const down = await rsync([`${base(s)}/${s.login}/Large Files/random-10MiB.bin`, `${base(s)}/${s.login}/Documents/Café Menü.txt`, `${local}/`], s.rsync);
  t.is(down.code, 0, down.stderr);
  t.true(readFileSync(join(local, 'random-10MiB.bin')).equals(demoBinary()));
  t.is(readFileSync(join(local, 'Café Menü.txt'), 'utf8'), 'Crème brûlée, Käsekuchen, Smørrebrød.\n');
  // Writes through rsync count in the quota.
  const q = await maxxoCall(url, 'GET', 'account/quota', { token });
  t.true(q.body.normal >= 10 * 1024 * 1024 + 70016);
  // And API changes are what rsync sees.
  await maxxoCall(url, 'POST', 'ops/move', { token, form: { source: 'Uploaded/hello.txt', destination: 'Uploaded/renamed.txt' } });
  const again = await rsync([`${base(s)}/${s.login}/Uploaded/renamed.txt`, `${local}/renamed.txt`], s.rsync);
  t.is(again.code, 0, again.stderr);
  t.is(readFileSync(join(local, 'renamed.txt'), 'utf8'), 'hello over rsync');
});

test('rsync with a wrong password, or another user\'s module, fails and writes nothing', async (t) => {
  const token = await maxxoToken(url);
  const s = await slice(url, token);
  const friend = await slice(url, await maxxoToken(url, MAXXO_FRIEND.email, MAXXO_FRIEND.password));
  const local = tmp('bad');
  t.teardown(() => rmSync(local, { recursive: true, force: true }));
  writeFileSync(join(local, 'x.txt'), 'x');
  const wrong = await rsync([join(local, 'x.txt'), `${base(s)}/${s.login}/wrong-pass.txt`], 'not-the-password');
  t.not(wrong.code, 0);
  t.regex(wrong.stderr, /auth failed/i);
  // Own credentials, friend's module.
  const cross = await rsync([join(local, 'x.txt'), `${base(s)}/${friend.login}/intruder.txt`], s.rsync);
  t.not(cross.code, 0);
  // Friend's login with demo's password.
  const mixed = await rsync([join(local, 'x.txt'), `${base(s, friend.login)}/${friend.login}/intruder.txt`], s.rsync);
  t.not(mixed.code, 0);
  // Reading is refused as well.
  const read = await rsync([`${base(s, friend.login)}/${friend.login}/Hello from Friend.txt`, local + '/'], 'guess');
  t.not(read.code, 0);
  t.false(existsSync(join(local, 'Hello from Friend.txt')));
  const lsDemo = await maxxoCall(url, 'POST', 'ops/filesize', { token, form: { 'files[]': 'wrong-pass.txt' } });
  t.is(lsDemo.body[0].size, -1);
  const friendToken = await maxxoToken(url, MAXXO_FRIEND.email, MAXXO_FRIEND.password);
  const lsFriend = await maxxoCall(url, 'POST', 'ops/filesize', { token: friendToken, form: { 'files[]': 'intruder.txt' } });
  t.is(lsFriend.body[0].size, -1);
  // The module list is not advertised.
  const list = await rsync([`rsync://${s.ip}:${s.rsync_port}/`], '');
  t.false(/demo|friend/.test(list.stdout), list.stdout);
});

test('a user created while running gets an rsync module at once', async (t) => {
  const email = `late-${process.pid}@maxxo.test`;
  const acct = await createMaxxoAccount(url, { email, password: 'late-password' });
  const token = await maxxoToken(url, email, 'late-password');
  const s = await slice(url, token);
  t.is(s.login, acct.login);
  const local = tmp('late');
  t.teardown(() => rmSync(local, { recursive: true, force: true }));
  writeFileSync(join(local, 'first.txt'), 'first file');
  const r = await rsync([join(local, 'first.txt'), `${base(s)}/${s.login}/first.txt`], s.rsync);
  t.is(r.code, 0, r.stderr);
  const ls = await maxxoCall(url, 'GET', 'ops/list', { token, query: { path: '' } });
  t.deepEqual(ls.body, [{ file: 'first.txt', size: 10, type: 'f' }]);
});

test('rsync daemon files: secrets 0600, the config carries no password', (t) => {
  const dir = join(dataDir, 'maxxo-rsyncd');
  t.is(statSync(join(dir, 'rsyncd.secrets')).mode & 0o777, 0o600);
  t.is(statSync(join(dir, 'rsyncd.conf')).mode & 0o077, 0);
  const conf = readFileSync(join(dir, 'rsyncd.conf'), 'utf8');
  const secrets = readFileSync(join(dir, 'rsyncd.secrets'), 'utf8');
  for (const line of secrets.trim().split('\n')) {
    const pw = line.split(':')[1]!;
    t.true(pw.length >= 32);
    t.false(conf.includes(pw));
  }
  t.regex(conf, /munge symlinks = true/);
  t.regex(conf, /use chroot = false/);
  t.regex(conf, /\[demo\]\n\s+path = .*\/maxxo\/demo\n\s+auth users = demo\n/);
});

test('restart on the same data dir keeps users, tokens, passwords, contacts, inbox and files; the daemon stops with the server', async (t) => {
  const dir = tmp('restart');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let a = await startEmulator({ dataDir: dir });
  const email = 'keeper@maxxo.test';
  await createMaxxoAccount(a.url, { email, password: 'keeper-password', fullname: 'Keeper' });
  const token = await maxxoToken(a.url, email, 'keeper-password');
  const demoToken = await maxxoToken(a.url);
  const s1 = await slice(a.url, token);
  const local = tmp('restart-up');
  t.teardown(() => rmSync(local, { recursive: true, force: true }));
  writeFileSync(join(local, 'kept.txt'), 'kept across restarts');
  t.is((await rsync([join(local, 'kept.txt'), `${base(s1)}/${s1.login}/kept.txt`], s1.rsync)).code, 0);
  await maxxoCall(a.url, 'POST', 'contacts/add', { token, form: { 'email[]': 'demo@maxxo.test' } });
  await maxxoCall(a.url, 'POST', 'ops/send', { token, form: { source: '[{"path":"kept.txt"}]', to: 'demo@maxxo.test' } });
  await maxxoCall(a.url, 'POST', 'settings/update', { token, form: { accept_all: '1', fullname: 'Keeper Renamed' } });
  const rsyncPort = a.ctx.rsync!.port;
  await a.close();
  t.false(await greets('127.0.0.1', rsyncPort), 'rsync daemon stopped with the server');

  a = await startEmulator({ dataDir: dir });
  t.teardown(() => a.close());
  t.is((await maxxoCall(a.url, 'GET', 'account/quota', { token })).status, 200, 'old token still valid');
  t.is((await maxxoCall(a.url, 'GET', 'account/quota', { token: demoToken })).status, 200);
  t.like((await maxxoCall(a.url, 'GET', 'settings/list', { token })).body, { fullname: 'Keeper Renamed', accept_all: true });
  t.deepEqual((await maxxoCall(a.url, 'GET', 'ops/list', { token, query: { path: '' } })).body,
    [{ file: 'kept.txt', size: 20, type: 'f' }]);
  t.deepEqual((await maxxoCall(a.url, 'GET', 'contacts/list', { token })).body.map((c: { email: string }) => c.email), ['demo@maxxo.test']);
  const inbox = (await maxxoCall(a.url, 'GET', 'inbox/list', { token: demoToken })).body;
  t.true(inbox.some((m: { destination: string; sender_email: string }) => m.destination === 'kept.txt' && m.sender_email === email));
  const notes = (await maxxoCall(a.url, 'GET', 'notifications/list', { token: demoToken })).body;
  t.true(notes.some((n: { email: string }) => n.email === email));
  t.regex(await maxxoToken(a.url, email, 'keeper-password'), /^[A-Za-z0-9]{64}$/);
  const s2 = await slice(a.url, token);
  t.is(s2.rsync, s1.rsync, 'Cloudstore password kept');
  t.is(s2.login, s1.login);
  const down = await rsync([`${base(s2)}/${s2.login}/kept.txt`, join(local, 'back.txt')], s2.rsync);
  t.is(down.code, 0, down.stderr);
  t.is(readFileSync(join(local, 'back.txt'), 'utf8'), 'kept across restarts');
  // Demo data is ensured, not duplicated: still exactly the two demo users' files.
  const top = (await maxxoCall(a.url, 'GET', 'ops/list', { token: demoToken, query: { path: '' } })).body;
  t.deepEqual(top.map((e: { file: string }) => e.file), ['Documents', 'Empty Folder', 'Large Files', 'Photos', 'Welcome to Maxxo.txt']);
});

test('demo: a changed demo password is reset, a deleted demo file comes back on the next start', async (t) => {
  const dir = tmp('demo');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let a = await startEmulator({ dataDir: dir, rsync: false });
  const token = await maxxoToken(a.url);
  await maxxoCall(a.url, 'POST', 'settings/update', { token, form: { current_password: 'demo-password', new_password: 'changed-password' } });
  await maxxoCall(a.url, 'POST', 'ops/delete', { token, form: { 'file[]': 'Welcome to Maxxo.txt' } });
  t.is((await maxxoCall(a.url, 'GET', 'auth/token', { query: { email: 'demo@maxxo.test', password: 'demo-password' } })).status, 403);
  await a.close();
  a = await startEmulator({ dataDir: dir, rsync: false });
  t.teardown(() => a.close());
  t.regex(await maxxoToken(a.url), /^[A-Za-z0-9]{64}$/);
  const fs = await maxxoCall(a.url, 'POST', 'ops/filesize', { token, form: { 'files[]': 'Welcome to Maxxo.txt' } });
  t.true(fs.body[0].size > 0);
});
