// Lookup (src/vfs/meta/lookup.ts) against a fake stat/list source: which questions reach the
// server, and which are answered by caches, joined, or by a listing.
import test, { type ExecutionContext } from 'ava';
import type { ListResult, Remote, RemoteEntry } from '../../src/remote/types.js';
import type { VfsOptions } from '../../src/vfs/api.js';
import { Ctx } from '../../src/vfs/context.js';
import { MetaCache } from '../../src/vfs/meta/cache.js';
import { Lookup, type LocalView } from '../../src/vfs/meta/lookup.js';
import { defaultVfsOptions, resolveOptions } from '../../src/vfs/options.js';
import { parentOf, baseOf } from '../../src/vfs/paths.js';
import { quietLog, sleep, until, within } from './helpers.js';

class FakeSource {
  readonly kind = 'memory' as const;
  readonly files = new Map<string, RemoteEntry>();
  stats: string[] = [];
  lists: string[] = [];
  constructor(private readonly latencyMs: number) {}
  add(path: string, type: 'file' | 'dir' = 'file'): void {
    this.files.set(path, { name: baseOf(path), type, size: type === 'file' ? 3 : 0, mtimeMs: 1 });
  }
  async stat(path: string): Promise<RemoteEntry | null> {
    this.stats.push(path);
    await new Promise((r) => setTimeout(r, this.latencyMs));
    if (path === '/') return { name: '', type: 'dir', size: 0 };
    return this.files.get(path) ?? null;
  }
  async list(dir: string): Promise<ListResult> {
    this.lists.push(dir);
    await new Promise((r) => setTimeout(r, this.latencyMs));
    return { entries: [...this.files.entries()].filter(([p]) => parentOf(p) === dir).map(([, e]) => e) };
  }
}

function setup(t: ExecutionContext, over: Partial<VfsOptions> = {}, latencyMs = 20, view: Partial<LocalView> = {}) {
  const src = new FakeSource(latencyMs);
  const ctx = new Ctx(src as unknown as Remote, resolveOptions({ ...defaultVfsOptions('t'), log: quietLog(), ...over }));
  const meta = new MetaCache(ctx);
  const lookup = new Lookup(ctx, meta, { hidden: () => undefined, local: () => undefined, ...view });
  t.teardown(() => { ctx.closed = true; });
  return { src, meta, lookup };
}

test('concurrent lookups of one name share one stat; a miss is cached for negativeTtlMs', async (t) => {
  const { src, lookup } = setup(t, { listAfterStats: 0 });
  src.add('/x');
  const [a, b] = await Promise.all([lookup.lookup('/x'), lookup.lookup('/x')]);
  t.is(a?.type, 'file');
  t.is(a, b);
  t.deepEqual(src.stats, ['/x']);
  t.is(await lookup.lookup('/nope'), null);
  t.is(await lookup.lookup('/nope'), null);
  t.deepEqual(src.stats, ['/x', '/nope']);
  t.deepEqual(src.lists, [], 'listAfterStats 0: never lists for lookups');
});

test('the first stat in a folder lists it alongside; a miss right after is answered by that listing', async (t) => {
  const { src, lookup, meta } = setup(t, { listAfterStats: 4 });
  src.add('/d', 'dir');
  src.add('/d/a');
  src.add('/d/b');
  t.truthy(await lookup.lookup('/d/a'));
  t.deepEqual(src.stats, ['/d/a']);
  t.deepEqual(src.lists, ['/d'], 'the speculative listing went with the first stat');
  // a name the listing has: no request; a name it lacks, right after: answered by it too
  t.truthy(await lookup.lookup('/d/b'));
  t.is(await lookup.lookup('/d/new'), null);
  t.deepEqual(src.stats, ['/d/a']);
  // the listing was fetched for lookups: it is implicit (a program never saw it)
  t.true(meta.dirs.get('/d')?.implicit);
});

test('after listAfterStats stats in a folder with no listing, the folder is listed', async (t) => {
  const { src, lookup } = setup(t, { listAfterStats: 3, speculativeListMaxEntries: 0 });
  for (const n of ['1', '2', '3', '4']) src.add('/e/' + n);
  await lookup.lookup('/e/1');
  await lookup.lookup('/e/2');
  t.deepEqual(src.lists, []);
  t.truthy(await lookup.lookup('/e/3'));
  t.deepEqual(src.lists, ['/e']);
  t.deepEqual(src.stats, ['/e/1', '/e/2'], 'the third name came with the listing');
  t.truthy(await lookup.lookup('/e/4'));
  t.deepEqual(src.stats, ['/e/1', '/e/2']);
  // an implicit listing does not answer a miss: a file another client just made must not vanish
  src.add('/e/5');
  t.truthy(await lookup.lookup('/e/5'));
  t.deepEqual(src.stats, ['/e/1', '/e/2', '/e/5']);
});

test('an answer that raced our own change of the folder is returned but not cached', async (t) => {
  const { src, lookup, meta } = setup(t, { listAfterStats: 0 });
  src.add('/f/a');
  const p = lookup.lookup('/f/a');
  meta.setInParent('/f/b', { name: 'b', type: 'file', size: 1 });
  t.truthy(await p);
  t.is(meta.attrs.get('/f/a'), undefined);
  await lookup.lookup('/f/a');
  t.deepEqual(src.stats, ['/f/a', '/f/a']);
  t.truthy(meta.attrs.get('/f/a'), 'the second answer is cached');
});

