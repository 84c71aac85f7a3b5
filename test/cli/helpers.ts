// Runs the compiled CLI as a child process with its own HOME/XDG dirs, so tests never share
// saved accounts, caches or the mount registry. Always async: the reference server may run in
// the test process and must keep answering while the CLI talks to it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
export { isMounted } from '../../src/util/mounts.js';
export { sleep, waitFor } from '../support/wait.js';

const here = dirname(fileURLToPath(import.meta.url));
/** dist/test/cli -> dist/src/cli/main.js */
export const CLI = join(here, '..', '..', 'src', 'cli', 'main.js');
export const REPO = join(here, '..', '..', '..');

export interface Home {
  dir: string;
  env: NodeJS.ProcessEnv;
  /** Writes a 0600 password file and returns its path. */
  pwFile(password: string, mode?: number): string;
}

const homes: string[] = [];
// The homes go when the test worker ends (tests keep using them until their last teardown); one
// with a mount still inside is left alone rather than removed through the mount.
process.once('exit', () => {
  let mounts = '';
  try { mounts = readFileSync('/proc/mounts', 'utf8'); } catch { /* not Linux: keep the rule below */ }
  for (const d of homes) {
    if (mounts.includes(` ${d}/`)) continue;
    try { rmSync(d, { recursive: true, force: true }); } catch { /* best effort at exit */ }
  }
});

export function makeHome(): Home {
  const dir = mkdtempSync(join(tmpdir(), 'cloudmount-cli-'));
  homes.push(dir);
  for (const d of ['config', 'cache', 'run', 'home']) mkdirSync(join(dir, d), { recursive: true, mode: 0o700 });
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: join(dir, 'home'),
    XDG_CONFIG_HOME: join(dir, 'config'),
    XDG_CACHE_HOME: join(dir, 'cache'),
    XDG_RUNTIME_DIR: join(dir, 'run'),
    LANG: 'C.UTF-8',
  };
  let n = 0;
  return {
    dir, env,
    pwFile(password, mode = 0o600) {
      const p = join(dir, `pw-${++n}`);
      writeFileSync(p, password + '\n', { mode });
      return p;
    },
  };
}

export interface Result { code: number | null; stdout: string; stderr: string }

export function cli(args: string[], o: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; cwd?: string } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: o.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], cwd: o.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const t = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 60_000);
    child.on('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
    child.stdin.end(o.input ?? '');
  });
}

/** A long-running CLI child (mount in the foreground). */
export function cliSpawn(args: string[], o: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, ...args], { env: o.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], cwd: o.cwd });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stdin!.end();
  const exited = new Promise<number | null>((r) => child.once('exit', (c, sig) => { if (c === null) out += `\n[exit by signal ${sig}]`; r(c); }));
  return { child, output: () => out, exited };
}

export function readJson(p: string): any {
  return JSON.parse(readFileSync(p, 'utf8'));
}


