#!/usr/bin/env node
// Benchmark of the vBoxx reference server alone (is the server ever the bottleneck?):
//   1. a 512 MiB file is uploaded (files_put, streamed) into the demo root,
//   2. one GET /1/files of it on loopback: throughput and the server's peak RSS during the GET
//      (the server runs as a child; its VmHWM is reset right before the GET via clear_refs and
//      VmRSS is sampled as well),
//   3. a 10,000-entry /1/metadata listing: time of a full listing and of a 304 revalidation.
// Targets: >= 1 GB/s, RSS < 150 MiB, listing < 100 ms. Uses dist/ (run `npx tsc -p .` first).
// Usage: node scripts/bench-server.mjs [--size-mib 512] [--entries 10000] [--json]
import { spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const distServer = join(here, '..', 'dist', 'src', 'emulator', 'server.js');
const MiB = 1024 * 1024;

if (process.argv[2] === '--child') {
  // The server process: demo data, no rsync daemon, quiet; prints its URL and waits.
  const { createEmulator } = await import(pathToFileURL(distServer).href);
  const emu = await createEmulator({ dataDir: process.argv[3], demo: true, rsync: false, quiet: true });
  process.stdout.write(`${JSON.stringify({ url: emu.url })}\n`);
  const stop = async () => { await emu.close(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await new Promise(() => {});
}

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const sizeMiB = arg('--size-mib', 512);
const entries = arg('--entries', 10000);
const asJson = process.argv.includes('--json');
const log = (m) => { if (!asJson) console.error(m); };

const dataDir = mkdtempSync(join(tmpdir(), 'cloudmount-bench-server-'));
const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
let cleaned = false;
const cleanup = () => {
  if (cleaned) return;
  cleaned = true;
  try { child.kill('SIGTERM'); } catch { /* gone */ }
  rmSync(dataDir, { recursive: true, force: true });
};
process.on('exit', cleanup);
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => { cleanup(); process.exit(130); });

const url = await new Promise((resolve, reject) => {
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    const nl = buf.indexOf('\n');
    if (nl >= 0) resolve(JSON.parse(buf.slice(0, nl)).url);
  });
  child.on('exit', (c) => reject(new Error(`server exited with ${c}`)));
});
const base = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

function request(method, path, { headers = {}, body, sink = false } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: base.hostname, port: base.port, method, path, headers, agent }, (res) => {
      let bytes = 0;
      const chunks = [];
      res.on('data', (c) => { bytes += c.length; if (!sink) chunks.push(c); });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, bytes, text: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (typeof body === 'function') body(req); else req.end(body);
  });
}

// Server CPU time (user + system, ms) from /proc/PID/stat: a load-independent view of its cost.
const cpuMs = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) * 10; // fields 14 and 15, clock ticks of 10 ms
};

const procStatus = (pid) => {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? NaN);
  return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024 };
};

