// The real `rsync` binary against the slice's rsync daemon (Maxxo data plane).
// The Cloudstore password goes to the child in RSYNC_PASSWORD only (never argv, never logs), in a
// minimal environment so nothing of ours (RSYNC_RSH, RSYNC_PROXY, ...) changes how rsync behaves.
import { spawn, type ChildProcess } from 'node:child_process';
import {
  RemoteError, AuthFailed, NotFound, NotADirectory, IsADirectory, InvalidName, NoSpace, Cancelled, TransferFailed, Timeout, type ErrorContext,
} from '../../errors.js';
import { redact } from '../../log.js';

/** What a run gives its child (StartedRsync.attach). */
export interface RsyncRun {
  signal?: AbortSignal;
  /** Every line (split on \r and \n) rsync writes to stdout, e.g. --info=progress2 updates. */
  onLine?: (line: string) => void;
  /** Track the child (tests, close()). */
  children?: Set<ChildProcess>;
  /** Written to rsync's stdin, which is then closed (a --files-from=- list); stdin is /dev/null without. */
  input?: string;
}

export interface RsyncResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

const KILL_GRACE_MS = 2000;

/**
 * An rsync child, started before it is given its work: what it writes meanwhile is kept, and
 * attach() hands it over. A child started with `stdin: true` waits for its --files-from=- list,
 * connected to the daemon and authenticated (see WarmRuns in transport.ts).
 */
export class StartedRsync {
  readonly child: ChildProcess;
  private stdout = '';
  private stderr = '';
  private partial = '';
  private onLine?: (line: string) => void;
  private ended?: { code: number | null; signal: NodeJS.Signals | null } | { error: Error };
  private onEnd?: () => void;

  /** cwd: the child's working folder (a relative destination lands there). */
  constructor(args: string[], password: string, rsyncPath: string | undefined, stdin: boolean, readonly cwd?: string) {
    this.child = spawn(rsyncPath ?? 'rsync', args, {
      stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      ...(cwd !== undefined ? { cwd } : {}),
      // TZ=UTC: --list-only prints mtimes in the local time of the rsync process; parseListing
      // reads them as UTC, whatever time zone this process runs in.
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C', TZ: 'UTC', RSYNC_PASSWORD: password },
    });
    // a child that died before its list came: the write fails with EPIPE, its exit says why
    this.child.stdin?.on('error', () => {});
    this.child.stdout!.setEncoding('utf8');
    this.child.stderr!.setEncoding('utf8');
    this.child.stdout!.on('data', (d: string) => {
      if (this.stdout.length < 16384) this.stdout += d;
      this.partial += d;
      const parts = this.partial.split(/[\r\n]/);
      this.partial = parts.pop() ?? '';
      if (this.onLine) for (const l of parts) if (l.trim()) this.onLine(l);
    });
    this.child.stderr!.on('data', (d: string) => { if (this.stderr.length < 16384) this.stderr += d; });
    this.child.once('error', (e) => { this.ended ??= { error: e }; this.onEnd?.(); });
    this.child.once('close', (code, signal) => { this.ended ??= { code, signal }; this.onEnd?.(); });
  }

  /** Whether the child is still waiting (not exited, nothing attached). */
  get alive(): boolean { return this.ended === undefined && this.onEnd === undefined; }

  kill(): void { this.child.kill('SIGTERM'); }

