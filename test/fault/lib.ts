// Shared plumbing of the fault, crash, stall and disk suites. Layout of every test: the reference
// server runs in a child process (so it can be SIGSTOPped/killed), the drive in another child
// (test/helpers/mount-child.ts), and this process only drives the mount with async fs calls or
// further child programs, never a sync call that could block it on a stuck mount.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { startEmulatorProcess, type EmulatorProcess, type EmulatorProcessOptions } from '../helpers/emulator-process.js';
import { mountChild, tempDir, type ChildConfig, type MountHandle } from '../helpers/mount.js';
import { DEMO, randomBytesSeeded, type Kind } from '../e2e/lib/services.js';

export { DEMO, type Kind };


/** A reference server in its own process, stopped at teardown (after SIGCONT if it was stopped). */
export async function startServer(t: ExecutionContext, o: EmulatorProcessOptions = {}): Promise<EmulatorProcess & { dataDir: string }> {
  const dataDir = o.dataDir ?? tempDir(t, 'cm-fault-data-');
  const s = await startEmulatorProcess({ ...o, dataDir });
  t.teardown(async () => { await s.stop(); });
  return Object.assign(s, { dataDir });
}

export interface FaultDrive extends MountHandle {
  kind: Kind;
  /** Where the account's files are inside the mount (vBoxx: the Files root). */
  base: string;
}

export interface FaultMountOptions {
  cacheDir?: string;
  mountpoint?: string;
  vfs?: ChildConfig['vfs'];
  mount?: ChildConfig['mount'];
  client?: ChildConfig['client'];
  logLevel?: string;
}

/** Mounts the demo account of `kind` against `url` in a child process; torn down with the test. */
export async function mountAt(t: ExecutionContext, url: string, kind: Kind, o: FaultMountOptions = {}): Promise<FaultDrive> {
  const mnt = o.mountpoint ?? tempDir(t, `cm-fmnt-${kind}-`);
  const cacheDir = o.cacheDir ?? tempDir(t, `cm-fcache-${kind}-`);
  const h = await mountChild(t, {
    kind,
    server: url,
    user: DEMO[kind].user,
    password: DEMO[kind].password,
    mountpoint: mnt,
    accountId: `${kind}-demo`,
    cacheDir,
    vfs: { writebackDelayMs: 100, opTimeoutMs: 30_000, attrTtlMs: 1000, dirTtlMs: 2000, negativeTtlMs: 500, ...(o.vfs ?? {}) },
    mount: o.mount,
    client: { timeoutMs: 10_000, maxRetryTimeMs: 25_000, maxAttempts: 8, ...(o.client ?? {}) },
    logLevel: o.logLevel ?? process.env.CM_FAULT_LOG ?? 'error',
  }, { timeoutMs: 90_000 });
  return { ...h, kind, base: kind === 'vboxx' ? path.join(h.mnt, 'Files') : h.mnt };
}


export interface Spec { rel: string; size: number; seed: number }

/** Deterministic content of a spec (regenerated on demand: nothing big is kept in memory). */
export const contentOf = (s: Spec): Buffer => randomBytesSeeded(s.size, s.seed);

import { prng } from '../helpers/random.js';
import { sha256 } from '../support/files.js';
export { sha256 };
export { sleep } from '../support/wait.js';
export { prng };

/**
 * n files of mixed sizes in a few folders: mostly small (0..16 KiB), some medium (up to 512 KiB),
 * a few large (1..4 MiB), and empty ones.
 */
export function mixedSpecs(n: number, seed: number, dirs = 8): Spec[] {
  const r = prng(seed);
  const out: Spec[] = [];
  for (let i = 0; i < n; i++) {
    const x = r();
    const size = i % 97 === 0 ? 0
      : x < 0.8 ? Math.floor(r() * 16 * 1024) + 1
        : x < 0.97 ? Math.floor(r() * 512 * 1024) + 1
          : Math.floor(1024 * 1024 + r() * 3 * 1024 * 1024);
    out.push({ rel: `d${i % dirs}/f${String(i).padStart(4, '0')}-${size}.bin`, size, seed: seed * 100_003 + i });
  }
  return out;
}

/** Runs fn over items with at most `limit` in flight; collects failures instead of throwing. */
export async function pool<T>(items: T[], limit: number, fn: (x: T, i: number) => Promise<void>): Promise<Array<{ item: T; error: unknown }>> {
  const failed: Array<{ item: T; error: unknown }> = [];
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      try { await fn(items[i]!, i); } catch (error) { failed.push({ item: items[i]!, error }); }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return failed;
}

/** Writes every spec below base (creating its folders); returns the bytes written. */
export async function writeSpecs(base: string, specs: Spec[], limit = 8): Promise<{ bytes: number; failed: Array<{ item: Spec; error: unknown }> }> {
  const dirs = new Set(specs.map((s) => path.dirname(s.rel)));
  for (const d of dirs) await fsp.mkdir(path.join(base, d), { recursive: true });
  let bytes = 0;
  const failed = await pool(specs, limit, async (s) => {
    await fsp.writeFile(path.join(base, s.rel), contentOf(s));
    bytes += s.size;
  });
  return { bytes, failed };
}

export interface CheckResult { checked: number; bytes: number; lost: string[]; corrupted: string[] }

