// scripts/bench: our mount (Maxxo and vBoxx) against `rclone mount` (vfs-cache-mode writes and
// full) on the same tree, behind the same delay proxy, in the same run. Every server and mount
// runs in its own process; every workload runs in a child process (tools/bench/workload.ts); the
// harness itself never touches a mount synchronously. Whatever happens (failure, Ctrl-C), every
// mount is unmounted and every process it started is stopped.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, cpSync, linkSync } from 'node:fs';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { join, resolve, dirname, basename } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { fullSizes, quickSizes, generateTree, T, MiB, type Sizes, type TreeManifest, fullScale, quickScale, generateScaleTree, S, type ScaleSizes } from './tree.js';
import type { Job, JobResult } from './workload.js';
import { formatTable, rowDefs, type ColumnId, type Results, COLUMNS, BASE_OF, type OurColumn } from './report.js';
import { baselineColumns, cliOf, inspectBaseline, phaseOrder } from './baseline.js';
import { findMount, isMounted, lazyUnmountSync, mountTable } from '../../src/util/mounts.js';
import { sleep } from '../../src/util/sleep.js';
import type { OpLatency } from '../../src/fuse/lowlevel.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..', '..');
const WORKLOAD = join(here, 'workload.js');
const PROXY = join(here, 'delay-proxy.js');
const SERVE = join(here, 'serve.js');

const MAXXO_EMAIL = 'demo@maxxo.test';
const MAXXO_PASSWORD = 'demo-password';
const VBOXX_USER = 'demo';
const VBOXX_PASSWORD = 'demo-password';

// ---------------------------------------------------------------------------------------------
// Arguments

interface Args {
  quick: boolean;
  rttMs: number;
  only: Set<string> | null;
  columns: ColumnId[];
  keep: boolean;
  dropCaches: boolean;
  out: string | null;
  workDir: string | null;
  verbose: boolean;
  ourOpts: string[];
  /** --new-o: -o options for this checkout's mounts only (not --baseline's, which may not know them). */
  newOpts: string[];
  readme: boolean;
  scaling: boolean;
  tableFrom: string | null;
  profile: string | null;
  /** --baseline: another checkout whose CLI the maxxo-base / vboxx-base columns mount. */
  baseline: string | null;
  /** --base-first: the baseline side of each pair runs first in the first phase (ours does by default). */
  baseFirst: boolean;
}

const USAGE = `Usage: scripts/bench [options]
  --quick            small sizes for a smoke run (64 MiB big file, 20 x 1 MiB, 4 x 100 small files)
  --rtt-ms N         round-trip time the delay proxy adds (default 20: 10 ms each way)
  --only ROWS        comma-separated row ids to run (their phase runs whole); ids: ${rowDefs(fullSizes, fullScale).map((r) => r.id).join(', ')}
  --columns COLS     comma-separated subset of: ${COLUMNS.join(', ')}
                     (default: all; the -base ones only with --baseline)
  --baseline DIR     compare with another checkout of cloudmount (its dist/ built; its own
                     build/Release/cmfuse3.node and node_modules, a symlink will do): columns
                     maxxo-base and vboxx-base mount with DIR's CLI, each against its own copy of
                     this checkout's reference server with the same tree, RTT and phases, run
                     next to maxxo / vboxx (which of the two goes first alternates by phase). The
                     table gets "Maxxo new/old" and "vBoxx new/old" (ratio of seconds) and marks ✗
                     where new is more than 10 % slower (the noise margin); the JSON records DIR
                     and its commit. Full comparison:
                       scripts/bench --baseline DIR --columns maxxo,maxxo-base,vboxx,vboxx-base
  --base-first       with --baseline: the baseline goes first in the first phase that runs and
                     every other one after it, where this checkout does by default. On this kind of
                     machine the order alone can move a row by 5-15 % either way (the first of a pair
                     slower on some rows, faster on the cold read): run both ways before calling a
                     flagged row a regression (the table says who went first)
  --keep             keep the work folder (trees, caches, logs) and print where it is
  --no-drop-caches   do not drop the kernel page cache before cold runs
  --out FILE         JSON results file (default .bench/results-<date>.json)
  --work-dir DIR     parent of the work folder (default the system temp dir)
  -o OPTS            extra -o options for our mounts (may repeat)
  --new-o OPTS       extra -o options for this checkout's mounts only, not --baseline's (may
                     repeat; e.g. --new-o no_modtime to compare with a build that read no mtimes)
  --scaling          also the scaling rows: ls -l and find over 1,000 / 10,000 / 100,000 entries,
                     sequential read of 4 GiB (quick: 100 / 1,000 / 10,000 and 256 MiB)
  --profile DIR      run our mounts under node --cpu-prof (profiles in DIR, per phase); the JSON gets
                     each profile's top functions by self time (the profiler itself costs some speed)
  --table-from F[,F] print the tables of earlier JSON results files (with --readme: into the README); runs nothing
  --readme           put the table into README.md between <!-- bench-table --> and <!-- /bench-table -->
  -v                 log every step
`;

