// Mounts a drive in a child process (test/helpers/mount-child.ts) for an e2e test, and makes
// sure no mount outlives the test: teardown sends SIGTERM (clean unmount), waits, then falls back
// to `fusermount -uz` + SIGKILL. The test process itself may then use fs freely.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import type { VfsOptions, DriveStatus } from '../../src/vfs/api.js';
import type { MountOptions } from '../../src/fuse/mount.js';
import { isMounted, lazyUnmountSync } from '../../src/util/mounts.js';
import { tempDir } from '../support/files.js';

export type RemoteKind = 'memory' | 'maxxo' | 'vboxx';

export interface ChildConfig {
  kind: RemoteKind;
  server?: string;
  user?: string;
  /** Travels on the child's stdin only. */
  password?: string;
  /** vBoxx: mount one root. */
  root?: string;
  mountpoint: string;
  accountId: string;
  cacheDir: string;
  vfs?: Partial<Omit<VfsOptions, 'log'>>;
  mount?: Partial<Omit<MountOptions, 'log' | 'accountId'>>;
  client?: { timeoutMs?: number; maxAttempts?: number; maxRetryTimeMs?: number; concurrency?: number; rsyncExtraArgs?: string[]; modtimes?: boolean };
  logLevel?: string;
}

export interface MountHandle {
  mnt: string;
  cacheDir: string;
  cfg: ChildConfig;
  child: ChildProcess;
  /** Waits until the drive delivered every pending change to the server. */
  flush(): Promise<void>;
  status(): Promise<DriveStatus>;
  /** SIGTERM: the child flushes, unmounts cleanly and exits; resolves with its exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: leaves a dead mount behind, like a crash. */
  kill9(): Promise<void>;
  /** Everything the child wrote to stderr so far (its log). */
  stderr(): string;
}

const CHILD = fileURLToPath(new URL('./mount-child.js', import.meta.url));
const live = new Set<string>();
const children = new Set<ChildProcess>();

export { isMounted };

function forceUnmount(mnt: string): void {
  if (isMounted(mnt)) lazyUnmountSync(mnt);
}

// Last resort if the test process dies without teardown (ava timeout, crash).
process.on('exit', () => {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      // gone
    }
  }
  for (const m of live) forceUnmount(m);
});

export { tempDir };

const waitExit = (c: ChildProcess, ms: number) =>
  new Promise<boolean>((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    c.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });

/**
 * Spawns the mount child and resolves once the drive is live. Registers teardown on t, so the
 * mount goes away even when the test fails.
 */
export async function mountChild(t: ExecutionContext, cfg: ChildConfig, opts: { timeoutMs?: number; noMkdir?: boolean } = {}): Promise<MountHandle> {
  // noMkdir: the mountpoint may be a hung mount, where even this stat would block us for good.
  if (!opts.noMkdir) {
    try {
      fs.mkdirSync(cfg.mountpoint, { recursive: true });
    } catch {
      // A dead mount left by a killed child (ENOTCONN): the drive itself must clean it.
    }
  }
  const child = spawn(process.execPath, [CHILD], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  live.add(cfg.mountpoint);
  let err = '';
  let out = '';
  const waiters: Array<{ re: RegExp; resolve: (m: RegExpMatchArray) => void }> = [];
  // CM_E2E_MOUNT_LOG_DIR: every mount's whole log in a file of its own (with CM_E2E_LOG=debug, for
  // a soak's rare finding: the in-memory tail keeps 100-200 KB)
  const logDir = process.env.CM_E2E_MOUNT_LOG_DIR;
  const logFile = logDir ? `${logDir}/${cfg.mountpoint.split('/').filter(Boolean).join('_')}.log` : undefined;
  child.stderr!.on('data', (d) => {
    err += d;
    if (err.length > 200_000) err = err.slice(-100_000);
    if (logFile) fs.appendFileSync(logFile, d);
  });
  child.stdout!.on('data', (d) => {
    out += d;
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      const i = waiters.findIndex((w) => w.re.test(line));
      if (i >= 0) {
        const w = waiters.splice(i, 1)[0]!;
        w.resolve(line.match(w.re)!);
      }
    }
  });
  child.stdin!.on('error', () => {});
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    children.delete(child);
    resolve(code);
  }));
  const waitLine = (re: RegExp, ms: number, what: string) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: no answer from the mount child in ${ms} ms; stderr:\n${err}`)), ms);
      waiters.push({ re, resolve: (m) => { clearTimeout(timer); resolve(m.input!); } });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${what}: mount child exited (${code}); stderr:\n${err}`));
      });
    });

  let stopped = false;
  const stop = async (): Promise<number | null> => {
    if (stopped || child.exitCode !== null) return child.exitCode;
    stopped = true;
    child.kill('SIGTERM');
    const ok = await waitExit(child, 45_000);
    if (!ok) {
      process.stderr.write(`mount child for ${cfg.mountpoint} did not exit 45 s after SIGTERM; forcing. Its log:\n${err.slice(-3000)}\n`);
      forceUnmount(cfg.mountpoint);
      child.kill('SIGKILL');
      await waitExit(child, 10_000);
    }
    return child.exitCode;
  };

  t.teardown(async () => {
    // a failure seen only on CI is explained by the drive's own log, or not at all
    if (!t.passed && err) process.stderr.write(`\n--- log of the mount at ${cfg.mountpoint} (test failed) ---\n${err.slice(-6000)}\n---\n`);
    if (child.exitCode === null && child.signalCode === null) await stop();
    forceUnmount(cfg.mountpoint);
    live.delete(cfg.mountpoint);
  });

  const ready = waitLine(/^(MOUNTED|ERROR) /, opts.timeoutMs ?? 60_000, 'mount');
  child.stdin!.write(JSON.stringify(cfg) + '\n');
  const line = await ready;
  if (line.startsWith('ERROR ')) throw new Error(`mount failed: ${line.slice(6)}\n${err}`);

  return {
    mnt: cfg.mountpoint,
    cacheDir: cfg.cacheDir,
    cfg,
    child,
    async flush() {
      const p = waitLine(/^(FLUSHED|FLUSH_ERROR)/, 120_000, 'flush');
      child.stdin!.write('FLUSH\n');
      const l = await p;
      if (l.startsWith('FLUSH_ERROR')) throw new Error(`flush: ${l}`);
    },
    async status() {
      const p = waitLine(/^STATUS /, 30_000, 'status');
      child.stdin!.write('STATUS\n');
      return JSON.parse((await p).slice(7)) as DriveStatus;
    },
    stop,
    async kill9() {
      stopped = true;
      child.kill('SIGKILL');
      await waitExit(child, 10_000);
    },
    stderr: () => err,
  };
}
