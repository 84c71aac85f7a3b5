// Maxxo "intermittent ENOENT" hunt: fresh folders made and filled, and files read after their
// listing expired, through the vfs over the real Maxxo remote against the reference server with
// injected faults (500, 503, connections cut mid-body). Also pins that a failed parent listing
// (the stat fallback for servers whose filesize rows lack `type`) never guesses a folder's type.
import test from 'ava';
import { tempDir, quietLog, setup, O_CREAT, O_WRONLY } from './helpers.js';
import { startEmulator, setFaults, MAXXO_DEMO } from '../helpers/emulator.js';
import { createMaxxoRemote } from '../../src/remote/maxxo/index.js';
import { NotFound, ServiceUnavailable, isRemoteError } from '../../src/errors.js';
import { Vfs, defaultVfsOptions } from '../../src/vfs/vfs.js';
import { sleep } from '../support/wait.js';

const O_WRONLY_CREAT = 0o101;

async function env(t: import('ava').ExecutionContext, failRate: number) {
  const em = await startEmulator({ failRate: 0, latencyMs: 5 });
  t.teardown(() => em.close());
  const remote = createMaxxoRemote({
    server: em.url, user: MAXXO_DEMO.email, password: MAXXO_DEMO.password, timeoutMs: 10_000, maxRetryTimeMs: 25_000, maxAttempts: 8,
  });
  const logs: string[] = [];
  const vfs = new Vfs(remote, {
    ...defaultVfsOptions('h12'), cacheDir: tempDir(t), log: quietLog(logs),
    writebackDelayMs: 50, opTimeoutMs: 30_000, attrTtlMs: 200, dirTtlMs: 400, negativeTtlMs: 100,
  });
  await vfs.start();
  t.teardown(async () => { await vfs.close({ force: true }).catch(() => {}); await remote.close(); });
  await setFaults(em.url, { failRate });
  return { em, remote, vfs };
}

const code = (e: unknown) => (isRemoteError(e) ? e.code : String(e));

test('fresh folders made and filled under faults: no create fails with ENOENT, listed files stay readable after the TTLs', async (t) => {
  t.timeout(120_000);
  const { em, vfs } = await env(t, 0.25);
  const errs: string[] = [];
  const top = '/enoent';
  const dirs = Array.from({ length: 10 }, (_, i) => `${top}/d${i}`);
  for (const d of [top, ...dirs]) {
    // what the kernel does for mkdir -p: a lookup first, then mkdir
    await vfs.getattr(d).then(() => errs.push(`${d} existed before mkdir`), (e) => { if (code(e) !== 'NOT_FOUND') errs.push(`getattr ${d}: ${code(e)}`); });
    await vfs.mkdir(d, 0o755).catch((e) => errs.push(`mkdir ${d}: ${code(e)}`));
    await sleep(60); // lets the short TTLs of earlier folders run out, as slow rsync runs do
  }
  const files = Array.from({ length: 120 }, (_, i) => `${dirs[i % dirs.length]}/f${i}.bin`);
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    for (let i = next++; i < files.length; i = next++) {
      const p = files[i]!;
      try {
        await vfs.getattr(p).catch((e) => { if (code(e) !== 'NOT_FOUND') throw e; });
        const fh = await vfs.create(p, 0o644, O_WRONLY_CREAT);
        const b = Buffer.alloc(100 + i, i);
        await vfs.write(p, fh, b, b.length, 0);
        await vfs.flush(p, fh);
        await vfs.release(p, fh);
      } catch (e) { errs.push(`create ${p}: ${code(e)}`); }
    }
  }));
  t.deepEqual(errs, [], 'every mkdir and create succeeded');
  await vfs.flushAll();
  // every listed file read after its listing and attributes expired
  for (const d of dirs) {
    const names = (await vfs.readdir(d)).map((e) => e.name);
    await sleep(450);
    for (const n of names) {
      const p = `${d}/${n}`;
      try {
        await vfs.getattr(p);
        const fh = await vfs.open(p, 0);
        const buf = Buffer.alloc(4096);
        await vfs.read(p, fh, buf, buf.length, 0);
        await vfs.release(p, fh);
      } catch (e) { errs.push(`read ${p}: ${code(e)}`); }
    }
  }
  t.deepEqual(errs, [], 'every listed file was readable');
  const st = (await (await fetch(`${em.url}/_emulator/stats`)).json()) as Record<string, number>;
  const faults = Object.entries(st).filter(([k]) => k.startsWith('FAULT ')).reduce((n, [, v]) => n + v, 0);
  t.log(`injected faults: ${faults}`);
  t.true(faults > 0, 'faults were really injected');
});