function parseArgs(argv: string[]): Args {
  const a: Args = {
    quick: false, rttMs: 20, only: null, columns: [...COLUMNS], keep: false, dropCaches: true, out: null,
    workDir: null, verbose: false, ourOpts: [], newOpts: [], readme: false, scaling: false, tableFrom: null, profile: null, baseline: null, baseFirst: false,
  };
  let columnsGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${k} needs a value`);
      return v;
    };
    switch (k) {
      case '--quick': a.quick = true; break;
      case '--rtt-ms': {
        const v = Number(val());
        if (!Number.isFinite(v) || v < 0 || v > 10_000) throw new Error('--rtt-ms wants a number of ms between 0 and 10000');
        a.rttMs = v;
        break;
      }
      case '--only': a.only = new Set(val().split(',').map((s) => s.trim()).filter(Boolean)); break;
      case '--columns': {
        const cols = val().split(',').map((s) => s.trim()).filter(Boolean);
        for (const c of cols) if (!COLUMNS.includes(c as ColumnId)) throw new Error(`unknown column ${c} (known: ${COLUMNS.join(', ')})`);
        a.columns = COLUMNS.filter((c) => cols.includes(c));
        columnsGiven = true;
        break;
      }
      case '--keep': a.keep = true; break;
      case '--no-drop-caches': a.dropCaches = false; break;
      case '--out': a.out = val(); break;
      case '--work-dir': a.workDir = val(); break;
      case '-o': a.ourOpts.push(val()); break;
      case '--new-o': a.newOpts.push(val()); break;
      case '--readme': a.readme = true; break;
      case '--scaling': a.scaling = true; break;
      case '--table-from': a.tableFrom = val(); break;
      case '--profile': a.profile = resolve(val()); break;
      case '--baseline': a.baseline = resolve(val()); break;
      case '--base-first': a.baseFirst = true; break;
      case '-v': case '--verbose': a.verbose = true; break;
      case '-h': case '--help': process.stdout.write(USAGE); process.exit(0);
      default: throw new Error(`unknown option ${k}\n${USAGE}`);
    }
  }
  if (!a.tableFrom) a.columns = baselineColumns(a.columns, columnsGiven, a.baseline);
  if (a.baseFirst && !a.baseline) throw new Error('--base-first needs --baseline DIR');
  if (a.only) {
    const known = new Set(rowDefs(fullSizes, fullScale).map((r) => r.id));
    if ([...a.only].some((r) => r.startsWith('scale_'))) a.scaling = true;
    for (const r of a.only) if (!known.has(r)) throw new Error(`unknown row ${r} (known: ${[...known].join(', ')})`);
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// Process and mount bookkeeping: everything started is registered here and torn down in cleanup().

const started = new Set<ChildProcess>();
const mounted = new Set<string>();
let verbose = false;
let profileDir: string | null = null;
const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);
const vlog = (m: string) => { if (verbose) log(m); };

/** Cuts a hung FUSE connection loose (needs root), so processes blocked in it return. */
function abortFuse(mnt: string): void {
  const dev = findMount(mnt)?.dev;
  if (!dev) return;
  const minor = dev.split(':')[1];
  try {
    if (!existsSync('/sys/fs/fuse/connections') || readdirSync('/sys/fs/fuse/connections').length === 0) {
      spawnSync('mount', ['-t', 'fusectl', 'none', '/sys/fs/fuse/connections'], { stdio: 'ignore', timeout: 5000 });
    }
    writeFileSync(`/sys/fs/fuse/connections/${minor}/abort`, '1');
  } catch { /* not root or no fusectl */ }
}

function forceUnmount(mnt: string): void {
  if (isMounted(mnt)) lazyUnmountSync(mnt);
}

function killGroup(p: ChildProcess, sig: NodeJS.Signals): void {
  if (p.pid === undefined || p.exitCode !== null || p.signalCode !== null) return;
  try { process.kill(-p.pid, sig); } catch { try { p.kill(sig); } catch { /* gone */ } }
}

const exited = (p: ChildProcess) => p.exitCode !== null || p.signalCode !== null;

function waitExit(p: ChildProcess, ms: number): Promise<boolean> {
  if (exited(p)) return Promise.resolve(true);
  return new Promise((res) => {
    const t = setTimeout(() => res(false), ms);
    p.once('exit', () => { clearTimeout(t); res(true); });
  });
}

let cleaning: Promise<void> | null = null;
function cleanup(): Promise<void> {
  if (cleaning) return cleaning;
  cleaning = (async () => {
    for (const m of mounted) forceUnmount(m);
    for (const p of started) killGroup(p, 'SIGTERM');
    await Promise.all([...started].map((p) => waitExit(p, 5000)));
    for (const p of started) killGroup(p, 'SIGKILL');
    for (const m of mounted) { abortFuse(m); forceUnmount(m); }
  })();
  return cleaning;
}

/** Starts a long-lived helper in its own process group (so Ctrl-C reaches only us, and we stop it in order). */
function startProc(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; logFile?: string; stdinPipe?: boolean } = {}): ChildProcess {
  // Once teardown began, nothing new may start (the run loop may still be unwinding).
  if (cleaning) throw new Error('stopping');
  const p = spawn(cmd, args, {
    detached: true,
    stdio: [opts.stdinPipe === false ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    env: opts.env ?? process.env,
    cwd: opts.cwd,
  });
  started.add(p);
  p.once('exit', () => started.delete(p));
  let errTail = '';
  p.stderr!.on('data', (b: Buffer) => {
    errTail = (errTail + b.toString()).slice(-8000);
    if (verbose) process.stderr.write(`[${cmd.split('/').pop()}] ${b}`);
  });
  (p as any).errTail = () => errTail;
  if (opts.logFile) {
    const f = opts.logFile;
    p.stderr!.on('data', (b: Buffer) => { try { writeFileSync(f, b, { flag: 'a' }); } catch { /* best effort */ } });
  }
  return p;
}
const errTail = (p: ChildProcess): string => ((p as any).errTail?.() ?? '').trim().split('\n').slice(-8).join('\n');

/** First stdout line that parses as JSON. */
function firstJsonLine<T>(p: ChildProcess, what: string, ms = 30_000): Promise<T> {
  return new Promise((res, rej) => {
    const rl = createInterface({ input: p.stdout! });
    const t = setTimeout(() => { rl.close(); rej(new Error(`${what}: no answer within ${ms / 1000} s\n${errTail(p)}`)); }, ms);
    rl.on('line', (line) => {
      try {
        const v = JSON.parse(line) as T;
        clearTimeout(t);
        rl.close();
        res(v);
      } catch { /* not ours */ }
    });
    p.once('exit', (code) => { clearTimeout(t); rej(new Error(`${what} exited (${code}) before it was ready\n${errTail(p)}`)); });
  });
}

/** JSON lines from a child's stdout, handed out in order. */
class JsonLines {
  private lines: unknown[] = [];
  private waiters: Array<(v: unknown) => void> = [];
  constructor(p: ChildProcess) {
    createInterface({ input: p.stdout! }).on('line', (line) => {
      let v: unknown;
      try { v = JSON.parse(line); } catch { return; }
      const w = this.waiters.shift();
      if (w) w(v); else this.lines.push(v);
    });
  }
  next<T>(ms: number, what: string): Promise<T> {
    if (this.lines.length) return Promise.resolve(this.lines.shift() as T);
    return new Promise((res, rej) => {
      const t = setTimeout(() => { this.waiters = this.waiters.filter((w) => w !== done); rej(new Error(`${what}: no answer`)); }, ms);
      const done = (v: unknown) => { clearTimeout(t); res(v as T); };
      this.waiters.push(done);
    });
  }
}

interface ProxyStats { connections: number; bytesUp: number; bytesDown: number }
interface Proxy { port: number; proc: ChildProcess; stats(): Promise<ProxyStats> }

async function startProxy(targetHost: string, targetPort: number, delayMs: number): Promise<Proxy> {
  const proc = startProc(process.execPath, [PROXY, '--target', `${targetHost}:${targetPort}`, '--delay-ms', String(delayMs)]);
  const out = new JsonLines(proc);
  const { port } = await Promise.race([
    out.next<{ port: number }>(30_000, 'delay proxy'),
    new Promise<never>((_, rej) => proc.once('exit', (c) => rej(new Error(`delay proxy exited (${c})\n${errTail(proc)}`)))),
  ]);
  return {
    port, proc,
    stats: () => { proc.stdin!.write('stats\n'); return out.next<ProxyStats>(10_000, 'delay proxy stats'); },
  };
}

/** What went over the wire during one row: per proxy, and per server route when we run the server. */
interface Counters {
  proxies: Record<string, ProxyStats>;
  routes?: Record<string, number>;
}

function diffCounters(a: Counters, b: Counters): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(b.proxies)) {
    const o = a.proxies[k];
    if (!o) continue;
    out[k] = { connections: v.connections - o.connections, bytesUp: v.bytesUp - o.bytesUp, bytesDown: v.bytesDown - o.bytesDown };
  }
  if (a.routes && b.routes) {
    const r: Record<string, number> = {};
    for (const [k, v] of Object.entries(b.routes)) {
      const d = v - (a.routes[k] ?? 0);
      if (d > 0) r[k] = d;
    }
    out.requests = r;
    out.requestTotal = Object.values(r).reduce((x, y) => x + y, 0);
  }
  return out;
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => res(port));
    });
  });
}

async function waitPort(port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => { s.destroy(); res(true); });
      s.once('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on port ${port} after ${ms / 1000} s`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------
// Workloads in child processes

async function runWorkload(job: Job, opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; mnt?: string } = {}): Promise<JobResult> {
  const timeoutMs = opts.timeoutMs ?? 15 * 60_000;
  if (cleaning) throw new Error('stopping');
  vlog(`workload ${JSON.stringify(job)}`);
  const p = spawn(process.execPath, [WORKLOAD, JSON.stringify(job)], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(opts.env ?? {}) },
  });
  started.add(p);
  let out = '';
  let err = '';
  p.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
  p.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
  const done = await waitExit(p, timeoutMs);
  if (!done) {
    p.kill('SIGKILL');
    // A workload stuck in a FUSE request only returns once the connection is aborted.
    if (opts.mnt) abortFuse(opts.mnt);
    await waitExit(p, 10_000);
    started.delete(p);
    throw new Error(`${job.op} did not finish within ${timeoutMs / 1000} s`);
  }
  started.delete(p);
  if (p.exitCode !== 0) throw new Error(`${job.op} failed: ${err.trim().split('\n').slice(-3).join(' | ') || `exit ${p.exitCode}`}`);
  const line = out.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as JobResult;
}

