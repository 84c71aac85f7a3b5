// The libfuse3 adapter's READ replies come from reused 1 MiB buffers (ReadBuffers): a buffer is
// only handed to another read once its own vfs read settled and its reply went out. Driven through
// createLowLevelHandlers with a fake vfs and fake requests (no mount), so the order of settling
// is ours to choose.
import test from 'ava';
import { createLowLevelHandlers, ReadBuffers } from '../../src/fuse/ll-adapter.js';
import type { Request } from '../../src/fuse/lowlevel.js';
import type { InodeApi } from '../../src/vfs/api.js';
import { silentLogger } from '../../src/log.js';

interface Reply { bytes?: Buffer; backing?: ArrayBufferLike; errno?: number }

/** A READ request that records its one reply. */
function readReq(size: number, offset = 0): { req: Request; reply: Promise<Reply> } {
  let done!: (r: Reply) => void;
  const reply = new Promise<Reply>((r) => (done = r));
  let replied = false;
  const req = {
    op: 'read', fh: 1, ino: 2, parent: 0, name: '', size, offset,
    get replied() { return replied; },
    bytes(buf: Buffer, n?: number) {
      replied = true;
      // what the binding does: the bytes are copied to the kernel before bytes() returns
      done({ bytes: Buffer.from(buf.subarray(0, n ?? buf.length)), backing: buf.buffer });
      return true;
    },
    error(e: number) { replied = true; done({ errno: e }); return true; },
  };
  return { req: req as unknown as Request, reply };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A vfs whose reads fill the buffer with `fill` after `delay` ms (per call, in order). */
function fakeVfs(plan: { fill: number; delay: number }[], given: ArrayBufferLike[] = []) {
  let i = 0;
  const vfs = {
    async read(_fh: number, buf: Buffer, length: number) {
      given.push(buf.buffer);
      const p = plan[i++]!;
      await sleep(p.delay);
      buf.fill(p.fill, 0, length);
      return length;
    },
  };
  return vfs as unknown as InodeApi;
}

const opts = (opBoundMs = 60_000) => ({ uid: 0, gid: 0, log: silentLogger, opBoundMs, longOpBoundMs: opBoundMs });

test('reads in flight at once each answer their own bytes; a settled read\'s buffer is reused', async (t) => {
  const h = createLowLevelHandlers(fakeVfs([{ fill: 1, delay: 30 }, { fill: 2, delay: 5 }, { fill: 3, delay: 0 }]), opts());
  const a = readReq(1 << 20);
  const b = readReq(128 * 1024, 1 << 20);
  h.read!(a.req);
  h.read!(b.req);
  const [ra, rb] = await Promise.all([a.reply, b.reply]);
  t.true(ra.bytes!.equals(Buffer.alloc(1 << 20, 1)));
  t.true(rb.bytes!.equals(Buffer.alloc(128 * 1024, 2)));
  t.not(ra.backing, rb.backing, 'two reads in flight never share a buffer');
  const c = readReq(4096);
  h.read!(c.req);
  const rc = await c.reply;
  t.true(rc.bytes!.equals(Buffer.alloc(4096, 3)));
  t.true(rc.backing === ra.backing || rc.backing === rb.backing, 'the next read reuses a returned buffer');
});

test('a read answered EIO at its bound keeps its buffer: no later read gets it', async (t) => {
  const given: ArrayBufferLike[] = [];
  const h = createLowLevelHandlers(fakeVfs([{ fill: 7, delay: 150 }, { fill: 8, delay: 0 }, { fill: 9, delay: 0 }], given), opts(40));
  const late = readReq(64 * 1024);
  h.read!(late.req);
  t.is((await late.reply).errno, 5, 'EIO at the bound');
  // the late read still runs and writes into its buffer at ~150 ms
  const next = readReq(64 * 1024);
  h.read!(next.req);
  const r = await next.reply;
  t.true(r.bytes!.equals(Buffer.alloc(64 * 1024, 8)));
  t.not(given[1], given[0], 'the late read\'s buffer was not handed out again');
  await sleep(200);
  // it settled after its answer (dropped): its buffer is still not the pool's
  const third = readReq(64 * 1024);
  h.read!(third.req);
  t.true((await third.reply).bytes!.equals(Buffer.alloc(64 * 1024, 9)));
  t.not(given[2], given[0]);
  t.is(given[2], given[1], 'the settled read\'s buffer was reused');
});

test('ReadBuffers: slices of one size, at most `keep` kept, foreign buffers refused', (t) => {
  const p = new ReadBuffers(1024, 2);
  const a = p.take(100);
  const b = p.take(1024);
  t.is(a.length, 100);
  t.is(b.length, 1024);
  t.not(a.buffer, b.buffer);
  p.give(a);
  p.give(b);
  p.give(p.take(1024));
  t.is(p.pooled, 2);
  p.give(Buffer.alloc(1024));
  t.is(p.pooled, 2, 'a full pool keeps no more');
  const big = p.take(4096);
  t.is(big.length, 4096, 'a read larger than the pool\'s size gets its own buffer');
  const q = new ReadBuffers(1024, 4);
  q.give(Buffer.allocUnsafe(1024).subarray(1, 1024));
  t.is(q.pooled, 0, 'only buffers of the pool\'s own shape come back');
});
