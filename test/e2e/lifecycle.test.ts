// Mount lifecycle: kill -9 during writes and remount (journal replay, stale mount cleaned),
// SIGTERM flushes and unmounts, busy unmount, refused mountpoints.
import test from 'ava';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { isMounted, mountChild, tempDir } from '../helpers/mount.js';
import { until } from '../support/wait.js';
import { useServers, startServers, mountService, KINDS, uniq, run, sha256, randomBytesSeeded, errCode, DEMO } from './lib/services.js';

const servers = useServers(test);

for (const kind of KINDS) {
  test.serial(`${kind}: kill -9 during writes, remount with the same cache: every closed file reaches the server`, async (t) => {
    const cacheDir = tempDir(t, 'cm-cache-crash-');
    // Uploads wait 5 s after close, so the kill finds them still pending in the journal.
    const d = await mountService(t, servers, kind, { cacheDir, vfs: { writebackDelayMs: 5000 } });
    const rel = uniq('crash');
    const dir = d.p(rel);
    await fsp.mkdir(dir);
    const files = new Map<string, Buffer>();
    for (let i = 0; i < 12; i++) files.set(`small-${i}.txt`, Buffer.from(`closed file ${i}\n`.repeat(i + 1)));
    files.set('big.bin', randomBytesSeeded(3 * 1024 * 1024, 5));
    for (const [n, b] of files) await fsp.writeFile(path.join(dir, n), b);
    // A writer still busy when the driver dies: its file was never closed, so no promise about it.
    const writer = run('dd', ['if=/dev/zero', `of=${path.join(dir, 'open-while-killed.bin')}`, 'bs=64k', 'count=100000'], { timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 300));
    const before = await d.status();
    t.true(before.pending > 0, 'uploads were still pending when killed');
    await d.kill9();
    await writer;
    t.true(isMounted(d.mnt), 'kill -9 leaves a dead mount behind');
    t.is(await errCode(fsp.stat(d.mnt)), 'ENOTCONN');

    // Same mountpoint, same cache: the stale mount is cleaned and the journal replayed.
    const d2 = await mountChild(t, { ...d.cfg, mountpoint: d.mnt });
    await d2.flush();
    t.deepEqual((await d2.status()).failures, []);

    const fresh = await mountService(t, servers, kind);
    const fdir = fresh.p(rel);
    for (const [n, b] of files) {
      const got = await fsp.readFile(path.join(fdir, n));
      t.is(sha256(got), sha256(b), n);
    }
  });
}

test.serial('a mount at once after kill -9, while the kernel still answers stat of the dead root from its cache, cleans the stale mount', async (t) => {
  // long kernel timeouts: the root's attributes stay cached after the process is gone
  const d = await mountService(t, servers, 'vboxx', { mount: { attrTimeoutS: 60, entryTimeoutS: 60 } });
  await fsp.stat(d.mnt);
  await d.kill9();
  t.true(isMounted(d.mnt), 'kill -9 leaves a dead mount behind');
  const st = await fsp.stat(d.mnt).then(() => 'cached', (e) => (e as NodeJS.ErrnoException).code);
  t.log(`stat of the dead root right after the kill: ${st}`);
  const d2 = await mountChild(t, { ...d.cfg, mountpoint: d.mnt });
  t.true((await fsp.readdir(d2.mnt)).includes('Files'));
});

test.serial('SIGTERM flushes pending uploads, unmounts and exits 0', async (t) => {
  const d = await mountService(t, servers, 'maxxo', { vfs: { writebackDelayMs: 10_000 } });
  const rel = uniq('term');
  await fsp.mkdir(d.p(rel));
  await fsp.writeFile(d.p(rel, 'a.txt'), 'delivered at unmount');
  t.true((await d.status()).pending > 0);
  t.is(await d.stop(), 0);
  t.false(isMounted(d.mnt));
  const fresh = await mountService(t, servers, 'maxxo');
  t.is(await fsp.readFile(fresh.p(rel, 'a.txt'), 'utf8'), 'delivered at unmount');
});

test.serial('unmount of a busy mount retries, then detaches lazily', async (t) => {
  const d = await mountService(t, servers, 'vboxx', { mount: { unmountBusyMs: 1000 } });
  const f = d.p(uniq('busy') + '.txt');
  await fsp.writeFile(f, 'x');
  const h = await fsp.open(f, 'r');
  try {
    t.is(await d.stop(), 0);
    t.false(isMounted(d.mnt));
  } finally {
    await h.close().catch(() => {});
  }
});