function dropCaches(args: Args): void {
  if (!args.dropCaches || process.getuid?.() !== 0) return;
  // No mount of ours is up here, so sync cannot block on one.
  spawnSync('sync', [], { stdio: 'ignore', timeout: 60_000 });
  try { writeFileSync('/proc/sys/vm/drop_caches', '3'); } catch { /* not allowed in this container */ }
}

// ---------------------------------------------------------------------------------------------
// Memory of a mount: VmHWM of its main process, and the sampled peak of its whole process tree.

function procStatus(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  try {
    for (const l of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
      const i = l.indexOf(':');
      if (i > 0) out[l.slice(0, i)] = l.slice(i + 1).trim();
    }
  } catch { /* gone */ }
  return out;
}
const kib = (v: string | undefined) => (v ? Number(v.split(/\s+/)[0]) : 0);

function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(d), ppid);
    } catch { /* gone */ }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) for (const [c, pp] of parent) if (pp === out[i]) out.push(c);
  return out;
}

/**
 * The tree's RSS, sampled once a second during the cold read. Sampling every 100 ms (a walk of
 * /proc and the mount's status each time) slowed the vBoxx cold read it measured: alternating
 * runs, 1.30 / 1.53 / 1.63 / 2.32 / 1.66 s against 1.32 / 1.29 / 1.22 / 1.53 / 1.37 s without it
 * (2026-12-06). The mount process's own peak (VmHWM) is the kernel's exact figure either way.
 */
class RssSampler {
  peakTreeKiB = 0;
  private timer: NodeJS.Timeout;
  constructor(private pid: number) {
    this.timer = setInterval(() => this.sample(), 1000);
    this.sample();
  }
  private sample() {
    let sum = 0;
    for (const p of descendants(this.pid)) sum += kib(procStatus(p).VmRSS);
    if (sum > this.peakTreeKiB) this.peakTreeKiB = sum;
  }
  stop(): { hwmMiB: number; treePeakMiB: number } {
    clearInterval(this.timer);
    this.sample();
    return { hwmMiB: kib(procStatus(this.pid).VmHWM) / 1024, treePeakMiB: this.peakTreeKiB / 1024 };
  }
}

// ---------------------------------------------------------------------------------------------
// Columns: how each side mounts, and how the harness sees the server's copy of the tree.

interface Mount {
  mnt: string;
  /** The folder that holds `bench/` inside the mount. */
  top: string;
  proc: ChildProcess;
  pid: number;
  mountSeconds: number;
  unmount(): Promise<number>;
  /** Our mounts (libfuse3): FUSE requests since the mount by op, from the mount's status record. */
  fuseOps?(): Promise<FuseOps | null>;
}

interface FuseOps { received: Record<string, number>; toJs: Record<string, number>; nativeAnswered: number; latency?: OpLatency }

/** libfuse3: mean microseconds per request of the row, from a reader decoding it to JS getting it
 *  (handoff) and to JS answering it (total). */
function diffLatency(a: OpLatency | undefined, b: OpLatency | undefined): OpLatency | undefined {
  if (!b) return undefined;
  const r: OpLatency = {};
  for (const [k, v] of Object.entries(b)) {
    const p = a?.[k] ?? { n: 0, handoffUs: 0, totalUs: 0 };
    const n = v.n - p.n;
    if (n > 0) r[k] = { n, handoffUs: Math.round((v.handoffUs - p.handoffUs) / n), totalUs: Math.round((v.totalUs - p.totalUs) / n) };
  }
  return r;
}

function diffOps(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const r: Record<string, number> = {};
  for (const [k, v] of Object.entries(b)) if (v - (a[k] ?? 0) > 0) r[k] = v - (a[k] ?? 0);
  return r;
}

interface ServerView {
  /** Size of a file on the server, null when it is not there. */
  size(rel: string): Promise<number | null>;
  /** Number of (non-hidden) entries of a folder, null when it is not there. */
  count(rel: string): Promise<number | null>;
  sha256(rel: string): Promise<string | null>;
}

interface Column {
  id: ColumnId;
  mount(mnt: string, cacheDir: string): Promise<Mount>;
  server: ServerView;
  /** One raw transfer of the big file through the proxy. */
  wire(scratch: string, bytes: number): Promise<JobResult>;
  counters(): Promise<Counters>;
}

function localView(base: string): ServerView {
  return {
    async size(rel) { try { return statSync(join(base, rel)).size; } catch { return null; } },
    async count(rel) { try { return readdirSync(join(base, rel)).filter((n) => !n.startsWith('.')).length; } catch { return null; } },
    async sha256(rel) {
      try {
        const h = createHash('sha256');
        for await (const c of createReadStream(join(base, rel))) h.update(c as Buffer);
        return h.digest('hex');
      } catch { return null; }
    },
  };
}

async function waitMounted(mnt: string, proc: ChildProcess, what: string, ms = 90_000): Promise<void> {
  const end = Date.now() + ms;
  while (!isMounted(mnt)) {
    if (exited(proc)) throw new Error(`${what} exited (${proc.exitCode ?? proc.signalCode}) before mounting\n${errTail(proc)}`);
    if (Date.now() > end) throw new Error(`${what} did not mount within ${ms / 1000} s\n${errTail(proc)}`);
    await sleep(20);
  }
}

async function stopMount(mnt: string, proc: ChildProcess, graceMs: number): Promise<number> {
  const t0 = performance.now();
  // SIGTERM asks both our mount and rclone for a clean unmount (ours flushes pending uploads first).
  killGroup(proc, 'SIGTERM');
  const ok = await waitExit(proc, graceMs);
  const secs = (performance.now() - t0) / 1000;
  if (!ok) log(`${mnt}: no clean exit within ${graceMs / 1000} s; forcing`);
  forceUnmount(mnt);
  if (!ok) { killGroup(proc, 'SIGKILL'); await waitExit(proc, 5000); abortFuse(mnt); forceUnmount(mnt); }
  mounted.delete(mnt);
  return secs;
}

function isolatedEnv(home: string): NodeJS.ProcessEnv {
  // A private HOME and XDG dirs: no user config, cache or saved account is read or touched.
  for (const d of ['config', 'cache', 'run']) mkdirSync(join(home, d), { recursive: true, mode: 0o700 });
  return {
    PATH: process.env.PATH, LANG: 'C', HOME: home,
    XDG_CONFIG_HOME: join(home, 'config'), XDG_CACHE_HOME: join(home, 'cache'), XDG_RUNTIME_DIR: join(home, 'run'),
  };
}