/** Reads every spec back below base and compares SHA-256. */
export async function checkSpecs(base: string, specs: Spec[], limit = 8): Promise<CheckResult> {
  const res: CheckResult = { checked: 0, bytes: 0, lost: [], corrupted: [] };
  const failed = await pool(specs, limit, async (s) => {
    let got: Buffer;
    try {
      got = await fsp.readFile(path.join(base, s.rel));
    } catch (e) {
      res.lost.push(`${s.rel}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      return;
    }
    res.checked++;
    res.bytes += got.length;
    if (got.length !== s.size || sha256(got) !== sha256(contentOf(s))) res.corrupted.push(`${s.rel} (${got.length} of ${s.size} bytes)`);
  });
  for (const f of failed) res.lost.push(`${f.item.rel}: ${String(f.error)}`);
  return res;
}

/** PIDs of all descendants of pid (from /proc), with their command names. */
export function descendants(pid: number): Array<{ pid: number; comm: string }> {
  const kids = new Map<number, number[]>();
  const comm = new Map<number, string>();
  for (const n of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${n}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const name = stat.slice(stat.indexOf('(') + 1, close);
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      comm.set(Number(n), name);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid)!.push(Number(n));
    } catch {
      // exited meanwhile
    }
  }
  const out: Array<{ pid: number; comm: string }> = [];
  const stack = [...(kids.get(pid) ?? [])];
  while (stack.length) {
    const p = stack.pop()!;
    out.push({ pid: p, comm: comm.get(p) ?? '?' });
    stack.push(...(kids.get(p) ?? []));
  }
  return out;
}

/** Sum of the server's injected-fault counters ("FAULT 500", "FAULT 503", "FAULT drop"). */
export function faultsOf(stats: Record<string, number>): number {
  let n = 0;
  for (const [k, v] of Object.entries(stats)) if (k.startsWith('FAULT ')) n += v;
  return n;
}

/** Requests the server counted by route (every counter but the injected faults). */
export function requestsOf(stats: Record<string, number>): number {
  let n = 0;
  for (const [k, v] of Object.entries(stats)) if (!k.startsWith('FAULT ')) n += v;
  return n;
}

export async function stats(url: string): Promise<Record<string, number>> {
  const r = await fetch(`${url}/_emulator/stats`);
  return (await r.json()) as Record<string, number>;
}

/**
 * The fault run shared by the per-service files: `n` mixed files written through a mount while
 * the server injects faults, flushed, then checked through a fresh mount with faults off.
 * `during` runs alongside the writes (e.g. killing the rsync daemon) and is stopped after the flush.
 */
export async function faultRun(t: ExecutionContext, kind: Kind, n: number, o: {
  failRate: number; latencyMs: number; seed: number;
  during?: (srv: EmulatorProcess, stop: AbortSignal) => Promise<string>;
  specs?: Spec[];
}): Promise<void> {
  const srv = await startServer(t, { failRate: o.failRate, latencyMs: o.latencyMs, rsync: kind === 'maxxo' });
  const d = await mountAt(t, srv.url, kind, { vfs: { writebackDelayMs: 50 } });
  const specs = o.specs ?? mixedSpecs(n, o.seed);
  const top = `fault-${process.pid}-${o.seed}`;
  const t0 = Date.now();
  const ac = new AbortController();
  const side = o.during ? o.during(srv, ac.signal) : Promise.resolve('');
  let w: Awaited<ReturnType<typeof writeSpecs>>;
  try {
    w = await writeSpecs(path.join(d.base, top), specs);
    await d.flush();
  } finally {
    ac.abort();
  }
  const sideReport = await side;
  t.deepEqual(w.failed.map((f) => `${f.item.rel}: ${String(f.error)}`), [], 'every write and close succeeded');
  const st = await d.status();
  t.deepEqual(st.failures, [], 'no upload finally failed');
  t.is(st.pending, 0);
  const writeMs = Date.now() - t0;
  t.is(await d.stop(), 0, 'clean unmount');
  const s = await stats(srv.url);
  const faults = faultsOf(s);
  const requests = requestsOf(s);

  const fr = await fetch(`${srv.url}/_emulator/faults`, { method: 'POST', body: new URLSearchParams({ failRate: '0', latencyMs: '0' }) });
  t.true(fr.ok);
  const fresh = await mountAt(t, srv.url, kind);
  const c = await checkSpecs(path.join(fresh.base, top), specs);
  t.log(`${kind}: files written ${specs.length}, bytes written ${w.bytes}, HTTP requests ${requests}, faults injected ${faults} ` +
    `(${Object.entries(s).filter(([k]) => k.startsWith('FAULT')).map(([k, v]) => `${k.slice(6)} ${v}`).join(', ') || 'none'})` +
    `${sideReport ? `, ${sideReport}` : ''}, write+upload ${writeMs} ms; ` +
    `files checked ${c.checked}, bytes checked ${c.bytes}, lost ${c.lost.length}, corrupted ${c.corrupted.length}`);
  t.deepEqual(c.lost, [], 'lost');
  t.deepEqual(c.corrupted, [], 'corrupted');
  t.is(c.checked, specs.length);
  if (o.failRate > 0) t.true(faults > 0, 'faults were really injected');
}
