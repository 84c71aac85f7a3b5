// Rename write-back for folders (namespace/moves.ts with `dir` records): rename(2) of a folder
// answers once journalled; until the move is sent the drive shows the folder and everything below
// it at the new name (listings, lookups by path, reads of bytes not cached: the server's old
// names), hides the old one, and whatever reaches the server below either name goes after the
// move; a crash replays it, a refusal is reported.
import test from 'ava';
import type { MemoryRemote } from '../helpers/memory-remote.js';
import { O_RDWR, readAll, setup, until, writeFile } from './helpers.js';

const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string }) => e.code ?? String(e));
/** Nothing is sent until a flush or a waiter asks for it. */
const HOLD = { moveIdleMs: 600_000, moveMaxDelayMs: 600_000, deleteIdleMs: 600_000, deleteMaxDelayMs: 600_000, mkdirIdleMs: 600_000, mkdirMaxDelayMs: 600_000 };
const moves = (r: MemoryRemote) => r.log.filter((l) => l.startsWith('move '));
const total = (r: MemoryRemote) => Object.values(r.calls).reduce((x, y) => x + y, 0);
type Meta = { meta: { listing(dir: string, force?: boolean): Promise<unknown> } };

test('mv of a folder answers with no request; its tree shows at the new name (listings, stats by path, reads) and not at the old one', async (t) => {
  for (const rangedReads of [true, false]) {
    const { remote, vfs } = await setup(t, { rangedReads }, { ...HOLD, prefetchFiles: 0 });
    remote.putFile('/d/a', 'AAA');
    remote.putFile('/d/sub/deep', 'DEEP');
    remote.putFile('/keep', 'k');
    await vfs.readdir('/');
    await vfs.readdir('/d');
    remote.resetCalls();
    await vfs.rename('/d', '/e');
    t.is(total(remote), 0, JSON.stringify(remote.calls));
    t.true(remote.has('/d/a') && !remote.has('/e'), 'the server has not heard of it');
    t.is(vfs.status().pendingMoves, 1);
    // listings asked of the server again (forced): it still lists /d and lacks /e
    await (vfs as unknown as Meta).meta.listing('/', true);
    t.deepEqual((await vfs.readdir('/')).map((e) => e.name).sort(), ['e', 'keep']);
    t.is((await vfs.getattr('/e')).type, 'dir');
    t.is(await code(vfs.getattr('/d')), 'NOT_FOUND');
    t.is(await code(vfs.getattr('/d/a')), 'NOT_FOUND');
    t.is(await code(vfs.readdir('/d')), 'NOT_FOUND');
    // below the new name: nothing of it is cached, all of it comes from the server's old names
    t.deepEqual((await vfs.readdir('/e')).map((e) => e.name).sort(), ['a', 'sub']);
    t.is((await vfs.getattr('/e/sub/deep')).size, 4, `rangedReads ${rangedReads}: a stat by path`);
    t.deepEqual((await vfs.readdir('/e/sub')).map((e) => e.name), ['deep']);
    t.is((await readAll(vfs, '/e/a')).toString(), 'AAA');
    t.is((await readAll(vfs, '/e/sub/deep')).toString(), 'DEEP');
    t.deepEqual(moves(remote), []);
    await vfs.flushAll();
    t.deepEqual(moves(remote), ['move /d /e']);
    t.deepEqual(remote.paths(), ['/', '/e', '/e/a', '/e/sub', '/e/sub/deep', '/keep']);
    t.is(vfs.status().pending, 0);
    t.deepEqual((await vfs.readdir('/e')).map((e) => e.name).sort(), ['a', 'sub']);
    t.deepEqual(vfs.status().failures, []);
  }
});

test('a stat below the moved folder that races the send follows it', async (t) => {
  const { remote, vfs } = await setup(t, {}, HOLD);
  remote.putFile('/d/x/f', 'F');
  await vfs.readdir('/');
  await vfs.rename('/d', '/e');
  const release = remote.hold('move');
  const flushing = vfs.flushAll();
  await until(() => remote.held('move') === 1, 'the move was sent');
  // the server applied it; its answer has not come back yet
  remote.putFile('/e/x/f', 'F');
  remote.deleteExternal('/d');
  const listing = vfs.readdir('/e/x');
  await until(() => (remote.calls.list ?? 0) + (remote.calls.stat ?? 0) >= 1, 'asked at the old name');
  release();
  t.deepEqual((await listing).map((e) => e.name), ['f']);
  await flushing;
  t.deepEqual(vfs.status().failures, []);
});

