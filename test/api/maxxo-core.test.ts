// Maxxo API conformance (shared/specs/maxxo-api.txt): auth, the token rule, methods, file ops,
// confinement, slice, quota, settings, photo, contacts, notifications, invite.
import test from 'ava';
import { crc32, deflateSync } from 'node:zlib';
import { mkdirSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEmulator, maxxoToken, maxxoCall, MAXXO_DEMO, MAXXO_FRIEND } from '../helpers/emulator.js';
import { createMaxxoUser, maxxoUserFolder } from '../../src/emulator/maxxo/index.js';
import type { Emulator } from '../../src/emulator/server.js';

let em: Emulator;
let url: string;
let demoToken: string;

test.before(async () => {
  em = await startEmulator({ rsync: false });
  url = em.url;
  demoToken = await maxxoToken(url);
});
test.after.always(async () => { await em?.close(); });

let seq = 0;
/** A new account of its own for a test that changes state. */
async function fresh(opts: { quota?: number; receivingQuota?: number } = {}) {
  const email = `core${++seq}-${process.pid}@maxxo.test`;
  const password = 'secret-password';
  createMaxxoUser(em.ctx, { email, password, fullname: `Core User ${seq}`, ...opts });
  const token = await maxxoToken(url, email, password);
  return { email, password, token, folder: maxxoUserFolder(em.ctx, email) };
}

function put(folder: string, rel: string, content: string | Buffer): void {
  const p = join(folder, rel);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, content);
}

// Every authenticated route with its method (the spec's list).
const ROUTES: Array<['GET' | 'POST', string]> = [
  ['POST', 'ops/send'], ['GET', 'ops/list'], ['POST', 'ops/move'], ['POST', 'ops/delete'], ['POST', 'ops/filesize'],
  ['GET', 'slice'], ['POST', 'contacts/add'], ['GET', 'contacts/list'], ['POST', 'contacts/remove'],
  ['GET', 'account/quota'], ['GET', 'settings/list'], ['POST', 'settings/update'], ['POST', 'user-photo/update'],
  ['POST', 'user-photo/remove'], ['GET', 'notifications/list'], ['POST', 'notifications/update'], ['POST', 'invite'],
  ['GET', 'inbox/list'], ['POST', 'inbox/update'],
];

// ---------- auth ----------

test('auth/token: 64-character token; every client gets its own, all valid', async (t) => {
  const a = await maxxoCall(url, 'GET', 'auth/token', { query: MAXXO_DEMO });
  const b = await maxxoCall(url, 'GET', 'auth/token', { query: MAXXO_DEMO });
  t.is(a.status, 200);
  t.regex(a.body.token, /^[A-Za-z0-9]{64}$/);
  t.not(a.body.token, b.body.token);
  for (const tok of [a.body.token, b.body.token]) {
    t.is((await maxxoCall(url, 'GET', 'account/quota', { token: tok })).status, 200);
  }
  t.true(a.headers.get('content-type')!.startsWith('application/json'));
});

test('auth/token: wrong password or unknown user -> AUTH_FAILED 403; missing -> 400; POST -> 405', async (t) => {
  for (const q of [{ email: MAXXO_DEMO.email, password: 'wrongpassword' }, { email: 'nobody@maxxo.test', password: 'x' },
    { email: MAXXO_DEMO.email, password: MAXXO_FRIEND.password }]) {
    const r = await maxxoCall(url, 'GET', 'auth/token', { query: q });
    t.is(r.status, 403);
    t.deepEqual(r.body, { error: 'AUTH_FAILED' });
  }
  const r = await maxxoCall(url, 'GET', 'auth/token', { query: { email: MAXXO_DEMO.email } });
  t.deepEqual([r.status, r.body], [400, { error: 'METHOD_BAD_REQUEST' }]);
  const p = await maxxoCall(url, 'POST', 'auth/token', { form: MAXXO_DEMO });
  t.deepEqual([p.status, p.body], [405, { error: 'METHOD_NOT_ALLOWED' }]);
});

test('every route: no token, a wrong token, or the token as a parameter -> NO_PERMISSION 401', async (t) => {
  for (const [method, path] of ROUTES) {
    const none = await maxxoCall(url, method, path);
    t.deepEqual([none.status, none.body], [401, { error: 'NO_PERMISSION' }], `${method} ${path} without token`);
    const wrong = await maxxoCall(url, method, path, { token: 'x'.repeat(64) });
    t.deepEqual([wrong.status, wrong.body], [401, { error: 'NO_PERMISSION' }], `${method} ${path} wrong token`);
    const asParam = method === 'GET'
      ? await maxxoCall(url, method, path, { query: { token: demoToken, path: '' } })
      : await maxxoCall(url, method, path, { form: { token: demoToken } });
    t.is(asParam.status, 401, `${method} ${path} token as parameter`);
  }
});

