#!/usr/bin/env node
// Benchmark of the vBoxx reference server alone (is the server ever the bottleneck?):
//   1. a 512 MiB file is uploaded (files_put, streamed) into the demo root,
//   2. GETs of it on loopback (/1/files), 3 with each client: a lean raw-socket reader (the figure
//      the target applies to), curl when installed (an independent client), and Node's http module
//      (heavier per chunk: on a 2-core machine it can be the bottleneck, not the server). Median
//      throughput per client, the server's CPU time per GET (load-independent: its capacity), and
//      its peak RSS over all GETs (VmHWM reset right before them via clear_refs, VmRSS sampled),
//   3. a 10,000-entry /1/metadata listing: time of a full listing and of a 304 revalidation,
//   4. a 10,000-entry Maxxo /api/1/ops/list (files placed in the user's folder on disk, as the
//      rsync daemon would).
// Targets: >= 1 GB/s, RSS < 150 MiB, both listings < 100 ms. Uses dist/ (run `npx tsc -p .` first).
// Usage: node scripts/bench-server.mjs [--size-mib 512] [--entries 10000] [--json]
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, mkdirSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
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

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

// GET with a bare socket: one request, Connection: close, bytes counted into one reused 4 MiB
// buffer (onread), no HTTP parsing past the header. What a lean client costs, to show the server.
function rawGet(path) {
  return new Promise((resolve, reject) => {
    let head = '';
    let status = 0;
    let bytes = 0;
    const sock = net.connect({
      host: base.hostname, port: Number(base.port),
      onread: {
        buffer: Buffer.allocUnsafe(4 * MiB),
        callback(n, buf) {
          if (status) { bytes += n; return; }
          head += buf.toString('latin1', 0, n);
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) return;
          status = Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? -1);
          bytes = head.length - end - 4;
        },
      },
    });
    sock.on('connect', () => sock.write(`GET ${path} HTTP/1.1\r\nHost: ${base.host}\r\nConnection: close\r\n\r\n`));
    sock.on('error', reject);
    sock.on('close', () => resolve({ status, bytes }));
  });
}

