// Times and modes that survive a remount (issue 13), through real mounts of both services and
// real programs (touch, cp, rsync, ls, chmod). A remount is a clean unmount (SIGTERM: flush) and a
// fresh mount with an empty cache, so every answer after it comes from the server.
//
// Known limits, marked where they apply:
// - Maxxo keeps file mtimes and executability through its rsync daemon (-t, -E; read back from
//   its --list-only listing); vBoxx keeps mtimes (client_mtime), no mode.
// - The fuse-native backend (libfuse 2 binding) hands us atime in both slots of utimens, so
//   `touch -m -d` cannot be told from `touch -d` there: these tests use `touch -d` (both times).
// - vBoxx holds no folder times: a second `rsync -a` may list folders (`.d..t......`), never a
//   file transfer (`>f`). Maxxo's daemon keeps them (its filesystem's): no folder line either.
import test, { type ExecutionContext } from 'ava';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { mountChild, tempDir } from '../helpers/mount.js';
import { useServers, mountService, KINDS, uniq, run, type Drive, type DriveOptions } from './lib/services.js';
import type { Kind } from './lib/services.js';

const servers = useServers(test);

/** Whether the service holds a file's executability (Maxxo's rsync daemon, -E). */
const keepsExec = (kind: Kind) => kind === 'maxxo';
/** The libfuse3 backend passes both times of utimensat (test/e2e/libfuse3/times.test.ts runs this file on it). */
const LIBFUSE3 = process.env.CLOUDMOUNT_TEST_BACKEND === 'libfuse3';

const WHEN = '2001-02-03 04:05:06';
const WHEN_MS = new Date('2001-02-03T04:05:06').getTime();

async function remount(t: ExecutionContext, d: Drive, o: DriveOptions = {}): Promise<Drive> {
  await d.flush();
  t.is((await d.status()).pending, 0);
  t.is(await d.stop(), 0);
  return mountService(t, servers, d.kind, o);
}

