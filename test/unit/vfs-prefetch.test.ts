// Prefetch: small files of a folder once a program starts reading its files (ranged: one request
// per file at background priority; whole-file remotes: batches, Maxxo one rsync run each), and
// subfolder listings after a listing. Bounded by count, size and bytes; never changes content.
import test from 'ava';
import { setup, readAll, until, sleep, within, writeFile, O_RDONLY, O_WRONLY, O_TRUNC } from './helpers.js';

function fill(remote: { putFile(p: string, d: string | Buffer): void }, dir: string, n: number, size = 1024): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < n; i++) {
    const s = `${dir}/f${String(i).padStart(3, '0')}`;
    const body = `${s} `.repeat(Math.ceil(size / (s.length + 1))).slice(0, size);
    remote.putFile(s, body);
    m.set(s, body);
  }
  return m;
}

test('ranged remote: reading one small file fetches its siblings in the background; reading them costs nothing more', async (t) => {
  const { remote, vfs } = await setup(t);
  const files = fill(remote, '/d', 40);
  // above the per-file limit (2 MiB by default)
  remote.putFile('/d/big.bin', Buffer.alloc(3 * 1024 * 1024, 1));
  await vfs.readdir('/d');
  t.is(remote.calls.read, 0, 'a listing alone fetches no file (ls -l stays one request)');
  t.is((await readAll(vfs, '/d/f000')).toString(), files.get('/d/f000')!);
  await until(() => remote.calls.read >= 40, 'siblings prefetched');
  await sleep(20);
  t.is(remote.calls.read, 40, 'the big file is not prefetched');
  for (const [p, body] of files) t.is((await readAll(vfs, p)).toString(), body);
  t.is(remote.calls.read, 40);
});

test('whole-file remote: the siblings come in a few batch transfers, readers wait for them instead of downloading', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: false });
  const files = fill(remote, '/m', 60, 300);
  await vfs.readdir('/m');
  const all = await Promise.all([...files.keys()].map(async (p) => [p, (await readAll(vfs, p)).toString()] as const));
  for (const [p, body] of all) t.is(body, files.get(p)!);
  // the first open downloads its own file; 59 siblings in growing batches (16, 43)
  t.true(remote.calls.downloadMany >= 1 && remote.calls.downloadMany <= 3, `${remote.calls.downloadMany} batches`);
  t.true(remote.calls.download <= 2, `${remote.calls.download} single downloads`);
  // cached now: nothing more
  remote.resetCalls();
  for (const p of files.keys()) await readAll(vfs, p);
  t.is(remote.calls.download + remote.calls.downloadMany, 0);
});

test('whole-file remote: a reader waiting for a batch that fails downloads its file itself', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: false });
  const files = fill(remote, '/w', 10, 300);
  await vfs.readdir('/w');
  const release = remote.hold('downloadMany');
  remote.failNext({ method: 'downloadMany', times: Infinity });
  t.is((await readAll(vfs, '/w/f000')).toString(), files.get('/w/f000')!);
  await until(() => remote.held('downloadMany') >= 1, 'the siblings\' batch is asked for');
  const downloads = remote.calls.download;
  // f005 belongs to the held batch: its reader waits for it, not for a download of its own
  const reading = readAll(vfs, '/w/f005');
  await sleep(50);
  t.is(remote.calls.download, downloads, 'no download of its own while the batch may bring it');
  release();
  t.is((await reading).toString(), files.get('/w/f005')!);
  t.is(remote.calls.download, downloads + 1, 'one download of its own once the batch failed');
});

