// Model-based random test (issue 10): seeded random sequences of file operations from several
// processes on one mount, checked op by op against an in-memory POSIX model (test/model/posix.ts),
// then byte for byte through a fresh mount and on the server. The sequence itself is in
// test/model/harness.ts, the per-process part in test/model/worker.ts.
//
//   CLOUDMOUNT_MODEL_SEED=N   replay seed N (a failure prints the seed)
//   CLOUDMOUNT_MODEL_RUNS=K   K sequences per service (seeds N, N+1, ...); default 2
//   CLOUDMOUNT_MODEL_OPS=M    random ops per process (default 150)
// `scripts/soak --model` runs sequences for a long time.
import test from 'ava';
import { useServers, KINDS } from './lib/services.js';
import { runSequence, seedsFromEnv, formatReport } from '../model/harness.js';

const servers = useServers(test);
const ops = Number(process.env.CLOUDMOUNT_MODEL_OPS ?? 150) || 150;

for (const kind of KINDS) {
  test.serial(`${kind}: random operations from several processes match the POSIX model`, async (t) => {
    const seeds = seedsFromEnv(2);
    // Each sequence takes about a minute on 2 busy cores; a long run gets its own bound.
    t.timeout(Math.max(110_000, seeds.length * 150_000));
    let failed = 0;
    for (const seed of seeds) {
      const r = await runSequence(t, servers, { kind, seed, ops });
      t.log(`${kind} seed ${seed}: ${r.problems.length ? `${r.problems.length} problems` : 'ok'} in ${(r.ms / 1000).toFixed(1)} s ` +
        `(write-back ${r.writebackDelayMs} ms; ${Object.entries(r.counts).filter(([k]) => !k.includes(' ')).map(([k, v]) => `${k} ${v}`).join(', ')})`);
      if (r.problems.length) {
        failed++;
        t.log(formatReport(r));
      }
    }
    t.is(failed, 0, `${failed} of ${seeds.length} sequences did not match the model (seeds and reports above)`);
  });
}
