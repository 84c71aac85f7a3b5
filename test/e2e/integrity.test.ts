// Ordinary program patterns that lost, resurrected or corrupted bytes (issue 10), each checked on
// the mount and again through a fresh mount (new cache, so only what reached the server counts).
import test, { type ExecutionContext } from 'ava';
import fsp from 'node:fs/promises';
import path from 'node:path';
import {
  useServers, mountService, KINDS, uniq, run, sh, errCode, codeOf, eventually, sleep, twin, type Drive, type Kind,
} from './lib/services.js';
import { startHttpFaultProxy } from '../helpers/fault-proxy.js';

const servers = useServers(test);

async function freshAfterFlush(t: ExecutionContext, d: Drive, kind: Kind): Promise<Drive> {
  await d.flush();
  return mountService(t, servers, kind);
}

/** Runs a node script in its own process (the file operations of one "program"). */
function node(script: string, args: string[]) {
  return run(process.execPath, ['--input-type=module', '-e', script, ...args], { timeoutMs: 120_000 });
}

/** Every line written by w appenders of n lines, once, whole, in each writer's order; no NUL. */
function checkAppendLog(t: ExecutionContext, text: string, writers: number, lines: number, what: string): void {
  t.is(text.split('').filter((c) => c === '\0').length, 0, `${what}: NUL bytes`);
  const got = text.split('\n');
  t.is(got.pop(), '', `${what}: ends with a newline`);
  t.is(got.length, writers * lines, `${what}: line count`);
  const next = new Map<string, number>();
  const pad = 'x'.repeat(53);
  for (const l of got) {
    const m = /^w(\d+) line (\d+) (x+)$/.exec(l);
    if (!m || m[3] !== pad) { t.fail(`${what}: torn line ${JSON.stringify(l.slice(0, 80))}`); return; }
    const want = (next.get(m[1]!) ?? 0) + 1;
    if (Number(m[2]) !== want) { t.fail(`${what}: writer ${m[1]} line ${m[2]} where ${want} was due`); return; }
    next.set(m[1]!, want);
  }
}

