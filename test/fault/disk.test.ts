// Disk suite: the drive's cache dir sits on a 16 MiB tmpfs. Clean cached content (a file read
// through the mount) is evicted when the disk fills, before any write fails; once only dirty data
// (closed files whose upload has not happened yet) is left, writes get ENOSPC, cleanly, and every
// file closed before is delivered intact. After the uploads, the space is usable again.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createVboxxRemote } from '../../src/remote/vboxx/index.js';
import { isMounted, tempDir } from '../helpers/mount.js';
import { DEMO, contentOf, mountAt, sha256, startServer, type Spec } from './lib.js';

const MiB = 1024 * 1024;

test('cache disk full: clean data evicted first, then ENOSPC; nothing closed is lost', async (t) => {
  t.timeout(180_000);
  if (process.getuid?.() !== 0) { t.pass('needs root for a tmpfs'); t.log('skipped: not root'); return; }
  const cacheDir = tempDir(t, 'cm-disk-cache-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0700', 'tmpfs', cacheDir]);
  // Registered before the mount child's teardown, so it runs after it (teardowns run last-first).
  t.teardown(() => {
    if (isMounted(cacheDir)) {
      try { execFileSync('umount', [cacheDir]); } catch { execFileSync('umount', ['-l', cacheDir]); }
    }
  });
  const srv = await startServer(t, { rsync: false });
  const remote = createVboxxRemote({ server: srv.url, user: DEMO.vboxx.user, password: DEMO.vboxx.password });
  t.teardown(() => remote.close());
  const tmp = tempDir(t, 'cm-disk-tmp-');
  const clean: Spec = { rel: 'clean.bin', size: 10 * MiB, seed: 77 };
  await fsp.writeFile(path.join(tmp, 'clean.bin'), contentOf(clean));
  await remote.mkdir('/Files/disk');
  await remote.upload(path.join(tmp, 'clean.bin'), '/Files/disk/clean.bin');

  // Uploads wait 10 minutes: written files stay dirty (in the journal) until the explicit flush.
  const d = await mountAt(t, srv.url, 'vboxx', { cacheDir, vfs: { writebackDelayMs: 600_000, cacheMaxBytes: 1024 * MiB } });
  const dir = path.join(d.base, 'disk');
  const got = await fsp.readFile(path.join(dir, 'clean.bin'));
  t.is(sha256(got), sha256(contentOf(clean)), 'read through the mount');
  const before = await d.status();
  t.true(before.cacheBytes >= 10 * MiB, `clean content cached (${before.cacheBytes} bytes)`);

  const written: Spec[] = [];
  let failure = '';
  for (let i = 0; i < 10 && !failure; i++) {
    const s: Spec = { rel: `w${i}.bin`, size: 3 * MiB, seed: 500 + i };
    try {
      await fsp.writeFile(path.join(dir, s.rel), contentOf(s));
      written.push(s);
    } catch (e) {
      failure = (e as NodeJS.ErrnoException).code ?? String(e);
    }
  }
  const full = await d.status();
  t.is(failure, 'ENOSPC', 'a full cache disk is ENOSPC, not EIO or a hang');
  // 16 MiB minus 10 MiB of clean content leaves room for one 3 MiB file; more means eviction.
  t.true(written.length >= 3, `clean content was evicted to make room (${written.length} files of 3 MiB fit)`);
  t.true(full.cacheBytes < before.cacheBytes + written.length * 3 * MiB, 'the clean content left the cache');
  t.true(full.pending >= written.length, 'every closed file is pending in the journal');

  // Nothing closed is lost: deliver and compare on the server.
  await d.flush();
  t.deepEqual((await d.status()).failures, []);
  let bytes = 0;
  for (const s of written) {
    const local = path.join(tmp, 'back.bin');
    await remote.download(`/Files/disk/${s.rel}`, local);
    const b = await fsp.readFile(local);
    bytes += b.length;
    t.is(sha256(b), sha256(contentOf(s)), `${s.rel} intact on the server`);
  }
  // Delivered content is clean now: it gives way to new writes.
  const again: Spec = { rel: 'after.bin', size: 3 * MiB, seed: 999 };
  await fsp.writeFile(path.join(dir, again.rel), contentOf(again));
  t.is(sha256(await fsp.readFile(path.join(dir, again.rel))), sha256(contentOf(again)));
  t.log(`disk: tmpfs 16 MiB; clean cached ${before.cacheBytes} bytes; files written before ENOSPC ${written.length} (3 MiB each), ` +
    `first failure ${failure}, cache bytes when full ${full.cacheBytes}, pending ${full.pending}; bytes checked on the server ${bytes}; write after flush ok`);
  t.is(await d.stop(), 0);
});
