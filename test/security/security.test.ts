// The points of SECURITY.md, each tested against the real CLI, FUSE and reference servers.
// The server runs in this process; mounts run as CLI children, and this process reaches them only
// through further child programs (sh, ls, setpriv), never with fs calls of its own.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator } from '../helpers/emulator.js';
import { makePki, tlsFront } from '../helpers/tls.js';
import type { Emulator } from '../../src/emulator/server.js';
import { run } from '../../src/util/run.js';
import { cli, cliSpawn, isMounted, makeHome, sleep, waitFor, type Home } from '../cli/helpers.js';
import { descendants } from '../fault/lib.js';

let emu: Emulator;
test.before(async () => { emu = await startEmulator(); });
test.after.always(async () => { await emu?.close(); });

const MAXXO_PW = 'demo-password';
const VBOXX_PW = 'demo-password';

/** A mountpoint others could reach (0755 parent), unmounted at teardown. */
function mountpoint(t: ExecutionContext): string {
  const parent = mkdtempSync(join(tmpdir(), 'cm-sec-'));
  chmodSync(parent, 0o755);
  const mp = join(parent, 'mnt');
  mkdirSync(mp, { mode: 0o755 });
  t.teardown(() => {
    if (isMounted(mp)) spawnSync('fusermount', ['-uz', mp]);
    rmSync(parent, { recursive: true, force: true });
  });
  return mp;
}

async function sh(script: string, ...args: string[]) {
  return run('sh', ['-c', script, 'sh', ...args], { timeoutMs: 60_000 });
}

function killOnTeardown(t: ExecutionContext, pid: () => number | undefined): void {
  t.teardown(() => { const p = pid(); if (p) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } } });
}

async function mountCli(t: ExecutionContext, h: Home, args: string[], env: NodeJS.ProcessEnv = h.env) {
  const m = cliSpawn(args, { env });
  killOnTeardown(t, () => m.child.pid);
  await waitFor(() => /mounted (maxxo|vboxx)/.test(m.output()) || m.child.exitCode !== null, 60_000, 'mounted');
  return m;
}

function maxxoSecrets(): string[] {
  const u = emu.ctx.db.prepare('SELECT id, rsync_password FROM maxxo_users WHERE email = ?').get('demo@maxxo.test') as { id: number; rsync_password: string };
  const tokens = (emu.ctx.db.prepare('SELECT token FROM maxxo_tokens WHERE user_id = ?').all(u.id) as Array<{ token: string }>).map((r) => r.token);
  return [MAXXO_PW, u.rsync_password, ...tokens];
}

/** Every file and folder below dir with its mode; symlinks skipped. */
function walk(dir: string): Array<{ path: string; dir: boolean; mode: number }> {
  const out: Array<{ path: string; dir: boolean; mode: number }> = [];
  const st = statSync(dir);
  out.push({ path: dir, dir: true, mode: st.mode & 0o777 });
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    const l = lstatSync(p);
    if (l.isSymbolicLink()) continue;
    if (l.isDirectory()) out.push(...walk(p));
    else out.push({ path: p, dir: false, mode: l.mode & 0o777 });
  }
  return out;
}

