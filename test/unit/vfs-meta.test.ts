// Metadata: caches, TTLs, negative entries, invalidation by our own changes, hash revalidation,
// one listing for ls -l, statMany batching, POSIX namespace errors, statfs, xattrs, read-only.
import test from 'ava';
import { isRemoteError } from '../../src/errors.js';
import { SHARE_LINK_XATTR } from '../../src/vfs/vfs.js';
import { O_RDONLY, O_WRONLY, setup, sleep, writeFile } from './helpers.js';

async function code(p: Promise<unknown>): Promise<string> {
  try { await p; return 'OK'; } catch (e) { return isRemoteError(e) ? e.code : String(e); }
}

test('readdir answers attributes of all entries with one listing call; getattr of each costs nothing', async (t) => {
  const { remote, vfs } = await setup(t);
  for (let i = 0; i < 200; i++) remote.putFile(`/d/f${i}.txt`, 'x'.repeat(i));
  remote.mkdirp('/d/sub');
  remote.resetCalls();
  const listed = await vfs.readdir('/d');
  t.is(listed.length, 201);
  t.is(listed.find((e) => e.name === 'f17.txt')!.attr.size, 17);
  t.is(listed.find((e) => e.name === 'f17.txt')!.attr.type, 'file');
  t.is(listed.find((e) => e.name === 'sub')!.attr.type, 'dir');
  for (const { name } of listed) await vfs.getattr(`/d/${name}`);
  // /d once; the one other listing is the background prefetch of the subfolder
  t.is(remote.log.filter((l) => l === 'list /d').length, 1);
  t.deepEqual(remote.log.filter((l) => l.startsWith('list') && l !== 'list /d'), ['list /d/sub']);
  t.is(remote.calls.stat, 0);
  // a name the listing does not have is known missing without asking
  t.is(await code(vfs.getattr('/d/nope')), 'NOT_FOUND');
  t.is(remote.calls.stat, 0);
});

test('attribute cache: TTL, negative entries, expiry asks again', async (t) => {
  // one stat per name: no listing alongside the first stat (vfs-lookup-listing.test covers that)
  const { remote, vfs } = await setup(t, {}, { attrTtlMs: 150, negativeTtlMs: 150, dirTtlMs: 150, speculativeListMaxEntries: 0 });
  remote.putFile('/a.txt', 'hello');
  t.is((await vfs.getattr('/a.txt')).size, 5);
  t.is((await vfs.getattr('/a.txt')).size, 5);
  t.is(remote.calls.stat, 1);
  t.is(await code(vfs.getattr('/missing')), 'NOT_FOUND');
  remote.putFile('/missing', 'now here');
  t.is(await code(vfs.getattr('/missing')), 'NOT_FOUND', 'negative entry still valid');
  t.is(remote.calls.stat, 2);
  remote.putFile('/a.txt', 'hello world');
  await sleep(200);
  t.is((await vfs.getattr('/a.txt')).size, 11);
  t.is((await vfs.getattr('/missing')).size, 8);
  t.is(remote.calls.stat, 4);
});

test('concurrent getattrs of one path share one request', async (t) => {
  const { remote, vfs } = await setup(t, { latencyMs: 20 });
  remote.putFile('/a', 'x');
  await Promise.all(Array.from({ length: 10 }, () => vfs.getattr('/a')));
  t.is(remote.calls.stat, 1);
});

test('statMany batches getattrs that arrive together', async (t) => {
  const { remote, vfs } = await setup(t, { batchStat: true, latencyMs: 5 });
  for (let i = 0; i < 20; i++) remote.putFile(`/b/f${i}`, 'x'.repeat(i));
  const attrs = await Promise.all(Array.from({ length: 20 }, (_, i) => vfs.getattr(`/b/f${i}`).then((a) => a.size)));
  t.deepEqual(attrs, Array.from({ length: 20 }, (_, i) => i));
  t.is(remote.calls.stat, 0);
  t.true(remote.calls.statMany >= 1 && remote.calls.statMany <= 2, `statMany calls: ${remote.calls.statMany}`);
  t.is(await code(vfs.getattr('/b/none')), 'NOT_FOUND');
});

