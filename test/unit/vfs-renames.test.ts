// Rename write-back for files (namespace/moves.ts): rename answers once journalled, the drive shows
// the new name at once (lookups, listings, reads of bytes not cached) while the server still has
// the old one, the move goes later (chains folded, after the deletes and mkdirs it needs, before
// whatever reaches the server at either name), survives a crash, and a refusal is reported.
import test from 'ava';
import { CrossDevice, Forbidden } from '../../src/errors.js';
import type { MemoryRemote } from '../helpers/memory-remote.js';
import { O_RDONLY, O_RDWR, readAll, setup, until, writeFile } from './helpers.js';

const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string }) => e.code ?? String(e));
/** Nothing is sent until a flush or a waiter asks for it. */
const HOLD = { moveIdleMs: 600_000, moveMaxDelayMs: 600_000, deleteIdleMs: 600_000, deleteMaxDelayMs: 600_000 };
const moves = (r: MemoryRemote) => r.log.filter((l) => l.startsWith('move '));

test('mv answers with no request; the new name shows, the old one does not, also in listings fetched from the server meanwhile', async (t) => {
  const { remote, vfs } = await setup(t, {}, HOLD);
  remote.putFile('/d/a', 'AAA');
  remote.putFile('/d/keep', 'k');
  remote.mkdirp('/e');
  await vfs.readdir('/d');
  await vfs.readdir('/e');
  remote.resetCalls();
  await vfs.rename('/d/a', '/e/b');
  const total = Object.values(remote.calls).reduce((x, y) => x + y, 0);
  t.is(total, 0, JSON.stringify(remote.calls));
  t.true(remote.has('/d/a') && !remote.has('/e/b'), 'the server has not heard of it');
  t.is(vfs.status().pendingMoves, 1);
  t.is(vfs.status().pending, 1);
  // listings asked of the server again (forced): the server still lists /d/a and lacks /e/b
  const meta = (vfs as unknown as { meta: { listing(dir: string, force?: boolean): Promise<unknown> } }).meta;
  await meta.listing('/d', true);
  await meta.listing('/e', true);
  t.deepEqual((await vfs.readdir('/d')).map((e) => e.name).sort(), ['keep']);
  t.deepEqual((await vfs.readdir('/e')).map((e) => e.name), ['b']);
  t.is((await vfs.getattr('/e/b')).size, 3);
  t.is(await code(vfs.getattr('/d/a')), 'NOT_FOUND');
  // bytes not cached come from the server's old name
  t.is((await readAll(vfs, '/e/b')).toString(), 'AAA');
  t.deepEqual(moves(remote), []);
  await vfs.flushAll();
  t.deepEqual(moves(remote), ['move /d/a /e/b']);
  t.true(!remote.has('/d/a') && remote.getFile('/e/b')?.toString() === 'AAA');
  t.is(vfs.status().pending, 0);
  t.deepEqual((await vfs.readdir('/e')).map((e) => e.name), ['b']);
});

test('reads of the new name before the send, whole-file remote too; a read that races the send follows the file', async (t) => {
  for (const rangedReads of [true, false]) {
    // (no prefetch of siblings: /c's bytes must not be cached before the test reads them)
    const { remote, vfs } = await setup(t, { rangedReads }, { ...HOLD, prefetchFiles: 0 });
    remote.putFile('/a', 'x'.repeat(5000));
    remote.putFile('/c', 'y'.repeat(5000));
    await vfs.rename('/a', '/b');
    t.is((await readAll(vfs, '/b')).toString(), 'x'.repeat(5000), `rangedReads ${rangedReads}`);
    // the request for /c's bytes leaves with the old name and is answered after the move landed
    await vfs.rename('/c', '/d');
    const release = remote.hold(rangedReads ? 'read' : 'download');
    const reading = readAll(vfs, '/d');
    await until(() => remote.held(rangedReads ? 'read' : 'download') === 1, 'the read was sent');
    await vfs.flushAll();
    t.false(remote.has('/c'));
    release();
    t.is((await reading).toString(), 'y'.repeat(5000), `rangedReads ${rangedReads}: read racing the move`);
  }
});

