// Real mounts of the libfuse 3 binding (src/fuse/lowlevel.ts) serving test/lowlevel/memfs.ts in a
// child process; the shell commands run in further child processes. Each test counts what reached
// JS (memfs counters) and what the native side saw or answered itself (session.stats()).
import test from 'ava';
import crypto from 'node:crypto';
import { LowLevelSession, lowlevelAvailable } from '../../src/fuse/lowlevel.js';
import { sh, startMemfs, tmpMountpoint } from './lib.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const avail = lowlevelAvailable();
const run = avail.ok ? test.serial : test.serial.skip;
if (!avail.ok) {
  test('libfuse 3 addon is available', (t) => {
    if (process.platform !== 'linux' || process.env.CLOUDMOUNT_SKIP_NATIVE) return t.pass();
    t.fail(avail.reason);
  });
}

const O_ACCMODE = 3;
const O_WRONLY = 1;
const O_APPEND = 0o2000;
const O_EXCL = 0o200;

run('init negotiates 1 MiB writes, readdirplus, async reads, parallel dirops', async (t) => {
  const h = await startMemfs(t);
  const c = h.ready.conn;
  t.is(c.maxWrite, 1 << 20);
  for (const f of ['READDIRPLUS', 'ASYNC_READ', 'PARALLEL_DIROPS', 'ATOMIC_O_TRUNC']) t.true(c.features.includes(f), f);
  t.false(c.features.includes('READDIRPLUS_AUTO'));
  // (it races with the kernel's own writes: native-notes/lowlevel.md "AUTO_INVAL_DATA")
  t.false(c.features.includes('AUTO_INVAL_DATA'));
  t.false(c.features.includes('WRITEBACK_CACHE'));
  t.is(c.readAheadKb, 1024);
  const m = await sh(`grep ' ${h.mnt} ' /proc/mounts`);
  t.regex(m.out, /^cloudmount \S+ fuse\.cloudmount /);
});

run('ls -l after READDIRPLUS sends no LOOKUP or GETATTR per name to JS', async (t) => {
  const h = await startMemfs(t, { mount: { attrTimeout: 30, entryTimeout: 30 } });
  await h.cmd({ cmd: 'mk', name: 'seed', mode: 0o040755 });
  await h.cmd({ cmd: 'mkmany', dir: '/seed', prefix: 'f', n: 200 });
  await h.cmd({ cmd: 'reset' });
  const before = (await h.cmd({ cmd: 'stats' })).native;
  const r = await sh(`ls -l ${h.mnt}/seed`);
  t.is(r.code, 0, r.err);
  t.is(r.out.trim().split('\n').length, 201); // "total" + 200
  t.regex(r.out, /-rw-r--r-- 1 root root 7 .* f0\n/);
  const s = await h.cmd({ cmd: 'stats' });
  t.log('JS ops for ls -l of 200 files:', JSON.stringify(s.counts), 'native getxattr answered:',
    (s.native.received.getxattr ?? 0) - (before.received.getxattr ?? 0));
  t.is(s.counts.lookup, 1, 'only the lookup of "seed" itself');
  t.true((s.counts.getattr ?? 0) <= 2, `getattr ${s.counts.getattr}`);
  t.true(s.counts.readdirplus >= 1);
  t.is(s.counts.readdir, undefined);
  t.is(s.counts.getxattr, undefined, 'xattr probes never reach JS');
  // the 200 entries each now hold one kernel lookup (plus . and .. which do not count)
  const seedIno = Object.keys(s.nlookup).map(Number).find((i) => i > 1)!;
  t.is(s.nlookup[seedIno], 1);
  t.is(Object.values(s.nlookup).filter((n) => n === 1).length, 202); // root, seed, 200 files
});

