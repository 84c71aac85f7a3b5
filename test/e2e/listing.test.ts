// `ls -l` of a folder with 1,000 files costs ONE listing call at the server (counted by the
// reference server), with no per-entry stat: readdir fills the attribute cache.
import test from 'ava';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createVboxxRemote } from '../../src/remote/vboxx/index.js';
import { useServers, mountService, KINDS, uniq, run, countRoutes, DEMO, type Kind } from './lib/services.js';

const servers = useServers(test);

const N = 1000;
const sizeOf = (i: number) => (i * 37) % 5000;

/** Creates N files straight on the server side (not through a mount: that is what we measure). */
async function seed(kind: Kind, rel: string): Promise<void> {
  if (kind === 'maxxo') {
    const dir = path.join(await servers.maxxoFolder(), rel);
    await fsp.mkdir(dir, { recursive: true });
    for (let i = 0; i < N; i++) await fsp.writeFile(path.join(dir, `file ${i}.txt`), Buffer.alloc(sizeOf(i), 97));
    return;
  }
  const remote = createVboxxRemote({ server: servers.url, user: DEMO.vboxx.user, password: DEMO.vboxx.password });
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cm-seed-'));
  try {
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < N) {
        const i = next++;
        const local = path.join(tmp, String(i));
        await fsp.writeFile(local, Buffer.alloc(sizeOf(i), 97));
        await remote.upload(local, `/Files/${rel}/file ${i}.txt`);
      }
    }));
  } finally {
    await remote.close();
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

const LIST_ROUTE: Record<Kind, RegExp> = { maxxo: /ops\/list/, vboxx: /metadata/ };
const STAT_ROUTE: Record<Kind, RegExp> = { maxxo: /ops\/filesize/, vboxx: /^$/ };

for (const kind of KINDS) {
  test.serial(`${kind}: ls -l of ${N} files costs one listing call`, async (t) => {
    const rel = uniq('many');
    await seed(kind, rel);
    // The drive's default cache lifetimes (the other e2e files shorten them).
    const d = await mountService(t, servers, kind, { vfs: { attrTtlMs: 10_000, dirTtlMs: 30_000 } });
    const dir = d.p(rel);
    // Look the folder itself up first: `ls -l dir` then costs the listing and nothing per entry.
    t.true((await fsp.stat(dir)).isDirectory());
    await servers.resetStats();
    const r = await run('ls', ['-l', '--time-style=+%s', dir], { timeoutMs: 120_000 });
    t.is(r.code, 0, r.stderr);
    const stats = await servers.stats();
    const lines = r.stdout.trim().split('\n').filter((l) => l.startsWith('-'));
    t.is(lines.length, N);
    const line7 = lines.find((l) => l.endsWith(' file 7.txt'))!;
    t.is(Number(line7.trim().split(/\s+/)[4]), sizeOf(7));
    const listing = countRoutes(stats, LIST_ROUTE[kind]);
    const perEntry = countRoutes(stats, STAT_ROUTE[kind]);
    const total = countRoutes(stats, /^(?!.*_emulator)/);
    // (Maxxo: the stat above may have started the listing already, while the folder's time waited
    // for a daemon run; then ls -l costs none)
    t.true(listing <= 1, JSON.stringify(stats) + '\n' + d.stderr().split('\n').filter((l) => !/file \d+\.txt/.test(l)).slice(-25).join('\n'));
    t.is(perEntry, 0, JSON.stringify(stats));
    t.true(total <= 2, JSON.stringify(stats));
    // A second ls -l within the listing TTL costs nothing at all.
    await servers.resetStats();
    const r2 = await run('ls', ['-l', dir]);
    t.is(r2.code, 0);
    t.is(countRoutes(await servers.stats(), /^(?!.*_emulator)/), 0);
  });
}

const M = 200;
const bodyOf = (i: number) => Buffer.from(`small file ${i}|`.repeat(1 + ((i * 53) % 180)));

for (const kind of KINDS) {
  test.serial(`${kind}: cat of ${M} small files through a cold mount (prefetched after the first): every byte right`, async (t) => {
    const rel = uniq('small');
    if (kind === 'maxxo') {
      const dir = path.join(await servers.maxxoFolder(), rel);
      await fsp.mkdir(dir, { recursive: true });
      for (let i = 0; i < M; i++) await fsp.writeFile(path.join(dir, `s${i}.txt`), bodyOf(i));
    } else {
      const w = await mountService(t, servers, kind);
      await fsp.mkdir(w.p(rel));
      for (let i = 0; i < M; i++) await fsp.writeFile(w.p(rel, `s${i}.txt`), bodyOf(i));
      await w.flush();
    }
    const d = await mountService(t, servers, kind, { vfs: { attrTtlMs: 10_000, dirTtlMs: 30_000 } });
    const names = (await fsp.readdir(d.p(rel))).sort();
    t.is(names.length, M);
    // one file first (it starts the prefetch of the others), then all of them by the real program
    t.true((await fsp.readFile(d.p(rel, 's7.txt'))).equals(bodyOf(7)));
    const r = await run('cat', names.map((n) => d.p(rel, n)), { timeoutMs: 120_000 });
    t.is(r.code, 0, r.stderr);
    const want = names.map((n) => bodyOf(Number(n.slice(1, -4))).toString()).join('');
    t.is(r.stdout.length, want.length);
    t.true(r.stdout === want, 'content of the concatenation');
    const g = await run('grep', ['-rl', 'small file 123|', d.p(rel)]);
    t.deepEqual(g.stdout.trim().split('\n'), [d.p(rel, 's123.txt')]);
  });
}
