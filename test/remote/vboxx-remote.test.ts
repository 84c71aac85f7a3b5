// VboxxRemote: the account as a drive (roots as top-level folders, --root), policy checks before
// any byte moves, hostile and malformed server answers.
import test from 'ava';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { startEmulator, serverStats } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import type { Remote } from '../../src/remote/types.js';
import { DEMO_POLICY } from '../../src/emulator/vboxx/demo.js';
import {
  createVboxxRemote, VboxxRemote, VboxxClient, mapRoots, sanitizeRootName, parseExtensions, type VboxxRemoteOptions,
} from '../../src/remote/vboxx/index.js';
import { RemoteError } from '../../src/errors.js';

/** A ranged read collected into one buffer (the drive streams it: Remote.ranged.readTo). */
async function readRange(r: Remote, path: string, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const got = await r.ranged!.readTo(path, offset, length, (chunk, pos) => { chunk.copy(buf, pos - offset); });
  return buf.subarray(0, got.bytes);
}
import { createLogger } from '../../src/log.js';

let emu: Emulator;
const dir = mkdtempSync(join(tmpdir(), 'vboxx-remote-'));
const warnings: string[] = [];
const toClose: Array<{ close(): Promise<void> | void }> = [];

test.before(async () => { emu = await startEmulator({ rsync: false }); });
test.after.always(async () => {
  for (const c of toClose.reverse()) await c.close();
  await emu?.close();
  rmSync(dir, { recursive: true, force: true });
});

function remote(extra: Partial<VboxxRemoteOptions> = {}, server = emu.url): VboxxRemote {
  const r = new VboxxRemote({ server, user: 'demo', password: 'demo-password', backoffBaseMs: 5,
    log: createLogger('warn', (l) => warnings.push(l)), ...extra });
  toClose.push(r);
  return r;
}

async function code(p: Promise<unknown>): Promise<string> {
  try { await p; return 'OK'; } catch (e) {
    if (e instanceof RemoteError) return e.code;
    throw e;
  }
}

test('root names become unique single components, deterministically', (t) => {
  t.is(sanitizeRootName('C:\\Projects\\x', 4), 'C:_Projects_x');
  t.is(sanitizeRootName('a/b', 1), 'a_b');
  t.is(sanitizeRootName('..', 7), '__');
  t.is(sanitizeRootName('', 9), 'root-9');
  t.is(sanitizeRootName('tab\there\u0000', 9), 'tabhere');
  const roots = [
    { id: 6, name: 'Files' }, { id: 1, name: 'Files' }, { id: 3, name: 'C:\\Projects\\dropdav' },
    { id: 5, name: 'C:/Projects/dropdav' }, { id: 2, name: 'Team Share 1' },
  ];
  const m = mapRoots(roots);
  t.deepEqual(m.map((r) => [r.id, r.name]), [
    [1, 'Files'], [2, 'Team Share 1'], [3, 'C:_Projects_dropdav'], [5, 'C:_Projects_dropdav (5)'], [6, 'Files (6)'],
  ]);
  t.deepEqual(mapRoots([...roots].reverse()), m, 'order of the answer does not matter');
  t.deepEqual(parseExtensions('*.mp3, *.OGG,.exe'), ['.mp3', '.ogg', '.exe']);
});

