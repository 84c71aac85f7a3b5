// Seeded generators of adversarial server answers, and fake Maxxo / vBoxx servers built from them.
// Every answer is derived from a valid template and then mutated: wrong types, huge and negative
// sizes, names with '/', NUL, '.', '..', 10,000-character names, duplicate names, broken JSON,
// wrong statuses, and listings that change on every call.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { prng, type Rng } from '../helpers/random.js';
export { prng, type Rng };

export const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

export const HOSTILE_NAMES = [
  '..', '.', '', '/', '../escape', '../../etc/passwd', 'a/b', 'a\u0000b', '\u0000', 'x'.repeat(10_000), 'y'.repeat(256),
  'dup.txt', 'dup.txt', ' ', 'new\nline', 'tab\tname', '\u202etxt.exe', 'ünïcødé ✓', '%2e%2e', '%2F', '..\\..\\win', 'CON',
  '-rf', '--delete', '*', '[a]', '~', '$HOME', '`id`', 'name;rm -rf /',
] as const;

export const HOSTILE_NUMBERS = [
  -1, -1e18, 2 ** 53, 2 ** 64, 1e300, Infinity, -Infinity, 0.5, -0, Number.MAX_SAFE_INTEGER, 1e15,
] as const;

/** A hostile value of any type. */
export function hostileValue(r: Rng): unknown {
  switch (Math.floor(r() * 10)) {
    case 0: return pick(r, HOSTILE_NAMES);
    case 1: return pick(r, HOSTILE_NUMBERS);
    case 2: return null;
    case 3: return [];
    case 4: return {};
    case 5: return r() < 0.5;
    case 6: return String(pick(r, HOSTILE_NUMBERS));
    case 7: return { nested: { deep: [1, 'two', null] } };
    case 8: return 'x'.repeat(Math.floor(r() * 20_000));
    default: return undefined;
  }
}

/** Recursively replaces parts of a valid value with hostile ones (probability p per node). */
export function mutate(v: unknown, r: Rng, p: number): unknown {
  if (r() < p) return hostileValue(r);
  if (Array.isArray(v)) {
    const out = v.map((x) => mutate(x, r, p));
    if (r() < p && out.length) out.push(out[Math.floor(r() * out.length)]); // duplicate entry
    if (r() < p / 2) out.push(hostileValue(r));
    return out;
  }
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (r() < p / 3) continue; // field missing
      out[k] = mutate(x, r, p);
    }
    // An own "__proto__" key (JSON.parse makes it a plain property): prototype pollution bait.
    if (r() < p / 3) Object.defineProperty(out, '__proto__', { value: { polluted: true }, enumerable: true });
    return out;
  }
  return v;
}

/** A name for a listing entry: mostly plain, often hostile. */
export function entryName(r: Rng, i: number): string {
  return r() < 0.5 ? `file-${i}.txt` : pick(r, HOSTILE_NAMES);
}

export function entrySize(r: Rng): unknown {
  return r() < 0.6 ? Math.floor(r() * 5000) : pick(r, [...HOSTILE_NUMBERS, '123', null, 'big']);
}

export interface Answer { status: number; headers?: Record<string, string>; body: string | Buffer }

/** Structural damage to an answer: broken JSON, wrong status, wrong content type, huge body. */
export function damage(a: Answer, r: Rng): Answer {
  const x = r();
  if (x < 0.05) return { status: 200, body: String(a.body).slice(0, Math.floor(String(a.body).length / 2)) };
  if (x < 0.08) return { status: 200, headers: { 'content-type': 'text/html' }, body: '<html>proxy error</html>' };
  if (x < 0.10) return { status: pick(r, [204, 301, 302, 400, 402, 404, 409, 418, 500, 507]), body: '' };
  if (x < 0.12) return { status: 200, body: 'null' };
  if (x < 0.13) return { status: 200, body: JSON.stringify({ junk: 'x'.repeat(3_000_000) }) };
  return a;
}

export interface FakeServer { url: string; requests: number; close(): Promise<void> }