for (const kind of KINDS) {
  // Bug 1: one appender's close() ran while the others still appended; their writes landed at
  // a stale size and a truncate to that size cut them (lost lines, NUL holes, also on the server).
  test.serial(`${kind}: concurrent >> appenders from several shells lose nothing`, async (t) => {
    const d = await mountService(t, servers, kind);
    const dir = d.p(uniq('append'));
    await fsp.mkdir(dir);
    const log = path.join(dir, 'log');
    const r = await sh(`for w in 1 2 3 4; do (for i in $(seq 300); do echo "w$w line $i $(printf 'x%.0s' {1..53})" >> "$1"; done) & done; wait`, [log], { timeoutMs: 300_000 });
    t.is(r.code, 0, r.stderr);
    checkAppendLog(t, await fsp.readFile(log, 'utf8'), 4, 300, 'on the mount');
    const f = await freshAfterFlush(t, d, kind);
    checkAppendLog(t, await fsp.readFile(twin(d, f, log), 'utf8'), 4, 300, 'on the server');
  });

  // Bug 2: the save pattern (write tmp, replace the original) followed by a delete: the replaced
  // file's old server copy stayed behind and came back.
  test.serial(`${kind}: replace then unlink and rmdir leaves nothing behind`, async (t) => {
    const d = await mountService(t, servers, kind);
    const top = d.p(uniq('replace'));
    const dir = path.join(top, 'd');
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, 'f.txt'), 'old\n');
    await d.flush(); // the old file is on the server before the program replaces it
    const r = await node(`
      import fs from 'node:fs';
      const [dir] = process.argv.slice(1);
      fs.writeFileSync(dir + '/f.txt.tmp', 'new\\n');
      fs.renameSync(dir + '/f.txt.tmp', dir + '/f.txt');
      fs.unlinkSync(dir + '/f.txt');
      console.log(JSON.stringify(fs.readdirSync(dir)));
      fs.rmdirSync(dir);
    `, [dir]);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout.trim(), '[]');
    t.is(await errCode(fsp.stat(dir)), 'ENOENT');
    const f = await freshAfterFlush(t, d, kind);
    t.deepEqual(await fsp.readdir(twin(d, f, top)), []);
  });

  test.serial(`${kind}: replace then rename moves the new content only`, async (t) => {
    const d = await mountService(t, servers, kind);
    const dir = d.p(uniq('replmv'));
    await fsp.mkdir(dir);
    await fsp.writeFile(path.join(dir, 'f.txt'), 'old\n');
    await d.flush();
    const r = await node(`
      import fs from 'node:fs';
      const [dir] = process.argv.slice(1);
      fs.writeFileSync(dir + '/f.txt.tmp', 'new\\n');
      fs.renameSync(dir + '/f.txt.tmp', dir + '/f.txt');
      fs.renameSync(dir + '/f.txt', dir + '/g.txt');
    `, [dir]);
    t.is(r.code, 0, r.stderr);
    t.deepEqual((await fsp.readdir(dir)).sort(), ['g.txt']);
    const f = await freshAfterFlush(t, d, kind);
    t.deepEqual((await fsp.readdir(twin(d, f, dir))).sort(), ['g.txt']);
    t.is(await fsp.readFile(twin(d, f, path.join(dir, 'g.txt')), 'utf8'), 'new\n');
    // and again without waiting for the first upload: replace, rename, replace the new name
    await fsp.writeFile(path.join(dir, 'a'), 'A1');
    await fsp.writeFile(path.join(dir, 'a.tmp'), 'A2');
    await fsp.rename(path.join(dir, 'a.tmp'), path.join(dir, 'a'));
    await fsp.rename(path.join(dir, 'a'), path.join(dir, 'b'));
    await fsp.writeFile(path.join(dir, 'b.tmp'), 'B3');
    await fsp.rename(path.join(dir, 'b.tmp'), path.join(dir, 'b'));
    await fsp.unlink(path.join(dir, 'g.txt'));
    const f2 = await freshAfterFlush(t, d, kind);
    t.deepEqual((await fsp.readdir(twin(d, f2, dir))).sort(), ['b']);
    t.is(await fsp.readFile(twin(d, f2, path.join(dir, 'b')), 'utf8'), 'B3');
  });

  // Bug 7: another client deletes the folder of a file we still write. Our bytes win (nothing
  // the program wrote is lost), and that is said: a log line and an entry in status.
  test.serial(`${kind}: a folder deleted elsewhere under an open writer is reported, nothing lost`, async (t) => {
    const d = await mountService(t, servers, kind);
    const other = await mountService(t, servers, kind);
    const dir = d.p(uniq('gone'));
    await fsp.mkdir(dir);
    await fsp.writeFile(path.join(dir, 'keep.txt'), 'was here\n');
    await d.flush();
    // past the window in which the drive trusts its last "the folder is there" (PARENT_CHECK_MS)
    await sleep(1000);
    const h = await fsp.open(path.join(dir, 'open.txt'), 'w');
    try {
      await h.write('part1 ');
      await fsp.rm(twin(d, other, dir), { recursive: true });
      await other.flush();
      await h.write('part2');
    } finally {
      await h.close();
    }
    await d.flush();
    const st = await d.status();
    t.true((st.notices ?? []).some((n) => n.path === path.posix.join('/', path.relative(d.base, dir)) || n.message.includes(path.basename(dir))),
      `status names the recreated folder: ${JSON.stringify(st.notices)}`);
    t.regex(d.stderr(), /deleted on the server/);
    const f = await mountService(t, servers, kind);
    t.is(await fsp.readFile(twin(d, f, path.join(dir, 'open.txt')), 'utf8'), 'part1 part2');
    t.is(await errCode(fsp.stat(twin(d, f, path.join(dir, 'keep.txt')))), 'ENOENT', 'the other client\'s delete of the rest stands');
  });
}

// Bug 10: the policy refuses at the first call that can know, and a refused file is not dropped
// without a word.
const ORG = `(SELECT company_id FROM vboxx_persons WHERE username = 'demo')`;
async function setPolicy(p: Record<string, string | number | null>) {
  for (const [k, v] of Object.entries(p)) await servers.sql(`UPDATE vboxx_policies SET ${k} = ? WHERE company_id = ${ORG}`, [v]);
}