test('every route: the wrong HTTP method -> METHOD_NOT_ALLOWED 405 (before the token check)', async (t) => {
  for (const [method, path] of ROUTES) {
    for (const m of method === 'GET' ? ['POST', 'PUT', 'DELETE'] : ['GET', 'PUT', 'DELETE']) {
      const r = await maxxoCall(url, m, path, { token: demoToken });
      t.deepEqual([r.status, r.body], [405, { error: 'METHOD_NOT_ALLOWED' }], `${m} ${path}`);
      const anon = await maxxoCall(url, m, path);
      t.is(anon.status, 405, `${m} ${path} without token`);
    }
  }
});

test('unknown resources under /api answer a JSON 404', async (t) => {
  for (const p of ['nope', 'ops', 'ops/list/extra']) {
    const r = await maxxoCall(url, 'GET', p, { token: demoToken });
    t.is(r.status, 404);
    t.is(typeof r.body.error, 'string');
  }
  const v2 = await fetch(`${url}/api/2/slice`, { headers: { token: demoToken } });
  t.is(v2.status, 404);
});

// ---------- ops/list ----------

test('ops/list: top folder, nested folders, paths relative to the top, folders 4096, unicode', async (t) => {
  const top = await maxxoCall(url, 'GET', 'ops/list', { token: demoToken, query: { path: '' } });
  t.is(top.status, 200);
  t.deepEqual(top.body.map((e: { file: string }) => e.file),
    ['Documents', 'Empty Folder', 'Large Files', 'Photos', 'Welcome to Maxxo.txt']);
  t.deepEqual(top.body[0], { file: 'Documents', size: 4096, type: 'd' });
  const slash = await maxxoCall(url, 'GET', 'ops/list', { token: demoToken, query: { path: '/' } });
  t.deepEqual(slash.body, top.body);
  const docs = await maxxoCall(url, 'GET', 'ops/list', { token: demoToken, query: { path: 'Documents' } });
  t.deepEqual(docs.body, [
    { file: 'Documents/Café Menü.txt', size: Buffer.byteLength('Crème brûlée, Käsekuchen, Smørrebrød.\n'), type: 'f' },
    { file: 'Documents/Reports', size: 4096, type: 'd' },
  ]);
  const deep = await maxxoCall(url, 'GET', 'ops/list', { token: demoToken, query: { path: '/Documents/Reports/2024/' } });
  t.deepEqual(deep.body.map((e: { file: string }) => e.file),
    ['Documents/Reports/2024/Quarterly report Q1.txt', 'Documents/Reports/2024/numbers.csv']);
  const big = await maxxoCall(url, 'GET', 'ops/list', { token: demoToken, query: { path: 'Large Files' } });
  t.deepEqual(big.body, [{ file: 'Large Files/random-10MiB.bin', size: 10 * 1024 * 1024, type: 'f' }]);
  const empty = await maxxoCall(url, 'GET', 'ops/list', { token: demoToken, query: { path: 'Empty Folder' } });
  t.deepEqual([empty.status, empty.body], [200, []]);
});

test('ops/list: missing folder -> FILE_NOT_FOUND 404, a file -> 400, no path -> 400', async (t) => {
  const missing = await maxxoCall(url, 'GET', 'ops/list', { token: demoToken, query: { path: 'No Such Folder' } });
  t.deepEqual([missing.status, missing.body], [404, { error: 'FILE_NOT_FOUND' }]);
  const file = await maxxoCall(url, 'GET', 'ops/list', { token: demoToken, query: { path: 'Welcome to Maxxo.txt' } });
  t.deepEqual([file.status, file.body], [400, { error: 'METHOD_BAD_REQUEST' }]);
  const none = await maxxoCall(url, 'GET', 'ops/list', { token: demoToken });
  t.deepEqual([none.status, none.body], [400, { error: 'METHOD_BAD_REQUEST' }]);
});

// ---------- confinement and isolation ----------

