// Daily use as an rclone/sshfs user meets it (issue 14): what -v/-vv log, --log-file/--log-level,
// the flush meter of unmount and Ctrl-C, status while the server does not answer, the checks at
// mount time, and the options people type by habit. Real CLI processes against the reference
// servers (in this process); this process reaches the mounts only through child processes.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync, rmdirSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator, setFaults } from '../helpers/emulator.js';
import { makePki, tlsFront } from '../helpers/tls.js';
import type { Emulator } from '../../src/emulator/server.js';
import { run } from '../../src/util/run.js';
import { cli, cliSpawn, makeHome, isMounted, waitFor, sleep, type Home } from './helpers.js';
import { hasScript, ptyCli } from './pty.js';

let emu: Emulator;
test.before(async () => { emu = await startEmulator(); });
test.after.always(async () => { await emu?.close(); });

const PW = 'demo-password';
type T = { teardown(fn: () => void): void };

function mountpoint(t: T): string {
  const mp = mkdtempSync(join(tmpdir(), 'cloudmount-daily-mnt-'));
  t.teardown(() => {
    if (isMounted(mp)) spawnSync('fusermount', ['-uz', mp]);
    try { rmdirSync(mp); } catch { /* busy or not empty */ }
  });
  return mp;
}

function killOnTeardown(t: T, pid: () => number | undefined): void {
  t.teardown(() => { const p = pid(); if (p) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } } });
}

function home(t: T): Home & { pwEnv: NodeJS.ProcessEnv } {
  const h = makeHome();
  t.teardown(() => { if (!readFileSync('/proc/mounts', 'utf8').includes(` ${h.dir}/`)) rmSync(h.dir, { recursive: true, force: true }); });
  return { ...h, pwEnv: { ...h.env, CLOUDMOUNT_PASSWORD: PW } };
}

const sh = (script: string, ...args: string[]) => run('sh', ['-c', script, 'sh', ...args], { timeoutMs: 120_000 });
const vboxx = (mp: string, url = emu.url) => ['vboxx', mp, '--server', url, '--username', 'demo'];

/** A server of the test's own: its faults (latency) slow no other test. */
async function ownServer(t: T): Promise<Emulator> {
  const e = await startEmulator({ rsync: false });
  t.teardown(() => { void e.close(); });
  return e;
}
const maxxo = (mp: string) => ['maxxo', mp, '--server', emu.url, '--email', 'demo@maxxo.test'];

async function mountFg(t: T, args: string[], env: NodeJS.ProcessEnv) {
  const m = cliSpawn(['mount', ...args], { env });
  killOnTeardown(t, () => m.child.pid);
  await waitFor(() => /mounted (vboxx|maxxo)/.test(m.output()) || m.child.exitCode !== null, 60_000, 'mounted');
  return m;
}

test('-v logs one line per mkdir, upload, rename, download and delete with size and time, and nothing per request (vBoxx, --log-file 0600)', async (t) => {
  const h = home(t);
  const mp = mountpoint(t);
  const logFile = join(h.dir, 'drive.log');
  const m = await mountFg(t, [...vboxx(mp), '-v', '--log-file', logFile, '-o', 'writeback_delay=0'], h.pwEnv);
  t.true(isMounted(mp), m.output());
  // renames and deletes are written back: a folder's fsync waits until those of names in it
  // reached the server. Without it the rename would be taken back by the rm (the server's file is
  // then deleted at its old name) and the file's delete folded into the folder's.
  const w = await sh(`set -e; cd "$1/Files"; fsyncdir() { python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.close(fd)' "$1"; }
    mkdir logd; head -c 3000 /dev/urandom > logd/a.bin; mv logd/a.bin logd/b.bin; fsyncdir logd
    cat readme.txt > /dev/null; ls -l logd > /dev/null; getfattr -n security.capability logd/b.bin 2>/dev/null || true
    rm logd/b.bin; fsyncdir logd
    rmdir logd`, mp);
  t.is(w.code, 0, w.stderr);
  const um = await cli(['unmount', mp], { env: h.env, timeoutMs: 120_000 });
  t.is(um.code, 0, um.stderr);
  await m.exited;
  t.is(statSync(logFile).mode & 0o777, 0o600, 'the log file is private');
  const log = readFileSync(logFile, 'utf8');
  t.regex(log, /INFO {2}mkdir \/Files\/logd in [\d.]+ m?s/);
  t.regex(log, /INFO {2}upload \/Files\/logd\/a\.bin 2\.9 KiB in [\d.]+ m?s/);
  t.regex(log, /INFO {2}rename \/Files\/logd\/a\.bin -> \/Files\/logd\/b\.bin in [\d.]+ m?s/);
  t.regex(log, /INFO {2}download \/Files\/readme\.txt \d+ B .*in [\d.]+ m?s/);
  t.regex(log, /INFO {2}delete \/Files\/logd\/b\.bin in [\d.]+ m?s/);
  t.regex(log, /INFO {2}delete \/Files\/logd in [\d.]+ m?s/);
  t.notRegex(log, /DEBUG|http:|getxattr|capability/, '-v is not per request nor per probe');
  t.false(log.includes(PW));
  t.notRegex(m.output(), /INFO/, 'with --log-file the log goes to the file, not stderr');
});

