// Real programs whose file patterns nothing of ours chose: git (lock files renamed over their
// targets, loose objects packed and pruned, packed-refs), make (decisions by mtime), a shared mmap
// (pages written back after the descriptor closed) and SQLite (rollback journal created and
// deleted per transaction, WAL with its mmap'd -shm, fsync at every commit, vacuum). Each ends
// checked by the program itself (git fsck, make -q, PRAGMA integrity_check) and against a model of
// what it was asked to store, on the mount and through a fresh mount with an empty cache (only
// what reached the server counts). The crash case kills the program mid-transaction and then the
// drive, then the drive under the program.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { mountChild, tempDir } from '../helpers/mount.js';
import { sleep, within } from '../support/wait.js';
import { useServers, mountService, KINDS, uniq, run, sh, twin } from './lib/services.js';

const servers = useServers(test);

const GIT = ['-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'gc.auto=0', '-c', 'init.defaultBranch=main'];
const git = (dir: string, ...args: string[]) => run('git', [...GIT, '-C', dir, ...args], { timeoutMs: 240_000 });

// Three commits on main, a branch merged back, a move, a delete, a 1 MiB binary; then gc packs
// and prunes every loose object (renames of temporary packs, deletes of hundreds of files).
// $1: the folder; the rest: GIT's settings.
const GIT_HISTORY = `set -e
cd "$1"; shift
cfg=("$@")
g() { git "\${cfg[@]}" "$@"; }
g init -q .
mkdir -p src/a src/b docs
for i in $(seq 1 40); do seq 1 $((i * 40)) | sed "s/^/file $i line /" > src/a/f$i.txt; done
for i in $(seq 1 20); do seq 1 $((i * 9)) | sed "s/^/b $i /" > src/b/g$i.txt; done
head -c 1048576 /dev/urandom > docs/blob.bin
echo "readme" > docs/README
g add -A && g commit -qm one
for i in $(seq 3 12); do echo "changed $i" >> src/a/f$i.txt; done
g mv src/a/f1.txt src/b/moved.txt
g rm -q src/a/f2.txt
g commit -qam two
g checkout -qb topic
echo "on topic" >> docs/README && g commit -qam three
g checkout -q main
echo "on main" >> src/b/g1.txt && g commit -qam four
g merge -q --no-edit topic
g gc -q --prune=now
g fsck --full --strict
`;

async function gitState(t: ExecutionContext, dir: string, where: string) {
  const fsck = await git(dir, 'fsck', '--full', '--strict');
  t.is(fsck.code, 0, `${where}: git fsck: ${fsck.stderr}`);
  const status = await git(dir, 'status', '--porcelain');
  t.is(status.code, 0, status.stderr);
  t.is(status.stdout, '', `${where}: the work tree is what HEAD says`);
  const head = await git(dir, 'rev-parse', 'HEAD', 'HEAD^{tree}');
  const log = await git(dir, 'log', '--format=%s');
  const loose = await git(dir, 'count-objects');
  // the commits of one second: their order in the log is not fixed
  return { head: head.stdout, log: log.stdout.trim().split('\n').sort(), loose: loose.stdout.trim() };
}

// One transaction history, replayable: transaction i's operations come from its own seeded
// generator, so the checker rebuilds what transactions 1..n stored and compares every row.
const SQLITE_MODEL = String.raw`
import json, random, sqlite3, sys
cmd, db, mode, seed, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])

def ops(i):
    r = random.Random(seed * 1000003 + i)
    for _ in range(r.randint(1, 12)):
        k = r.randint(0, 300)
        if r.random() < 0.2:
            yield ('del', k, None)
        else:
            yield ('put', k, r.randbytes(r.randint(1, 4000)))

c = sqlite3.connect(db, isolation_level=None)
if cmd == 'run':
    c.execute('pragma journal_mode=' + mode)
    c.execute('create table if not exists t(k integer primary key, v blob)')
    c.execute('create table if not exists meta(id integer primary key, n integer)')
    c.execute('insert or ignore into meta values(1, 0)')
    start = c.execute('select n from meta where id=1').fetchone()[0]
    for i in range(start + 1, start + count + 1):
        c.execute('begin immediate')
        for op, k, v in ops(i):
            if op == 'del':
                c.execute('delete from t where k=?', (k,))
            else:
                c.execute('insert or replace into t values(?,?)', (k, v))
        c.execute('update meta set n=? where id=1', (i,))
        c.execute('commit')
        print(i, flush=True)
    if mode != 'wal':
        c.execute('vacuum')
    c.close()
    print('done', flush=True)
else:
    ok = c.execute('pragma integrity_check').fetchone()[0]
    n = c.execute('select n from meta where id=1').fetchone()[0]
    model = {}
    for i in range(1, n + 1):
        for op, k, v in ops(i):
            if op == 'del':
                model.pop(k, None)
            else:
                model[k] = v
    rows = dict(c.execute('select k, v from t'))
    bad = sorted(k for k in set(rows) | set(model) if rows.get(k) != model.get(k))
    print(json.dumps({'ok': ok, 'n': n, 'rows': len(rows), 'bad': bad[:10]}))
`;

interface SqliteCheck { ok: string; n: number; rows: number; bad: number[] }

async function sqliteCheck(t: ExecutionContext, db: string, mode: string, seed: number): Promise<SqliteCheck> {
  const r = await run('python3', ['-c', SQLITE_MODEL, 'check', db, mode, String(seed), '0'], { timeoutMs: 120_000 });
  t.is(r.code, 0, `check of ${db}: ${r.stderr}`);
  return JSON.parse(r.stdout) as SqliteCheck;
}

/** The seed of the crash test's transaction history (its writer and its checks). */
const CRASH_SEED = 11;

/** The model program run on db until it reported `commits` more commits (then a pause of up to 0.2 s). */
async function sqliteUntil(t: ExecutionContext, db: string, mode: string, commits: number) {
  const prog = spawn('python3', ['-c', SQLITE_MODEL, 'run', db, mode, String(CRASH_SEED), '100000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { prog.kill('SIGKILL'); });
  let out = '';
  let err = '';
  prog.stderr.on('data', (b: Buffer) => { err += b; });
  const exited = new Promise<void>((res) => prog.on('exit', () => res()));
  const done = () => out.split('\n').filter((l) => /^\d+$/.test(l)).map(Number);
  await within(new Promise<void>((res) => prog.stdout.on('data', (b: Buffer) => {
    out += b;
    if (done().length >= commits) res();
  })), 120_000, () => { throw new Error(`${commits} commits: none within 120 s (stderr: ${err})`); });
  await sleep(Math.random() * 200);
  return { prog, exited, last: () => done().at(-1) ?? 0 };
}

const MODES = ['delete', 'wal'] as const;

for (const kind of KINDS) {
  test.serial(`${kind}: git: commits, a branch merged, a move and a delete, gc; a fresh mount holds the same repository`, async (t) => {
    const d = await mountService(t, servers, kind);
    const dir = d.p(uniq('git'));
    await fsp.mkdir(dir);
    const r = await sh(GIT_HISTORY, [dir, ...GIT], { timeoutMs: 240_000 });
    t.is(r.code, 0, r.stderr);
    const here = await gitState(t, dir, 'on the mount');
    t.deepEqual(here.log, ['Merge branch \'topic\'', 'four', 'one', 'three', 'two']);
    t.regex(here.loose, /^0 objects/, 'gc left no loose object');
    await d.flush();
    const f = await mountService(t, servers, kind);
    const there = await gitState(t, twin(d, f, dir), 'through a fresh mount');
    t.deepEqual(there, here);
  });

  test.serial(`${kind}: git push to a bare repository on the drive (objects moved out of quarantine), then a clone of it through a fresh mount`, async (t) => {
    const d = await mountService(t, servers, kind);
    const dir = d.p(uniq('bare'));
    await fsp.mkdir(dir);
    const bare = path.join(dir, 'origin.git');
    const local = path.join(tempDir(t, 'cm-git-'), 'work');
    await fsp.mkdir(local);
    t.is((await git(dir, 'init', '-q', '--bare', bare)).code, 0);
    // the first push (~90 objects) is kept as a pack, the second (a handful) is unpacked into
    // loose objects: both of receive-pack's ways out of its quarantine folder, in few folders
    // (on Maxxo each new folder costs an rsync run or two)
    t.is((await git(bare, 'config', 'receive.unpackLimit', '20')).code, 0);
    const r = await sh(GIT_HISTORY, [local, ...GIT], { timeoutMs: 240_000 });
    t.is(r.code, 0, r.stderr);
    const push = await git(local, 'push', '-q', bare, 'main', 'topic');
    t.is(push.code, 0, push.stderr);
    // a second push of a few new objects
    await fsp.appendFile(path.join(local, 'docs', 'README'), 'after the first push\n');
    t.is((await git(local, 'commit', '-qam', 'five')).code, 0);
    const again = await git(local, 'push', '-q', bare, 'main');
    t.is(again.code, 0, again.stderr);
    const counts = (await git(bare, 'count-objects', '-v')).stdout;
    t.regex(counts, /^count: [1-9]/m, 'loose objects from the second push');
    t.regex(counts, /^packs: 1$/m, 'the first push kept as a pack');
    const want = (await git(local, 'rev-parse', 'main', 'topic')).stdout;
    t.is((await git(bare, 'fsck', '--full', '--strict')).code, 0, 'fsck on the mount');
    await d.flush();
    const f = await mountService(t, servers, kind);
    const clone = path.join(tempDir(t, 'cm-git-'), 'clone');
    // --no-local: every object read through the fresh mount by pack-objects and checked by
    // index-pack on the way in (a local clone would copy the files unread)
    const c = await git(path.dirname(clone), 'clone', '-q', '--no-local', twin(d, f, bare), clone);
    t.is(c.code, 0, c.stderr);
    t.is((await git(clone, 'rev-parse', 'origin/main', 'origin/topic')).stdout, want);
    t.is((await git(clone, 'fsck', '--full', '--strict')).code, 0, 'fsck of the clone');
    t.is(await fsp.readFile(path.join(clone, 'docs', 'README'), 'utf8'), 'readme\non topic\nafter the first push\n');
  });

  test.serial(`${kind}: make: a build, an edit, a rebuild of what changed only; through a fresh mount nothing is out of date`, async (t) => {
    const d = await mountService(t, servers, kind);
    const dir = d.p(uniq('make'));
    await fsp.mkdir(dir);
    await fsp.writeFile(path.join(dir, 'main.c'), '#include <stdio.h>\nint f(void);\nint main(void) { printf("%d\\n", f()); return 0; }\n');
    await fsp.writeFile(path.join(dir, 'f.c'), 'int f(void) { return 1; }\n');
    await fsp.writeFile(path.join(dir, 'Makefile'), 'app: main.o f.o\n\tcc -o app main.o f.o\n%.o: %.c\n\tcc -c $<\n');
    const make = (...a: string[]) => run('make', ['-C', dir, '--no-print-directory', ...a], { timeoutMs: 120_000 });
    const first = await make();
    t.is(first.code, 0, first.stderr);
    t.is((await run(path.join(dir, 'app'), [])).stdout, '1\n');
    // the server keeps whole seconds: an edit in the build's second would look as old as its object
    await sleep(1100);
    await fsp.writeFile(path.join(dir, 'f.c'), 'int f(void) { return 2; }\n');
    const second = await make();
    t.is(second.code, 0, second.stderr);
    t.deepEqual(second.stdout.trim().split('\n'), ['cc -c f.c', 'cc -o app main.o f.o'], 'only f.c and the link');
    t.is((await run(path.join(dir, 'app'), [])).stdout, '2\n');
    t.is((await make('-q')).code, 0, 'up to date on the mount');
    await d.flush();
    const f = await mountService(t, servers, kind);
    const q = await run('make', ['-C', twin(d, f, dir), '-q'], { timeoutMs: 60_000 });
    t.is(q.code, 0, 'up to date through a fresh mount: every time is the one make saw');
  });

  test.serial(`${kind}: a file written through a shared mmap (its fd closed before the last stores) reaches the server whole`, async (t) => {
    const d = await mountService(t, servers, kind);
    const dir = d.p(uniq('mmap'));
    await fsp.mkdir(dir);
    const file = path.join(dir, 'mapped.bin');
    // 3 MiB of a pattern; the last MiB stored after the descriptor is closed (the mapping keeps
    // the file open: its pages reach the drive by writeback, before or after the release)
    const r = await run('python3', ['-c', `
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 3 << 20)
m = mmap.mmap(fd, 3 << 20)
os.close(fd)
for i in range(3 << 20 >> 12):
    m[i << 12:(i + 1) << 12] = bytes([i & 255]) * 4096
m.flush()
m[(3 << 20) - 5:] = b'tail!'
m.close()
`, file], { timeoutMs: 60_000 });
    t.is(r.code, 0, r.stderr);
    const want = Buffer.alloc(3 << 20);
    for (let i = 0; i < (3 << 20) >> 12; i++) want.fill(i & 255, i << 12, (i + 1) << 12);
    want.write('tail!', (3 << 20) - 5);
    t.true((await fsp.readFile(file)).equals(want), 'on the mount');
    await d.flush();
    const f = await mountService(t, servers, kind);
    t.true((await fsp.readFile(twin(d, f, file))).equals(want), 'through a fresh mount');
  });

  for (const mode of MODES) {
    test.serial(`${kind}: sqlite (${mode} journal): 40 transactions and ${mode === 'wal' ? 'a close' : 'a vacuum'} match their model, on the mount and through a fresh mount`, async (t) => {
      const d = await mountService(t, servers, kind);
      const dir = d.p(uniq('sqlite'));
      await fsp.mkdir(dir);
      const db = path.join(dir, 'model.db');
      const r = await run('python3', ['-c', SQLITE_MODEL, 'run', db, mode, '7', '40'], { timeoutMs: 240_000 });
      t.is(r.code, 0, r.stderr);
      t.true(r.stdout.endsWith('40\ndone\n'));
      const here = await sqliteCheck(t, db, mode, 7);
      t.deepEqual(here, { ok: 'ok', n: 40, rows: here.rows, bad: [] });
      t.true(here.rows > 100);
      await d.flush();
      const f = await mountService(t, servers, kind);
      t.deepEqual(await sqliteCheck(t, twin(d, f, db), mode, 7), here);
      // the journal was deleted at each commit; WAL's files go with the last close
      t.deepEqual((await fsp.readdir(twin(d, f, dir))).sort(), ['model.db']);
    });

    test.serial(`${kind}: sqlite (${mode} journal) killed mid-transaction, then the drive; then the drive killed under it: every committed transaction survives both`, async (t) => {
      const d = await mountService(t, servers, kind);
      const dir = d.p(uniq('sqlite-crash'));
      await fsp.mkdir(dir);
      const db = path.join(dir, 'crash.db');
      // 1. the program dies somewhere after a few commits, then the drive (kill -9 both)
      const p1 = await sqliteUntil(t, db, mode, 4 + Math.floor(Math.random() * 8));
      p1.prog.kill('SIGKILL');
      await p1.exited;
      await d.kill9();
      const last1 = p1.last();
      // the same cache: what the killed drive had journalled goes out now
      const d2 = await mountChild(t, { ...d.cfg, mountpoint: d.mnt });
      await d2.flush();
      t.deepEqual((await d2.status()).failures, []);
      t.is(await d2.stop(), 0);
      const f = await mountService(t, servers, kind);
      const got1 = await sqliteCheck(t, twin(d, f, db), mode, CRASH_SEED);
      t.is(got1.ok, 'ok');
      t.deepEqual(got1.bad, [], 'every row is what transactions 1..n stored');
      // the program may have died between a commit and its print of it
      t.true(got1.n === last1 || got1.n === last1 + 1, `${got1.n} transactions on the server, ${last1} reported committed`);
      // 2. the program goes on through the fresh mount; that drive dies under it
      const p2 = await sqliteUntil(t, twin(d, f, db), mode, 4 + Math.floor(Math.random() * 8));
      await f.kill9();
      await within(p2.exited, 30_000, () => { p2.prog.kill('SIGKILL'); });
      const last2 = Math.max(got1.n, p2.last());
      const f2 = await mountChild(t, { ...f.cfg, mountpoint: f.mnt });
      await f2.flush();
      t.deepEqual((await f2.status()).failures, []);
      const g = await mountService(t, servers, kind);
      const got2 = await sqliteCheck(t, twin(d, g, db), mode, CRASH_SEED);
      t.is(got2.ok, 'ok');
      t.deepEqual(got2.bad, []);
      t.true(got2.n === last2 || got2.n === last2 + 1, `${got2.n} transactions on the server, ${last2} reported committed`);
      t.log(`program killed after ${last1} commits: ${got1.n} on the server; drive killed after ${last2}: ${got2.n}`);
    });
  }
}
