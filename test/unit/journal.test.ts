import test from 'ava';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Journal } from '../../src/vfs/journal.js';
import { setup, sleep, tempDir, writeFile } from './helpers.js';

test('journal: uploads, done, cancel of a folder, rename retargets; state survives reopen', async (t) => {
  const file = join(tempDir(t), 'journal');
  const j = new Journal(file);
  t.deepEqual(await j.open(), []);
  await j.upload({ uid: 'u1', path: '/a', id: 'i1', size: 1 });
  await j.upload({ uid: 'u2', path: '/d/b', id: 'i2', size: 2 });
  await j.upload({ uid: 'u3', path: '/d/c', id: 'i3', size: 3 });
  await j.upload({ uid: 'u4', path: '/e/x', id: 'i4', size: 4 });
  await j.done('u1');
  await j.rename('/d', '/dd');
  await j.cancel('/e');
  // a newer upload of the same path supersedes the older one
  await j.upload({ uid: 'u5', path: '/dd/c', id: 'i3', size: 30 });
  await j.close();
  appendFileSync(file, '{"t":"d","ui');
  const j2 = new Journal(file);
  const p = await j2.open();
  t.deepEqual(p.map((x) => [x.uid, x.path, x.size]).sort(), [['u2', '/dd/b', 2], ['u5', '/dd/c', 30]]);
  await j2.close();
});

test('journal: rename onto a path drops what was pending there', async (t) => {
  const file = join(tempDir(t), 'journal');
  const j = new Journal(file);
  await j.open();
  await j.upload({ uid: 'a', path: '/tmp', id: '1', size: 1 });
  await j.upload({ uid: 'b', path: '/target', id: '2', size: 2 });
  await j.rename('/tmp', '/target');
  t.deepEqual([...j.pending.values()].map((x) => [x.uid, x.path]), [['a', '/target']]);
  await j.close();
});

test('journal: compacts to the live records when it grows', async (t) => {
  const file = join(tempDir(t), 'journal');
  const j = new Journal(file, 20);
  await j.open();
  for (let i = 0; i < 100; i++) {
    await j.upload({ uid: `u${i}`, path: `/f${i}`, id: `i${i}`, size: i });
    if (i !== 50) await j.done(`u${i}`);
  }
  await j.close();
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  t.true(lines.length < 30, `journal lines: ${lines.length}`);
  const j2 = new Journal(file);
  t.deepEqual((await j2.open()).map((x) => x.uid), ['u50']);
  await j2.close();
});

test('journal: concurrent appends are group-committed and all durable', async (t) => {
  const file = join(tempDir(t), 'journal');
  const j = new Journal(file);
  await j.open();
  await Promise.all(Array.from({ length: 200 }, (_, i) => j.upload({ uid: `u${i}`, path: `/f${i}`, id: `${i}`, size: i })));
  await j.close();
  const j2 = new Journal(file);
  t.is((await j2.open()).length, 200);
  await j2.close();
});

test('journal, lazy sync: closes are group-committed; a delete or rename waits for the disk', async (t) => {
  const file = join(tempDir(t), 'journal');
  const j = new Journal(file, 1000, { syncDelayMs: 60_000 });
  await j.open();
  for (let i = 0; i < 20; i++) await j.upload({ uid: `u${i}`, path: `/f${i}`, id: `i${i}`, size: i, data: Buffer.alloc(i, 1) });
  await j.done('u0');
  t.is(j.syncs, 0, 'no device flush per close');
  // what a crash of the process leaves (the kernel has every record): all of it comes back
  const lines = readFileSync(file, 'utf8').split('\0')[0]!.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { t: string });
  t.is(lines.filter((r) => r.t === 'u').length, 20);
  t.is(lines.filter((r) => r.t === 'd').length, 1);
  await j.cancel('/f1');
  t.is(j.syncs, 1, 'a cancel record is on the disk before the server delete');
  await j.rename('/f2', '/g2');
  t.is(j.syncs, 2, 'so is a rename record');
  await j.upload({ uid: 'x', path: '/late', id: 'x', size: 0 });
  await j.cancel('/nothing-pending');
  t.is(j.syncs, 3, 'a delete with nothing pending still waits until earlier records are on the disk');
  await j.cancel('/nothing-either');
  t.is(j.syncs, 3, 'and flushes nothing when all is on the disk already');
  await j.upload({ uid: 'y', path: '/last', id: 'y', size: 0 });
  await j.close();
  t.is(j.syncs, 4, 'close flushes what is left');
});

