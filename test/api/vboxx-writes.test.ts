// vBoxx reference server: files_put, chunked upload, fileops, revisions and policy enforcement.
import test from 'ava';
import type { Emulator } from '../../src/emulator/server.js';
import { Api, useDemoServer, raw, enc, newOrg, DEMO_FILES_ROOT as FILES, DEMO_TEAM_ROOT as TEAM, ADMIN_ROOT } from './vboxx-lib.js';

let emu: Emulator;
let demo: Api;
let admin: Api;
useDemoServer(test, (s) => ({ emu, demo, admin } = s));

const download = async (api: Api, root: number, path: string) => (await api.get(`/1/files/${root}/${enc(path)}`)).text;

test('files_put: creates parents, answers metadata, every version increments rev', async (t) => {
  const m1 = await demo.putFile(TEAM, 'put/deep/er/new file.txt', 'v1');
  t.like(m1, { path: '/put/deep/er/new file.txt', bytes: 2, size: '2B', is_dir: false, root: TEAM, is_deleted: false });
  t.true(m1.rev > 0);
  for (const d of ['put', 'put/deep', 'put/deep/er']) t.true((await demo.meta(TEAM, d)).json.is_dir, d);
  const m2 = await demo.putFile(TEAM, 'put/deep/er/new file.txt', 'version two');
  t.true(m2.rev > m1.rev);
  t.is(m2.bytes, 11);
  t.is(await download(demo, TEAM, 'put/deep/er/new file.txt'), 'version two');
  // POST works as well as PUT; a form content type does not make the body a form.
  const p = await raw(emu.url, 'POST', demo.url(`/1/files_put/${TEAM}/put/form.txt`), {
    headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1&b=2' });
  t.is(p.status, 200);
  t.is(await download(demo, TEAM, 'put/form.txt'), 'a=1&b=2');
  const j = await raw(emu.url, 'PUT', demo.url(`/1/files_put/${TEAM}/put/data.json`), {
    headers: { 'content-type': 'application/json' }, body: '{"not": "parsed"' });
  t.is(j.status, 200);
  t.is(await download(demo, TEAM, 'put/data.json'), '{"not": "parsed"');
  // Unicode names; client_mtime keeps the writer's time.
  const u = await demo.putFile(TEAM, 'put/Ünï cødé.txt', 'ü', { client_mtime: '1353459846' });
  t.is(u.path, '/put/Ünï cødé.txt');
  t.is(u.client_mtime, '2012-11-21T01:04:06');
  t.is(u.bytes, 2);
});

test('files_put: overwrite=false and parent_rev conflicts keep both as "name (n).ext"', async (t) => {
  const a = await demo.putFile(TEAM, 'conf/a.txt', 'first');
  const b = await demo.putFile(TEAM, 'conf/a.txt', 'second', { overwrite: 'false' });
  t.is(b.path, '/conf/a (1).txt');
  const c = await demo.putFile(TEAM, 'conf/a.txt', 'third', { overwrite: 'false' });
  t.is(c.path, '/conf/a (2).txt');
  t.is(await download(demo, TEAM, 'conf/a.txt'), 'first');
  // parent_rev equal to the current rev overwrites, even with overwrite=false.
  const d = await demo.putFile(TEAM, 'conf/a.txt', 'fourth', { parent_rev: String(a.rev), overwrite: 'false' });
  t.is(d.path, '/conf/a.txt');
  t.true(d.rev > a.rev);
  // A stale parent_rev is a conflict: the upload lands beside it.
  const e = await demo.putFile(TEAM, 'conf/a.txt', 'fifth', { parent_rev: String(a.rev) });
  t.is(e.path, '/conf/a (3).txt');
  t.is(await download(demo, TEAM, 'conf/a.txt'), 'fourth');
  // A folder in the way: the file gets the next free name; no extension keeps the suffix at the end.
  await demo.post('/1/fileops/create_folder', { root: String(TEAM), path: '/conf/dir' });
  t.is((await demo.putFile(TEAM, 'conf/dir', 'x')).path, '/conf/dir (1)');
  // overwrite=false on a new name is a plain create.
  t.is((await demo.putFile(TEAM, 'conf/fresh.txt', 'x', { overwrite: 'false' })).path, '/conf/fresh.txt');
  t.is((await demo.put(`/1/files_put/${TEAM}/conf/b.txt`, 'x', { overwrite: 'perhaps' })).status, 400);
  t.is((await demo.put(`/1/files_put/${TEAM}/conf/b.txt`, 'x', { parent_rev: 'abc' })).status, 400);
  t.is((await demo.put(`/1/files_put/${TEAM}/conf/b.txt`, 'x', { client_mtime: '99999999999999' })).status, 400);
  t.is((await demo.meta(TEAM, 'conf')).status, 200);
});

test('files_put: errors — no path, a file as parent folder, traversal, foreign root, unknown root', async (t) => {
  t.is((await demo.put(`/1/files_put/${TEAM}/`, 'x')).status, 400);
  await demo.putFile(TEAM, 'errs/file.txt', 'x');
  const under = await demo.put(`/1/files_put/${TEAM}/errs/file.txt/child.txt`, 'x');
  t.is(under.status, 403);
  t.is((await raw(emu.url, 'PUT', demo.url(`/1/files_put/${TEAM}/errs/%2e%2e/%2e%2e/escape.txt`), { body: 'x' })).status, 400);
  t.is((await demo.put(`/1/files_put/${ADMIN_ROOT}/x.txt`, 'x')).status, 403);
  t.is((await demo.put('/1/files_put/999/x.txt', 'x')).status, 404);
  t.is((await raw(emu.url, 'GET', demo.url(`/1/files_put/${TEAM}/x.txt`))).status, 405);
});

test('chunked upload: chunks at offsets, wrong offset 400 with the right one, commit with conflicts', async (t) => {
  const c1 = await demo.put('/1/chunked_upload', Buffer.from('hello '));
  t.is(c1.status, 200);
  t.deepEqual(Object.keys(c1.json).sort(), ['expires', 'offset', 'upload_id']);
  t.is(c1.json.offset, 6);
  t.false(Number.isNaN(Date.parse(c1.json.expires)));
  const id = c1.json.upload_id;
  const wrong = await demo.put('/1/chunked_upload', Buffer.from('zzz'), { upload_id: id, offset: '3' });
  t.is(wrong.status, 400);
  t.is(wrong.json.offset, 6);
  t.is(wrong.json.upload_id, id);
  t.is(wrong.json.code, 'error');
  const c2 = await demo.put('/1/chunked_upload', Buffer.from('chunked world'), { upload_id: id, offset: '6' });
  t.is(c2.json.offset, 19);
  t.is(c2.json.upload_id, id);
  // Someone else cannot continue or commit it.
  const other = await admin.put('/1/chunked_upload', Buffer.from('x'), { upload_id: id, offset: '19' });
  t.is(other.status, 404);
  t.is((await admin.post(`/1/commit_chunked_upload/${ADMIN_ROOT}/stolen.txt`, { upload_id: id })).status, 404);
  const done = await demo.post(`/1/commit_chunked_upload/${TEAM}/chunks/joined.txt`, { upload_id: id });
  t.is(done.status, 200);
  t.like(done.json, { path: '/chunks/joined.txt', bytes: 19 });
  t.is(await download(demo, TEAM, 'chunks/joined.txt'), 'hello chunked world');
  // The upload is gone once committed.
  t.is((await demo.post(`/1/commit_chunked_upload/${TEAM}/chunks/again.txt`, { upload_id: id })).status, 404);
  t.is((await demo.put('/1/chunked_upload', 'x', { upload_id: 'nope', offset: '0' })).status, 404);
  t.is((await demo.post(`/1/commit_chunked_upload/${TEAM}/x.txt`)).status, 400);
  // overwrite=false at commit keeps both.
  const u2 = (await demo.put('/1/chunked_upload', 'second')).json;
  const c = await demo.post(`/1/commit_chunked_upload/${TEAM}/chunks/joined.txt`, { upload_id: u2.upload_id, overwrite: 'false' });
  t.is(c.json.path, '/chunks/joined (1).txt');
  // A new upload must start at 0.
  t.is((await demo.put('/1/chunked_upload', 'x', { offset: '5' })).status, 400);
});

test('chunked upload: a 3 MiB file in 1 MiB chunks round-trips exactly', async (t) => {
  const data = Buffer.alloc(3 * 1024 * 1024 + 123);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 10)) & 0xff;
  let state: { upload_id?: string; offset: number } = { offset: 0 };
  while (state.offset < data.length) {
    const chunk = data.subarray(state.offset, state.offset + 1024 * 1024);
    const q: Record<string, string> = { offset: String(state.offset), ...(state.upload_id ? { upload_id: state.upload_id } : {}) };
    const r = await demo.put('/1/chunked_upload', chunk, q);
    t.is(r.status, 200);
    state = r.json;
  }
  const m = await demo.post(`/1/commit_chunked_upload/${TEAM}/chunks/big.bin`, { upload_id: state.upload_id! });
  t.is(m.json.bytes, data.length);
  const got = await demo.get(`/1/files/${TEAM}/chunks/big.bin`);
  t.true(got.body.equals(data));
});

