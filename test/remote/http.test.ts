// HttpClient against a small node:http server whose behaviour each test scripts.
import test from 'ava';
import http from 'node:http';
import https from 'node:https';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { HttpClient, parseRetryAfter } from '../../src/remote/http.js';
import { encodePathSegments, joinUrl, encodeQuery } from '../../src/remote/url.js';
import { validName } from '../../src/remote/names.js';
import { RemoteError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void;

interface TestServer {
  url: string;
  hits: Map<string, number>;
  active: number;
  maxActive: number;
  arrivals: Array<{ path: string; at: number }>;
  closedEarly: number;
  close(): Promise<void>;
}

async function serve(routes: Record<string, Handler>): Promise<TestServer> {
  const s: TestServer = { url: '', hits: new Map(), active: 0, maxActive: 0, arrivals: [], closedEarly: 0, close: async () => {} };
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const n = (s.hits.get(path) ?? 0) + 1;
    s.hits.set(path, n);
    s.arrivals.push({ path, at: Date.now() });
    s.active++;
    if (s.active > s.maxActive) s.maxActive = s.active;
    let done = false;
    const finish = () => { if (!done) { done = true; s.active--; } };
    res.on('finish', finish);
    res.on('close', () => { if (!res.writableFinished) s.closedEarly++; finish(); });
    const h = routes[path];
    if (!h) { res.writeHead(404, { 'content-type': 'application/json' }); res.end('{"error":"nope"}'); return; }
    h(req, res, n);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  s.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  s.close = () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); });
  return s;
}

const json = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};

function client(url: string, extra: Partial<ConstructorParameters<typeof HttpClient>[0]> = {}) {
  return new HttpClient({ baseUrl: url, backoffBaseMs: 10, backoffCapMs: 50, timeoutMs: 5000, maxRetryTimeMs: 20000, ...extra });
}

test('url: each segment encoded exactly once, query encoding, names', (t) => {
  t.is(encodePathSegments('/a b/ü.txt'), '/a%20b/%C3%BC.txt');
  t.is(encodePathSegments('/100%/x?y#z'), '/100%25/x%3Fy%23z');
  t.is(encodePathSegments('/'), '/');
  t.is(joinUrl('http://h:1/api/1/', '/ops/list', { path: 'a b', n: 1, skip: undefined }), 'http://h:1/api/1/ops/list?path=a%20b&n=1');
  t.is(encodeQuery({ 'file[]': ['a', 'b&c'] }), 'file%5B%5D=a&file%5B%5D=b%26c');
  for (const bad of ['', '.', '..', 'a/b', 'a\0b', 'x'.repeat(256), 'é'.repeat(128)]) t.false(validName(bad), JSON.stringify(bad));
  for (const ok of ['a', '...', 'a b', 'ü.txt', 'x'.repeat(255)]) t.true(validName(ok));
});

test('parseRetryAfter: seconds and HTTP date', (t) => {
  t.is(parseRetryAfter('2'), 2000);
  t.is(parseRetryAfter(undefined), undefined);
  t.is(parseRetryAfter('garbage'), undefined);
  const d = parseRetryAfter(new Date(Date.now() + 3000).toUTCString())!;
  t.true(d > 1000 && d <= 3000);
});

test('retries heal 500/503 and a body cut mid-way for idempotent json()', async (t) => {
  const s = await serve({
    '/flaky': (_q, res, n) => {
      if (n === 1) return json(res, 500, { error: 'ERR_UNKNOWN' });
      if (n === 2) return json(res, 503, { error: 'x' });
      if (n === 3) {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100000' });
        res.write('{"partial":');
        setImmediate(() => res.socket?.destroy());
        return;
      }
      json(res, 200, { ok: n });
    },
  });
  t.teardown(() => s.close());
  const c = client(s.url);
  t.teardown(() => c.close());
  const r = await c.json<{ ok: number }>({ method: 'GET', path: '/flaky' });
  t.deepEqual(r.data, { ok: 4 });
  t.is(s.hits.get('/flaky'), 4);
  t.is(c.counters.retries, 3);
  t.is(c.inFlight, 0);
});

