#!/usr/bin/env node
// Client-level benchmark against the local reference server (no FUSE): vBoxx throughput of a big
// ranged download with N ranges in flight vs one GET, and listing latency of vBoxx metadata and
// (when its client is built) Maxxo /ops/list. Needs a build: `npx tsc -p .` first.
//
//   node scripts/bench-client.mjs [--size-mib 512] [--range-mib 8] [--parallel 1,2,4,8]
//                                 [--latency-ms 0,20] [--runs 3] [--json]
import { mkdtempSync, rmSync, existsSync, mkdirSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, '..', 'dist');
if (!existsSync(join(dist, 'src/remote/vboxx/index.js'))) {
  console.error('bench-client: build first (npx tsc -p .)');
  process.exit(1);
}
// The server runs in its own process: sharing one event loop with the client would measure both
// fighting over it, not the client.
const { startEmulatorProcess } = await import(join(dist, 'test/helpers/emulator-process.js'));
const { default: Database } = await import('better-sqlite3');
const { VboxxClient } = await import(join(dist, 'src/remote/vboxx/index.js'));

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : def;
}
const MiB = 1024 * 1024;
const sizeMiB = Number(arg('size-mib', '512'));
const rangeMiB = Number(arg('range-mib', '8'));
const parallels = arg('parallel', '1,2,4,8').split(',').map(Number);
const latencies = arg('latency-ms', '0,20').split(',').map(Number);
const runs = Number(arg('runs', '3'));
const asJson = process.argv.includes('--json');

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const work = mkdtempSync(join(tmpdir(), 'bench-client-'));
const dataDir = join(work, 'server');
const emu = await startEmulatorProcess({ demo: true, rsync: false, dataDir });
const db = new Database(join(dataDir, 'state.db'));
db.pragma('busy_timeout = 5000');
const ctx = { db, filesDir: join(dataDir, 'files') };
const rows = [];
const listRows = [];
const setLatency = (ms) => fetch(`${emu.url}/_emulator/faults`, {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ latencyMs: ms }),
});

