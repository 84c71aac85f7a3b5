// POSIX: a file deleted while open keeps its whole content for the handles still open, although
// the server copy is gone; the local-only name it is kept under is never listed nor uploaded.
import test from 'ava';
import { Forbidden } from '../../src/errors.js';
import { setup, bytes, sha256, O_RDONLY, O_RDWR, O_CREAT, O_TRUNC, readAll, writeFile } from './helpers.js';

for (const ranged of [true, false]) {
  for (const keep of [false, true]) {
    test(`open, read a little, unlink${keep ? ' (kept under a hidden name)' : ''}: the rest still reads (${ranged ? 'ranged' : 'download'} remote)`, async (t) => {
      const { remote, vfs } = await setup(t, { rangedReads: ranged, downloadChunkBytes: 64 * 1024 }, { readAheadBytes: 64 * 1024, readBlockBytes: 64 * 1024 });
      const data = bytes(3 * 1024 * 1024 + 5, 7);
      remote.putFile('/d/big.bin', data);
      remote.putFile('/d/other', 'o');
      const fh = await vfs.open('/d/big.bin', O_RDONLY);
      const head = Buffer.alloc(4096);
      t.is(await vfs.read('/d/big.bin', fh, head, 4096, 0), 4096);
      const hiddenName = '/d/.fuse_hidden0000000200000001';
      await vfs.unlink('/d/big.bin', keep ? { keepOpenAs: hiddenName } : {});
      await vfs.deletesSent();
      t.false(remote.has('/d/big.bin'));
      const readsBefore = remote.calls.read + remote.calls.download;
      const p = keep ? hiddenName : '/d/big.bin';
      const parts: Buffer[] = [];
      for (let pos = 0; ;) {
        const b = Buffer.alloc(128 * 1024);
        const n = await vfs.read(p, fh, b, b.length, pos);
        if (n === 0) break;
        parts.push(b.subarray(0, n));
        pos += n;
      }
      t.is(sha256(Buffer.concat(parts)), sha256(data));
      t.is(remote.calls.read + remote.calls.download, readsBefore, 'nothing fetched after the delete');
      t.is((await vfs.fgetattr(p, fh)).size, data.length);
      t.deepEqual((await vfs.readdir('/d')).map((e) => e.name), ['other']);
      if (keep) {
        t.is((await vfs.getattr(hiddenName)).size, data.length);
        await vfs.release(hiddenName, fh);
        // libfuse unlinks the hidden name after the last release: nothing reaches the server
        remote.resetCalls();
        await vfs.unlink(hiddenName);
        t.is(remote.calls.remove, 0);
        await t.throwsAsync(vfs.getattr(hiddenName), { code: 'NOT_FOUND' } as never);
      } else {
        await vfs.release(p, fh);
        await t.throwsAsync(vfs.getattr('/d/big.bin'), { code: 'NOT_FOUND' } as never);
      }
      await vfs.flushAll();
      t.deepEqual(remote.paths().filter((x) => x.startsWith('/d/')), ['/d/other']);
    });
  }
}

test('written after the unlink: the writes stay local, nothing is uploaded', async (t) => {
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 0 });
  remote.putFile('/w.txt', 'server text');
  const fh = await vfs.open('/w.txt', O_RDWR);
  await vfs.unlink('/w.txt', { keepOpenAs: '/.fuse_hidden00000003000000aa' });
  await vfs.write('/.fuse_hidden00000003000000aa', fh, Buffer.from('LOCAL'), 5, 0);
  await vfs.flush('/.fuse_hidden00000003000000aa', fh);
  await vfs.release('/.fuse_hidden00000003000000aa', fh);
  await vfs.unlink('/.fuse_hidden00000003000000aa');
  await vfs.flushAll();
  t.deepEqual(remote.paths(), ['/']);
  t.is(remote.calls.upload, 0);
  // a new file of the old name is independent of the deleted one
  await writeFile(vfs, '/w.txt', 'new');
  t.is((await readAll(vfs, '/w.txt')).toString(), 'new');
  t.is(remote.getFile('/w.txt')?.toString(), 'new');
});

