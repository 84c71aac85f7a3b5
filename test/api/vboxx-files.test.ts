// vBoxx reference server: metadata (hash/304, list=false, decoding, traversal, access), downloads
// (streaming, ranges, If-Range, 416) and share links.
import test from 'ava';
import http from 'node:http';
import type { Emulator } from '../../src/emulator/server.js';
import { demoBytes } from '../../src/emulator/vboxx/demo.js';
import { Api, useDemoServer, raw, login, enc, DEMO_FILES_ROOT as FILES, DEMO_TEAM_ROOT as TEAM, ADMIN_ROOT } from './vboxx-lib.js';
import { sha256 } from '../support/files.js';

let emu: Emulator;
let demo: Api;
let admin: Api;
useDemoServer(test, (s) => ({ emu, demo, admin } = s));

const ENTRY_KEYS = ['bytes', 'client_mtime', 'icon', 'is_deleted', 'is_dir', 'modified', 'modified_unix_timestamp',
  'path', 'rev', 'root', 'size', 'thumb_exists'].sort();

test('metadata of the root: the shape of the text', async (t) => {
  const r = await demo.get(`/1/metadata/${FILES}/`);
  t.is(r.status, 200);
  const j = r.json;
  t.regex(j.hash, /^[0-9a-f]{40}$/);
  t.is(j.path, '/');
  t.true(j.is_dir);
  t.is(j.rev, 0);
  t.is(j.size, '0B');
  t.is(j.icon, 'folder');
  t.is(j.root, FILES);
  t.is(j.status_code, 200);
  const names = j.contents.map((c: any) => c.path);
  t.deepEqual(names, [...names].sort());
  for (const p of ['/documents', '/pictures', '/big', '/empty folder', '/readme.txt', '/Ünïcödé Földer']) t.true(names.includes(p), p);
  for (const c of j.contents) t.deepEqual(Object.keys(c).sort(), ENTRY_KEYS);
  const dir = j.contents.find((c: any) => c.path === '/documents');
  t.like(dir, { is_dir: true, rev: 0, bytes: 0, size: '0B', icon: 'folder', modified: 0, client_mtime: 0, is_deleted: false, root: FILES });
  const file = j.contents.find((c: any) => c.path === '/readme.txt');
  t.false(file.is_dir);
  t.true(file.rev > 0);
  t.is(file.icon, 'page_white_text');
  t.regex(file.modified, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/);
  t.is(file.modified_unix_timestamp, Math.floor(Date.parse(`${file.modified}Z`) / 1000));
  // Each listing entry is exactly the metadata of that path.
  for (const c of j.contents.slice(0, 8)) {
    const one = (await demo.get(`/1/metadata/${FILES}${c.path.split('/').map(encodeURIComponent).join('/')}`, { list: 'false' })).json;
    const { status_code: _s, ...rest } = one;
    t.deepEqual(rest, c, c.path);
  }
  // Without trailing slash and with an empty path segment it is the same folder.
  t.deepEqual((await demo.get(`/1/metadata/${FILES}`)).json, j);
});

test('metadata of a folder and a file; sizes are human; the jpg icon', async (t) => {
  const d = await demo.get(`/1/metadata/${FILES}/pictures/`);
  t.is(d.status, 200);
  t.is(d.json.path, '/pictures');
  const pic = d.json.contents[0];
  t.like(pic, { path: '/pictures/vBoxxCloud.jpg', bytes: 1953, size: '1.91k', icon: 'page_white_picture' });
  const f = await demo.meta(FILES, 'big/random-10MiB.bin');
  t.is(f.status, 200);
  t.like(f.json, { path: '/big/random-10MiB.bin', is_dir: false, bytes: 10485760, size: '10.00M', status_code: 200 });
  t.is(f.json.contents, undefined);
  t.is(f.json.hash, undefined);
  const empty = await demo.meta(FILES, 'empty folder');
  t.deepEqual(empty.json.contents, []);
});