test('writes below the moved folder go after the move: changed files, new files, times', async (t) => {
  const { remote, vfs } = await setup(t, { keepsAttrs: true }, { ...HOLD, writebackDelayMs: 5 });
  remote.putFile('/d/a', 'old');
  await vfs.readdir('/d');
  await vfs.rename('/d', '/e');
  const fh = await vfs.open('/e/a', O_RDWR);
  await vfs.write('/e/a', fh, Buffer.from('NEW'), 3, 0);
  await vfs.release('/e/a', fh);
  await writeFile(vfs, '/e/n', 'new file');
  await vfs.utimens('/e/n', 1_000_000, 1_000_000);
  await until(() => vfs.status().pending === 0, 'everything landed without a flush');
  const at = (s: string) => remote.log.indexOf(s);
  t.true(at('move /d /e') >= 0 && at('move /d /e') < at('upload /e/a') && at('move /d /e') < at('upload /e/n'), remote.log.join('\n'));
  t.is(remote.getFile('/e/a')?.toString(), 'NEW');
  t.is(remote.getFile('/e/n')?.toString(), 'new file');
  t.deepEqual(remote.paths(), ['/', '/e', '/e/a', '/e/n']);
  t.deepEqual(vfs.status().failures, []);
});

test('content written below a folder before its rename moves with it (journal retargeted), also through a crash', async (t) => {
  const { remote, vfs, reopen } = await setup(t, {}, { ...HOLD, writebackDelayMs: 600_000 });
  remote.putFile('/d/a', 'server');
  await writeFile(vfs, '/d/a', 'changed');
  await writeFile(vfs, '/d/new', 'local only');
  await vfs.rename('/d', '/e');
  t.deepEqual((await vfs.readdir('/e')).map((e) => e.name).sort(), ['a', 'new']);
  await vfs.close({ force: true });
  t.deepEqual(moves(remote), []);
  const v2 = await reopen({ writebackDelayMs: 0, moveIdleMs: 0 });
  t.deepEqual((await v2.readdir('/')).map((e) => e.name), ['e']);
  t.deepEqual((await v2.readdir('/e')).map((e) => e.name).sort(), ['a', 'new']);
  t.is((await readAll(v2, '/e/a')).toString(), 'changed');
  await v2.flushAll();
  t.deepEqual(moves(remote), ['move /d /e']);
  t.deepEqual(remote.paths(), ['/', '/e', '/e/a', '/e/new']);
  t.is(remote.getFile('/e/a')?.toString(), 'changed');
  t.is(remote.getFile('/e/new')?.toString(), 'local only');
  t.true(remote.log.indexOf('move /d /e') < remote.log.indexOf('upload /e/a'), remote.log.join('\n'));
  t.is(v2.status().pending, 0);
});

test('renames below the moved folder are sent after it, in order; a file moved out of it too', async (t) => {
  const { remote, vfs } = await setup(t, {}, HOLD);
  remote.putFile('/d/a', 'A');
  remote.putFile('/d/b', 'B');
  remote.putFile('/d/s/c', 'C');
  remote.mkdirp('/out');
  await vfs.rename('/d', '/e');
  await vfs.rename('/e/a', '/e/a2');
  await vfs.rename('/e/b', '/out/b');
  await vfs.rename('/e/s', '/e/s2');
  t.deepEqual((await vfs.readdir('/e')).map((e) => e.name).sort(), ['a2', 's2']);
  t.deepEqual((await vfs.readdir('/e/s2')).map((e) => e.name), ['c']);
  t.deepEqual((await vfs.readdir('/out')).map((e) => e.name), ['b']);
  t.is((await readAll(vfs, '/e/a2')).toString(), 'A');
  t.is((await readAll(vfs, '/out/b')).toString(), 'B');
  t.is((await readAll(vfs, '/e/s2/c')).toString(), 'C');
  t.is(await code(vfs.getattr('/e/a')), 'NOT_FOUND');
  await vfs.flushAll();
  t.is(moves(remote)[0], 'move /d /e');
  t.deepEqual(remote.paths(), ['/', '/e', '/e/a2', '/e/s2', '/e/s2/c', '/out', '/out/b']);
  t.deepEqual(vfs.status().failures, []);
});

test('unlink, rmdir and mkdir below the moved folder: the move goes first, then they reach the right names', async (t) => {
  for (const batchMkdir of [true, false]) {
    const { remote, vfs } = await setup(t, { batchMkdir }, HOLD);
    remote.putFile('/d/a', 'A');
    remote.putFile('/d/gone/x', 'X');
    remote.putFile('/d/keep', 'K');
    await vfs.rename('/d', '/e');
    await vfs.unlink('/e/a');
    await vfs.unlink('/e/gone/x');
    await vfs.rmdir('/e/gone');
    await vfs.mkdir('/e/made', 0o755);
    t.deepEqual((await vfs.readdir('/e')).map((e) => e.name).sort(), ['keep', 'made']);
    await vfs.flushAll();
    t.deepEqual(remote.paths(), ['/', '/e', '/e/keep', '/e/made'], `batchMkdir ${batchMkdir}`);
    t.deepEqual(vfs.status().failures, []);
  }
});

