// The model-based random test's own check (issue 10): the same seeded workload as
// test/e2e/model.test.ts, run on the local file system, must match the POSIX model exactly. A
// model that disagreed with the kernel would make the e2e test fail on a correct drive.
import test from 'ava';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runWorkload, checkTree, seedsFromEnv } from '../model/harness.js';

test('the model matches the local file system on random workloads', async (t) => {
  const seeds = seedsFromEnv(3);
  t.timeout(Math.max(60_000, seeds.length * 30_000));
  for (const seed of seeds) {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cm-model-local-'));
    try {
      const w = await runWorkload(dir, { seed, ops: 200, crossOps: 120, pathBoundHandles: false }, 20);
      const problems = [...w.problems, ...(await checkTree('local fs', dir, w))];
      t.deepEqual(problems, [], `seed ${seed} (replay: CLOUDMOUNT_MODEL_SEED=${seed})`);
      t.log(`seed ${seed}: ${Object.entries(w.counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }
});