test('listing revalidation with the hash: unchanged costs no re-parse, changed is fetched', async (t) => {
  const { remote, vfs } = await setup(t, {}, { dirTtlMs: 50 });
  remote.putFile('/d/a', '1');
  await vfs.readdir('/d');
  await sleep(80);
  remote.log.length = 0;
  const r1 = await vfs.readdir('/d');
  t.deepEqual(r1.map((e) => e.name), ['a']);
  t.is(remote.calls.list, 2);
  remote.putFile('/d/b', '22');
  await sleep(80);
  const r2 = await vfs.readdir('/d');
  t.deepEqual(r2.map((e) => e.name).sort(), ['a', 'b']);
  t.is(remote.calls.list, 3);
});

test('listing revalidation keeps the cached entries when the server answers unchanged', async (t) => {
  const { remote, vfs } = await setup(t, {}, { dirTtlMs: 50 });
  remote.putFile('/d/a', '1');
  await vfs.readdir('/d');
  await sleep(80);
  // a remote that says "unchanged" must not make the entries vanish
  const r = await vfs.readdir('/d');
  t.deepEqual(r.map((e) => e.name), ['a']);
  t.is(r[0]!.attr.size, 1);
});

test('own changes invalidate the caches: create, mkdir, unlink, rmdir, rename are visible at once', async (t) => {
  const { remote, vfs } = await setup(t, {}, { attrTtlMs: 60_000, dirTtlMs: 60_000, negativeTtlMs: 60_000 });
  remote.mkdirp('/d');
  t.deepEqual((await vfs.readdir('/d')).map((e) => e.name), []);
  t.is(await code(vfs.getattr('/d/x')), 'NOT_FOUND');
  await writeFile(vfs, '/d/x', 'abc');
  t.is((await vfs.getattr('/d/x')).size, 3);
  t.deepEqual((await vfs.readdir('/d')).map((e) => e.name), ['x']);
  await vfs.mkdir('/d/sub', 0o755);
  t.is((await vfs.getattr('/d/sub')).type, 'dir');
  t.deepEqual((await vfs.readdir('/d')).map((e) => e.name).sort(), ['sub', 'x']);
  await vfs.rename('/d/x', '/d/sub/y');
  t.is(await code(vfs.getattr('/d/x')), 'NOT_FOUND');
  t.is((await vfs.getattr('/d/sub/y')).size, 3);
  t.deepEqual((await vfs.readdir('/d/sub')).map((e) => e.name), ['y']);
  await vfs.unlink('/d/sub/y');
  t.is(await code(vfs.getattr('/d/sub/y')), 'NOT_FOUND');
  await vfs.rmdir('/d/sub');
  t.deepEqual((await vfs.readdir('/d')).map((e) => e.name), []);
  await vfs.deletesSent();
  t.deepEqual(remote.paths(), ['/', '/d']);
});

