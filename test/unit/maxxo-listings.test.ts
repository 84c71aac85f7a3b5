// DaemonListings (src/remote/maxxo/listings.ts) against a scripted rsync: when a folder's listing
// is served while its run is still going (the API's names all have their rows, the "." row for a
// folder's own time), and what the rest of the run still brings.
import test from 'ava';
import { DaemonListings } from '../../src/remote/maxxo/listings.js';
import type { ListedRow } from '../../src/remote/maxxo/rsync.js';
import { silentLogger } from '../../src/log.js';

interface Run { dir: string; deep: boolean; row: (name: string, type?: 'file' | 'dir', size?: number, exec?: boolean) => void; end: () => void }

function scripted(bounds: { deepRowsMax?: number; deepRowsHard?: number } = {}) {
  const runs: Run[] = [];
  const waiting: ((r: Run) => void)[] = [];
  const listings = new DaemonListings({
    run: (dir, onRow, o) => new Promise<void>((resolve, reject) => {
      // a stopped run ends as rsync killed by its signal would
      o?.signal?.addEventListener('abort', () => reject(o.signal!.reason), { once: true });
      const r: Run = {
        dir, deep: !!o?.deep,
        row: (name, type = 'file', size = 1, exec?: boolean) => onRow({ name, type, size, mtimeMs: 1000 * (name.length + 1), ...(exec !== undefined ? { exec } : {}) } as ListedRow),
        end: resolve,
      };
      runs.push(r);
      waiting.shift()?.(r);
    }),
    uploading: () => false,
    closed: () => false,
    log: silentLogger,
  }, 60_000, bounds);
  const next = () => new Promise<Run>((res) => { const r = runs.find((x) => !(x as { taken?: boolean }).taken); if (r) { (r as { taken?: boolean }).taken = true; res(r); } else waiting.push((x) => { (x as { taken?: boolean }).taken = true; res(x); }); });
  return { listings, runs, next };
}

const settle = () => new Promise((r) => setTimeout(r, 10));

test('a listing is served once every name the API gave has its row, before the run ends', async (t) => {
  const { listings, runs, next } = scripted();
  let served = false;
  const p = listings.since('/d', -Infinity).then((v) => { served = true; return v; });
  const run = await next();
  listings.expect('/d', new Set(['a', 'b']));
  run.row('.', 'dir');
  run.row('a');
  await settle();
  t.false(served, 'b has no row yet');
  run.row('b');
  const v = await p;
  t.true(served);
  t.deepEqual([...v!.rows.keys()].sort(), ['a', 'b']);
  t.is(v!.self, 2000);
  run.end();
  t.is(runs.length, 1);
});

test('a name the daemon does not list: the listing waits for the run\'s end', async (t) => {
  const { listings, next } = scripted();
  let served = false;
  const p = listings.since('/d', -Infinity).then((v) => { served = true; return v; });
  const run = await next();
  run.row('.', 'dir');
  run.row('a');
  listings.expect('/d', new Set(['a', 'gone']));
  await settle();
  t.false(served);
  run.end();
  t.deepEqual([...(await p)!.rows.keys()], ['a']);
});

test('a two-level run served by names keeps its subfolders when it ends; a subfolder asked for meanwhile waits for that, not a run of its own', async (t) => {
  const { listings, runs, next } = scripted();
  const p = listings.since('/d', -Infinity, true);
  const run = await next();
  t.true(run.deep);
  listings.expect('/d', new Set(['f', 's', 't']));
  run.row('.', 'dir');
  run.row('f');
  run.row('s', 'dir');
  run.row('s/x');
  run.row('t', 'dir');
  const v = await p;
  t.deepEqual([...v!.dirs.keys()].sort(), ['s', 't']);
  // t's rows are still to come
  let child: ListedRow[] | undefined;
  const c = listings.since('/d/t', -Infinity, true).then((l) => { child = [...l!.rows.values()]; });
  await settle();
  t.is(child, undefined, 'waits for the two-level run');
  run.row('t/y');
  run.row('t/z');
  run.end();
  await c;
  t.deepEqual(child!.map((r) => r.name).sort(), ['y', 'z']);
  t.deepEqual([...(await listings.since('/d/s', -Infinity, true))!.rows.keys()], ['x']);
  t.is(runs.length, 1, 'the subfolders came with the folder\'s run');
});

