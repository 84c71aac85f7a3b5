// Typed client of the Maxxo REST API (shared/specs/maxxo-api.txt), one method per endpoint.
// Paths are Maxxo paths: relative to the user's top folder ("a/b.txt"; "/" or "" = the top).
// Errors are the classes of errors.ts by Maxxo `error` code; 202 answers that list per-id
// failures are returned, not thrown. The token and password live in private fields only.
import { readFile, stat as fsStat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { extname, basename } from 'node:path';
import { HttpClient, type RequestSpec } from '../http.js';
import { BadResponse, RemoteError, type ErrorContext } from '../../errors.js';
import { InvalidPhoto, maxxoError } from './errors.js';
import { Priority } from '../types.js';
import type { ClientOptions } from '../options.js';
import { silentLogger, type Logger } from '../../log.js';

export interface MaxxoListRow { file: string; size: number; type: 'f' | 'd' }
/** size -1 = does not exist; `type` when the server says (the reference server does). */
export interface MaxxoSizeRow { file: string; size: number; type?: 'f' | 'd' }
export interface MaxxoSlice {
  ip: string;
  login: string;
  /** Cloudstore (rsync) password: non-enumerable, so it never shows in JSON or inspect output. */
  readonly rsync: string;
  tracker?: string;
  /** rsync daemon port (873 unless the server says rsync_port). */
  port: number;
}
export interface MaxxoSendSource { path: string; files: string[]; folder?: boolean }
export interface MaxxoContact { fullname: string; email: string; photo: string }
export interface MaxxoQuota { quota: number; normal: number; receiving_quota: number; received: number }
export interface MaxxoSettings {
  email: string; fullname: string; photo: string; accept_all: boolean; package: string; storage: number;
}
export interface MaxxoSettingsUpdate {
  fullname?: string;
  /** Not in the spec's parameter list but in its error list (INVALID_EMAIL, EMAIL_ALREADY_EXIST). */
  email?: string;
  currentPassword?: string;
  newPassword?: string;
  acceptAll?: boolean;
}
export interface MaxxoNotification { id: number; type: string; email: string }
export interface MaxxoInboxMessage {
  id: number; type: string; size: number; destination: string; timestamp: string;
  sender_name: string; sender_email: string;
}
/** One failed id of a partial (202) answer. */
export interface MaxxoIdError { id: number | string | null; error: string }

export interface MaxxoCallOptions { signal?: AbortSignal; priority?: number }

/** filesize rows per request: keeps forms small while batching well. */
const FILESIZE_BATCH = 200;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number | undefined => {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && /^-?\d+(\.\d+)?$/.test(v.trim())) return Number(v);
  return undefined;
};
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
/** A byte count (or -1, "no such file"): 0.5, 1e300 or 2^64 would reach stat(2) and offsets unchanged. */
const sizeNum = (v: unknown): number | undefined => {
  const n = num(v);
  return n !== undefined && Number.isSafeInteger(n) && n >= -1 ? n : undefined;
};

export class MaxxoClient {
  readonly http: HttpClient;
  readonly log: Logger;
  readonly email: string;
  /** Successful logins so far (diagnostics: MaxxoRemote.counters()). */
  logins = 0;
  #password: string;
  #token?: string;
  #login?: Promise<void>;

