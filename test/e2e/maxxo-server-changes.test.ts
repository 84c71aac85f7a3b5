// Maxxo through a real mount when the server side changes under it (issue 10):
// - the server restarts on the same data dir and its rsync daemon comes back on another port, with
//   another Cloudstore password: the drive must find the data plane again through /slice;
// - another client replaces a file with other bytes of the same size: after the documented bound
//   (dir_timeout + attr_timeout + the kernel's 1 s attribute cache) the drive serves the new bytes
//   and the new mtime, where it used to serve its cached copy for as long as it was cached.
// The server runs in a child process (it must be stopped and started again; the drive needs it to
// answer while this process drives the mount with async fs).
import test from 'ava';
import Database from 'better-sqlite3';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { maxxoToken } from '../helpers/emulator.js';
import { startEmulatorProcess, type EmulatorProcess } from '../helpers/emulator-process.js';
import { tempDir } from '../helpers/mount.js';
import { mountAt } from '../fault/lib.js';
import { eventually, errCode, randomBytesSeeded, sleep, uniq } from './lib/services.js';

interface Slice { ip: string; login: string; rsync: string; rsync_port?: number }

async function sliceOf(url: string): Promise<Slice> {
  const r = await fetch(`${url}/api/1/slice`, { headers: { token: await maxxoToken(url) } });
  if (!r.ok) throw new Error(`slice: HTTP ${r.status}`);
  return (await r.json()) as Slice;
}

/** The demo user's folder on the server's disk: what another client's upload changes. */
async function userDir(url: string, dataDir: string): Promise<string> {
  return path.join(dataDir, 'files', 'maxxo', (await sliceOf(url)).login);
}