run('readdirplus=auto lets the kernel choose, readdirplus=off asks for none', async (t) => {
  const a = await startMemfs(t, { mount: { readdirplus: 'auto' } });
  t.true(a.ready.conn.features.includes('READDIRPLUS'));
  t.true(a.ready.conn.features.includes('READDIRPLUS_AUTO'));
  const o = await startMemfs(t, { mount: { readdirplus: 'off' } });
  t.false(o.ready.conn.features.includes('READDIRPLUS'));
  await o.cmd({ cmd: 'mkmany', dir: '/', prefix: 'h', n: 5 });
  const r = await sh(`ls -l ${o.mnt} | wc -l`);
  t.is(r.out.trim(), '6');
  t.true((await o.cmd({ cmd: 'stats' })).counts.readdir >= 1);
});

run('without a readdirplus handler plain READDIR serves ls, and ls -l pays a LOOKUP per name', async (t) => {
  const h = await startMemfs(t, { fs: { noReaddirplus: true } });
  t.false(h.ready.conn.features.includes('READDIRPLUS'));
  await h.cmd({ cmd: 'mkmany', dir: '/', prefix: 'g', n: 20 });
  const r = await sh(`ls -l ${h.mnt} | wc -l`);
  t.is(r.out.trim(), '21');
  const s = await h.cmd({ cmd: 'stats' });
  t.true(s.counts.readdir >= 1);
  t.is(s.counts.lookup, 20);
});

run('1 MiB READ and WRITE requests; write data handed to JS without a copy', async (t) => {
  const size = 64 << 20;
  const h = await startMemfs(t, { fs: { bigFileBytes: size } });
  const r = await sh(`sha256sum < ${h.mnt}/big`);
  const pattern = Buffer.alloc(1 << 20);
  for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 31) & 0xff;
  const hash = crypto.createHash('sha256');
  for (let i = 0; i < size / pattern.length; i++) hash.update(pattern);
  t.is(r.out.split(' ')[0], hash.digest('hex'));
  let s = await h.cmd({ cmd: 'stats' });
  t.is(Math.max(...s.readSizes), 1 << 20);
  t.true(s.readSizes.length <= 70, `${s.readSizes.length} reads for 64 MiB`);
  await h.cmd({ cmd: 'reset' });
  const w = await sh(`dd if=/dev/urandom of=${h.mnt}/w bs=4M count=8 conv=fsync status=none && stat -c %s ${h.mnt}/w`);
  t.is(w.out.trim(), String(32 << 20), w.err);
  s = await h.cmd({ cmd: 'stats' });
  t.is(Math.max(...s.writeSizes), 1 << 20);
  t.is(s.writeSizes.length, 32);
  t.true(s.native.bytesZeroCopy >= 32 << 20);
  t.log('getxattr probes answered natively during the writes:', s.native.received.getxattr ?? 0);
  const back = await sh(`cmp <(head -c 1048576 ${h.mnt}/w) <(dd if=${h.mnt}/w bs=1M count=1 status=none) && echo same`);
  t.is(back.out.trim(), 'same');
});

run('dataFromFdAsync: the data thread answers READs from a file of ours while the JS thread goes on; our fd closed at once', async (t) => {
  const size = 24 << 20;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cmll-fd-'));
  const file = path.join(dir, 'src');
  const bytes = crypto.randomBytes(size);
  fs.writeFileSync(file, bytes);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const h = await startMemfs(t, { fs: { bigFileBytes: size }, bigFile: { path: file, splice: false, async: true } });
  // four readers at once, each a quarter with O_DIRECT (every read is a READ request), plus a
  // whole buffered read; the answers must be the file's bytes, in place
  const q = size / 4;
  const parts = await Promise.all([0, 1, 2, 3].map((i) =>
    sh(`dd if=${h.mnt}/big bs=256K skip=${(i * q) / (256 << 10)} count=${q / (256 << 10)} iflag=direct status=none | sha256sum`)));
  parts.forEach((r, i) => t.is(r.out.split(' ')[0], crypto.createHash('sha256').update(bytes.subarray(i * q, (i + 1) * q)).digest('hex'), `quarter ${i}`));
  const whole = await sh(`sha256sum < ${h.mnt}/big`);
  t.is(whole.out.split(' ')[0], crypto.createHash('sha256').update(bytes).digest('hex'));
  // a read past the end: nothing, not an error
  const past = await sh(`dd if=${h.mnt}/big bs=4096 skip=${size / 4096} count=1 status=none | wc -c`);
  t.is(past.out.trim(), '0');
  const s = await h.cmd({ cmd: 'stats' });
  t.true(s.native.dataThreadReplies >= 96, `data thread answers: ${s.native.dataThreadReplies}`);
  t.is(s.native.outstanding, 0);
});

