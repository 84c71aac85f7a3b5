// The drive on the libfuse3 backend under load, bounded for npm test (the binding alone is
// stressed in test/lowlevel/stress.test.ts; the long run is `scripts/soak --cycles 200`): one
// mount process takes 3 Python processes of mixed operations racing on shared names, then mounts
// and unmounts the drive again and again in the same process. Checked: every worker's data came
// back and nothing is left; the process's threads and fds after the last unmount are those after
// the first (no reader thread, /dev/fuse fd or socket leaked per mount); RSS is reported, not
// asserted (V8 heap and malloc arenas move it by tens of MiB, see native-notes/lowlevel.md).
// Sizes: CM_STRESS_WORKERS (3), CM_STRESS_ITERS (20), CM_STRESS_CYCLES (10).
import test from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { lowlevelAvailable } from '../../../src/fuse/lowlevel.js';
import { isMounted, lazyUnmount } from '../../../src/util/mounts.js';
import { tempDir } from '../../helpers/mount.js';
import { DEMO, useServers } from '../lib/services.js';
import type { CycleConfig, ProcSample } from '../lib/cycle-child.js';

const servers = useServers(test);
const CHILD = fileURLToPath(new URL('../lib/cycle-child.js', import.meta.url));
const WORKERS = Number(process.env.CM_STRESS_WORKERS ?? 3);
const ITERS = Number(process.env.CM_STRESS_ITERS ?? 20);
const CYCLES = Number(process.env.CM_STRESS_CYCLES ?? 10);
const run = lowlevelAvailable().ok ? test.serial : test.serial.skip;

run(`maxxo: ${WORKERS} processes x ${ITERS} iterations, then ${CYCLES} mount/unmount cycles in one process: no thread or fd leaked`, async (t) => {
  const mnt = tempDir(t, 'cm-cyc-mnt-');
  const cfg: CycleConfig = {
    kind: 'maxxo', server: servers.url, ...DEMO.maxxo, mountpoint: mnt, cacheDir: tempDir(t, 'cm-cyc-cache-'),
    cycles: CYCLES, workers: WORKERS, iters: ITERS,
  };
  const child = spawn(process.execPath, ['--expose-gc', CHILD], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    if (isMounted(mnt)) await lazyUnmount(mnt);
  });
  child.stdin.end(JSON.stringify(cfg) + '\n');
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  t.truthy(line, out.slice(-3000));
  t.is(code, 0, out.slice(-3000));
  const res = JSON.parse(line!.slice(7)) as { samples: ProcSample[]; syscalls: number; stressMs: number; flushMs: number };
  const [s0, first, ...rest] = res.samples;
  const last = rest.at(-1) ?? first!;
  t.log(`${res.syscalls} syscalls from ${WORKERS} processes in ${(res.stressMs / 1000).toFixed(1)} s, then flushed in ${(res.flushMs / 1000).toFixed(1)} s`);
  t.log(`threads ${s0!.threads} -> ${first!.threads} -> ${last.threads}; fds ${s0!.fds} -> ${first!.fds} -> ${last.fds}; ` +
    `RSS ${s0!.rssMiB} -> ${first!.rssMiB} -> ${last.rssMiB} MiB (max ${Math.max(...res.samples.map((s) => s.rssMiB))}); ` +
    `cycle ms median ${rest.map((s) => s.ms).sort((a, b) => a - b)[rest.length >> 1] ?? '-'}`);
  t.true(res.syscalls >= WORKERS * ITERS * 30, `${res.syscalls} syscalls`);
  // (fewer is fine: sockets the first cycle's sample still saw closing)
  t.true(last.fds <= first!.fds, `no /dev/fuse, socket or cache fd left per mount: ${first!.fds} -> ${last.fds}`);
  t.is(last.threads, first!.threads, 'every reader thread joined');
  t.false(isMounted(mnt));
});
