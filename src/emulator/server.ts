// One Fastify process serving both reference APIs on one port: Maxxo under /api/1, vBoxxCloud
// under /1. Latency, fault and rate-limit injection live here so both services get them alike.
import Fastify, { type FastifyInstance } from 'fastify';
import formbody from '@fastify/formbody';
import multipart from '@fastify/multipart';
import Database from 'better-sqlite3';
import { mkdirSync, mkdtempSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { setMaxListeners } from 'node:events';
import { tmpdir } from 'node:os';
import type { EmulatorContext, EmulatorOptions } from './context.js';
import { registerMaxxo } from './maxxo/index.js';
import { registerVboxx } from './vboxx/index.js';
import { sleep } from '../util/sleep.js';
import { faultSchedule } from './faults.js';

export interface Emulator {
  url: string;
  port: number;
  ctx: EmulatorContext;
  app: FastifyInstance;
  close(): Promise<void>;
}

export const defaultEmulatorOptions = (): EmulatorOptions => ({
  host: '127.0.0.1',
  port: 0,
  dataDir: '',
  demo: false,
  latencyMs: 0,
  failRate: 0,
  rateLimit: 0,
  rsync: true,
  quiet: true,
});

export async function createEmulator(partial: Partial<EmulatorOptions> = {}): Promise<Emulator> {
  const opts: EmulatorOptions = { ...defaultEmulatorOptions(), ...partial };
  if (!opts.dataDir) opts.dataDir = mkdtempSync(join(tmpdir(), 'cloudmount-serve-'));
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  chmodSync(opts.dataDir, 0o700);
  const filesDir = join(opts.dataDir, 'files');
  mkdirSync(filesDir, { recursive: true, mode: 0o700 });
  const db = new Database(join(opts.dataDir, 'state.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');

  const ctx: EmulatorContext = {
    opts,
    db,
    filesDir,
    stats: new Map(),
    log: opts.quiet ? () => {} : (m) => console.error(`[serve] ${m}`),
  };

  const app = Fastify({
    logger: false,
    bodyLimit: 64 * 1024 * 1024,
    // Maxxo and vBoxx paths may carry encoded slashes and unicode; we decode ourselves.
    routerOptions: { maxParamLength: 8192, ignoreDuplicateSlashes: false },
    forceCloseConnections: true,
    // Fastify's own answer to a malformed URL echoes the URL, which may carry a session token.
    frameworkErrors: (err, _req, reply) => {
      const status = (err as { statusCode?: number }).statusCode ?? 400;
      const message = (err as { code?: string }).code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'request path too long' : 'malformed request URL';
      (reply as any).code(status).send({ error: 'BAD_REQUEST', status_code: status, message, code: 'error' });
    },
  });
  await app.register(formbody);
  await app.register(multipart, { limits: { fileSize: 16 * 1024 * 1024, files: 1 } });
  // Raw bodies (vBoxx files_put, chunked upload) stay streams: the routes pipe them to disk.
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  let windowStart = 0;
  let windowCount = 0;
  const faultNow = faultSchedule();
  // A request held by injected latency must not hold the process once the server is closed (a
  // 20 s stall kept a test's worker alive for the rest of it after its last test).
  const closing = new AbortController();
  setMaxListeners(0, closing.signal);
  app.addHook('onRequest', async (req, reply) => {
    const url = req.url.split('?')[0]!;
    if (url.startsWith('/_emulator/')) return;
    const key = `${req.method} ${req.routeOptions.url ?? url}`;
    ctx.stats.set(key, (ctx.stats.get(key) ?? 0) + 1);
    if (opts.latencyMs > 0) await sleep(opts.latencyMs, closing.signal);
    if (opts.rateLimit > 0) {
      const now = Date.now();
      if (now - windowStart >= 1000) { windowStart = now; windowCount = 0; }
      if (++windowCount > opts.rateLimit) {
        const retry = Math.max(1, Math.ceil((windowStart + 1000 - now) / 1000));
        reply.header('Retry-After', String(retry));
        return reply.code(429).send({ error: 'RATE_LIMITED', status_code: 429, message: 'Too many requests', code: 'error' });
      }
    }
    if (faultNow(opts.failRate)) {
      const kind = Math.floor(Math.random() * 3);
      // Counted so fault tests can report how many faults they survived.
      const fkey = `FAULT ${['500', '503', 'drop'][kind]}`;
      ctx.stats.set(fkey, (ctx.stats.get(fkey) ?? 0) + 1);
      if (kind === 0) return reply.code(500).send({ error: 'ERR_UNKNOWN', status_code: 500, message: 'injected fault', code: 'error' });
      if (kind === 1) return reply.code(503).send({ error: 'SERVICE_UNAVAILABLE', status_code: 503, message: 'injected fault', code: 'error' });
      // Drop the connection after part of the answer: headers claim more than ever arrives.
      (req as any).cloudmountDrop = true;
    }
  });
  app.addHook('onSend', async (req, reply, payload) => {
    if (!(req as any).cloudmountDrop) return payload;
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000000' });
    raw.write('{"partial":');
    setImmediate(() => raw.socket?.destroy());
    return payload;
  });

  // Test and benchmark control: request counters and fault settings, loopback only.
  app.get('/_emulator/stats', async () => Object.fromEntries(ctx.stats));
  app.post('/_emulator/stats/reset', async () => { ctx.stats.clear(); return { ok: true }; });
  app.post('/_emulator/faults', async (req) => {
    const b = (req.body ?? {}) as Record<string, string>;
    if (b.failRate !== undefined) opts.failRate = Number(b.failRate);
    if (b.latencyMs !== undefined) opts.latencyMs = Number(b.latencyMs);
    if (b.rateLimit !== undefined) opts.rateLimit = Number(b.rateLimit);
    return { failRate: opts.failRate, latencyMs: opts.latencyMs, rateLimit: opts.rateLimit };
  });

  const stops: Array<() => Promise<void>> = [];
  await registerMaxxo(app, ctx, stops);
  await registerVboxx(app, ctx, stops);

  await app.listen({ host: opts.host, port: opts.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const url = `http://${host}:${port}`;
  let closed = false;
  return {
    url, port, ctx, app,
    async close() {
      if (closed) return;
      closed = true;
      closing.abort(new Error('server closed'));
      for (const s of stops.reverse()) await s().catch(() => {});
      await app.close();
      db.close();
    },
  };
}
