// `cloudmount serve`: both reference servers on one port (plus Maxxo's rsync daemon) until
// SIGINT/SIGTERM. Also runnable directly: node dist/src/emulator/main.js [flags].
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createEmulator, type Emulator } from './server.js';
import type { EmulatorOptions } from './context.js';
import { exitWhenDrained } from '../util/exit.js';

export const SERVE_HELP = `Usage: cloudmount serve [options]

Runs the Maxxo and vBoxxCloud reference servers on one port: Maxxo's REST API under /api/1,
vBoxxCloud's under /1, and a real rsync daemon (Maxxo's data plane) on a free loopback port.

Options:
  --host HOST         address to listen on (default 127.0.0.1)
  --port N            port to listen on; 0 picks a free one (default 8080)
  --data DIR          keep state (SQLite) and file bytes in DIR; restarting on DIR keeps
                      everything (default: a new temporary directory, removed on exit)
  --demo              create the demo accounts and files (every start, idempotent)
  --latency-ms N      add N milliseconds to every response (default 0)
  --fail-rate F       answer that fraction (0..1) of requests with 500, 503 or a dropped
                      connection, at random places but never 2/F requests in a row
                      without one (default 0)
  --rate-limit N      allow N requests per second, then 429 with Retry-After (0 = unlimited)
  --no-rsync          do not start the rsync daemon (Maxxo file content cannot move)
  --quiet             print only the "listening" line
  -h, --help          show this help

The first line printed is machine-readable:
  cloudmount-serve listening http://HOST:PORT
Stop with Ctrl-C (SIGINT) or SIGTERM.
`;

export class UsageError extends Error {}

export interface ServeArgs { opts: Partial<EmulatorOptions>; help: boolean }

function intArg(flag: string, v: string | undefined, min: number, max: number): number {
  if (v === undefined || !/^[0-9]+$/.test(v)) throw new UsageError(`${flag} needs a whole number, got ${v === undefined ? 'nothing' : JSON.stringify(v)}`);
  const n = Number(v);
  if (n < min || n > max) throw new UsageError(`${flag} must be between ${min} and ${max}, got ${v}`);
  return n;
}

export function parseServeArgs(argv: string[]): ServeArgs {
  const opts: Partial<EmulatorOptions> = { host: '127.0.0.1', port: 8080, demo: false, rsync: true, quiet: false };
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i]!;
    let inline: string | undefined;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) { inline = a.slice(eq + 1); a = a.slice(0, eq); }
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined || (v.startsWith('--') && v.length > 2)) throw new UsageError(`${a} needs a value`);
      return v;
    };
    const noValue = () => { if (inline !== undefined) throw new UsageError(`${a} takes no value`); };
    switch (a) {
      case '-h': case '--help': noValue(); help = true; break;
      case '--host': {
        const h = value();
        if (!h || /[\s/]/.test(h)) throw new UsageError(`--host needs an address, got ${JSON.stringify(h)}`);
        opts.host = h;
        break;
      }
      case '--port': opts.port = intArg('--port', value(), 0, 65535); break;
      case '--data': {
        const d = value();
        if (!d) throw new UsageError('--data needs a directory');
        opts.dataDir = d;
        break;
      }
      case '--demo': noValue(); opts.demo = true; break;
      case '--latency-ms': opts.latencyMs = intArg('--latency-ms', value(), 0, 600_000); break;
      case '--fail-rate': {
        const v = value();
        const f = Number(v);
        if (!/^[0-9.]+$/.test(v) || !Number.isFinite(f) || f < 0 || f > 1) {
          throw new UsageError(`--fail-rate needs a fraction between 0 and 1, got ${JSON.stringify(v)}`);
        }
        opts.failRate = f;
        break;
      }
      case '--rate-limit': opts.rateLimit = intArg('--rate-limit', value(), 0, 1_000_000); break;
      case '--no-rsync': noValue(); opts.rsync = false; break;
      case '--quiet': noValue(); opts.quiet = true; break;
      default: throw new UsageError(`unknown option ${JSON.stringify(argv[i])} (see --help)`);
    }
  }
  return { opts, help };
}

function banner(em: Emulator, tempData: boolean): string {
  const o = em.ctx.opts;
  const lines = [
    `Maxxo API      ${em.url}/api/1/`,
    `vBoxx API      ${em.url}/1/   (management: ${em.url}/1/management/)`,
    em.ctx.rsync
      ? `rsync daemon   rsync://${em.ctx.rsync.host}:${em.ctx.rsync.port}/<login>  (one module per Maxxo user; GET /api/1/slice)`
      : 'rsync daemon   off (--no-rsync)',
    `data           ${o.dataDir}${tempData ? '  (temporary, removed on exit)' : ''}`,
  ];
  if (o.latencyMs || o.failRate || o.rateLimit) {
    lines.push(`faults         latency ${o.latencyMs} ms, fail rate ${o.failRate}, rate limit ${o.rateLimit || 'none'}/s`);
  }
  if (o.demo) {
    lines.push('demo accounts',
      '  Maxxo        demo@maxxo.test / demo-password, friend@maxxo.test / friend-password',
      '  vBoxx        admin / admin-password (system admin), demo / demo-password');
  }
  lines.push('Stop with Ctrl-C.');
  return lines.join('\n');
}

/** Runs the server until SIGINT/SIGTERM; resolves after a clean stop. Bad flags: exit code 2. */
export async function serveMain(argv: string[]): Promise<void> {
  let parsed: ServeArgs;
  try {
    parsed = parseServeArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`cloudmount serve: ${e.message}\n`);
    process.exitCode = 2;
    return;
  }
  if (parsed.help) { process.stdout.write(SERVE_HELP); return; }

  const opts = parsed.opts;
  let tempData: string | undefined;
  if (!opts.dataDir) opts.dataDir = tempData = mkdtempSync(join(tmpdir(), 'cloudmount-serve-'));
  const cleanupTemp = () => { if (tempData) rmSync(tempData, { recursive: true, force: true }); };

  let em: Emulator;
  try {
    em = await createEmulator(opts);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'EADDRINUSE' ? `port ${opts.port} on ${opts.host} is already in use`
      : err.code === 'EADDRNOTAVAIL' ? `address ${opts.host} is not available here`
        : err.message;
    process.stderr.write(`cloudmount serve: cannot start: ${why}\n`);
    cleanupTemp();
    process.exitCode = 1;
    return;
  }
  process.stdout.write(`cloudmount-serve listening ${em.url}\n`);
  if (!opts.quiet) process.stdout.write(banner(em, !!tempData) + '\n');

  await new Promise<void>((resolveStop) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (stopping) { void exitWhenDrained(130); return; } // a second Ctrl-C: the user insists
      stopping = true;
      if (!opts.quiet) process.stderr.write(`cloudmount serve: ${sig}, stopping\n`);
      em.close()
        .catch((e) => { process.stderr.write(`cloudmount serve: error while stopping: ${(e as Error).message}\n`); process.exitCode = 1; })
        .finally(() => {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          cleanupTemp();
          resolveStop();
        });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

function isDirectRun(): boolean {
  const argv1 = process.argv[1];
  if (!argv1) return false;
  try { return import.meta.url === pathToFileURL(realpathSync(argv1)).href; } catch { return false; }
}

if (isDirectRun()) {
  serveMain(process.argv.slice(2)).then(
    () => exitWhenDrained(typeof process.exitCode === 'number' ? process.exitCode : 0),
    (e) => { process.stderr.write(`cloudmount serve: ${(e as Error).message}\n`); return exitWhenDrained(1); },
  );
}
