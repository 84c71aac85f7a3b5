// MaxxoRemote's data plane when the server side changes (issue 10): the slice moves (the daemon on
// another port, another Cloudstore password) and files change under us keeping their size, which
// only the rsync daemon's listing (mtimes) tells. Reference server in this process, real rsync.
import test from 'ava';
import net from 'node:net';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, statSync, utimesSync, mkdirSync, renameSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import { createMaxxoUser, maxxoUserFolder } from '../../src/emulator/maxxo/index.js';
import { createMaxxoRemote, type MaxxoRemoteOptions } from '../../src/remote/maxxo/index.js';
import { parseListLine } from '../../src/remote/maxxo/rsync.js';
import { RemoteError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { eventually, sleep } from '../e2e/lib/services.js';
import { within } from '../support/wait.js';

let emu: Emulator;
let n = 0;
const tmp = mkdtempSync(join(tmpdir(), 'cm-maxxo-dataplane-'));

test.before(async () => { emu = await startEmulator({ demo: false }); });
test.after.always(async () => { await emu?.close(); rmSync(tmp, { recursive: true, force: true }); });

function account(extra: Partial<MaxxoRemoteOptions> = {}) {
  const email = `dp${process.pid}-${++n}@maxxo.test`;
  const password = `pw-${n}-dataplane`;
  createMaxxoUser(emu.ctx, { email, password });
  const folder = maxxoUserFolder(emu.ctx, email);
  const lines: string[] = [];
  const remote = createMaxxoRemote({
    server: emu.url, user: email, password, maxAttempts: 4, log: createLogger('debug', (l) => lines.push(l)), ...extra,
  });
  return { email, folder, remote, lines };
}

/** Until the remote's two-level daemon listings still going after their folder's landed end. */
function settled(remote: unknown): Promise<void> {
  return (remote as { listings: { settled(): Promise<void> } }).listings.settled();
}

/** A TCP forwarder to the real daemon: closing it makes the advertised address refuse connections. */
async function forwarder(port: number): Promise<{ port: number; close(): Promise<void> }> {
  const socks = new Set<net.Socket>();
  const srv = net.createServer((c) => {
    const up = net.connect(port, '127.0.0.1');
    socks.add(c); socks.add(up);
    c.pipe(up); up.pipe(c);
    const end = () => { c.destroy(); up.destroy(); };
    c.on('error', end); up.on('error', end); c.on('close', end); up.on('close', end);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => { for (const s of socks) s.destroy(); srv.close(() => r()); }),
  };
}

async function code(p: Promise<unknown>): Promise<string> {
  try { await p; } catch (e) { if (e instanceof RemoteError) return e.code; throw e; }
  return 'OK';
}

const sec = (ms: number) => Math.floor(ms / 1000) * 1000;

test.serial('the daemon moves to another port: one /slice re-read serves every transfer, with one clear warning', async (t) => {
  const real = emu.ctx.rsync!.port;
  const fwd = await forwarder(real);
  emu.ctx.opts.advertiseRsyncPort = fwd.port;
  t.teardown(() => { emu.ctx.opts.advertiseRsyncPort = undefined; return fwd.close(); });
  const { remote, folder, lines } = account();
  t.teardown(() => remote.close());
  const src = join(tmp, `move-${n}`);
  writeFileSync(src, 'before the move');
  await remote.upload(src, '/a.txt');
  t.is(remote.counters().sliceFetches, 1);

  // the old address now refuses connections; /slice tells the new one
  await fwd.close();
  emu.ctx.opts.advertiseRsyncPort = undefined;
  writeFileSync(src, 'after the move');
  const runs = remote.counters().rsyncRuns;
  const ups = [1, 2, 3, 4, 5, 6].map((i) => remote.upload(src, `/up-${i}.txt`));
  const results = await Promise.all([...ups.map(code), code(remote.mkdir('/made')), code(remote.download('/a.txt', join(tmp, `dl-${n}`)))]);
  t.deepEqual(results, Array(8).fill('OK'));
  t.is(readFileSync(join(folder, 'up-6.txt'), 'utf8'), 'after the move');
  t.true(statSync(join(folder, 'made')).isDirectory());
  t.is(readFileSync(join(tmp, `dl-${n}`), 'utf8'), 'before the move');
  t.is(remote.counters().sliceFetches, 2, 'one re-read, shared by the transfers that failed on the old address');
  const warned = lines.filter((l) => / WARN .*rsync daemon at 127\.0\.0\.1:\d+ cannot be reached .*Connection refused.*; reading \/slice again/.test(l));
  t.is(warned.length, 1, lines.join('\n'));
  t.true(lines.some((l) => l.includes(`moved the rsync daemon`) && l.includes(`:${real}`)), 'the new address is logged');
  t.log(`8 operations after the move: ${remote.counters().rsyncRuns - runs} rsync runs, ${remote.counters().sliceFetches - 1} slice re-read`);
});

test.serial('a new Cloudstore password on the same daemon: the slice is read again, the transfer goes on', async (t) => {
  const { remote, email, folder, lines } = account();
  t.teardown(() => remote.close());
  const src = join(tmp, `pw-${n}`);
  writeFileSync(src, 'one');
  await remote.upload(src, '/p.txt');
  emu.ctx.db.prepare('UPDATE maxxo_users SET rsync_password = ? WHERE email = ?').run('Changed-Cloudstore-Pw-7', email);
  createMaxxoUser(emu.ctx, { email: `trigger-${process.pid}-${++n}@maxxo.test`, password: 'x-trigger' }); // rewrites rsyncd secrets
  writeFileSync(src, 'two');
  await Promise.all([remote.upload(src, '/p.txt'), remote.mkdir('/q')]);
  t.is(readFileSync(join(folder, 'p.txt'), 'utf8'), 'two');
  t.is(remote.counters().sliceFetches, 2);
  t.true(lines.some((l) => / WARN .*refused our Cloudstore password; reading \/slice again/.test(l)), lines.join('\n'));
  t.false(lines.some((l) => l.includes('Changed-Cloudstore-Pw-7')));
});

test.serial('a daemon out of reach for good: bounded attempts, a clear error and log line', async (t) => {
  const fwd = await forwarder(1);
  await fwd.close(); // a port where nothing listens
  emu.ctx.opts.advertiseRsyncPort = fwd.port;
  t.teardown(() => { emu.ctx.opts.advertiseRsyncPort = undefined; });
  const { remote, lines } = account({ maxAttempts: 3 });
  t.teardown(() => remote.close());
  writeFileSync(join(tmp, 'x'), 'x');
  const e = await t.throwsAsync(remote.upload(join(tmp, 'x'), '/x'));
  t.is((e as RemoteError).code, 'TRANSFER_FAILED');
  t.is(remote.counters().rsyncRuns, 3);
  t.true(remote.counters().sliceFetches <= 3, `slice fetches ${remote.counters().sliceFetches}`);
  t.true(lines.some((l) => / WARN .*rsync for "\/x" failed after 3 attempt\(s\): .*Connection refused/.test(l)), lines.join('\n'));
});

test('mtimes: list and stat carry the daemon listing mtime, kept off their path; revalidate() takes a listing no older than asked', async (t) => {
  const { remote, folder } = account();
  t.teardown(() => remote.close());
  mkdirSync(join(folder, 'd'));
  for (const f of ['a', 'b', 'c']) {
    writeFileSync(join(folder, 'd', f), `content ${f}`);
    utimesSync(join(folder, 'd', f), 1_700_000_000, 1_700_000_000);
  }
  remote.cacheTtls({ attrTtlMs: 1000, dirTtlMs: 60_000 });
  let runs = remote.counters().listRuns;
  const l = await remote.list('/d');
  t.deepEqual(l.entries.map((e) => [e.name, e.mtimeMs]).sort(), [['a', 1_700_000_000_000], ['b', 1_700_000_000_000], ['c', 1_700_000_000_000]]);
  t.is(remote.counters().listRuns - runs, 1, 'the first list of a folder waits for one daemon listing');
  runs = remote.counters().listRuns;
  // a folder's mtime is the daemon's too (its filesystem keeps folder times), from its parent's listing
  const dirMtime = Math.floor(statSync(join(folder, 'd')).mtimeMs / 1000) * 1000;
  const st = await remote.statMany!(['/d/a', '/d/b', '/d/c', '/d', '/nope']);
  t.deepEqual(st.map((e) => e?.mtimeMs), [1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_000, dirMtime, undefined]);
  await remote.list('/d');
  t.is(remote.counters().listRuns - runs, 0, 'stats and lists reuse it (/d\'s own time from its own listing\'s "." row)');
  runs = remote.counters().listRuns;

  // another client's change of the same size: list and stat still say the old mtime ...
  writeFileSync(join(folder, 'd', 'a.new'), 'CONTENT a');
  utimesSync(join(folder, 'd', 'a.new'), 1_800_000_000, 1_800_000_000);
  renameSync(join(folder, 'd', 'a.new'), join(folder, 'd', 'a'));
  const oldA = (await remote.stat('/d/a'))!;
  t.is(oldA.mtimeMs, 1_700_000_000_000);
  t.is((await remote.revalidate('/d/a', oldA, 60_000)).mtimeMs, 1_700_000_000_000, 'a listing within maxAge is used as it is');
  t.is(remote.counters().listRuns - runs, 0);
  // ... revalidate() with a listing that started no earlier than maxAge ago sees it
  await sleep(20);
  t.like(await remote.revalidate('/d/a', oldA, 10), { size: 9, mtimeMs: 1_800_000_000_000 });
  t.is(remote.counters().listRuns - runs, 1);
  t.is((await remote.stat('/d/a'))!.mtimeMs, 1_800_000_000_000, 'the new listing serves stats');
  t.like(await remote.revalidate('/d/gone', { name: 'gone', type: 'file', size: 1, mtimeMs: 5000 }, 60_000), { mtimeMs: undefined },
    'a file the listing lacks: no version known');

  // a change of size: the size at once (ops/filesize), no mtime until the listing is renewed ...
  writeFileSync(join(folder, 'd', 'b'), 'longer content b');
  utimesSync(join(folder, 'd', 'b'), 1_800_000_001, 1_800_000_001);
  runs = remote.counters().listRuns;
  t.like(await remote.stat('/d/b'), { size: 16, mtimeMs: undefined });
  t.is(remote.counters().listRuns - runs, 0, 'not on the path of a stat');
  // ... which happens in the background once the listing is older than dir_timeout
  remote.cacheTtls({ attrTtlMs: 1000, dirTtlMs: 1 });
  await sleep(20);
  t.like(await remote.stat('/d/b'), { size: 16 });
  await eventually(async () => (await remote.stat('/d/b'))!.mtimeMs === 1_800_000_001_000, 10_000, 20);
  t.true(remote.counters().listRuns - runs >= 1, 'renewed in the background');

  // our own upload, move, mkdir: written into the cached listings, no runs
  remote.cacheTtls({ attrTtlMs: 1000, dirTtlMs: 60_000 });
  const src = join(tmp, `own-${n}`);
  writeFileSync(src, 'CONTENT c');
  runs = remote.counters().listRuns;
  const up = await remote.upload(src, '/d/c');
  t.is(up.mtimeMs, sec(statSync(src).mtimeMs));
  t.is(sec(statSync(join(folder, 'd', 'c')).mtimeMs), up.mtimeMs!, 'the server file has our mtime (-t)');
  t.deepEqual(await remote.stat('/d/c'), up);
  await remote.move('/d/c', '/d/moved');
  t.is((await remote.stat('/d/moved'))!.mtimeMs, up.mtimeMs!);
  t.is(await remote.stat('/d/c'), null);
  await remote.mkdir('/d/new');
  t.deepEqual((await remote.list('/d/new')).entries, []);
  const up2 = await remote.upload(src, '/d/new/x');
  t.deepEqual(await remote.revalidate('/d/new/x', { ...up2, mtimeMs: undefined }, 60_000), up2);
  t.is(remote.counters().listRuns - runs, 0);
});

test('fileMeta: an upload keeps the mtime and executability asked; setAttrs changes them alone sending no bytes, and leaves another version alone', async (t) => {
  const { remote, folder } = account();
  t.teardown(() => remote.close());
  const src = join(tmp, `meta-${n}`);
  writeFileSync(src, 'meta content');
  t.like(await remote.upload(src, '/m/f', { mtimeMs: 1_500_000_000_500, mode: 0o755 }), { mtimeMs: 1_500_000_000_000, mode: 0o755 });
  const server = join(folder, 'm', 'f');
  t.is(statSync(server).mtimeMs, 1_500_000_000_000);
  t.not(statSync(server).mode & 0o111, 0);
  // new content without a mode to keep: the server file stays executable
  writeFileSync(src, 'meta content 2');
  t.like(await remote.upload(src, '/m/f', { mtimeMs: 1_500_000_100_000 }), { mtimeMs: 1_500_000_100_000 });
  t.not(statSync(server).mode & 0o111, 0);
  t.like(await remote.stat('/m/f'), { mtimeMs: 1_500_000_100_000, mode: 0o755 }, 'read back from the daemon listing');
  const ino = statSync(server).ino;
  const e = await remote.fileMeta!.setAttrs('/m/f', { mtimeMs: 1_600_000_000_000, mode: 0o644 }, { localFile: src, serverMtimeMs: 1_500_000_100_000 });
  t.like(e, { size: 14, mtimeMs: 1_600_000_000_000, mode: 0o644 });
  t.is(statSync(server).ino, ino, 'no bytes sent (rsync writes a new file when it sends any)');
  t.is(statSync(server).mtimeMs, 1_600_000_000_000);
  t.is(statSync(server).mode & 0o111, 0);
  t.like(await remote.stat('/m/f'), { mtimeMs: 1_600_000_000_000, mode: 0o644 });
  // what the server holds already: no run but the listing
  let runs = remote.counters().rsyncRuns - remote.counters().listRuns;
  t.like(await remote.fileMeta!.setAttrs('/m/f', { mtimeMs: 1_600_000_000_900 }, { localFile: src }), { mtimeMs: 1_600_000_000_000 });
  t.is(remote.counters().rsyncRuns - remote.counters().listRuns - runs, 0);
  // another client's content of the same size: left alone
  writeFileSync(server, 'META CONTENT 2');
  utimesSync(server, 1_700_000_000, 1_700_000_000);
  t.is(await remote.fileMeta!.setAttrs('/m/f', { mtimeMs: 1_650_000_000_000 }, { localFile: src, serverMtimeMs: 1_600_000_000_000 }), null);
  t.is(statSync(server).mtimeMs, 1_700_000_000_000);
  // a copy that is not the server's version by size (written here since): nothing to do, no error
  writeFileSync(src, 'meta content 2, and more written since');
  t.is(await remote.fileMeta!.setAttrs('/m/f', { mtimeMs: 1_650_000_000_000 }, { localFile: src }), null);
  t.is(statSync(server).mtimeMs, 1_700_000_000_000);
  // content not cached: fetched into scratch first (so that a size change meanwhile sends real bytes)
  const scratch = join(tmp, `scratch-${n}`);
  runs = remote.counters().rsyncRuns - remote.counters().listRuns;
  t.like(await remote.fileMeta!.setAttrs('/m/f', { mtimeMs: 1_650_000_000_000 }, { scratch }), { mtimeMs: 1_650_000_000_000 });
  t.is(remote.counters().rsyncRuns - remote.counters().listRuns - runs, 2, 'the download and the attribute run');
  t.is(statSync(server).mtimeMs, 1_650_000_000_000);
  t.is(readFileSync(server, 'utf8'), 'META CONTENT 2');
  t.throws(() => statSync(scratch));

  // a batch: files with a mode to keep (umask 002 or +x creates) in one run, the others in another
  const srcs = [0, 1, 2, 3].map((i) => { const f = join(tmp, `batch-${n}-${i}`); writeFileSync(f, `b${i}`); return f; });
  runs = remote.counters().rsyncRuns - remote.counters().listRuns;
  const res = await remote.uploadMany([
    { localFile: srcs[0]!, path: '/m/b0', mtimeMs: 1_400_000_000_000, mode: 0o775 },
    { localFile: srcs[1]!, path: '/m/b1', mtimeMs: 1_400_000_001_000 },
    { localFile: srcs[2]!, path: '/m/b2', mtimeMs: 1_400_000_002_000, mode: 0o664 },
    { localFile: srcs[3]!, path: '/m/b3', mtimeMs: 1_400_000_003_000 },
  ]);
  t.deepEqual(res.map((r) => r.entry?.mtimeMs), [1_400_000_000_000, 1_400_000_001_000, 1_400_000_002_000, 1_400_000_003_000]);
  t.is(remote.counters().rsyncRuns - remote.counters().listRuns - runs, 2);
  t.deepEqual([0, 1, 2, 3].map((i) => (statSync(join(folder, 'm', `b${i}`)).mode & 0o111) !== 0), [true, false, false, false]);
  t.deepEqual([0, 1, 2, 3].map((i) => statSync(join(folder, 'm', `b${i}`)).mtimeMs), [1_400_000_000_000, 1_400_000_001_000, 1_400_000_002_000, 1_400_000_003_000]);
});

test('a folder looked up while its parent\'s two-level run is on its way gets its time from a run of its own, which its listing then uses', async (t) => {
  // the parent's run is held until the gate exists: a lookup that waited for it would not return
  const gate = join(tmp, `gate-${process.pid}-${n + 1}`);
  const wrapper = join(tmp, `rsync-held-${process.pid}-${n + 1}`);
  // (a listing names its folder in the --files-from list on stdin, "p/." for /p)
  writeFileSync(wrapper, `#!/bin/bash
deep=; for a in "$@"; do [ "$a" = -r ] && deep=1; done
case " $* " in *' --files-from=- '*) IFS= read -r -d '' name ;; *) exec rsync "$@" ;; esac
[ "$deep$name" = 1p/. ] && while [ ! -e '${gate}' ]; do sleep 0.05; done
printf '%s\\0' "$name" | exec rsync "$@"
`, { mode: 0o755 });
  const { remote, folder } = account({ rsyncPath: wrapper });
  t.teardown(() => { writeFileSync(gate, ''); return remote.close(); });
  remote.cacheTtls({ attrTtlMs: 1000, dirTtlMs: 60_000 });
  mkdirSync(join(folder, 'p', 'c'), { recursive: true });
  writeFileSync(join(folder, 'p', 'c', 'f'), 'x');
  utimesSync(join(folder, 'p', 'c', 'f'), 1_600_000_010, 1_600_000_010);
  utimesSync(join(folder, 'p', 'c'), 1_600_000_011, 1_600_000_011);
  // the parent's listing (a cold `ls -l p/c` looks p up first, which starts p's two-level run)
  const parent = remote.list('/p');
  parent.catch(() => {});
  t.true(await eventually(async () => remote.counters().listRuns === 1, 10_000, 10), 'the parent\'s run started');
  const runs = remote.counters().listRuns;
  const st = await within(remote.statMany!(['/p/c']), 20_000, () => 'timeout' as const);
  if (st === 'timeout') { t.fail('the lookup of /p/c waited for its parent\'s run'); return; }
  t.like(st[0], { type: 'dir', mtimeMs: 1_600_000_011_000 });
  t.is(remote.counters().listRuns - runs, 1, 'its own run');
  const c = await remote.list('/p/c');
  t.deepEqual(c.entries.map((e) => [e.name, e.mtimeMs]), [['f', 1_600_000_010_000]]);
  t.is(remote.counters().listRuns - runs, 1, 'its listing used that run');
  writeFileSync(gate, '');
  t.deepEqual((await parent).entries.map((e) => [e.name, e.mtimeMs]), [['c', 1_600_000_011_000]]);
});

test('parseListLine: rows of rsync --list-only --no-h, escaped names decoded, the folder\'s own row as ., others ignored', (t) => {
  t.deepEqual(parseListLine('-rw-r--r--           5000 2026/12/04 07:40:50 big'),
    { name: 'big', type: 'file', size: 5000, mtimeMs: Date.UTC(2026, 11, 4, 7, 40, 50), exec: false });
  t.deepEqual(parseListLine('-rw-r--r--          5,000 2026/12/04 07:40:50 with  two spaces '),
    { name: 'with  two spaces ', type: 'file', size: 5000, mtimeMs: Date.UTC(2026, 11, 4, 7, 40, 50), exec: false });
  t.true(parseListLine('-rwx------              1 2026/12/04 07:40:50 x')!.exec);
  t.true(parseListLine('-rw-r-S--T              1 2026/12/04 07:40:50 y')!.exec === false, 'S and T are set-id/sticky without x');
  t.true(parseListLine('-rw-r--r-t              1 2026/12/04 07:40:50 z')!.exec);
  t.is(parseListLine('-rw-r--r--              1 2026/12/04 07:40:50 na me \\#303\\#251\\#134#123 [x]')!.name, 'na me é\\#123 [x]');
  t.is(parseListLine('-rw-r--r--              0 2026/12/04 07:40:51 nl\\#012x')!.name, 'nl\nx');
  t.is(parseListLine('-rw-r--r--              0 2026/12/04 07:40:51 \\#346\\#227\\#245\\#346\\#234\\#254 \\#360\\#237\\#230\\#200')!.name, '日本 😀');
  t.is(parseListLine('drwxr-xr-x           4096 2026/12/04 07:40:51 sub')!.type, 'dir');
  t.deepEqual(parseListLine('drwxr-xr-x           4096 2026/12/04 07:40:51 .'),
    { name: '.', type: 'dir', size: 0, mtimeMs: Date.UTC(2026, 11, 4, 7, 40, 51), exec: false }, 'the folder itself: its own time');
  t.is(parseListLine('lrwxrwxrwx             10 2026/12/04 07:40:51 link -> target'), undefined);
  t.is(parseListLine('receiving incremental file list'), undefined);
});

test('a cold listing takes two levels in one run: the subfolders then list with their mtimes and no run; many rows: the folder\'s own run alongside', async (t) => {
  const { remote, folder } = account();
  t.teardown(() => remote.close());
  remote.cacheTtls({ attrTtlMs: 1000, dirTtlMs: 60_000 });
  const put = (rel: string, s: number) => {
    writeFileSync(join(folder, rel), `content of ${rel}`);
    utimesSync(join(folder, rel), s, s);
  };
  mkdirSync(join(folder, 'top', 'a', 'deep', 'deeper'), { recursive: true });
  mkdirSync(join(folder, 'top', 'empty'));
  put('top/f', 1_600_000_000);
  put('top/a/g', 1_600_000_001);
  put('top/a/deep/h', 1_600_000_002);
  utimesSync(join(folder, 'top', 'a', 'deep'), 1_600_000_003, 1_600_000_003);
  let runs = remote.counters().listRuns;
  // (a subfolder asked for while its parent's run is on its way waits for that run)
  const [top, a] = await Promise.all([remote.list('/top'), remote.list('/top/a')]);
  t.deepEqual(top.entries.map((e) => [e.name, e.mtimeMs]).sort(),
    [['a', sec(statSync(join(folder, 'top', 'a')).mtimeMs)], ['empty', sec(statSync(join(folder, 'top', 'empty')).mtimeMs)], ['f', 1_600_000_000_000]]);
  t.deepEqual(a.entries.map((e) => [e.name, e.mtimeMs]).sort(), [['deep', 1_600_000_003_000], ['g', 1_600_000_001_000]]);
  t.is(remote.counters().listRuns - runs, 1, 'one for /top, two levels');
  runs = remote.counters().listRuns;
  t.deepEqual((await remote.list('/top/empty')).entries, []);
  t.is(remote.counters().listRuns - runs, 0, 'the subfolders came with the first run');
  // the third level is not in it: its own run (two levels again)
  t.deepEqual((await remote.list('/top/a/deep')).entries.map((e) => [e.name, e.mtimeMs]).sort(), [['deeper', sec(statSync(join(folder, 'top', 'a', 'deep', 'deeper')).mtimeMs)], ['h', 1_600_000_002_000]]);
  t.is(remote.counters().listRuns - runs, 1);

  // a folder whose two levels hold more than DEEP_ROWS_MAX rows before its own last name (zz,
  // listed after s1's and s2's rows): its own one-level run starts alongside (its listing does
  // not wait for all the subfolders' rows), the two-level run goes on and its subfolders are kept
  mkdirSync(join(folder, 'big', 's1'), { recursive: true });
  mkdirSync(join(folder, 'big', 's2'));
  mkdirSync(join(folder, 'big', 'zz'));
  for (let i = 0; i < 2600; i++) { writeFileSync(join(folder, 'big', 's1', `x${i}`), ''); writeFileSync(join(folder, 'big', 's2', `y${i}`), ''); }
  put('big/s1/x7', 1_600_000_007);
  put('big/top.txt', 1_600_000_008);
  runs = remote.counters().listRuns;
  const big = await remote.list('/big');
  t.deepEqual(big.entries.find((e) => e.name === 'top.txt')?.mtimeMs, 1_600_000_008_000);
  t.is(remote.counters().listRuns - runs, 2, 'the two-level run and, past DEEP_ROWS_MAX rows, the one-level one');
  // (the two-level run may still be on its way: a subfolder asked for meanwhile runs its own)
  await settled(remote);
  runs = remote.counters().listRuns;
  const s1 = await remote.list('/big/s1');
  t.is(s1.entries.length, 2600);
  t.is(s1.entries.find((e) => e.name === 'x7')?.mtimeMs, 1_600_000_007_000);
  t.true(s1.entries.every((e) => e.mtimeMs !== undefined));
  t.is((await remote.list('/big/s2')).entries.length, 2600);
  t.is(remote.counters().listRuns - runs, 0, 's1 and s2 came with the two-level run');
});

test('a two-level listing stopped at its hard bound keeps the subfolders it completed, and only those', async (t) => {
  const { remote, folder } = account({ listingBounds: { deepRowsMax: 1000, deepRowsHard: 3000 } });
  t.teardown(() => remote.close());
  remote.cacheTtls({ attrTtlMs: 1000, dirTtlMs: 60_000 });
  for (const sub of ['s1', 's2', 's3']) {
    mkdirSync(join(folder, 'big', sub), { recursive: true });
    for (let i = 0; i < 1200; i++) writeFileSync(join(folder, 'big', sub, `${sub}-${i}`), '');
    utimesSync(join(folder, 'big', sub, `${sub}-1199`), 1_600_000_009, 1_600_000_009);
  }
  writeFileSync(join(folder, 'big', 'top.txt'), 'x');
  utimesSync(join(folder, 'big', 'top.txt'), 1_600_000_008, 1_600_000_008);
  let runs = remote.counters().listRuns;
  const big = await remote.list('/big');
  t.is(big.entries.find((e) => e.name === 'top.txt')?.mtimeMs, 1_600_000_008_000);
  t.true(big.entries.every((e) => e.mtimeMs !== undefined));
  runs = remote.counters().listRuns - runs;
  t.is(runs, 2, 'the two-level run and the one-level one');
  await settled(remote);
  // 3 x 1,200 rows past 3,000: s1 and s2 whole, s3 cut short (not kept: it would miss rows)
  runs = remote.counters().listRuns;
  for (const sub of ['s1', 's2']) {
    const l = await remote.list(`/big/${sub}`);
    t.is(l.entries.length, 1200);
    t.is(l.entries.find((e) => e.name === `${sub}-1199`)?.mtimeMs, 1_600_000_009_000);
    t.true(l.entries.every((e) => e.mtimeMs !== undefined));
  }
  t.is(remote.counters().listRuns - runs, 0, 's1 and s2 kept from the stopped run');
  const s3 = await remote.list('/big/s3');
  t.is(s3.entries.length, 1200);
  t.is(s3.entries.find((e) => e.name === 's3-1199')?.mtimeMs, 1_600_000_009_000, 'its last row, past where the run stopped');
  t.true(s3.entries.every((e) => e.mtimeMs !== undefined));
  t.is(remote.counters().listRuns - runs, 1, 's3 listed on its own');
});

test('listing runs take rsync children started ahead (connected, waiting for their --files-from list): hostile folder names list as a fresh run lists them', async (t) => {
  const { remote, folder } = account();
  t.teardown(() => remote.close());
  // (below the top folder's two-level listing: each of these takes a run of its own)
  const names = ['plain', 'with  space ', 'star*[x]?', 'back\\slash', 'new\nline', '-dash', 'ünïcødé', '.dot'];
  for (const [i, name] of names.entries()) {
    const d = join(folder, 'top', name);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, `f${i}`), 'x'.repeat(i));
    utimesSync(join(d, `f${i}`), 1_500_000_000 + i, 1_500_000_000 + i);
  }
  await remote.list('/');
  const before = remote.counters().warmRuns;
  for (const [i, name] of names.entries()) {
    // A run that took the last waiting child starts the next one 10 ms later (WarmRuns.refill):
    // a run right behind it may come first on a loaded machine (CI: 7 of 8 took one), so each
    // run here waits a little longer than that; what is checked is the child's list, not timing.
    await new Promise((r) => setTimeout(r, 40));
    const { entries } = await remote.list(`/top/${name}`);
    t.deepEqual(entries.map((e) => [e.name, e.size, e.mtimeMs]), [[`f${i}`, i, (1_500_000_000 + i) * 1000]], JSON.stringify(name));
  }
  t.is(remote.counters().warmRuns - before, names.length, 'every run took a child started by the run before');
  await t.throwsAsync(remote.list('/top/none'), { instanceOf: RemoteError });
});

