// VboxxClient reads through a deterministic fault proxy: answers cut at chosen body offsets,
// answers that are not the file (the reference server's drop, an error JSON on a 200, lengths
// that contradict the request), a file replaced between a cut and its retry. The rule checked:
// every byte handed to a read's sink (which the vfs lands in its cache as it arrives) is the
// file's byte at that position, of the revision the sink is told.
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { startEmulator } from '../helpers/emulator.js';
import { startHttpFaultProxy, type HttpFaultProxy } from '../helpers/fault-proxy.js';
import { randomBytesSeeded } from '../e2e/lib/services.js';
import type { Emulator } from '../../src/emulator/server.js';
import { VboxxClient } from '../../src/remote/vboxx/index.js';
import type { RangeServed } from '../../src/remote/types.js';

const dir = mkdtempSync(join(tmpdir(), 'vboxx-cut-'));
let emu: Emulator;
let direct: VboxxClient;
let root = 0;
const toClose: Array<{ close(): Promise<void> | void }> = [];

test.before(async () => {
  emu = await startEmulator({ rsync: false });
  direct = new VboxxClient({ server: emu.url, user: 'demo', password: 'demo-password' });
  root = (await direct.accountInfo()).roots.find((r) => r.name === 'Files')!.id;
});
test.after.always(async () => {
  for (const c of toClose.reverse()) await c.close();
  await direct?.close();
  await emu?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function viaProxy(): Promise<{ proxy: HttpFaultProxy; c: VboxxClient }> {
  const proxy = await startHttpFaultProxy(emu.url);
  const c = new VboxxClient({ server: proxy.url, user: 'demo', password: 'demo-password', backoffBaseMs: 5, backoffCapMs: 50 });
  toClose.push(proxy, c);
  return { proxy, c };
}

let seq = 0;
/** A fresh file on the server; returns its path, bytes and revision. */
async function put(size: number, seed: number): Promise<{ path: string; data: Buffer; rev: string }> {
  const path = `/cut-${process.pid}-${seq++}.bin`;
  const data = randomBytesSeeded(size, seed);
  const m = await direct.filesPut(root, path, data);
  return { path, data, rev: String(m.rev) };
}

/**
 * A sink that checks every delivery against the content of the revision it is told (or `first`
 * when it is told none), and collects the bytes of the last run like a cache would.
 */
function checkingSink(versions: Map<string, Buffer>, first: Buffer, offset: number, length: number) {
  const wrong: string[] = [];
  const out = Buffer.alloc(length);
  const revs = new Set<string>();
  const sink = (chunk: Buffer, pos: number, served: RangeServed) => {
    if (served.rev) revs.add(served.rev);
    const ref = (served.rev && versions.get(served.rev)) || first;
    if (!chunk.equals(ref.subarray(pos, pos + chunk.length))) {
      wrong.push(`${chunk.length} bytes at ${pos} (rev ${served.rev ?? 'none'}): ${JSON.stringify(chunk.subarray(0, 16).toString('latin1'))}`);
    }
    chunk.copy(out, pos - offset);
  };
  return { sink, wrong, out, revs };
}

const DROP = { kind: 'answer', status: 200, headers: { 'content-length': '1000000' }, body: '{"partial":', cut: true } as const;

test.serial('the reference server\'s drop (200, content-length 1000000, 11 bytes of JSON, cut) never reaches the sink', async (t) => {
  const f = await put(300_000, 1);
  const { proxy, c } = await viaProxy();
  const armed = proxy.add({ method: 'GET', path: /^\/1\/files\//, fault: DROP });
  const s = checkingSink(new Map([[f.rev, f.data]]), f.data, 0, f.data.length);
  const r = await c.readTo(root, f.path, 0, f.data.length, s.sink);
  t.is(armed.hits, 1);
  t.deepEqual(s.wrong, []);
  t.is(r.bytes, f.data.length);
  t.true(s.out.equals(f.data));
  t.is(r.rev, f.rev);
});

test.serial('a complete 200 whose body is an error JSON (no version headers) is not the file', async (t) => {
  const f = await put(50_000, 2);
  const { proxy, c } = await viaProxy();
  const armed = proxy.add({ method: 'GET', path: /^\/1\/files\//, fault: { kind: 'answer', status: 200, body: '{"error":"busy","status_code":200}' } });
  const s = checkingSink(new Map([[f.rev, f.data]]), f.data, 0, f.data.length);
  const r = await c.readTo(root, f.path, 0, f.data.length, s.sink);
  t.is(armed.hits, 1);
  t.deepEqual(s.wrong, []);
  t.is(r.bytes, f.data.length);
  t.true(s.out.equals(f.data));
  // readRange on top of readTo: the same bytes
  proxy.add({ method: 'GET', path: /^\/1\/files\//, fault: { kind: 'answer', status: 200, body: '{"error":"busy"}' } });
  t.true((await c.readRange(root, f.path, 1000, 20_000)).equals(f.data.subarray(1000, 21_000)));
});

test.serial('a 206 whose lengths contradict its Content-Range is not the file', async (t) => {
  const f = await put(40_000, 3);
  const { proxy, c } = await viaProxy();
  proxy.add({
    method: 'GET', path: /^\/1\/files\//,
    fault: { kind: 'answer', status: 206, headers: { 'content-range': `bytes 0-9999/${f.data.length}`, etag: `"${f.rev}"` }, body: 'x'.repeat(100) },
  });
  const s = checkingSink(new Map([[f.rev, f.data]]), f.data, 0, 10_000);
  const r = await c.readTo(root, f.path, 0, 10_000, s.sink);
  t.deepEqual(s.wrong, []);
  t.is(r.bytes, 10_000);
  t.true(s.out.equals(f.data.subarray(0, 10_000)));
});

test.serial('a ranged answer cut after K bytes resumes at K (If-Range), never re-sending or skipping a byte', async (t) => {
  const f = await put(3 * 1024 * 1024, 4);
  const { proxy, c } = await viaProxy();
  const K = 1_234_567;
  const off = 4096;
  const len = 2 * 1024 * 1024;
  proxy.add({ method: 'GET', path: /^\/1\/files\//, fault: { kind: 'cut', afterBytes: K } });
  const s = checkingSink(new Map([[f.rev, f.data]]), f.data, off, len);
  let next = off;
  const seqSink = (chunk: Buffer, pos: number, served: RangeServed) => {
    if (pos !== next) s.wrong.push(`delivery at ${pos}, expected ${next}`);
    next = pos + chunk.length;
    s.sink(chunk, pos, served);
  };
  const r = await c.readTo(root, f.path, off, len, seqSink);
  t.deepEqual(s.wrong, []);
  t.is(r.bytes, len);
  t.true(s.out.equals(f.data.subarray(off, off + len)));
  const gets = proxy.log.filter((e) => e.path.startsWith('/1/files/'));
  t.is(gets.length, 2);
  t.is(gets[1]!.range, `bytes=${off + K}-${off + len - 1}`);
});

test.serial('the file replaced between a cut and its retry: the read starts over on the new revision, no byte of the old one after it', async (t) => {
  const f = await put(2 * 1024 * 1024, 5);
  const { proxy, c } = await viaProxy();
  const K = 700_000;
  const armed = proxy.add({ method: 'GET', path: /^\/1\/files\//, fault: { kind: 'stall', afterBytes: K } });
  const versions = new Map([[f.rev, f.data]]);
  const s = checkingSink(versions, f.data, 0, f.data.length);
  const reading = c.readTo(root, f.path, 0, f.data.length, s.sink);
  await armed.fired;
  const v2 = randomBytesSeeded(f.data.length, 55);
  const m2 = await direct.filesPut(root, f.path, v2);
  versions.set(String(m2.rev), v2);
  proxy.release('cut');
  const r = await reading;
  t.deepEqual(s.wrong, []);
  t.is(r.rev, String(m2.rev));
  t.true(s.out.equals(v2));
  t.deepEqual([...s.revs], [f.rev, String(m2.rev)]);
});

test.serial('download(): the drop, then a real answer cut after K bytes: the local file is exact', async (t) => {
  const f = await put(2 * 1024 * 1024 + 17, 6);
  const { proxy, c } = await viaProxy();
  proxy.add({ method: 'GET', path: /^\/1\/files\//, fault: DROP });
  proxy.add({ method: 'GET', path: /^\/1\/files\//, nth: 2, fault: { kind: 'cut', afterBytes: 999_999 } });
  const local = join(dir, `dl-${seq++}.bin`);
  const progress: number[] = [];
  const r = await c.download(root, f.path, local, { onProgress: (n) => progress.push(n) });
  t.is(r.bytes, f.data.length);
  const got = readFileSync(local);
  let p = 0; while (p < got.length && got[p] === f.data[p]) p++;
  t.true(got.equals(f.data), `local file ${got.length} bytes, first difference at ${p}`);
  // progress counts bytes of the file only: never the 11 bytes of the drop
  t.false(progress.includes(11), `progress ${progress.slice(0, 5).join(',')}`);
  t.is(progress[progress.length - 1], f.data.length);
});