run('utimens: touch -m and touch -a set one time exactly, keep the other; touch sets both to now', async (t) => {
  const h = await startMemfs(t);
  const f = `${h.mnt}/t`;
  t.is((await sh(`touch ${f}`)).code, 0);
  const st0 = (await sh(`stat -c '%X %Y' ${f}`)).out.trim().split(' ');
  await h.cmd({ cmd: 'reset' });
  const m = await sh(`TZ=UTC touch -m -d '2001-02-03 04:05:06.123456789' ${f} && stat -c '%.9X %.9Y' ${f}`);
  t.is(m.code, 0, m.err);
  let s = await h.cmd({ cmd: 'stats' });
  t.deepEqual(s.setattrs.at(-1).changes, { mtime: { sec: 981173106, nsec: 123456789 } });
  const [a1, m1] = m.out.trim().split(' ');
  t.is(m1, '981173106.123456789');
  t.is(a1.split('.')[0], st0[0], 'atime untouched');
  const a = await sh(`TZ=UTC touch -a -d '2002-03-04 05:06:07.5' ${f} && stat -c '%.9X %.9Y' ${f}`);
  s = await h.cmd({ cmd: 'stats' });
  t.deepEqual(s.setattrs.at(-1).changes, { atime: { sec: 1015218367, nsec: 500000000 } });
  t.is(a.out.trim(), '1015218367.500000000 981173106.123456789');
  await sh(`touch ${f}`);
  s = await h.cmd({ cmd: 'stats' });
  t.deepEqual(s.setattrs.at(-1).changes, { atime: 'now', mtime: 'now' });
  const both = await sh(`TZ=UTC touch -d '2003-01-01 00:00:00' ${f} && stat -c '%X %Y' ${f}`);
  t.is(both.out.trim(), '1041379200 1041379200');
});

run('create gets the open flags and the mode (umask applied by the kernel, reported too)', async (t) => {
  const h = await startMemfs(t);
  const f = `${h.mnt}/c`;
  const py = `import os; os.umask(0o022); fd=os.open('${f}', os.O_CREAT|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o660); os.write(fd, b'abc'); os.close(fd)`;
  const r = await sh(`python3 -c "${py}" && stat -c '%a %s' ${f}`);
  t.is(r.code, 0, r.err);
  t.is(r.out.trim(), '640 3');
  const s = await h.cmd({ cmd: 'stats' });
  const c = s.creates.at(-1);
  t.is(c.name, 'c');
  t.is(c.flags & O_ACCMODE, O_WRONLY);
  t.truthy(c.flags & O_APPEND);
  t.truthy(c.flags & O_EXCL);
  t.is(c.mode & 0o7777, 0o640);
  t.is(c.umask, 0o022);
  const again = await sh(`python3 -c "${py}"`);
  t.regex(again.err, /FileExistsError/);
  const app = await sh(`echo -n de >> ${f} && cat ${f}`);
  t.is(app.out, 'abcde');
});

const renameat2 = (from: string, to: string, flags: number) =>
  sh(`python3 -c "
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r = libc.renameat2(-100, b'${from}', -100, b'${to}', ${flags})
sys.exit(0 if r == 0 else ctypes.get_errno())"`);