test('journal, lazy sync: the group commit comes by itself after the delay', async (t) => {
  const file = join(tempDir(t), 'journal');
  const j = new Journal(file, 1000, { syncDelayMs: 50 });
  await j.open();
  await Promise.all(Array.from({ length: 10 }, (_, i) => j.upload({ uid: `u${i}`, path: `/f${i}`, id: `i${i}`, size: 0 })));
  t.is(j.syncs, 0);
  for (let i = 0; i < 100 && j.syncs === 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.is(j.syncs, 1, 'one flush for all ten');
  await j.close();
  t.is(j.syncs, 1, 'nothing left to flush at close');
});

test('the age of a pending change survives a restart: status dates it from the change, not from the replay', async (t) => {
  const s = await setup(t, {}, { writebackDelayMs: 60_000 });
  s.remote.mkdirp('/d');
  await writeFile(s.vfs, '/d/a.txt', 'pending');
  const madeAt = s.vfs.status().oldestPendingMs!;
  t.true(Math.abs(madeAt - Date.now()) < 5000);
  await s.vfs.close({ force: true });
  await sleep(300);
  const v = await s.reopen({ writebackDelayMs: 60_000 });
  t.is(v.status().pending, 1);
  const after = v.status().oldestPendingMs!;
  t.true(after <= madeAt + 50, `replayed record dated ${after - madeAt} ms after the change`);
  await v.close({ force: true });
});

test('journal: mkdir records replay in the order made until done, survive compaction after the deletes, and a delete above drops them', async (t) => {
  const file = join(tempDir(t), 'journal');
  const j = new Journal(file, 4);
  await j.open();
  await j.deleteRec({ uid: 'x1', path: '/gone', dir: true });
  await j.mkdirRec({ uid: 'm1', path: '/a' });
  await j.mkdirRec({ uid: 'm2', path: '/a/b' });
  await j.mkdirRec({ uid: 'm3', path: '/c' });
  await j.mkdirRec({ uid: 'm4', path: '/old/d' });
  await j.upload({ uid: 'u1', path: '/a/b/f', id: 'i1', size: 1 });
  await j.done('m3');
  await j.deleteRec({ uid: 'x2', path: '/old', dir: true });
  // (open() compacts the file to the live state: deletes, mkdirs, uploads)
  for (let i = 0; i < 12; i++) await j.upload({ uid: `v${i}`, path: '/v', id: 'i2', size: i });
  await j.close();
  const j2 = new Journal(file);
  await j2.open();
  t.deepEqual([...j2.mkdirs.values()].map((m) => [m.uid, m.path]), [['m1', '/a'], ['m2', '/a/b']]);
  t.deepEqual([...j2.deletes.keys()].sort(), ['/gone', '/old']);
  t.deepEqual([...j2.pending.values()].map((p) => p.path).sort(), ['/a/b/f', '/v']);
  const order = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { t: string }).t);
  t.deepEqual(order, ['x', 'x', 'm', 'm', 'u', 'u'], 'deletes, then mkdirs parents first, then uploads');
  await j2.done('m1');
  await j2.close();
  const j3 = new Journal(file);
  await j3.open();
  t.deepEqual([...j3.mkdirs.keys()], ['/a/b']);
  await j3.close();
});

