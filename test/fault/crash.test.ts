// Crash suite: the drive process is SIGKILLed at random moments while programs create, overwrite,
// rename and delete files; each time it is mounted again with the same cache dir (journal replay)
// and the server is checked directly (through a client, not the mount): every file closed before
// the kill is there with the right bytes, everything deleted or renamed away stays gone, and no
// file exists that the model does not explain.
import test, { type ExecutionContext } from 'ava';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { mountChild, tempDir } from '../helpers/mount.js';
import type { Remote } from '../../src/remote/types.js';
import { createMaxxoRemote } from '../../src/remote/maxxo/index.js';
import { createVboxxRemote } from '../../src/remote/vboxx/index.js';
import { DEMO, contentOf, mountAt, prng, sha256, sleep, startServer, type FaultDrive, type Kind, type Spec } from './lib.js';

const ROUNDS = Number(process.env.CM_CRASH_ROUNDS ?? 5);

/** What the server must hold per relative path: exact content, absent, or (op in flight) either. */
type Want = { kind: 'file'; spec: Spec } | { kind: 'gone' } | { kind: 'any'; specs: Array<Spec | null> };

/** Every content ever written to a path (by round), so a wrong file on the server can be explained. */
const history = new Map<string, Array<{ round: number; spec: Spec; what: string }>>();
let currentRound = 0;
function remember(rel: string, spec: Spec, what: string): void {
  const h = history.get(rel) ?? [];
  h.push({ round: currentRound, spec, what });
  history.set(rel, h);
}
/** What these bytes are: an older version of the path, a prefix of one, or unknown. */
function explain(rel: string, got: Buffer): string {
  const h = history.get(rel) ?? [];
  const hash = sha256(got);
  for (const e of h) {
    const c = contentOf(e.spec);
    if (sha256(c) === hash) return `= the ${e.what} of round ${e.round} (${e.spec.size} bytes)`;
    if (got.length < c.length && c.subarray(0, got.length).equals(got)) return `= a prefix of the ${e.what} of round ${e.round} (${e.spec.size} bytes)`;
  }
  for (const [other, hs] of history) {
    for (const e of hs) if (e.spec.size === got.length && sha256(contentOf(e.spec)) === hash) return `= the ${e.what} of ${other} in round ${e.round}`;
  }
  return `unknown bytes; history: ${h.map((e) => `r${e.round} ${e.what} ${e.spec.size}`).join(', ') || 'none'}`;
}

async function serverFiles(remote: Remote, dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const walk = async (d: string, rel: string) => {
    let l;
    try { l = await remote.list(d); } catch (e) { if ((e as { code?: string }).code === 'NOT_FOUND') return; throw e; }
    for (const e of l.entries) {
      if (e.type === 'dir') await walk(`${d}/${e.name}`, rel ? `${rel}/${e.name}` : e.name);
      else out.set(rel ? `${rel}/${e.name}` : e.name, e.size);
    }
  };
  await walk(dir, '');
  return out;
}

/**
 * The server's bytes of these files. Maxxo's client takes them in one rsync run (one process per
 * file made the Maxxo test spend ~90 % of its two minutes here); a file the batch did not deliver
 * is fetched alone, so a miss there is still seen.
 */
async function fetchAll(remote: Remote, remoteDir: string, rels: string[], tmp: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const dir = await fsp.mkdtemp(path.join(tmp, 'fetch-'));
  const local = (i: number) => path.join(dir, `${i}.bin`);
  let got = new Set<string>();
  if (remote.downloadMany && rels.length > 0) {
    got = new Set(await remote.downloadMany(rels.map((rel, i) => ({ path: `${remoteDir}/${rel}`, localFile: local(i) }))));
  }
  for (let i = 0; i < rels.length; i++) {
    if (!got.has(`${remoteDir}/${rels[i]}`)) await remote.download(`${remoteDir}/${rels[i]}`, local(i));
    out.set(rels[i]!, await fsp.readFile(local(i)));
    await fsp.rm(local(i), { force: true });
  }
  // (the folder stays: the client's rsync children started ahead keep their working folders in
  // it, made from timers, and remove them at close; tmp goes with the test)
  return out;
}

