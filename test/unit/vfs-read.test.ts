// Reads: ranged fetches with read-ahead (vBoxx-like), whole-file download (Maxxo-like), the
// on-disk cache (reuse, invalidation, persistence across restarts, eviction of clean data only).
import test from 'ava';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { O_RDONLY, O_RDWR, bytes, readAll, rng, setup, sha256, until, writeFile } from './helpers.js';
import { MemoryRemote } from '../helpers/memory-remote.js';
import type { CallOptions, ListResult, RemoteEntry, Revalidation } from '../../src/remote/types.js';

const MiB = 1024 * 1024;

test('ranged: random reads return exactly the source bytes', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true });
  const src = bytes(5 * MiB + 12345, 3);
  remote.putFile('/big.bin', src);
  const fh = await vfs.open('/big.bin', O_RDONLY);
  const rand = rng(11);
  for (let i = 0; i < 200; i++) {
    const pos = Math.floor(rand() * (src.length + 1000));
    const len = 1 + Math.floor(rand() * 300_000);
    const buf = Buffer.alloc(len);
    const n = await vfs.read('/big.bin', fh, buf, len, pos);
    const expect = src.subarray(Math.min(pos, src.length), Math.min(src.length, pos + len));
    if (n !== expect.length || !buf.subarray(0, n).equals(expect)) { t.fail(`read ${len}@${pos} got ${n}`); return; }
  }
  await vfs.release('/big.bin', fh);
  t.is(remote.calls.download, 0);
  t.is(sha256(await readAll(vfs, '/big.bin')), sha256(src));
});

test('ranged: sequential reads use a growing read-ahead window (few, large requests)', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true, latencyMs: 2 },
    { readAheadBytes: 256 * 1024, readAheadMaxBytes: 8 * MiB, readBlockBytes: 64 * 1024, readParallel: 4 });
  const src = bytes(24 * MiB, 5);
  remote.putFile('/seq.bin', src);
  const got = await readAll(vfs, '/seq.bin', 64 * 1024);
  t.is(sha256(got), sha256(src));
  // 384 reads of 64 KiB; block-per-read would be 384 requests
  t.true(remote.calls.read < 60, `read requests: ${remote.calls.read}`);
  // everything is cached now: a second pass costs nothing
  remote.resetCalls();
  t.is(sha256(await readAll(vfs, '/seq.bin', 100_000)), sha256(src));
  t.is(remote.calls.read, 0);
});

test('ranged: concurrent readers of the same range share requests', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true, latencyMs: 30 }, { readBlockBytes: 64 * 1024, readAheadBytes: 64 * 1024 });
  const src = bytes(64 * 1024, 9);
  remote.putFile('/c.bin', src);
  const fhs = await Promise.all(Array.from({ length: 8 }, () => vfs.open('/c.bin', O_RDONLY)));
  const bufs = fhs.map(() => Buffer.alloc(1000));
  await Promise.all(fhs.map((fh, i) => vfs.read('/c.bin', fh, bufs[i]!, 1000, 5000)));
  for (const b of bufs) t.true(b.equals(src.subarray(5000, 6000)));
  t.is(remote.calls.read, 1);
  for (const fh of fhs) await vfs.release('/c.bin', fh);
});

/** Listings without versions, told at open by revalidation (as Maxxo's mtimes from its daemon listing). */
class UnversionedRemote extends MemoryRemote {
  revalidations = 0;
  readonly revalidation: Revalidation = {
    cacheTtls: () => {},
    revalidate: async (path, e) => {
      this.revalidations++;
      await new Promise((r) => setTimeout(r, 20));
      return (await super.stat(path)) ?? e;
    },
  };
  override async list(dir: string, opts?: CallOptions & { hash?: string }): Promise<ListResult> {
    const l = await super.list(dir, opts);
    return { ...l, entries: l.entries.map((e) => ({ ...e, mtimeMs: undefined })) };
  }
  override async stat(path: string, opts?: CallOptions): Promise<RemoteEntry | null> {
    const e = await super.stat(path, opts);
    return e && { ...e, mtimeMs: undefined };
  }
}

test('revalidating remote: concurrent opens of a file not cached share one content object and one download', async (t) => {
  const remote = new UnversionedRemote({ rangedReads: false, latencyMs: 5 });
  const { vfs } = await setup(t, {}, {}, remote);
  const src = bytes(300 * 1024, 4);
  remote.putFile('/r.bin', src);
  const fhs = await Promise.all(Array.from({ length: 8 }, () => vfs.open('/r.bin', O_RDONLY)));
  t.true(remote.revalidations >= 1, 'asked at open: the listing had no version');
  const bufs = await Promise.all(fhs.map(async (fh) => { const b = Buffer.alloc(1000); await vfs.read('/r.bin', fh, b, 1000, 7000); return b; }));
  for (const b of bufs) t.true(b.equals(src.subarray(7000, 8000)));
  t.is(remote.calls.download, 1);
  for (const fh of fhs) await vfs.release('/r.bin', fh);
});

