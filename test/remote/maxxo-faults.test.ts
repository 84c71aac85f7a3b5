// Maxxo client under injected faults on the reference server: 20% fault rate healed by retries,
// token revocation with concurrent callers, 429 + Retry-After, a stalled server, and no secret in
// any error or log line throughout.
import test from 'ava';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator, serverStats, resetStats } from '../helpers/emulator.js';
import { createMaxxoUser, maxxoUserFolder } from '../../src/emulator/maxxo/index.js';
import { MaxxoClient, createMaxxoRemote } from '../../src/remote/maxxo/index.js';
import { RemoteError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { hashPassword } from '../../src/emulator/security.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-maxxo-faults-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

function capture() {
  const lines: string[] = [];
  return { lines, log: createLogger('trace', (l) => lines.push(l)) };
}

/** Every string that must never appear: the account password, all issued tokens, the rsync password. */
function secretsOf(emuDb: { prepare(sql: string): { all(...a: unknown[]): unknown[] } }, email: string, password: string): string[] {
  const tokens = (emuDb.prepare('SELECT token FROM maxxo_tokens').all() as Array<{ token: string }>).map((r) => r.token);
  const rs = (emuDb.prepare('SELECT rsync_password FROM maxxo_users WHERE email = ?').all(email) as Array<{ rsync_password: string }>)
    .map((r) => r.rsync_password);
  return [password, ...tokens, ...rs];
}

function errorText(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = (e as { cause?: unknown }).cause;
  return [e.message, String(e), e.stack ?? '', JSON.stringify(e), cause instanceof Error ? cause.message : ''].join('\n');
}

test('a 20% fault rate is healed by retries, for REST calls and for the file operations', async (t) => {
  const emu = await startEmulator();
  t.teardown(() => emu.close());
  const email = 'faulty@maxxo.test';
  const password = 'faulty-password-123';
  createMaxxoUser(emu.ctx, { email, password });
  const folder = maxxoUserFolder(emu.ctx, email);
  for (let i = 0; i < 20; i++) writeFileSync(join(folder, `f${i}.txt`), `content ${i}`);
  const { lines, log } = capture();
  const remote = createMaxxoRemote({ server: emu.url, user: email, password, maxAttempts: 10, log, concurrency: 4 });
  t.teardown(() => remote.close());
  const c = remote.client;
  emu.ctx.opts.failRate = 0.2;
  await resetStats(emu.url);

  const jobs: Promise<unknown>[] = [];
  for (let i = 0; i < 20; i++) {
    jobs.push(remote.list('/'), remote.stat(`/f${i}.txt`), c.quota(), c.settingsList(), c.contactsList(), c.notificationsList(), c.inboxList());
  }
  jobs.push(c.filesize(Array.from({ length: 20 }, (_, i) => `f${i}.txt`)), remote.statfs());
  const results = await Promise.all(jobs);
  t.is(results.length, 142);
  t.is((results[0] as { entries: unknown[] }).entries.length, 20);
  t.like(results[1], { name: 'f0.txt', type: 'file', size: 9 });

  // Non-idempotent file operations check what happened before repeating (an answer may be lost after the move).
  for (let i = 0; i < 10; i++) await remote.move(`/f${i}.txt`, `/moved ${i}.txt`);
  await remote.remove(Array.from({ length: 5 }, (_, i) => `/moved ${i}.txt`));
  await remote.mkdir('/new folder');
  const src = join(tmp, 'up.bin');
  const data = randomBytes(200_000);
  writeFileSync(src, data);
  await remote.upload(src, '/new folder/up.bin');
  const dst = join(tmp, 'down.bin');
  await remote.download('/new folder/up.bin', dst);
  t.true(readFileSync(dst).equals(data));
  emu.ctx.opts.failRate = 0;

  const names = (await remote.list('/')).entries.map((e) => e.name).sort();
  t.deepEqual(names, [...Array.from({ length: 10 }, (_, i) => `f${i + 10}.txt`), ...[5, 6, 7, 8, 9].map((i) => `moved ${i}.txt`), 'new folder'].sort());
  // Faults really happened: the server saw more requests than calls were made.
  const stats = await serverStats(emu.url);
  const total = Object.values(stats).reduce((a, b) => a + b, 0);
  t.true(c.http.counters.retries > 5, `retries: ${c.http.counters.retries}`);
  t.true(total > 160, `server requests: ${total}`);
  const secrets = secretsOf(emu.ctx.db, email, password);
  for (const l of lines) for (const s of secrets) t.false(l.includes(s), l);
});

test('a revoked token: concurrent callers share exactly one re-login, then all succeed', async (t) => {
  const emu = await startEmulator({ rsync: false });
  t.teardown(() => emu.close());
  const c = new MaxxoClient({ server: emu.url, user: 'demo@maxxo.test', password: 'demo-password', concurrency: 8 });
  t.teardown(() => c.close());
  await c.quota();
  t.is(c.logins, 1);
  emu.ctx.db.prepare('DELETE FROM maxxo_tokens').run();
  await resetStats(emu.url);
  const out = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? c.list('/') : c.quota())));
  t.is(out.length, 30);
  t.is(c.logins, 2);
  const stats = await serverStats(emu.url);
  t.is(stats['GET /api/1/auth/token'], 1);
  // The re-login itself fails (password changed elsewhere): AuthFailed, once, not a loop.
  emu.ctx.db.prepare('DELETE FROM maxxo_tokens').run();
  emu.ctx.db.prepare('UPDATE maxxo_users SET password_hash = ? WHERE email = ?').run(await hashPassword('changed-elsewhere'), 'demo@maxxo.test');
  await resetStats(emu.url);
  const errs = await Promise.allSettled(Array.from({ length: 5 }, () => c.quota()));
  for (const r of errs) {
    t.is(r.status, 'rejected');
    t.is(((r as PromiseRejectedResult).reason as RemoteError).code, 'AUTH_FAILED');
  }
  t.is((await serverStats(emu.url))['GET /api/1/auth/token'], 1);
});

