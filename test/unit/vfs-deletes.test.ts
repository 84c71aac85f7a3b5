// Delete write-back (namespace/deletes.ts): unlink/rmdir answer once journalled, the server gets
// coalesced deletes, and whatever reaches the server at a pending-deleted path goes after it.
import test from 'ava';
import { Forbidden } from '../../src/errors.js';
import { setup, writeFile } from './helpers.js';

const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string }) => e.code ?? String(e));
/** Nothing is sent until a flush or a waiter asks for it. */
const HOLD = { deleteIdleMs: 600_000, deleteMaxDelayMs: 600_000 };

test('rm -rf: answered before the server hears of it; the folder folds its files, other files go as one request', async (t) => {
  const { remote, vfs } = await setup(t, { removeBatchMax: 100 }, HOLD);
  for (let i = 0; i < 20; i++) remote.putFile(`/d/f${i}`, 'x');
  for (let i = 0; i < 10; i++) remote.putFile(`/e/g${i}`, 'y');
  for (const n of (await vfs.readdir('/d')).map((e) => e.name)) await vfs.unlink(`/d/${n}`);
  // the server still lists them: a fresh listing must not bring them back, nor make rmdir refuse
  await vfs.rmdir('/d');
  for (const n of (await vfs.readdir('/e')).map((e) => e.name)) await vfs.unlink(`/e/${n}`);
  t.is(remote.calls.remove, 0);
  t.true(remote.has('/d/f3') && remote.has('/e/g3'));
  t.deepEqual((await vfs.readdir('/')).map((e) => e.name), ['e']);
  t.is(await code(vfs.getattr('/d')), 'NOT_FOUND');
  t.is(await code(vfs.getattr('/d/f1')), 'NOT_FOUND');
  t.is(await code(vfs.getattr('/e/g1')), 'NOT_FOUND');
  t.deepEqual((await vfs.readdir('/e')).map((e) => e.name), []);
  const s = vfs.status();
  t.is(s.pendingDeletes, 11);
  t.true(s.pending >= 11);
  await vfs.deletesSent();
  t.is(remote.calls.remove, 1, 'one request');
  const sent = remote.log.find((l) => l.startsWith('remove '))!.slice(7).split(' ').sort();
  t.deepEqual(sent, ['/d', ...Array.from({ length: 10 }, (_, i) => `/e/g${i}`)].sort());
  t.deepEqual(remote.paths(), ['/', '/e']);
  t.is(vfs.status().pendingDeletes, 0);
});

test('a name gone from the server meanwhile: the rest of its batch is still deleted', async (t) => {
  const { remote, vfs } = await setup(t, { removeBatchMax: 100 }, HOLD);
  remote.putFile('/a', '1');
  remote.putFile('/b', '2');
  await vfs.unlink('/a');
  await vfs.unlink('/b');
  remote.deleteExternal('/a');
  await vfs.deletesSent();
  t.false(remote.has('/b'));
  t.deepEqual(vfs.status().failures, []);
});

test('a file made again at a pending-deleted path reaches the server after the delete (file and folder)', async (t) => {
  const { remote, vfs } = await setup(t, {}, HOLD);
  remote.putFile('/a', 'old');
  remote.putFile('/d/x', 'old');
  await vfs.unlink('/a');
  await writeFile(vfs, '/a', 'new');
  await vfs.unlink('/d/x');
  await vfs.rmdir('/d');
  await vfs.mkdir('/d', 0o755);
  await writeFile(vfs, '/d/x', 'new');
  await vfs.flushAll();
  t.is(remote.getFile('/a')?.toString(), 'new');
  t.is(remote.getFile('/d/x')?.toString(), 'new');
  const i = (s: string) => remote.log.indexOf(s);
  t.true(i('remove /a') >= 0 && i('remove /a') < i('upload /a'), remote.log.join('\n'));
  t.true(i('remove /d') >= 0 && i('remove /d') < i('mkdir /d'), remote.log.join('\n'));
});

