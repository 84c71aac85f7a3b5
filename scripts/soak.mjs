#!/usr/bin/env node
// Long soak (not in CI): a mixed workload (create, overwrite, read+verify, rename, delete, list,
// mkdir/rmdir) through real FUSE mounts of the reference servers under injected faults, while the
// RSS and open file descriptors of each mount process are sampled every --sample-s seconds.
// Prints one line per sample and, at the end, the curve summary (first/min/max/last, growth over
// the second half) for each mount. Needs a build (`npx tsc -p .`), FUSE and rsync.
//
//   scripts/soak [--minutes 30] [--service vboxx|maxxo|both] [--fail-rate 0.02] [--latency-ms 5]
//                [--sample-s 10] [--files 200] [--json FILE]
//   scripts/soak --model [--minutes 30] [--service both] [--seed N] [--ops 150]
//     the model-based random test (test/e2e/model.test.ts) sequence after sequence, no faults;
//     prints each sequence and the count of sequences and mismatches; seeds N, N+1, ...
//   scripts/soak --model --batch 200 [--concurrency 6] [--target 2000] [--minutes 30] [--service both]
//                [--seed N] [--keep-going]
//     batch mode: one mount session runs --batch small sequences (--concurrency at once, each in
//     its own folder with its own model), then one stop + fresh mount + server check of all;
//     services run side by side; stops at --target sequences per service, at the time limit, or
//     (without --keep-going) after a session with a mismatch; exit 1 on any mismatch.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, '..', 'dist');
const MOUNT_CHILD = join(dist, 'test/helpers/mount-child.js');
if (!existsSync(MOUNT_CHILD)) {
  console.error('soak: build first (npx tsc -p .)');
  process.exit(1);
}
const { startEmulatorProcess } = await import(join(dist, 'test/helpers/emulator-process.js'));
const { lazyUnmount } = await import(join(dist, 'src/util/mounts.js'));

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : def;
}
if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 18).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
  process.exit(0);
}
const MINUTES = Number(arg('minutes', '30'));
const SERVICE = arg('service', 'both');
const FAIL_RATE = Number(arg('fail-rate', '0.02'));
const LATENCY = Number(arg('latency-ms', '5'));
const SAMPLE_S = Number(arg('sample-s', '10'));
const FILES = Number(arg('files', '200'));
const JSON_OUT = arg('json', '');
const kinds = SERVICE === 'both' ? ['vboxx', 'maxxo'] : [SERVICE];
if (!kinds.every((k) => k === 'vboxx' || k === 'maxxo') || !(MINUTES > 0)) {
  console.error('soak: --service vboxx|maxxo|both, --minutes > 0');
  process.exit(2);
}
const DEMO = { maxxo: { user: 'demo@maxxo.test', password: 'demo-password' }, vboxx: { user: 'demo', password: 'demo-password' } };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sha = (b) => createHash('sha256').update(b).digest('hex');

let x = 0x9e3779b9;
const rnd = () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 0x100000000; };
const bytes = (n) => randomBytes(n);

const work = mkdtempSync(join(tmpdir(), 'cm-soak-'));
const cleanup = [];
let stopping = false;
async function teardown() {
  for (const f of cleanup.reverse()) { try { await f(); } catch { /* best effort */ } }
  rmSync(work, { recursive: true, force: true });
}
for (const s of ['SIGINT', 'SIGTERM']) {
  process.on(s, () => { if (stopping) process.exit(130); stopping = true; console.error(`soak: ${s}, stopping early`); });
}

