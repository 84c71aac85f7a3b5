/**
 * Shared HTTP core of both clients (Maxxo and vBoxx).
 *
 *   const http = new HttpClient({ baseUrl: 'http://127.0.0.1:8080/api/1', concurrency: 8, log });
 *   http.auth = { apply, refresh, isAuthFailure };          // optional, see AuthHook
 *   http.mapError = (status, data, ctx) => RemoteError;     // optional, service error bodies -> typed errors
 *   const { status, headers, body } = await http.request({ method: 'GET', path: encodePathSegments(p), signal });
 *   const { data } = await http.json<T>({ method: 'POST', path: '/ops/filesize', form: { 'files[]': [...] }, idempotent: true });
 *
 * - One keep-alive undici Pool (connections = concurrency) and one p-queue per HttpClient (= per account):
 *   bounded concurrency, optional rate limit (requests/s, sliding window), priorities (types.ts Priority).
 *   A queue slot is held until the response body is fully read or destroyed, so the bound counts
 *   streaming downloads too: callers of request() MUST consume or destroy `body`.
 * - Bulk GETs (spec.bulk: file content) are read by RawGetPool (rawget.ts: sockets reading straight into
 *   large buffers) unless the client was made with bulkReader 'undici'; queue, retries, timeouts, auth
 *   and errors are the same for both.
 * - `path` is already percent-encoded (url.ts) and relative to the base URL's path prefix; `query` is encoded here.
 * - Timeouts: connect and response headers within timeoutMs (never beyond the retry budget), body idle timeoutMs.
 * - Retries (only for idempotent requests; default: GET/HEAD): connection errors, timeouts, 429, 500, 502, 503,
 *   504 and (json()) bodies cut short, with full-jitter exponential backoff, honouring Retry-After, bounded by
 *   maxAttempts and maxRetryTimeMs. Non-idempotent requests retry only when the server certainly did not act
 *   (connect failure, 429). A 429 pauses the whole queue for Retry-After (at most maxRetryTimeMs). Then a typed
 *   RemoteError (mapError hook or by status; an untrusted TLS certificate is a final TLS_ERROR).
 * - request() bodies are wrapped so that stream errors arrive typed too (Cancelled, Timeout, NetworkError).
 * - Server silent (fail fast): a timeout (connect, headers, body idle) marks the origin silent. While it is
 *   silent only ONE request at a time (the probe) goes to the server; every other request, those already
 *   waiting in the queue included, fails at once with a Timeout that this client does not repeat (so one
 *   program call costs about one timeout, not one per request queued behind a stalled one). The error's
 *   `retryable` stays true: for the vfs it means "unreachable now, keep the data and try later", never
 *   "refused". A request probes at most once, and after a failed probe the next one waits
 *   min(timeoutMs, 5 s): a caller's sequence of requests then costs about one timeout, not one each.
 *   Any answer from the server (headers of any status) clears the mark.
 * - Queue wait is bounded: a request that waited in the queue longer than its timeout while the server
 *   answered nothing (no headers, no body bytes, no 429 pause running) fails with Timeout instead of
 *   starting late. A queue that is merely busy with a server that answers is not cut short.
 * - Diagnostics (stats(): the remote's counters(), in `status`): inFlight, maxInFlight,
 *   counters.{requests,retries,refreshes,pauses,failFast,queueTimeouts,probes}.
 * - enqueue(queue, fn, priority, signal): the p-queue helper used here, exported for other queues (rsync).
 * - Auth: on isAuthFailure(status, data) the hook's refresh() runs once per request (concurrent callers share
 *   one in-flight refresh) and the request is repeated with apply() run again.
 * - Cancel: `signal` aborts waiting, backoff and the transfer (socket released) -> Cancelled.
 * - Errors carry method and path without the query string; no token or password ever in messages.
 */
import { Pool } from 'undici';
import { PassThrough } from 'node:stream';
import { RawGetPool } from './rawget.js';
import PQueue from 'p-queue';
import type { Readable } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';
import { splitBase, encodeQuery, encodeForm, type Query } from './url.js';
import {
  RemoteError, Cancelled, Timeout, NetworkError, BadResponse, RateLimited, ServerError, ServiceUnavailable,
  BadGateway, GatewayTimeout, BadRequest, Unauthorized, Forbidden, NotFound, RangeNotSatisfiable,
  type ErrorContext,
} from '../errors.js';
import { Priority } from './types.js';
import { redact, silentLogger, type Logger } from '../log.js';
import { sleep } from '../util/sleep.js';
import { backoffDelay } from '../util/backoff.js';

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';

