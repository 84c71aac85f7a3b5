// The reference server's fault injection (src/emulator/faults.ts): random places, but a count that
// follows the rate, so a fault test that checks "faults were injected" cannot fail by luck. The
// coin flip it replaced left ~200 requests at 2 % without a fault one to three times in a hundred.
import test from 'ava';
import { faultSchedule } from '../../src/emulator/faults.js';
import { prng } from '../helpers/random.js';

function run(rate: number, n: number, seed: number): boolean[] {
  const next = faultSchedule(prng(seed));
  return Array.from({ length: n }, () => next(rate));
}

test('every 2/rate requests in a row hold a fault, for any seed', (t) => {
  for (const rate of [0.02, 0.05, 0.2]) {
    const span = Math.ceil(2 / rate);
    for (let seed = 1; seed <= 200; seed++) {
      const f = run(rate, 2000, seed);
      for (let i = 0; i + span <= f.length; i++) {
        if (!f.slice(i, i + span).includes(true)) return t.fail(`rate ${rate} seed ${seed}: no fault in requests ${i}..${i + span - 1}`);
      }
    }
  }
  t.pass();
});

test('the long-run fraction is the rate; places vary with the seed; faults can come back to back', (t) => {
  for (const rate of [0.02, 0.05, 0.25, 0.5]) {
    const n = 20_000;
    const count = run(rate, n, 7).filter(Boolean).length;
    t.true(Math.abs(count / n - rate) < rate * 0.1, `rate ${rate}: ${count} of ${n}`);
  }
  const a = run(0.05, 500, 1).map(Number).join('');
  const b = run(0.05, 500, 2).map(Number).join('');
  t.not(a, b);
  t.true(run(0.5, 2000, 3).some((f, i, all) => f && all[i + 1]), 'two faults in a row at 0.5');
});

test('rate 0 never fails, rate 1 always does, a changed rate starts afresh', (t) => {
  t.false(run(0, 1000, 1).some(Boolean));
  t.true(run(1, 1000, 1).every(Boolean));
  const next = faultSchedule(prng(9));
  for (let i = 0; i < 1000; i++) next(0.5);
  // After a change to 2 %, the first fault comes within the first 2/rate requests of the new rate.
  const after = Array.from({ length: 100 }, () => next(0.02));
  t.true(after.includes(true));
  t.true(after.filter(Boolean).length <= 3, `${after.filter(Boolean).length} faults in 100 at 2 %`);
});
