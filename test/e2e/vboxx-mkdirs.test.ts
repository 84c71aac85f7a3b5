// Mkdir write-back on real vBoxx mounts (namespace/mkdirs.ts, VboxxRemote.batchMkdir): mkdir
// answers before the server hears of it; a flush makes the folders depth by depth (create_folder
// makes one); an upload into a pending folder makes it itself (files_put makes parents), and the
// batch then finds it there and counts it made; a file of another client in the way is a
// refusal, reported; a kill -9 leaves the mkdirs in the journal for the next mount; a share link
// or the CLI's flush of a path (vboxx share, maxxo send) makes its pending folders first. The server's
// state is read through the API, not through the mount. Counts, never wall clock.
import test from 'ava';
import fsp from 'node:fs/promises';
import { mountChild } from '../helpers/mount.js';
import { useVboxxApi, mountService, uniq, sh, run, countRoutes, sortedNames, fsyncInChild } from './lib/services.js';
import { waitFor } from '../support/wait.js';
import { setFaults } from '../helpers/emulator.js';
import { flushThroughMount } from '../../src/cli/mounted.js';

const v = useVboxxApi(test);
/** Nothing is sent until a flush or a waiter asks for it; caches outlive the test's steps. */
const HOLD = { mkdirIdleMs: 600_000, mkdirMaxDelayMs: 600_000, deleteIdleMs: 600_000, deleteMaxDelayMs: 600_000, attrTtlMs: 120_000, dirTtlMs: 120_000, negativeTtlMs: 120_000 };

/** What the server has at path below the Files root: 'dir', 'file' or null. */
async function onServer(rel: string): Promise<'dir' | 'file' | null> {
  const r = await v.api.metadata(v.filesRoot, rel).catch((e: { code?: string }) => {
    if (e.code === 'NOT_FOUND') return null;
    throw e;
  });
  if (!r || r.unchanged) return null;
  return r.meta.is_dir ? 'dir' : 'file';
}
async function serverNames(rel: string): Promise<string[]> {
  const r = await v.api.metadata(v.filesRoot, rel, { list: true });
  if (r.unchanged) throw new Error('unexpected 304');
  return (r.meta.contents ?? []).map((c) => c.path.split('/').pop()!).sort();
}
const folderCalls = async () => countRoutes(await v.servers.stats(), /create_folder/);

test.serial('vboxx: mkdir -p and 20 folders answer with no request; a flush makes them, parents first; files in them reach the server', async (t) => {
  const a = await mountService(t, v.servers, 'vboxx', { vfs: { ...HOLD, writebackDelayMs: 600_000 } });
  const rel = uniq('vmk');
  const r = a.p(rel);
  await fsp.mkdir(r);
  await a.flush();
  t.is(await onServer(rel), 'dir', 'the first folder reached the server with the flush');

  await v.servers.resetStats();
  const mk = await sh('set -e; cd "$1"; mkdir -p deep/a/b/c/d; for i in $(seq 1 20); do mkdir "m$i"; done; ls deep/a/b >/dev/null', [r]);
  t.is(mk.code, 0, mk.stderr);
  // answered from the journal: nothing on the server, no create_folder
  t.is((await a.status()).pendingMkdirs, 25);
  t.is(await folderCalls(), 0, 'no create_folder before the flush');
  t.is(await onServer(`${rel}/deep`), null);
  t.is((await sortedNames(r)).length, 21);
  t.deepEqual(await sortedNames(`${r}/deep/a/b/c/d`), []);

  await a.flush();
  t.is(await folderCalls(), 25, 'one create_folder per folder');
  // 20 folders of one depth go side by side under one bounded call's signal: each request's
  // listener on it is removed when it ends, and Node's "possible memory leak" warning for more
  // than 10 at once is noise in the user's log (seen in soaks)
  t.notRegex(a.stderr(), /MaxListenersExceeded/);
  t.deepEqual((await a.status()).failures, []);
  t.is((await a.status()).pending, 0);
  t.is(await onServer(`${rel}/deep/a/b/c/d`), 'dir');
  t.is(await onServer(`${rel}/m20`), 'dir');
  t.deepEqual(await sortedNames(r), (await serverNames(rel)));

  // files into folders not made yet (uploads held too: the flush sends folders, then files)
  const files = await sh('set -e; cd "$1"; mkdir -p t/x/y t/z; echo deep > t/x/y/f; echo z > t/z/g; echo top > t/h; mkdir t/empty', [r]);
  t.is(files.code, 0, files.stderr);
  await a.flush();
  t.is((await a.status()).pending, 0);
  t.deepEqual((await a.status()).failures, []);
  t.deepEqual(await serverNames(`${rel}/t`), ['empty', 'h', 'x', 'z']);
  const b = await mountService(t, v.servers, 'vboxx');
  const br = b.p(rel);
  t.is(await fsp.readFile(`${br}/t/x/y/f`, 'utf8'), 'deep\n');
  t.is(await fsp.readFile(`${br}/t/z/g`, 'utf8'), 'z\n');
  t.deepEqual(await sortedNames(`${br}/deep/a/b/c`), ['d']);
});

