// Writes and write-back: random writes/truncate/append against a model, journal replay after a
// crash, delete/rename ordering against pending uploads, failures, policy refusals at close.
import test from 'ava';
import { appendFileSync, existsSync, mkdirSync, writeFileSync as writeFileSyncFs } from 'node:fs';
import { join } from 'node:path';
import { isRemoteError, ServerError } from '../../src/errors.js';
import { MemoryRemote } from '../helpers/memory-remote.js';
import { Vfs } from '../../src/vfs/vfs.js';
import {
  O_APPEND, O_CREAT, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, bytes, readAll, rng, setup, sha256, sleep, until, writeFile,
} from './helpers.js';

async function code(p: Promise<unknown>): Promise<string> {
  try { await p; return 'OK'; } catch (e) { return isRemoteError(e) ? e.code : String(e); }
}

for (const ranged of [true, false]) {
  test(`random writes, truncates and appends match a model (${ranged ? 'ranged' : 'download'} remote)`, async (t) => {
    const { remote, vfs } = await setup(t, { rangedReads: ranged }, { writebackDelayMs: 5, readBlockBytes: 64 * 1024 });
    let model = bytes(200_000, 42);
    remote.putFile('/m.bin', model);
    const rand = rng(ranged ? 99 : 98);
    for (let round = 0; round < 6; round++) {
      const append = round % 3 === 2;
      const fh = await vfs.open('/m.bin', O_RDWR | (append ? O_APPEND : 0));
      for (let i = 0; i < 25; i++) {
        const r = rand();
        if (r < 0.6) {
          const pos = Math.floor(rand() * (model.length + 5000));
          const data = bytes(1 + Math.floor(rand() * 50_000), Math.floor(rand() * 1e9));
          await vfs.write('/m.bin', fh, data, data.length, pos);
          const at = append ? model.length : pos;
          const next = Buffer.alloc(Math.max(model.length, at + data.length));
          model.copy(next);
          data.copy(next, at);
          model = next;
        } else if (r < 0.8) {
          const size = Math.floor(rand() * (model.length + 30_000));
          await vfs.ftruncate('/m.bin', fh, size);
          const next = Buffer.alloc(size);
          model.copy(next, 0, 0, Math.min(size, model.length));
          model = next;
        } else {
          const pos = Math.floor(rand() * model.length);
          const len = 1 + Math.floor(rand() * 40_000);
          const buf = Buffer.alloc(len);
          const n = await vfs.read('/m.bin', fh, buf, len, pos);
          if (!buf.subarray(0, n).equals(model.subarray(pos, pos + len))) { t.fail(`round ${round} read ${len}@${pos}`); return; }
        }
      }
      t.is((await vfs.fgetattr('/m.bin', fh)).size, model.length);
      await vfs.flush('/m.bin', fh);
      await vfs.release('/m.bin', fh);
      t.is((await vfs.getattr('/m.bin')).size, model.length);
    }
    t.is(sha256(await readAll(vfs, '/m.bin')), sha256(model));
    await vfs.flushAll();
    t.is(sha256(remote.getFile('/m.bin')!), sha256(model));
    t.is(vfs.status().pending, 0);
  });
}

test('writing into an existing file keeps the untouched bytes (content fetched before the first write)', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true }, { readBlockBytes: 64 * 1024 });
  const src = bytes(1_000_000, 1);
  remote.putFile('/e.bin', src);
  const fh = await vfs.open('/e.bin', O_WRONLY);
  await vfs.write('/e.bin', fh, Buffer.from('PATCH'), 5, 500_000);
  await vfs.flush('/e.bin', fh);
  await vfs.release('/e.bin', fh);
  const expect = Buffer.from(src);
  expect.write('PATCH', 500_000);
  t.is(sha256(remote.getFile('/e.bin')!), sha256(expect));
});