test('metadata: percent-decoding happens exactly once', async (t) => {
  const a = await demo.get(`/1/metadata/${FILES}/documents/abc.txt`);
  const b = await demo.get(`/1/metadata/${FILES}/documents%2Fabc.txt`);
  t.is(a.status, 200);
  t.deepEqual(a.json, b.json);
  t.is(b.json.path, '/documents/abc.txt');
  const cafe = await demo.get(`/1/metadata/${FILES}/documents/Caf%C3%A9%20Men%C3%BC.txt`);
  t.is(cafe.status, 200);
  t.is(cafe.json.path, '/documents/Café Menü.txt');
  // %252F decodes once to the literal name "documents%2Fabc.txt", which does not exist.
  t.is((await demo.get(`/1/metadata/${FILES}/documents%252Fabc.txt`)).status, 404);
  // A name with a literal percent sign round-trips.
  await demo.putFile(TEAM, 'odd/100% sure.txt', 'x');
  const odd = await demo.get(`/1/metadata/${TEAM}/odd/100%25%20sure.txt`);
  t.is(odd.status, 200);
  t.is(odd.json.path, '/odd/100% sure.txt');
});

test('metadata: traversal, encoded or not, is refused with 400', async (t) => {
  for (const p of ['documents/../../x', '..', '%2e%2e/etc', 'documents%2F..%2F..%2Fetc%2Fpasswd', 'a/%2E%2E/%2E%2E/b']) {
    const r = await raw(emu.url, 'GET', demo.url(`/1/metadata/${FILES}/${p}`));
    t.is(r.status, 400, p);
    t.is(r.json.code, 'error');
  }
  for (const p of ['documents/../../x', '%2e%2e%2f%2e%2e%2fstate.db']) {
    t.is((await raw(emu.url, 'GET', demo.url(`/1/files/${FILES}/${p}`))).status, 400, p);
  }
  // An absolute host path is just a path inside the root.
  t.is((await demo.get(`/1/files/${FILES}/%2Fetc%2Fpasswd`)).status, 404);
});

test('metadata: 404 for a missing path or unknown root, 403 for a root of someone else', async (t) => {
  const m = await demo.meta(FILES, 'no/such/file');
  t.is(m.status, 404);
  t.is(m.json.status_code, 404);
  const u = await demo.get('/1/metadata/20/');
  t.is(u.status, 404);
  t.deepEqual(u.json, { status_code: 404, message: 'unknown root with id 20', code: 'error' });
  const x = await demo.get('/1/metadata/abc/');
  t.is(x.status, 404);
  const f = await demo.get(`/1/metadata/${ADMIN_ROOT}/`);
  t.is(f.status, 403);
  t.is(f.json.status_code, 403);
  t.is((await demo.get(`/1/files/${ADMIN_ROOT}/admin-notes.txt`)).status, 403);
  t.is((await demo.get(`/1/shares/create_link/${ADMIN_ROOT}/admin-notes.txt`)).status, 403);
  // The system admin may read everything; the team share is the demo user's too.
  t.is((await admin.get(`/1/metadata/${FILES}/`)).status, 200);
  t.is((await demo.get(`/1/metadata/${TEAM}/Shared%20Plans`)).status, 200);
});

test('metadata: hash answers 304 with an empty body while unchanged, 200 after any change', async (t) => {
  const api = new Api(emu.url, await login(emu.url, 'demo', 'demo-password'));
  await api.putFile(TEAM, 'hashdir/a.txt', 'one');
  const first = await api.meta(TEAM, 'hashdir');
  const h = first.json.hash;
  const again = await api.meta(TEAM, 'hashdir', { hash: h });
  t.is(again.status, 304);
  t.is(again.body.length, 0);
  // Stable: the same listing gives the same hash.
  t.is((await api.meta(TEAM, 'hashdir')).json.hash, h);
  t.is((await api.meta(TEAM, 'hashdir', { hash: 'deadbeef' })).status, 200);
  const changes: Array<[string, () => Promise<unknown>]> = [
    ['new file', () => api.putFile(TEAM, 'hashdir/b.txt', 'two')],
    ['overwrite same size', () => api.putFile(TEAM, 'hashdir/a.txt', 'ONE')],
    ['new folder', () => api.post('/1/fileops/create_folder', { root: String(TEAM), path: '/hashdir/sub' })],
    ['rename', () => api.post('/1/fileops/move', { root: String(TEAM), from_path: '/hashdir/b.txt', to_path: '/hashdir/c.txt' })],
    ['delete', () => api.post('/1/fileops/delete', { root: String(TEAM), path: '/hashdir/c.txt' })],
  ];
  let prev = h;
  for (const [what, change] of changes) {
    await change();
    const r = await api.meta(TEAM, 'hashdir', { hash: prev });
    t.is(r.status, 200, what);
    t.not(r.json.hash, prev, what);
    prev = r.json.hash;
    t.is((await api.meta(TEAM, 'hashdir', { hash: prev })).status, 304, what);
  }
  // A change deeper down does not change this folder's listing.
  await api.putFile(TEAM, 'hashdir/sub/deep.txt', 'deep');
  t.is((await api.meta(TEAM, 'hashdir', { hash: prev })).status, 304);
});

