// Maxxo send -> inbox -> accept/decline: copies at send time, destinations, quotas, accept_all,
// the per-id 202 errors of inbox/update, and the ERR_UNKNOWN wrapper.
import test from 'ava';
import { mkdirSync, writeFileSync, readFileSync, existsSync, rmSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startEmulator, maxxoToken, maxxoCall, MAXXO_DEMO, MAXXO_FRIEND } from '../helpers/emulator.js';
import { createMaxxoUser, maxxoUserFolder } from '../../src/emulator/maxxo/index.js';
import type { Emulator } from '../../src/emulator/server.js';

let em: Emulator;
let url: string;

test.before(async () => {
  em = await startEmulator({ rsync: false });
  url = em.url;
});
test.after.always(async () => { await em?.close(); });

let seq = 0;
async function fresh(opts: { quota?: number; receivingQuota?: number; acceptAll?: boolean } = {}) {
  const email = `send${++seq}-${process.pid}@maxxo.test`;
  const password = 'secret-password';
  createMaxxoUser(em.ctx, { email, password, fullname: `Send User ${seq}`, ...opts });
  const token = await maxxoToken(url, email, password);
  return { email, password, token, folder: maxxoUserFolder(em.ctx, email) };
}
type U = Awaited<ReturnType<typeof fresh>>;

function put(folder: string, rel: string, content: string | Buffer): void {
  const p = join(folder, rel);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, content);
}

const send = (from: U, to: string, source: unknown) =>
  maxxoCall(url, 'POST', 'ops/send', { token: from.token, form: { source: JSON.stringify(source), to } });
const inbox = async (u: U) => (await maxxoCall(url, 'GET', 'inbox/list', { token: u.token })).body;
const update = (u: U, messages: unknown) =>
  maxxoCall(url, 'POST', 'inbox/update', { token: u.token, form: { messages: typeof messages === 'string' ? messages : JSON.stringify(messages) } });
const quota = async (u: U) => (await maxxoCall(url, 'GET', 'account/quota', { token: u.token })).body;

test('send a file: inbox shows it (spec fields); accept puts it in the receiver folder; content copied at send time', async (t) => {
  const a = await fresh();
  const b = await fresh();
  put(a.folder, 'docs/report.txt', 'original content');
  const r = await send(a, b.email, [{ path: 'docs', files: ['report.txt'] }]);
  t.deepEqual([r.status, r.body], [200, {}]);
  // The sender changes and then deletes the file: the receiver still gets what was sent.
  writeFileSync(join(a.folder, 'docs/report.txt'), 'changed afterwards');
  rmSync(join(a.folder, 'docs/report.txt'));
  const msgs = await inbox(b);
  t.is(msgs.length, 1);
  const m = msgs[0];
  t.deepEqual(Object.keys(m).sort(), ['destination', 'id', 'sender_email', 'sender_name', 'size', 'timestamp', 'type']);
  t.like(m, { type: 'SEND', destination: 'report.txt', size: String('original content'.length), sender_email: a.email });
  t.is(m.sender_name, `Send User ${Number(a.email.match(/^send(\d+)/)![1])}`);
  t.regex(m.timestamp, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00$/);
  t.true(Number.isInteger(m.id));
  t.deepEqual(await inbox(a), [], 'the sender has no message');
  const acc = await update(b, [{ id: m.id, accept: 'YES' }]);
  t.deepEqual([acc.status, acc.body], [200, []]);
  t.is(readFileSync(join(b.folder, 'report.txt'), 'utf8'), 'original content');
  t.deepEqual(await inbox(b), []);
  t.is((await quota(b)).received, 'original content'.length);
  const again = await update(b, [{ id: m.id, accept: 'YES' }]);
  t.deepEqual([again.status, again.body], [202, [{ id: m.id, error: 'MESSAGE_ALREADY_READ' }]]);
});