test('O_TRUNC and create start empty without downloading; truncate(path) shrinks and extends', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: false });
  remote.putFile('/t.txt', 'old content here');
  const fh = await vfs.open('/t.txt', O_WRONLY | O_TRUNC);
  await vfs.write('/t.txt', fh, Buffer.from('new'), 3, 0);
  await vfs.flush('/t.txt', fh);
  await vfs.release('/t.txt', fh);
  t.is(remote.getFile('/t.txt')!.toString(), 'new');
  t.is(remote.calls.download, 0);
  remote.putFile('/u.txt', 'abcdefgh');
  await vfs.truncate('/u.txt', 3);
  t.is(remote.getFile('/u.txt')!.toString(), 'abc');
  await vfs.truncate('/u.txt', 6);
  t.deepEqual(remote.getFile('/u.txt'), Buffer.from('abc\0\0\0'));
  await vfs.truncate('/u.txt', 0);
  t.is(remote.getFile('/u.txt')!.length, 0);
});

test('append mode writes at the end whatever the offset', async (t) => {
  const { remote, vfs } = await setup(t);
  remote.putFile('/log.txt', 'line1\n');
  const fh = await vfs.open('/log.txt', O_WRONLY | O_APPEND);
  await vfs.write('/log.txt', fh, Buffer.from('line2\n'), 6, 0);
  await vfs.write('/log.txt', fh, Buffer.from('line3\n'), 6, 3);
  await vfs.flush('/log.txt', fh);
  await vfs.release('/log.txt', fh);
  t.is(remote.getFile('/log.txt')!.toString(), 'line1\nline2\nline3\n');
});

test('writebackDelayMs 0 uploads before close returns; >0 uploads later, shows local size meanwhile', async (t) => {
  const a = await setup(t, {}, { writebackDelayMs: 0 });
  await writeFile(a.vfs, '/now.txt', 'immediately');
  t.is(a.remote.getFile('/now.txt')!.toString(), 'immediately');
  const b = await setup(t, {}, { writebackDelayMs: 1000 });
  b.remote.putFile('/later.txt', 'x');
  await writeFile(b.vfs, '/later.txt', 'later content');
  t.is(b.remote.getFile('/later.txt')!.toString(), 'x', 'not yet uploaded');
  t.is((await b.vfs.getattr('/later.txt')).size, 13, 'local size shown while pending');
  const st = b.vfs.status();
  t.is(st.pending, 1);
  t.is(st.pendingBytes, 13);
  await until(() => b.remote.getFile('/later.txt')!.toString() === 'later content', 'delayed upload');
  await until(() => b.vfs.status().pending === 0, 'journal done');
});

test('fsync waits until the server has the content', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 60_000 });
  const fh = await vfs.create('/s.txt', 0o644, O_WRONLY | O_CREAT);
  await vfs.write('/s.txt', fh, Buffer.from('synced'), 6, 0);
  await vfs.fsync('/s.txt', fh, false);
  t.is(remote.getFile('/s.txt')!.toString(), 'synced');
  await vfs.release('/s.txt', fh);
  t.is(vfs.status().pending, 0);
});

test('journal replay after a crash: closed files uploaded, deleted stay deleted, renamed go to the new name', async (t) => {
  const s = await setup(t, {}, { writebackDelayMs: 60_000 });
  const { remote } = s;
  remote.putFile('/gone.txt', 'server copy');
  const a = bytes(300_000, 1);
  await writeFile(s.vfs, '/a.bin', a);
  await writeFile(s.vfs, '/dir/../b.txt'.replace('/dir/..', ''), 'bee');
  await writeFile(s.vfs, '/gone.txt', 'local edit, then deleted');
  await s.vfs.unlink('/gone.txt');
  await writeFile(s.vfs, '/old-name.txt', 'renamed');
  await s.vfs.rename('/old-name.txt', '/new-name.txt');
  // an open, unclosed file at crash time
  const fh = await s.vfs.create('/open.txt', 0o644, O_WRONLY | O_CREAT);
  await s.vfs.write('/open.txt', fh, Buffer.from('half'), 4, 0);
  t.is(remote.calls.upload, 0, 'nothing reached the server before the crash');
  t.false(remote.has('/gone.txt'));
  // crash: the first Vfs is dropped without close; a torn half-record ends its journal
  appendFileSync(join(s.opts.cacheDir, 'acct', 'journal'), '{"t":"u","uid":"torn');
  const v2 = await s.reopen({ writebackDelayMs: 0 });
  await v2.flushAll();
  t.is(sha256(remote.getFile('/a.bin')!), sha256(a));
  t.is(remote.getFile('/b.txt')!.toString(), 'bee');
  t.is(remote.getFile('/new-name.txt')!.toString(), 'renamed');
  t.false(remote.has('/old-name.txt'));
  t.false(remote.has('/gone.txt'), 'deleted file not resurrected');
  t.is(v2.status().pending, 0);
  t.deepEqual(v2.status().failures, []);
  // a third run has nothing left to do: no duplicate uploads
  const uploads = remote.calls.upload;
  await v2.close();
  const v3 = await s.reopen();
  await v3.flushAll();
  t.is(remote.calls.upload, uploads);
  t.is(sha256(await readAll(v3, '/a.bin')), sha256(a));
});

