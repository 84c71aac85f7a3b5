// Typed client of the vBoxxCloud API v1 (Dropbox v1 style) on the shared HTTP core.
// Paths given to this class are root-relative ("/docs/a.txt"); the root is a numeric id.
// The session token travels as a query parameter, so nothing here ever logs a full URL:
// errors and log lines carry the request path without its query.
import { createReadStream, statSync } from 'node:fs';
import { open, stat as fsStat } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { HttpClient, type RequestSpec, type HttpClientOptions } from '../http.js';
import { encodePathSegments } from '../url.js';
import {
  AuthFailed, BadRequest, BadResponse, Cancelled, NetworkError, NotFound, RemoteError, type ErrorContext,
} from '../../errors.js';
import { Priority, type CallOptions, type TransferOptions } from '../types.js';
import { redact, silentLogger, type Logger } from '../../log.js';
import type { ClientOptions } from '../options.js';
import { vboxxError, isInvalidLogin, serverMessage, type EndpointKind } from './errors.js';
import {
  parseAccountInfo, parseChunkState, parseMetadata, parsePaged, parsePolicy, parseShareLink, expectObject, isObj,
  type ChunkState, type Json, type Paged, type VboxxAccountInfo, type VboxxMetadata, type VboxxPolicy,
  type VboxxShareLink,
} from './wire.js';
import type {
  Activity, ActivityCreate, ActivityEntity, ActivityType, CreateResult, Machine, MachineUpdate, Organization,
  OrganizationCreate, OrganizationUpdate, OrgSubList, PageOptions, Person, PersonCreate, PersonFull, PersonUpdate,
  PolicyUpdate, Root, RootCreate, RootUpdate,
} from './management-types.js';
import { sleep as sleepUntil } from '../../util/sleep.js';
import { backoffDelay } from '../../util/backoff.js';

export interface VboxxClientConfig extends ClientOptions {
  /** Files larger than this go through chunked upload (default 8 MiB). */
  chunkThreshold?: number;
  /** Size of one chunk of a chunked upload (default 8 MiB). */
  chunkSize?: number;
  /** Backoff tuning passed to the HTTP core (tests shorten it). */
  backoffBaseMs?: number;
  backoffCapMs?: number;
}

// The Remote's option shapes, under the short names of this client's signatures.
type Call = CallOptions;
type Transfer = TransferOptions;

export type MetadataResult =
  | { unchanged: true }
  | { unchanged: false; meta: VboxxMetadata };

export interface UploadOptions extends Transfer {
  /** Replace an existing file (default true). */
  overwrite?: boolean;
  parentRev?: string;
  /** The file's mtime, sent as `client_mtime` (whole unix seconds; the reference server's extension). */
  mtimeMs?: number;
}

/** The query fields every write of a file carries. */
function writeQuery(o: UploadOptions): Record<string, string> {
  const q: Record<string, string> = { overwrite: o.overwrite === false ? 'false' : 'true' };
  if (o.parentRev) q.parent_rev = o.parentRev;
  const s = o.mtimeMs === undefined ? NaN : Math.floor(o.mtimeMs / 1000);
  // before 1970 or past year 9999 the server has no form for it: it keeps its own write time
  if (Number.isFinite(s) && s >= 0 && s <= 253402300799) q.client_mtime = String(s);
  return q;
}

const MiB = 1024 * 1024;
type FormValue = string | number | boolean | undefined | null;

/** The error a response was mapped to, with what the server said beyond the message. */
export type DetailedError = RemoteError & { details?: Json };

/** Which kind of endpoint a request path is, for the status -> error decision. */
function endpointKind(path: string | undefined): EndpointKind {
  const p = path ?? '';
  if (p.startsWith('/1/auth')) return 'auth';
  if (/^\/1\/fileops\/(create_folder|move|copy)/.test(p)) return 'fileops-target';
  if (p.startsWith('/1/fileops/')) return 'fileops';
  if (p.startsWith('/1/files_put/') || p.startsWith('/1/chunked_upload') || p.startsWith('/1/commit_chunked_upload/')) return 'upload';
  if (p.startsWith('/1/files/')) return 'files';
  if (p.startsWith('/1/metadata/')) return 'metadata';
  if (p.startsWith('/1/management/')) return 'management';
  return 'other';
}

function rootSeg(root: number | string): string {
  const s = String(root);
  if (!/^\d+$/.test(s)) throw new BadRequest(`invalid root id ${JSON.stringify(s).slice(0, 40)}`);
  return s;
}

/** "/a b/c" -> "a%20b/c" (no leading slash); "/" -> "". */
function relPath(path: string): string {
  if (typeof path !== 'string' || path.includes('\0')) throw new BadRequest('invalid path');
  const parts = path.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.includes('..')) throw new BadRequest('path traversal refused');
  return encodePathSegments(parts.join('/'));
}

function cleanForm(f: Record<string, FormValue>): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(f)) if (v !== undefined && v !== null) out[k] = v;
  return out;
}

const sleep = (ms: number, signal?: AbortSignal) => sleepUntil(ms, signal, () => new Cancelled('cancelled'));

export class VboxxClient {
  readonly http: HttpClient;
  readonly log: Logger;
  readonly chunkThreshold: number;
  readonly chunkSize: number;
  /** Logins performed (diagnostics: VboxxRemote.counters()). */
  logins = 0;
  private readonly user: string;
  // Kept in a closure-like private field; never part of any message or toString().
  #password: string;
  #token?: string;
  private loggingIn?: Promise<void>;
  private readonly maxAttempts: number;
  private readonly backoffBaseMs: number;

