// Spawns test/lowlevel/memfs-child.ts for a test and guarantees teardown: {"cmd":"unmount"},
// then SIGTERM, then fusermount3 -uz + SIGKILL. Commands go one at a time (one JSON line each way).
import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import type { MountOptions } from '../../src/fuse/lowlevel.js';
import type { MemfsOptions } from './memfs.js';

const CHILD = fileURLToPath(new URL('./memfs-child.js', import.meta.url));

export interface MemfsHandle {
  mnt: string;
  child: ChildProcess;
  ready: Record<string, any>;
  cmd(c: Record<string, unknown>): Promise<Record<string, any>>;
  close(): Promise<void>;
  stderr(): string;
}

function mounted(mnt: string): boolean {
  try {
    return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);
  } catch {
    return false;
  }
}

export function forceUnmount(mnt: string) {
  if (!mounted(mnt)) return;
  try {
    execFileSync('fusermount3', ['-uz', mnt], { stdio: 'ignore', timeout: 10_000 });
  } catch {
    // already gone
  }
}

export function tmpMountpoint(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `cmll-${tag}-`));
}

export async function startMemfs(t: ExecutionContext | undefined, opts: { mount?: MountOptions; fs?: MemfsOptions; mnt?: string; bigFile?: { path: string; splice: boolean; async?: boolean } } = {}): Promise<MemfsHandle> {
  const mnt = opts.mnt ?? tmpMountpoint('m');
  // CMLL_READER=poll: the binding's tests again with the JS thread reading requests (poll.test.ts)
  const mount: MountOptions = { ...(process.env.CMLL_READER === 'poll' ? { reader: 'poll', spinUs: 200 } : {}), ...opts.mount };
  const child = spawn(process.execPath, ['--expose-gc', CHILD, JSON.stringify({ mnt, mount, fs: opts.fs, bigFile: opts.bigFile })], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const rl = readline.createInterface({ input: child.stdout! });
  const waiting: ((v: Record<string, any>) => void)[] = [];
  rl.on('line', (l) => waiting.shift()?.(JSON.parse(l)));
  const next = () => new Promise<Record<string, any>>((resolve, reject) => {
    // removed with the answer: one listener per command made Node warn at the 11th
    const onExit = (code: number | null) => reject(new Error(`memfs child exited (${code}): ${err}`));
    child.once('exit', onExit);
    waiting.push((v) => { child.off('exit', onExit); resolve(v); });
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.stdin!.end(JSON.stringify({ cmd: 'unmount' }) + '\n');
      const timer = setTimeout(() => child.kill('SIGTERM'), 10_000);
      const killer = setTimeout(() => { forceUnmount(mnt); child.kill('SIGKILL'); }, 20_000);
      await exited;
      clearTimeout(timer);
      clearTimeout(killer);
    }
    forceUnmount(mnt);
    fs.rmSync(mnt, { recursive: true, force: true });
  };
  t?.teardown(close);
  const ready = await next();
  if (!ready.ready) {
    await close();
    throw new Error(`memfs child did not mount: ${JSON.stringify(ready)} ${err}`);
  }
  let chain: Promise<unknown> = Promise.resolve();
  const cmd = (c: Record<string, unknown>) => {
    const p = chain.then(() => {
      const r = next();
      child.stdin!.write(JSON.stringify(c) + '\n');
      return r;
    });
    chain = p.catch(() => undefined);
    return p;
  };
  return { mnt, child, ready, cmd, close, stderr: () => err };
}

/** Runs a shell command (in a child process: safe against our own mounts). */
export function sh(cmd: string, opts: { timeoutMs?: number } = {}): Promise<{ out: string; err: string; code: number }> {
  return new Promise((resolve) => {
    execFile('bash', ['-c', cmd], { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 1 << 26 }, (e, out, err) => {
      resolve({ out: String(out), err: String(err), code: e ? (typeof e.code === 'number' ? e.code : 1) : 0 });
    });
  });
}
