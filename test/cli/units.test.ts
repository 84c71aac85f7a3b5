// The CLI's pure parts: -o mount options, sizes/durations, the progress bar on and off a terminal.
import test from 'ava';
import { parseMountOptions, mountOptionTable } from '../../src/cli/mountopts.js';
import { parseSize, parseDuration } from '../../src/cli/output.js';
import { createProgress } from '../../src/cli/progress.js';
import { UsageError } from '../../src/cli/args.js';

test('-o options map onto vfs and client settings', (t) => {
  const s = parseMountOptions(['cache_dir=/var/cache/cm,cache_size=10G,attr_timeout=2,dir_timeout=30s', 'negative_timeout=500ms,read_ahead=1M,read_ahead_max=64M',
    'concurrency=4,rate_limit=20,writeback_delay=0,timeout=45,allow_other,ro,root=Files,password_file=/etc/pw,debug,noauto,_netdev,user,x-systemd.automount']);
  t.deepEqual(s.vfs, {
    cacheDir: '/var/cache/cm', cacheMaxBytes: 10 * 1024 ** 3, attrTtlMs: 2000, dirTtlMs: 30_000, negativeTtlMs: 500,
    readAheadBytes: 1024 ** 2, readAheadMaxBytes: 64 * 1024 ** 2, writebackDelayMs: 0, readOnly: true,
  });
  t.deepEqual(s.client, { concurrency: 4, rateLimit: 20, timeoutMs: 45_000 });
  t.like(s, { allowOther: true, debug: true, root: 'Files', passwordFile: '/etc/pw' });
  t.false(parseMountOptions(['ro,rw']).vfs.readOnly);
  t.is(parseMountOptions(['backend=fuse-native']).backend, 'fuse-native');
  t.is(parseMountOptions(['backend=libfuse3']).backend, 'libfuse3');
  t.is(parseMountOptions(['ro']).backend, undefined, 'no backend asked: the mount picks');
  t.deepEqual(parseMountOptions(['no_modtime']).client, { modtimes: false });
  t.is(parseMountOptions(['ro']).client.modtimes, undefined);
  t.is(parseMountOptions(['readdirplus=auto']).readdirplus, 'auto');
  t.is(parseMountOptions(['readdirplus=off']).readdirplus, 'off');
  t.is(parseMountOptions(['ro']).readdirplus, undefined);
});

test('bad -o options are usage errors naming the option', (t) => {
  for (const [o, re] of [['cache_size=big', /cache_size=big/], ['attr_timeout=', /needs a value/], ['concurrency=0', /concurrency=0/],
    ['ro=1', /takes no value/], ['bogus', /unknown mount option -o bogus/], ['timeout=0', /timeout must be > 0/],
    ['read_ahead=8M,read_ahead_max=1M', /read_ahead_max/], ['backend=fuse2', /backend=fuse2: expected libfuse3 or fuse-native/],
    ['backend', /needs a value/], ['readdirplus=yes', /readdirplus=yes: expected always, auto or off/]] as const) {
    const e = t.throws(() => parseMountOptions([o]), { instanceOf: UsageError }, o);
    t.regex(e!.message, re);
  }
  t.true(mountOptionTable.every((o) => o.desc.length > 0));
});

test('sizes and durations', (t) => {
  t.is(parseSize('512'), 512);
  t.is(parseSize('1.5K'), 1536);
  t.is(parseSize('2GiB'), 2 * 1024 ** 3);
  t.is(parseSize('ten'), undefined);
  t.is(parseDuration('1.5'), 1500);
  t.is(parseDuration('2m'), 120_000);
  t.is(parseDuration('-1'), undefined);
});

function fakeStream(tty: boolean) {
  const chunks: string[] = [];
  return { chunks, stream: { isTTY: tty, columns: 80, write: (s: string) => { chunks.push(s); return true; } } as unknown as NodeJS.WriteStream };
}

test('progress: a redrawn bar on a terminal, plain lines without one', (t) => {
  const tty = fakeStream(true);
  const p = createProgress('unmounting /x', { stream: tty.stream, unit: 'items' });
  p.update(1, 4);
  p.update(4, 4);
  p.done('unmounted /x');
  t.true(tty.chunks[0]!.startsWith('\r\x1b[K'));
  t.regex(tty.chunks[0]!, /\[#+\.+\]\s+25% 1\/4/);
  t.regex(tty.chunks[1]!, /100% 4\/4/);
  t.is(tty.chunks.at(-1), 'unmounted /x\n');

  const plain = fakeStream(false);
  const q = createProgress('uploading', { stream: plain.stream, unit: 'bytes', plainEveryMs: 0 });
  q.update(512, 2048);
  q.update(512, 2048);
  q.update(2048, 2048);
  q.done();
  t.deepEqual(plain.chunks, ['uploading: 512 B/2.0 KiB\n', 'uploading: 2.0 KiB/2.0 KiB\n']);
  t.false(plain.chunks.join('').includes('\r'));
});
