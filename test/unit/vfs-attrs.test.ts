// Times and modes as write-back changes (writeback/attrs.ts): a utimens/chmod of a file is
// journalled, sent alone (setAttrs, no content) or carried by the content upload, replayed after
// a crash, moved by renames and cancelled by unlinks; folder times and nlink from our own changes.
// The memory remote with keepsAttrs is the model of a service that holds times and modes.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { O_CREAT, O_WRONLY, setup, sleep, writeFile } from './helpers.js';

const T1 = Date.UTC(2001, 1, 3, 4, 5, 6);
const T2 = Date.UTC(1999, 11, 31, 23, 59, 58);

function node(remote: unknown, path: string): { mtimeMs: number; mode?: number; data: Buffer } {
  return (remote as { nodes: Map<string, { mtimeMs: number; mode?: number; data: Buffer }> }).nodes.get(path)!;
}

/** The metadata sends made, by path, in order (folder times moved by our own changes are among them). */
function attrSends(remote: { log: string[] }): string[] {
  return remote.log.filter((l) => l.startsWith('setAttrs ')).map((l) => l.slice('setAttrs '.length));
}

test('utimens of a file on the server: one metadata send, no content; a new mount shows it', async (t) => {
  const s = await setup(t, { keepsAttrs: true }, { writebackDelayMs: 60_000 });
  s.remote.putFile('/a', 'hello');
  await s.vfs.getattr('/a');
  s.remote.resetCalls();
  await s.vfs.utimens('/a', T1, T1);
  await s.vfs.chmod('/a', 0o755);
  t.is((await s.vfs.getattr('/a')).mtimeMs, T1);
  t.is(s.vfs.status().pending, 1, 'both changes in one pending record');
  const r = await s.vfs.flushAll();
  t.is(r.pending, 0);
  t.is(s.remote.calls.upload, 0, 'no content re-sent');
  t.is(s.remote.calls.setAttrs, 1);
  t.is(node(s.remote, '/a').mtimeMs, T1);
  t.is(node(s.remote, '/a').mode, 0o755);
  await s.vfs.close();
  const v = await s.reopen();
  const a = await v.getattr('/a');
  t.is(a.mtimeMs, T1);
  t.is(a.perm, 0o755);
});

test('a file written then touched before its upload: the upload carries the time, nothing else is sent', async (t) => {
  const s = await setup(t, { keepsAttrs: true }, { writebackDelayMs: 60_000 });
  await writeFile(s.vfs, '/n', Buffer.from('new content'));
  await s.vfs.utimens('/n', T2, T2);
  s.remote.resetCalls();
  const r = await s.vfs.flushAll();
  t.is(r.pending, 0);
  t.is(s.remote.calls.upload, 1);
  t.deepEqual(attrSends(s.remote), ['/'], 'the upload carried it (the top folder\'s time, moved by the create, goes alone)');
  t.is(node(s.remote, '/n').mtimeMs, T2);
});

test('the mtime of a plain write reaches the server with the content (not the upload time)', async (t) => {
  const s = await setup(t, { keepsAttrs: true }, { writebackDelayMs: 60_000 });
  await writeFile(s.vfs, '/w', Buffer.from('x'));
  const shown = (await s.vfs.getattr('/w')).mtimeMs;
  await sleep(30);
  await s.vfs.flushAll();
  t.is(node(s.remote, '/w').mtimeMs, shown);
  t.is((await s.vfs.getattr('/w')).mtimeMs, shown);
});

test('crash before the send: the journalled time change is delivered by the next start', async (t) => {
  const s = await setup(t, { keepsAttrs: true }, { writebackDelayMs: 60_000 });
  s.remote.putFile('/c', 'content');
  await s.vfs.utimens('/c', T1, T1);
  t.not(node(s.remote, '/c').mtimeMs, T1);
  // no close: the first drive is gone as after kill -9 (its timers never fire: 60 s)
  const v = await s.reopen({ writebackDelayMs: 0 });
  t.is((await v.getattr('/c')).mtimeMs, T1, 'shown as set while pending');
  const r = await v.flushAll();
  t.is(r.pending, 0);
  t.is(node(s.remote, '/c').mtimeMs, T1);
  t.is(s.remote.calls.upload, 0);
});

