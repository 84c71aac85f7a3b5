// MaxxoClient against the Maxxo reference server: every endpoint on success and on its error codes.
import test from 'ava';
import { mkdtempSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { startEmulator } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import { createMaxxoUser, maxxoUserFolder } from '../../src/emulator/maxxo/index.js';
import { MaxxoClient } from '../../src/remote/maxxo/index.js';
import { RemoteError, AuthFailed } from '../../src/errors.js';
import { FileNotFound, MethodBadRequest, UserNotFound, ContactNotFound, InvalidEmail,
  EmailAlreadyExist, WrongCurrentPassword, InvalidNewPassword, InvalidPhoto, MethodNotAllowed } from '../../src/remote/maxxo/errors.js';

let emu: Emulator;
let n = 0;
const tmp = mkdtempSync(join(tmpdir(), 'cm-maxxo-client-'));

test.before(async () => { emu = await startEmulator(); });
test.after.always(async () => { await emu?.close(); rmSync(tmp, { recursive: true, force: true }); });

/** A fresh account per test keeps tests independent while they run concurrently. */
function freshUser(opts: { quota?: number; receivingQuota?: number } = {}) {
  const email = `u${process.pid}-${++n}@maxxo.test`;
  const password = `pw-${n}-secret`;
  createMaxxoUser(emu.ctx, { email, password, fullname: `User ${n}`, ...opts });
  return { email, password, folder: maxxoUserFolder(emu.ctx, email) };
}

function client(email: string, password: string, extra: Record<string, unknown> = {}) {
  return new MaxxoClient({ server: emu.url, user: email, password, maxAttempts: 3, ...extra });
}

async function code(p: Promise<unknown>): Promise<string> {
  try { await p; } catch (e) { if (e instanceof RemoteError) return e.code; throw e; }
  return 'OK';
}

function png(w: number, h: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13); ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IEND', Buffer.alloc(0))]);
}

test('login: lazily on first call; AUTH_FAILED is AuthFailed, not retried, no secret in it', async (t) => {
  const u = freshUser();
  const c = client(u.email, u.password);
  t.teardown(() => c.close());
  t.false(c.loggedIn);
  t.deepEqual(await c.list('/'), []);
  t.true(c.loggedIn);
  t.is(c.logins, 1);
  const bad = client(u.email, 'wrong-password-xyz');
  t.teardown(() => bad.close());
  const before = bad.http.counters.requests;
  const e = await t.throwsAsync(bad.quota(), { instanceOf: AuthFailed });
  t.is(e!.status, 403);
  t.is(bad.http.counters.requests - before, 1);
  for (const s of [String(e), e!.message, e!.stack ?? '', JSON.stringify(e)]) t.false(s.includes('wrong-password-xyz'));
  t.false(JSON.stringify(c).includes(u.password));
  const unknown = client('nobody@maxxo.test', 'x');
  t.teardown(() => unknown.close());
  t.is(await code(unknown.login()), 'AUTH_FAILED');
});

test('ops/list, ops/filesize (batched, -1, types), errors', async (t) => {
  const u = freshUser();
  writeFileSync(join(u.folder, 'a b.txt'), 'hello');
  const c = client(u.email, u.password);
  t.teardown(() => c.close());
  t.deepEqual(await c.list('/'), [{ file: 'a b.txt', size: 5, type: 'f' }]);
  t.is(await code(c.list('missing')), 'FILE_NOT_FOUND');
  await t.throwsAsync(c.list('missing'), { instanceOf: FileNotFound });
  t.is(await code(c.list('a b.txt')), 'METHOD_BAD_REQUEST');
  t.is(await code(c.list('../x')), 'METHOD_BAD_REQUEST');
  const paths = Array.from({ length: 450 }, (_, i) => (i === 7 ? 'a b.txt' : `none-${i}`));
  const before = c.http.counters.requests;
  const rows = await c.filesize(paths);
  t.is(c.http.counters.requests - before, 3); // 200 per request
  t.is(rows.length, 450);
  t.deepEqual(rows[7], { file: 'a b.txt', size: 5, type: 'f' });
  t.is(rows[8]!.size, -1);
  t.is(rows[449]!.file, 'none-449');
  t.is(await code(c.filesize(['../../etc/passwd'])), 'METHOD_BAD_REQUEST');
});

test('ops/move and ops/delete: success and errors', async (t) => {
  const u = freshUser();
  writeFileSync(join(u.folder, 'f.txt'), 'x');
  const c = client(u.email, u.password);
  t.teardown(() => c.close());
  await c.move('f.txt', 'g ü.txt');
  t.true(existsSync(join(u.folder, 'g ü.txt')));
  t.is(await code(c.move('f.txt', 'h.txt')), 'FILE_NOT_FOUND');
  t.is(await code(c.move('g ü.txt', 'no/such/dir.txt')), 'FILE_NOT_FOUND');
  await t.throwsAsync(c.move('/', 'x'), { instanceOf: MethodBadRequest });
  await c.delete(['g ü.txt']);
  t.false(existsSync(join(u.folder, 'g ü.txt')));
  t.is(await code(c.delete(['g ü.txt'])), 'FILE_NOT_FOUND');
  t.is(await code(c.delete(['/'])), 'METHOD_BAD_REQUEST');
});