test('traversal (plain or encoded), NUL, over-long names and host paths -> METHOD_BAD_REQUEST; never a host path', async (t) => {
  const bad = ['..', '../friend', 'Documents/../../friend', '/..', 'a/../..', 'x\0y', 'a'.repeat(256), 'a/'.repeat(2100),
    em.ctx.opts.dataDir, join(em.ctx.filesDir, 'maxxo', 'friend')];
  for (const p of bad) {
    const r = await maxxoCall(url, 'GET', 'ops/list', { token: demoToken, query: { path: p } });
    t.deepEqual([r.status, r.body], [400, { error: 'METHOD_BAD_REQUEST' }], JSON.stringify(p.slice(0, 40)));
    const f = await maxxoCall(url, 'POST', 'ops/filesize', { token: demoToken, form: { 'files[]': [p] } });
    t.is(f.status, 400);
  }
  // Percent-encoded in the raw URL: decoded once, to "..".
  for (const raw of ['%2e%2e', '%2E%2E%2Ffriend', '..%2ffriend', 'Documents%2F..%2F..%2Ffriend']) {
    const r = await fetch(`${url}/api/1/ops/list?path=${raw}`, { headers: { token: demoToken } });
    t.is(r.status, 400, raw);
    t.deepEqual(await r.json(), { error: 'METHOD_BAD_REQUEST' });
  }
  // A double-encoded name is a literal (harmless) name, not a traversal.
  const lit = await fetch(`${url}/api/1/ops/list?path=%252e%252e`, { headers: { token: demoToken } });
  t.is(lit.status, 404);
  // An absolute path that is not ours lands inside the account: nothing of the host is visible.
  const etc = await maxxoCall(url, 'POST', 'ops/filesize', { token: demoToken, form: { 'files[]': ['/etc/passwd', '/etc'] } });
  t.deepEqual(etc.body, [{ file: '/etc/passwd', size: -1 }, { file: '/etc', size: -1 }]);
  const etcList = await maxxoCall(url, 'GET', 'ops/list', { token: demoToken, query: { path: '/etc' } });
  t.is(etcList.status, 404);
  const moved = await maxxoCall(url, 'POST', 'ops/move', { token: demoToken, form: { source: '../friend/Hello from Friend.txt', destination: 'stolen.txt' } });
  t.is(moved.status, 400);
  const del = await maxxoCall(url, 'POST', 'ops/delete', { token: demoToken, form: { 'file[]': '../friend/Hello from Friend.txt' } });
  t.is(del.status, 400);
  t.true(existsSync(join(maxxoUserFolder(em.ctx, MAXXO_FRIEND.email), 'Hello from Friend.txt')));
});

test('isolation: each user sees only their own folder', async (t) => {
  const friendToken = await maxxoToken(url, MAXXO_FRIEND.email, MAXXO_FRIEND.password);
  const f = await maxxoCall(url, 'GET', 'ops/list', { token: friendToken, query: { path: '' } });
  t.deepEqual(f.body.map((e: { file: string }) => e.file), ['Hello from Friend.txt', 'Projects']);
  const d = await maxxoCall(url, 'POST', 'ops/filesize', { token: demoToken, form: { 'files[]': ['Hello from Friend.txt', 'Projects'] } });
  t.deepEqual(d.body.map((e: { size: number }) => e.size), [-1, -1]);
  const u = await fresh();
  const mine = await maxxoCall(url, 'GET', 'ops/list', { token: u.token, query: { path: '' } });
  t.deepEqual(mine.body, []);
});

test('a symlink in the folder (e.g. pushed by rsync) is neither listed nor followed', async (t) => {
  const u = await fresh();
  put(u.folder, 'real/a.txt', 'a');
  const { symlinkSync } = await import('node:fs');
  symlinkSync('/etc', join(u.folder, 'link'));
  symlinkSync(join(maxxoUserFolder(em.ctx, MAXXO_DEMO.email)), join(u.folder, 'demo-link'));
  const top = await maxxoCall(url, 'GET', 'ops/list', { token: u.token, query: { path: '' } });
  t.deepEqual(top.body.map((e: { file: string }) => e.file), ['real']);
  const through = await maxxoCall(url, 'GET', 'ops/list', { token: u.token, query: { path: 'demo-link/Documents' } });
  t.is(through.status, 400);
  const fs = await maxxoCall(url, 'POST', 'ops/filesize', { token: u.token, form: { 'files[]': ['link', 'demo-link'] } });
  t.deepEqual(fs.body.map((e: { size: number }) => e.size), [-1, -1]);
});

// ---------- ops/filesize, move, delete ----------

test('ops/filesize: files[] one or many; -1 for missing; folders 4096', async (t) => {
  const one = await maxxoCall(url, 'POST', 'ops/filesize', { token: demoToken, form: { 'files[]': 'Large Files/random-10MiB.bin' } });
  t.deepEqual([one.status, one.body], [200, [{ file: 'Large Files/random-10MiB.bin', size: 10485760, type: 'f' }]]);
  const many = await maxxoCall(url, 'POST', 'ops/filesize', {
    token: demoToken, form: { 'files[]': ['Welcome to Maxxo.txt', 'path/to/does-not-exist.ext', 'Documents', '/Documents/Café Menü.txt'] },
  });
  t.deepEqual(many.body.map((e: { file: string; size: number }) => [e.file, e.size]), [
    ['Welcome to Maxxo.txt', 74], ['path/to/does-not-exist.ext', -1], ['Documents', 4096], ['/Documents/Café Menü.txt', 44],
  ]);
  const indexed = await maxxoCall(url, 'POST', 'ops/filesize', { token: demoToken, form: [['files[0]', 'Documents'], ['files[1]', 'x']] });
  t.is(indexed.body.length, 2);
  const none = await maxxoCall(url, 'POST', 'ops/filesize', { token: demoToken, form: { other: 'x' } });
  t.deepEqual([none.status, none.body], [400, { error: 'METHOD_BAD_REQUEST' }]);
});