test('send a folder with listed files (sub-folders kept) and a non-folder entry with several files', async (t) => {
  const a = await fresh();
  const b = await fresh();
  put(a.folder, 'path/to/folder3/file1.ext', '1');
  put(a.folder, 'path/to/folder3/sub-folder1/file2.ext', '22');
  put(a.folder, 'path/to/folder3/file3.ext', '333');
  put(a.folder, 'path/to/folder3/not-sent.ext', 'nope');
  put(a.folder, 'path/to/folder1/x.txt', 'x');
  put(a.folder, 'path/to/folder1/y.txt', 'yy');
  const r = await send(a, b.email, [
    { path: 'path/to/folder3', files: ['file1.ext', 'sub-folder1/file2.ext', 'file3.ext'], folder: true },
    { path: 'path/to/folder1', files: ['x.txt', 'y.txt'] },
  ]);
  t.is(r.status, 200);
  const msgs = await inbox(b);
  t.deepEqual(msgs.map((m: { destination: string; size: string }) => [m.destination, m.size]).sort(),
    [['folder3', '6'], ['x.txt', '1'], ['y.txt', '2']]);
  const res = await update(b, msgs.map((m: { id: number }) => ({ id: m.id, accept: 'YES' })));
  t.deepEqual([res.status, res.body], [200, []]);
  const ls = (await maxxoCall(url, 'GET', 'ops/list', { token: b.token, query: { path: 'folder3' } })).body;
  t.deepEqual(ls.map((e: { file: string }) => e.file), ['folder3/file1.ext', 'folder3/file3.ext', 'folder3/sub-folder1']);
  t.is(readFileSync(join(b.folder, 'folder3/sub-folder1/file2.ext'), 'utf8'), '22');
  t.is(readFileSync(join(b.folder, 'y.txt'), 'utf8'), 'yy');
  t.is((await quota(b)).received, 9);
});

test('send a whole folder (no files listed) and a file by its own path', async (t) => {
  const a = await fresh();
  const b = await fresh();
  put(a.folder, 'Album/one.jpg', 'one');
  put(a.folder, 'Album/deep/two.jpg', 'two!');
  put(a.folder, 'single.txt', 'single');
  t.is((await send(a, b.email, [{ path: 'Album', files: [], folder: true }, { path: 'single.txt' }])).status, 200);
  const msgs = await inbox(b);
  t.deepEqual(msgs.map((m: { destination: string; size: string }) => [m.destination, m.size]).sort(), [['Album', '7'], ['single.txt', '6']]);
  await update(b, msgs.map((m: { id: number }) => ({ id: m.id, accept: 'yes' })));
  t.is(readFileSync(join(b.folder, 'Album/deep/two.jpg'), 'utf8'), 'two!');
  t.is(readFileSync(join(b.folder, 'single.txt'), 'utf8'), 'single');
});

test('accepting onto a taken name keeps both: "name (2).ext"', async (t) => {
  const a = await fresh();
  const b = await fresh();
  put(a.folder, 'notes.txt', 'from a');
  put(b.folder, 'notes.txt', 'b own');
  await send(a, b.email, [{ path: '', files: ['notes.txt'] }]);
  await send(a, b.email, [{ path: '', files: ['notes.txt'] }]);
  const msgs = await inbox(b);
  t.is(msgs.length, 2);
  t.is((await update(b, msgs.map((m: { id: number }) => ({ id: m.id, accept: 'YES' })))).status, 200);
  t.deepEqual(readdirSync(b.folder).sort(), ['notes (2).txt', 'notes (3).txt', 'notes.txt']);
  t.is(readFileSync(join(b.folder, 'notes.txt'), 'utf8'), 'b own');
  t.is(readFileSync(join(b.folder, 'notes (2).txt'), 'utf8'), 'from a');
});

test('decline (NO or no accept): nothing arrives; then MESSAGE_ALREADY_READ; unknown or foreign ids -> MESSAGE_NOT_FOUND', async (t) => {
  const a = await fresh();
  const b = await fresh();
  const c = await fresh();
  put(a.folder, 'f1.txt', '1');
  put(a.folder, 'f2.txt', '2');
  put(a.folder, 'f3.txt', '3');
  await send(a, b.email, [{ path: '', files: ['f1.txt', 'f2.txt'] }]);
  await send(a, c.email, [{ path: '', files: ['f3.txt'] }]);
  const [m2, m1] = await inbox(b); // newest first
  const [mc] = await inbox(c);
  t.is(m1.destination, 'f1.txt');
  const r = await update(b, [{ id: m1.id, accept: 'NO' }, { id: m2.id }]);
  t.deepEqual([r.status, r.body], [200, []]);
  t.deepEqual(readdirSync(b.folder), []);
  t.deepEqual(await inbox(b), []);
  const mixed = await update(b, [{ id: m1.id, accept: 'YES' }, { id: 987654321, accept: 'YES' }, { id: mc.id, accept: 'YES' }, { id: 'abc' }]);
  t.is(mixed.status, 202);
  t.deepEqual(mixed.body, [
    { id: m1.id, error: 'MESSAGE_ALREADY_READ' }, { id: 987654321, error: 'MESSAGE_NOT_FOUND' },
    { id: mc.id, error: 'MESSAGE_NOT_FOUND' }, { id: 'abc', error: 'MESSAGE_NOT_FOUND' },
  ]);
  t.is((await inbox(c)).length, 1, "c's message untouched by b");
  t.false(existsSync(join(b.folder, 'f3.txt')));
});

