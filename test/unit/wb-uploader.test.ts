// The uploader's state machine (src/vfs/writeback/state.ts) against a fake remote, a fake journal
// and fake content/metadata ports: no Vfs, no MemoryRemote.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import { join } from 'node:path';
import { PolicyFileTooLarge, ServiceUnavailable } from '../../src/errors.js';
import type { Remote, RemoteEntry, TransferOptions, CallOptions } from '../../src/remote/types.js';
import { Ctx } from '../../src/vfs/context.js';
import { Obj } from '../../src/vfs/content/obj.js';
import type { PendingUpload } from '../../src/vfs/journal.js';
import { Barriers } from '../../src/vfs/namespace/barriers.js';
import { defaultVfsOptions, resolveOptions } from '../../src/vfs/options.js';
import { Uploader } from '../../src/vfs/writeback/uploader.js';
import type { VfsOptions } from '../../src/vfs/api.js';
import { quietLog, tempDir } from './helpers.js';
import { sleep, until } from '../support/wait.js';

interface Gate { wait: Promise<void>; open: () => void }
function gate(): Gate {
  let open!: () => void;
  const wait = new Promise<void>((r) => { open = r; });
  return { wait, open };
}

/** A remote that records uploads; each behaviour can be replaced per test. */
class FakeRemote {
  readonly kind = 'memory' as const;
  readonly uploads: { path: string; body: string }[] = [];
  uploadCalls = 0;
  /** Runs before an upload is recorded (block or throw here). */
  beforeUpload: (path: string, opts?: TransferOptions) => Promise<void> = async () => {};
  checkUpload?: (path: string, size: number, opts?: CallOptions) => Promise<void>;
  async upload(localFile: string, path: string, opts?: TransferOptions): Promise<RemoteEntry> {
    this.uploadCalls++;
    opts?.onSend?.();
    await this.beforeUpload(path, opts);
    const body = fs.readFileSync(localFile, 'utf8');
    this.uploads.push({ path, body });
    return { name: path.slice(path.lastIndexOf('/') + 1), type: 'file', size: body.length, mtimeMs: 1000 + this.uploads.length };
  }
  async stat(path: string): Promise<RemoteEntry | null> {
    return { name: path.slice(path.lastIndexOf('/') + 1), type: 'dir', size: 0 };
  }
}

class FakeJournal {
  readonly records: PendingUpload[] = [];
  readonly done: string[] = [];
  canInline(size: number): boolean { return size <= 64 * 1024; }
  async upload(p: PendingUpload): Promise<void> { this.records.push(p); }
  async doneUid(uid: string): Promise<void> { this.done.push(uid); }
}

function setup(t: ExecutionContext, over: Partial<VfsOptions> = {}) {
  const dir = tempDir(t, 'cm-wb-');
  const remote = new FakeRemote();
  const ctx = new Ctx(remote as unknown as Remote, resolveOptions({
    ...defaultVfsOptions('t'), cacheDir: dir, log: quietLog(), uploadAttempts: 2, uploadBackoffMs: 1, writebackDelayMs: 60_000, opTimeoutMs: 5000,
    ...over,
  }));
  const journal = new FakeJournal();
  const parentsSet: string[] = [];
  const barriers = new Barriers();
  const uploader = new Uploader(ctx, {
    canInline: (n) => journal.canInline(n), upload: (p) => journal.upload(p), done: (u) => journal.doneUid(u),
    cancel: async () => {}, rename: async () => {}, forPath: () => undefined,
  },
    { file: (o) => join(dir, o.id), markLocal: () => {}, afterRelease: () => {} },
    { setInParent: (p) => { parentsSet.push(p); }, dropListing: () => {} },
    barriers);
  const objs: Obj[] = [];
  t.teardown(async () => {
    ctx.closed = true;
    await uploader.shutdown(objs);
    for (const o of objs) if (o.fd >= 0) fs.closeSync(o.fd);
  });
  /** A local file with content (modified, not closed yet). */
  function file(path: string, content: string): Obj {
    const o = new Obj('f' + objs.length, path, 0, false);
    o.fd = fs.openSync(join(dir, o.id), 'w+');
    objs.push(o);
    write(o, content);
    return o;
  }
  function write(o: Obj, content: string): void {
    fs.ftruncateSync(o.fd, 0);
    fs.writeSync(o.fd, content, 0);
    o.size = Buffer.byteLength(content);
    o.ranges.clear();
    o.ranges.add(0, o.size);
    o.gen++;
  }
  return { remote, journal, uploader, barriers, parentsSet, file, write, ctx };
}

test('commit records the snapshot; the upload completes exactly that record', async (t) => {
  const { remote, journal, uploader, parentsSet, file } = setup(t);
  const o = file('/a.txt', 'hello');
  t.is(o.wb.phase(o.gen), 'modified');
  await uploader.commit(o);
  t.is(o.wb.phase(o.gen), 'recorded');
  t.is(journal.records.length, 1);
  const rec = journal.records[0]!;
  t.like(rec, { path: '/a.txt', id: o.id, size: 5 });
  t.is(rec.data?.toString(), 'hello', 'a small file travels inside its record');
  t.is(o.wb.pendingUid, rec.uid);
  await uploader.uploadUntilClean(o);
  t.deepEqual(remote.uploads, [{ path: '/a.txt', body: 'hello' }]);
  t.deepEqual(journal.done, [rec.uid]);
  t.is(o.wb.phase(o.gen), 'clean');
  t.true(o.wb.onServer);
  t.false(o.dirty);
  t.deepEqual(parentsSet, ['/a.txt']);
});