test('bounds: count, file size and bytes per folder', async (t) => {
  const { remote, vfs } = await setup(t, {}, { prefetchFiles: 5, prefetchFileMaxBytes: 2048, prefetchBytes: 1 << 20 });
  fill(remote, '/c', 20, 1000);
  fill(remote, '/c/sub', 1, 10);
  remote.putFile('/c/large', Buffer.alloc(4096));
  await vfs.readdir('/c');
  await readAll(vfs, '/c/f000');
  await until(() => remote.calls.read >= 6, 'prefetch');
  await sleep(30);
  t.is(remote.calls.read, 6, '1 read + 5 prefetched');
  const s2 = await setup(t, {}, { prefetchBytes: 3000 });
  fill(s2.remote, '/b', 20, 1000);
  await s2.vfs.readdir('/b');
  await readAll(s2.vfs, '/b/f000');
  await sleep(50);
  t.is(s2.remote.calls.read, 4, '1 read + 3 x 1000 bytes within the 3000-byte budget');
  const s3 = await setup(t, {}, { prefetchFiles: 0 });
  fill(s3.remote, '/z', 5);
  await s3.vfs.readdir('/z');
  await readAll(s3.vfs, '/z/f000');
  await sleep(30);
  t.is(s3.remote.calls.read, 1, 'off');
});

test('subfolder listings are fetched after a listing, so a tree walk goes on from cache', async (t) => {
  const { remote, vfs } = await setup(t);
  for (let i = 0; i < 10; i++) fill(remote, `/t/s${i}`, 3);
  await vfs.readdir('/t');
  await until(() => remote.calls.list >= 11, 'subfolder listings');
  remote.resetCalls();
  for (let i = 0; i < 10; i++) t.is((await vfs.readdir(`/t/s${i}`)).map((e) => e.name).length, 3);
  t.is(remote.calls.list, 0);
  t.is(remote.calls.read, 0, 'no file content for a walk');
});

test('a prefetch batch racing a truncate and write: the program\'s content wins', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: false }, { writebackDelayMs: 0 });
  fill(remote, '/r', 10, 100);
  await vfs.readdir('/r');
  const release = remote.hold('downloadMany');
  t.teardown(release);
  await readAll(vfs, '/r/f000').catch(() => {});
  await until(() => remote.held('downloadMany') === 1, 'batch in flight');
  const writing = writeFile(vfs, '/r/f003', 'mine');
  await sleep(20);
  release();
  await writing;
  t.is((await readAll(vfs, '/r/f003')).toString(), 'mine');
  await vfs.flushAll();
  t.is(remote.getFile('/r/f003')?.toString(), 'mine');
  t.is((await readAll(vfs, '/r/f004')).length, 100);
  void O_WRONLY; void O_TRUNC;
});

test('a file changed on the server after the batch was asked for is not served stale', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: false }, { attrTtlMs: 0, dirTtlMs: 200, negativeTtlMs: 0 });
  fill(remote, '/s', 5, 100);
  await vfs.readdir('/s');
  await readAll(vfs, '/s/f000');
  await until(() => remote.calls.downloadMany >= 1, 'batch');
  remote.putFile('/s/f002', 'changed on the server');
  // the prefetched copy is as fresh as any cached content: it goes when the listing's TTL does
  await sleep(250);
  t.is((await readAll(vfs, '/s/f002')).toString(), 'changed on the server');
});

test('close() stops a batch in flight instead of waiting for it', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: false });
  fill(remote, '/q', 10, 100);
  await vfs.readdir('/q');
  const release = remote.hold('downloadMany');
  t.teardown(release);
  await readAll(vfs, '/q/f000');
  await until(() => remote.held('downloadMany') === 1, 'batch in flight');
  // the held call would never end by itself: close must cut it loose
  await vfs.close();
  t.is(remote.held('downloadMany'), 0);
});