test('-vv logs each HTTP request and rsync run (method, path, status, ms), secrets masked, no per-probe noise; -d traces FUSE ops (Maxxo)', async (t) => {
  const h = home(t);
  const mp = mountpoint(t);
  // -vv given before the command, as `cloudmount -vv mount ...`
  const m = cliSpawn(['-vv', 'mount', ...maxxo(mp), '-o', 'writeback_delay=0'], { env: h.pwEnv });
  killOnTeardown(t, () => m.child.pid);
  await waitFor(() => /mounted maxxo/.test(m.output()) || m.child.exitCode !== null, 60_000, 'mounted');
  t.true(isMounted(mp), m.output());
  const w = await sh(`set -e; cd "$1"; mkdir vvd; head -c 5000 /dev/urandom > vvd/x.bin; ls -l . vvd > /dev/null
    cat "Welcome to Maxxo.txt" > /dev/null; getfattr -n security.capability vvd/x.bin 2>/dev/null || true; cp vvd/x.bin /dev/null`, mp);
  t.is(w.code, 0, w.stderr);
  const um = await cli(['unmount', mp], { env: h.env, timeoutMs: 120_000 });
  t.is(um.code, 0, um.stderr);
  await m.exited;
  const out = m.output();
  t.regex(out, /DEBUG http: GET \/api\/1\/auth\/token 200 \d+ ms/);
  t.regex(out, /DEBUG http: POST \/api\/1\/\S+ 200 \d+ ms/);
  t.regex(out, /DEBUG rsync run for \/vvd\S*: exit 0 in [\d.]+ m?s/);
  t.regex(out, /INFO {2}upload \/vvd\/x\.bin 4\.9 KiB in/);
  t.notRegex(out, /capability|getxattr/, 'probes for missing attributes are not -vv lines');
  t.false(out.includes(PW), 'no password');
  t.notRegex(out, /token=(?!\*\*\*)|session_token=(?!\*\*\*)/);
  t.notRegex(out, /fuse (getattr|lookup)/, 'FUSE op tracing is not -vv');

  // -d: FUSE operations traced (the -vv of libfuse/sshfs), probes included
  const mp2 = mountpoint(t);
  const d = await mountFg(t, [...maxxo(mp2), '-d', '--log-level', 'info'], h.pwEnv);
  await sh('ls -l "$1" > /dev/null; getfattr -n security.capability "$1/Welcome to Maxxo.txt" 2>/dev/null || true', mp2);
  d.child.kill('SIGTERM');
  t.is(await d.exited, 0);
  t.regex(d.output(), /INFO {2}fuse (getattr|readdir|opendir)/);
  // fuse-native hands every xattr probe to JS (traced with its errno); the libfuse3 backend
  // answers security.* probes natively, so they never reach the trace there
  if (/\(libfuse3 /.test(d.output())) t.notRegex(d.output(), /getxattr .*security\.capability/);
  else t.regex(d.output(), /getxattr .*errno/);
});

test('--log-level and --log-file errors: a bad level or an unwritable file is one line, exit 2/1', async (t) => {
  const bad = await cli(['status', '--log-level', 'loud']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--log-level must be one of error, warn, info, debug, trace/);
  const nofile = await cli(['status', '--log-file', '/nonexistent-dir/x.log']);
  t.is(nofile.code, 1);
  t.regex(nofile.stderr, /--log-file \/nonexistent-dir\/x\.log: ENOENT/);
  const h = makeHome();
  const mp = join(h.dir, 'mp');
  mkdirSync(mp);
  const inside = await cli(['mount', ...maxxo(mp), '--log-file', join(mp, 'x.log')], { env: { ...h.env, CLOUDMOUNT_PASSWORD: PW } });
  t.is(inside.code, 2);
  t.regex(inside.stderr, /--log-file .* is inside the mountpoint/);
});

/** Plain lines `LABEL: DONE/TOTAL, ...` with DONE strictly between 0 and TOTAL: the meter moved within the file. */
function movedWithin(out: string, label: string): boolean {
  const re = new RegExp(`${label}[^\\n]*?: ([\\d.]+) (B|KiB|MiB)/([\\d.]+) (B|KiB|MiB)`, 'g');
  const unit = (u: string) => (u === 'MiB' ? 1 << 20 : u === 'KiB' ? 1024 : 1);
  for (const m of out.matchAll(re)) {
    const done = Number(m[1]) * unit(m[2]!);
    const total = Number(m[3]) * unit(m[4]!);
    if (done > 0 && done < total) return true;
  }
  return false;
}

test('unmount without a TTY: plain lines with bytes, speed and ETA that move within one big file', async (t) => {
  const e = await ownServer(t);
  const h = home(t);
  const mp = mountpoint(t);
  const m = await mountFg(t, [...vboxx(mp, e.url), '-o', 'writeback_delay=600'], h.pwEnv);
  const w = await sh('head -c 50000000 /dev/zero > "$1/Files/big-plain.bin"', mp);
  t.is(w.code, 0, w.stderr);
  // 8 MiB chunks, each answered after 400 ms: the one file takes seconds
  await setFaults(e.url, { latencyMs: 400 });
  t.teardown(() => setFaults(e.url, { latencyMs: 0 }));
  const um = await cli(['unmount', mp], { env: h.env, timeoutMs: 180_000 });
  await setFaults(e.url, { latencyMs: 0 });
  t.is(um.code, 0, um.stderr);
  t.is(await m.exited, 0);
  t.true(movedWithin(um.stderr, 'unmounting'), um.stderr);
  t.regex(um.stderr, /MiB\/s, ETA \d+s/);
  t.notRegex(um.stderr, /\r/, 'no carriage returns without a terminal');
  t.regex(um.stderr, /unmounted /);
});

test('Ctrl-C on a foreground mount at a terminal: a moving bar of the flush, then exit 130 after a clean unmount', async (t) => {
  if (!hasScript) { t.pass('no script(1)'); return; }
  const e = await ownServer(t);
  const h = home(t);
  const mp = mountpoint(t);
  const p = ptyCli(['mount', ...vboxx(mp, e.url), '-o', 'writeback_delay=600'], { env: h.pwEnv });
  t.teardown(() => p.kill());
  await p.waitFor(/mounted vboxx/);
  const w = await sh('head -c 50000000 /dev/zero > "$1/Files/big-tty.bin"', mp);
  t.is(w.code, 0, w.stderr);
  await setFaults(e.url, { latencyMs: 400 });
  t.teardown(() => setFaults(e.url, { latencyMs: 0 }));
  p.type('\x03');
  const code = await p.exited;
  await setFaults(e.url, { latencyMs: 0 });
  t.is(code, 130, p.output());
  t.false(isMounted(mp));
  const pcts = [...p.output().matchAll(/\r\x1b\[Kflushing [^\r\n]*?\] +(\d+)%/g)].map((x) => Number(x[1]));
  t.true(pcts.some((x) => x > 0 && x < 100), `bar between 0 and 100 % for one file: ${pcts.join(' ')}`);
  t.regex(p.output(), /MiB\/s, ETA \d+s/);

  // the upload is complete on the server
  const st = await cli(['status'], { env: h.env });
  t.regex(st.stdout, /no cloudmount mounts/);
});

test('SIGINT or SIGTERM the instant the mount appears (before the drive is up): a clean unmount and exit, never a kill with the mount left', async (t) => {
  const h = home(t);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    const mp = mountpoint(t);
    const m = cliSpawn(['mount', ...vboxx(mp)], { env: h.pwEnv });
    killOnTeardown(t, () => m.child.pid);
    // polled tightly: the signal lands while mountDrive and the start of the foreground loop run
    // (most of the time; the assertions hold whenever it lands)
    const until = Date.now() + 60_000;
    while (!readFileSync('/proc/mounts', 'utf8').includes(` ${mp} `) && m.child.exitCode === null && Date.now() < until) await sleep(1);
    t.true(isMounted(mp), m.output());
    m.child.kill(sig);
    const code = await m.exited;
    t.is(code, sig === 'SIGINT' ? 130 : 0, `${sig}: ${m.output()}`);
    t.false(isMounted(mp), `${sig}: no mount left`);
  }
});