test('list / stat: roots at the top, folders below, unicode and spaces', async (t) => {
  const r = remote();
  t.is(r.kind, 'vboxx');
  const rr: Remote = r;
  t.true(!!rr.ranged?.readTo && !!rr.shareLinks && !rr.batchStat && !rr.batchUpload);
  const top = await r.list('/');
  t.deepEqual(top.entries.map((e) => [e.name, e.type]), [['Files', 'dir'], ['Team Share', 'dir']]);
  const docs = await r.list('/Files/documents');
  const cafe = docs.entries.find((e) => e.name === 'Café Menü.txt')!;
  t.is(cafe.type, 'file');
  t.true(cafe.size > 0);
  t.true(cafe.mtimeMs! > 1_600_000_000_000);
  t.is(typeof cafe.rev, 'string');
  t.deepEqual(await r.list('/Files/documents', { hash: docs.hash! }), { entries: [], unchanged: true, hash: docs.hash });
  const deep = await r.list('/Files/documents/projects/2024');
  t.true(deep.entries.some((e) => e.name === 'notes with spaces.txt'));
  t.deepEqual(await r.stat('/'), { name: '/', type: 'dir', size: 0 });
  t.is((await r.stat('/Team Share'))?.type, 'dir');
  t.is((await r.stat('/Files/Ünïcödé Földer/naïve résumé.txt'))?.name, 'naïve résumé.txt');
  t.is(await r.stat('/Files/nope'), null);
  t.is(await r.stat('/No Such Root/x'), null);
  t.is(await code(r.list('/Files/readme.txt')), 'NOT_A_DIRECTORY');
  t.is(await code(r.list('/Files/missing')), 'NOT_FOUND');
  t.is(await code(r.list('/Nope')), 'NOT_FOUND');
  t.is(await code(r.list('/Files/../x')), 'BAD_REQUEST');
});

test('statfs names the roots too: a listing of the top right after it asks nothing more; one a second later asks again', async (t) => {
  const r = remote();
  const client = (r as unknown as { client: VboxxClient }).client;
  let calls = 0;
  const orig = client.accountInfo.bind(client);
  client.accountInfo = async (o) => { calls++; return orig(o); };
  await r.statfs();
  t.deepEqual((await r.list('/')).entries.map((e) => e.name), ['Files', 'Team Share']);
  t.is(calls, 1);
  await new Promise((res) => setTimeout(res, 1100));
  await r.list('/');
  t.is(calls, 2, 'a root made meanwhile would show');
});

test('root option: by id or by name the one root is the top', async (t) => {
  const byName = remote({ root: 'Team Share' });
  t.deepEqual((await byName.list('/')).entries.map((e) => e.name).sort(), ['Shared Plans', 'welcome.txt']);
  const id = (await byName.listRoots())[0]!.id;
  const byId = createVboxxRemote({ server: emu.url, user: 'demo', password: 'demo-password', root: String(id) });
  toClose.push(byId);
  t.is((await readRange(byId, '/welcome.txt', 0, 6)).toString(), 'Shared');
  t.is((await byId.stat('/'))?.type, 'dir');
  const bad = remote({ root: 'Nope' });
  const e = await t.throwsAsync(bad.list('/')) as RemoteError;
  t.is(e.code, 'NOT_FOUND');
  t.regex(e.message, /Files/, 'names the roots there are');
});

test('read, download, upload round-trip with unicode and spaces; chunked above the threshold', async (t) => {
  const r = remote({ chunkThreshold: 256 * 1024, chunkSize: 128 * 1024 });
  const data = randomBytes(700 * 1024);
  const src = join(dir, 'src.bin');
  writeFileSync(src, data);
  const path = '/Files/drive test/sp ace & ünï #1.bin';
  let sent = 0;
  const e = await r.upload(src, path, { onSend: () => sent++ });
  t.true(sent >= 1, 'onSend when the request left the queue');
  t.is(e.name, 'sp ace & ünï #1.bin');
  t.is(e.size, data.length);
  t.is(e.type, 'file');
  t.truthy(e.rev);
  t.true((await readRange(r, path, 1000, 5000)).equals(data.subarray(1000, 6000)));
  t.is((await readRange(r, path, data.length, 10)).length, 0);
  const out = join(dir, 'out.bin');
  await r.download(path, out);
  t.true(readFileSync(out).equals(data));
  const listed = await r.list('/Files/drive test');
  t.deepEqual(listed.entries.map((x) => x.name), ['sp ace & ünï #1.bin']);
  t.true(((await serverStats(emu.url))['POST /1/commit_chunked_upload/*'] ?? 0) >= 1);
  t.is(await code(readRange(r, '/Files', 0, 1)), 'BAD_REQUEST');
  const empty = join(dir, 'empty');
  writeFileSync(empty, '');
  const z = await r.upload(empty, '/Files/drive test/empty file');
  t.is(z.size, 0);
  const zout = join(dir, 'zout');
  await r.download('/Files/drive test/empty file', zout);
  t.is(readFileSync(zout).length, 0);
  t.is((await readRange(r, '/Files/drive test/empty file', 0, 10)).length, 0);
});

