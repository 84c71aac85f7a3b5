// mount / unmount / status / share: the drive's lifecycle as seen from the command line.
import { spawn } from 'node:child_process';
import { openSync, closeSync, writeSync, createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { bool, int, list, str, UsageError, type CmdDef, type Parsed } from './args.js';
import { parseMountOptions, mountOptionsHelp } from './mountopts.js';
import { targetFromFlags, targetFromSaved, accountId, createRemote, explainRemoteError, passwordFor, caOption, type Target } from './target.js';
import { readPasswordFile } from './password.js';
import { log, CliError, raiseLevel, noteHangup } from './context.js';
import {
  alive, canonicalMountpoint, findByMountpoint, findByPath, listRecords, readRecord, removeRecord,
  writeRecord, RecordWriter, type MountRecord,
} from './registry.js';
import { cleanUnmount, findMount, isMounted, isMountedAsync, lazyUnmount } from '../util/mounts.js';
import { run } from '../util/run.js';
import { sleep } from '../util/sleep.js';
import { createFlushMeter, formatEta } from './progress.js';
import { formatTable, humanBytes, out, printJson } from './output.js';
import { logDir, privateDir } from './paths.js';
import type { Remote, StatFs } from '../remote/types.js';
import { observeRemote } from '../remote/observed.js';
import { checkTop, explainFirstCall } from './checks.js';
import { exitWhenDrained } from '../util/exit.js';
import { usableDir } from '../util/dirs.js';
import { describeHolders, mountHolders } from '../util/holders.js';
import { defaultVfsOptions } from '../vfs/vfs.js';

const DAEMON_ENV = 'CLOUDMOUNT_DAEMON_CHILD';
/** Sent by `unmount --force` to the mount process (SIGTERM twice could merge into one). */
const FORCE_SIGNAL: NodeJS.Signals = 'SIGUSR2';

export const mountCommandOptions = [
  { name: 'server', value: 'URL', desc: 'Service base URL (with maxxo|vboxx)' },
  { name: 'email', value: 'EMAIL', desc: 'Maxxo e-mail (with maxxo)' },
  { name: 'username', value: 'USER', desc: 'vBoxx username (with vboxx)' },
  { name: 'password-file', value: 'FILE', desc: 'Read the password from FILE (else saved, CLOUDMOUNT_PASSWORD, prompt)' },
  { name: 'root', value: 'ID|NAME', desc: 'vBoxx: mount only this root instead of all roots as folders' },
  { name: 'daemon', desc: 'Detach into the background once mounted' },
  { name: 'foreground', short: 'f', desc: 'Stay in the foreground (the default; as with sshfs -f)' },
  { name: 'debug', short: 'd', desc: 'Log every FUSE operation and -vv (same as -o debug; as with sshfs -d)' },
  { name: 'read-only', short: 'r', desc: 'Mount read-only (same as -o ro)' },
  { name: 'allow-other', desc: 'Let other users access the mount (same as -o allow_other)' },
  { name: 'o', short: 'o', value: 'OPTS', desc: 'Mount options, comma-separated (see below); may repeat', repeat: true },
  caOption,
];

function resolveMountTarget(p: Parsed): Target {
  const t = resolveMountTargetOnly(p);
  const ca = str(p, 'ca');
  if (ca) { t.caFile = ca; t.caSaved = false; }
  return t;
}

function resolveMountTargetOnly(p: Parsed): Target {
  const first = p.args[0]!;
  if (first === 'maxxo' || first === 'vboxx') return targetFromFlags(first, p);
  if (str(p, 'server') || str(p, 'email') || str(p, 'username')) {
    throw new UsageError(`'${first}' is taken as a saved account name; --server/--email/--username go with maxxo|vboxx`);
  }
  return targetFromSaved(first);
}

/** The daemon child gets the password on stdin, never in argv or the environment. */
function readStdinPassword(): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const s = createReadStream('', { fd: 0, encoding: 'utf8' });
    s.on('data', (d) => { buf += d; });
    s.on('end', () => resolve(buf.split('\n')[0] ?? ''));
    s.on('error', reject);
  });
}

function notifyParent(line: string): void {
  if (process.env[DAEMON_ENV] !== '1') return;
  try { writeSync(3, line + '\n'); closeSync(3); } catch { /* parent gone */ }
}

