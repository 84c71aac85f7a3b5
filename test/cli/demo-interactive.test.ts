// `npm start` at a terminal: the demo on a real pseudo-terminal mounts both drives, they are
// usable from other processes, and Ctrl-C (a real SIGINT from the terminal), SIGTERM, or a
// second/third Ctrl-C while it flushes each end with both mounts gone and no process left behind
// (reference servers run inside the demo; the rsync daemon and its wrapper are its children).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/util/run.js';
import { setFaults } from '../helpers/emulator.js';
import { makeHome, isMounted, waitFor, type Home } from './helpers.js';
import { ptyCli, hasScript, descendants, procId, alive, cmdline, type Pty } from './pty.js';

test.before(() => { if (!hasScript) throw new Error('util-linux `script` is needed for the terminal tests'); });

interface Demo { p: Pty; h: Home; mps: string[]; url: string; pid: number; family: string[] }

/** Starts the demo at a terminal in a fresh directory and waits until it says both drives are up. */
async function startDemo(t: { teardown(fn: () => void): void }): Promise<Demo> {
  const h = makeHome();
  const dir = mkdtempSync(join(tmpdir(), 'cloudmount-demo-pty-'));
  const mps = [join(dir, 'drives', 'maxxo'), join(dir, 'drives', 'vboxx')];
  // LIFO: the session is killed first, then any mount left is detached, then the dirs go.
  t.teardown(() => {
    for (const mp of mps) if (isMounted(mp)) spawnSync('fusermount', ['-uz', mp]);
    rmSync(dir, { recursive: true, force: true });
    rmSync(h.dir, { recursive: true, force: true });
  });
  // The demo's own temp dir (server data, caches, journals) goes under our TMPDIR, checked at the end.
  mkdirSync(join(h.dir, 'tmp'));
  const p = ptyCli(['demo', '--dir', 'drives'], { env: { ...h.env, TMPDIR: join(h.dir, 'tmp') }, cwd: dir });
  t.teardown(() => p.kill());
  await p.waitFor(/Ctrl-C flushes pending uploads/, 150_000);
  const url = /reference servers listening on (http:\/\/\S+)/.exec(p.output())?.[1];
  if (!url) throw new Error(`no server URL in:\n${p.output()}`);
  const pid = p.cliPid();
  if (!pid) throw new Error('demo process not found');
  // Everything the demo started (rsync daemon, its wrapper and watcher), by identity.
  const family = descendants(pid).map(procId).filter((x): x is string => !!x);
  return { p, h, mps, url, pid, family };
}

/** Both drives work for other processes: list, read a demo file, write one. */
async function useDrives(t: import('ava').ExecutionContext, d: Demo): Promise<void> {
  for (const mp of d.mps) t.true(isMounted(mp), `${mp} is mounted`);
  t.regex(d.p.output(), /drives\/maxxo\s+Maxxo\s+demo@maxxo\.test/);
  t.regex(d.p.output(), /drives\/vboxx\s+vBoxx\s+demo/);
  for (const mp of d.mps) {
    const r = await run('sh', ['-c', 'ls "$1" >/dev/null && f=$(find "$1" -type f | head -n1) && [ -n "$f" ] && cat "$f" | wc -c', 'sh', mp], { timeoutMs: 60_000 });
    t.is(r.code, 0, `${mp}: ${r.stderr}`);
    t.true(Number(r.stdout.trim()) > 0, `${mp}: a demo file has content`);
  }
  const w = await run('sh', ['-c', 'printf demo > "$1/Files/from-test.txt" && cat "$1/Files/from-test.txt"', 'sh', d.mps[1]!], { timeoutMs: 60_000 });
  t.is(w.stdout, 'demo', w.stderr);
}