test('429 with Retry-After from the server: obeyed, the whole queue pauses, all calls succeed', async (t) => {
  const emu = await startEmulator({ rsync: false });
  t.teardown(() => emu.close());
  const c = new MaxxoClient({ server: emu.url, user: 'demo@maxxo.test', password: 'demo-password', concurrency: 8, maxAttempts: 10 });
  t.teardown(() => c.close());
  await c.login();
  emu.ctx.opts.rateLimit = 10;
  const out = await Promise.all(Array.from({ length: 30 }, () => c.quota()));
  t.is(out.length, 30);
  t.true(c.http.counters.pauses >= 1);
  // A client that knows the limit stays under it: no 429 at all.
  const polite = new MaxxoClient({ server: emu.url, user: 'demo@maxxo.test', password: 'demo-password', concurrency: 8, rateLimit: 8 });
  t.teardown(() => polite.close());
  await new Promise((r) => setTimeout(r, 1100));
  await Promise.all(Array.from({ length: 20 }, () => polite.quota()));
  t.is(polite.http.counters.retries, 0);
  t.is(polite.http.counters.pauses, 0);
});

test.serial('a stalled server yields a Timeout within the configured bound', async (t) => {
  const emu = await startEmulator({ rsync: false });
  t.teardown(() => emu.close());
  const c = new MaxxoClient({ server: emu.url, user: 'demo@maxxo.test', password: 'demo-password', timeoutMs: 400, maxRetryTimeMs: 1200, maxAttempts: 10 });
  t.teardown(() => c.close());
  await c.login();
  emu.ctx.opts.latencyMs = 20000;
  const t0 = Date.now();
  const e = await t.throwsAsync(c.quota(), { instanceOf: RemoteError });
  const took = Date.now() - t0;
  emu.ctx.opts.latencyMs = 0;
  t.is(e!.code, 'TIMEOUT');
  // Generous slack for a loaded machine; the server would stall for 20 s.
  t.true(took < 1200 + 400 + 3000, `took ${took} ms`);
});

test('no secret in any error message or log line (auth, REST and rsync failures)', async (t) => {
  const emu = await startEmulator();
  t.teardown(() => emu.close());
  const email = 'secretive@maxxo.test';
  const password = 'Very-Secret-Password-42';
  createMaxxoUser(emu.ctx, { email, password });
  const { lines, log } = capture();
  const errors: unknown[] = [];
  const keep = (p: Promise<unknown>) => p.catch((e) => { errors.push(e); });
  const wrong = createMaxxoRemote({ server: emu.url, user: email, password: 'Wrong-Secret-Password-43', log });
  t.teardown(() => wrong.close());
  await keep(wrong.list('/'));
  const remote = createMaxxoRemote({ server: emu.url, user: email, password, log, maxAttempts: 2 });
  t.teardown(() => remote.close());
  await keep(remote.list('/missing'));
  await keep(remote.download('/missing.bin', join(tmp, 'x')));
  await keep(remote.client.settingsUpdate({ currentPassword: 'Wrong-Current-Password-44', newPassword: 'New-Password-45' }));
  await keep(remote.client.settingsUpdate({ currentPassword: password, newPassword: 'x' }));
  // rsync with a stale Cloudstore password that cannot be refreshed to a working one.
  emu.ctx.db.prepare('UPDATE maxxo_users SET rsync_password = ? WHERE email = ?').run('Rsync-Secret-Daemon-Only', email);
  createMaxxoUser(emu.ctx, { email: 'trigger@maxxo.test', password: 'trigger-pw' }); // the daemon takes it
  emu.ctx.db.prepare('UPDATE maxxo_users SET rsync_password = ? WHERE email = ?').run('Rsync-Secret-Not-Known', email);
  writeFileSync(join(tmp, 'small'), 'x');
  await keep(remote.upload(join(tmp, 'small'), '/x'));
  t.is((errors[errors.length - 1] as RemoteError).code, 'AUTH_FAILED');
  emu.ctx.opts.failRate = 1;
  await keep(remote.client.quota());
  emu.ctx.opts.failRate = 0;
  t.true(errors.length >= 6);
  const secrets = [...secretsOf(emu.ctx.db, email, password), 'Rsync-Secret-Daemon-Only', 'Wrong-Secret-Password-43', 'Wrong-Current-Password-44', 'New-Password-45'];
  for (const e of errors) for (const s of secrets) t.false(errorText(e).includes(s), `${s} in ${errorText(e)}`);
  for (const l of lines) for (const s of secrets) t.false(l.includes(s), l);
  t.true(lines.length > 0);
});
