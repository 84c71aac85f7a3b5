// The benchmark's delay proxy: adds at least the configured delay each way, keeps bytes and
// their order intact in both directions, propagates half-close, and does not serialize chunks
// on the delay (many chunks in flight cost one delay, not one each).
import test from 'ava';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { startDelayProxy } from '../../tools/bench/delay-proxy.js';
import { sha256 } from '../support/files.js';


/** A server that answers each connection with a transform of everything it received, after the client's FIN. */
async function startServer(onData: (all: Buffer, sock: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const socks = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    socks.add(sock);
    sock.on('close', () => socks.delete(sock));
    const parts: Buffer[] = [];
    sock.on('data', (b) => parts.push(b));
    sock.on('end', () => onData(Buffer.concat(parts), sock));
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => { for (const s of socks) s.destroy(); server.close(() => r()); }),
  };
}

/** Sends `payload` (in pieces), half-closes, and collects the whole answer. */
function exchange(port: number, payload: Buffer, piece = 64 * 1024): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const parts: Buffer[] = [];
    sock.on('data', (b) => parts.push(b));
    sock.on('end', () => { sock.end(); resolve(Buffer.concat(parts)); });
    sock.on('error', reject);
    sock.on('connect', () => {
      for (let off = 0; off < payload.length; off += piece) sock.write(payload.subarray(off, off + piece));
      sock.end();
    });
  });
}

test('bytes pass intact and in order both ways, with a reversed answer', async (t) => {
  const server = await startServer((all, sock) => {
    const rev = Buffer.from(all).reverse();
    // Answer in many small writes to exercise ordering of many queued chunks.
    for (let off = 0; off < rev.length; off += 1000) sock.write(rev.subarray(off, off + 1000));
    sock.end();
  });
  const proxy = await startDelayProxy({ targetHost: '127.0.0.1', targetPort: server.port, delayMs: 5 });
  t.teardown(async () => { await proxy.close(); await server.close(); });

  const payload = randomBytes(8 * 1024 * 1024 + 123);
  const answer = await exchange(proxy.port, payload, 7777);
  t.is(answer.length, payload.length);
  t.is(sha256(answer), sha256(Buffer.from(payload).reverse()));
  t.is(proxy.stats.bytesUp, payload.length);
  t.is(proxy.stats.bytesDown, payload.length);
  t.is(proxy.stats.connections, 1);
});

test('a request/answer round trip takes at least the delay each way', async (t) => {
  const server = await startServer((all, sock) => { sock.end(all); });
  const delayMs = 60;
  const proxy = await startDelayProxy({ targetHost: '127.0.0.1', targetPort: server.port, delayMs });
  t.teardown(async () => { await proxy.close(); await server.close(); });

  // Measured from connect, so connection setup is not counted; the data and the FINs are delayed.
  const sock = net.connect({ host: '127.0.0.1', port: proxy.port, allowHalfOpen: true });
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const start = performance.now();
  const got: Buffer[] = [];
  const firstByte = new Promise<number>((r) => sock.once('data', () => r(performance.now() - start)));
  sock.on('data', (b) => got.push(b));
  const ended = new Promise<void>((r) => sock.once('end', () => r()));
  sock.end(Buffer.from('ping'));
  const rtt = await firstByte;
  await ended;
  sock.destroy();
  t.is(Buffer.concat(got).toString(), 'ping');
  t.true(rtt >= 2 * delayMs, `round trip ${rtt.toFixed(1)} ms should be >= ${2 * delayMs} ms`);
});

test('different delays each way add up', async (t) => {
  const server = await startServer((all, sock) => { sock.end(all); });
  const proxy = await startDelayProxy({ targetHost: '127.0.0.1', targetPort: server.port, upDelayMs: 20, downDelayMs: 70 });
  t.teardown(async () => { await proxy.close(); await server.close(); });
  const start = performance.now();
  const answer = await exchange(proxy.port, Buffer.from('x'.repeat(100)));
  const took = performance.now() - start;
  t.is(answer.toString(), 'x'.repeat(100));
  t.true(took >= 90, `took ${took.toFixed(1)} ms, expected >= 90 ms`);
});

test('a refused target closes the client connection instead of hanging it', async (t) => {
  // A port that was free a moment ago: nothing listens there.
  const tmp = net.createServer();
  await new Promise<void>((r) => tmp.listen(0, '127.0.0.1', r));
  const deadPort = (tmp.address() as net.AddressInfo).port;
  await new Promise<void>((r) => tmp.close(() => r()));
  const proxy = await startDelayProxy({ targetHost: '127.0.0.1', targetPort: deadPort, delayMs: 5 });
  t.teardown(() => proxy.close());
  const closed = await new Promise<boolean>((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port: proxy.port });
    sock.on('error', () => {});
    sock.on('close', () => resolve(true));
    sock.write('hello');
  });
  t.true(closed);
});

test('chunks overlap in flight instead of waiting for each other', async (t) => {
  const server = await startServer((all, sock) => { sock.end(String(all.length)); });
  // A long delay: the 4 MiB arrive at the proxy long before the first chunk is due.
  const proxy = await startDelayProxy({ targetHost: '127.0.0.1', targetPort: server.port, delayMs: 400 });
  t.teardown(async () => { await proxy.close(); await server.close(); });
  const answer = await exchange(proxy.port, randomBytes(4 * 1024 * 1024));
  t.is(answer.toString(), String(4 * 1024 * 1024));
  t.true(proxy.stats.peakQueuedBytes >= 1024 * 1024, `peak queued ${proxy.stats.peakQueuedBytes} bytes`);
});

test('bad options are refused', async (t) => {
  await t.throwsAsync(startDelayProxy({ targetHost: '127.0.0.1', targetPort: 1, delayMs: -1 }), { message: /delay/ });
});