run('rename flags reach JS: RENAME_NOREPLACE and RENAME_EXCHANGE', async (t) => {
  const h = await startMemfs(t, { mount: { negativeTimeout: 60 } });
  const m = h.mnt;
  await sh(`echo A > ${m}/a && echo B > ${m}/b`);
  t.is((await renameat2(`${m}/a`, `${m}/c`, 1)).code, 0);
  let s = await h.cmd({ cmd: 'stats' });
  t.deepEqual(s.renames.at(-1), { name: 'a', newName: 'c', flags: 1 });
  t.is((await renameat2(`${m}/c`, `${m}/b`, 2)).code, 0);
  s = await h.cmd({ cmd: 'stats' });
  t.deepEqual(s.renames.at(-1), { name: 'c', newName: 'b', flags: 2 });
  t.is((await sh(`cat ${m}/b ${m}/c`)).out, 'A\nB\n');
  // a name another client made behind the kernel's back, while a negative entry for it is cached:
  // the kernel revalidates a rename target (LOOKUP_RENAME_TARGET) before it checks NOREPLACE itself,
  // so the file of the other client is not replaced
  t.not((await sh(`ls ${m}/n`)).code, 0);
  await h.cmd({ cmd: 'mk', name: 'n', content: 'other client\n' });
  t.is((await renameat2(`${m}/b`, `${m}/n`, 1)).code, 17 /* EEXIST */);
  t.is((await sh(`cat ${m}/n`)).out, 'other client\n');
  t.is((await sh(`cat ${m}/b`)).out, 'A\n');
});

run('xattr probes outside user.* are answered natively; user.* goes to JS', async (t) => {
  const h = await startMemfs(t);
  const f = `${h.mnt}/x`;
  await sh(`touch ${f}`);
  await h.cmd({ cmd: 'reset' });
  const n0 = (await h.cmd({ cmd: 'stats' })).native.nativeAnswered;
  const g = await sh(`getfattr -n security.selinux ${f}; getfattr -n trusted.foo ${f}; setfattr -n security.foo -v 1 ${f}; setfattr -x security.foo ${f}`);
  // ENOTSUP, not ENODATA: ls stops probing a device that answers so (one probe per ls -l, not per name)
  t.regex(g.err, /security.selinux: Operation not supported/);
  t.regex(g.err, /trusted.foo: Operation not supported/);
  let s = await h.cmd({ cmd: 'stats' });
  t.is(s.counts.getxattr, undefined);
  t.is(s.counts.setxattr, undefined);
  t.is(s.counts.removexattr, undefined);
  t.true(s.native.nativeAnswered - n0 >= 4, `native answers: ${s.native.nativeAnswered - n0}`);
  const u = await sh(`setfattr -n user.color -v blue ${f} && getfattr --only-values -n user.color ${f}`);
  t.is(u.out, 'blue');
  s = await h.cmd({ cmd: 'stats' });
  t.true(s.counts.setxattr === 1 && s.counts.getxattr >= 1);
});

run('forget: an unlinked file leaves the inode table once the kernel forgets it', async (t) => {
  const h = await startMemfs(t);
  const base = (await h.cmd({ cmd: 'stats' })).nodes;
  await sh(`for i in $(seq 1 30); do echo $i > ${h.mnt}/f$i; done; ls -l ${h.mnt} > /dev/null`);
  t.is((await h.cmd({ cmd: 'stats' })).nodes, base + 30);
  await sh(`rm ${h.mnt}/f*`);
  let s = await h.cmd({ cmd: 'stats' });
  for (let i = 0; i < 50 && s.nodes !== base; i++) {
    await new Promise((r) => setTimeout(r, 100));
    s = await h.cmd({ cmd: 'stats' });
  }
  t.is(s.nodes, base);
  t.true(s.forgets >= 1);
  t.true(Object.values(s.nlookup as Record<string, number>).every((n) => n >= 0));
});