test('retries are bounded by maxAttempts, then the typed error', async (t) => {
  const s = await serve({ '/down': (_q, res) => json(res, 503, { message: 'maintenance' }) });
  t.teardown(() => s.close());
  const c = client(s.url, { maxAttempts: 3 });
  t.teardown(() => c.close());
  const e = await t.throwsAsync(c.json({ method: 'GET', path: '/down' }), { instanceOf: RemoteError });
  t.is(e!.code, 'SERVICE_UNAVAILABLE');
  t.is(e!.status, 503);
  t.is(e!.method, 'GET');
  t.is(e!.path, '/down');
  t.is(s.hits.get('/down'), 3);
});

test('non-idempotent requests are not repeated on 503 but are on 429', async (t) => {
  const s = await serve({
    '/post503': (_q, res) => json(res, 503, {}),
    '/post429': (_q, res, n) => (n === 1 ? json(res, 429, {}, { 'retry-after': '0' }) : json(res, 200, { ok: true })),
  });
  t.teardown(() => s.close());
  const c = client(s.url);
  t.teardown(() => c.close());
  await t.throwsAsync(c.json({ method: 'POST', path: '/post503', form: { a: '1' } }), { message: /./ });
  t.is(s.hits.get('/post503'), 1);
  const r = await c.json({ method: 'POST', path: '/post429', form: { a: '1' } });
  t.deepEqual(r.data, { ok: true });
  t.is(s.hits.get('/post429'), 2);
});

test('429 Retry-After is obeyed and pauses the whole queue', async (t) => {
  let limitedAt = 0;
  const s = await serve({
    '/limited': (_q, res, n) => {
      if (n === 1) { limitedAt = Date.now(); return json(res, 429, { error: 'RATE_LIMITED' }, { 'retry-after': '1' }); }
      json(res, 200, { ok: 1 });
    },
    '/other': (_q, res) => json(res, 200, { ok: 2 }),
  });
  t.teardown(() => s.close());
  const c = client(s.url, { concurrency: 4 });
  t.teardown(() => c.close());
  const a = c.json({ method: 'GET', path: '/limited' });
  while (!limitedAt || c.counters.pauses === 0) await new Promise((r) => setTimeout(r, 5));
  const b = c.json({ method: 'GET', path: '/other' });
  await Promise.all([a, b]);
  const second = s.arrivals.filter((x) => x.path === '/limited')[1]!;
  const other = s.arrivals.find((x) => x.path === '/other')!;
  // Lower bounds only: neither the retried request nor an unrelated one went out before Retry-After passed.
  t.true(second.at - limitedAt >= 950, `retry after ${second.at - limitedAt} ms`);
  t.true(other.at - limitedAt >= 950, `other request after ${other.at - limitedAt} ms`);
  t.is(c.counters.pauses, 1);
});

test('429 with Retry-After beyond the retry budget fails fast with RateLimited', async (t) => {
  const s = await serve({ '/slow': (_q, res) => json(res, 429, {}, { 'retry-after': '3600' }) });
  t.teardown(() => s.close());
  const c = client(s.url, { maxRetryTimeMs: 2000 });
  t.teardown(() => c.close());
  const e = await t.throwsAsync(c.json({ method: 'GET', path: '/slow' }), { instanceOf: RemoteError });
  t.is(e!.code, 'RATE_LIMITED');
  t.is(s.hits.get('/slow'), 1);
});