export interface RequestSpec {
  method: HttpMethod;
  /** Already percent-encoded path below the base URL's prefix, starting with '/'. */
  path: string;
  query?: Query;
  headers?: Record<string, string>;
  /** application/x-www-form-urlencoded; arrays repeat the key as given (e.g. 'file[]'). */
  form?: Record<string, string | number | boolean | Array<string | number>>;
  /** Raw body; a factory so a retry can re-create the stream. */
  body?: Buffer | string | (() => Readable);
  /** May be repeated freely (default: GET/HEAD true, others false). */
  idempotent?: boolean;
  /** Queue priority (higher first); default Priority.normal. */
  priority?: number;
  signal?: AbortSignal;
  /** Overrides the client's timeoutMs for this request. */
  timeoutMs?: number;
  /** Skip the auth hook (the login request itself). */
  noAuth?: boolean;
  /**
   * A GET whose body is file content, maybe large: read by our own connections into large
   * buffers (rawget.ts) unless the client was made with bulkReader 'undici'.
   */
  bulk?: boolean;
  /**
   * Called each time an attempt leaves the queue for the server. Before that, an abort takes the
   * request back for sure; after it, the server may apply it even if our side gives up.
   */
  onDispatch?: () => void;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** undici body stream; consume or destroy it (it holds a queue slot until closed). */
  body: Readable;
  /** (internal) the body's errors are typed already (a raw bulk GET's). */
  typed?: boolean;
}

export interface JsonResponse<T> {
  status: number;
  headers: IncomingHttpHeaders;
  /** Parsed body; null when the body was empty (e.g. 304). */
  data: T;
}

export interface AuthHook {
  /** Adds credentials (token header, session_token query); may log in lazily. */
  apply(spec: RequestSpec): RequestSpec | Promise<RequestSpec>;
  /** Gets fresh credentials (re-login). Throws the typed error when that fails. */
  refresh(): Promise<void>;
  /** Whether this error answer means "credentials no longer valid". */
  isAuthFailure(status: number, data: unknown): boolean;
}

/** Maps a service error answer to a typed error; return undefined for the default by status. */
export type ErrorMapper = (status: number, data: unknown, ctx: ErrorContext) => RemoteError | undefined;

export interface HttpClientOptions {
  /** Base URL incl. optional path prefix, e.g. http://127.0.0.1:8080/api/1 */
  baseUrl: string;
  concurrency?: number;
  /** Requests per second, 0 = unlimited. */
  rateLimit?: number;
  timeoutMs?: number;
  maxAttempts?: number;
  maxRetryTimeMs?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  ca?: string | Buffer;
  log?: Logger;
  auth?: AuthHook;
  mapError?: ErrorMapper;
  /** Who reads bulk GET bodies (RequestSpec.bulk): our own connections (default) or undici. */
  bulkReader?: 'raw' | 'undici';
}

const TRANSIENT_STATUS = new Set([429, 500, 502, 503, 504]);
const TLS_CODES = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_UNTRUSTED', 'CERT_REVOKED',
  'HOSTNAME_MISMATCH']);
const MAX_ERROR_BODY = 64 * 1024;

/** Internal: one failed attempt with what the retry loop needs to decide. */
class AttemptFailure extends Error {
  constructor(
    readonly error: RemoteError,
    readonly transient: boolean,
    /** The server certainly did not act on the request (connect failure, 429). */
    readonly notActed: boolean,
    readonly retryAfterMs?: number,
    readonly authFailure = false,
  ) { super(error.message); }
}

export class HttpClient {
  readonly origin: string;
  readonly prefix: string;
  auth?: AuthHook;
  mapError?: ErrorMapper;
  /** Requests dispatched and not yet finished (body not closed). */
  inFlight = 0;
  /** Highest inFlight seen. */
  maxInFlight = 0;
  /** Counts since the client was made (diagnostics: see stats()). */
  readonly counters = { requests: 0, retries: 0, refreshes: 0, pauses: 0, failFast: 0, queueTimeouts: 0, probes: 0 };