test('mkdir, move, remove, statfs, share link; top level and cross-root rules', async (t) => {
  const r = remote();
  await r.mkdir('/Files/m dir');
  t.is((await r.stat('/Files/m dir'))?.type, 'dir');
  t.is(await code(r.mkdir('/Files/m dir')), 'ALREADY_EXISTS');
  const f = join(dir, 'm.txt');
  writeFileSync(f, 'move me');
  await r.upload(f, '/Files/m dir/a.txt');
  await r.upload(f, '/Files/m dir/b.txt');
  t.is(await code(r.move('/Files/m dir/a.txt', '/Files/m dir/b.txt')), 'ALREADY_EXISTS');
  const before = await r.stat('/Files/m dir/a.txt');
  const moved = await r.move('/Files/m dir/a.txt', '/Files/m dir/c.txt');
  t.is(await r.stat('/Files/m dir/a.txt'), null);
  // the answer is the entry at the target: a new revision, the same size and time (what the drive
  // takes for its cached bytes instead of fetching them again)
  const after = await r.stat('/Files/m dir/c.txt');
  t.like(moved, { name: 'c.txt', type: 'file', size: 7, rev: after!.rev, mtimeMs: before!.mtimeMs });
  t.not(after!.rev, before!.rev);
  t.is(await code(r.move('/Files/m dir/c.txt', '/Team Share/c.txt')), 'CROSS_DEVICE');
  t.is(await code(r.mkdir('/New Root')), 'FORBIDDEN');
  t.is(await code(r.remove(['/Files'])), 'FORBIDDEN');
  t.is(await code(r.move('/Files', '/Other')), 'FORBIDDEN');
  await r.remove(['/Files/m dir/b.txt', '/Files/m dir/c.txt']);
  t.deepEqual((await r.list('/Files/m dir')).entries, []);
  await r.remove(['/Files/m dir']);
  t.is(await r.stat('/Files/m dir'), null);
  t.is(await code(r.remove(['/Files/m dir'])), 'NOT_FOUND');
  // The demo user has no quota of their own; the organization policy caps the account at 10 GiB.
  const fs = await r.statfs();
  t.is(fs.total, DEMO_POLICY.space_quota);
  t.true(fs.used > 0);
  const link = await r.shareLink('/Files/readme.txt');
  t.is(await (await fetch(link.url)).text(), 'Welcome to the vBoxxCloud demo account.\n');
  t.is(await code(r.shareLink('/')), 'FORBIDDEN');
  t.is(await code(r.shareLink('/Files/none')), 'NOT_FOUND');
});