test('a chain folds into one move; a chain back to the start moves nothing; a swap through a temporary name keeps its order', async (t) => {
  const { remote, vfs } = await setup(t, {}, HOLD);
  remote.putFile('/a', 'A');
  remote.putFile('/x', 'X');
  remote.putFile('/p', 'P');
  remote.putFile('/q', 'Q');
  await vfs.rename('/a', '/b');
  await vfs.rename('/b', '/c');
  await vfs.rename('/x', '/y');
  await vfs.rename('/y', '/x');
  t.is(vfs.status().pendingMoves, 1);
  // swap p and q
  await vfs.rename('/p', '/tmp');
  await vfs.rename('/q', '/p');
  await vfs.rename('/tmp', '/q');
  t.deepEqual((await vfs.readdir('/')).map((e) => e.name).sort(), ['c', 'p', 'q', 'x']);
  t.is((await readAll(vfs, '/p')).toString(), 'Q');
  t.is((await readAll(vfs, '/q')).toString(), 'P');
  await vfs.flushAll();
  t.deepEqual(moves(remote), ['move /a /c', 'move /p /tmp', 'move /q /p', 'move /tmp /q']);
  t.deepEqual(remote.paths(), ['/', '/c', '/p', '/q', '/x']);
  t.is(remote.getFile('/p')?.toString(), 'Q');
  t.is(remote.getFile('/q')?.toString(), 'P');
  t.deepEqual(vfs.status().failures, []);
});

test('rename onto an existing server file: the target is replaced (the service refuses, it is deleted first)', async (t) => {
  const { remote, vfs } = await setup(t, {}, HOLD);
  remote.putFile('/new', 'new bytes');
  remote.putFile('/orig', 'old bytes');
  await vfs.readdir('/');
  await vfs.rename('/new', '/orig');
  t.is((await vfs.getattr('/orig')).size, 9);
  t.is((await readAll(vfs, '/orig')).toString(), 'new bytes');
  t.deepEqual((await vfs.readdir('/')).map((e) => e.name), ['orig']);
  await vfs.flushAll();
  t.deepEqual(remote.paths(), ['/', '/orig']);
  t.is(remote.getFile('/orig')?.toString(), 'new bytes');
  t.deepEqual(vfs.status().failures, []);
});

test('unlink of the target before the send: no move, the server file is deleted at its old name (and a file the rename replaced too)', async (t) => {
  const { remote, vfs } = await setup(t, {}, HOLD);
  remote.putFile('/a', 'A');
  remote.putFile('/s', 'S');
  remote.putFile('/t', 'T');
  await vfs.rename('/a', '/b');
  await vfs.unlink('/b');
  await vfs.rename('/s', '/t');
  await vfs.unlink('/t');
  t.is(vfs.status().pendingMoves, 0);
  t.deepEqual((await vfs.readdir('/')).map((e) => e.name), []);
  await vfs.flushAll();
  t.deepEqual(moves(remote), []);
  t.deepEqual(remote.paths(), ['/']);
  t.deepEqual(vfs.status().failures, []);
  t.is(vfs.status().pending, 0);
});

test('uploads and metadata of either name go after the move; deletes and mkdirs it needs go before it', async (t) => {
  const { remote, vfs } = await setup(t, { keepsAttrs: true }, { ...HOLD, writebackDelayMs: 600_000 });
  remote.putFile('/a', 'old');
  remote.putFile('/t', 'doomed');
  await vfs.unlink('/t');
  await vfs.rename('/a', '/t');
  // the file is changed at its new name, and a new file takes the old one
  const fh = await vfs.open('/t', O_RDWR);
  await vfs.write('/t', fh, Buffer.from('NEW'), 3, 0);
  await vfs.release('/t', fh);
  await writeFile(vfs, '/a', 'another');
  await vfs.utimens('/a', 1_000_000, 1_000_000);
  await vfs.flushAll();
  const at = (s: string) => remote.log.indexOf(s);
  t.true(at('remove /t') >= 0 && at('remove /t') < at('move /a /t'), remote.log.join('\n'));
  t.true(at('move /a /t') < at('upload /t') && at('move /a /t') < at('upload /a'), remote.log.join('\n'));
  t.is(remote.getFile('/t')?.toString(), 'NEW');
  t.is(remote.getFile('/a')?.toString(), 'another');
  t.deepEqual(vfs.status().failures, []);
});