run('notify_inval_entry and notify_inval_inode reach the kernel without blocking JS', async (t) => {
  const h = await startMemfs(t, { mount: { negativeTimeout: 60, entryTimeout: 60, attrTimeout: 60 }, fs: { keepCache: true } });
  const m = h.mnt;
  t.not((await sh(`cat ${m}/late`)).code, 0);
  await h.cmd({ cmd: 'mk', name: 'late', content: 'here\n' });
  t.not((await sh(`cat ${m}/late`)).code, 0, 'negative entry still cached');
  t.is((await h.cmd({ cmd: 'invalEntry', dir: '/', name: 'late' })).r, 0);
  t.is((await sh(`cat ${m}/late`)).out, 'here\n');
  // page cache kept across opens (keep_cache): a change behind the kernel's back stays unseen...
  await h.cmd({ cmd: 'set', path: '/late', content: 'HERE\n', keepMtime: true });
  t.is((await sh(`cat ${m}/late`)).out, 'here\n');
  // ...until we tell it
  t.is((await h.cmd({ cmd: 'invalInode', path: '/late' })).r, 0);
  t.is((await sh(`cat ${m}/late`)).out, 'HERE\n');
});

run('cache_readdir: a listing is served by the kernel until notify_inval_inode of the folder', async (t) => {
  const h = await startMemfs(t, { fs: { cacheReaddir: true }, mount: { attrTimeout: 60, entryTimeout: 60 } });
  await h.cmd({ cmd: 'mkmany', dir: '/', prefix: 'c', n: 5 });
  t.is((await sh(`ls ${h.mnt} | wc -l`)).out.trim(), '5');
  await h.cmd({ cmd: 'reset' });
  t.is((await sh(`ls ${h.mnt} | wc -l`)).out.trim(), '5');
  let s = await h.cmd({ cmd: 'stats' });
  t.is(s.counts.readdirplus, undefined, 'second listing from the kernel cache');
  await h.cmd({ cmd: 'mk', name: 'new', content: 'n' });
  t.is((await sh(`ls ${h.mnt} | wc -l`)).out.trim(), '5', 'still the cached listing');
  t.is((await h.cmd({ cmd: 'invalInode', path: '/' })).r, 0);
  t.is((await sh(`ls ${h.mnt} | wc -l`)).out.trim(), '6');
  s = await h.cmd({ cmd: 'stats' });
  t.true(s.counts.readdirplus >= 1);
});

run('writeback_cache (optional): small writes reach JS merged, content intact', async (t) => {
  const h = await startMemfs(t, { mount: { writebackCache: true } });
  t.true(h.ready.conn.features.includes('WRITEBACK_CACHE'));
  const r = await sh(`dd if=/dev/urandom of=/tmp/cmll-wb-$$ bs=4k count=256 status=none && dd if=/tmp/cmll-wb-$$ of=${h.mnt}/w bs=4k status=none && sync ${h.mnt}/w && cmp /tmp/cmll-wb-$$ ${h.mnt}/w && echo same; rm -f /tmp/cmll-wb-$$`);
  t.is(r.out.trim(), 'same', r.err);
  const s = await h.cmd({ cmd: 'stats' });
  t.log(`256 writes of 4 KiB -> ${s.writeSizes.length} WRITE requests, largest ${Math.max(...s.writeSizes) >> 10} KiB`);
  t.true(s.writeSizes.length < 64);
});

run('a signal to a program waiting on a request interrupts it in JS (req.signal)', async (t) => {
  const h = await startMemfs(t);
  const started = Date.now();
  const r = await sh(`timeout -s INT 1 stat ${h.mnt}/slow`);
  t.true(Date.now() - started < 10_000, 'stat did not wait for the 30 s answer');
  t.not(r.code, 0);
  let s = await h.cmd({ cmd: 'stats' });
  for (let i = 0; i < 30 && s.pending; i++) {
    await new Promise((res) => setTimeout(res, 100));
    s = await h.cmd({ cmd: 'stats' });
  }
  t.is(s.interruptedLookups, 1);
  t.true(s.native.interrupts >= 1);
  t.is(s.pending, 0, 'the interrupted lookup was answered (EINTR)');
});

