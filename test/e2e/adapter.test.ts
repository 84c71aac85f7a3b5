// The translation layer without a kernel: errno table, stat/statfs encoding, the adapter's
// callback shapes, its EIO bound and its single answer per op. (The mounts in the other files
// of this folder exercise the same code end to end.)
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import { createOps, nameTooLong, toStat, toStatfs } from '../../src/fuse/adapter.js';
import { errno, errnoName, toErrno } from '../../src/fuse/errno.js';
import * as E from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import type { Attr, VfsApi } from '../../src/vfs/api.js';

const N = os.constants.errno;

test('errno table: every typed error the vfs and clients throw', (t) => {
  const cases: Array<[unknown, number]> = [
    [new E.NotFound(), N.ENOENT], [new E.AlreadyExists(), N.EEXIST],
    [new E.NotEmpty(), N.ENOTEMPTY], [new E.IsADirectory(), N.EISDIR], [new E.NotADirectory(), N.ENOTDIR],
    [new E.PolicyFileTooLarge(), N.EFBIG], [new E.PolicyExcludedExtension(), N.EPERM], [new E.QuotaExceeded(), N.EDQUOT],
    [new E.ReadOnly(), N.EROFS], [new E.NoSpace(), N.ENOSPC], [new E.Unsupported(), N.ENOTSUP], [new E.NoXattr(), N.ENODATA],
    [new E.InvalidName('bad'), N.EINVAL], [new E.InvalidName('name too long'), N.ENAMETOOLONG],
    [new E.InvalidName('bad', { path: '/d/' + 'x'.repeat(300) }), N.ENAMETOOLONG],
    [new E.Unauthorized(), N.EACCES], [new E.AuthFailed(), N.EACCES], [new E.Forbidden(), N.EACCES],
    [new E.Timeout(), N.EIO], [new E.NetworkError(), N.EIO], [new E.ServerError(), N.EIO], [new E.BadResponse(), N.EIO],
    [new E.ServiceUnavailable(), N.EIO], [new E.RateLimited(), N.EIO], [new E.TransferFailed(), N.EIO],
    [new E.Cancelled(), N.EINTR], [new E.CrossDevice(), N.EXDEV], [new E.BadRequest(), N.EINVAL],
    [Object.assign(new Error('disk full'), { code: 'ENOSPC' }), N.ENOSPC],
    [Object.assign(new Error('x'), { code: 'EOPNOTSUPP' }), N.ENOTSUP],
  ];
  for (const [err, want] of cases) t.is(toErrno(err), want, String(err));
});

test('errno table: unknown errors are EIO with one log line per kind, never a throw', (t) => {
  const lines: string[] = [];
  const log = createLogger('warn', (l) => lines.push(l));
  t.is(toErrno(new E.RemoteError('SOMETHING_NEW', 'what'), log, 'read'), N.EIO);
  t.is(toErrno(new E.RemoteError('SOMETHING_NEW', 'again'), log, 'read'), N.EIO);
  t.is(toErrno(undefined, log), N.EIO);
  t.is(toErrno('a string', log), N.EIO);
  t.is(toErrno(new E.RemoteError('GONE', 'x', { status: 404 })), N.ENOENT, 'unknown code, known status');
  // an undocumented status (the hostile-server fuzz meets 402, 418, 301) is the server's failure
  for (const status of [301, 402, 418, 599]) t.is(errnoName(new E.RemoteError(`HTTP_${status}`, 'x', { status })), 'EIO', `HTTP ${status}`);
  t.is(lines.filter((l) => l.includes('SOMETHING_NEW')).length, 1);
});

test('stat and statfs encoding', (t) => {
  const a: Attr = { type: 'file', size: 1000, perm: 0o640, mtimeMs: 5000, ctimeMs: 6000, atimeMs: 7000, nlink: 1 };
  const s = toStat(a, 1234, 99);
  t.is(s.mode, fs.constants.S_IFREG | 0o640);
  t.is(s.uid, 1234);
  t.is(s.gid, 99);
  t.is(s.blocks, 2);
  t.is(s.mtime, 5000);
  t.is(toStat({ ...a, type: 'dir', nlink: 0 }, 0, 0).mode, fs.constants.S_IFDIR | 0o640);
  t.is(toStat({ ...a, type: 'dir', nlink: 0 }, 0, 0).nlink, 2);
  // 1 PiB in 4 KiB blocks does not fit fuse-native's uint32: the block size grows instead.
  const big = toStatfs({ bsize: 4096, frsize: 4096, blocks: 2 ** 38, bfree: 2 ** 37, bavail: 2 ** 37, files: 0, ffree: 0, favail: 0, namemax: 255 });
  t.true(big.blocks <= 0xffffffff);
  t.is(big.blocks * big.frsize, 2 ** 38 * 4096);
  t.is(big.bavail * big.frsize, 2 ** 37 * 4096);
});

