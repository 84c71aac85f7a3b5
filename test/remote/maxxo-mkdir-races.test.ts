// Mkdir write-back (vfs/namespace/mkdirs.ts) and the caches around it, through the vfs on a Maxxo
// remote against the reference server and its rsync daemon, no FUSE: what the model soak seeds
// 810107 and 810065 found on the first merge of mkdir write-back, step by step.
import test, { type ExecutionContext } from 'ava';
import { constants, mkdtempSync, mkdirSync, rmSync, existsSync, lstatSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import { createMaxxoUser, maxxoUserFolder } from '../../src/emulator/maxxo/index.js';
import { createMaxxoRemote, type MaxxoRemote } from '../../src/remote/maxxo/index.js';
import { Vfs, defaultVfsOptions } from '../../src/vfs/vfs.js';
import type { VfsOptions } from '../../src/vfs/api.js';
import { createLogger } from '../../src/log.js';

const { O_RDWR, O_WRONLY, O_CREAT, O_TRUNC, O_APPEND } = constants;

let emu: Emulator;
let n = 0;
const tmp = mkdtempSync(join(tmpdir(), 'cm-maxxo-mkraces-'));

test.before(async () => { emu = await startEmulator({ demo: false }); });
test.after.always(async () => { await emu?.close(); rmSync(tmp, { recursive: true, force: true }); });

function account(): { remote: MaxxoRemote; folder: string } {
  const email = `mk${process.pid}-${++n}@maxxo.test`;
  const password = `pw-${n}-mkraces`;
  createMaxxoUser(emu.ctx, { email, password });
  const remote = createMaxxoRemote({ server: emu.url, user: email, password, maxAttempts: 3 });
  return { remote, folder: maxxoUserFolder(emu.ctx, email) };
}

async function makeVfs(t: ExecutionContext, remote: MaxxoRemote, opts: Partial<VfsOptions> = {}): Promise<Vfs> {
  const cacheDir = mkdtempSync(join(tmp, 'cache-'));
  const vfs = new Vfs(remote, {
    ...defaultVfsOptions('mkraces'), cacheDir, writebackDelayMs: 100, uploadBackoffMs: 1, uploadAttempts: 3, opTimeoutMs: 60_000,
    log: createLogger(process.env.MKRACES_LOG ? 'debug' : 'error', process.env.MKRACES_LOG ? (l) => process.stderr.write(l + '\n') : () => {}),
    ...opts,
  });
  await vfs.start();
  t.teardown(async () => { await vfs.close({ force: true }).catch(() => {}); remote.close(); });
  return vfs;
}

const pattern = (len: number, seed: number) => Buffer.from(Array.from({ length: len }, (_, i) => (seed + i * 7) & 0xff));

async function writeAll(vfs: Vfs, path: string, data: Buffer, flags = O_WRONLY | O_CREAT | O_TRUNC): Promise<void> {
  const fh = await vfs.create(path, 0o644, flags);
  try {
    if (data.length) await vfs.write(path, fh, data, data.length, 0);
    await vfs.flush(path, fh);
  } finally {
    await vfs.release(path, fh);
  }
}

function serverKind(folder: string, path: string): 'file' | 'dir' | null {
  const f = join(folder, path);
  return existsSync(f) ? (lstatSync(f).isDirectory() ? 'dir' : 'file') : null;
}

// seed 810107 (process p2): a file open for writing is moved into a folder not made yet, uploaded
// there (its upload carries the folder), then another file is renamed over it and moved away;
// the open handle must keep the file's content and take writes.
// 'uploaded': the mkdirs wait for the rename, the file's upload (which carries its folder) ends
// before it, the order in which the soak failed; else plain pauses between the steps.
for (const pause of ['uploaded', 0, 150, 400] as const) {
  test(`a file open for writing, moved into a pending folder and replaced there, keeps its content (${pause === 'uploaded' ? 'uploaded first' : `pauses ${pause} ms`})`, async (t) => {
    const { remote, folder } = account();
    const vfs = await makeVfs(t, remote, pause === 'uploaded' ? { mkdirIdleMs: 600_000, mkdirMaxDelayMs: 600_000 } : {});
    const wait = async () => {
      if (pause !== 'uploaded') return new Promise((r) => setTimeout(r, pause));
      for (let i = 0; i < 600; i++) {
        const st = vfs.status();
        if (st.pending === (st.pendingMkdirs ?? 0) + (st.pendingAttrs ?? 0)) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`the uploads did not end: ${JSON.stringify(vfs.status())}`);
    };
    // (the harness makes the process folders right before the ops: still pending)
    await vfs.mkdir('/p2', 0o755);
    const h1 = await vfs.open('/p2/f.txt', O_WRONLY | O_CREAT | O_APPEND);
    await vfs.mkdir('/p2/g.txt', 0o755);
    await vfs.truncate('/p2/f.txt', 25700);
    const h2 = await vfs.open('/p2/f.txt', O_RDWR);
    await vfs.truncate('/p2/f.txt', 2625);
    await wait();
    if (pause === 'uploaded') t.is(vfs.status().pendingMkdirs, 2, 'the folders wait for the rename');
    await vfs.rename('/p2/f.txt', '/p2/g.txt/a');
    const h3 = await vfs.open('/p2/g.txt/a', O_RDWR);
    await vfs.fsync('/p2/g.txt/a', h3, false);
    await vfs.release('/p2/g.txt/a', h3);
    await wait();
    await writeAll(vfs, '/p2/g.txt/a.tmp', pattern(7546, 3));
    await vfs.rename('/p2/g.txt/a.tmp', '/p2/g.txt/a');
    await vfs.rename('/p2/g.txt/a', '/p2/b');
    t.deepEqual((await vfs.readdir('/p2/g.txt')).map((e) => e.name).filter((x) => x !== '.' && x !== '..'), []);
    t.deepEqual((await vfs.readdir('/p2')).map((e) => e.name).filter((x) => x !== '.' && x !== '..').sort(), ['b', 'g.txt']);
    const tail = pattern(84, 9);
    t.is(await vfs.write('/p2/g.txt/a', h2, tail, tail.length, 14903), 84);
    const back = Buffer.alloc(20_000);
    const got = await vfs.read('/p2/g.txt/a', h2, back, back.length, 0);
    t.is(got, 14903 + 84);
    t.true(back.subarray(0, 14903).equals(Buffer.alloc(14903)), 'the replaced file still holds its zeros');
    t.true(back.subarray(14903, got).equals(tail));
    await vfs.release('/p2/g.txt/a', h2);
    await vfs.release('/p2/g.txt/a', h1);
    await vfs.flushAll();
    t.deepEqual(readFileSync(join(folder, 'p2/b')), pattern(7546, 3));
    t.is(serverKind(folder, 'p2/g.txt'), 'dir');
    t.is(serverKind(folder, 'p2/g.txt/a'), null);
  });
}

/** The working folders of this process's rsync children under its private stages (push.ts). */
function childFolders(): string[] {
  const out: string[] = [];
  for (const stage of readdirSync(tmpdir()).filter((n) => n.startsWith(`cloudmount-up-${process.pid}-`))) {
    for (const d of readdirSync(join(tmpdir(), stage)).filter((n) => n.startsWith('.rsync-run-'))) out.push(join(tmpdir(), stage, d));
  }
  return out;
}

test.serial('mkdirMany: later runs of a burst take rsync children started ahead; hostile names made exactly; no skeleton left behind', async (t) => {
  const { remote, folder } = account();
  t.teardown(() => remote.close());
  const names = ['/w a', '/w a/-x [1] *', '/w a/new\nline', '/w a/ü €'];
  t.deepEqual(await remote.batchMkdir!.mkdirMany(names, {}), names.map(() => undefined));
  for (const p of names) t.is(serverKind(folder, p), 'dir', p);
  const warm = remote.counters().warmRuns!;
  // a burst: each run after the first finds a child connected and waiting for its list
  for (let i = 0; i < 4; i++) {
    t.deepEqual(await remote.batchMkdir!.mkdirMany([`/b${i}`, `/b${i}/c`], {}), [undefined, undefined]);
    await new Promise((r) => setTimeout(r, 30));
  }
  for (let i = 0; i < 4; i++) t.is(serverKind(folder, `/b${i}/c`), 'dir');
  t.true(remote.counters().warmRuns! - warm >= 2, `${remote.counters().warmRuns! - warm} of 4 runs took a started child`);
  // the children waiting hold empty folders; the runs' skeletons are gone
  for (const d of childFolders()) t.deepEqual(readdirSync(d), [], d);
  await remote.close();
  t.deepEqual(childFolders(), [], 'closed: no working folder left');
});

test('a folder an upload carried before its mkdir went is not taken for empty: the file in it keeps its mtime for revalidation', async (t) => {
  const { remote, folder } = account();
  t.teardown(() => remote.close());
  const src = join(tmp, `src-${n}`);
  writeFileSync(src, 'carried');
  const mtimeMs = Date.UTC(2025, 0, 2, 3, 4, 5);
  // an upload into a folder not on the server makes it (as a drive's upload into a pending folder)
  const e = await remote.upload(src, '/carry/f', { mtimeMs });
  t.is(serverKind(folder, 'carry'), 'dir');
  t.deepEqual(await remote.batchMkdir!.mkdirMany(['/carry', '/carry/new']), [undefined, undefined]);
  t.is(serverKind(folder, 'carry/new'), 'dir');
  const fresh = await remote.revalidation!.revalidate('/carry/f', { ...e, mtimeMs: undefined }, 60_000);
  t.is(fresh.mtimeMs, mtimeMs, 'the listing of the folder knows the file');
  t.is(fresh.size, 7);
  // the folder the call made itself is known empty (no listing run for it)
  const runs = remote.counters().rsyncRuns ?? 0;
  t.deepEqual((await remote.list('/carry/new')).entries, []);
  t.is(remote.counters().rsyncRuns ?? 0, runs);
});

// seed 810065 (process p1): a folder removed while a listing of it, started earlier, was asked
// again (another folder's rename or removal meanwhile: every listing in flight may predate it);
// that listing landed after the rmdir, while the folder's delete was still waiting, and the
// folder was shown again once the delete went: a file renamed onto its name answered EISDIR.
test('a listing of a folder that lands after its rmdir does not bring the folder back', async (t) => {
  const { remote, folder } = account();
  const vfs = await makeVfs(t, remote, { deleteIdleMs: 600_000, deleteMaxDelayMs: 600_000 });
  // made on the server by another client: a listing of them costs a daemon run (for mtimes)
  mkdirSync(join(folder, 'p1/a'), { recursive: true });
  mkdirSync(join(folder, 'p1/x'));
  t.is((await vfs.getattr('/p1/a')).type, 'dir');
  const early = vfs.readdir('/p1/a');
  // another folder renamed meanwhile (any folder: the tree generation): the listing is asked again
  await vfs.rename('/p1/x', '/p1/y');
  await vfs.rmdir('/p1/a');
  await early.catch(() => {});
  await new Promise((r) => setTimeout(r, 300));
  await vfs.deletesSent();
  t.is(serverKind(folder, 'p1/a'), null);
  await t.throwsAsync(vfs.getattr('/p1/a'), { code: 'NOT_FOUND' } as never);
  await writeAll(vfs, '/p1/a.tmp', pattern(12310, 5));
  await vfs.rename('/p1/a.tmp', '/p1/a');
  await vfs.flushAll();
  t.deepEqual(readFileSync(join(folder, 'p1/a')), pattern(12310, 5));
});

test('a file moved from a folder never listed into a listed one keeps its mtime for revalidation', async (t) => {
  const { remote, folder } = account();
  t.teardown(() => remote.close());
  const src = join(tmp, `src-${n}`);
  writeFileSync(src, 'moved');
  const mtimeMs = Date.UTC(2025, 1, 2, 3, 4, 5);
  const e = await remote.upload(src, '/u/f', { mtimeMs });
  mkdirSync(join(folder, 'v'));
  // the target folder's daemon listing is cached (the source folder's never was)
  t.deepEqual((await remote.list('/v')).entries, []);
  await remote.move('/u/f', '/v/f');
  const fresh = await remote.revalidation!.revalidate('/v/f', { ...e, name: 'f' }, 60_000);
  t.is(fresh.mtimeMs, mtimeMs, 'not "no such row": the drive would drop the cached bytes of the moved file');
});