test('close() with prefetch batches still queued behind the ones in flight: they are dropped, close does not hang', async (t) => {
  // 400 files: batches of 16, 64, 256 and the rest, two at a time; an unmount found two batches
  // queued and waited for them forever (the queue never ran again once the drive was closing)
  const { remote, vfs } = await setup(t, { rangedReads: false });
  fill(remote, '/big', 400, 10);
  await vfs.readdir('/big');
  const release = remote.hold('downloadMany');
  t.teardown(release);
  await readAll(vfs, '/big/f000');
  await until(() => remote.held('downloadMany') === 2, 'two batches in flight, the rest queued');
  const closed = await within(vfs.close().then(() => 'closed'), 10_000, () => 'hung');
  t.is(closed, 'closed');
  t.is(remote.held('downloadMany'), 0);
  t.is(remote.calls.downloadMany, 2, 'the queued batches never started');
});

test('names opened one by one in a folder nobody listed: after a few stats the folder is listed once, and prefetch starts', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: false });
  const files = fill(remote, '/p', 30, 500);
  const names = [...files.keys()];
  // sequential opens by name, as a program that knows its file names does (no readdir)
  for (const p of names.slice(0, 6)) t.is((await readAll(vfs, p)).toString(), files.get(p)!);
  t.is(remote.calls.list, 1, 'the folder was listed once, after a few stats');
  t.true(remote.calls.stat <= 4, `${remote.calls.stat} stats before the listing`);
  await until(() => remote.calls.downloadMany >= 1, 'siblings prefetched in a batch');
  remote.resetCalls();
  for (const p of names.slice(6)) t.is((await readAll(vfs, p)).toString(), files.get(p)!);
  t.is(remote.calls.stat + remote.calls.list, 0, 'the rest answered by the listing');
  t.true(remote.calls.download <= 1, `${remote.calls.download} single downloads after the batch`);
  // a file another client made after the implicit listing is found (a miss is asked of the server)...
  remote.putFile('/p/new', 'new');
  t.is((await readAll(vfs, '/p/new')).toString(), 'new');
  // ...and a missing name is still missing
  await t.throwsAsync(vfs.getattr('/p/nothing'), { code: 'NOT_FOUND' });
  // once a program listed the folder, its listing answers misses too (no stat per create)
  await vfs.readdir('/p');
  remote.resetCalls();
  await t.throwsAsync(vfs.getattr('/p/nothing-2'), { code: 'NOT_FOUND' });
  t.is(remote.calls.stat, 0);
});

test('listAfterStats 0 keeps one stat per name', async (t) => {
  const { remote, vfs } = await setup(t, { rangedReads: false }, { listAfterStats: 0 });
  const files = fill(remote, '/q', 10, 100);
  for (const p of files.keys()) await vfs.getattr(p);
  t.is(remote.calls.list, 0);
  t.is(remote.calls.stat, 10);
});

test('ranged remote: the byte budget slides along as the program opens the prefetched files', async (t) => {
  const { remote, vfs } = await setup(t, {}, { prefetchBytes: 20 * 1000 });
  const files = fill(remote, '/s', 100, 1000);
  let interactive = 0;
  let now = 0;
  const inner = remote.ranged!.readTo;
  remote.ranged!.readTo = async (p, o, l, sink, c) => {
    if ((c?.priority ?? 0) > 0) interactive++;
    now++;
    try { return await inner(p, o, l, sink, c); } finally { now--; }
  };
  await vfs.readdir('/s');
  let i = 0;
  let furthest = 0;
  for (const [p, body] of files) {
    const fh = await vfs.open(p, O_RDONLY);
    // the prefetch this open started (if any) is done before the program reads
    await until(() => now === 0, 'prefetch');
    furthest = Math.max(furthest, remote.calls.read - ++i);
    const buf = Buffer.alloc(2000);
    const n = await vfs.read(p, fh, buf, 2000, 0);
    await vfs.release(p, fh);
    t.is(buf.subarray(0, n).toString(), body);
  }
  t.is(remote.calls.read, 100, 'each file fetched once');
  // only the first file was read by the program itself; never more than 20 files ahead of it
  t.is(interactive, 1);
  t.true(furthest <= 20, `${furthest} files ahead`);
});