test('journal: move records retarget what was pending, fold chains, end with a delete of their file, keep their order through compaction', async (t) => {
  const file = join(tempDir(t), 'journal');
  const j = new Journal(file, 4);
  await j.open();
  await j.upload({ uid: 'u1', path: '/a', id: 'i1', size: 1 });
  await j.upload({ uid: 'u0', path: '/b', id: 'i0', size: 9 });
  // a -> b: the pending upload of a names b, the one pending at b is replaced
  await j.moveRec({ uid: 'v1', from: '/a', to: '/b', size: 1, replaces: true });
  await j.upload({ uid: 'u2', path: '/a', id: 'i2', size: 2 });
  t.deepEqual([...j.pending.values()].map((p) => [p.uid, p.path]), [['u1', '/b'], ['u2', '/a']]);
  // p -> q, then q -> r folded into p -> r (one record, the server's file still at p)
  await j.moveRec({ uid: 'v2', from: '/p', to: '/q', size: 5 });
  await j.moveRec({ uid: 'v3', from: '/p', to: '/r', size: 5 }, { renamed: '/q', replaces: 'v2' });
  // s -> t, then an unlink of t before the move went: the delete of s ends it
  await j.moveRec({ uid: 'v4', from: '/s', to: '/t', size: 3 });
  await j.upload({ uid: 'u3', path: '/t', id: 'i3', size: 3 });
  await j.deleteRec({ uid: 'x1', path: '/s', dir: false }, 'v4');
  // m -> n, then n -> m: a chain back moves nothing
  await j.moveRec({ uid: 'v5', from: '/m', to: '/n', size: 1 });
  await j.moveRec({ uid: 'v6', from: '/m', to: '/m', size: 1 }, { renamed: '/n', replaces: 'v5' });
  const live = () => [...j.moves.values()].map((m) => [m.uid, m.from, m.to, !!m.replaces]);
  t.deepEqual(live(), [['v1', '/a', '/b', true], ['v3', '/p', '/r', false]]);
  t.deepEqual([...j.pending.values()].map((p) => p.uid), ['u1', 'u2']);
  t.is(j.summary(), '2 uploads, 1 delete, 2 renames');
  // (compaction: the file is written again from the live state)
  for (let i = 0; i < 12; i++) await j.upload({ uid: `w${i}`, path: '/w', id: 'iw', size: i });
  await j.close();
  const j2 = new Journal(file);
  await j2.open();
  t.deepEqual([...j2.moves.values()].map((m) => [m.uid, m.from, m.to, !!m.replaces]), [['v1', '/a', '/b', true], ['v3', '/p', '/r', false]]);
  t.deepEqual([...j2.pending.values()].map((p) => [p.uid, p.path]).sort(), [['u1', '/b'], ['u2', '/a'], ['w11', '/w']]);
  t.deepEqual([...j2.deletes.keys()], ['/s']);
  const order = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { t: string }).t);
  t.deepEqual(order, ['x', 'v', 'v', 'u', 'u', 'u'], 'deletes, mkdirs, moves in order, then uploads');
  await j2.done('v1');
  await j2.close();
  const j3 = new Journal(file);
  await j3.open();
  t.deepEqual([...j3.moves.keys()], ['/r']);
  t.deepEqual([...j3.pending.values()].map((p) => p.path).sort(), ['/a', '/b', '/w']);
  await j3.close();
});