test('ops/move: rename, move into a folder, replace a file, and its errors', async (t) => {
  const u = await fresh();
  put(u.folder, 'a.txt', 'AAA');
  put(u.folder, 'b.txt', 'BB');
  put(u.folder, 'dir/inner.txt', 'i');
  put(u.folder, 'full/x', 'x');
  mkdirSync(join(u.folder, 'emptydir'));
  const mv = (source: string, destination: string) => maxxoCall(url, 'POST', 'ops/move', { token: u.token, form: { source, destination } });
  const ls = async (p = '') => (await maxxoCall(url, 'GET', 'ops/list', { token: u.token, query: { path: p } })).body.map((e: { file: string }) => e.file);

  t.deepEqual((await mv('a.txt', 'renamed.txt')).body, {});
  t.deepEqual(await ls(), ['b.txt', 'dir', 'emptydir', 'full', 'renamed.txt']);
  t.is((await mv('renamed.txt', 'dir/moved.txt')).status, 200);
  t.deepEqual(await ls('dir'), ['dir/inner.txt', 'dir/moved.txt']);
  // Replaces an existing file, like rename(2).
  t.is((await mv('b.txt', 'dir/moved.txt')).status, 200);
  t.is(readFileSync(join(u.folder, 'dir/moved.txt'), 'utf8'), 'BB');
  // A folder onto an empty folder replaces it; onto a non-empty one it is refused.
  t.is((await mv('dir', 'emptydir')).status, 200);
  t.deepEqual(await ls('emptydir'), ['emptydir/inner.txt', 'emptydir/moved.txt']);
  t.deepEqual((await mv('emptydir', 'full')).body, { error: 'METHOD_BAD_REQUEST' });
  // Type mismatches, into itself, the top folder.
  t.is((await mv('emptydir/inner.txt', 'full')).status, 400);
  t.is((await mv('emptydir', 'full/x')).status, 400);
  t.is((await mv('emptydir', 'emptydir/sub')).status, 400);
  t.is((await mv('', 'x')).status, 400);
  t.is((await mv('full', '/')).status, 400);
  // Missing source; missing destination parent (no implicit mkdir, as rename(2)).
  t.deepEqual(await mv('nope.txt', 'x.txt').then((r) => [r.status, r.body]), [404, { error: 'FILE_NOT_FOUND' }]);
  t.deepEqual(await mv('full/x', 'no/such/dir/x').then((r) => [r.status, r.body]), [404, { error: 'FILE_NOT_FOUND' }]);
  // Same path: nothing to do.
  t.is((await mv('full/x', '/full/x')).status, 200);
  // Missing parameters.
  t.is((await maxxoCall(url, 'POST', 'ops/move', { token: u.token, form: { source: 'full/x' } })).status, 400);
  t.is((await maxxoCall(url, 'POST', 'ops/move', { token: u.token, form: { destination: 'y' } })).status, 400);
  t.deepEqual(await ls(), ['emptydir', 'full']);
});

test('ops/delete: file[] one or many, folders recursively; missing -> FILE_NOT_FOUND (others deleted)', async (t) => {
  const u = await fresh();
  put(u.folder, 'a.txt', 'a');
  put(u.folder, 'b.txt', 'b');
  put(u.folder, 'c.txt', 'c');
  put(u.folder, 'tree/sub/deep.txt', 'd');
  const del = (files: string[]) => maxxoCall(url, 'POST', 'ops/delete', { token: u.token, form: { 'file[]': files } });
  t.deepEqual(await del(['a.txt']).then((r) => [r.status, r.body]), [200, {}]);
  t.is((await del(['b.txt', '/tree'])).status, 200);
  t.false(existsSync(join(u.folder, 'tree')));
  t.deepEqual(await del(['c.txt', 'nope.txt']).then((r) => [r.status, r.body]), [404, { error: 'FILE_NOT_FOUND' }]);
  t.false(existsSync(join(u.folder, 'c.txt')));
  t.is((await del(['/'])).status, 400);
  t.is((await del([''])).status, 400);
  t.is((await maxxoCall(url, 'POST', 'ops/delete', { token: u.token })).status, 400);
  t.true(existsSync(u.folder));
});

