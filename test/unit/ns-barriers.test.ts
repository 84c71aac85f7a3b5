// Namespace barriers (src/vfs/namespace/barriers.ts): overlapping changes go one at a time,
// disjoint ones together; uploads see the barriers that cover their path.
import test from 'ava';
import { Barriers } from '../../src/vfs/namespace/barriers.js';
import { OPTIONAL_DEFAULTS, defaultVfsOptions, resolveOptions } from '../../src/vfs/options.js';

test('overlapping paths are serialized, disjoint ones run together; covering() sees subtrees', async (t) => {
  const b = new Barriers();
  t.true(b.idle);
  const order: string[] = [];
  let releaseA!: () => void;
  const a = b.run(['/d'], async () => {
    order.push('a+');
    await new Promise<void>((r) => { releaseA = r; });
    order.push('a-');
  });
  await new Promise((r) => setTimeout(r, 5));
  t.false(b.idle);
  t.truthy(b.covering('/d/x/y'), 'a path under the barrier is covered');
  t.truthy(b.covering('/d'));
  t.is(b.covering('/dd'), undefined);
  t.is(b.covering('/'), undefined, 'a folder above is not covered (its uploads are not under the change)');
  const inner = b.run(['/d/x'], async () => { order.push('inner'); });
  const other = b.run(['/e'], async () => { order.push('other'); });
  await other;
  t.deepEqual(order, ['a+', 'other']);
  releaseA();
  await Promise.all([a, inner]);
  t.deepEqual(order, ['a+', 'other', 'a-', 'inner']);
  t.true(b.idle);
});

test('options: every optional option gets its one default; given values and bounds hold', (t) => {
  const r = resolveOptions({ ...defaultVfsOptions('x'), prefetchFiles: undefined, listAfterStats: 0, uploadAttempts: 0, readBlockBytes: 1 });
  t.is(r.prefetchFiles, OPTIONAL_DEFAULTS.prefetchFiles);
  t.is(r.listAfterStats, 0);
  t.is(r.uploadAttempts, 1);
  t.is(r.readBlockBytes, 64 * 1024);
  t.is(r.speculativeListMaxEntries, 5000);
});