// serial: its mount has a short request timeout, which the other tests of this file would load
test.serial('status: offline while the server does not answer, and the age of the oldest pending change', async (t) => {
  const e = await ownServer(t);
  const h = home(t);
  const mp = mountpoint(t);
  const m = await mountFg(t, [...vboxx(mp, e.url), '-o', 'writeback_delay=3,timeout=5'], h.pwEnv);
  t.true(isMounted(mp), m.output());
  const w = await sh('printf pending > "$1/Files/offline.txt"', mp);
  // the server stops answering in time before the upload starts
  await setFaults(e.url, { latencyMs: 12_000 });
  t.teardown(() => setFaults(e.url, { latencyMs: 0 }));
  let st = '';
  await waitFor(async () => {
    st = (await cli(['status'], { env: h.env })).stdout;
    return /offline \d+s/.test(st) && /oldest [1-9]\d*s/.test(st);
  }, 60_000, `offline in status:\n${st}`).catch(() => {});
  await setFaults(e.url, { latencyMs: 0 });
  t.regex(st, /mounted, offline \d+s/, m.output());
  t.regex(st, /1 \(7B\), oldest \d+s/);
  t.regex(st, /server not answering for \d+s/);
  const json = JSON.parse((await cli(['status', '--json'], { env: h.env })).stdout).mounts[0];
  t.is(typeof json.status.oldestPendingMs, 'number');
  t.true(json.status.oldestPendingMs <= Date.now());
  // the remote's diagnostics reach status (Remote.counters): requests made, the login among them
  const rc = json.status.counters.remote as Record<string, number>;
  t.true(rc.requests! > 0 && rc.logins! >= 1, JSON.stringify(rc));
  t.is(w.code, 0, w.stderr);
  // the upload failed while offline and goes through at the unmount's flush: no failure then
  const um = await cli(['unmount', mp], { env: h.env, timeoutMs: 180_000 });
  t.is(um.code, 0, um.stderr);
  t.notRegex(um.stderr, /upload failed/);
  t.is(await m.exited, 0, m.output());
});