test.serial('vboxx: an upload into a pending folder makes it on the server; the batch then finds it there and counts it made (no refusal, nothing dropped)', async (t) => {
  const a = await mountService(t, v.servers, 'vboxx', { vfs: HOLD });
  const rel = uniq('vmkcarry');
  const r = a.p(rel);
  await fsp.mkdir(r);
  await a.flush();
  const s = await sh('set -e; cd "$1"; mkdir -p c/d g; echo x > c/d/f; echo y > g/h', [r]);
  t.is(s.code, 0, s.stderr);
  // the uploads go after the write-back delay (100 ms) while the mkdirs wait for their window
  await waitFor(async () => await onServer(`${rel}/c/d/f`) === 'file' && await onServer(`${rel}/g/h`) === 'file', 20_000, 'the uploads');
  t.is((await a.status()).pendingMkdirs, 3);
  t.deepEqual((await a.status()).notices ?? [], [], 'no "folder deleted by another client" notice for our own new folders');
  await a.flush();
  const st = await a.status();
  t.is(st.pending, 0);
  t.deepEqual(st.failures, [], 'folders already there are made, not refused');
  t.notRegex(a.stderr(), /refused/);
  t.deepEqual(await sortedNames(r), ['c', 'g']);
  t.deepEqual(await sortedNames(`${r}/c/d`), ['f']);
  t.is(await fsp.readFile(`${r}/g/h`, 'utf8'), 'y\n');
  // the folder's own listing still counts its subfolder (nlink from the cached listing)
  t.is((await fsp.stat(`${r}/c`)).nlink, 3);
});

test.serial('vboxx: a mkdir the server refuses (another client put a file there) is reported and drops the folders below; the file is kept', async (t) => {
  const a = await mountService(t, v.servers, 'vboxx', { vfs: { ...HOLD, writebackDelayMs: 600_000 } });
  const rel = uniq('vmkref');
  const r = a.p(rel);
  await fsp.mkdir(r);
  await a.flush();
  const mk = await sh('set -e; cd "$1"; mkdir clash; mkdir clash/below; mkdir fine', [r]);
  t.is(mk.code, 0, mk.stderr);
  await v.api.filesPut(v.filesRoot, `${rel}/clash`, Buffer.from('theirs\n'));
  const fsync = await fsyncInChild(r);
  t.not(fsync.code, 0, 'fsync of the folder fails for the refused mkdir');
  t.regex(fsync.stderr, /Input\/output error|EIO|Errno 5/);
  await a.flush();
  const st = await a.status();
  t.is(st.pending, 0);
  t.deepEqual(st.failures.filter((f) => f.op === 'mkdir').map((f) => f.path).sort(), [`/Files/${rel}/clash`, `/Files/${rel}/clash/below`]);
  t.regex(a.stderr(), /mkdir of \/\S+\/clash refused by the server/);
  t.is(await onServer(`${rel}/clash`), 'file');
  t.is(await onServer(`${rel}/fine`), 'dir');
});

test.serial('vboxx: mkdir at the top of the drive (the account\'s roots) is refused at once; a kill -9 leaves pending mkdirs for the next mount', async (t) => {
  const a = await mountService(t, v.servers, 'vboxx', { vfs: { ...HOLD, writebackDelayMs: 600_000 } });
  const top = await sh('mkdir "$1"', [a.p('..', uniq('root'))]);
  t.not(top.code, 0);
  t.regex(top.stderr, /Permission denied|Operation not permitted/);
  t.is((await a.status()).pendingMkdirs ?? 0, 0);

  const rel = uniq('vmkcrash');
  const r = a.p(rel);
  await fsp.mkdir(r);
  await a.flush();
  const s = await sh('set -e; cd "$1"; mkdir -p p/q; mkdir e; echo data > p/q/f', [r]);
  t.is(s.code, 0, s.stderr);
  t.is((await a.status()).pendingMkdirs, 3);
  t.deepEqual(await serverNames(rel), []);
  await a.kill9();
  const a2 = await mountChild(t, { ...a.cfg, mountpoint: a.mnt, vfs: { ...a.cfg.vfs, writebackDelayMs: 100 } });
  t.deepEqual(await sortedNames(a2.mnt + `/Files/${rel}`), ['e', 'p'], 'shown before they are made');
  await a2.flush();
  t.is((await a2.status()).pending, 0);
  t.deepEqual((await a2.status()).failures, []);
  t.deepEqual(await serverNames(rel), ['e', 'p']);
  t.deepEqual(await serverNames(`${rel}/p/q`), ['f']);
});