test('delete after a pending upload: cancelled, never resurrected', async (t) => {
  // a long delay keeps the uploads pending; flushAll would send anything the delete left behind
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 60_000 });
  await writeFile(vfs, '/tmp1', 'short-lived');
  await vfs.unlink('/tmp1');
  await vfs.flushAll();
  t.false(remote.has('/tmp1'));
  t.is(remote.calls.upload, 0);
  t.is(vfs.status().pending, 0);
  // folder case: files pending inside a folder that is then removed (rm -rf)
  await vfs.mkdir('/dir', 0o755);
  await writeFile(vfs, '/dir/a', 'a');
  await writeFile(vfs, '/dir/b', 'b');
  await vfs.unlink('/dir/a');
  await vfs.unlink('/dir/b');
  await vfs.rmdir('/dir');
  await vfs.flushAll();
  t.false(remote.has('/dir'));
  t.false(remote.has('/dir/a'));
  t.is(remote.calls.upload, 0);
});

test('delete while the upload is in flight: the delete is sent only after the upload ended', async (t) => {
  // an upload request already sent cannot be taken back by an abort: the delete waits for it
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 1 });
  remote.putFile('/f.txt', 'v1');
  const release = remote.hold('upload');
  t.teardown(release);
  await writeFile(vfs, '/f.txt', 'v2 local');
  await until(() => remote.held('upload') === 1, 'upload in flight');
  const unlinked = vfs.unlink('/f.txt');
  await sleep(30);
  t.false(remote.log.includes('remove /f.txt'));
  release();
  await unlinked;
  await sleep(50);
  await vfs.flushAll();
  t.false(remote.has('/f.txt'));
  const i = remote.log.lastIndexOf('remove /f.txt');
  t.true(i >= 0);
  t.false(remote.log.slice(i).some((l) => l.startsWith('upload')), remote.log.join('\n'));
});

test('rename of a new file with a pending upload: uploaded at the new name only', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 60_000 });
  await writeFile(vfs, '/draft.txt', 'text');
  await vfs.rename('/draft.txt', '/final.txt');
  t.is((await vfs.getattr('/final.txt')).size, 4);
  t.is(await code(vfs.getattr('/draft.txt')), 'NOT_FOUND');
  await vfs.flushAll();
  t.is(remote.getFile('/final.txt')!.toString(), 'text');
  t.false(remote.has('/draft.txt'));
  t.is(remote.calls.move, 0);
});

test('rename of a server file with pending new content: moved first, then new content at the new name', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 60_000 });
  remote.putFile('/doc.txt', 'old');
  const fh = await vfs.open('/doc.txt', O_RDWR);
  await vfs.write('/doc.txt', fh, Buffer.from('NEW!'), 4, 0);
  await vfs.flush('/doc.txt', fh);
  await vfs.release('/doc.txt', fh);
  await vfs.rename('/doc.txt', '/renamed.txt');
  await vfs.flushAll();
  t.is(remote.getFile('/renamed.txt')!.toString(), 'NEW!');
  t.false(remote.has('/doc.txt'));
  const mi = remote.log.findIndex((l) => l.startsWith('move /doc.txt'));
  const ui = remote.log.findIndex((l) => l.startsWith('upload /renamed.txt'));
  t.true(mi >= 0 && ui > mi, remote.log.join('\n'));
});