async function verify(t: ExecutionContext, remote: Remote, remoteDir: string, model: Map<string, Want>, tmp: string): Promise<{ files: number; bytes: number }> {
  const have = await serverFiles(remote, remoteDir);
  const bytesOf = await fetchAll(remote, remoteDir, [...model].filter(([rel, w]) => w.kind !== 'gone' && have.has(rel)).map(([rel]) => rel), tmp);
  let files = 0;
  let bytes = 0;
  for (const [rel, size] of have) {
    const w = model.get(rel);
    if (!w || w.kind === 'gone') { t.fail(`${rel} is on the server (${size} bytes) but was ${w ? 'deleted or renamed away' : 'never written'}`); continue; }
  }
  for (const [rel, w] of model) {
    if (w.kind === 'gone') continue;
    const present = have.has(rel);
    if (w.kind === 'any' && !present) { t.true(w.specs.includes(null), `${rel} missing`); continue; }
    if (!present) { t.fail(`${rel} was closed before the kill but is not on the server`); continue; }
    const got = bytesOf.get(rel)!;
    files++;
    bytes += got.length;
    if (w.kind === 'file') {
      if (sha256(got) !== sha256(contentOf(w.spec))) t.fail(`${rel}: not the last closed version (${w.spec.size} bytes): ${got.length} bytes ${explain(rel, got)}`);
    } else {
      // An overwrite was in flight: old or new content (or, for an in-place rewrite cut mid-way, a
      // file of some size: like a local file system, no promise about unclosed bytes).
      const ok = w.specs.some((s) => s && sha256(contentOf(s)) === sha256(got));
      // A new file that was never closed must not reach the server with partial bytes.
      if (!ok && w.specs[0] === null) t.fail(`${rel}: a file never closed reached the server with ${got.length} bytes ${explain(rel, got)}`);
      else if (!ok) t.log(`${rel}: in-flight rewrite left ${got.length} bytes (neither old nor new version) ${explain(rel, got)}`);
    }
  }
  return { files, bytes };
}

/** Random creates, overwrites, renames and deletes until the signal; returns when all settled. */
async function workload(base: string, model: Map<string, Want>, seed: number, signal: AbortSignal, counts: Record<string, number>, round: number): Promise<void> {
  const r = prng(seed);
  // New names are new across rounds too: a name of an earlier round may still be under a rename or
  // delete of this round, and a create racing that op makes the model wrong, not the drive.
  let n = 0;
  const fresh = (prefix: string, wid: number) => `${['a', 'b'][Math.floor(r() * 2)]}/${prefix}${wid}-${round}-${n++}.bin`;
  const live = () => [...model].filter(([, w]) => w.kind === 'file').map(([k]) => k);
  const worker = async (wid: number) => {
    while (!signal.aborted) {
      const x = r();
      const names = live();
      try {
        if (x < 0.5 || names.length < 4) {
          const rel = fresh('w', wid);
          const spec: Spec = { rel, size: Math.floor(r() * 200_000), seed: Math.floor(r() * 1e9) };
          const prev = model.get(rel);
          model.set(rel, { kind: 'any', specs: [prev?.kind === 'file' ? prev.spec : null, spec] });
          remember(rel, spec, 'create');
          await fsp.writeFile(path.join(base, rel), contentOf(spec));
          model.set(rel, { kind: 'file', spec });
          counts.writes = (counts.writes ?? 0) + 1;
        } else if (x < 0.65) {
          const rel = names[Math.floor(r() * names.length)]!;
          const old = (model.get(rel) as { spec: Spec }).spec;
          const spec: Spec = { rel, size: Math.floor(r() * 200_000), seed: Math.floor(r() * 1e9) };
          model.set(rel, { kind: 'any', specs: [old, spec] });
          remember(rel, spec, 'overwrite');
          await fsp.writeFile(path.join(base, rel), contentOf(spec));
          model.set(rel, { kind: 'file', spec });
          counts.overwrites = (counts.overwrites ?? 0) + 1;
        } else if (x < 0.85) {
          const from = names[Math.floor(r() * names.length)]!;
          const to = fresh('r', wid);
          const spec = (model.get(from) as { spec: Spec }).spec;
          model.set(from, { kind: 'any', specs: [spec, null] });
          model.set(to, { kind: 'any', specs: [spec, null] });
          remember(to, spec, `rename from ${from}`);
          await fsp.rename(path.join(base, from), path.join(base, to));
          model.set(from, { kind: 'gone' });
          model.set(to, { kind: 'file', spec });
          counts.renames = (counts.renames ?? 0) + 1;
        } else {
          const rel = names[Math.floor(r() * names.length)]!;
          const spec = (model.get(rel) as { spec: Spec }).spec;
          model.set(rel, { kind: 'any', specs: [spec, null] });
          await fsp.unlink(path.join(base, rel));
          model.set(rel, { kind: 'gone' });
          counts.deletes = (counts.deletes ?? 0) + 1;
        }
      } catch (e) {
        // The drive died under this call: its outcome stays uncertain ('any') in the model.
        if (!signal.aborted) throw e;
        counts.cut = (counts.cut ?? 0) + 1;
        return;
      }
    }
  };
  await Promise.all([0, 1, 2, 3].map(worker));
}