test.serial('maxxo: secrets never in argv, environ (except rsync\'s RSYNC_PASSWORD), -vv logs, or world-readable files', async (t) => {
  t.timeout(180_000);
  const h = makeHome();
  t.teardown(() => rmSync(h.dir, { recursive: true, force: true }));
  const mp = mountpoint(t);
  // Saved account: its password sits in the config dir, which must be private.
  const login = await cli(['login', 'mx', '--kind', 'maxxo', '--server', emu.url, '--email', 'demo@maxxo.test', '--password-file', h.pwFile(MAXXO_PW)], { env: h.env });
  t.is(login.code, 0, login.stderr);
  const m = await mountCli(t, h, ['mount', 'mx', mp, '-vv', '-o', 'writeback_delay=0']);
  t.true(isMounted(mp), m.output());
  const pid = m.child.pid!;

  // Watch the mount's children while files move: every rsync it runs is inspected.
  const seen = new Map<number, { cmdline: string; environ: string[] }>();
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      for (const d of descendants(pid)) {
        if (seen.has(d.pid)) continue;
        try {
          const cmdline = readFileSync(`/proc/${d.pid}/cmdline`, 'utf8');
          const environ = readFileSync(`/proc/${d.pid}/environ`, 'utf8').split('\0').filter(Boolean);
          // a child caught between fork and exec shows node's argv first and rsync's environment
          // after its exec: such a pair belongs to no one process image, so it is read again
          if (readFileSync(`/proc/${d.pid}/cmdline`, 'utf8') !== cmdline) continue;
          if (cmdline) seen.set(d.pid, { cmdline, environ });
        } catch { /* exited */ }
      }
      await sleep(5);
    }
  })();
  const w = await sh('for i in 1 2 3; do head -c 20000000 /dev/urandom > "$1/sec-$i.bin" || exit 1; done; sync', mp);
  t.is(w.code, 0, w.stderr);
  // A fresh read of a demo file goes through an rsync download.
  const r = await sh('cat "$1/Welcome to Maxxo.txt" > /dev/null', mp);
  t.is(r.code, 0, r.stderr);
  watching = false;
  await watcher;

  const secrets = maxxoSecrets();
  const [, rsyncPw] = secrets;
  const self = { cmdline: readFileSync(`/proc/${pid}/cmdline`, 'utf8'), environ: readFileSync(`/proc/${pid}/environ`, 'utf8') };
  for (const s of secrets) {
    t.false(self.cmdline.includes(s), 'mount process argv');
    t.false(self.environ.includes(s), 'mount process environment');
  }
  const rsyncs = [...seen.values()].filter((p) => p.cmdline.startsWith('rsync\0'));
  t.true(rsyncs.length > 0, `rsync children were seen (${seen.size} children)`);
  for (const p of rsyncs) {
    for (const s of secrets) t.false(p.cmdline.includes(s), 'rsync argv holds no secret');
    const names = p.environ.map((e) => e.slice(0, e.indexOf('=')));
    // TZ=UTC: the mtimes of --list-only are read as UTC
    t.deepEqual(names.sort(), ['LANG', 'LC_ALL', 'PATH', 'RSYNC_PASSWORD', 'TZ'], 'rsync gets a minimal environment');
    t.true(p.environ.includes(`RSYNC_PASSWORD=${rsyncPw}`), 'the Cloudstore password only as RSYNC_PASSWORD');
    for (const s of [MAXXO_PW, ...secrets.slice(2)]) t.false(p.environ.join('\n').includes(s), 'no account password or API token in rsync\'s environment');
  }
  for (const p of [...seen.values()].filter((q) => !q.cmdline.startsWith('rsync\0'))) {
    for (const s of secrets) t.false(p.environ.join('\n').includes(s) || p.cmdline.includes(s), `child ${p.cmdline.split('\0')[0]} holds no secret`);
  }

  const um = await cli(['unmount', mp], { env: h.env, timeoutMs: 120_000 });
  t.is(um.code, 0, um.stderr);
  await m.exited;
  const log = m.output();
  t.regex(log, /DEBUG/, '-vv logged');
  for (const s of maxxoSecrets()) t.false(log.includes(s), 'no secret in the -vv log');

  // Private files: cache, journal, config (saved password), runtime registry.
  const entries = [h.env.XDG_CACHE_HOME!, h.env.XDG_CONFIG_HOME!].flatMap((d) => walk(join(d, 'cloudmount')));
  const cacheRoot = join(h.env.XDG_CACHE_HOME!, 'cloudmount');
  const journalFiles = entries.filter((e) => !e.dir && /journal/.test(e.path));
  t.true(journalFiles.length > 0, 'a journal exists');
  t.true(entries.some((e) => e.path.endsWith('accounts.json') || /config/.test(e.path)), 'config files exist');
  for (const e of entries) {
    if (e.dir) t.is(e.mode & 0o077, 0, `${e.path} is private (${e.mode.toString(8)})`);
    else t.is(e.mode & 0o077, 0, `${e.path} is private (${e.mode.toString(8)})`);
  }
  const acct = walk(cacheRoot).filter((e) => e.dir && e.path !== cacheRoot);
  for (const e of acct) t.is(e.mode, 0o700, `${e.path}: 0700`);
  for (const f of journalFiles) t.is(f.mode, 0o600, `${f.path}: 0600`);
  t.log(`maxxo: rsync children inspected ${rsyncs.length}, other children ${seen.size - rsyncs.length}, secrets checked ${secrets.length}, ` +
    `files/dirs checked for modes ${entries.length}, log bytes ${log.length}`);
});

