// Starts the reference server as a CHILD process (node dist/src/emulator/main.js), so fault tests
// can SIGSTOP/SIGKILL it and e2e tests keep FUSE and server in different processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
/** Compiled server entry point: dist/test/helpers -> dist/src/emulator/main.js. */
export const SERVE_MAIN = join(here, '..', '..', 'src', 'emulator', 'main.js');

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
}

export async function startEmulatorProcess(o: EmulatorProcessOptions = {}): Promise<EmulatorProcess> {
  const args = [SERVE_MAIN, '--port', '0', '--quiet'];
  if (o.demo ?? true) args.push('--demo');
  if (o.dataDir) args.push('--data', o.dataDir);
  if (o.rsync === false) args.push('--no-rsync');
  if (o.latencyMs) args.push('--latency-ms', String(o.latencyMs));
  if (o.failRate) args.push('--fail-rate', String(o.failRate));
  if (o.rateLimit) args.push('--rate-limit', String(o.rateLimit));
  if (o.args) args.push(...o.args);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => { out += d; });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start within ${o.startTimeoutMs ?? 30000} ms:\n${out}`));
    }, o.startTimeoutMs ?? 30000);
    child.stdout!.on('data', (d: string) => {
      out += d;
      const m = /^cloudmount-serve listening (http:\/\/\S+)$/m.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]!); }
    });
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`server exited (${code}) before listening:\n${out}`)); });
  });

  let done = false;
  void exited.then(() => { done = true; });
  return {
    url,
    pid: child.pid!,
    child,
    exited,
    output: () => out,
    kill(signal) { if (!done) child.kill(signal); },
    async stop(timeoutMs = 10000) {
      if (done) return exited;
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      const t = setTimeout(() => { if (!done) child.kill('SIGKILL'); }, timeoutMs);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}