test('a child started ahead whose run fails as a dropped connection would is not tried again: a fresh run lists the folder at once', async (t) => {
  const marker = join(tmp, `fail-once-${process.pid}-${n + 1}`);
  const wrapper = join(tmp, `rsync-fail-once-${process.pid}-${n + 1}`);
  // the first listing after the marker appears exits as a connection lost mid-run (12)
  writeFileSync(wrapper, `#!/bin/bash
case " $* " in *' --files-from=- '*) IFS= read -r -d '' name ;; *) exec rsync "$@" ;; esac
[ -e '${marker}' ] && { rm -f '${marker}'; echo 'rsync: connection unexpectedly closed' >&2; exit 12; }
printf '%s\\0' "$name" | exec rsync "$@"
`, { mode: 0o755 });
  const { remote, folder, lines } = account({ rsyncPath: wrapper });
  t.teardown(() => remote.close());
  mkdirSync(join(folder, 'x', 'a', 'b'), { recursive: true });
  writeFileSync(join(folder, 'x', 'a', 'b', 'f'), 'abc');
  utimesSync(join(folder, 'x', 'a', 'b', 'f'), 1_500_000_000, 1_500_000_000);
  await remote.list('/x');
  writeFileSync(marker, '');
  const c0 = remote.counters();
  const { entries } = await remote.list('/x/a/b');
  t.deepEqual(entries.map((e) => [e.name, e.mtimeMs]), [['f', 1_500_000_000_000]]);
  const c1 = remote.counters();
  t.false(existsSync(marker), 'the started child took the run and failed');
  t.is(c1.warmRuns! - c0.warmRuns!, 1);
  t.is(c1.rsyncRuns! - c0.rsyncRuns!, 2, 'the failed run and a fresh one');
  t.deepEqual(lines.filter((l) => /WARN/.test(l)), []);
});