for (const kind of ['vboxx', 'maxxo'] as Kind[]) {
  test.serial(`${kind}: SIGKILL at random points during writes, renames and deletes; remount replays the journal`, async (t) => {
    t.timeout(240_000);
    history.clear();
    const srv = await startServer(t, { rsync: kind === 'maxxo' });
    const cacheDir = tempDir(t, 'cm-crash-cache-');
    const tmp = tempDir(t, 'cm-crash-tmp-');
    const remote = kind === 'maxxo'
      ? createMaxxoRemote({ server: srv.url, user: DEMO.maxxo.user, password: DEMO.maxxo.password })
      : createVboxxRemote({ server: srv.url, user: DEMO.vboxx.user, password: DEMO.vboxx.password });
    t.teardown(() => remote.close());
    const top = `crash-${process.pid}`;
    const remoteDir = kind === 'vboxx' ? `/Files/${top}` : `/${top}`;
    const model = new Map<string, Want>();
    const counts: Record<string, number> = {};
    const r = prng(kind === 'vboxx' ? 31 : 32);
    // Uploads wait a little after close, so kills find some pending, some in flight, some done.
    const vfs = { writebackDelayMs: 300 };
    let d: FaultDrive = await mountAt(t, srv.url, kind, { cacheDir, vfs });
    await fsp.mkdir(path.join(d.base, top, 'a'), { recursive: true });
    await fsp.mkdir(path.join(d.base, top, 'b'), { recursive: true });
    let kills = 0;
    let pendingAtKill = 0;
    let checkedFiles = 0;
    let checkedBytes = 0;
    for (let round = 0; round < ROUNDS; round++) {
      currentRound = round;
      const ac = new AbortController();
      const work = workload(path.join(d.base, top), model, 1000 + round * 7 + (kind === 'maxxo' ? 1 : 0), ac.signal, counts, round);
      await sleep(700 + r() * 2500);
      const st = await d.status().catch(() => undefined);
      pendingAtKill += st?.pending ?? 0;
      ac.abort();
      await d.kill9();
      kills++;
      await work;
      // Same mountpoint and cache: the stale mount is cleaned and the journal replayed.
      const again = await mountChild(t, { ...d.cfg, mountpoint: d.mnt }, { timeoutMs: 90_000 });
      d = { ...again, kind, base: d.base };
      await d.flush();
      t.deepEqual((await d.status()).failures, [], `round ${round}: no upload failed after replay`);
      const v = await verify(t, remote, remoteDir, model, tmp);
      checkedFiles += v.files;
      checkedBytes += v.bytes;
      // What was uncertain is now settled by what the server holds: the next round starts exact.
      const have = await serverFiles(remote, remoteDir);
      const unsettled = [...model].filter(([rel, w]) => w.kind === 'any' && have.has(rel)).map(([rel]) => rel);
      const settledBytes = await fetchAll(remote, remoteDir, unsettled, tmp);
      for (const [rel, w] of [...model]) {
        if (w.kind !== 'any') continue;
        if (!have.has(rel)) { model.set(rel, { kind: 'gone' }); continue; }
        const h = sha256(settledBytes.get(rel)!);
        const match = w.specs.find((s) => s && sha256(contentOf(s)) === h);
        if (match) model.set(rel, { kind: 'file', spec: match });
        else {
          // A torn in-place rewrite: take it out of the model by deleting it through the mount.
          await fsp.unlink(path.join(d.base, top, rel));
          model.set(rel, { kind: 'gone' });
        }
      }
    }
    await d.flush();
    const final = await verify(t, remote, remoteDir, model, tmp);
    t.log(`${kind}: kills ${kills} (ops cut mid-way ${counts.cut ?? 0}, uploads pending at the kills ${pendingAtKill}), ` +
      `writes ${counts.writes ?? 0}, overwrites ${counts.overwrites ?? 0}, renames ${counts.renames ?? 0}, deletes ${counts.deletes ?? 0}; ` +
      `files checked ${checkedFiles + final.files}, bytes checked ${checkedBytes + final.bytes}`);
    t.true(pendingAtKill > 0, 'some kills found uploads still pending');
    t.is(await d.stop(), 0);
  });
}