test('name length: components over 255 bytes', (t) => {
  t.false(nameTooLong('/a/' + 'x'.repeat(255)));
  t.true(nameTooLong('/a/' + 'x'.repeat(256)));
  t.true(nameTooLong('/' + 'é'.repeat(128)), '256 bytes in 128 characters');
  t.false(nameTooLong(undefined));
});

/** A VfsApi whose every method is a stub the test sets. */
function fakeVfs(over: Partial<VfsApi>): VfsApi {
  return new Proxy(over as VfsApi, {
    get: (o, k) => (o as any)[k] ?? (async () => { throw new E.Unsupported(`no ${String(k)}`); }),
  });
}

const call = (fn: (...a: any[]) => void, ...args: unknown[]) =>
  new Promise<unknown[]>((resolve) => fn(...args, (...r: unknown[]) => resolve(r)));

test('adapter: callback shapes of fuse-native', async (t) => {
  const attr: Attr = { type: 'file', size: 3, perm: 0o644, mtimeMs: 1, ctimeMs: 1, atimeMs: 1, nlink: 1 };
  const vfs = fakeVfs({
    getattr: async (p) => { if (p === '/missing') throw new E.NotFound(); return attr; },
    readdir: async () => [{ name: 'a', attr }, { name: 'b', attr: { ...attr, type: 'dir', perm: 0o755, nlink: 2 } }],
    read: async (_p, _fh, buf) => { buf.write('abc'); return 3; },
    write: async (_p, _fh, _b, len) => len,
    open: async () => 7,
    getxattr: async () => { throw new E.NoXattr(); },
    utimens: async (_p, a, m) => { t.is(a, m); },
  });
  const ops = createOps(vfs, { uid: 1, gid: 2, log: createLogger('error', () => {}), opBoundMs: 1000, longOpBoundMs: 1000 });
  const [e0, st] = await call(ops.getattr!, '/f');
  t.is(e0, 0);
  t.is((st as any).mode, fs.constants.S_IFREG | 0o644);
  t.deepEqual(await call(ops.getattr!, '/missing'), [-N.ENOENT]);
  const [e1, names, stats] = await call(ops.readdir!, '/');
  t.is(e1, 0);
  t.deepEqual(names, ['.', '..', 'a', 'b']);
  t.deepEqual((stats as { mode: number }[]).map((s) => s.mode & fs.constants.S_IFMT), [fs.constants.S_IFDIR, fs.constants.S_IFDIR, fs.constants.S_IFREG, fs.constants.S_IFDIR]);
  const buf = Buffer.alloc(10);
  t.deepEqual(await call(ops.read!, '/f', 7, buf, 10, 0), [3], 'read answers the byte count');
  t.is(buf.subarray(0, 3).toString(), 'abc');
  t.deepEqual(await call(ops.write!, '/f', 7, buf, 10, 0), [10]);
  t.deepEqual(await call(ops.open!, '/f', 0), [0, 7]);
  t.deepEqual(await call(ops.getxattr!, '/f', 'user.x', 0), [-N.ENODATA]);
  t.deepEqual(await call(ops.symlink!, 'a', '/b'), [-N.EPERM]);
  t.deepEqual(await call(ops.mkdir!, '/' + 'x'.repeat(256), 0o755), [-N.ENAMETOOLONG]);
  t.deepEqual(await call(ops.utimens!, '/f', 1073, 1073), [0], 'UTIME_NOW as libfuse 2 encodes it');
  t.deepEqual(await call(ops.chown!, '/missing', 0, 0), [-N.ENOENT]);
});

