// Hostile input, server side: seeded random requests against both reference servers: paths with
// traversal (plain, encoded, double-encoded), NUL, '//' and 10,000-character names; form, query and
// JSON fields of every wrong type; wrong methods; huge bodies. Every answer must be a 2xx/3xx/4xx,
// never a 5xx, and never show a host path (the server's data dir) or a stack trace.
import test from 'ava';
import { request } from 'undici';
import { startEmulator, maxxoToken } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import { HOSTILE_NAMES, hostileValue, pick, prng, type Rng } from './hostile-lib.js';

const REQUESTS = Number(process.env.CM_FUZZ_REQUESTS ?? 3000);

let emu: Emulator;
test.before(async () => { emu = await startEmulator(); });
test.after.always(async () => { await emu?.close(); });

const SEGMENTS = [
  ...HOSTILE_NAMES.filter((n) => n.length < 300).map((n) => encodeURIComponent(n)),
  '..', '%2e%2e', '%252e%252e', '.%2e', '%2f', '%252f', '%00', '%ZZ', '%', '%c0%ae%c0%ae', '%ef%bc%8f', '~root', '%5c..%5c',
  'a'.repeat(10_000), encodeURIComponent('é'.repeat(200)), 'docs', 'readme.txt', 'Files', '1', '0', '-1', '99999999999999999999',
];

const MAXXO: Array<[string, 'GET' | 'POST']> = [
  ['auth/token', 'GET'], ['ops/list', 'GET'], ['ops/filesize', 'POST'], ['ops/move', 'POST'], ['ops/delete', 'POST'],
  ['ops/send', 'POST'], ['slice', 'GET'], ['contacts/add', 'POST'], ['contacts/list', 'GET'], ['contacts/remove', 'POST'],
  ['account/quota', 'GET'], ['settings/list', 'GET'], ['settings/update', 'POST'], ['user-photo/update', 'POST'],
  ['user-photo/remove', 'POST'], ['notifications/list', 'GET'], ['notifications/update', 'POST'], ['invite', 'POST'],
  ['inbox/list', 'GET'], ['inbox/update', 'POST'], ['nope', 'GET'],
];
const MAXXO_FIELDS = ['path', 'file[]', 'files[]', 'from', 'to', 'email', 'password', 'id[]', 'ids[]', 'accept', 'fullname', 'language',
  'notify', 'destination', 'destinations[]', 'filter', 'token', 'overwrite'];
const VBOXX = [
  'auth', 'account/info', 'metadata/{root}/{p}', 'files/{root}/{p}', 'files_put/{root}/{p}', 'chunked_upload',
  'commit_chunked_upload/{root}/{p}', 'fileops/create_folder', 'fileops/delete', 'fileops/move', 'fileops/copy',
  'shares/create_link/{root}/{p}', 'management/person/', 'management/person/{id}/', 'management/person/{id}/full/',
  'management/person/create/', 'management/person/update/', 'management/policy/{id}/', 'management/policy/update/',
  'management/root/{id}/', 'management/root/create/', 'management/root/update/', 'management/machine/{id}/',
  'management/organization/{id}/', 'management/organization/{id}/persons/page/{id}/', 'management/activity/{id}/',
  'management/activity/create/', 'management/activity/types/',
];
const VBOXX_FIELDS = ['root', 'path', 'from_path', 'to_path', 'username', 'password', 'overwrite', 'parent_rev', 'upload_id', 'offset',
  'id', 'name', 'email', 'company_id', 'policy_id', 'space_quota', 'max_file_size', 'excluded_extensions', 'is_admin', 'list', 'hash',
  'file_limit', 'include_deleted'];

function fuzzPath(r: Rng): string {
  const n = 1 + Math.floor(r() * 4);
  const parts = Array.from({ length: n }, () => pick(r, SEGMENTS));
  return parts.join(r() < 0.1 ? '//' : '/');
}

function fieldValue(r: Rng): string {
  const v = hostileValue(r);
  if (r() < 0.3) return fuzzPath(r);
  return typeof v === 'string' ? v : JSON.stringify(v) ?? '';
}

interface Req { method: string; url: string; headers: Record<string, string>; body?: string | Buffer }

