/**
 * Bulk GETs (file contents) on HTTP/1.1 connections of our own, read by the socket straight into
 * large buffers that become the body's chunks: no copy and no allocation per socket read.
 *
 * Why not undici for these: undici copies every socket read (a new 64 KiB Buffer each) into its
 * wasm parser's memory and hands the body on through a stream per chunk. For a cold read of 512
 * MiB on vBoxx that was 0.5-0.6 s of CPU on the JavaScript thread, which also answers the kernel,
 * plus a major GC per ~64 MiB of those Buffers (native-notes/lowlevel.md, "cold read"); a socket
 * reading into our own buffers (`onread`) moved the same ranges with 0.07 s. Everything else (API
 * calls, uploads, every request with a body) stays on undici; HttpClient decides per request
 * (RequestSpec.bulk) and keeps its queue, retries, auth, timeouts and error mapping for both.
 *
 * What it speaks: GET, one request per connection at a time, keep-alive reuse (LIFO, closed after
 * keepAliveMs idle), bodies framed by Content-Length, chunked, or the end of the connection.
 * Errors carry the same `code`s as undici's (UND_ERR_CONNECT_TIMEOUT, UND_ERR_HEADERS_TIMEOUT,
 * UND_ERR_BODY_TIMEOUT, UND_ERR_SOCKET, UND_ERR_ABORTED, or the socket's own such as ECONNREFUSED
 * and the TLS ones), so that one mapping (HttpClient.transportFailure) serves both transports.
 */
import net from 'node:net';
import tls from 'node:tls';
import { Readable } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';

/** Landing buffers the socket reads into; a fresh one once less than MIN_TAIL is left. */
const SLAB_BYTES = 512 * 1024;
const MIN_TAIL = 64 * 1024;
const MAX_HEAD_BYTES = 64 * 1024;
const CRLF2 = Buffer.from('\r\n\r\n');

export class RawHttpError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
    if (code === 'UND_ERR_ABORTED') this.name = 'AbortError';
  }
}

export interface RawGetPoolOptions {
  /** Idle connections kept (at most). */
  connections: number;
  connectTimeoutMs: number;
  keepAliveMs?: number;
  /** https: extra trusted CA (the certificate is verified always). */
  ca?: string | Buffer;
}

export interface RawGetRequest {
  /** Path with query, already encoded. */
  path: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Until the response head is complete, from the write of the request. */
  headersTimeoutMs: number;
  /** Longest silence between body bytes while the reader wants more. */
  bodyTimeoutMs: number;
  /** A failure of the body becomes this error (typed by the caller). */
  mapBodyError?: (e: Error) => Error;
  /** Called per body chunk (a sign of life). */
  onProgress?: () => void;
}

export interface RawGetResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Readable;
}

type Framing = { kind: 'length'; left: number } | { kind: 'chunked' } | { kind: 'close' } | { kind: 'none' };

/**
 * Landing buffers given back: once every body chunk cut from a slab the connection has left
 * behind was handed back by its consumer (recycleChunks), the slab carries later bodies instead
 * of a new one being allocated. Why: a cold read of 512 MiB otherwise allocates 512 MiB of
 * buffers, and V8 starts a major collection per ~64 MiB of such external memory (~9 % of the
 * mount's CPU in perf), besides the first-touch faults of that much fresh memory.
 * A chunk counts once, by its own view object (a WeakSet): a consumer that gives back a
 * copy or a part of it, or gives it twice, changes nothing, and a slab with a chunk never given
 * back is left to the collector like any buffer.
 */
const MAX_SPARE_SLABS = 32;
/** Spares nobody took for this long are let go: a mount that read once does not keep 16 MiB. */
export const SPARE_IDLE_MS = 5_000;
const spareSlabs: Buffer[] = [];
interface Lease { slab: Buffer; out: number; current: boolean }
const leases = new WeakMap<ArrayBufferLike, Lease>();
const lent = new WeakSet<Buffer>();
let lastTake = 0;
let idleTimer: NodeJS.Timeout | null = null;

function takeLease(): Lease {
  lastTake = Date.now();
  const slab = spareSlabs.pop() ?? Buffer.allocUnsafeSlow(SLAB_BYTES);
  const l = { slab, out: 0, current: true };
  leases.set(slab.buffer, l);
  return l;
}

function spareIfFree(l: Lease): void {
  if (l.out > 0 || l.current) return;
  leases.delete(l.slab.buffer);
  if (spareSlabs.length >= MAX_SPARE_SLABS) return;
  spareSlabs.push(l.slab);
  if (!idleTimer) dropSparesWhenIdle();
}