test('rmdir of the folder a file was moved out of, mkdir at its old name, a rename of its new folder: the move goes first', async (t) => {
  const { remote, vfs } = await setup(t, {}, HOLD);
  remote.putFile('/d/f', 'F');
  remote.putFile('/g', 'G');
  remote.mkdirp('/e');
  await vfs.rename('/d/f', '/e/f');
  await vfs.rmdir('/d');
  await vfs.rename('/g', '/e/g');
  await vfs.rename('/e', '/e2');
  await vfs.flushAll();
  t.deepEqual(remote.paths(), ['/', '/e2', '/e2/f', '/e2/g']);
  t.is(remote.getFile('/e2/f')?.toString(), 'F');
  remote.putFile('/h', 'H');
  await vfs.rename('/h', '/h2');
  await vfs.mkdir('/h', 0o755);
  t.deepEqual(moves(remote).slice(-1), ['move /h /h2']);
  t.is(remote.typeOf('/h'), 'dir');
  t.deepEqual(vfs.status().failures, []);
});

test('crash: a pending rename is replayed at the next start (shown before it is sent), before the upload of the new name', async (t) => {
  const { remote, vfs, reopen } = await setup(t, {}, { ...HOLD, writebackDelayMs: 600_000 });
  remote.putFile('/d/a', 'server bytes');
  remote.putFile('/e', 'E');
  remote.mkdirp('/x');
  await vfs.rename('/d/a', '/x/b');
  await writeFile(vfs, '/x/b', 'changed bytes');
  await vfs.rename('/e', '/x/e');
  await vfs.rename('/x/e', '/x/e2');
  // a crash: nothing sent, the journal is all that is left
  await vfs.close({ force: true });
  t.deepEqual(moves(remote), []);
  const release = remote.hold('move');
  const v2 = await reopen({ writebackDelayMs: 0, moveIdleMs: 0 });
  t.is(v2.status().pendingMoves, 2);
  t.deepEqual((await v2.readdir('/x')).map((e) => e.name).sort(), ['b', 'e2']);
  t.deepEqual((await v2.readdir('/d')).map((e) => e.name), []);
  t.is((await readAll(v2, '/x/e2')).toString(), 'E');
  release();
  await v2.flushAll();
  t.deepEqual(moves(remote), ['move /d/a /x/b', 'move /e /x/e2']);
  t.is(remote.getFile('/x/b')?.toString(), 'changed bytes');
  t.true(remote.log.indexOf('move /d/a /x/b') < remote.log.indexOf('upload /x/b'), remote.log.join('\n'));
  t.deepEqual(remote.paths(), ['/', '/d', '/x', '/x/b', '/x/e2']);
  t.is(v2.status().pending, 0);
});

test('a replay after the server applied the move counts it as done', async (t) => {
  const { remote, vfs, reopen } = await setup(t, {}, HOLD);
  remote.putFile('/a', 'A');
  await vfs.rename('/a', '/b');
  await vfs.close({ force: true });
  // the server got the move, the crash came before its journal record was done
  await remote.move('/a', '/b');
  const v2 = await reopen({ moveIdleMs: 0 });
  await v2.flushAll();
  t.deepEqual(v2.status().failures, []);
  t.is(v2.status().pending, 0);
  t.deepEqual(remote.paths(), ['/', '/b']);
});

