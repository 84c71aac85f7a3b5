// A file still open for writing when the drive closes (forced or lazy unmount, a signal): the
// bytes the program wrote are kept as if it had closed the file, uploaded by a clean close or
// replayed from the journal at the next mount. They were dropped: never journaled, and the
// cache file was removed at the next start as a crash leftover.
import test from 'ava';
import { setup, O_WRONLY, O_CREAT } from './helpers.js';

for (const force of [false, true]) {
  test(`close({force: ${force}}) with a handle open for writing keeps what was written`, async (t) => {
    const s = await setup(t, {}, { writebackDelayMs: 60_000 });
    const { remote, vfs } = s;
    const fh = await vfs.create('/open.txt', 0o644, O_WRONLY | O_CREAT);
    await vfs.write('/open.txt', fh, Buffer.from('part1'), 5, 0);
    // an existing file rewritten in place, also unclosed
    remote.putFile('/old.txt', Buffer.from('old content'));
    const fh2 = await vfs.open('/old.txt', O_WRONLY);
    await vfs.write('/old.txt', fh2, Buffer.from('NEW'), 3, 0);
    await vfs.close({ force });
    if (!force) {
      t.is(remote.getFile('/open.txt')?.toString(), 'part1', 'uploaded by the clean close');
      t.is(remote.getFile('/old.txt')?.toString(), 'NEW content');
      return;
    }
    t.is(remote.getFile('/open.txt'), undefined, 'a forced close does not upload');
    const v2 = await s.reopen();
    t.deepEqual(await v2.flushAll(), { pending: 0, failed: [] });
    t.is(remote.getFile('/open.txt')?.toString(), 'part1', 'replayed at the next mount');
    t.is(remote.getFile('/old.txt')?.toString(), 'NEW content');
  });
}