/** Mounts `kind` with the e2e mount child (config incl. password on stdin). */
async function mount(kind, url) {
  const mnt = join(work, `mnt-${kind}`);
  const cacheDir = join(work, `cache-${kind}`);
  await fsp.mkdir(mnt, { recursive: true });
  const child = spawn(process.execPath, [MOUNT_CHILD], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => { err += d; if (err.length > 100_000) err = err.slice(-50_000); });
  let out = '';
  const waiters = [];
  child.stdout.on('data', (d) => {
    out += d;
    let nl;
    while ((nl = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      const i = waiters.findIndex((w) => w.re.test(line));
      if (i >= 0) waiters.splice(i, 1)[0].resolve(line);
    }
  });
  const wait = (re, ms) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`mount child: no ${re} in ${ms} ms\n${err}`)), ms);
    waiters.push({ re, resolve: (l) => { clearTimeout(t); resolve(l); } });
  });
  const exited = new Promise((r) => child.once('exit', r));
  cleanup.push(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(60_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    await lazyUnmount(mnt);
  });
  const ready = wait(/^(MOUNTED|ERROR)/, 90_000);
  child.stdin.write(JSON.stringify({
    kind, server: url, user: DEMO[kind].user, password: DEMO[kind].password, mountpoint: mnt, accountId: `${kind}-soak`, cacheDir,
    vfs: { writebackDelayMs: 500, cacheMaxBytes: 256 * 1024 * 1024 },
    client: { timeoutMs: 15_000, maxRetryTimeMs: 30_000 },
    logLevel: 'error',
  }) + '\n');
  const line = await ready;
  if (line.startsWith('ERROR')) throw new Error(`${kind}: ${line}\n${err}`);
  return {
    kind, mnt, child, exited,
    base: kind === 'vboxx' ? join(mnt, 'Files', 'soak') : join(mnt, 'soak'),
    async flush() { const p = wait(/^(FLUSHED|FLUSH_ERROR)/, 300_000); child.stdin.write('FLUSH\n'); return p; },
    async status() { const p = wait(/^STATUS /, 30_000); child.stdin.write('STATUS\n'); return JSON.parse((await p).slice(7)); },
  };
}

function sample(pid) {
  try {
    const st = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(st)?.[1] ?? 0) * 1024;
    const fds = readdirSync(`/proc/${pid}/fd`).length;
    return { rss, fds };
  } catch {
    return { rss: 0, fds: 0 };
  }
}

/** One workload loop on a mount until the deadline; keeps a model of the content it wrote. */
async function workload(d, deadline, counts) {
  const model = new Map(); // rel -> sha
  await fsp.mkdir(d.base, { recursive: true });
  for (const sub of ['a', 'b', 'c']) await fsp.mkdir(join(d.base, sub), { recursive: true });
  let n = 0;
  // Paths some worker is operating on: the others leave them alone, so the model stays exact.
  const busy = new Set();
  const one = async () => {
    const names = [...model.keys()].filter((k) => !busy.has(k));
    const op = rnd();
    const bump = (k) => { counts[k] = (counts[k] ?? 0) + 1; };
    const held = [];
    const hold = (k) => { busy.add(k); held.push(k); return k; };
    try {
      if (op < 0.35 || names.length < 20) {
        if (names.length >= FILES) { const v = hold(names[Math.floor(rnd() * names.length)]); await fsp.unlink(join(d.base, v)); model.delete(v); bump('deletes'); return; }
        const rel = hold(`${['a', 'b', 'c'][Math.floor(rnd() * 3)]}/f${n++}.bin`);
        const size = rnd() < 0.9 ? Math.floor(rnd() * 64 * 1024) : Math.floor(rnd() * 2 * 1024 * 1024);
        const b = bytes(size);
        await fsp.writeFile(join(d.base, rel), b);
        model.set(rel, sha(b));
        bump('writes');
      } else if (op < 0.45) {
        const rel = hold(names[Math.floor(rnd() * names.length)]);
        const b = bytes(Math.floor(rnd() * 128 * 1024));
        await fsp.writeFile(join(d.base, rel), b);
        model.set(rel, sha(b));
        bump('overwrites');
      } else if (op < 0.75) {
        const rel = hold(names[Math.floor(rnd() * names.length)]);
        const b = await fsp.readFile(join(d.base, rel));
        if (sha(b) !== model.get(rel)) { bump('CORRUPT'); console.error(`soak: ${d.kind} ${rel}: content differs`); }
        bump('reads');
      } else if (op < 0.83) {
        const from = hold(names[Math.floor(rnd() * names.length)]);
        const to = hold(`${['a', 'b', 'c'][Math.floor(rnd() * 3)]}/r${n++}.bin`);
        await fsp.rename(join(d.base, from), join(d.base, to));
        model.set(to, model.get(from));
        model.delete(from);
        bump('renames');
      } else if (op < 0.9) {
        const v = hold(names[Math.floor(rnd() * names.length)]);
        await fsp.unlink(join(d.base, v));
        model.delete(v);
        bump('deletes');
      } else if (op < 0.97) {
        await fsp.readdir(join(d.base, ['a', 'b', 'c'][Math.floor(rnd() * 3)]));
        bump('lists');
      } else {
        const dir = join(d.base, `d${n++}`);
        await fsp.mkdir(dir);
        await fsp.rmdir(dir);
        bump('mkdir+rmdir');
      }
    } catch (e) {
      bump(`error ${e.code ?? e.message}`);
    } finally {
      for (const k of held) busy.delete(k);
    }
  };
  const workers = Array.from({ length: 3 }, async () => { while (Date.now() < deadline && !stopping) await one(); });
  await Promise.all(workers);
  return model;
}