// The random journal tests: a small LCG (the same sequence every run), paths that nest and share
// prefixes ('/a/bc' is not under '/a/b'), and the model's notion of "at or under".
function lcg(seed: number): (n: number) => number {
  return (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
}
const RANDOM_PATHS = ['/a', '/a/b', '/a/b/c', '/a/bc', '/d', '/d/e', '/d/e/f', '/x', '/x/a', '/ab'];
const under = (p: string, root: string) => p === root || p.startsWith(root + '/');

/** A step of the random journal tests and of their model: an upload of p (one per path, op 0) or a metadata change of p (op 1). */
async function uploadOrAttrs(j: Journal, m: { ups: Map<string, string>; attrs: Map<string, string>; log: string[] }, op: number, p: string, uid: string, step: number): Promise<void> {
  if (op === 0) {
    for (const [k, v] of m.ups) if (v === p) m.ups.delete(k);
    m.ups.set(uid, p);
    m.log.push(`upload ${uid} ${p}`);
    await j.upload({ uid, path: p, id: uid, size: 1 });
  } else {
    m.attrs.set(p, uid);
    m.log.push(`attrs ${uid} ${p}`);
    await j.setAttrs(uid, p, { mtimeMs: step });
  }
}

test('journal: random uploads, metadata changes, cancels and renames of trees match a model (and a replay)', async (t) => {
  const rnd = lcg(12345);
  const paths = RANDOM_PATHS;
  for (let round = 0; round < 20; round++) {
    const file = join(tempDir(t), `journal-${round}`);
    const j = new Journal(file, 50);
    await j.open();
    // the model: pending uploads uid -> path (one per path), metadata changes path -> uid
    const ups = new Map<string, string>();
    const attrs = new Map<string, string>();
    let n = 0;
    const log: string[] = [];
    for (let step = 0; step < 150; step++) {
      const p = paths[rnd(paths.length)]!;
      const op = rnd(6);
      const uid = `u${n++}`;
      if (op <= 1) {
        await uploadOrAttrs(j, { ups, attrs, log }, op, p, uid, step);
      } else if (op === 2) {
        const live = [...ups.keys(), ...attrs.values()];
        if (!live.length) continue;
        const u = live[rnd(live.length)]!;
        ups.delete(u);
        for (const [k, v] of attrs) if (v === u) attrs.delete(k);
        log.push(`done ${u}`);
        await j.done(u);
      } else if (op === 3) {
        for (const [k, v] of ups) if (under(v, p)) ups.delete(k);
        for (const k of attrs.keys()) if (under(k, p)) attrs.delete(k);
        log.push(`cancel ${p}`);
        await j.cancel(p);
      } else {
        const to = paths[rnd(paths.length)]!;
        if (under(to, p) || under(p, to)) continue;
        const any = [...ups.values()].some((v) => under(v, p)) || [...attrs.keys()].some((k) => under(k, p));
        if (any) {
          for (const [k, v] of ups) if (under(v, to)) ups.delete(k);
          for (const k of [...attrs.keys()]) if (under(k, to)) attrs.delete(k);
          for (const [k, v] of ups) if (under(v, p)) ups.set(k, to + v.slice(p.length));
          const moved = [...attrs].filter(([k]) => under(k, p));
          for (const [k] of moved) attrs.delete(k);
          for (const [k, v] of moved) attrs.set(to + k.slice(p.length), v);
        }
        log.push(`rename ${p} ${to}`);
        await j.rename(p, to);
      }
      const got = [...j.pending.values()].map((x) => `${x.uid}@${x.path}`).sort();
      const want = [...ups].map(([k, v]) => `${k}@${v}`).sort();
      t.deepEqual(got, want, `round ${round} step ${step}: ${log.slice(-6).join('; ')}`);
      t.deepEqual([...j.attrs].map(([k, v]) => `${v.uid}@${k}`).sort(), [...attrs].map(([k, v]) => `${v}@${k}`).sort());
      for (const q of paths) t.is(j.forPath(q)?.uid, [...ups].find(([, v]) => v === q)?.[0]);
      if (got.join() !== want.join()) return;
    }
    await j.close();
    const j2 = new Journal(file);
    const replay = await j2.open();
    t.deepEqual(replay.map((x) => `${x.uid}@${x.path}`).sort(), [...ups].map(([k, v]) => `${k}@${v}`).sort(), `replay of round ${round}`);
    t.deepEqual([...j2.attrs.keys()].sort(), [...attrs.keys()].sort());
    await j2.close();
  }
});

test('journal: random deletes, mkdirs, moves, metadata changes, uploads and dones match a model (and a replay)', async (t) => {
  const rnd = lcg(777);
  const paths = RANDOM_PATHS;
  for (let round = 0; round < 15; round++) {
    const file = join(tempDir(t), `journal-x-${round}`);
    const j = new Journal(file, 40);
    await j.open();
    // the model: uploads uid -> path; metadata, deletes, mkdirs path -> uid; moves target -> uid
    const ups = new Map<string, string>();
    const attrs = new Map<string, string>();
    const dels = new Map<string, string>();
    const mks = new Map<string, string>();
    const mvs = new Map<string, string>();
    const cancelAt = (p: string) => {
      for (const [k, v] of ups) if (under(v, p)) ups.delete(k);
      for (const k of [...attrs.keys()]) if (under(k, p)) attrs.delete(k);
    };
    let n = 0;
    const log: string[] = [];
    for (let step = 0; step < 160; step++) {
      const p = paths[rnd(paths.length)]!;
      const op = rnd(7);
      const uid = `u${n++}`;
      if (op <= 1) {
        await uploadOrAttrs(j, { ups, attrs, log }, op, p, uid, step);
      } else if (op === 2) {
        cancelAt(p);
        for (const k of [...dels.keys()]) if (under(k, p)) dels.delete(k);
        for (const k of [...mks.keys()]) if (under(k, p)) mks.delete(k);
        dels.set(p, uid);
        const dir = rnd(2) === 1;
        log.push(`delete ${uid} ${p}${dir ? '/' : ''}`);
        await j.deleteRec({ uid, path: p, dir });
      } else if (op === 3) {
        mks.set(p, uid);
        log.push(`mkdir ${uid} ${p}`);
        await j.mkdirRec({ uid, path: p });
      } else if (op === 4) {
        const to = paths[rnd(paths.length)]!;
        if (under(to, p) || under(p, to)) continue;
        cancelAt(to);
        for (const [k, v] of ups) if (under(v, p)) ups.set(k, to + v.slice(p.length));
        const moved = [...attrs].filter(([k]) => under(k, p));
        for (const [k] of moved) attrs.delete(k);
        for (const [k, v] of moved) attrs.set(to + k.slice(p.length), v);
        mvs.set(to, uid);
        log.push(`move ${uid} ${p} ${to}`);
        await j.moveRec({ uid, from: p, to, size: 1 });
      } else {
        const live = [...ups.keys(), ...attrs.values(), ...dels.values(), ...mks.values(), ...mvs.values()];
        if (!live.length) continue;
        const u = live[rnd(live.length)]!;
        ups.delete(u);
        for (const m of [attrs, dels, mks, mvs]) for (const [k, v] of m) if (v === u) m.delete(k);
        log.push(`done ${u}`);
        await j.done(u);
      }
      const at = `round ${round} step ${step}: ${log.slice(-6).join('; ')}`;
      const same = (got: string[], want: string[], what: string) => {
        t.deepEqual(got.sort(), want.sort(), `${what}, ${at}`);
        return got.join() === want.join();
      };
      const ok = same([...j.pending.values()].map((x) => `${x.uid}@${x.path}`), [...ups].map(([k, v]) => `${k}@${v}`), 'uploads')
        && same([...j.attrs].map(([k, v]) => `${v.uid}@${k}`), [...attrs].map(([k, v]) => `${v}@${k}`), 'metadata')
        && same([...j.deletes].map(([k, v]) => `${v.uid}@${k}`), [...dels].map(([k, v]) => `${v}@${k}`), 'deletes')
        && same([...j.mkdirs].map(([k, v]) => `${v.uid}@${k}`), [...mks].map(([k, v]) => `${v}@${k}`), 'mkdirs')
        && same([...j.moves].map(([k, v]) => `${v.uid}@${k}`), [...mvs].map(([k, v]) => `${v}@${k}`), 'moves');
      if (!ok) return;
      // the uid index holds the live records only (a record replaced or cancelled leaves it)
      t.is(j.uidCount, j.attrs.size + j.deletes.size + j.mkdirs.size + j.moves.size, at);
    }
    await j.close();
    const j2 = new Journal(file);
    await j2.open();
    t.deepEqual([...j2.pending.values()].map((x) => `${x.uid}@${x.path}`).sort(), [...ups].map(([k, v]) => `${k}@${v}`).sort(), `replay of round ${round}`);
    t.deepEqual([...j2.deletes].map(([k, v]) => `${v.uid}@${k}`).sort(), [...dels].map(([k, v]) => `${v}@${k}`).sort());
    t.deepEqual([...j2.mkdirs].map(([k, v]) => `${v.uid}@${k}`).sort(), [...mks].map(([k, v]) => `${v}@${k}`).sort());
    t.deepEqual([...j2.moves].map(([k, v]) => `${v.uid}@${k}`).sort(), [...mvs].map(([k, v]) => `${v}@${k}`).sort());
    await j2.close();
  }
});