  private readonly pool: Pool;
  private readonly raw: RawGetPool | null;
  private readonly queue: PQueue;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly maxRetryTimeMs: number;
  private readonly backoffBaseMs: number;
  private readonly backoffCapMs: number;
  private authGen = 0;
  private refreshing?: Promise<void>;
  private pausedUntil = 0;
  private resumeTimer?: NodeJS.Timeout;
  private closed = false;
  /** A request timed out and nothing has answered since (see "Server silent" above). */
  private silentMark = false;
  /** The one request allowed to the server while silent is under way. */
  private probing = false;
  /** No new probe before this time (set when a probe fails). */
  private nextProbeAt = 0;
  /** Last sign of life of the server: response headers, body bytes, end of a 429 pause. */
  private lastProgressAt = Date.now();
  /** Attempts waiting in the queue (not started): failed at once when the server turns silent. */
  private readonly waiting = new Map<(failure: AttemptFailure) => void, ErrorContext>();

  constructor(opts: HttpClientOptions) {
    const { origin, prefix } = splitBase(opts.baseUrl);
    this.origin = origin;
    this.prefix = prefix;
    const concurrency = Math.max(1, Math.floor(opts.concurrency ?? 8));
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.maxAttempts = Math.max(1, opts.maxAttempts ?? 5);
    this.maxRetryTimeMs = opts.maxRetryTimeMs ?? 60_000;
    this.backoffBaseMs = opts.backoffBaseMs ?? 100;
    this.backoffCapMs = opts.backoffCapMs ?? 5_000;
    this.log = opts.log ?? silentLogger;
    this.auth = opts.auth;
    this.mapError = opts.mapError;
    this.pool = new Pool(origin, {
      connections: concurrency,
      connectTimeout: this.timeoutMs,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      keepAliveTimeout: 30_000,
      // TLS is verified by default; `ca` adds a private CA.
      ...(origin.startsWith('https:') ? { connect: { rejectUnauthorized: true, ...(opts.ca ? { ca: opts.ca } : {}) } } : {}),
    });
    this.raw = opts.bulkReader === 'undici' ? null
      : new RawGetPool(origin, { connections: concurrency, connectTimeoutMs: this.timeoutMs, keepAliveMs: 30_000, ...(opts.ca ? { ca: opts.ca } : {}) });
    const rate = opts.rateLimit ?? 0;
    this.queue = new PQueue({
      concurrency,
      // Sliding window, 10% wider than a second: connection set-up skews arrival times at the server,
      // and a server counting fixed one-second windows must never see more than `rate` in one.
      ...(rate > 0 ? { intervalCap: Math.max(1, Math.floor(rate)), interval: 1100, strict: true } : {}),
    });
  }

  /** Request whose body the caller streams. Errors (status >= 400) are thrown as typed errors. */
  async request(spec: RequestSpec): Promise<HttpResponse> {
    return this.run(spec, async (res, ctx) => {
      // a raw body types its errors and reports its progress itself
      if (res.typed) return { status: res.status, headers: res.headers, body: res.body };
      // Errors while the caller streams the body arrive typed too (Cancelled, Timeout, NetworkError).
      const raw = res.body;
      const out = new PassThrough({ highWaterMark: 64 * 1024 });
      raw.on('error', (e) => out.destroy(this.transportFailure(e, ctx, spec.signal, true).error));
      // body bytes are a sign of life (a long download must not count as a silent server)
      raw.on('data', () => { this.lastProgressAt = Date.now(); });
      out.on('close', () => { if (!raw.destroyed) raw.destroy(); });
      raw.pipe(out);
      return { status: res.status, headers: res.headers, body: out };
    });
  }

  /** Request with a JSON answer. Malformed JSON -> BadResponse; a body cut short is retried when idempotent. */
  async json<T = unknown>(spec: RequestSpec): Promise<JsonResponse<T>> {
    return this.run(spec, async (res, ctx) => {
      let text: string;
      try {
        text = await (res.body as Readable & { text(): Promise<string> }).text();
        res.body.destroy();
      } catch (e) {
        throw this.transportFailure(e, ctx, spec.signal, true);
      }
      if (text.trim() === '') return { status: res.status, headers: res.headers, data: null as T };
      try {
        return { status: res.status, headers: res.headers, data: JSON.parse(text) as T };
      } catch {
        throw new AttemptFailure(new BadResponse(htmlSummary(text) ?? 'malformed JSON in response', { ...ctx, status: res.status }), false, false);
      }
    });
  }