test('a folder\'s own time (dirTime) comes with the first row of its run, not its end', async (t) => {
  const { listings, next } = scripted();
  // the parent has a listing without this folder's time: dirTime runs the folder itself
  const time = listings.dirTime('/p/q');
  const run = await next();
  t.is(run.dir, '/p/q');
  run.row('.', 'dir');
  t.is(await time, 2000);
  run.row('many');
  run.end();
});

test('a subfolder looked up during its parent\'s two-level run gets its time and listing from that run once its part is whole, before its own run gives a row', async (t) => {
  const { listings, runs, next } = scripted();
  void listings.since('/p', -Infinity, true);
  const parent = await next();
  t.true(parent.deep);
  parent.row('.', 'dir');
  parent.row('f');
  parent.row('a', 'dir');
  parent.row('a/x');
  // the lookup of /p/a: its own run starts, and gives nothing yet
  let time: number | undefined;
  const ownStart = Date.now();
  const timeP = listings.dirTime('/p/a').then((v) => { time = v; });
  const own = await next();
  t.is(own.dir, '/p/a');
  let listed: string[] | undefined;
  const listP = listings.since('/p/a', -Infinity, true).then((l) => { listed = [...l!.rows.keys()]; });
  parent.row('a/y');
  await settle();
  t.is(listed, undefined, 'the part may still grow');
  t.is(time, undefined);
  // the next row of /p itself: a's part is whole
  parent.row('b', 'dir');
  await Promise.all([timeP, listP]);
  t.is(time, 2000, 'the time of the row "a"');
  t.deepEqual(listed!.sort(), ['x', 'y']);
  // a later ask is answered at once the same way while the runs go on
  t.deepEqual([...(await listings.since('/p/a', -Infinity, true))!.rows.keys()].sort(), ['x', 'y']);
  // a listing asked to be newer than the parent's run is not served from it
  let fresh = false;
  const freshP = listings.since('/p/a', ownStart).then(() => { fresh = true; });
  await settle();
  t.false(fresh);
  own.row('.', 'dir');
  own.row('x');
  own.row('y');
  own.row('new');
  own.end();
  await freshP;
  parent.row('b/z');
  parent.end();
  t.is(runs.length, 2);
});

test('the last subfolder\'s part is whole when its parent\'s run ends; a folder changed by us since that run began is not served from it', async (t) => {
  const { listings, next } = scripted();
  void listings.since('/p', -Infinity, true);
  const parent = await next();
  parent.row('.', 'dir');
  parent.row('a', 'dir');
  parent.row('a/x');
  parent.row('b', 'dir');
  parent.row('b/y');
  const bTime = listings.dirTime('/p/b');
  const ownB = await next();
  // a file of ours lands in /p/a while the parent's run goes on: its part may miss it
  listings.own('/p/a/mine', { name: 'mine', type: 'file', size: 1, mtimeMs: 5000 });
  let aServed = false;
  const aP = listings.since('/p/a', -Infinity, true).then((l) => { aServed = true; return l; });
  await settle();
  t.false(aServed, 'not from the parent\'s part');
  parent.end();
  t.is(await bTime, 2000, 'b\'s part was whole at the end of the run');
  // nor kept from it: a run of its own
  const ownA = await next();
  t.is(ownA.dir, '/p/a');
  t.false(aServed);
  ownA.row('.', 'dir');
  ownA.row('x');
  ownA.row('mine');
  ownA.end();
  t.deepEqual([...(await aP)!.rows.keys()].sort(), ['mine', 'x']);
  ownB.end();
  t.deepEqual([...(await listings.since('/p/b', -Infinity, true))!.rows.keys()], []);
});

test('a folder whose time we set while its parent\'s two-level run goes on does not take its time from that run\'s part', async (t) => {
  const { listings, next } = scripted();
  void listings.since('/p', -Infinity, true);
  const parent = await next();
  parent.row('.', 'dir');
  parent.row('c', 'dir');
  parent.row('c/x');
  listings.folderTime('/p/c', 9000);
  parent.row('d', 'dir');
  let time: number | undefined;
  const timeP = listings.dirTime('/p/c').then((v) => { time = v; });
  const own = await next();
  t.is(own.dir, '/p/c');
  await settle();
  t.is(time, undefined, 'not the part\'s 2000');
  parent.end();
  await timeP;
  t.is(time, 9000, 'ours, from the parent\'s listing');
  own.end();
});