function dropSparesWhenIdle(): void {
  const idle = Date.now() - lastTake;
  if (idle >= SPARE_IDLE_MS) { spareSlabs.length = 0; idleTimer = null; return; }
  idleTimer = setTimeout(dropSparesWhenIdle, SPARE_IDLE_MS - idle);
  idleTimer.unref();
}

/** A body chunk leaves for its consumer; counted until it comes back through recycleChunks. */
function lend(chunk: Buffer): Buffer {
  const l = leases.get(chunk.buffer);
  if (l && !lent.has(chunk)) { lent.add(chunk); l.out++; }
  return chunk;
}

/**
 * The consumer of bulk bodies is done with these chunks (as it received them) and keeps no view
 * of their bytes: their memory may carry later bodies. Chunks of other origin are ignored.
 */
export function recycleChunks(chunks: readonly Buffer[]): void {
  for (const c of chunks) {
    if (!lent.delete(c)) continue;
    const l = leases.get(c.buffer);
    if (!l) continue;
    l.out--;
    spareIfFree(l);
  }
}

/** For tests: slabs waiting to be used again. */
export function spareSlabCount(): number {
  return spareSlabs.length;
}

/** One connection; `exchange` gets its bytes while a request is on it. */
class Conn {
  /** The slab the socket reads into now (its lease stays until the connection moves past it). */
  lease = takeLease();
  pos = 0;
  exchange: Exchange | null = null;
  idleTimer: NodeJS.Timeout | null = null;
  /** Requests it carried (0: fresh, never proven alive). */
  uses = 0;
  dead = false;

  constructor(readonly socket: net.Socket) {}

  get slab(): Buffer {
    return this.lease.slab;
  }

  nextBuffer(): Buffer {
    if (this.slab.length - this.pos < MIN_TAIL) {
      this.lease.current = false;
      spareIfFree(this.lease);
      this.lease = takeLease();
      this.pos = 0;
    }
    return this.slab.subarray(this.pos);
  }
}

export class RawGetPool {
  /** Connections made, requests sent, requests repeated on a fresh connection after a stale one. */
  readonly counters = { connects: 0, requests: 0, staleRetries: 0 };
  private readonly idle: Conn[] = [];
  private closed = false;
  private readonly https: boolean;
  private readonly host: string;
  private readonly port: number;
  private readonly hostHeader: string;

  constructor(origin: string, private readonly opts: RawGetPoolOptions) {
    const u = new URL(origin);
    this.https = u.protocol === 'https:';
    this.host = u.hostname.replace(/^\[|\]$/g, '');
    this.port = u.port ? Number(u.port) : this.https ? 443 : 80;
    this.hostHeader = u.host;
  }

  async request(req: RawGetRequest): Promise<RawGetResponse> {
    if (this.closed) throw new RawHttpError('client closed', 'UND_ERR_DESTROYED');
    const head = this.requestHead(req);
    for (;;) {
      if (req.signal?.aborted) throw new RawHttpError('request aborted', 'UND_ERR_ABORTED');
      const reused = this.takeIdle();
      const conn = reused ?? await this.connect(req.signal);
      try {
        this.counters.requests++;
        return await new Exchange(this, conn, req).start(head);
      } catch (e) {
        // a kept connection the server had closed meanwhile: not the server's answer, once more fresh
        if (reused && e instanceof StaleConnection) { this.counters.staleRetries++; continue; }
        throw e instanceof StaleConnection ? e.cause : e;
      }
    }
  }

  /** Idle connections are closed; requests under way go on until they end. */
  close(): void {
    this.closed = true;
    for (const c of this.idle.splice(0)) this.kill(c);
  }

