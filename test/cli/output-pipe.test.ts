// Output to a pipe is never cut: the command waits for stdout to drain before it exits. The
// reader here starts reading only after the CLI is done writing, so anything past the pipe's
// 64 KiB buffer is still in Node when the command finishes.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, makeHome } from './helpers.js';

/** Registry records of fake live mounts (this test process's pid, one slot each), ~300 KiB. */
function fakeMounts(runDir: string, n: number): void {
  const dir = join(runDir, 'cloudmount');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (let i = 1; i <= n; i++) {
    const failures = Array.from({ length: 3 }, (_, k) => ({ path: `/folder-${i}/file-${k}-${'x'.repeat(60)}`, error: 'SERVER_ERROR: 500', attempts: 5, atMs: 0 }));
    writeFileSync(join(dir, `${process.pid}-${i}.json`), JSON.stringify({
      pid: process.pid, slot: i, mountpoint: `/mnt/fake-${String(i).padStart(4, '0')}`, kind: 'maxxo', server: 'http://127.0.0.1:1',
      user: 'demo@maxxo.test', accountId: `a${i}`, readOnly: false, startedAt: '', updatedAt: '', state: 'mounted',
      status: { pending: 0, pendingBytes: 0, cacheBytes: 0, dirtyBytes: 0, failures },
    }), { mode: 0o600 });
  }
}

/** `cloudmount ARGS | (sleep 1; cat)`: the bytes the slow reader got. */
function throughSlowPipe(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', 'set -o pipefail; "$0" "$@" | (sleep 1; cat)', process.execPath, CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const t = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}

test('status --json and the status table reach a slow pipe reader whole (> 64 KiB)', async (t) => {
  const h = makeHome();
  fakeMounts(h.env.XDG_RUNTIME_DIR!, 300);
  const json = await throughSlowPipe(['status', '--json'], h.env);
  t.is(json.code, 0, json.stderr);
  t.true(json.stdout.length > 65_536, `${json.stdout.length} bytes`);
  t.is(JSON.parse(json.stdout).mounts.length, 300);

  const table = await throughSlowPipe(['status'], h.env);
  t.is(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  t.is(lines.length, 1 + 300 + 900, `${table.stdout.length} bytes`);
  t.regex(lines.at(-1)!, /^\/mnt\/fake-0300: upload of \/folder-300\/file-2-x+ failed after 5 attempt\(s\): SERVER_ERROR: 500$/);
});
