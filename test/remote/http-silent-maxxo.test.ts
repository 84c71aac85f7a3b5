// Fail fast across planes: when the Maxxo API server of an account stops answering (process
// SIGSTOPped, sockets open, nothing answers), the HTTP core marks it silent, and the rsync data plane
// of that account fails fast too instead of starting transfers that wait out rsync's own timeouts
// (the rsync daemon is a separate process and keeps running: the test shows the API mark decides).
// After SIGCONT, refetching the slice is the probe that lets transfers go again.
import test from 'ava';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createMaxxoRemote } from '../../src/remote/maxxo/index.js';
import { RemoteError } from '../../src/errors.js';
import { startEmulatorProcess } from '../helpers/emulator-process.js';
import { tempDir } from '../helpers/mount.js';

const TIMEOUT_MS = 1000;

test.serial('Maxxo: rsync transfers fail fast while the API server is silent, and run again once it answers', async (t) => {
  t.timeout(120_000);
  const dir = tempDir(t, 'cm-silent-maxxo-');
  const srv = await startEmulatorProcess({ dataDir: path.join(dir, 'data') });
  t.teardown(() => srv.stop());
  const remote = createMaxxoRemote({
    server: srv.url, user: 'demo@maxxo.test', password: 'demo-password',
    timeoutMs: TIMEOUT_MS, maxAttempts: 2, maxRetryTimeMs: 3000,
  });
  t.teardown(() => remote.close());
  const src = path.join(dir, 'x.txt');
  await fsp.writeFile(src, 'silent server test');
  await remote.upload(src, '/silent-before.txt');
  t.false(remote.client.http.silent);

  srv.kill('SIGSTOP');
  t.teardown(() => srv.kill('SIGCONT'));
  const s = await t.throwsAsync(remote.stat('/silent-before.txt'), { instanceOf: RemoteError });
  t.is(s!.code, 'TIMEOUT');
  t.true(remote.client.http.silent, 'the API origin is marked silent');

  const runs = remote.counters().rsyncRuns;
  const t0 = Date.now();
  const ups = await Promise.allSettled([1, 2, 3].map((i) => remote.upload(src, `/silent-${i}.txt`)));
  const took = Date.now() - t0;
  for (const u of ups) {
    t.is(u.status, 'rejected');
    t.is(((u as PromiseRejectedResult).reason as RemoteError).code, 'TIMEOUT');
  }
  t.is(remote.counters().rsyncRuns, runs, 'no rsync run started against the silent account');
  // at most one of them probes the API (slice) and waits one timeout; the rest fail at once
  t.true(took <= 2 * TIMEOUT_MS + 5000, `3 uploads failed in ${took} ms`);
  t.log(`silent Maxxo API: 3 uploads failed in ${took} ms without starting rsync (timeout ${TIMEOUT_MS} ms); ` +
    `fail-fast ${remote.client.http.counters.failFast}, probes ${remote.client.http.counters.probes}`);

  srv.kill('SIGCONT');
  let back: unknown;
  const t1 = Date.now();
  for (let i = 0; i < 40 && !back; i++) {
    back = await remote.upload(src, '/silent-after.txt').catch(() => undefined);
    if (!back) await new Promise((r) => setTimeout(r, 250));
  }
  t.truthy(back, 'uploads work again after SIGCONT');
  t.false(remote.client.http.silent, 'the mark is cleared by the answer');
  t.is((await remote.stat('/silent-after.txt'))?.size, 'silent server test'.length);
  t.log(`recovered ${Date.now() - t1} ms after SIGCONT`);
});
