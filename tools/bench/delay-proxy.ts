// A TCP proxy that adds a fixed one-way delay to every chunk in each direction, for benchmarks
// at a chosen RTT on a kernel without netem. Each chunk is stamped on arrival and written once its
// time has come, so many chunks are in flight at once: the delay adds latency, not a throughput
// cap (up to maxBufferedBytes per direction, the "bandwidth-delay product" we allow).
//
// Run as a program: node dist/tools/bench/delay-proxy.js --target HOST:PORT [--listen HOST:PORT]
//   [--delay-ms N | --rtt-ms N]; prints one JSON line {"host","port"} when listening, and exits
// on SIGTERM/SIGINT or when its stdin closes (so it never outlives the harness that started it).
// The line "stats" on stdin answers one JSON line of its counters.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

export interface DelayProxyOptions {
  targetHost: string;
  targetPort: number;
  /** Listen address (default 127.0.0.1) and port (default 0 = any free port). */
  host?: string;
  port?: number;
  /** Delay added to every chunk, each way, in ms (default 10, i.e. 20 ms RTT). */
  delayMs?: number;
  /** Override for client -> target only. */
  upDelayMs?: number;
  /** Override for target -> client only. */
  downDelayMs?: number;
  /** Bytes queued per direction before the source is paused (default 64 MiB). */
  maxBufferedBytes?: number;
}

export interface DelayProxyStats {
  connections: number;
  bytesUp: number;
  bytesDown: number;
  /** Most bytes held back at once in one direction: > one chunk shows chunks overlap in flight. */
  peakQueuedBytes: number;
}

export interface DelayProxy {
  host: string;
  port: number;
  stats: DelayProxyStats;
  close(): Promise<void>;
}

interface Item {
  due: number;
  /** null marks the end of the stream (a FIN is delayed like data). */
  buf: Buffer | null;
}

/** Forwards src to dst, each chunk `delayMs` after it arrived, in order. */
function delayedPipe(src: net.Socket, dst: net.Socket, delayMs: number, limit: number, stats: DelayProxyStats, dir: 'bytesUp' | 'bytesDown'): void {
  let q: Item[] = [];
  let head = 0;
  let queued = 0;
  let timer: NodeJS.Timeout | null = null;
  let paused = false;

  const backlog = () => queued + dst.writableLength;
  const maybeResume = () => {
    if (paused && backlog() <= limit / 2 && !src.destroyed) {
      paused = false;
      src.resume();
    }
  };
  const arm = (wait: number) => {
    // Timers may fire a little early against performance.now(); flush() re-arms for the rest.
    timer = setTimeout(flush, Math.max(1, Math.ceil(wait)));
  };
  function flush() {
    timer = null;
    if (dst.destroyed) return;
    const now = performance.now();
    while (head < q.length && q[head]!.due <= now) {
      const item = q[head]!;
      head++;
      if (item.buf === null) {
        dst.end();
      } else {
        queued -= item.buf.length;
        dst.write(item.buf);
      }
    }
    if (head === q.length) {
      q = [];
      head = 0;
    } else if (head > 4096) {
      q = q.slice(head);
      head = 0;
    }
    if (head < q.length) arm(q[head]!.due - now);
    maybeResume();
  }
  const push = (buf: Buffer | null) => {
    q.push({ due: performance.now() + delayMs, buf });
    if (timer === null) arm(delayMs);
  };

  src.on('data', (buf: Buffer) => {
    stats[dir] += buf.length;
    if (delayMs <= 0) {
      if (!dst.write(buf)) src.pause(), dst.once('drain', () => src.resume());
      return;
    }
    queued += buf.length;
    if (queued > stats.peakQueuedBytes) stats.peakQueuedBytes = queued;
    push(buf);
    if (!paused && backlog() > limit) {
      paused = true;
      src.pause();
    }
  });
  dst.on('drain', maybeResume);
  src.on('end', () => {
    if (delayMs <= 0) dst.end();
    else push(null);
  });
  src.on('close', () => {
    // An aborted source (reset, error) aborts the peer once what it sent before has gone; a clean
    // close needs nothing: the peer closes by itself when both of its halves have ended.
    if (!src.readableEnded) setTimeout(() => dst.destroy(), delayMs);
  });
}

export async function startDelayProxy(opts: DelayProxyOptions): Promise<DelayProxy> {
  const base = opts.delayMs ?? 10;
  const up = opts.upDelayMs ?? base;
  const down = opts.downDelayMs ?? base;
  const limit = opts.maxBufferedBytes ?? 64 * 1024 * 1024;
  if (![up, down].every((d) => Number.isFinite(d) && d >= 0)) throw new Error('delay must be a number >= 0');
  const stats: DelayProxyStats = { connections: 0, bytesUp: 0, bytesDown: 0, peakQueuedBytes: 0 };
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  };

  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    stats.connections++;
    track(client);
    const upstream = net.connect({ host: opts.targetHost, port: opts.targetPort, allowHalfOpen: true, noDelay: true });
    track(upstream);
    delayedPipe(client, upstream, up, limit, stats, 'bytesUp');
    delayedPipe(upstream, client, down, limit, stats, 'bytesDown');
  });
  server.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as net.AddressInfo;
  return {
    host: addr.address,
    port: addr.port,
    stats,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

function parseHostPort(s: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s) ?? /^()()(\d{1,5})$/.exec(s);
  if (!m) throw new Error(`${what}: expected HOST:PORT, got ${JSON.stringify(s)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`${what}: port out of range`);
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

async function main(argv: string[]): Promise<void> {
  let target: { host: string; port: number } | undefined;
  let listen = { host: '127.0.0.1', port: 0 };
  let delayMs = 10;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--target') target = parseHostPort(val(), '--target');
    else if (a === '--listen') listen = parseHostPort(val(), '--listen');
    else if (a === '--delay-ms') delayMs = Number(val());
    else if (a === '--rtt-ms') delayMs = Number(val()) / 2;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!target) throw new Error('--target HOST:PORT is required');
  if (!Number.isFinite(delayMs) || delayMs < 0) throw new Error('delay must be a number >= 0');
  const proxy = await startDelayProxy({ targetHost: target.host, targetPort: target.port, host: listen.host, port: listen.port, delayMs });
  process.stdout.write(`${JSON.stringify({ host: proxy.host, port: proxy.port })}\n`);
  const stop = () => { void proxy.close().finally(() => process.exit(0)); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Control lines on stdin: "stats" -> one JSON line of the counters so far.
  let pending = '';
  process.stdin.on('data', (b: Buffer) => {
    pending += b.toString();
    let i: number;
    while ((i = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, i).trim();
      pending = pending.slice(i + 1);
      if (line === 'stats') process.stdout.write(`${JSON.stringify(proxy.stats)}\n`);
    }
  });
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`delay-proxy: ${(e as Error).message}`);
    process.exit(2);
  });
}
