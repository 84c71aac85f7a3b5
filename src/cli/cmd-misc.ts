// serve (the reference servers) and demo (what `npm start` runs).
// The demo mounts both drives in THIS process, so it never touches ./mnt with fs calls of its
// own: every look at the drives is a child process (ls, cat, df, getfattr).
import { mkdir, mkdtemp, rm, readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { createHash, randomBytes } from 'node:crypto';
import { bool, int, str, type CmdDef, type Parsed } from './args.js';
import { log, CliError, noteHangup } from './context.js';
import { rmSync } from 'node:fs';
import { isMounted, lazyUnmount, lazyUnmountSync } from '../util/mounts.js';
import { run } from '../util/run.js';
import { removeRecord, writeRecord, RecordWriter, type MountRecord } from './registry.js';
import { accountId } from './target.js';
import type { Remote, RemoteEntry } from '../remote/types.js';
import { exitWhenDrained } from '../util/exit.js';
import { fileURLToPath } from 'node:url';

/** The checkout this command runs from (dist/src/cli/ -> three levels up). */
const checkoutRoot = resolve(fileURLToPath(import.meta.url), '..', '..', '..', '..');

async function runServe(p: Parsed): Promise<number> {
  const m = await import('../emulator/main.js');
  // Resolves after a clean stop on SIGINT/SIGTERM; usage and start failures set exitCode.
  await m.serveMain(p.args);
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}

interface DemoDrive {
  kind: 'maxxo' | 'vboxx';
  user: string;
  mountpoint: string;
  remote: Remote;
  drive?: { flush(): Promise<void>; status(): import('../vfs/api.js').DriveStatus; unmount(o?: { force?: boolean }): Promise<void> };
  rec?: MountRecord;
  writer?: RecordWriter;
}

const DEMO = {
  maxxo: { user: 'demo@maxxo.test', password: 'demo-password' },
  vboxx: { user: 'demo', password: 'demo-password' },
};

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** Finds a small file on the server, depth-first, for the read check. */
async function findFile(remote: Remote, dir = '/', depth = 0): Promise<{ path: string; entry: RemoteEntry } | undefined> {
  const { entries } = await remote.list(dir);
  const files = entries.filter((e) => e.type === 'file' && e.size > 0 && e.size < 4 * 1024 * 1024);
  if (files.length) return { path: join(dir, files[0]!.name), entry: files[0]! };
  if (depth >= 3) return undefined;
  for (const e of entries.filter((x) => x.type === 'dir')) {
    const f = await findFile(remote, join(dir, e.name), depth + 1);
    if (f) return f;
  }
  return undefined;
}

async function runDemo(p: Parsed): Promise<number> {
  const smoke = bool(p, 'smoke') || !process.stdin.isTTY;
  const base = resolve(str(p, 'dir') ?? 'mnt');
  const port = int(p, 'port') ?? 0;
  // Signals are ours from the start: Ctrl-C while the drives come up must still unmount them.
  // First: flush, unmount, stop (exit 0). Second: detach at once without waiting for uploads
  // (exit 130). Third: lazy-unmount and exit now.
  const drives: DemoDrive[] = [];
  // What teardown found (an unmount error, a forced detach) overrides the result of the run itself.
  const outcome: { teardown: number; work?: string } = { teardown: 0 };
  let signals = 0;
  let wakeStop!: () => void;
  const stopRequested = new Promise<void>((r) => { wakeStop = r; });
  const forced: Promise<void>[] = [];
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (sig === 'SIGHUP') noteHangup();
    if (signals === 1) {
      process.stderr.write(`\n${sig}: flushing and unmounting...\n`);
      wakeStop();
    } else if (signals === 2) {
      process.stderr.write(`${sig} again: unmounting without waiting for uploads (Ctrl-C once more to exit at once)\n`);
      for (const d of drives) {
        if (d.drive) forced.push(d.drive.unmount({ force: true }).catch((e) => log.error(`forced unmount of ${d.mountpoint}: ${(e as Error).message}`)));
      }
    } else {
      for (const d of drives) lazyUnmountSync(d.mountpoint);
      for (const d of drives) if (d.rec) removeRecord(d.rec.pid, d.rec.slot);
      if (outcome.work) { try { rmSync(outcome.work, { recursive: true, force: true }); } catch { /* tmp, best effort */ } }
      void exitWhenDrained(130);
    }
  };
  const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of sigs) process.on(s, onSignal);
  try {
    const code = await runDemoInner(p, smoke, base, port, drives, stopRequested, () => signals, forced, outcome);
    return outcome.teardown || code;
  } finally {
    for (const s of sigs) process.off(s, onSignal);
  }
}