// ---------- slice, quota ----------

test('slice: ip, login, per-user Cloudstore password, tracker', async (t) => {
  const a = await maxxoCall(url, 'GET', 'slice', { token: demoToken });
  t.is(a.status, 200);
  t.is(a.body.ip, '127.0.0.1');
  t.is(a.body.login, 'demo');
  t.regex(a.body.rsync, /^[A-Za-z0-9]{32}$/);
  t.is(typeof a.body.tracker, 'string');
  const friendToken = await maxxoToken(url, MAXXO_FRIEND.email, MAXXO_FRIEND.password);
  const b = await maxxoCall(url, 'GET', 'slice', { token: friendToken });
  t.is(b.body.login, 'friend');
  t.not(b.body.rsync, a.body.rsync);
  const again = await maxxoCall(url, 'GET', 'slice', { token: await maxxoToken(url) });
  t.is(again.body.rsync, a.body.rsync, 'stable per user');
});

test('account/quota: normal = bytes on disk, changes with the folder', async (t) => {
  const u = await fresh({ quota: 5 * 1024 * 1024, receivingQuota: 1234567 });
  const q0 = await maxxoCall(url, 'GET', 'account/quota', { token: u.token });
  t.deepEqual(q0.body, { quota: 5 * 1024 * 1024, normal: 0, receiving_quota: 1234567, received: 0 });
  put(u.folder, 'x/y/z.bin', Buffer.alloc(12345));
  put(u.folder, 'a.txt', 'hello');
  const q1 = await maxxoCall(url, 'GET', 'account/quota', { token: u.token });
  t.is(q1.body.normal, 12350);
  const demo = await maxxoCall(url, 'GET', 'account/quota', { token: demoToken });
  t.true(demo.body.normal >= 10 * 1024 * 1024);
});

// ---------- settings ----------

test('settings/list: the documented fields and types', async (t) => {
  const r = await maxxoCall(url, 'GET', 'settings/list', { token: demoToken });
  t.is(r.status, 200);
  t.is(r.body.email, MAXXO_DEMO.email);
  t.is(r.body.fullname, 'Demo User');
  t.is(typeof r.body.photo, 'string');
  t.is(r.body.accept_all, false);
  t.is(typeof r.body.package, 'string');
  t.true(Number.isInteger(r.body.storage));
  t.is(r.body.storage, 10240);
});

test('settings/update: fullname, accept_all, email, password and every error code', async (t) => {
  const u = await fresh();
  const up = (form: Record<string, string>) => maxxoCall(url, 'POST', 'settings/update', { token: u.token, form });
  const get = async () => (await maxxoCall(url, 'GET', 'settings/list', { token: u.token })).body;
  t.deepEqual(await up({ fullname: 'New Name', accept_all: '1' }).then((r) => [r.status, r.body]), [200, {}]);
  t.like(await get(), { fullname: 'New Name', accept_all: true });
  t.is((await up({ accept_all: '0' })).status, 200);
  t.is((await get()).accept_all, false);
  t.deepEqual((await up({ accept_all: 'maybe' })).body, { error: 'METHOD_BAD_REQUEST' });
  t.deepEqual((await up({})).body, { error: 'METHOD_BAD_REQUEST' });
  t.deepEqual((await up({ fullname: '  ' })).body, { error: 'METHOD_BAD_REQUEST' });
  const ie = await up({ email: 'not-an-email' });
  t.deepEqual([ie.status, ie.body], [400, { error: 'INVALID_EMAIL' }]);
  const taken = await up({ email: MAXXO_FRIEND.email });
  t.deepEqual([taken.status, taken.body], [400, { error: 'EMAIL_ALREADY_EXIST' }]);
  const wrong = await up({ current_password: 'nope', new_password: 'another-password' });
  t.deepEqual([wrong.status, wrong.body], [400, { error: 'WRONG_CURRENT_PASSWORD' }]);
  const nocur = await up({ new_password: 'another-password' });
  t.deepEqual(nocur.body, { error: 'WRONG_CURRENT_PASSWORD' });
  const weak = await up({ current_password: u.password, new_password: '123' });
  t.deepEqual([weak.status, weak.body], [400, { error: 'INVALID_NEW_PASSWORD' }]);
  // Nothing of a failed update is applied.
  t.is((await up({ fullname: 'Half', email: 'bad' })).status, 400);
  t.is((await get()).fullname, 'New Name');
  t.is((await up({ current_password: u.password, new_password: 'another-password' })).status, 200);
  const old = await maxxoCall(url, 'GET', 'auth/token', { query: { email: u.email, password: u.password } });
  t.is(old.status, 403);
  const newEmail = `renamed-${u.email}`;
  t.is((await up({ email: newEmail })).status, 200);
  t.regex(await maxxoToken(url, newEmail, 'another-password'), /^[A-Za-z0-9]{64}$/);
  t.is((await get()).email, newEmail);
});