  /** Its exit status (never rejects except Cancelled on abort, TransferFailed when rsync cannot run). */
  attach(run: RsyncRun, ctx: ErrorContext): Promise<RsyncResult> {
    return new Promise((resolve, reject) => {
      const child = this.child;
      if (run.signal?.aborted) {
        child.kill('SIGTERM');
        return reject(new Cancelled('transfer cancelled', ctx));
      }
      run.children?.add(child);
      let killTimer: NodeJS.Timeout | undefined;
      let cancelled = false;
      const onAbort = () => {
        cancelled = true;
        child.kill('SIGTERM');
        killTimer = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
      };
      run.signal?.addEventListener('abort', onAbort, { once: true });
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        if (killTimer) clearTimeout(killTimer);
        run.signal?.removeEventListener('abort', onAbort);
        run.children?.delete(child);
        const end = this.ended!;
        if ('error' in end) {
          const e = end.error as NodeJS.ErrnoException;
          return reject(new TransferFailed(`cannot run rsync: ${e.code ?? e.message}`, { ...ctx, cause: e }));
        }
        if (this.partial.trim() && run.onLine) run.onLine(this.partial);
        if (cancelled) return reject(new Cancelled('transfer cancelled', ctx));
        resolve({ code: end.code, signal: end.signal, stdout: this.stdout, stderr: this.stderr });
      };
      this.onLine = run.onLine;
      // lines written before the hand-over (a started child writes none before its list)
      if (run.onLine) for (const l of this.stdout.split(/[\r\n]/).slice(0, -1)) if (l.trim()) run.onLine(l);
      if (this.ended) return finish();
      this.onEnd = finish;
      if (run.input !== undefined) child.stdin?.end(run.input);
    });
  }
}

/** Exit codes worth repeating: protocol start (non-auth), socket I/O, data stream, timeouts. */
const TRANSIENT = new Set([5, 10, 12, 30, 35]);

export interface RsyncFailure {
  error: RemoteError;
  transient: boolean;
  authFailed: boolean;
  /**
   * rsync never got to talk to the daemon (refused, unreachable, connect timeout) or the daemon
   * does not know the module: the slice's address or login may be out of date (the storage server
   * moved, or restarted on another port).
   */
  unreachable: boolean;
}

const UNREACHABLE = /failed to connect to|Connection refused|No route to host|Network is unreachable|Unknown module|getaddrinfo|Name or service not known/i;

/** Typed error for a failed rsync run; `secret` is scrubbed from the text it quotes. */
export function rsyncFailure(r: RsyncResult, ctx: ErrorContext, secret: string): RsyncFailure {
  const text = r.stderr + '\n' + r.stdout;
  const lines = r.stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  // The most telling line: rsync's own complaint, not its trailing "rsync error: ... (code N)".
  const telling = lines.find((l) => /^(@ERROR|rsync: |ERROR)/.test(l)) ?? lines[lines.length - 1] ?? '';
  let detail = telling.replace(/^rsync:\s*/, '').slice(0, 300);
  if (secret) detail = detail.split(secret).join('***');
  detail = redact(detail);
  const msg = `rsync failed (exit ${r.code ?? r.signal})${detail ? ': ' + detail : ''}`;
  const no = { authFailed: false, unreachable: false };
  if (/auth failed/i.test(text)) return { error: new AuthFailed('rsync authentication failed', ctx), transient: false, authFailed: true, unreachable: false };
  if (/No space left on device|Disk quota exceeded/i.test(text)) return { error: new NoSpace(msg, ctx), transient: false, ...no };
  if ((r.code === 23 || r.code === 11) && /No such file or directory/.test(text)) {
    return { error: new NotFound(msg, ctx), transient: false, ...no };
  }
  // --mkpath of a folder another run of ours made in the same moment (the daemon's mkdir raced it:
  // soak seed 271304, an upload into a folder whose mkdir run was on its way): it is there now
  if ((r.code === 11 || r.code === 23) && /mkdir .* failed: File exists \(17\)/.test(text)) {
    return { error: new TransferFailed(msg, ctx), transient: true, ...no };
  }
  // a listing of a name that is a file (a drive's guess that it is a folder, Remote.likelyFolder)
  if (r.code === 23 && /change_dir .* failed: Not a directory \(20\)/.test(text)) {
    return { error: new NotADirectory(msg, ctx), transient: false, ...no };
  }
  // a path the storage server cannot hold: the program gets ENAMETOOLONG, no retry
  if (/File name too long \(36\)/.test(text)) return { error: new InvalidName(`path too long for the storage server: ${msg}`, ctx), transient: false, ...no };
  // 35: no greeting from the daemon within --contimeout
  if (r.code === 35) return { error: new Timeout(msg, ctx), transient: true, authFailed: false, unreachable: true };
  if (r.code === 30) return { error: new Timeout(msg, ctx), transient: true, ...no };
  const unreachable = (r.code === 5 || r.code === 10) && UNREACHABLE.test(text);
  const transient = r.code !== null && TRANSIENT.has(r.code);
  return { error: transient ? new TransferFailed(msg, ctx) : new RemoteError('TRANSFER_FAILED', msg, ctx, false), transient, authFailed: false, unreachable };
}