test('downloadMany: hostile names byte-exact, a missing file only missing from the answer; the next batch takes a child started ahead; no working folder left after close', async (t) => {
  const { remote, folder } = account();
  const local = mkdtempSync(join(tmp, 'many-'));
  const names = ['a b', 'star*[x]?', 'back\\slash', 'new\nline', '-dash', 'ünï'];
  mkdirSync(join(folder, 'm'));
  for (const [i, name] of names.entries()) writeFileSync(join(folder, 'm', name), `content ${i} `.repeat(i + 1));
  const items = (ns: string[]) => ns.map((name, i) => ({ path: `/m/${name}`, localFile: join(local, `f${i}-${ns.length}`) }));
  const first = items([...names.slice(0, 3), 'missing']);
  t.deepEqual(await remote.downloadMany!(first), first.slice(0, 3).map((it) => it.path));
  for (const [i, it] of first.slice(0, 3).entries()) {
    t.is(readFileSync(it.localFile, 'utf8'), `content ${i} `.repeat(i + 1));
    t.is(statSync(it.localFile).mode & 0o777, 0o600, 'a cache file is private');
  }
  const warm = remote.counters().warmRuns!;
  const second = items(names.slice(3));
  t.deepEqual(await remote.downloadMany!(second), second.map((it) => it.path));
  for (const [i, it] of second.entries()) t.is(readFileSync(it.localFile, 'utf8'), `content ${i + 3} `.repeat(i + 4));
  t.is(remote.counters().warmRuns! - warm, 1, 'the second batch took the child the first one started');
  t.true(readdirSync(local).some((n) => n.startsWith('.rsync-run-')), 'children wait in folders of their own');
  await remote.close();
  t.deepEqual(readdirSync(local).filter((n) => n.startsWith('.rsync-run-')), []);
});

