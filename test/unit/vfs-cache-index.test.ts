// The cache's .meta index after a crash: it may cost cached bytes, it must never present bytes a
// program changed (and never closed) as the server's copy.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { O_RDONLY, O_RDWR, bytes, setup, until } from './helpers.js';

const MiB = 1024 * 1024;

test('a partly cached file, its index written, then completed and changed in place: a crash before close shows the server copy again', async (t) => {
  const s = await setup(t, { rangedReads: true }, { readAheadBytes: 256 * 1024, readBlockBytes: 256 * 1024 });
  const data = bytes(4 * MiB, 5);
  s.remote.putFile('/big.bin', data);
  // a reader takes the start only: the index of those bytes goes to disk at its release
  const r = await s.vfs.open('/big.bin', O_RDONLY);
  const head = Buffer.alloc(64 * 1024);
  t.is(await s.vfs.read('/big.bin', r, head, head.length, 0), head.length);
  await s.vfs.release('/big.bin', r);
  const dataDir = path.join(s.opts.cacheDir, 'acct', 'data');
  const metaFiles = () => (fs.existsSync(dataDir) ? fs.readdirSync(dataDir).filter((n) => n.endsWith('.meta')) : []);
  await until(() => metaFiles().length === 1, 'the index of the cached start on disk');
  // a writer: the content is completed first (more bytes land, the index on disk is now a
  // subset of them), then changed inside the bytes the index names; the program never closes
  const w = await s.vfs.open('/big.bin', O_RDWR);
  const edit = Buffer.alloc(1000, 0x41);
  t.is(await s.vfs.write('/big.bin', w, edit, edit.length, 100), edit.length);
  // crash: no release, no close
  const v2 = await s.reopen();
  const fh = await v2.open('/big.bin', O_RDONLY);
  const got = Buffer.alloc(64 * 1024);
  t.is(await v2.read('/big.bin', fh, got, got.length, 0), got.length);
  await v2.release('/big.bin', fh);
  t.true(got.equals(data.subarray(0, got.length)), 'the server copy, not the unclosed change');
});