test('a refused move is reported (status, fsync of its folder, log) and the drive shows what the server holds; one that depends on it too', async (t) => {
  const { remote, vfs, logs } = await setup(t, {}, HOLD);
  remote.putFile('/a', 'A');
  remote.putFile('/b', 'B');
  remote.putFile('/ok', 'ok');
  remote.failNext({ method: 'move', error: new Forbidden('not allowed', { path: '/a' }), match: (p) => p === '/a' });
  remote.failNext({ method: 'move', match: (p) => p === '/ok' });
  await vfs.rename('/a', '/a2');
  // made on top of the refused one: /b takes the name the server keeps
  await vfs.rename('/b', '/a');
  await vfs.rename('/ok', '/ok2');
  t.deepEqual((await vfs.readdir('/')).map((e) => e.name).sort(), ['a', 'a2', 'ok2']);
  // once per refusal: the move and the one made on top of it
  t.is(await code(vfs.fsyncdir('/')), 'TRANSFER_FAILED');
  t.is(await code(vfs.fsyncdir('/')), 'TRANSFER_FAILED');
  t.is(await code(vfs.fsyncdir('/')), 'ok', 'reported once each');
  const r = await vfs.flushAll();
  t.deepEqual(r.failed, [], 'a refusal is not pending any more');
  t.is(remote.getFile('/ok2')?.toString(), 'ok', 'retried after the transient failure');
  t.deepEqual(remote.paths(), ['/', '/a', '/b', '/ok2']);
  t.is(remote.getFile('/a')?.toString(), 'A', 'the server file the refused move left is not replaced');
  t.deepEqual((await vfs.readdir('/')).map((e) => e.name).sort(), ['a', 'b', 'ok2']);
  t.is((await readAll(vfs, '/a')).toString(), 'A');
  const f = vfs.status().failures;
  t.deepEqual(f.map((x) => [x.op, x.path]).sort(), [['move', '/a'], ['move', '/a2']]);
  t.true(logs.some((l) => /rename of \/a to \/a2 refused/.test(l)));
});

test('what the service refuses beforehand (EXDEV) is the program\'s error at once; RENAME_NOREPLACE is written back, and does not replace what another client put there', async (t) => {
  const { remote, vfs } = await setup(t, { moveReplaces: true }, HOLD);
  remote.putFile('/r1/a', 'A');
  remote.putFile('/r2/x', 'X');
  remote.putFile('/n', 'N');
  (remote as unknown as { checkMove(from: string, to: string): void }).checkMove = (from, to) => {
    if (from.split('/')[1] !== to.split('/')[1]) throw new CrossDevice('between roots', { path: from });
  };
  t.is(await code(vfs.rename('/r1/a', '/r2/a')), 'CROSS_DEVICE');
  t.is((await readAll(vfs, '/r1/a')).toString(), 'A');
  t.is(await code(vfs.rename('/r1/a', '/n2', { noReplace: true })), 'CROSS_DEVICE');
  t.is(await code(vfs.rename('/n', '/r2/z', { noReplace: true })), 'CROSS_DEVICE');
  await vfs.rename('/r1/a', '/r1/b', { noReplace: true });
  await vfs.readdir('/r2');
  await vfs.rename('/r2/x', '/r2/y', { noReplace: true });
  // another client takes /r2/y before the move went: the service would replace it, it is asked first
  remote.putFile('/r2/y', 'theirs');
  t.deepEqual(moves(remote), []);
  t.is(vfs.status().pendingMoves, 2);
  await vfs.flushAll();
  t.deepEqual(moves(remote), ['move /r1/a /r1/b']);
  t.is(remote.getFile('/r2/y')?.toString(), 'theirs');
  t.is(remote.getFile('/r2/x')?.toString(), 'X');
  t.deepEqual(vfs.status().failures.map((f) => [f.op, f.path]), [['move', '/r2/y']]);
  t.deepEqual((await vfs.readdir('/r2')).map((e) => e.name).sort(), ['x', 'y']);
  t.is((await readAll(vfs, '/r2/y')).toString(), 'theirs');
});