test('metadata: list=false omits contents', async (t) => {
  const r = await demo.get(`/1/metadata/${FILES}/documents`, { list: 'false' });
  t.is(r.status, 200);
  t.is(r.json.contents, undefined);
  t.true(r.json.is_dir);
  t.is(r.json.path, '/documents');
  t.is((await demo.get(`/1/metadata/${FILES}/documents`, { list: 'maybe' })).status, 400);
});


test('files: whole download streams the deterministic 10 MiB binary with length, etag and metadata header', async (t) => {
  const r = await demo.get(`/1/files/${FILES}/big/random-10MiB.bin`);
  t.is(r.status, 200);
  t.is(r.body.length, 10 * 1024 * 1024);
  t.is(sha256(r.body), sha256(demoBytes(10 * 1024 * 1024)));
  t.is(r.headers['content-length'], String(10 * 1024 * 1024));
  t.is(r.headers['accept-ranges'], 'bytes');
  const meta = JSON.parse(String(r.headers['x-vboxx-metadata']));
  t.like(meta, { path: '/big/random-10MiB.bin', bytes: 10485760, is_dir: false });
  t.is(r.headers.etag, `"${meta.rev}"`);
  const cafe = await demo.get(`/1/files/${FILES}/${enc('documents/Café Menü.txt')}`);
  t.is(cafe.status, 200);
  t.true(cafe.text.startsWith('Soupe du jour'));
  t.is(JSON.parse(String(cafe.headers['x-vboxx-metadata'])).path, '/documents/Café Menü.txt');
  // The text's download example: the path with an encoded slash.
  const abc = await demo.get(`/1/files/${FILES}/documents%2Fabc.txt`);
  t.is(abc.text, 'abc\n');
  const head = await raw(emu.url, 'HEAD', demo.url(`/1/files/${FILES}/documents/abc.txt`));
  t.is(head.status, 200);
  t.is(head.headers['content-length'], '4');
  t.is(head.body.length, 0);
});

test('files: ranges a-b, a-, -n answer 206 with Content-Range; past the end 416', async (t) => {
  const all = demoBytes(10 * 1024 * 1024);
  const size = all.length;
  const path = `/1/files/${FILES}/big/random-10MiB.bin`;
  const cases: Array<[string, number, number]> = [
    ['bytes=0-99', 0, 99], ['bytes=1000-1999', 1000, 1999], [`bytes=${size - 10}-`, size - 10, size - 1],
    ['bytes=-5', size - 5, size - 1], [`bytes=5-${size + 100}`, 5, size - 1], [`bytes=-${size + 9}`, 0, size - 1],
  ];
  for (const [range, a, b] of cases) {
    const r = await demo.get(path, {}, { range });
    t.is(r.status, 206, range);
    t.is(r.headers['content-range'], `bytes ${a}-${b}/${size}`, range);
    t.is(r.headers['content-length'], String(b - a + 1), range);
    t.true(r.body.equals(all.subarray(a, b + 1)), range);
  }
  for (const range of [`bytes=${size}-`, `bytes=${size + 5}-${size + 10}`, 'bytes=-0']) {
    const r = await demo.get(path, {}, { range });
    t.is(r.status, 416, range);
    t.is(r.headers['content-range'], `bytes */${size}`, range);
    t.is(r.json.status_code, 416);
  }
  // An empty file has no satisfiable range.
  await demo.putFile(TEAM, 'empty.bin', '');
  const e = await demo.get(`/1/files/${TEAM}/empty.bin`, {}, { range: 'bytes=0-' });
  t.is(e.status, 416);
  t.is(e.headers['content-range'], 'bytes */0');
  t.is((await demo.get(`/1/files/${TEAM}/empty.bin`)).headers['content-length'], '0');
  // A garbage Range header is ignored: the whole file.
  const g = await demo.get(`/1/files/${FILES}/documents/abc.txt`, {}, { range: 'pages=1-2' });
  t.is(g.status, 200);
  t.is(g.text, 'abc\n');
});

