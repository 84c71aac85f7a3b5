// Delete write-back on real mounts (namespace/deletes.ts): rm answers before the server hears of
// it, pending names are hidden while the server still has them, a kill -9 leaves the deletes in
// the journal for the next mount, a removed tree is one delete, and what comes after a delete at
// the same name (a new file, a folder made again, a rename onto it or out of its folder) reaches
// the server after it.
import test from 'ava';
import fsp from 'node:fs/promises';
import { mountChild } from '../helpers/mount.js';
import { useServers, mountService, KINDS, uniq, sh, countRoutes, errCode, sortedNames } from './lib/services.js';

const servers = useServers(test);
/** Nothing is sent until a flush or a waiter asks for it. */
const HOLD = { deleteIdleMs: 600_000, deleteMaxDelayMs: 600_000 };
const DELETE_ROUTE = { maxxo: /ops\/delete/, vboxx: /fileops\/delete/ };


for (const kind of KINDS) {
  test.serial(`${kind}: rm answers at once, pending deletes hidden, replayed after kill -9, one delete per tree; later changes of the same names go after the delete`, async (t) => {
    const a = await mountService(t, servers, kind, { vfs: HOLD });
    // a delete the server is known to refuse is the program's error at once, not a later surprise
    if (kind === 'vboxx') t.is(await errCode(fsp.rmdir(a.base)), 'EACCES', 'a vBoxx root');
    const rel = uniq('del');
    const r = a.p(rel);
    await fsp.mkdir(r);
    const setup = await sh(`set -e; cd "$1"; mkdir -p tree/sub f d2; for i in $(seq 1 20); do echo $i > tree/sub/f$i; done; echo p > p; ` +
      'echo old > a; echo old > t; echo src > s; echo k > f/k; echo keep > f/keep; echo x > d2/x', [r]);
    t.is(setup.code, 0, setup.stderr);
    await a.flush();
    await servers.resetStats();

    // pending: hidden here, still on the server (a fresh mount lists them), nothing sent
    const rm = await sh('set -e; cd "$1"; rm -rf tree; rm p', [r]);
    t.is(rm.code, 0, rm.stderr);
    t.deepEqual(await sortedNames(r), ['a', 'd2', 'f', 's', 't']);
    const st = await a.status();
    t.is(st.pendingDeletes, 2, 'the tree folds into one delete');
    const b = await mountService(t, servers, kind);
    t.deepEqual(await sortedNames(b.p(rel)), ['a', 'd2', 'f', 'p', 's', 't', 'tree']);
    t.is(countRoutes(await servers.stats(), DELETE_ROUTE[kind]), 0);

    // a crash: the next mount with the same cache sends them (Maxxo: one request for both)
    await a.kill9();
    const a2 = await mountChild(t, { ...a.cfg, mountpoint: a.mnt });
    await a2.flush();
    t.is((await a2.status()).pending, 0);
    t.is(countRoutes(await servers.stats(), DELETE_ROUTE[kind]), kind === 'maxxo' ? 1 : 2);

    // later changes of the same names reach the server after the deletes
    const seq = await sh('set -e; cd "$1"; rm a; echo new > a; rm t; mv s t; rm f/k; mv f g; rm -r d2; mkdir d2; echo n > d2/x', [r]);
    t.is(seq.code, 0, seq.stderr);
    await a2.flush();
    t.deepEqual((await a2.status()).failures, []);
    const c = await mountService(t, servers, kind);
    const cr = c.p(rel);
    t.deepEqual(await sortedNames(cr), ['a', 'd2', 'g', 't']);
    t.is(await fsp.readFile(`${cr}/a`, 'utf8'), 'new\n');
    t.is(await fsp.readFile(`${cr}/t`, 'utf8'), 'src\n');
    t.deepEqual(await sortedNames(`${cr}/g`), ['keep']);
    t.deepEqual(await sortedNames(`${cr}/d2`), ['x']);
    t.is(await fsp.readFile(`${cr}/d2/x`, 'utf8'), 'n\n');
  });
}