test('fileops: create_folder, then 403 when it exists; form or query fields', async (t) => {
  const r = await demo.post('/1/fileops/create_folder', { root: String(TEAM), path: '/ops/new folder' });
  t.is(r.status, 200);
  t.like(r.json, { path: '/ops/new folder', is_dir: true, icon: 'folder', root: TEAM });
  const again = await demo.post('/1/fileops/create_folder', {}, { root: String(TEAM), path: 'ops/new folder' });
  t.is(again.status, 403);
  t.is(again.json.status_code, 403);
  t.is((await demo.post('/1/fileops/create_folder', { root: String(TEAM) })).status, 400);
  t.is((await demo.post('/1/fileops/create_folder', { path: '/x' })).status, 400);
  t.is((await demo.post('/1/fileops/create_folder', { root: String(ADMIN_ROOT), path: '/x' })).status, 403);
  t.is((await demo.post('/1/fileops/create_folder', { root: '4242', path: '/x' })).status, 404);
  t.is((await demo.post('/1/fileops/create_folder', { root: String(TEAM), path: '/ops/../../x' })).status, 400);
});

test('fileops: delete is recursive and answers is_deleted; 404 when missing', async (t) => {
  await demo.putFile(TEAM, 'del/a/b/c.txt', 'c');
  await demo.putFile(TEAM, 'del/a/d.txt', 'd');
  const r = await demo.post('/1/fileops/delete', { root: String(TEAM), path: '/del/a' });
  t.is(r.status, 200);
  t.like(r.json, { path: '/del/a', is_dir: true, is_deleted: true });
  t.is((await demo.meta(TEAM, 'del/a')).status, 404);
  t.is((await demo.meta(TEAM, 'del/a/b/c.txt')).status, 404);
  t.deepEqual((await demo.meta(TEAM, 'del')).json.contents, []);
  const f = await demo.putFile(TEAM, 'del/file.txt', 'x');
  const rf = await demo.post('/1/fileops/delete', { root: String(TEAM), path: 'del/file.txt' });
  t.like(rf.json, { path: '/del/file.txt', is_deleted: true, rev: f.rev });
  const missing = await demo.post('/1/fileops/delete', { root: String(TEAM), path: '/del/file.txt' });
  t.is(missing.status, 404);
  t.is((await demo.post('/1/fileops/delete', { root: String(TEAM), path: '/' })).status, 403);
  // Re-creating after delete gets a fresh, higher rev.
  const again = await demo.putFile(TEAM, 'del/file.txt', 'y');
  t.true(again.rev > f.rev);
});

