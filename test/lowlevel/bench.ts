// `cat` of a 512 MiB file served from memory: fuse-native (libfuse 2, do-nothing fs) against our
// libfuse 3 binding (memfs), each mounted in its own child process. Not part of npm test:
//   node dist/test/lowlevel/bench.js [MiB=512] [runs=5]
// Prints seconds per run (min and median) for each setup; native-notes/lowlevel.md keeps figures.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import readline from 'node:readline';
import { sh, startMemfs, tmpMountpoint, forceUnmount } from './lib.js';

const MIB = Number(process.argv[2] ?? 512);
const RUNS = Number(process.argv[3] ?? 5);
const size = MIB << 20;

async function timeCat(file: string): Promise<number[]> {
  const times: number[] = [];
  await sh(`cat ${file} > /dev/null`); // warm the code paths, not the page cache (each open drops it)
  for (let i = 0; i < RUNS; i++) {
    const r = await sh(`TIMEFORMAT=%R; { time cat ${file} > /dev/null; } 2>&1`, { timeoutMs: 120_000 });
    times.push(Number(r.out.trim()));
  }
  return times;
}

const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : undefined;

function report(name: string, t: number[], extra = '') {
  const s = [...t].sort((a, b) => a - b);
  console.log(`${name.padEnd(44)} min ${s[0]!.toFixed(3)} s  median ${s[Math.floor(s.length / 2)]!.toFixed(3)} s  (${(MIB / s[0]!).toFixed(0)} MiB/s) ${extra}`);
}

async function fuseNative() {
  if (only && !only.test('fuse-native')) return;
  const mnt = tmpMountpoint('fn');
  const child = spawn(process.execPath, [fileURLToPath(new URL('./fuse-native-child.js', import.meta.url)), mnt, String(size)], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      readline.createInterface({ input: child.stdout! }).once('line', () => resolve());
      child.once('exit', (c) => reject(new Error(`fuse-native child exited ${c}`)));
    });
    report('fuse-native 2.2.6 (libfuse 2), do-nothing fs', await timeCat(`${mnt}/big`));
  } finally {
    child.stdin!.end();
    await new Promise((r) => child.once('exit', r));
    forceUnmount(mnt);
  }
}

async function ours(label: string, mount: Record<string, unknown>, bigFile?: { path: string; splice: boolean }) {
  if (only && !only.test(label)) return;
  const h = await startMemfs(undefined, { fs: { bigFileBytes: size }, mount, bigFile });
  try {
    await h.cmd({ cmd: 'reset' });
    const t = await timeCat(`${h.mnt}/big`);
    const s = await h.cmd({ cmd: 'stats' });
    report(label, t, `reads/run ${Math.round(s.readSizes.length / (RUNS + 1))}, max ${s.readSizes.length ? Math.max(...s.readSizes) >> 10 : 0} KiB, wake-ups/run ${Math.round(s.native.batches / (RUNS + 1))}`);
  } finally {
    await h.close();
  }
}

await fuseNative();
await ours('cmfuse3 (libfuse 3 low-level), read-ahead 1 MiB', {});
await ours('cmfuse3, read-ahead 128 KiB (kernel default)', { readAheadKb: 0 });
await ours('cmfuse3, 2 reader threads, read-ahead 1 MiB', { threads: 2 });
// served from a file of ours (as the vfs's cache files would be) by replyFd: read+write vs splice
const shm = `/dev/shm/cmll-bench-${process.pid}`;
await sh(`head -c ${size} /dev/zero > ${shm}`);
try {
  await ours('cmfuse3, replyFd from a tmpfs file, no splice', {}, { path: shm, splice: false });
  await ours('cmfuse3, replyFd from a tmpfs file, splice', { splice: true }, { path: shm, splice: true });
} finally {
  await sh(`rm -f ${shm}`);
}