test('a pending time change follows a rename and dies with an unlink', async (t) => {
  const s = await setup(t, { keepsAttrs: true }, { writebackDelayMs: 60_000, moveIdleMs: 60_000, moveMaxDelayMs: 60_000 });
  s.remote.putFile('/r1', 'one');
  s.remote.putFile('/u1', 'two');
  await s.vfs.utimens('/r1', T1, T1);
  await s.vfs.utimens('/u1', T2, T2);
  await s.vfs.rename('/r1', '/r2');
  await s.vfs.unlink('/u1');
  // (the rename is written back too: replayed at once, before the time change of its new name)
  const release = s.remote.hold('move');
  const v = await s.reopen({ writebackDelayMs: 0 });
  t.is(v.status().pending, 3, 'the move to /r2, the time of /r2, and / (moved by the rename and the unlink)');
  release();
  await v.flushAll();
  t.true(s.remote.log.indexOf('move /r1 /r2') >= 0 && s.remote.log.indexOf('move /r1 /r2') < s.remote.log.findIndex((l) => l.startsWith('setAttrs /r2')), s.remote.log.join('\n'));
  t.is(node(s.remote, '/r2').mtimeMs, T1);
  t.deepEqual(attrSends(s.remote), ['/r2', '/']);
});

test('a send that fails stays pending and is reported; the next flush delivers it', async (t) => {
  const s = await setup(t, { keepsAttrs: true }, { writebackDelayMs: 60_000 });
  s.remote.putFile('/f', 'x');
  await s.vfs.utimens('/f', T1, T1);
  s.remote.failNext({ method: 'setAttrs', times: Infinity });
  const r = await s.vfs.flushAll();
  t.is(r.pending, 1);
  t.is(r.failed.length, 1);
  t.is(r.failed[0]!.path, '/f');
  s.remote.clearFailures();
  const r2 = await s.vfs.flushAll();
  t.is(r2.pending, 0);
  t.is(node(s.remote, '/f').mtimeMs, T1);
});

test('a service that keeps no mode: chmod and create modes hold for the mount, nothing is sent, a remount shows the default', async (t) => {
  const s = await setup(t);
  s.remote.putFile('/m', 'x');
  await s.vfs.chmod('/m', 0o700);
  t.is((await s.vfs.getattr('/m')).perm, 0o700);
  t.is(s.vfs.status().pending, 0, 'nothing to send');
  const fh = await s.vfs.create('/x', 0o755, O_CREAT | O_WRONLY);
  await s.vfs.release('/x', fh);
  t.is((await s.vfs.getattr('/x')).perm, 0o755);
  const again = await setup(t, {}, {}, s.remote);
  t.is((await again.vfs.getattr('/m')).perm, 0o644, 'a new mount shows the default');
});