test('fileops: move of files and folders (with contents), 403 target exists, 404 missing source', async (t) => {
  await demo.putFile(TEAM, 'mv/src/one.txt', '1');
  await demo.putFile(TEAM, 'mv/src/sub/two.txt', '22');
  const r = await demo.post('/1/fileops/move', { root: String(TEAM), from_path: '/mv/src', to_path: '/mv/new/place' });
  t.is(r.status, 200);
  t.like(r.json, { path: '/mv/new/place', is_dir: true });
  t.is((await demo.meta(TEAM, 'mv/src')).status, 404);
  t.is(await download(demo, TEAM, 'mv/new/place/sub/two.txt'), '22');
  const sub = (await demo.meta(TEAM, 'mv/new/place/sub')).json;
  t.deepEqual(sub.contents.map((c: any) => c.path), ['/mv/new/place/sub/two.txt']);
  // File rename within the folder.
  const f = await demo.post('/1/fileops/move', { root: String(TEAM), from_path: '/mv/new/place/one.txt', to_path: '/mv/new/place/uno.txt' });
  t.like(f.json, { path: '/mv/new/place/uno.txt', bytes: 1 });
  await demo.putFile(TEAM, 'mv/taken.txt', 't');
  const exists = await demo.post('/1/fileops/move', { root: String(TEAM), from_path: '/mv/new/place/uno.txt', to_path: '/mv/taken.txt' });
  t.is(exists.status, 403);
  t.is(await download(demo, TEAM, 'mv/taken.txt'), 't');
  const missing = await demo.post('/1/fileops/move', { root: String(TEAM), from_path: '/mv/nothing', to_path: '/mv/x' });
  t.is(missing.status, 404);
  const into = await demo.post('/1/fileops/move', { root: String(TEAM), from_path: '/mv/new', to_path: '/mv/new/place/inner' });
  t.is(into.status, 403);
  t.regex(into.json.message, /into itself/);
  t.is((await demo.post('/1/fileops/move', { root: String(TEAM), from_path: '/mv/taken.txt' })).status, 400);
});