test.serial('vboxx: folders sent while the server fails half the requests (500, 503, answers cut after the server acted): retried, all made, none refused', async (t) => {
  const a = await mountService(t, v.servers, 'vboxx', { vfs: { ...HOLD, writebackDelayMs: 600_000 } });
  const rel = uniq('vmkfault');
  const r = a.p(rel);
  await fsp.mkdir(r);
  await a.flush();
  const mk = await sh('set -e; cd "$1"; mkdir -p a/b/c/d; for i in $(seq 1 12); do mkdir "m$i"; mkdir "m$i/n"; done', [r]);
  t.is(mk.code, 0, mk.stderr);
  t.is((await a.status()).pendingMkdirs, 28);
  await v.servers.resetStats();
  await setFaults(v.servers.url, { failRate: 0.5 });
  try {
    // may end with some still pending (their retries used up): the next flush, faults off, sends them
    await a.flush().catch(() => {});
  } finally {
    await setFaults(v.servers.url, { failRate: 0 });
  }
  const faults = countRoutes(await v.servers.stats(), /^FAULT /);
  t.true(faults > 0, 'faults were injected');
  await a.flush();
  const st = await a.status();
  t.is(st.pending, 0);
  t.deepEqual(st.failures, [], 'nothing refused: an answer lost after the server made the folder is a folder made');
  t.notRegex(a.stderr(), /refused/);
  t.is(await onServer(`${rel}/a/b/c/d`), 'dir');
  const top = await serverNames(rel);
  t.is(top.length, 13);
  for (let i = 1; i <= 12; i++) t.deepEqual(await serverNames(`${rel}/m${i}`), ['n']);
  t.log(`${faults} faults injected`);
});

test.serial('vboxx: a share link of a folder made a moment ago (or of a file in it) makes the folder and those above it first, not the ones below', async (t) => {
  const a = await mountService(t, v.servers, 'vboxx', { vfs: { ...HOLD, writebackDelayMs: 600_000 } });
  const rel = uniq('vmkshare');
  const r = a.p(rel);
  await fsp.mkdir(r);
  await a.flush();
  const mk = await sh('set -e; cd "$1"; mkdir -p s/t/below; mkdir u; echo in-u > u/f', [r]);
  t.is(mk.code, 0, mk.stderr);
  t.is((await a.status()).pendingMkdirs, 4);
  t.is(await onServer(`${rel}/s`), null, 'held: nothing sent before the link is asked for');

  const link = await run('getfattr', ['--only-values', '-n', 'user.cloudmount.share_link', `${r}/s/t`]);
  t.is(link.code, 0, link.stderr);
  t.regex(link.stdout, /^https?:\/\/\S+$/);
  t.is(await onServer(`${rel}/s/t`), 'dir');
  t.is(await onServer(`${rel}/s/t/below`), null, 'the folder below was not waited for');
  t.is((await a.status()).pendingMkdirs, 2, 's/t/below and u still pending');

  // a file not uploaded yet in a pending folder: its upload goes first and carries the folder
  const fileLink = await run('getfattr', ['--only-values', '-n', 'user.cloudmount.share_link', `${r}/u/f`]);
  t.is(fileLink.code, 0, fileLink.stderr);
  const res = await fetch(fileLink.stdout.trim());
  t.is(res.status, 200);
  t.is(await res.text(), 'in-u\n');

  await a.flush();
  t.deepEqual((await a.status()).failures, []);
  t.is(await onServer(`${rel}/s/t/below`), 'dir');
});

test.serial('vboxx: what the CLI does before `vboxx share` / `maxxo send` of a path in the mount makes its pending folders too (flushThroughMount)', async (t) => {
  const a = await mountService(t, v.servers, 'vboxx', { vfs: { ...HOLD, writebackDelayMs: 600_000 } });
  const rel = uniq('vmkcli');
  const r = a.p(rel);
  await fsp.mkdir(r);
  await a.flush();
  const mk = await sh('set -e; cd "$1"; mkdir -p x/empty x/sub/deeper; echo f > x/sub/f', [r]);
  t.is(mk.code, 0, mk.stderr);
  t.is(await onServer(`${rel}/x`), null);
  t.is(await flushThroughMount(`${r}/x`), 'dir');
  t.is(await onServer(`${rel}/x/empty`), 'dir');
  t.is(await onServer(`${rel}/x/sub/deeper`), 'dir');
  t.is(await onServer(`${rel}/x/sub/f`), 'file');
  t.is((await a.status()).pending, 0);
});