async function checkMountpoint(mp: string): Promise<void> {
  try {
    const st = await stat(mp);
    if (!st.isDirectory()) throw new CliError(`mountpoint ${mp} is not a directory`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (e instanceof CliError) throw e;
    // A dead FUSE mount from a crashed run: the drive layer detects and clears it.
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') return;
    if (code === 'ENOENT') throw new CliError(`mountpoint ${mp} does not exist (mkdir -p ${mp})`);
    throw new CliError(`mountpoint ${mp}: ${code ?? (e as Error).message}`);
  }
}

async function spawnDaemon(p: Parsed, password: string, mountpoint: string): Promise<number> {
  privateDir(logDir());
  const logFile = join(logDir(), `mount-${mountpoint.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^_+/, '')}.log`);
  const fd = openSync(logFile, 'a', 0o600);
  const argv = process.argv.slice(1).filter((a) => a !== '--daemon');
  const env: NodeJS.ProcessEnv = { ...process.env, [DAEMON_ENV]: '1' };
  delete env.CLOUDMOUNT_PASSWORD;
  const child = spawn(process.execPath, argv, { detached: true, stdio: ['pipe', fd, fd, 'pipe'], env });
  closeSync(fd);
  child.stdin!.end(password + '\n');
  const status = child.stdio[3] as NodeJS.ReadableStream;
  const line = await new Promise<string>((resolve) => {
    let buf = '';
    status.setEncoding('utf8');
    status.on('data', (d: string) => { buf += d; const i = buf.indexOf('\n'); if (i >= 0) resolve(buf.slice(0, i)); });
    status.on('end', () => resolve(buf));
    child.on('exit', (code) => setTimeout(() => resolve(buf || `error exited with code ${code}`), 200));
  });
  (status as unknown as { destroy(): void }).destroy();
  child.unref();
  if (line.startsWith('mounted')) {
    out(`mounted ${mountpoint} in the background (pid ${child.pid}, log ${logFile}); unmount with: cloudmount unmount ${mountpoint}\n`);
    return 0;
  }
  throw new CliError(`${line.replace(/^error\s*/, '') || 'mount failed'} (log: ${logFile})`);
}

async function runMount(p: Parsed): Promise<number> {
  const settings = parseMountOptions(list(p, 'o'));
  if (bool(p, 'debug')) settings.debug = true;
  if (bool(p, 'read-only')) settings.vfs.readOnly = true;
  if (bool(p, 'allow-other')) {
    if (settings.allowRoot) throw new UsageError('--allow-other and -o allow_root exclude each other');
    settings.allowOther = true;
  }
  if (bool(p, 'daemon') && bool(p, 'foreground')) throw new UsageError('--daemon and --foreground exclude each other');
  const t = resolveMountTarget(p);
  const root = str(p, 'root') ?? settings.root ?? t.root;
  if (root !== undefined && t.kind !== 'vboxx') throw new UsageError('--root applies to vboxx only');
  t.root = root;
  if (settings.debug) raiseLevel('debug');
  const mountpoint = canonicalMountpoint(p.args[1]!);
  const isChild = process.env[DAEMON_ENV] === '1';
  try {
    await checkMountpoint(mountpoint);
    const busy = findByMountpoint(mountpoint);
    if (busy && busy.pid !== process.pid) throw new CliError(`${mountpoint} is already mounted by cloudmount (pid ${busy.pid})`);
    const id = accountId({ kind: t.kind, server: t.server, user: t.root ? `${t.user}#root=${t.root}` : t.user });
    const same = listRecords().find((r) => r.accountId === id && r.pid !== process.pid);
    if (same) throw new CliError(`this account is already mounted at ${same.mountpoint} (pid ${same.pid}); one mount per account keeps its write-back journal consistent`);
    // before the password prompt and the daemon: a cache that cannot be used fails the mount now
    const cache = settings.vfs.cacheDir ?? defaultVfsOptions(id).cacheDir;
    try { await usableDir(cache); } catch (e) {
      throw new CliError(`${settings.vfs.cacheDir ? 'cache_dir' : 'cache folder'}: ${(e as Error).message}`);
    }

    let password: string;
    if (isChild) password = await readStdinPassword();
    else if (settings.passwordFile && !str(p, 'password-file')) password = readPasswordFile(settings.passwordFile, (m) => log.warn(m));
    else password = await passwordFor(t, p);
    if (!password) throw new CliError('empty password');

    if (bool(p, 'daemon') && !isChild) return await spawnDaemon(p, password, mountpoint);
    return await mountForeground(t, password, mountpoint, id, settings);
  } catch (e) {
    if (isChild) notifyParent(`error ${e instanceof Error ? e.message : String(e)}`);
    throw e;
  }
}

async function mountForeground(t: Target, password: string, mountpoint: string, id: string,
  settings: ReturnType<typeof parseMountOptions>): Promise<number> {
  const remote: Remote = observeRemote(await createRemote(t, password, settings.client), log);
  // A wrong password is a clear error here, not an EIO from the first `ls`.
  let checkedLogin: { statfs: StatFs; at: number };
  try {
    const at = Date.now();
    try { checkedLogin = { statfs: await remote.statfs(), at }; } catch (e) { explainFirstCall(e, t); explainRemoteError(e, t); }
    await checkTop(remote, t);
  } catch (e) {
    await remote.close().catch(() => {});
    throw e;
  }

  const now = new Date().toISOString();
  const rec: MountRecord = {
    pid: process.pid, mountpoint, kind: t.kind, name: t.name, server: t.server, user: t.user, accountId: id,
    root: t.root, readOnly: !!settings.vfs.readOnly, startedAt: now, updatedAt: now, state: 'mounting',
  };
  writeRecord(rec);
  // From the moment the kernel mount can appear (inside mountDrive) until the handlers below are
  // in place, a Ctrl-C must not kill the process with a mount up (the test that caught it sent
  // SIGINT right after a first `ls` worked; Node's default then ended the process): the first
  // signal is kept and answered as soon as the drive is up, a second exits at once.
  let earlySignal: NodeJS.Signals | null = null;
  // the last resort of repeated signals: leave now, without waiting for the flush
  const exitNow = () => { removeRecord(process.pid); void exitWhenDrained(130); };
  const onEarlySignal = (sig: NodeJS.Signals) => {
    if (earlySignal) { exitNow(); return; }
    earlySignal = sig;
    process.stderr.write(`${sig}: unmounting as soon as the mount is up (again to exit at once)\n`);
  };
  const earlySigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of earlySigs) process.on(s, onEarlySignal);
  const dropEarly = () => { for (const s of earlySigs) process.off(s, onEarlySignal); };
  const { mountDrive } = await import('../fuse/mount.js');
  let drive: Awaited<ReturnType<typeof mountDrive>>;
  try {
    drive = await mountDrive(remote, mountpoint, {
      ...settings.vfs, accountId: id, checkedLogin, allowOther: settings.allowOther, allowRoot: settings.allowRoot,
      allowNonEmpty: settings.allowNonEmpty, umask: settings.umask, debug: settings.debug, backend: settings.backend, log,
      ...(settings.kernelTimeoutS !== undefined ? { attrTimeoutS: settings.kernelTimeoutS, entryTimeoutS: settings.kernelTimeoutS } : {}),
      cacheReaddir: settings.cacheReaddir,
      ...(settings.writebackCache ? { writebackCache: true } : {}),
      ...(settings.readdirplus ? { readdirplus: settings.readdirplus } : {}),
      ...(settings.fuseReader ? { fuseReader: settings.fuseReader } : {}),
      ...(settings.spinUs !== undefined ? { spinUs: settings.spinUs } : {}),
    });
  } catch (e) {
    dropEarly();
    removeRecord(process.pid);
    await remote.close().catch(() => {});
    throw new CliError(`mount of ${mountpoint} failed: ${(e as Error).message}`);
  }
  rec.state = 'mounted';
  const writer = new RecordWriter(rec);
  const refresh = (stateChange = false) => {
    try { rec.status = drive.status(); } catch { /* keep the last one */ }
    if (stateChange) return writer.write();
    writer.refresh();
    return undefined;
  };
  await refresh(true);
  notifyParent(`mounted ${process.pid}`);
  if (process.env[DAEMON_ENV] !== '1') {
    process.stderr.write(`mounted ${t.kind} ${t.user} at ${mountpoint}; Ctrl-C or \`cloudmount unmount ${mountpoint}\` unmounts\n`);
  } else {
    log.info(`mounted ${t.kind} ${t.user} at ${mountpoint}`);
  }

  return await new Promise<number>((resolve) => {
    let stopping = false;
    let lostChecks = 0;
    let checking = false;
    const timer = setInterval(() => {
      refresh();
      // Someone ran `fusermount -u` behind our back: flush what is pending and leave.
      if (stopping || checking || process.platform !== 'linux') return;
      checking = true;
      void isMountedAsync(mountpoint).then((still) => {
        if (stopping) return;
        if (!still) {
          if (++lostChecks >= 2) { log.warn(`${mountpoint} was unmounted from outside; flushing and exiting`); void stop('unmounted', false); }
        } else lostChecks = 0;
      }).finally(() => { checking = false; });
    }, 1000);
    const stop = async (why: string, force: boolean) => {
      if (stopping && !force) return;
      stopping = true;
      rec.state = 'unmounting';
      void refresh(true);
      log.info(`${why}: ${force ? 'cutting loose' : 'flushing and unmounting'} ${mountpoint}`);
      let code = 0;
      // A person at the terminal (Ctrl-C) sees what the flush does; `cloudmount unmount` shows
      // its own meter from the record, and a daemon's stderr is its log file.
      const meter = !force && why !== 'SIGTERM' && process.env[DAEMON_ENV] !== '1' ? createFlushMeter(`flushing ${mountpoint}`) : undefined;
      const sampleNow = () => { try { meter?.sample(drive.status()); } catch { /* closed */ } };
      sampleNow();
      const meterTimer = meter ? setInterval(sampleNow, 250) : undefined;
      try {
        await drive.unmount({ force });
      } catch (e) {
        log.error(`unmount of ${mountpoint}: ${(e as Error).message}`);
        const r = await lazyUnmount(mountpoint);
        if (r.code !== 0) log.error(`fusermount -uz ${mountpoint}: ${r.stderr.trim()}`);
        code = 1;
      }
      if (meterTimer) clearInterval(meterTimer);
      meter?.done();
      // The outcome is the status after the flush: an upload that failed before and went through
      // at the flush is no failure (the last periodic status still listed it), and one that
      // failed during the flush is.
      const before = JSON.stringify(rec.status?.failures ?? []);
      try { rec.status = drive.status(); } catch { /* closed: keep the last one */ }
      const failures = rec.status?.failures.length ?? 0;
      if (force && (rec.status?.pending ?? 0) > 0) log.warn(`${rec.status!.pending} pending changes kept in the journal; replayed at the next mount`);
      if (failures) { log.error(`${failures} change(s) failed (uploads, refused deletes); see the log above`); code = code || 1; }
      clearInterval(timer);
      if (JSON.stringify(rec.status?.failures ?? []) !== before) {
        // `cloudmount unmount` reads the outcome from the record (polling every 200 ms)
        await writer.write();
        await sleep(400);
      }
      await writer.idle();
      removeRecord(process.pid);
      // Ctrl-C ends with the shell's code for it (130) once the drive is cleanly unmounted
      resolve(code || (why === 'SIGINT' ? 130 : 0));
    };
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (sig === 'SIGHUP') noteHangup();
      if (signals === 1) void stop(sig, false);
      else if (signals === 2) { process.stderr.write('second signal: unmounting without waiting for uploads (journal kept)\n'); void stop(sig, true); }
      else exitNow();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onSignal);
    dropEarly();
    if (earlySignal) onSignal(earlySignal);
    // `cloudmount unmount --force`: detach now; files still open for writing go to the journal
    process.on(FORCE_SIGNAL, () => { void stop(FORCE_SIGNAL, true); });
    process.on('exit', () => removeRecord(process.pid));
  });
}

