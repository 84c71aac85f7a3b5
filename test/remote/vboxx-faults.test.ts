// VboxxClient under failure: injected faults, rate limits, revoked sessions, stalls, cancellation,
// the concurrency bound (counted at the server) and secrets kept out of errors and logs.
import test from 'ava';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync, readFileSync, statSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { startEmulator, serverStats } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import { VboxxClient, type VboxxClientConfig } from '../../src/remote/vboxx/index.js';
import { RemoteError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';

const dir = mkdtempSync(join(tmpdir(), 'vboxx-faults-'));
const logLines: string[] = [];
const tokensSeen = new Set<string>();
const errorsSeen: string[] = [];
const toClose: Array<{ close(): Promise<void> | void }> = [];

test.after.always(async () => {
  for (const c of toClose.reverse()) await c.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Watches the server: in-flight maximum, answers by status, session tokens sent. */
function watch(emu: Emulator) {
  const w = { inFlight: 0, max: 0, statuses: new Map<number, number>(), aborted: 0 };
  emu.app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const m = /[?&]session_token=([^&]+)/.exec(req.url ?? '');
    if (m) tokensSeen.add(decodeURIComponent(m[1]!));
    if ((req.url ?? '').startsWith('/_emulator')) return;
    w.inFlight++;
    w.max = Math.max(w.max, w.inFlight);
    let done = false;
    const end = () => { if (!done) { done = true; w.inFlight--; } };
    res.once('finish', () => { w.statuses.set(res.statusCode, (w.statuses.get(res.statusCode) ?? 0) + 1); end(); });
    res.once('close', () => { if (!res.writableFinished) w.aborted++; end(); });
  });
  return w;
}

async function emulator(opts: Parameters<typeof startEmulator>[0] = {}) {
  const emu = await startEmulator({ rsync: false, ...opts });
  toClose.push(emu);
  return { emu, w: watch(emu) };
}

function client(url: string, extra: Partial<VboxxClientConfig> = {}, user = 'demo', password = 'demo-password') {
  const c = new VboxxClient({
    server: url, user, password, backoffBaseMs: 10, backoffCapMs: 200,
    log: createLogger('trace', (l) => logLines.push(l)), ...extra,
  });
  toClose.push(c);
  return c;
}

async function rootOf(c: VboxxClient, name = 'Files') {
  return (await c.accountInfo()).roots.find((r) => r.name === name)!.id;
}

async function faults(url: string, f: Record<string, number>) {
  await fetch(`${url}/_emulator/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(f) });
}

function record(e: unknown) {
  if (e instanceof Error) errorsSeen.push(`${String(e)} ${e.message} ${JSON.stringify(e)} ${(e as RemoteError).path ?? ''}`);
  return e;
}

test.serial('a 20% fault rate heals for idempotent calls, uploads and fileops', async (t) => {
  const { emu, w } = await emulator();
  const setup = client(emu.url);
  const root = await rootOf(setup);
  const ref = join(dir, 'ref.bin');
  await setup.download(root, '/big/random-10MiB.bin', ref);
  const want = readFileSync(ref);
  await faults(emu.url, { failRate: 0.2 });

  const c = client(emu.url, { maxAttempts: 8, chunkSize: 256 * 1024, chunkThreshold: 512 * 1024 });
  const results = await Promise.all(Array.from({ length: 30 }, (_, i) =>
    i % 3 === 0 ? c.accountInfo().then((x) => x.roots.length > 0)
      : i % 3 === 1 ? c.metadata(root, '/documents').then((x) => !x.unchanged && x.meta.contents!.length === 3)
        : c.readRange(root, '/big/random-10MiB.bin', i * 1000, 4096).then((b) => b.equals(want.subarray(i * 1000, i * 1000 + 4096)))));
  t.true(results.every(Boolean));

  const dl = join(dir, 'faulty-dl.bin');
  await c.download(root, '/big/random-10MiB.bin', dl);
  t.true(readFileSync(dl).equals(want), 'download resumed or restarted into the right bytes');

  const src = join(dir, 'faulty-up.bin');
  const data = randomBytes(3 * 1024 * 1024 + 5);
  writeFileSync(src, data);
  await c.upload(root, '/faulty/chunked.bin', src);
  await c.filesPut(root, '/faulty/small.bin', data.subarray(0, 1000));
  await c.createFolder(root, '/faulty/dir');
  await c.move(root, '/faulty/small.bin', '/faulty/dir/small.bin');
  await c.copy(root, '/faulty/dir/small.bin', '/faulty/copy.bin');
  await c.delete(root, '/faulty/dir');
  await faults(emu.url, { failRate: 0 });
  const back = join(dir, 'faulty-back.bin');
  await setup.download(root, '/faulty/chunked.bin', back);
  t.true(readFileSync(back).equals(data), 'chunked upload under faults delivered exactly the bytes');
  const listing = await setup.metadata(root, '/faulty');
  t.deepEqual(!listing.unchanged && listing.meta.contents!.map((x) => x.path).sort(), ['/faulty/chunked.bin', '/faulty/copy.bin']);
  const injected = (w.statuses.get(500) ?? 0) + (w.statuses.get(503) ?? 0);
  t.log(`injected 500/503: ${injected}, client retries: ${c.http.counters.retries}, dropped connections healed too`);
  t.true(injected > 0, 'faults were really injected');
  t.true(c.http.counters.retries > 0);
});

test.serial('lost answers: a chunk resumes from the server offset, a lost commit is reconciled', async (t) => {
  const { emu } = await emulator();
  // Lets the server act on a request and then cuts the connection instead of answering.
  const drop = new Map<string, number>([['/1/chunked_upload', 2], ['/1/commit_chunked_upload/', 1]]);
  const seen = new Map<string, number>();
  emu.app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    for (const [prefix, nth] of drop) {
      if (!(req.url ?? '').startsWith(prefix)) continue;
      const n = (seen.get(prefix) ?? 0) + 1;
      seen.set(prefix, n);
      if (n === nth) (res as any).end = function () { res.socket?.destroy(); return res; };
    }
  });
  const c = client(emu.url, { chunkSize: 64 * 1024, chunkThreshold: 64 * 1024 });
  const root = await rootOf(c);
  const src = join(dir, 'lost.bin');
  const data = randomBytes(64 * 1024 * 4 + 100);
  writeFileSync(src, data);
  const before = logLines.length;
  const m = await c.upload(root, '/lost/answers.bin', src);
  t.is(m.bytes, data.length);
  t.true(logLines.slice(before).some((l) => /resumes at server offset 131072/.test(l)), 'continued from the server offset');
  t.is(seen.get('/1/commit_chunked_upload/'), 2, 'the commit was repeated once');
  const back = join(dir, 'lost-back.bin');
  await c.download(root, '/lost/answers.bin', back);
  t.true(readFileSync(back).equals(data), 'no byte duplicated or lost');
});

test.serial('429 with Retry-After pauses the queue instead of hammering; a client rate limit avoids 429', async (t) => {
  const { emu, w } = await emulator({ rateLimit: 5 });
  const c = client(emu.url, { concurrency: 8, maxRetryTimeMs: 60_000, maxAttempts: 20 });
  const root = await rootOf(c);
  const res = await Promise.all(Array.from({ length: 20 }, () => c.metadata(root, '/documents', { list: false })));
  t.is(res.length, 20);
  const n429 = w.statuses.get(429) ?? 0;
  t.true(n429 > 0, 'the server did rate limit');
  t.true(c.http.counters.pauses > 0, 'the queue paused');
  // Without obeying Retry-After, ~10 ms backoffs would draw hundreds of 429s for 20 requests.
  t.log(`429 answers: ${n429}, queue pauses: ${c.http.counters.pauses}`);
  t.true(n429 < 60, `429 answers: ${n429}`);

  const polite = client(emu.url, { rateLimit: 3 });
  const before = w.statuses.get(429) ?? 0;
  await new Promise((r) => setTimeout(r, 1100));
  await Promise.all(Array.from({ length: 10 }, () => polite.metadata(root, '/documents', { list: false })));
  t.is((w.statuses.get(429) ?? 0) - before, 0, 'rate-limited client stays under the server limit');
});

test.serial('revoked session: exactly one re-login shared by concurrent callers', async (t) => {
  const { emu } = await emulator();
  const c = client(emu.url);
  const root = await rootOf(c);
  t.is(c.logins, 1);
  emu.ctx.db.prepare('DELETE FROM vboxx_sessions').run();
  const authBefore = (await serverStats(emu.url))['POST /1/auth'] ?? 0;
  const res = await Promise.all(Array.from({ length: 12 }, (_, i) =>
    i % 2 ? c.metadata(root, '/documents') : c.readRange(root, '/readme.txt', 0, 7)));
  t.is(res.length, 12);
  t.is(c.logins, 2);
  t.is(((await serverStats(emu.url))['POST /1/auth'] ?? 0) - authBefore, 1);

  // A password changed meanwhile: the re-login fails with a clear, final error.
  const admin = client(emu.url, {}, 'admin', 'admin-password');
  const me = await c.person();
  await admin.updatePerson({ id: me.id, password: 'changed-pass' });
  emu.ctx.db.prepare('DELETE FROM vboxx_sessions WHERE person_id = ?').run(me.id);
  const e = record(await t.throwsAsync(c.accountInfo())) as RemoteError;
  t.is(e.code, 'AUTH_FAILED');
  await admin.updatePerson({ id: me.id, password: 'demo-password' });
});

test.serial('the concurrency bound holds at the server', async (t) => {
  const { emu, w } = await emulator();
  const c = client(emu.url, { concurrency: 3 });
  const root = await rootOf(c);
  await faults(emu.url, { latencyMs: 40 });
  w.max = 0;
  const dl = (i: number) => c.download(root, '/big/random-10MiB.bin', join(dir, `conc-${i}`));
  await Promise.all([
    ...Array.from({ length: 12 }, () => c.metadata(root, '/documents')),
    ...Array.from({ length: 12 }, (_, i) => c.readRange(root, '/big/random-10MiB.bin', i * 100_000, 50_000)),
    ...Array.from({ length: 3 }, (_, i) => dl(i)),
  ]);
  await faults(emu.url, { latencyMs: 0 });
  t.log(`server max in flight: ${w.max}`);
  t.true(w.max <= 3, `server saw ${w.max} requests at once`);
  t.true(w.max >= 2, 'requests did overlap (the bound was exercised)');
  t.true(c.http.maxInFlight <= 3);
});

test.serial('a stalled server yields a timeout within the bound', async (t) => {
  // Answers the login, then never answers anything else (headers stall), or stalls mid-body.
  const sockets = new Set<import('node:net').Socket>();
  const srv = createServer((req, res) => {
    if (req.url?.startsWith('/1/auth')) {
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify({ success: true, session_token: 'tok-' + 'x'.repeat(60) }));
    }
    if (req.url?.startsWith('/1/files/')) {
      res.writeHead(200, { 'content-length': '1000000', etag: '"1"' });
      res.write(Buffer.alloc(1000));
      return; // and nothing more
    }
    // no answer at all
  });
  srv.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  toClose.push({ close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); srv.close(() => r()); }) });
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  const c = client(url, { timeoutMs: 300, maxRetryTimeMs: 2000, maxAttempts: 3 });

  let t0 = Date.now();
  const e1 = record(await t.throwsAsync(c.metadata(1, '/'))) as RemoteError;
  t.is(e1.code, 'TIMEOUT');
  t.true(Date.now() - t0 < 15_000, 'bounded by the retry budget, not the stall');

  t0 = Date.now();
  const e2 = record(await t.throwsAsync(c.download(1, '/stall.bin', join(dir, 'stall.bin')))) as RemoteError;
  t.is(e2.code, 'TIMEOUT');
  t.true(Date.now() - t0 < 15_000);
  t.is(c.http.inFlight, 0, 'no request left holding a slot');
});

test.serial('cancelling a download stops the transfer', async (t) => {
  const { emu, w } = await emulator();
  const c = client(emu.url);
  const root = await rootOf(c);
  // A file big enough that it cannot finish before the abort lands.
  const big = join(dir, 'big-src.bin');
  writeFileSync(big, randomBytes(64 * 1024 * 1024));
  await c.upload(root, '/cancel/big.bin', big);
  w.aborted = 0;
  const ac = new AbortController();
  const f = join(dir, 'cancelled.bin');
  let progressCalls = 0;
  const p = c.download(root, '/cancel/big.bin', f, {
    signal: ac.signal,
    onProgress: (n) => { progressCalls++; if (n >= 1024 * 1024) ac.abort(); },
  });
  const e = record(await t.throwsAsync(p)) as RemoteError;
  t.is(e.code, 'CANCELLED');
  t.true(progressCalls > 0);
  t.true(statSync(f).size < 64 * 1024 * 1024, 'the file did not arrive whole');
  await new Promise((r) => setTimeout(r, 200));
  t.true(w.aborted >= 1, 'the server saw the response aborted');
  t.is(c.http.inFlight, 0);
  // The client is still usable after a cancel.
  t.is((await c.readRange(root, '/readme.txt', 0, 7)).toString(), 'Welcome');
  const ac2 = new AbortController();
  ac2.abort();
  t.is((record(await t.throwsAsync(c.metadata(root, '/', { signal: ac2.signal }))) as RemoteError).code, 'CANCELLED');
});

test.serial('no password or session token in any error or log line', async (t) => {
  const { emu } = await emulator();
  const c = client(emu.url);
  const root = await rootOf(c);
  for (const p of [c.metadata(root, '/missing'), c.readRange(999, '/x', 0, 1), c.createFolder(root, '/documents'),
    c.personById(1), c.filesPut(root, '/x.exe', Buffer.from('x'))]) {
    record(await t.throwsAsync(p));
  }
  t.true(tokensSeen.size > 0, 'tokens were captured for the check');
  const hay = [...logLines, ...errorsSeen].join('\n');
  t.true(logLines.length > 0);
  for (const tok of tokensSeen) t.false(hay.includes(tok), 'session token leaked');
  for (const pw of ['demo-password', 'admin-password', 'changed-pass']) t.false(hay.includes(pw), `${pw} leaked`);
  t.false(String(c).includes('demo-password'));
});
