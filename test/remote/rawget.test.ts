// The raw bulk GET reader (src/remote/rawget.ts) against servers that frame, cut, stall and
// misbehave on purpose; bytes compared with what the server sent.
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { RawGetPool, SPARE_IDLE_MS, recycleChunks, spareSlabCount, type RawGetRequest } from '../../src/remote/rawget.js';
import { makePki } from '../helpers/tls.js';
import { sleep } from '../support/wait.js';

type T = { teardown(fn: () => void | Promise<void>): void };

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function listen(t: T, server: net.Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => {
    (server as http.Server).closeAllConnections?.();
    server.close(() => r());
  }));
  return `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

/** A server speaking raw bytes: each connection gets handler(socket, request head text). */
async function rawServer(t: T, handler: (s: net.Socket, head: string, n: number) => void): Promise<string> {
  let n = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      let i: number;
      while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
        const head = buf.slice(0, i);
        buf = buf.slice(i + 4);
        handler(s, head, ++n);
      }
    };
    s.on('data', onData);
  });
  t.teardown(() => { for (const s of sockets) s.destroy(); });
  return listen(t, server);
}

function pool(host: string, o: Partial<ConstructorParameters<typeof RawGetPool>[1]> = {}, https = false): RawGetPool {
  return new RawGetPool(`${https ? 'https' : 'http'}://${host}`, { connections: 4, connectTimeoutMs: 5000, ...o });
}

const req = (path: string, o: Partial<RawGetRequest> = {}): RawGetRequest => ({ path, headersTimeoutMs: 5000, bodyTimeoutMs: 5000, ...o });

