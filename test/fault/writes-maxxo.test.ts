// Fault suite, Maxxo REST plane: files of mixed sizes written through a real FUSE mount while
// the reference server answers 5% of API requests with 500, 503 or a cut connection (plus
// latency), then read back through a FRESH mount and compared by SHA-256.
// 400 files rather than 1,000: every Maxxo upload and download is one rsync process, about 0.1 s
// each on this 2-core machine, and 1,000 of each would take this file past its 3-minute budget.
import test from 'ava';
import { faultRun } from './lib.js';

const FILES = Number(process.env.CM_FAULT_FILES ?? 400);

test(`maxxo: ${FILES} files (1,000 would exceed the time budget) written at fail rate 0.05 arrive intact (fresh mount, SHA-256)`, async (t) => {
  t.timeout(300_000);
  await faultRun(t, 'maxxo', FILES, { failRate: 0.05, latencyMs: 5, seed: 12 });
});