function summary(points) {
  const rss = points.map((p) => p.rss);
  const fds = points.map((p) => p.fds);
  const half = points.slice(Math.floor(points.length / 2));
  const mins = (half.at(-1).t - half[0].t) / 60 || 1;
  const mib = (b) => (b / 1048576).toFixed(1);
  return {
    samples: points.length,
    rssMiB: { first: mib(rss[0]), min: mib(Math.min(...rss)), max: mib(Math.max(...rss)), last: mib(rss.at(-1)) },
    rssGrowthSecondHalfMiBPerMin: ((half.at(-1).rss - half[0].rss) / 1048576 / mins).toFixed(2),
    fds: { first: fds[0], min: Math.min(...fds), max: Math.max(...fds), last: fds.at(-1) },
  };
}

async function main() {
  const srv = await startEmulatorProcess({ dataDir: join(work, 'server'), failRate: FAIL_RATE, latencyMs: LATENCY, rsync: kinds.includes('maxxo') });
  cleanup.push(() => srv.stop());
  console.log(`soak: ${MINUTES} min, services ${kinds.join('+')}, fail rate ${FAIL_RATE}, latency ${LATENCY} ms, sample every ${SAMPLE_S} s, working set ${FILES} files/mount`);
  const drives = [];
  for (const k of kinds) drives.push(await mount(k, srv.url));
  const deadline = Date.now() + MINUTES * 60_000;
  const counts = Object.fromEntries(kinds.map((k) => [k, {}]));
  const curves = Object.fromEntries(kinds.map((k) => [k, []]));
  const t0 = Date.now();
  const loads = drives.map((d) => workload(d, deadline, counts[d.kind]));
  const sampler = (async () => {
    for (;;) {
      for (const d of drives) {
        const s = sample(d.child.pid);
        const st = await d.status().catch(() => ({ pending: -1, cacheBytes: -1 }));
        const p = { t: Math.round((Date.now() - t0) / 1000), ...s, pending: st.pending, cacheMiB: +(st.cacheBytes / 1048576).toFixed(1) };
        curves[d.kind].push(p);
        const c = counts[d.kind];
        const ops = Object.entries(c).filter(([k]) => !k.startsWith('error')).reduce((a, [, v]) => a + v, 0);
        const errs = Object.entries(c).filter(([k]) => k.startsWith('error')).reduce((a, [, v]) => a + v, 0);
        console.log(`t=${String(p.t).padStart(5)}s ${d.kind.padEnd(5)} rss=${(p.rss / 1048576).toFixed(1)}MiB fds=${p.fds} ops=${ops} errors=${errs} pending=${p.pending} cache=${p.cacheMiB}MiB`);
      }
      if (Date.now() >= deadline || stopping) break;
      await sleep(Math.min(SAMPLE_S * 1000, Math.max(0, deadline - Date.now())));
    }
  })();
  const models = await Promise.all(loads);
  await sampler;

  // Faults off, everything delivered, then every file of the model read back and compared.
  await fetch(`${srv.url}/_emulator/faults`, { method: 'POST', body: new URLSearchParams({ failRate: '0', latencyMs: '0' }) });
  const stats = await (await fetch(`${srv.url}/_emulator/stats`)).json();
  const faults = Object.entries(stats).filter(([k]) => k.startsWith('FAULT')).reduce((a, [, v]) => a + v, 0);
  const result = { minutes: MINUTES, failRate: FAIL_RATE, faultsInjected: faults, mounts: {} };
  for (let i = 0; i < drives.length; i++) {
    const d = drives[i];
    const f = await d.flush();
    let bad = 0;
    for (const [rel, h] of models[i]) {
      const b = await fsp.readFile(join(d.base, rel)).catch(() => null);
      if (!b || sha(b) !== h) bad++;
    }
    const st = await d.status();
    result.mounts[d.kind] = { counts: counts[d.kind], flush: f, finalFiles: models[i].size, finalMismatches: bad, failures: st.failures.length, curve: summary(curves[d.kind]) };
  }
  console.log('\nsoak result:');
  for (const [k, m] of Object.entries(result.mounts)) {
    console.log(`  ${k}: ${JSON.stringify(m.counts)}`);
    console.log(`  ${k}: final files ${m.finalFiles}, mismatches ${m.finalMismatches}, upload failures ${m.failures}, ${m.flush}`);
    console.log(`  ${k}: RSS MiB ${JSON.stringify(m.curve.rssMiB)}, growth over the second half ${m.curve.rssGrowthSecondHalfMiBPerMin} MiB/min; fds ${JSON.stringify(m.curve.fds)}`);
  }
  console.log(`  faults injected by the server: ${faults}`);
  if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify({ ...result, curves }, null, 2));
  const ok = Object.values(result.mounts).every((m) => m.finalMismatches === 0 && m.failures === 0 && !m.counts.CORRUPT);
  return ok ? 0 : 1;
}

