// The one launcher of reference servers in a CHILD process, so fault tests can SIGSTOP/SIGKILL
// them and e2e tests keep FUSE and server in different processes: `cloudmount serve` itself
// (dist/src/emulator/main.js), or with `control` the servers behind a command channel
// (emulator-child.ts) that e2e tests use to read and change their state.
import { rmSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
/** Compiled server entry point: dist/test/helpers -> dist/src/emulator/main.js. */
export const SERVE_MAIN = join(here, '..', '..', 'src', 'emulator', 'main.js');
const CONTROL_CHILD = join(here, 'emulator-child.js');
const EXIT_WITH_PARENT = pathToFileURL(join(here, 'exit-with-parent.js')).href;

export interface EmulatorProcess {
  url: string;
  pid: number;
  child: ChildProcess;
  /** Everything the server printed so far (stdout + stderr), for failure messages. */
  output(): string;
  /** SIGCONT (in case it was stopped), SIGTERM, wait for exit; SIGKILL after timeoutMs. */
  stop(timeoutMs?: number): Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
  /** Resolves with the exit code (or null when killed by a signal). */
  exited: Promise<number | null>;
  /** With `control`: the servers' data folder. */
  dataDir?: string;
  /** With `control`: one command of emulator-child.ts; resolves with its value. */
  call(cmd: Record<string, unknown>): Promise<unknown>;
}

export interface EmulatorProcessOptions {
  demo?: boolean;
  dataDir?: string;
  rsync?: boolean;
  latencyMs?: number;
  failRate?: number;
  rateLimit?: number;
  /** Further raw flags. */
  args?: string[];
  startTimeoutMs?: number;
  /** Demo servers behind the command channel of emulator-child.ts (the other options do not apply). */
  control?: boolean;
}

export async function startEmulatorProcess(o: EmulatorProcessOptions = {}): Promise<EmulatorProcess> {
  const args = o.control ? [CONTROL_CHILD] : [SERVE_MAIN, '--port', '0', '--quiet'];
  if (!o.control) {
    if (o.demo ?? true) args.push('--demo');
    if (o.dataDir) args.push('--data', o.dataDir);
    if (o.rsync === false) args.push('--no-rsync');
    if (o.latencyMs) args.push('--latency-ms', String(o.latencyMs));
    if (o.failRate) args.push('--fail-rate', String(o.failRate));
    if (o.rateLimit) args.push('--rate-limit', String(o.rateLimit));
    if (o.args) args.push(...o.args);
  }
  // fd 3: a pipe whose end stops the server should this process die without its teardown
  const child = spawn(process.execPath, ['--import', EXIT_WITH_PARENT, ...args], { stdio: [o.control ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe'] });
  let out = '';
  let lines = '';
  let nextId = 1;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => { out += d; if (o.control) process.stderr.write(d); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  void exited.then(() => { for (const p of pending.values()) p.reject(new Error('server process exited')); pending.clear(); });

  const ready = await new Promise<{ url: string; dataDir?: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start within ${o.startTimeoutMs ?? 30000} ms:\n${out}`));
    }, o.startTimeoutMs ?? 30000);
    child.stdout!.on('data', (d: string) => {
      if (!o.control) {
        out += d;
        const m = /^cloudmount-serve listening (http:\/\/\S+)$/m.exec(out);
        if (m) { clearTimeout(timer); resolve({ url: m[1]! }); }
        return;
      }
      lines += d;
      let nl: number;
      while ((nl = lines.indexOf('\n')) >= 0) {
        const line = lines.slice(0, nl);
        lines = lines.slice(nl + 1);
        if (line.startsWith('READY ')) { clearTimeout(timer); resolve(JSON.parse(line.slice(6))); } else if (line.startsWith('RESULT ')) {
          const r = JSON.parse(line.slice(7)) as { id: number; ok: boolean; value?: unknown; error?: string };
          const p = pending.get(r.id);
          pending.delete(r.id);
          if (r.ok) p?.resolve(r.value); else p?.reject(new Error(r.error));
        } else out += line + '\n';
      }
    });
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`server exited (${code}) before listening:\n${out}`)); });
  });

  let done = false;
  void exited.then(() => {
    done = true;
    // the control child's data folder is its own temporary one, which it removes when it closes;
    // a child killed (stop's SIGKILL after a close that hung, a test's kill) leaves it: 12 MiB each
    if (o.control && ready.dataDir) rmSync(ready.dataDir, { recursive: true, force: true });
  });
  return {
    url: ready.url,
    ...(ready.dataDir ? { dataDir: ready.dataDir } : {}),
    pid: child.pid!,
    child,
    exited,
    output: () => out,
    kill(signal) { if (!done) child.kill(signal); },
    call(cmd) {
      if (!o.control) return Promise.reject(new Error('started without a control channel'));
      if (done) return Promise.reject(new Error('server process exited'));
      return new Promise<unknown>((resolve, reject) => {
        const id = nextId++;
        pending.set(id, { resolve, reject });
        child.stdin!.write(JSON.stringify({ ...cmd, id }) + '\n');
      });
    },
    async stop(timeoutMs = 10000) {
      if (done) return exited;
      child.kill('SIGCONT');
      // the control child closes its servers when its stdin ends; the plain server on SIGTERM
      if (o.control) child.stdin!.end(); else child.kill('SIGTERM');
      const t = setTimeout(() => { if (!done) child.kill('SIGKILL'); }, timeoutMs);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}