test('concurrency bound is never exceeded, counted at the server, streaming bodies included', async (t) => {
  const s = await serve({
    '/work': (_q, res) => setTimeout(() => json(res, 200, { ok: true }), 15),
    '/stream': (_q, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let i = 0;
      const tick = () => { if (i++ < 5) { res.write(Buffer.alloc(1000, 1)); setTimeout(tick, 5); } else res.end(); };
      tick();
    },
  });
  t.teardown(() => s.close());
  const c = client(s.url, { concurrency: 3 });
  t.teardown(() => c.close());
  const jobs: Promise<unknown>[] = [];
  for (let i = 0; i < 30; i++) jobs.push(c.json({ method: 'GET', path: '/work' }));
  for (let i = 0; i < 10; i++) {
    jobs.push(c.request({ method: 'GET', path: '/stream' }).then(async (r) => {
      let n = 0;
      for await (const chunk of r.body) n += (chunk as Buffer).length;
      return n;
    }));
  }
  const out = await Promise.all(jobs);
  t.is(out.slice(30).reduce((a: number, b) => a + (b as number), 0), 10 * 5000);
  t.true(s.maxActive <= 3, `server saw ${s.maxActive} at once`);
  t.true(s.maxActive >= 2);
  t.true(c.maxInFlight <= 3);
  t.is(c.inFlight, 0);
});

test('rate limit: never more than rateLimit requests in any 1 s window at the server', async (t) => {
  const s = await serve({ '/r': (_q, res) => json(res, 200, {}) });
  t.teardown(() => s.close());
  const c = client(s.url, { rateLimit: 5, concurrency: 5 });
  t.teardown(() => c.close());
  // Warm connections first: connection set-up time would otherwise skew arrival times.
  await Promise.all(Array.from({ length: 5 }, () => c.json({ method: 'GET', path: '/r' })));
  await new Promise((r) => setTimeout(r, 1200));
  s.arrivals.length = 0;
  await Promise.all(Array.from({ length: 12 }, () => c.json({ method: 'GET', path: '/r' })));
  const times = s.arrivals.map((a) => a.at).sort((a, b) => a - b);
  t.is(times.length, 12);
  for (let i = 5; i < times.length; i++) t.true(times[i]! - times[i - 5]! >= 900, `window at ${i}: ${times.map((x) => x - times[0]!).join(",")}`);
});

test('priorities: interactive requests overtake queued background ones', async (t) => {
  const order: string[] = [];
  const s = await serve({
    '/p': (q, res) => { order.push(new URL(q.url!, 'http://x').searchParams.get('tag')!); setTimeout(() => json(res, 200, {}), 10); },
  });
  t.teardown(() => s.close());
  const c = client(s.url, { concurrency: 1 });
  t.teardown(() => c.close());
  const jobs = [c.json({ method: 'GET', path: '/p', query: { tag: 'first' }, priority: 0 })];
  for (let i = 0; i < 3; i++) jobs.push(c.json({ method: 'GET', path: '/p', query: { tag: 'bg' }, priority: 0 }));
  jobs.push(c.json({ method: 'GET', path: '/p', query: { tag: 'ui' }, priority: 10 }));
  await Promise.all(jobs);
  t.is(order[0], 'first');
  t.is(order[1], 'ui');
});

test.serial('a stalled server yields a Timeout within the configured bound', async (t) => {
  const s = await serve({ '/stall': () => { /* never answers */ } });
  t.teardown(() => s.close());
  const c = client(s.url, { timeoutMs: 300, maxRetryTimeMs: 1500, maxAttempts: 10 });
  t.teardown(() => c.close());
  const t0 = Date.now();
  const e = await t.throwsAsync(c.json({ method: 'GET', path: '/stall' }), { instanceOf: RemoteError });
  const took = Date.now() - t0;
  t.is(e!.code, 'TIMEOUT');
  // Generous slack for a loaded machine; the server never answers at all.
  t.true(took < 1500 + 300 + 3000, `took ${took} ms`);
  t.true((s.hits.get('/stall') ?? 0) >= 2);
});

