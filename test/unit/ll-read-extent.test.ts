// The libfuse3 adapter's READ: the vfs makes the bytes present and says where they are in its
// cache file (readExtent); the reply names that extent (dataFromFdAsync) and the binding's data
// thread reads and sends it. Driven through createLowLevelHandlers with a fake vfs and fake
// requests (no mount), so the order of settling is ours to choose.
import test from 'ava';
import { createLowLevelHandlers } from '../../src/fuse/ll-adapter.js';
import type { Request } from '../../src/fuse/lowlevel.js';
import type { FileExtent, InodeApi } from '../../src/vfs/api.js';
import { NotFound } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';

interface Reply { extent?: FileExtent; errno?: number }

/** A READ request that records its one reply. */
function readReq(size: number, offset = 0): { req: Request; reply: Promise<Reply>; replies: () => number } {
  let done!: (r: Reply) => void;
  const reply = new Promise<Reply>((r) => (done = r));
  let n = 0;
  const req = {
    op: 'read', fh: 1, ino: 2, parent: 0, name: '', size, offset,
    get replied() { return n > 0; },
    dataFromFdAsync(fd: number, off: number, length: number) { n++; done({ extent: { fd, offset: off, length } }); return true; },
    bytes() { throw new Error('reads are answered from the cache file, not from a JS buffer'); },
    error(e: number) { n++; done({ errno: e }); return true; },
  };
  return { req: req as unknown as Request, reply, replies: () => n };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A vfs whose readExtent answers `plan[i]` after its delay (or throws `err`). */
function fakeVfs(plan: { delay: number; fd?: number; length?: number; err?: Error }[], asked: [number, number, number][] = []) {
  let i = 0;
  const vfs = {
    async readExtent(fh: number, length: number, position: number): Promise<FileExtent> {
      asked.push([fh, length, position]);
      const p = plan[i++]!;
      await sleep(p.delay);
      if (p.err) throw p.err;
      return { fd: p.fd ?? 9, offset: position, length: p.length ?? length };
    },
  };
  return vfs as unknown as InodeApi;
}

const opts = (opBoundMs = 60_000) => ({ uid: 0, gid: 0, log: silentLogger, opBoundMs, longOpBoundMs: opBoundMs });

test('reads in flight at once each answer their own extent, as the vfs gave it (a short one at end of file)', async (t) => {
  const asked: [number, number, number][] = [];
  const h = createLowLevelHandlers(fakeVfs([{ delay: 30, fd: 11 }, { delay: 5, fd: 12, length: 1000 }], asked), opts());
  const a = readReq(1 << 20);
  const b = readReq(128 * 1024, 1 << 20);
  h.read!(a.req);
  h.read!(b.req);
  const [ra, rb] = await Promise.all([a.reply, b.reply]);
  t.deepEqual(asked, [[1, 1 << 20, 0], [1, 128 * 1024, 1 << 20]]);
  t.deepEqual(ra.extent, { fd: 11, offset: 0, length: 1 << 20 });
  t.deepEqual(rb.extent, { fd: 12, offset: 1 << 20, length: 1000 });
});

test('a failed read answers its errno; one answered EIO at its bound sends nothing more when its extent comes late', async (t) => {
  const h = createLowLevelHandlers(fakeVfs([{ delay: 0, err: new NotFound('gone') }, { delay: 150 }]), opts(40));
  const gone = readReq(4096);
  h.read!(gone.req);
  t.is((await gone.reply).errno, 2, 'ENOENT');
  const late = readReq(64 * 1024);
  h.read!(late.req);
  t.is((await late.reply).errno, 5, 'EIO at the bound');
  await sleep(200);
  t.is(late.replies(), 1, 'the extent that came after the answer was dropped');
});