  private requestHead(req: RawGetRequest): Buffer {
    let s = `GET ${req.path} HTTP/1.1\r\nhost: ${this.hostHeader}\r\nconnection: keep-alive\r\n`;
    for (const [k, v] of Object.entries(req.headers ?? {})) {
      // a CR or LF would let a value write headers (or a request) of its own
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k) || /[\r\n\0]/.test(v)) throw new RawHttpError(`invalid header ${k}`, 'UND_ERR_INVALID_ARG');
      s += `${k}: ${v}\r\n`;
    }
    if (/[\s\0]/.test(req.path)) throw new RawHttpError('invalid path', 'UND_ERR_INVALID_ARG');
    return Buffer.from(s + '\r\n', 'latin1');
  }

  private takeIdle(): Conn | undefined {
    for (let c = this.idle.pop(); c; c = this.idle.pop()) {
      if (c.idleTimer) { clearTimeout(c.idleTimer); c.idleTimer = null; }
      if (!c.dead && !c.socket.destroyed) return c;
    }
    return undefined;
  }

  /** An exchange ended cleanly on c: kept for the next request, or closed. */
  release(c: Conn, reusable: boolean): void {
    c.exchange = null;
    if (!reusable || this.closed || c.dead || this.idle.length >= this.opts.connections) { this.kill(c); return; }
    c.uses++;
    c.idleTimer = setTimeout(() => { this.idle.splice(this.idle.indexOf(c) >>> 0, 1); this.kill(c); }, this.opts.keepAliveMs ?? 30_000);
    c.idleTimer.unref();
    c.socket.unref();
    this.idle.push(c);
  }

  kill(c: Conn): void {
    c.dead = true;
    if (c.idleTimer) { clearTimeout(c.idleTimer); c.idleTimer = null; }
    c.socket.destroy();
  }

  private connect(signal?: AbortSignal): Promise<Conn> {
    this.counters.connects++;
    return new Promise<Conn>((resolve, reject) => {
      let conn: Conn | null = null;
      const onread = {
        buffer: () => conn ? conn.nextBuffer() : Buffer.allocUnsafeSlow(MIN_TAIL),
        callback: (n: number, buf: Uint8Array) => {
          if (!conn) return true;
          const chunk = buf as Buffer;
          // buf is the tail handed out last: its first n bytes are new
          if (chunk.buffer === conn.slab.buffer) conn.pos += n;
          const ex = conn.exchange;
          if (!ex) { this.kill(conn); return false; } // bytes nobody asked for: the connection is not ours to trust
          return ex.data(chunk.subarray(0, n));
        },
      };
      const common = { host: this.host, port: this.port, onread, noDelay: true };
      const socket: net.Socket = this.https
        ? tls.connect({ ...common, servername: net.isIP(this.host) ? undefined : this.host, rejectUnauthorized: true, ...(this.opts.ca ? { ca: this.opts.ca } : {}) } as tls.ConnectionOptions)
        : net.connect(common as net.NetConnectOpts);
      conn = new Conn(socket);
      const c = conn;
      const timer = setTimeout(() => fail(new RawHttpError('connect timed out', 'UND_ERR_CONNECT_TIMEOUT')), this.opts.connectTimeoutMs);
      const onAbort = () => fail(new RawHttpError('request aborted', 'UND_ERR_ABORTED'));
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = () => { clearTimeout(timer); signal?.removeEventListener('abort', onAbort); socket.off('error', fail); };
      function fail(e: Error) { done(); c.dead = true; socket.destroy(); reject(e); }
      socket.once('error', fail);
      socket.once(this.https ? 'secureConnect' : 'connect', () => {
        done();
        socket.on('error', (e) => { c.dead = true; c.exchange?.failed(e); });
        socket.on('end', () => { c.dead = true; c.exchange?.ended(); });
        socket.on('close', () => { c.dead = true; c.exchange?.failed(new RawHttpError('other side closed', 'UND_ERR_SOCKET')); });
        resolve(c);
      });
    });
  }
}

/** A reused connection died before a byte of the answer came. */
class StaleConnection extends Error {
  constructor(readonly cause: Error) { super(cause.message); }
}

class RawBody extends Readable {
  constructor(private readonly ex: Exchange) { super({ highWaterMark: 1024 * 1024 }); }
  override _read(): void { this.ex.wanted(); }
  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void { this.ex.abandoned(); cb(err); }
}

/** One request and its answer on one connection. */
class Exchange {
  private phase: 'head' | 'body' | 'done' = 'head';
  private headBytes: Buffer | null = null;
  private gotBytes = false;
  private framing: Framing = { kind: 'none' };
  private keepAlive = false;
  private body: RawBody | null = null;
  private paused = false;
  private timer: NodeJS.Timeout | null = null;
  private resolve!: (r: RawGetResponse) => void;
  private reject!: (e: Error) => void;
  // chunked framing: what comes next
  private chunkState: 'size' | 'data' | 'crlf' | 'trailer' = 'size';
  private chunkLine = '';
  private chunkLeft = 0;

  constructor(private readonly pool: RawGetPool, private readonly conn: Conn, private readonly req: RawGetRequest) {}