async function runDemoInner(p: Parsed, smoke: boolean, base: string, port: number, drives: DemoDrive[],
  stopRequested: Promise<void>, signals: () => number, forced: Promise<void>[], outcome: { teardown: number; work?: string }): Promise<number> {
  const { createEmulator } = await import('../emulator/server.js');
  const { createMaxxoRemote } = await import('../remote/maxxo/index.js');
  const { createVboxxRemote } = await import('../remote/vboxx/index.js');
  const { mountDrive } = await import('../fuse/mount.js');

  const work = await mkdtemp(join(tmpdir(), 'cloudmount-demo-'));
  outcome.work = work;
  let emu: Awaited<ReturnType<typeof createEmulator>>;
  try {
    emu = await createEmulator({ demo: true, quiet: !(p.verbose >= 2), port, dataDir: join(work, 'server') });
  } catch (e) {
    await rm(work, { recursive: true, force: true }).catch(() => {});
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`cannot start the reference servers: ${code === 'EADDRINUSE' ? `port ${port} is in use (EADDRINUSE)` : (e as Error).message}`);
  }
  process.stderr.write(`reference servers listening on ${emu.url}\n`);
  let exitCode = 0;
  const teardown = async () => {
    for (const d of drives) {
      if (forced.length) break;
      if (d.drive) {
        try { await d.drive.unmount(); } catch (e) {
          // A second Ctrl-C's forced detach races this clean unmount; its failure is expected then.
          if (!forced.length) {
            log.error(`unmount ${d.mountpoint}: ${(e as Error).message}`);
            outcome.teardown = 1;
          }
          await lazyUnmount(d.mountpoint);
        }
      } else {
        await d.remote.close().catch(() => {});
      }
      if (d.rec) { await d.writer?.idle(); removeRecord(d.rec.pid, d.rec.slot); }
    }
    if (forced.length) {
      await Promise.all(forced);
      for (const d of drives) {
        if (!d.drive) await d.remote.close().catch(() => {});
        if (d.rec) { await d.writer?.idle(); removeRecord(d.rec.pid, d.rec.slot); }
      }
      outcome.teardown = 130;
    }
    await emu.close().catch(() => {});
    await rm(work, { recursive: true, force: true }).catch(() => {});
  };
  let timer: NodeJS.Timeout | undefined;
  try {
    for (const [i, kind] of (['maxxo', 'vboxx'] as const).entries()) {
      if (signals()) break;
      const mountpoint = join(base, kind);
      // A mount left by a crashed demo would make mkdir fail with ENOTCONN.
      if (isMounted(mountpoint)) {
        log.warn(`${mountpoint} is still mounted from an earlier run; detaching it`);
        await lazyUnmount(mountpoint);
      }
      await mkdir(mountpoint, { recursive: true });
      const co = { server: emu.url, user: DEMO[kind].user, password: DEMO[kind].password, log };
      const remote = kind === 'maxxo' ? createMaxxoRemote(co) : createVboxxRemote(co);
      const d: DemoDrive = { kind, user: DEMO[kind].user, mountpoint, remote };
      drives.push(d);
      const id = accountId({ kind, server: emu.url, user: DEMO[kind].user });
      d.drive = await mountDrive(remote, mountpoint, { accountId: id, cacheDir: join(work, 'cache'), log });
      const now = new Date().toISOString();
      d.rec = {
        pid: process.pid, slot: i + 1, mountpoint, kind, name: `demo-${kind}`, server: emu.url, user: d.user, accountId: id,
        readOnly: false, startedAt: now, updatedAt: now, state: 'mounted', status: d.drive.status(),
      };
      writeRecord(d.rec);
      d.writer = new RecordWriter(d.rec);
    }
    timer = setInterval(() => {
      for (const d of drives) {
        if (!d.rec || !d.drive) continue;
        try { d.rec.status = d.drive.status(); d.writer?.refresh(); } catch { /* next round */ }
      }
    }, 1000);
    // short under the working directory (./mnt by default); anywhere else, the path itself
    const rel = (x: string) => { const r = relative(process.cwd(), x) || '.'; return r === '..' || r.startsWith('../') ? x : r; };
    const sh = (x: string) => /^[\w@%+=:,./-]+$/.test(x) ? x : `'${x.replace(/'/g, `'\\''`)}'`;
    if (signals()) return exitCode;
    if (smoke) {
      const passed = await Promise.race([smokeCheck(drives, emu.url, work), stopRequested.then(() => false)]);
      exitCode = passed ? 0 : 1;
      return exitCode;
    }
    const vb = drives.find((d) => d.kind === 'vboxx')!;
    const sample = await findFile(vb.remote).catch(() => undefined);
    // The hints work pasted into any terminal, whatever its working directory: absolute paths,
    // and this checkout's own command (cloudmount need not be on PATH).
    const mx = sh(drives[0]!.mountpoint);
    const vx = sh(vb.mountpoint);
    const cm = sh(join(checkoutRoot, 'scripts', 'cloudmount'));
    process.stdout.write(`
Both demo accounts are mounted:
  ${rel(drives[0]!.mountpoint).padEnd(12)} Maxxo  ${DEMO.maxxo.user} / ${DEMO.maxxo.password}
  ${rel(vb.mountpoint).padEnd(12)} vBoxx  ${DEMO.vboxx.user} / ${DEMO.vboxx.password}
(reference servers at ${emu.url}; vBoxx admin is admin / admin-password)

Try, in another terminal:
  ls -l ${mx} ${vx}
  cp ${sh(join(checkoutRoot, 'README.md'))} ${mx}/ && cat ${mx}/README.md
  df -h ${mx} ${vx}
  getfattr -n user.cloudmount.share_link ${sample ? sh(join(vb.mountpoint, sample.path)) : `${vx}/<root>/<file>`}
  ${cm} status
  ${cm} maxxo quota --server ${emu.url} --email ${DEMO.maxxo.user}   # password: ${DEMO.maxxo.password}

Ctrl-C flushes pending uploads, unmounts both drives and stops the servers.
`);
    await stopRequested;
    return exitCode;
  } catch (e) {
    throw new CliError(`demo failed: ${(e as Error).message}`);
  } finally {
    if (timer) clearInterval(timer);
    await teardown();
    if (!smoke) {
      const code = outcome.teardown || exitCode;
      process.stderr.write(code === 130 ? 'detached both drives without waiting for uploads and stopped the servers\n'
        : code ? 'stopped, with errors (see above)\n' : 'unmounted both drives and stopped the servers\n');
    }
  }
}

/** Each check runs through the mounted drive in a child process and is compared with the server. */
async function smokeCheck(drives: DemoDrive[], serverUrl: string, work: string): Promise<boolean> {
  let ok = true;
  const report = (pass: boolean, what: string, detail = '') => {
    process.stdout.write(`${pass ? 'ok  ' : 'FAIL'} ${what}${detail ? ` (${detail})` : ''}\n`);
    if (!pass) ok = false;
  };
  const { createMaxxoRemote } = await import('../remote/maxxo/index.js');
  const { createVboxxRemote } = await import('../remote/vboxx/index.js');
  for (const d of drives) {
    const mp = d.mountpoint;
    const tag = `${d.kind}:`;
    // An independent client: what the server really holds, not what the mount's caches say.
    const co = { server: serverUrl, user: d.user, password: DEMO[d.kind].password, log };
    const server = d.kind === 'maxxo' ? createMaxxoRemote(co) : createVboxxRemote(co);
    try {
      const ls = await run('ls', ['-la', '--', mp], { timeoutMs: 30_000 });
      const top = await server.list('/');
      const names = top.entries.map((e) => e.name);
      report(ls.code === 0 && names.every((n) => ls.stdout.includes(n)), `${tag} ls -la lists the server's ${names.length} top-level entries`, ls.code ? ls.stderr.trim() : '');

      const sample = await findFile(server);
      if (!sample) report(false, `${tag} demo data has a file to read`);
      else {
        const local = join(work, `${d.kind}-sample`);
        await server.download(sample.path, local);
        const want = sha(await readFile(local));
        const cat = await run('sh', ['-c', 'cat -- "$1" | sha256sum', 'sh', join(mp, sample.path)], { timeoutMs: 60_000 });
        report(cat.code === 0 && cat.stdout.startsWith(want), `${tag} cat ${sample.path} matches the server (${sample.entry.size} bytes)`, cat.stderr.trim());
      }

      const dir = d.kind === 'vboxx' ? `/${top.entries.find((e) => e.type === 'dir')?.name ?? ''}` : '';
      const name = `cloudmount-smoke-${randomBytes(4).toString('hex')}.txt`;
      const rel = `${dir}/${name}`.replace(/^\/+/, '/');
      const body = `written through ${d.kind} by the cloudmount demo at ${new Date().toISOString()}\n`;
      const wr = await run('sh', ['-c', 'cat > "$1"', 'sh', join(mp, rel)], { input: body, timeoutMs: 60_000 });
      const back = await run('cat', ['--', join(mp, rel)], { timeoutMs: 60_000 });
      report(wr.code === 0 && back.code === 0 && back.stdout === body, `${tag} write ${rel} and read it back`, (wr.stderr + back.stderr).trim());
      await d.drive!.flush();
      const onServer = join(work, `${d.kind}-written`);
      let got = '';
      try { await server.download(rel, onServer); got = await readFile(onServer, 'utf8'); } catch (e) { got = `(${(e as Error).message})`; }
      report(got === body, `${tag} the written file is on the server after flush`);
      const rmr = await run('rm', ['--', join(mp, rel)], { timeoutMs: 60_000 });
      report(rmr.code === 0, `${tag} rm ${rel}`, rmr.stderr.trim());

      const df = await run('df', ['-B1', '--output=size,used', '--', mp], { timeoutMs: 30_000 });
      const fs = await server.statfs();
      const dfUsed = Number(df.stdout.trim().split('\n')[1]?.trim().split(/\s+/)[1] ?? NaN);
      // Block rounding only: df reports what the server's quota call says.
      const close = Math.abs(dfUsed - fs.used) <= Math.max(1024 * 1024, fs.used * 0.01);
      report(df.code === 0 && close, `${tag} df shows the server's usage (${dfUsed} vs ${fs.used} bytes used${fs.total ? ` of ${fs.total}` : ''})`, df.stderr.trim());

      if (d.kind === 'vboxx' && sample) {
        const gf = await run('getfattr', ['--only-values', '-n', 'user.cloudmount.share_link', '--', join(mp, sample.path)], { timeoutMs: 60_000 });
        report(gf.code === 0 && /^https?:\/\//.test(gf.stdout.trim()), `${tag} getfattr user.cloudmount.share_link gives a URL`, gf.code ? gf.stderr.trim() : gf.stdout.trim());
      }
    } catch (e) {
      report(false, `${tag} smoke check`, (e as Error).message);
    } finally {
      await server.close().catch(() => {});
    }
  }
  process.stdout.write(ok ? 'smoke check passed\n' : 'smoke check FAILED\n');
  return ok;
}