test('what is pending below a folder when it is renamed reaches the server first (deletes, mkdirs, file moves), and the drive shows the tree right meanwhile', async (t) => {
  const { remote, vfs } = await setup(t, { batchMkdir: true }, HOLD);
  remote.putFile('/d/a', 'A');
  remote.putFile('/d/b', 'B');
  remote.putFile('/d/c', 'C');
  await vfs.unlink('/d/a');
  await vfs.mkdir('/d/m', 0o755);
  await vfs.rename('/d/b', '/d/b2');
  await vfs.rename('/d', '/e');
  t.deepEqual((await vfs.readdir('/e')).map((e) => e.name).sort(), ['b2', 'c', 'm']);
  await vfs.flushAll();
  t.deepEqual(remote.paths(), ['/', '/e', '/e/b2', '/e/c', '/e/m']);
  t.deepEqual(vfs.status().failures, []);
});

test('a folder renamed twice, and back: the server ends where the drive does', async (t) => {
  const { remote, vfs } = await setup(t, {}, HOLD);
  remote.putFile('/a/f', 'F');
  remote.putFile('/x/g', 'G');
  await vfs.rename('/a', '/b');
  await vfs.rename('/b', '/c');
  await vfs.rename('/x', '/y');
  await vfs.rename('/y', '/x');
  t.deepEqual((await vfs.readdir('/')).map((e) => e.name).sort(), ['c', 'x']);
  t.is((await readAll(vfs, '/c/f')).toString(), 'F');
  await vfs.flushAll();
  t.deepEqual(remote.paths(), ['/', '/c', '/c/f', '/x', '/x/g']);
  t.deepEqual(vfs.status().failures, []);
});

test('a folder renamed onto an empty server folder replaces it; a replay after the server applied the move counts it as done', async (t) => {
  const { remote, vfs, reopen } = await setup(t, {}, HOLD);
  remote.putFile('/src/f', 'F');
  remote.mkdirp('/dst');
  await vfs.readdir('/');
  await vfs.rename('/src', '/dst');
  t.deepEqual((await vfs.readdir('/dst')).map((e) => e.name), ['f']);
  await vfs.flushAll();
  t.deepEqual(remote.paths(), ['/', '/dst', '/dst/f']);
  await vfs.rename('/dst', '/again');
  await vfs.close({ force: true });
  await remote.move('/dst', '/again');
  const v2 = await reopen({ moveIdleMs: 0 });
  await v2.flushAll();
  t.deepEqual(v2.status().failures, []);
  t.is(v2.status().pending, 0);
  t.deepEqual(remote.paths(), ['/', '/again', '/again/f']);
});

test('a refused folder move is reported and the drive shows what the server holds', async (t) => {
  const { remote, vfs } = await setup(t, {}, HOLD);
  remote.putFile('/d/f', 'F');
  await vfs.readdir('/');
  await vfs.rename('/d', '/e');
  // another client made /e, not empty, before the move went
  remote.putFile('/e/theirs', 'T');
  await vfs.flushAll();
  t.deepEqual(remote.paths(), ['/', '/d', '/d/f', '/e', '/e/theirs']);
  t.deepEqual(vfs.status().failures.map((f) => [f.op, f.path]), [['move', '/e']]);
  t.is(await code(vfs.fsyncdir('/')), 'TRANSFER_FAILED');
  t.deepEqual((await vfs.readdir('/')).map((e) => e.name).sort(), ['d', 'e']);
  t.deepEqual((await vfs.readdir('/e')).map((e) => e.name), ['theirs']);
  t.is((await readAll(vfs, '/d/f')).toString(), 'F');
});

test('a refused folder move takes what was written below it back to the folder the server keeps', async (t) => {
  const { remote, vfs } = await setup(t, {}, { ...HOLD, writebackDelayMs: 600_000 });
  remote.putFile('/d/f', 'F');
  await vfs.readdir('/');
  await vfs.rename('/d', '/e');
  await writeFile(vfs, '/e/f', 'changed below the new name');
  await writeFile(vfs, '/e/new', 'new below the new name');
  remote.putFile('/e/theirs', 'T');
  await vfs.flushAll();
  t.deepEqual(vfs.status().failures.map((f) => [f.op, f.path]), [['move', '/e']]);
  t.is(vfs.status().pending, 0, JSON.stringify(vfs.status()));
  t.is(remote.getFile('/d/f')?.toString(), 'changed below the new name');
  t.is(remote.getFile('/d/new')?.toString(), 'new below the new name');
  t.deepEqual(remote.paths(), ['/', '/d', '/d/f', '/d/new', '/e', '/e/theirs']);
  t.deepEqual((await vfs.readdir('/d')).map((e) => e.name).sort(), ['f', 'new']);
  t.is((await readAll(vfs, '/d/f')).toString(), 'changed below the new name');
});
