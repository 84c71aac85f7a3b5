// Bounded stress of the libfuse 3 binding: several processes hammer one mount with thousands of
// mixed operations, then the server process mounts and unmounts a second file system many times.
// Checked: every worker's data comes back, no request is left unanswered, and the server's fds,
// threads and RSS come back to where they were (no leaked reader threads, /dev/fuse fds, buffers).
// Sizes: CMLL_WORKERS (4), CMLL_ITERS (400 per worker), CMLL_CYCLES (25).
import test from 'ava';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { lowlevelAvailable } from '../../src/fuse/lowlevel.js';
import { sh, startMemfs, tmpMountpoint, forceUnmount } from './lib.js';

const avail = lowlevelAvailable();
const run = avail.ok ? test.serial : test.serial.skip;
const WORKERS = Number(process.env.CMLL_WORKERS ?? 4);
const ITERS = Number(process.env.CMLL_ITERS ?? 400);
const CYCLES = Number(process.env.CMLL_CYCLES ?? 25);
const WORKER = fileURLToPath(new URL('../../../test/support/stress-worker.py', import.meta.url));

// both ways of reading /dev/fuse: two reader threads, and the JS thread itself (poll, spinning)
for (const [name, mount] of [['reader threads', { threads: 2, reader: 'threads' }], ['poll', { reader: 'poll', spinUs: 200 }]] as const) {
  run(`${name}: ${WORKERS} processes x ${ITERS} iterations on one mount, then ${CYCLES} mount/unmount cycles`, async (t) => {
    const h = await startMemfs(t, { mount });
    const s0 = await h.cmd({ cmd: 'stats' });
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: WORKERS }, (_, w) =>
      sh(`python3 ${WORKER} ${h.mnt} ${w} ${ITERS} binding`, { timeoutMs: 180_000 })));
    const secs = (Date.now() - started) / 1000;
    for (const r of results) t.is(r.code, 0, r.err);
    const ops = results.reduce((a, r) => a + Number(r.out.trim()), 0);
    const s1 = await h.cmd({ cmd: 'stats' });
    const fuseOps = Object.values(s1.native.received as Record<string, number>).reduce((a, b) => a + b, 0);
    t.log(`${ops} syscalls -> ${fuseOps} FUSE requests in ${secs.toFixed(1)} s; ${s1.native.batches} JS wake-ups, largest batch ${s1.native.maxBatch}`);
    // 15+ syscalls an iteration in the binding mix (open, read/write and close counted apart)
    t.true(ops >= WORKERS * ITERS * 15, `${ops} syscalls`);
    t.is(s1.pending, 0, 'every request answered');
    t.is(s1.native.outstanding, 0);
    // what the workers made is gone again ("shared" stays); unlinked inodes left once forgotten
    let s = s1;
    for (let i = 0; i < 50 && s.nodes > s0.nodes + 1; i++) {
      await new Promise((r) => setTimeout(r, 100));
      s = await h.cmd({ cmd: 'stats' });
    }
    t.is(s.nodes, s0.nodes + 1);
    t.is(s.proc.threads, s0.proc.threads, 'reader threads are fixed');
    t.is(s.proc.fds, s0.proc.fds);

    const mnt2 = tmpMountpoint('cyc');
    t.teardown(() => {
      forceUnmount(mnt2);
      fs.rmSync(mnt2, { recursive: true, force: true });
    });
    const c = await h.cmd({ cmd: 'cycles', n: CYCLES, mnt: mnt2 });
    t.falsy(c.error, c.error);
    t.log(`cycles: fds ${c.before.fds} -> ${c.first.fds} -> ${c.after.fds}; threads ${c.before.threads} -> ${c.first.threads} -> ${c.after.threads}; rss ${(c.first.rss / 2 ** 20).toFixed(0)} -> ${(c.after.rss / 2 ** 20).toFixed(0)} MiB`);
    t.is(c.after.fds, c.first.fds, 'no /dev/fuse or pipe fd leaked');
    t.is(c.after.threads, c.first.threads, 'every reader thread joined');
    // after a gc() in the child; malloc arenas of short-lived threads and V8's heap move RSS by
    // ~20 MiB either way (150 cycles measured flat), so this bound only catches a leak of the order
    // of a receive buffer (1 MiB) per cycle; fds and threads above are the exact checks
    t.true(c.after.rss - c.first.rss < 40 * 2 ** 20, `RSS grew ${((c.after.rss - c.first.rss) / 2 ** 20).toFixed(1)} MiB`);
    t.false((await sh(`grep -c ' ${mnt2} ' /proc/mounts`)).out.trim() !== '0');
  });
}