async function checkGone(t: import('ava').ExecutionContext, d: Demo): Promise<void> {
  for (const mp of d.mps) t.false(isMounted(mp), `${mp} is unmounted`);
  t.false(alive(d.pid), 'the demo process ended');
  const left = () => d.family.filter((id) => { const pid = Number(id.split(':')[0]); return alive(pid) && procId(pid) === id; });
  // After an abrupt exit the rsync wrapper notices its closed pipe and kills the daemon: a moment.
  await waitFor(() => left().length === 0, 10_000, 'the demo\'s children to end').catch(() => {});
  t.deepEqual(left(), [], 'no child of the demo (rsync daemon, wrapper) is left');
  const reg = join(d.h.env.XDG_RUNTIME_DIR!, 'cloudmount');
  t.deepEqual(existsSync(reg) ? readdirSync(reg).filter((n) => n.endsWith('.json')) : [], [], 'mount registry is empty');
  t.deepEqual(readdirSync(join(d.h.dir, 'tmp')), [], 'the demo removed its temporary server data and caches');
}

test.serial('demo at a terminal: both drives usable from other processes; Ctrl-C flushes, unmounts, stops the servers, exit 0', async (t) => {
  t.timeout(180_000);
  const d = await startDemo(t);
  t.true(d.family.some((id) => cmdline(Number(id.split(':')[0])).includes('rsync --daemon')), 'the demo runs an rsync daemon (checked for leftovers below)');
  await useDrives(t, d);
  d.p.type('\x03');
  t.is(await d.p.exited, 0, d.p.output());
  t.regex(d.p.output(), /SIGINT: flushing and unmounting/);
  t.regex(d.p.output(), /unmounted both drives and stopped the servers/);
  await checkGone(t, d);
});

test.serial('demo: SIGTERM (e.g. from systemd or kill) stops it the same clean way', async (t) => {
  t.timeout(180_000);
  const d = await startDemo(t);
  await useDrives(t, d);
  process.kill(d.pid, 'SIGTERM');
  t.is(await d.p.exited, 0, d.p.output());
  t.regex(d.p.output(), /SIGTERM: flushing and unmounting/);
  t.regex(d.p.output(), /unmounted both drives and stopped the servers/);
  await checkGone(t, d);
});

test.serial('demo: a second Ctrl-C while uploads are flushed detaches at once (exit 130); a third exits at once; nothing is left', async (t) => {
  t.timeout(180_000);
  for (const presses of [2, 3]) {
    const d = await startDemo(t);
    await useDrives(t, d);
    // A slow server: the pending upload of a new file keeps the first Ctrl-C's flush busy.
    await setFaults(d.url, { latencyMs: 4000 });
    const w = await run('sh', ['-c', 'printf slow > "$1/Files/slow.txt"', 'sh', d.mps[1]!], { timeoutMs: 60_000 });
    t.is(w.code, 0, w.stderr);
    d.p.type('\x03');
    await d.p.waitFor(/flushing and unmounting/);
    d.p.type('\x03');
    if (presses === 3) {
      await d.p.waitFor(/unmounting without waiting for uploads/);
      d.p.type('\x03');
    }
    t.is(await d.p.exited, 130, d.p.output());
    t.regex(d.p.output(), /SIGINT again: unmounting without waiting for uploads/);
    if (presses === 2) t.regex(d.p.output(), /detached both drives without waiting for uploads and stopped the servers/);
    t.log(`${presses} Ctrl-C: ${JSON.stringify(d.p.output().slice(d.p.output().indexOf('^C')))}`);
    await checkGone(t, d);
  }
});

test.serial('demo: closing its terminal (SIGHUP, output now fails) still unmounts both drives and stops everything', async (t) => {
  t.timeout(180_000);
  const d = await startDemo(t);
  await useDrives(t, d);
  // The terminal goes away: the kernel hangs up the session, and every later write to it fails.
  d.p.child.kill('SIGKILL');
  await waitFor(() => !alive(d.pid), 90_000, 'the demo to end after the hangup').catch(() => {});
  await checkGone(t, d);
});
