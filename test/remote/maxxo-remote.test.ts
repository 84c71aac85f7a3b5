// MaxxoRemote against the reference server and its real rsync daemon: every Remote operation,
// unicode/space/wildcard names through rsync, progress, cancel, and hostile server answers.
import test from 'ava';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import type { Remote } from '../../src/remote/types.js';
import { createMaxxoUser, maxxoUserFolder } from '../../src/emulator/maxxo/index.js';
import { createMaxxoRemote, type MaxxoRemoteOptions } from '../../src/remote/maxxo/index.js';
import { escapeSource, parseProgress, rsyncFailure } from '../../src/remote/maxxo/rsync.js';
import { RemoteError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';

let emu: Emulator;
let n = 0;
const tmp = mkdtempSync(join(tmpdir(), 'cm-maxxo-remote-'));

test.before(async () => { emu = await startEmulator(); });
test.after.always(async () => { await emu?.close(); rmSync(tmp, { recursive: true, force: true }); });

function account(extra: Partial<MaxxoRemoteOptions> = {}) {
  const email = `r${process.pid}-${++n}@maxxo.test`;
  const password = `pw-${n}-remote`;
  createMaxxoUser(emu.ctx, { email, password });
  const folder = maxxoUserFolder(emu.ctx, email);
  const remote = createMaxxoRemote({ server: emu.url, user: email, password, maxAttempts: 3, ...extra });
  return { email, password, folder, remote };
}

async function code(p: Promise<unknown>): Promise<string> {
  try { await p; } catch (e) { if (e instanceof RemoteError) return e.code; throw e; }
  return 'OK';
}

const NAMES = ['plain.txt', 'with space.txt', 'Ünïcödé ñame €.txt', '日本語 ファイル.md', 'wild [1] * ?.txt', 'back\\slash.txt', "quote ' \".txt", '-leading-dash', 'a:colon@at#hash%25.txt'];

test('capabilities and kind', (t) => {
  const { remote } = account();
  t.is(remote.kind, 'maxxo');
  const r: Remote = remote;
  t.is(r.ranged, undefined);
  t.is(r.shareLinks, undefined);
  t.truthy(remote.batchStat);
  t.truthy(remote.batchUpload);
  t.truthy(remote.revalidation);
  t.false(JSON.stringify(remote).includes('pw-'));
  t.false(String(remote).includes('pw-'));
});

test('list, stat, statMany, statfs on the demo account', async (t) => {
  const remote = createMaxxoRemote({ server: emu.url, user: 'demo@maxxo.test', password: 'demo-password' });
  t.teardown(() => remote.close());
  const root = await remote.list('/');
  const names = root.entries.map((e) => e.name);
  for (const x of ['Documents', 'Empty Folder', 'Large Files', 'Photos', 'Welcome to Maxxo.txt']) t.true(names.includes(x), x);
  t.is(root.entries.find((e) => e.name === 'Documents')!.type, 'dir');
  const docs = await remote.list('/Documents');
  // mtimes (and executability) come from the rsync daemon's listing, to the second
  const demoDir = join(maxxoUserFolder(emu.ctx, 'demo@maxxo.test'), 'Documents');
  const mtimeMs = Math.floor(statSync(join(demoDir, 'Café Menü.txt')).mtimeMs / 1000) * 1000;
  t.deepEqual(docs.entries.find((e) => e.name === 'Café Menü.txt'), { name: 'Café Menü.txt', type: 'file', size: 44, mtimeMs, mode: 0o644 });
  t.deepEqual(await remote.stat('/Documents/Café Menü.txt'), { name: 'Café Menü.txt', type: 'file', size: 44, mtimeMs, mode: 0o644 });
  t.is((await remote.stat('/Documents/Reports'))!.type, 'dir');
  t.is(await remote.stat('/Documents/none'), null);
  t.like(await remote.stat('/'), { type: 'dir' });
  const many = await remote.statMany!(['/Large Files/random-10MiB.bin', '/nope', '/Empty Folder']);
  t.deepEqual(many.map((e) => e && e.type), ['file', null, 'dir']);
  t.is(many[0]!.size, 10 * 1024 * 1024);
  t.is(await code(remote.list('/nope')), 'NOT_FOUND');
  t.is(await code(remote.list('/Welcome to Maxxo.txt')), 'NOT_A_DIRECTORY');
  const fs = await remote.statfs();
  t.true(fs.total! > 0);
  t.true(fs.used >= 10 * 1024 * 1024);
  t.is(await code(remote.stat('/a/../etc')), 'INVALID_NAME');
});

test('upload / list / download round-trip with unicode, spaces and rsync wildcards in names', async (t) => {
  const { remote, folder } = account();
  t.teardown(() => remote.close());
  for (const [i, name] of NAMES.entries()) {
    const src = join(tmp, `src-${n}-${i}`);
    const content = Buffer.concat([Buffer.from(name), randomBytes(1000 + i)]);
    writeFileSync(src, content);
    const dir = `/new dir ü/sub [x]/${i}`;
    const progress: number[] = [];
    let sent = 0;
    const e = await remote.upload(src, `${dir}/${name}`, { onProgress: (b) => progress.push(b), onSend: () => sent++ });
    // -t: the server file has our mtime, which the upload's entry carries without a listing
    const mtimeMs = Math.floor(statSync(src).mtimeMs / 1000) * 1000;
    t.deepEqual(e, { name, type: 'file', size: content.length, mtimeMs });
    t.true(sent >= 1, 'onSend (the upload contract: the vfs counts it as sent from then on)');
    t.is(progress[progress.length - 1], content.length);
    t.deepEqual(readFileSync(join(folder, 'new dir ü', 'sub [x]', String(i), name)), content);
    const l = await remote.list(dir);
    // (the upload's entry has no mode: a new file's folder was not listed, an existing file keeps its own)
    t.deepEqual(l.entries, [{ ...e, mode: 0o644 }], 'the daemon listing decodes the name and agrees on the mtime');
    const dst = join(tmp, `dst-${n}-${i}`);
    await remote.download(`${dir}/${name}`, dst);
    t.deepEqual(readFileSync(dst), content, name);
  }
  // A decoy that the unescaped wildcard name would also match: the download must get the right one.
  writeFileSync(join(folder, 'new dir ü', 'sub [x]', '4', 'wild 1 x y.txt'), 'decoy');
  const dst = join(tmp, `wild-${n}`);
  await remote.download(`/new dir ü/sub [x]/4/${NAMES[4]}`, dst);
  t.true(readFileSync(dst).subarray(0, NAMES[4]!.length).equals(Buffer.from(NAMES[4]!)));
});

test('upload replaces content, download truncates the local file, progress is monotonic', async (t) => {
  const { remote } = account({ rsyncExtraArgs: ['--bwlimit=8000'], progressIntervalMs: 20 });
  t.teardown(() => remote.close());
  const big = randomBytes(6 * 1024 * 1024);
  const src = join(tmp, `big-${n}`);
  writeFileSync(src, big);
  await remote.upload(src, '/big.bin');
  const dst = join(tmp, `big-dst-${n}`);
  writeFileSync(dst, Buffer.alloc(9 * 1024 * 1024, 7)); // stale, longer content must go
  const progress: number[] = [];
  await remote.download('/big.bin', dst, { onProgress: (b) => progress.push(b) });
  t.true(readFileSync(dst).equals(big));
  t.true(progress.length >= 3, `progress calls: ${progress.length}`);
  for (let i = 1; i < progress.length; i++) t.true(progress[i]! > progress[i - 1]!);
  t.is(progress[progress.length - 1], big.length);
  writeFileSync(src, 'short now');
  t.is((await remote.upload(src, '/big.bin')).size, 9);
  await remote.download('/big.bin', dst);
  t.is(readFileSync(dst, 'utf8'), 'short now');
});

test('cancelling a download kills rsync and leaves no child behind', async (t) => {
  const remote = createMaxxoRemote({ server: emu.url, user: 'demo@maxxo.test', password: 'demo-password', rsyncExtraArgs: ['--bwlimit=300'], progressIntervalMs: 20 });
  t.teardown(() => remote.close());
  const ac = new AbortController();
  const dst = join(tmp, `cancel-${n}`);
  let pid = 0;
  const p = remote.download('/Large Files/random-10MiB.bin', dst, {
    signal: ac.signal,
    onProgress: () => { if (!pid) { pid = [...remote.children][0]?.pid ?? 0; ac.abort(); } },
  });
  const e = await t.throwsAsync(p, { instanceOf: RemoteError });
  t.is(e!.code, 'CANCELLED');
  t.true(pid > 0);
  t.is(remote.children.size, 0);
  t.throws(() => process.kill(pid, 0)); // the rsync process is gone
  const size = statSync(dst).size;
  t.true(size < 10 * 1024 * 1024, `stopped at ${size}`);
  await new Promise((r) => setTimeout(r, 300));
  t.is(statSync(dst).size, size); // nothing writes after the cancel
  // Cancelled before it starts: no rsync at all.
  const runs = remote.counters().rsyncRuns;
  const ac2 = new AbortController();
  ac2.abort();
  t.is(await code(remote.download('/Welcome to Maxxo.txt', dst, { signal: ac2.signal })), 'CANCELLED');
  t.is(remote.counters().rsyncRuns, runs);
});

test('mkdir, move, remove: success and rename(2)-like errors', async (t) => {
  const { remote, folder } = account();
  t.teardown(() => remote.close());
  await remote.mkdir('/Ä folder');
  t.true(statSync(join(folder, 'Ä folder')).isDirectory());
  await remote.mkdir('/Ä folder/sub [1] *');
  t.like(await remote.stat('/Ä folder/sub [1] *'), { type: 'dir' });
  t.is(await code(remote.mkdir('/Ä folder')), 'ALREADY_EXISTS');
  t.is(await code(remote.mkdir('/missing/child')), 'NOT_FOUND');
  t.is(await code(remote.mkdir('/')), 'ALREADY_EXISTS');
  writeFileSync(join(folder, 'file.txt'), 'f');
  t.is(await code(remote.mkdir('/file.txt/child')), 'NOT_A_DIRECTORY');

  await remote.move('/file.txt', '/Ä folder/renamed é.txt');
  t.is(readFileSync(join(folder, 'Ä folder', 'renamed é.txt'), 'utf8'), 'f');
  t.is(await code(remote.move('/file.txt', '/x.txt')), 'NOT_FOUND');
  mkdirSync(join(folder, 'other'));
  writeFileSync(join(folder, 'other', 'x'), 'x');
  t.is(await code(remote.move('/Ä folder/sub [1] *', '/other')), 'NOT_EMPTY');
  t.is(await code(remote.move('/Ä folder/renamed é.txt', '/other')), 'IS_A_DIRECTORY');
  t.is(await code(remote.move('/other', '/Ä folder/renamed é.txt')), 'NOT_A_DIRECTORY');
  t.is(await code(remote.move('/other', '/other/inside')), 'BAD_REQUEST');
  writeFileSync(join(folder, 'replace-me.txt'), 'old');
  await remote.move('/Ä folder/renamed é.txt', '/replace-me.txt');
  t.is(readFileSync(join(folder, 'replace-me.txt'), 'utf8'), 'f');

  await remote.remove(['/Ä folder', '/replace-me.txt']);
  t.false(existsSync(join(folder, 'Ä folder')));
  t.false(existsSync(join(folder, 'replace-me.txt')));
  t.is(await code(remote.remove(['/Ä folder'])), 'NOT_FOUND');
  t.is(await code(remote.remove(['/'])), 'BAD_REQUEST');
});

test('download errors: missing file, folder; upload of a missing local file', async (t) => {
  const { remote, folder } = account();
  t.teardown(() => remote.close());
  mkdirSync(join(folder, 'dir'));
  const dst = join(tmp, `err-${n}`);
  t.is(await code(remote.download('/missing.bin', dst)), 'NOT_FOUND');
  t.is(await code(remote.download('/dir', dst)), 'IS_A_DIRECTORY');
  await t.throwsAsync(remote.upload(join(tmp, 'does-not-exist'), '/x'));
});

test('a changed Cloudstore password: rsync auth fails, the slice is fetched again once', async (t) => {
  const { remote, email, folder } = account();
  t.teardown(() => remote.close());
  const src = join(tmp, `auth-${n}`);
  writeFileSync(src, 'one');
  await remote.upload(src, '/one.txt');
  emu.ctx.db.prepare('UPDATE maxxo_users SET rsync_password = ? WHERE email = ?').run('changedPassw0rd', email);
  createMaxxoUser(emu.ctx, { email: `trigger-${process.pid}-${++n}@maxxo.test`, password: 'x-trigger' }); // rewrites rsyncd secrets
  writeFileSync(src, 'two');
  await remote.upload(src, '/one.txt');
  t.is(readFileSync(join(folder, 'one.txt'), 'utf8'), 'two');
});

test('hostile or malformed server answers: bad names dropped with a warning, wrong shapes are BadResponse', async (t) => {
  let listBody: unknown = [];
  const server = http.createServer((req, res) => {
    const path = req.url!.split('?')[0];
    res.setHeader('content-type', 'application/json');
    if (path === '/api/1/auth/token') return res.end(JSON.stringify({ token: 'T0kenForHostileTest' }));
    if (path === '/api/1/ops/list') return res.end(JSON.stringify(listBody));
    if (path === '/api/1/ops/filesize') return res.end('{"not":"an array"}');
    if (path === '/api/1/account/quota') return res.end('{"quota":"lots"}');
    res.statusCode = 404;
    res.end('{"error":"METHOD_NOT_FOUND"}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => { server.closeAllConnections(); server.close(() => r(undefined)); }));
  const lines: string[] = [];
  const remote = createMaxxoRemote({
    server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, user: 'x@y.z', password: 'pw',
    log: createLogger('warn', (l) => lines.push(l)),
  });
  t.teardown(() => remote.close());
  listBody = [
    { file: 'ok.txt', size: 1, type: 'f' },
    { file: 'dir/..', size: 1, type: 'f' },
    { file: '.', size: 1, type: 'd' },
    { file: '', size: 1, type: 'f' },
    { file: 'trailing/', size: 1, type: 'd' },
    { file: 'nul\u0000name', size: 1, type: 'f' },
    { file: 'x'.repeat(300), size: 1, type: 'f' },
    { file: 'ok.txt', size: 2, type: 'f' },
    { file: 'wrongtype', size: 'big', type: 'f' },
    { file: 'weird', size: 1, type: 'symlink' },
    null, 42, 'str',
    { file: 'sub/fine', size: 3, type: 'd' },
  ];
  const l = await remote.list('/');
  t.deepEqual(l.entries, [{ name: 'ok.txt', type: 'file', size: 1 }, { name: 'fine', type: 'dir', size: 3 }]);
  t.true(lines.length >= 8);
  t.true(lines.every((x) => x.includes('WARN')));
  listBody = { error: 'nope' };
  t.is(await code(remote.list('/')), 'nope');
  listBody = { unexpected: true };
  t.is(await code(remote.list('/')), 'BAD_RESPONSE');
  t.is(await code(remote.stat('/a')), 'BAD_RESPONSE');
  t.is(await code(remote.statfs()), 'BAD_RESPONSE');
});

test('rsync helpers: source escaping and progress parsing', (t) => {
  t.is(escapeSource('plain name.txt'), 'plain name.txt');
  t.is(escapeSource('back\\slash'), 'back\\slash');
  t.is(escapeSource('a[1]*?.txt'), 'a\\[1]\\*\\?.txt');
  t.is(escapeSource('a\\b[1]'), 'a?b\\[1]');
  t.is(parseProgress('     10,485,760 100%  526.32MB/s    0:00:00 (xfr#1, to-chk=0/1)'), 10485760);
  t.is(parseProgress('sending incremental file list'), undefined);
  // a parent folder another run made in the same moment: worth the retry
  const raced = rsyncFailure({ code: 11, signal: null, stdout: '', stderr: 'rsync: [Receiver] mkdir "b/s1/shared/" (in demo) failed: File exists (17)\nrsync error: error in file IO (code 11)\n' }, { path: '/b/s1/shared/log1' }, '');
  t.true(raced.transient);
  t.true(raced.error.retryable);
  // and a file I/O error of another kind stays final
  const other = rsyncFailure({ code: 11, signal: null, stdout: '', stderr: 'rsync: [Receiver] write failed on "x": Input/output error (5)\n' }, { path: '/x' }, '');
  t.false(other.transient);
});

test('likelyFolder: a folder the kept daemon listing of its parent has; files and unknown names are not', async (t) => {
  const { folder, remote } = account();
  t.teardown(() => remote.close());
  mkdirSync(join(folder, 'p', 'sub', 'deeper'), { recursive: true });
  writeFileSync(join(folder, 'p', 'file.txt'), 'x');
  // (no listing of /p kept yet: the name decides, see the dataplane test)
  t.false(remote.likelyFolder('/p/file.txt'));
  await remote.list('/p');
  t.true(remote.likelyFolder('/p/sub'));
  t.false(remote.likelyFolder('/p/file.txt'));
  t.false(remote.likelyFolder('/p/nothing'));
  // (the two-level run lists /p/sub's rows too, kept once the run ended: a hint one level further)
  for (let i = 0; i < 100 && !remote.likelyFolder('/p/sub/deeper'); i++) await new Promise((r) => setTimeout(r, 20));
  t.true(remote.likelyFolder('/p/sub/deeper'));
  const plain = createMaxxoRemote({ server: emu.url, user: 'demo@maxxo.test', password: 'demo-password', modtimes: false });
  t.teardown(() => plain.close());
  await plain.list('/');
  t.false(plain.likelyFolder('/Documents'));
});