/** A successful download run that only said "skipping directory": the source is a folder. */
export function skippedDirectory(r: RsyncResult, ctx: ErrorContext): RemoteError | undefined {
  return /skipping directory/.test(r.stdout + r.stderr) ? new IsADirectory('is a folder', ctx) : undefined;
}

/**
 * Remote source path for the daemon: it glob-expands sources, so `* ? [` are escaped. A name that
 * has both wildcards and a backslash cannot be escaped in a way rsync's receiver accepts; its
 * backslashes become `?` (matching any one character, in practice only the backslash itself).
 */
export function escapeSource(path: string): string {
  if (!/[*?[]/.test(path)) return path;
  let out = '';
  for (const c of path) out += c === '\\' ? '?' : c === '*' || c === '?' || c === '[' ? '\\' + c : c;
  return out;
}

/** Progress line of --info=progress2: "  1,234,567  12%  1.23MB/s  0:00:01 ..." -> bytes. */
export function parseProgress(line: string): number | undefined {
  const m = /^\s*([\d,.]+)\s+\d+%/.exec(line);
  if (!m) return undefined;
  const n = Number(m[1]!.replace(/[,.]/g, ''));
  return Number.isFinite(n) ? n : undefined;
}

export interface ListedRow {
  name: string; type: 'file' | 'dir'; size: number; mtimeMs: number;
  /** Whether any execute bit is set (x, s or t in the listing's permissions). */
  exec?: boolean;
}

// "-rw-r--r--        5000 2026/12/04 07:40:50 name" (with --no-h: no digit grouping)
const LIST_LINE = /^([-dlpscb])([-rwxsStT]{9})[+.@]?\s+([\d,.]+)\s+(\d{4})\/(\d\d)\/(\d\d) (\d\d):(\d\d):(\d\d) (.+)$/;

/**
 * One line of `rsync --list-only --no-h` (run with TZ=UTC) -> a row, or undefined for anything
 * else: symlinks and specials, lines that are not listing rows. The folder itself comes back as a
 * row named "." (its own mtime; not a name any entry can have). rsync
 * writes each byte it considers unprintable (under LC_ALL=C: every non-ASCII byte, control
 * characters, and a backslash that would read as an escape) as \#ooo; those are decoded back to
 * the name's bytes.
 */
export function parseListLine(line: string): ListedRow | undefined {
  const m = LIST_LINE.exec(line);
  if (!m || (m[1] !== '-' && m[1] !== 'd')) return undefined;
  const perms = m[2]!;
  const size = Number(m[3]!.replace(/[,.]/g, ''));
  const mtimeMs = Date.UTC(+m[4]!, +m[5]! - 1, +m[6]!, +m[7]!, +m[8]!, +m[9]!);
  const raw = m[10]!;
  if (!Number.isSafeInteger(size) || !Number.isFinite(mtimeMs)) return undefined;
  if (raw === '.') return m[1] === 'd' ? { name: '.', type: 'dir', size: 0, mtimeMs, exec: false } : undefined;
  // a multi-byte character is escaped whole (all its bytes are non-ASCII): each run of escapes
  // decodes on its own
  const name = raw.replace(/(?:\\#[0-7]{3})+/g, (run) =>
    Buffer.from(run.split('\\#').slice(1).map((o) => parseInt(o, 8))).toString('utf8'));
  const exec = [2, 5, 8].some((i) => 'xst'.includes(perms[i]!));
  return { name, type: m[1] === 'd' ? 'dir' : 'file', size, mtimeMs, exec };
}
