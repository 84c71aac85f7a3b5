// Issue 14, account commands: `maxxo send` of paths inside a mounted drive (real FUSE mounts),
// service codes as sentences naming the item, `FIELD=` clearing optional fields, and
// `admin ENTITY delete` saying the vBoxx API has none. The mounts run in CLI children; this
// process reaches them only through further children (sh), never with fs calls of its own.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator, maxxoToken } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import { run } from '../../src/util/run.js';
import { cli, makeHome, isMounted, type Home } from './helpers.js';

let emu: Emulator;
let h: Home;
test.before(async () => { emu = await startEmulator(); h = makeHome(); });
test.after.always(async () => { await emu?.close(); });

const mxEnv = (pw: string) => ({ ...h.env, CLOUDMOUNT_PASSWORD: pw });
const mx = (email: string, pw: string, args: string[], cwd?: string) =>
  cli(['maxxo', ...args, '--server', emu.url, '--email', email], { env: mxEnv(pw), ...(cwd ? { cwd } : {}) });
const demo = (args: string[], cwd?: string) => mx('demo@maxxo.test', 'demo-password', args, cwd);
const vx = (user: string, pw: string, args: string[]) => cli(['vboxx', ...args, '--server', emu.url, '--username', user], { env: mxEnv(pw) });
const admin = (...args: string[]) => vx('admin', 'admin-password', args);

async function sh(script: string, ...args: string[]) {
  return run('sh', ['-c', script, 'sh', ...args], { timeoutMs: 60_000 });
}

/** The friend's inbox straight from the server (not through the CLI under test). */
async function friendInbox(): Promise<Array<{ id: number; destination: string; size: string }>> {
  const token = await maxxoToken(emu.url, 'friend@maxxo.test', 'friend-password');
  const r = await fetch(`${emu.url}/api/1/inbox/list`, { headers: { token } });
  return (await r.json()) as Array<{ id: number; destination: string; size: string }>;
}

/** A --daemon mount of a Maxxo account; torn down (unmount, else lazy detach and kill) whatever happens. */
async function mountMaxxo(t: { teardown(fn: () => void | Promise<void>): void }, email: string, pw: string): Promise<string> {
  const mp = mkdtempSync(join(tmpdir(), 'cloudmount-send-mnt-'));
  let pid = 0;
  t.teardown(async () => {
    if (isMounted(mp)) await cli(['unmount', mp, '--force'], { env: h.env, timeoutMs: 60_000 });
    if (isMounted(mp)) spawnSync('fusermount', ['-uz', mp]);
    if (pid) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    try { rmdirSync(mp); } catch { /* busy or not empty */ }
  });
  // A long write-back delay: what the test writes is still only in the mount when send runs.
  const r = await cli(['mount', 'maxxo', mp, '--server', emu.url, '--email', email, '--daemon', '-o', 'writeback_delay=60'], { env: mxEnv(pw) });
  if (r.code !== 0) throw new Error(`mount failed: ${r.stderr}`);
  pid = Number(/pid (\d+)/.exec(r.stdout)?.[1] ?? 0);
  return mp;
}

test.serial('maxxo send: paths inside a mount of the same account are sent from the server copy once written there', async (t) => {
  const mp = await mountMaxxo(t, 'demo@maxxo.test', 'demo-password');
  const w = await sh('mkdir -p "$1/SendDir/sub" && head -c 12345 /dev/urandom > "$1/SendDir/fresh.bin" && head -c 777 /dev/urandom > "$1/SendDir/sub/b.bin"', mp);
  t.is(w.code, 0, w.stderr);

  // An absolute path through the mount, written 0.1 s ago (the upload waits 60 s by itself).
  const before = (await friendInbox()).length;
  const s1 = await demo(['send', join(mp, 'SendDir', 'fresh.bin'), '--to', 'friend@maxxo.test']);
  t.is(s1.code, 0, s1.stderr);
  t.regex(s1.stdout, /sent SendDir\/fresh\.bin \(1 file\) to friend@maxxo\.test/);
  let inbox = await friendInbox();
  t.is(inbox.length, before + 1);
  t.like(inbox.find((m) => m.destination === 'fresh.bin'), { size: '12345' });

  // A folder, relative to a working directory inside the mount: every file of it, flushed first.
  const s2 = await demo(['send', 'SendDir', '--to', 'friend@maxxo.test', '--json'], mp);
  t.is(s2.code, 0, s2.stderr);
  const sent = JSON.parse(s2.stdout).sent;
  t.is(sent[0].path, 'SendDir');
  t.deepEqual([...sent[0].files].sort(), ['fresh.bin', 'sub/b.bin']);
  inbox = await friendInbox();
  t.like(inbox.find((m) => m.destination === 'SendDir'), { size: String(12345 + 777) });

  // A path in the mount that does not exist names the local path.
  const miss = await demo(['send', join(mp, 'SendDir', 'nope.bin'), '--to', 'friend@maxxo.test']);
  t.is(miss.code, 1);
  t.regex(miss.stderr, /nope\.bin: no such file or folder in the mounted drive/);
});

