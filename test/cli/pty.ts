// Runs the CLI on a real pseudo-terminal (util-linux `script`), the way a person at a terminal
// does: prompts see a TTY, typed text goes through the terminal's line discipline (so echo is
// what the program set, and Ctrl-C is a real SIGINT to the foreground process group).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { alive } from '../support/procs.js';
import { CLI } from './helpers.js';

export const hasScript = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export interface Pty {
  /** The `script` process; the CLI runs under it in its own session. */
  child: ChildProcess;
  /** Everything the terminal showed (the CLI's stdout and stderr, and whatever the terminal echoed). */
  output(): string;
  /** Types text into the terminal (\r is Enter, \x03 Ctrl-C). */
  type(text: string): void;
  /** Waits until the terminal showed text matching re (or the session ended). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
  /** The CLI's pid (node running main.js under the terminal). */
  cliPid(): number | undefined;
  exited: Promise<number | null>;
  /** Kills what is left of the session (the CLI and everything under it). */
  kill(): void;
}

/** The CLI with args under a pseudo-terminal; echo stays on unless the program turns it off. */
export function ptyCli(args: string[], o: { env: NodeJS.ProcessEnv; cwd?: string }): Pty {
  return ptyRun([process.execPath, CLI, ...args], o);
}

/** Any command under a pseudo-terminal. */
export function ptyRun(argv: string[], o: { env: NodeJS.ProcessEnv; cwd?: string }): Pty {
  // exec: the program leads the terminal's session, so a hangup (SIGHUP) reaches it as from a closed window.
  const cmd = `exec ${argv.map(quote).join(' ')}`;
  // --echo always: the terminal echoes like an interactive one even though our stdin is a pipe,
  // so a missing echo can only come from the CLI turning it off.
  const child = spawn('script', ['-q', '-f', '-e', '--echo', 'always', '-c', cmd, '/dev/null'], {
    env: { ...o.env, SHELL: '/bin/sh', TERM: 'dumb' }, cwd: o.cwd, stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stdin!.on('error', () => {});
  let code: number | null | undefined;
  // 'close', not 'exit': exit can come before the last output is read (a flake seen in CI: exit
  // code 0 and the final "saved account" line not yet in `out`)
  const exited = new Promise<number | null>((r) => child.once('close', (c, sig) => {
    code = c ?? (sig ? 128 : null);
    if (sig) out += `\n[script ended by ${sig}]`;
    r(code);
  }));
  let pid: number | undefined;
  const cliPid = () => {
    if (pid && alive(pid)) return pid;
    // The node process itself, not the shell whose command line also names main.js.
    pid = descendants(child.pid!).find((p) => cmdline(p).startsWith(`${process.execPath} ${CLI}`));
    return pid;
  };
  return {
    child,
    output: () => out,
    type: (text) => { child.stdin!.write(text); },
    async waitFor(re, timeoutMs = 60_000) {
      const end = Date.now() + timeoutMs;
      while (!re.test(out)) {
        if (code !== undefined) throw new Error(`terminal session ended (code ${code}) before ${re}; it showed:\n${out}`);
        if (Date.now() > end) throw new Error(`timed out waiting for ${re}; the terminal showed:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    cliPid,
    exited,
    kill() {
      const all = child.pid ? [child.pid, ...descendants(child.pid)] : [];
      for (const p of all.reverse()) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
    },
  };
}

export function cmdline(pid: number): string {
  try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '); } catch { return ''; }
}

export function environ(pid: number): string {
  try { return readFileSync(`/proc/${pid}/environ`, 'utf8'); } catch { return ''; }
}

/**
 * The password in pid's environment, except where Maxxo's design puts it: rsync reads it from
 * RSYNC_PASSWORD (/proc/PID/environ is private to the user, unlike argv).
 */
export function envLeak(pid: number, password: string): boolean {
  const isRsync = /(^|\/)rsync /.test(cmdline(pid));
  return environ(pid).split('\0').some((v) => v.includes(password) && !(isRsync && v.startsWith('RSYNC_PASSWORD=')));
}

export { alive };

/** Identity of a process that survives pid reuse: pid plus its start time. */
export function procId(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return `${pid}:${stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]}`;
  } catch { return undefined; }
}

/** All living descendants of pid (children, grandchildren, ...), from /proc. */
export function descendants(root: number): number[] {
  const kids = new Map<number, number[]>();
  for (const n of readdirSync('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const stat = readFileSync(`/proc/${n}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = kids.get(ppid) ?? [];
      list.push(Number(n));
      kids.set(ppid, list);
    } catch { /* exited meanwhile */ }
  }
  const out: number[] = [];
  const walk = (p: number) => { for (const c of kids.get(p) ?? []) { out.push(c); walk(c); } };
  walk(root);
  return out.filter(alive);
}
