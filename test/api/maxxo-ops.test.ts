// The server as an operator and the fault tests see it: latency / fail-rate / rate-limit injection
// on a Maxxo route, a 10,000-entry /ops/list, and `serve` as a child process (flags, signals,
// no orphaned rsync daemon even after SIGKILL).
import test from 'ava';
import { greets as greetsWithin } from '../../src/emulator/rsyncd.js';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator, maxxoToken, maxxoCall, setFaults, serverStats, resetStats } from '../helpers/emulator.js';
import { startEmulatorProcess, SERVE_MAIN } from '../helpers/emulator-process.js';
import { maxxoUserFolder } from '../../src/emulator/maxxo/index.js';
import { parseServeArgs } from '../../src/emulator/main.js';
import { eventually } from '../support/wait.js';

const greets = (host: string, port: number) => greetsWithin(host, port, 2000);


test('latency injection delays a Maxxo answer by at least the configured time', async (t) => {
  const em = await startEmulator({ rsync: false, latencyMs: 150 });
  t.teardown(() => em.close());
  const token = await maxxoToken(em.url);
  const t0 = performance.now();
  const r = await maxxoCall(em.url, 'GET', 'account/quota', { token });
  const took = performance.now() - t0;
  t.is(r.status, 200);
  t.true(took >= 145, `took ${took.toFixed(0)} ms`);
});

test('fail-rate 1: every Maxxo request fails as 500 ERR_UNKNOWN, 503, or a dropped connection; 0 heals', async (t) => {
  const em = await startEmulator({ rsync: false });
  t.teardown(() => em.close());
  const token = await maxxoToken(em.url);
  await setFaults(em.url, { failRate: 1 });
  const kinds = new Set<string>();
  for (let i = 0; i < 40; i++) {
    try {
      const r = await fetch(`${em.url}/api/1/ops/list?path=`, { headers: { token } });
      const text = await r.text();
      if (r.status === 500) { t.is(JSON.parse(text).error, 'ERR_UNKNOWN'); kinds.add('500'); }
      else if (r.status === 503) kinds.add('503');
      else t.fail(`unexpected ${r.status} ${text.slice(0, 50)}`);
    } catch {
      kinds.add('drop');
    }
  }
  t.true(kinds.size >= 2, [...kinds].join(','));
  await setFaults(em.url, { failRate: 0 });
  t.is((await maxxoCall(em.url, 'GET', 'ops/list', { token, query: { path: '' } })).status, 200);
});

test('rate limit: beyond N per second, 429 with Retry-After; counted in /_emulator/stats', async (t) => {
  const em = await startEmulator({ rsync: false });
  t.teardown(() => em.close());
  const token = await maxxoToken(em.url);
  await resetStats(em.url);
  await setFaults(em.url, { rateLimit: 5 });
  const replies = await Promise.all(Array.from({ length: 30 }, () => maxxoCall(em.url, 'GET', 'account/quota', { token })));
  const limited = replies.filter((r) => r.status === 429);
  t.true(limited.length > 0);
  t.true(replies.some((r) => r.status === 200));
  for (const r of limited) t.regex(r.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
  t.true(replies.every((r) => r.status === 200 || r.status === 429));
  const stats = await serverStats(em.url);
  t.is(stats['GET /api/1/account/quota'], 30);
  await setFaults(em.url, { rateLimit: 0 });
});

test('10,000-entry ops/list answers completely (time is logged, not asserted)', async (t) => {
  const em = await startEmulator({ rsync: false });
  t.teardown(() => em.close());
  const token = await maxxoToken(em.url);
  const dir = join(maxxoUserFolder(em.ctx, 'demo@maxxo.test'), 'Many');
  mkdirSync(dir);
  for (let i = 0; i < 10_000; i++) writeFileSync(join(dir, `file-${String(i).padStart(5, '0')}.txt`), 'x'.repeat(i % 100));
  const times: number[] = [];
  let body: Array<{ file: string; size: number; type: string }> = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    const r = await fetch(`${em.url}/api/1/ops/list?path=Many`, { headers: { token } });
    body = await r.json() as typeof body;
    times.push(performance.now() - t0);
    t.is(r.status, 200);
  }
  t.is(body.length, 10_000);
  t.deepEqual(body[0], { file: 'Many/file-00000.txt', size: 0, type: 'f' });
  t.deepEqual(body[9999], { file: 'Many/file-09999.txt', size: 99, type: 'f' });
  const warm = times.slice(2).sort((a, b) => a - b);
  t.log(`ops/list 10,000 entries: first ${times[0]!.toFixed(1)} ms, warm median ${warm[Math.floor(warm.length / 2)]!.toFixed(1)} ms, ` +
    `min ${warm[0]!.toFixed(1)} ms, max ${warm[warm.length - 1]!.toFixed(1)} ms`);
});

