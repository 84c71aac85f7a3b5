// rsync's temp names of our own uploads (remote/maxxo/inflight.ts): which listing entries are ours.
import test from 'ava';
import { InflightUploads, isRsyncTempOf } from '../../src/remote/maxxo/inflight.js';

test('rsync temp names: the whole name, or a long cut of it, with a 6-character suffix', (t) => {
  t.true(isRsyncTempOf('.a.txt.bNfV5J', 'a.txt'));
  t.true(isRsyncTempOf('.e.bNfV5J', 'e'));
  t.false(isRsyncTempOf('.a.txt.bNfV5', 'a.txt'), 'five characters');
  t.false(isRsyncTempOf('a.txt.bNfV5J', 'a.txt'), 'no leading dot');
  t.false(isRsyncTempOf('.b.txt.bNfV5J', 'a.txt'));
  t.false(isRsyncTempOf('.a.tx.bNfV5J', 'a.txt'), 'a short prefix is not a cut');
  const long = 'é'.repeat(127);
  const cut = long.slice(0, 123);
  t.true(isRsyncTempOf(`.${cut}.Zz09aB`, long));
  t.false(isRsyncTempOf(`.${cut}x.Zz09aB`, long));
});

test('a listing filters the temp names of uploads that overlapped it, even ones that ended before its answer', async (t) => {
  const f = new InflightUploads();
  const endA = f.begin('d', 'a');
  let endB = () => {};
  const { ours } = await f.during('d', async () => {
    endB = f.begin('d', 'b');
    f.begin('other', 'c');
    endA();
    endB();
  });
  t.true(ours('.a.123456'));
  t.true(ours('.b.123456'));
  t.false(ours('.c.123456'), 'another folder');
  t.false(ours('a'));
  // after both ended, a new listing filters nothing
  const later = await f.during('d', async () => {});
  t.false(later.ours('.a.123456'));
  endB();
});