/** A mount with the CLI of `checkout` (this one, or --baseline's), run from there. */
function ourMount(kind: OurColumn, checkout: string, serverUrl: string, home: string, extraOpts: string[], root?: string) {
  const cli = cliOf(checkout);
  return async (mnt: string, cacheDir: string): Promise<Mount> => {
    if (!existsSync(cli)) throw new Error(`the CLI is not built (${cli} missing)`);
    const env = { ...isolatedEnv(home), CLOUDMOUNT_PASSWORD: kind === 'maxxo' ? MAXXO_PASSWORD : VBOXX_PASSWORD };
    const o = [`cache_dir=${cacheDir}`, ...(root ? [`root=${root}`] : []), ...extraOpts].join(',');
    // One CPU profile per mount, written when the mount process exits.
    const prof = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${join(profileDir, basename(mnt))}`] : [];
    const args = [...prof, cli, 'mount', kind, mnt, '--server', serverUrl,
      ...(kind === 'maxxo' ? ['--email', MAXXO_EMAIL] : ['--username', VBOXX_USER]), '-o', o];
    const t0 = performance.now();
    // isolatedEnv passes no CMFUSE3_ADDON or NODE_PATH: the CLI loads the addon and modules of its checkout
    const proc = startProc(process.execPath, args, { env, cwd: checkout, logFile: join(home, `mount-${kind}.log`) });
    mounted.add(mnt);
    await waitMounted(mnt, proc, `cloudmount mount ${kind}`);
    return {
      mnt, top: mnt, proc, pid: proc.pid!, mountSeconds: (performance.now() - t0) / 1000,
      unmount: () => stopMount(mnt, proc, 300_000),
      // the mount process rewrites its record (status included) every second when it changed
      fuseOps: async () => {
        await sleep(1200);
        try {
          const rec = JSON.parse(readFileSync(join(home, 'run', 'cloudmount', `${proc.pid}.json`), 'utf8'));
          return (rec.status?.fuse as FuseOps | undefined) ?? null;
        } catch { return null; }
      },
    };
  };
}

function rcloneMount(mode: 'writes' | 'full', webdavUrl: string, home: string) {
  return async (mnt: string, cacheDir: string): Promise<Mount> => {
    const env = isolatedEnv(home);
    const conf = join(home, 'rclone.conf');
    writeFileSync(conf, '', { mode: 0o600 });
    const args = ['mount', `:webdav:${mode}`, mnt, '--config', conf, '--webdav-url', webdavUrl,
      '--vfs-cache-mode', mode, '--cache-dir', cacheDir, '--log-level', 'NOTICE'];
    const t0 = performance.now();
    const proc = startProc('rclone', args, { env: { ...env, RCLONE_CONFIG: conf }, logFile: join(home, `rclone-mount-${mode}.log`) });
    mounted.add(mnt);
    await waitMounted(mnt, proc, `rclone mount (${mode})`);
    return {
      mnt, top: mnt, proc, pid: proc.pid!, mountSeconds: (performance.now() - t0) / 1000,
      unmount: () => stopMount(mnt, proc, 300_000),
    };
  };
}

// ---------------------------------------------------------------------------------------------
// vBoxx over its API (direct to the server, not through the proxy): the tree goes in with
// files_put, and the harness checks what the server holds.

class VboxxApi {
  token = '';
  rootId = 0;
  constructor(public url: string) {}

  async login(): Promise<void> {
    const r = await fetch(`${this.url}/1/auth`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ username: VBOXX_USER, password: VBOXX_PASSWORD }).toString(),
    });
    const j = (await r.json()) as { session_token?: string; message?: string };
    if (!j.session_token) throw new Error(`vBoxx auth failed: ${j.message ?? r.status}`);
    this.token = j.session_token;
    const info = (await (await fetch(this.q('/1/account/info/'))).json()) as { root_id?: number };
    if (!info.root_id) throw new Error('vBoxx account/info has no root_id');
    this.rootId = info.root_id;
  }
  enc(rel: string): string { return rel.split('/').map(encodeURIComponent).join('/'); }
  q(path: string, extra: Record<string, string> = {}): string {
    return `${this.url}${path}?${new URLSearchParams({ session_token: this.token, ...extra })}`;
  }
  fileUrl(rel: string): string { return this.q(`/1/files/${this.rootId}/${this.enc(rel)}`); }

  put(rel: string, file: string): Promise<void> {
    const size = statSync(file).size;
    const u = new URL(this.q(`/1/files_put/${this.rootId}/${this.enc(rel)}`, { overwrite: 'true' }));
    return new Promise((res, rej) => {
      const req = http.request(u, { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': size } }, (r) => {
        let body = '';
        r.on('data', (c) => { body += c; });
        r.on('end', () => (r.statusCode === 200 ? res() : rej(new Error(`files_put ${rel}: ${r.statusCode} ${body.slice(0, 200)}`))));
      });
      req.on('error', rej);
      createReadStream(file).pipe(req);
    });
  }

  async meta(rel: string): Promise<{ bytes: number; is_dir: boolean; contents?: Array<{ path: string }> } | null> {
    const r = await fetch(this.q(`/1/metadata/${this.rootId}/${this.enc(rel)}`));
    if (r.status === 404) return null;
    if (r.status !== 200) throw new Error(`metadata ${rel}: ${r.status}`);
    return (await r.json()) as any;
  }

  view(): ServerView {
    return {
      size: async (rel) => { const m = await this.meta(rel); return m && !m.is_dir ? m.bytes : null; },
      count: async (rel) => { const m = await this.meta(rel); return m?.is_dir ? (m.contents ?? []).length : null; },
      sha256: async (rel) => {
        const r = await fetch(this.fileUrl(rel));
        if (r.status !== 200 || !r.body) return null;
        const h = createHash('sha256');
        for await (const c of r.body as unknown as AsyncIterable<Uint8Array>) h.update(c);
        return h.digest('hex');
      },
    };
  }

  /** Raises the organization's max_file_size (as the demo system admin) so a big scaling file fits. */
  async allowFileSize(bytes: number): Promise<void> {
    const r = await fetch(`${this.url}/1/auth`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ username: 'admin', password: 'admin-password' }).toString(),
    });
    const admin = ((await r.json()) as { session_token?: string }).session_token;
    if (!admin) throw new Error('vBoxx admin auth failed');
    const me = (await (await fetch(this.q('/1/management/person/'))).json()) as { company_id?: number };
    if (!me.company_id) throw new Error('vBoxx: no company_id for the demo user');
    const mb = Math.ceil(bytes / MiB) + 1;
    const u = await fetch(`${this.url}/1/management/policy/update/`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ session_token: admin, id: String(me.company_id), max_file_size: String(mb) }).toString(),
    });
    if (u.status !== 200) throw new Error(`vBoxx policy update: ${u.status} ${await u.text()}`);
  }

  /** Uploads every file under base/top, a few at a time. */
  async uploadTree(base: string, top: string, parallel = 8): Promise<void> {
    const files: string[] = [];
    const walk = (rel: string) => {
      for (const e of readdirSync(join(base, rel), { withFileTypes: true })) {
        const r = `${rel}/${e.name}`;
        if (e.isDirectory()) walk(r); else files.push(r);
      }
    };
    walk(top);
    // Big files first so they are not the tail.
    files.sort((a, b) => statSync(join(base, b)).size - statSync(join(base, a)).size);
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const f = files[next++]!;
        await this.put(f, join(base, f));
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
  }
}

async function maxxoSlice(url: string): Promise<{ login: string; rsync: string; ip: string; rsync_port?: number }> {
  const t = (await (await fetch(`${url}/api/1/auth/token?${new URLSearchParams({ email: MAXXO_EMAIL, password: MAXXO_PASSWORD })}`)).json()) as { token?: string };
  if (!t.token) throw new Error('Maxxo auth failed');
  const s = await (await fetch(`${url}/api/1/slice`, { headers: { token: t.token } })).json();
  return s as any;
}

// ---------------------------------------------------------------------------------------------
// Phases: each runs on a fresh mount with a fresh cache; rows of a phase share that mount.

type Phase = 'find' | 'small' | 'big' | 'write' | 'ns' | 'scale';
const PHASES: Phase[] = ['find', 'small', 'big', 'write', 'ns', 'scale'];

interface Ctx {
  args: Args;
  sizes: Sizes;
  scale?: { sizes: ScaleSizes; big: string };
  manifest: TreeManifest;
  work: string;
  results: Results;
}

function record(ctx: Ctx, col: ColumnId, row: string, value: number | null, extra: Record<string, unknown> = {}): void {
  const r = (ctx.results.rows[row] ??= {});
  r[col] = { ...r[col], seconds: value, ...extra };
  const shown = value === null ? 'failed' : `${value.toFixed(3)} s`;
  log(`${col.padEnd(13)} ${row.padEnd(14)} ${shown}${extra.error ? `  (${String(extra.error).split('\n')[0]})` : ''}`);
}

function fail(ctx: Ctx, col: ColumnId, rows: string[], e: unknown): void {
  const msg = (e as Error)?.message ?? String(e);
  for (const r of rows) if (!ctx.results.rows[r]?.[col]) record(ctx, col, r, null, { error: msg });
}

async function pollUntil(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (performance.now() > end) return false;
    await sleep(20);
  }
}

/** Runs fn on a fresh mount with a fresh cache; rows fail together if the mount does. */
async function withMount(ctx: Ctx, col: Column, tag: string, rows: string[], fn: (m: Mount) => Promise<void>): Promise<void> {
  const mnt = join(ctx.work, 'mnt', `${col.id}-${tag}`);
  const cache = join(ctx.work, 'cache', `${col.id}-${tag}`);
  mkdirSync(mnt, { recursive: true });
  mkdirSync(cache, { recursive: true });
  dropCaches(ctx.args);
  let m: Mount | undefined;
  try {
    m = await col.mount(mnt, cache);
    (ctx.results.mounts[col.id] ??= {})[tag] = { mountSeconds: m.mountSeconds };
    await fn(m);
  } catch (e) {
    fail(ctx, col.id, rows, e);
  } finally {
    if (m) {
      try { ctx.results.mounts[col.id]![tag]!.unmountSeconds = await m.unmount(); } catch (e) { log(`unmount ${mnt}: ${(e as Error).message}`); }
    } else {
      forceUnmount(mnt);
      mounted.delete(mnt);
    }
    rmSync(cache, { recursive: true, force: true });
  }
}

async function runScale(ctx: Ctx, col: Column): Promise<void> {
  const sc = ctx.scale!;
  const one = async (row: string, tag: string, job: (top: string) => Job, check: (r: JobResult) => string | null) => {
    await withMount(ctx, col, tag, [row], async (m) => {
      const before = await col.counters().catch(() => null);
      const r = await runWorkload(job(m.top), { mnt: m.mnt });
      const err = check(r);
      record(ctx, col.id, row, r.seconds, { entries: r.entries, bytes: r.bytes, ...(err ? { error: err } : {}) });
      const after = await col.counters().catch(() => null);
      if (before && after) ctx.results.rows[row]![col.id]!.wire = diffCounters(before, after);
    });
  };
  for (const c of sc.sizes.counts) {
    await one(`scale_ls_${c}`, `scale-ls-${c}`, (top) => ({ op: 'lsl', dir: join(top, S.dir(c)) }),
      (r) => (r.entries === c ? null : `ls -l listed ${r.entries}`));
    await one(`scale_find_${c}`, `scale-find-${c}`, (top) => ({ op: 'find', dir: join(top, S.dir(c)) }),
      (r) => (r.entries === c + 1 ? null : `find printed ${r.entries}`));
  }
  await one('scale_read', 'scale-read', (top) => ({ op: 'read', file: join(top, S.big), hash: true }),
    (r) => (r.bytes !== sc.sizes.bigBytes ? `read ${r.bytes} bytes` : r.sha256 !== sc.big ? 'content differs' : null));
}

/** Hard links of a read-only tree (the scaling tree is never written to). */
function linkTree(src: string, dst: string): void {
  mkdirSync(dst, { recursive: true });
  for (const e of readdirSync(src, { withFileTypes: true })) {
    if (e.isDirectory()) linkTree(join(src, e.name), join(dst, e.name));
    else linkSync(join(src, e.name), join(dst, e.name));
  }
}

/** The tar archive and the git repository of the ns phase (made once, outside every mount). */
function nsInputs(ctx: Ctx): { tar: string; repo: string } {
  const dir = join(ctx.work, 'ns-inputs');
  const tar = join(dir, 'files.tar');
  const repo = join(dir, 'repo');
  if (existsSync(tar) && existsSync(join(repo, '.git'))) return { tar, repo };
  rmSync(dir, { recursive: true, force: true });
  const body = (i: number) => Buffer.from(`file ${i}\n`.repeat(100));
  const files = join(dir, 'files');
  for (let i = 0; i < ctx.sizes.tarFiles; i++) {
    const d = join(files, `d${String(Math.floor(i / 100)).padStart(2, '0')}`);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, `f${i}.txt`), body(i));
  }
  const ok = (r: ReturnType<typeof spawnSync>, what: string) => { if (r.status !== 0) throw new Error(`${what} failed: ${String(r.stderr)}`); };
  ok(spawnSync('tar', ['cf', tar, '-C', files, '.'], { encoding: 'utf8' }), 'tar cf');
  for (let i = 0; i < ctx.sizes.gitFiles; i++) {
    const d = join(repo, `src${i % 10}`);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, `m${i}.c`), body(i));
  }
  const git = (...a: string[]) => ok(spawnSync('git', ['-C', repo, '-c', 'user.name=bench', '-c', 'user.email=bench@example.invalid', ...a], { encoding: 'utf8' }), `git ${a[0]}`);
  git('init', '-q');
  git('add', '.');
  git('commit', '-q', '-m', 'bench');
  return { tar, repo };
}

/** Warm finds per column whose median is the find_warm row. */
const WARM_FINDS = 5;

async function runPhase(ctx: Ctx, col: Column, phase: Phase): Promise<void> {
  if (phase === 'scale') return runScale(ctx, col);
  const { sizes, manifest } = ctx;
  const rowsOf = rowDefs(sizes).filter((r) => r.phase === phase).map((r) => r.id);
  // Counters around each row: taken outside the timed part (the workload times itself).
  let before: Counters | null = null;
  let mount: Mount | undefined;
  let opsBefore: FuseOps | null = null;
  const mark = async () => {
    before = await col.counters().catch(() => null);
    opsBefore = mount?.fuseOps ? await mount.fuseOps() : null;
  };
  const wire = async (row: string) => {
    const after = await col.counters().catch(() => null);
    const cell = ctx.results.rows[row]?.[col.id];
    if (before && after && cell) cell.wire = diffCounters(before, after);
    const opsAfter = mount?.fuseOps ? await mount.fuseOps() : null;
    // FUSE requests of the row: all the kernel sent, and those that reached JS (the rest were
    // answered natively: xattr probes outside user.*)
    if (opsBefore && opsAfter && cell) {
      const toJs = diffOps(opsBefore.toJs, opsAfter.toJs);
      cell.fuse = {
        received: diffOps(opsBefore.received, opsAfter.received), toJs,
        lookupsToJs: toJs.lookup ?? 0, getxattrToJs: toJs.getxattr ?? 0, nativeAnswered: opsAfter.nativeAnswered - opsBefore.nativeAnswered,
        ...(opsAfter.latency ? { latencyUs: diffLatency(opsBefore.latency, opsAfter.latency) } : {}),
      };
    }
    await mark();
  };
  if (phase === 'big') {
    // The raw wire figure right before the cold read, in the same conditions (load drifts over a run).
    try {
      dropCaches(ctx.args);
      await mark();
      const r = await col.wire(join(ctx.work, 'scratch'), sizes.bigBytes);
      record(ctx, col.id, 'wire', r.seconds, { mibPerSec: sizes.bigBytes / MiB / r.seconds });
      await wire('wire');
    } catch (e) { fail(ctx, col.id, ['wire'], e); }
  }
  await withMount(ctx, col, phase, rowsOf, async (m) => {
    mount = m;
    await mark();
    const p = (rel: string) => join(m.top, rel);
    const w = (job: Job) => runWorkload(job, { mnt: m.mnt });
    // Each step fails alone (its rows are marked) and the phase goes on with the next one.
    const step = async (rows: string[], fn: () => Promise<void>) => {
      try { await fn(); } catch (e) { fail(ctx, col.id, rows, e); await mark(); }
    };
    const flag = (row: string, error: string) => { const c = ctx.results.rows[row]?.[col.id]; if (c) c.error = error; };
    if (phase === 'find') {
      const find = async () => {
        const r = await w({ op: 'find', dir: p(T.top) });
        if (r.entries !== manifest.findEntries) throw new Error(`find printed ${r.entries} entries, expected ${manifest.findEntries}`);
        return r.seconds;
      };
      await step(['find_cold'], async () => {
        record(ctx, col.id, 'find_cold', await find(), { entries: manifest.findEntries });
        await wire('find_cold');
      });
      // A warm find is ~0.1 s, where one run moves by +-30 % on this kind of machine: the row is the
      // median of WARM_FINDS, its counters those of the first (so they stay per find).
      await step(['find_warm'], async () => {
        const runs = [await find()];
        (ctx.results.rows['find_warm'] ??= {})[col.id] = { seconds: runs[0]! };
        await wire('find_warm');
        for (let i = 1; i < WARM_FINDS; i++) runs.push(await find());
        await mark();
        const sorted = [...runs].sort((a, b) => a - b);
        record(ctx, col.id, 'find_warm', sorted[sorted.length >> 1]!, { entries: manifest.findEntries, runs });
      });
    } else if (phase === 'small') {
      await step(['ls_l'], async () => {
        const ls = await w({ op: 'lsl', dir: p(T.smallDir(T.lsDir)) });
        record(ctx, col.id, 'ls_l', ls.seconds, { entries: ls.entries, ...(ls.entries === sizes.smallPerDir ? {} : { error: `ls -l listed ${ls.entries}` }) });
        await wire('ls_l');
      });
      await step(['cat_small'], async () => {
        const cs = await w({ op: 'catdir', dir: p(T.smallDir(T.catDir)) });
        const csOk = cs.bytes === sizes.smallPerDir * sizes.smallBytes;
        record(ctx, col.id, 'cat_small', cs.seconds, { bytes: cs.bytes, ...(csOk ? {} : { error: `read ${cs.bytes} bytes` }) });
        await wire('cat_small');
      });
      await step(['cat_medium'], async () => {
        const cm = await w({ op: 'catdir', dir: p(T.medium) });
        const cmOk = cm.bytes === sizes.mediumCount * sizes.mediumBytes;
        record(ctx, col.id, 'cat_medium', cm.seconds, { bytes: cm.bytes, ...(cmOk ? {} : { error: `read ${cm.bytes} bytes` }) });
        await wire('cat_medium');
      });
      // Untimed: the bytes were the right ones.
      await step([], async () => {
        const hs = await w({ op: 'catdir', dir: p(T.smallDir(T.catDir)), hash: true });
        if (hs.sha256 !== manifest.small[T.catDir]) flag('cat_small', 'content differs from the tree');
      });
      await step([], async () => {
        const hm = await w({ op: 'catdir', dir: p(T.medium), hash: true });
        if (hm.sha256 !== manifest.medium) flag('cat_medium', 'content differs from the tree');
      });
    } else if (phase === 'big') {
      await step(['read_cold'], async () => {
        const sampler = new RssSampler(m.pid);
        const cold = await w({ op: 'read', file: p(T.big) }).finally(() => { ctx.results.rss[col.id] = sampler.stop(); });
        record(ctx, col.id, 'read_cold', cold.seconds, { bytes: cold.bytes, mibPerSec: sizes.bigBytes / MiB / cold.seconds,
          ...(cold.bytes === sizes.bigBytes ? {} : { error: `read ${cold.bytes} bytes` }) });
        await wire('read_cold');
      });
      await step(['read_warm'], async () => {
        const warm = await w({ op: 'read', file: p(T.big) });
        record(ctx, col.id, 'read_warm', warm.seconds, { bytes: warm.bytes, mibPerSec: sizes.bigBytes / MiB / warm.seconds });
        await wire('read_warm');
      });
      await step([], async () => {
        const h = await w({ op: 'read', file: p(T.big), hash: true });
        if (h.sha256 !== manifest.big) flag('read_cold', 'content differs from the tree');
      });
    } else if (phase === 'ns') {
      const src = nsInputs(ctx);
      const dirs = Array.from({ length: sizes.tarFiles / 100 }, (_, i) => `d${String(i).padStart(2, '0')}`);
      const onServer = async () => {
        let n = 0;
        for (const d of dirs) n += (await col.server.count(`tarx/${d}`)) ?? 0;
        return n;
      };
      // returned, then polled until the server has it: the write-back figure next to the program's
      const timedUntil = async (row: string, serverRow: string, job: Job, done: () => Promise<boolean>) => {
        const r = await w(job);
        const t1 = performance.now();
        record(ctx, col.id, row, r.seconds);
        const atReturn = await done();
        const ok = atReturn || await pollUntil(done, 600_000);
        record(ctx, col.id, serverRow, ok ? (atReturn ? r.seconds : r.seconds + (performance.now() - t1) / 1000) : null,
          { onServerAtReturn: atReturn, ...(ok ? {} : { error: 'the server never got there' }) });
        await wire(serverRow);
      };
      await step(['tar_x', 'tar_x_server'], () => timedUntil('tar_x', 'tar_x_server', { op: 'tarx', archive: src.tar, dir: p('tarx') },
        async () => (await onServer()) === sizes.tarFiles));
      await step(['git_clone'], async () => {
        const r = await w({ op: 'gitclone', src: src.repo, dest: p('clone') });
        record(ctx, col.id, 'git_clone', r.seconds);
        await wire('git_clone');
      });
      await step(['rm_tree', 'rm_tree_server'], () => timedUntil('rm_tree', 'rm_tree_server', { op: 'rmrf', dir: p('tarx') },
        async () => (await col.server.count('tarx')) === null));
    } else if (phase === 'write') {
      await step(['write_fsync', 'write_server'], async () => {
        const wr = await w({ op: 'write', file: p(T.write), bytes: sizes.writeBytes });
        const tDone = performance.now();
        record(ctx, col.id, 'write_fsync', wr.seconds, { writeSeconds: wr.writeSeconds, fsyncSeconds: wr.fsyncSeconds });
        // When did the server have all of it? (Ours promises: when fsync returned.)
        const has = async () => (await col.server.size(T.write)) === sizes.writeBytes;
        const onServerAtReturn = await has();
        const ok = onServerAtReturn || await pollUntil(has, 600_000);
        const serverSecs = onServerAtReturn ? wr.seconds : wr.seconds + (performance.now() - tDone) / 1000;
        record(ctx, col.id, 'write_server', ok ? serverSecs : null, { onServerWhenFsyncReturned: onServerAtReturn, ...(ok ? {} : { error: 'never reached the server' }) });
        await wire('write_server');
        if (ok) {
          // rclone's local backend writes in place while a PUT runs: wait until the bytes settle.
          await pollUntil(async () => (await col.server.sha256(T.write)) === wr.sha256, 60_000);
          if ((await col.server.sha256(T.write)) !== wr.sha256) flag('write_server', 'server copy differs from what was written');
        }
      });
      await step(['create', 'create_server'], async () => {
        const cr = await w({ op: 'create', dir: p(T.created), count: sizes.createCount, bytes: sizes.createBytes, name: 'c' });
        const cDone = performance.now();
        record(ctx, col.id, 'create', cr.seconds);
        const all = async () => (await col.server.count(T.created)) === sizes.createCount;
        const cAtReturn = await all();
        const cOk = cAtReturn || await pollUntil(all, 600_000);
        record(ctx, col.id, 'create_server', cOk ? (cAtReturn ? cr.seconds : cr.seconds + (performance.now() - cDone) / 1000) : null,
          { onServerWhenCloseReturned: cAtReturn, ...(cOk ? {} : { error: 'not all on the server' }) });
        await wire('create_server');
      });
      await step(['rename', 'rmrf'], async () => {
        const rn = await w({ op: 'rename', from: p(T.smallDir(T.renameDir)), to: p(T.renamed) });
        record(ctx, col.id, 'rename', rn.seconds);
        await wire('rename');
        const rm = await w({ op: 'rmrf', dir: p(T.renamed) });
        record(ctx, col.id, 'rmrf', rm.seconds);
        await wire('rmrf');
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------

function ensureRclone(): void {
  if (spawnSync('sh', ['-c', 'command -v rclone'], { stdio: 'ignore' }).status === 0) return;
  if (process.getuid?.() !== 0 || spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status !== 0) {
    throw new Error('rclone is not installed (apt-get install rclone)');
  }
  log('installing rclone (apt-get)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  const r = spawnSync('apt-get', ['install', '-y', '-qq', 'rclone'], { stdio: 'inherit', env });
  if (r.status !== 0) throw new Error('apt-get install rclone failed');
}

function machine(): Record<string, unknown> {
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  return {
    nproc: os.cpus().length, cpu, memGiB: Math.round(os.totalmem() / 1024 ** 3 * 10) / 10,
    kernel: os.release(), node: process.version, loadAvgAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
    rclone: (spawnSync('rclone', ['version'], { encoding: 'utf8' }).stdout ?? '').split('\n')[0] ?? '',
  };
}

/** Top functions by self time of each CPU profile under dir/<mount>/. */
function summarizeProfiles(dir: string): Record<string, Array<{ fn: string; selfMs: number; pct: number }>> {
  const out: Record<string, Array<{ fn: string; selfMs: number; pct: number }>> = {};
  if (!existsSync(dir)) return out;
  for (const sub of readdirSync(dir)) {
    const d = join(dir, sub);
    if (!statSync(d).isDirectory()) continue;
    for (const f of readdirSync(d).filter((x) => x.endsWith('.cpuprofile'))) {
      try {
        const p = JSON.parse(readFileSync(join(d, f), 'utf8')) as {
          nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
          samples: number[]; timeDeltas: number[];
        };
        const byId = new Map(p.nodes.map((n) => [n.id, n]));
        const self = new Map<string, number>();
        let total = 0;
        p.samples.forEach((id, i) => {
          const n = byId.get(id);
          const us = p.timeDeltas[i] ?? 0;
          total += us;
          if (!n) return;
          const cf = n.callFrame;
          const where = cf.url ? `${cf.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}` : '';
          const key = `${cf.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
          self.set(key, (self.get(key) ?? 0) + us);
        });
        out[sub] = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15)
          .map(([fn, us]) => ({ fn, selfMs: Math.round(us / 1000), pct: Math.round((us / total) * 1000) / 10 }));
      } catch { /* partial profile */ }
    }
  }
  return out;
}

