// Stall suite. (1) The server process is SIGSTOPped: its sockets stay open and accept connections
// but nothing answers. Every program call on the mount that needs the server must come back with
// EIO within the configured bound (the drive is mounted with short timeouts), `ls` of the mount
// never hangs, and after SIGCONT the mount works again. The bound is per PROGRAM call: the HTTP
// core fails fast while the server is silent (one probe request at a time, everything else, queued
// requests included, gets Timeout at once), so a call that makes several server requests costs about
// one timeout, not one per request. (2) The server dies for good with an
// upload pending: `cloudmount unmount --force` detaches at once, the journal is kept, and a later
// mount against a server restarted on the same data dir delivers the file.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createVboxxRemote } from '../../src/remote/vboxx/index.js';
import { cli, cliSpawn, makeHome, waitFor } from '../cli/helpers.js';
import { isMounted, tempDir } from '../helpers/mount.js';
import { startEmulatorProcess } from '../helpers/emulator-process.js';
import { DEMO, mountAt, sleep, startServer } from './lib.js';
import { within } from '../support/wait.js';

interface Timed { what: string; code: number | null; signal: string | null; stderr: string; stdout: string; ms: number }

/** Runs a program with a hard kill after hardMs (so a hang shows as signal SIGKILL, not a stuck test). */
function timed(what: string, cmd: string, args: string[], hardMs: number): Promise<Timed> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    c.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    c.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    const k = setTimeout(() => c.kill('SIGKILL'), hardMs);
    c.on('close', (code, signal) => { clearTimeout(k); resolve({ what, code, signal, stderr, stdout, ms: Date.now() - t0 }); });
  });
}

const OP_TIMEOUT_MS = 5000;
const MARGIN_MS = 1000;
const LONG_MS = 8000;
const CLIENT_TIMEOUT_MS = 2000;
// Slack for a loaded 2-core machine (process start of each program, FUSE round trips, the mount
// child's event loop busy with the other calls).
const SLACK_MS = 5000;

test.serial('server stopped (SIGSTOP): every call returns EIO within the bound, ls never hangs, the mount recovers on SIGCONT', async (t) => {
  t.timeout(180_000);
  const srv = await startServer(t, { rsync: false });
  const remote = createVboxxRemote({ server: srv.url, user: DEMO.vboxx.user, password: DEMO.vboxx.password });
  t.teardown(() => remote.close());
  // Content the drive has never seen (written by another client), so reading it needs the server.
  const src = path.join(tempDir(t, 'cm-stall-src-'), 'x.bin');
  await fsp.writeFile(src, Buffer.alloc(300_000, 7));
  await remote.mkdir('/Files/stall');
  for (const n of ['a.bin', 'b.bin', 'c.bin', 'd.bin']) await remote.upload(src, `/Files/stall/${n}`);
  await remote.mkdir('/Files/stall/sub');

  const d = await mountAt(t, srv.url, 'vboxx', {
    vfs: { writebackDelayMs: 0, opTimeoutMs: OP_TIMEOUT_MS, attrTtlMs: 200, dirTtlMs: 200, negativeTtlMs: 200 },
    mount: { opMarginMs: MARGIN_MS, longOpTimeoutMs: LONG_MS, attrTimeoutS: 0, entryTimeoutS: 0 },
    client: { timeoutMs: CLIENT_TIMEOUT_MS, maxRetryTimeMs: 4000, maxAttempts: 2 },
  });
  const dir = path.join(d.base, 'stall');
  t.true((await fsp.readdir(dir)).includes('a.bin'), 'the mount works before the stall');
  await sleep(500); // caches expire: every call below needs the server

  srv.kill('SIGSTOP');
  t.teardown(() => srv.kill('SIGCONT'));
  const bound = OP_TIMEOUT_MS + MARGIN_MS;
  // The bound of one FUSE request is `bound`; one program call is several (LOOKUP of each path
  // component, GETATTR, then the op itself), each of several server requests. With fail fast only
  // one of them (the probe) waits for the silent server, so the semantic bound of a whole program
  // call is two FUSE-request bounds (the probe's FUSE request, and one more that may become the next
  // probe) plus slack; close() waits for the upload and has the long-op bound instead of one of them.
  // A program still stuck after 10 bounds counts as hung (killed: signal SIGKILL).
  const callBound = 2 * bound + SLACK_MS;
  const closeBound = bound + LONG_MS + MARGIN_MS + SLACK_MS;
  const hard = 10 * bound;
  const calls = await Promise.all([
    timed('ls -l folder', 'ls', ['-l', dir], hard),
    timed('ls -l subfolder', 'ls', ['-l', path.join(dir, 'sub')], hard),
    timed('stat file', 'stat', [path.join(dir, 'b.bin')], hard),
    timed('cat file', 'cat', [path.join(dir, 'a.bin')], hard),
    timed('mkdir', 'mkdir', [path.join(dir, 'newdir')], hard),
    timed('mv', 'mv', [path.join(dir, 'c.bin'), path.join(dir, 'c2.bin')], hard),
    timed('rm', 'rm', [path.join(dir, 'd.bin')], hard),
    // close() with writeback_delay 0 waits for the upload: the long-op bound applies.
    timed('write+close', 'sh', ['-c', 'printf hello > "$1"', 'sh', path.join(dir, 'new.txt')], hard),
    timed('df', 'df', [d.mnt], hard),
  ]);
  const root = await timed('ls mount root', 'ls', [d.mnt], hard);

  const wc = calls.find((c) => c.what === 'write+close')!;
  const maxMs = Math.max(...calls.filter((c) => c.what !== 'write+close').map((c) => c.ms));
  t.log(`stall: calls ${calls.length + 1}, client timeout ${CLIENT_TIMEOUT_MS} ms, FUSE-request bound ${bound} ms, ` +
    `per-call bound ${callBound} ms (close: ${closeBound} ms); slowest answer ${maxMs} ms, close ${wc.ms} ms, ls of the root ${root.ms} ms; ` +
    calls.map((c) => `${c.what} ${c.ms} ms exit ${c.code}`).join(', '));
  // Logged first: a failing assertion ends the test, and the figures are what one needs then.
  for (const c of [...calls, root]) {
    t.is(c.signal, null, `${c.what} returned by itself (no hang): ${c.ms} ms`);
    const limit = c.what === 'write+close' ? closeBound : callBound;
    t.true(c.ms <= limit, `${c.what} returned within the per-call bound: ${c.ms} ms <= ${limit} ms`);
  }
  for (const c of calls) {
    if (c.what === 'df' || c.what === 'write+close') continue;
    t.not(c.code, 0, `${c.what} failed while the server is stopped`);
    t.regex(c.stderr, /Input\/output error/, `${c.what}: EIO (${c.stderr.trim()})`);
  }
  t.not(wc.code, 0, 'close of a file whose upload cannot happen reports an error');

  srv.kill('SIGCONT');
  const back = await within((async () => {
    for (;;) {
      const r = await timed('ls after SIGCONT', 'ls', [dir], hard);
      if (r.code === 0 && r.stdout.includes('a.bin')) return r;
      await sleep(500);
    }
  })(), 60_000, 'recovery after SIGCONT');
  t.is(back.code, 0);
  const cat = await fsp.readFile(path.join(dir, 'a.bin'));
  t.true(cat.equals(Buffer.alloc(300_000, 7)), 'reads work again after SIGCONT');
  await fsp.writeFile(path.join(dir, 'after.txt'), 'after the stall');
  await d.flush();
  t.is((await remote.stat('/Files/stall/after.txt'))?.size, 'after the stall'.length, 'writes reach the server again');
  t.is(await d.stop(), 0);
});

