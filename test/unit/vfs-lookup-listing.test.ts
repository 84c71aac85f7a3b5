// Lookups in a folder not listed yet: the first stat there also lists the folder in parallel, so
// the lookups right after it (a rename's missing target, a program's next files) are answered by
// that listing instead of a round trip each. Not in folders known to be big; a listing that lands
// stays the "implicit" kind (later misses are asked of the server again); our own changes win.
import test from 'ava';
import { isRemoteError } from '../../src/errors.js';
import { setup, sleep, until, writeFile } from './helpers.js';

async function code(p: Promise<unknown>): Promise<string> {
  try { await p; return 'OK'; } catch (e) { return isRemoteError(e) ? e.code : String(e); }
}

/** The lookups the kernel makes before rename(2), one after the other, then the rename. */
async function kernelRename(vfs: { getattr(p: string): Promise<unknown>; rename(a: string, b: string): Promise<void> }, from: string, to: string): Promise<void> {
  const parts = from.split('/').filter(Boolean);
  for (let i = 1; i <= parts.length; i++) await vfs.getattr('/' + parts.slice(0, i).join('/'));
  if (await code(vfs.getattr(to)) !== 'NOT_FOUND') throw new Error(`${to} exists`);
  await vfs.rename(from, to);
}

test('cold rename of a folder: the target\'s negative lookup is answered by the listing the source\'s stat started', async (t) => {
  const { remote, vfs } = await setup(t, { latencyMs: 20 });
  for (let i = 0; i < 5; i++) remote.mkdirp(`/small/d0${i}`);
  for (let i = 0; i < 50; i++) remote.putFile(`/small/d03/f${i}`, 'x');
  remote.resetCalls();
  await kernelRename(vfs, '/small/d03', '/small/d03-renamed');
  t.false(remote.log.includes('stat /small/d03-renamed'), remote.log.join(', '));
  t.deepEqual(remote.log.filter((l) => l.startsWith('stat')), ['stat /small', 'stat /small/d03']);
  t.deepEqual(remote.log.filter((l) => l.startsWith('list')).sort(), ['list /', 'list /small']);
  // (the folder's move is written back)
  t.is(remote.calls.move, 0);
  await vfs.flushAll();
  t.is(remote.calls.move, 1);
  t.true(remote.has('/small/d03-renamed/f49'));
  t.false(remote.has('/small/d03'));
  // our own change is shown at once, the listing does not bring the old name back
  t.is(await code(vfs.getattr('/small/d03')), 'NOT_FOUND');
  t.is(((await vfs.getattr('/small/d03-renamed')) as { type: string }).type, 'dir');
});

test('two names looked up in an unlisted folder: one stat and one listing; the second waits for the listing', async (t) => {
  const { remote, vfs } = await setup(t, { latencyMs: 30 });
  for (let i = 0; i < 10; i++) remote.putFile(`/p/f${i}`, 'abc');
  remote.resetCalls();
  // the second lookup starts while stat and listing are both in flight
  const a = vfs.getattr('/p/f0');
  await sleep(10);
  const b = vfs.getattr('/p/f1');
  const c = code(vfs.getattr('/p/missing'));
  t.is(((await a) as { size: number }).size, 3);
  t.is(((await b) as { size: number }).size, 3);
  t.is(await c, 'NOT_FOUND');
  t.is(remote.calls.stat, 1);
  t.is(remote.calls.list, 1);
  // siblings come from the listing now
  for (let i = 2; i < 10; i++) await vfs.getattr(`/p/f${i}`);
  t.is(remote.calls.stat + remote.calls.list, 2);
});

test('the listing stays implicit: a file another client makes later is found, not hidden for the listing\'s TTL', async (t) => {
  const { remote, vfs } = await setup(t, { latencyMs: 5 });
  remote.putFile('/q/a', '1');
  await vfs.getattr('/q/a');
  await until(() => remote.calls.list === 1, 'listing');
  // well past the listing's own round trip: a miss is the server's to answer again
  await sleep(100);
  remote.putFile('/q/new', 'hello');
  t.is(((await vfs.getattr('/q/new')) as { size: number }).size, 5);
  t.is(remote.calls.stat, 2);
});

