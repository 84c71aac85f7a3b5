// The inode-addressed vfs (vfs/inodes.ts, what the libfuse 3 backend calls): the vfs's own inode
// table with the kernel's lookup counts, times set one at a time, create's mode, RENAME_NOREPLACE
// against a target only the server knows, open files unlinked by inode, keepCache per open.
import test from 'ava';
import { setup, O_CREAT, O_RDWR, O_RDONLY, O_WRONLY } from './helpers.js';
import { isRemoteError } from '../../src/errors.js';

const code = async (p: Promise<unknown>) => {
  try { await p; return 'OK'; } catch (e) { return (e as { code?: string }).code ?? String(e); }
};

test('lookup counts one kernel reference per entry; forget takes them away; numbers follow renames', async (t) => {
  const { vfs, remote } = await setup(t);
  remote.putFile('/d/a', 'aaa');
  const ino = vfs.inodes;
  const d = await ino.lookup(1, 'd');
  const a = await ino.lookup(d.ino, 'a');
  const a2 = await ino.lookup(d.ino, 'a');
  t.is(a.ino, a2.ino);
  t.not(a.ino, d.ino);
  const table = (vfs as unknown as { attrTable: { lookupCount(i: number): number; pathOf(i: number): string | undefined } }).attrTable;
  t.is(table.lookupCount(a.ino), 2);
  ino.forget(a.ino, 1);
  t.is(table.lookupCount(a.ino), 1);
  ino.forget(a.ino, 1);
  t.is(table.lookupCount(a.ino), 0);
  // counted names keep their number for the mount (st_ino stable), renamed or not
  await ino.rename(d.ino, 'a', 1, 'b');
  t.is(table.pathOf(a.ino), '/b');
  t.is((await ino.lookup(1, 'b')).ino, a.ino);
  t.is((await ino.getattr(a.ino)).size, 3);
  t.is(await code(ino.lookup(d.ino, 'a')), 'NOT_FOUND');
  // readdir reports the same numbers as lookup
  const r = await ino.readdir(1);
  t.is(r.entries.find((e) => e.name === 'b')?.attr.ino, a.ino);
  t.is(r.entries.find((e) => e.name === 'd')?.attr.ino, d.ino);
});

test('setattr: mtime alone leaves atime, atime alone leaves mtime, "now" is the clock', async (t) => {
  const { vfs, remote } = await setup(t);
  remote.putFile('/f', 'x', Date.UTC(2020, 0, 1));
  const f = await vfs.inodes.lookup(1, 'f');
  const mtime = Date.UTC(2001, 1, 3, 4, 5, 6) + 0.5;
  let a = await vfs.inodes.setattr(f.ino, { atime: Date.UTC(2010, 0, 1) });
  t.is(a.atimeMs, Date.UTC(2010, 0, 1));
  t.is(a.mtimeMs, Date.UTC(2020, 0, 1));
  a = await vfs.inodes.setattr(f.ino, { mtime });
  t.is(a.mtimeMs, mtime);
  t.is(a.atimeMs, Date.UTC(2010, 0, 1), 'atime untouched by an mtime-only change');
  const before = Date.now();
  a = await vfs.inodes.setattr(f.ino, { atime: 'now' });
  t.true(a.atimeMs >= before);
  t.is(a.mtimeMs, mtime, 'mtime untouched by an atime-only change');
  // the old path API (fuse-native) keeps working
  await vfs.utimens('/f', 1000, 2000);
  a = await vfs.inodes.getattr(f.ino);
  t.deepEqual([a.atimeMs, a.mtimeMs], [1000, 2000]);
});

test('create with mode 0 gives mode 0 (it used to give 0644); flags are honoured', async (t) => {
  const { vfs } = await setup(t);
  const { fh, attr } = await vfs.inodes.create(1, 'zero', 0, O_CREAT | O_WRONLY);
  t.is(attr.perm, 0);
  await vfs.inodes.write(fh, Buffer.from('abc'), 3, 0);
  await vfs.inodes.flush(fh);
  await vfs.inodes.release(fh);
  t.is((await vfs.getattr('/zero')).perm, 0);
  const c2 = await vfs.inodes.create(1, 'm600', 0o600, O_CREAT | O_RDWR);
  t.is(c2.attr.perm, 0o600);
  await vfs.inodes.release(c2.fh);
  t.is(await code(vfs.inodes.create(1, 'zero', 0o644, O_CREAT | fsExcl())), 'ALREADY_EXISTS');
});

