// Mkdir write-back on real Maxxo mounts (vBoxx: vboxx-mkdirs.test.ts) (namespace/mkdirs.ts, remote/maxxo/mkdirs.ts): mkdir
// answers before the server hears of it, the folders made meanwhile go as one rsync run, a
// folder made and removed before that sends nothing, a kill -9 leaves the mkdirs in the journal
// for the next mount, and a refusal is reported (log, status, fsync of the folder). Counts, never
// wall clock: rsync runs are the remote's debug lines ("rsync run for ..."), requests the
// emulator's counters.
import test from 'ava';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { mountChild, type MountHandle } from '../helpers/mount.js';
import { useServers, mountService, uniq, sh, countRoutes, eventually, sortedNames, fsyncInChild } from './lib/services.js';
import { waitFor } from '../support/wait.js';

const servers = useServers(test);
/** Nothing is sent until a flush or a waiter asks for it; caches outlive the test's steps. */
const HOLD = { mkdirIdleMs: 600_000, mkdirMaxDelayMs: 600_000, deleteIdleMs: 600_000, deleteMaxDelayMs: 600_000, attrTtlMs: 120_000, dirTtlMs: 120_000, negativeTtlMs: 120_000 };

/**
 * rsync runs of the mount that move data or make folders (its status counters; the daemon
 * listings for mtimes are not counted: a lookup may ask for one; nor are the runs that send the
 * folder times our changes moved: their timers run apart from the mkdir window).
 */
const runs = async (h: MountHandle) => {
  const c = (await h.status()).counters?.remote ?? {};
  return (c.rsyncRuns ?? NaN) - (c.listRuns ?? 0) - (c.folderTimeRuns ?? 0);
};
const exists = (p: string) => fsp.stat(p).then((s) => (s.isDirectory() ? 'dir' : 'file'), () => null);

