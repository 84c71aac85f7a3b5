// vBoxx reference server: auth, sessions, account info, error format, robustness, restart persistence.
import test from 'ava';
import { mkdtempSync, rmSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { startEmulator } from '../helpers/emulator.js';
import { until } from '../support/wait.js';
import { createEmulator, type Emulator } from '../../src/emulator/server.js';
import { Api, raw, login, DEMO_FILES_ROOT, DEMO_TEAM_ROOT } from './vboxx-lib.js';

let emu: Emulator;
let demo: Api;
test.before(async () => {
  emu = await startEmulator({ rsync: false });
  demo = new Api(emu.url, await login(emu.url, 'demo', 'demo-password'));
});
test.after.always(async () => { await emu?.close(); });

test('auth: POST form, POST query and GET all answer a 128-character token', async (t) => {
  const a = await raw(emu.url, 'POST', '/1/auth', {
    headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'username=demo&password=demo-password' });
  t.is(a.status, 200);
  t.true(a.json.success);
  t.regex(a.json.session_token, /^[A-Za-z0-9]{128}$/);
  t.deepEqual(Object.keys(a.json).sort(), ['session_token', 'success']);
  const b = await raw(emu.url, 'POST', '/1/auth?username=demo&password=demo-password');
  t.is(b.status, 200);
  const c = await raw(emu.url, 'GET', '/1/auth/?username=admin&password=admin-password');
  t.is(c.status, 200);
  t.not(a.json.session_token, b.json.session_token);
  // Each token works on its own.
  for (const tok of [a.json.session_token, b.json.session_token]) {
    t.is((await raw(emu.url, 'GET', `/1/account/info?session_token=${tok}`)).status, 200);
  }
});

// serial: the file's other tests log in too, and a login of theirs counted here made the count
// pass 8 without ever equalling it (seen once in a CI-recipe run)
test.serial('auth: a login hashes off the event loop: a request sent while 8 logins are hashed is answered before the last of them', async (t) => {
  // With a synchronous scrypt each login held every other request for its whole hash (~60 ms).
  const key = 'POST /1/auth';
  const before = emu.ctx.stats.get(key) ?? 0;
  const done: string[] = [];
  const logins = Array.from({ length: 8 }, () => raw(emu.url, 'POST', '/1/auth?username=demo&password=demo-password')
    .then((r) => { t.is(r.status, 200); done.push('login'); }));
  await until(() => (emu.ctx.stats.get(key) ?? 0) - before === 8, 'the 8 logins reached the server', 10_000, 1);
  const info = await raw(emu.url, 'GET', `/1/account/info?session_token=${demo.token}`);
  done.push('info');
  t.is(info.status, 200);
  await Promise.all(logins);
  t.true(done.indexOf('info') < done.length - 1, done.join(' '));
});

test('auth: login by email works too', async (t) => {
  t.truthy(await login(emu.url, 'demo@vboxx.test', 'demo-password'));
});

test('auth: missing fields and wrong password give the exact messages', async (t) => {
  for (const body of ['', 'username=demo', 'password=demo-password', 'username=&password=']) {
    const r = await raw(emu.url, 'POST', '/1/auth', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    t.is(r.status, 400, body);
    t.deepEqual(r.json, { message: 'You must provide a username and password', success: false });
  }
  for (const q of ['username=demo&password=wrong', 'username=nobody&password=demo-password', 'username=admin&password=demo-password']) {
    const r = await raw(emu.url, 'POST', `/1/auth?${q}`);
    t.is(r.status, 401, q);
    t.deepEqual(r.json, { message: 'Invalid username or password', success: false });
  }
});

test('session: missing or invalid session_token is 401 in the error format', async (t) => {
  for (const path of ['/1/account/info/', '/1/metadata/2/', '/1/files/2/readme.txt', '/1/management/person/',
    '/1/fileops/create_folder', '/1/shares/create_link/2/readme.txt']) {
    const r = await raw(emu.url, path.includes('fileops') ? 'POST' : 'GET', path);
    t.is(r.status, 401, path);
    t.is(r.json.status_code, 401);
    t.is(r.json.code, 'error');
    t.is(typeof r.json.message, 'string');
    const bad = await raw(emu.url, 'GET', `${path}?session_token=${'x'.repeat(128)}`);
    t.is(bad.status, 401, path);
    t.regex(bad.json.message, /invalid/);
  }
  const put = await raw(emu.url, 'PUT', '/1/files_put/2/x.txt', { body: 'x' });
  t.is(put.status, 401);
});

test('account info: the shape of the text, with and without trailing slash; usage computed from files', async (t) => {
  const a = await demo.get('/1/account/info/');
  const b = await demo.get('/1/account/info');
  t.is(a.status, 200);
  t.deepEqual(a.json, b.json);
  const j = a.json;
  t.deepEqual(Object.keys(j).sort(), ['display_name', 'email', 'first_name', 'id', 'last_name', 'root_id', 'roots',
    'space_quota', 'space_quota_formatted', 'space_usage', 'space_usage_formatted', 'success'].sort());
  t.true(j.success);
  t.is(j.email, 'demo@vboxx.test');
  t.is(j.root_id, DEMO_FILES_ROOT);
  t.is(j.space_quota, null);
  t.is(j.space_quota_formatted, null);
  t.deepEqual(j.roots.map((r: any) => [r.id, r.name, r.type]), [[DEMO_FILES_ROOT, 'Files', 'sync'], [DEMO_TEAM_ROOT, 'Team Share', 'share']]);
  for (const r of j.roots) t.deepEqual(Object.keys(r).sort(), ['id', 'name', 'space_used', 'type']);
  t.is(j.space_usage, j.roots.reduce((s: number, r: any) => s + r.space_used, 0));
  t.true(j.roots[0].space_used >= 10 * 1024 * 1024, 'the 10 MiB demo binary counts');
  t.regex(j.space_usage_formatted, /^\d+\.\d\dM$/);
  // A new file shows up in the usage at once.
  const api = new Api(emu.url, await login(emu.url, 'demo', 'demo-password'));
  await api.putFile(DEMO_TEAM_ROOT, 'usage-probe.bin', Buffer.alloc(1000));
  const after = (await api.get('/1/account/info')).json;
  t.is(after.roots[1].space_used, j.roots[1].space_used + 1000);
});

test('errors: unknown endpoint 404, wrong method 405, all in the vBoxx format', async (t) => {
  const r = await demo.get('/1/no/such/thing');
  t.is(r.status, 404);
  t.deepEqual(Object.keys(r.json).sort(), ['code', 'message', 'status_code']);
  const m = await raw(emu.url, 'DELETE', demo.url('/1/account/info/'));
  t.is(m.status, 405);
  t.is(m.json.status_code, 405);
  const c = await raw(emu.url, 'GET', demo.url('/1/management/person/create/'));
  t.is(c.status, 405);
});

test('robustness: malformed input never crashes and never leaks a stack, host path or token', async (t) => {
  const token = demo.token;
  const nasty = [
    ['GET', `/1/metadata/2/%zz?session_token=${token}`],
    ['GET', `/1/metadata/2/%00?session_token=${token}`],
    ['GET', `/1/metadata/99999999999999999999/?session_token=${token}`],
    ['GET', `/1/metadata/-1/?session_token=${token}`],
    ['GET', `/1/files/2/${'a'.repeat(300)}?session_token=${token}`],
    ['GET', `/1/files/2/${'abc/'.repeat(3000)}x?session_token=${token}`],
    ['GET', `/1/management/person/abc/?session_token=${token}`],
    ['GET', `/1/management/organization/2/persons/page/0/?session_token=${token}`],
    ['POST', `/1/management/policy/update/?session_token=${token}&id=2&space_quota=lots`],
    ['PUT', `/1/chunked_upload?session_token=${token}&offset=-5`],
    ['POST', `/1/fileops/move?session_token=${token}&root=2&from_path=readme.txt`],
  ];
  for (const [method, path] of nasty) {
    const r = await raw(emu.url, method!, path!);
    t.true(r.status >= 400 && r.status < 600, `${method} ${path!.slice(0, 60)} -> ${r.status}`);
    t.false(r.text.includes(emu.ctx.opts.dataDir), 'no host path');
    t.false(r.text.includes(token), 'no token echo');
    t.false(/\n\s+at /.test(r.text), 'no stack');
  }
  const json = await raw(emu.url, 'POST', demo.url('/1/fileops/create_folder'), {
    headers: { 'content-type': 'application/json' }, body: '{not json' });
  t.is(json.status, 400);
  t.is(json.json.code, 'error');
  // Still serving.
  t.is((await demo.get('/1/account/info')).status, 200);
});

test('restart on the same data dir keeps accounts, sessions, roots, files and management data', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'vboxx-restart-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const e1 = await createEmulator({ dataDir, demo: true, rsync: false });
  let token: string;
  let rev: number;
  try {
    token = await login(e1.url, 'demo', 'demo-password');
    const api = new Api(e1.url, token);
    rev = (await api.putFile(DEMO_FILES_ROOT, 'persist/kept.txt', 'survives restarts')).rev;
    const admin = new Api(e1.url, await login(e1.url, 'admin', 'admin-password'));
    const p = await admin.post('/1/management/person/create/', { company_id: '2', first_name: 'Kept', last_name: 'Person',
      email: 'kept@demo.test', password: 'kept-pw', create_root: 'true' });
    t.is(p.status, 200);
  } finally {
    await e1.close();
  }
  const e2 = await createEmulator({ dataDir, demo: true, rsync: false });
  try {
    // The old session still works, and a new login does too.
    const old = new Api(e2.url, token);
    t.is((await old.get('/1/account/info')).status, 200);
    const api = new Api(e2.url, await login(e2.url, 'demo', 'demo-password'));
    const m = await api.meta(DEMO_FILES_ROOT, 'persist/kept.txt');
    t.is(m.status, 200);
    t.is(m.json.rev, rev);
    const f = await api.get('/1/files/2/persist/kept.txt');
    t.is(f.text, 'survives restarts');
    // Demo seeding is idempotent: the same roots, not duplicates.
    const info = (await api.get('/1/account/info')).json;
    t.deepEqual(info.roots.map((r: any) => r.id), [DEMO_FILES_ROOT, DEMO_TEAM_ROOT]);
    const kept = new Api(e2.url, await login(e2.url, 'kept@demo.test', 'kept-pw'));
    const ki = (await kept.get('/1/account/info')).json;
    t.is(ki.roots.filter((r: any) => r.type === 'sync').length, 1);
    const admin = new Api(e2.url, await login(e2.url, 'admin', 'admin-password'));
    const persons = (await admin.get('/1/management/organization/2/persons/')).json;
    t.is(persons.total_persons, 2);
    // No leftovers of uploads in the temp area.
    t.deepEqual(readdirSync(join(dataDir, 'files', 'vboxx', 'tmp')), []);
  } finally {
    await e2.close();
  }
});

test('demo seeding resets the demo passwords but keeps data', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'vboxx-demo-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const e1 = await createEmulator({ dataDir, demo: true, rsync: false });
  try {
    const api = new Api(e1.url, await login(e1.url, 'demo', 'demo-password'));
    const r = await api.post('/1/management/person/update/', { id: '2', password: 'changed-pw' });
    t.is(r.status, 200);
    t.truthy(await login(e1.url, 'demo', 'changed-pw'));
  } finally { await e1.close(); }
  const e2 = await createEmulator({ dataDir, demo: true, rsync: false });
  try {
    t.truthy(await login(e2.url, 'demo', 'demo-password'));
    const bad = await raw(e2.url, 'POST', '/1/auth?username=demo&password=changed-pw');
    t.is(bad.status, 401);
  } finally { await e2.close(); }
});