export const miscCommands: CmdDef[] = [
  {
    path: ['serve'], args: '[SERVE-OPTIONS]', minArgs: 0, maxArgs: Infinity, passthrough: true,
    summary: 'Run the Maxxo and vBoxxCloud reference servers (see `cloudmount serve --help`).',
    options: [],
    run: runServe,
  },
  {
    path: ['demo'], args: '', minArgs: 0, maxArgs: 0,
    summary: 'Start the reference servers with demo data and mount both demo accounts (what `npm start` runs).',
    details: 'Mounts Maxxo at ./mnt/maxxo and vBoxx at ./mnt/vboxx and waits for Ctrl-C (or SIGTERM/SIGHUP),\n' +
      'which flushes, unmounts both, stops the servers and exits 0. A second Ctrl-C detaches both drives\n' +
      'without waiting for uploads (exit 130); a third exits at once. Without a terminal (or with --smoke)\n' +
      'it checks both drives through child processes (list, read, write, read back, df, share link),\n' +
      'unmounts, and exits 0 only if all passed.',
    options: [
      { name: 'smoke', desc: 'Run the smoke check and exit (the default without a terminal)' },
      { name: 'dir', value: 'DIR', desc: 'Where to create the maxxo/ and vboxx/ mountpoints (default ./mnt)' },
      { name: 'port', value: 'PORT', desc: 'Port of the reference servers (default: a free one)' },
    ],
    run: runDemo,
  },
];