test('POSIX errors of mkdir, rmdir, unlink, rename, open', async (t) => {
  const { remote, vfs } = await setup(t);
  remote.putFile('/f', 'x');
  remote.putFile('/g', 'yy');
  remote.putFile('/full/inner', 'z');
  remote.mkdirp('/empty');
  remote.mkdirp('/empty2');
  t.is(await code(vfs.mkdir('/f', 0o755)), 'ALREADY_EXISTS');
  t.is(await code(vfs.mkdir('/empty', 0o755)), 'ALREADY_EXISTS');
  t.is(await code(vfs.mkdir('/nope/x', 0o755)), 'NOT_FOUND');
  t.is(await code(vfs.mkdir('/f/x', 0o755)), 'NOT_A_DIRECTORY');
  t.is(await code(vfs.rmdir('/full')), 'NOT_EMPTY');
  t.is(await code(vfs.rmdir('/f')), 'NOT_A_DIRECTORY');
  t.is(await code(vfs.rmdir('/nope')), 'NOT_FOUND');
  t.is(await code(vfs.unlink('/empty')), 'IS_A_DIRECTORY');
  t.is(await code(vfs.unlink('/nope')), 'NOT_FOUND');
  t.is(await code(vfs.rename('/nope', '/x')), 'NOT_FOUND');
  t.is(await code(vfs.rename('/f', '/nodir/x')), 'NOT_FOUND');
  t.is(await code(vfs.rename('/f', '/g/x')), 'NOT_A_DIRECTORY');
  t.is(await code(vfs.rename('/empty', '/full')), 'NOT_EMPTY');
  t.is(await code(vfs.rename('/empty', '/f')), 'NOT_A_DIRECTORY');
  t.is(await code(vfs.rename('/f', '/empty')), 'IS_A_DIRECTORY');
  t.is(await code(vfs.rename('/full', '/full/inner2')), 'BAD_REQUEST');
  t.is(await code(vfs.open('/nope', O_RDONLY)), 'NOT_FOUND');
  t.is(await code(vfs.open('/empty', O_WRONLY)), 'IS_A_DIRECTORY');
  t.is(await code(vfs.readdir('/f')), 'NOT_A_DIRECTORY');
  // rename over an existing file replaces it (the service refuses, vfs removes first; written back)
  await vfs.rename('/f', '/g');
  await vfs.flushAll();
  t.is(remote.getFile('/g')!.toString(), 'x');
  t.false(remote.has('/f'));
  // rename dir over an empty dir replaces it (written back too)
  await vfs.rename('/empty', '/empty2');
  await vfs.flushAll();
  t.is(remote.typeOf('/empty2'), 'dir');
  t.false(remote.has('/empty'));
  // rename to itself is a no-op
  await vfs.rename('/g', '/g');
  t.is(remote.getFile('/g')!.toString(), 'x');
  // folder rename moves its content
  await vfs.rename('/full', '/moved');
  await vfs.flushAll();
  t.is(remote.getFile('/moved/inner')!.toString(), 'z');
  t.is((await vfs.getattr('/moved/inner')).size, 1);
  t.is(await code(vfs.getattr('/full/inner')), 'NOT_FOUND');
});

test('rmdir sees a file that exists only locally (pending upload) and refuses', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 60_000 });
  remote.mkdirp('/d');
  await writeFile(vfs, '/d/new', 'data');
  t.false(remote.has('/d/new'));
  t.is(await code(vfs.rmdir('/d')), 'NOT_EMPTY');
  t.true(remote.has('/d'));
});

test('statfs from the remote quota, cached; unlimited is a large number', async (t) => {
  const { remote, vfs } = await setup(t, { total: 4096 * 1000 });
  remote.putFile('/a', Buffer.alloc(4096 * 10));
  const s = await vfs.statfs('/');
  t.is(s.bsize, 4096);
  t.is(s.blocks, 1000);
  t.is(s.bfree, 990);
  t.is(s.bavail, 990);
  await vfs.statfs('/');
  t.is(remote.calls.statfs, 1);
  const u = await setup(t, { total: null });
  const s2 = await u.vfs.statfs('/');
  t.true(s2.blocks > 1e9);
});