test.serial('maxxo send: a path in a mount of another account is refused, naming that account', async (t) => {
  const mp = await mountMaxxo(t, 'friend@maxxo.test', 'friend-password');
  const r = await demo(['send', join(mp, 'anything.txt'), '--to', 'friend@maxxo.test']);
  t.is(r.code, 1);
  t.regex(r.stderr, /is in the drive of maxxo friend@maxxo\.test .*not of maxxo demo@maxxo\.test/);
});

test.serial('vboxx share: a path inside a mount of the account, written just before, gets a link', async (t) => {
  const mp = mkdtempSync(join(tmpdir(), 'cloudmount-share-mnt-'));
  let pid = 0;
  t.teardown(async () => {
    if (isMounted(mp)) await cli(['unmount', mp, '--force'], { env: h.env, timeoutMs: 60_000 });
    if (isMounted(mp)) spawnSync('fusermount', ['-uz', mp]);
    if (pid) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    try { rmdirSync(mp); } catch { /* busy or not empty */ }
  });
  const m = await cli(['mount', 'vboxx', mp, '--server', emu.url, '--username', 'demo', '--daemon', '-o', 'writeback_delay=60'], { env: mxEnv('demo-password') });
  t.is(m.code, 0, m.stderr);
  pid = Number(/pid (\d+)/.exec(m.stdout)?.[1] ?? 0);
  t.is((await sh('printf shared > "$1/Files/to-share.txt"', mp)).code, 0);
  const r = await vx('demo', 'demo-password', ['share', join(mp, 'Files', 'to-share.txt'), '--json']);
  t.is(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  t.is(j.path, '/Files/to-share.txt');
  t.regex(j.url, /^http:\/\/\S+\/s\/\S+$/);
});

test('maxxo send: a local file outside any mount is named as such', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloudmount-send-local-'));
  t.teardown(() => spawnSync('rm', ['-rf', dir]));
  spawnSync('sh', ['-c', 'echo hi > "$1/only-here.txt"', 'sh', dir]);
  const r = await demo(['send', 'only-here.txt', '--to', 'friend@maxxo.test'], dir);
  t.is(r.code, 1);
  t.regex(r.stderr, /only-here\.txt: not in your Maxxo drive \(a local file outside any mounted drive/);
});

test('service codes become sentences naming the item (Maxxo)', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['contacts', 'add', 'nobody@maxxo.test'], /: no Maxxo user nobody@maxxo\.test \(USER_NOT_FOUND\)$/m],
    [['contacts', 'remove', 'stranger@maxxo.test'], /: stranger@maxxo\.test is not in your contacts \(CONTACT_NOT_FOUND\)$/m],
    [['send', 'Documents', '--to', 'nobody@maxxo.test'], /cannot send to nobody@maxxo\.test: no Maxxo user nobody@maxxo\.test.*\(METHOD_BAD_REQUEST\)/],
    [['accept', '987654'], /^ {2}no message 987654 in your inbox \(MESSAGE_NOT_FOUND\)$/m],
    [['notifications', 'read', '987654'], /^ {2}no notification 987654 \(NOTIFICATION_NOT_FOUND\)$/m],
  ];
  for (const [args, re] of cases) {
    const r = await demo(args);
    t.is(r.code, 1, args.join(' '));
    t.regex(r.stderr, re, args.join(' '));
    t.notRegex(r.stderr, /([A-Z_]{6,}): \1/, 'no "CODE: CODE"');
  }
});