test('a rename onto a pending-deleted name, and out of a folder holding one, goes after the delete', async (t) => {
  const { remote, vfs } = await setup(t, {}, HOLD);
  remote.putFile('/t', 'old');
  remote.putFile('/s', 'src');
  remote.putFile('/f/k', 'k');
  remote.putFile('/f/keep', 'keep');
  await vfs.unlink('/t');
  await vfs.rename('/s', '/t');
  await vfs.unlink('/f/k');
  await vfs.rename('/f', '/g');
  // (the file's rename is written back too: it goes with the flush, after the delete)
  await vfs.flushAll();
  t.true(remote.log.indexOf('remove /t') < remote.log.indexOf('move /s /t'), remote.log.join('\n'));
  t.is(remote.getFile('/t')?.toString(), 'src', 'the delete did not remove what the move put there');
  t.deepEqual(remote.paths().filter((p) => p.startsWith('/g')), ['/g', '/g/keep']);
  t.false(remote.has('/f'));
});

test('crash: pending deletes are replayed at the next start, before an upload of the same name', async (t) => {
  const { remote, vfs, reopen } = await setup(t, {}, { ...HOLD, writebackDelayMs: 600_000 });
  remote.putFile('/a', 'old');
  remote.putFile('/b', 'b');
  remote.putFile('/d/x', 'x');
  await vfs.unlink('/a');
  await writeFile(vfs, '/a', 'new');
  await vfs.unlink('/b');
  await vfs.unlink('/d/x');
  await vfs.rmdir('/d');
  // a crash: nothing sent, the journal is all that is left
  await vfs.close({ force: true });
  t.is(remote.calls.remove, 0);
  t.true(remote.has('/b') && remote.has('/d/x'));
  const release = remote.hold('remove');
  const v2 = await reopen({ deleteIdleMs: 0, writebackDelayMs: 0 });
  // still on the server, not shown
  t.deepEqual((await v2.readdir('/')).map((e) => e.name), ['a']);
  release();
  await v2.flushAll();
  t.deepEqual(remote.paths(), ['/', '/a']);
  t.is(remote.getFile('/a')?.toString(), 'new');
  t.true(remote.log.indexOf('remove /a') < remote.log.indexOf('upload /a'), remote.log.join('\n'));
  t.is(v2.status().pending, 0);
});

test('a refused delete is reported (status, fsync of its folder, flush) and the name shows again; a transient failure is retried', async (t) => {
  const { remote, vfs, logs } = await setup(t, {}, HOLD);
  remote.putFile('/no', 'kept');
  remote.putFile('/later', 'x');
  remote.failNext({ method: 'remove', error: new Forbidden('not allowed', { path: '/no' }), match: (p) => p === '/no' });
  remote.failNext({ method: 'remove', match: (p) => p === '/later' });
  await vfs.unlink('/no');
  await vfs.unlink('/later');
  t.is(await code(vfs.getattr('/no')), 'NOT_FOUND');
  // fsync of the folder waits for its deletes and fails once for the refusal
  t.is(await code(vfs.fsyncdir('/')), 'TRANSFER_FAILED');
  t.is(await code(vfs.fsyncdir('/')), 'ok');
  const r = await vfs.flushAll();
  t.false(remote.has('/later'), 'retried after the transient failure');
  t.true(remote.has('/no'));
  t.deepEqual((await vfs.readdir('/')).map((e) => e.name), ['no']);
  const f = vfs.status().failures;
  t.is(f.length, 1);
  t.is(f[0]!.op, 'delete');
  t.is(f[0]!.path, '/no');
  t.deepEqual(r.failed, [], 'a refusal is not pending any more');
  t.is(r.pending, 0);
  t.true(logs.some((l) => /delete of \/no refused/.test(l)));
});

test('a listing of a removed folder fetched while its delete is pending does not bring the folder back (soak seed 812957)', async (t) => {
  const { remote, vfs } = await setup(t, {}, HOLD);
  remote.putFile('/p/d/f', 'x');
  await vfs.unlink('/p/d/f');
  await vfs.rmdir('/p/d');
  t.true(remote.has('/p/d'), 'the delete is still pending');
  // a listing of the folder that started before the rmdir and is fetched again after it (its
  // generation moved), as a lookup's speculative listing does: the server still has the folder
  const meta = (vfs as unknown as { meta: { listing(dir: string, force?: boolean): Promise<unknown> } }).meta;
  t.is(await code(meta.listing('/p/d', true)), 'NOT_FOUND');
  t.is(await code(vfs.getattr('/p/d')), 'NOT_FOUND', 'the folder stays gone for this drive');
  // a create at that name is a file, not EISDIR
  await writeFile(vfs, '/p/d', 'now a file');
  await vfs.flushAll();
  t.is(remote.getFile('/p/d')?.toString(), 'now a file');
});