test.serial('checkUpload refuses by policy and quota before any byte moves', async (t) => {
  const a = new VboxxClient({ server: emu.url, user: 'admin', password: 'admin-password' });
  toClose.push(a);
  const slug = `chk-${randomBytes(3).toString('hex')}`;
  const org = await a.createOrganization({ name: slug, contact_email: 'c@x.test', slug, policy: '{}', parent_id: 1 });
  await a.updatePolicy({ id: org.id, max_file_size: 2, excluded_extensions: '*.mp3,*.ogg' });
  const person = await a.createPerson({ company_id: org.id, first_name: 'C', last_name: 'U', email: `${slug}@x.test`, username: slug,
    password: 'pw-chk-1', create_root: true, space_quota: 3 * 1024 * 1024 });
  const r = remote({ user: slug, password: 'pw-chk-1' });
  const rootName = (await r.list('/')).entries[0]!.name;
  const putsBefore = (await serverStats(emu.url))['PUT /1/files_put/*'] ?? 0;
  // the check at close from the caches alone: nothing cached yet -> false (ask the server)
  const cached = (p: string, n: number) => { try { return r.checkUploadCached(p, n) ? 'OK' : 'ASK'; } catch (e) { return (e as RemoteError).code; } };
  t.is(cached(`/${rootName}/ok.bin`, 10), 'ASK');
  t.is(await code(r.checkUpload(`/${rootName}/song.Mp3`, 10)), 'POLICY_EXCLUDED_EXTENSION');
  // cached now: the same answers without a request
  const reqs = (await serverStats(emu.url));
  t.is(cached(`/${rootName}/song.Mp3`, 10), 'POLICY_EXCLUDED_EXTENSION');
  t.is(cached(`/${rootName}/big.bin`, 2 * 1024 * 1024 + 1), 'POLICY_FILE_TOO_LARGE');
  t.is(cached(`/${rootName}/ok.bin`, 2 * 1024 * 1024), 'OK');
  t.is(cached(`/${rootName}`, 10), 'ASK', 'a root is no file target: the server path says why');
  t.is(cached('/no-such-root/x.bin', 10), 'ASK');
  t.is(cached(`/${rootName}/../x.bin`, 10), 'ASK');
  t.throws(() => r.uploadPolicy.checkNameCached!(`/${rootName}/a.ogg`), { instanceOf: RemoteError });
  t.true(r.uploadPolicy.checkNameCached!(`/${rootName}/a.txt`));
  t.deepEqual(await serverStats(emu.url), reqs, 'answered from the caches');
  t.is(await code(r.checkUpload(`/${rootName}/big.bin`, 2 * 1024 * 1024 + 1)), 'POLICY_FILE_TOO_LARGE');
  t.is(await code(r.checkUpload(`/${rootName}/ok.bin`, 2 * 1024 * 1024)), 'OK');
  const two = join(dir, 'two-mb.bin');
  writeFileSync(two, Buffer.alloc(2 * 1024 * 1024));
  const mp3 = join(dir, 'x.mp3');
  writeFileSync(mp3, 'x');
  t.is(await code(r.upload(mp3, `/${rootName}/x.mp3`)), 'POLICY_EXCLUDED_EXTENSION');
  t.is(((await serverStats(emu.url))['PUT /1/files_put/*'] ?? 0) - putsBefore, 0, 'refused before any byte moved');
  await r.upload(two, `/${rootName}/first.bin`);
  t.is(cached(`/${rootName}/second.bin`, 2 * 1024 * 1024), 'ASK', 'past the quota: the server\'s size of the file decides');
  t.is(await code(r.checkUpload(`/${rootName}/second.bin`, 2 * 1024 * 1024)), 'QUOTA_EXCEEDED', 'person quota from account info');
  t.is(await code(r.checkUpload(`/${rootName}/first.bin`, 2 * 1024 * 1024)), 'OK', 'replacing a file gives its bytes back');

  // Policy unreadable (here: gone): fall back to account info, and to the server's own refusals.
  emu.ctx.db.prepare('DELETE FROM vboxx_policies WHERE company_id = ?').run(org.id);
  const r2 = remote({ user: slug, password: 'pw-chk-1' });
  t.is(await code(r2.checkUpload(`/${rootName}/song.mp3`, 10)), 'OK', 'no policy to go by');
  t.is(await code(r2.checkUpload(`/${rootName}/second.bin`, 2 * 1024 * 1024)), 'QUOTA_EXCEEDED');
  t.is(typeof person.id, 'number');
});

