// The pieces behind issue 14's logs and meters, on their own: masking, "did you mean", the flush
// meter's lines (moving within one file), and the remote wrapper's log lines and counters.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redact, createLogger } from '../../src/log.js';
import { didYouMean } from '../../src/cli/args.js';
import { createFlushMeter, formatEta } from '../../src/cli/progress.js';
import { observeRemote } from '../../src/remote/observed.js';
import { MemoryRemote } from '../helpers/memory-remote.js';
import { Timeout } from '../../src/errors.js';

test('redact masks tokens, passwords, Authorization headers, rsync passwords and URL credentials', (t) => {
  const cases: Array<[string, string]> = [
    ['GET /x?session_token=abc123&x=1', 'abc123'],
    ['authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload', 'eyJhbGciOiJIUzI1NiJ9'],
    ['{"Authorization":"Token s3cr3tvalue"}', 's3cr3tvalue'],
    ['RSYNC_PASSWORD=hunter22 rsync ...', 'hunter22'],
    ['rsync://login:pa55word@10.0.0.1:873/login', 'pa55word'],
    ['{"password":"demo-password"}', 'demo-password'],
  ];
  for (const [line, secret] of cases) t.false(redact(line).includes(secret), `${line} -> ${redact(line)}`);
  t.is(redact('rsync run for /docs/a.txt: exit 0 in 12 ms'), 'rsync run for /docs/a.txt: exit 0 in 12 ms', 'paths stay readable');
});

test('didYouMean: close words only, ties to the one that starts alike', (t) => {
  t.is(didYouMean('umount', ['mount', 'unmount', 'status']), 'unmount');
  t.is(didYouMean('serer', ['server', 'email']), 'server');
  t.is(didYouMean('nonempy', ['nonempty', 'ro']), 'nonempty');
  t.is(didYouMean('frobnicate', ['mount', 'unmount', 'status']), undefined);
});

test('flush meter: plain lines in bytes that move within one file, with speed and ETA; nothing when nothing is pending', async (t) => {
  const lines: string[] = [];
  const stream = { isTTY: false, write: (s: string) => { lines.push(s); return true; } } as unknown as NodeJS.WriteStream;
  const idle = createFlushMeter('idle', { stream, plainEveryMs: 0 });
  idle.sample({ pending: 0, pendingBytes: 0, sentBytes: 0, sendingBytes: 0 });
  t.deepEqual(lines, []);
  const m = createFlushMeter('flushing', { stream, plainEveryMs: 0 });
  const total = 40 * 1024 * 1024;
  for (let sent = 0; sent <= total; sent += 8 * 1024 * 1024) {
    m.sample({ pending: sent < total ? 1 : 0, pendingBytes: sent < total ? total : 0, sentBytes: 1000 + sent, sendingBytes: sent < total ? sent : 0 });
    await new Promise((r) => setTimeout(r, 300));
  }
  m.done('done');
  t.true(lines.some((l) => /^flushing: 16\.0 MiB\/40\.0 MiB, 1 pending, [\d.]+ MiB\/s, ETA \d+s\n$/.test(l)), lines.join(''));
  t.regex(lines.at(-2)!, /^flushing: 40\.0 MiB\/40\.0 MiB/);
  t.is(formatEta(75), '1m15s');
});

test('observeRemote: one info line per transfer and change with size and time, upload bytes counted within the file, retrying after a retryable failure', async (t) => {
  const lines: string[] = [];
  const log = createLogger('info', (l) => lines.push(l));
  const inner = new MemoryRemote();
  const r = observeRemote(inner, log);
  const dir = mkdtempSync(join(tmpdir(), 'cloudmount-observed-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'a'), Buffer.alloc(300_000));
  await r.mkdir('/d');
  const seen: number[] = [];
  await r.upload(join(dir, 'a'), '/d/a', { onProgress: (n) => seen.push(n) });
  await r.move('/d/a', '/d/b');
  await r.download('/d/b', join(dir, 'back'));
  await r.remove(['/d/b']);
  const text = lines.join('\n');
  t.regex(text, /INFO {2}mkdir \/d in \d+ ms/);
  t.regex(text, /INFO {2}upload \/d\/a 293\.0 KiB in \d+/);
  t.regex(text, /INFO {2}rename \/d\/a -> \/d\/b in \d+ ms/);
  t.regex(text, /INFO {2}download \/d\/b 293\.0 KiB in \d+/);
  t.regex(text, /INFO {2}delete \/d\/b in \d+ ms/);
  t.true(seen.length > 0, 'the caller still gets its progress');
  t.like(r.activity!(), { state: 'ok', sentBytes: 300_000, sendingBytes: 0 });
  // a retryable failure: retrying until something succeeds
  const failing = observeRemote(Object.assign(Object.create(inner) as MemoryRemote, { mkdir: () => Promise.reject(new Timeout('no answer')) }), log);
  await t.throwsAsync(failing.mkdir('/x'));
  t.like(failing.activity!(), { state: 'retrying' });
  t.regex(failing.activity!().error ?? '', /TIMEOUT/);
});