  constructor(opts: VboxxClientConfig) {
    if (!opts || typeof opts.server !== 'string') throw new TypeError('vboxx: server URL is required');
    if (typeof opts.user !== 'string' || opts.user === '') throw new TypeError('vboxx: user name is required');
    if (typeof opts.password !== 'string') throw new TypeError('vboxx: password is required');
    this.user = opts.user;
    this.#password = opts.password;
    this.log = opts.log ?? silentLogger;
    this.chunkThreshold = opts.chunkThreshold ?? 8 * MiB;
    this.chunkSize = Math.max(1, opts.chunkSize ?? 8 * MiB);
    this.maxAttempts = Math.max(1, opts.maxAttempts ?? 5);
    this.backoffBaseMs = opts.backoffBaseMs ?? 100;
    const httpOpts: HttpClientOptions = {
      // The API lives under /1 on the service's host; paths below carry the /1 themselves so that
      // errors show the familiar /1/... path.
      // Accept "https://host/1" too: the paths below carry the version themselves.
      baseUrl: opts.server.replace(/\/+$/, '').replace(/\/1$/, ''),
      // Each request costs a round trip mostly spent waiting: reading many small files (after a
      // listing) and several read-ahead ranges of a big one need that many connections at once.
      concurrency: opts.concurrency ?? 16,
      rateLimit: opts.rateLimit ?? 0,
      ...(opts.bulkReader ? { bulkReader: opts.bulkReader } : {}),
      timeoutMs: opts.timeoutMs ?? 30_000,
      maxAttempts: this.maxAttempts,
      maxRetryTimeMs: opts.maxRetryTimeMs ?? 60_000,
      ...(opts.backoffBaseMs !== undefined ? { backoffBaseMs: opts.backoffBaseMs } : {}),
      ...(opts.backoffCapMs !== undefined ? { backoffCapMs: opts.backoffCapMs } : {}),
      ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
      log: this.log,
    };
    this.http = new HttpClient(httpOpts);
    this.http.mapError = (status, data, ctx) => {
      const kind = endpointKind(ctx.path?.slice(this.http.prefix.length));
      const err = vboxxError(kind, status, data, ctx) as DetailedError;
      if (isObj(data)) {
        const { message: _m, status_code: _s, code: _c, ...rest } = data;
        if (Object.keys(rest).length) Object.defineProperty(err, 'details', { value: rest, enumerable: false });
      }
      return err;
    };
    this.http.auth = {
      apply: async (spec) => {
        if (!this.#token) await this.login(spec.signal);
        return { ...spec, query: { ...(spec.query ?? {}), session_token: this.#token } };
      },
      refresh: async () => {
        this.#token = undefined;
        this.log.info('vboxx: session expired, logging in again');
        await this.login();
      },
      isAuthFailure: (status) => status === 401,
    };
  }

  toString(): string { return `VboxxClient(${this.http.origin}${this.http.prefix}, user=${this.user})`; }
  toJSON(): Json { return { server: this.http.origin + this.http.prefix, user: this.user }; }

  get loggedIn(): boolean { return this.#token !== undefined; }

  // ---- auth ----

  /** Logs in (POST /1/auth); concurrent callers share one login. AuthFailed is not retried. */
  login(signal?: AbortSignal): Promise<void> {
    if (!this.loggingIn) {
      this.loggingIn = (async () => {
        try {
          const { data } = await this.http.json<unknown>({
            method: 'POST', path: '/1/auth', form: { username: this.user, password: this.#password },
            noAuth: true, idempotent: true, priority: Priority.interactive, ...(signal ? { signal } : {}),
          });
          const ctx: ErrorContext = { method: 'POST', path: this.http.prefix + '/1/auth' };
          const o = expectObject(data, 'auth answer', ctx);
          if (o.success !== true || typeof o.session_token !== 'string' || o.session_token === '') {
            const msg = serverMessage(o, 'login refused');
            if (o.success === false) throw new AuthFailed(isInvalidLogin(msg) ? 'Invalid username or password' : msg, ctx);
            throw new BadResponse('auth answer has no session_token', ctx);
          }
          this.#token = o.session_token;
          this.logins++;
          this.log.debug(`vboxx: logged in as ${this.user}`);
        } finally {
          this.loggingIn = undefined;
        }
      })();
    }
    return this.loggingIn;
  }

  /** Forgets the session token (the service has no logout call in API v1). */
  logout(): void { this.#token = undefined; }

  async close(): Promise<void> {
    this.#token = undefined;
    await this.http.close();
  }

  // ---- plumbing ----

  private async getJson(spec: RequestSpec): Promise<{ status: number; data: unknown; headers: Record<string, unknown> }> {
    const r = await this.http.json<unknown>(spec);
    return { status: r.status, data: r.data, headers: r.headers as Record<string, unknown> };
  }

  private ctx(method: string, path: string): ErrorContext {
    return { method, path: this.http.prefix + path };
  }

  /**
   * Runs a mutation that the HTTP core must not repeat blindly (POST fileops, commit). When an
   * attempt fails in a way that may or may not have reached the server, it is repeated, and a
   * "conflict" answer after such a repeat is checked with `reconcile` (did our first attempt
   * do it?) instead of being reported. `reconcileFirst`: checked on the first attempt too (a
   * caller for whom what is already there may be the answer).
   */
  private async mutate<T>(call: () => Promise<T>, reconcile: (err: RemoteError) => Promise<T | undefined>, signal?: AbortSignal,
    reconcileFirst = false): Promise<T> {
    let uncertain = reconcileFirst;
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (e) {
        if (!(e instanceof RemoteError)) throw e;
        if (uncertain && (e.code === 'ALREADY_EXISTS' || e.code === 'NOT_FOUND')) {
          const ok = await reconcile(e);
          if (ok !== undefined) return ok;
        }
        if (!e.retryable || attempt >= this.maxAttempts || signal?.aborted) throw e;
        uncertain = true;
        await sleep(backoffDelay(attempt, this.backoffBaseMs), signal);
      }
    }
  }

  // ---- account ----

  async accountInfo(o: Call = {}): Promise<VboxxAccountInfo> {
    const path = '/1/account/info/';
    const { data } = await this.getJson({ method: 'GET', path, ...o });
    return parseAccountInfo(data, this.ctx('GET', path), this.log);
  }

  // ---- files ----

  /**
   * Metadata of a file or folder (with its contents unless list=false). With `hash`, a folder
   * that has not changed answers 304 and this returns {unchanged: true}.
   */
  async metadata(root: number | string, path: string, o: Call & { hash?: string; list?: boolean } = {}): Promise<MetadataResult> {
    const p = `/1/metadata/${rootSeg(root)}/${relPath(path)}`;
    const query: Record<string, string> = {};
    if (o.hash) query.hash = o.hash;
    if (o.list === false) query.list = 'false';
    const { status, data } = await this.getJson({ method: 'GET', path: p, query, signal: o.signal, priority: o.priority ?? Priority.interactive });
    if (status === 304) return { unchanged: true };
    const meta = parseMetadata(data, this.ctx('GET', p), this.log);
    if (meta.is_deleted === true) throw new NotFound('file was deleted', { ...this.ctx('GET', p), status: 404 });
    return { unchanged: false, meta };
  }

  /**
   * GET /1/files with an optional byte range. The caller must consume or destroy `body`.
   * `partial` is true when the server honoured the range (206). `etag` identifies the content
   * version, so a resumed transfer can tell it still gets the same file (If-Range); `version` is
   * the ETag or else the metadata rev, whichever names it.
   *
   * Only an answer that is the file is returned: it names its version (ETag or the metadata
   * header, which Dropbox v1 sends with every /files answer) and its lengths agree with each other
   * and with the request. Anything else (the body of a broken gateway or of a connection dropped
   * after made-up headers, an error JSON on a 200, a range other than the one asked) would be
   * written into caches as file content; it is refused with a retryable BadResponse before a byte
   * of its body is read.
   */
  async openFile(root: number | string, path: string, o: Call & { offset?: number; length?: number; ifRange?: string } = {}):
    Promise<{ status: number; partial: boolean; body: Readable; size?: number; rev?: string; etag?: string; version: string; end?: number }> {
    const p = `/1/files/${rootSeg(root)}/${relPath(path)}`;
    const headers: Record<string, string> = {};
    const off = o.offset ?? 0;
    if (!Number.isSafeInteger(off) || off < 0) throw new BadRequest('invalid offset');
    if (o.length !== undefined) {
      if (!Number.isSafeInteger(o.length) || o.length <= 0) throw new BadRequest('invalid length');
      headers.range = `bytes=${off}-${off + o.length - 1}`;
    } else if (off > 0) {
      headers.range = `bytes=${off}-`;
    }
    if (headers.range && o.ifRange) headers['if-range'] = o.ifRange;
    const r = await this.http.request({ method: 'GET', path: p, headers, signal: o.signal, priority: o.priority ?? Priority.normal, bulk: true });
    const refuse = (why: string): never => {
      r.body.destroy();
      throw new BadResponse(`answer is not the file: ${why}`, { ...this.ctx('GET', p), status: r.status });
    };
    const meta = r.headers['x-vboxx-metadata'] ?? r.headers['x-dropbox-metadata'];
    let rev: string | undefined;
    let metaBytes: number | undefined;
    if (typeof meta === 'string') {
      try {
        const j = JSON.parse(meta);
        if (j && (typeof j.rev === 'string' || typeof j.rev === 'number')) rev = String(j.rev);
        if (j && Number.isSafeInteger(j.bytes) && j.bytes >= 0) metaBytes = j.bytes;
      } catch { /* optional header */ }
    }
    const etag = typeof r.headers.etag === 'string' ? r.headers.etag : undefined;
    const version = etag ?? (rev !== undefined ? `rev:${rev}` : undefined);
    if (r.status !== 200 && r.status !== 206) refuse(`status ${r.status}`);
    if (version === undefined) refuse('no ETag and no metadata header');
    const clh = r.headers['content-length'];
    const cl = typeof clh === 'string' && /^\d+$/.test(clh.trim()) ? Number(clh) : undefined;
    let size: number | undefined;
    let end: number | undefined;
    if (r.status === 206) {
      const cr = r.headers['content-range'];
      const m = typeof cr === 'string' ? /^bytes\s+(\d+)-(\d+)\/(\d+)\s*$/.exec(cr) : null;
      // A 206 for other bytes than asked would be written at the wrong place.
      if (!m || Number(m[1]) !== off) refuse('ranged answer does not start at the requested offset');
      const last = Number(m![2]);
      size = Number(m![3]);
      if (last < off || last >= size) refuse(`impossible Content-Range ${String(cr)}`);
      if (o.length !== undefined && last > off + o.length - 1) refuse(`Content-Range ${String(cr)} beyond the requested range`);
      if (cl !== undefined && cl !== last - off + 1) refuse(`content-length ${cl} for Content-Range ${String(cr)}`);
      end = last + 1;
    } else {
      size = cl;
      end = cl;
    }
    if (metaBytes !== undefined && size !== undefined && metaBytes !== size) refuse(`${size} bytes served of a file of ${metaBytes}`);
    size ??= metaBytes;
    return {
      status: r.status, partial: r.status === 206, body: r.body, version: version!,
      ...(size !== undefined ? { size } : {}), ...(rev !== undefined ? { rev } : {}), ...(etag !== undefined ? { etag } : {}),
      ...(end !== undefined ? { end } : {}),
    };
  }

  /**
   * Bytes [offset, offset+length) of a file; fewer only at end of file, empty past it. A body
   * cut short is fetched again from where it stopped, when the server vouches (206 + same ETag)
   * that the bytes so far belong to the same version; otherwise from the start (bounded attempts).
   */
  async readRange(root: number | string, path: string, offset: number, length: number, o: Call = {}): Promise<Buffer> {
    let parts: Buffer[] = [];
    let got = 0;
    const r = await this.readTo(root, path, offset, length, (chunk, pos) => {
      // a run that starts over sends its bytes again from the offset
      if (pos === offset && got > 0) { parts = []; got = 0; }
      parts.push(chunk);
      got += chunk.length;
    }, o);
    return r.bytes === 0 ? Buffer.alloc(0) : Buffer.concat(parts, got);
  }

  /**
   * readRange streamed: each chunk goes to `sink` (with its file position) as it arrives and the
   * next is read only once the sink is done with it, so memory stays a few socket chunks per
   * request whatever the length. Resuming and starting over work as in readRange; a start-over
   * calls the sink again from `offset`. An error of the sink ends the read at once (no retry).
   * Resolves with the bytes delivered by the last run and the revision and size the server
   * served, so the caller can tell a file that changed under it.
   *
   * The sink only ever gets bytes of an answer openFile accepted as the file, at their place: a
   * cut answer's bytes up to the cut are the file's (the transport delivers them in order), so a
   * resume continues after them, and only with a 206 of the same version.
   */
  async readTo(root: number | string, path: string, offset: number, length: number,
    sink: (chunk: Buffer, pos: number, served: { rev?: string; size?: number }) => void | Promise<void>,
    o: Call = {}): Promise<{ bytes: number; rev?: string; size?: number }> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new BadRequest('invalid offset');
    if (!Number.isSafeInteger(length) || length < 0) throw new BadRequest('invalid length');
    if (length === 0) return { bytes: 0 };
    let got = 0;
    let version: string | undefined;
    let rev: string | undefined;
    let size: number | undefined;
    for (let attempt = 1; ; attempt++) {
      let sinkFailed = false;
      let sinkError: unknown;
      let openFailed = false;
      try {
        let r;
        try {
          r = await this.openFile(root, path, {
            offset: offset + got, length: length - got, signal: o.signal, priority: o.priority ?? Priority.interactive,
            ...(got > 0 && version?.startsWith('"') ? { ifRange: version } : {}),
          });
        } catch (e) {
          if (e instanceof RemoteError && e.code === 'RANGE_NOT_SATISFIABLE' && got === 0) return { bytes: 0 };
          // the HTTP layer already repeated what is worth repeating; only a refused body is tried again here
          if (!(e instanceof RemoteError && e.code === 'BAD_RESPONSE')) openFailed = true;
          throw e;
        }
        if (got > 0 && !continuesVersion(r, version, size)) got = 0;
        version = r.version;
        rev = r.rev;
        size = r.size;
        // A server that ignores Range answers 200 with the whole file: skip to the offset.
        const skip = r.partial ? 0 : offset + got;
        // the position after the last byte this answer promises and we want (unknown for a
        // whole answer without content-length: its clean end is the end of the file)
        const promised = r.end === undefined ? undefined : Math.min(offset + length, r.end);
        const served = { ...(r.rev !== undefined ? { rev: r.rev } : {}), ...(r.size !== undefined ? { size: r.size } : {}) };
        try {
          await drainBody(r.body, skip, (b) => {
            const want = length - got;
            if (b.length > want) b = b.subarray(0, want);
            const pos = offset + got;
            got += b.length;
            const more = got < length;
            const failed = (e: unknown) => { sinkFailed = true; sinkError = e; throw e; };
            let p: void | Promise<void>;
            try {
              p = sink(b, pos, served);
            } catch (e) {
              return failed(e);
            }
            return p ? p.then(() => more, failed) : more;
          });
        } finally {
          r.body.destroy();
        }
        // a body that ended (without a transport error) before what it promised was cut all the same
        if (promised !== undefined && offset + got < promised) {
          throw new RemoteError('NETWORK_ERROR', `answer ended at byte ${offset + got} of a range to ${promised}`, this.ctx('GET', '/1/files'), true);
        }
        return { bytes: got, ...(rev !== undefined ? { rev } : {}), ...(size !== undefined ? { size } : {}) };
      } catch (e) {
        if (sinkFailed) throw sinkError;
        if (o.signal?.aborted) throw new Cancelled('read cancelled', this.ctx('GET', '/1/files'));
        if (openFailed) throw e;
        if (e instanceof RemoteError && !e.retryable) throw e;
        if (attempt >= this.maxAttempts) {
          throw e instanceof RemoteError ? e : new RemoteError('NETWORK_ERROR', `read cut short: ${redactMsg(e)}`, this.ctx('GET', '/1/files'), true);
        }
        this.log.debug(`vboxx: ranged read cut short after ${got} bytes (${redactMsg(e)}), retrying`);
        await sleep(backoffDelay(attempt, this.backoffBaseMs), o.signal);
      }
    }
  }

  /**
   * Whole file into localFile (created or truncated), streamed: never whole in memory. A body
   * cut short resumes with Range + If-Range after the bytes already on disk when the server names
   * the version; when the file changed it starts over. Progress counts bytes written to the
   * file, never bytes still on their way to it (a resume starts after the last written byte).
   */
  async download(root: number | string, path: string, localFile: string, o: Transfer = {}): Promise<{ bytes: number; rev?: string }> {
    const fh = await open(localFile, 'w', 0o600);
    try {
      let written = 0;
      let rev: string | undefined;
      let version: string | undefined;
      let size: number | undefined;
      let reported = 0;
      for (let attempt = 1; ; attempt++) {
        if (o.signal?.aborted) throw new Cancelled('download cancelled', this.ctx('GET', '/1/files'));
        let openFailed = false;
        try {
          const r = await this.openFile(root, path, {
            offset: written, signal: o.signal, priority: o.priority ?? Priority.background,
            ...(written > 0 && version?.startsWith('"') ? { ifRange: version } : {}),
          }).catch((e) => {
            if (!(e instanceof RemoteError && e.code === 'BAD_RESPONSE')) openFailed = true;
            throw e;
          });
          if (written > 0 && !continuesVersion(r, version, size)) written = 0;
          version = r.version;
          rev = r.rev;
          size = r.size;
          const skip = r.partial ? 0 : written;
          try {
            await drainBody(r.body, skip, async (b) => {
              for (let n = 0; n < b.length;) n += (await fh.write(b, n, b.length - n, written + n)).bytesWritten;
              written += b.length;
              // Monotonic even when a retry starts over: report only new highs.
              if (written > reported) {
                reported = written;
                try { o.onProgress?.(written); } catch { /* progress callbacks must not break the transfer */ }
              }
              return true;
            });
          } finally {
            r.body.destroy();
          }
          if (size !== undefined && written !== size) throw new RemoteError('NETWORK_ERROR', `got ${written} of ${size} bytes`, this.ctx('GET', '/1/files'), true);
          // a start-over of a file that shrank leaves the old tail behind
          await fh.truncate(written);
          return { bytes: written, ...(rev !== undefined ? { rev } : {}) };
        } catch (e) {
          if (o.signal?.aborted) throw new Cancelled('download cancelled', this.ctx('GET', '/1/files'));
          if (openFailed || (e instanceof RemoteError && !e.retryable)) throw e;
          if (attempt >= this.maxAttempts) {
            throw e instanceof RemoteError ? e : new RemoteError('NETWORK_ERROR', `download cut short: ${redactMsg(e)}`, this.ctx('GET', '/1/files'), true);
          }
          this.log.debug(`vboxx: download cut short after ${written} bytes (${redactMsg(e)}), resuming`);
          await sleep(backoffDelay(attempt, this.backoffBaseMs), o.signal);
        }
      }
    } finally {
      await fh.close();
    }
  }

  /** PUT /1/files_put from a file (re-opened for every attempt) or a buffer. */
  async filesPut(root: number | string, path: string, source: string | Buffer, o: UploadOptions = {}): Promise<VboxxMetadata> {
    const p = `/1/files_put/${rootSeg(root)}/${relPath(path)}`;
    const size = typeof source === 'string' ? (await fsStat(source)).size : source.length;
    let best = 0;
    const progress = (n: number) => { if (n > best) { best = n; try { o.onProgress?.(n); } catch { /* ignore */ } } };
    // Exactly the bytes the content-length promises: a cache file that grew since (a writer goes
    // on; its next close uploads again) must not make every attempt fail on a length mismatch.
    // A file that shrank since (a program truncated it; its next close uploads again) fails the
    // attempt here, before anything is sent, as a retryable error the HTTP layer does not repeat:
    // repeating the same length could only fail again, while a rename or delete waits for us.
    // Bytes in memory (small files) go as they are: one write with the headers, where a stream
    // pair per upload cost the JS thread more than the file's own bytes. So does an empty file.
    const body = typeof source !== 'string' ? source : size === 0 ? Buffer.alloc(0) : () => {
      if (statSync(source).size < size) throw new NetworkError('the file changed while it was being uploaded', this.ctx('PUT', p));
      return countingStream(createReadStream(source, { start: 0, end: size - 1 }), progress);
    };
    const { data } = await this.getJson({
      onDispatch: o.onSend,
      method: 'PUT', path: p, body, headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      query: writeQuery(o),
      // Same bytes to the same path with overwrite: repeating is harmless.
      idempotent: o.overwrite !== false, signal: o.signal, priority: o.priority ?? Priority.background,
    });
    if (typeof source !== 'string') progress(size);
    return parseMetadata(data, this.ctx('PUT', p), this.log);
  }

  /** PUT /1/chunked_upload: one chunk at `offset`; returns the server's state. */
  async uploadChunk(chunk: Buffer, state: { upload_id?: string; offset: number }, o: Call = {}): Promise<ChunkState> {
    const path = '/1/chunked_upload';
    const { data } = await this.getJson({
      method: 'PUT', path, body: chunk, headers: { 'content-type': 'application/octet-stream' },
      query: { ...(state.upload_id ? { upload_id: state.upload_id } : {}), offset: state.offset },
      // A repeat of a chunk that did land gets an offset mismatch that tells us where to go on;
      // a repeat of the first one opens a fresh upload session, and the lost one is never committed.
      idempotent: true, signal: o.signal, priority: o.priority ?? Priority.background,
    });
    return parseChunkState(data, this.ctx('PUT', path));
  }

  /** POST /1/commit_chunked_upload/<root>/<path>. */
  async commitChunkedUpload(root: number | string, path: string, uploadId: string, o: UploadOptions & { expectBytes?: number } = {}): Promise<VboxxMetadata> {
    const p = `/1/commit_chunked_upload/${rootSeg(root)}/${relPath(path)}`;
    return this.mutate(async () => {
      const { data } = await this.getJson({
        onDispatch: o.onSend,
        // Query, not form: like files_put, the commit is addressed by path and its parameters are
        // plain (Dropbox v1 takes them either way; the reference server reads no body here).
        method: 'POST', path: p, query: { upload_id: uploadId, ...writeQuery(o) },
        signal: o.signal, priority: o.priority ?? Priority.background,
      });
      return parseMetadata(data, this.ctx('POST', p), this.log);
    }, async () => {
      // The upload id is gone when our earlier attempt committed it: accept the file if it is there.
      const m = await this.metadata(root, path, { list: false, signal: o.signal }).catch(() => null);
      if (m && !m.unchanged && !m.meta.is_dir && (o.expectBytes === undefined || m.meta.bytes === o.expectBytes)) return m.meta;
      return undefined;
    }, o.signal);
  }

  /**
   * Chunked upload of a file: chunks of chunkSize read from disk one at a time. A failed chunk is
   * resent from the offset the server reports, so a lost answer never duplicates bytes.
   */
  async chunkedUpload(root: number | string, path: string, localFile: string, o: UploadOptions = {}): Promise<VboxxMetadata> {
    const size = (await fsStat(localFile)).size;
    const fh = await open(localFile, 'r');
    try {
      let state: { upload_id?: string; offset: number } = { offset: 0 };
      let failures = 0;
      const buf = Buffer.allocUnsafe(Math.min(this.chunkSize, Math.max(1, size)));
      do {
        if (o.signal?.aborted) throw new Cancelled('upload cancelled', { path });
        const want = Math.min(this.chunkSize, size - state.offset);
        const { bytesRead } = await fh.read(buf, 0, want, state.offset);
        if (bytesRead !== want) throw new RemoteError('TRANSFER_FAILED', 'local file changed size during upload', { path }, false);
        try {
          const next = await this.uploadChunk(Buffer.from(buf.subarray(0, bytesRead)), state, o);
          if (state.upload_id && next.upload_id !== state.upload_id) throw new BadResponse('chunked upload id changed', { path });
          if (next.offset !== state.offset + bytesRead) throw new BadResponse(`chunked upload offset ${next.offset}, expected ${state.offset + bytesRead}`, { path });
          state = next;
          failures = 0;
          try { o.onProgress?.(state.offset); } catch { /* ignore */ }
        } catch (e) {
          const d = (e as DetailedError).details;
          if (e instanceof RemoteError && e.code === 'BAD_REQUEST' && d && typeof d.offset === 'number' && d.offset >= 0 && d.offset <= size) {
            // The server already has more (or less) than we thought: continue from its offset.
            this.log.debug(`vboxx: chunked upload resumes at server offset ${d.offset}`);
            state = { upload_id: typeof d.upload_id === 'string' ? d.upload_id : state.upload_id, offset: d.offset };
            if (++failures > this.maxAttempts) throw e;
            continue;
          }
          throw e;
        }
      } while (state.offset < size);
      if (!state.upload_id) throw new BadResponse('chunked upload returned no upload id', { path });
      return await this.commitChunkedUpload(root, path, state.upload_id, { ...o, expectBytes: size });
    } finally {
      await fh.close();
    }
  }

  /** files_put below the chunk threshold, chunked upload above it. */
  async upload(root: number | string, path: string, localFile: string, o: UploadOptions = {}): Promise<VboxxMetadata> {
    const size = (await fsStat(localFile)).size;
    if (size > this.chunkThreshold) return this.chunkedUpload(root, path, localFile, o);
    return this.filesPut(root, path, localFile, o);
  }

  // ---- fileops ----

  private fileop(op: 'create_folder' | 'delete' | 'move' | 'copy', form: Record<string, FormValue>, o: Call,
    reconcile: (err: RemoteError) => Promise<VboxxMetadata | undefined>, reconcileFirst = false): Promise<VboxxMetadata> {
    const p = `/1/fileops/${op}`;
    return this.mutate(async () => {
      const { data } = await this.getJson({ method: 'POST', path: p, form: cleanForm(form), signal: o.signal, priority: o.priority ?? Priority.interactive });
      return parseMetadata(data, this.ctx('POST', p), this.log);
    }, reconcile, o.signal, reconcileFirst);
  }

  private async metaOrNull(root: number | string, path: string, signal?: AbortSignal): Promise<VboxxMetadata | null> {
    try {
      const r = await this.metadata(root, path, { list: false, ...(signal ? { signal } : {}) });
      return r.unchanged ? null : r.meta;
    } catch (e) {
      if (e instanceof RemoteError && e.code === 'NOT_FOUND') return null;
      throw e;
    }
  }

  /**
   * Creates a folder; AlreadyExists when something is there. `existingOk`: a folder already there
   * is the answer (the drive's mkdir write-back: an upload into the pending folder made it), a file
   * there stays AlreadyExists, and nothing there after the server said it exists is a retryable
   * conflict, never a refusal on a guess.
   */
  createFolder(root: number | string, path: string, o: Call & { existingOk?: boolean } = {}): Promise<VboxxMetadata> {
    return this.fileop('create_folder', { root: rootSeg(root), path: '/' + relPathPlain(path) }, o, async (e) => {
      if (e.code !== 'ALREADY_EXISTS') return undefined;
      const m = await this.metaOrNull(root, path, o.signal);
      if (m?.is_dir) return m;
      if (o.existingOk && !m) {
        throw new RemoteError('CONFLICT', 'the server said the folder exists, then listed nothing there', { path }, true);
      }
      return undefined;
    }, o.existingOk);
  }

  /** Deletes a file or (recursively) a folder; NotFound when nothing is there. */
  delete(root: number | string, path: string, o: Call = {}): Promise<VboxxMetadata> {
    return this.fileop('delete', { root: rootSeg(root), path: '/' + relPathPlain(path) }, o, async (e) => {
      if (e.code !== 'NOT_FOUND') return undefined;
      return { path: '/' + relPathPlain(path), is_dir: false, bytes: 0, is_deleted: true };
    });
  }

  /** Moves within one root; AlreadyExists when the target exists, NotFound when the source is missing. */
  move(root: number | string, from: string, to: string, o: Call = {}): Promise<VboxxMetadata> {
    return this.fileop('move', { root: rootSeg(root), from_path: '/' + relPathPlain(from), to_path: '/' + relPathPlain(to) }, o, async (e) => {
      if (e.code !== 'NOT_FOUND') return undefined;
      // Source gone after a repeat: our first attempt moved it if the target is there now.
      return (await this.metaOrNull(root, to, o.signal)) ?? undefined;
    });
  }

  /** Copies within one root; AlreadyExists when the target exists. */
  copy(root: number | string, from: string, to: string, o: Call = {}): Promise<VboxxMetadata> {
    return this.fileop('copy', { root: rootSeg(root), from_path: '/' + relPathPlain(from), to_path: '/' + relPathPlain(to) }, o, async (e) => {
      if (e.code !== 'ALREADY_EXISTS') return undefined;
      const src = await this.metaOrNull(root, from, o.signal);
      const dst = await this.metaOrNull(root, to, o.signal);
      return src && dst && src.is_dir === dst.is_dir && src.bytes === dst.bytes ? dst : undefined;
    });
  }

  /** Share link of a root, folder or file. */
  async createLink(root: number | string, path: string, o: Call = {}): Promise<VboxxShareLink> {
    const p = `/1/shares/create_link/${rootSeg(root)}/${relPath(path)}`;
    // Creating a link twice yields two equally good links: safe to repeat.
    const { data } = await this.getJson({ method: 'POST', path: p, idempotent: true, signal: o.signal, priority: o.priority ?? Priority.interactive });
    return parseShareLink(data, this.ctx('POST', p));
  }

  // ---- management ----

  private async mgmtGet<T = Json>(path: string, o: Call): Promise<T> {
    const p = `/1/management/${path}`;
    const { data } = await this.getJson({ method: 'GET', path: p, signal: o.signal, priority: o.priority ?? Priority.interactive });
    return expectObject(data, path.split('/')[0] ?? 'answer', this.ctx('GET', p)) as T;
  }

  private async mgmtPost<T = CreateResult>(path: string, form: object, o: Call): Promise<T> {
    const p = `/1/management/${path}`;
    // Creations are not repeated on doubt (a second person/org would be created); updates are.
    const idempotent = /\/update\/$/.test('/' + path);
    // An update's null clears the field: the service shows unset fields as null or "" (policy
    // sample: "purge_deleted_frequency": ""), and a form can only carry that as an empty value.
    const fields = idempotent
      ? Object.fromEntries(Object.entries(form as Record<string, FormValue>).map(([k, v]) => [k, v === null ? '' : v]))
      : form as Record<string, FormValue>;
    const { data } = await this.getJson({ method: 'POST', path: p, form: cleanForm(fields), idempotent, signal: o.signal, priority: o.priority ?? Priority.interactive });
    const obj = expectObject(data, 'management answer', this.ctx('POST', p));
    if (typeof obj.code === 'string' && obj.code === 'error') {
      throw vboxxError('management', typeof obj.status_code === 'number' ? obj.status_code : 500, obj, this.ctx('POST', p));
    }
    return obj as T;
  }

  private async paged<T>(base: string, key: string, o: Call & PageOptions): Promise<Paged<T>> {
    const first = Math.max(1, Math.floor(o.page ?? 1));
    const url = (n: number) => (n === 1 && o.page === undefined ? base : `${base}page/${n}/`);
    const p0 = `/1/management/${url(first)}`;
    const pg = parsePaged<T>(await this.mgmtGet(url(first), o), key, this.ctx('GET', p0), this.log);
    if (!o.all) return pg;
    const items = [...pg.items];
    // Bounded by the page count of the first answer: a server that keeps inventing pages
    // cannot keep us looping.
    const last = Math.min(pg.total_pages, first + 100_000);
    for (let n = first + 1; n <= last; n++) {
      const next = parsePaged<T>(await this.mgmtGet(`${base}page/${n}/`, o), key, this.ctx('GET', `/1/management/${base}page/${n}/`), this.log);
      if (next.items.length === 0) break;
      items.push(...next.items);
    }
    return { items, page: first, total_pages: pg.total_pages, total: pg.total, raw: pg.raw };
  }

  /** The current user (/person/). */
  person(o: Call = {}): Promise<Person> { return this.mgmtGet<Person>('person/', o); }
  personById(id: number, o: Call = {}): Promise<Person> { return this.mgmtGet<Person>(`person/${idSeg(id)}/`, o); }
  personFull(id: number, o: Call = {}): Promise<PersonFull> { return this.mgmtGet<PersonFull>(`person/${idSeg(id)}/full/`, o); }
  createPerson(p: PersonCreate, o: Call = {}): Promise<CreateResult> { return this.mgmtPost('person/create/', p, o); }
  updatePerson(p: PersonUpdate, o: Call = {}): Promise<CreateResult> { return this.mgmtPost('person/update/', p, o); }

  organization(id: number, o: Call = {}): Promise<Organization> { return this.mgmtGet<Organization>(`organization/${idSeg(id)}/`, o); }
  createOrganization(p: OrganizationCreate, o: Call = {}): Promise<CreateResult> { return this.mgmtPost('organization/create/', p, o); }
  updateOrganization(p: OrganizationUpdate, o: Call = {}): Promise<CreateResult> { return this.mgmtPost('organization/update/', p, o); }
  /** Organizations, roots, machines or persons under an organization, 10 per page; `all` follows every page. */
  organizationList<T = Json>(id: number, kind: OrgSubList, o: Call & PageOptions = {}): Promise<Paged<T>> {
    if (!['organizations', 'roots', 'machines', 'persons'].includes(kind)) throw new BadRequest(`unknown list ${String(kind)}`);
    return this.paged<T>(`organization/${idSeg(id)}/${kind}/`, kind, o);
  }

  policy(id: number, o: Call = {}): Promise<VboxxPolicy> {
    return this.mgmtGet(`policy/${idSeg(id)}/`, o).then((d) => parsePolicy(d, this.ctx('GET', `/1/management/policy/${id}/`)));
  }
  updatePolicy(p: PolicyUpdate, o: Call = {}): Promise<CreateResult> { return this.mgmtPost('policy/update/', p, o); }

  root(id: number, o: Call = {}): Promise<Root> { return this.mgmtGet<Root>(`root/${idSeg(id)}/`, o); }
  createRoot(p: RootCreate, o: Call = {}): Promise<CreateResult> { return this.mgmtPost('root/create/', p, o); }
  updateRoot(p: RootUpdate, o: Call = {}): Promise<CreateResult> { return this.mgmtPost('root/update/', p, o); }

  machine(id: number, o: Call = {}): Promise<Machine> { return this.mgmtGet<Machine>(`machine/${idSeg(id)}/`, o); }
  updateMachine(p: MachineUpdate, o: Call = {}): Promise<CreateResult> { return this.mgmtPost('machine/update/', p, o); }

  async activityTypes(o: Call = {}): Promise<ActivityType[]> {
    const p = '/1/management/activity/types/';
    const { data } = await this.getJson({ method: 'GET', path: p, signal: o.signal, priority: o.priority ?? Priority.interactive });
    if (!Array.isArray(data)) throw new BadResponse('malformed server answer: activity types is not an array', this.ctx('GET', p));
    return data.filter((t): t is ActivityType => isObj(t) && typeof t.id === 'number' && typeof t.activity === 'string');
  }
  activities(entity: ActivityEntity, id: number, o: Call & PageOptions = {}): Promise<Paged<Activity>> {
    if (entity !== 'organization' && entity !== 'person') throw new BadRequest(`unknown entity type ${String(entity)}`);
    return this.paged<Activity>(`activity/${entity}/${idSeg(id)}/`, 'activities', o);
  }
  activity(id: number, o: Call = {}): Promise<Activity> { return this.mgmtGet<Activity>(`activity/${idSeg(id)}/`, o); }
  createActivity(p: ActivityCreate, o: Call = {}): Promise<CreateResult> { return this.mgmtPost('activity/create/', p, o); }
}

/**
 * A resumed answer continues the bytes received so far only when it is the rest of the same
 * version: a 206 with the version and total size of the earlier answer. Anything else starts over.
 */
function continuesVersion(r: { partial: boolean; version?: string; size?: number }, version: string | undefined, size: number | undefined): boolean {
  return r.partial && r.version === version && (size === undefined || r.size === size);
}

function redactMsg(e: unknown): string {
  return redact(String((e as Error)?.message ?? e)).slice(0, 200);
}

function idSeg(id: number): string {
  if (!Number.isSafeInteger(id) || id < 0) throw new BadRequest(`invalid id ${String(id).slice(0, 20)}`);
  return String(id);
}

/** Root-relative path as plain text for form fields ("a b/c", no leading slash). */
function relPathPlain(path: string): string {
  if (typeof path !== 'string' || path.includes('\0')) throw new BadRequest('invalid path');
  const parts = path.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.includes('..')) throw new BadRequest('path traversal refused');
  return parts.join('/');
}

function countingStream(src: Readable, progress: (n: number) => void): Readable {
  let n = 0;
  const t = new Transform({ transform(chunk: Buffer, _e, cb) { n += chunk.length; progress(n); cb(null, chunk); } });
  src.on('error', (e) => t.destroy(e));
  t.on('close', () => { if (!src.destroyed) src.destroy(); });
  return src.pipe(t);
}

/**
 * The body's bytes after the first `skip` (what a server that ignores Range sends first), to
 * onChunk as they arrive: events, not an async iterator (measured on 512 MiB in 64 KiB chunks:
 * 0.15-0.2 s less CPU than for-await through a generator, on the thread that also answers the
 * kernel). onChunk answers whether to go on (false: enough, the caller destroys the body), or a
 * promise of that: the body is paused until it settles, so memory holds what the sink has not
 * taken, never more. Settles at the end of the body (after onChunk's last promise), with the
 * body's error, or with onChunk's (thrown or rejected).
 */
function drainBody(body: Readable, skip: number, onChunk: (b: Buffer) => boolean | Promise<boolean>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let done = false;
    // onChunk's promise not settled yet: the body's error or close waits for it, so a caller that
    // goes on after an error (a resume from the bytes taken) never has two onChunk calls at once
    let waiting = false;
    let deferred: { err: unknown } | undefined;
    // the body ended while onChunk's promise was pending: settled once it is (the last chunk's
    // write must be done when this resolves, as with for-await)
    let ended = false;
    const finish = (err?: unknown) => {
      if (done) return;
      done = true;
      body.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      if (err === undefined) resolve(); else reject(err);
    };
    const failBody = (err: unknown) => {
      if (waiting) deferred ??= { err };
      else finish(err);
    };
    const onData = (c: Buffer) => {
      if (done) return;
      let b = c;
      if (skip > 0) {
        if (b.length <= skip) { skip -= b.length; return; }
        b = b.subarray(skip);
        skip = 0;
      }
      let r: boolean | Promise<boolean>;
      try {
        r = onChunk(b);
      } catch (e) {
        finish(e);
        return;
      }
      if (r === true) return;
      if (r === false) { finish(); return; }
      body.pause();
      waiting = true;
      r.then((more) => {
        waiting = false;
        if (deferred) finish(deferred.err);
        else if (!more || ended) finish();
        else if (!done) body.resume();
      }, (e) => { waiting = false; finish(e); });
    };
    const onEnd = () => {
      ended = true;
      if (!waiting) finish();
    };
    const onError = (e: unknown) => failBody(e ?? new Error('response body failed'));
    // (a body destroyed without an error before its end: cut short, as for-await would say)
    const onClose = () => { if (!ended) failBody(Object.assign(new Error('response body closed before its end'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })); };
    body.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