test('a hidden name moves with its folder: after the folder is renamed it is found under the new path', async (t) => {
  // soak seed 300501 (vBoxx, libfuse 2): unlink while open, rename the parent, fstat through the
  // handle (the kernel sends a plain getattr of the new path) got ENOENT
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 0 });
  remote.putFile('/a/f.txt', 'server text');
  remote.putFile('/a/g.txt', 'g');
  const fh = await vfs.open('/a/f.txt', O_RDWR);
  const hidden = '/a/.fuse_hidden0000000400000002';
  await vfs.unlink('/a/f.txt', { keepOpenAs: hidden });
  await vfs.rename('/a', '/b');
  const moved = '/b/.fuse_hidden0000000400000002';
  t.is((await vfs.getattr(moved)).size, 'server text'.length);
  await t.throwsAsync(vfs.getattr(hidden), { code: 'NOT_FOUND' } as never);
  t.deepEqual((await vfs.readdir('/b')).map((e) => e.name), ['g.txt']);
  // a rename the server refuses when it is sent puts it back where it was
  await vfs.flushAll();
  remote.failNext({ method: 'move', error: new Forbidden('refused', { path: '/b' }) });
  await vfs.rename('/b', '/c');
  t.is((await vfs.getattr('/c/.fuse_hidden0000000400000002')).size, 'server text'.length);
  await vfs.flushAll();
  t.deepEqual(vfs.status().failures.map((f) => [f.op, f.path]), [['move', '/c']]);
  t.is((await vfs.getattr(moved)).size, 'server text'.length);
  await t.throwsAsync(vfs.getattr('/c/.fuse_hidden0000000400000002'), { code: 'NOT_FOUND' } as never);
  await vfs.write(moved, fh, Buffer.from('LOCAL'), 5, 0);
  await vfs.release(moved, fh);
  remote.resetCalls();
  await vfs.unlink(moved);
  t.is(remote.calls.remove, 0, 'the hidden name never reached the server');
  await t.throwsAsync(vfs.getattr(moved), { code: 'NOT_FOUND' } as never);
  await vfs.flushAll();
  t.deepEqual(remote.paths().filter((x) => x !== '/'), ['/b', '/b/g.txt']);
});

test('a folder holding a file deleted while open: rename over it and rmdir of it answer EBUSY until the last close', async (t) => {
  // soak seed 500051 (Maxxo, libfuse 2): create p0/rp0-0/e, write, fsync, unlink it while open,
  // rename the empty folder p0/e over p0/rp0-0: the rename succeeded, and libfuse 2 (which finds
  // the handle through its folder's path) then answered ENOENT to the handle's fsync.
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 0 });
  await vfs.mkdir('/p0', 0o755);
  await vfs.mkdir('/p0/rp0-0', 0o755);
  await vfs.mkdir('/p0/e', 0o755);
  const fh = await vfs.create('/p0/rp0-0/e', 0o644, O_RDWR | O_CREAT | O_TRUNC);
  await vfs.write('/p0/rp0-0/e', fh, Buffer.from('first'), 5, 0);
  await vfs.fsync('/p0/rp0-0/e', fh, false);
  t.is(remote.getFile('/p0/rp0-0/e')?.toString(), 'first');
  const hidden = '/p0/rp0-0/.fuse_hidden0000000500000001';
  await vfs.unlink('/p0/rp0-0/e', { keepOpenAs: hidden });
  await vfs.deletesSent();
  t.false(remote.has('/p0/rp0-0/e'));
  // empty as far as anyone can see, but its path is the handle's only way in
  t.deepEqual((await vfs.readdir('/p0/rp0-0')).map((e) => e.name), []);
  await t.throwsAsync(vfs.rename('/p0/e', '/p0/rp0-0'), { code: 'BUSY' } as never);
  await t.throwsAsync(vfs.rmdir('/p0/rp0-0'), { code: 'BUSY' } as never);
  t.true(remote.has('/p0/rp0-0') && remote.has('/p0/e'), 'nothing changed on the server');
  // the handle is whole: write, fsync, fstat, read through the hidden name
  await vfs.write(hidden, fh, Buffer.from('SECOND'), 6, 5);
  await vfs.fsync(hidden, fh, false);
  t.is((await vfs.fgetattr(hidden, fh)).size, 11);
  const b = Buffer.alloc(32);
  t.is((await vfs.read(hidden, fh, b, 32, 0)), 11);
  t.is(b.subarray(0, 11).toString(), 'firstSECOND');
  await vfs.flush(hidden, fh);
  await t.throwsAsync(vfs.rmdir('/p0/rp0-0'), { code: 'BUSY' } as never);
  await vfs.release(hidden, fh);
  await vfs.unlink(hidden);
  // closed: the folder is an ordinary empty folder again, on the server too
  await vfs.rename('/p0/e', '/p0/rp0-0');
  await vfs.rmdir('/p0/rp0-0');
  await vfs.flushAll();
  t.deepEqual(remote.paths().filter((x) => x !== '/'), ['/p0']);
  t.is(vfs.status().pending, 0, 'nothing of the deleted file in the journal');
});