test.serial('vboxx: no password or session token in argv, environment, -vv log or error messages', async (t) => {
  t.timeout(120_000);
  const h = makeHome();
  t.teardown(() => rmSync(h.dir, { recursive: true, force: true }));
  const mp = mountpoint(t);
  const env = { ...h.env, CLOUDMOUNT_PASSWORD: VBOXX_PW };
  const m = await mountCli(t, h, ['mount', 'vboxx', mp, '--server', emu.url, '--username', 'demo', '-vv', '--daemon'], env);
  // --daemon: the foreground parent exits; the mount process is the child it printed.
  await m.exited;
  const pid = Number(/pid (\d+)/.exec(m.output())?.[1]);
  t.true(pid > 0, m.output());
  killOnTeardown(t, () => pid);
  t.false(readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(VBOXX_PW));
  t.false(readFileSync(`/proc/${pid}/environ`, 'utf8').includes(VBOXX_PW), 'CLOUDMOUNT_PASSWORD is not handed to the daemon');
  const w = await sh('printf x > "$1/Files/sec.txt" && ls -la "$1/Files" > /dev/null && cat "$1/Files/readme.txt" > /dev/null', mp);
  t.is(w.code, 0, w.stderr);
  const um = await cli(['unmount', mp], { env: h.env, timeoutMs: 120_000 });
  t.is(um.code, 0, um.stderr);
  const logDir = join(h.env.XDG_CACHE_HOME!, 'cloudmount', 'log');
  const logs = readdirSync(logDir).map((n) => ({ n, mode: statSync(join(logDir, n)).mode & 0o777, text: readFileSync(join(logDir, n), 'utf8') }));
  t.true(logs.length > 0);
  for (const l of logs) {
    t.is(l.mode & 0o077, 0, `log ${l.n} is private`);
    t.regex(l.text, /DEBUG/);
    t.false(l.text.includes(VBOXX_PW), 'no password in the daemon log');
    t.notRegex(l.text, /session_token=(?!\*)[A-Za-z0-9]{16,}/, 'no session token in the daemon log');
  }
  // Error messages: a wrong password is named, never shown.
  const bad = await cli(['mount', 'vboxx', mp, '--server', emu.url, '--username', 'demo', '--password-file', h.pwFile('Wr0ng-Secret-Pw')], { env: h.env });
  t.is(bad.code, 1);
  t.false((bad.stdout + bad.stderr).includes('Wr0ng-Secret-Pw'));
  const badM = await cli(['mount', 'maxxo', mp, '--server', emu.url, '--email', 'demo@maxxo.test', '--password-file', h.pwFile('Wr0ng-Secret-Pw'), '-vv'], { env: h.env });
  t.is(badM.code, 1);
  t.false((badM.stdout + badM.stderr).includes('Wr0ng-Secret-Pw'));
});