/** Replaces only the bench block of the README (other sections belong to their authors). */
function updateReadme(table: string): void {
  const file = join(repo, 'README.md');
  const open = '<!-- bench-table -->';
  const close = '<!-- /bench-table -->';
  let text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const block = `${open}\n${table}\n${close}`;
  const a = text.indexOf(open);
  const b = text.indexOf(close);
  if (a >= 0 && b > a) text = text.slice(0, a) + block + text.slice(b + close.length);
  else if (a >= 0) text = text.slice(0, a) + block + text.slice(a + open.length);
  else text = `${text.trimEnd()}\n\n## Benchmarks\n\n${block}\n`;
  writeFileSync(file, text);
  log('README.md bench table updated');
}

/**
 * One side of ours: a reference server (this checkout's) holding the tree, a delay proxy for its
 * HTTP port and one for its rsync daemon (which /slice then advertises), and a column per service
 * whose mounts run the CLI of `checkout`. The --baseline side gets a server of its own: the write
 * phases change the tree, and each demo account has one, so two builds cannot share one.
 */
async function startOurSide(ctx: Ctx, kinds: OurColumn[], side: { checkout: string; base: boolean },
  trees: { master: string; scaleMaster: string; needMain: boolean }): Promise<Column[]> {
  const { args, work } = ctx;
  const { master, scaleMaster, needMain } = trees;
  const delayMs = args.rttMs / 2;
  const { checkout, base } = side;
  const sfx = base ? '-base' : '';
  const id = (k: OurColumn): ColumnId => (base ? BASE_OF[k] : k);
  const out: Column[] = [];
  const dataDir = join(work, `server${sfx}`);
  const serve = startProc(process.execPath, [SERVE, '--data-dir', dataDir], { logFile: join(work, `serve${sfx}.log`) });
  const info = await firstJsonLine<{ url: string; port: number; rsyncHost: string | null; rsyncPort: number | null; filesDir: string }>(serve, 'reference server');
  const httpProxy = await startProxy('127.0.0.1', info.port, delayMs);
  const proxied = `http://127.0.0.1:${httpProxy.port}`;
  const emuStats = async () => (await (await fetch(`${info.url}/_emulator/stats`)).json()) as Record<string, number>;
  vlog(`reference server ${info.url}, through the proxy ${proxied}`);
  if (kinds.includes('maxxo')) {
    if (!info.rsyncPort) throw new Error('the reference server runs no rsync daemon');
    const rsyncProxy = await startProxy(info.rsyncHost ?? '127.0.0.1', info.rsyncPort, delayMs);
    serve.stdin!.write(`${JSON.stringify({ advertiseRsyncPort: rsyncProxy.port })}\n`);
    const slice = await maxxoSlice(info.url);
    if (slice.rsync_port !== rsyncProxy.port) throw new Error(`/slice advertises rsync port ${slice.rsync_port}, not the proxy's ${rsyncProxy.port}`);
    const userDir = join(info.filesDir, 'maxxo', slice.login);
    if (needMain) cpSync(join(master, T.top), join(userDir, T.top), { recursive: true });
    if (ctx.scale) linkTree(join(scaleMaster, S.top), join(userDir, S.top));
    out.push({
      id: id('maxxo'),
      mount: ourMount('maxxo', checkout, proxied, join(work, `home-${id('maxxo')}`), base ? args.ourOpts : [...args.ourOpts, ...args.newOpts]),
      server: localView(userDir),
      counters: async () => ({ proxies: { http: await httpProxy.stats(), rsync: await rsyncProxy.stats() }, routes: await emuStats() }),
      wire: async (scratch, bytes) => {
        mkdirSync(scratch, { recursive: true });
        const dest = join(scratch, 'wire-maxxo.bin');
        try {
          return await runWorkload({ op: 'rsync', dest, expect: bytes }, {
            env: { BENCH_URL: `rsync://${slice.login}@127.0.0.1:${rsyncProxy.port}/${slice.login}/${T.big}`, RSYNC_PASSWORD: slice.rsync },
          });
        } finally { rmSync(dest, { force: true }); }
      },
    });
  }
  if (kinds.includes('vboxx')) {
    const api = new VboxxApi(info.url);
    await api.login();
    log(`uploading the tree to the vBoxx reference server${sfx}`);
    if (needMain) await api.uploadTree(master, T.top);
    if (ctx.scale) {
      await api.allowFileSize(ctx.scale.sizes.bigBytes);
      log(`uploading the scaling tree to the vBoxx reference server${sfx}`);
      await api.uploadTree(scaleMaster, S.top, 16);
    }
    out.push({
      id: id('vboxx'),
      mount: ourMount('vboxx', checkout, proxied, join(work, `home-${id('vboxx')}`), base ? args.ourOpts : [...args.ourOpts, ...args.newOpts], String(api.rootId)),
      server: api.view(),
      counters: async () => ({ proxies: { http: await httpProxy.stats() }, routes: await emuStats() }),
      wire: (_scratch, bytes) => runWorkload({ op: 'get', expect: bytes }, {
        env: { BENCH_URL: `${proxied}/1/files/${api.rootId}/${api.enc(T.big)}?session_token=${encodeURIComponent(api.token)}` },
      }),
    });
  }
  return out;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  verbose = args.verbose;
  profileDir = args.profile;
  if (args.tableFrom) {
    const table = args.tableFrom.split(',')
      .map((f) => formatTable(JSON.parse(readFileSync(f, 'utf8')) as Results)).join('\n\n');
    process.stdout.write(`${table}\n`);
    if (args.readme) updateReadme(table);
    return 0;
  }
  const sizes = args.quick ? quickSizes : fullSizes;
  const delayMs = args.rttMs / 2;
  const wantRclone = args.columns.some((c) => c.startsWith('rclone'));
  if (wantRclone) ensureRclone();
  if (!existsSync('/dev/fuse')) throw new Error('/dev/fuse is missing: this machine cannot mount FUSE filesystems');

  // before anything starts: a baseline that cannot mount stops the run here
  const baseline = args.baseline ? inspectBaseline(args.baseline) : null;
  const parent = args.workDir ?? os.tmpdir();
  mkdirSync(parent, { recursive: true });
  const work = mkdtempSync(join(parent, 'cloudmount-bench-'));
  log(`work folder ${work}${args.keep ? ' (kept)' : ''}`);
  const onSignal = (sig: string) => {
    log(`${sig}: tearing down`);
    void cleanup().finally(() => {
      if (!args.keep) rmSync(work, { recursive: true, force: true });
      process.exit(130);
    });
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGHUP', () => onSignal('SIGHUP'));

  const date = new Date().toISOString();
  const results: Results = {
    date, command: `scripts/bench ${process.argv.slice(2).join(' ')}`.trim(), machine: machine(), rttMs: args.rttMs,
    sizes, columns: args.columns, rows: {}, rss: {}, mounts: {}, notes: [],
  };
  if (baseline) {
    const { info, warnings } = baseline;
    results.baseline = info;
    for (const w of warnings) { log(`baseline: ${w}`); results.notes.push(`baseline: ${w}`); }
    log(`baseline ${info.dir} at ${info.commit ?? '?'}${info.dirty ? ' (uncommitted changes)' : ''}`);
  }
  try {
    log(`generating the tree (${(fullSizes === sizes ? 'full' : 'quick')} sizes)`);
    const master = join(work, 'master');
    const t0 = performance.now();
    // Only scaling rows asked for: the main tree is not needed anywhere.
    const needMain = rowDefs(sizes).some((r) => !args.only || args.only.has(r.id));
    const manifest = generateTree(master, needMain ? sizes : { ...sizes, bigBytes: 0, mediumCount: 0, dirs: 0 });
    vlog(`tree: ${manifest.totalBytes / MiB} MiB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const ctx: Ctx = { args, sizes, manifest, work, results };
    const scaleMaster = join(work, 'scale-master');
    if (args.scaling) {
      const sc = args.quick ? quickScale : fullScale;
      log(`generating the scaling tree (${sc.counts.join(' / ')} entries, ${sc.bigBytes / MiB} MiB file)`);
      ctx.scale = { sizes: sc, big: generateScaleTree(scaleMaster, sc).big };
      results.scale = sc;
    }
    const columns: Column[] = [];

    // Our side; with --baseline a second one whose mounts run the baseline's CLI.
    const ours = args.columns.filter((c): c is OurColumn => c === 'maxxo' || c === 'vboxx');
    const oursBase = (Object.keys(BASE_OF) as OurColumn[]).filter((c) => args.columns.includes(BASE_OF[c]));
    const trees = { master, scaleMaster, needMain };
    if (ours.length) columns.push(...await startOurSide(ctx, ours, { checkout: repo, base: false }, trees));
    if (oursBase.length) columns.push(...await startOurSide(ctx, oursBase, { checkout: args.baseline!, base: true }, trees));

    // rclone side: `rclone serve webdav` over a folder with one copy of the tree per mode.
    const rcloneCols = args.columns.filter((c): c is 'rclone-writes' | 'rclone-full' => c.startsWith('rclone'));
    if (rcloneCols.length) {
      const base = join(work, 'webdav');
      for (const c of rcloneCols) {
        if (needMain) cpSync(join(master, T.top), join(base, c.slice(7), T.top), { recursive: true });
        if (ctx.scale) linkTree(join(scaleMaster, S.top), join(base, c.slice(7), S.top));
      }
      const home = join(work, 'home-rclone');
      const env = isolatedEnv(home);
      const conf = join(home, 'rclone.conf');
      writeFileSync(conf, '', { mode: 0o600 });
      const port = await freePort();
      startProc('rclone', ['serve', 'webdav', base, '--addr', `127.0.0.1:${port}`, '--config', conf, '--log-level', 'NOTICE'],
        { env: { ...env, RCLONE_CONFIG: conf }, logFile: join(work, 'rclone-serve.log') });
      await waitPort(port, 30_000);
      const proxy = await startProxy('127.0.0.1', port, delayMs);
      const url = `http://127.0.0.1:${proxy.port}`;
      for (const c of rcloneCols) {
        const mode = c.slice(7) as 'writes' | 'full';
        columns.push({
          id: c,
          mount: rcloneMount(mode, url, join(work, `home-${c}`)),
          server: localView(join(base, mode)),
          counters: async () => ({ proxies: { http: await proxy.stats() } }),
          wire: (_s, bytes) => runWorkload({ op: 'get', expect: bytes }, { env: { BENCH_URL: `${url}/${mode}/${T.big}` } }),
        });
      }
    }

    const wanted = (phase: Phase) => rowDefs(sizes, ctx.scale?.sizes).some((r) => r.phase === phase && (!args.only || args.only.has(r.id)));
    columns.sort((a, b) => COLUMNS.indexOf(a.id) - COLUMNS.indexOf(b.id));
    let round = args.baseFirst ? 1 : 0;
    for (const phase of PHASES) {
      if (!wanted(phase)) continue;
      log(`phase ${phase}`);
      const order = phaseOrder(columns, round++);
      (results.phaseOrder ??= {})[phase] = order.map((c) => c.id);
      for (const col of order) {
        await runPhase(ctx, col, phase);
      }
    }
  } finally {
    await cleanup();
    results.machine.loadAvgAtEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
    if (profileDir) results.profiles = summarizeProfiles(profileDir);
    const outFile = args.out ?? join(repo, '.bench', `results-${date.slice(0, 19).replace(/[:T]/g, '-')}.json`);
    mkdirSync(dirname(outFile), { recursive: true });
    writeFileSync(outFile, `${JSON.stringify(results, null, 2)}\n`);
    const table = formatTable(results);
    process.stdout.write(`\n${table}\n\nJSON: ${outFile}\n`);
    if (args.readme) updateReadme(table);
    if (args.keep) log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
    const left = mountTable().map((m) => m.target).filter((m) => m.startsWith(work));
    if (left.length) log(`WARNING: mounts still present: ${left.join(', ')}`);
  }
  return 0;
}

main().then((code) => process.exit(code), async (e) => {
  log(`failed: ${(e as Error)?.stack ?? e}`);
  await cleanup();
  process.exit(1);
});
