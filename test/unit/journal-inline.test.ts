// Small closed files travel inside their journal record (one disk flush per close instead of two):
// the record alone must bring the closed content back, whatever happened to the cache file.
import test from 'ava';
import { readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { INLINE_MAX_BYTES, Journal } from '../../src/vfs/journal.js';
import { O_WRONLY, bytes, setup, sha256, tempDir, writeFile } from './helpers.js';

interface URec { t: string; uid: string; p: string; id: string; n: number; b?: string }

/** The records of a journal file (a live journal has zeros written ahead of its end). */
function records(file: string): URec[] {
  return readFileSync(file, 'utf8').split('\0')[0]!.split('\n').filter(Boolean).map((l) => JSON.parse(l) as URec);
}

test('journal: inline content survives reopen and compaction; a wrong-sized one is not trusted', async (t) => {
  const file = join(tempDir(t), 'journal');
  const j = new Journal(file, 10);
  await j.open();
  t.true(j.canInline(INLINE_MAX_BYTES));
  t.false(j.canInline(INLINE_MAX_BYTES + 1));
  await j.upload({ uid: 'keep', path: '/k', id: 'ik', size: 5, data: Buffer.from('hello') });
  await j.upload({ uid: 'empty', path: '/e', id: 'ie', size: 0, data: Buffer.alloc(0) });
  // enough churn to compact the file (rewrite keeps the live records with their content)
  for (let i = 0; i < 30; i++) {
    await j.upload({ uid: `u${i}`, path: `/f${i}`, id: `i${i}`, size: 3, data: Buffer.from('abc') });
    await j.done(`u${i}`);
  }
  await j.rename('/k', '/k2');
  await j.close();
  t.true(records(file).length < 20, 'compacted');
  // a hand-made record whose content does not match its size
  writeFileSync(file, readFileSync(file, 'utf8') + JSON.stringify({ t: 'u', uid: 'bad', p: '/b', id: 'ib', n: 9, b: Buffer.from('short').toString('base64') }) + '\n');
  const j2 = new Journal(file);
  const p = new Map((await j2.open()).map((x) => [x.uid, x]));
  t.deepEqual([...p.keys()].sort(), ['bad', 'empty', 'keep']);
  t.is(p.get('keep')!.path, '/k2');
  t.is(p.get('keep')!.data?.toString(), 'hello');
  t.is(p.get('empty')!.data?.length, 0);
  t.is(p.get('bad')!.data, undefined, 'content of the wrong size is dropped; the cache file is used');
  await j2.close();
});

test('a small closed file comes back from its journal record when its cache file lost it', async (t) => {
  const s = await setup(t, {}, { writebackDelayMs: 60_000 });
  await writeFile(s.vfs, '/lost.txt', 'closed content 1');
  await writeFile(s.vfs, '/zeroed.txt', 'closed content 2');
  await writeFile(s.vfs, '/empty.txt', '');
  const big = bytes(INLINE_MAX_BYTES + 1000, 7);
  await writeFile(s.vfs, '/big.bin', big);
  const journal = join(s.opts.cacheDir, 'acct', 'journal');
  const recs = new Map(records(journal).filter((r) => r.t === 'u').map((r) => [r.p, r]));
  t.is(Buffer.from(recs.get('/lost.txt')!.b!, 'base64').toString(), 'closed content 1');
  t.is(recs.get('/empty.txt')!.b, '');
  t.is(recs.get('/big.bin')!.b, undefined, 'a big file is flushed itself, not copied into the journal');
  t.is(s.remote.calls.upload, 0);
  // crash, then what a power loss may leave: a cache file gone, one with its blocks not written
  const data = (p: string) => join(s.opts.cacheDir, 'acct', 'data', recs.get(p)!.id);
  rmSync(data('/lost.txt'));
  truncateSync(data('/zeroed.txt'), 0);
  truncateSync(data('/zeroed.txt'), 16);
  const v2 = await s.reopen({ writebackDelayMs: 0 });
  await v2.flushAll();
  t.is(s.remote.getFile('/lost.txt')!.toString(), 'closed content 1');
  t.is(s.remote.getFile('/zeroed.txt')!.toString(), 'closed content 2');
  t.is(s.remote.getFile('/empty.txt')!.length, 0);
  t.is(sha256(s.remote.getFile('/big.bin')!), sha256(big));
  t.deepEqual(v2.status().failures, []);
});

test('writes after a close that were never closed do not reach the server: the closed content does', async (t) => {
  const s = await setup(t, {}, { writebackDelayMs: 60_000 });
  await writeFile(s.vfs, '/doc.txt', 'version one, closed');
  // rewritten in place, then the drive dies before this close
  const fh = await s.vfs.open('/doc.txt', O_WRONLY);
  await s.vfs.write('/doc.txt', fh, Buffer.from('VERSION TWO'), 11, 0);
  const v2 = await s.reopen({ writebackDelayMs: 0 });
  await v2.flushAll();
  t.is(s.remote.getFile('/doc.txt')!.toString(), 'version one, closed');
  t.is(s.remote.calls.upload, 1);
});

test('journal: records go into zeros written ahead; a copy taken at a crash replays them, close() leaves records only', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'journal');
  const j = new Journal(file);
  await j.open();
  for (let i = 0; i < 20; i++) await j.upload({ uid: `u${i}`, path: `/f${i}`, id: `i${i}`, size: 1, data: Buffer.from('x') });
  await j.done('u3');
  // more than the zeros ahead in one batch: the space ahead grows first
  const big = Buffer.alloc(INLINE_MAX_BYTES, 7);
  await Promise.all(Array.from({ length: 30 }, (_, i) => j.upload({ uid: `b${i}`, path: `/big${i}`, id: `ib${i}`, size: big.length, data: big })));
  const live = readFileSync(file);
  const end = live.indexOf(0);
  t.true(end > 30 * INLINE_MAX_BYTES && live.length > end, 'zeros written ahead of the records');
  // the drive killed in the middle of its next record
  const crash = join(dir, 'crash');
  writeFileSync(crash, Buffer.concat([live.subarray(0, end), Buffer.from('{"t":"d","uid":"u4'), live.subarray(end + 18)]));
  const j2 = new Journal(crash);
  const p = await j2.open();
  t.is(p.length, 49);
  t.false(p.some((x) => x.uid === 'u3'));
  t.true(p.filter((x) => x.uid.startsWith('b')).every((x) => x.data?.equals(big)));
  await j2.upload({ uid: 'after', path: '/after', id: 'ia', size: 2, data: Buffer.from('ok') });
  await j2.close();
  t.is(readFileSync(crash).indexOf(0), -1, 'close() leaves the records only');
  t.is(records(crash).length, 50);
  await j.close();
  t.is(readFileSync(file).indexOf(0), -1);
  const j3 = new Journal(file);
  t.is((await j3.open()).length, 49);
  await j3.close();
});