test('the save pattern: a temp file renamed over the original sends no move; one uploaded already moves; the right bytes after a restart', async (t) => {
  const { remote, vfs, reopen } = await setup(t, {}, { ...HOLD, writebackDelayMs: 600_000 });
  remote.putFile('/doc', 'v1');
  await writeFile(vfs, '/doc.tmp', 'v2');
  await vfs.rename('/doc.tmp', '/doc');
  t.is(vfs.status().pendingMoves, 0, 'a local-only temp file moves nothing');
  await vfs.flushAll();
  t.is(remote.getFile('/doc')?.toString(), 'v2');
  // the temp file reached the server before the rename
  await writeFile(vfs, '/doc.tmp', 'v3');
  await vfs.flushAll();
  t.true(remote.has('/doc.tmp'));
  await vfs.rename('/doc.tmp', '/doc');
  t.is(vfs.status().pendingMoves, 1);
  await vfs.close({ force: true });
  const v2 = await reopen({ moveIdleMs: 0 });
  t.is((await readAll(v2, '/doc')).toString(), 'v3');
  await v2.flushAll();
  t.deepEqual(remote.paths(), ['/', '/doc']);
  t.is(remote.getFile('/doc')?.toString(), 'v3');
  const v3 = await reopen();
  t.is((await readAll(v3, '/doc')).toString(), 'v3');
  t.is(O_RDONLY, 0);
});

test('an upload of the new name due before the rename\'s window ends waits for the move (which it hurries), and so does a new file at the old name', async (t) => {
  const { remote, vfs } = await setup(t, {}, { ...HOLD, writebackDelayMs: 5 });
  remote.putFile('/a', 'old');
  await vfs.rename('/a', '/b');
  const fh = await vfs.open('/b', O_RDWR);
  await vfs.write('/b', fh, Buffer.from('NEW'), 3, 0);
  await vfs.release('/b', fh);
  await writeFile(vfs, '/a', 'another');
  await until(() => vfs.status().pending === 0, 'everything landed without a flush');
  const at = (s: string) => remote.log.indexOf(s);
  t.true(at('move /a /b') >= 0 && at('move /a /b') < at('upload /b') && at('move /a /b') < at('upload /a'), remote.log.join('\n'));
  t.is(remote.getFile('/b')?.toString(), 'NEW');
  t.is(remote.getFile('/a')?.toString(), 'another');
});

test('a file whose upload was tried and never landed, renamed over a server file and renamed again: the old server file goes, the content lands at the last name (soak seed 140009)', async (t) => {
  const { remote, vfs } = await setup(t, {}, { ...HOLD, writebackDelayMs: 1, uploadAttempts: 1 });
  remote.putFile('/d/f', 'old');
  remote.failNext({ method: 'upload', match: (p) => p === '/d/f.tmp' });
  await writeFile(vfs, '/d/f.tmp', 'new content');
  await until(() => vfs.status().failures.length === 1, 'the upload of the temp file failed');
  await vfs.rename('/d/f.tmp', '/d/f');
  await vfs.rename('/d/f', '/d/g');
  await vfs.flushAll();
  t.deepEqual(vfs.status().failures, []);
  t.deepEqual(remote.paths(), ['/', '/d', '/d/g']);
  t.is(remote.getFile('/d/g')?.toString(), 'new content');
  t.is(vfs.status().pending, 0);
});

test('a read the old name answers NOT_FOUND while the move is on its way waits for the move and reads the new name', async (t) => {
  for (const rangedReads of [true, false]) {
    const { remote, vfs } = await setup(t, { rangedReads }, { ...HOLD, prefetchFiles: 0 });
    remote.putFile('/a', 'z'.repeat(3000));
    await vfs.rename('/a', '/b');
    const release = remote.hold('move');
    const flushing = vfs.flushAll();
    await until(() => remote.held('move') === 1, 'the move was sent');
    // the server applied it; its answer has not come back yet
    remote.putFile('/b', 'z'.repeat(3000));
    remote.deleteExternal('/a');
    const reading = readAll(vfs, '/b');
    await until(() => remote.calls[rangedReads ? 'read' : 'download'] >= 1, 'the read at the old name');
    release();
    t.is((await reading).toString(), 'z'.repeat(3000), `rangedReads ${rangedReads}`);
    await flushing;
    t.deepEqual(vfs.status().failures, []);
  }
});