test('files: concurrent downloads, a stalled reader and clients that leave mid-body never mix bytes', async (t) => {
  // Downloads read into a few reused buffers: a buffer handed out again too early would show up
  // here as bytes of one file inside another, or of an earlier chunk of the same one.
  const sizes = [3 * 1024 * 1024 + 12345, 5 * 1024 * 1024 - 7, 1024 * 1024];
  const files = sizes.map((n, i) => ({ path: `mix/f${i}.bin`, data: demoBytes(n, 0x1234 + i) }));
  for (const f of files) await demo.putFile(TEAM, f.path, f.data);
  const big = demoBytes(10 * 1024 * 1024);
  const u = new URL(emu.url);
  const get = (path: string, headers: Record<string, string> = {}, o: { stallMs?: number; leaveAfter?: number } = {}) =>
    new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
      const req = http.get({ host: u.hostname, port: u.port, path: demo.url(path), headers }, (res) => {
        const chunks: Buffer[] = [];
        let n = 0;
        let stalled = false;
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          n += c.length;
          if (o.leaveAfter !== undefined && n >= o.leaveAfter) { req.destroy(); resolve({ status: -1, body: Buffer.alloc(0) }); }
          // Stop reading for a while: the server's writes stay pending with their buffers.
          if (o.stallMs && !stalled) { stalled = true; res.pause(); setTimeout(() => res.resume(), o.stallMs); }
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', () => {});
      });
      req.on('error', (e) => { if (o.leaveAfter === undefined) reject(e); });
    });
  const bigPath = `/1/files/${FILES}/big/random-10MiB.bin`;
  const runs = await Promise.all([
    get(bigPath, {}, { stallMs: 300 }),
    ...Array.from({ length: 4 }, () => get(bigPath, {}, { leaveAfter: 1024 * 1024 })),
    ...files.flatMap((f) => [get(`/1/files/${TEAM}/${f.path}`), get(`/1/files/${TEAM}/${f.path}`)]),
    get(bigPath, { range: 'bytes=1048570-3145738' }),
  ]);
  t.is(runs[0]!.status, 200);
  t.true(runs[0]!.body.equals(big), 'the stalled reader got the file intact');
  files.forEach((f, i) => {
    for (const r of [runs[5 + 2 * i]!, runs[6 + 2 * i]!]) {
      t.is(r.status, 200, f.path);
      t.true(r.body.equals(f.data), f.path);
    }
  });
  const range = runs[runs.length - 1]!;
  t.is(range.status, 206);
  t.true(range.body.equals(big.subarray(1048570, 3145739)), 'a range across buffer boundaries');
  // After the clients that left, the server still answers whole files on kept-alive connections.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  for (const f of files) {
    const r = await new Promise<Buffer>((resolve, reject) => {
      http.get({ host: u.hostname, port: u.port, path: demo.url(`/1/files/${TEAM}/${f.path}`), agent }, (res) => {
        const c: Buffer[] = [];
        res.on('data', (d: Buffer) => c.push(d));
        res.on('end', () => resolve(Buffer.concat(c)));
      }).on('error', reject);
    });
    t.true(r.equals(f.data), `${f.path} on a kept-alive connection`);
  }
});

test('files: If-Range serves the range only for the current version', async (t) => {
  const m = await demo.putFile(TEAM, 'ifrange.txt', '0123456789');
  const ok = await demo.get(`/1/files/${TEAM}/ifrange.txt`, {}, { range: 'bytes=2-4', 'if-range': `"${m.rev}"` });
  t.is(ok.status, 206);
  t.is(ok.text, '234');
  const stale = await demo.get(`/1/files/${TEAM}/ifrange.txt`, {}, { range: 'bytes=2-4', 'if-range': '"1"' });
  t.is(stale.status, 200);
  t.is(stale.text, '0123456789');
  const nm = await demo.get(`/1/files/${TEAM}/ifrange.txt`, {}, { 'if-none-match': `"${m.rev}"` });
  t.is(nm.status, 304);
});

