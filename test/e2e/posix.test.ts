// A POSIX suite in the spirit of pjdfstest, for what applies to a drive without ownership, links
// or special files: return codes and errno of mkdir, rmdir, rename, unlink, open, truncate and
// ftruncate, against a real mount of each service.
import test from 'ava';
import fsp from 'node:fs/promises';
import { constants as C } from 'node:fs';
import path from 'node:path';
import { useServers, driveMacro, KINDS, uniq, errCode } from './lib/services.js';

const servers = useServers(test);

// each scenario gets its own folder on the drive
const onDrive = driveMacro(test, servers, async (_t, d): Promise<[string]> => {
  const dir = d.p(uniq('posix'));
  await fsp.mkdir(dir);
  return [dir];
});

const long = 'n'.repeat(256);

for (const kind of KINDS) {
  test.serial('mkdir', onDrive, kind, async (t, _d, dir) => {
    const p = (...s: string[]) => path.join(dir, ...s);
    t.is(await errCode(fsp.mkdir(p('a'))), 'OK');
    t.true((await fsp.stat(p('a'))).isDirectory());
    t.is(await errCode(fsp.mkdir(p('a'))), 'EEXIST', 'existing folder');
    await fsp.writeFile(p('file'), 'x');
    t.is(await errCode(fsp.mkdir(p('file'))), 'EEXIST', 'existing file');
    t.is(await errCode(fsp.mkdir(p('missing', 'b'))), 'ENOENT', 'missing parent');
    t.is(await errCode(fsp.mkdir(p('file', 'b'))), 'ENOTDIR', 'parent is a file');
    t.is(await errCode(fsp.mkdir(p(long))), 'ENAMETOOLONG', '256-byte name');
    t.is(await errCode(fsp.mkdir(p('m'.repeat(200)))), 'OK', '200-byte name');
    t.is((await fsp.stat(p('a'))).mode & C.S_IFMT, C.S_IFDIR);
  });

  test.serial('rmdir', onDrive, kind, async (t, _d, dir) => {
    const p = (...s: string[]) => path.join(dir, ...s);
    await fsp.mkdir(p('full', 'sub'), { recursive: true });
    await fsp.writeFile(p('file'), 'x');
    await fsp.mkdir(p('empty'));
    t.is(await errCode(fsp.rmdir(p('full'))), 'ENOTEMPTY', 'folder with a folder');
    await fsp.writeFile(p('full', 'sub', 'f'), 'x');
    t.is(await errCode(fsp.rmdir(p('full', 'sub'))), 'ENOTEMPTY', 'folder with a file');
    t.is(await errCode(fsp.rmdir(p('missing'))), 'ENOENT');
    t.is(await errCode(fsp.rmdir(p('file'))), 'ENOTDIR');
    t.is(await errCode(fsp.rmdir(p('file', 'x'))), 'ENOTDIR', 'through a file');
    t.is(await errCode(fsp.rmdir(p('empty') + '/.')), 'EINVAL', 'dot');
    t.is(await errCode(fsp.rmdir(p('empty'))), 'OK');
    t.is(await errCode(fsp.stat(p('empty'))), 'ENOENT');
    t.is(await errCode(fsp.rmdir(p(long))), 'ENAMETOOLONG');
  });

  test.serial('unlink', onDrive, kind, async (t, _d, dir) => {
    const p = (...s: string[]) => path.join(dir, ...s);
    await fsp.writeFile(p('f'), 'x');
    await fsp.mkdir(p('d'));
    t.is(await errCode(fsp.unlink(p('missing'))), 'ENOENT');
    t.is(await errCode(fsp.unlink(p('d'))), 'EISDIR', 'a folder');
    t.is(await errCode(fsp.unlink(p('f', 'x'))), 'ENOTDIR', 'through a file');
    t.is(await errCode(fsp.unlink(p(long))), 'ENAMETOOLONG');
    t.is(await errCode(fsp.unlink(p('f'))), 'OK');
    t.is(await errCode(fsp.stat(p('f'))), 'ENOENT');
    t.deepEqual(await fsp.readdir(dir), ['d']);
  });

  test.serial('unlink of an open file: the handle keeps working', onDrive, kind, async (t, _d, dir) => {
    const f = path.join(dir, 'open-then-unlinked');
    await fsp.writeFile(f, 'still readable');
    const h = await fsp.open(f, 'r+');
    try {
      await fsp.unlink(f);
      t.is(await errCode(fsp.stat(f)), 'ENOENT');
      const buf = Buffer.alloc(14);
      const { bytesRead } = await h.read(buf, 0, 14, 0);
      t.is(buf.subarray(0, bytesRead).toString(), 'still readable');
    } finally {
      await h.close();
    }
    t.deepEqual((await fsp.readdir(dir)).filter((n) => !n.startsWith('.fuse_hidden')), []);
  });

  test.serial('unlink of an open file, then its folder renamed: fstat, read and write through the handle still work', onDrive, kind, async (t, _d, dir) => {
    // soak seed 300501: libfuse 2 keeps the file as <folder>/.fuse_hidden*; after the folder moved,
    // fstat asked for the hidden name under the new folder and got ENOENT
    await fsp.mkdir(path.join(dir, 'a'));
    const f = path.join(dir, 'a', 'victim');
    await fsp.writeFile(f, 'still readable');
    const h = await fsp.open(f, 'r+');
    try {
      await fsp.unlink(f);
      await fsp.rename(path.join(dir, 'a'), path.join(dir, 'b'));
      t.is((await h.stat()).size, 14);
      await h.write('STILL', 0, 'utf8');
      const buf = Buffer.alloc(14);
      const { bytesRead } = await h.read(buf, 0, 14, 0);
      t.is(buf.subarray(0, bytesRead).toString(), 'STILL readable');
      t.is((await h.stat()).size, 14);
    } finally {
      await h.close();
    }
    t.deepEqual((await fsp.readdir(path.join(dir, 'b'))).filter((n) => !n.startsWith('.fuse_hidden')), []);
    t.is(await errCode(fsp.stat(path.join(dir, 'a'))), 'ENOENT');
  });

  test.serial('rename', onDrive, kind, async (t, _d, dir) => {
    const p = (...s: string[]) => path.join(dir, ...s);
    await fsp.writeFile(p('a'), 'A');
    await fsp.writeFile(p('b'), 'B');
    await fsp.mkdir(p('d1', 'inner'), { recursive: true });
    await fsp.mkdir(p('d2'));
    await fsp.mkdir(p('full', 'x'), { recursive: true });
    t.is(await errCode(fsp.rename(p('missing'), p('z'))), 'ENOENT', 'missing source');
    t.is(await errCode(fsp.rename(p('a'), p('nodir', 'a'))), 'ENOENT', 'missing target folder');
    t.is(await errCode(fsp.rename(p('a'), p('b', 'a'))), 'ENOTDIR', 'target parent is a file');
    t.is(await errCode(fsp.rename(p('a'), p('d2'))), 'EISDIR', 'file over folder');
    t.is(await errCode(fsp.rename(p('d2'), p('a'))), 'ENOTDIR', 'folder over file');
    t.is(await errCode(fsp.rename(p('d1'), p('d1', 'inner', 'd1'))), 'EINVAL', 'folder into itself');
    t.true(['ENOTEMPTY', 'EEXIST'].includes(await errCode(fsp.rename(p('d2'), p('full')))), 'over a non-empty folder');
    t.is(await errCode(fsp.rename(p('a'), p(long))), 'ENAMETOOLONG');
    t.is(await errCode(fsp.rename(p('a'), p('a'))), 'OK', 'onto itself');
    t.is(await errCode(fsp.rename(p('a'), p('b'))), 'OK', 'file over file replaces');
    t.is(await fsp.readFile(p('b'), 'utf8'), 'A');
    t.is(await errCode(fsp.stat(p('a'))), 'ENOENT');
    t.is(await errCode(fsp.rename(p('d2'), p('d1', 'inner', 'd2'))), 'OK', 'into a subfolder');
    t.is(await errCode(fsp.rename(p('d1', 'inner', 'd2'), p('d3'))), 'OK', 'back up and renamed');
    await fsp.mkdir(p('emptytarget'));
    t.is(await errCode(fsp.rename(p('d3'), p('emptytarget'))), 'OK', 'folder over empty folder');
    t.deepEqual((await fsp.readdir(dir)).sort(), ['b', 'd1', 'emptytarget', 'full']);
  });

  test.serial('open', onDrive, kind, async (t, _d, dir) => {
    const p = (...s: string[]) => path.join(dir, ...s);
    await fsp.writeFile(p('f'), 'hello');
    await fsp.mkdir(p('d'));
    t.is(await errCode(fsp.open(p('missing'), 'r')), 'ENOENT');
    t.is(await errCode(fsp.open(p('f'), C.O_CREAT | C.O_EXCL | C.O_WRONLY)), 'EEXIST', 'O_EXCL on a file');
    t.is(await errCode(fsp.open(p('d'), C.O_CREAT | C.O_EXCL | C.O_WRONLY)), 'EEXIST', 'O_EXCL on a folder');
    t.is(await errCode(fsp.open(p('d'), 'w')), 'EISDIR', 'folder for writing');
    t.is(await errCode(fsp.open(p('f', 'x'), 'r')), 'ENOTDIR', 'through a file');
    t.is(await errCode(fsp.open(p('nodir', 'x'), 'w')), 'ENOENT', 'create in a missing folder');
    t.is(await errCode(fsp.open(p(long), 'w')), 'ENAMETOOLONG');
    t.is(await errCode(fsp.open(p('d'), C.O_RDONLY | C.O_DIRECTORY).then((h) => h.close())), 'OK');
    t.is(await errCode(fsp.open(p('f'), C.O_RDONLY | C.O_DIRECTORY)), 'ENOTDIR');
    // O_TRUNC, O_APPEND, O_CREAT with mode.
    const h = await fsp.open(p('f'), 'a');
    await h.write('!');
    await h.close();
    t.is(await fsp.readFile(p('f'), 'utf8'), 'hello!');
    await (await fsp.open(p('f'), 'w')).close();
    t.is((await fsp.stat(p('f'))).size, 0);
    const n = await fsp.open(p('new'), 'wx', 0o640);
    await n.write('x');
    await n.close();
    t.is((await fsp.stat(p('new'))).size, 1);
    // Read-only handles cannot write.
    const ro = await fsp.open(p('new'), 'r');
    t.is(await errCode(ro.write('y')), 'EBADF');
    await ro.close();
  });

  test.serial('truncate', onDrive, kind, async (t, _d, dir) => {
    const p = (...s: string[]) => path.join(dir, ...s);
    await fsp.writeFile(p('f'), '0123456789');
    await fsp.mkdir(p('d'));
    t.is(await errCode(fsp.truncate(p('missing'), 0)), 'ENOENT');
    t.is(await errCode(fsp.truncate(p('d'), 0)), 'EISDIR');
    t.is(await errCode(fsp.truncate(p('f', 'x'), 0)), 'ENOTDIR');
    t.is(await errCode(fsp.truncate(p('f'), 4)), 'OK');
    t.is(await fsp.readFile(p('f'), 'utf8'), '0123');
    t.is(await errCode(fsp.truncate(p('f'), 8)), 'OK');
    t.deepEqual(await fsp.readFile(p('f')), Buffer.from('0123\0\0\0\0'));
    t.is(await errCode(fsp.truncate(p('f'), 0)), 'OK');
    t.is((await fsp.stat(p('f'))).size, 0);
  });

  test.serial('ftruncate', onDrive, kind, async (t, _d, dir) => {
    const f = path.join(dir, 'f');
    await fsp.writeFile(f, 'abcdefgh');
    const h = await fsp.open(f, 'r+');
    try {
      await h.truncate(3);
      t.is((await h.stat()).size, 3);
      await h.write('XY', 5);
      t.is((await h.stat()).size, 7);
      const buf = Buffer.alloc(7);
      await h.read(buf, 0, 7, 0);
      t.deepEqual(buf, Buffer.from('abc\0\0XY'));
      await h.truncate(0);
      t.is((await h.stat()).size, 0);
    } finally {
      await h.close();
    }
    t.is((await fsp.stat(f)).size, 0);
    const ro = await fsp.open(f, 'r');
    try {
      t.true(['EINVAL', 'EBADF'].includes(await errCode(ro.truncate(1))), 'read-only handle');
    } finally {
      await ro.close();
    }
  });
}
