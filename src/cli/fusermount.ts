// Runs fusermount (fusermount3 where installed) and other helpers as child processes: this
// process may itself serve a FUSE mount, so it never touches a mount with synchronous fs.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface RunResult { code: number | null; stdout: string; stderr: string }

export function run(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
    child.on('error', (e) => { if (timer) clearTimeout(timer); resolve({ code: 127, stdout, stderr: stderr + e.message }); });
    child.on('close', (code) => { if (timer) clearTimeout(timer); resolve({ code, stdout, stderr }); });
    if (opts.input !== undefined) child.stdin.end(opts.input); else child.stdin.end();
  });
}

export function fusermountBin(): string {
  for (const b of ['/usr/bin/fusermount3', '/bin/fusermount3', '/usr/bin/fusermount', '/bin/fusermount']) if (existsSync(b)) return b;
  return 'fusermount';
}

/** Lazy unmount (detaches even a hung or busy mount). */
export async function lazyUnmount(mountpoint: string): Promise<RunResult> {
  if (process.platform === 'darwin') return run('umount', ['-f', mountpoint], { timeoutMs: 10_000 });
  return run(fusermountBin(), ['-uz', mountpoint], { timeoutMs: 10_000 });
}

/** Plain unmount: the kernel refuses it (EBUSY) while any file or working folder is in use. */
export async function cleanUnmount(mountpoint: string): Promise<RunResult> {
  if (process.platform === 'darwin') return run('umount', [mountpoint], { timeoutMs: 10_000 });
  return run(fusermountBin(), ['-u', mountpoint], { timeoutMs: 10_000 });
}
