// Every `cloudmount maxxo ...` command against the Maxxo reference server: a success and a failure each.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEmulator } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import { cli, makeHome, type Home } from './helpers.js';

let emu: Emulator;
let h: Home;
test.before(async () => { emu = await startEmulator(); h = makeHome(); });
test.after.always(async () => { await emu?.close(); });

const as = (email: string, password: string) => ({ ...h.env, CLOUDMOUNT_PASSWORD: password, _EMAIL: email });
const demo = () => as('demo@maxxo.test', 'demo-password');
const friend = () => as('friend@maxxo.test', 'friend-password');
function mx(env: NodeJS.ProcessEnv, ...args: string[]) {
  return cli(['maxxo', ...args, '--server', emu.url, '--email', env._EMAIL!], { env });
}
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64');

test('quota: table and JSON; a wrong password fails', async (t) => {
  const r = await mx(demo(), 'quota');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /storage:\s+\S+ used of \S+ \(\d+ \/ \d+ bytes\)/);
  const j = JSON.parse((await mx(demo(), 'quota', '--json')).stdout);
  t.true(j.quota > 0 && j.normal >= 0);
  const bad = await mx(as('demo@maxxo.test', 'nope'), 'quota');
  t.is(bad.code, 1);
  t.regex(bad.stderr, /login failed.*AUTH_FAILED/);
});

test.serial('send a folder and a file; the receiver sees them in the inbox, accepts one, declines one', async (t) => {
  const miss = await mx(demo(), 'send', 'no/such/file.txt', '--to', 'friend@maxxo.test');
  t.is(miss.code, 1);
  t.regex(miss.stderr, /no such file or folder/);
  const noTo = await mx(demo(), 'send', 'Documents');
  t.is(noTo.code, 2);
  const nobody = await mx(demo(), 'send', 'Documents', '--to', 'nobody@maxxo.test');
  t.is(nobody.code, 1);
  t.regex(nobody.stderr, /METHOD_BAD_REQUEST/);

  const s1 = await mx(demo(), 'send', 'Documents', '--to', 'friend@maxxo.test');
  t.is(s1.code, 0, s1.stderr);
  t.regex(s1.stdout, /sent Documents \(\d+ files?\) to friend@maxxo.test/);
  const s2 = await mx(demo(), 'send', 'Welcome to Maxxo.txt', '--to', 'friend@maxxo.test', '--json');
  t.is(s2.code, 0, s2.stderr);
  t.deepEqual(JSON.parse(s2.stdout).sent, [{ path: '', files: ['Welcome to Maxxo.txt'] }]);

  const inbox = await mx(friend(), 'inbox');
  t.is(inbox.code, 0);
  t.regex(inbox.stdout, /demo@maxxo.test\s+Documents/);
  const msgs = JSON.parse((await mx(friend(), 'inbox', '--json')).stdout) as Array<{ id: number; destination: string }>;
  const folder = msgs.find((m) => m.destination === 'Documents')!;
  const file = msgs.find((m) => m.destination === 'Welcome to Maxxo.txt')!;
  t.truthy(folder && file);

  const acc = await mx(friend(), 'accept', String(folder.id));
  t.is(acc.code, 0, acc.stderr);
  t.regex(acc.stdout, /accepted/);
  const again = await mx(friend(), 'accept', String(folder.id));
  t.is(again.code, 1, 'a processed message cannot be accepted twice');
  t.regex(again.stderr, new RegExp(`message ${folder.id} .*\\(MESSAGE_`));
  const dec = await mx(friend(), 'decline', String(file.id));
  t.is(dec.code, 0, dec.stderr);
  const decMissing = await mx(friend(), 'decline', '999999');
  t.is(decMissing.code, 1);
  t.regex(decMissing.stderr, /MESSAGE_NOT_FOUND/);
  const badId = await mx(friend(), 'accept', 'abc');
  t.is(badId.code, 2);
  const after = JSON.parse((await mx(friend(), 'inbox', '--json')).stdout) as unknown[];
  t.is(after.length, msgs.length - 2);
});