// ---------- user photo ----------

function png(width: number, height: number, pad = 0): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0); ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; ihdr[9] = 0; // 8-bit grayscale
  const raw = Buffer.alloc(Math.min(height, 4) * (width + 1));
  const parts = [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw))];
  if (pad) parts.push(chunk('tEXt', Buffer.alloc(pad, 0x61)));
  parts.push(chunk('IEND', Buffer.alloc(0)));
  return Buffer.concat(parts);
}

function jpeg(width: number, height: number): Buffer {
  const app0 = Buffer.from([0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00]);
  const sof = Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, height >> 8, height & 255, width >> 8, width & 255, 0x03,
    0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
  return Buffer.concat([Buffer.from([0xff, 0xd8]), app0, sof, Buffer.from([0xff, 0xd9])]);
}

async function uploadPhoto(token: string, data: Buffer | string, field = 'photo', type = 'image/png') {
  const fd = new FormData();
  fd.append(field, new Blob([typeof data === 'string' ? data : new Uint8Array(data)], { type }), 'me.img');
  return maxxoCall(url, 'POST', 'user-photo/update', { token, multipart: fd });
}

test('user-photo/update and remove: PNG and JPEG accepted and served; the URL shows in settings and contacts', async (t) => {
  const u = await fresh();
  const img = png(640, 480);
  const r = await uploadPhoto(u.token, img);
  t.is(r.status, 200);
  const s = (await maxxoCall(url, 'GET', 'settings/list', { token: u.token })).body;
  t.regex(s.photo, /^http:\/\/127\.0\.0\.1:\d+\/photos\/.+\.png$/);
  const got = await fetch(s.photo);
  t.is(got.headers.get('content-type'), 'image/png');
  t.deepEqual(Buffer.from(await got.arrayBuffer()), img);
  // Contacts see it too.
  await maxxoCall(url, 'POST', 'contacts/add', { token: demoToken, form: { 'email[]': u.email } });
  const c = (await maxxoCall(url, 'GET', 'contacts/list', { token: demoToken, query: { filter: u.email } })).body;
  t.is(c[0].photo, s.photo);
  await maxxoCall(url, 'POST', 'contacts/remove', { token: demoToken, form: { email: u.email } });
  // JPEG at the size limit, replacing the PNG (the old URL is gone).
  t.is((await uploadPhoto(u.token, jpeg(1600, 1200), 'photo', 'image/jpeg')).status, 200);
  const s2 = (await maxxoCall(url, 'GET', 'settings/list', { token: u.token })).body;
  t.regex(s2.photo, /\.jpg$/);
  t.is((await fetch(s.photo)).status, 404);
  t.deepEqual((await maxxoCall(url, 'POST', 'user-photo/remove', { token: u.token })).body, {});
  t.is((await maxxoCall(url, 'GET', 'settings/list', { token: u.token })).body.photo, '');
  t.is((await fetch(s2.photo)).status, 404);
  t.is((await maxxoCall(url, 'POST', 'user-photo/remove', { token: u.token })).status, 200, 'removing no photo is fine');
});

test('user-photo/update: INVALID_PHOTO for other formats, > 2 MB, > 1600x1200; no photo -> 400', async (t) => {
  const u = await fresh();
  const gif = Buffer.from('GIF89a\x01\x00\x01\x00\x00\x00\x00;', 'latin1');
  for (const [name, data] of [
    ['gif', gif], ['text', Buffer.from('hello')], ['too wide', png(1601, 100)], ['too tall', png(100, 1201)],
    ['jpeg too wide', jpeg(2000, 1000)], ['over 2 MB', png(100, 100, 2 * 1024 * 1024)], ['empty', Buffer.alloc(0)],
    ['truncated png', png(100, 100).subarray(0, 20)], ['bare jpeg marker', Buffer.from([0xff, 0xd8, 0xff, 0xd9])],
  ] as Array<[string, Buffer]>) {
    const r = await uploadPhoto(u.token, data);
    t.deepEqual([r.status, r.body], [400, { error: 'INVALID_PHOTO' }], name);
  }
  t.is((await uploadPhoto(u.token, png(100, 100), 'picture')).status, 400, 'wrong field name');
  const form = await maxxoCall(url, 'POST', 'user-photo/update', { token: u.token, form: { photo: 'abc' } });
  t.deepEqual([form.status, form.body], [400, { error: 'METHOD_BAD_REQUEST' }]);
  t.is((await maxxoCall(url, 'GET', 'settings/list', { token: u.token })).body.photo, '');
});