test('slice: login, address, port; the rsync password is not enumerable', async (t) => {
  const u = freshUser();
  const c = client(u.email, u.password);
  t.teardown(() => c.close());
  const s = await c.slice();
  t.is(s.ip, emu.ctx.rsync!.host);
  t.is(s.port, emu.ctx.rsync!.port);
  t.regex(s.login, /^[A-Za-z0-9_.-]+$/);
  t.true(s.rsync.length > 0);
  t.false(JSON.stringify(s).includes(s.rsync));
});

test('contacts add/list/remove and their errors', async (t) => {
  const a = freshUser();
  const b = freshUser();
  const c = client(a.email, a.password);
  t.teardown(() => c.close());
  t.deepEqual(await c.contactsAdd([b.email]), { alreadyContact: false });
  t.deepEqual(await c.contactsAdd([b.email]), { alreadyContact: true });
  t.is(await code(c.contactsAdd(['nobody-here@maxxo.test'])), 'USER_NOT_FOUND');
  await t.throwsAsync(c.contactsAdd(['nobody-here@maxxo.test']), { instanceOf: UserNotFound });
  t.is(await code(c.contactsAdd([a.email])), 'METHOD_BAD_REQUEST');
  const list = await c.contactsList();
  t.deepEqual(list.map((x) => x.email), [b.email]);
  t.deepEqual(await c.contactsList('no-match-zzz'), []);
  t.is((await c.contactsList(b.email.slice(0, 6))).length, 1);
  await c.contactsRemove(b.email);
  await t.throwsAsync(c.contactsRemove(b.email), { instanceOf: ContactNotFound });
});

test('quota, settings list/update (all error codes), password change keeps re-login working', async (t) => {
  const a = freshUser({ quota: 5 * 1024 * 1024 });
  const b = freshUser();
  writeFileSync(join(a.folder, 'x.bin'), Buffer.alloc(1000));
  const c = client(a.email, a.password);
  t.teardown(() => c.close());
  const q = await c.quota();
  t.is(q.quota, 5 * 1024 * 1024);
  t.is(q.normal, 1000);
  t.is(typeof q.receiving_quota, 'number');
  const s = await c.settingsList();
  t.is(s.email, a.email);
  t.is(s.storage, 5);
  t.false(s.accept_all);
  await c.settingsUpdate({ fullname: 'New Name', acceptAll: true });
  const s2 = await c.settingsList();
  t.is(s2.fullname, 'New Name');
  t.true(s2.accept_all);
  await t.throwsAsync(c.settingsUpdate({ email: 'not an email' }), { instanceOf: InvalidEmail });
  await t.throwsAsync(c.settingsUpdate({ email: b.email }), { instanceOf: EmailAlreadyExist });
  await t.throwsAsync(c.settingsUpdate({ currentPassword: 'wrong', newPassword: 'whatever123' }), { instanceOf: WrongCurrentPassword });
  await t.throwsAsync(c.settingsUpdate({ currentPassword: a.password, newPassword: 'x' }), { instanceOf: InvalidNewPassword });
  t.is(await code(c.settingsUpdate({})), 'METHOD_BAD_REQUEST');
  await c.settingsUpdate({ currentPassword: a.password, newPassword: 'brand-new-pass' });
  // Revoke every token: the client logs in again with the new password.
  emu.ctx.db.prepare('DELETE FROM maxxo_tokens').run();
  t.is((await c.quota()).normal, 1000);
  t.is(c.logins, 2);
});

