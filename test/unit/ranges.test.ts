import test from 'ava';
import { RangeSet } from '../../src/vfs/ranges.js';
import { rng } from './helpers.js';

test('adds, merges adjacent and overlapping ranges, answers covers/contiguousEnd', (t) => {
  const r = new RangeSet();
  r.add(10, 20);
  r.add(30, 40);
  t.deepEqual(r.toPairs(), [[10, 20], [30, 40]]);
  t.true(r.covers(10, 20));
  t.false(r.covers(15, 31));
  r.add(20, 30);
  t.deepEqual(r.toPairs(), [[10, 40]]);
  t.is(r.bytes, 30);
  t.is(r.contiguousEnd(12), 40);
  t.is(r.contiguousEnd(5), 5);
  r.add(0, 5);
  r.truncate(35);
  t.deepEqual(r.toPairs(), [[0, 5], [10, 35]]);
  t.is(r.bytes, 30);
});

test('random adds match a bitmap model', (t) => {
  const rand = rng(7);
  for (let round = 0; round < 50; round++) {
    const r = new RangeSet();
    const model = new Uint8Array(500);
    for (let i = 0; i < 30; i++) {
      const s = Math.floor(rand() * 500);
      const e = Math.min(500, s + Math.floor(rand() * 40));
      r.add(s, e);
      model.fill(1, s, e);
      const a = Math.floor(rand() * 500);
      const b = Math.min(500, a + Math.floor(rand() * 30));
      const expect = b <= a || model.subarray(a, b).every((x) => x === 1);
      if (r.covers(a, b) !== expect) { t.fail(`covers(${a},${b}) in round ${round}`); return; }
    }
    t.is(r.bytes, model.reduce((x, y) => x + y, 0));
  }
  t.pass();
});