function fsExcl(): number {
  return 0o200; // O_EXCL on Linux
}

test('rename NOREPLACE: EEXIST for a target the caches know, and for one only the server has', async (t) => {
  const { vfs, remote } = await setup(t);
  remote.putFile('/a', 'A');
  remote.putFile('/b', 'B');
  const err = await vfs.inodes.rename(1, 'a', 1, 'b', { noReplace: true }).then(() => null, (e) => e);
  t.true(isRemoteError(err, 'ALREADY_EXISTS'));
  // the vfs saw /c missing; another client makes it; a NOREPLACE rename must not replace it
  t.is(await code(vfs.inodes.lookup(1, 'c')), 'NOT_FOUND');
  remote.putFile('/c', 'C');
  const err2 = await vfs.inodes.rename(1, 'a', 1, 'c', { noReplace: true }).then(() => null, (e) => e);
  t.true(isRemoteError(err2, 'ALREADY_EXISTS'), String(err2));
  t.is(remote.getFile('/c')?.toString(), 'C');
  t.is(remote.getFile('/a')?.toString(), 'A');
  // without the flag it replaces
  await vfs.inodes.rename(1, 'a', 1, 'b');
  t.is(remote.getFile('/b')?.toString(), 'A');
});

test('an open file unlinked by inode: readable and writable through its handle, getattr by number (nlink 0), never uploaded', async (t) => {
  const { vfs, remote } = await setup(t);
  remote.putFile('/u', 'server');
  const u = await vfs.inodes.lookup(1, 'u');
  const { fh } = await vfs.inodes.open(u.ino, O_RDWR);
  await vfs.inodes.unlink(1, 'u');
  t.false(remote.has('/u'));
  t.is(await code(vfs.inodes.lookup(1, 'u')), 'NOT_FOUND');
  const buf = Buffer.alloc(6);
  t.is(await vfs.inodes.read(fh, buf, 6, 0), 6);
  t.is(buf.toString(), 'server');
  await vfs.inodes.write(fh, Buffer.from('MORE'), 4, 6);
  const a = await vfs.inodes.getattr(u.ino);
  t.is(a.nlink, 0);
  t.is(a.size, 10);
  t.is((await vfs.inodes.getattr(u.ino, fh)).size, 10);
  await vfs.inodes.flush(fh);
  await vfs.inodes.release(fh);
  await vfs.flushAll();
  t.false(remote.has('/u'), 'not uploaded again');
  t.deepEqual((await vfs.inodes.readdir(1)).entries.map((e) => e.name), []);
  t.is(await code(vfs.inodes.getattr(u.ino)), 'NOT_FOUND', 'gone with its last handle');
});

test('open: keepCache only when the content object outlived earlier opens unchanged', async (t) => {
  const { vfs, remote } = await setup(t, {}, { attrTtlMs: 0, dirTtlMs: 0, negativeTtlMs: 0 });
  remote.putFile('/k', 'one', 1000);
  const k = await vfs.inodes.lookup(1, 'k');
  const o1 = await vfs.inodes.open(k.ino, O_RDONLY);
  t.false(o1.keepCache, 'first open');
  await vfs.inodes.read(o1.fh, Buffer.alloc(3), 3, 0);
  await vfs.inodes.release(o1.fh);
  const o2 = await vfs.inodes.open(k.ino, O_RDONLY);
  t.true(o2.keepCache, 'unchanged');
  await vfs.inodes.release(o2.fh);
  remote.putFile('/k', 'two!', 5000);
  const o3 = await vfs.inodes.open(k.ino, O_RDONLY);
  t.false(o3.keepCache, 'the server copy changed');
  await vfs.inodes.release(o3.fh);
});