test.serial('server gone for good: cloudmount unmount --force detaches, the journal is kept and replayed against the restarted server', async (t) => {
  t.timeout(180_000);
  const dataDir = tempDir(t, 'cm-stall-data-');
  let srv = await startEmulatorProcess({ dataDir, rsync: false });
  t.teardown(() => srv.stop());
  const port = new URL(srv.url).port;
  const h = makeHome();
  const mp = mkdtempSync(path.join(tmpdir(), 'cm-stall-mnt-'));
  t.teardown(async () => {
    if (isMounted(mp)) await new Promise((r) => spawn('fusermount', ['-uz', mp]).on('close', r));
    await fsp.rm(mp, { recursive: true, force: true }).catch(() => {});
    await fsp.rm(h.dir, { recursive: true, force: true }).catch(() => {});
  });
  const pw = h.pwFile(DEMO.vboxx.password);
  const m = cliSpawn(['mount', 'vboxx', mp, '--server', srv.url, '--username', DEMO.vboxx.user, '--password-file', pw,
    '-o', 'writeback_delay=2,timeout=2'], { env: h.env });
  t.teardown(() => { try { m.child.kill('SIGKILL'); } catch { /* gone */ } });
  await waitFor(() => /mounted vboxx/.test(m.output()) || m.child.exitCode !== null, 60_000, 'mounted');
  t.true(isMounted(mp), m.output());

  // Written and closed, then the server dies before the delayed upload starts.
  const w = await timed('write', 'sh', ['-c', 'printf "survives the server" > "$1"', 'sh', path.join(mp, 'Files', 'kept.txt')], 30_000);
  t.is(w.code, 0, w.stderr);
  srv.kill('SIGKILL');
  await srv.exited;
  await sleep(3000); // the upload starts and fails against the dead server

  const ls = await timed('ls while the server is gone', 'ls', [path.join(mp, 'Files')], 60_000);
  t.is(ls.signal, null, 'ls returns while the server is gone');
  const um = await cli(['unmount', '--force', mp], { env: h.env, timeoutMs: 60_000 });
  t.is(um.code, 0, um.stderr);
  t.regex(um.stdout, /journal/);
  await within(m.exited, 20_000, 'mount process exit');
  t.false(isMounted(mp), 'detached');
  const journals = await fsp.readdir(path.join(h.env.XDG_CACHE_HOME!, 'cloudmount'));
  t.true(journals.length > 0, 'cache dir kept');

  // Same data dir, same port (the account id includes the server URL).
  srv = await startEmulatorProcess({ dataDir, rsync: false, args: ['--port', port] });
  const m2 = cliSpawn(['mount', 'vboxx', mp, '--server', srv.url, '--username', DEMO.vboxx.user, '--password-file', pw], { env: h.env });
  t.teardown(() => { try { m2.child.kill('SIGKILL'); } catch { /* gone */ } });
  await waitFor(() => /mounted vboxx/.test(m2.output()) || m2.child.exitCode !== null, 60_000, 'mounted again');
  const um2 = await cli(['unmount', mp], { env: h.env, timeoutMs: 120_000 });
  t.is(um2.code, 0, um2.stderr + m2.output());
  const remote = createVboxxRemote({ server: srv.url, user: DEMO.vboxx.user, password: DEMO.vboxx.password });
  t.teardown(() => remote.close());
  const local = path.join(h.dir, 'back.txt');
  await remote.download('/Files/kept.txt', local);
  t.is(await fsp.readFile(local, 'utf8'), 'survives the server', 'the pending upload was replayed from the journal');
  t.log(`server gone: unmount --force exit ${um.code}; pending upload replayed after restart on port ${port}`);
});