test('folder mtime and ctime move with our own changes inside; nlink counts subfolders', async (t) => {
  const { remote, vfs } = await setup(t);
  remote.mkdirp('/d/s1');
  remote.mkdirp('/d/s2');
  remote.putFile('/d/f', 'x');
  const before = await vfs.getattr('/d');
  await vfs.readdir('/d');
  t.is((await vfs.getattr('/d')).nlink, 4, '2 + two subfolders');
  await vfs.utimens('/d', T1, T1);
  t.is((await vfs.getattr('/d')).mtimeMs, T1);
  const steps: [string, () => Promise<unknown>][] = [
    ['create', async () => { const fh = await vfs.create('/d/new', 0o644, O_CREAT | O_WRONLY); await vfs.release('/d/new', fh); }],
    ['unlink', () => vfs.unlink('/d/f')],
    ['mkdir', () => vfs.mkdir('/d/s3', 0o755)],
    ['rmdir', () => vfs.rmdir('/d/s1')],
    ['rename', () => vfs.rename('/d/new', '/d/new2')],
  ];
  for (const [what, step] of steps) {
    await vfs.utimens('/d', T1, T1);
    await step();
    const a = await vfs.getattr('/d');
    t.true(a.mtimeMs > T1, `${what} moves mtime`);
    t.true(a.ctimeMs >= a.mtimeMs, `${what} moves ctime`);
  }
  t.true(before.mtimeMs > 0);
  t.is((await vfs.getattr('/d')).nlink, 4, 's1 gone, s3 made');
  // the count is kept with each change, not counted again (a folder moved out and in, a file
  // renamed over by a folder's move is not possible, a file made where a folder was)
  await vfs.mkdir('/elsewhere', 0o755);
  await vfs.rename('/d/s2', '/elsewhere/s2');
  t.is((await vfs.getattr('/d')).nlink, 3, 's2 moved out');
  await vfs.rename('/elsewhere/s2', '/d/s2b');
  t.is((await vfs.getattr('/d')).nlink, 4, 's2 moved back in under another name');
  await vfs.rmdir('/d/s3');
  const fh = await vfs.create('/d/s3', 0o644, O_CREAT | O_WRONLY);
  await vfs.release('/d/s3', fh);
  t.is((await vfs.getattr('/d')).nlink, 3, 'a file where the folder s3 was');
  t.is((await vfs.readdir('/d')).find((e) => e.name === 's2b')?.attr.nlink, 2);
});

test('the folder times our own changes moved reach the server after those changes; a new mount shows what this one did', async (t) => {
  const s = await setup(t, { keepsAttrs: true }, { writebackDelayMs: 30 });
  s.remote.putFile('/old/gone', 'x');
  s.remote.putFile('/old/stays', 'y');
  await s.vfs.getattr('/old/gone');
  await s.vfs.mkdir('/d', 0o755);
  await s.vfs.mkdir('/d/e', 0o755);
  await writeFile(s.vfs, '/d/e/f', Buffer.from('inside'));
  await s.vfs.unlink('/old/gone');
  const shown = new Map<string, number>();
  for (const p of ['/', '/d', '/d/e', '/old']) shown.set(p, (await s.vfs.getattr(p)).mtimeMs);
  // what lands later moves the server's times (the model does as the services do): ours go after
  await sleep(1100);
  const r = await s.vfs.flushAll();
  t.is(r.pending, 0);
  for (const [p, ms] of shown) t.is(node(s.remote, p).mtimeMs, ms, `${p} on the server`);
  const order = s.remote.log.filter((l) => /^(upload|setAttrs|mkdir|delete)/.test(l));
  const last = (re: RegExp) => order.map((l) => re.test(l)).lastIndexOf(true);
  t.true(last(/^setAttrs \/d\/e$/) > last(/^upload \/d\/e\/f/), `${order.join(', ')}`);
  t.true(last(/^setAttrs \/old$/) > last(/^delete/), `${order.join(', ')}`);
  await s.vfs.close();
  const v = await s.reopen();
  for (const [p, ms] of shown) t.is((await v.getattr(p)).mtimeMs, ms, `${p} after a new mount`);
});

test('a metadata send parked at a rename\'s barrier does not hold the rename (no deadlock, no timeout)', async (t) => {
  const s = await setup(t, { keepsAttrs: true }, { writebackDelayMs: 50, opTimeoutMs: 4000 });
  await writeFile(s.vfs, '/A', Buffer.from('content'));
  const release = s.remote.hold('upload');
  await sleep(150);
  t.is(s.remote.held('upload'), 1, 'the content upload is on its way');
  await s.vfs.utimens('/A', T1, T1);
  // the metadata task sees the upload and comes back 1 s later, while the rename waits for it
  const renamed = s.vfs.rename('/A', '/B');
  await sleep(1300);
  release();
  await renamed;
  const r = await s.vfs.flushAll();
  t.is(r.pending, 0);
  t.is(node(s.remote, '/B').mtimeMs, T1);
});