test('rename while the upload is in flight: the move waits for it, the content ends at the new name', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 1 });
  remote.putFile('/x.txt', 'server');
  const release = remote.hold('upload');
  t.teardown(release);
  await writeFile(vfs, '/x.txt', 'local version');
  await until(() => remote.held('upload') === 1, 'upload in flight');
  const renamed = vfs.rename('/x.txt', '/y.txt');
  await sleep(30);
  t.false(remote.log.some((l) => l.startsWith('move')));
  release();
  await renamed;
  await vfs.flushAll();
  t.is(remote.getFile('/y.txt')!.toString(), 'local version');
  t.false(remote.has('/x.txt'));
});

test('folder rename with pending children: everything ends under the new name', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 60_000 });
  await vfs.mkdir('/proj', 0o755);
  await vfs.mkdir('/proj/src', 0o755);
  await writeFile(vfs, '/proj/a.txt', 'A');
  await writeFile(vfs, '/proj/src/b.txt', 'B');
  remote.putFile('/proj/server.txt', 'S');
  // an open file inside the folder keeps working across the rename
  const fh = await vfs.create('/proj/src/open.txt', 0o644, O_RDWR | O_CREAT);
  await vfs.write('/proj/src/open.txt', fh, Buffer.from('before '), 7, 0);
  await vfs.rename('/proj', '/project');
  await vfs.write('/project/src/open.txt', fh, Buffer.from('after'), 5, 7);
  await vfs.flush('/project/src/open.txt', fh);
  await vfs.release('/project/src/open.txt', fh);
  t.deepEqual((await vfs.readdir('/project/src')).map((e) => e.name).sort(), ['b.txt', 'open.txt']);
  await vfs.flushAll();
  t.is(remote.getFile('/project/a.txt')!.toString(), 'A');
  t.is(remote.getFile('/project/src/b.txt')!.toString(), 'B');
  t.is(remote.getFile('/project/src/open.txt')!.toString(), 'before after');
  t.is(remote.getFile('/project/server.txt')!.toString(), 'S');
  t.false(remote.paths().some((p) => p.startsWith('/proj/') || p === '/proj'));
});

test('edit-in-place by write-temp-then-rename (sed -i / vim): the target gets the new content', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 20 });
  remote.putFile('/conf.txt', 'a=1\n');
  const old = await readAll(vfs, '/conf.txt');
  await writeFile(vfs, '/.conf.txt.swp', old.toString().replace('1', '2'));
  await vfs.rename('/.conf.txt.swp', '/conf.txt');
  t.is((await readAll(vfs, '/conf.txt')).toString(), 'a=2\n');
  await vfs.flushAll();
  t.is(remote.getFile('/conf.txt')!.toString(), 'a=2\n');
  t.false(remote.has('/.conf.txt.swp'));
});

test('rewriting while an upload runs: the last content wins', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 1 });
  const release = remote.hold('upload');
  t.teardown(release);
  await writeFile(vfs, '/v.txt', 'version 1');
  await until(() => remote.held('upload') === 1, 'upload in flight');
  await writeFile(vfs, '/v.txt', 'version 2 is longer');
  release();
  await vfs.flushAll();
  await until(() => vfs.status().pending === 0, 'all uploaded');
  t.is(remote.getFile('/v.txt')!.toString(), 'version 2 is longer');
});