test('a folder whose last listing was big is not listed speculatively', async (t) => {
  const { remote, vfs } = await setup(t, {}, { speculativeListMaxEntries: 20, dirTtlMs: 50, attrTtlMs: 50, negativeTtlMs: 50 });
  for (let i = 0; i < 30; i++) remote.putFile(`/big/f${i}`, 'x');
  for (let i = 0; i < 3; i++) remote.putFile(`/small/f${i}`, 'x');
  await vfs.readdir('/big');
  await vfs.readdir('/small');
  // both listings long gone (not refetched as "just expired" either)
  await sleep(150);
  remote.resetCalls();
  await vfs.getattr('/big/f1');
  await vfs.getattr('/small/f1');
  await sleep(30);
  t.deepEqual(remote.log.filter((l) => l.startsWith('list')), ['list /small']);
  t.is(remote.calls.stat, 2);
});

test('off with speculativeListMaxEntries 0: one stat per name', async (t) => {
  const { remote, vfs } = await setup(t, {}, { speculativeListMaxEntries: 0 });
  remote.putFile('/o/a', '1');
  remote.putFile('/o/b', '1');
  await vfs.getattr('/o/a');
  await vfs.getattr('/o/b');
  await sleep(20);
  t.is(remote.calls.list, 0);
  t.is(remote.calls.stat, 2);
});

test('our own create while the listing is in flight: the name is not answered missing from that older listing', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 0 });
  remote.putFile('/w/a', '1');
  const release = remote.hold('list');
  t.teardown(release);
  await vfs.getattr('/w/a');
  await until(() => remote.held('list') === 1, 'listing in flight');
  await writeFile(vfs, '/w/made', 'mine');
  release();
  t.is(((await vfs.getattr('/w/made')) as { size: number }).size, 4);
  await sleep(20);
  t.is(((await vfs.getattr('/w/made')) as { size: number }).size, 4);
  t.deepEqual((await vfs.readdir('/w')).map((e) => e.name).sort(), ['a', 'made']);
});

test('a listing that fails leaves the lookups to their stats', async (t) => {
  const { remote, vfs } = await setup(t, { latencyMs: 5 });
  remote.putFile('/f/a', '1');
  remote.putFile('/f/b', '22');
  remote.failNext({ method: 'list', times: 5 });
  t.is(((await vfs.getattr('/f/a')) as { size: number }).size, 1);
  t.is(((await vfs.getattr('/f/b')) as { size: number }).size, 2);
  t.is(await code(vfs.getattr('/f/c')), 'NOT_FOUND');
});

// Remote.listBeforeType (vBoxx): the first stat in a folder also lists the name it asks for.

/** What the kernel does for a cold `ls -l /a/b/c`: a lookup per level, one after the other, then the listing. */
async function coldLsL(vfs: { getattr(p: string): Promise<unknown>; readdir(p: string): Promise<{ name: string }[]> }, dir: string): Promise<string[]> {
  const parts = dir.split('/').filter(Boolean);
  for (let i = 1; i <= parts.length; i++) await vfs.getattr('/' + parts.slice(0, i).join('/'));
  return (await vfs.readdir(dir)).map((e) => e.name);
}

test('listBeforeType: a cold path walk lists each name with its stat; the next level and the last listing come from those (two round trips for three levels)', async (t) => {
  const { remote, vfs } = await setup(t, { latencyMs: 20, listBeforeType: true });
  for (let d = 0; d < 3; d++) for (let i = 0; i < 20; i++) remote.putFile(`/bench/small/d0${d}/f${i}`, 'x');
  remote.resetCalls();
  const names = await coldLsL(vfs, '/bench/small/d01');
  t.is(names.length, 20);
  // /bench/small: answered by /bench's listing, asked with /bench's stat
  t.deepEqual(remote.log.filter((l) => l.startsWith('stat')), ['stat /bench', 'stat /bench/small/d01']);
  // the parents' listings for misses, and the names' own: d01's is the one readdir used
  t.deepEqual(remote.log.filter((l) => l.startsWith('list')).sort(), ['list /', 'list /bench', 'list /bench/small', 'list /bench/small/d01']);
  // the folders' own entries are the stats' (with their times), not made up by the listings
  const a = (await vfs.getattr('/bench/small/d01')) as { type: string; mtimeMs?: number };
  t.is(a.type, 'dir');
  t.is(remote.calls.stat + remote.calls.list, 6);
  // the listings of parents not listed with their own stat were asked for lookups (ListOptions.forLookups), the names' own not
  t.deepEqual([...remote.listedForLookups].sort(), ['/', '/bench/small']);
});