test('a write after a pending utimens: the write\'s time reaches the server, not the older utimens time', async (t) => {
  const s = await setup(t, { keepsAttrs: true }, { writebackDelayMs: 60_000 });
  s.remote.putFile('/w2', 'old');
  await s.vfs.getattr('/w2');
  await s.vfs.utimens('/w2', T1, T1);
  await writeFile(s.vfs, '/w2', Buffer.from('new bytes'));
  const shown = (await s.vfs.getattr('/w2')).mtimeMs;
  t.true(shown > T1);
  const r = await s.vfs.flushAll();
  t.is(r.pending, 0);
  t.is(node(s.remote, '/w2').mtimeMs, shown);
  t.is(node(s.remote, '/w2').data.toString(), 'new bytes');
});

test('a folder time goes after the uploads into the folder (each moves it on the server); a new mount shows it', async (t) => {
  const s = await setup(t, { keepsAttrs: true }, { writebackDelayMs: 30, uploadBackoffMs: 1500 });
  await s.vfs.mkdir('/d', 0o755);
  // the upload below the folder fails once and waits out its backoff: the folder's time is due
  // meanwhile (the transfer queue is free)
  s.remote.failNext({ method: 'upload' });
  await writeFile(s.vfs, '/d/f', Buffer.from('inside'));
  await s.vfs.utimens('/d', T1, T1);
  t.is((await s.vfs.getattr('/d')).mtimeMs, T1);
  await sleep(600);
  t.is(s.remote.calls.upload, 1, 'the first attempt failed');
  t.is(s.remote.calls.setAttrs, 0, 'not sent before the upload into the folder');
  const r = await s.vfs.flushAll();
  t.is(r.pending, 0);
  const order = s.remote.log.filter((l) => l.startsWith('upload') || l.startsWith('setAttrs'));
  t.deepEqual(order, ['upload /d/f', 'upload /d/f', 'setAttrs /d', 'setAttrs /']);
  t.is(node(s.remote, '/d').mtimeMs, T1);
  await s.vfs.close();
  const v = await s.reopen();
  t.is((await v.getattr('/d')).mtimeMs, T1);
});

test('rmdir of a folder whose time is pending: nothing is sent for it', async (t) => {
  const s = await setup(t, { keepsAttrs: true }, { writebackDelayMs: 60_000 });
  await s.vfs.mkdir('/e', 0o755);
  await s.vfs.utimens('/e', T1, T1);
  await s.vfs.rmdir('/e');
  const r = await s.vfs.flushAll();
  t.is(r.pending, 0);
  t.deepEqual(attrSends(s.remote), ['/'], 'only the top folder\'s time (moved by the mkdir and the rmdir)');
});

test('mkdir then rmdir before the mkdir was sent (mkdirs written back): the folder\'s time goes with it, nothing stays pending', async (t) => {
  // the soak saw pending records grow by one per mkdir+rmdir on Maxxo, each sent only at unmount
  const hold = { mkdirIdleMs: 600_000, mkdirMaxDelayMs: 600_000, writebackDelayMs: 600_000 };
  const s = await setup(t, { keepsAttrs: true, batchMkdir: true }, hold);
  await s.vfs.mkdir('/d', 0o755);
  await s.vfs.flushAll();
  const before = attrSends(s.remote).length;
  for (let i = 0; i < 5; i++) {
    await s.vfs.mkdir(`/d/tmp${i}`, 0o755);
    await s.vfs.rmdir(`/d/tmp${i}`);
  }
  const st = s.vfs.status();
  t.is(st.pendingMkdirs, 0);
  t.is(st.pending - (st.pendingAttrs ?? 0), 0, 'no upload, delete, mkdir or move pending');
  t.is(st.pendingAttrs, 1, 'the time of /d alone (moved by the mkdirs and rmdirs in it)');
  const r = await s.vfs.flushAll();
  t.is(r.pending, 0);
  t.deepEqual(attrSends(s.remote).slice(before), ['/d'], 'nothing sent for the folders made and removed');
  t.is(s.remote.calls.mkdirMany, 1, 'only /d was made');
  // and nothing of them comes back after a restart
  const v = await s.reopen();
  t.is(v.status().pending, 0);
});

