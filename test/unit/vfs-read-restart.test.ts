// A streamed fetch that starts over (the remote abandoned a run: cut short without a way to
// resume, or the content changed without a revision to tell): bytes the abandoned run delivered
// must not be what readers get, neither from the cache file nor from the in-memory copy of
// just-landed bytes.
import test from 'ava';
import type { CallOptions, RangeRead, RangeSink } from '../../src/remote/types.js';
import type { MemoryRemote } from '../helpers/memory-remote.js';
import { O_RDONLY, bytes, readAll, setup, sha256 } from './helpers.js';

const MiB = 1024 * 1024;

/** The first readTo of `path` delivers `junk` from its offset, then starts over with the file. */
function abandonFirstRun(remote: MemoryRemote, path: string, junk: Buffer): { runs: number } {
  const st = { runs: 0 };
  const inner = remote.ranged!.readTo;
  remote.ranged!.readTo = async (p: string, offset: number, length: number, sink: RangeSink, o?: CallOptions): Promise<RangeRead> => {
    if (p === path && st.runs++ === 0) {
      for (let at = 0; at < junk.length; at += 64 * 1024) await sink(junk.subarray(at, Math.min(junk.length, at + 64 * 1024)), offset + at, {});
    }
    return inner(p, offset, length, sink, o);
  };
  return st;
}

test('bytes of an abandoned run still pending are dropped (11 bytes of a cut answer)', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true }, { prefetchFiles: 0 });
  const src = bytes(300_000, 91);
  remote.putFile('/a.bin', src);
  const st = abandonFirstRun(remote, '/a.bin', Buffer.from('{"partial":'));
  t.is(sha256(await readAll(vfs, '/a.bin')), sha256(src));
  t.is(st.runs, 1);
  t.is(sha256(await readAll(vfs, '/a.bin')), sha256(src));
});

test('bytes of an abandoned run already landed are replaced, in memory too', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: true }, { prefetchFiles: 0 });
  const src = bytes(3 * MiB, 92);
  remote.putFile('/b.bin', src);
  // more than one landing's worth (1 MiB): readers may see the first MiB before the start-over,
  // which a remote prevents by delivering only bytes of the file; what matters here is after it
  abandonFirstRun(remote, '/b.bin', bytes(1536 * 1024, 93));
  const fh = await vfs.open('/b.bin', O_RDONLY);
  t.teardown(() => vfs.release('/b.bin', fh).catch(() => {}));
  const buf = Buffer.alloc(128 * 1024);
  await vfs.read('/b.bin', fh, buf, buf.length, 0);
  // the end of the file comes with the run that started over
  t.is(await vfs.read('/b.bin', fh, buf, buf.length, src.length - buf.length), buf.length);
  t.true(buf.equals(src.subarray(src.length - buf.length)));
  // the same open reads the file again: every byte is the file's, none of the abandoned run
  const all = Buffer.alloc(src.length);
  for (let pos = 0; pos < src.length;) pos += await vfs.read('/b.bin', fh, all.subarray(pos), Math.min(128 * 1024, src.length - pos), pos);
  let p = 0;
  while (p < src.length && all[p] === src[p]) p++;
  t.is(p, src.length, `first wrong byte at ${p}`);
});
