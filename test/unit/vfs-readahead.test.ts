// Concurrent read-ahead over streamed ranged fetches: the window plan and its limits, bytes by
// sha256 under sequential and random reads, readers served while a long fetch still streams,
// small files whole in one request, and a file replaced on the server while it is read.
import test from 'ava';
import { isSequential, readAheadPlan } from '../../src/vfs/ranges.js';
import type { CallOptions, RangeRead, RangeSink } from '../../src/remote/types.js';
import type { MemoryRemote } from '../helpers/memory-remote.js';
import { O_RDONLY, bytes, readAll, rng, setup, sha256 } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Counts streamed fetches under way (now and at most) around the remote's readTo. */
function trackReads(remote: MemoryRemote): { now: number; max: number; lengths: number[] } {
  const st = { now: 0, max: 0, lengths: [] as number[] };
  const inner = remote.ranged!.readTo;
  remote.ranged!.readTo = async (path: string, offset: number, length: number, sink: RangeSink, o?: CallOptions): Promise<RangeRead> => {
    st.now++;
    st.max = Math.max(st.max, st.now);
    st.lengths.push(length);
    try { return await inner(path, offset, length, sink, o); } finally { st.now--; }
  };
  return st;
}

test('plan: requests start while a slot is free and a whole request fits in the window', (t) => {
  const B = 256 * KiB;
  // fresh reader: the whole window from its position, split over the parallel requests
  t.deepEqual(readAheadPlan(0, 8 * MiB, 0, 100 * MiB, 0, 4, B), { start: 0, target: 8 * MiB, reqBytes: 2 * MiB });
  // 7 MiB of an 8 MiB window requested ahead: a 2 MiB request does not fit yet
  t.is(readAheadPlan(1 * MiB, 8 * MiB, 8 * MiB, 100 * MiB, 1, 4, B), null);
  // it fits: go on from what was requested, not from the reader
  t.deepEqual(readAheadPlan(2 * MiB, 8 * MiB, 8 * MiB, 100 * MiB, 1, 4, B), { start: 8 * MiB, target: 10 * MiB, reqBytes: 2 * MiB });
  // all slots in flight: nothing more, whatever the window
  t.is(readAheadPlan(4 * MiB, 8 * MiB, 4 * MiB, 100 * MiB, 4, 4, B), null);
  // end of file bounds the target; a last short request is fine; nothing past the end
  t.deepEqual(readAheadPlan(0, 64 * MiB, 0, 3 * MiB, 0, 4, B), { start: 0, target: 3 * MiB, reqBytes: 16 * MiB });
  t.deepEqual(readAheadPlan(2 * MiB, 8 * MiB, 9 * MiB, 10 * MiB, 1, 4, B), { start: 9 * MiB, target: 10 * MiB, reqBytes: 2 * MiB });
  t.is(readAheadPlan(3 * MiB - 10, 64 * MiB, 3 * MiB, 3 * MiB, 0, 4, B), null);
  // requests are whole blocks and never below one block
  const p = readAheadPlan(100 * KiB, 1 * MiB, 0, 100 * MiB, 0, 3, B)!;
  t.is(p.start, 0);
  t.is(p.reqBytes, B);
  t.is(readAheadPlan(0, 7 * MiB, 0, 100 * MiB, 0, 3, B)!.reqBytes % B, 0);
});

test('sequential read: several streamed requests in flight, bounded by readParallel, bytes exact', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true, latencyMs: 5, readChunkBytes: 64 * KiB, readChunkDelayMs: 1 },
    { readAheadBytes: 512 * KiB, readAheadMaxBytes: 8 * MiB, readBlockBytes: 64 * KiB, readParallel: 3, readWholeMaxBytes: 0 });
  const st = trackReads(remote);
  const src = bytes(24 * MiB + 777, 41);
  remote.putFile('/seq.bin', src);
  t.is(sha256(await readAll(vfs, '/seq.bin', 128 * KiB)), sha256(src));
  t.true(st.max >= 2, `at most ${st.max} requests were in flight`);
  // the reader's own fetch may come on top of the read-ahead's slots
  t.true(st.max <= 3 + 1, `${st.max} requests in flight`);
  // the window grew: later requests are long ones
  t.true(Math.max(...st.lengths) >= 2 * MiB, `longest request ${Math.max(...st.lengths)}`);
  t.true(remote.calls.read < 40, `${remote.calls.read} requests`);
  t.is(st.now, 0);
});