// ---------- contacts and notifications ----------

test('contacts: add (one or many), list with filter, ALREADY_CONTACT, USER_NOT_FOUND, remove, CONTACT_NOT_FOUND', async (t) => {
  const a = await fresh();
  const b = await fresh();
  const c = await fresh();
  const add = (emails: string[]) => maxxoCall(url, 'POST', 'contacts/add', { token: a.token, form: { 'email[]': emails } });
  const list = async (filter?: string) =>
    (await maxxoCall(url, 'GET', 'contacts/list', { token: a.token, query: filter ? { filter } : undefined })).body;
  t.deepEqual(await list(), []);
  t.deepEqual(await add([b.email]).then((r) => [r.status, r.body]), [200, {}]);
  t.deepEqual(await add([b.email, c.email]).then((r) => [r.status, r.body]), [202, { error: 'ALREADY_CONTACT' }]);
  const all = await list();
  t.deepEqual(all.map((x: { email: string }) => x.email).sort(), [b.email, c.email].sort());
  t.deepEqual(Object.keys(all[0]).sort(), ['email', 'fullname', 'photo']);
  t.deepEqual((await list(c.email.slice(0, 8))).map((x: { email: string }) => x.email), [c.email]);
  t.deepEqual(await list('no-such-contact-keyword'), []);
  const nf = await add(['nobody-here@maxxo.test', MAXXO_DEMO.email]);
  t.deepEqual([nf.status, nf.body], [404, { error: 'USER_NOT_FOUND' }]);
  t.is((await list()).length, 2, 'nothing added when one is unknown');
  t.is((await add([a.email])).status, 400, 'yourself');
  t.is((await maxxoCall(url, 'POST', 'contacts/add', { token: a.token })).status, 400);
  const rm = await maxxoCall(url, 'POST', 'contacts/remove', { token: a.token, form: { email: b.email } });
  t.deepEqual([rm.status, rm.body], [200, {}]);
  const again = await maxxoCall(url, 'POST', 'contacts/remove', { token: a.token, form: { email: b.email } });
  t.deepEqual([again.status, again.body], [404, { error: 'CONTACT_NOT_FOUND' }]);
  const unknown = await maxxoCall(url, 'POST', 'contacts/remove', { token: a.token, form: { email: 'ghost@maxxo.test' } });
  t.is(unknown.status, 404);
  t.is((await maxxoCall(url, 'POST', 'contacts/remove', { token: a.token })).status, 400);
  // The contact relation is one-way: b did not get a as contact.
  t.deepEqual((await maxxoCall(url, 'GET', 'contacts/list', { token: b.token })).body, []);
});

test('demo friends are contacts of each other', async (t) => {
  const d = (await maxxoCall(url, 'GET', 'contacts/list', { token: demoToken })).body;
  t.true(d.some((c: { email: string }) => c.email === MAXXO_FRIEND.email));
  const friendToken = await maxxoToken(url, MAXXO_FRIEND.email, MAXXO_FRIEND.password);
  const f = (await maxxoCall(url, 'GET', 'contacts/list', { token: friendToken })).body;
  t.true(f.some((c: { email: string; fullname: string }) => c.email === MAXXO_DEMO.email && c.fullname === 'Demo User'));
});

test('notifications: CONTACT_REQUEST for the added user; update marks read; 202 per-id errors', async (t) => {
  const a = await fresh();
  const b = await fresh();
  const other = await fresh();
  await maxxoCall(url, 'POST', 'contacts/add', { token: a.token, form: { 'email[]': b.email } });
  await maxxoCall(url, 'POST', 'contacts/add', { token: other.token, form: { 'email[]': [b.email, a.email] } });
  const nb = (await maxxoCall(url, 'GET', 'notifications/list', { token: b.token })).body;
  t.deepEqual(nb.map((n: { type: string; email: string }) => [n.type, n.email]), [['CONTACT_REQUEST', a.email], ['CONTACT_REQUEST', other.email]]);
  t.true(nb.every((n: { id: unknown }) => Number.isInteger(n.id)));
  t.deepEqual((await maxxoCall(url, 'GET', 'notifications/list', { token: a.token })).body.map((n: { email: string }) => n.email), [other.email]);
  const up = (ids: Array<string | number>, token = b.token) =>
    maxxoCall(url, 'POST', 'notifications/update', { token, form: { 'id[]': ids.map(String) } });
  t.deepEqual(await up([nb[0].id]).then((r) => [r.status, r.body]), [200, []]);
  t.deepEqual((await maxxoCall(url, 'GET', 'notifications/list', { token: b.token })).body.map((n: { id: number }) => n.id), [nb[1].id]);
  const mixed = await up([nb[0].id, 99999999, nb[1].id]);
  t.is(mixed.status, 202);
  t.deepEqual(mixed.body, [{ id: nb[0].id, error: 'NOTIFICATION_ALREADY_READ' }, { id: 99999999, error: 'NOTIFICATION_NOT_FOUND' }]);
  // Someone else's notification is not found (and stays unread for its owner).
  const aN = (await maxxoCall(url, 'GET', 'notifications/list', { token: a.token })).body[0];
  const stolen = await up([aN.id], b.token);
  t.deepEqual([stolen.status, stolen.body], [202, [{ id: aN.id, error: 'NOTIFICATION_NOT_FOUND' }]]);
  t.is((await maxxoCall(url, 'GET', 'notifications/list', { token: a.token })).body.length, 1);
  t.is((await maxxoCall(url, 'POST', 'notifications/update', { token: b.token })).status, 400);
  t.is((await up(['abc'])).status, 202);
});