test('newer content closed while the upload is sending: the confirmed generation moves, the new record stays pending', async (t) => {
  const { remote, journal, uploader, file, write } = setup(t);
  const o = file('/b.txt', 'one');
  await uploader.commit(o);
  const g = gate();
  remote.beforeUpload = () => g.wait;
  uploader.schedule(o, 0);
  t.is(o.wb.phase(o.gen), 'scheduled');
  await until(() => remote.uploadCalls === 1, 'the upload');
  t.is(o.wb.phase(o.gen), 'sending');
  write(o, 'two');
  await uploader.commit(o);
  const r2 = journal.records[1];
  t.is(o.wb.pendingUid, r2!.uid);
  g.open();
  await o.wb.uploading;
  // the journal keeps one record per path: the newer record replaced r1, so nothing is completed
  // (completing r1 would be a no-op at best); the confirmed generation is r1's
  t.deepEqual(journal.done, []);
  t.is(o.wb.uploadedGen, 1);
  t.is(o.wb.journaledGen, 2);
  t.is(o.wb.pendingUid, r2!.uid);
  t.true(o.dirty);
  t.is(o.wb.phase(o.gen), 'scheduled', 'the newer content goes after its own delay');
  await uploader.stop(o);
  t.is(o.wb.phase(o.gen), 'recorded');
});

test('a namespace barrier parks the task: nothing is sent until it is lifted', async (t) => {
  const { remote, uploader, barriers, file } = setup(t);
  const o = file('/d/c.txt', 'parked');
  await uploader.commit(o);
  await barriers.run(['/d'], async () => {
    uploader.schedule(o, 0);
    await until(() => o.wb.parked, 'the task to park');
    t.is(o.wb.phase(o.gen), 'parked');
    await sleep(20);
    t.is(remote.uploadCalls, 0);
    // stop() of a parked task does not wait for it (it waits for our own barrier: a deadlock)
    await uploader.stop(o);
  });
  // lifted: the task goes on at the state the namespace change left (here: the same path)
  await o.wb.uploading;
  t.deepEqual(remote.uploads, [{ path: '/d/c.txt', body: 'parked' }]);
  t.is(o.wb.phase(o.gen), 'clean');
});

test('stop() aborts a task that has sent nothing and waits for one that is sending', async (t) => {
  const { remote, uploader, file } = setup(t);
  const o = file('/e.txt', 'x');
  await uploader.commit(o);
  // (a) held in the policy check: aborted, nothing sent, still pending
  let checks = 0;
  remote.checkUpload = (_p, _n, opts) => new Promise((_, reject) => {
    checks++;
    opts?.signal?.addEventListener('abort', () => reject(opts.signal!.reason), { once: true });
  });
  uploader.schedule(o, 0);
  await until(() => checks === 1, 'the policy check');
  t.is(o.wb.phase(o.gen), 'running');
  await uploader.stop(o);
  t.is(remote.uploadCalls, 0);
  t.not(o.wb.pendingUid, null);
  t.is(o.wb.uploading, null);
  // (b) sending: stop waits until the server answered
  remote.checkUpload = undefined;
  const g = gate();
  remote.beforeUpload = () => g.wait;
  uploader.schedule(o, 0);
  await until(() => remote.uploadCalls === 1, 'the upload');
  let stopped = false;
  const stopping = uploader.stop(o).then(() => { stopped = true; });
  await sleep(30);
  t.false(stopped, 'a sending upload is waited for, never aborted');
  g.open();
  await stopping;
  t.deepEqual(remote.uploads, [{ path: '/e.txt', body: 'x' }]);
});

test('retryable failures: backoff between attempts, then failed, reported and tried again later', async (t) => {
  const { remote, uploader, file } = setup(t, { uploadAttempts: 2, uploadBackoffMs: 200 });
  const o = file('/f.txt', 'retry');
  await uploader.commit(o);
  remote.beforeUpload = async () => { throw new ServiceUnavailable('down'); };
  const p = uploader.uploadUntilClean(o);
  p.catch(() => {});
  await until(() => remote.uploadCalls === 1, 'the first attempt');
  await sleep(40);
  t.is(o.wb.phase(o.gen), 'backoff');
  await t.throwsAsync(p, { message: /down/ });
  t.is(remote.uploadCalls, 2);
  const f = uploader.failures.get('/f.txt');
  t.like(f, { path: '/f.txt', attempts: 2 });
  t.is(o.wb.failedUid, o.wb.pendingUid);
  t.is(o.wb.phase(o.gen), 'scheduled', 'a transient failure is tried again later');
  t.deepEqual(uploader.stillPending([o]).map((x) => x.path), ['/f.txt']);
  await uploader.stop(o);
  t.is(o.wb.phase(o.gen), 'failed');
  // a flush without retryFailed skips it; with it, it is tried again and succeeds
  remote.beforeUpload = async () => {};
  await uploader.flush([o], false);
  t.is(remote.uploads.length, 0);
  await uploader.flush([o], true);
  t.deepEqual(remote.uploads, [{ path: '/f.txt', body: 'retry' }]);
  t.is(uploader.failures.size, 0);
  t.is(o.wb.phase(o.gen), 'clean');
});

test('a refusal is not retried: failed after one attempt, no retry timer', async (t) => {
  const { remote, uploader, file } = setup(t);
  const o = file('/g.txt', 'too big');
  await uploader.commit(o);
  remote.beforeUpload = async () => { throw new PolicyFileTooLarge('no'); };
  await t.throwsAsync(uploader.uploadUntilClean(o));
  t.is(remote.uploadCalls, 1);
  t.is(o.wb.phase(o.gen), 'failed');
  t.is(o.wb.timer, null);
});