test('random ranged reads while read-ahead streams: every read returns exactly the source bytes', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true, latencyMs: 2, readChunkBytes: 32 * KiB },
    { readAheadBytes: 256 * KiB, readAheadMaxBytes: 4 * MiB, readBlockBytes: 64 * KiB, readParallel: 4, readWholeMaxBytes: 0 });
  const src = bytes(9 * MiB + 4321, 43);
  remote.putFile('/r.bin', src);
  const fh = await vfs.open('/r.bin', O_RDONLY);
  const rand = rng(7);
  let pos = 0;
  const reads: Promise<void>[] = [];
  for (let i = 0; i < 300; i++) {
    // runs of sequential reads (which start read-ahead) broken by jumps, some reads concurrent
    if (rand() < 0.2) pos = Math.floor(rand() * (src.length + 5000));
    const len = 1 + Math.floor(rand() * 200_000);
    const at = pos;
    pos += len;
    const p = (async () => {
      const buf = Buffer.alloc(len);
      const n = await vfs.read('/r.bin', fh, buf, len, at);
      const want = src.subarray(Math.min(at, src.length), Math.min(src.length, at + len));
      if (n !== want.length || !buf.subarray(0, n).equals(want)) throw new Error(`read ${len}@${at} got ${n} bytes, not the source's`);
    })();
    reads.push(p);
    if (reads.length >= 4) await reads.shift();
  }
  await Promise.all(reads);
  await vfs.release('/r.bin', fh);
  t.is(sha256(await readAll(vfs, '/r.bin')), sha256(src));
});

test('a reader is served from the first bytes of a long fetch before the fetch ends', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true, readChunkBytes: 64 * KiB, readChunkDelayMs: 20 },
    { readBlockBytes: 64 * KiB, readWholeMaxBytes: 8 * MiB, opTimeoutMs: 120_000 });
  // 64 timer-paced chunks: on a loaded machine each timer fires late, and the default 10 s bound
  // on a read was reached (the test is about order, not time)
  const st = trackReads(remote);
  const src = bytes(4 * MiB, 44);
  remote.putFile('/w.bin', src);
  const fh = await vfs.open('/w.bin', O_RDONLY);
  const buf = Buffer.alloc(4 * KiB);
  t.is(await vfs.read('/w.bin', fh, buf, buf.length, 0), buf.length);
  t.true(buf.equals(src.subarray(0, buf.length)));
  // 64 chunks 20 ms apart: the whole-file request is still streaming
  t.is(st.now, 1, 'the read returned only after the whole fetch');
  t.is(remote.calls.read, 1);
  const rest = Buffer.alloc(src.length);
  let n = 0;
  while (n < src.length) n += await vfs.read('/w.bin', fh, rest.subarray(n), src.length - n, n);
  t.true(rest.equals(src));
  t.is(remote.calls.read, 1, 'the whole file came with one request');
  await vfs.release('/w.bin', fh);
});

test('small and medium files: the first read fetches the whole file with one request', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true }, { readWholeMaxBytes: 2 * MiB, prefetchFiles: 0 });
  const one = bytes(1 * MiB + 5, 45);
  const big = bytes(3 * MiB, 46);
  remote.putFile('/one.bin', one);
  remote.putFile('/big.bin', big);
  t.is(sha256(await readAll(vfs, '/one.bin', 128 * KiB)), sha256(one));
  t.is(remote.calls.read, 1);
  remote.resetCalls();
  // above the limit: block-sized requests with read-ahead, as before
  t.is(sha256(await readAll(vfs, '/big.bin', 128 * KiB)), sha256(big));
  t.true(remote.calls.read > 1, `${remote.calls.read} requests`);
});