/**
 * --model: sequences of the model-based random test until the time is up. Faults stay off: an
 * injected EIO would be a correct answer the model cannot predict.
 */
async function modelMain() {
  const { startServers } = await import(join(dist, 'test/e2e/lib/services.js'));
  const { runSequence, formatReport } = await import(join(dist, 'test/model/harness.js'));
  const servers = await startServers();
  cleanup.push(() => servers.close());
  const first = Number(arg('seed', String((Date.now() ^ (process.pid << 16)) >>> 0))) >>> 0;
  const ops = Number(arg('ops', '150'));
  const deadline = Date.now() + MINUTES * 60_000;
  console.log(`soak --model: ${MINUTES} min, services ${kinds.join('+')}, ${ops} ops per process, seeds from ${first}`);
  let n = 0;
  let bad = 0;
  const failed = [];
  while (Date.now() < deadline && !stopping) {
    for (const kind of kinds) {
      const seed = (first + Math.floor(n / kinds.length)) >>> 0;
      // mountService registers its cleanup on an ava test; one sequence stands in for one here.
      const teardowns = [];
      const t = { teardown: (f) => { teardowns.push(f); }, log: () => {} };
      let r;
      try {
        r = await runSequence(t, servers, { kind, seed, ops, reportDir: tmpdir() });
      } catch (e) {
        r = { kind, seed, problems: [`sequence aborted: ${e?.stack ?? e}`], ms: 0, writebackDelayMs: 0 };
      } finally {
        for (const f of teardowns.reverse()) { try { await f(); } catch { /* best effort */ } }
      }
      n++;
      if (r.problems.length) { bad++; failed.push(`${kind}:${seed}`); }
      console.log(`sequence ${n}: ${kind} seed ${seed}: ${r.problems.length ? `MISMATCH (${r.problems.length} problems)` : 'ok'} in ${(r.ms / 1000).toFixed(1)} s; ` +
        `sequences ${n}, mismatches ${bad}`);
      if (r.problems.length) console.log(formatReport(r).split('\n').map((l) => `  ${l}`).join('\n'));
      if (Date.now() >= deadline || stopping) break;
    }
  }
  console.log(`\nsoak --model result: sequences ${n}, mismatches ${bad}${failed.length ? ` (${failed.join(', ')})` : ''}`);
  return bad ? 1 : 0;
}

/**
 * --model --batch N: mount sessions of N small sequences each (test/model/batch.ts), the services
 * side by side, until --target sequences per service are checked or the time is up.
 */