test('a hidden name left behind after the last close does not keep its folder', async (t) => {
  // libfuse 2 unlinks the hidden name right after the last release; should that unlink never come,
  // the folder still goes, and the stale name goes with it (it must not show up in a new folder there)
  const { remote, vfs } = await setup(t, {}, { writebackDelayMs: 0 });
  remote.putFile('/d/f', 'server');
  await vfs.mkdir('/n', 0o755);
  const fh = await vfs.open('/d/f', O_RDONLY);
  const hidden = '/d/.fuse_hidden0000000600000001';
  await vfs.unlink('/d/f', { keepOpenAs: hidden });
  await vfs.release(hidden, fh);
  await vfs.rename('/n', '/d');
  await t.throwsAsync(vfs.getattr(hidden), { code: 'NOT_FOUND' } as never);
  await vfs.rmdir('/d');
  await vfs.flushAll();
  t.deepEqual(remote.paths(), ['/']);
});

for (const ranged of [true, false]) {
  test(`open, read a little, another file renamed over it: the rest still reads and writes go on (${ranged ? 'ranged' : 'download'} remote)`, async (t) => {
    const { remote, vfs } = await setup(t, { rangedReads: ranged, downloadChunkBytes: 64 * 1024 }, { readAheadBytes: 64 * 1024, readBlockBytes: 64 * 1024 });
    const data = bytes(3 * 1024 * 1024 + 5, 9);
    remote.putFile('/d/big.bin', data);
    const fh = await vfs.open('/d/big.bin', O_RDWR);
    const head = Buffer.alloc(4096);
    t.is(await vfs.read('/d/big.bin', fh, head, 4096, 0), 4096);
    // the save pattern of another program: a new file renamed over the open one, uploaded
    await writeFile(vfs, '/d/new.tmp', 'replacement');
    await vfs.rename('/d/new.tmp', '/d/big.bin');
    await vfs.flushAll();
    t.is(remote.getFile('/d/big.bin')!.toString(), 'replacement');
    const parts: Buffer[] = [];
    for (let pos = 0; ;) {
      const b = Buffer.alloc(128 * 1024);
      const n = await vfs.read('/d/big.bin', fh, b, b.length, pos);
      if (n === 0) break;
      parts.push(b.subarray(0, n));
      pos += n;
    }
    t.is(sha256(Buffer.concat(parts)), sha256(data), 'the open handle reads the old content');
    t.is(await vfs.write('/d/big.bin', fh, Buffer.from('x'), 1, 10), 1);
    await vfs.release('/d/big.bin', fh);
    await vfs.flushAll();
    t.is(remote.getFile('/d/big.bin')!.toString(), 'replacement', 'nothing of the replaced file reaches the server');
  });

  test(`open for writing, nothing read, another file renamed over it and uploaded: the old content still reads and takes writes (${ranged ? 'ranged' : 'download'} remote)`, async (t) => {
    const { remote, vfs } = await setup(t, { rangedReads: ranged, downloadChunkBytes: 64 * 1024 }, { readAheadBytes: 64 * 1024, readBlockBytes: 64 * 1024 });
    const data = bytes(300 * 1024 + 5, 11);
    remote.putFile('/d/old.bin', data);
    const fh = await vfs.open('/d/old.bin', O_RDWR);
    // (the mk14 soak seed 810107: the drive had dropped the cached bytes of the open file, and the
    // save pattern of another program replaced it: its content was fetched only at the next write)
    await writeFile(vfs, '/d/new.tmp', 'replacement');
    await vfs.rename('/d/new.tmp', '/d/old.bin');
    await vfs.flushAll();
    t.is(remote.getFile('/d/old.bin')!.toString(), 'replacement');
    t.is(await vfs.write('/d/old.bin', fh, Buffer.from('x'), 1, 10), 1);
    const want = Buffer.from(data);
    want[10] = 'x'.charCodeAt(0);
    const parts: Buffer[] = [];
    for (let pos = 0; ;) {
      const b = Buffer.alloc(64 * 1024);
      const n = await vfs.read('/d/old.bin', fh, b, b.length, pos);
      if (n === 0) break;
      parts.push(b.subarray(0, n));
      pos += n;
    }
    t.is(sha256(Buffer.concat(parts)), sha256(want), 'the open handle has the old content');
    await vfs.release('/d/old.bin', fh);
    await vfs.flushAll();
    t.is(remote.getFile('/d/old.bin')!.toString(), 'replacement', 'nothing of the replaced file reaches the server');
  });
}