run('names that are not UTF-8 are refused natively', async (t) => {
  const h = await startMemfs(t);
  const s0 = await h.cmd({ cmd: 'stats' });
  const r = await sh(`touch $'${h.mnt}/bad\\xff'; ls $'${h.mnt}/bad\\xff'`);
  t.regex(r.err, /Invalid or incomplete multibyte|No such file/);
  const s = await h.cmd({ cmd: 'stats' });
  t.is(s.counts.create, undefined);
  t.true(s.native.nativeAnswered > s0.native.nativeAnswered);
});

run('symlink, hard link, mkdir/rmdir, truncate, statfs', async (t) => {
  const h = await startMemfs(t);
  const m = h.mnt;
  const r = await sh(`set -e; cd ${m}; mkdir d; echo hello > d/f; ln -s d/f s; ln d/f h; readlink s; cat s h;
    stat -c %h d/f; truncate -s 2 h; cat d/f; echo; rm h s d/f; rmdir d; ls -A | wc -l; df -k . | tail -1 | awk '{print $2}'`);
  t.is(r.code, 0, r.err);
  t.is(r.out, 'd/f\nhello\nhello\n2\nhe\n0\n4194304\n');
});

run('a busy mount refuses a clean unmount (EBUSY); an unmount from outside closes the session', async (t) => {
  const h = await startMemfs(t);
  await sh(`echo x > ${h.mnt}/held`);
  // the holder says when its fd is open: a fixed delay lost the race on a loaded machine
  const opened = `${h.mnt}.opened`;
  t.teardown(() => fs.rmSync(opened, { force: true }));
  const holder = sh(`exec 3<${h.mnt}/held; touch ${opened}; sleep 4`);
  for (let i = 0; i < 200 && !fs.existsSync(opened); i++) await new Promise((r) => setTimeout(r, 25));
  const busy = await h.cmd({ cmd: 'tryUnmount' });
  t.is(busy.code, 'EBUSY', JSON.stringify(busy));
  await holder;
  const s0 = await h.cmd({ cmd: 'stats' });
  t.false(s0.ended);
  t.is((await sh(`fusermount3 -u ${h.mnt}`)).code, 0);
  let s = s0;
  for (let i = 0; i < 50 && !s.ended; i++) {
    await new Promise((r) => setTimeout(r, 100));
    s = await h.cmd({ cmd: 'stats' });
  }
  t.true(s.ended, 'the session saw the kernel side go');
  // reader 'poll' has no reader thread: the JS thread read the requests
  t.is(s.proc.threads, s0.proc.threads - (process.env.CMLL_READER === 'poll' ? 0 : 1), 'its reader thread is gone');
  t.is(s.proc.fds, s0.proc.fds - 1, 'and /dev/fuse is closed');
});

run('a handler that throws answers EIO; a second reply is refused and harmless', async (t) => {
  const h = await startMemfs(t);
  t.regex((await sh(`stat ${h.mnt}/boom`)).err, /Input\/output error/);
  t.regex((await sh(`stat ${h.mnt}/twice`)).err, /Permission denied/);
  const s = await h.cmd({ cmd: 'stats' });
  t.is(s.handlerErrors, 1);
  t.is(s.secondRepliesRefused, 1);
  t.is(s.pending, 0);
  t.is((await sh(`echo ok > ${h.mnt}/after && cat ${h.mnt}/after`)).out, 'ok\n');
});

const mountedNow = (mnt: string) => fs.readFileSync('/proc/self/mounts', 'utf8').includes(` ${mnt} `);