test.serial('contacts: list, remove, add (with the receiver notified), and their failures', async (t) => {
  const list = await mx(demo(), 'contacts', 'list');
  t.is(list.code, 0);
  t.regex(list.stdout, /friend@maxxo.test/);
  const rm = await mx(demo(), 'contacts', 'remove', 'friend@maxxo.test');
  t.is(rm.code, 0, rm.stderr);
  const rm2 = await mx(demo(), 'contacts', 'remove', 'friend@maxxo.test');
  t.is(rm2.code, 1);
  t.regex(rm2.stderr, /CONTACT_NOT_FOUND/);
  t.notRegex((await mx(demo(), 'contacts', 'list')).stdout, /friend@maxxo.test/);
  const add = await mx(demo(), 'contacts', 'add', 'friend@maxxo.test');
  t.is(add.code, 0, add.stderr);
  const filtered = JSON.parse((await mx(demo(), 'contacts', 'list', '--filter', 'friend', '--json')).stdout) as Array<{ email: string }>;
  t.deepEqual(filtered.map((c) => c.email), ['friend@maxxo.test']);
  const none = await mx(demo(), 'contacts', 'add', 'nobody@maxxo.test');
  t.is(none.code, 1);
  t.regex(none.stderr, /USER_NOT_FOUND/);
  const notEmail = await mx(demo(), 'contacts', 'add', 'not-an-email');
  t.is(notEmail.code, 2);

  // The add above is a contact request for friend.
  const notes = await mx(friend(), 'notifications', 'list');
  t.is(notes.code, 0);
  t.regex(notes.stdout, /CONTACT_REQUEST\s+demo@maxxo.test/);
  const ids = (JSON.parse((await mx(friend(), 'notifications', 'list', '--json')).stdout) as Array<{ id: number }>).map((n) => n.id);
  t.true(ids.length >= 1);
  const read = await mx(friend(), 'notifications', 'read', String(ids[0]));
  t.is(read.code, 0, read.stderr);
  const readMissing = await mx(friend(), 'notifications', 'read', '999999');
  t.is(readMissing.code, 1);
  t.regex(readMissing.stderr, /NOTIFICATION_NOT_FOUND/);
  const readAll = await mx(friend(), 'notifications', 'read', '--all');
  t.is(readAll.code, 0, readAll.stderr);
  t.deepEqual(JSON.parse((await mx(friend(), 'notifications', 'list', '--json')).stdout), []);
  const neither = await mx(friend(), 'notifications', 'read');
  t.is(neither.code, 2);
});

test('invite: success, and an address the server refuses', async (t) => {
  const r = await mx(demo(), 'invite', 'new.person@example.com', 'other@example.com');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /invited new.person@example.com, other@example.com/);
  const bad = await mx(demo(), 'invite', 'bad@@example');
  t.is(bad.code, 2);
  const server = await mx(demo(), 'invite', `${'x'.repeat(250)}@example.com`);
  t.is(server.code, 1);
  t.regex(server.stderr, /INVALID_EMAIL/);
});

test.serial('settings show/set: full name, auto-accept; a too short new password is refused', async (t) => {
  const set = await mx(demo(), 'settings', 'set', '--fullname', 'Demo Renamed', '--accept-all', 'yes');
  t.is(set.code, 0, set.stderr);
  const show = JSON.parse((await mx(demo(), 'settings', 'show', '--json')).stdout);
  t.like(show, { fullname: 'Demo Renamed', accept_all: true, email: 'demo@maxxo.test' });
  t.regex((await mx(demo(), 'settings', 'show')).stdout, /fullname:\s+Demo Renamed/);
  const short = join(h.dir, 'short-pw');
  writeFileSync(short, 'abc\n', { mode: 0o600 });
  const bad = await mx(demo(), 'settings', 'set', '--new-password-file', short);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /INVALID_NEW_PASSWORD/);
  t.is((await mx(demo(), 'settings', 'set')).code, 2, 'nothing to change');
  t.is((await mx(demo(), 'settings', 'set', '--accept-all', 'maybe')).code, 2);
  await mx(demo(), 'settings', 'set', '--fullname', 'Demo User', '--accept-all', 'no');
});

test.serial('photo set/remove: a PNG is taken, a text file is not', async (t) => {
  const png = join(h.dir, 'me.png');
  writeFileSync(png, PNG);
  const set = await mx(demo(), 'photo', 'set', png);
  t.is(set.code, 0, set.stderr);
  t.regex(set.stdout, /photo updated/);
  const withPhoto = JSON.parse((await mx(demo(), 'settings', 'show', '--json')).stdout);
  t.true(withPhoto.photo.length > 0);
  const txt = join(h.dir, 'me.txt');
  writeFileSync(txt, 'not a picture');
  const bad = await mx(demo(), 'photo', 'set', txt);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /INVALID_PHOTO/);
  const missing = await mx(demo(), 'photo', 'set', join(h.dir, 'nope.png'));
  t.is(missing.code, 1);
  const rm = await mx(demo(), 'photo', 'remove');
  t.is(rm.code, 0, rm.stderr);
  t.is(JSON.parse((await mx(demo(), 'settings', 'show', '--json')).stdout).photo, '');
  const rmBad = await mx(as('demo@maxxo.test', 'wrong'), 'photo', 'remove');
  t.is(rmBad.code, 1);
});

test('account selection: no account given, or two saved ones, is a usage error', async (t) => {
  const home = makeHome();
  const none = await cli(['maxxo', 'quota'], { env: home.env });
  t.is(none.code, 2);
  t.regex(none.stderr, /no maxxo account given/);
  for (const n of ['a', 'b']) {
    t.is((await cli(['login', n, '--kind', 'maxxo', '--server', emu.url, '--email', 'demo@maxxo.test', '--password-file', home.pwFile('demo-password')], { env: home.env })).code, 0);
  }
  const two = await cli(['maxxo', 'quota'], { env: home.env });
  t.is(two.code, 2);
  t.regex(two.stderr, /several saved maxxo accounts \(a, b\)/);
  t.is((await cli(['maxxo', 'quota', '--account', 'b'], { env: home.env })).code, 0);
  const mixed = await cli(['maxxo', 'quota', '--account', 'b', '--server', emu.url], { env: home.env });
  t.is(mixed.code, 2);
  const wrongKind = await cli(['vboxx', 'info', '--account', 'a'], { env: home.env });
  t.is(wrongKind.code, 2);
  t.regex(wrongKind.stderr, /is a maxxo account, not vboxx/);
});