test('invite: email[] one or many; INVALID_EMAIL; missing -> 400', async (t) => {
  const ok = await maxxoCall(url, 'POST', 'invite', { token: demoToken, form: { 'email[]': ['new.friend@example.com', 'other@example.org'] } });
  t.deepEqual([ok.status, ok.body], [200, {}]);
  t.is((await maxxoCall(url, 'POST', 'invite', { token: demoToken, form: { 'email[]': 'solo@example.com' } })).status, 200);
  const inv = await maxxoCall(url, 'POST', 'invite', { token: demoToken, form: { 'email[]': ['good@example.com', 'not an email'] } });
  t.deepEqual([inv.status, inv.body], [400, { error: 'INVALID_EMAIL' }]);
  t.is((await maxxoCall(url, 'POST', 'invite', { token: demoToken })).status, 400);
});

// ---------- robustness ----------

test('no crash on odd input: JSON and multipart bodies, huge and odd values, unparsable bodies', async (t) => {
  const u = await fresh();
  put(u.folder, 'a.txt', 'a');
  const bodies: Array<[string, string, Record<string, string>]> = [
    ['ops/filesize', '{"files":["a.txt","b"]}', { 'content-type': 'application/json' }],
    ['ops/filesize', '{"files":', { 'content-type': 'application/json' }],
    ['ops/move', '{"source":{"x":1},"destination":[1,2]}', { 'content-type': 'application/json' }],
    ['ops/delete', 'file[]=%E0%A4%A', { 'content-type': 'application/x-www-form-urlencoded' }],
    ['ops/send', 'source=%5B%7B%22path%22%3A5%7D%5D&to=x', { 'content-type': 'text/plain' }],
    ['inbox/update', 'messages=%7B%7D', {}],
    ['inbox/update', 'messages=[1,2]', { 'content-type': 'application/x-www-form-urlencoded' }],
    ['notifications/update', '--x\r\n', { 'content-type': 'multipart/form-data; boundary=x' }],
    ['ops/filesize', 'garbage', { 'content-type': 'multipart/form-data' }],
    ['user-photo/update', '--b\r\nContent-Disposition: form-data; name="photo"; filename="a.png"\r\n\r\nabc',
      { 'content-type': 'multipart/form-data; boundary=b' }],
    ['ops/filesize', '{"__proto__":{"x":1},"files":["a"]}', { 'content-type': 'application/json' }],
    ['ops/filesize', 'null', { 'content-type': 'application/json' }],
    ['settings/update', 'x'.repeat(2 * 1024 * 1024), { 'content-type': 'application/octet-stream' }],
  ];
  for (const [path, body, headers] of bodies) {
    const r = await fetch(`${url}/api/1/${path}`, { method: 'POST', headers: { ...headers, token: u.token }, body });
    const b = await r.json() as { error?: string };
    t.true(r.status < 500, `${path} ${body.slice(0, 30)} -> ${r.status}`);
    if (r.status >= 400) t.is(typeof b.error, 'string');
    t.false(JSON.stringify(b).includes(em.ctx.opts.dataDir));
  }
  const json = await fetch(`${url}/api/1/ops/filesize`, {
    method: 'POST', headers: { 'content-type': 'application/json', token: u.token }, body: '{"files":["a.txt","b"]}',
  });
  t.deepEqual(await json.json(), [{ file: 'a.txt', size: 1, type: 'f' }, { file: 'b', size: -1 }]);
  const fd = new FormData();
  fd.append('files[]', 'a.txt');
  const mp = await maxxoCall(url, 'POST', 'ops/filesize', { token: u.token, multipart: fd });
  t.deepEqual(mp.body, [{ file: 'a.txt', size: 1, type: 'f' }]);
});
