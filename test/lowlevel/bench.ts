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

// CPU seconds (user+sys) a process has used so far: on a shared, loaded machine wall time says
// little, CPU per 512 MiB says what each design costs.
async function cpuOf(pid: number): Promise<number> {
  const f = (await sh(`cat /proc/${pid}/stat`)).out.split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

let serverCpu: number[] = [];
let catCpu: number[] = [];

async function timeCat(file: string, pid: number): Promise<number[]> {
  const times: number[] = [];
  serverCpu = [];
  catCpu = [];
  await sh(`cat ${file} > /dev/null`); // warm the code paths, not the page cache (each open drops it)
  for (let i = 0; i < RUNS; i++) {
    const c0 = await cpuOf(pid);
    const r = await sh(`TIMEFORMAT='%R %U %S'; { time cat ${file} > /dev/null; } 2>&1`, { timeoutMs: 120_000 });
    serverCpu.push((await cpuOf(pid)) - c0);
    const [real, user, sys] = r.out.trim().split(' ').map(Number);
    times.push(real!);
    catCpu.push(user! + sys!);
  }
  return times;
}

const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : undefined;

function report(name: string, t: number[], extra = '') {
  const s = [...t].sort((a, b) => a - b);
  console.log(`${name.padEnd(44)} wall min ${s[0]!.toFixed(3)} s, median ${s[Math.floor(s.length / 2)]!.toFixed(3)} s (${(MIB / s[0]!).toFixed(0)} MiB/s); CPU median: server ${med(serverCpu).toFixed(2)} s, cat ${med(catCpu).toFixed(2)} s; ${extra}`);
}

// 200 files of 1 KiB made by one Python process (its own timer: no interpreter start-up)
async function create200(dir: string): Promise<number[]> {
  const t: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await sh(`python3 -c "
import time, os
d = '${dir}/c${i}-'
t = time.perf_counter()
for k in range(200):
    with open(d + str(k), 'wb') as f:
        f.write(b'x' * 1024)
print(time.perf_counter() - t)"`);
    t.push(Number(r.out.trim()));
  }
  return t;
}

function reportCreate(name: string, t: number[]) {
  console.log(`${name.padEnd(44)} create 200 x 1 KiB: min ${Math.min(...t).toFixed(3)} s, median ${med(t).toFixed(3)} s`);
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
    report('fuse-native 2.2.6 (libfuse 2), do-nothing fs', await timeCat(`${mnt}/big`, child.pid!));
    reportCreate('fuse-native 2.2.6 (libfuse 2), do-nothing fs', await create200(mnt));
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
    const t = await timeCat(`${h.mnt}/big`, h.ready.pid);
    const s = await h.cmd({ cmd: 'stats' });
    if (!bigFile && !mount.threads && mount.readAheadKb === undefined) reportCreate(label, await create200(h.mnt));
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
