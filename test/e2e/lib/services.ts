// Shared setup of the e2e tests: reference servers in a child process, drives of either service
// mounted in another child process, and small async helpers (the test process must never block
// on the mount with sync fs: see test/helpers/emulator-child.ts).
import { execFile } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { ExecutionContext, TestFn } from 'ava';
import { mountChild, tempDir, type ChildConfig, type MountHandle } from '../../helpers/mount.js';
import { startEmulatorProcess } from '../../helpers/emulator-process.js';
import { setFaults } from '../../helpers/emulator.js';
import { createLogger } from '../../../src/log.js';
import { VboxxClient } from '../../../src/remote/vboxx/client.js';
export { sleep, eventually } from '../../support/wait.js';
export { sha256 } from '../../support/files.js';

export type Kind = 'maxxo' | 'vboxx';
export const KINDS: Kind[] = ['maxxo', 'vboxx'];

export const DEMO: Record<Kind, { user: string; password: string }> = {
  maxxo: { user: 'demo@maxxo.test', password: 'demo-password' },
  vboxx: { user: 'demo', password: 'demo-password' },
};

export interface Servers {
  url: string;
  dataDir: string;
  sql<T = unknown>(sql: string, params?: unknown[]): Promise<T>;
  maxxoFolder(email?: string): Promise<string>;
  /** Port of Maxxo's rsync daemon (null without one). */
  rsyncPort(): Promise<number | null>;
  /** Makes /slice advertise another rsync port (a proxy in front of the daemon); null: its own. */
  advertiseRsyncPort(port: number | null): Promise<void>;
  stats(): Promise<Record<string, number>>;
  resetStats(): Promise<void>;
  close(): Promise<void>;
}

export async function startServers(): Promise<Servers> {
  // CM_E2E_FAIL_RATE=F runs an e2e file against servers that fail that fraction of requests
  // (500, 503, dropped connections): a look at how its scenarios fare under faults, not in npm test
  const failRate = Number(process.env.CM_E2E_FAIL_RATE) || 0;
  const p = await startEmulatorProcess({ control: true });
  const url = p.url;
  if (failRate > 0) await setFaults(url, { failRate });
  return {
    url,
    dataDir: p.dataDir!,
    sql: (sql, params = []) => p.call({ op: 'sql', sql, params }) as Promise<any>,
    maxxoFolder: (email = DEMO.maxxo.user) => p.call({ op: 'maxxoFolder', email }) as Promise<string>,
    rsyncPort: () => p.call({ op: 'rsyncPort' }) as Promise<number | null>,
    advertiseRsyncPort: async (port) => { await p.call({ op: 'advertiseRsyncPort', port }); },
    async stats() {
      const r = await fetch(`${url}/_emulator/stats`);
      return (await r.json()) as Record<string, number>;
    },
    async resetStats() {
      await fetch(`${url}/_emulator/stats/reset`, { method: 'POST' });
    },
    async close() { await p.stop(); },
  };
}

/**
 * The reference servers of one test file: started before its first test, closed after its last
 * even when tests fail. The returned object is filled in by the before hook.
 */
export function useServers(test: TestFn): Servers {
  const servers = {} as Servers;
  let started: Servers | undefined;
  test.before(async () => {
    started = await startServers();
    Object.assign(servers, started);
  });
  test.after.always(async () => {
    await started?.close();
  });
  return servers;
}

/**
 * useServers plus an API client of the vBoxx demo account and the id of its Files root, for tests
 * that put files on the server behind the mount's back. Filled in by the before hook.
 */
export function useVboxxApi(test: TestFn): { servers: Servers; api: VboxxClient; filesRoot: number } {
  const v = { servers: {} as Servers } as { servers: Servers; api: VboxxClient; filesRoot: number };
  let started: Servers | undefined;
  // one hook: ava may run before hooks concurrently
  test.before(async () => {
    started = await startServers();
    Object.assign(v.servers, started);
    v.api = new VboxxClient({ server: v.servers.url, user: DEMO.vboxx.user, password: DEMO.vboxx.password, log: createLogger('warn') });
    v.filesRoot = (await v.api.accountInfo()).roots.find((r) => r.name === 'Files')!.id;
  });
  test.after.always(async () => { await v.api?.close(); await started?.close(); });
  return v;
}

/**
 * A macro that runs a scenario against a fresh mount of the service named by its argument (the
 * title says which); `extra` prepares further arguments of the body from the drive.
 */