test('stat on a server without `type`: a failed parent listing fails the stat instead of calling a folder a file', async (t) => {
  const { remote } = await env(t, 0);
  await remote.mkdir('/typed');
  await remote.mkdir('/typed/sub');
  // a server whose filesize rows carry no `type` (the spec's own example has none)
  const filesize = remote.client.filesize.bind(remote.client);
  remote.client.filesize = async (paths, o) => (await filesize(paths, o)).map(({ file, size }) => ({ file, size }));
  const list = remote.client.list.bind(remote.client);
  let fail = true;
  remote.client.list = async (p, o) => {
    if (fail) { fail = false; throw new ServiceUnavailable('injected'); }
    return list(p, o);
  };
  const err = await t.throwsAsync(remote.stat('/typed/sub'));
  t.is(isRemoteError(err) ? err.code : undefined, 'SERVICE_UNAVAILABLE');
  t.like(await remote.stat('/typed/sub'), { type: 'dir' });
  t.is(await remote.stat('/gone/sub'), null, 'a missing parent still reads as "no such entry"');
});

test('statMany answers each asked path in order: duplicates, folders, missing names and special characters', async (t) => {
  const { em, remote } = await env(t, 0);
  const names = ['plain', 'a b', 'plus+sign', 'pct%41', 'hash#amp&eq=', 'caf\u00e9', 'cafe\u0301', 'brack[1]*?', 'semi;colon'];
  await remote.mkdir('/sp');
  const tmp = tempDir(t);
  const { writeFileSync } = await import('node:fs');
  for (const [i, n] of names.entries()) {
    writeFileSync(`${tmp}/${i}`, Buffer.alloc(i + 1));
    await remote.upload(`${tmp}/${i}`, `/sp/${n}`);
  }
  await remote.mkdir('/sp/sub dir');
  await setFaults(em.url, { failRate: 0.25 });
  const ask = ['/sp/sub dir', ...names.map((n) => `/sp/${n}`), '/sp/missing', `/sp/${names[1]}`, '/sp', `/sp/${names[6]}`, '/sp/sub dir/nope'];
  for (let round = 0; round < 5; round++) {
    const got = await remote.statMany(ask);
    t.is(got.length, ask.length);
    t.like(got[0], { type: 'dir' });
    names.forEach((n, i) => t.like(got[i + 1], { name: n, type: 'file', size: i + 1 }, n));
    t.is(got[names.length + 1], null);
    t.like(got[names.length + 2], { name: names[1], size: 2 });
    t.like(got[names.length + 3], { type: 'dir' });
    t.like(got[names.length + 4], { name: names[6], size: 7 });
    t.is(got[names.length + 5], null);
    // and what the listing shows is what stat finds
    const l = await remote.list('/sp');
    for (const e of l.entries) t.like(await remote.stat(`/sp/${e.name}`), { name: e.name, type: e.type }, e.name);
  }
});

test('a batched stat that fails as a whole with "not found" is an error, not a negative entry for every folder in the batch', async (t) => {
  const s = await setup(t, { batchStat: true, latencyMs: 5 }, { attrTtlMs: 30, dirTtlMs: 60, negativeTtlMs: 5_000 });
  const { remote } = s;
  const dirs = Array.from({ length: 8 }, (_, i) => `/fresh/d${i}`);
  await s.vfs.mkdir('/fresh', 0o755);
  for (const d of dirs) await s.vfs.mkdir(d, 0o755);
  // A drive with no cache of them (not a wait for TTLs, which a loaded machine stretches into the
  // refetch-a-listing path), asking stats only: all eight lookups go out in one batch.
  const vfs = await s.reopen({ listAfterStats: 0, cacheDir: tempDir(t) });
  // the whole statMany answered 404 without a service error code (proxy, lost route)
  remote.failNext({ method: 'statMany', error: new NotFound('HTTP 404') });
  const batches = remote.calls.statMany;
  const first = await Promise.all(dirs.map((d) => vfs.getattr(d).then(() => 'ok', (e) => code(e))));
  t.is(remote.calls.statMany, batches + 1, 'one batch, the failing one');
  t.false(first.includes('NOT_FOUND'), `a failed batch is not "no such folder": ${first.join(',')}`);
  // and nothing of it was cached: creates in every folder work at once
  for (const d of dirs) {
    const fh = await vfs.create(`${d}/f`, 0o644, O_WRONLY | O_CREAT);
    await vfs.release(`${d}/f`, fh);
  }
  await vfs.flushAll();
  for (const d of dirs) t.true(remote.has(`${d}/f`), d);
});