const age = (ms: number) => formatEta((Date.now() - ms) / 1000);

function recordLine(r: MountRecord): Record<string, unknown> {
  const s = r.status;
  // the state people need: is it reaching the server, and how long have changes waited
  const link = s?.link && s.link.state !== 'ok' ? `${s.link.state} ${age(s.link.sinceMs)}` : undefined;
  return {
    mountpoint: r.mountpoint, kind: r.kind, account: r.name ?? r.user, pid: r.pid, state: link ? `${r.state}, ${link}` : r.state,
    pending: s ? `${s.pending} (${humanBytes(s.pendingBytes)}${s.pendingDeletes ? `, ${s.pendingDeletes} delete${s.pendingDeletes === 1 ? '' : 's'}` : ''}${s.pendingMkdirs ? `, ${s.pendingMkdirs} mkdir${s.pendingMkdirs === 1 ? '' : 's'}` : ''}${s.pendingMoves ? `, ${s.pendingMoves} rename${s.pendingMoves === 1 ? '' : 's'}` : ''}${s.pendingAttrs ? `, ${s.pendingAttrs} time/mode change${s.pendingAttrs === 1 ? '' : 's'}` : ''})${s.pending && s.oldestPendingMs ? `, oldest ${age(s.oldestPendingMs)}` : ''}` : '-',
    failures: s ? s.failures.length : '-',
    cache: s ? humanBytes(s.cacheBytes) : '-',
  };
}