test('a body that stalls mid-way times out (body idle timeout)', async (t) => {
  const s = await serve({
    '/half': (_q, res) => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': '50' }); res.write('{"a":'); },
  });
  t.teardown(() => s.close());
  const c = client(s.url, { timeoutMs: 300, maxAttempts: 2 });
  t.teardown(() => c.close());
  const e = await t.throwsAsync(c.json({ method: 'GET', path: '/half' }), { instanceOf: RemoteError });
  t.is(e!.code, 'TIMEOUT');
  t.is(s.hits.get('/half'), 2);
});

test('connection refused -> NetworkError after bounded retries', async (t) => {
  const s = await serve({});
  const url = s.url;
  await s.close();
  const c = client(url, { maxAttempts: 3 });
  t.teardown(() => c.close());
  const e = await t.throwsAsync(c.json({ method: 'POST', path: '/x', form: { a: 1 } }), { instanceOf: RemoteError });
  t.is(e!.code, 'NETWORK_ERROR');
});

test('cancel aborts a running transfer (socket released) and a queued request', async (t) => {
  const s = await serve({
    '/slow': (_q, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const iv = setInterval(() => res.write(Buffer.alloc(100)), 20);
      res.on('close', () => clearInterval(iv));
    },
  });
  t.teardown(() => s.close());
  const c = client(s.url, { concurrency: 1 });
  t.teardown(() => c.close());
  const ac = new AbortController();
  const r = await c.request({ method: 'GET', path: '/slow', signal: ac.signal });
  const queued = new AbortController();
  const q = c.json({ method: 'GET', path: '/slow', signal: queued.signal });
  queued.abort();
  const qe = await t.throwsAsync(q, { instanceOf: RemoteError });
  t.is(qe!.code, 'CANCELLED');
  let got = 0;
  const reading = (async () => { for await (const ch of r.body) { got += (ch as Buffer).length; if (got >= 300) ac.abort(); } })();
  const re = await t.throwsAsync(reading, { instanceOf: RemoteError });
  t.is(re!.code, 'CANCELLED');
  for (let i = 0; i < 100 && (s.closedEarly < 1 || c.inFlight > 0); i++) await new Promise((x) => setTimeout(x, 10));
  t.is(s.closedEarly, 1);
  t.is(c.inFlight, 0);
  t.is(s.hits.get('/slow'), 1);
  // Cancelled before the headers arrive -> Cancelled error.
  const ac2 = new AbortController();
  const p = c.request({ method: 'GET', path: '/stall-none-such', signal: ac2.signal });
  ac2.abort();
  const e2 = await t.throwsAsync(p, { instanceOf: RemoteError });
  t.is(e2!.code, 'CANCELLED');
});

test('malformed JSON -> BadResponse, not retried, never a crash', async (t) => {
  const s = await serve({ '/bad': (_q, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"a": [1, 2'); } });
  t.teardown(() => s.close());
  const c = client(s.url);
  t.teardown(() => c.close());
  const e = await t.throwsAsync(c.json({ method: 'GET', path: '/bad' }), { instanceOf: RemoteError });
  t.is(e!.code, 'BAD_RESPONSE');
  t.is(s.hits.get('/bad'), 1);
  t.is(c.inFlight, 0);
});

test('no secret in errors or log lines (query and header secrets)', async (t) => {
  const SECRET = 'S3cr3tT0kenValue0123456789';
  const s = await serve({
    '/fail': (_q, res) => json(res, 500, { error: 'ERR_UNKNOWN' }),
    '/echo': (q, res) => json(res, 400, { message: `bad request for token=${SECRET}` }),
  });
  t.teardown(() => s.close());
  const lines: string[] = [];
  const c = client(s.url, { maxAttempts: 2, log: createLogger('trace', (l) => lines.push(l)) });
  t.teardown(() => c.close());
  for (const path of ['/fail', '/echo']) {
    const e = await t.throwsAsync(c.json({ method: 'GET', path, query: { session_token: SECRET, password: SECRET }, headers: { token: SECRET } }),
      { instanceOf: RemoteError });
    const all = [e!.message, String(e), e!.stack ?? '', JSON.stringify(e), e!.path ?? '', lines.join('\n')].join('\n');
    t.false(all.includes(SECRET), all);
    t.is(e!.path, path);
  }
  t.true(lines.length > 0);
});

test('auth hook: one shared refresh for concurrent callers, request repeated, at most once per request', async (t) => {
  let valid = 'tok1';
  let logins = 0;
  const s = await serve({
    '/data': (q, res) => (q.headers.token === valid ? setTimeout(() => json(res, 200, { ok: true }), 5) : json(res, 401, { error: 'NO_PERMISSION' })),
  });
  t.teardown(() => s.close());
  const c = client(s.url, { concurrency: 4 });
  t.teardown(() => c.close());
  let token = 'tok1';
  c.auth = {
    apply: (spec) => ({ ...spec, headers: { ...spec.headers, token } }),
    refresh: async () => { logins++; await new Promise((r) => setTimeout(r, 20)); token = valid === 'never' ? 'stale' : valid; },
    isAuthFailure: (status, data) => status === 401 || (data as { error?: string })?.error === 'NO_PERMISSION',
  };
  await c.json({ method: 'GET', path: '/data' });
  valid = 'tok2'; // the server revokes tok1
  const out = await Promise.all(Array.from({ length: 10 }, () => c.json({ method: 'GET', path: '/data' })));
  t.is(out.length, 10);
  t.is(logins, 1);
  // Credentials that stay invalid: refreshed once, then the typed error, no loop.
  valid = 'never';
  const e = await t.throwsAsync(c.json({ method: 'GET', path: '/data' }), { instanceOf: RemoteError });
  t.is(e!.code, 'UNAUTHORIZED');
  t.is(logins, 2);
});

test('body factory is re-created for each retry of an idempotent upload', async (t) => {
  const bodies: string[] = [];
  const s = await serve({
    '/put': (q, res, n) => {
      let b = '';
      q.on('data', (c) => (b += c));
      q.on('end', () => { bodies.push(b); n === 1 ? json(res, 503, {}) : json(res, 200, { size: b.length }); });
    },
  });
  t.teardown(() => s.close());
  const c = client(s.url);
  t.teardown(() => c.close());
  const r = await c.json<{ size: number }>({ method: 'PUT', path: '/put', idempotent: true, body: () => Readable.from([Buffer.from('hello '), Buffer.from('world')]) });
  t.is(r.data.size, 11);
  t.deepEqual(bodies, ['hello world', 'hello world']);
});

test('mapError hook turns service error bodies into typed errors', async (t) => {
  const s = await serve({ '/e': (_q, res) => json(res, 404, { error: 'CONTACT_NOT_FOUND' }) });
  t.teardown(() => s.close());
  const c = client(s.url, {
    mapError: (status, data, ctx) => new RemoteError(String((data as { error: string }).error), 'mapped', ctx, false),
  });
  t.teardown(() => c.close());
  const e = await t.throwsAsync(c.json({ method: 'GET', path: '/e' }), { instanceOf: RemoteError });
  t.is(e!.code, 'CONTACT_NOT_FOUND');
  t.is(e!.status, 404);
});

test('https: TLS verified by default (untrusted -> TLS_ERROR, not retried); `ca` trusts a private CA', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ossl = (...a: string[]) => execFileSync('openssl', a, { cwd: dir, stdio: 'ignore' });
  ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=cloudmount test CA');
  ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1');
  writeSanConfig(dir);
  ossl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem', '-days', '2', '-extfile', 'ext.cnf');
  let hits = 0;
  const server = https.createServer({ key: readFileSync(join(dir, 'srv.key')), cert: readFileSync(join(dir, 'srv.pem')) },
    (_q, res) => { hits++; json(res, 200, { tls: true }); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => { server.closeAllConnections(); server.close(() => r(undefined)); }));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const untrusting = client(url);
  t.teardown(() => untrusting.close());
  const e = await t.throwsAsync(untrusting.json({ method: 'GET', path: '/x' }), { instanceOf: RemoteError });
  t.is(e!.code, 'TLS_ERROR');
  t.false(e!.retryable);
  t.is(untrusting.counters.retries, 0);
  const trusting = client(url, { ca: readFileSync(join(dir, 'ca.pem')) });
  t.teardown(() => trusting.close());
  t.deepEqual((await trusting.json({ method: 'GET', path: '/x' })).data, { tls: true });
  t.is(hits, 1);
});

function writeSanConfig(dir: string) {
  // subjectAltName: modern TLS checks the IP against SANs, not the CN.
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName = IP:127.0.0.1\n');
}

test.serial('silent server: one probe at a time, queued and new requests fail fast with Timeout, the mark clears on an answer', async (t) => {
  let stalled = true;
  const held: http.ServerResponse[] = [];
  const s = await serve({
    '/x': (_q, res) => { if (stalled) held.push(res); else json(res, 200, { ok: true }); },
  });
  t.teardown(() => s.close());
  const timeoutMs = 400;
  const c = client(s.url, { concurrency: 2, timeoutMs, maxAttempts: 3, maxRetryTimeMs: 3000 });
  t.teardown(() => c.close());
  const t0 = Date.now();
  // 2 run, 10 wait in the queue behind them
  const results = await Promise.allSettled(Array.from({ length: 12 }, () => c.json({ method: 'GET', path: '/x' }).finally(() => Date.now() - t0)));
  const took = Date.now() - t0;
  for (const r of results) {
    t.is(r.status, 'rejected');
    const e = (r as PromiseRejectedResult).reason as RemoteError;
    t.true(e instanceof RemoteError);
    t.is(e.code, 'TIMEOUT');
  }
  t.true(c.silent, 'marked silent');
  // The queued ones end either by the queue-wait bound (same moment as the first timeout) or fail fast.
  const quick = c.counters.failFast + c.counters.queueTimeouts;
  t.true(quick >= 10, `fail-fast answers: ${c.counters.failFast}, queue-wait timeouts: ${c.counters.queueTimeouts}`);
  // Without fail fast the 10 queued requests would each have reached the stalled server (and retried).
  const hits = s.hits.get('/x') ?? 0;
  t.true(hits <= 2 + 3, `server saw ${hits} requests (2 first, then only probes)`);
  t.true(c.counters.probes >= 1);
  t.log(`12 concurrent requests on a stalled server (timeout ${timeoutMs} ms): all failed in ${took} ms; server saw ${hits}; fail-fast ${c.counters.failFast}, queue-wait timeouts ${c.counters.queueTimeouts}, probes ${c.counters.probes}`);
  // A new request while silent becomes the probe once the pause after the last failed probe (here
  // min(timeout, 5 s)) is over; before that it fails fast. Once the server answers, the mark is gone.
  stalled = false;
  for (const r of held) r.destroy();
  let ok: { data: { ok: boolean } } | undefined;
  let early = 0;
  for (let i = 0; i < 50 && !ok; i++) {
    ok = await c.json<{ ok: boolean }>({ method: 'GET', path: '/x' }).catch((e: RemoteError) => { t.is(e.code, 'TIMEOUT'); early++; return undefined; });
    if (!ok) await new Promise((r) => setTimeout(r, 50));
  }
  t.true(ok?.data.ok, 'the probe got the answer');
  t.true(early * 50 <= timeoutMs + 1000, `fail-fast answers before the probe: ${early}`);
  t.false(c.silent, 'mark cleared by the answer');
  const all = await Promise.all(Array.from({ length: 6 }, () => c.json<{ ok: boolean }>({ method: 'GET', path: '/x' })));
  t.true(all.every((r) => r.data.ok), 'normal service after the server answers again');
});

test.serial('silent server: a concurrent request fails fast while the probe waits, and is not repeated by the client', async (t) => {
  const s = await serve({ '/stall': () => { /* never answers */ }, '/other': () => { /* never answers */ } });
  t.teardown(() => s.close());
  const c = client(s.url, { concurrency: 4, timeoutMs: 500, maxAttempts: 5, maxRetryTimeMs: 5000 });
  t.teardown(() => c.close());
  // First timeout marks the server silent; its own retries probe one at a time.
  const first = c.json({ method: 'GET', path: '/stall' }).catch((e: RemoteError) => e);
  for (let i = 0; i < 200 && !c.silent; i++) await new Promise((r) => setTimeout(r, 10));
  t.true(c.silent);
  await new Promise((r) => setTimeout(r, 100)); // the retry (probe) is under way
  const t0 = Date.now();
  const e = await t.throwsAsync(c.json({ method: 'GET', path: '/other' }), { instanceOf: RemoteError });
  t.is(e!.code, 'TIMEOUT');
  t.is(s.hits.get('/other') ?? 0, 0, 'never sent: the probe is under way');
  // retryable stays true: for the vfs that means "unreachable now, keep the data", not "refused"
  t.true(e!.retryable);
  t.log(`fail-fast answer in ${Date.now() - t0} ms while the probe waits`);
  t.is(((await first) as RemoteError).code, 'TIMEOUT');
});

test('queue wait is bounded when the server answers nothing; a busy queue of a live server is not cut short', async (t) => {
  const s = await serve({
    '/hold': () => { /* never answers */ },
    '/drip': (_q, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let n = 0;
      const iv = setInterval(() => { res.write(Buffer.alloc(10)); if (++n === 25) { clearInterval(iv); res.end(); } }, 40);
      res.on('close', () => clearInterval(iv));
    },
    '/ok': (_q, res) => json(res, 200, { ok: true }),
  });
  t.teardown(() => s.close());
  const c = client(s.url, { concurrency: 1, timeoutMs: 5000, maxAttempts: 1 });
  t.teardown(() => c.close());
  // The slot is held by a request the server never answers (its own timeout is long).
  const holder = c.json({ method: 'GET', path: '/hold' }).catch((e: RemoteError) => e);
  await new Promise((r) => setTimeout(r, 50));
  const e = await t.throwsAsync(c.json({ method: 'GET', path: '/ok', timeoutMs: 300 }), { instanceOf: RemoteError });
  t.is(e!.code, 'TIMEOUT');
  t.regex(e!.message, /queue/);
  t.is(c.counters.queueTimeouts, 1);
  t.is(s.hits.get('/ok') ?? 0, 0, 'did not start late');
  await c.close();

  // A live server streaming a long body in the only slot: the waiting request is served after it.
  const c2 = client(s.url, { concurrency: 1, timeoutMs: 300, maxAttempts: 1 });
  t.teardown(() => c2.close());
  const drip = await c2.request({ method: 'GET', path: '/drip' });
  const waiter = c2.json<{ ok: boolean }>({ method: 'GET', path: '/ok' });
  let got = 0;
  for await (const ch of drip.body) got += (ch as Buffer).length;
  t.is(got, 250);
  t.true((await waiter).data.ok, 'waited about 1 s (> its timeout) behind a live transfer and was served');
  t.is(c2.counters.queueTimeouts, 0);
  await holder;
});

test.serial('silent server: requests already waiting in the queue fail at once when the server turns silent', async (t) => {
  const s = await serve({ '/hold': () => { /* never answers */ }, '/ok': (_q, res) => json(res, 200, { ok: true }) });
  t.teardown(() => s.close());
  const c = client(s.url, { concurrency: 1, timeoutMs: 400, maxAttempts: 1 });
  t.teardown(() => c.close());
  const holder = c.json({ method: 'GET', path: '/hold' }).catch((e: RemoteError) => e);
  await new Promise((r) => setTimeout(r, 50));
  // Their own queue-wait bound (10 s) is far away: only the silent mark ends their wait early.
  const t0 = Date.now();
  const waiters = await Promise.allSettled([1, 2, 3].map(() => c.json({ method: 'GET', path: '/ok', timeoutMs: 10_000 })));
  const took = Date.now() - t0;
  t.is(((await holder) as RemoteError).code, 'TIMEOUT');
  for (const w of waiters) {
    t.is(w.status, 'rejected');
    t.is(((w as PromiseRejectedResult).reason as RemoteError).code, 'TIMEOUT');
  }
  t.is(c.counters.failFast, 3);
  t.is(c.counters.queueTimeouts, 0);
  t.is(s.hits.get('/ok') ?? 0, 0, 'none of them was sent late');
  t.true(took < 10_000, `waiters failed after ${took} ms (with the holder's timeout), not after their own 10 s`);
});