test('local state answers before any cache or request; hidden names too', async (t) => {
  const local: RemoteEntry = { name: 'l', type: 'file', size: 9 };
  const { src, lookup } = setup(t, { listAfterStats: 0 }, 5, {
    local: (p) => (p === '/l' ? local : undefined),
    hidden: (p) => (p === '/.fuse_hidden1' ? { name: '.fuse_hidden1', type: 'file', size: 1 } : undefined),
  });
  t.is(await lookup.lookup('/l'), local);
  t.is((await lookup.lookup('/.fuse_hidden1'))?.size, 1);
  t.deepEqual(src.stats, []);
  await t.throwsAsync(lookup.existing('/missing'), { code: 'NOT_FOUND' } as never);
  await t.throwsAsync(lookup.parentDir('/l/x'), { code: 'NOT_A_DIRECTORY' } as never);
});

test('a name missing from names told ahead of a slow listing is stat\'ed once those names are old, not held for the listing', async (t) => {
  // Maxxo's shape: ops/list names the entries at once, the mtimes take a daemon run; the first
  // stat in the folder (a folder's, so it waits for a run too) is slow. The times are the test's:
  // the stat answers only once the names are older than their own round trip (measured, so a
  // starved worker whose timers fire late cannot make them fresh), and the listing ends only
  // when the test lets it.
  const { src, lookup } = setup(t, { listAfterStats: 4 });
  src.add('/d', 'dir');
  src.add('/d/sub', 'dir');
  let listDone = false;
  let release!: () => void;
  const released = new Promise<void>((r) => { release = r; });
  t.teardown(release);
  let namesAt = 0;
  let namesCame!: () => void;
  const named = new Promise<void>((r) => { namesCame = r; });
  const statsDuringList: string[] = [];
  const plainStat = src.stat.bind(src);
  const t0 = Date.now();
  src.stat = async (path: string) => {
    if (!listDone) statsDuringList.push(path);
    if (path === '/d/sub') {
      await named;
      // the lookup's clock starts after t0: its window for the names ends before this
      await sleep(namesAt + (namesAt - t0) + 50 - Date.now());
    }
    return plainStat(path);
  };
  src.list = async (dir: string, o?: { onNames?: (n: ReadonlySet<string>) => void }) => {
    src.lists.push(dir);
    await sleep(20);
    const entries = [...src.files.entries()].filter(([p]) => parentOf(p) === dir).map(([, e]) => e);
    namesAt = Date.now();
    o?.onNames?.(new Set(entries.map((e) => e.name)));
    namesCame();
    await released;
    listDone = true;
    return { entries };
  };
  t.truthy(await within(lookup.lookup('/d/sub'), 10_000, 'lookup of /d/sub'));
  t.deepEqual(src.lists, ['/d'], 'the speculative listing went with the first stat');
  // the names are older than their own round trip: not an answer for a miss, and the rest of the
  // listing adds no names: the miss is asked at once, not held until the listing ends
  const miss = lookup.lookup('/d/sub-renamed');
  await until(() => statsDuringList.length >= 2, 'the stat of the miss', 10_000);
  t.deepEqual(statsDuringList, ['/d/sub', '/d/sub-renamed'], 'the miss was asked of the server while the listing ran');
  t.is(await within(miss, 10_000, 'the miss, with the listing still running'), null);
  t.false(listDone);
});

test.serial('expired negative entries leave the attribute cache (a churn of deleted names does not hold the heap)', (t) => {
  // the clock is the test's (serial: no other test of the file runs meanwhile), so a worker
  // starved between two lines cannot expire an entry early
  const realNow = Date.now;
  let now = realNow();
  Date.now = () => now;
  t.teardown(() => { Date.now = realNow; });
  const { meta } = setup(t, { negativeTtlMs: 30 });
  for (let i = 0; i < 1000; i++) meta.setInParent(`/gone/f${i}`, null);
  meta.setAttr('/known', { name: 'known', type: 'file', size: 1, mtimeMs: 1 });
  t.is(meta.attrs.size, 1001);
  now += 29;
  t.is(meta.cached('/gone/f5'), null, 'still answered while fresh');
  now += 31;
  // a name answered again since keeps its newer answer
  meta.setAttr('/gone/f7', { name: 'f7', type: 'file', size: 2, mtimeMs: 1 });
  meta.setAttr('/later', null);
  t.deepEqual([...meta.attrs.keys()].sort(), ['/gone/f7', '/known', '/later']);
  t.is(meta.cached('/gone/f7')?.size, 2);
  t.is(meta.cached('/later'), null);
});

test.serial('folder generations: bounded in number, never the same value again after a change', (t) => {
  const { meta } = setup(t);
  const g0 = meta.dirGen('/x');
  meta.bumpDir('/x');
  const g1 = meta.dirGen('/x');
  t.true(g1 > g0);
  // a churn of deleted names (each confirmed delete bumps its path) does not grow the table for good
  for (let i = 0; i < 50_000; i++) meta.bumpDir(`/churn/f${i}`);
  t.true((meta as unknown as { dirEpoch: Map<string, number> }).dirEpoch.size <= 20_000);
  // /x's epoch was dropped: its generation may move (a fetch in flight asks again) but never back
  const g2 = meta.dirGen('/x');
  t.true(g2 >= g1);
  meta.bumpDir('/x');
  t.true(meta.dirGen('/x') > g2);
  // a path tracked since its fetch started keeps its generation while others come and go
  const y = meta.dirGen('/y');
  for (let i = 0; i < 1000; i++) meta.bumpDir(`/more/f${i}`);
  t.is(meta.dirGen('/y'), y);
});