test('downloadMany into a folder removed right after: the children it would start ahead there are not started, nothing is thrown, the next batch elsewhere works', async (t) => {
  const { remote, folder } = account();
  t.teardown(() => remote.close());
  mkdirSync(join(folder, 'g'));
  writeFileSync(join(folder, 'g', 'one'), 'one');
  const gone = mkdtempSync(join(tmp, 'gone-'));
  t.deepEqual(await remote.downloadMany!([{ path: '/g/one', localFile: join(gone, 'one') }]), ['/g/one']);
  await sleep(300);
  // a run that takes a child started ahead starts the next one 100 ms later, from a timer; a
  // throw there was an uncaught exception that ended the process (the crash test removed its
  // folder this way)
  const warm = remote.counters().warmRuns!;
  t.deepEqual(await remote.downloadMany!([{ path: '/g/one', localFile: join(gone, 'two') }]), ['/g/one']);
  t.is(remote.counters().warmRuns! - warm, 1);
  rmSync(gone, { recursive: true, force: true });
  await sleep(400);
  const there = mkdtempSync(join(tmp, 'there-'));
  t.deepEqual(await remote.downloadMany!([{ path: '/g/one', localFile: join(there, 'one') }]), ['/g/one']);
  t.is(readFileSync(join(there, 'one'), 'utf8'), 'one');
});

