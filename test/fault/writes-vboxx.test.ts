// Fault suite, vBoxx: 1,000 files of mixed sizes written through a real FUSE mount while the
// reference server answers 5% of requests with 500, 503 or a cut connection (plus latency), then
// read back through a FRESH mount (new cache dir, faults off) and compared by SHA-256.
import test from 'ava';
import { faultRun } from './lib.js';

const FILES = Number(process.env.CM_FAULT_FILES ?? 1000);

test(`vboxx: ${FILES} files written at fail rate 0.05 arrive intact (fresh mount, SHA-256)`, async (t) => {
  t.timeout(300_000);
  await faultRun(t, 'vboxx', FILES, { failRate: 0.05, latencyMs: 5, seed: 11 });
});