  start(head: Buffer): Promise<RawGetResponse> {
    return new Promise<RawGetResponse>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      this.conn.exchange = this;
      this.req.signal?.addEventListener('abort', this.onAbort, { once: true });
      this.arm(this.req.headersTimeoutMs, 'no response from server in time', 'UND_ERR_HEADERS_TIMEOUT');
      const s = this.conn.socket;
      s.ref();
      if (this.conn.dead || s.destroyed) { this.failed(new RawHttpError('other side closed', 'UND_ERR_SOCKET')); return; }
      s.write(head);
      if (s.isPaused()) s.resume();
    });
  }

  private readonly onAbort = () => this.failed(new RawHttpError('request aborted', 'UND_ERR_ABORTED'));

  private arm(ms: number, msg: string, code: string): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.failed(new RawHttpError(msg, code)), Math.max(1, ms));
  }

  private settle(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    this.req.signal?.removeEventListener('abort', this.onAbort);
  }

  /** Bytes from the socket (a view into a landing buffer); false: pause the socket. */
  data(chunk: Buffer): boolean {
    this.gotBytes = true;
    if (this.phase === 'head') return this.headData(chunk);
    if (this.phase === 'body') return this.bodyData(chunk);
    // bytes after the answer: the connection is out of step, never reused
    this.pool.kill(this.conn);
    return false;
  }

  private headData(chunk: Buffer): boolean {
    let buf = chunk;
    let from = 0;
    if (this.headBytes) {
      from = Math.max(0, this.headBytes.length - 3);
      buf = Buffer.concat([this.headBytes, chunk]);
    }
    const end = buf.indexOf(CRLF2, from);
    if (end < 0) {
      if (buf.length > MAX_HEAD_BYTES) { this.failed(new RawHttpError('response head too large', 'UND_ERR_HEADERS_OVERFLOW')); return false; }
      // copied: the landing buffer's bytes are the body's to keep, not the head's
      this.headBytes = Buffer.from(buf);
      return true;
    }
    this.headBytes = null;
    let parsed: { status: number; headers: IncomingHttpHeaders; minor: number };
    try {
      parsed = parseHead(buf.toString('latin1', 0, end));
    } catch (e) {
      this.failed(e as Error);
      return false;
    }
    const rest = buf.subarray(end + 4);
    if (parsed.status >= 100 && parsed.status < 200) {
      // an interim answer (100 Continue): the real one follows
      return rest.length ? this.headData(rest) : true;
    }
    const h = parsed.headers;
    const conn = String(h.connection ?? '').toLowerCase();
    this.keepAlive = parsed.minor >= 1 ? !/\bclose\b/.test(conn) : /\bkeep-alive\b/.test(conn);
    const te = String(h['transfer-encoding'] ?? '').toLowerCase();
    const cl = h['content-length'];
    if (parsed.status === 204 || parsed.status === 304) this.framing = { kind: 'none' };
    else if (te) {
      if (!/(^|,)\s*chunked\s*$/.test(te)) { this.failed(new RawHttpError(`unsupported transfer-encoding ${te}`, 'UND_ERR_SOCKET')); return false; }
      this.framing = { kind: 'chunked' };
    } else if (typeof cl === 'string' && /^\s*\d+\s*$/.test(cl)) this.framing = { kind: 'length', left: Number(cl) };
    else if (cl !== undefined) { this.failed(new RawHttpError(`invalid content-length ${String(cl)}`, 'UND_ERR_SOCKET')); return false; }
    else { this.framing = { kind: 'close' }; this.keepAlive = false; }
    this.phase = 'body';
    this.body = new RawBody(this);
    this.arm(this.req.bodyTimeoutMs, 'response body stalled', 'UND_ERR_BODY_TIMEOUT');
    this.resolve({ status: parsed.status, headers: h, body: this.body });
    if (this.framing.kind === 'none' || (this.framing.kind === 'length' && this.framing.left === 0)) {
      this.finish(rest.length === 0);
      return true;
    }
    return rest.length ? this.bodyData(rest) : true;
  }

  private bodyData(chunk: Buffer): boolean {
    const body = this.body!;
    if (body.destroyed) return false;
    this.timer?.refresh();
    this.req.onProgress?.();
    const f = this.framing;
    let more = true;
    if (f.kind === 'close') {
      more = body.push(lend(chunk));
    } else if (f.kind === 'length') {
      const n = Math.min(f.left, chunk.length);
      f.left -= n;
      if (n > 0) more = body.push(lend(n === chunk.length ? chunk : chunk.subarray(0, n)));
      if (f.left === 0) { this.finish(n === chunk.length); return true; }
    } else if (f.kind === 'chunked') {
      more = this.chunkedData(chunk);
      if (this.phase === 'done') return true;
    }
    if (!more) { this.paused = true; if (this.timer) { clearTimeout(this.timer); this.timer = null; } }
    return more;
  }

  private chunkedData(chunk: Buffer): boolean {
    let more = true;
    let i = 0;
    while (i < chunk.length && this.phase === 'body') {
      if (this.chunkState === 'data') {
        const n = Math.min(this.chunkLeft, chunk.length - i);
        more = this.body!.push(lend(chunk.subarray(i, i + n))) && more;
        i += n;
        this.chunkLeft -= n;
        if (this.chunkLeft === 0) { this.chunkState = 'crlf'; this.chunkLine = ''; }
        continue;
      }
      // a line: the size (with extensions), the CRLF after data, or a trailer line
      const nl = chunk.indexOf(10, i);
      const upto = nl < 0 ? chunk.length : nl;
      this.chunkLine += chunk.toString('latin1', i, upto);
      if (this.chunkLine.length > 4096) { this.failed(new RawHttpError('chunk header too long', 'UND_ERR_SOCKET')); return false; }
      i = upto;
      if (nl < 0) break;
      i++;
      const line = this.chunkLine.replace(/\r$/, '');
      this.chunkLine = '';
      if (this.chunkState === 'crlf') {
        if (line !== '') { this.failed(new RawHttpError('malformed chunked body', 'UND_ERR_SOCKET')); return false; }
        this.chunkState = 'size';
      } else if (this.chunkState === 'size') {
        const m = /^([0-9a-fA-F]{1,12})(;.*)?$/.exec(line.trim());
        if (!m) { this.failed(new RawHttpError('malformed chunk size', 'UND_ERR_SOCKET')); return false; }
        this.chunkLeft = parseInt(m[1]!, 16);
        this.chunkState = this.chunkLeft === 0 ? 'trailer' : 'data';
      } else if (line === '') {
        this.finish(i === chunk.length);
      }
    }
    return more;
  }

  /** The reader wants more: the socket reads again. */
  wanted(): void {
    if (!this.paused || this.phase !== 'body') return;
    this.paused = false;
    this.arm(this.req.bodyTimeoutMs, 'response body stalled', 'UND_ERR_BODY_TIMEOUT');
    this.conn.socket.resume();
  }

  /** The reader destroyed the body before its end: the connection cannot carry another request. */
  abandoned(): void {
    if (this.phase === 'done') return;
    this.phase = 'done';
    this.settle();
    this.pool.kill(this.conn);
  }

  private finish(clean: boolean): void {
    this.phase = 'done';
    this.settle();
    this.body!.push(null);
    this.pool.release(this.conn, clean && this.keepAlive);
  }

  /** The server ended its side: the end of a body framed by the connection, else a cut. */
  ended(): void {
    if (this.phase === 'body' && this.framing.kind === 'close') { this.finish(false); return; }
    this.failed(new RawHttpError('other side closed', 'UND_ERR_SOCKET'));
  }

  failed(e: Error): void {
    if (this.phase === 'done') return;
    const before = this.phase;
    this.phase = 'done';
    this.settle();
    this.pool.kill(this.conn);
    if (before === 'head') {
      const stale = this.conn.uses > 0 && !this.gotBytes && (e as RawHttpError).code !== 'UND_ERR_ABORTED' && (e as RawHttpError).code !== 'UND_ERR_HEADERS_TIMEOUT';
      this.reject(stale ? new StaleConnection(e) : e);
    } else {
      this.body!.destroy(this.req.mapBodyError ? this.req.mapBodyError(e) : e);
    }
  }
}

function parseHead(text: string): { status: number; headers: IncomingHttpHeaders; minor: number } {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (!m) throw new RawHttpError('malformed status line', 'UND_ERR_SOCKET');
  const headers: Record<string, string | string[]> = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const c = line.indexOf(':');
    if (c <= 0) throw new RawHttpError('malformed header line', 'UND_ERR_SOCKET');
    const k = line.slice(0, c).trim().toLowerCase();
    const v = line.slice(c + 1).trim();
    const old = headers[k];
    if (old === undefined) headers[k] = v;
    else if (Array.isArray(old)) old.push(v);
    else headers[k] = [old, v];
  }
  return { status: Number(m[2]), headers: headers as IncomingHttpHeaders, minor: Number(m[1]) };
}
