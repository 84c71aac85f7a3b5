// Fault suite, Maxxo REST plane: files of mixed sizes written through a real FUSE mount while
// the reference server answers 5% of API requests with 500, 503 or a cut connection (plus
// latency), then read back through a FRESH mount and compared by SHA-256.
// Every Maxxo upload is one rsync process, and the read-back opens files by name without listing
// their folders (no sibling prefetch), so this run is the slowest fault file: ~2.5 min at load 11.
// CM_FAULT_FILES=N runs another count.
import test from 'ava';
import { faultRun } from './lib.js';

const FILES = Number(process.env.CM_FAULT_FILES ?? 1000);

test(`maxxo: ${FILES} files written at fail rate 0.05 arrive intact (fresh mount, SHA-256)`, async (t) => {
  t.timeout(480_000);
  await faultRun(t, 'maxxo', FILES, { failRate: 0.05, latencyMs: 5, seed: 12 });
});