test.serial('maxxo: mkdir -p of a deep tree and 50 folders answer at once, go as one rsync run, and are on the server with the files after a remount', async (t) => {
  const a = await mountService(t, servers, 'maxxo', { vfs: HOLD, logLevel: 'debug' });
  const rel = uniq('mk');
  const r = a.p(rel);
  await fsp.mkdir(r);
  await a.flush();
  const onServer = path.join(await servers.maxxoFolder(), rel);
  t.is(await exists(onServer), 'dir', 'the first folder reached the server with the flush');

  await servers.resetStats();
  let from = await runs(a);
  const timeRunsFrom = (await a.status()).counters?.remote?.folderTimeRuns ?? NaN;
  const mk = await sh('set -e; cd "$1"; mkdir -p deep/a/b/c/d/e/f/g/h/i; for i in $(seq 1 50); do mkdir "m$i"; done; ls deep/a/b/c >/dev/null', [r]);
  t.is(mk.code, 0, mk.stderr);
  // answered from the journal: nothing on the server, no request, not one rsync run
  t.is((await a.status()).pendingMkdirs, 60);
  t.is(await exists(path.join(onServer, 'deep')), null);
  t.is(await runs(a) - from, 0);
  t.is(countRoutes(await servers.stats(), /ops\/|slice/), 0, 'no request for 60 mkdirs');
  t.is((await sortedNames(r)).length, 51);
  t.deepEqual(await sortedNames(`${r}/deep/a/b/c/d/e/f/g/h/i`), []);

  await a.flush();
  t.is(await runs(a) - from, 1, 'the 60 folders are one rsync run');
  // one ops/filesize for the 60 folders; the times they moved in their parents go after them
  // (one more, two when a timer started a batch of its own before the flush reached them)
  const ops = countRoutes(await servers.stats(), /ops\//);
  t.true(ops >= 2 && ops <= 3, `ops requests: ${ops}`);
  const timeRuns = ((await a.status()).counters?.remote?.folderTimeRuns ?? NaN) - timeRunsFrom;
  t.true(timeRuns >= 1 && timeRuns <= 2, `the times of the 52 folders moved: ${timeRuns} rsync run(s)`);
  t.is((await a.status()).pending, 0);
  t.is(await exists(path.join(onServer, 'deep/a/b/c/d/e/f/g/h/i')), 'dir');
  t.is(await exists(path.join(onServer, 'm50')), 'dir');

  // files into folders not made yet: the uploads carry on after their folders (one more mkdir run)
  from = await runs(a);
  const files = await sh('set -e; cd "$1"; mkdir -p t/x/y t/z; echo deep > t/x/y/f; echo z > t/z/g; echo top > t/h; mkdir t/empty', [r]);
  t.is(files.code, 0, files.stderr);
  await a.flush();
  t.is((await a.status()).pending, 0);
  t.deepEqual((await a.status()).failures, []);
  const b = await mountService(t, servers, 'maxxo');
  const br = b.p(rel);
  t.deepEqual(await sortedNames(`${br}/t`), ['empty', 'h', 'x', 'z']);
  t.is(await fsp.readFile(`${br}/t/x/y/f`, 'utf8'), 'deep\n');
  t.is(await fsp.readFile(`${br}/t/z/g`, 'utf8'), 'z\n');
  t.deepEqual(await sortedNames(`${br}/deep/a/b/c/d/e/f/g/h`), ['i']);
  t.is((await sortedNames(br)).filter((n) => n.startsWith('m')).length, 50);
});

test.serial('maxxo: mkdir then rmdir before the write-back sends nothing; rm -rf of a new tree with new files neither', async (t) => {
  // (uploads held too: one that went would have carried its folders to the server)
  const a = await mountService(t, servers, 'maxxo', { vfs: { ...HOLD, writebackDelayMs: 600_000 }, logLevel: 'debug' });
  const rel = uniq('mkrm');
  const r = a.p(rel);
  await fsp.mkdir(r);
  await a.flush();
  await servers.resetStats();
  const from = await runs(a);
  const s = await sh('set -e; cd "$1"; mkdir gone; rmdir gone; mkdir -p tree/a/b; echo x > tree/a/b/f; echo y > tree/g; rm -rf tree; mkdir kept', [r]);
  t.is(s.code, 0, s.stderr);
  t.deepEqual(await sortedNames(r), ['kept']);
  t.is((await a.status()).pendingMkdirs, 1);
  await a.flush();
  t.is((await a.status()).pending, 0);
  // the one folder left: one run, one filesize; no delete at all (and one filesize for the
  // time the changes moved in the folder above, sent after them)
  t.is(await runs(a) - from, 1);
  const st = await servers.stats();
  t.is(countRoutes(st, /ops\/delete/), 0);
  t.is(countRoutes(st, /ops\//), 2, JSON.stringify(st));
  t.deepEqual(await sortedNames(path.join(await servers.maxxoFolder(), rel)), ['kept']);
});

test.serial('maxxo: a kill -9 after mkdirs were journalled and before their write-back: the next mount makes them (and uploads into them)', async (t) => {
  const a = await mountService(t, servers, 'maxxo', { vfs: { ...HOLD, writebackDelayMs: 600_000 } });
  const rel = uniq('mkcrash');
  const r = a.p(rel);
  await fsp.mkdir(r);
  await a.flush();
  const s = await sh('set -e; cd "$1"; mkdir -p p/q/r; mkdir e; echo data > p/q/r/f', [r]);
  t.is(s.code, 0, s.stderr);
  const st = await a.status();
  t.is(st.pendingMkdirs, 4);
  // and the upload, and the times of the five folders these changes moved
  t.is(st.pendingAttrs, 5);
  t.is(st.pending, 10);
  const onServer = path.join(await servers.maxxoFolder(), rel);
  t.deepEqual(await sortedNames(onServer), []);
  await a.kill9();

  const a2 = await mountChild(t, { ...a.cfg, mountpoint: a.mnt, vfs: { ...a.cfg.vfs, writebackDelayMs: 100 } });
  // shown before they are made
  t.deepEqual(await sortedNames(path.join(a2.mnt, rel)), ['e', 'p']);
  await a2.flush();
  t.is((await a2.status()).pending, 0);
  t.deepEqual((await a2.status()).failures, []);
  t.deepEqual(await sortedNames(onServer), ['e', 'p']);
  t.is(await fsp.readFile(path.join(onServer, 'p/q/r/f'), 'utf8'), 'data\n');
  // the folder times the first mount showed (journalled) are what the server holds
  for (const d of ['', 'e', 'p', 'p/q/r']) {
    // (whole seconds: the daemon's listings give no more, and rsync -t sets no time equal to those)
    const server = Math.floor((await fsp.stat(path.join(onServer, d))).mtimeMs / 1000) * 1000;
    t.is((await fsp.stat(path.join(a2.mnt, rel, d))).mtimeMs, server, `${d || rel}: the time shown is the server's`);
  }
});

test.serial('maxxo: a mkdir the server refuses (another client put a file there) is reported: fsync of the folder, status, log; the file is kept', async (t) => {
  const a = await mountService(t, servers, 'maxxo', { vfs: HOLD });
  const rel = uniq('mkref');
  const r = a.p(rel);
  await fsp.mkdir(r);
  await a.flush();
  const mk = await sh('set -e; cd "$1"; mkdir clash; mkdir clash/below; mkdir fine', [r]);
  t.is(mk.code, 0, mk.stderr);
  // another client's file takes the name before our mkdir went
  const onServer = path.join(await servers.maxxoFolder(), rel);
  await fsp.writeFile(path.join(onServer, 'clash'), 'theirs\n');
  const fsync = await fsyncInChild(r);
  t.not(fsync.code, 0, 'fsync of the folder fails for the refused mkdir');
  t.regex(fsync.stderr, /Input\/output error|EIO|Errno 5/);
  const again = await fsyncInChild(r);
  t.is(again.code, 0, 'reported once');
  await a.flush();
  const st = await a.status();
  t.is(st.pending, 0);
  const failed = st.failures.filter((f) => f.op === 'mkdir').map((f) => f.path).sort();
  t.deepEqual(failed, [`/${rel}/clash`, `/${rel}/clash/below`]);
  t.regex(a.stderr(), /mkdir of \/\S+\/clash refused by the server/);
  t.is(await fsp.readFile(path.join(onServer, 'clash'), 'utf8'), 'theirs\n', 'the other client\'s file is untouched');
  t.is(await exists(path.join(onServer, 'fine')), 'dir');
  // (the kernel may keep its entry of the folder for its entry timeout)
  const shown = await eventually(async () => {
    const e = await exists(path.join(r, 'clash'));
    if (e !== 'file') throw new Error(`clash is ${e}`);
    return e;
  }, 10_000).catch((e: Error) => e.message);
  t.is(shown, 'file', 'the drive shows what the server has');
});

test.serial('maxxo: renames of pending folders, and of a server file into one, reach the server after the folders', async (t) => {
  const a = await mountService(t, servers, 'maxxo', { vfs: HOLD });
  const rel = uniq('mkmv');
  const r = a.p(rel);
  await fsp.mkdir(r);
  await fsp.writeFile(`${r}/old`, 'server file\n');
  await a.flush();
  const s = await sh('set -e; cd "$1"; mkdir -p d/e; mv d m; mv old m/e/moved; mkdir n; mv n m/e/n2; echo w > m/e/n2/w', [r]);
  t.is(s.code, 0, s.stderr);
  await a.flush();
  t.deepEqual((await a.status()).failures, []);
  t.is((await a.status()).pending, 0);
  const onServer = path.join(await servers.maxxoFolder(), rel);
  t.deepEqual(await sortedNames(onServer), ['m']);
  t.deepEqual(await sortedNames(path.join(onServer, 'm/e')), ['moved', 'n2']);
  t.is(await fsp.readFile(path.join(onServer, 'm/e/moved'), 'utf8'), 'server file\n');
  t.is(await fsp.readFile(path.join(onServer, 'm/e/n2/w'), 'utf8'), 'w\n');
});

test.serial('maxxo: an upload into a pending folder carries it (its rsync run makes the parents): the batch then costs no rsync run, and an rmdir after it still deletes the folder', async (t) => {
  const a = await mountService(t, servers, 'maxxo', { vfs: HOLD, logLevel: 'debug' });
  const rel = uniq('mkcarry');
  const r = a.p(rel);
  await fsp.mkdir(r);
  await a.flush();
  const onServer = path.join(await servers.maxxoFolder(), rel);
  const s = await sh('set -e; cd "$1"; mkdir -p c/d g; echo x > c/d/f; echo y > g/h', [r]);
  t.is(s.code, 0, s.stderr);
  // the uploads went (write-back delay 100 ms) while the mkdirs wait for their window
  await waitFor(async () => await exists(path.join(onServer, 'c/d/f')) === 'file' && await exists(path.join(onServer, 'g/h')) === 'file', 20_000, 'the uploads');
  t.is((await a.status()).pendingMkdirs, 3);
  t.deepEqual((await a.status()).notices ?? [], [], 'no "folder deleted by another client" notice for our own new folders');
  // a rename in a carried folder needs that folder on the server: only it (and its parents) go,
  // found there (no rsync run), when the rename is sent (written back: after its own window); a
  // folder made meanwhile elsewhere keeps its window
  let from = await runs(a);
  const mv = await sh('set -e; cd "$1"; mkdir z; mv c/d/f c/d/f2', [r]);
  t.is(mv.code, 0, mv.stderr);
  await waitFor(async () => await exists(path.join(onServer, 'c/d/f2')) === 'file', 20_000, 'the rename');
  t.is(await runs(a) - from, 0, 'the rename sent no rsync run');
  t.is((await a.status()).pendingMkdirs, 2, 'g and z still pending');
  // a folder carried by an upload, then emptied and removed: deleted on the server
  const rm = await sh('set -e; cd "$1"; rm g/h; rmdir g', [r]);
  t.is(rm.code, 0, rm.stderr);
  await servers.resetStats();
  from = await runs(a);
  await a.flush();
  t.is((await a.status()).pending, 0);
  t.deepEqual((await a.status()).failures, []);
  t.is(await runs(a) - from, 1, 'z alone needed a run');
  t.deepEqual(await sortedNames(onServer), ['c', 'z']);
  t.deepEqual(await sortedNames(path.join(onServer, 'c/d')), ['f2']);
});