test('share link xattr, listxattr, other user.* names NO_XATTR, other namespaces and set/remove unsupported', async (t) => {
  const { remote, vfs } = await setup(t);
  remote.putFile('/doc.txt', 'x');
  const v = await vfs.getxattr('/doc.txt', SHARE_LINK_XATTR);
  t.regex(v.toString(), /^https:\/\/share\.example\/s\//);
  await vfs.getxattr('/doc.txt', SHARE_LINK_XATTR);
  t.is(remote.calls.shareLink, 1, 'cached');
  // not listed unless asked for: attribute-copying programs would create public links
  t.deepEqual(await vfs.listxattr('/doc.txt'), []);
  const l = await setup(t, {}, { listShareLinkXattr: true });
  l.remote.putFile('/d', 'x');
  t.deepEqual(await l.vfs.listxattr('/d'), [SHARE_LINK_XATTR]);
  t.is(await code(vfs.getxattr('/doc.txt', 'user.other')), 'NO_XATTR');
  // ls -l stops probing a device whose answer for these is ENOTSUP (ENODATA: two probes per name)
  t.is(await code(vfs.getxattr('/doc.txt', 'security.selinux')), 'UNSUPPORTED');
  t.is(await code(vfs.getxattr('/doc.txt', 'system.posix_acl_access')), 'UNSUPPORTED');
  t.is(remote.calls.shareLink, 1);
  t.is(await code(vfs.setxattr('/doc.txt', 'user.x', Buffer.from('1'), 0)), 'UNSUPPORTED');
  t.is(await code(vfs.removexattr('/doc.txt', 'user.x')), 'UNSUPPORTED');
  t.is(await code(vfs.getxattr('/nope', SHARE_LINK_XATTR)), 'NOT_FOUND');
  const m = await setup(t, { shareLinks: false });
  m.remote.putFile('/a', 'x');
  t.deepEqual(await m.vfs.listxattr('/a'), []);
  t.is(await code(m.vfs.getxattr('/a', SHARE_LINK_XATTR)), 'NO_XATTR');
});

test('utimens and chmod never fail; a mode the service cannot hold is shown for the mount', async (t) => {
  const { remote, vfs } = await setup(t);
  remote.putFile('/a', 'x');
  await vfs.utimens('/a', 1_000_000, 2_000_000);
  await vfs.chmod('/a', 0o600);
  const a = await vfs.getattr('/a');
  t.is(a.mtimeMs, 2_000_000);
  t.is(a.atimeMs, 1_000_000);
  t.is(a.perm, 0o600);
  t.is(await code(vfs.utimens('/nope', 1, 2)), 'NOT_FOUND');
});

test('read-only: every change is READ_ONLY, reads work', async (t) => {
  const { remote, vfs } = await setup(t, {}, { readOnly: true });
  remote.putFile('/a', 'abc');
  remote.mkdirp('/d');
  t.is(await code(vfs.create('/n', 0o644, 1)), 'READ_ONLY');
  t.is(await code(vfs.open('/a', O_WRONLY)), 'READ_ONLY');
  t.is(await code(vfs.unlink('/a')), 'READ_ONLY');
  t.is(await code(vfs.mkdir('/m', 0o755)), 'READ_ONLY');
  t.is(await code(vfs.rmdir('/d')), 'READ_ONLY');
  t.is(await code(vfs.rename('/a', '/b')), 'READ_ONLY');
  t.is(await code(vfs.truncate('/a', 0)), 'READ_ONLY');
  t.is(await code(vfs.utimens('/a', 1, 1)), 'READ_ONLY');
  t.is(await code(vfs.chmod('/a', 0o600)), 'READ_ONLY');
  t.is(await code(vfs.access('/a', 2)), 'READ_ONLY');
  await vfs.access('/a', 4);
  const fh = await vfs.open('/a', O_RDONLY);
  const b = Buffer.alloc(10);
  t.is(await vfs.read('/a', fh, b, 10, 0), 3);
  await vfs.release('/a', fh);
  t.deepEqual(remote.paths(), ['/', '/a', '/d']);
});

test('every wait on the server is bounded by opTimeoutMs', async (t) => {
  const { remote, vfs } = await setup(t, {}, { opTimeoutMs: 100 });
  remote.putFile('/a', 'x');
  const release = remote.hold('stat');
  t.teardown(release);
  t.is(await code(vfs.getattr('/a')), 'TIMEOUT');
  release();
});

test('stable inode numbers: one per path, kept across renames and uploads', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 20 });
  remote.putFile('/a', '1');
  remote.putFile('/b', '2');
  const ia = (await vfs.getattr('/a')).ino;
  const ib = (await vfs.getattr('/b')).ino;
  t.is((await vfs.getattr('/')).ino, 1);
  t.true(typeof ia === 'number' && typeof ib === 'number' && ia !== ib);
  t.is((await vfs.readdir('/')).find((e) => e.name === 'a')!.attr.ino, ia);
  await vfs.rename('/a', '/c');
  t.is((await vfs.getattr('/c')).ino, ia);
  await writeFile(vfs, '/n', 'new');
  const inN = (await vfs.getattr('/n')).ino;
  await vfs.flushAll();
  t.is((await vfs.getattr('/n')).ino, inN);
});