// GET with curl, when installed. The URL (it carries the session token) goes in on stdin as
// curl config, never in argv.
async function curlGet() {
  const ok = await new Promise((r) => {
    const c = spawn('curl', ['--version'], { stdio: 'ignore' });
    c.on('error', () => r(false));
    c.on('exit', (code) => r(code === 0));
  });
  if (!ok) return null;
  return (path) => new Promise((resolve, reject) => {
    const c = spawn('curl', ['-s', '-K', '-', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{time_total}'], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => { out += d; });
    c.on('error', reject);
    c.on('exit', () => {
      // curl's own transfer time: its process start is not the server's doing.
      const [status, bytes, sec] = out.trim().split(' ').map(Number);
      resolve({ status, bytes, sec });
    });
    c.stdin.end(`url = "${new URL(path, base).href}"\n`);
  });
}

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

  // 2. GETs of it with three clients; peak RSS of the server during all of them.
  const path = `/1/files/${root}/bench/big.bin?${q}`;
  const warm = await request('GET', path, { headers: { range: 'bytes=0-1048575' }, sink: true });
  if (warm.status !== 206) throw new Error(`warm-up range: ${warm.status}`);
  const clients = { raw: rawGet, curl: await curlGet(), node_http: (p) => request('GET', p, { sink: true }) };
  try { writeFileSync(`/proc/${child.pid}/clear_refs`, '5'); } catch { log('(cannot reset VmHWM; peak includes startup)'); }
  const rssBefore = procStatus(child.pid).rss;
  let rssPeakSampled = rssBefore;
  const sampler = setInterval(() => { rssPeakSampled = Math.max(rssPeakSampled, procStatus(child.pid).rss); }, 10);
  const gets = {};
  for (const [name, get] of Object.entries(clients)) {
    if (!get) continue;
    const runs = [];
    for (let i = 0; i < 3; i++) {
      const cpu0 = cpuMs(child.pid);
      const t = process.hrtime.bigint();
      const got = await get(path);
      const sec = got.sec ?? Number(process.hrtime.bigint() - t) / 1e9;
      const cpu = cpuMs(child.pid) - cpu0;
      if (got.status !== 200 || got.bytes !== total) throw new Error(`GET (${name}): ${got.status}, ${got.bytes} bytes`);
      runs.push({ mbs: total / 1e6 / sec, cpu });
    }
    gets[name] = { mb_s: Math.round(median(runs.map((r) => r.mbs))), cpu_ms: median(runs.map((r) => r.cpu)) };
    log(`GET ${name}: ${runs.map((r) => `${Math.round(r.mbs)} MB/s (${r.cpu} ms CPU)`).join(', ')}`);
  }
  clearInterval(sampler);
  const { hwm } = procStatus(child.pid);

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

  // 4. Maxxo: 10,000 files in one folder of demo's account, placed on disk as rsync would.
  const mx = JSON.parse((await request('GET', '/api/1/auth/token?email=demo%40maxxo.test&password=demo-password')).text).token;
  const mdir = join(dataDir, 'files', 'maxxo', 'demo', 'bench-many');
  mkdirSync(mdir, { recursive: true });
  for (let i = 0; i < entries; i++) writeFileSync(join(mdir, `file-${String(i).padStart(5, '0')}.txt`), `entry ${i}\n`);
  const mtimes = [];
  let mlistCpu = 0;
  for (let i = 0; i < 5; i++) {
    const c0 = cpuMs(child.pid);
    const t = process.hrtime.bigint();
    const r = await request('GET', '/api/1/ops/list?path=bench-many', { headers: { token: mx } });
    mtimes.push(Number(process.hrtime.bigint() - t) / 1e6);
    mlistCpu += cpuMs(child.pid) - c0;
    const rows = JSON.parse(r.text);
    if (r.status !== 200 || rows.length !== entries) throw new Error(`ops/list: ${r.status}, ${rows.length} rows`);
  }

  const result = {
    file_mib: sizeMiB,
    upload_mb_s: Math.round(total / 1e6 / uploadSec),
    get_mb_s: gets.raw.mb_s,
    get_mb_s_curl: gets.curl?.mb_s ?? 'no curl',
    get_mb_s_node_http: gets.node_http.mb_s,
    load_average: (await import('node:os')).loadavg().map((x) => x.toFixed(1)).join(' '),
    server_cpu_ms_for_get: gets.raw.cpu_ms,
    server_cpu_ms_for_get_curl: gets.curl?.cpu_ms ?? 'no curl',
    server_cpu_ms_for_get_node_http: gets.node_http.cpu_ms,
    server_capacity_mb_s: gets.raw.cpu_ms > 0 ? Math.round(total / 1e6 / (gets.raw.cpu_ms / 1000)) : null,
    server_rss_before_mib: +(rssBefore / MiB).toFixed(1),
    server_rss_peak_sampled_mib: +(rssPeakSampled / MiB).toFixed(1),
    server_vmhwm_during_gets_mib: +(hwm / MiB).toFixed(1),
    entries,
    create_entries_per_s: Math.round(entries / createSec),
    listing_uncached_median_ms: +median(cold).toFixed(1),
    listing_cached_median_ms: +median(warmTimes).toFixed(1),
    listing_uncached_server_cpu_ms: Math.round(listCpu / 5),
    revalidate_304_ms: +revalidateMs.toFixed(1),
    maxxo_ops_list_median_ms: +median(mtimes).toFixed(1),
    maxxo_ops_list_server_cpu_ms: Math.round(mlistCpu / 5),
  };
  const pass = result.get_mb_s >= 1000 && result.server_vmhwm_during_gets_mib < 150
    && result.listing_uncached_median_ms < 100 && result.maxxo_ops_list_median_ms < 100;
  if (asJson) console.log(JSON.stringify({ ...result, pass }));
  else {
    for (const [k, v] of Object.entries(result)) console.log(`${k.padEnd(30)} ${v}`);
    console.log(`targets (raw-socket GET >= 1000 MB/s, RSS < 150 MiB, both listings < 100 ms): ${pass ? 'met' : 'NOT met'}`);
  }
  process.exitCode = pass ? 0 : 1;
} finally {
  agent.destroy();
  cleanup();
}