  constructor(opts: ClientOptions) {
    this.email = opts.user;
    this.#password = opts.password;
    this.log = opts.log ?? silentLogger;
    this.http = new HttpClient({
      baseUrl: opts.server.replace(/\/+$/, '') + '/api/1',
      concurrency: opts.concurrency,
      rateLimit: opts.rateLimit,
      timeoutMs: opts.timeoutMs,
      maxAttempts: opts.maxAttempts,
      maxRetryTimeMs: opts.maxRetryTimeMs,
      ca: opts.ca,
      log: this.log,
    });
    this.http.mapError = (status, data, ctx) => {
      const code = isObj(data) ? str(data.error) : undefined;
      return code ? maxxoError(code, ctx) : undefined;
    };
    this.http.auth = {
      apply: async (spec) => {
        if (!this.#token) await this.login();
        return { ...spec, headers: { ...spec.headers, token: this.#token! } };
      },
      refresh: async () => {
        this.#token = undefined;
        await this.login();
      },
      isAuthFailure: (status, data) => status === 401 || (isObj(data) && data.error === 'NO_PERMISSION'),
    };
  }

  toString(): string { return `MaxxoClient(${this.http.origin})`; }
  toJSON(): unknown { return { kind: 'maxxo', server: this.http.origin }; }

  /** GET /auth/token. Concurrent callers share one login; AUTH_FAILED is thrown, never retried. */
  login(opts: MaxxoCallOptions = {}): Promise<void> {
    if (!this.#login) {
      this.#login = (async () => {
        try {
          const r = await this.http.json<unknown>({
            method: 'GET', path: '/auth/token', query: { email: this.email, password: this.#password },
            noAuth: true, priority: Priority.interactive + 1, signal: opts.signal,
          });
          const data = this.body(r.data, r.status, 'GET', '/auth/token');
          const token = isObj(data) ? str(data.token) : undefined;
          if (!token) throw new BadResponse('login answer without a token', this.ctx('GET', '/auth/token', r.status));
          this.#token = token;
          this.logins++;
          this.log.debug('maxxo: logged in');
        } finally {
          this.#login = undefined;
        }
      })();
    }
    return this.#login;
  }

  /** True once a token is held (login happened and was not yet invalidated). */
  get loggedIn(): boolean { return this.#token !== undefined; }

  // ---- files ----

  async list(path: string, o: MaxxoCallOptions = {}): Promise<MaxxoListRow[]> {
    const data = await this.call<unknown>({ method: 'GET', path: '/ops/list', query: { path }, ...o });
    const rows = this.array(data, 'GET', '/ops/list');
    const out: MaxxoListRow[] = [];
    for (const r of rows) {
      const file = isObj(r) ? str(r.file) : undefined;
      const size = isObj(r) ? sizeNum(r.size) : undefined;
      const type = isObj(r) ? r.type : undefined;
      if (file === undefined || size === undefined || (type !== 'f' && type !== 'd')) {
        this.log.warn('maxxo: ops/list row with wrong types dropped');
        continue;
      }
      out.push({ file, size, type });
    }
    return out;
  }

  /** POST /ops/filesize in batches; rows in the order asked. */
  async filesize(paths: string[], o: MaxxoCallOptions = {}): Promise<MaxxoSizeRow[]> {
    const out: MaxxoSizeRow[] = [];
    const batches: string[][] = [];
    for (let i = 0; i < paths.length; i += FILESIZE_BATCH) batches.push(paths.slice(i, i + FILESIZE_BATCH));
    const results = await Promise.all(batches.map((b) => this.filesizeBatch(b, o)));
    for (const r of results) out.push(...r);
    return out;
  }

  private async filesizeBatch(paths: string[], o: MaxxoCallOptions): Promise<MaxxoSizeRow[]> {
    const data = await this.call<unknown>({ method: 'POST', path: '/ops/filesize', form: { 'files[]': paths }, idempotent: true, ...o });
    const rows = this.array(data, 'POST', '/ops/filesize');
    const parsed: MaxxoSizeRow[] = [];
    for (const r of rows) {
      const file = isObj(r) ? str(r.file) : undefined;
      const size = isObj(r) ? sizeNum(r.size) : undefined;
      if (file === undefined || size === undefined) throw new BadResponse('ops/filesize row with wrong types', this.ctx('POST', '/ops/filesize'));
      const type = isObj(r) && (r.type === 'f' || r.type === 'd') ? r.type : undefined;
      parsed.push(type ? { file, size, type } : { file, size });
    }
    // Rows are matched by name, falling back to position when the server normalizes names.
    const byFile = new Map(parsed.map((r) => [r.file, r]));
    return paths.map((p, i) => {
      const r = byFile.get(p) ?? (parsed.length === paths.length ? parsed[i] : undefined);
      if (!r) throw new BadResponse('ops/filesize answer does not match the request', this.ctx('POST', '/ops/filesize'));
      return { ...r, file: p };
    });
  }

  async move(source: string, destination: string, o: MaxxoCallOptions = {}): Promise<void> {
    await this.call({ method: 'POST', path: '/ops/move', form: { source, destination }, ...o });
  }

  async delete(paths: string[], o: MaxxoCallOptions = {}): Promise<void> {
    await this.call({ method: 'POST', path: '/ops/delete', form: { 'file[]': paths }, ...o });
  }

  async send(source: MaxxoSendSource[], to: string, o: MaxxoCallOptions = {}): Promise<void> {
    const src = source.map((s) => (s.folder ? { path: s.path, files: s.files, folder: true } : { path: s.path, files: s.files }));
    await this.call({ method: 'POST', path: '/ops/send', form: { source: JSON.stringify(src), to }, ...o });
  }

  async slice(o: MaxxoCallOptions = {}): Promise<MaxxoSlice> {
    const data = await this.call<unknown>({ method: 'GET', path: '/slice', ...o });
    const ip = isObj(data) ? str(data.ip) : undefined;
    const login = isObj(data) ? str(data.login) : undefined;
    const rsync = isObj(data) ? str(data.rsync) : undefined;
    const port = isObj(data) && data.rsync_port !== undefined ? num(data.rsync_port) : 873;
    if (!ip || !login || rsync === undefined || port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw new BadResponse('slice answer with wrong types', this.ctx('GET', '/slice'));
    }
    const out = { ip, login, port, tracker: isObj(data) ? str(data.tracker) : undefined } as MaxxoSlice;
    Object.defineProperty(out, 'rsync', { value: rsync, enumerable: false });
    return out;
  }

  // ---- contacts ----

  /** Adds contacts. `alreadyContact` when the server answered ALREADY_CONTACT (202): the others were added. */
  async contactsAdd(emails: string[], o: MaxxoCallOptions = {}): Promise<{ alreadyContact: boolean }> {
    try {
      await this.call({ method: 'POST', path: '/contacts/add', form: { 'email[]': emails }, idempotent: true, ...o });
      return { alreadyContact: false };
    } catch (e) {
      if (e instanceof RemoteError && e.code === 'ALREADY_CONTACT') return { alreadyContact: true };
      throw e;
    }
  }

  async contactsList(filter?: string, o: MaxxoCallOptions = {}): Promise<MaxxoContact[]> {
    const data = await this.call<unknown>({ method: 'GET', path: '/contacts/list', query: { filter }, ...o });
    return this.array(data, 'GET', '/contacts/list').flatMap((r) => {
      const c = isObj(r) ? { fullname: str(r.fullname) ?? '', email: str(r.email), photo: str(r.photo) ?? '' } : undefined;
      if (!c || c.email === undefined) { this.log.warn('maxxo: contact row with wrong types dropped'); return []; }
      return [c as MaxxoContact];
    });
  }

  async contactsRemove(email: string, o: MaxxoCallOptions = {}): Promise<void> {
    await this.call({ method: 'POST', path: '/contacts/remove', form: { email }, ...o });
  }

  // ---- account ----

  async quota(o: MaxxoCallOptions = {}): Promise<MaxxoQuota> {
    const d = await this.call<unknown>({ method: 'GET', path: '/account/quota', ...o });
    const q = isObj(d) ? { quota: num(d.quota), normal: num(d.normal), receiving_quota: num(d.receiving_quota), received: num(d.received) } : undefined;
    if (!q || q.quota === undefined || q.normal === undefined) throw new BadResponse('quota answer with wrong types', this.ctx('GET', '/account/quota'));
    return { quota: q.quota, normal: q.normal, receiving_quota: q.receiving_quota ?? 0, received: q.received ?? 0 };
  }

  async settingsList(o: MaxxoCallOptions = {}): Promise<MaxxoSettings> {
    const d = await this.call<unknown>({ method: 'GET', path: '/settings/list', ...o });
    if (!isObj(d) || typeof d.email !== 'string') throw new BadResponse('settings answer with wrong types', this.ctx('GET', '/settings/list'));
    const aa = d.accept_all;
    return {
      email: d.email, fullname: str(d.fullname) ?? '', photo: str(d.photo) ?? '',
      accept_all: aa === true || aa === 1 || aa === '1' || aa === 'true',
      package: str(d.package) ?? '', storage: num(d.storage) ?? 0,
    };
  }

  /** A successful password change also becomes this client's password for later re-logins. */
  async settingsUpdate(u: MaxxoSettingsUpdate, o: MaxxoCallOptions = {}): Promise<void> {
    const form: Record<string, string> = {};
    if (u.fullname !== undefined) form.fullname = u.fullname;
    if (u.email !== undefined) form.email = u.email;
    if (u.currentPassword !== undefined) form.current_password = u.currentPassword;
    if (u.newPassword !== undefined) form.new_password = u.newPassword;
    if (u.acceptAll !== undefined) form.accept_all = u.acceptAll ? '1' : '0';
    // Repeating a password change would fail on the now-old current password: not idempotent then.
    await this.call({ method: 'POST', path: '/settings/update', form, idempotent: u.newPassword === undefined, ...o });
    if (u.newPassword !== undefined) this.#password = u.newPassword;
  }

  /** Uploads a PNG/JPEG from a local file as multipart field `photo`. Returns the photo URL when the server gives one. */
  async photoUpdate(file: string, o: MaxxoCallOptions = {}): Promise<{ photo?: string }> {
    const st = await fsStat(file);
    // The server refuses more than 2 MB anyway; never read a huge file into memory for it.
    if (!st.isFile() || st.size > 2 * 1024 * 1024) throw new InvalidPhoto('photo must be a PNG or JPEG file of at most 2 MB', { path: '/user-photo/update' });
    const data = await readFile(file);
    const ext = extname(file).toLowerCase();
    const type = ext === '.png' ? 'image/png' : ext === '.jpg' || ext === '.jpeg' ? 'image/jpeg' : 'application/octet-stream';
    const boundary = `----cloudmount${randomBytes(12).toString('hex')}`;
    const name = basename(file).replace(/["\r\n\\]/g, '_');
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="photo"; filename="${name}"\r\nContent-Type: ${type}\r\n\r\n`),
      data,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const d = await this.call<unknown>({
      method: 'POST', path: '/user-photo/update', body, idempotent: true,
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, ...o,
    });
    return { photo: isObj(d) ? str(d.photo) : undefined };
  }

  async photoRemove(o: MaxxoCallOptions = {}): Promise<void> {
    await this.call({ method: 'POST', path: '/user-photo/remove', idempotent: true, ...o });
  }

  // ---- notifications, invite, inbox ----

  async notificationsList(o: MaxxoCallOptions = {}): Promise<MaxxoNotification[]> {
    const data = await this.call<unknown>({ method: 'GET', path: '/notifications/list', ...o });
    return this.array(data, 'GET', '/notifications/list').flatMap((r) => {
      const id = isObj(r) ? num(r.id) : undefined;
      if (!isObj(r) || id === undefined) { this.log.warn('maxxo: notification row with wrong types dropped'); return []; }
      return [{ id, type: str(r.type) ?? '', email: str(r.email) ?? '' }];
    });
  }

  /** Marks notifications read; returns the ids that failed (202), empty when all succeeded. */
  async notificationsUpdate(ids: number[], o: MaxxoCallOptions = {}): Promise<MaxxoIdError[]> {
    const data = await this.call<unknown>({ method: 'POST', path: '/notifications/update', form: { 'id[]': ids.map(String) }, ...o });
    return this.idErrors(data, 'POST', '/notifications/update');
  }

  async invite(emails: string[], o: MaxxoCallOptions = {}): Promise<void> {
    await this.call({ method: 'POST', path: '/invite', form: { 'email[]': emails }, ...o });
  }

  async inboxList(o: MaxxoCallOptions = {}): Promise<MaxxoInboxMessage[]> {
    const data = await this.call<unknown>({ method: 'GET', path: '/inbox/list', ...o });
    return this.array(data, 'GET', '/inbox/list').flatMap((r) => {
      const id = isObj(r) ? num(r.id) : undefined;
      if (!isObj(r) || id === undefined || typeof r.destination !== 'string') {
        this.log.warn('maxxo: inbox row with wrong types dropped');
        return [];
      }
      return [{
        id, type: str(r.type) ?? '', size: num(r.size) ?? 0, destination: r.destination, timestamp: str(r.timestamp) ?? '',
        sender_name: str(r.sender_name) ?? '', sender_email: str(r.sender_email) ?? '',
      }];
    });
  }

  /** Accepts (true) or declines (false) sent files; returns the messages that failed (202). */
  async inboxUpdate(messages: Array<{ id: number; accept: boolean }>, o: MaxxoCallOptions = {}): Promise<MaxxoIdError[]> {
    const m = messages.map((x) => ({ id: x.id, accept: x.accept ? 'YES' : 'NO' }));
    const data = await this.call<unknown>({ method: 'POST', path: '/inbox/update', form: { messages: JSON.stringify(m) }, ...o });
    return this.idErrors(data, 'POST', '/inbox/update');
  }

  async close(): Promise<void> {
    this.#token = undefined;
    await this.http.close();
  }

  // ---- plumbing ----

  private async call<T>(spec: RequestSpec & MaxxoCallOptions): Promise<T> {
    const r = await this.http.json<T>(spec);
    return this.body(r.data, r.status, spec.method, spec.path) as T;
  }

  /** An `{error}` object in a success answer (e.g. ALREADY_CONTACT with 202) is still that error. */
  private body(data: unknown, status: number, method: string, path: string): unknown {
    if (isObj(data) && typeof data.error === 'string') throw maxxoError(data.error, this.ctx(method, path, status));
    return data;
  }

  private array(data: unknown, method: string, path: string): unknown[] {
    if (!Array.isArray(data)) throw new BadResponse('expected a JSON array', this.ctx(method, path));
    return data;
  }

  private idErrors(data: unknown, method: string, path: string): MaxxoIdError[] {
    if (data === null || (isObj(data) && Object.keys(data).length === 0)) return [];
    return this.array(data, method, path).flatMap((r) => {
      if (!isObj(r) || typeof r.error !== 'string') { this.log.warn('maxxo: failure row with wrong types dropped'); return []; }
      const id = typeof r.id === 'number' || typeof r.id === 'string' ? r.id : null;
      return [{ id, error: r.error }];
    });
  }

  private ctx(method: string, path: string, status?: number): ErrorContext {
    return { method, path: this.http.prefix + path, status };
  }
}
