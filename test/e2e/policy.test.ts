// vBoxx organization policy through the mount: max_file_size -> EFBIG, excluded_extensions ->
// EPERM, space quota -> EDQUOT, refused files never reach the server; df shows the quota; the
// share-link xattr; one root mounted with --root.
import test, { type ExecutionContext } from 'ava';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { useServers, mountService, uniq, run, errCode, codeOf, type Drive } from './lib/services.js';

const servers = useServers(test);

const MiB = 1024 * 1024;
const ORG = `(SELECT company_id FROM vboxx_persons WHERE username = 'demo')`;

async function setPolicy(p: { max_file_size?: string; excluded_extensions?: string; space_quota?: number | null }) {
  for (const [k, v] of Object.entries(p)) {
    await servers.sql(`UPDATE vboxx_policies SET ${k} = ? WHERE company_id = ${ORG}`, [v]);
  }
}

/** Writes a whole file the way a program does; the errno of whichever step failed, or OK. */
async function writeAndClose(file: string, data: Buffer): Promise<string> {
  let h: fsp.FileHandle;
  try {
    h = await fsp.open(file, 'w');
  } catch (e) {
    return codeOf(e);
  }
  let code = 'OK';
  try {
    for (let off = 0; off < data.length; off += 256 * 1024) await h.write(data, off, Math.min(256 * 1024, data.length - off), off);
    await h.sync();
  } catch (e) {
    code = codeOf(e);
  }
  try {
    await h.close();
  } catch (e) {
    if (code === 'OK') code = codeOf(e);
  }
  return code;
}

async function onServer(t: ExecutionContext, rel: string): Promise<string> {
  const fresh: Drive = await mountService(t, servers, 'vboxx');
  return errCode(fsp.stat(fresh.p(rel)));
}

test.serial('max_file_size gives EFBIG at the write past it, excluded_extensions EPERM at create; refused files never on the server', async (t) => {
  await setPolicy({ max_file_size: '1', excluded_extensions: '.exe,*.mp3' });
  t.teardown(() => setPolicy({ max_file_size: '1024', excluded_extensions: '.exe' }));
  const d = await mountService(t, servers, 'vboxx');
  const rel = uniq('policy');
  await fsp.mkdir(d.p(rel));
  t.is(await writeAndClose(d.p(rel, 'too-big.bin'), Buffer.alloc(2 * MiB, 1)), 'EFBIG');
  t.is(await writeAndClose(d.p(rel, 'fits.bin'), Buffer.alloc(MiB / 2, 2)), 'OK');
  t.is(await writeAndClose(d.p(rel, 'tool.exe'), Buffer.from('MZ')), 'EPERM');
  t.is(await writeAndClose(d.p(rel, 'Song.MP3'), Buffer.from('ID3')), 'EPERM');
  await d.flush().catch(() => {});
  t.is(await onServer(t, path.join(rel, 'fits.bin')), 'OK');
  // like a file size limit of the system: what was written up to the limit stays, on the mount and
  // the server alike
  t.is((await fsp.stat(d.p(rel, 'too-big.bin'))).size, MiB);
  const fresh: Drive = await mountService(t, servers, 'vboxx');
  t.is((await fsp.stat(fresh.p(rel, 'too-big.bin'))).size, MiB);
  t.is(await errCode(fsp.truncate(d.p(rel, 'fits.bin'), MiB + 1)), 'EFBIG', 'truncate past the limit');
  t.is(await onServer(t, path.join(rel, 'tool.exe')), 'ENOENT');
});