async function batchMain() {
  const { startServers } = await import(join(dist, 'test/e2e/lib/services.js'));
  const { runBatch, batchShape } = await import(join(dist, 'test/model/batch.js'));
  const { formatReport } = await import(join(dist, 'test/model/harness.js'));
  const servers = await startServers();
  cleanup.push(() => servers.close());
  const first = Number(arg('seed', String((Date.now() ^ (process.pid << 16)) >>> 0))) >>> 0;
  const batch = Math.max(1, Number(arg('batch', '200')) || 200);
  const conc = Math.max(1, Number(arg('concurrency', '6')) || 6);
  const target = Number(arg('target', '0')) || Infinity;
  const keepGoing = process.argv.includes('--keep-going');
  const deadline = Date.now() + MINUTES * 60_000;
  const t0 = Date.now();
  const el = () => `${((Date.now() - t0) / 60_000).toFixed(1)} min`;
  console.log(`soak --model --batch: ${batch} sequences per mount session, ${conc} at once, services ${kinds.join('+')}, ` +
    `until ${target === Infinity ? 'the time is up' : `${target} sequences per service`} (${MINUTES} min at most), seeds from ${first} (each service)`);
  const tot = Object.fromEntries(kinds.map((k) => [k, { sessions: 0, checked: 0, bad: 0, live: 0, failed: [], runFailed: [] }]));
  let halt = false;
  const totals = () => kinds.map((k) => `${k} ${tot[k].checked} checked, ${tot[k].bad} mismatches` +
    ` (${(tot[k].checked / ((Date.now() - t0) / 60_000)).toFixed(1)}/min)`).join('; ');
  const loop = async (kind) => {
    const T = tot[kind];
    while (!halt && !stopping && Date.now() < deadline && T.checked < target) {
      const seeds = Array.from({ length: Math.min(batch, target - T.checked) }, (_, i) => (first + T.checked + i) >>> 0);
      const teardowns = [];
      const t = { teardown: (f) => { teardowns.push(f); }, log: () => {} };
      let r;
      try {
        r = await runBatch(t, servers, {
          kind, seeds, concurrency: conc, reportDir: tmpdir(),
          onLive: (seed, problems, done) => {
            if (problems.length) {
              console.log(`${el()} ${kind} seed ${seed}: MISMATCH seen on the live mount (${problems.length} problems; full report after the session)`);
              for (const p of problems.slice(0, 3)) console.log(`  - ${p.split('\n')[0].slice(0, 600)}`);
            }
            if (done % 50 === 0) console.log(`${el()} ${kind} session ${T.sessions + 1}: ${done}/${seeds.length} sequences ran`);
          },
        });
      } catch (e) {
        r = { kind, seeds, sequences: seeds.map((seed) => ({ kind, seed, problems: [], counts: {}, ms: 0, writebackDelayMs: 0 })),
          runProblems: [`session aborted: ${e?.stack ?? e}`], liveMs: 0, ms: 0, writebackDelayMs: 0, processes: 0 };
      } finally {
        for (const f of teardowns.reverse()) { try { await f(); } catch { /* best effort */ } }
      }
      T.sessions++;
      const bad = r.sequences.filter((s) => s.problems.length);
      T.checked += r.sequences.length;
      T.bad += bad.length;
      for (const s of bad) T.failed.push(s.seed);
      if (r.runProblems.length) { T.runFailed.push(`${seeds[0]}..${seeds.at(-1)}`); if (!bad.length) T.bad++; }
      const ok = !bad.length && !r.runProblems.length;
      console.log(`${el()} ${kind} session ${T.sessions}: seeds ${seeds[0]}..${seeds.at(-1)}: ${seeds.length} sequences ` +
        `${ok ? 'ok' : `MISMATCH (${bad.length} sequences, ${r.runProblems.length} session problems)`} in ${(r.ms / 1000).toFixed(1)} s ` +
        `(run ${(r.liveMs / 1000).toFixed(1)} s = ${(r.liveMs / 1000 / seeds.length).toFixed(2)} s/sequence, write-back ${r.writebackDelayMs} ms, ${r.processes} processes)`);
      console.log(`${el()} totals: ${totals()}`);
      if (!ok) {
        console.log(`  replay the session: scripts/soak --model --service ${kind} --batch ${seeds.length} --concurrency ${conc} --seed ${seeds[0]} --target ${seeds.length}`);
        for (const p of r.runProblems) console.log(`  - session: ${p.split('\n')[0].slice(0, 400)}`);
        for (const s of bad.slice(0, 5)) {
          console.log(`  shape of seed ${s.seed}: ${JSON.stringify(batchShape(s.seed))}`);
          console.log(formatReport(s).split('\n').map((l) => `  ${l}`).join('\n'));
        }
        if (r.logFile) console.log(`  full op logs: ${r.logFile}`);
        if (!keepGoing) halt = true;
      }
    }
  };
  await Promise.all(kinds.map(loop));
  console.log(`\nsoak --model --batch result (${el()}):`);
  let any = false;
  for (const k of kinds) {
    const T = tot[k];
    if (T.bad) any = true;
    console.log(`  ${k}: ${T.checked} sequences checked in ${T.sessions} mount sessions (seeds ${first}..${(first + T.checked - 1) >>> 0}), ` +
      `mismatches ${T.bad}${T.failed.length ? ` (seeds ${T.failed.join(', ')})` : ''}${T.runFailed.length ? `; failed sessions ${T.runFailed.join(', ')}` : ''}`);
  }
  return any ? 1 : 0;
}

(process.argv.includes('--model') ? (process.argv.includes('--batch') ? batchMain() : modelMain()) : main()).then(async (code) => { await teardown(); process.exit(code); }, async (e) => {
  console.error(`soak: ${e?.stack ?? e}`);
  await teardown();
  process.exit(1);
});