run('process.exit() without unmount leaves no mount behind; SIGKILL neither with autoUnmount', async (t) => {
  const a = await startMemfs(t);
  const exited = new Promise((r) => a.child.once('exit', r));
  a.child.stdin!.write(JSON.stringify({ cmd: 'exit' }) + '\n');
  t.is(await exited, 3);
  // the exit hook's unmount may reach /proc/mounts a moment after the exit (a loaded machine: one
  // CI run under the full suite still saw a mount here after 3 s; which of the two asserts failed
  // was not said then)
  let waited = 0;
  for (; waited < 100 && mountedNow(a.mnt); waited++) await new Promise((r) => setTimeout(r, 100));
  t.false(mountedNow(a.mnt), `the exit hook's unmount: still mounted after ${waited / 10} s`);
  if (waited > 10) t.log(`the exit hook's unmount showed after ${waited / 10} s`);
  const b = await startMemfs(t, { mount: { autoUnmount: true } });
  t.true(mountedNow(b.mnt));
  const killed = new Promise((r) => b.child.once('exit', r));
  b.child.kill('SIGKILL');
  await killed;
  // fusermount3's auto_unmount helper sees /dev/fuse close and unmounts: bounded, not instant
  waited = 0;
  for (; waited < 150 && mountedNow(b.mnt); waited++) await new Promise((r) => setTimeout(r, 100));
  if (mountedNow(b.mnt)) {
    // libfuse's own helper, not ours: under load (4 busy loops on 2 cores) fusermount3 exited
    // without unmounting in 5 of 25 SIGKILLs (native-notes/lowlevel.md). The drive does not use
    // auto_unmount (a dead mount is cut at the next mount); a helper still alive and not
    // unmounting would be a failure of ours to understand, so only its absence is tolerated.
    const helper = (await sh(`pgrep -f '[f]usermount3 .*auto_unmount.* -- ${b.mnt}$'`)).out.trim();
    t.is(helper, '', `auto_unmount after SIGKILL: still mounted after ${waited / 10} s with its fusermount3 helper alive`);
    t.log(`fusermount3's auto_unmount helper exited without unmounting ${b.mnt} (upstream, under load)`);
  } else if (waited > 30) t.log(`auto_unmount after SIGKILL showed after ${waited / 10} s`);
});