export function driveMacro<X extends unknown[] = []>(
  test: TestFn, servers: Servers,
  extra: (t: ExecutionContext, d: Drive, kind: Kind) => Promise<X> = async () => [] as unknown as X,
  o: DriveOptions = {},
) {
  return test.macro({
    async exec(t, kind: Kind, body: (t: ExecutionContext, d: Drive, ...x: X) => Promise<void>) {
      const d = await mountService(t, servers, kind, o);
      await body(t, d, ...(await extra(t, d, kind)));
    },
    title: (provided = '', kind: Kind) => `${kind}: ${provided}`,
  });
}

export interface Drive extends MountHandle {
  kind: Kind;
  /** Folder inside the mount where the account's files are (vBoxx: the "Files" root). */
  base: string;
  /** Absolute path under base. */
  p(...parts: string[]): string;
}

export interface DriveOptions {
  cacheDir?: string;
  root?: string;
  vfs?: ChildConfig['vfs'];
  mount?: ChildConfig['mount'];
  client?: ChildConfig['client'];
  logLevel?: string;
}

/** Mounts the demo account of `kind` in a child process; torn down with the test. */
export async function mountService(t: ExecutionContext, s: Servers, kind: Kind, o: DriveOptions = {}): Promise<Drive> {
  const mnt = tempDir(t, `cm-mnt-${kind}-`);
  const cacheDir = o.cacheDir ?? tempDir(t, `cm-cache-${kind}-`);
  const h = await mountChild(t, {
    kind,
    server: s.url,
    user: DEMO[kind].user,
    password: DEMO[kind].password,
    root: o.root,
    mountpoint: mnt,
    accountId: `${kind}-demo`,
    cacheDir,
    vfs: { writebackDelayMs: 100, opTimeoutMs: 30_000, attrTtlMs: 1000, dirTtlMs: 5000, negativeTtlMs: 500, ...(o.vfs ?? {}) },
    mount: o.mount,
    client: { timeoutMs: 20_000, maxRetryTimeMs: 25_000, ...(o.client ?? {}) },
    logLevel: o.logLevel ?? process.env.CM_E2E_LOG ?? 'warn',
  });
  const base = kind === 'vboxx' && !o.root ? path.join(h.mnt, 'Files') : h.mnt;
  return { ...h, kind, base, p: (...parts: string[]) => path.join(base, ...parts) };
}

/** The path of `file` (under d) through another mount f of the same account. */
export function twin(d: Drive, f: Drive, file: string): string {
  return f.p(path.relative(d.base, file));
}

let seq = 0;
/** A unique folder name for one test (tests of a file share one server). */
export function uniq(prefix = 't'): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${seq++}`;
}


export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program (never a shell string with user data), without blocking the test process. */
export function run(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const c = execFile(cmd, args, { cwd: opts.cwd, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as any).code === 'number' ? (err as any).code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
    if (opts.input !== undefined) c.stdin!.end(opts.input);
  });
}

/** Runs a bash script with positional arguments ($1...): data stays out of the script text. */
export function sh(script: string, args: string[] = [], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return run('bash', ['-c', script, 'sh', ...args], opts);
}

/** fsync(2) of a file or folder by a child process (Node's own would run in this process). */
export function fsyncInChild(p: string): Promise<RunResult> {
  return sh('exec python3 -c "import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)" "$1"', [p]);
}

/** The names in a folder, sorted (async fs: the mount runs in a child). */
export async function sortedNames(dir: string): Promise<string[]> {
  return (await fsp.readdir(dir)).sort();
}

/** The errno name of a failed fs call (Node has no name for a few, e.g. EDQUOT). */
export function codeOf(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err?.errno === -122 || /system error -122/.test(String(err?.code))) return 'EDQUOT';
  return err?.code ?? String(e);
}

/** The errno name an fs promise fails with, or 'OK'. */
export async function errCode(p: Promise<unknown>): Promise<string> {
  try {
    const v = await p;
    // A FileHandle left open would be closed by GC after the mount is gone, killing the worker.
    if (v && typeof (v as { close?: unknown }).close === 'function' && typeof (v as { fd?: unknown }).fd === 'number') {
      await (v as { close(): Promise<void> }).close().catch(() => {});
    }
    return 'OK';
  } catch (e) {
    return codeOf(e);
  }
}


/** Deterministic pseudo-random bytes. */
export function randomBytesSeeded(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** Sum of the server's request counters whose route matches re. */
export function countRoutes(stats: Record<string, number>, re: RegExp): number {
  let n = 0;
  for (const [k, v] of Object.entries(stats)) if (re.test(k)) n += v;
  return n;
}
