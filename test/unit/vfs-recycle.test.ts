// The vfs gives a ranged read's chunks back to the remote (RangedReads.recycle) once they have
// landed in the cache file, and only then: the remote may read later bodies into that memory.
// Here every chunk given back is at once written over with garbage, as a reuse would, and every
// byte read through either read path must still be the source's.
import test from 'ava';
import { readSync } from 'node:fs';
import { O_RDONLY, bytes, readAll, setup, sha256 } from './helpers.js';
import type { RangeSink } from '../../src/remote/types.js';
import type { Vfs } from '../../src/vfs/vfs.js';

const MiB = 1024 * 1024;

async function withRecycleSpy(t: Parameters<typeof setup>[0]) {
  const s = await setup(t, { rangedReads: true, readChunkBytes: 48 * 1024 },
    { readBlockBytes: 64 * 1024, readAheadBytes: 256 * 1024, readAheadMaxBytes: 4 * MiB, readParallel: 3 });
  const given = new Set<Buffer>();
  const stats = { given: 0, recycled: 0, foreign: 0, twice: 0 };
  const recycled = new WeakSet<Buffer>();
  const ranged = s.remote.ranged!;
  const readTo = ranged.readTo.bind(ranged);
  ranged.readTo = (path, offset, length, sink: RangeSink, o) => readTo(path, offset, length, (chunk, pos, served) => {
    given.add(chunk);
    stats.given++;
    return sink(chunk, pos, served);
  }, o);
  ranged.recycle = (chunks) => {
    for (const c of chunks) {
      if (recycled.has(c)) { stats.twice++; continue; }
      if (!given.delete(c)) { stats.foreign++; continue; }
      recycled.add(c);
      stats.recycled++;
      c.fill(0xee);
    }
  };
  return { ...s, stats };
}

/** Reads the whole file the way the libfuse 3 backend does: an extent of the cache file per read. */
async function readByExtents(vfs: Vfs, path: string, chunk: number): Promise<Buffer> {
  const fh = await vfs.open(path, O_RDONLY);
  try {
    const parts: Buffer[] = [];
    for (let pos = 0; ; ) {
      const x = await vfs.readExtent(fh, chunk, pos);
      if (x.length === 0) break;
      const b = Buffer.alloc(x.length);
      readFull(x.fd, b, x.offset);
      parts.push(b);
      pos += x.length;
    }
    return Buffer.concat(parts);
  } finally {
    await vfs.release(path, fh);
  }
}

function readFull(fd: number, b: Buffer, pos: number): void {
  for (let n = 0; n < b.length;) {
    const r = readSync(fd, b, n, b.length - n, pos + n);
    if (r === 0) throw new Error(`cache file ends at ${pos + n}`);
    n += r;
  }
}

test('extent reads: every chunk is given back once, after landing; bytes exact though each is written over', async (t) => {
  const { remote, vfs, stats } = await withRecycleSpy(t);
  const src = bytes(9 * MiB + 4321, 21);
  remote.putFile('/big.bin', src);
  t.is(sha256(await readByExtents(vfs, '/big.bin', 1 * MiB)), sha256(src));
  // again, from the cache file only
  t.is(sha256(await readByExtents(vfs, '/big.bin', 300_000)), sha256(src));
  t.true(stats.given > 100, `${stats.given} chunks`);
  t.is(stats.recycled, stats.given);
  t.is(stats.foreign, 0);
  t.is(stats.twice, 0);
});

test('copy reads (the fuse-native path) keep recent chunks and give them back only once dropped; bytes exact', async (t) => {
  const { remote, vfs, stats } = await withRecycleSpy(t);
  const src = bytes(6 * MiB + 99, 22);
  remote.putFile('/c.bin', src);
  const fh = await vfs.open('/c.bin', O_RDONLY);
  const first = Buffer.alloc(64 * 1024);
  t.is(await vfs.read('/c.bin', fh, first, first.length, 0), first.length);
  t.true(first.equals(src.subarray(0, first.length)));
  // the landed chunks of that first read are kept for copies while the file is open
  t.true(stats.given > stats.recycled, `${stats.given} given, ${stats.recycled} back`);
  await vfs.release('/c.bin', fh);
  t.is(sha256(await readAll(vfs, '/c.bin', 128 * 1024)), sha256(src));
  t.is(sha256(await readAll(vfs, '/c.bin', 1_000_000)), sha256(src));
  // evicted or released: every chunk came back once
  t.is(stats.recycled, stats.given);
  t.is(stats.foreign, 0);
  t.is(stats.twice, 0);
});
