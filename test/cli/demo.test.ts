// `npm start` without a terminal: the demo mounts both drives, checks them through child
// processes against the server, unmounts, and exits 0 only if everything passed.
import test from 'ava';
import { mkdtempSync, readdirSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { cli, makeHome, isMounted } from './helpers.js';

test('demo (no terminal: smoke mode, as npm start in CI) mounts both drives, checks them, and leaves no mount behind', async (t) => {
  const h = makeHome();
  const dir = mkdtempSync(join(tmpdir(), 'cloudmount-demo-test-'));
  const mps = [join(dir, 'mnt', 'maxxo'), join(dir, 'mnt', 'vboxx')];
  t.teardown(() => {
    for (const mp of mps) if (isMounted(mp)) spawnSync('fusermount', ['-uz', mp]);
    if (!mps.some(isMounted)) rmSync(dir, { recursive: true, force: true });
  });
  // stdin is a pipe here, so the demo picks the smoke check by itself.
  const r = await cli(['demo'], { env: h.env, cwd: dir, timeoutMs: 150_000 });
  t.is(r.code, 0, r.stdout + r.stderr);
  t.regex(r.stdout, /smoke check passed/);
  t.notRegex(r.stdout, /FAIL/);
  for (const kind of ['maxxo', 'vboxx']) {
    for (const what of ['ls -la', 'matches the server', 'read it back', 'on the server after flush', 'df shows']) {
      t.regex(r.stdout, new RegExp(`ok\\s+${kind}: .*${what}`), `${kind}: ${what}`);
    }
  }
  t.regex(r.stdout, /ok\s+vboxx: getfattr user\.cloudmount\.share_link gives a URL/);
  for (const mp of mps) t.false(isMounted(mp), `${mp} unmounted`);
  const reg = join(h.env.XDG_RUNTIME_DIR!, 'cloudmount');
  t.deepEqual(existsSync(reg) ? readdirSync(reg).filter((n) => n.endsWith('.json')) : [], []);
});

test('demo: bad flags exit 2; a port in use fails with exit 1 and mounts nothing', async (t) => {
  const { createServer } = await import('node:net');
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => srv.close());
  const port = (srv.address() as { port: number }).port;
  const h = makeHome();
  const dir = mkdtempSync(join(tmpdir(), 'cloudmount-demo-test-'));
  t.teardown(() => { if (!isMounted(join(dir, 'mnt', 'maxxo'))) rmSync(dir, { recursive: true, force: true }); });
  const busy = await cli(['demo', '--smoke', '--port', String(port)], { env: h.env, cwd: dir, timeoutMs: 60_000 });
  t.is(busy.code, 1);
  t.regex(busy.stderr, /cloudmount demo: .*(EADDRINUSE|in use)/);
  t.false(isMounted(join(dir, 'mnt', 'maxxo')));
  const bad = await cli(['demo', '--port', 'x']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--port must be a whole number/);
  const extra = await cli(['demo', 'now']);
  t.is(extra.code, 2);
});