test.serial('vboxx: rename or create into an excluded extension is EPERM at once; write past max size EFBIG', async (t) => {
  await setPolicy({ max_file_size: '1', excluded_extensions: '.exe' });
  t.teardown(() => setPolicy({ max_file_size: '1024', excluded_extensions: '.exe' }));
  const d = await mountService(t, servers, 'vboxx');
  const dir = d.p(uniq('pol'));
  await fsp.mkdir(dir);
  await fsp.writeFile(path.join(dir, 'a.bin'), 'payload');
  // pending (not uploaded yet) and already uploaded sources both
  t.is(await errCode(fsp.rename(path.join(dir, 'a.bin'), path.join(dir, 'a.exe'))), 'EPERM', 'pending file renamed to .exe');
  await d.flush();
  t.is(await errCode(fsp.rename(path.join(dir, 'a.bin'), path.join(dir, 'b.EXE'))), 'EPERM', 'uploaded file renamed to .EXE');
  t.deepEqual((await fsp.readdir(dir)).sort(), ['a.bin']);
  t.is(await errCode(fsp.open(path.join(dir, 'new.exe'), 'w')), 'EPERM', 'create of an excluded name');
  // a write past max_file_size fails at that write, not after the whole file was written
  const h = await fsp.open(path.join(dir, 'big.bin'), 'w');
  let code = 'OK';
  let written = 0;
  try {
    const chunk = Buffer.alloc(256 * 1024, 7);
    for (let i = 0; i < 16 && code === 'OK'; i++) {
      try { await h.write(chunk, 0, chunk.length, written); written += chunk.length; } catch (e) { code = codeOf(e); }
    }
  } finally {
    await h.close().catch(() => {});
  }
  t.is(code, 'EFBIG');
  t.is(written, 1024 * 1024, 'every byte up to the limit was taken');
  await d.flush().catch(() => {});
  const st = await d.status();
  t.deepEqual(st.failures.filter((f) => f.path.endsWith('/big.bin')).length, 0, 'a file within the limit is no failure');
  t.is(await errCode(fsp.stat(path.join(dir, 'big.bin'))), 'OK');
});

test.serial('vboxx: a file refused at close is kept visible in status, not dropped silently', async (t) => {
  const d = await mountService(t, servers, 'vboxx');
  const dir = d.p(uniq('polq'));
  await fsp.mkdir(dir);
  const h = await fsp.open(path.join(dir, 'q.bin'), 'w');
  await h.write(Buffer.alloc(1000, 1));
  // the quota shrinks under the open file: the close is refused
  await servers.sql(`UPDATE vboxx_policies SET space_quota = 1 WHERE company_id = ${ORG}`);
  t.teardown(() => servers.sql(`UPDATE vboxx_policies SET space_quota = NULL WHERE company_id = ${ORG}`));
  await h.sync().catch(() => {});
  await h.close().catch(() => {});
  const st = await eventually(async () => {
    const s = await d.status();
    // refused at close (then discarded: a notice) or by the server at upload (kept: a failure)
    const said = s.failures.some((f) => f.path.endsWith('/q.bin')) || (s.notices ?? []).some((n) => n.path.endsWith('/q.bin'));
    return said ? s : undefined;
  }, 10_000);
  t.truthy(st, 'the refused file has a status entry');
  t.regex(d.stderr(), /q\.bin/);
});

// soak seeds 200375, 300133: the mount listed rsync's temp file (`.<name>.XXXXXX`) of its own
// upload: the folder's first listing ran while the upload wrote into that folder
test.serial('maxxo: a listing while our upload runs never shows rsync\'s temp file of it; another client sees the server\'s truth', async (t) => {
  // a slow data plane keeps the upload's temp file on the server long enough to list it
  // and a short dir_timeout: the listing taken at create time has expired when the folder is listed
  const d = await mountService(t, servers, 'maxxo', { client: { rsyncExtraArgs: ['--bwlimit=200'] }, vfs: { dirTtlMs: 100 } });
  const other = await mountService(t, servers, 'maxxo');
  const dir = uniq('rsync-tmp');
  // made by the other mount: ours has no listing of it yet
  await fsp.mkdir(other.p(dir));
  // (written back there: on the server after its flush)
  await other.flush();
  const onServer = path.join(await servers.maxxoFolder(), dir);
  const body = Buffer.alloc(2_000_000, 7);
  await fsp.writeFile(d.p(dir, 'big.bin'), body);
  const temps = async () => (await fsp.readdir(onServer)).filter((n) => n.startsWith('.big.bin.'));
  t.truthy(await eventually(async () => (await temps()).length > 0, 30_000, 20), 'rsync wrote its temp file');
  await sleep(300);
  const listed = await fsp.readdir(d.p(dir));
  t.true((await temps()).length > 0, 'the temp file was still there after the listing');
  t.deepEqual(listed, ['big.bin']);
  await d.flush();
  // after the upload, still only the file (the listing is cached for dir_timeout)
  t.deepEqual(await fsp.readdir(d.p(dir)), ['big.bin']);
  t.is((await fsp.stat(d.p(dir, 'big.bin'))).size, body.length);
  t.deepEqual(await fsp.readdir(onServer), ['big.bin']);
});

