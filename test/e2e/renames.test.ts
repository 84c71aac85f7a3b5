// Rename write-back of files and folders on real mounts (namespace/moves.ts): mv answers before the server hears
// of it (no request at all when the caches know both names), the drive shows the new name while
// the server and other mounts still have the old one, the renames of a moment reach the server
// later (a chain as one move), the save pattern keeps the right bytes after a remount, a kill -9
// before the send leaves the renames in the journal for the next mount, and (Maxxo) a rename the
// server refuses is reported. Counts, never wall clock: requests are the emulator's counters.
import test from 'ava';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { isMounted, mountChild } from '../helpers/mount.js';
import { waitFor } from '../support/wait.js';
import { useServers, mountService, KINDS, uniq, sh, countRoutes, errCode, eventually, type Kind, sortedNames, fsyncInChild } from './lib/services.js';

const servers = useServers(test);
/** Nothing is sent until a flush or a waiter asks for it; caches outlive the test's steps. */
const HOLD = {
  moveIdleMs: 600_000, moveMaxDelayMs: 600_000, deleteIdleMs: 600_000, deleteMaxDelayMs: 600_000,
  attrTtlMs: 120_000, dirTtlMs: 120_000, negativeTtlMs: 120_000,
};
const MOVE_ROUTE: Record<Kind, RegExp> = { maxxo: /ops\/move/, vboxx: /fileops\/move/ };

const all = (st: Record<string, number>) => countRoutes(st, /./);

for (const kind of KINDS) {
  test.serial(`${kind}: mv of a file answers with no request, the new name shows at once, the renames go later as few moves; replayed after kill -9`, async (t) => {
    // (uploads held too: the test's own files are on the server before it starts)
    const a = await mountService(t, servers, kind, { vfs: { ...HOLD, writebackDelayMs: 600_000 } });
    const rel = uniq('mv');
    const r = a.p(rel);
    const made = await sh('set -e; mkdir -p "$1/sub"; cd "$1"; echo A > a; echo X > x; echo K > keep; echo S > s; echo T > t; ls -la . sub >/dev/null', [r]);
    t.is(made.code, 0, made.stderr);
    await a.flush();
    t.is((await a.status()).pending, 0);
    await servers.resetStats();

    // the kernel's lookups of both names are answered by the listing just made
    const mv = await sh('set -e; cd "$1"; mv a b; mv b sub/c; mv x y; ls . sub >/dev/null; cat sub/c y >/dev/null', [r]);
    t.is(mv.code, 0, mv.stderr);
    t.is(all(await servers.stats()), 0, `no request: ${JSON.stringify(await servers.stats())}`);
    t.deepEqual(await sortedNames(r), ['keep', 's', 'sub', 't', 'y']);
    t.deepEqual(await sortedNames(`${r}/sub`), ['c']);
    t.is(await fsp.readFile(`${r}/sub/c`, 'utf8'), 'A\n');
    const st = await a.status();
    t.is(st.pendingMoves, 2, 'a -> b -> sub/c is one move');
    // another mount still sees the server's names
    const b = await mountService(t, servers, kind);
    t.deepEqual(await sortedNames(b.p(rel)), ['a', 'keep', 's', 'sub', 't', 'x']);

    await a.flush();
    t.is(countRoutes(await servers.stats(), MOVE_ROUTE[kind]), 2, JSON.stringify(await servers.stats()));
    t.is((await a.status()).pending, 0);
    t.deepEqual((await a.status()).failures, []);

    // a kill -9 before the send: the next mount with the same cache shows and sends them
    const mv2 = await sh('set -e; cd "$1"; mv s s2; mv t sub/t2; mv keep keep2; rm keep2', [r]);
    t.is(mv2.code, 0, mv2.stderr);
    t.is((await a.status()).pendingMoves, 2, 'mv then rm before the send: no move, one delete');
    await a.kill9();
    // (the kernel answers a stat of the mount's root from its attribute cache for a second: the
    // next mount takes the dead mount for a live one until then)
    await waitFor(async () => !isMounted(a.mnt) || await errCode(fsp.stat(a.mnt)) === 'ENOTCONN', 10_000, 'the dead mount to show');
    const a2 = await mountChild(t, { ...a.cfg, mountpoint: a.mnt });
    t.deepEqual(await sortedNames(path.join(a2.mnt, path.relative(a.mnt, r))), ['s2', 'sub', 'y']);
    await a2.flush();
    t.is((await a2.status()).pending, 0);
    t.deepEqual((await a2.status()).failures, []);
    const c = await mountService(t, servers, kind);
    t.deepEqual(await sortedNames(c.p(rel)), ['s2', 'sub', 'y']);
    t.deepEqual(await sortedNames(c.p(rel, 'sub')), ['c', 't2']);
    t.is(await fsp.readFile(c.p(rel, 'sub', 't2'), 'utf8'), 'T\n');
    t.is(await fsp.readFile(c.p(rel, 's2'), 'utf8'), 'S\n');
  });

  test.serial(`${kind}: the save pattern (write a temp file, rename it over the original) keeps the right bytes after a remount, whether or not the temp file was uploaded`, async (t) => {
    const a = await mountService(t, servers, kind, { vfs: HOLD });
    const rel = uniq('save');
    const r = a.p(rel);
    const first = await sh('set -e; mkdir "$1"; cd "$1"; printf v1 > doc; printf v1 > doc2', [r]);
    t.is(first.code, 0, first.stderr);
    await a.flush();
    // doc: the temp file is renamed before its upload; doc2: after it (a move onto the original)
    const save = await sh('set -e; cd "$1"; printf v2 > doc.tmp; mv doc.tmp doc; printf v3 > doc2.tmp', [r]);
    t.is(save.code, 0, save.stderr);
    await waitFor(async () => (await a.status()).pending === 0, 20_000, 'the uploads');
    const save2 = await sh('set -e; cd "$1"; mv doc2.tmp doc2; cat doc doc2', [r]);
    t.is(save2.code, 0, save2.stderr);
    t.is(save2.stdout, 'v2v3');
    t.is((await a.status()).pendingMoves, 1);
    await a.stop();
    const b = await mountService(t, servers, kind);
    t.deepEqual(await sortedNames(b.p(rel)), ['doc', 'doc2']);
    t.is(await fsp.readFile(b.p(rel, 'doc'), 'utf8'), 'v2');
    t.is(await fsp.readFile(b.p(rel, 'doc2'), 'utf8'), 'v3');
  });
}