/** An HTTP server answering every request with handler(method, path, rng); seeded per server. */
export async function fakeServer(seed: number, handler: (method: string, url: string, r: Rng, body: Buffer) => Answer): Promise<FakeServer> {
  const r = prng(seed);
  let requests = 0;
  const srv: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => { if (chunks.length < 1000) chunks.push(c); });
    req.on('end', () => {
      requests++;
      let a: Answer;
      try {
        a = handler(req.method ?? 'GET', req.url ?? '/', r, Buffer.concat(chunks));
      } catch (e) {
        a = { status: 500, body: String(e) };
      }
      try {
        res.writeHead(a.status, { 'content-type': 'application/json', ...(a.headers ?? {}) });
        res.end(a.body);
      } catch {
        res.destroy();
      }
    });
  });
  await new Promise<void>((res) => srv.listen(0, '127.0.0.1', () => res()));
  return {
    url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`,
    get requests() { return requests; },
    close: () => new Promise<void>((res) => { srv.closeAllConnections(); srv.close(() => res()); }),
  };
}

/** vBoxx: auth works (mostly), everything else is a mutated template. */
export function vboxxHandler(p = 0.15) {
  return (method: string, url: string, r: Rng): Answer => {
    const path = decodeURIComponent(url.split('?')[0]!.replace(/%(?![0-9a-fA-F]{2})/g, '%25'));
    const j = (o: unknown, status = 200): Answer => damage({ status, body: JSON.stringify(o) ?? 'null' }, r);
    if (path.startsWith('/1/auth')) return { status: 200, body: JSON.stringify({ success: true, session_token: 'fuzz-token-0123456789' }) };
    if (path.startsWith('/1/account/info')) {
      return j(mutate({ space_usage: 10, space_quota: 1e9, roots: [{ id: 1, name: 'Files' }, { id: 2, name: pick(r, HOSTILE_NAMES) }] }, r, p / 2));
    }
    if (path.startsWith('/1/metadata/')) {
      const rel = path.replace(/^\/1\/metadata\/[^/]+/, '') || '/';
      const n = Math.floor(r() * 12);
      const contents = Array.from({ length: n }, (_, i) => ({
        path: `${rel === '/' ? '' : rel}/${entryName(r, i)}`,
        is_dir: r() < 0.3,
        bytes: entrySize(r),
        rev: String(Math.floor(r() * 1e6)),
        modified_unix_timestamp: r() < 0.8 ? 1_700_000_000 : pick(r, HOSTILE_NUMBERS),
      }));
      const isDir = rel === '/' || !/\.txt$/.test(rel) || r() < 0.2;
      return j(mutate({ path: rel, is_dir: isDir, bytes: isDir ? 0 : entrySize(r), hash: `h${Math.floor(r() * 1e9)}`, rev: '1', contents: isDir ? contents : undefined }, r, p));
    }
    if (path.startsWith('/1/files/')) {
      const len = Math.floor(r() * 10_000);
      const x = r();
      if (x < 0.3) return { status: 206, headers: { 'content-range': pick(r, ['bytes 0-9/10', 'bytes 5-2/1', 'bytes */-1', 'garbage', `bytes 0-${len - 1}/${len}`]) }, body: Buffer.alloc(len, 0x61) };
      if (x < 0.5) return { status: 416, body: '' };
      return { status: 200, headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(len, 0x62) };
    }
    if (path.startsWith('/1/files_put/') || path.startsWith('/1/commit_chunked_upload/') || path.startsWith('/1/fileops/')) {
      return j(mutate({ path: '/' + pick(r, HOSTILE_NAMES), is_dir: false, bytes: entrySize(r), rev: '2' }, r, p));
    }
    if (path.startsWith('/1/chunked_upload')) return j(mutate({ upload_id: 'u1', offset: 0, expires: 'soon' }, r, p));
    if (path.startsWith('/1/management/policy')) return j(mutate({ id: 1, space_quota: null, max_file_size: '', excluded_extensions: '' }, r, p));
    if (path.startsWith('/1/management/person')) return j(mutate({ id: 1, company_id: 1, policy_id: 1 }, r, p));
    if (path.startsWith('/1/management/organization')) return j(mutate({ id: 1, policy_id: 1 }, r, p));
    return j({ status_code: 404, message: 'nope', code: 'error' }, 404);
  };
}

/** Maxxo: auth works, ops/list, ops/filesize, quota, slice and writes are mutated templates. */
export function maxxoHandler(p = 0.15) {
  return (method: string, url: string, r: Rng): Answer => {
    const path = url.split('?')[0]!;
    const j = (o: unknown, status = 200): Answer => damage({ status, body: JSON.stringify(o) ?? 'null' }, r);
    if (path === '/api/1/auth/token') return { status: 200, body: JSON.stringify({ token: 'fuzz-token-abcdef0123' }) };
    if (path === '/api/1/ops/list') {
      const n = Math.floor(r() * 12);
      return j(mutate(Array.from({ length: n }, (_, i) => ({ file: entryName(r, i), size: entrySize(r), type: r() < 0.3 ? 'd' : 'f' })), r, p));
    }
    if (path === '/api/1/ops/filesize') {
      return j(mutate(Array.from({ length: 1 + Math.floor(r() * 3) }, () => (r() < 0.7 ? entrySize(r) : -1)), r, p));
    }
    if (path === '/api/1/account/quota') return j(mutate({ quota: 1e9, normal: 1000, receiving_quota: 1e9, received: 0 }, r, p));
    if (path === '/api/1/slice') {
      return j(mutate({ ip: pick(r, ['127.0.0.1', '-e sh', 'a b', '::1', 'x/y', '127.0.0.1@evil']), login: pick(r, ['demo', '../x', '-rf', 'a@b', 'ok_login']), rsync: 'pw', rsync_port: 1 }, r, p));
    }
    if (path.startsWith('/api/1/ops/')) return j(mutate({ success: true }, r, p));
    return j({ error: 'METHOD_NOT_FOUND' }, 404);
  };
}