test('mount-time checks: a server that is not Maxxo/vBoxx, an unknown --root, an untrusted certificate: one line, exit 1, nothing mounted', async (t) => {
  const h = home(t);
  const mp = mountpoint(t);
  const page = `<!DOCTYPE html><html><head><title>Router login</title></head><body>${'x'.repeat(3000)}</body></html>`;
  const servers: http.Server[] = [];
  t.teardown(() => { for (const s of servers) s.close(); });
  const web = async (status: number) => {
    const s = http.createServer((_q, r) => { r.writeHead(status, { 'content-type': 'text/html' }); r.end(page); });
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    return `http://127.0.0.1:${(s.address() as { port: number }).port}`;
  };
  const oneLine = (r: { code: number | null; stderr: string }) => {
    t.is(r.code, 1, r.stderr);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.notRegex(r.stderr, /<html|<body|xxxx/i, 'never the page');
    t.false(isMounted(mp));
  };
  for (const status of [200, 404]) {
    const url = await web(status);
    for (const kind of ['maxxo', 'vboxx']) {
      const user = kind === 'maxxo' ? ['--email', 'demo@maxxo.test'] : ['--username', 'demo'];
      const r = await cli(['mount', kind, mp, '--server', url, ...user], { env: h.pwEnv, timeoutMs: 60_000 });
      oneLine(r);
      t.regex(r.stderr, new RegExp(`does not answer like a (Maxxo|vBoxxCloud) server .*answered ${status}: an HTML page \\("Router login"\\).*check --server`));
    }
  }
  const wrongPath = await cli(['mount', ...maxxo(mp).map((a) => (a === emu.url ? `${emu.url}/nothing` : a))], { env: h.pwEnv, timeoutMs: 60_000 });
  oneLine(wrongPath);
  t.regex(wrongPath.stderr, /does not answer like a Maxxo server \(GET \/nothing\/api\/1\/auth\/token answered 404/);

  const root = await cli(['mount', ...vboxx(mp), '--root', 'Nope'], { env: h.pwEnv, timeoutMs: 60_000 });
  oneLine(root);
  t.regex(root.stderr, /--root Nope: no root "Nope" in this account; roots: .*Files/);

  const pki = mkdtempSync(join(tmpdir(), 'cloudmount-daily-ca-'));
  t.teardown(() => rmSync(pki, { recursive: true, force: true }));
  makePki(pki, 'cloudmount daily test CA');
  const front = await tlsFront(emu.url, pki);
  t.teardown(() => { void front.close(); });
  const tls = await cli(['mount', 'vboxx', mp, '--server', front.url, '--username', 'demo'], { env: h.pwEnv, timeoutMs: 60_000 });
  oneLine(tls);
  t.regex(tls.stderr, /TLS to https:.* failed: .*give --ca FILE/);
});

test('options by habit: -o nonempty,uid,gid,umask with fstab-only options ignored, -f, -r, global -v; usage errors suggest the option meant', async (t) => {
  const h = home(t);
  const mp = mountpoint(t);
  writeFileSync(join(mp, 'underneath'), 'hidden while mounted');
  t.teardown(() => { if (!isMounted(mp)) rmSync(join(mp, 'underneath'), { force: true }); });
  const refused = await cli(['mount', ...vboxx(mp)], { env: h.pwEnv, timeoutMs: 60_000 });
  t.is(refused.code, 1);
  t.regex(refused.stderr, /not empty \(use the nonempty option/);
  const m = cliSpawn(['-v', 'mount', ...vboxx(mp), '-f', '-r',
    '-o', 'nonempty,uid=1234,gid=2345,umask=027,defaults,_netdev,noauto,user,users,nofail,x-systemd.automount,x-systemd.idle-timeout=60'], { env: h.pwEnv });
  killOnTeardown(t, () => m.child.pid);
  await waitFor(() => /mounted vboxx/.test(m.output()) || m.child.exitCode !== null, 60_000, 'mounted');
  t.true(isMounted(mp), m.output());
  t.regex(m.output(), /INFO {2}mounted/, 'the global -v before the command counts');
  const st = await run('stat', ['-c', '%u %g %a', join(mp, 'Files'), join(mp, 'Files', 'readme.txt')], { timeoutMs: 30_000 });
  t.deepEqual(st.stdout.trim().split('\n'), ['1234 2345 750', '1234 2345 640']);
  const wr = await sh('echo x > "$1/Files/ro.txt"', mp);
  t.not(wr.code, 0);
  t.regex(wr.stderr, /Read-only file system/);
  m.child.kill('SIGINT');
  t.is(await m.exited, 130, m.output());
  t.false(isMounted(mp));

  const usage = async (args: string[], re: RegExp) => {
    const r = await cli(args, { env: h.pwEnv });
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, re);
  };
  const mp2 = join(h.dir, 'mp2');
  mkdirSync(mp2);
  await usage(['mount', ...vboxx(mp2), '-o', 'nonempy'], /unknown mount option -o nonempy \(did you mean -o nonempty\?\)/);
  await usage(['mount', ...vboxx(mp2), '-o', 'umask=999'], /-o umask=999: expected octal/);
  await usage(['mount', ...vboxx(mp2), '-o', 'uid=bob'], /-o uid=bob: expected a whole number/);
  await usage(['mount', ...vboxx(mp2), '--daemon', '-f'], /--daemon and --foreground exclude each other/);
  await usage(['mount', ...vboxx(mp2), '--allow-other', '-o', 'allow_root'], /exclude each other/);
  await usage(['mount', ...vboxx(mp2), '--read-onyl'], /unknown option --read-onyl \(did you mean --read-only\?\)/);
  await usage(['mount', ...vboxx(mp2), '-server', emu.url], /did you mean --server\?/);
  await usage(['umount', mp2], /unknown command 'umount' \(did you mean 'unmount'\?\)/);
  await usage(['vboxx', 'admin', 'persn'], /did you mean 'vboxx admin person'\?/);
});

test('allow_root lets root in but no other user; --allow-other lets them in', async (t) => {
  if (process.getuid?.() !== 0 || spawnSync('runuser', ['--version']).status !== 0) { t.pass('needs root and runuser'); return; }
  const h = home(t);
  for (const [flags, othersIn] of [[['-o', 'allow_root'], false], [['--allow-other'], true]] as const) {
    const mp = mountpoint(t);
    // other users must reach the mountpoint's folder to be refused by the mount itself
    spawnSync('chmod', ['755', mp]);
    const m = await mountFg(t, [...maxxo(mp), ...flags], h.pwEnv);
    t.true(isMounted(mp), m.output());
    t.regex(readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === mp) ?? '', /allow_other/);
    const root = await run('ls', [mp], { timeoutMs: 30_000 });
    t.regex(root.stdout, /Welcome to Maxxo/);
    const other = await run('runuser', ['-u', 'nobody', '--', 'ls', mp], { timeoutMs: 30_000 });
    if (othersIn) t.regex(other.stdout, /Welcome to Maxxo/, other.stderr);
    else { t.not(other.code, 0); t.regex(other.stderr, /Permission denied/); }
    m.child.kill('SIGTERM');
    t.is(await m.exited, 0);
    await sleep(100);
  }
});