test.serial('the mount is not visible to other users unless allow_other', async (t) => {
  t.timeout(120_000);
  if (process.getuid?.() !== 0) { t.log('skipped: needs root for setpriv'); t.pass(); return; }
  const h = makeHome();
  t.teardown(() => rmSync(h.dir, { recursive: true, force: true }));
  const env = { ...h.env, CLOUDMOUNT_PASSWORD: VBOXX_PW };
  const asNobody = (...cmd: string[]) => run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...cmd], { timeoutMs: 30_000 });
  const sanity = await asNobody('ls', tmpdir());
  t.is(sanity.code, 0, `nobody can run ls: ${sanity.stderr}`);

  const mp = mountpoint(t);
  const m = await mountCli(t, h, ['mount', 'vboxx', mp, '--server', emu.url, '--username', 'demo'], env);
  const own = await run('ls', [join(mp, 'Files')], { timeoutMs: 30_000 });
  t.regex(own.stdout, /readme\.txt/, 'the owner sees the files');
  const other = await asNobody('ls', mp);
  t.not(other.code, 0);
  t.regex(other.stderr, /Permission denied/, `another user gets EACCES: ${other.stderr}`);
  const otherRead = await asNobody('cat', join(mp, 'Files', 'readme.txt'));
  t.regex(otherRead.stderr, /Permission denied/);
  m.child.kill('SIGINT');
  await m.exited;

  const mp2 = mountpoint(t);
  const h2 = makeHome();
  t.teardown(() => rmSync(h2.dir, { recursive: true, force: true }));
  const m2 = await mountCli(t, h2, ['mount', 'vboxx', mp2, '--server', emu.url, '--username', 'demo', '-o', 'allow_other'], { ...h2.env, CLOUDMOUNT_PASSWORD: VBOXX_PW });
  const shared = await asNobody('ls', join(mp2, 'Files'));
  t.is(shared.code, 0, shared.stderr);
  t.regex(shared.stdout, /readme\.txt/, 'with allow_other another user may look');
  m2.child.kill('SIGINT');
  await m2.exited;
});

test.serial('TLS is verified: a server with a private CA is refused unless --ca is given', async (t) => {
  t.timeout(120_000);
  const dir = mkdtempSync(join(tmpdir(), 'cm-sec-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  makePki(dir, 'cloudmount security test CA');
  const front = await tlsFront(emu.url, dir);
  t.teardown(() => front.close());
  const url = front.url;

  const h = makeHome();
  t.teardown(() => rmSync(h.dir, { recursive: true, force: true }));
  const env = { ...h.env, CLOUDMOUNT_PASSWORD: VBOXX_PW };
  const mp = mountpoint(t);
  const refused = await cli(['mount', 'vboxx', mp, '--server', url, '--username', 'demo'], { env, timeoutMs: 60_000 });
  t.is(refused.code, 1);
  t.regex(refused.stderr, /TLS|certificate/i, `a clear TLS error: ${refused.stderr.trim()}`);
  t.false(isMounted(mp));
  const info = await cli(['vboxx', 'info', '--server', url, '--username', 'demo'], { env, timeoutMs: 60_000 });
  t.not(info.code, 0, 'account commands refuse it too');

  const m = await mountCli(t, h, ['mount', 'vboxx', mp, '--server', url, '--username', 'demo', '--ca', join(dir, 'ca.pem')], env);
  t.true(isMounted(mp), m.output());
  const ls = await run('ls', [join(mp, 'Files')], { timeoutMs: 30_000 });
  t.regex(ls.stdout, /readme\.txt/, 'with --ca the drive works over https');
  m.child.kill('SIGINT');
  await m.exited;
  const missing = await cli(['mount', 'vboxx', mp, '--server', url, '--username', 'demo', '--ca', join(dir, 'nope.pem')], { env });
  t.is(missing.code, 1);
  t.regex(missing.stderr, /cannot read --ca/);
  t.log(`tls: without --ca: "${refused.stderr.trim().slice(0, 160)}"; with --ca: mounted and listed`);
});
