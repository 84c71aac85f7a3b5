// Reads through real FUSE mounts while a fault proxy (test/helpers/fault-proxy.ts) breaks chosen
// downloads at chosen byte offsets: what programs read must be the file's bytes (sha256), never
// bytes of a failed answer, and the cache must not keep such bytes for later reads.
// vBoxx: an HTTP proxy between the mount and the reference server. Maxxo: a TCP proxy in front of
// the slice's rsync daemon (/slice advertises the proxy's port).
// Files are put on the server beside the mount, so every first read is cold.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import path from 'node:path';
import fsp from 'node:fs/promises';
import { startHttpFaultProxy, startTcpFaultProxy, type Fault } from '../helpers/fault-proxy.js';
import { within } from '../support/wait.js';
import { useVboxxApi, mountService, uniq, run, randomBytesSeeded, sha256 } from './lib/services.js';

const MiB = 1024 * 1024;
const v = useVboxxApi(test);

/** The reference server's drop (server.ts onSend): 200, content-length 1000000, 11 bytes, cut. */
const DROP: Fault = { kind: 'answer', status: 200, headers: { 'content-length': '1000000' }, body: '{"partial":', cut: true };

/** sha256 of each file, read by a program (sha256sum) in its own process. */
async function shas(t: ExecutionContext, files: string[]): Promise<string[]> {
  const r = await run('sha256sum', files, { timeoutMs: 120_000 });
  t.is(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n').map((l) => l.split(' ')[0]!);
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test.serial('vboxx: the server\'s drop on the first GET of each of 6 files: programs read the files, now and from the cache', async (t) => {
  const proxy = await startHttpFaultProxy(v.servers.url);
  t.teardown(() => proxy.close());
  const dir = uniq('rfd');
  const files = [0, 1, 2, 3, 4, 5].map((i) => randomBytesSeeded(300_000 + i * 1000, 300 + i));
  const armed = [];
  for (let i = 0; i < files.length; i++) {
    await v.api.filesPut(v.filesRoot, `/${dir}/f${i}.bin`, files[i]!);
    armed.push(proxy.add({ method: 'GET', path: new RegExp(`^/1/files/.*${esc(dir)}.*f${i}\\.bin$`), fault: DROP }));
  }
  const d = await mountService(t, { ...v.servers, url: proxy.url }, 'vboxx');
  const paths = files.map((_, i) => d.p(dir, `f${i}.bin`));
  t.deepEqual(await shas(t, paths), files.map(sha256));
  t.deepEqual(armed.map((a) => a.hits), files.map(() => 1), 'every file\'s first GET was dropped');
  // the same mount again: from its cache, which must hold no byte of the drops
  t.deepEqual(await shas(t, paths), files.map(sha256));
});

test.serial('vboxx: a 6 MiB GET cut after 1.5 MiB, its resume answered 200 with an error JSON: the program reads the file', async (t) => {
  const proxy = await startHttpFaultProxy(v.servers.url);
  t.teardown(() => proxy.close());
  const dir = uniq('rfc');
  const src = randomBytesSeeded(6 * MiB + 333, 310);
  await v.api.filesPut(v.filesRoot, `/${dir}/big.bin`, src);
  const re = new RegExp(`^/1/files/.*${esc(dir)}.*big\\.bin$`);
  const cut = proxy.add({ method: 'GET', path: re, fault: { kind: 'cut', afterBytes: 1_500_000 } });
  const wrong = proxy.add({ method: 'GET', path: re, nth: 2, fault: { kind: 'answer', status: 200, body: '{"error":"busy","status_code":200}' } });
  const d = await mountService(t, { ...v.servers, url: proxy.url }, 'vboxx');
  t.deepEqual(await shas(t, [d.p(dir, 'big.bin')]), [sha256(src)]);
  t.is(cut.hits, 1);
  t.is(wrong.hits, 1);
  t.deepEqual(await shas(t, [d.p(dir, 'big.bin')]), [sha256(src)]);
});

test.serial('maxxo: the rsync stream cut after 1.5 MB: the program reads the file, now and from the cache', async (t) => {
  const daemon = await v.servers.rsyncPort();
  t.truthy(daemon);
  const proxy = await startTcpFaultProxy('127.0.0.1', daemon!);
  await v.servers.advertiseRsyncPort(proxy.port);
  t.teardown(async () => { await v.servers.advertiseRsyncPort(null); await proxy.close(); });
  const rel = uniq('rfm');
  const dir = path.join(await v.servers.maxxoFolder(), rel);
  await fsp.mkdir(dir, { recursive: true });
  const src = randomBytesSeeded(4 * MiB + 77, 320);
  await fsp.writeFile(path.join(dir, 'm.bin'), src);
  // the connection that carries the file (daemon listings of our own go first and stay small)
  const armed = proxy.add({ afterBytes: 1_500_000, kind: 'cut' });
  const d = await mountService(t, v.servers, 'maxxo');
  t.deepEqual(await shas(t, [d.p(rel, 'm.bin')]), [sha256(src)]);
  t.is(armed.hits, 1);
  t.true(proxy.connections >= 2, `${proxy.connections} rsync connections`);
  t.deepEqual(await shas(t, [d.p(rel, 'm.bin')]), [sha256(src)]);
});

// The stall hits the transfer (daemon listings of our own go first and stay small). Found with
// it: the download's end took the replaced file's size but invented its mtime, so the next open
// revalidated against the listing from before the replacement, reset the file to the old size
// and fetched it again; the kernel then served zeros past the new end (a short read's page).
test.serial('maxxo: the file replaced by a shorter one while its rsync stream is stalled, then cut: the cache holds the new file, not a prefix of the old', async (t) => {
  const daemon = await v.servers.rsyncPort();
  const proxy = await startTcpFaultProxy('127.0.0.1', daemon!);
  await v.servers.advertiseRsyncPort(proxy.port);
  t.teardown(async () => { await v.servers.advertiseRsyncPort(null); await proxy.close(); });
  const rel = uniq('rfs');
  const dir = path.join(await v.servers.maxxoFolder(), rel);
  await fsp.mkdir(dir, { recursive: true });
  const a = randomBytesSeeded(4 * MiB, 330);
  const b = randomBytesSeeded(1 * MiB + 5, 331);
  await fsp.writeFile(path.join(dir, 's.bin'), a);
  const armed = proxy.add({ afterBytes: 2_000_000, kind: 'stall' });
  // attributes trusted for a minute: the second read below is served by what the cache holds
  const d = await mountService(t, v.servers, 'maxxo', { vfs: { attrTtlMs: 60_000, dirTtlMs: 60_000 } });
  const file = d.p(rel, 's.bin');
  const first = run('cat', [file], { timeoutMs: 120_000 });
  // bounded: a stall that never comes must fail the test, not hold the suite
  await within(armed.fired, 60_000, () => { throw new Error('the rsync stream was never stalled'); });
  // replaced whole (a new inode), as an upload would
  await fsp.writeFile(path.join(dir, 's.bin.new'), b);
  await fsp.rename(path.join(dir, 's.bin.new'), path.join(dir, 's.bin'));
  proxy.release();
  await first;
  // whatever the first program got while the file changed, what the cache now serves is B
  const again = await run('sha256sum', [file], { timeoutMs: 120_000 });
  // a stalled, cut first run, the resume (which found nothing to append), the verifying run
  t.log(`rsync connections: ${proxy.connections}, bytes down: ${proxy.bytesDown.join(', ')}`);
  t.is(again.stdout.split(' ')[0], sha256(b), 'the cached file is the new version');
  // the version the download got is known as such: reads again are served from the cache, not
  // fetched at every open against the listing from before the replacement (which also made the
  // drive report the old size meanwhile, and the kernel serve zeros past the new end)
  const runs = proxy.connections;
  const st = await run('stat', ['-c', '%s', file]);
  t.is(st.stdout.trim(), String(b.length));
  t.is((await run('sha256sum', [file], { timeoutMs: 120_000 })).stdout.split(' ')[0], sha256(b));
  t.is(proxy.connections, runs, 'no rsync run for a read of what the cache holds');
});
