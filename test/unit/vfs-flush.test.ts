// flushAll and close are bounded by each upload's retry budget: with the server unreachable they
// end, report what stays pending, and keep it in the journal for the next mount.
import test from 'ava';
import { RemoteError } from '../../src/errors.js';
import { setup, writeFile } from './helpers.js';

test('server gone: flushAll gives up after the retry budget, reports, keeps the journal; close does not retry again', async (t) => {
  const s = await setup(t, {}, { writebackDelayMs: 60_000, uploadAttempts: 3, uploadBackoffMs: 1 });
  const { remote, vfs, logs } = s;
  await writeFile(vfs, '/a.txt', 'precious a');
  await writeFile(vfs, '/b.txt', 'precious b');
  remote.failNext({ method: 'upload', times: Infinity, error: new RemoteError('NETWORK', 'connection refused', { status: 0 }, true) });
  const res = await vfs.flushAll();
  t.is(res.pending, 2);
  t.deepEqual(res.failed.map((f) => f.path).sort(), ['/a.txt', '/b.txt']);
  t.true(res.failed.every((f) => f.attempts === 3 && /connection refused/.test(f.error)));
  t.is(remote.calls.upload, 6);
  // the unmount's close: what already used up its budget is not tried a second time
  await vfs.close();
  t.is(remote.calls.upload, 6);
  t.true(logs.some((l) => /2 pending change\(s\) \(2 uploads\) stay in the journal/.test(l)), logs.join('\n'));
  // next mount: replayed
  remote.clearFailures();
  const v2 = await s.reopen();
  const r2 = await v2.flushAll();
  t.deepEqual(r2, { pending: 0, failed: [] });
  t.is(remote.getFile('/a.txt')?.toString(), 'precious a');
  t.is(remote.getFile('/b.txt')?.toString(), 'precious b');
});

test('content closed again after a failed flush is tried by the next flush', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 60_000, uploadAttempts: 2, uploadBackoffMs: 1 });
  await writeFile(vfs, '/c.txt', 'v1');
  remote.failNext({ method: 'upload', times: 2 });
  t.is((await vfs.flushAll()).failed.length, 1);
  await writeFile(vfs, '/c.txt', 'v2');
  const res = await vfs.flushAll({ retryFailed: false });
  t.deepEqual(res.failed, []);
  t.is(remote.getFile('/c.txt')?.toString(), 'v2');
});