function maxxoRequest(r: Rng, token: string): Req {
  const [name, right] = pick(r, MAXXO);
  const method = r() < 0.9 ? right : pick(r, ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD']);
  const params = new URLSearchParams();
  for (let i = Math.floor(r() * 5); i > 0; i--) params.append(pick(r, MAXXO_FIELDS), fieldValue(r));
  const headers: Record<string, string> = {};
  const tok = r();
  if (tok < 0.7) headers.token = token; else if (tok < 0.85) headers.token = fieldValue(r).slice(0, 8000).replace(/[^\x20-\x7e]/g, '?');
  if (method === 'GET' || method === 'HEAD' || r() < 0.2) return { method, url: `/api/1/${name}?${params}`, headers };
  const kind = r();
  if (kind < 0.6) return { method, url: `/api/1/${name}`, headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, body: params.toString() };
  if (kind < 0.8) {
    const o: Record<string, unknown> = {};
    for (const k of MAXXO_FIELDS) if (r() < 0.3) o[k] = hostileValue(r);
    return { method, url: `/api/1/${name}`, headers: { ...headers, 'content-type': 'application/json' }, body: r() < 0.1 ? '{"path": ' : JSON.stringify(o) };
  }
  if (kind < 0.9) return { method, url: `/api/1/${name}`, headers: { ...headers, 'content-type': 'multipart/form-data; boundary=xyz' }, body: '--xyz\r\nContent-Disposition: form-data; name="file"; filename="../../x.png"\r\n\r\nnotapng\r\n--xy' };
  return { method, url: `/api/1/${name}`, headers: { ...headers, 'content-type': pick(r, ['text/plain', 'application/octet-stream', 'application/xml']) }, body: Buffer.alloc(Math.floor(r() * 100_000), 0x41) };
}

function vboxxRequest(r: Rng, session: string): Req {
  const tmpl = pick(r, VBOXX);
  const rootSeg = r() < 0.6 ? pick(r, ['1', '2', '3', 'files', 'sandbox', 'dropbox']) : pick(r, SEGMENTS);
  const url = '/1/' + tmpl.replace('{root}', rootSeg).replace('{p}', fuzzPath(r)).replace(/\{id\}/g, () => pick(r, ['1', '2', '0', '-5', 'x', '1e9', pick(r, SEGMENTS)]));
  const method = r() < 0.85 ? pick(r, ['GET', 'POST', 'PUT']) : pick(r, ['DELETE', 'PATCH', 'OPTIONS', 'HEAD']);
  const headers: Record<string, string> = {};
  const params = new URLSearchParams();
  const tok = r();
  // The session travels as the session_token query parameter (Dropbox v1 style).
  if (tok < 0.75) params.set('session_token', session);
  else if (tok < 0.85) params.set('session_token', fieldValue(r).slice(0, 8000));
  if (r() < 0.15) headers.range = pick(r, ['bytes=0-', 'bytes=-5', 'bytes=5-2', 'bytes=99999999999999999999-', 'bytes=0-1,2-3', 'junk', 'bytes=-0']);
  if (r() < 0.05) headers['if-range'] = fieldValue(r).slice(0, 200).replace(/[^\x20-\x7e]/g, '?');
  for (let i = Math.floor(r() * 5); i > 0; i--) params.append(pick(r, VBOXX_FIELDS), fieldValue(r));
  if (method === 'GET' || method === 'HEAD' || r() < 0.2) return { method, url: `${url}?${params}`, headers };
  const kind = r();
  if (kind < 0.5) return { method, url: `${url}?session_token=${encodeURIComponent(params.get('session_token') ?? '')}`, headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, body: params.toString() };
  if (kind < 0.8) {
    const o: Record<string, unknown> = {};
    for (const k of VBOXX_FIELDS) if (r() < 0.3) o[k] = hostileValue(r);
    return { method, url: `${url}?session_token=${encodeURIComponent(params.get('session_token') ?? '')}`, headers: { ...headers, 'content-type': 'application/json' }, body: r() < 0.1 ? '[1, 2' : JSON.stringify(o) };
  }
  return { method, url: `${url}?${params}`, headers: { ...headers, 'content-type': 'application/octet-stream' }, body: Buffer.alloc(Math.floor(r() * 200_000), 0x42) };
}

async function vboxxSession(url: string): Promise<string> {
  const r = await fetch(`${url}/1/auth`, { method: 'POST', body: new URLSearchParams({ username: 'demo', password: 'demo-password' }) });
  const b = (await r.json()) as { session_token?: string };
  if (!b.session_token) throw new Error('vboxx login failed');
  return b.session_token;
}

test(`both servers: ${REQUESTS} seeded hostile requests: never 5xx, never a host path or stack in the answer`, async (t) => {
  t.timeout(200_000);
  const dataDir = emu.ctx.opts.dataDir;
  const r = prng(4242);
  let token = await maxxoToken(emu.url);
  let session = await vboxxSession(emu.url);
  const statuses: Record<string, number> = {};
  const bad: string[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const q = r() < 0.5 ? maxxoRequest(r, token) : vboxxRequest(r, session);
    let status: number;
    let body = '';
    try {
      const res = await request(`${emu.url}${q.url}`, { method: q.method as 'GET', headers: q.headers, body: q.body, headersTimeout: 30_000, bodyTimeout: 30_000 });
      status = res.statusCode;
      body = await res.body.text();
    } catch (e) {
      bad.push(`#${i} ${q.method} ${q.url.split('?')[0]!.slice(0, 150)}: transport error ${(e as Error).message}`);
      continue;
    }
    statuses[String(status)] = (statuses[String(status)] ?? 0) + 1;
    // The one 5xx the vBoxx text specifies (its own sample answer): a missing required management
    // field is {"status_code": 500, "message": "missing required field X"}. Counted, not failed.
    if (status === 500 && q.url.startsWith('/1/management/') && /^\{"status_code":500,"message":"missing required field \w+","code":"error"\}$/.test(body)) {
      statuses['500 (spec: missing required field)'] = (statuses['500 (spec: missing required field)'] ?? 0) + 1;
      statuses['500']! -= 1;
    } else if (status >= 500) bad.push(`#${i} ${q.method} ${q.url.split('?')[0]!.slice(0, 150)} -> ${status} ${body.slice(0, 200)}`);
    if (body.includes(dataDir) || /\/(tmp|work|home|root)\/[^"\s]*cloudmount/.test(body)) bad.push(`#${i} ${q.method} ${q.url.split('?')[0]!.slice(0, 150)}: host path in the answer: ${body.slice(0, 200)}`);
    if (/\n\s+at [\w.<>]+ \(/.test(body) || /node_modules/.test(body)) bad.push(`#${i} ${q.method} ${q.url.split('?')[0]!.slice(0, 150)}: stack trace in the answer`);
    // The fuzz may log out or change a password: keep a valid session for what follows.
    if (i % 200 === 199) {
      token = await maxxoToken(emu.url).catch(() => token);
      session = await vboxxSession(emu.url).catch(() => session);
    }
  }
  t.deepEqual(bad.slice(0, 30), [], `${bad.length} bad answers`);
  t.log(`server fuzz: requests ${REQUESTS}, statuses ${JSON.stringify(statuses)}, bad ${bad.length}`);
});

test('huge bodies are refused with 413 (or streamed to disk), never 5xx', async (t) => {
  t.timeout(120_000);
  const token = await maxxoToken(emu.url);
  const session = await vboxxSession(emu.url);
  const huge = Buffer.alloc(70 * 1024 * 1024, 0x43);
  const cases: Array<[string, string, Record<string, string>]> = [
    ['POST', '/api/1/ops/move', { token, 'content-type': 'application/x-www-form-urlencoded' }],
    ['POST', '/api/1/settings/update', { token, 'content-type': 'application/json' }],
    ['POST', `/1/fileops/create_folder?session_token=${session}`, { 'content-type': 'application/json' }],
    ['PUT', `/1/files_put/1/huge.bin?session_token=${session}`, { 'content-type': 'application/octet-stream' }],
    ['POST', '/api/1/user-photo/update', { token, 'content-type': 'multipart/form-data; boundary=b' }],
  ];
  const got: string[] = [];
  for (const [method, url, headers] of cases) {
    const res = await request(`${emu.url}${url}`, { method: method as 'POST', headers, body: huge }).catch((e: Error) => ({ statusCode: 0, body: { text: async () => e.message } }));
    const text = await res.body.text();
    got.push(`${url.split('?')[0]} ${res.statusCode}`);
    // 0: the server closed the connection after answering 413 before the upload finished.
    t.true(res.statusCode === 0 || (res.statusCode >= 400 && res.statusCode < 500), `${url.split('?')[0]}: ${res.statusCode} ${text.slice(0, 100)}`);
    t.false(text.includes(emu.ctx.opts.dataDir));
  }
  // The server still works.
  const ok = await fetch(`${emu.url}/api/1/ops/list?path=/`, { headers: { token } });
  t.is(ok.status, 200);
  t.log(`huge bodies (70 MiB): ${got.join(', ')}`);
});