test('adapter: a vfs call that never settles is answered EIO once, at our bound', async (t) => {
  const vfs = fakeVfs({ getattr: () => new Promise<Attr>(() => {}), fsync: () => new Promise<void>(() => {}) });
  const lines: string[] = [];
  const ops = createOps(vfs, { uid: 0, gid: 0, log: createLogger('warn', (l) => lines.push(l)), opBoundMs: 50, longOpBoundMs: 120 });
  let answers = 0;
  const r = await new Promise<unknown[]>((resolve) => ops.getattr!('/slow', (...a: unknown[]) => { answers++; resolve(a); }));
  t.deepEqual(r, [-errno.EIO]);
  const t0 = Date.now();
  t.deepEqual(await call(ops.fsync!, '/slow', 0, 1), [-errno.EIO]);
  t.true(Date.now() - t0 >= 100, 'long ops get the long bound');
  await new Promise((res) => setTimeout(res, 100));
  t.is(answers, 1);
  t.true(lines.some((l) => l.includes('getattr /slow')));
});

test('adapter: each request gets its own bound (one timer per bound length): answered ones are left alone, a later one is not cut short by an earlier one\'s', async (t) => {
  const vfs = fakeVfs({
    getattr: (p: string) => p === '/quick' ? new Promise<Attr>((r) => setTimeout(() => r({ type: 'file', size: 1, mtimeMs: 0, perm: 0o644 } as Attr), 20)) : new Promise<Attr>(() => {}),
  });
  const ops = createOps(vfs, { uid: 0, gid: 0, log: createLogger('error', () => {}), opBoundMs: 120, longOpBoundMs: 120 });
  const t0 = performance.now();
  const answer = (p: string) => new Promise<{ r: unknown[]; at: number; n: number }>((resolve) => {
    let n = 0;
    ops.getattr!(p, (...a: unknown[]) => { n++; resolve({ r: a, at: performance.now() - t0, n }); });
  });
  const first = answer('/first');
  const quick = answer('/quick');
  await new Promise((r) => setTimeout(r, 60));
  const laterStart = performance.now() - t0;
  const later = answer('/later');
  const [a, q, l] = await Promise.all([first, quick, later]);
  t.deepEqual(a.r, [-errno.EIO]);
  t.true(a.at >= 119, `the first bound ran its length (${a.at} ms)`);
  t.is(q.r[0], 0, 'the answered request got its answer, not EIO');
  t.deepEqual(l.r, [-errno.EIO]);
  t.true(l.at - laterStart >= 119, `the later request had its own whole bound (${l.at - laterStart} ms)`);
  await new Promise((r) => setTimeout(r, 150));
  t.is(a.n + q.n + l.n, 3, 'one answer each');
});

test('adapter: an EIO answer says its cause in the log at warn, a few lines per burst; other errnos do not', async (t) => {
  const vfs = fakeVfs({
    fsync: () => Promise.reject(new E.TransferFailed('rsync failed (exit 23): something', { path: '/f' })),
    unlink: () => Promise.reject(new E.NotFound()),
  });
  const lines: string[] = [];
  const ops = createOps(vfs, { uid: 0, gid: 0, log: createLogger('warn', (l) => lines.push(l)), opBoundMs: 1000, longOpBoundMs: 1000 });
  t.deepEqual(await call(ops.unlink!, '/x'), [-N.ENOENT]);
  t.deepEqual(lines, [], 'ENOENT is an answer, not news');
  for (let i = 0; i < 30; i++) t.deepEqual(await call(ops.fsync!, '/f', 0, 7), [-N.EIO]);
  const eio = lines.filter((l) => /fsync \/f: answered EIO: rsync failed \(exit 23\): something/.test(l));
  t.is(eio.length, 10, 'the first 10 of 30 EIO answers in one window (the count of the rest comes at its end)');
  t.true(lines.every((l) => /WARN/i.test(l)), lines.join('\n'));
});

test('adapter: a vfs method that throws synchronously is an errno, not a crash', async (t) => {
  const vfs = fakeVfs({ unlink: () => { throw new E.NotEmpty(); } });
  const ops = createOps(vfs, { uid: 0, gid: 0, log: createLogger('error', () => {}), opBoundMs: 1000, longOpBoundMs: 1000 });
  t.deepEqual(await call(ops.unlink!, '/x'), [-N.ENOTEMPTY]);
});