test('the top folder (no parent lists it) shows the service\'s time; a touch of it is sent, and a new mount shows that', async (t) => {
  const s = await setup(t, { keepsAttrs: true }, { writebackDelayMs: 30 });
  node(s.remote, '/').mtimeMs = T2;
  await s.vfs.close();
  const v = await s.reopen();
  t.is((await v.getattr('/')).mtimeMs, T2, 'the first look at the top waits for its time');
  await v.utimens('/', T1, T1);
  t.is((await v.getattr('/')).mtimeMs, T1);
  const r = await v.flushAll();
  t.is(r.pending, 0);
  t.is(node(s.remote, '/').mtimeMs, T1);
  t.deepEqual((await v.readdir('/')).map((e) => e.name).filter((n) => n === ''), [], 'no entry of its own in its listing');
  await v.close();
  const w = await s.reopen();
  t.is((await w.getattr('/')).mtimeMs, T1);
});

test('without folder times the top folder shows the mount time, and asks the service nothing for it', async (t) => {
  const s = await setup(t, {}, { writebackDelayMs: 30 });
  const before = Date.now();
  const a = await s.vfs.getattr('/');
  t.true(a.mtimeMs <= Date.now() && a.mtimeMs >= before - 60_000);
  t.is(s.remote.calls.stat ?? 0, 0);
});

// CI at load: a folder's time, due while its rmdir waited for a fresh listing, parked at the
// rmdir's barrier; once the folder's delete was queued, the parked send waited for that delete
// and so sent the whole delete window at once (a delete's window is for coalescing a tree)
test('a folder time due during its rmdir does not hurry the pending deletes', async (t) => {
  const s = await setup(t, { keepsAttrs: true }, { writebackDelayMs: 30, deleteIdleMs: 600_000, deleteMaxDelayMs: 600_000 });
  s.remote.putFile('/d/e/f', 'x');
  await s.vfs.getattr('/d/e/f');
  await s.vfs.unlink('/d/e/f');
  const release = s.remote.hold('list');
  const rm = s.vfs.rmdir('/d/e');
  await sleep(300);
  release();
  await rm;
  await sleep(300);
  t.is(s.vfs.status().pendingDeletes, 1, 'the folder delete (it folds the file\'s) still waits for its window');
  t.is(s.remote.calls.remove, 0);
  const r = await s.vfs.flushAll();
  t.is(r.pending, 0);
  t.is(s.remote.calls.remove, 1);
});

test('a burst of creates in one folder journals its time once per second the service can tell; what is sent is the time it shows', async (t) => {
  const s = await setup(t, { keepsAttrs: true, mtimeResolutionMs: 1000 }, { writebackDelayMs: 60_000 });
  await s.vfs.mkdir('/d', 0o755);
  const start = Date.now();
  for (let i = 0; i < 40; i++) await writeFile(s.vfs, `/d/f${i}`, Buffer.from('x'));
  const seconds = Math.floor(Date.now() / 1000) - Math.floor(start / 1000) + 1;
  const journal = fs.readFileSync(path.join(s.opts.cacheDir, 'acct', 'journal'), 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l.replace(/\0+$/, '')) as { t: string; p?: string });
  const folderRecs = journal.filter((r) => r.t === 'a' && r.p === '/d').length;
  t.true(folderRecs >= 1 && folderRecs <= seconds + 1, `${folderRecs} records of /d's time in ${seconds} s`);
  const shown = (await s.vfs.getattr('/d')).mtimeMs;
  const r = await s.vfs.flushAll();
  t.is(r.pending, 0);
  t.is(Math.floor(node(s.remote, '/d').mtimeMs / 1000), Math.floor(shown / 1000), 'the server has the second the folder shows');
});
