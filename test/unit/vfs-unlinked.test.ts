// POSIX: a file deleted while open keeps its whole content for the handles still open, although
// the server copy is gone; the local-only name it is kept under is never listed nor uploaded.
import test from 'ava';
import { setup, bytes, sha, O_RDONLY, O_RDWR, readAll, writeFile } from './helpers.js';

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
      t.is(sha(Buffer.concat(parts)), sha(data));
      t.is(remote.calls.read + remote.calls.download, readsBefore, 'nothing fetched after the delete');
      t.is((await vfs.fgetattr(p, fh)).size, data.length);
      t.deepEqual((await vfs.readdir('/d')).names, ['other']);
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