test('service answers become sentences naming the item (vBoxx)', async (t) => {
  const cases: Array<[() => ReturnType<typeof admin>, RegExp]> = [
    [() => admin('admin', 'person', 'get', '987654'), /: no person 987654 \(NOT_FOUND\)$/m],
    [() => admin('admin', 'root', 'update', '987654', 'name=x'), /: no root 987654 \(NOT_FOUND\)$/m],
    [() => admin('admin', 'person', 'list', '--org', '987654'), /: no organization 987654 \(NOT_FOUND\)$/m],
    [() => vx('demo', 'demo-password', ['admin', 'policy', 'update', '2', 'space_quota=5']), /: not allowed to set policies with this account \(FORBIDDEN\)$/m],
    [() => admin('share', '/Files/no-such-file.txt'), /: no file or folder \/Files\/no-such-file\.txt \(NOT_FOUND\)$/m],
  ];
  for (const [f, re] of cases) {
    const r = await f();
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, re);
  }
});

test.serial('FIELD= clears an optional field: space_quota back to unlimited, policy limits removed', async (t) => {
  const getPerson = async () => JSON.parse((await admin('admin', 'person', 'get', '2', '--json')).stdout);
  t.is((await admin('admin', 'person', 'update', '2', 'space_quota=1000000', 'mobile_phone=+31 6 1234')).code, 0);
  t.like(await getPerson(), { space_quota: 1000000, mobile_phone: '+31 6 1234' });
  const info = async () => JSON.parse((await vx('demo', 'demo-password', ['info', '--json'])).stdout);
  t.is((await info()).space_quota, 1000000);
  const clr = await admin('admin', 'person', 'update', '2', 'space_quota=', 'mobile_phone=');
  t.is(clr.code, 0, clr.stderr);
  t.like(await getPerson(), { space_quota: null, mobile_phone: null });
  t.is((await info()).space_quota, null, 'the account is unlimited again');
  t.regex((await vx('demo', 'demo-password', ['info'])).stdout, /quota:\s+unlimited/);

  t.is((await admin('admin', 'policy', 'update', '2', 'space_quota=5000000', 'max_file_size=10')).code, 0);
  t.like(JSON.parse((await admin('admin', 'policy', 'get', '2', '--json')).stdout), { space_quota: 5000000, max_file_size: '10' });
  t.is((await admin('admin', 'policy', 'update', '2', 'space_quota=', 'max_file_size=')).code, 0);
  const pol = JSON.parse((await admin('admin', 'policy', 'get', '2', '--json')).stdout);
  t.is(pol.space_quota, null);
  t.is(pol.max_file_size, '');
  t.is(pol.excluded_extensions, '.exe', 'fields not named stay');

  // Required or non-optional fields cannot be cleared; creations take no empty values.
  const notClearable = await admin('admin', 'person', 'update', '2', 'first_name=');
  t.is(notClearable.code, 2);
  t.regex(notClearable.stderr, /first_name cannot be cleared \(FIELD= clears only space_quota, mobile_phone, mobile_service_provider_id\)/);
  const create = await admin('admin', 'root', 'create', 'company_id=2', 'name=', '--json');
  t.is(create.code, 2);
  t.regex(create.stderr, /name needs a value/);
  t.regex((await admin('admin', 'person', 'update', '--help')).stdout, /FIELD= \(nothing after =\) clears an optional field: space_quota= \(unlimited\)/);
});

test('admin delete: the vBoxx API has none; each entity says so without touching the server', async (t) => {
  for (const e of ['person', 'org', 'root', 'machine', 'activity', 'policy']) {
    // A server that is not there: the command must not need it to know the answer.
    const r = await cli(['vboxx', 'admin', e, 'delete', '2', '--server', 'http://127.0.0.1:9', '--username', 'admin'], { env: h.env });
    t.is(r.code, 1, e);
    t.regex(r.stderr, /cannot delete \w+ 2: the vBoxx management API has no delete for \w+ \(only [a-z, ]+\)\./, e);
  }
  t.is((await admin('admin', 'person', 'get', '2')).code, 0, 'still there');
  t.regex((await cli(['vboxx', 'admin', 'root', 'delete', '--help'], { env: h.env })).stdout, /Not available: the vBoxx management API cannot delete roots/);
});