test('files: a download while uploads replace the file carries the bytes of the rev its ETag names', async (t) => {
  // An upload committing while the GET's open ran in the thread pool gave the new bytes under the
  // old ETag; a client following versions then mixed two of them in one file.
  const body = (k: number) => `version ${k} `.repeat(4000 + k);
  const byRev = new Map<string, string>();
  const first = await demo.putFile(TEAM, 'racing.txt', body(0));
  byRev.set(`"${first.rev}"`, sha256(Buffer.from(body(0))));
  let writing = true;
  const puts = (async () => {
    for (let k = 1; k <= 300; k++) {
      const m = await demo.putFile(TEAM, 'racing.txt', body(k));
      byRev.set(`"${m.rev}"`, sha256(Buffer.from(body(k))));
    }
    writing = false;
  })();
  let gets = 0;
  const seen: string[] = [];
  const reader = async () => {
    while (writing) {
      const r = await demo.get(`/1/files/${TEAM}/racing.txt`);
      t.is(r.status, 200);
      gets++;
      const etag = r.headers.etag as string;
      // (a rev answered before its upload's answer reached us is looked up once all are in)
      seen.push(`${etag} ${sha256(Buffer.from(r.text))}`);
    }
  };
  await Promise.all([puts, reader(), reader(), reader()]);
  const bad = seen.filter((w) => { const [etag, h] = w.split(' '); return byRev.get(etag!) !== h; });
  t.deepEqual(bad, [], `${bad.length} of ${gets} downloads carried other bytes than their ETag's rev`);
  t.true(gets > 20, `${gets} downloads`);
});

test('files: missing 404, folder 400, unknown root 404', async (t) => {
  const a = await demo.get(`/1/files/${FILES}/nope.txt`);
  t.is(a.status, 404);
  t.is(a.json.code, 'error');
  const b = await demo.get(`/1/files/${FILES}/documents`);
  t.is(b.status, 400);
  t.is((await demo.get(`/1/files/${FILES}/`)).status, 400);
  t.is((await demo.get('/1/files/77/x')).status, 404);
});

test('share links: file, folder and whole root; served without a session; links are stable', async (t) => {
  const f = await demo.get(`/1/shares/create_link/${FILES}/documents/abc.txt`);
  t.is(f.status, 200);
  t.deepEqual(Object.keys(f.json).sort(), ['expires', 'url']);
  t.is(f.json.expires, null);
  t.true(f.json.url.startsWith(`${emu.url}/s/`));
  const again = await demo.post(`/1/shares/create_link/${FILES}/documents%2Fabc.txt`);
  t.is(again.json.url, f.json.url);
  const file = await raw(emu.url, 'GET', new URL(f.json.url).pathname);
  t.is(file.status, 200);
  t.is(file.text, 'abc\n');
  const ranged = await raw(emu.url, 'GET', new URL(f.json.url).pathname, { headers: { range: 'bytes=1-' } });
  t.is(ranged.status, 206);
  t.is(ranged.text, 'bc\n');

  const d = await demo.get(`/1/shares/create_link/${FILES}/documents/`);
  const listing = await raw(emu.url, 'GET', new URL(d.json.url).pathname);
  t.is(listing.status, 200);
  t.true(listing.json.is_dir);
  const names = listing.json.contents.map((c: any) => c.path);
  t.true(names.includes('/abc.txt'));
  t.true(names.includes('/Café Menü.txt'));
  const sub = listing.json.contents.find((c: any) => c.path === '/Café Menü.txt');
  const viaSub = await raw(emu.url, 'GET', new URL(sub.url).pathname);
  t.is(viaSub.status, 200);
  t.true(viaSub.text.startsWith('Soupe'));
  // The share does not open the way out of its folder.
  t.is((await raw(emu.url, 'GET', `${new URL(d.json.url).pathname}/../readme.txt`)).status, 400);

  const root = await demo.get(`/1/shares/create_link/${FILES}/`);
  t.is(root.status, 200);
  const rl = await raw(emu.url, 'GET', new URL(root.json.url).pathname);
  t.true(rl.json.contents.some((c: any) => c.path === '/readme.txt'));

  t.is((await raw(emu.url, 'GET', '/s/doesnotexist')).status, 404);
  t.is((await demo.get(`/1/shares/create_link/${FILES}/missing.txt`)).status, 404);
});
