// login / logout / accounts against the reference servers: verified before saving, 0600 file in a
// 0700 dir, passwords never in output, argv-free password sources, -vv logs free of the password.
import test from 'ava';
import { statSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEmulator } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import { cli, makeHome, readJson } from './helpers.js';

let emu: Emulator;
test.before(async () => { emu = await startEmulator({ rsync: false }); });
test.after.always(async () => { await emu?.close(); });

const acctFile = (h: { env: NodeJS.ProcessEnv }) => join(h.env.XDG_CONFIG_HOME!, 'cloudmount', 'accounts.json');

test('login saves a verified account in a 0600 file; accounts lists it without the password', async (t) => {
  const h = makeHome();
  const r = await cli(['login', 'work', '--kind', 'maxxo', '--server', emu.url, '--email', 'demo@maxxo.test', '--password-file', h.pwFile('demo-password')], { env: h.env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /saved account work: maxxo demo@maxxo.test/);
  const f = acctFile(h);
  t.is(statSync(f).mode & 0o777, 0o600);
  t.is(statSync(join(h.env.XDG_CONFIG_HOME!, 'cloudmount')).mode & 0o777, 0o700);
  const saved = readJson(f).accounts.work;
  t.like(saved, { kind: 'maxxo', server: emu.url, user: 'demo@maxxo.test', password: 'demo-password' });

  const v = await cli(['login', 'box', '--kind', 'vboxx', '--server', emu.url, '--username', 'demo', '--root', 'Files'], { env: { ...h.env, CLOUDMOUNT_PASSWORD: 'demo-password' } });
  t.is(v.code, 0, v.stderr);

  const list = await cli(['accounts'], { env: h.env });
  t.is(list.code, 0);
  t.regex(list.stdout, /work\s+maxxo\s+\S+\s+demo@maxxo.test\s+saved/);
  t.regex(list.stdout, /box\s+vboxx\s+\S+\s+demo\s+saved\s+Files/);
  t.false(list.stdout.includes('demo-password'));
  const json = await cli(['accounts', '--json'], { env: h.env });
  t.is(json.code, 0);
  t.false(json.stdout.includes('demo-password'));
  t.deepEqual(JSON.parse(json.stdout).accounts.map((a: any) => a.name), ['box', 'work']);

  // A saved account is enough for the account commands.
  const q = await cli(['maxxo', 'quota', '--account', 'work', '--json'], { env: h.env });
  t.is(q.code, 0, q.stderr);
  t.true(typeof JSON.parse(q.stdout).quota === 'number');
  // The only saved vboxx account is the default for vboxx commands.
  const i = await cli(['vboxx', 'info'], { env: h.env });
  t.is(i.code, 0, i.stderr);
  t.regex(i.stdout, /Files/);
});

test('login with a wrong password is a clear error and saves nothing', async (t) => {
  const h = makeHome();
  const r = await cli(['login', 'bad', '--kind', 'maxxo', '--server', emu.url, '--email', 'demo@maxxo.test', '--password-file', h.pwFile('wrong')], { env: h.env });
  t.is(r.code, 1);
  t.regex(r.stderr, /login failed for maxxo demo@maxxo.test.*wrong e-mail or password \(AUTH_FAILED\)/);
  t.is(r.stderr.trim().split('\n').length, 1, 'one line');
  t.false(existsSync(acctFile(h)));
  const v = await cli(['login', 'bad', '--kind', 'vboxx', '--server', emu.url, '--username', 'demo'], { env: { ...h.env, CLOUDMOUNT_PASSWORD: 'nope' } });
  t.is(v.code, 1);
  t.regex(v.stderr, /login failed/);
  t.false(existsSync(acctFile(h)));
  const down = await cli(['login', 'bad', '--kind', 'vboxx', '--server', 'http://127.0.0.1:9', '--username', 'demo'], { env: { ...h.env, CLOUDMOUNT_PASSWORD: 'x' } });
  t.is(down.code, 1);
  t.false(existsSync(acctFile(h)));
});

test('login usage errors exit 2', async (t) => {
  const h = makeHome();
  const env = { ...h.env, CLOUDMOUNT_PASSWORD: 'demo-password' };
  t.is((await cli(['login', 'x', '--server', emu.url, '--email', 'demo@maxxo.test'], { env })).code, 2, 'no --kind');
  t.is((await cli(['login', 'x', '--kind', 'maxxo', '--server', emu.url, '--username', 'demo'], { env })).code, 2, 'username for maxxo');
  t.is((await cli(['login', 'bad/name', '--kind', 'maxxo', '--server', emu.url, '--email', 'demo@maxxo.test'], { env })).code, 2, 'bad name');
  t.is((await cli(['login', 'maxxo', '--kind', 'maxxo', '--server', emu.url, '--email', 'demo@maxxo.test'], { env })).code, 2, 'reserved name');
  const nopw = await cli(['login', 'x', '--kind', 'maxxo', '--server', emu.url, '--email', 'demo@maxxo.test'], { env: h.env });
  t.is(nopw.code, 2, 'no password source without a terminal');
  t.regex(nopw.stderr, /no password/);
  t.false(existsSync(acctFile(h)));
});

test('--no-save-password keeps the password out of the file', async (t) => {
  const h = makeHome();
  const r = await cli(['login', 'np', '--kind', 'vboxx', '--server', emu.url, '--username', 'demo', '--no-save-password', '--password-file', h.pwFile('demo-password')], { env: h.env });
  t.is(r.code, 0, r.stderr);
  t.false(readFileSync(acctFile(h), 'utf8').includes('demo-password'));
  t.is(readJson(acctFile(h)).accounts.np.password, undefined);
  const without = await cli(['vboxx', 'info', '--account', 'np'], { env: h.env });
  t.is(without.code, 2);
  t.regex(without.stderr, /no password/);
  const withEnv = await cli(['vboxx', 'info', '--account', 'np'], { env: { ...h.env, CLOUDMOUNT_PASSWORD: 'demo-password' } });
  t.is(withEnv.code, 0, withEnv.stderr);
});

test('logout removes an account; unknown names fail', async (t) => {
  const h = makeHome();
  t.is((await cli(['login', 'a', '--kind', 'vboxx', '--server', emu.url, '--username', 'demo', '--password-file', h.pwFile('demo-password')], { env: h.env })).code, 0);
  const r = await cli(['logout', 'a'], { env: h.env });
  t.is(r.code, 0);
  t.deepEqual(readJson(acctFile(h)).accounts, {});
  const again = await cli(['logout', 'a'], { env: h.env });
  t.is(again.code, 1);
  t.regex(again.stderr, /no saved account 'a'/);
  const use = await cli(['vboxx', 'info', '--account', 'a'], { env: h.env });
  t.is(use.code, 2);
  t.regex(use.stderr, /no saved account 'a'/);
});

test('a password file readable by others gets a warning; a missing one a clear error', async (t) => {
  const h = makeHome();
  const r = await cli(['vboxx', 'info', '--server', emu.url, '--username', 'demo', '--password-file', h.pwFile('demo-password', 0o644)], { env: h.env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /readable by others.*chmod 600/);
  const missing = await cli(['vboxx', 'info', '--server', emu.url, '--username', 'demo', '--password-file', join(h.dir, 'nope')], { env: h.env });
  t.is(missing.code, 2);
  t.regex(missing.stderr, /cannot read password file .*ENOENT/);
});

test('the password never appears in -vv logs or output', async (t) => {
  const h = makeHome();
  // A password nobody else uses, so any occurrence is a leak: set it on a fresh vBoxx person.
  const secret = `S3cret-${Math.random().toString(36).slice(2)}-pw`;
  const admin = { ...h.env, CLOUDMOUNT_PASSWORD: 'admin-password' };
  const mk = await cli(['vboxx', 'admin', 'person', 'create', '--server', emu.url, '--username', 'admin', '--json', '-vv',
    '--new-password-file', h.pwFile(secret), 'company_id=2', 'first_name=Leak', 'last_name=Test', 'email=leak@vboxx.test', 'username=leaktest'], { env: admin });
  t.is(mk.code, 0, mk.stderr);
  t.false((mk.stdout + mk.stderr).includes(secret));
  const pw = h.pwFile(secret);
  const runs = [
    await cli(['login', 'leak', '--kind', 'vboxx', '--server', emu.url, '--username', 'leaktest', '--password-file', pw, '-vv'], { env: h.env }),
    await cli(['vboxx', 'info', '--account', 'leak', '-vvv'], { env: h.env }),
    await cli(['vboxx', 'info', '--server', emu.url, '--username', 'leaktest', '-vvv'], { env: { ...h.env, CLOUDMOUNT_PASSWORD: secret } }),
    await cli(['accounts', '--json', '-vv'], { env: h.env }),
  ];
  for (const r of runs) {
    t.is(r.code, 0, r.stderr);
    t.false(r.stdout.includes(secret), 'stdout');
    t.false(r.stderr.includes(secret), 'stderr');
  }
  t.regex(runs[1]!.stderr, /DEBUG|TRACE/, '-vvv does log');
  // Maxxo sends the password in the login query: its -vv log must still not show it.
  const mpw = `Mx-${Math.random().toString(36).slice(2)}-pw`;
  const ch = await cli(['maxxo', 'settings', 'set', '--server', emu.url, '--email', 'friend@maxxo.test', '--new-password-file', h.pwFile(mpw), '-vv'], { env: { ...h.env, CLOUDMOUNT_PASSWORD: 'friend-password' } });
  t.is(ch.code, 0, ch.stderr);
  const q = await cli(['maxxo', 'quota', '--server', emu.url, '--email', 'friend@maxxo.test', '--password-file', h.pwFile(mpw), '-vvv'], { env: h.env });
  t.is(q.code, 0, q.stderr);
  t.false((q.stdout + q.stderr + ch.stdout + ch.stderr).includes(mpw));
  writeFileSync(join(h.dir, 'done'), '');
});