test('a file replaced on the server while open: no read mixes versions from the cache; a new open reads the new bytes', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true, readChunkBytes: 64 * KiB },
    { readBlockBytes: 64 * KiB, readAheadBytes: 256 * KiB, readAheadMaxBytes: 1 * MiB, readWholeMaxBytes: 0, attrTtlMs: 0, dirTtlMs: 0 });
  const size = 6 * MiB;
  const v1 = bytes(size, 47);
  const v2 = bytes(size, 48);
  remote.putFile('/c.bin', v1);
  const fh = await vfs.open('/c.bin', O_RDONLY);
  // the first MiB read sequentially (read-ahead takes some more of v1 along)
  const head = Buffer.alloc(1 * MiB);
  for (let n = 0; n < head.length;) n += await vfs.read('/c.bin', fh, head.subarray(n), 128 * KiB, n);
  t.true(head.equals(v1.subarray(0, head.length)));
  remote.putFile('/c.bin', v2);
  // a read far ahead of the read-ahead reaches the server: it meets v2 and the v1 bytes are dropped
  const far = Buffer.alloc(64 * KiB);
  t.is(await vfs.read('/c.bin', fh, far, far.length, 5 * MiB), far.length);
  t.true(far.equals(v2.subarray(5 * MiB, 5 * MiB + far.length)), 'bytes of the new version');
  // what was cached of v1 is gone: the start reads as v2 now, not as v1
  const again = Buffer.alloc(256 * KiB);
  t.is(await vfs.read('/c.bin', fh, again, again.length, 0), again.length);
  t.true(again.equals(v2.subarray(0, again.length)), 'the v1 bytes cached before the change were dropped');
  await vfs.release('/c.bin', fh);
  t.is(sha256(await readAll(vfs, '/c.bin')), sha256(v2));
});

test('a replaced file of another size: the reader sees the new size, never bytes past it', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true, readChunkBytes: 64 * KiB },
    { readBlockBytes: 64 * KiB, readAheadBytes: 128 * KiB, readAheadMaxBytes: 256 * KiB, readWholeMaxBytes: 0, attrTtlMs: 0, dirTtlMs: 0 });
  const v1 = bytes(4 * MiB, 49);
  const v2 = bytes(2 * MiB + 100, 50);
  remote.putFile('/s.bin', v1);
  const fh = await vfs.open('/s.bin', O_RDONLY);
  const a = Buffer.alloc(64 * KiB);
  await vfs.read('/s.bin', fh, a, a.length, 0);
  remote.putFile('/s.bin', v2);
  const b = Buffer.alloc(256 * KiB);
  const n = await vfs.read('/s.bin', fh, b, b.length, 2 * MiB);
  t.is(n, 100);
  t.true(b.subarray(0, n).equals(v2.subarray(2 * MiB)));
  t.is(await vfs.read('/s.bin', fh, b, b.length, 3 * MiB), 0);
  t.is((await vfs.fgetattr('/s.bin', fh)).size, v2.length);
  await vfs.release('/s.bin', fh);
});

test('sequential detection tolerates the kernel\'s slightly out-of-order read-ahead reads', (t) => {
  t.true(isSequential(0, 0));
  t.false(isSequential(4096, 0), 'a fresh handle starting elsewhere is a jump');
  t.true(isSequential(10 * MiB, 10 * MiB));
  t.true(isSequential(10 * MiB - 256 * KiB, 10 * MiB), 'an earlier read still arriving');
  t.true(isSequential(10 * MiB + 128 * KiB, 10 * MiB), 'a later read overtook it');
  t.false(isSequential(4 * MiB, 10 * MiB));
  t.false(isSequential(20 * MiB, 10 * MiB));
});