async function readAll(body: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

test('Content-Length bodies: bytes exact (8 MiB), headers as undici gives them, the connection kept for the next request', async (t) => {
  const data = randomBytes(8 * 1024 * 1024);
  const host = await listen(t, http.createServer((rq, rs) => {
    rs.setHeader('x-multi', ['a', 'b']);
    rs.setHeader('content-length', String(data.length));
    rs.setHeader('etag', '"v1"');
    rs.end(rq.headers['x-want'] === 'small' ? data.subarray(0, 0) : data);
  }));
  const p = pool(host);
  t.teardown(() => p.close());
  const r = await p.request(req('/f', { headers: { 'x-want': 'all' } }));
  t.is(r.status, 200);
  t.is(r.headers.etag, '"v1"');
  t.deepEqual(r.headers['x-multi'], ['a', 'b']);
  t.is(sha(await readAll(r.body)), sha(data));
  const r2 = await p.request(req('/f'));
  t.is(sha(await readAll(r2.body)), sha(data));
  t.is(p.counters.connects, 1, 'one connection for both');
  t.is(p.counters.requests, 2);
});

test('chunked bodies (odd sizes, extensions, trailers) and bodies ended by the connection: bytes exact', async (t) => {
  const data = randomBytes(300_000);
  const host = await rawServer(t, (s, head) => {
    if (head.startsWith('GET /chunked')) {
      s.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
      let off = 0;
      let k = 0;
      while (off < data.length) {
        const n = Math.min(data.length - off, [1, 7, 4096, 65_537, 3][k++ % 5]!);
        s.write(`${n.toString(16)}${k % 2 ? ';ext=1' : ''}\r\n`);
        s.write(data.subarray(off, off + n));
        s.write('\r\n');
        off += n;
      }
      s.write('0\r\nx-trailer: 1\r\n\r\n');
    } else {
      s.end(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n'), data]));
    }
  });
  const p = pool(host);
  t.teardown(() => p.close());
  const a = await p.request(req('/chunked'));
  t.is(sha(await readAll(a.body)), sha(data));
  const b = await p.request(req('/chunked'));
  t.is(sha(await readAll(b.body)), sha(data));
  t.is(p.counters.connects, 1, 'a chunked answer leaves the connection usable');
  const c = await p.request(req('/close'));
  t.is(sha(await readAll(c.body)), sha(data));
});

test('a head that arrives byte by byte is parsed; an interim 100 is skipped', async (t) => {
  const host = await rawServer(t, (s) => {
    const text = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 206 Partial Content\r\ncontent-range: bytes 0-4/10\r\ncontent-length: 5\r\n\r\nhello';
    let i = 0;
    const tick = setInterval(() => { if (i >= text.length) { clearInterval(tick); return; } s.write(text[i++]!); }, 1);
  });
  const p = pool(host);
  t.teardown(() => p.close());
  const r = await p.request(req('/slow'));
  t.is(r.status, 206);
  t.is(r.headers['content-range'], 'bytes 0-4/10');
  t.is((await readAll(r.body)).toString(), 'hello');
});

// serial: the spare slabs are the module's, and concurrent tests would take them
test.serial('chunks given back carry later bodies; a chunk kept, or given back as a copy, a part or twice, is never written over; idle spares are let go', async (t) => {
  const bodies = Array.from({ length: 24 }, () => randomBytes(2 * 1024 * 1024 + 12345));
  const host = await listen(t, http.createServer((rq, rs) => {
    const b = bodies[Number(rq.url!.slice(1))]!;
    rs.setHeader('content-length', String(b.length));
    rs.end(b);
  }));
  const p = pool(host, { connections: 2 });
  t.teardown(() => p.close());
  const kept: { chunk: Buffer; copy: Buffer }[] = [];
  const memories = new Set<ArrayBufferLike>();
  let chunks = 0;
  for (let n = 0; n < bodies.length; n++) {
    const r = await p.request(req(`/${n}`));
    let at = 0;
    for await (const c of r.body) {
      const b = c as Buffer;
      chunks++;
      memories.add(b.buffer);
      t.true(b.equals(bodies[n]!.subarray(at, at + b.length)), `body ${n} at ${at}`);
      at += b.length;
      if (n === 3) {
        // kept by its consumer: given back only as things that are not the chunk itself
        kept.push({ chunk: b, copy: Buffer.from(b) });
        recycleChunks([Buffer.from(b), b.subarray(1)]);
      } else if (n === 4) {
        recycleChunks([b, b]);
      } else {
        recycleChunks([b]);
      }
    }
    t.is(at, bodies[n]!.length);
  }
  for (const k of kept) t.true(k.chunk.equals(k.copy), 'a kept chunk was written over');
  // without reuse 24 bodies of 2 MiB need >= 96 landing buffers of 512 KiB
  t.true(memories.size < 30, `${memories.size} landing buffers for ${chunks} chunks`);
  t.true(spareSlabCount() > 0);
  // nobody reads for a while: the spares are let go
  await sleep(SPARE_IDLE_MS + 1000);
  t.is(spareSlabCount(), 0);
});

test('a slow reader holds the socket: memory stays bounded while the server waits', async (t) => {
  const total = 64 * 1024 * 1024;
  let sent = 0;
  const host = await listen(t, http.createServer((_rq, rs) => {
    rs.setHeader('content-length', String(total));
    const block = Buffer.alloc(1024 * 1024, 7);
    const more = () => {
      while (sent < total) {
        sent += block.length;
        if (!rs.write(block)) { rs.once('drain', more); return; }
      }
      rs.end();
    };
    more();
  }));
  const p = pool(host);
  t.teardown(() => p.close());
  const r = await p.request(req('/big'));
  // nobody reads for a while: the body buffers up to its mark, the socket stops reading
  await sleep(300);
  t.true(r.body.readableLength <= 2 * 1024 * 1024, `buffered ${r.body.readableLength}`);
  t.true(sent < total / 2, `the server could send only ${sent} of ${total} (kernel buffers)`);
  let got = 0;
  for await (const c of r.body) got += (c as Buffer).length;
  t.is(got, total);
});

test('timeouts: no head in time, a body that stalls; errors carry undici\'s codes', async (t) => {
  const host = await rawServer(t, (s, head) => {
    if (head.startsWith('GET /stall')) s.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc');
    // /silent: nothing
  });
  const p = pool(host);
  t.teardown(() => p.close());
  await t.throwsAsync(p.request(req('/silent', { headersTimeoutMs: 200 })), { message: /no response/, instanceOf: Error });
  const e1 = await p.request(req('/silent', { headersTimeoutMs: 200 })).catch((e: { code: string }) => e.code);
  t.is(e1, 'UND_ERR_HEADERS_TIMEOUT');
  const r = await p.request(req('/stall', { bodyTimeoutMs: 200, mapBodyError: (e) => Object.assign(new Error(`mapped: ${e.message}`), { code: (e as { code?: string }).code }) }));
  const err = await readAll(r.body).then(() => null, (e: Error & { code?: string }) => e);
  t.regex(String(err?.message), /mapped: response body stalled/);
  t.is(err?.code, 'UND_ERR_BODY_TIMEOUT');
});

test('a body cut by the server, an abort mid-body, a refused connection: typed failures, nothing hangs', async (t) => {
  const host = await rawServer(t, (s, head) => {
    if (head.startsWith('GET /cut')) { s.write('HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n'); s.write(Buffer.alloc(5000)); setTimeout(() => s.destroy(), 20); }
    if (head.startsWith('GET /hold')) { s.write('HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n'); s.write(Buffer.alloc(5000)); }
  });
  const p = pool(host);
  t.teardown(() => p.close());
  const cut = await p.request(req('/cut'));
  const e1 = await readAll(cut.body).then(() => null, (e: { code?: string }) => e.code);
  t.is(e1, 'UND_ERR_SOCKET');
  const ac = new AbortController();
  const held = await p.request(req('/hold', { signal: ac.signal }));
  setTimeout(() => ac.abort(), 50);
  const e2 = await readAll(held.body).then(() => null, (e: Error & { code?: string }) => e);
  t.is(e2?.name, 'AbortError');
  const gone = net.createServer();
  const goneHost = await listen(t, gone);
  await new Promise<void>((r) => gone.close(() => r()));
  const e3 = await pool(goneHost).request(req('/x')).then(() => null, (e: { code?: string }) => e.code);
  t.is(e3, 'ECONNREFUSED');
});

test('a kept connection the server closed meanwhile: the request goes on a fresh one', async (t) => {
  const host = await rawServer(t, (s) => {
    s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    // closes its side right after, without telling (no connection: close)
    setTimeout(() => s.destroy(), 10);
  });
  const p = pool(host);
  t.teardown(() => p.close());
  t.is((await readAll((await p.request(req('/a'))).body)).toString(), 'ok');
  await sleep(50);
  t.is((await readAll((await p.request(req('/b'))).body)).toString(), 'ok');
  t.is(p.counters.connects, 2);
});

test('error statuses come back with their body; a header value with CR/LF is refused before anything is sent', async (t) => {
  const host = await listen(t, http.createServer((_rq, rs) => { rs.statusCode = 404; rs.setHeader('content-type', 'application/json'); rs.end('{"error":"nope"}'); }));
  const p = pool(host);
  t.teardown(() => p.close());
  const r = await p.request(req('/missing'));
  t.is(r.status, 404);
  t.deepEqual(JSON.parse((await readAll(r.body)).toString()), { error: 'nope' });
  const e = await p.request(req('/x', { headers: { 'x-evil': 'a\r\nx-injected: 1' } })).then(() => null, (er: { code?: string }) => er.code);
  t.is(e, 'UND_ERR_INVALID_ARG');
});

test('https with a private CA: verified and read the same way; another CA is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-rawget-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  makePki(dir, 'raw test CA', { other: true });
  const data = randomBytes(3 * 1024 * 1024);
  const server = https.createServer({ key: readFileSync(join(dir, 'srv.key')), cert: readFileSync(join(dir, 'srv.pem')) }, (_rq, rs) => {
    rs.setHeader('content-length', String(data.length));
    rs.end(data);
  });
  const host = await listen(t, server);
  const p = pool(host, { ca: readFileSync(join(dir, 'ca.pem')) }, true);
  t.teardown(() => p.close());
  const r = await p.request(req('/f'));
  t.is(sha(await readAll(r.body)), sha(data));
  const r2 = await p.request(req('/f'));
  t.is(sha(await readAll(r2.body)), sha(data));
  t.is(p.counters.connects, 1);
  const bad = pool(host, { ca: readFileSync(join(dir, 'other.pem')) }, true);
  const code = await bad.request(req('/f')).then(() => null, (e: { code?: string }) => e.code);
  t.truthy(code && /CERT|SIGNATURE|ISSUER/.test(code), String(code));
});