test('fileops: copy of files and folders makes independent copies with new revs', async (t) => {
  const o = await demo.putFile(TEAM, 'cp/src/a.txt', 'aaa');
  await demo.putFile(TEAM, 'cp/src/deep/b.txt', 'bbb');
  const r = await demo.post('/1/fileops/copy', { root: String(TEAM), from_path: '/cp/src', to_path: '/cp/dst' });
  t.is(r.status, 200);
  t.like(r.json, { path: '/cp/dst', is_dir: true });
  t.is(await download(demo, TEAM, 'cp/dst/deep/b.txt'), 'bbb');
  t.is(await download(demo, TEAM, 'cp/src/deep/b.txt'), 'bbb');
  const ca = (await demo.meta(TEAM, 'cp/dst/a.txt')).json;
  t.true(ca.rev > o.rev);
  await demo.putFile(TEAM, 'cp/dst/a.txt', 'changed');
  t.is(await download(demo, TEAM, 'cp/src/a.txt'), 'aaa');
  const f = await demo.post('/1/fileops/copy', { root: String(TEAM), from_path: '/cp/src/a.txt', to_path: '/cp/a-copy.txt' });
  t.like(f.json, { path: '/cp/a-copy.txt', bytes: 3 });
  t.is((await demo.post('/1/fileops/copy', { root: String(TEAM), from_path: '/cp/src/a.txt', to_path: '/cp/a-copy.txt' })).status, 403);
  t.is((await demo.post('/1/fileops/copy', { root: String(TEAM), from_path: '/cp/none', to_path: '/cp/z' })).status, 404);
  t.is((await demo.post('/1/fileops/copy', { root: String(TEAM), from_path: '/cp/src', to_path: '/cp/src/inside' })).status, 403);
});

