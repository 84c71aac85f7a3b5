// One benchmark workload, run in its own process: a process that runs a FUSE mount must never
// call into it synchronously, and a separate process also keeps the harness's own event loop out
// of the figure. Usage: node workload.js '<json job>'; prints one JSON line with the result.
// Times are taken here, around the operation only (not Node's start-up).
import { spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readSync, readdirSync, renameSync, writeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

export type Job =
  | { op: 'find'; dir: string }
  | { op: 'lsl'; dir: string }
  | { op: 'catdir'; dir: string; hash?: boolean }
  | { op: 'read'; file: string; hash?: boolean }
  | { op: 'write'; file: string; bytes: number }
  | { op: 'create'; dir: string; count: number; bytes: number; name: string }
  | { op: 'rename'; from: string; to: string }
  | { op: 'rmrf'; dir: string }
  | { op: 'ls'; dir: string }
  /** One HTTP GET, body counted and dropped; the URL comes from env BENCH_URL (it may hold a token). */
  | { op: 'get'; expect: number }
  /** rsync pull of one file; the password comes from env RSYNC_PASSWORD, the source from env BENCH_URL. */
  | { op: 'rsync'; dest: string; expect: number };

export interface JobResult {
  seconds: number;
  bytes?: number;
  entries?: number;
  sha256?: string;
  /** write: seconds until the last write() returned, and until fsync() returned. */
  writeSeconds?: number;
  fsyncSeconds?: number;
  names?: string[];
}

const BUF = 1024 * 1024;

function readAll(path: string, buf: Buffer, hash?: ReturnType<typeof createHash>): number {
  const fd = openSync(path, 'r');
  let total = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      if (hash) hash.update(buf.subarray(0, n));
      total += n;
    }
  } finally {
    closeSync(fd);
  }
  return total;
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 512 * 1024 * 1024 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} exited ${r.status}: ${(r.stderr ?? '').trim().slice(0, 500)}`);
  return r.stdout;
}

const lines = (s: string) => s.split('\n').filter((l) => l.length > 0).length;

export async function runJob(job: Job): Promise<JobResult> {
  const t0 = performance.now();
  const secs = () => (performance.now() - t0) / 1000;
  switch (job.op) {
    case 'find': {
      const out = run('find', [job.dir]);
      return { seconds: secs(), entries: lines(out) };
    }
    case 'lsl': {
      const out = run('ls', ['-l', job.dir]);
      // "total N" first line.
      return { seconds: secs(), entries: lines(out) - 1 };
    }
    case 'ls': {
      const names = readdirSync(job.dir).sort();
      return { seconds: secs(), entries: names.length, names };
    }
    case 'catdir': {
      // What `cat dir/*` does: one listing, then open/read/close per file in name order.
      const buf = Buffer.allocUnsafe(128 * 1024);
      const hash = job.hash ? createHash('sha256') : undefined;
      const names = readdirSync(job.dir).sort();
      let bytes = 0;
      for (const n of names) bytes += readAll(join(job.dir, n), buf, hash);
      return { seconds: secs(), bytes, entries: names.length, sha256: hash?.digest('hex') };
    }
    case 'read': {
      if (job.hash) {
        const hash = createHash('sha256');
        const bytes = readAll(job.file, Buffer.allocUnsafe(BUF), hash);
        return { seconds: secs(), bytes, sha256: hash.digest('hex') };
      }
      // dd, not a Node read loop: Node's copy into JS memory costs about as much as a
      // page-cache re-read itself (0.22 s against dd's 0.08 s for 512 MiB here).
      const r = spawnSync('dd', [`if=${job.file}`, 'of=/dev/null', 'bs=1M'], { encoding: 'utf8' });
      const seconds = secs();
      if (r.status !== 0) throw new Error(`dd exited ${r.status}: ${(r.stderr ?? '').trim().slice(0, 300)}`);
      const m = /^(\d+) bytes/m.exec(r.stderr ?? '');
      return { seconds, bytes: m ? Number(m[1]) : -1 };
    }
    case 'write': {
      // Random bytes prepared before the clock starts; each 1 MiB chunk differs (its index is
      // stamped in) so nothing on the way can deduplicate.
      const pool = Buffer.allocUnsafe(BUF);
      randomFillSync(pool);
      const hash = createHash('sha256');
      const start = performance.now();
      const fd = openSync(job.file, 'w', 0o644);
      let left = job.bytes;
      let i = 0;
      while (left > 0) {
        const n = Math.min(left, BUF);
        pool.writeUInt32LE(i++, 0);
        let off = 0;
        while (off < n) off += writeSync(fd, pool, off, n - off);
        hash.update(pool.subarray(0, n));
        left -= n;
      }
      const wrote = performance.now();
      fsyncSync(fd);
      const synced = performance.now();
      closeSync(fd);
      const end = performance.now();
      return {
        seconds: (end - start) / 1000, writeSeconds: (wrote - start) / 1000, fsyncSeconds: (synced - start) / 1000,
        bytes: job.bytes, sha256: hash.digest('hex'),
      };
    }
    case 'create': {
      const body = Buffer.alloc(job.bytes, 'x');
      mkdirSync(job.dir);
      for (let i = 0; i < job.count; i++) writeFileSync(join(job.dir, `${job.name}${String(i).padStart(4, '0')}.txt`), body);
      return { seconds: secs(), entries: job.count };
    }
    case 'rename': {
      renameSync(job.from, job.to);
      return { seconds: secs() };
    }
    case 'rmrf': {
      run('rm', ['-rf', job.dir]);
      return { seconds: secs() };
    }
    case 'get': {
      const url = process.env.BENCH_URL;
      if (!url) throw new Error('BENCH_URL not set');
      if (spawnSync('sh', ['-c', 'command -v curl'], { stdio: 'ignore' }).status === 0) {
        // curl (C, one stream) rather than Node's fetch, whose stream overhead would lower the
        // wire figure on a small machine. The URL goes in on stdin (-K -): it may carry a token.
        const start = performance.now();
        const r = spawnSync('curl', ['-sS', '--fail', '-o', '/dev/null', '-w', '%{size_download}', '-K', '-'], {
          input: `url = "${url.replace(/["\\]/g, '\\$&')}"\n`, encoding: 'utf8',
        });
        const seconds = (performance.now() - start) / 1000;
        if (r.status !== 0) throw new Error(`curl: ${(r.stderr ?? '').trim().slice(0, 300)}`);
        const bytes = Number(r.stdout.trim());
        if (bytes !== job.expect) throw new Error(`GET returned ${bytes} bytes, expected ${job.expect}`);
        return { seconds, bytes };
      }
      const start = performance.now();
      const res = await fetch(url);
      if (res.status !== 200 || !res.body) throw new Error(`GET answered ${res.status}`);
      let bytes = 0;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) bytes += chunk.length;
      if (bytes !== job.expect) throw new Error(`GET returned ${bytes} bytes, expected ${job.expect}`);
      return { seconds: (performance.now() - start) / 1000, bytes };
    }
    case 'rsync': {
      const src = process.env.BENCH_URL;
      if (!src) throw new Error('BENCH_URL not set');
      run('rsync', ['--inplace', '--whole-file', src, job.dest]);
      return { seconds: secs(), bytes: job.expect };
    }
  }
}

const arg = process.argv[2];
if (arg && process.argv[1]?.endsWith('workload.js')) {
  runJob(JSON.parse(arg) as Job).then(
    (r) => { process.stdout.write(`${JSON.stringify(r)}\n`); },
    (e) => { process.stderr.write(`workload: ${(e as Error).message}\n`); process.exit(1); },
  );
}