test('download of a file expected small (sizeHint): whole through a child started ahead, the server mtime as its version; a folder or a missing file fail as in place', async (t) => {
  const { remote, folder } = account();
  t.teardown(() => remote.close());
  const local = mkdtempSync(join(tmp, 'small-'));
  mkdirSync(join(folder, 's', 'sub'), { recursive: true });
  const names = ['new\nline', 'star*[x]?', '-dash'];
  for (const [i, name] of names.entries()) {
    writeFileSync(join(folder, 's', name), `small ${i}`);
    utimesSync(join(folder, 's', name), 1_500_000_000 + i, 1_500_000_000 + i);
  }
  const warm = remote.counters().warmRuns!;
  for (const [i, name] of names.entries()) {
    const file = join(local, `f${i}`);
    writeFileSync(file, '');
    const v = await remote.download(`/s/${name}`, file, { sizeHint: 7 });
    t.deepEqual(v, { size: 7, mtimeMs: (1_500_000_000 + i) * 1000 });
    t.is(readFileSync(file, 'utf8'), `small ${i}`);
    t.is(statSync(file).mode & 0o777, 0o600, 'a cache file is private');
  }
  t.true(remote.counters().warmRuns! - warm >= names.length - 1, 'the runs after the first took started children');
  t.is(await code(remote.download('/s/sub', join(local, 'x'), { sizeHint: 0 })), 'IS_A_DIRECTORY');
  t.is(await code(remote.download('/s/missing', join(local, 'y'), { sizeHint: 5 })), 'NOT_FOUND');
  t.deepEqual(readdirSync(local).filter((n) => n.startsWith('.rsync-run-')).length <= 2, true, 'only the children waiting');
});