test('an open file renamed and then unlinked before the send: its handle still reads it all (fetched from the old name first), the server file is deleted, nothing moved', async (t) => {
  for (const rangedReads of [true, false]) {
    const { remote, vfs } = await setup(t, { rangedReads }, { ...HOLD, prefetchFiles: 0 });
    const data = 'q'.repeat(300_000);
    remote.putFile('/a', data);
    const fh = await vfs.open('/a', O_RDONLY);
    await vfs.rename('/a', '/b');
    await vfs.unlink('/b', { keepOpenAs: '/.fuse_hidden0000000100000001' });
    t.is(vfs.status().pendingMoves, 0);
    await vfs.flushAll();
    t.deepEqual(moves(remote), []);
    t.false(remote.has('/a'));
    const buf = Buffer.alloc(data.length);
    let n = 0;
    for (let got; n < data.length && (got = await vfs.read('/b', fh, buf.subarray(n), data.length - n, n)) > 0;) n += got;
    t.is(buf.subarray(0, n).toString(), data, `rangedReads ${rangedReads}`);
    await vfs.release('/b', fh);
  }
});

test('a refused move takes the content written at its target back to the name the server keeps (never over another client\'s file), also along a chain', async (t) => {
  const { remote, vfs } = await setup(t, { moveReplaces: true }, { ...HOLD, writebackDelayMs: 600_000 });
  remote.putFile('/x', 'X');
  remote.putFile('/p', 'P');
  remote.putFile('/z', 'Z');
  await vfs.readdir('/');
  await vfs.rename('/x', '/y', { noReplace: true });
  await writeFile(vfs, '/y', 'ours, written after the rename');
  // a chain that does not fold (z takes p's name between): p -> q (refused), z -> p, q -> r, written at r
  await vfs.rename('/p', '/q', { noReplace: true });
  await vfs.rename('/z', '/p');
  await vfs.rename('/q', '/r');
  t.is(vfs.status().pendingMoves, 4);
  await writeFile(vfs, '/r', 'ours at the end of the chain');
  // another client takes /y and /q before the moves went
  remote.putFile('/y', 'theirs');
  remote.putFile('/q', 'theirs too');
  await vfs.flushAll();
  t.is(remote.getFile('/y')?.toString(), 'theirs', 'another client\'s file is not replaced');
  t.is(remote.getFile('/x')?.toString(), 'ours, written after the rename');
  t.is(remote.getFile('/q')?.toString(), 'theirs too');
  // the file the chain renamed is p on the server: our content goes there; z stays where it was
  t.is(remote.getFile('/p')?.toString(), 'ours at the end of the chain');
  t.is(remote.getFile('/z')?.toString(), 'Z');
  t.deepEqual(remote.paths(), ['/', '/p', '/q', '/x', '/y', '/z']);
  t.deepEqual((await vfs.readdir('/')).map((e) => e.name).sort(), ['p', 'q', 'x', 'y', 'z']);
  t.is((await readAll(vfs, '/x')).toString(), 'ours, written after the rename');
  t.is((await readAll(vfs, '/y')).toString(), 'theirs');
  t.is((await readAll(vfs, '/p')).toString(), 'ours at the end of the chain');
  t.is(vfs.status().pending, 0);
  t.deepEqual(vfs.status().failures.map((f) => f.path).sort(), ['/p', '/q', '/r', '/y']);
});

test('a service that gives a moved file a new revision (vBoxx): the bytes cached before the rename are read again without a fetch', async (t) => {
  for (const revOnMove of [true, false]) {
    // (no attribute or listing caching: the open sees what the server lists now)
    const { remote, vfs } = await setup(t, { revOnMove }, { ...HOLD, prefetchFiles: 0, attrTtlMs: 0, dirTtlMs: 0 });
    remote.putFile('/a', 'c'.repeat(20_000));
    t.is((await readAll(vfs, '/a')).toString(), 'c'.repeat(20_000));
    await vfs.rename('/a', '/b');
    await vfs.flushAll();
    t.deepEqual(moves(remote), ['move /a /b']);
    remote.resetCalls();
    t.is((await readAll(vfs, '/b')).toString(), 'c'.repeat(20_000));
    t.is(remote.calls.read + remote.calls.download, 0, `revOnMove ${revOnMove}: ${remote.log.join(', ')}`);
  }
});
