// Warm start (VfsOptions.warmStart): at start the top folder and its subfolders are listed in the
// background, so a cold path walk begins at the third level. The listings are the implicit kind
// (fetched for lookups): a name missing from them is still asked of the server.
// Also Remote.likelyFolder: a name the remote already believes a folder is listed with its stat.
import test from 'ava';
import { setup, sleep, until } from './helpers.js';

test('warm start lists the top folder and its subfolders, no deeper, and a path walk then asks only below them', async (t) => {
  const { remote, reopen } = await setup(t, { latencyMs: 5 });
  for (const d of ['a', 'b', 'c']) for (let i = 0; i < 3; i++) remote.putFile(`/${d}/sub${i}/f`, 'x');
  remote.putFile('/top.txt', 'x');
  remote.resetCalls();
  const vfs = await reopen({ warmStart: true });
  await until(() => remote.calls.list === 4, 'the warm listings');
  await sleep(30);
  t.deepEqual(remote.log.filter((l) => l.startsWith('list')).sort(), ['list /', 'list /a', 'list /b', 'list /c']);
  remote.resetCalls();
  // the walk to /b/sub1 costs nothing; /b/sub1's own listing is the first request
  t.is(((await vfs.getattr('/b')) as { type: string }).type, 'dir');
  t.is(((await vfs.getattr('/b/sub1')) as { type: string }).type, 'dir');
  t.is(remote.calls.stat + remote.calls.list, 0, remote.log.join(', '));
  t.deepEqual((await vfs.readdir('/b/sub1')).map((e) => e.name), ['f']);
  t.deepEqual(remote.log, ['list /b/sub1']);
});

test('warm listings are fetched for lookups: a file another client made after them is found', async (t) => {
  const { remote, reopen } = await setup(t, { latencyMs: 2 });
  remote.putFile('/a/old', 'x');
  const vfs = await reopen({ warmStart: true });
  await until(() => remote.calls.list >= 2, 'the warm listings');
  await sleep(20);
  remote.putFile('/new', 'made elsewhere');
  remote.putFile('/a/new', 'made elsewhere');
  t.is(((await vfs.getattr('/new')) as { size: number }).size, 14);
  t.is(((await vfs.getattr('/a/new')) as { size: number }).size, 14);
});

test('off (warmStart false): nothing is asked at start', async (t) => {
  const { remote, reopen } = await setup(t);
  remote.putFile('/a/f', 'x');
  remote.resetCalls();
  await reopen({ warmStart: false });
  await sleep(50);
  t.is(remote.calls.list + remote.calls.stat, 0, remote.log.join(', '));
});

test('likelyFolder: a name the remote believes a folder is listed together with its stat, one round trip before readdir', async (t) => {
  const { remote, vfs } = await setup(t, { latencyMs: 20, likelyFolders: new Set(['/p/d']) });
  for (let i = 0; i < 5; i++) remote.putFile(`/p/d/f${i}`, 'x');
  remote.putFile('/p/file', 'x');
  await vfs.readdir('/');
  remote.resetCalls();
  const walk = vfs.getattr('/p/d');
  await sleep(5);
  // asked while the stat is on its way
  t.true(remote.log.includes('list /p/d'), remote.log.join(', '));
  await walk;
  remote.resetCalls();
  t.is((await vfs.readdir('/p/d')).map((e) => e.name).length, 5);
  t.is(remote.calls.list, 0, remote.log.join(', '));
  // a plain file is not guessed
  await vfs.getattr('/p/file');
  t.false(remote.log.includes('list /p/file'), remote.log.join(', '));
});