test.serial('refuses a non-empty mountpoint and a live mount', async (t) => {
  const mnt = tempDir(t, 'cm-mnt-nonempty-');
  await fsp.writeFile(path.join(mnt, 'precious.txt'), 'do not hide me');
  const cfg = {
    kind: 'vboxx' as const, server: servers.url, user: DEMO.vboxx.user, password: DEMO.vboxx.password,
    mountpoint: mnt, accountId: 'vboxx-demo', cacheDir: tempDir(t, 'cm-cache-'),
  };
  const e1 = await t.throwsAsync(mountChild(t, cfg));
  t.regex(e1!.message, /not empty/);
  t.false(isMounted(mnt));

  const d = await mountService(t, servers, 'vboxx');
  const e2 = await t.throwsAsync(mountChild(t, { ...cfg, mountpoint: d.mnt, cacheDir: tempDir(t, 'cm-cache-') }));
  t.regex(e2!.message, /already mounted/);
  t.true((await fsp.readdir(d.mnt)).includes('Files'), 'the first mount still works');
});

test.serial('wrong password: a clear error, no mount left', async (t) => {
  const mnt = tempDir(t, 'cm-mnt-badpw-');
  const e = await t.throwsAsync(mountChild(t, {
    kind: 'maxxo', server: servers.url, user: DEMO.maxxo.user, password: 'wrong-password',
    mountpoint: mnt, accountId: 'maxxo-bad', cacheDir: tempDir(t, 'cm-cache-'),
  }));
  t.notRegex(e!.message, /wrong-password/, 'the password never appears in errors');
  t.false(isMounted(mnt));
});

test.serial('a hung mount at the mountpoint is refused with the recovery recipe', async (t) => {
  const d = await mountService(t, servers, 'vboxx');
  // A stopped driver answers nothing: every op on its mount waits (a hung mount).
  process.kill(d.child.pid!, 'SIGSTOP');
  try {
    const e = await t.throwsAsync(mountChild(t, { ...d.cfg, cacheDir: tempDir(t, 'cm-cache-') }, { noMkdir: true }));
    t.regex(e!.message, /does not answer/);
    t.regex(e!.message, /connections\/N\/abort/);
  } finally {
    process.kill(d.child.pid!, 'SIGCONT');
  }
  t.true((await fsp.readdir(d.mnt)).includes('Files'), 'the first drive works again');
});

test.serial('SIGTERM with the server gone: the unmount ends after the retry budget, the upload stays in the journal and is delivered at the next mount', async (t) => {
  const gone = await startServers();
  t.teardown(() => gone.close());
  const cacheDir = tempDir(t, 'cm-cache-gone-');
  const base = {
    kind: 'maxxo' as const, user: DEMO.maxxo.user, password: DEMO.maxxo.password,
    accountId: 'maxxo-gone', cacheDir,
    vfs: { writebackDelayMs: 60_000, opTimeoutMs: 10_000, uploadAttempts: 2, uploadBackoffMs: 100 },
    client: { timeoutMs: 2000, maxRetryTimeMs: 3000, maxAttempts: 2 },
  };
  const d = await mountChild(t, { ...base, server: gone.url, mountpoint: tempDir(t, 'cm-mnt-gone-') });
  const rel = uniq('gone');
  await fsp.mkdir(path.join(d.mnt, rel));
  await fsp.writeFile(path.join(d.mnt, rel, 'kept.txt'), 'kept in the journal');
  // the mkdir is written back too (Maxxo): it goes within its short window, the upload waits
  // writeback_delay (a loaded machine saw both pending here)
  await until(async () => (await d.status()).pendingMkdirs === 0, 'the mkdir sent', 20_000, 50);
  await gone.close();
  // exits by itself (stop() would force it after 45 s and report a non-zero code)
  t.is(await d.stop(), 0, d.stderr().slice(-3000));
  t.false(isMounted(d.mnt));
  t.regex(d.stderr(), /1 upload\(s\) could not reach the server/);
  // (and the times of the folder and the top folder, which go after it)
  t.regex(d.stderr(), /3 pending change\(s\) \(1 upload, 2 time\/mode changes\) stay in the journal/);
  // the next mount of the same account (the server back, here a fresh one) delivers it
  const d2 = await mountChild(t, { ...base, server: servers.url, mountpoint: tempDir(t, 'cm-mnt-gone2-') });
  await d2.flush();
  t.is((await d2.status()).pending, 0);
  const fresh = await mountService(t, servers, 'maxxo');
  t.is(await fsp.readFile(fresh.p(rel, 'kept.txt'), 'utf8'), 'kept in the journal');
});
