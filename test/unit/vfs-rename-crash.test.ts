// Rename of a file whose upload is pending or in flight, then a crash (the Vfs dropped without
// close) and a replay of the journal on the same cache dir: the new name must hold the last closed
// version and the old name must be gone on the server.
import test from 'ava';
import { copyFileSync, cpSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { bytes, setup, sha256, until, writeFile } from './helpers.js';

test('crash after rename of a file overwritten while its first upload was in flight', async (t) => {
  const s = await setup(t, {}, { writebackDelayMs: 1 });
  const { remote } = s;
  const v1 = bytes(50_000, 1);
  const v2 = bytes(40_000, 2);
  const release = remote.hold('upload');
  await writeFile(s.vfs, '/F.bin', v1);
  await until(() => remote.held('upload') === 1, 'upload of v1 in flight');
  await writeFile(s.vfs, '/F.bin', v2);
  const ren = s.vfs.rename('/F.bin', '/G.bin');
  await new Promise((r) => setTimeout(r, 20));
  release();
  await ren;
  // crash: no close
  const v = await s.reopen({ writebackDelayMs: 0 });
  await v.flushAll();
  t.is(sha256(remote.getFile('/G.bin')!), sha256(v2), 'G holds v2');
  t.false(remote.has('/F.bin'), 'F is gone');
  t.deepEqual(v.status().failures, []);
});

/**
 * A slow disk: the journal's writer stalls until the returned release() (what the Vfs appends
 * meanwhile is queued, not yet written).
 */
function stallJournal(s: Awaited<ReturnType<typeof setup>>): () => void {
  const j = (s.vfs as unknown as { journal: { drainLoop: () => Promise<void> } }).journal;
  const orig = Object.getPrototypeOf(j).drainLoop as () => Promise<void>;
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  j.drainLoop = async function (this: unknown) { await gate; return orig.call(this); };
  return () => { delete (j as { drainLoop?: unknown }).drainLoop; release(); };
}

/**
 * A copy of a folder the drive is still changing: its threadpool may remove a file (a .meta
 * index, a spare cache file) between the listing and the copy; such a file is simply not in the
 * snapshot, as after a kill at that instant. onlyNew: files already in dst stay as they are.
 */
function snapshot(src: string, dst: string, onlyNew = false): void {
  mkdirSync(dst, { recursive: true });
  for (const e of readdirSync(src, { withFileTypes: true })) {
    const from = join(src, e.name);
    const to = join(dst, e.name);
    try {
      if (e.isDirectory()) snapshot(from, to, onlyNew);
      else copyFileSync(from, to, onlyNew ? 1 /* COPYFILE_EXCL */ : 0);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && !(onlyNew && code === 'EEXIST')) throw err;
    }
  }
}

/**
 * The namespace change runs while the upload it waited for finishes and the journal is slow to
 * record that; the kill comes the instant the server applied the change: the journal holds what
 * was written by then (a SIGKILL loses nothing already written, only what was still queued).
 */
async function crashAtServerCall(s: Awaited<ReturnType<typeof setup>>, method: 'move' | 'remove', op: () => Promise<void>, releaseUpload: () => void): Promise<void> {
  const state = join(s.opts.cacheDir, 'acct');
  const snap = join(s.opts.cacheDir, 'at-kill');
  const releaseCall = s.remote.hold(method);
  const done = op();
  await new Promise((r) => setTimeout(r, 20));
  const unstall = stallJournal(s);
  releaseUpload();
  // the server call must not be reached while the record of the finished upload is unwritten
  for (let i = 0; i < 20 && s.remote.held(method) === 0; i++) await new Promise((r) => setTimeout(r, 5));
  if (s.remote.held(method) === 1) snapshot(state, snap);
  unstall();
  await until(() => s.remote.held(method) === 1, `server ${method} reached`);
  if (s.remote.held(method) === 1) snapshot(state, snap, true);
  releaseCall();
  await done;
  // the journal and cache files as they were at that instant
  rmSync(state, { recursive: true, force: true });
  cpSync(snap, state, { recursive: true });
  rmSync(snap, { recursive: true, force: true });
}

test('crash at the server move of a rename whose source upload finished during it', async (t) => {
  const s = await setup(t, {}, { writebackDelayMs: 1 });
  const { remote } = s;
  const v1 = bytes(50_000, 3);
  const release = remote.hold('upload');
  await writeFile(s.vfs, '/F.bin', v1);
  await until(() => remote.held('upload') === 1, 'upload of v1 in flight');
  await crashAtServerCall(s, 'move', () => s.vfs.rename('/F.bin', '/G.bin'), release);
  const v = await s.reopen({ writebackDelayMs: 0 });
  await v.flushAll();
  t.is(sha256(remote.getFile('/G.bin')!), sha256(v1), 'G holds v1');
  t.false(remote.has('/F.bin'), 'F is gone, not resurrected by a replay of its finished upload');
  t.deepEqual(v.status().failures, []);
});

test('crash at the server move of a rename onto a file whose own upload finished during it', async (t) => {
  const s = await setup(t, {}, { writebackDelayMs: 1 });
  const { remote } = s;
  const src = bytes(60_000, 7);
  const old = bytes(20_000, 8);
  await writeFile(s.vfs, '/F.bin', src);
  await s.vfs.flushAll();
  const release = remote.hold('upload');
  await writeFile(s.vfs, '/G.bin', old);
  await until(() => remote.held('upload') === 1, 'upload of the old target in flight');
  await crashAtServerCall(s, 'move', () => s.vfs.rename('/F.bin', '/G.bin'), release);
  const v = await s.reopen({ writebackDelayMs: 0 });
  await v.flushAll();
  t.is(sha256(remote.getFile('/G.bin')!), sha256(src), 'G holds the renamed content, not the replaced file replayed over it');
  t.false(remote.has('/F.bin'), 'F is gone');
  t.deepEqual(v.status().failures, []);
});

test('crash at the server delete of a file whose upload finished just before', async (t) => {
  const s = await setup(t, {}, { writebackDelayMs: 1 });
  const { remote } = s;
  const release = remote.hold('upload');
  await writeFile(s.vfs, '/D.bin', bytes(10_000, 9));
  await until(() => remote.held('upload') === 1, 'upload in flight');
  await crashAtServerCall(s, 'remove', () => s.vfs.unlink('/D.bin'), release);
  const v = await s.reopen({ writebackDelayMs: 0 });
  await v.flushAll();
  t.false(remote.has('/D.bin'), 'deleted file not resurrected');
  t.deepEqual(v.status().failures, []);
});

test('crash after rename of a file overwritten (v2 pending) whose v1 was uploaded', async (t) => {
  const s = await setup(t, {}, { writebackDelayMs: 1 });
  const { remote } = s;
  const v1 = bytes(50_000, 5);
  const v2 = bytes(30_000, 6);
  await writeFile(s.vfs, '/F.bin', v1);
  await s.vfs.flushAll();
  t.is(sha256(remote.getFile('/F.bin')!), sha256(v1));
  const release = remote.hold('upload');
  await writeFile(s.vfs, '/F.bin', v2);
  await until(() => remote.held('upload') === 1, 'upload of v2 in flight');
  const ren = s.vfs.rename('/F.bin', '/G.bin');
  await new Promise((r) => setTimeout(r, 20));
  release();
  await ren;
  const v = await s.reopen({ writebackDelayMs: 0 });
  await v.flushAll();
  t.is(sha256(remote.getFile('/G.bin')!), sha256(v2), 'G holds v2');
  t.false(remote.has('/F.bin'), 'F is gone');
  t.deepEqual(v.status().failures, []);
});