test('failed uploads: retried, then reported in status and by fsync, kept and retried later', async (t) => {
  const { remote, vfs, logs } = await setup(t, {}, { writebackDelayMs: 60_000, uploadAttempts: 3 });
  remote.failNext({ method: 'upload', times: Infinity });
  const fh = await vfs.create('/fail.txt', 0o644, O_WRONLY | O_CREAT);
  await vfs.write('/fail.txt', fh, Buffer.from('precious'), 8, 0);
  t.is(await code(vfs.fsync('/fail.txt', fh, false)), 'SERVER_ERROR');
  await vfs.release('/fail.txt', fh);
  t.is(remote.calls.upload, 3, 'bounded retries');
  const st = vfs.status();
  t.is(st.pending, 1);
  t.is(st.failures.length, 1);
  t.is(st.failures[0]!.path, '/fail.txt');
  t.is(st.failures[0]!.attempts, 3);
  t.true(logs.some((l) => l.includes('ERROR') && l.includes('/fail.txt')));
  t.is((await readAll(vfs, '/fail.txt')).toString(), 'precious', 'still readable locally');
  remote.clearFailures();
  await vfs.flushAll();
  t.is(remote.getFile('/fail.txt')!.toString(), 'precious');
  t.is(vfs.status().pending, 0);
  t.deepEqual(vfs.status().failures, []);
});

test('non-retryable failure with writebackDelayMs 0 fails close()', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 0 });
  remote.failNext({ method: 'upload', error: new ServerError('disk on fire'), times: 5 });
  const fh = await vfs.create('/c.txt', 0o644, O_WRONLY | O_CREAT);
  await vfs.write('/c.txt', fh, Buffer.from('x'), 1, 0);
  t.is(await code(vfs.flush('/c.txt', fh)), 'SERVER_ERROR');
  await vfs.release('/c.txt', fh);
  t.is(vfs.status().failures.length, 1);
});

test('policy refusals surface at close (EFBIG/EPERM/EDQUOT codes) and the file is not kept', async (t) => {
  const { remote, vfs } = await setup(t, { policy: { maxFileSize: 10, excludedExtensions: ['.exe'], quota: 100 } }, { writebackDelayMs: 0 });
  async function attempt(path: string, size: number): Promise<string> {
    const fh = await vfs.create(path, 0o644, O_WRONLY | O_CREAT);
    await vfs.write(path, fh, Buffer.alloc(size, 1), size, 0);
    const c = await code(vfs.flush(path, fh));
    await vfs.release(path, fh);
    return c;
  }
  t.is(await attempt('/big.txt', 20), 'POLICY_FILE_TOO_LARGE');
  t.is(await attempt('/tool.exe', 5), 'POLICY_EXCLUDED_EXTENSION');
  remote.putFile('/filler', Buffer.alloc(95));
  t.is(await attempt('/q.txt', 8), 'QUOTA_EXCEEDED');
  t.is(await attempt('/ok.txt', 3), 'OK');
  t.is(remote.calls.upload, 1);
  t.false(remote.has('/big.txt'));
  t.is(await code(vfs.getattr('/big.txt')), 'NOT_FOUND');
  t.is(await code(vfs.getattr('/tool.exe')), 'NOT_FOUND');
  t.is(vfs.status().pending, 0);
});

test('concurrent writers and readers of one file see each other', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 10 });
  remote.putFile('/shared.bin', Buffer.alloc(100_000));
  const w1 = await vfs.open('/shared.bin', O_RDWR);
  const w2 = await vfs.open('/shared.bin', O_RDWR);
  const r = await vfs.open('/shared.bin', O_RDONLY);
  await Promise.all([
    vfs.write('/shared.bin', w1, Buffer.alloc(50_000, 0xaa), 50_000, 0),
    vfs.write('/shared.bin', w2, Buffer.alloc(50_000, 0xbb), 50_000, 50_000),
  ]);
  const buf = Buffer.alloc(100_000);
  t.is(await vfs.read('/shared.bin', r, buf, 100_000, 0), 100_000);
  t.true(buf.subarray(0, 50_000).every((x) => x === 0xaa));
  t.true(buf.subarray(50_000).every((x) => x === 0xbb));
  for (const fh of [w1, w2, r]) { await vfs.flush('/shared.bin', fh); await vfs.release('/shared.bin', fh); }
  await vfs.flushAll();
  t.true(remote.getFile('/shared.bin')!.equals(buf));
});