test('inbox/update: bad JSON, not an array, non-object entries, missing -> METHOD_BAD_REQUEST', async (t) => {
  const b = await fresh();
  for (const m of ['not json', '{"id":1}', '[1,2]', '[null]', '']) {
    const r = await update(b, m);
    t.deepEqual([r.status, r.body], [400, { error: 'METHOD_BAD_REQUEST' }], m);
  }
  t.is((await maxxoCall(url, 'POST', 'inbox/update', { token: b.token })).status, 400);
  t.deepEqual((await update(b, [])).body, []);
});

test('ops/send errors: unknown receiver, bad source JSON, missing params -> 400; missing file -> FILE_NOT_FOUND; nothing sent', async (t) => {
  const a = await fresh();
  const b = await fresh();
  put(a.folder, 'ok.txt', 'ok');
  const cases: Array<[unknown, string, number, string]> = [
    [[{ path: '', files: ['ok.txt'] }], 'nobody@maxxo.test', 400, 'METHOD_BAD_REQUEST'],
    ['not json', b.email, 400, 'METHOD_BAD_REQUEST'],
    [{ path: '' }, b.email, 400, 'METHOD_BAD_REQUEST'],
    [[{ files: ['ok.txt'] }], b.email, 400, 'METHOD_BAD_REQUEST'],
    [[{ path: '', files: [1] }], b.email, 400, 'METHOD_BAD_REQUEST'],
    [[], b.email, 400, 'METHOD_BAD_REQUEST'],
    [[{ path: '../', files: ['x'] }], b.email, 400, 'METHOD_BAD_REQUEST'],
    [[{ path: '', files: ['../../friend/Hello from Friend.txt'] }], b.email, 400, 'METHOD_BAD_REQUEST'],
    [[{ path: '', files: ['ok.txt'] }, { path: '', files: ['missing.txt'] }], b.email, 404, 'FILE_NOT_FOUND'],
    [[{ path: 'no-folder', files: [], folder: true }], b.email, 404, 'FILE_NOT_FOUND'],
    [[{ path: 'ok.txt', folder: true }], b.email, 400, 'METHOD_BAD_REQUEST'],
  ];
  for (const [source, to, status, code] of cases) {
    const r = await maxxoCall(url, 'POST', 'ops/send', {
      token: a.token, form: { source: typeof source === 'string' ? source : JSON.stringify(source), to },
    });
    t.deepEqual([r.status, r.body], [status, { error: code }], JSON.stringify(source));
  }
  t.is((await maxxoCall(url, 'POST', 'ops/send', { token: a.token, form: { to: b.email } })).status, 400);
  t.is((await maxxoCall(url, 'POST', 'ops/send', { token: a.token, form: { source: '[{"path":"ok.txt"}]' } })).status, 400);
  t.deepEqual(await inbox(b), [], 'no partial send');
});

test('QUOTA_EXCEEDED: storage quota of the receiver; the message stays in the inbox', async (t) => {
  const a = await fresh();
  const b = await fresh({ quota: 1000 });
  put(a.folder, 'big.bin', Buffer.alloc(900));
  put(b.folder, 'mine.bin', Buffer.alloc(200));
  await send(a, b.email, [{ path: '', files: ['big.bin'] }]);
  const [m] = await inbox(b);
  const r = await update(b, [{ id: m.id, accept: 'YES' }]);
  t.deepEqual([r.status, r.body], [202, [{ id: m.id, error: 'QUOTA_EXCEEDED' }]]);
  t.is((await inbox(b)).length, 1);
  t.false(existsSync(join(b.folder, 'big.bin')));
  t.is((await quota(b)).received, 0);
  // Room made: now it fits.
  rmSync(join(b.folder, 'mine.bin'));
  t.deepEqual((await update(b, [{ id: m.id, accept: 'YES' }])).body, []);
  t.is((await quota(b)).normal, 900);
});