// soak seed 300452: unlink answered EIO after an upload attempt on the wire failed with "the file
// changed while it was being uploaded" (the program had rewritten the file shorter meanwhile): the
// retry waited at the unlink's barrier while the unlink waited for the upload
test.serial('vboxx: unlink while the sent upload fails and the file was rewritten shorter meanwhile: the unlink succeeds, the file stays gone', async (t) => {
  const proxy = await startHttpFaultProxy(servers.url);
  t.teardown(() => proxy.close());
  const dir = uniq('unl-retry');
  // the first PUT of the file reaches the server, its answer stalls until we cut it
  const stalled = proxy.add({ method: 'PUT', path: new RegExp(`^/1/files_put/.*${dir}/victim$`), fault: { kind: 'stall', afterBytes: 0 } });
  const d = await mountService(t, { ...servers, url: proxy.url }, 'vboxx', { vfs: { opTimeoutMs: 10_000 } });
  await fsp.mkdir(d.p(dir));
  const f = d.p(dir, 'victim');
  await fsp.writeFile(f, Buffer.alloc(100_000, 1));
  await stalled.fired;
  // O_TRUNC: the cache file shrinks under the upload; the close records the newer content
  await fsp.writeFile(f, 'short');
  const unlinked = errCode(fsp.unlink(f));
  await sleep(300);
  // the cut answer is retried by the HTTP layer, which finds the file shorter than it promised
  proxy.release('cut');
  t.is(await unlinked, 'OK');
  t.is(await errCode(fsp.stat(f)), 'ENOENT');
  t.deepEqual(await fsp.readdir(d.p(dir)), []);
  await d.flush();
  const fresh = await mountService(t, servers, 'vboxx');
  t.deepEqual(await fsp.readdir(fresh.p(dir)), [], 'the file did not come back on the server');
});

for (const kind of KINDS) {
  // Soak seed 500051 (Maxxo; any service on libfuse 2): a file deleted while open is kept as
  // <folder>/.fuse_hidden*; an empty folder renamed over that folder succeeded, and libfuse, which
  // finds the handle through the folder's path, then answered ENOENT to its fsync. The handle must
  // stay whole until closed: the drive may refuse (EBUSY) to replace or remove the folder meanwhile,
  // or let it go and keep serving the handle; after the close the folder goes like any empty one,
  // and nothing of the deleted file stays on the mount, in the journal or on the server.
  test.serial(`${kind}: a file deleted while open stays usable through its handle when its folder is renamed over or removed`, async (t) => {
    const d = await mountService(t, servers, kind);
    const dir = d.p(uniq('hidden'));
    const p = (...s: string[]) => path.join(dir, ...s);
    await fsp.mkdir(p('rp'), { recursive: true });
    await fsp.mkdir(p('q'));
    await fsp.mkdir(p('e'));
    const h1 = await fsp.open(p('rp', 'f'), 'w+');
    const h2 = await fsp.open(p('q', 'g'), 'w+');
    let over = '', rm = '';
    try {
      await h1.write('first', 0);
      await h1.sync();
      await h2.write('second', 0);
      await h2.sync();
      await fsp.unlink(p('rp', 'f'));
      await fsp.unlink(p('q', 'g'));
      t.deepEqual((await fsp.readdir(p('rp'))).filter((n) => !n.startsWith('.fuse_hidden')), []);
      over = await errCode(fsp.rename(p('e'), p('rp')));
      rm = await errCode(fsp.rmdir(p('q')));
      t.true(['OK', 'EBUSY'].includes(over), `rename over the folder: ${over}`);
      t.true(['OK', 'EBUSY'].includes(rm), `rmdir of the folder: ${rm}`);
      for (const [h, text] of [[h1, 'first'], [h2, 'second']] as const) {
        await h.sync();
        await h.write('+MORE', text.length);
        await h.sync();
        t.is((await h.stat()).size, text.length + 5);
        const buf = Buffer.alloc(64);
        const { bytesRead } = await h.read(buf, 0, 64, 0);
        t.is(buf.subarray(0, bytesRead).toString(), `${text}+MORE`);
        await h.truncate(2);
        t.is((await h.stat()).size, 2);
      }
    } finally {
      await h1.close();
      await h2.close();
    }
    // closed: the folders are ordinary empty folders now, hidden names gone
    if (over === 'EBUSY') t.is(await errCode(fsp.rename(p('e'), p('rp'))), 'OK', 'rename over the folder after the close');
    if (rm === 'EBUSY') t.is(await errCode(fsp.rmdir(p('q'))), 'OK', 'rmdir after the close');
    t.deepEqual(await fsp.readdir(dir), ['rp']);
    t.deepEqual(await fsp.readdir(p('rp')), []);
    await d.flush();
    const st = await d.status();
    t.is(st.pending, 0, 'nothing of the deleted files in the journal');
    const f = await mountService(t, servers, kind);
    t.deepEqual(await fsp.readdir(twin(d, f, dir)), ['rp']);
    t.deepEqual(await fsp.readdir(twin(d, f, p('rp'))), [], 'no .fuse_hidden name nor content on the server');
    t.is(await errCode(fsp.rmdir(twin(d, f, p('rp')))), 'OK');
  });
}
