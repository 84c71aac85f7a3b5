// rename costs the one move request when the caches know source and target; when a cache is
// stale (another client made the target since), the service's conflict answer still ends as
// rename(2) would: replaced, or the errno of the target's real type.
import test from 'ava';
import { isRemoteError } from '../../src/errors.js';
import { MemoryRemote } from '../helpers/memory-remote.js';
import { setup, writeFile, until, sleep, readAll } from './helpers.js';

async function code(p: Promise<unknown>): Promise<string> {
  try { await p; return 'OK'; } catch (e) { return isRemoteError(e) ? e.code : String(e); }
}

function total(remote: MemoryRemote): number {
  return Object.values(remote.calls).reduce((a, b) => a + b, 0);
}

test('rename of a folder the caches know (parent just listed) asks the server nothing; its send is one request', async (t) => {
  const remote = new MemoryRemote();
  for (let i = 0; i < 50; i++) remote.putFile(`/top/src/f${i}`, 'x');
  remote.mkdirp('/top/other');
  const { vfs } = await setup(t, {}, {}, remote);
  await vfs.readdir('/top');
  // what the kernel asks before rename(2): the source and the (missing) target
  await vfs.getattr('/top/src');
  t.is(await code(vfs.getattr('/top/dst')), 'NOT_FOUND');
  remote.resetCalls();
  await vfs.rename('/top/src', '/top/dst');
  t.is(total(remote), 0, `requests: ${JSON.stringify(remote.calls)}`);
  await vfs.flushAll();
  t.is(remote.calls.move, 1);
  t.is(total(remote), 1, `requests: ${JSON.stringify(remote.calls)}`);
  t.true(remote.has('/top/dst/f49'));
  t.false(remote.has('/top/src'));
  // and the caches show the result at once, without asking
  remote.resetCalls();
  t.is((await vfs.getattr('/top/dst')).type, 'dir');
  t.is(await code(vfs.getattr('/top/src')), 'NOT_FOUND');
  t.is(total(remote), 0);
});

test('stale cache says the target is missing: a file there is replaced (POSIX), a folder gives the right errno', async (t) => {
  const remote = new MemoryRemote();
  remote.putFile('/a.txt', 'new content');
  remote.putFile('/b.txt', 'other');
  remote.putFile('/dir1/x', 'x');
  remote.mkdirp('/dir2');
  const { vfs } = await setup(t, {}, {}, remote);
  await vfs.readdir('/');
  // another client makes the targets after our listing (fresh for another 30 s)
  remote.putFile('/taken.txt', 'old content');
  remote.mkdirp('/fulldir/y');
  remote.putFile('/fulldir/y/z', 'z');
  remote.mkdirp('/emptydir');
  remote.putFile('/plain', 'p');
  t.is(await code(vfs.getattr('/taken.txt')), 'NOT_FOUND', 'the cache does not know the new names');

  // (a file's rename is written back: the server's conflict answer comes when it is sent)
  await vfs.rename('/a.txt', '/taken.txt');
  await vfs.flushAll();
  t.is(remote.getFile('/taken.txt')!.toString(), 'new content');
  t.false(remote.has('/a.txt'));

  // a file onto what only the server knows is a folder: answered, then refused when sent, and reported
  await vfs.rename('/b.txt', '/fulldir');
  const r = await vfs.flushAll();
  t.deepEqual(r.failed, []);
  t.deepEqual(vfs.status().failures.map((f) => [f.op, f.path]), [['move', '/fulldir']]);
  t.regex(vfs.status().failures[0]!.error, /folder/);
  t.is((await vfs.getattr('/fulldir')).type, 'dir', 'the drive shows what the server holds again');
  t.is((await vfs.getattr('/b.txt')).type, 'file');
  t.is(await code(vfs.rename('/dir1', '/fulldir')), 'NOT_EMPTY');
  t.is(await code(vfs.rename('/dir1', '/plain')), 'NOT_A_DIRECTORY');
  // nothing moved by the refused renames, and the local view still shows the sources
  t.is(remote.getFile('/b.txt')!.toString(), 'other');
  t.true(remote.has('/dir1/x'));
  t.is((await vfs.getattr('/dir1')).type, 'dir');
  t.is(remote.getFile('/fulldir/y/z')!.toString(), 'z');

  // a folder onto an empty folder replaces it
  await vfs.rename('/dir1', '/emptydir');
  await vfs.flushAll();
  t.is(remote.getFile('/emptydir/x')!.toString(), 'x');
  t.false(remote.has('/dir1'));
});

test('a rename racing the end of an upload leaves the file cached: the next open downloads nothing', async (t) => {
  // soak seed 800303: the rename's entry, looked up while the upload ran, was the local one; the
  // upload then ended (file clean, server identity) and the next open saw the two differ
  const { remote, vfs } = await setup(t, { rangedReads: false }, { writebackDelayMs: 10 });
  const release = remote.hold('upload');
  t.teardown(release);
  remote.mkdirp('/u');
  await writeFile(vfs, '/u/b', 'x'.repeat(146));
  await until(() => remote.held('upload') === 1, 'the upload was sent');
  const renaming = vfs.rename('/u/b', '/u/f.txt');
  await sleep(20);
  release();
  await renaming;
  await until(() => vfs.status().pending === 0, 'the upload ended');
  remote.resetCalls();
  t.is((await readAll(vfs, '/u/f.txt')).toString(), 'x'.repeat(146));
  t.is(remote.calls.download, 0, 'the cached bytes were kept');
  t.deepEqual(remote.getFile('/u/f.txt'), Buffer.from('x'.repeat(146)));
});