test('serve flags: parsing, defaults and bad values', (t) => {
  t.like(parseServeArgs([]).opts, { host: '127.0.0.1', port: 8080, demo: false, rsync: true });
  t.like(parseServeArgs(['--host', '0.0.0.0', '--port=0', '--demo', '--latency-ms', '20', '--fail-rate', '0.25',
    '--rate-limit', '100', '--no-rsync', '--quiet', '--data', '/tmp/x']).opts,
  { host: '0.0.0.0', port: 0, demo: true, latencyMs: 20, failRate: 0.25, rateLimit: 100, rsync: false, quiet: true, dataDir: '/tmp/x' });
  t.true(parseServeArgs(['--help']).help);
  for (const bad of [['--port', 'x'], ['--port', '70000'], ['--fail-rate', '2'], ['--fail-rate', '-0.1'], ['--latency-ms'],
    ['--bogus'], ['--demo=1'], ['--rate-limit', '1.5'], ['--port', '--demo']]) {
    t.throws(() => parseServeArgs(bad), undefined, bad.join(' '));
  }
  for (const [args, want] of [[['--port', 'x'], /--port needs a whole number/], [['--nope'], /unknown option/]] as Array<[string[], RegExp]>) {
    const r = spawnSync(process.execPath, [SERVE_MAIN, ...args], { encoding: 'utf8', timeout: 20000 });
    t.is(r.status, 2);
    t.regex(r.stderr, want);
  }
  const h = spawnSync(process.execPath, [SERVE_MAIN, '--help'], { encoding: 'utf8', timeout: 20000 });
  t.is(h.status, 0);
  t.regex(h.stdout, /--fail-rate F/);
});

test('serve as a child process: banner, API, rsync; SIGTERM stops both, exit code 0', async (t) => {
  const p = await startEmulatorProcess({ args: [] });
  t.teardown(() => p.stop());
  t.regex(p.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const token = await maxxoToken(p.url);
  const s = (await maxxoCall(p.url, 'GET', 'slice', { token })).body;
  t.true(await greets(s.ip, s.rsync_port));
  t.is(await p.stop(), 0);
  t.false(await greets(s.ip, s.rsync_port), 'rsync daemon gone');
});

test('serve: banner lists the URLs and demo accounts; SIGINT exits 0', async (t) => {
  const data = mkdtempSync(join(tmpdir(), 'cm-serve-banner-'));
  t.teardown(() => rmSync(data, { recursive: true, force: true }));
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [SERVE_MAIN, '--port', '0', '--demo', '--data', data], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let out = '';
  child.stdout.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner: ${out}`)), 30000);
    child.stdout.on('data', (d: string) => { out += d; if (out.includes('Stop with Ctrl-C')) { clearTimeout(timer); resolve(); } });
  });
  const url = /^cloudmount-serve listening (\S+)$/m.exec(out)![1]!;
  t.true(out.includes(`Maxxo API      ${url}/api/1/`));
  t.true(out.includes(`vBoxx API      ${url}/1/`));
  t.regex(out, /rsync daemon   rsync:\/\/127\.0\.0\.1:\d+\//);
  t.true(out.includes('demo@maxxo.test / demo-password'));
  t.true(out.includes(data));
  const exit = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  child.kill('SIGINT');
  t.is(await exit, 0);
  t.true(existsSync(join(data, 'state.db')), 'a given --data dir is kept');
});

test('serve SIGKILLed: its rsync daemon does not outlive it; SIGSTOP/SIGCONT pauses it', async (t) => {
  // Our own data dir: a SIGKILLed server cannot remove its temporary one.
  const data = mkdtempSync(join(tmpdir(), 'cm-serve-kill-'));
  t.teardown(() => rmSync(data, { recursive: true, force: true }));
  const p = await startEmulatorProcess({ dataDir: data });
  t.teardown(() => p.stop());
  const token = await maxxoToken(p.url);
  const s = (await maxxoCall(p.url, 'GET', 'slice', { token })).body;
  p.kill('SIGSTOP');
  const paused = await Promise.race([
    fetch(`${p.url}/api/1/account/quota`, { headers: { token } }).then(() => 'answered', () => 'failed'),
    new Promise((r) => setTimeout(() => r('hung'), 500)),
  ]);
  t.is(paused, 'hung');
  p.kill('SIGCONT');
  t.is((await maxxoCall(p.url, 'GET', 'account/quota', { token })).status, 200);
  p.kill('SIGKILL');
  await p.exited;
  t.true(await eventually(async () => !(await greets(s.ip, s.rsync_port)), 5000, 100), 'rsync daemon gone after SIGKILL of the server');
});