  /** Diagnostics: the counters, the requests in flight now and at the most, the requests queued. */
  stats(): Record<string, number> {
    const raw = this.raw?.counters;
    return {
      ...this.counters, inFlight: this.inFlight, maxInFlight: this.maxInFlight, queued: this.queue.size,
      ...(raw ? { bulkRequests: raw.requests, bulkConnects: raw.connects, bulkStaleRetries: raw.staleRetries } : {}),
    };
  }

  /**
   * The server stopped answering: a request timed out and nothing answered since. Other planes of
   * the same account (Maxxo rsync) fail fast too while this holds.
   */
  get silent(): boolean { return this.silentMark; }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    this.queue.clear();
    for (const [fail, ctx] of [...this.waiting]) fail(new AttemptFailure(new Cancelled('client closed', ctx), false, false));
    this.raw?.close();
    await this.pool.destroy().catch(() => {});
  }

  // ---- internals ----

  private async run<T>(spec: RequestSpec, consume: (res: HttpResponse, ctx: ErrorContext) => Promise<T>): Promise<T> {
    const ctx: ErrorContext = { method: spec.method, path: this.prefix + spec.path };
    const idempotent = spec.idempotent ?? (spec.method === 'GET' || spec.method === 'HEAD');
    const start = Date.now();
    const deadline = start + this.maxRetryTimeMs;
    let attempt = 0;
    let refreshed = false;
    const probe = { probed: false };
    for (;;) {
      if (spec.signal?.aborted) throw new Cancelled('request cancelled', ctx);
      if (this.closed) throw new Cancelled('client closed', ctx);
      attempt++;
      const gen = this.authGen;
      let sent = spec;
      if (this.auth && !spec.noAuth) sent = await this.auth.apply(spec);
      try {
        return await this.attempt(sent, ctx, deadline, consume, probe);
      } catch (e) {
        if (!(e instanceof AttemptFailure)) {
          if (e instanceof RemoteError) throw e;
          throw new NetworkError(redact(String((e as Error)?.message ?? e)), { ...ctx, cause: e });
        }
        if (e.authFailure && this.auth && !refreshed) {
          refreshed = true;
          attempt--;
          await this.refreshAuth(gen);
          continue;
        }
        const f = e;
        const canRetry = f.transient && (idempotent || f.notActed);
        let delay = backoffDelay(attempt, this.backoffBaseMs, this.backoffCapMs);
        if (f.retryAfterMs !== undefined) delay = Math.max(delay, f.retryAfterMs);
        // The server asked everyone to slow down: hold the whole queue, even when this request gives
        // up, but never longer than one request's retry budget (a queued call must not wait forever).
        if (f.error.status === 429) this.pauseQueue(Math.min(delay, this.maxRetryTimeMs));
        if (!canRetry || attempt >= this.maxAttempts) throw f.error;
        if (Date.now() + delay > deadline) throw f.error;
        this.counters.retries++;
        this.log.debug(`http: retry ${ctx.method} ${ctx.path} after ${f.error.code} in ${Math.round(delay)} ms (attempt ${attempt + 1}/${this.maxAttempts})`);
        await sleep(delay, spec.signal).catch(() => { throw new Cancelled('request cancelled', ctx); });
      }
    }
  }

  /** Shared re-login: one refresh at a time; callers that sent with stale credentials just repeat. */
  private async refreshAuth(genSeen: number): Promise<void> {
    if (this.authGen !== genSeen) return;
    if (!this.refreshing) {
      this.counters.refreshes++;
      this.refreshing = (async () => {
        try { await this.auth!.refresh(); this.authGen++; } finally { this.refreshing = undefined; }
      })();
    }
    await this.refreshing;
  }

  private pauseQueue(ms: number): void {
    const until = Date.now() + ms;
    if (until <= this.pausedUntil) return;
    this.pausedUntil = until;
    this.counters.pauses++;
    this.queue.pause();
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    this.resumeTimer = setTimeout(() => {
      this.resumeTimer = undefined;
      // the pause was the server's own instruction: waiting through it is not silence
      this.lastProgressAt = Date.now();
      if (!this.closed) this.queue.start();
    }, ms);
    this.log.debug(`http: rate limited, queue paused for ${Math.round(ms)} ms`);
  }

  /** One attempt through the queue: dispatch, check status, consume while holding the slot. */
  private attempt<T>(spec: RequestSpec, ctx: ErrorContext, deadline: number,
    consume: (res: HttpResponse, ctx: ErrorContext) => Promise<T>, probeState: { probed: boolean }): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      // Silent server and this request may not probe it now: do not even queue.
      if (this.silentMark && !this.mayProbe(probeState)) return reject(this.failFast(ctx));
      const timeout = spec.timeoutMs ?? this.timeoutMs;
      const enqueuedAt = Date.now();
      const waitAc = new AbortController();
      let waitTimer: NodeJS.Timeout | undefined;
      const failWaiting = (f: AttemptFailure) => { if (!waitAc.signal.aborted) waitAc.abort(f); };
      const stopWaiting = () => { this.waiting.delete(failWaiting); if (waitTimer) clearTimeout(waitTimer); waitTimer = undefined; };
      // Queue-wait bound: checked when the timeout has passed, re-armed while the server shows life.
      const checkWait = () => {
        waitTimer = undefined;
        const now = Date.now();
        const alive = Math.max(this.lastProgressAt, enqueuedAt) + timeout;
        const until = Math.max(alive, this.pausedUntil);
        if (now < until) { waitTimer = setTimeout(checkWait, until - now + 1); return; }
        this.counters.queueTimeouts++;
        failWaiting(new AttemptFailure(new Timeout(`waited ${now - enqueuedAt} ms in the queue without an answer from the server`, ctx), false, false));
      };
      this.waiting.set(failWaiting, ctx);
      waitTimer = setTimeout(checkWait, timeout);
      const task = async () => {
        stopWaiting();
        let probe = false;
        if (this.silentMark) {
          if (!this.mayProbe(probeState)) throw this.failFast(ctx);
          probe = this.probing = probeState.probed = true;
          this.counters.probes++;
          this.log.debug(`http: server silent, probing with ${ctx.method} ${ctx.path}`);
        }
        this.inFlight++;
        if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
        this.counters.requests++;
        let released = false;
        const release = () => { if (!released) { released = true; this.inFlight--; } };
        let res: HttpResponse;
        const sentAt = Date.now();
        try {
          spec.onDispatch?.();
          res = await this.dispatch(spec, ctx, deadline);
          // -vv: one line per request (the path has no query string, where tokens travel)
          this.log.debug(`http: ${ctx.method} ${ctx.path} ${res.status} ${Date.now() - sentAt} ms`);
        } catch (e) {
          this.log.debug(`http: ${ctx.method} ${ctx.path} failed after ${Date.now() - sentAt} ms: ${e instanceof AttemptFailure ? e.error.code : 'error'}`);
          release();
          if (probe) this.nextProbeAt = Date.now() + Math.min(this.timeoutMs, 5000);
          throw e;
        } finally {
          if (probe) this.probing = false;
        }
        const closed = new Promise<void>((r) => {
          if (res.body.destroyed) return r();
          res.body.once('close', () => r());
        }).then(release);
        try {
          if (res.status >= 400) {
            const data = await readErrorBody(res.body);
            throw this.statusFailure(spec, res, data, ctx);
          }
          const out = await consume(res, ctx);
          // A body already read to the end frees its slot before the caller continues (exact counters).
          if (res.body.readableEnded || res.body.destroyed) release();
          resolve(out);
        } catch (e) {
          if (!res.body.destroyed) res.body.destroy();
          release();
          throw e;
        }
        // Hold the slot until the caller has read (or destroyed) the body.
        await closed;
      };
      const signal = spec.signal ? AbortSignal.any([spec.signal, waitAc.signal]) : waitAc.signal;
      enqueue(this.queue, task, spec.priority ?? Priority.normal, signal)
        .catch((e) => reject(spec.signal?.aborted ? new AttemptFailure(new Cancelled('request cancelled', ctx), false, false)
          : waitAc.signal.aborted ? waitAc.signal.reason : e))
        .finally(stopWaiting);
    });
  }

  private mayProbe(state: { probed: boolean }): boolean {
    return !this.probing && !state.probed && Date.now() >= this.nextProbeAt;
  }

  /** Fail-fast answer while the server is silent: typed Timeout, not repeated by this client. */
  private failFast(ctx: ErrorContext): AttemptFailure {
    this.counters.failFast++;
    return new AttemptFailure(new Timeout('server not answering (another request is probing it)', ctx), false, false);
  }

  /** A timeout: the server is silent until something answers; queued requests fail now. */
  private markSilent(): void {
    if (this.silentMark) return;
    this.silentMark = true;
    this.nextProbeAt = 0;
    this.log.warn(`http: ${this.origin} not answering; failing fast, one probe at a time, until it answers`);
    for (const [fail, ctx] of [...this.waiting]) fail(this.failFast(ctx));
  }

  /** The server answered (headers of any status). */
  private answered(): void {
    this.lastProgressAt = Date.now();
    if (!this.silentMark) return;
    this.silentMark = false;
    this.log.info(`http: ${this.origin} answers again`);
  }

  private async dispatch(spec: RequestSpec, ctx: ErrorContext, deadline: number): Promise<HttpResponse> {
    const q = encodeQuery(spec.query);
    const headers: Record<string, string> = { ...(spec.headers ?? {}) };
    let body: Buffer | string | Readable | undefined;
    if (spec.form) {
      body = encodeForm(spec.form);
      headers['content-type'] ??= 'application/x-www-form-urlencoded';
    } else if (typeof spec.body === 'function') {
      body = spec.body();
    } else {
      body = spec.body;
    }
    const timeout = spec.timeoutMs ?? this.timeoutMs;
    // Never wait for headers beyond the total retry budget: a stalled server fails within the bound.
    const headersTimeout = Math.max(1, Math.min(timeout, deadline - Date.now()));
    try {
      if (spec.bulk && this.raw && spec.method === 'GET' && body === undefined) {
        const r = await this.raw.request({
          path: this.prefix + spec.path + (q ? '?' + q : ''),
          headers,
          ...(spec.signal ? { signal: spec.signal } : {}),
          headersTimeoutMs: headersTimeout,
          bodyTimeoutMs: timeout,
          mapBodyError: (e) => this.transportFailure(e, ctx, spec.signal, true).error,
          // body bytes are a sign of life (a long download must not count as a silent server)
          onProgress: () => { this.lastProgressAt = Date.now(); },
        });
        this.answered();
        return { status: r.status, headers: r.headers, body: r.body, typed: true };
      }
      const r = await this.pool.request({
        path: this.prefix + spec.path + (q ? '?' + q : ''),
        method: spec.method,
        headers,
        body,
        signal: spec.signal,
        headersTimeout,
        bodyTimeout: timeout,
      });
      this.answered();
      return { status: r.statusCode, headers: r.headers, body: r.body as unknown as Readable };
    } catch (e) {
      if (body && typeof body === 'object' && 'destroy' in body) (body as Readable).destroy();
      // a headers wait cut short by the end of the retry budget says nothing about the server
      throw this.transportFailure(e, ctx, spec.signal, false, headersTimeout >= timeout);
    }
  }

  private statusFailure(spec: RequestSpec, res: HttpResponse, data: unknown, ctx: ErrorContext): AttemptFailure {
    const status = res.status;
    const c: ErrorContext = { ...ctx, status };
    const error = this.mapError?.(status, data, c) ?? defaultError(status, data, c);
    const auth = !spec.noAuth && !!this.auth && this.auth.isAuthFailure(status, data);
    return new AttemptFailure(error, TRANSIENT_STATUS.has(status), status === 429,
      TRANSIENT_STATUS.has(status) ? parseRetryAfter(res.headers['retry-after']) : undefined, auth);
  }

  private transportFailure(e: unknown, ctx: ErrorContext, signal: AbortSignal | undefined, inBody: boolean, fullWait = true): AttemptFailure {
    if (e instanceof AttemptFailure) return e;
    if (signal?.aborted) return new AttemptFailure(new Cancelled('request cancelled', ctx), false, false);
    const code = (e as { code?: string })?.code ?? '';
    const name = (e as { name?: string })?.name ?? '';
    const msg = redact(String((e as Error)?.message ?? e));
    if (fullWait && (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT')) this.markSilent();
    switch (code) {
      case 'UND_ERR_CONNECT_TIMEOUT':
        return new AttemptFailure(new Timeout('connect timed out', { ...ctx, cause: e }), true, true);
      case 'UND_ERR_HEADERS_TIMEOUT':
        return new AttemptFailure(new Timeout('no response from server in time', { ...ctx, cause: e }), true, false);
      case 'UND_ERR_BODY_TIMEOUT':
        return new AttemptFailure(new Timeout('response body stalled', { ...ctx, cause: e }), true, false);
      case 'ECONNREFUSED': case 'ENOTFOUND': case 'EAI_AGAIN': case 'EHOSTUNREACH': case 'ENETUNREACH':
        return new AttemptFailure(new NetworkError(`cannot connect: ${code}`, { ...ctx, cause: e }), true, true);
    }
    if (TLS_CODES.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_')) {
      // An untrusted certificate does not heal by repeating: a clear, final error.
      return new AttemptFailure(new RemoteError('TLS_ERROR', `TLS certificate not accepted: ${code}`, { ...ctx, cause: e }, false), false, true);
    }
    if (name === 'AbortError' || code === 'UND_ERR_ABORTED') {
      return new AttemptFailure(new Cancelled('request cancelled', { ...ctx, cause: e }), false, false);
    }
    if (code === 'UND_ERR_INVALID_ARG') {
      return new AttemptFailure(new RemoteError('INVALID_REQUEST', msg, { ...ctx, cause: e }), false, false);
    }
    return new AttemptFailure(new NetworkError(inBody ? `response cut short: ${msg}` : msg, { ...ctx, cause: e }), true, false);
  }
}

/**
 * p-queue add() whose signal only removes a task still waiting: p-queue would also reject a running
 * task on abort and free its slot at once, while the work (socket, child process) is still ending.
 * A started task handles the signal itself and keeps its slot until it has really finished.
 */
export function enqueue<T>(queue: PQueue, fn: () => Promise<T>, priority: number, signal?: AbortSignal): Promise<T> {
  if (!signal) return queue.add(fn, { priority }) as Promise<T>;
  const waiting = new AbortController();
  let started = false;
  const onAbort = () => { if (!started) waiting.abort(signal.reason); };
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  return (queue.add(() => { started = true; return fn(); }, { priority, signal: waiting.signal }) as Promise<T>)
    .finally(() => signal.removeEventListener('abort', onAbort));
}

/** Retry-After as delta-seconds or HTTP date -> ms (undefined when absent or unparsable). */
export function parseRetryAfter(v: string | string[] | undefined): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(s)) return Math.max(0, Number(s) * 1000);
  const t = Date.parse(s);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - Date.now());
}