/** A server that answers with hostile names and malformed shapes. */
async function hostileServer(): Promise<string> {
  const entry = (path: string, extra: object = {}) => ({ path, is_dir: false, bytes: 3, rev: 1, modified_unix_timestamp: 1700000000, ...extra });
  const srv = createServer((req, res) => {
    const url = req.url ?? '';
    const json = (o: unknown, status = 200) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(typeof o === 'string' ? o : JSON.stringify(o)); };
    if (url.startsWith('/1/auth')) return json({ success: true, session_token: 'hostile-token' });
    if (url.startsWith('/1/account/info')) {
      return json({ space_usage: 10, space_quota: 100, roots: [
        { id: 1, name: 'C:\\Projects\\x' }, { id: 2, name: '..' }, { id: 3, name: 'a/b' }, { id: 4, name: 'Bad' }, { id: 5, name: 'Junk' },
        { id: 'x', name: 'nope' }, 'garbage',
      ] });
    }
    if (url.startsWith('/1/metadata/1/')) {
      return json({ path: '/', is_dir: true, bytes: 0, hash: 'h', contents: [
        entry('/ok.txt'), entry('/..'), entry('/.'), entry('/a\u0000b'), entry('/sub/deep.txt'), entry('/' + 'n'.repeat(300)),
        entry('/neg.txt', { bytes: -5 }), entry('/str.txt', { bytes: '12' }), entry('/dir?', { is_dir: 'yes' }), 42, null,
        entry('/ok.txt'), { ...entry('/folder'), is_dir: true, bytes: 0 },
      ] });
    }
    if (url.startsWith('/1/metadata/4/')) return json({ path: 5, is_dir: true });
    if (url.startsWith('/1/metadata/5/')) return json('{"path": "/", "is_dir": tru');
    json({ status_code: 404, message: 'nope', code: 'error' }, 404);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  toClose.push({ close: () => new Promise<void>((r) => srv.close(() => r())) });
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

test('hostile names are dropped with a warning; malformed answers are errors, never crashes', async (t) => {
  const url = await hostileServer();
  const r = remote({ maxAttempts: 1 }, url);
  const top = await r.list('/');
  t.deepEqual(top.entries.map((e) => e.name), ['C:_Projects_x', '__', 'a_b', 'Bad', 'Junk']);
  const n = warnings.length;
  const l = await r.list('/C:_Projects_x');
  t.deepEqual(l.entries.map((e) => [e.name, e.type, e.size]), [['ok.txt', 'file', 3], ['folder', 'dir', 0]]);
  t.is(l.entries[0]!.mtimeMs, 1_700_000_000_000);
  t.is(l.entries[0]!.rev, '1');
  t.true(warnings.length - n >= 8, 'each dropped entry was warned about');
  t.false(warnings.join('\n').includes('hostile-token'));
  t.is(await code(r.list('/Bad')), 'BAD_RESPONSE');
  t.is(await code(r.list('/Junk')), 'BAD_RESPONSE');
  t.is(await code(r.stat('/Bad/x')), 'BAD_RESPONSE');
  t.deepEqual(await r.statfs(), { total: 100, used: 10 });
});

test('fileMeta.setAttrs: the time of the version held goes up with its bytes; a copy no longer that version (by size) changes nothing', async (t) => {
  const r = remote();
  const src = join(dir, 'attrs.txt');
  writeFileSync(src, 'version one');
  const e = await r.upload(src, '/Files/attrs/f.txt', { mtimeMs: 1_500_000_000_000 });
  const set = await r.fileMeta!.setAttrs('/Files/attrs/f.txt', { mtimeMs: 1_600_000_000_000 }, { localFile: src, rev: e.rev, written: e.written });
  t.is(set?.mtimeMs, 1_600_000_000_000);
  t.is((await r.stat('/Files/attrs/f.txt'))?.mtimeMs, 1_600_000_000_000);
  // written here since the caller looked (its upload will carry the time): nothing to do, no error
  writeFileSync(src, 'version one, and more written since');
  const now = await r.stat('/Files/attrs/f.txt');
  t.is(await r.fileMeta!.setAttrs('/Files/attrs/f.txt', { mtimeMs: 1_700_000_000_000 }, { localFile: src, rev: now!.rev, written: now!.written }), null);
  t.is((await r.stat('/Files/attrs/f.txt'))?.mtimeMs, 1_600_000_000_000);
  t.is((await readRange(r, '/Files/attrs/f.txt', 0, 100)).toString(), 'version one');
});