try {
  const c = new VboxxClient({ server: emu.url, user: 'demo', password: 'demo-password', concurrency: Math.max(8, ...parallels) });
  const root = (await c.accountInfo()).roots.find((r) => r.name === 'Files').id;

  // ---- a big file, uploaded through the chunked path (that is a figure too) ----
  const src = join(work, 'big.bin');
  const fd = openSync(src, 'w');
  const block = randomBytes(MiB);
  for (let i = 0; i < sizeMiB; i++) { block.writeUInt32LE(i, 0); writeSync(fd, block); }
  closeSync(fd);
  const size = sizeMiB * MiB;
  let t0 = performance.now();
  await c.upload(root, '/bench/big.bin', src);
  const upMs = performance.now() - t0;
  rows.push({ what: `upload ${sizeMiB} MiB (chunked, 8 MiB chunks)`, latencyMs: 0, ms: upMs, mibs: sizeMiB / (upMs / 1000) });
  rmSync(src);

  async function oneGet() {
    const r = await c.openFile(root, '/bench/big.bin');
    let n = 0;
    for await (const chunk of r.body) n += chunk.length;
    if (n !== size) throw new Error(`single GET got ${n} bytes`);
  }
  async function ranges(parallel) {
    const chunk = rangeMiB * MiB;
    let next = 0;
    let total = 0;
    const worker = async () => {
      for (;;) {
        const off = next;
        if (off >= size) return;
        next += chunk;
        const b = await c.readRange(root, '/bench/big.bin', off, Math.min(chunk, size - off));
        total += b.length;
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    if (total !== size) throw new Error(`ranges got ${total} bytes`);
  }
  async function toFile() {
    const f = join(work, 'dl.bin');
    await c.download(root, '/bench/big.bin', f);
    rmSync(f);
  }

  for (const lat of latencies) {
    await setLatency(lat);
    const cases = [
      [`1 GET, ${sizeMiB} MiB to memory`, oneGet],
      [`1 GET, ${sizeMiB} MiB to file (download)`, toFile],
      ...parallels.map((p) => [`${p} x ${rangeMiB} MiB ranges in flight`, () => ranges(p)]),
    ];
    for (const [what, fn] of cases) {
      const times = [];
      for (let i = 0; i < runs; i++) { const s = performance.now(); await fn(); times.push(performance.now() - s); }
      const ms = median(times);
      rows.push({ what, latencyMs: lat, ms, mibs: sizeMiB / (ms / 1000) });
    }
  }
  await setLatency(0);

  // ---- listing latency: vBoxx metadata of 1,000 and 10,000 entries (+ hash revalidation) ----
  // Entries are inserted into the reference server's table directly: a listing reads only that.
  const ins = db.prepare(`INSERT OR REPLACE INTO vboxx_nodes (root_id, path, parent, name, is_dir, bytes, mtime, client_mtime, rev)
    VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)`);
  for (const n of [1000, 10000]) {
    const folder = `list${n}`;
    db.transaction(() => {
      ins.run(root, folder, '', folder, 1, 0, Date.now(), 0);
      for (let i = 0; i < n; i++) {
        const name = `file-${String(i).padStart(5, '0')}.txt`;
        ins.run(root, `${folder}/${name}`, folder, name, 0, i % 1000, Date.now(), i + 1);
      }
    })();
    const times = [];
    let hash;
    for (let i = 0; i < 7; i++) {
      const s = performance.now();
      const r = await c.metadata(root, `/${folder}`);
      times.push(performance.now() - s);
      if (r.unchanged || r.meta.contents.length !== n) throw new Error('listing incomplete');
      hash = r.meta.hash;
    }
    const reval = [];
    for (let i = 0; i < 7; i++) {
      const s = performance.now();
      const r = await c.metadata(root, `/${folder}`, { hash });
      reval.push(performance.now() - s);
      if (!r.unchanged) throw new Error('expected 304');
    }
    listRows.push({ what: `vBoxx metadata, ${n} entries`, ms: median(times) });
    listRows.push({ what: `vBoxx metadata hash revalidation (304), ${n} entries`, ms: median(reval) });
  }
  await c.close();

  // ---- Maxxo /ops/list, when its client is built ----
  if (existsSync(join(dist, 'src/remote/maxxo/client.js'))) {
    try {
      const { MaxxoClient } = await import(join(dist, 'src/remote/maxxo/client.js'));
      const { maxxoUserFolder } = await import(join(dist, 'src/emulator/maxxo/index.js'));
      const m = new MaxxoClient({ server: emu.url, user: 'demo@maxxo.test', password: 'demo-password' });
      const base = maxxoUserFolder(ctx, 'demo@maxxo.test');
      for (const n of [1000, 10000]) {
        const d = join(base, `list${n}`);
        mkdirSync(d, { recursive: true });
        for (let i = 0; i < n; i++) writeFileSync(join(d, `file-${String(i).padStart(5, '0')}.txt`), 'x'.repeat(i % 100));
        const times = [];
        for (let i = 0; i < 7; i++) {
          const s = performance.now();
          const rows = await m.list(`list${n}`);
          times.push(performance.now() - s);
          if (rows.length !== n) throw new Error(`maxxo list got ${rows.length}`);
        }
        listRows.push({ what: `Maxxo /ops/list, ${n} entries`, ms: median(times) });
      }
      await m.close();
    } catch (e) {
      listRows.push({ what: `Maxxo /ops/list: skipped (${String(e?.message ?? e).slice(0, 60)})`, ms: NaN });
    }
  }
} finally {
  db.close();
  await emu.stop();
  rmSync(work, { recursive: true, force: true });
}

if (asJson) {
  console.log(JSON.stringify({ transfer: rows, listing: listRows }, null, 2));
} else {
  console.log(`\nvBoxx client transfer (${sizeMiB} MiB, local reference server, median of ${runs}; latency = per-request server delay)`);
  console.log('| case | latency | time | MiB/s |');
  console.log('|---|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.what} | ${r.latencyMs} ms | ${(r.ms / 1000).toFixed(2)} s | ${r.mibs.toFixed(0)} |`);
  console.log('\nListing latency (median of 7)');
  console.log('| case | ms |');
  console.log('|---|---:|');
  for (const r of listRows) console.log(`| ${r.what} | ${Number.isNaN(r.ms) ? '-' : r.ms.toFixed(1)} |`);
}