async function sh(t: ExecutionContext, cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { timeoutMs: 60_000 });
  t.is(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** rsync SRC to the mount, remount, rsync again: no file content, no file time differs. */
async function rsyncTwice(t: ExecutionContext, kind: Kind, flags: string[]): Promise<void> {
  const src = tempDir(t, 'cm-times-rsync-');
  // distinct times (whole seconds and not) on files whose sizes repeat: only times tell them apart
  await fsp.mkdir(path.join(src, 'sub', 'deeper'), { recursive: true });
  for (let i = 0; i < 12; i++) {
    const rel = i < 4 ? `f${i}.txt` : i < 8 ? `sub/g${i}.txt` : `sub/deeper/h${i}.txt`;
    const p = path.join(src, rel);
    await fsp.writeFile(p, `same size ${i % 10}\n`);
    const s = 1_500_000_000 + i * 3600 * 24 * 7 + (i % 3) * 0.25;
    await fsp.utimes(p, s, s);
  }
  const d = await mountService(t, servers, kind);
  const rel = uniq('rsync');
  await fsp.mkdir(d.p(rel));
  await sh(t, 'rsync', [...flags, `${src}/`, `${d.p(rel)}/`]);
  const f = await remount(t, d);
  // before the second run: with -U it sets atimes, which fuse-native also lands in the mtime
  for (const sub of ['sub', 'sub/deeper', '.']) {
    const local = (await sh(t, 'ls', ['-t', path.join(src, sub)])).split('\n').filter((n) => n.endsWith('.txt')).join(' ');
    const mounted = (await sh(t, 'ls', ['-t', f.p(rel, sub)])).split('\n').filter((n) => n.endsWith('.txt')).join(' ');
    t.is(mounted, local, `ls -t ${sub}`);
  }
  const out = await sh(t, 'rsync', [...flags, '--itemize-changes', `${src}/`, `${f.p(rel)}/`]).catch((e) => { t.log(f.stderr().slice(-6000)); throw e; });
  const lines = out.split('\n').filter(Boolean);
  t.deepEqual(lines.filter((l) => l.startsWith('>f')), [], `no file content transferred:\n${out}`);
  t.deepEqual(lines.filter((l) => l[1] === 'f' && l[4] === 't'), [], `no file mtime differs:\n${out}`);
  // fuse-native lands rsync -U's atime in a folder's mtime too
  const folderTimes = lines.filter((l) => l[1] === 'd' && l[4] === 't');
  if (kind === 'maxxo' && LIBFUSE3 && folderTimes.length) {
    // seen once in ~35 CI runs, never alone since: what each side holds, for the next time
    const srv = path.join(await servers.maxxoFolder(), rel);
    const ms = async (p: string) => (await fsp.stat(p).catch(() => null))?.mtimeMs;
    t.log(`folder mtimes: source ${await ms(src)}, mount ${await ms(f.p(rel))}, server ${await ms(srv)}; ` +
      `sub: ${await ms(path.join(src, 'sub'))} / ${await ms(f.p(rel, 'sub'))} / ${await ms(path.join(srv, 'sub'))}\nmount log:\n${f.stderr().slice(-4000)}`);
    t.deepEqual(folderTimes, [], `no folder mtime differs:\n${out}`);
  }
  if (lines.length) t.log(`not held by ${kind} (folder times, atimes):\n${out}`);
}

for (const kind of KINDS) {
  test.serial(`${kind}: touch -d, and cp then touch -d, survive unmount and remount`, async (t) => {
    const d = await mountService(t, servers, kind);
    const rel = uniq('touch');
    await fsp.mkdir(d.p(rel));
    const a = d.p(rel, 'a.txt');
    await fsp.writeFile(a, 'written, closed, uploaded, then touched');
    await d.flush();
    await sh(t, 'touch', ['-d', WHEN, a]);
    const local = tempDir(t, 'cm-times-src-');
    await fsp.writeFile(path.join(local, 'src'), 'copied');
    const b = d.p(rel, 'b.txt');
    await sh(t, 'cp', [path.join(local, 'src'), b]);
    await sh(t, 'touch', ['-d', '1999-12-31 23:59:58', b]);
    // cp -p copies the source's time with the content (one upload carries it)
    await sh(t, 'touch', ['-d', '2010-06-07 08:09:10', path.join(local, 'src')]);
    const c = d.p(rel, 'c.txt');
    await sh(t, 'cp', ['-p', path.join(local, 'src'), c]);
    t.is((await fsp.stat(a)).mtimeMs, WHEN_MS, 'before the remount');
    const f = await remount(t, d);
    t.is((await fsp.stat(f.p(rel, 'a.txt'))).mtimeMs, WHEN_MS);
    t.is((await fsp.stat(f.p(rel, 'b.txt'))).mtimeMs, new Date('1999-12-31T23:59:58').getTime());
    t.is((await fsp.stat(f.p(rel, 'c.txt'))).mtimeMs, new Date('2010-06-07T08:09:10').getTime());
  });

  // fuse-native drops rsync's mtime (atime omitted: the "now" in the atime slot lands in both);
  // with -U rsync sends both times, and the sources' atime equals their mtime, so the time that
  // arrives is the right one. Plain `rsync -a` is the case below, known-failing on fuse-native.
  test.serial(`${kind}: rsync -aU, remount, rsync -aU again transfers no file; ls -t order is the local one`, async (t) => {
    await rsyncTwice(t, kind, ['-a', '-U']);
  });

  if (LIBFUSE3) {
    test.serial(`${kind}: plain rsync -a, remount, rsync -a again transfers no file (libfuse3: both times)`, async (t) => {
      await rsyncTwice(t, kind, ['-a']);
    });
    test.serial(`${kind}: touch -m -d sets the mtime alone, tar x sets the archive's; both survive a remount (libfuse3)`, async (t) => {
      const d = await mountService(t, servers, kind);
      const rel = uniq('touchm');
      await fsp.mkdir(d.p(rel));
      // an archive of files with distinct old times, extracted into the mount
      const src = tempDir(t, 'cm-times-tar-');
      await fsp.mkdir(path.join(src, 't', 'in'), { recursive: true });
      const tarTimes: Record<string, number> = { 't/a.txt': 1_200_000_000, 't/in/b.txt': 1_300_000_000, 't/in/c.bin': 1_400_000_000 };
      for (const [name, s] of Object.entries(tarTimes)) {
        await fsp.writeFile(path.join(src, name), `tar member ${name}\n`);
        await fsp.utimes(path.join(src, name), s, s);
      }
      const tarFile = path.join(src, 'x.tar');
      await sh(t, 'tar', ['-cf', tarFile, '-C', src, 't']);
      await sh(t, 'tar', ['-xf', tarFile, '-C', d.p(rel)]);
      const f = d.p(rel, 'f.txt');
      await fsp.writeFile(f, 'x');
      const atimeBefore = (await fsp.stat(f)).atimeMs;
      await sh(t, 'touch', ['-m', '-d', WHEN, f]);
      const st = await fsp.stat(f);
      t.is(st.mtimeMs, WHEN_MS);
      t.not(st.atimeMs, WHEN_MS, 'atime left alone');
      t.true(Math.abs(st.atimeMs - atimeBefore) < 2000);
      const again = await remount(t, d);
      t.is((await fsp.stat(again.p(rel, 'f.txt'))).mtimeMs, WHEN_MS);
      for (const [name, s] of Object.entries(tarTimes)) {
        t.is((await fsp.stat(again.p(rel, name))).mtimeMs, s * 1000, `tar x: ${name}`);
        t.is(await fsp.readFile(again.p(rel, name), 'utf8'), `tar member ${name}\n`);
      }
    });
  } else {
    (process.env.CM_PLAIN ? test.serial : test.serial.failing)(`${kind}: plain rsync -a keeps times (known failing on fuse-native: atime in both utimens slots; the libfuse3 copy of this file runs it)`, async (t) => {
      await rsyncTwice(t, kind, ['-a']);
    });
  }

  test.serial(`${kind}: chmod +x holds for the mount (the script runs); a remount shows ${keepsExec(kind) ? 'it' : 'the default'}`, async (t) => {
    const d = await mountService(t, servers, kind);
    const rel = uniq('mode');
    await fsp.mkdir(d.p(rel));
    const f = d.p(rel, 'script.sh');
    await fsp.writeFile(f, '#!/bin/sh\necho hi\n');
    await sh(t, 'chmod', ['+x', f]);
    t.is((await fsp.stat(f)).mode & 0o7777, 0o755);
    t.is((await sh(t, f, [])).trim(), 'hi', 'the script runs');
    if (keepsExec(kind)) {
      // and chmod -x of another, uploaded executable before: the executability alone is sent
      const g = d.p(rel, 'tool.sh');
      await fsp.writeFile(g, '#!/bin/sh\necho tool\n', { mode: 0o755 });
      await d.flush();
      await sh(t, 'chmod', ['-x', g]);
    }
    const again = await remount(t, d);
    // Maxxo holds executable or not (0755/0644 after a remount); vBoxx no mode: the default
    t.is((await fsp.stat(again.p(rel, 'script.sh'))).mode & 0o7777, keepsExec(kind) ? 0o755 : 0o644);
    if (keepsExec(kind)) {
      t.is((await fsp.stat(again.p(rel, 'tool.sh'))).mode & 0o7777, 0o644);
      t.is((await sh(t, again.p(rel, 'script.sh'), [])).trim(), 'hi', 'the script runs after the remount');
    }
  });

  // Found by the model-based test once it set times and modes: each of these used to keep the
  // explicit time or the old file's mode, on the mount and (sent with the upload) on the server.
  test.serial(`${kind}: a write after touch -d moves the mtime; a save by rename over a chmod'ed, touched file shows the new file's mode and time`, async (t) => {
    const d = await mountService(t, servers, kind);
    const rel = uniq('saved');
    await fsp.mkdir(d.p(rel));
    const a = d.p(rel, 'log.txt');
    const before = Math.floor(Date.now() / 1000) * 1000;
    // still being written back (dirty) when it is touched, then appended to
    await fsp.writeFile(a, 'one\n');
    await sh(t, 'touch', ['-d', WHEN, a]);
    t.is((await fsp.stat(a)).mtimeMs, WHEN_MS);
    await sh(t, 'sh', ['-c', 'echo two >> "$1"', 'sh', a]);
    t.true((await fsp.stat(a)).mtimeMs >= before, 'the append moved the mtime');

    // an executable with an explicit time, on the server; a new file (local only) saved over it
    const b = d.p(rel, 'tool.sh');
    await fsp.writeFile(b, '#!/bin/sh\necho old\n');
    await sh(t, 'chmod', ['755', b]);
    await sh(t, 'touch', ['-d', WHEN, b]);
    await d.flush();
    await fsp.writeFile(`${b}.tmp`, 'plain text now\n');
    await fsp.rename(`${b}.tmp`, b);
    let st = await fsp.stat(b);
    t.is(st.mode & 0o7777, 0o644, 'the new file\'s mode');
    t.true(st.mtimeMs >= before, `the new file's time (${st.mtimeMs})`);
    // and one whose replaced target never reached the server either
    const c = d.p(rel, 'c.txt');
    await fsp.writeFile(c, 'old c\n', { mode: 0o600 });
    await sh(t, 'touch', ['-d', WHEN, c]);
    await fsp.writeFile(`${c}.new`, 'new c\n');
    await fsp.rename(`${c}.new`, c);
    st = await fsp.stat(c);
    t.is(st.mode & 0o7777, 0o644);
    t.true(st.mtimeMs >= before);

    const f = await remount(t, d);
    st = await fsp.stat(f.p(rel, 'log.txt'));
    t.true(st.mtimeMs >= before, `after a remount: the append's time, not the touch's (${st.mtimeMs})`);
    t.is(await fsp.readFile(f.p(rel, 'log.txt'), 'utf8'), 'one\ntwo\n');
    st = await fsp.stat(f.p(rel, 'tool.sh'));
    t.is(st.mode & 0o7777, 0o644, 'after a remount: not executable');
    t.true(st.mtimeMs >= before);
    t.is(await fsp.readFile(f.p(rel, 'tool.sh'), 'utf8'), 'plain text now\n');
    t.true((await fsp.stat(f.p(rel, 'c.txt'))).mtimeMs >= before);
  });

  test.serial(`${kind}: a file deleted while open keeps its own mode and times for its handle; its writes leave the name's next file alone`, async (t) => {
    const d = await mountService(t, servers, kind);
    const rel = uniq('orphan');
    await fsp.mkdir(d.p(rel));
    const p = d.p(rel, 'f');
    await fsp.writeFile(p, 'first');
    await sh(t, 'chmod', ['751', p]);
    const h = await fsp.open(p, 'r+');
    try {
      await fsp.unlink(p);
      t.is((await h.stat()).mode & 0o7777, 0o751, 'fstat after the unlink');
      await h.chmod(0o640);
      await h.utimes(WHEN_MS / 1000, WHEN_MS / 1000);
      let st = await h.stat();
      t.is(st.mode & 0o7777, 0o640, 'fchmod of the deleted file');
      t.is(st.mtimeMs, WHEN_MS, 'futimens of the deleted file');
      // a new file takes the name, with a time of its own; writes through the old handle are not its
      await fsp.writeFile(p, 'second');
      await sh(t, 'touch', ['-d', '1999-12-31 23:59:58', p]);
      const before = Math.floor(Date.now() / 1000) * 1000;
      await h.write('more', 0);
      st = await h.stat();
      t.true(st.mtimeMs >= before, 'the write moved the deleted file\'s mtime');
      t.is(st.mode & 0o7777, 0o640);
      const now = await fsp.stat(p);
      t.is(now.mtimeMs, new Date('1999-12-31T23:59:58').getTime(), 'the new file keeps its own time');
      t.is(now.mode & 0o7777, 0o644, 'and its own mode');
    } finally {
      await h.close();
    }
    t.is(await fsp.readFile(p, 'utf8'), 'second');
  });

  test.serial(`${kind}: folder mtime moves with creates and deletes inside; nlink counts subfolders`, async (t) => {
    const d = await mountService(t, servers, kind);
    const rel = uniq('dir');
    const dir = d.p(rel);
    await fsp.mkdir(path.join(dir, 's1'), { recursive: true });
    await fsp.mkdir(path.join(dir, 's2'));
    await fsp.readdir(dir);
    t.is((await fsp.stat(dir)).nlink, 4);
    await sh(t, 'touch', ['-d', WHEN, dir]);
    t.is((await fsp.stat(dir)).mtimeMs, WHEN_MS);
    await fsp.writeFile(path.join(dir, 'new'), 'x');
    t.true((await fsp.stat(dir)).mtimeMs > WHEN_MS, 'create moves it');
    await sh(t, 'touch', ['-d', WHEN, dir]);
    await fsp.unlink(path.join(dir, 'new'));
    t.true((await fsp.stat(dir)).mtimeMs > WHEN_MS, 'unlink moves it');
    await sh(t, 'touch', ['-d', WHEN, dir]);
    await fsp.rmdir(path.join(dir, 's2'));
    const st = await fsp.stat(dir);
    t.true(st.mtimeMs > WHEN_MS, 'rmdir moves it');
    t.is(st.nlink, 3);
    if (kind !== 'maxxo') return;
    // Maxxo keeps folder times: a touch after the changes inside survives a remount, and a
    // change inside after it moves the time on the server too
    await sh(t, 'touch', ['-d', WHEN, dir, path.join(dir, 's1')]);
    const again = await remount(t, d);
    t.is((await fsp.stat(again.p(rel))).mtimeMs, WHEN_MS, 'the folder time after a remount');
    t.is((await fsp.stat(again.p(rel, 's1'))).mtimeMs, WHEN_MS, 'the subfolder time after a remount');
    await fsp.writeFile(again.p(rel, 's1', 'f'), 'x');
    const third = await remount(t, again);
    t.is((await fsp.stat(third.p(rel))).mtimeMs, WHEN_MS, 'untouched by a change one level down');
    t.true((await fsp.stat(third.p(rel, 's1'))).mtimeMs > WHEN_MS, 'a create inside moved it on the server');
    // the top folder, which no parent lists: its own listing's "." row gives its time
    await sh(t, 'touch', ['-d', WHEN, third.mnt]);
    t.is((await fsp.stat(third.mnt)).mtimeMs, WHEN_MS);
    const fourth = await remount(t, third);
    t.is((await fsp.stat(fourth.mnt)).mtimeMs, WHEN_MS, 'the top folder time after a remount');
    t.false((await fsp.readdir(fourth.mnt)).includes(''), 'the top has no entry of its own in its listing');
  });
}

// What the mount showed of a folder's time is what a remount shows (the mount sends the times its
// own changes moved): the server moves a folder's time again when those changes land, here more
// than a second after them, so without that a second `rsync -a` finds the folder differing
// (rsync compares whole seconds, and sets no time it found equal the first time).
test.serial('maxxo: folder times moved by our own create, mkdir and unlink are what a remount shows', async (t) => {
  const d = await mountService(t, servers, 'maxxo');
  const rel = uniq('dirtimes');
  await fsp.mkdir(d.p(rel, 'sub'), { recursive: true });
  await fsp.writeFile(d.p(rel, 'sub', 'gone.txt'), 'to be deleted');
  await d.flush();
  // the create moves sub's time now; the upload lands when the file is closed, seconds later
  const fh = await fsp.open(d.p(rel, 'sub', 'late.txt'), 'w');
  await fsp.mkdir(d.p(rel, 'sub', 'new'));
  await fsp.unlink(d.p(rel, 'sub', 'gone.txt'));
  await new Promise((r) => setTimeout(r, 1200));
  await fh.write('written and closed later');
  await fh.close();
  const shown = new Map<string, number>();
  for (const p of [rel, `${rel}/sub`, `${rel}/sub/new`]) shown.set(p, (await fsp.stat(d.p(p))).mtimeMs);
  await new Promise((r) => setTimeout(r, 1100));
  const f = await remount(t, d);
  const srv = await servers.maxxoFolder();
  for (const [p, ms] of shown) {
    t.is(ms % 1000, 0, `${p}: shown at the service's resolution`);
    t.is((await fsp.stat(f.p(p))).mtimeMs, ms, `${p}: after the remount (server: ${(await fsp.stat(path.join(srv, p))).mtimeMs})`);
  }
  t.deepEqual((await fsp.readdir(f.p(rel, 'sub'))).sort(), ['late.txt', 'new']);
  t.is(await fsp.readFile(f.p(rel, 'sub', 'late.txt'), 'utf8'), 'written and closed later');
});

// -o no_modtime (rclone's --no-modtime): a cold walk costs no rsync daemon listing; times and
// chmod +x hold for the mount, a remount shows the mount's own times; content is unaffected
if (!LIBFUSE3) test.serial('maxxo -o no_modtime: no daemon listings; times hold for the mount only; the bytes are right', async (t) => {
  const rel = uniq('nomtime');
  const srv = path.join(await servers.maxxoFolder(), rel);
  await fsp.mkdir(path.join(srv, 'a', 'b'), { recursive: true });
  for (const f of ['x.txt', 'a/y.txt', 'a/b/z.txt']) {
    await fsp.writeFile(path.join(srv, f), `server file ${f}\n`);
    await fsp.utimes(path.join(srv, f), 1_500_000_000, 1_500_000_000);
  }
  const opts = { client: { modtimes: false } };
  const d = await mountService(t, servers, 'maxxo', opts);
  const listRuns = async (h: Drive) => (await h.status()).counters?.remote?.listRuns;
  const found = (await sh(t, 'find', [d.p(rel)])).split('\n').filter(Boolean).length;
  t.is(found, 6);
  t.not((await fsp.stat(d.p(rel, 'a', 'b', 'z.txt'))).mtimeMs, 1_500_000_000_000, 'the server time is not read');
  t.is(await fsp.readFile(d.p(rel, 'a', 'b', 'z.txt'), 'utf8'), 'server file a/b/z.txt\n');
  await fsp.writeFile(d.p(rel, 'new.txt'), 'written through the mount\n');
  await sh(t, 'touch', ['-d', WHEN, d.p(rel, 'new.txt')]);
  t.is((await fsp.stat(d.p(rel, 'new.txt'))).mtimeMs, WHEN_MS, 'holds for the mount');
  t.is(await listRuns(d), 0, 'no daemon listing');
  const f = await remount(t, d, opts);
  t.is(await fsp.readFile(f.p(rel, 'new.txt'), 'utf8'), 'written through the mount\n');
  t.not((await fsp.stat(f.p(rel, 'new.txt'))).mtimeMs, WHEN_MS, 'not kept');
  t.is(await listRuns(f), 0);
});

// journalling is the same on both backends: Maxxo's case runs on fuse-native only (suite time)
for (const kind of LIBFUSE3 ? ['vboxx' as const] : KINDS) test.serial(`${kind}: a time change journalled, the drive killed before sending it: the next mount delivers it`, async (t) => {
  const cacheDir = tempDir(t, 'cm-cache-times-crash-');
  const d = await mountService(t, servers, kind, { cacheDir, vfs: { writebackDelayMs: 60_000 } });
  const rel = uniq('crash');
  await fsp.mkdir(d.p(rel));
  const f = d.p(rel, 'kept.txt');
  await fsp.writeFile(f, 'content uploaded before the touch');
  await d.flush();
  await sh(t, 'touch', ['-d', WHEN, f]);
  t.is((await d.status()).pending, 1, 'the time change is pending in the journal');
  await d.kill9();
  const d2 = await mountChild(t, { ...d.cfg, mountpoint: d.mnt, vfs: { ...d.cfg.vfs, writebackDelayMs: 100 } });
  await d2.flush();
  t.deepEqual((await d2.status()).failures, []);
  t.is(await d2.stop(), 0);
  const fresh = await mountService(t, servers, kind);
  t.is((await fsp.stat(fresh.p(rel, 'kept.txt'))).mtimeMs, WHEN_MS);
});