test('a flat folder past the two-level bounds is listed whole by its two-level run; one with subfolders stopped at the hard bound is listed by a one-level run', async (t) => {
  const { listings, runs, next } = scripted({ deepRowsMax: 3, deepRowsHard: 5 });
  const flat = listings.since('/flat', -Infinity, true);
  const run = await next();
  run.row('.', 'dir');
  for (let i = 0; i < 10; i++) run.row(`f${i}`);
  run.end();
  t.is((await flat)!.rows.size, 10, 'no bound for the folder\'s own rows');
  t.is(runs.length, 1);

  const mixed = listings.since('/mixed', -Infinity, true);
  const deep = await next();
  deep.row('.', 'dir');
  for (let i = 0; i < 6; i++) deep.row(`f${i}`);
  deep.row('s', 'dir');
  deep.row('s/x');
  // past the hard bound with rows below: stopped, and the folder's own rows come from a
  // one-level run (before: nothing started it, the listing never came)
  deep.row('s/y');
  const one = await next();
  t.false(one.deep);
  t.is(one.dir, '/mixed');
  one.row('.', 'dir');
  for (let i = 0; i < 6; i++) one.row(`f${i}`);
  one.row('s', 'dir');
  one.end();
  const v = await mixed;
  t.is(v!.rows.size, 6);
  t.deepEqual([...v!.dirs.keys()], ['s']);
});

test('a listing for lookups (source with deep false, prime the same) runs one level; a program\'s first listing two', async (t) => {
  const { listings, next } = scripted();
  listings.prime('/walk', false);
  const p = listings.source('/walk', [], false);
  const run = await next();
  t.false(run.deep);
  run.row('.', 'dir');
  run.row('sub', 'dir');
  run.end();
  t.deepEqual([...(await p)!.dirs.keys()], ['sub']);
  const q = listings.source('/other', []);
  const run2 = await next();
  t.true(run2.deep);
  run2.row('.', 'dir');
  run2.end();
  await q;
});

test('a change of ours with no known row landing while a run is in flight: that run\'s waiters get the next run', async (t) => {
  const { listings, runs, next } = scripted();
  let served = false;
  const p = listings.since('/d', -Infinity).then((v) => { served = true; return v; });
  const first = await next();
  first.row('.', 'dir');
  // a file moved into /d from a folder never listed (its row unknown) lands now; the run may
  // have listed /d before it
  listings.own('/d/moved', undefined);
  first.row('old');
  first.end();
  await settle();
  t.false(served, 'not the run that began before the move landed');
  const second = await next();
  t.is(second.dir, '/d');
  second.row('.', 'dir');
  second.row('old');
  second.row('moved');
  second.end();
  const v = await p;
  t.deepEqual([...v!.rows.keys()].sort(), ['moved', 'old']);
  t.is(runs.length, 2);
});

test('a download\'s row (executability unknown) landing while a run is in flight keeps what the run lists of the same version', async (t) => {
  const { listings, next } = scripted();
  const p = listings.since('/d', -Infinity);
  const run = await next();
  run.row('.', 'dir');
  // the drive downloaded /d/tool (size 1, mtime 5000 as the scripted rows give a 4-letter name)
  listings.own('/d/tool', { name: 'tool', type: 'file', size: 1, mtimeMs: 5000 });
  run.row('tool', 'file', 1, true);
  run.row('other', 'file', 1, false);
  run.end();
  const v = await p;
  t.is(v!.rows.get('tool')?.exec, true);
  t.is(v!.rows.get('other')?.exec, false);
  // another version (another size): what our row says stands, executability unknown
  listings.own('/d/other', { name: 'other', type: 'file', size: 2, mtimeMs: 6000 });
  t.is(listings.row('/d/other')?.exec, undefined);
  t.is(listings.row('/d/other')?.size, 2);
});
