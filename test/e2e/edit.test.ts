// Edit-in-place the way real programs do it, and random writes + truncates, each verified
// through a FRESH mount with a fresh cache directory, so the server really has the bytes.
import test from 'ava';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { useServers, driveMacro, mountService, KINDS, uniq, run, sha256, randomBytesSeeded, twin, type Drive } from './lib/services.js';

const servers = useServers(test);

// The second drive sees only what reached the server: new cache dir, no journal.
const onDrive = driveMacro(test, servers, async (t, d, kind): Promise<[() => Promise<Drive>]> => [async () => {
  await d.flush();
  return mountService(t, servers, kind);
}]);

/** The same file, seen through the fresh drive. */

for (const kind of KINDS) {
  test.serial('vim edit (backup + write-rename) and atomic save', onDrive, kind, async (t, d, fresh) => {
    const dir = d.p(uniq('vim'));
    await fsp.mkdir(dir);
    const f = path.join(dir, 'notes.txt');
    await fsp.writeFile(f, 'line one\nline two\nline three\n');
    // Real vim, no user config: writebackup makes it rename the original away, write the new
    // file, then delete the backup; swap files come and go beside it.
    const r = await run('vim', ['-Es', '-u', 'NONE', '-c', 'set backup writebackup backupcopy=no', '-c', '%s/two/TWO/', '-c', 'wq', f], { cwd: dir, timeoutMs: 60_000 });
    t.is(r.code, 0, r.stderr + r.stdout);
    t.is(await fsp.readFile(f, 'utf8'), 'line one\nline TWO\nline three\n');
    // The explicit pattern of editors and config writers: temp file, fsync, rename over.
    const tmp = path.join(dir, '.notes.txt.tmp');
    const h = await fsp.open(tmp, 'w');
    await h.write('replaced atomically\n');
    await h.sync();
    await h.close();
    await fsp.rename(tmp, path.join(dir, 'atomic.txt'));
    await fsp.writeFile(path.join(dir, 'atomic.txt.new'), 'v2\n');
    await fsp.rename(path.join(dir, 'atomic.txt.new'), path.join(dir, 'atomic.txt'));
    const names = (await fsp.readdir(dir)).sort();
    t.deepEqual(names.filter((n) => !n.endsWith('~')), ['atomic.txt', 'notes.txt']);
    const f2 = await fresh();
    t.is(await fsp.readFile(twin(d, f2, f), 'utf8'), 'line one\nline TWO\nline three\n');
    t.is(await fsp.readFile(twin(d, f2, path.join(dir, 'atomic.txt')), 'utf8'), 'v2\n');
    t.deepEqual((await fsp.readdir(twin(d, f2, dir))).sort(), names);
  });

  test.serial('sed -i edit in place', onDrive, kind, async (t, d, fresh) => {
    const dir = d.p(uniq('sed'));
    await fsp.mkdir(dir);
    const f = path.join(dir, 'config file.ini');
    await fsp.writeFile(f, 'a=1\nb=2\nc=3\n');
    let r = await run('sed', ['-i', 's/b=2/b=20/', f]);
    t.is(r.code, 0, r.stderr);
    r = await run('sed', ['-i', '-e', '$a d=4', f]);
    t.is(r.code, 0, r.stderr);
    t.is(await fsp.readFile(f, 'utf8'), 'a=1\nb=20\nc=3\nd=4\n');
    t.deepEqual(await fsp.readdir(dir), ['config file.ini'], 'sed temp file gone');
    const f2 = await fresh();
    t.is(await fsp.readFile(twin(d, f2, f), 'utf8'), 'a=1\nb=20\nc=3\nd=4\n');
    t.deepEqual(await fsp.readdir(twin(d, f2, dir)), ['config file.ini']);
  });

  test.serial('random writes + truncates round-trip (checksums through a fresh mount)', onDrive, kind, async (t, d, fresh) => {
    const dir = d.p(uniq('rw'));
    await fsp.mkdir(dir);
    const f = path.join(dir, 'random.bin');
    let model = randomBytesSeeded(2 * 1024 * 1024 + 333, 42);
    await fsp.writeFile(f, model);
    // Reopen (content now comes back from the drive's cache or the server) and scribble.
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const h = await fsp.open(f, 'r+');
    try {
      for (let i = 0; i < 120; i++) {
        const op = rnd(10);
        if (op < 7) {
          const len = 1 + rnd(200_000);
          const pos = rnd(model.length + 100_000);
          const data = randomBytesSeeded(len, 1000 + i);
          await h.write(data, 0, len, pos);
          if (pos + len > model.length) {
            const grown = Buffer.alloc(pos + len);
            model.copy(grown);
            model = grown;
          }
          data.copy(model, pos);
        } else if (op < 9) {
          const size = rnd(model.length + 300_000);
          await h.truncate(size);
          const m = Buffer.alloc(size);
          model.copy(m, 0, 0, Math.min(size, model.length));
          model = m;
        } else {
          // Interleaved reads see the writes so far.
          const pos = rnd(Math.max(1, model.length));
          const len = Math.min(65_536, model.length - pos);
          const buf = Buffer.alloc(Math.max(0, len));
          const { bytesRead } = await h.read(buf, 0, buf.length, pos);
          t.is(bytesRead, buf.length);
          t.true(buf.equals(model.subarray(pos, pos + len)), `read at ${pos} after ${i} ops`);
        }
      }
      t.is((await h.stat()).size, model.length);
    } finally {
      await h.close();
    }
    // Path truncate after close, then extend again.
    await fsp.truncate(f, 1_000_000);
    model = model.subarray(0, 1_000_000);
    if (model.length < 1_000_000) model = Buffer.concat([model, Buffer.alloc(1_000_000 - model.length)]);
    t.is(sha256(await fsp.readFile(f)), sha256(model), 'same mount');
    const f2 = await fresh();
    const back = await fsp.readFile(twin(d, f2, f));
    t.is(back.length, model.length);
    t.is(sha256(back), sha256(model), 'fresh mount: the server has the bytes');
  });

  test.serial('fsync makes the server have it before close', onDrive, kind, async (t, d) => {
    const dir = d.p(uniq('fsync'));
    await fsp.mkdir(dir);
    const f = path.join(dir, 'synced.txt');
    const h = await fsp.open(f, 'w');
    try {
      await h.write('durable');
      await h.sync();
      const other = await mountService(t, servers, d.kind);
      t.is(await fsp.readFile(other.p(path.relative(d.base, f)), 'utf8'), 'durable');
    } finally {
      await h.close();
    }
  });
}