/** Replaces a server file the way an rsync receiver does (temp file, rename), with a given mtime. */
async function replaceOnServer(file: string, data: Buffer, mtimeS: number): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.other-client`);
  await fsp.writeFile(tmp, data);
  await fsp.utimes(tmp, mtimeS, mtimeS);
  await fsp.rename(tmp, file);
}

test.serial('maxxo: server restart with the rsync daemon on a new port and a new Cloudstore password: upload, read, mkdir go on', async (t) => {
  t.timeout(240_000);
  const dataDir = tempDir(t, 'cm-restart-data-');
  let srv: EmulatorProcess = await startEmulatorProcess({ dataDir });
  t.teardown(() => srv.stop());
  const port = new URL(srv.url).port;
  const before = await sliceOf(srv.url);
  const files = await userDir(srv.url, dataDir);
  // `warn`: the recovery must leave a clear line at the default level
  const d = await mountAt(t, srv.url, 'maxxo', { logLevel: 'warn' });
  const dir = path.join(d.base, uniq('restart'));
  await fsp.mkdir(dir);
  await fsp.writeFile(path.join(dir, 'before.txt'), 'written before the restart');
  await d.flush();
  t.is(await fsp.readFile(path.join(files, path.basename(dir), 'before.txt'), 'utf8'), 'written before the restart');
  // a file the drive has never seen, in a folder it has never listed (fetched after the restart)
  const other = uniq('other-client');
  await fsp.mkdir(path.join(files, other));
  await fsp.writeFile(path.join(files, other, 'server-side.bin'), randomBytesSeeded(200_000, 5));

  t.is(await srv.stop(), 0);
  const db = new Database(path.join(dataDir, 'state.db'));
  db.prepare('UPDATE maxxo_users SET rsync_password = ? WHERE login = ?').run('Cloudstore-After-Restart-1', before.login);
  db.close();
  srv = await startEmulatorProcess({ dataDir, args: ['--port', port] });
  const after = await sliceOf(srv.url);
  t.not(after.rsync_port, before.rsync_port, 'the daemon came back on another port');
  t.not(after.rsync, before.rsync, 'with another password');

  const started = Date.now();
  t.is(await errCode(fsp.mkdir(path.join(dir, 'made-after'))), 'OK', 'mkdir');
  // (mkdir is written back on Maxxo: the flush sends it, through the daemon found again)
  await d.flush();
  t.true((await fsp.stat(path.join(files, path.basename(dir), 'made-after'))).isDirectory(), 'the folder is on the server');
  const read = await fsp.readFile(path.join(d.base, other, 'server-side.bin'));
  t.true(read.equals(randomBytesSeeded(200_000, 5)), 'read of a file fetched after the restart');
  await fsp.writeFile(path.join(dir, 'after.txt'), 'written after the restart');
  await d.flush();
  t.is(await fsp.readFile(path.join(files, path.basename(dir), 'after.txt'), 'utf8'), 'written after the restart', 'upload');
  const took = Date.now() - started;
  t.deepEqual((await d.status()).failures, []);
  t.regex(d.stderr(), /rsync daemon at \S+ (cannot be reached|refused)[^\n]*reading \/slice again/, 'a clear log line says the data plane was looked up again');
  t.false(d.stderr().includes('Cloudstore-After-Restart-1'), 'no password in the log');
  t.log(`rsync port ${before.rsync_port} -> ${after.rsync_port}; mkdir + read + upload after the restart took ${took} ms`);
  t.log(d.stderr().split('\n').filter((l) => /rsync|slice/i.test(l)).slice(0, 6).join('\n'));
});

test.serial('maxxo: another client changes a file keeping its size: the mount serves the new bytes and mtime within dir_timeout + attr_timeout + 1 s', async (t) => {
  t.timeout(120_000);
  const dataDir = tempDir(t, 'cm-samesize-data-');
  const srv = await startEmulatorProcess({ dataDir });
  t.teardown(() => srv.stop());
  const files = await userDir(srv.url, dataDir);
  const attrTtlMs = 1000;
  const dirTtlMs = 2000;
  const d = await mountAt(t, srv.url, 'maxxo', { vfs: { attrTtlMs, dirTtlMs } });
  const name = uniq('same');
  const dir = path.join(d.base, name);
  await fsp.mkdir(dir);
  const v1 = randomBytesSeeded(64 * 1024, 1);
  const v2 = randomBytesSeeded(64 * 1024, 2);
  await fsp.writeFile(path.join(dir, 'f.bin'), v1);
  await d.flush();
  // a file the drive fetched (and so cached) from the server, not one it wrote itself
  const srvFile = path.join(files, name, 'g.bin');
  await replaceOnServer(srvFile, v1, 1_700_000_000);
  await sleep(dirTtlMs + attrTtlMs + 1500);
  for (const f of ['f.bin', 'g.bin']) t.true((await fsp.readFile(path.join(dir, f))).equals(v1), `${f}: v1 read (and cached)`);
  t.is(Math.floor((await fsp.stat(path.join(dir, 'g.bin'))).mtimeMs / 1000), 1_700_000_000, 'the server mtime is shown');

  const newMtime = 1_800_000_000;
  const changed = Date.now();
  await replaceOnServer(path.join(files, name, 'f.bin'), v2, newMtime);
  await replaceOnServer(srvFile, v2, newMtime);
  const bound = dirTtlMs + attrTtlMs + 1000;
  const seen: Record<string, number> = {};
  await eventually(async () => {
    for (const f of ['f.bin', 'g.bin']) {
      if (seen[f] === undefined && (await fsp.readFile(path.join(dir, f))).equals(v2)) seen[f] = Date.now() - changed;
    }
    return Object.keys(seen).length === 2;
  }, bound + 15_000, 100);
  t.log(`new bytes seen after ${JSON.stringify(seen)} ms (bound ${bound} ms)`);
  for (const f of ['f.bin', 'g.bin']) {
    t.not(seen[f], undefined, `${f}: the new bytes are served`);
    // the machine is shared: a margin for slow runs, not for a missed change
    t.true(seen[f]! <= bound + 3000, `${f}: within the bound (${seen[f]} ms)`);
    t.is(Math.floor((await fsp.stat(path.join(dir, f))).mtimeMs / 1000), newMtime, `${f}: the new mtime is shown`);
    t.true((await fsp.readFile(path.join(dir, f))).equals(v2), `${f}: and stays`);
  }
});