test('listBeforeType: a file looked up first in its folder: its listing fails, the stat answers, nothing is cached wrong', async (t) => {
  const { remote, vfs } = await setup(t, { latencyMs: 5, listBeforeType: true });
  remote.putFile('/p/doc.txt', 'hello');
  remote.resetCalls();
  t.is(((await vfs.getattr('/p/doc.txt')) as { type: string; size: number }).size, 5);
  await until(() => remote.calls.list === 2, 'the listings');
  await sleep(20);
  t.deepEqual(remote.log.filter((l) => l.startsWith('list')).sort(), ['list /p', 'list /p/doc.txt']);
  t.is(((await vfs.getattr('/p/doc.txt')) as { type: string }).type, 'file');
  t.deepEqual((await vfs.readdir('/p')).map((e) => e.name), ['doc.txt']);
});

test('listBeforeType: a name known to be a big folder is stat\'ed only; without the capability nothing changes', async (t) => {
  const { remote, vfs } = await setup(t, { listBeforeType: true }, { speculativeListMaxEntries: 20, dirTtlMs: 50, attrTtlMs: 50, negativeTtlMs: 50 });
  for (let i = 0; i < 30; i++) remote.putFile(`/top/big/f${i}`, 'x');
  await vfs.readdir('/top/big');
  await sleep(150);
  remote.resetCalls();
  await vfs.getattr('/top/big');
  await sleep(30);
  t.false(remote.log.includes('list /top/big'), remote.log.join(', '));
  const m = await setup(t, { latencyMs: 5 });
  m.remote.putFile('/q/r/f', 'x');
  m.remote.resetCalls();
  await m.vfs.getattr('/q/r');
  await sleep(30);
  t.deepEqual(m.remote.log.filter((l) => l.startsWith('list')), ['list /q']);
});

test('listBeforeType: a name\'s listing that lands before its stat does not make up the folder\'s entry (its time is the stat\'s)', async (t) => {
  const { remote, vfs } = await setup(t, { listBeforeType: true });
  remote.mkdirp('/a/b');
  remote.putFile('/a/b/f', 'x');
  const when = ((await remote.stat('/a/b')) as { mtimeMs: number }).mtimeMs;
  remote.resetCalls();
  // the parent's listing fails, so only the stat can tell /a/b's own entry
  remote.failNext({ method: 'list', match: (p) => p === '/a', times: 5 });
  const release = remote.hold('stat');
  t.teardown(release);
  const first = vfs.getattr('/a/b');
  await until(() => remote.log.includes('list /a/b') && remote.held('stat') === 1, 'the stat held, the listing asked');
  await sleep(30);
  let second: { mtimeMs: number } | undefined;
  const p = vfs.getattr('/a/b').then((a) => { second = a as { mtimeMs: number }; });
  await sleep(30);
  t.is(second, undefined, 'a lookup meanwhile waits for the stat');
  release();
  await p;
  t.is(((await first) as { mtimeMs: number }).mtimeMs, when);
  t.is(second!.mtimeMs, when);
});

test('a folder the remote tells is one before its stat completes (Maxxo: times take a daemon run): its listing starts then, and readdir finds it', async (t) => {
  const { remote, vfs } = await setup(t, { batchStat: true, typesAheadMs: 60, latencyMs: 5 });
  for (let i = 0; i < 20; i++) remote.putFile(`/top/d/f${i}`, 'x');
  remote.putFile('/top/file', 'y');
  remote.resetCalls();
  const a = vfs.getattr('/top/d');
  await until(() => remote.log.includes('list /top/d'), 'the listing asked while the stat waits for times');
  t.true(remote.calls.statMany >= 1);
  t.is(((await a) as { type: string }).type, 'dir');
  const lists = remote.calls.list;
  t.is((await vfs.readdir('/top/d')).map((e) => e.name).length, 20);
  t.is(remote.calls.list, lists, 'readdir used that listing');
  // a file: nothing listed for it
  await vfs.getattr('/top/file');
  await sleep(20);
  t.false(remote.log.includes('list /top/file'), remote.log.join(', '));
});