test('whole-file download path (no ranged reads): content correct, one download', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: false });
  t.is(remote.ranged, undefined);
  const src = bytes(3 * MiB + 7, 21);
  remote.putFile('/m.bin', src);
  const fh = await vfs.open('/m.bin', O_RDONLY);
  const rand = rng(5);
  for (let i = 0; i < 50; i++) {
    const pos = Math.floor(rand() * src.length);
    const len = 1 + Math.floor(rand() * 100_000);
    const buf = Buffer.alloc(len);
    const n = await vfs.read('/m.bin', fh, buf, len, pos);
    if (!buf.subarray(0, n).equals(src.subarray(pos, pos + len))) { t.fail(`read ${len}@${pos}`); return; }
  }
  await vfs.release('/m.bin', fh);
  t.is(sha256(await readAll(vfs, '/m.bin')), sha256(src));
  t.is(remote.calls.download, 1);
});

test('download path: the first bytes are served while the rest still arrives', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: false, downloadChunkBytes: 64 * 1024, downloadChunkDelayMs: 30 });
  const src = bytes(64 * 1024 * 40, 8);
  remote.putFile('/slow.bin', src);
  const fh = await vfs.open('/slow.bin', O_RDONLY);
  const buf = Buffer.alloc(4096);
  let progressed = 0;
  const dl = (async () => { await vfs.read('/slow.bin', fh, Buffer.alloc(10), 10, src.length - 10); progressed = 1; })();
  t.is(await vfs.read('/slow.bin', fh, buf, 4096, 0), 4096);
  t.true(buf.equals(src.subarray(0, 4096)));
  t.is(progressed, 0, 'the end of the file had not arrived when the start was served');
  await dl;
  await vfs.release('/slow.bin', fh);
  t.is(remote.calls.download, 1);
});

test('cache reuse while rev/size are unchanged; refetch when the server content changed', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true }, { attrTtlMs: 50, dirTtlMs: 50 });
  remote.putFile('/r.txt', 'version one');
  t.is((await readAll(vfs, '/r.txt')).toString(), 'version one');
  const reads = remote.calls.read;
  t.is((await readAll(vfs, '/r.txt')).toString(), 'version one');
  t.is(remote.calls.read, reads, 'cached');
  remote.putFile('/r.txt', 'version TWO!');
  await new Promise((r) => setTimeout(r, 80));
  t.is((await readAll(vfs, '/r.txt')).toString(), 'version TWO!');
  t.true(remote.calls.read > reads);
});

test('cached content survives a restart and is reused when unchanged', async (t) => {
  const s = await setup(t, { rangedReads: false });
  const src = bytes(300_000, 4);
  s.remote.putFile('/keep.bin', src);
  t.is(sha256(await readAll(s.vfs, '/keep.bin')), sha256(src));
  await s.vfs.close();
  const v2 = await s.reopen();
  s.remote.resetCalls();
  t.is(sha256(await readAll(v2, '/keep.bin')), sha256(src));
  t.is(s.remote.calls.download, 0);
});

test('cache files and dirs are private (0700/0600)', async (t) => {
  const s = await setup(t, { rangedReads: true });
  s.remote.putFile('/p.txt', 'secret');
  await readAll(s.vfs, '/p.txt');
  const root = join(s.opts.cacheDir, 'acct');
  t.is(statSync(root).mode & 0o777, 0o700);
  t.is(statSync(join(root, 'data')).mode & 0o777, 0o700);
  for (const f of readdirSync(join(root, 'data'))) t.is(statSync(join(root, 'data', f)).mode & 0o777, 0o600, f);
  await writeFile(s.vfs, '/w.txt', 'x');
  t.is(statSync(join(root, 'journal')).mode & 0o777, 0o600);
});

test('eviction drops clean data over the bound, never dirty data', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: false }, { cacheMaxBytes: 1 * MiB, writebackDelayMs: 60_000 });
  // dirty content larger than the bound stays
  const dirty = bytes(1536 * 1024, 77);
  await writeFile(vfs, '/dirty.bin', dirty);
  for (let i = 0; i < 5; i++) {
    remote.putFile(`/c${i}.bin`, bytes(400_000, i + 1));
    await readAll(vfs, `/c${i}.bin`);
  }
  await until(() => vfs.status().cacheBytes <= 1 * MiB + dirty.length, 'eviction');
  t.true(vfs.status().cacheBytes <= 1 * MiB + dirty.length, `cache bytes ${vfs.status().cacheBytes}`);
  t.is(vfs.status().dirtyBytes, dirty.length);
  // the dirty file is still readable locally and uploads intact
  t.is(sha256(await readAll(vfs, '/dirty.bin')), sha256(dirty));
  await vfs.flushAll();
  t.is(sha256(remote.getFile('/dirty.bin')!), sha256(dirty));
  // evicted clean data is fetched again when read
  const before = remote.calls.download;
  t.is(sha256(await readAll(vfs, '/c0.bin')), sha256(bytes(400_000, 1)));
  t.true(remote.calls.download > before);
});

test('read of a handle opened for writing on a ranged remote sees the server bytes', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true });
  const src = bytes(700_000, 12);
  remote.putFile('/rw.bin', src);
  const fh = await vfs.open('/rw.bin', O_RDWR);
  const b = Buffer.alloc(1000);
  t.is(await vfs.read('/rw.bin', fh, b, 1000, 600_000), 1000);
  t.true(b.equals(src.subarray(600_000, 601_000)));
  await vfs.release('/rw.bin', fh);
  t.is(remote.calls.upload, 0, 'nothing written, nothing uploaded');
});