run('a mount that cannot happen says why (libfuse\'s own message)', async (t) => {
  // nothing gets mounted here, so doing it in the test process is safe
  await t.throwsAsync(LowLevelSession.mount('/nonexistent/cmll', {}), { message: /failed to access mountpoint \/nonexistent\/cmll/ });
  const dir = tmpMountpoint('bad');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await t.throwsAsync(LowLevelSession.mount(dir, {}, { extraOptions: ['bogus_option'] }), { message: /unknown option\(s\): `-o bogus_option'/ });
});

run('a folder\'s attributes handed over with a change answer the GETATTR after it natively, until the kernel is told the folder changed', async (t) => {
  const h = await startMemfs(t, { fs: { dirAttrs: {} } });
  await h.cmd({ cmd: 'mk', name: 'd', mode: 0o040755 });
  await h.cmd({ cmd: 'reset' });
  const hits = async () => (await h.cmd({ cmd: 'stats' })).native.attrSlotHits ?? 0;
  const hits0 = await hits();
  // each create drops the folder's attributes in the kernel; the stat that follows is ours
  const r = await sh(`for i in $(seq 1 30); do : > ${h.mnt}/d/f$i; stat -c '%a %h' ${h.mnt}/d > /dev/null; done; stat -c '%a' ${h.mnt}/d`);
  t.is(r.code, 0, r.err);
  t.is(r.out.trim(), '755');
  const s = await h.cmd({ cmd: 'stats' });
  // (most: a stat whose entry of d expired on a slow run gets the attributes with the LOOKUP)
  t.true(s.native.attrSlotHits - hits0 >= 15, `hits ${s.native.attrSlotHits - hits0}`);
  // (a few where the 1 s entry of d expired on a slow run)
  t.true((s.counts.getattr ?? 0) < 10, `getattr reaching JS: ${s.counts.getattr}`);
  // a change the kernel did not make, then told (notify_inval_inode): the slot goes with the
  // kernel's copy, the next stat is memfs's
  t.is((await sh(`: > ${h.mnt}/d/g`)).code, 0);
  await h.cmd({ cmd: 'chmod', path: '/d', mode: 0o711 });
  await h.cmd({ cmd: 'invalInode', path: '/d' });
  t.is((await sh(`stat -c %a ${h.mnt}/d`)).out.trim(), '711');
  // a rename between two folders hands over both; an unlink whose folder is another's too
  await h.cmd({ cmd: 'mk', name: 'e', mode: 0o040750 });
  const h1 = await hits();
  const mv = await sh(`mv ${h.mnt}/d/f1 ${h.mnt}/e/f1 && : > ${h.mnt}/d/h && stat -c %a ${h.mnt}/d && : > ${h.mnt}/e/i && stat -c %a ${h.mnt}/e`);
  t.is(mv.out.trim().split('\n').join(' '), '711 750', mv.err);
  t.true(await hits() > h1);
  await h.close();

  // A slow answer: the create takes its ticket and the folder's attributes, then waits 600 ms; a
  // chmod of the folder sent meanwhile waits for it in the kernel (a folder's changes hold its
  // inode lock), and its own answer is what stat shows after both.
  const slow = await startMemfs(t, { fs: { dirAttrs: { holdMs: 600 } } });
  await slow.cmd({ cmd: 'mk', name: 'd', mode: 0o040755 });
  const race = await sh(`(: > ${slow.mnt}/d/x) & sleep 0.2; chmod 700 ${slow.mnt}/d; wait; stat -c %a ${slow.mnt}/d; : > ${slow.mnt}/d/y; stat -c %a ${slow.mnt}/d`);
  t.is(race.code, 0, race.err);
  t.is(race.out.trim().split('\n').join(' '), '700 700');
});

run('spinning happens right after requests only: an idle mount neither spins nor uses CPU', async (t) => {
  const h = await startMemfs(t, { mount: { reader: 'poll', spinUs: 200 } });
  const r = await sh(`for i in $(seq 1 50); do echo x > ${h.mnt}/f$i; cat ${h.mnt}/f$i >/dev/null; done`);
  t.is(r.code, 0, r.err);
  const requests = (x: Record<string, any>) => Object.values(x.native.received as Record<string, number>).reduce((m, n) => m + n, 0);
  // The baseline is taken once the mount is quiet: two snapshots 50 ms apart with no request and
  // no spin between them. A snapshot taken right after the loop's last request (within the 2 ms
  // window) was followed by that request's own spin, counted against the idle time (one fresh
  // checkout's run: 1188 spins against 1187).
  let a = await h.cmd({ cmd: 'stats' });
  for (let i = 0; i < 50; i++) {
    await new Promise((res) => setTimeout(res, 50));
    const next = await h.cmd({ cmd: 'stats' });
    const settled = requests(next) === requests(a) && next.native.spins === a.native.spins;
    a = next;
    if (settled) break;
  }
  t.true(a.native.spins > 0, JSON.stringify(a.native));
  t.true(a.native.spinHits > 0, 'a spin that saw the next request come');
  t.is(a.native.threads, 0, 'poll: no reader thread');
  const cpu = () => {
    const f = fs.readFileSync(`/proc/${h.child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(f[11]) + Number(f[12]); // utime + stime, clock ticks
  };
  const c0 = cpu();
  await new Promise((res) => setTimeout(res, 1500));
  const b = await h.cmd({ cmd: 'stats' });
  const used = cpu() - c0;
  // the kernel may still send a request of the loop late (a RELEASE, a FORGET: one CI run saw
  // a spin here): spins follow requests only, a few loop turns each within the 2 ms window
  const late = requests(b) - requests(a);
  if (late === 0) t.is(b.native.spins, a.native.spins, 'no spin without requests');
  else t.true(b.native.spins - a.native.spins <= 20 * late, `${b.native.spins - a.native.spins} spins after ${late} late requests`);
  // 1.5 s idle: a spinning loop would use ~150 ticks; a few are the stats command's own work
  t.true(used <= 10, `${used} clock ticks of CPU while idle`);
});