test('policy: excluded extension 403, max_file_size 413, organization quota 507 — on files_put and commit', async (t) => {
  const { companyId, site, user } = await newOrg(admin, 'policy-org', { max_file_size: 1, space_quota: 3 * 1024 * 1024, excluded_extensions: '*.mp3,.EXE' });
  const pol = (await user.api.get(`/1/management/policy/${companyId}/`)).json;
  t.like(pol, { max_file_size: '1', space_quota: 3 * 1024 * 1024, excluded_extensions: '*.mp3,.EXE' });
  for (const name of ['song.mp3', 'SONG.MP3', 'setup.exe']) {
    const r = await user.api.put(`/1/files_put/${user.root}/${name}`, 'x');
    t.is(r.status, 403, name);
    t.regex(r.json.message, /excluded extension/);
  }
  const mb = 1024 * 1024;
  const big = await user.api.put(`/1/files_put/${user.root}/big.bin`, Buffer.alloc(mb + 1));
  t.is(big.status, 413);
  t.regex(big.json.message, /max_file_size/);
  t.is((await user.api.meta(user.root, 'big.bin')).status, 404);
  // Exactly the limit is fine.
  t.is((await user.api.put(`/1/files_put/${user.root}/ok1.bin`, Buffer.alloc(mb))).status, 200);
  t.is((await site.api.put(`/1/files_put/${site.root}/ok2.bin`, Buffer.alloc(mb))).status, 200);
  t.is((await site.api.put(`/1/files_put/${site.root}/ok3.bin`, Buffer.alloc(mb - 10))).status, 200);
  // The organization now holds 3 MiB - 10: a further 11 bytes exceed its quota, 10 do not.
  const q = await user.api.put(`/1/files_put/${user.root}/over.bin`, Buffer.alloc(11));
  t.is(q.status, 507);
  t.regex(q.json.message, /space_quota/);
  // Overwriting gives the old bytes back.
  t.is((await user.api.put(`/1/files_put/${user.root}/ok1.bin`, Buffer.alloc(mb))).status, 200);
  // Chunked: too large already while receiving chunks; excluded extension at commit.
  const c1 = await user.api.put('/1/chunked_upload', Buffer.alloc(mb));
  t.is(c1.status, 200);
  const c2 = await user.api.put('/1/chunked_upload', Buffer.alloc(10), { upload_id: c1.json.upload_id, offset: String(mb) });
  t.is(c2.status, 413);
  const small = (await user.api.put('/1/chunked_upload', 'tiny')).json;
  const ex = await user.api.post(`/1/commit_chunked_upload/${user.root}/x.mp3`, { upload_id: small.upload_id });
  t.is(ex.status, 403);
  // The refused commit keeps the upload: it can still be committed under an allowed name.
  const ok = await user.api.post(`/1/commit_chunked_upload/${user.root}/x.txt`, { upload_id: small.upload_id });
  t.is(ok.status, 200);
  // Copy respects the quota too; move renames into an excluded extension are refused.
  t.is((await user.api.post('/1/fileops/copy', { root: String(user.root), from_path: '/ok1.bin', to_path: '/ok1-copy.bin' })).status, 507);
  t.is((await user.api.post('/1/fileops/move', { root: String(user.root), from_path: '/x.txt', to_path: '/x.exe' })).status, 403);
  // Raising the limits (site admin may set the policy of their organization) lets the upload through.
  const up = await site.api.post('/1/management/policy/update/', { id: String(companyId), space_quota: String(100 * mb), max_file_size: '0', excluded_extensions: '' });
  t.is(up.status, 200);
  t.is((await user.api.put(`/1/files_put/${user.root}/song.mp3`, Buffer.alloc(2 * mb))).status, 200);
});

test('policy: a person space_quota is enforced on their roots', async (t) => {
  const { site, user } = await newOrg(admin, 'quota-org', {});
  const r = await site.api.post('/1/management/person/update/', { id: String(user.id), space_quota: '1000' });
  t.is(r.status, 200);
  const info = (await user.api.get('/1/account/info')).json;
  t.is(info.space_quota, 1000);
  t.is(info.space_quota_formatted, '1000B');
  t.is((await user.api.put(`/1/files_put/${user.root}/a.bin`, Buffer.alloc(600))).status, 200);
  const over = await user.api.put(`/1/files_put/${user.root}/b.bin`, Buffer.alloc(600));
  t.is(over.status, 507);
  t.regex(over.json.message, /quota/);
  // The site admin's own root is not bound by the user's quota.
  t.is((await site.api.put(`/1/files_put/${site.root}/b.bin`, Buffer.alloc(600))).status, 200);
});