test('user photo update (multipart from a file) / remove; INVALID_PHOTO', async (t) => {
  const a = freshUser();
  const c = client(a.email, a.password);
  t.teardown(() => c.close());
  const good = join(tmp, 'me.png');
  writeFileSync(good, png(64, 48));
  const r = await c.photoUpdate(good);
  t.regex(r.photo ?? '', /\/photos\//);
  t.regex((await c.settingsList()).photo, /\/photos\/.+\.png$/);
  const bad = join(tmp, 'not-a-photo.png');
  writeFileSync(bad, 'plain text');
  await t.throwsAsync(c.photoUpdate(bad), { instanceOf: InvalidPhoto });
  const huge = join(tmp, 'huge.png');
  writeFileSync(huge, png(5000, 5000));
  t.is(await code(c.photoUpdate(huge)), 'INVALID_PHOTO');
  const big = join(tmp, 'big.png');
  writeFileSync(big, Buffer.alloc(3 * 1024 * 1024));
  t.is(await code(c.photoUpdate(big)), 'INVALID_PHOTO');
  await c.photoRemove();
  t.is((await c.settingsList()).photo, '');
});

test('notifications list/update with partial 202 failures', async (t) => {
  const a = freshUser();
  const b = freshUser();
  const ca = client(a.email, a.password);
  const cb = client(b.email, b.password);
  t.teardown(() => Promise.all([ca.close(), cb.close()]));
  await cb.contactsAdd([a.email]);
  const list = await ca.notificationsList();
  t.is(list.length, 1);
  t.is(list[0]!.email, b.email);
  t.is(list[0]!.type, 'CONTACT_REQUEST');
  t.deepEqual(await ca.notificationsUpdate([list[0]!.id]), []);
  t.deepEqual(await ca.notificationsList(), []);
  const failed = await ca.notificationsUpdate([list[0]!.id, 999999]);
  t.deepEqual(failed, [{ id: list[0]!.id, error: 'NOTIFICATION_ALREADY_READ' }, { id: 999999, error: 'NOTIFICATION_NOT_FOUND' }]);
});

test('invite: success and INVALID_EMAIL', async (t) => {
  const a = freshUser();
  const c = client(a.email, a.password);
  t.teardown(() => c.close());
  await c.invite(['someone@example.com', 'other@example.com']);
  t.is(await code(c.invite(['bad address'])), 'INVALID_EMAIL');
  t.is(await code(c.invite([])), 'METHOD_BAD_REQUEST');
});

test('send + inbox list/update: accept, decline, partial failures incl. QUOTA_EXCEEDED', async (t) => {
  const a = freshUser();
  const b = freshUser({ quota: 1000 });
  writeFileSync(join(a.folder, 'small.txt'), 'small');
  writeFileSync(join(a.folder, 'big.bin'), Buffer.alloc(5000));
  const ca = client(a.email, a.password);
  const cb = client(b.email, b.password);
  t.teardown(() => Promise.all([ca.close(), cb.close()]));
  await ca.send([{ path: '', files: ['small.txt', 'big.bin'] }], b.email);
  t.is(await code(ca.send([{ path: '', files: ['missing.txt'] }], b.email)), 'FILE_NOT_FOUND');
  t.is(await code(ca.send([{ path: '', files: ['small.txt'] }], 'nobody-x@maxxo.test')), 'METHOD_BAD_REQUEST');
  const inbox = await cb.inboxList();
  t.is(inbox.length, 2);
  const small = inbox.find((m) => m.destination === 'small.txt')!;
  const big = inbox.find((m) => m.destination === 'big.bin')!;
  t.is(small.size, 5);
  t.is(small.sender_email, a.email);
  t.is(small.type, 'SEND');
  const failed = await cb.inboxUpdate([{ id: small.id, accept: true }, { id: big.id, accept: true }, { id: 424242, accept: true }]);
  t.deepEqual(failed, [{ id: big.id, error: 'QUOTA_EXCEEDED' }, { id: 424242, error: 'MESSAGE_NOT_FOUND' }]);
  t.true(existsSync(join(b.folder, 'small.txt')));
  t.deepEqual(await cb.inboxUpdate([{ id: big.id, accept: false }]), []);
  t.deepEqual(await cb.inboxList(), []);
  t.deepEqual(await cb.inboxUpdate([{ id: small.id, accept: true }]), [{ id: small.id, error: 'MESSAGE_ALREADY_READ' }]);
});

test('error mapping: wrong method -> MethodNotAllowed, unknown resource keeps the server code', async (t) => {
  const a = freshUser();
  const c = client(a.email, a.password);
  t.teardown(() => c.close());
  await t.throwsAsync(c.http.json({ method: 'POST', path: '/ops/list', form: { path: '/' } }), { instanceOf: MethodNotAllowed });
  const e = await t.throwsAsync(c.http.json({ method: 'GET', path: '/no/such/resource' }), { instanceOf: RemoteError });
  t.is(e!.code, 'METHOD_NOT_FOUND');
  t.is(e!.status, 404);
  t.is(e!.path, '/api/1/no/such/resource');
});

test('5xx after retries: typed ERR_UNKNOWN / SERVICE_UNAVAILABLE / network errors, bounded', async (t) => {
  const own = await startEmulator({ rsync: false });
  t.teardown(() => own.close());
  const c = new MaxxoClient({ server: own.url, user: 'demo@maxxo.test', password: 'demo-password', maxAttempts: 2 });
  t.teardown(() => c.close());
  await c.login();
  own.ctx.opts.failRate = 1;
  const e = await t.throwsAsync(c.quota(), { instanceOf: RemoteError });
  t.true(['ERR_UNKNOWN', 'SERVICE_UNAVAILABLE', 'NETWORK_ERROR'].includes(e!.code), e!.code);
  t.true(e!.retryable);
  own.ctx.opts.failRate = 0;
  t.true((await c.quota()).quota > 0);
});