try {
  const auth = await request('POST', '/1/auth', {
    headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'username=demo&password=demo-password' });
  const token = JSON.parse(auth.text).session_token;
  const info = JSON.parse((await request('GET', `/1/account/info/?session_token=${token}`)).text);
  const root = info.root_id;
  const q = `session_token=${token}`;

  // 1. Upload the big file, streamed from a 1 MiB pattern buffer.
  const total = sizeMiB * MiB;
  const pattern = Buffer.alloc(MiB);
  for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 131 + 7) & 0xff;
  log(`uploading ${sizeMiB} MiB ...`);
  const t0 = process.hrtime.bigint();
  const up = await request('PUT', `/1/files_put/${root}/bench/big.bin?${q}`, {
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(total) },
    body: (req) => {
      let sent = 0;
      const pump = () => {
        while (sent < total) {
          sent += MiB;
          if (!req.write(pattern)) { req.once('drain', pump); return; }
        }
        req.end();
      };
      pump();
    },
  });
  if (up.status !== 200) throw new Error(`upload failed: ${up.status} ${up.text}`);
  const uploadSec = Number(process.hrtime.bigint() - t0) / 1e9;

  // 2. One GET of it; peak RSS of the server during the GET.
  const warm = await request('GET', `/1/files/${root}/bench/big.bin?${q}`, { headers: { range: 'bytes=0-1048575' }, sink: true });
  if (warm.status !== 206) throw new Error(`warm-up range: ${warm.status}`);
  try { writeFileSync(`/proc/${child.pid}/clear_refs`, '5'); } catch { log('(cannot reset VmHWM; peak includes startup)'); }
  const rssBefore = procStatus(child.pid).rss;
  let rssPeakSampled = rssBefore;
  const sampler = setInterval(() => { rssPeakSampled = Math.max(rssPeakSampled, procStatus(child.pid).rss); }, 10);
  const cpu1 = cpuMs(child.pid);
  const t1 = process.hrtime.bigint();
  const got = await request('GET', `/1/files/${root}/bench/big.bin?${q}`, { sink: true });
  const getSec = Number(process.hrtime.bigint() - t1) / 1e9;
  const getCpuMs = cpuMs(child.pid) - cpu1;
  clearInterval(sampler);
  const { hwm } = procStatus(child.pid);
  if (got.status !== 200 || got.bytes !== total) throw new Error(`GET: ${got.status}, ${got.bytes} bytes`);

  // 3. 10,000 entries in one folder, then the listing.
  log(`creating ${entries} entries ...`);
  let next = 0;
  const worker = async () => {
    while (next < entries) {
      const i = next++;
      const r = await request('PUT', `/1/files_put/${root}/bench/many/file-${String(i).padStart(5, '0')}.txt?${q}`, {
        headers: { 'content-type': 'application/octet-stream' }, body: `entry ${i}\n` });
      if (r.status !== 200) throw new Error(`put ${i}: ${r.status} ${r.text}`);
    }
  };
  const t2 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: 16 }, worker));
  const createSec = Number(process.hrtime.bigint() - t2) / 1e9;
  // Uncached: a write to a file of the folder invalidates the server's listing of it first.
  // Cached: the same listing again with nothing changed.
  const list = async () => {
    const t = process.hrtime.bigint();
    const r = await request('GET', `/1/metadata/${root}/bench/many?${q}`);
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    const j = JSON.parse(r.text);
    if (j.contents.length !== entries) throw new Error(`listing has ${j.contents.length} entries`);
    return { ms, hash: j.hash };
  };
  const cold = [];
  const warmTimes = [];
  let hash;
  let listCpu = 0;
  for (let i = 0; i < 5; i++) {
    await request('PUT', `/1/files_put/${root}/bench/many/file-00000.txt?${q}`, { headers: { 'content-type': 'application/octet-stream' }, body: `rewrite ${i}\n` });
    const c0 = cpuMs(child.pid);
    const c = await list();
    listCpu += cpuMs(child.pid) - c0;
    cold.push(c.ms);
    const w = await list();
    warmTimes.push(w.ms);
    hash = w.hash;
  }
  const t3 = process.hrtime.bigint();
  const nm = await request('GET', `/1/metadata/${root}/bench/many?${q}&hash=${hash}`);
  const revalidateMs = Number(process.hrtime.bigint() - t3) / 1e6;
  if (nm.status !== 304) throw new Error(`revalidation: ${nm.status}`);
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const result = {
    file_mib: sizeMiB,
    upload_mb_s: Math.round(total / 1e6 / uploadSec),
    get_mb_s: Math.round(total / 1e6 / getSec),
    get_mib_s: Math.round(total / MiB / getSec),
    load_average: (await import('node:os')).loadavg()[0].toFixed(1),
    server_cpu_ms_for_get: getCpuMs,
    server_capacity_mb_s: getCpuMs > 0 ? Math.round(total / 1e6 / (getCpuMs / 1000)) : null,
    server_rss_before_mib: +(rssBefore / MiB).toFixed(1),
    server_rss_peak_sampled_mib: +(rssPeakSampled / MiB).toFixed(1),
    server_vmhwm_during_get_mib: +(hwm / MiB).toFixed(1),
    entries,
    create_entries_per_s: Math.round(entries / createSec),
    listing_uncached_median_ms: +median(cold).toFixed(1),
    listing_cached_median_ms: +median(warmTimes).toFixed(1),
    listing_uncached_server_cpu_ms: Math.round(listCpu / 5),
    revalidate_304_ms: +revalidateMs.toFixed(1),
  };
  const pass = result.get_mb_s >= 1000 && result.server_vmhwm_during_get_mib < 150 && result.listing_uncached_median_ms < 100;
  if (asJson) console.log(JSON.stringify({ ...result, pass }));
  else {
    for (const [k, v] of Object.entries(result)) console.log(`${k.padEnd(30)} ${v}`);
    console.log(`targets (>= 1000 MB/s, RSS < 150 MiB, listing < 100 ms): ${pass ? 'met' : 'NOT met'}`);
  }
  process.exitCode = pass ? 0 : 1;
} finally {
  agent.destroy();
  cleanup();
}
