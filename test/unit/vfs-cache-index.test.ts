// The cache's .meta index after a crash: it may cost cached bytes, it must never present bytes a
// program changed (and never closed) as the server's copy.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { O_RDONLY, O_RDWR, bytes, readAll, rng, setup, sleep, until } from './helpers.js';

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

/**
 * Random partial reads (each release writes an index of what is cached), writes left open, writes
 * closed, and crashes (the drive dropped without close, started again on its cache folder),
 * against a model: after a crash a file reads as its last closed content, or as the server's
 * copy if it was never closed changed; writes never closed are gone. A file closed changed takes
 * no more writes here (a big file's later unclosed writes land in the cache file its pending
 * upload names: what a crash then keeps of them is not this model's question).
 */
for (const seed of [1, 2, 3, 4]) {
  test(`random reads, open writes, closes and crashes keep the model (seed ${seed})`, async (t) => {
    const s = await setup(t, { rangedReads: true }, { readAheadBytes: 256 * 1024, readBlockBytes: 256 * 1024, writebackDelayMs: 600_000 });
    const r = rng(seed);
    const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)]!;
    const names = ['/a.bin', '/b.bin', '/c.bin', '/d.bin'];
    const sizes = [40 * 1024, 700 * 1024, 3 * MiB, 5 * MiB];
    const expected = new Map<string, Buffer>();
    names.forEach((n, i) => { const b = bytes(sizes[i]!, seed * 10 + i); s.remote.putFile(n, b); expected.set(n, Buffer.from(b)); });
    /** What open handles see now (closed content plus the writes still open). */
    const live = new Map<string, Buffer>([...expected].map(([k, v]) => [k, Buffer.from(v)]));
    const closedChanged = new Set<string>();
    /** Where each file was read: writes go there mostly (the bytes an index names). */
    const readAt = new Map<string, number[]>();
    let vfs = s.vfs;
    let writers: { path: string; fh: number }[] = [];
    const log: string[] = [];
    for (let step = 0; step < 70; step++) {
      const op = r();
      const p = pick(names);
      const size = live.get(p)!.length;
      if (op < 0.4) {
        const pos = Math.floor(r() * size);
        const len = Math.min(size - pos, 1 + Math.floor(r() * 300 * 1024));
        const fh = await vfs.open(p, O_RDONLY);
        const buf = Buffer.alloc(len);
        const n = await vfs.read(p, fh, buf, len, pos);
        readAt.set(p, [...(readAt.get(p) ?? []), pos]);
        await vfs.release(p, fh);
        // (the index of what is cached goes to disk after the release: sometimes it is there first)
        if (r() < 0.5) await sleep(30);
        log.push(`read ${p} ${pos}+${len}`);
        t.true(buf.subarray(0, n).equals(live.get(p)!.subarray(pos, pos + n)), `${log.join('; ')}: read sees what handles wrote`);
      } else if (op < 0.7 && !closedChanged.has(p)) {
        let w = writers.find((x) => x.path === p);
        if (!w) { w = { path: p, fh: await vfs.open(p, O_RDWR) }; writers.push(w); }
        const near = readAt.get(p);
        const pos = Math.min(size - 1000, near && r() < 0.7 ? pick(near) + Math.floor(r() * 4096) : Math.floor(r() * (size - 1000)));
        const data = bytes(1 + Math.floor(r() * 1000), step + 100);
        await vfs.write(p, w.fh, data, data.length, pos);
        data.copy(live.get(p)!, pos);
        log.push(`write ${p} ${pos}+${data.length}`);
      } else if (op < 0.8 && writers.length > 0) {
        const w = writers.shift()!;
        await vfs.flush(w.path, w.fh);
        await vfs.release(w.path, w.fh);
        expected.set(w.path, Buffer.from(live.get(w.path)!));
        closedChanged.add(w.path);
        log.push(`close ${w.path}`);
      } else if (op < 0.9) {
        log.push(`crash (open: ${writers.map((w) => w.path).join(', ')})`);
        writers = [];
        vfs = await s.reopen({ writebackDelayMs: 600_000 });
        for (const n of names) live.set(n, Buffer.from(expected.get(n)!));
        for (const n of names) {
          t.true((await readAll(vfs, n)).equals(expected.get(n)!), `${log.join('; ')}: ${n} after the crash`);
        }
      }
    }
    for (const w of writers) { await vfs.flush(w.path, w.fh); await vfs.release(w.path, w.fh); expected.set(w.path, live.get(w.path)!); }
    await vfs.flushAll();
    for (const n of names) t.true(s.remote.getFile(n)!.equals(expected.get(n)!), `${n} on the server`);
  });
}
