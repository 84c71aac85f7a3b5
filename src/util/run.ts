// Runs a helper program as a child process and collects its output. The caller may itself serve
// a FUSE mount, so anything that could enter a mount (fusermount, ls, cat) runs out of process.
import { spawn } from 'node:child_process';

export interface RunResult { code: number | null; stdout: string; stderr: string }

/** Never rejects: a missing program is code 127, a timeout kills it (code null). */
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