async function runUnmount(p: Parsed): Promise<number> {
  const mp = canonicalMountpoint(p.args[0]!);
  const force = bool(p, 'force');
  const rec = findByMountpoint(mp);
  if (!rec) {
    const k = findMount(mp);
    if (k && /cloudmount/.test(`${k.fstype} ${k.source}`)) {
      if (!force) throw new CliError(`${mp} is a cloudmount mount with no live process (crashed?); detach it with: cloudmount unmount --force ${mp}`);
      const r = await lazyUnmount(mp);
      if (r.code !== 0) throw new CliError(`fusermount -uz ${mp} failed: ${r.stderr.trim()}`);
      out(`detached ${mp}; pending changes stay in the journal and are replayed at the next mount of that account\n`);
      return 0;
    }
    throw new CliError(k ? `${mp} is a ${k.fstype} mount, not a cloudmount mount` : `${mp} is not a cloudmount mount`);
  }
  if (force) {
    const cut = describeHolders(await mountHolders(mp));
    const r = await lazyUnmount(mp);
    if (r.code !== 0) log.warn(`fusermount -uz ${mp}: ${r.stderr.trim()}`);
    // the mount process journals files still open for writing and exits; killed only if it does not
    let killed = false;
    try { process.kill(rec.pid, FORCE_SIGNAL); } catch { /* gone already */ }
    for (let i = 0; i < 300 && alive(rec.pid); i++) await sleep(100);
    if (alive(rec.pid)) {
      killed = true;
      try { process.kill(rec.pid, 'SIGKILL'); } catch { /* gone already */ }
      for (let i = 0; i < 50 && alive(rec.pid); i++) await sleep(100);
    }
    removeRecord(rec.pid, rec.slot);
    const pending = rec.status?.pending ?? 0;
    for (const line of cut) process.stderr.write(`  cut off: ${line}\n`);
    out(`forced unmount of ${mp} (pid ${rec.pid} ${killed ? 'killed: it did not stop within 30 s' : 'stopped'}); ` +
      `${pending ? `${pending} pending change(s) are` : 'anything not yet uploaded is'} kept in the journal and replayed at the next mount of this account` +
      (cut.length && !killed ? '; files that were open for writing are kept as written so far' : '') + '\n');
    return 0;
  }
  // The kernel refuses a plain unmount while a program uses the mount, atomically: no file is
  // opened between a check and the detach. While it is busy this waits (bounded) and names who.
  const waitMs = (int(p, 'wait') ?? 10) * 1000;
  const deadline = Date.now() + waitMs;
  let told = false;
  for (;;) {
    const r = await cleanUnmount(mp);
    if (r.code === 0) break;
    if (!/busy/i.test(r.stderr)) {
      // detached already, or fusermount failed otherwise: the mount process unmounts (busy wait,
      // then lazily, keeping what open files hold) and flushes
      if (isMounted(mp)) log.warn(`unmount ${mp}: ${r.stderr.trim() || `exit ${r.code}`}; asking the mount process`);
      break;
    }
    const who = describeHolders(await mountHolders(mp));
    if (Date.now() >= deadline) {
      throw new CliError(`${mp} is busy (EBUSY), still in use after ${waitMs / 1000} s:\n` +
        (who.length ? who.map((l) => `  ${l}\n`).join('') : '  (by processes this user cannot see)\n') +
        `close those files (or leave those folders) and run it again, or detach now with: cloudmount unmount --force ${mp}\n` +
        '(--force keeps what the programs wrote so far, and their later calls fail)');
    }
    if (!told) {
      told = true;
      process.stderr.write(`${mp} is in use; waiting up to ${waitMs / 1000} s for these to close their files:\n` +
        who.map((l) => `  ${l}\n`).join(''));
    }
    await sleep(250);
  }
  try { process.kill(rec.pid, 'SIGTERM'); } catch (e) { throw new CliError(`cannot signal pid ${rec.pid}: ${(e as NodeJS.ErrnoException).code}`); }
  // bytes sent (within files too) from the record the mount process rewrites each second
  const bar = createFlushMeter(`unmounting ${mp}`);
  bar.sample(rec.status);
  let last: MountRecord | undefined = rec;
  while (alive(rec.pid)) {
    const now = readRecord(rec.pid, rec.slot);
    if (now) last = now;
    bar.sample(last?.status);
    await sleep(200);
  }
  const failures = last?.status?.failures ?? [];
  bar.done(`unmounted ${mp}`);
  if (failures.length) {
    for (const f of failures) process.stderr.write(`  ${f.op ?? 'upload'} failed: ${f.path}: ${f.error}\n`);
    throw new CliError(`${failures.length} change(s) failed before unmount; failed uploads stay in the journal for the next mount`);
  }
  return 0;
}

