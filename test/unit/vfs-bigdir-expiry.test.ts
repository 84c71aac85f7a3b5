// `ls -l` of a big Maxxo folder that outlasts the listing TTL (bench scale_ls_100000 at 20 ms RTT):
// every name the listing gave must stay visible, and the names looked up after the listing ran
// out must not cost a request each (a filesize round trip per name made the run take half an hour).
import test from 'ava';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, quietLog } from './helpers.js';
import { startEmulator, serverStats, resetStats, MAXXO_DEMO } from '../helpers/emulator.js';
import { createMaxxoRemote } from '../../src/remote/maxxo/index.js';
import { isRemoteError } from '../../src/errors.js';
import { Vfs, defaultVfsOptions } from '../../src/vfs/vfs.js';
import { sleep } from '../support/wait.js';


test('ls -l outlasting the listing TTL: every listed name stays visible, at a few listings instead of a stat per name', async (t) => {
  t.timeout(60_000);
  const N = 3000;
  const em = await startEmulator({ latencyMs: 1 });
  t.teardown(() => em.close());
  const host = join(em.ctx.filesDir, 'maxxo', 'demo', 'big');
  mkdirSync(host, { recursive: true });
  for (let i = 0; i < N; i++) writeFileSync(join(host, `e${String(i).padStart(6, '0')}`), 'x');
  const remote = createMaxxoRemote({ server: em.url, user: MAXXO_DEMO.email, password: MAXXO_DEMO.password, timeoutMs: 10_000 });
  const vfs = new Vfs(remote, {
    ...defaultVfsOptions('h12'), cacheDir: tempDir(t), log: quietLog(), attrTtlMs: 100, dirTtlMs: 150, negativeTtlMs: 100,
  });
  await vfs.start();
  t.teardown(async () => { await vfs.close({ force: true }).catch(() => {}); await remote.close(); });

  const names = (await vfs.readdir('/big')).map((e) => e.name);
  t.is(names.length, N);
  await resetStats(em.url);
  const errs: string[] = [];
  const t0 = Date.now();
  // what ls -l does after getdents: one lstat (plus xattr probes) per name, one after another,
  // here paced so the listing runs out several times over the run
  for (let i = 0; i < names.length; i++) {
    if (i % 100 === 0) await sleep(10);
    const p = `/big/${names[i]}`;
    try {
      const a = await vfs.getattr(p);
      if (a.type !== 'file' || a.size !== 1) errs.push(`${p}: ${a.type} ${a.size}`);
      await vfs.getxattr(p, 'security.selinux').catch((e) => { if (!isRemoteError(e, 'UNSUPPORTED')) throw e; });
    } catch (e) { errs.push(`${p}: ${(e as { code?: string }).code ?? (e as Error).message}`); }
  }
  const elapsed = Date.now() - t0;
  t.deepEqual(errs.slice(0, 10), [], 'every listed name stayed visible');
  const st = await serverStats(em.url);
  const filesize = st['POST /api/1/ops/filesize'] ?? 0;
  const lists = st['GET /api/1/ops/list'] ?? 0;
  t.log(`${N} lookups in ${elapsed} ms: ${lists} listings, ${filesize} filesize requests`);
  // the listing ran out at least once (else this test proves nothing)
  t.true(elapsed > 300, `the run outlasted the listing TTL (${elapsed} ms)`);
  // without the listing refetch each name after the expiry is a filesize request of its own
  // (thousands); a stall of the loaded test machine between two names can let the listing run out
  // for longer than the refetch window, and then a few stats go out before the folder is listed
  t.true(filesize <= N / 30, `filesize requests: ${filesize}`);
  t.true(lists <= Math.ceil(elapsed / 150) + 5, `listings: ${lists} in ${elapsed} ms`);
});
