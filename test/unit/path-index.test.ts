// PathIndex (vfs/paths.ts) and the metadata cache's indexed LRUs (meta/cache.ts): what is at or
// under a path, checked against a plain scan of the keys after random adds, deletes and evictions.
import test from 'ava';
import { LRUCache } from 'lru-cache';
import { PathIndex, isUnder } from '../../src/vfs/paths.js';
import { indexedLru } from '../../src/vfs/meta/cache.js';
import { rng } from './helpers.js';

const scan = (keys: Iterable<string>, p: string) => [...keys].filter((k) => k === p || isUnder(k, p)).sort();

function randomPath(r: () => number): string {
  const depth = 1 + Math.floor(r() * 4);
  let p = '';
  for (let i = 0; i < depth; i++) p += '/' + 'abcd'[Math.floor(r() * 4)];
  return p;
}

test('PathIndex: under() matches a scan of the keys through random adds and deletes; nothing is left when they are gone', (t) => {
  const r = rng(7);
  const keys = new Set<string>();
  const idx = new PathIndex((k) => keys.has(k));
  for (let step = 0; step < 5000; step++) {
    const p = randomPath(r);
    if (r() < 0.55) { if (!keys.has(p)) { keys.add(p); idx.add(p); } } else if (keys.has(p)) { keys.delete(p); idx.delete(p); }
    if (step % 50 === 0) {
      for (const q of ['/', '/a', '/a/b', '/c/d/a', randomPath(r)]) t.deepEqual(idx.under(q).sort(), scan(keys, q), `under ${q} at step ${step}`);
    }
  }
  for (const k of [...keys]) { keys.delete(k); idx.delete(k); }
  t.is(idx.size, 0);
  t.deepEqual(idx.under('/'), []);
});

test('PathIndex: the top folder as a key, and a key whose folders are not keys', (t) => {
  const keys = new Set<string>(['/', '/x/y/z']);
  const idx = new PathIndex((k) => keys.has(k));
  idx.add('/');
  idx.add('/x/y/z');
  t.deepEqual(idx.under('/').sort(), ['/', '/x/y/z']);
  t.deepEqual(idx.under('/x'), ['/x/y/z']);
  t.deepEqual(idx.under('/x/y/z/w'), []);
  keys.delete('/x/y/z');
  idx.delete('/x/y/z');
  t.is(idx.size, 0);
});

test('the cache\'s LRU keeps its index right through evictions, replacements and deletes', (t) => {
  const r = rng(11);
  let lru!: LRUCache<string, { v: number }>;
  const idx = new PathIndex((k) => lru.has(k));
  lru = indexedLru<{ v: number }>(40, idx);
  for (let step = 0; step < 4000; step++) {
    const p = randomPath(r);
    const x = r();
    if (x < 0.6) lru.set(p, { v: step });
    else if (x < 0.8) lru.delete(p);
    else for (const k of idx.under(p)) lru.delete(k);
    if (step % 40 === 0) t.deepEqual(idx.under('/').sort(), scan(lru.keys(), '/'), `step ${step}`);
  }
  lru.clear();
  // clear() drops every key before the cache stops calling them keys: what it leaves linked is
  // found dead and unlinked by the next walk
  t.deepEqual(idx.under('/'), []);
  t.is(idx.size, 0, 'the index empties with the cache');
});