test('fuzz: odd field values on every write endpoint never cause an internal error', async (t) => {
  // Its own server: the fuzz may rename, move or promote the demo accounts.
  const own = await startEmulator({ rsync: false });
  t.teardown(() => own.close());
  const admin = new Api(own.url, await login(own.url, 'admin', 'admin-password'));
  const values = ['', ' ', '-1', '0', '1', '2', '1e309', '99999999999999999999', '[', '{"a":', 'null', 'true', '[0,7]',
    'x'.repeat(5000), 'Ünï', '../..', '%00', '12:00', '{}'];
  const endpoints: Record<string, string[]> = {
    '/1/management/person/create/': ['company_id', 'first_name', 'last_name', 'email', 'password', 'space_quota', 'site_admin', 'create_root'],
    '/1/management/person/update/': ['id', 'first_name', 'company_id', 'space_quota', 'system_admin', 'mobile_service_provider_id'],
    '/1/management/activity/create/': ['activity_type_id', 'actor_id', 'actor_type', 'acted_on_id', 'acted_on_type'],
    '/1/management/policy/update/': ['id', 'space_quota', 'max_file_size', 'purge_deleted', 'excluded_extensions', 'trim_revisions_x'],
    '/1/management/root/create/': ['company_id', 'name', 'person_id', 'default', 'dept_share'],
    '/1/management/root/update/': ['id', 'company_id', 'name', 'person_id', 'default'],
    '/1/management/machine/update/': ['id', 'bandwidth_throttle', 'throttle_exception_dow', 'throttle_exception_days', 'throttle_exception_start'],
    '/1/management/organization/create/': ['name', 'contact_email', 'slug', 'policy', 'parent_id', 'throttle_exception_dow'],
    '/1/management/organization/update/': ['id', 'name', 'slug', 'policy', 'contact_email'],
    '/1/fileops/create_folder': ['root', 'path'],
    '/1/fileops/delete': ['root', 'path'],
    '/1/fileops/move': ['root', 'from_path', 'to_path'],
    '/1/fileops/copy': ['root', 'from_path', 'to_path'],
  };
  let n = 0;
  for (const [path, fields] of Object.entries(endpoints)) {
    for (let i = 0; i < values.length; i++) {
      // Every field gets a value, rotated so each field sees each value once.
      const form: Record<string, string> = {};
      fields.forEach((f, k) => { form[f] = values[(i + k) % values.length]!; });
      const r = await admin.post(path, form);
      n++;
      t.true(r.status !== 500 || /^missing required field /.test(r.json?.message ?? ''), `${path} ${JSON.stringify(form).slice(0, 200)} -> ${r.status} ${r.text.slice(0, 200)}`);
      t.is(r.json?.code ?? 'success', r.status === 200 ? (r.json?.code ?? 'success') : 'error');
    }
  }
  t.true(n > 200);
  t.is((await admin.get('/1/account/info')).status, 200);
});