test('concurrent puts to one path all succeed and leave one consistent version', async (t) => {
  const bodies = Array.from({ length: 8 }, (_, i) => Buffer.alloc(64 * 1024, i + 1));
  const rs = await Promise.all(bodies.map((b) => demo.put(`/1/files_put/${TEAM}/race/same.bin`, b)));
  for (const r of rs) t.is(r.status, 200);
  const revs = new Set(rs.map((r) => r.json.rev));
  t.is(revs.size, 8);
  const meta = (await demo.meta(TEAM, 'race/same.bin')).json;
  t.is(meta.rev, Math.max(...revs));
  const got = (await demo.get(`/1/files/${TEAM}/race/same.bin`)).body;
  t.is(got.length, 64 * 1024);
  t.true(got.every((x) => x === got[0]));
  t.deepEqual((await demo.meta(TEAM, 'race')).json.contents.map((c: any) => c.path), ['/race/same.bin']);
});

test('space usage follows writes and deletes', async (t) => {
  const before = (await demo.get('/1/account/info')).json.roots.find((r: any) => r.id === FILES).space_used;
  await demo.putFile(FILES, 'usage/x.bin', Buffer.alloc(5000));
  const mid = (await demo.get('/1/account/info')).json.roots.find((r: any) => r.id === FILES).space_used;
  t.is(mid, before + 5000);
  await demo.post('/1/fileops/delete', { root: String(FILES), path: '/usage' });
  const after = (await demo.get('/1/account/info')).json.roots.find((r: any) => r.id === FILES).space_used;
  t.is(after, before);
});

test('listings follow every change in and below a folder (server-side listing cache)', async (t) => {
  const names = async (p: string) => {
    const r = await demo.meta(TEAM, p);
    return r.status === 200 ? r.json.contents.map((c: any) => c.path) : r.status;
  };
  await demo.putFile(TEAM, 'lc/a/one.txt', '1');
  await demo.putFile(TEAM, 'lc/b/two.txt', '2');
  // Prime listings of every folder involved, then change things and list again.
  t.deepEqual(await names('lc'), ['/lc/a', '/lc/b']);
  t.deepEqual(await names('lc/a'), ['/lc/a/one.txt']);
  t.deepEqual(await names('lc/b'), ['/lc/b/two.txt']);
  await demo.post('/1/fileops/move', { root: String(TEAM), from_path: '/lc/a/one.txt', to_path: '/lc/b/one.txt' });
  t.deepEqual(await names('lc/a'), []);
  t.deepEqual(await names('lc/b'), ['/lc/b/one.txt', '/lc/b/two.txt']);
  await demo.post('/1/fileops/move', { root: String(TEAM), from_path: '/lc/b', to_path: '/lc/c/b' });
  t.is(await names('lc/b'), 404);
  t.deepEqual(await names('lc'), ['/lc/a', '/lc/c']);
  t.deepEqual(await names('lc/c/b'), ['/lc/c/b/one.txt', '/lc/c/b/two.txt']);
  await demo.post('/1/fileops/copy', { root: String(TEAM), from_path: '/lc/c', to_path: '/lc/a/c' });
  t.deepEqual(await names('lc/a'), ['/lc/a/c']);
  await demo.post('/1/fileops/delete', { root: String(TEAM), path: '/lc/c' });
  t.is(await names('lc/c/b'), 404);
  t.deepEqual(await names('lc'), ['/lc/a']);
  const before = (await demo.meta(TEAM, 'lc/a/c/b')).json.contents.find((c: any) => c.path.endsWith('one.txt'));
  await demo.putFile(TEAM, 'lc/a/c/b/one.txt', 'longer now');
  const after = (await demo.meta(TEAM, 'lc/a/c/b')).json.contents.find((c: any) => c.path.endsWith('one.txt'));
  t.is(after.bytes, 10);
  t.true(after.rev > before.rev);
  await demo.putFile(TEAM, 'lc/new/deep/x.txt', 'x');
  t.deepEqual(await names('lc'), ['/lc/a', '/lc/new']);
});