test('create O_EXCL on an existing file is ALREADY_EXISTS; touch of a new file uploads it empty', async (t) => {
  const { remote, vfs } = await setup(t);
  remote.putFile('/e', 'x');
  t.is(await code(vfs.create('/e', 0o644, O_WRONLY | O_CREAT | 0o200 /* O_EXCL */)), 'ALREADY_EXISTS');
  const fh = await vfs.create('/touched', 0o644, O_WRONLY | O_CREAT);
  await vfs.flush('/touched', fh);
  await vfs.release('/touched', fh);
  t.is(remote.getFile('/touched')!.length, 0);
  t.is(await code(vfs.create('/nodir/x', 0o644, O_WRONLY | O_CREAT)), 'NOT_FOUND');
});

test('close() of the drive flushes pending uploads; close({force}) keeps them in the journal', async (t) => {
  const remote = new MemoryRemote();
  const s = await setup(t, {}, { writebackDelayMs: 60_000 }, remote);
  await writeFile(s.vfs, '/p1', 'one');
  await s.vfs.close();
  t.is(remote.getFile('/p1')!.toString(), 'one');
  const v2 = await s.reopen({ writebackDelayMs: 60_000 });
  await writeFile(v2, '/p2', 'two');
  await v2.close({ force: true });
  t.false(remote.has('/p2'));
  const v3 = await s.reopen();
  await v3.flushAll();
  t.is(remote.getFile('/p2')!.toString(), 'two');
  t.true(v3 instanceof Vfs);
});

test('a transient policy-check failure at close keeps the file; the upload checks again and succeeds', async (t) => {
  const { remote, vfs } = await setup(t, { policy: { maxFileSize: 1000 } }, { writebackDelayMs: 60_000 });
  remote.failNext({ method: 'checkUpload', times: 1 });
  await writeFile(vfs, '/net.txt', 'kept');
  t.is(vfs.status().pending, 1);
  await vfs.flushAll();
  t.is(remote.getFile('/net.txt')!.toString(), 'kept');
});

test('an upload that failed is tried again in the background and then leaves the failure list', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 1, uploadAttempts: 2 });
  remote.failNext({ method: 'upload', times: 2 });
  await writeFile(vfs, '/later.txt', 'eventually');
  await until(() => vfs.status().failures.length === 1, 'failure reported');
  t.false(remote.has('/later.txt'));
  // the background retry is a minute away; flushAll (as unmount does) retries at once
  await vfs.flushAll();
  t.is(remote.getFile('/later.txt')!.toString(), 'eventually');
  t.deepEqual(vfs.status().failures, []);
});

test('our own upload does not move the mtime programs saw (editors compare it before saving)', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 60, attrTtlMs: 10, dirTtlMs: 10 });
  await writeFile(vfs, '/ed.txt', 'text');
  const m1 = (await vfs.getattr('/ed.txt')).mtimeMs;
  await until(() => vfs.status().pending === 0, 'upload');
  await sleep(30);
  t.is((await vfs.getattr('/ed.txt')).mtimeMs, m1);
  t.is((await vfs.readdir('/')).find((e) => e.name === 'ed.txt')!.attr.mtimeMs, m1);
  // a change by someone else shows the server's mtime
  remote.putFile('/ed.txt', 'other text', 1_000_000);
  await sleep(30);
  t.is((await vfs.getattr('/ed.txt')).mtimeMs, 1_000_000);
  t.is((await readAll(vfs, '/ed.txt')).toString(), 'other text');
  t.is((await vfs.getattr('/ed.txt')).mtimeMs, 1_000_000);
});

test('a staging folder left in the cache by a killed batch download does not stop the next start', async (t) => {
  const s = await setup(t, {}, { writebackDelayMs: 60_000 });
  await writeFile(s.vfs, '/kept.txt', 'closed before the crash');
  const data = join(s.opts.cacheDir, 'acct', 'data');
  const stage = join(data, '.rsync-run-abc123');
  mkdirSync(join(stage, 'sub'), { recursive: true });
  writeFileSyncFs(join(stage, 'sub', 'part'), 'half a download');
  const v2 = await s.reopen({ writebackDelayMs: 0 });
  await v2.flushAll();
  t.false(existsSync(stage), 'the leftover folder is removed');
  t.is(s.remote.getFile('/kept.txt')!.toString(), 'closed before the crash');
});