async function readErrorBody(body: Readable): Promise<unknown> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of body) {
      const b = Buffer.isBuffer(c) ? c : Buffer.from(c);
      if (n < MAX_ERROR_BODY) chunks.push(b);
      n += b.length;
    }
  } catch {
    // A broken error body still leaves the status to go by.
  }
  const text = Buffer.concat(chunks).toString('utf8').slice(0, MAX_ERROR_BODY);
  try { return JSON.parse(text); } catch { return htmlSummary(text) ?? (text || undefined); }
}

/** A web page where an API answer was expected: its title, never the page itself in a message. */
export function htmlSummary(text: string): string | undefined {
  const t = text.trimStart().slice(0, 512).toLowerCase();
  if (!t.startsWith('<!doctype html') && !t.startsWith('<html') && !t.startsWith('<?xml') && !/^<(head|body|title|h1|p|div)\b/.test(t)) return undefined;
  const title = /<title[^>]*>([^<]{1,120})<\/title>/i.exec(text)?.[1]?.trim().replace(/\s+/g, ' ');
  return `an HTML page${title ? ` ("${title}")` : ''} instead of an API answer`;
}

/** Default typed error by HTTP status; the server's text is kept (redacted) as message. */
export function defaultError(status: number, data: unknown, ctx: ErrorContext): RemoteError {
  let text: string | undefined;
  if (typeof data === 'string') text = data.slice(0, 200);
  else if (data && typeof data === 'object') {
    const d = data as Record<string, unknown>;
    for (const k of ['message', 'error', 'error_description']) {
      if (typeof d[k] === 'string') { text = d[k] as string; break; }
    }
  }
  const msg = redact(text ?? `HTTP ${status}`);
  switch (status) {
    case 400: return new BadRequest(msg, ctx);
    case 401: return new Unauthorized(msg, ctx);
    case 403: return new Forbidden(msg, ctx);
    case 404: return new NotFound(msg, ctx);
    case 416: return new RangeNotSatisfiable(msg, ctx);
    case 429: return new RateLimited(msg, ctx);
    case 500: return new ServerError(msg, ctx);
    case 502: return new BadGateway(msg, ctx);
    case 503: return new ServiceUnavailable(msg, ctx);
    case 504: return new GatewayTimeout(msg, ctx);
  }
  return new RemoteError(`HTTP_${status}`, msg, ctx, status >= 500);
}