for (const kind of KINDS) {
  test.serial(`${kind}: mv of a folder answers with no request; its tree is read and written at the new name before the move is sent; replayed after kill -9`, async (t) => {
    const a = await mountService(t, servers, kind, { vfs: { ...HOLD, writebackDelayMs: 600_000 } });
    const rel = uniq('mvd');
    const r = a.p(rel);
    const made = await sh('set -e; mkdir -p "$1/d/sub"; cd "$1"; echo A > d/a; echo DEEP > d/sub/deep; ls -la . d >/dev/null', [r]);
    t.is(made.code, 0, made.stderr);
    await a.flush();
    await servers.resetStats();
    const mv = await sh('set -e; cd "$1"; mv d e', [r]);
    t.is(mv.code, 0, mv.stderr);
    t.is(countRoutes(await servers.stats(), MOVE_ROUTE[kind]), 0, JSON.stringify(await servers.stats()));
    t.is((await a.status()).pendingMoves, 1);
    // below the new name: listings, reads (bytes not cached: the server's old names), a change, a new file
    const use = await sh('set -e; cd "$1"; ls; ls e e/sub; cat e/a e/sub/deep; echo B >> e/a; echo N > e/sub/new; mv e/sub/deep e/deep2; cat e/a', [r]);
    t.is(use.code, 0, use.stderr);
    t.is(use.stdout, 'e\ne:\na\nsub\n\ne/sub:\ndeep\nA\nDEEP\nA\nB\n');
    t.is(countRoutes(await servers.stats(), MOVE_ROUTE[kind]), 0, 'the folder move is still pending');
    // another mount still sees the server's names
    const b = await mountService(t, servers, kind);
    t.deepEqual(await sortedNames(b.p(rel)), ['d']);
    // a kill -9 before the send: the next mount with the same cache shows and sends it all
    await a.kill9();
    await waitFor(async () => !isMounted(a.mnt) || await errCode(fsp.stat(a.mnt)) === 'ENOTCONN', 10_000, 'the dead mount to show');
    const a2 = await mountChild(t, { ...a.cfg, mountpoint: a.mnt });
    const r2 = path.join(a2.mnt, path.relative(a.mnt, r));
    t.deepEqual(await sortedNames(r2), ['e']);
    t.deepEqual(await sortedNames(path.join(r2, 'e')), ['a', 'deep2', 'sub']);
    await a2.flush();
    t.is((await a2.status()).pending, 0);
    t.deepEqual((await a2.status()).failures, []);
    const c = await mountService(t, servers, kind);
    t.deepEqual(await sortedNames(c.p(rel)), ['e']);
    t.deepEqual(await sortedNames(c.p(rel, 'e')), ['a', 'deep2', 'sub']);
    t.deepEqual(await sortedNames(c.p(rel, 'e', 'sub')), ['new']);
    t.is(await fsp.readFile(c.p(rel, 'e', 'a'), 'utf8'), 'A\nB\n');
    t.is(await fsp.readFile(c.p(rel, 'e', 'deep2'), 'utf8'), 'DEEP\n');
    t.is(await fsp.readFile(c.p(rel, 'e', 'sub', 'new'), 'utf8'), 'N\n');
  });
}

test.serial('maxxo: a rename the server refuses (the target folder deleted by another client) is reported and the drive shows the server\'s file again', async (t) => {
  const a = await mountService(t, servers, 'maxxo', { vfs: HOLD });
  const rel = uniq('mvref');
  const r = a.p(rel);
  const made = await sh('set -e; mkdir -p "$1/into"; cd "$1"; echo F > f; echo G > g', [r]);
  t.is(made.code, 0, made.stderr);
  await a.flush();
  const mv = await sh('set -e; cd "$1"; mv f into/f; mv g g2', [r]);
  t.is(mv.code, 0, mv.stderr);
  // another client removes the folder before the rename went
  const onServer = path.join(await servers.maxxoFolder(), rel);
  await fsp.rm(path.join(onServer, 'into'), { recursive: true });
  const fsync = await fsyncInChild(`${r}/into`);
  t.not(fsync.code, 0, 'fsync of the target\'s folder fails for the refused rename');
  await a.flush();
  const st = await a.status();
  t.is(st.pending, 0);
  t.deepEqual(st.failures.filter((f) => f.op === 'move').map((f) => f.path), [`/${rel}/into/f`]);
  t.regex(a.stderr(), /rename of \/\S+\/f to \/\S+\/into\/f refused by the server/);
  t.deepEqual(await sortedNames(onServer), ['f', 'g2'], 'the server keeps f; the other rename went');
  // (the kernel may keep its entries for its entry timeout)
  const shown = await eventually(async () => {
    const n = await sortedNames(r);
    if (!n.includes('f')) throw new Error(`listed: ${n.join(' ')}`);
    return n;
  }, 10_000).catch((e: Error) => e.message);
  t.deepEqual(shown, ['f', 'g2']);
  t.is(await fsp.readFile(`${r}/f`, 'utf8'), 'F\n');
});
