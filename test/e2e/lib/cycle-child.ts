// The mount process of the drive stress (test/e2e/libfuse3/stress.test.ts, scripts/soak --cycles):
// one process mounts the drive (libfuse3 backend) `cycles` times in a row on a fresh remote each
// time. The first mount takes `workers` Python processes running test/support/stress-worker.py,
// mix drive (`iters` iterations each: mostly write/read/stat/listdir, some rename/unlink/mkdir, names
// racing in a shared folder); every later one a little real I/O (write, read back, ls -l) through a
// shell.
// After each unmount it samples its own threads (/proc/self/task), fds (/proc/self/fd) and RSS
// (after a gc() when run with --expose-gc). Config: one JSON line on stdin (the password travels
// there only). Output: "SAMPLE <json>" per cycle, then "RESULT <json>".
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createLogger, type Level } from '../../../src/log.js';
import { mountDrive } from '../../../src/fuse/mount.js';
import type { Remote } from '../../../src/remote/types.js';

export interface CycleConfig {
  kind: 'maxxo' | 'vboxx';
  server: string;
  user: string;
  password: string;
  mountpoint: string;
  cacheDir: string;
  cycles: number;
  workers: number;
  iters: number;
  logLevel?: string;
}

export interface ProcSample { cycle: number; threads: number; fds: number; rssMiB: number; ms: number }

const WORKER = fileURLToPath(new URL('../../../../test/support/stress-worker.py', import.meta.url));

function sample(cycle: number, ms: number): ProcSample {
  (globalThis as { gc?: () => void }).gc?.();
  const rss = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return {
    cycle,
    threads: fs.readdirSync('/proc/self/task').length,
    fds: fs.readdirSync('/proc/self/fd').length,
    rssMiB: Math.round(Number(rss?.[1] ?? 0) / 102.4) / 10,
    ms,
  };
}

function sh(cmd: string, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('close', (code) => resolve({ code, out, err }));
  });
}

async function createRemote(cfg: CycleConfig, log: ReturnType<typeof createLogger>): Promise<Remote> {
  const client = { server: cfg.server, user: cfg.user, password: cfg.password, log, timeoutMs: 20_000, maxRetryTimeMs: 25_000 };
  if (cfg.kind === 'maxxo') return (await import('../../../src/remote/maxxo/index.js')).createMaxxoRemote(client) as Remote;
  return (await import('../../../src/remote/vboxx/index.js')).createVboxxRemote(client) as Remote;
}

async function main(): Promise<void> {
  const rl = readline.createInterface({ input: process.stdin });
  const first = await rl[Symbol.asyncIterator]().next();
  rl.close();
  const cfg = JSON.parse(first.value as string) as CycleConfig;
  const log = createLogger((cfg.logLevel ?? 'warn') as Level);
  const samples: ProcSample[] = [sample(0, 0)];
  let syscalls = 0;
  let stressMs = 0;
  let flushMs = 0;
  for (let c = 1; c <= cfg.cycles; c++) {
    const t0 = Date.now();
    const remote = await createRemote(cfg, log);
    const drive = await mountDrive(remote, cfg.mountpoint, {
      accountId: `${cfg.kind}-cycles`, cacheDir: cfg.cacheDir, log, backend: 'libfuse3', writebackDelayMs: 100,
    });
    const base = cfg.kind === 'vboxx' ? `${cfg.mountpoint}/Files` : cfg.mountpoint;
    const dir = `${base}/cyc-${process.pid}`;
    try {
      if (c === 1 && cfg.workers > 0) {
        const s0 = Date.now();
        await sh('mkdir', ['-p', dir]);
        const rs = await Promise.all(Array.from({ length: cfg.workers }, (_, w) => sh('python3', [WORKER, dir, String(w), String(cfg.iters), 'drive'])));
        stressMs = Date.now() - s0;
        for (const r of rs) if (r.code !== 0) throw new Error(`stress worker failed: ${r.err.slice(-500)}`);
        syscalls = rs.reduce((a, r) => a + Number(r.out.trim()), 0);
        const f0 = Date.now();
        await drive.flush();
        flushMs = Date.now() - f0;
        const st = await sh('sh', ['-c', 'ls -A "$1"', 'sh', dir]);
        if (st.out.trim() !== 'shared') throw new Error(`left after the workers: ${st.out}`);
      } else {
        const r = await sh('sh', ['-c', 'mkdir -p "$1" && echo "cycle $2" > "$1/f$2" && cat "$1/f$2" && ls -l "$1" >/dev/null && rm "$1/f$2"', 'sh', dir, String(c)]);
        if (r.code !== 0 || r.out.trim() !== `cycle ${c}`) throw new Error(`cycle ${c} I/O: ${r.code} ${r.out} ${r.err}`);
      }
      if (c === cfg.cycles) await sh('rm', ['-rf', dir]);
      const b = drive.backend;
      if (b !== 'libfuse3') throw new Error(`backend ${b}`);
    } finally {
      await drive.unmount();
    }
    // Sockets of the unmounted drive's connections may still be closing (measured here: up to 8
    // still open right after unmount(), gone moments later; a leak would stay): the sample waits,
    // up to 3 s, for the fds to come back to what the first cycle left, and the first cycle's own
    // sample waits until the count holds still for 300 ms (it once kept 3 closing sockets, and a
    // later cycle that closed all of its own then had fewer than that "floor").
    const ms = Date.now() - t0;
    const floor = samples[1]?.fds;
    const fds = () => fs.readdirSync('/proc/self/fd').length;
    for (let i = 0, last = fds(), still = 0; i < 30; i++) {
      if (floor !== undefined ? last <= floor : still >= 3) break;
      await new Promise((r) => setTimeout(r, 100));
      const n = fds();
      still = n === last ? still + 1 : 0;
      last = n;
    }
    const s = sample(c, ms);
    samples.push(s);
    process.stdout.write(`SAMPLE ${JSON.stringify(s)}\n`);
  }
  process.stdout.write(`RESULT ${JSON.stringify({ samples, syscalls, stressMs, flushMs })}\n`);
}

main().then(() => process.exit(0), (e) => {
  process.stdout.write(`ERROR ${String((e as Error)?.stack ?? e).replace(/\n/g, ' | ')}\n`);
  process.exit(2);
});