async function runStatus(p: Parsed): Promise<number> {
  const recs = listRecords();
  if (bool(p, 'json')) { printJson({ mounts: recs }); return 0; }
  if (!recs.length) { out('no cloudmount mounts\n'); return 0; }
  out(formatTable(recs.map(recordLine), ['mountpoint', 'kind', 'account', 'pid', 'state', 'pending', 'failures', 'cache']));
  for (const r of recs) {
    const l = r.status?.link;
    if (l && l.state !== 'ok') out(`${r.mountpoint}: ${l.state === 'offline' ? 'server not answering' : 'retrying'} for ${age(l.sinceMs)}${l.error ? `: ${l.error}` : ''}\n`);
    for (const f of r.status?.failures ?? []) out(`${r.mountpoint}: ${f.op ?? 'upload'} of ${f.path} failed after ${f.attempts} attempt(s): ${f.error}\n`);
  }
  return 0;
}

async function runShare(p: Parsed): Promise<number> {
  const path = p.args[0]!;
  const found = findByPath(path);
  if (!found) throw new CliError(`${path} is not inside a cloudmount mount`);
  if (found.rec.kind !== 'vboxx') throw new CliError(`share links are a vBoxx feature; ${found.rec.mountpoint} is a ${found.rec.kind} mount`);
  // Ask the mount itself (a child process: the xattr goes through the kernel to its process).
  const r = await run('getfattr', ['--only-values', '-n', 'user.cloudmount.share_link', '--', canonicalMountpoint(path)], { timeoutMs: 60_000 });
  if (r.code !== 0) {
    const msg = r.stderr.replace(/^getfattr: /, '').trim();
    throw new CliError(`no share link for ${path}: ${msg || `getfattr exited ${r.code}`}`);
  }
  const url = r.stdout.trim();
  if (bool(p, 'json')) printJson({ path, url });
  else out(url + '\n');
  return 0;
}