test('reads arriving two at a time out of order keep the window growing (few requests)', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true, latencyMs: 2 },
    { readAheadBytes: 512 * KiB, readAheadMaxBytes: 8 * MiB, readBlockBytes: 64 * KiB, readParallel: 4, readWholeMaxBytes: 0 });
  const src = bytes(32 * MiB, 51);
  remote.putFile('/o.bin', src);
  const fh = await vfs.open('/o.bin', O_RDONLY);
  const C = 128 * KiB;
  const out = Buffer.alloc(src.length);
  for (let pos = 0; pos < src.length; pos += 2 * C) {
    // the second read of each pair is issued first
    await Promise.all([pos + C, pos].map((p) => vfs.read('/o.bin', fh, out.subarray(p, p + C), C, p)));
  }
  await vfs.release('/o.bin', fh);
  t.true(out.equals(src));
  // with the window reset at every out-of-order read this takes hundreds of requests
  t.true(remote.calls.read <= 30, `${remote.calls.read} requests`);
});

test('a first read far into a medium file does not wait for the whole file; a small one still comes whole', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true }, { readWholeMaxBytes: 8 * MiB, readBlockBytes: 256 * KiB, prefetchFiles: 0 });
  const st = trackReads(remote);
  const med = bytes(6 * MiB, 52);
  const small = bytes(900 * KiB, 53);
  remote.putFile('/med.bin', med);
  remote.putFile('/small.bin', small);
  const buf = Buffer.alloc(4 * KiB);
  let fh = await vfs.open('/med.bin', O_RDONLY);
  t.is(await vfs.read('/med.bin', fh, buf, buf.length, 5 * MiB), buf.length);
  t.true(buf.equals(med.subarray(5 * MiB, 5 * MiB + buf.length)));
  await vfs.release('/med.bin', fh);
  t.deepEqual(st.lengths, [256 * KiB], 'one block at the offset, not the whole file');
  st.lengths.length = 0;
  fh = await vfs.open('/small.bin', O_RDONLY);
  t.is(await vfs.read('/small.bin', fh, buf, buf.length, 800 * KiB), buf.length);
  t.true(buf.equals(small.subarray(800 * KiB, 800 * KiB + buf.length)));
  await vfs.release('/small.bin', fh);
  t.deepEqual(st.lengths, [small.length]);
});

test('a sequential reader is served the just-streamed bytes from memory; a local write is seen at once', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true, latencyMs: 2, readChunkBytes: 64 * KiB },
    { readAheadBytes: 1 * MiB, readAheadMaxBytes: 8 * MiB, readBlockBytes: 256 * KiB, readParallel: 4, readWholeMaxBytes: 0 });
  const src = bytes(20 * MiB + 4321, 77);
  remote.putFile('/mem.bin', src);
  t.is(sha256(await readAll(vfs, '/mem.bin', 128 * KiB)), sha256(src));
  const reads = vfs.status().counters!.reads;
  t.true(reads.memory > 0, `reads from memory ${reads.memory}, from the cache file ${reads.file}`);
  // reading on while the same file is written: every read shows the newest bytes
  remote.putFile('/mem2.bin', src);
  const rw = await vfs.open('/mem2.bin', 2 /* O_RDWR */);
  const want = Buffer.from(src);
  const buf = Buffer.alloc(128 * KiB);
  const r = rng(5);
  for (let pos = 0; pos < src.length; pos += 128 * KiB) {
    if (r() < 0.1) {
      const at = pos + Math.floor(r() * 512 * KiB);
      if (at + 100 < src.length) {
        const patch = bytes(100, Math.floor(r() * 1000));
        await vfs.write('/mem2.bin', rw, patch, 100, at);
        patch.copy(want, at);
      }
    }
    const n = await vfs.read('/mem2.bin', rw, buf, buf.length, pos);
    t.true(buf.subarray(0, n).equals(want.subarray(pos, pos + n)), `bytes at ${pos}`);
  }
  await vfs.release('/mem2.bin', rw);
  const fh = await vfs.open('/mem2.bin', O_RDONLY);
  const all = Buffer.alloc(src.length);
  for (let pos = 0; pos < src.length;) pos += await vfs.read('/mem2.bin', fh, all.subarray(pos), Math.min(128 * KiB, src.length - pos), pos);
  t.is(sha256(all), sha256(want));
  await vfs.release('/mem2.bin', fh);
});