test.serial('space quota gives EDQUOT; df shows the quota', async (t) => {
  // The quota is set relative to what the account uses now, read through df.
  const probe = await mountService(t, servers, 'vboxx');
  const df0 = await run('df', ['-B1', '--output=used', probe.mnt]);
  const used = Number(df0.stdout.trim().split('\n')[1]);
  t.true(used > 0, df0.stdout);
  await probe.stop();
  const quota = used + 3 * MiB;
  await servers.sql(`UPDATE vboxx_persons SET space_quota = ? WHERE username = 'demo'`, [quota]);
  t.teardown(() => servers.sql(`UPDATE vboxx_persons SET space_quota = NULL WHERE username = 'demo'`));
  const d = await mountService(t, servers, 'vboxx');
  const df = await run('df', ['-B1', '--output=size,used', d.mnt]);
  const [size, used2] = df.stdout.trim().split('\n')[1]!.trim().split(/\s+/).map(Number);
  t.true(Math.abs(size! - quota) < 64 * 1024, `df size ${size} vs quota ${quota}`);
  t.true(used2! > 0 && used2! <= size!, `df used ${used2}`);
  const rel = uniq('quota');
  await fsp.mkdir(d.p(rel));
  t.is(await writeAndClose(d.p(rel, 'small.bin'), Buffer.alloc(MiB, 3)), 'OK');
  t.is(await writeAndClose(d.p(rel, 'over.bin'), Buffer.alloc(4 * MiB, 4)), 'EDQUOT');
  await d.flush().catch(() => {});
  t.is(await onServer(t, path.join(rel, 'small.bin')), 'OK');
  t.is(await onServer(t, path.join(rel, 'over.bin')), 'ENOENT');
});

test.serial('share link xattr on vBoxx returns a working link', async (t) => {
  const d = await mountService(t, servers, 'vboxx');
  const f = d.p(uniq('share') + ' file.txt');
  await fsp.writeFile(f, 'shared content');
  await d.flush();
  const r = await run('getfattr', ['--only-values', '-n', 'user.cloudmount.share_link', f]);
  t.is(r.code, 0, r.stderr);
  const url = r.stdout.trim();
  t.regex(url, /^https?:\/\//);
  const again = await run('getfattr', ['--only-values', '-n', 'user.cloudmount.share_link', f]);
  t.is(again.code, 0);
  // Not listed by default (vfs: copying programs would create a public link of every file they
  // touch), but listing works.
  const list = await run('getfattr', ['-m', '-', f]);
  t.is(list.code, 0, list.stderr);
  const dirLink = await run('getfattr', ['-n', 'user.cloudmount.share_link', path.dirname(f)]);
  t.true(dirLink.code === 0 || /Operation not supported|No such attribute/.test(dirLink.stderr));
});

test.serial('vBoxx roots: all roots as top-level folders; --root mounts one', async (t) => {
  const all = await mountService(t, servers, 'vboxx');
  const top = (await fsp.readdir(all.mnt)).sort();
  t.true(top.includes('Files') && top.includes('Team Share'), top.join(','));
  t.true((await fsp.readdir(path.join(all.mnt, 'Files'))).includes('readme.txt'));
  const one = await mountService(t, servers, 'vboxx', { root: 'Files' });
  t.true((await fsp.readdir(one.mnt)).includes('readme.txt'));
  t.is(await fsp.readFile(path.join(one.mnt, 'readme.txt'), 'utf8'), await fsp.readFile(path.join(all.mnt, 'Files', 'readme.txt'), 'utf8'));
  // A file written in the shared root is there for the other mount (after its caches expire).
  const name = uniq('team') + '.txt';
  await fsp.writeFile(path.join(all.mnt, 'Team Share', name), 'team');
  await all.flush();
  const fresh = await mountService(t, servers, 'vboxx', { root: 'Team Share' });
  t.is(await fsp.readFile(path.join(fresh.mnt, name), 'utf8'), 'team');
  // A move between roots of a file the server has is a cross-device rename: mv falls back to
  // copy + delete. (Not yet uploaded, it is only renamed locally and uploads at its new place.)
  await fsp.writeFile(path.join(all.mnt, 'Files', name), 'moving');
  await all.flush();
  t.is(await errCode(fsp.rename(path.join(all.mnt, 'Files', name), path.join(all.mnt, 'Team Share', 'moved-' + name))), 'EXDEV');
  const mv = await run('mv', [path.join(all.mnt, 'Files', name), path.join(all.mnt, 'Team Share', 'moved-' + name)]);
  t.is(mv.code, 0, mv.stderr);
  t.is(await fsp.readFile(path.join(all.mnt, 'Team Share', 'moved-' + name), 'utf8'), 'moving');
});