test('a flat folder with more files than a two-level run takes lists whole with its mtimes (it failed with no listing at all)', async (t) => {
  const { remote, folder } = account({ listingBounds: { deepRowsMax: 10, deepRowsHard: 20 } });
  t.teardown(() => remote.close());
  mkdirSync(join(folder, 'flat'));
  for (let i = 0; i < 60; i++) {
    writeFileSync(join(folder, 'flat', `f${i}`), 'x');
    utimesSync(join(folder, 'flat', `f${i}`), 1_500_000_000 + i, 1_500_000_000 + i);
  }
  const { entries } = await remote.list('/flat');
  t.is(entries.length, 60);
  t.true(entries.every((e) => e.mtimeMs === (1_500_000_000 + Number(e.name.slice(1))) * 1000), 'every file has its mtime');
});

test('a listing guessed for a name that is a file (Remote.likelyFolder says so of names without an extension) fails as NotADirectory, warns nothing, and leaves the stat right', async (t) => {
  const { remote, folder, lines } = account();
  t.teardown(() => remote.close());
  mkdirSync(join(folder, 'g', 'dir'), { recursive: true });
  writeFileSync(join(folder, 'g', 'Makefile'), 'all:');
  writeFileSync(join(folder, 'g', 'notes.txt'), 'n');
  // no listing of /g kept: the name decides
  t.true(remote.likelyFolder('/g/dir'));
  t.true(remote.likelyFolder('/g/Makefile'));
  t.false(remote.likelyFolder('/g/notes.txt'));
  t.true(remote.likelyFolder('/g/.hidden'));
  await t.throwsAsync(remote.list('/g/Makefile'), { instanceOf: RemoteError, code: 'NOT_A_DIRECTORY' });
  await settled(remote);
  const st = await remote.stat('/g/Makefile');
  t.is(st?.type, 'file');
  t.is(st?.size, 4);
  t.deepEqual(lines.filter((l) => / (WARN|ERROR) /.test(l)), []);
  // once /g is listed its daemon listing answers
  await remote.list('/g');
  t.true(remote.likelyFolder('/g/dir'));
  t.false(remote.likelyFolder('/g/Makefile'));
});