export const mountCommands: CmdDef[] = [
  {
    path: ['mount'], args: 'maxxo|vboxx|NAME MOUNTPOINT', minArgs: 2, maxArgs: 2,
    summary: 'Mount an account (or the saved account NAME) at MOUNTPOINT.',
    details: 'Runs in the foreground until Ctrl-C, SIGTERM, a closed terminal (SIGHUP) or `cloudmount unmount`,\n' +
      'which flush pending uploads and unmount; --daemon detaches once the drive is mounted.\n\n' + mountOptionsHelp(),
    options: mountCommandOptions,
    run: runMount,
  },
  {
    path: ['unmount'], args: 'MOUNTPOINT', minArgs: 1, maxArgs: 1,
    summary: 'Flush pending uploads and unmount a cloudmount drive.',
    details: 'Waits (with progress) until every pending upload reached the server and the mount process ended.\n' +
      'While programs have files (or their working folder) in the drive, it waits up to --wait seconds,\n' +
      'naming them, then refuses (EBUSY) and leaves the drive mounted.\n' +
      '--force detaches at once (fusermount -uz) and stops the mount process: files still open for writing\n' +
      'are kept as written so far, and with pending changes stay in the write-back journal, replayed at the\n' +
      'next mount of the same account; the programs\' later calls on those files fail (ENOTCONN).',
    options: [
      { name: 'force', short: 'f', desc: 'Do not wait for programs or uploads: detach now (journal kept)' },
      { name: 'wait', value: 'SECONDS', desc: 'How long to wait for programs to close their files (default 10)' },
    ],
    run: runUnmount,
  },
  {
    path: ['status'], args: '', minArgs: 0, maxArgs: 0,
    summary: 'Show live mounts: pending uploads and deletes, failures and cache use.',
    options: [{ name: 'json', desc: 'Print JSON instead of a table' }],
    run: runStatus,
  },
  {
    path: ['share'], args: 'PATH', minArgs: 1, maxArgs: 1,
    summary: 'Print the share link of a file or folder inside a mounted vBoxx drive.',
    details: 'Same as `getfattr -n user.cloudmount.share_link PATH`.',
    options: [{ name: 'json', desc: 'Print JSON instead of the bare URL' }],
    run: runShare,
  },
];