test('QUOTA_EXCEEDED: monthly receiving quota', async (t) => {
  const a = await fresh();
  const b = await fresh({ receivingQuota: 1500 });
  put(a.folder, 'k.bin', Buffer.alloc(1000));
  await send(a, b.email, [{ path: '', files: ['k.bin'] }]);
  await send(a, b.email, [{ path: '', files: ['k.bin'] }]);
  const msgs = await inbox(b);
  const r = await update(b, msgs.map((m: { id: number }) => ({ id: m.id, accept: 'YES' })));
  t.is(r.status, 202);
  t.deepEqual(r.body, [{ id: msgs[1].id, error: 'QUOTA_EXCEEDED' }]);
  t.deepEqual(await quota(b), { quota: 10 * 1024 * 1024 * 1024, normal: 1000, receiving_quota: 1500, received: 1000 });
});

test('accept_all: delivered on arrival; one that does not fit waits in the inbox', async (t) => {
  const a = await fresh();
  const b = await fresh({ acceptAll: true, quota: 100 });
  put(a.folder, 'small.txt', 'small');
  put(a.folder, 'large.bin', Buffer.alloc(500));
  t.is((await send(a, b.email, [{ path: '', files: ['small.txt'] }])).status, 200);
  t.is(readFileSync(join(b.folder, 'small.txt'), 'utf8'), 'small');
  t.deepEqual(await inbox(b), []);
  t.is((await send(a, b.email, [{ path: '', files: ['large.bin'] }])).status, 200);
  const waiting = await inbox(b);
  t.deepEqual(waiting.map((m: { destination: string }) => m.destination), ['large.bin']);
  // Turned on through settings/update as well.
  const c = await fresh();
  await maxxoCall(url, 'POST', 'settings/update', { token: c.token, form: { accept_all: '1' } });
  await send(a, c.email, [{ path: '', files: ['small.txt'] }]);
  t.true(existsSync(join(c.folder, 'small.txt')));
});

test('demo -> friend: sending between the demo accounts works', async (t) => {
  const demo = { token: await maxxoToken(url) } as U;
  const friend = { token: await maxxoToken(url, MAXXO_FRIEND.email, MAXXO_FRIEND.password) } as U;
  const r = await send(demo, MAXXO_FRIEND.email, [{ path: 'Documents', files: ['Café Menü.txt'] }]);
  t.is(r.status, 200);
  const msgs = (await inbox(friend)).filter((m: { sender_email: string }) => m.sender_email === MAXXO_DEMO.email);
  t.true(msgs.some((m: { destination: string }) => m.destination === 'Café Menü.txt'));
});

test('FILE_NOT_FOUND on accept when the sent content vanished from the server', async (t) => {
  const a = await fresh();
  const b = await fresh();
  put(a.folder, 'gone.txt', 'x');
  await send(a, b.email, [{ path: '', files: ['gone.txt'] }]);
  const [m] = await inbox(b);
  rmSync(join(em.ctx.filesDir, 'maxxo-holding', String(m.id)), { recursive: true, force: true });
  const r = await update(b, [{ id: m.id, accept: 'YES' }]);
  t.deepEqual([r.status, r.body], [202, [{ id: m.id, error: 'FILE_NOT_FOUND' }]]);
  t.deepEqual((await update(b, [{ id: m.id, accept: 'NO' }])).body, [], 'it can still be declined');
});

test('an unexpected server failure answers ERR_UNKNOWN 500 without details', async (t) => {
  const local = await startEmulator({ rsync: false, demo: false });
  t.teardown(() => local.close());
  const email = 'err@maxxo.test';
  createMaxxoUser(local.ctx, { email, password: 'secret-password' });
  createMaxxoUser(local.ctx, { email: 'err2@maxxo.test', password: 'secret-password' });
  const token = await maxxoToken(local.url, email, 'secret-password');
  put(maxxoUserFolder(local.ctx, email), 'x.txt', 'x');
  // The holding area replaced by a file: copying into it fails in a way no handler expects.
  const holding = join(local.ctx.filesDir, 'maxxo-holding');
  rmSync(holding, { recursive: true, force: true });
  writeFileSync(holding, 'not a folder');
  const r = await maxxoCall(local.url, 'POST', 'ops/send', { token, form: { source: '[{"path":"x.txt"}]', to: 'err2@maxxo.test' } });
  t.deepEqual([r.status, r.body], [500, { error: 'ERR_UNKNOWN' }]);
  const token2 = await maxxoToken(local.url, 'err2@maxxo.test', 'secret-password');
  t.deepEqual((await maxxoCall(local.url, 'GET', 'inbox/list', { token: token2 })).body, [], 'failed send leaves no message');
});
