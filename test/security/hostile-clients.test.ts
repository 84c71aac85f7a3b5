// Hostile input, client side: a tiny fake server per service answers with seeded, mutated
// versions of valid answers (wrong types, huge/negative sizes, names with '/', NUL, '..', 10,000
// characters, duplicates, broken JSON, wrong statuses, listings that change on every call).
// The clients must never crash or hand on a bad name/size; the vfs must answer every call with a
// known errno or a valid result; a real FUSE mount on such a server must stay inside its folder.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isRemoteError } from '../../src/errors.js';
import { validName } from '../../src/remote/names.js';
import type { Remote, RemoteEntry } from '../../src/remote/types.js';
import { VboxxRemote } from '../../src/remote/vboxx/index.js';
import { createMaxxoRemote } from '../../src/remote/maxxo/index.js';
import { Vfs, defaultVfsOptions } from '../../src/vfs/vfs.js';
import { errnoName } from '../../src/fuse/errno.js';
import { createLogger } from '../../src/log.js';
import { mountChild, tempDir } from '../helpers/mount.js';
import { fakeServer, maxxoHandler, pick, prng, vboxxHandler, type FakeServer } from './hostile-lib.js';

type Kind = 'vboxx' | 'maxxo';
const OPS = Number(process.env.CM_FUZZ_OPS ?? 400);

const unexpected: string[] = [];
process.on('unhandledRejection', (e) => { unexpected.push(`unhandledRejection: ${(e as Error)?.stack ?? e}`); });
process.on('uncaughtException', (e) => { unexpected.push(`uncaughtException: ${e?.stack ?? e}`); });

async function server(t: ExecutionContext, kind: Kind, seed: number, p = 0.15): Promise<FakeServer> {
  const s = await fakeServer(seed, kind === 'vboxx' ? vboxxHandler(p) : maxxoHandler(p));
  t.teardown(() => s.close());
  return s;
}

function client(kind: Kind, url: string, logLines: string[]): Remote {
  const log = createLogger('warn', (l) => { if (logLines.length < 5000) logLines.push(l); });
  const common = { server: url, password: 'fuzz-password-xyz', timeoutMs: 3000, maxAttempts: 2, maxRetryTimeMs: 5000, log };
  return kind === 'vboxx'
    ? new VboxxRemote({ ...common, user: 'demo', backoffBaseMs: 5 })
    : createMaxxoRemote({ ...common, user: 'demo@maxxo.test' });
}

function checkEntry(t: ExecutionContext, e: RemoteEntry, where: string): boolean {
  const ok = validName(e.name) && (e.type === 'file' || e.type === 'dir') && Number.isSafeInteger(e.size) && e.size >= 0
    && (e.mtimeMs === undefined || Number.isFinite(e.mtimeMs));
  if (!ok) t.fail(`${where}: bad entry handed on: ${JSON.stringify(e).slice(0, 200)}`);
  return ok;
}

for (const kind of ['vboxx', 'maxxo'] as Kind[]) {
  test(`${kind} client: ${OPS} calls against a fuzzing server never crash nor hand on a bad name or size`, async (t) => {
    t.timeout(170_000);
    const srv = await server(t, kind, kind === 'vboxx' ? 101 : 202);
    const lines: string[] = [];
    const remote = client(kind, srv.url, lines);
    t.teardown(() => remote.close());
    const tmp = tempDir(t, 'cm-fuzz-client-');
    const src = path.join(tmp, 'up.bin');
    await fsp.writeFile(src, 'upload me');
    const r = prng(kind === 'vboxx' ? 5 : 6);
    const known = ['/', '/Files', '/Files/a', '/a', '/file-1.txt', '/Files/file-2.txt'];
    const tally: Record<string, number> = {};
    let entries = 0;
    for (let i = 0; i < OPS; i++) {
      const p = pick(r, known);
      const op = pick(r, ['list', 'list', 'list', 'stat', 'statMany', 'statfs', 'read', 'mkdir', 'move', 'remove', 'upload', 'download']);
      try {
        switch (op) {
          case 'list': {
            const l = await remote.list(p);
            for (const e of l.entries) if (checkEntry(t, e, `list ${p}`)) { entries++; if (known.length < 60) known.push(path.posix.join(p, e.name)); }
            break;
          }
          // The top folder's own name is the client's convention ('' or '/'), not a name from the server.
          case 'stat': { const e = await remote.stat(p); if (e) checkEntry(t, p === '/' ? { ...e, name: 'top' } : e, `stat ${p}`); break; }
          case 'statMany': {
            if (!remote.batchStat) break;
            const q = [p, pick(r, known)];
            (await remote.batchStat.statMany(q)).forEach((e, k) => { if (e) checkEntry(t, q[k] === '/' ? { ...e, name: 'top' } : e, 'statMany'); });
            break;
          }
          case 'statfs': {
            const s = await remote.statfs();
            t.true((s.total === null || (Number.isFinite(s.total) && s.total >= 0)) && Number.isFinite(s.used) && s.used >= 0, `statfs ${JSON.stringify(s)}`);
            break;
          }
          case 'read': {
            if (!remote.ranged) break;
            const len = 1 + Math.floor(r() * 5000);
            const off = Math.floor(r() * 100);
            let inside = true;
            const got = await remote.ranged.readTo(p, off, len, (chunk, pos) => { inside &&= pos >= off && pos + chunk.length <= off + len; });
            t.true(got.bytes <= len, `read returned ${got.bytes} > ${len} bytes`);
            t.true(inside, 'every chunk inside the range asked for');
            break;
          }
          case 'mkdir': await remote.mkdir(`${p === '/' ? '' : p}/new-${i}`); break;
          case 'move': await remote.move(p, `${path.posix.dirname(p)}/moved-${i}`); break;
          case 'remove': await remote.remove([p]); break;
          case 'upload': { const e = await remote.upload(src, `${p === '/' ? '' : p}/up-${i}.bin`); checkEntry(t, e, 'upload result'); break; }
          case 'download': {
            const dst = path.join(tmp, 'down.bin');
            await remote.download(p, dst);
            t.true(fs.statSync(dst).isFile());
            break;
          }
        }
        tally[`${op} ok`] = (tally[`${op} ok`] ?? 0) + 1;
      } catch (e) {
        if (!isRemoteError(e)) t.fail(`${op} ${p}: not a typed error: ${(e as Error)?.stack ?? e}`);
        else {
          t.truthy(e.code && e.message, 'typed error with a code and a message');
          tally[e.code] = (tally[e.code] ?? 0) + 1;
        }
      }
    }
    // The download target is the only file we allowed the client to write.
    t.deepEqual(fs.readdirSync(tmp).sort(), fs.readdirSync(tmp).includes('down.bin') ? ['down.bin', 'up.bin'] : ['up.bin']);
    t.false(lines.some((l) => l.includes('fuzz-password-xyz')), 'the password never reaches the log');
    t.deepEqual(unexpected, []);
    t.log(`${kind} client: calls ${OPS}, server requests ${srv.requests}, valid entries handed on ${entries}, warnings logged ${lines.length}; outcomes ${JSON.stringify(tally)}`);
  });

  test(`${kind} vfs: every call on a fuzzing server gives a result or a known errno`, async (t) => {
    t.timeout(170_000);
    const srv = await server(t, kind, kind === 'vboxx' ? 303 : 404);
    const lines: string[] = [];
    const remote = client(kind, srv.url, lines);
    t.teardown(() => remote.close());
    const parent = tempDir(t, 'cm-fuzz-vfs-');
    const cacheDir = path.join(parent, 'cache');
    const vfs = new Vfs(remote, {
      ...defaultVfsOptions('fuzz'), cacheDir, writebackDelayMs: 0, opTimeoutMs: 5000, attrTtlMs: 0, dirTtlMs: 0, negativeTtlMs: 0,
      log: createLogger('warn', (l) => { if (lines.length < 5000) lines.push(l); }),
    });
    t.teardown(() => vfs.close({ force: true }));
    await vfs.start();
    const r = prng(kind === 'vboxx' ? 7 : 8);
    const known = ['/', '/Files', '/file-1.txt', '/Files/file-2.txt'];
    const errnos: Record<string, number> = {};
    let ok = 0;
    for (let i = 0; i < OPS; i++) {
      const p = pick(r, known);
      const op = pick(r, ['readdir', 'readdir', 'getattr', 'read', 'write', 'mkdir', 'rename', 'unlink', 'rmdir', 'statfs']);
      try {
        switch (op) {
          case 'readdir': {
            const names = (await vfs.readdir(p)).map((e) => e.name);
            t.is(new Set(names).size, names.length, `readdir ${p}: names are unique`);
            for (const n of names) {
              t.true(validName(n), `readdir ${p}: valid name ${JSON.stringify(n.slice(0, 50))}`);
              if (known.length < 60) known.push(path.posix.join(p, n));
            }
            break;
          }
          case 'getattr': {
            const a = await vfs.getattr(p);
            t.true(Number.isSafeInteger(a.size) && a.size >= 0, `getattr ${p}: size ${a.size}`);
            break;
          }
          case 'read': {
            const fh = await vfs.open(p, 0);
            try {
              const buf = Buffer.alloc(4096);
              const n = await vfs.read(p, fh, buf, 4096, 0);
              t.true(n >= 0 && n <= 4096);
            } finally { await vfs.release(p, fh); }
            break;
          }
          case 'write': {
            const f = `${p === '/' ? '' : p}/w-${i}.txt`;
            const fh = await vfs.create(f, 0o644, 0o1 | fs.constants.O_CREAT);
            try {
              await vfs.write(f, fh, Buffer.from('hello'), 5, 0);
              await vfs.flush(f, fh);
            } finally { await vfs.release(f, fh); }
            break;
          }
          case 'mkdir': await vfs.mkdir(`${p === '/' ? '' : p}/d-${i}`, 0o755); break;
          case 'rename': await vfs.rename(p, `${path.posix.dirname(p)}/r-${i}`); break;
          case 'unlink': await vfs.unlink(p); break;
          case 'rmdir': await vfs.rmdir(p); break;
          case 'statfs': await vfs.statfs(p); break;
        }
        ok++;
      } catch (e) {
        const name = errnoName(e);
        if (!name) t.fail(`${op} ${p}: no errno for ${(e as Error)?.stack ?? e}`);
        else errnos[name] = (errnos[name] ?? 0) + 1;
      }
    }
    // Nothing was written outside the cache dir, whatever names the server sent.
    t.deepEqual(fs.readdirSync(parent), ['cache']);
    t.deepEqual(unexpected, []);
    t.log(`${kind} vfs: calls ${OPS}, ok ${ok}, server requests ${srv.requests}; errnos ${JSON.stringify(errnos)}`);
  });
}

/** Runs a program, killed after ms; resolves with its output. */
function prog(cmd: string, args: string[], ms: number): Promise<{ code: number | null; signal: string | null; out: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => { if (out.length < 1_000_000) out += d; });
    c.stderr.setEncoding('utf8').on('data', (d: string) => { if (out.length < 1_000_000) out += d; });
    const k = setTimeout(() => c.kill('SIGKILL'), ms);
    c.on('close', (code, signal) => { clearTimeout(k); resolve({ code, signal, out }); });
  });
}

for (const kind of ['vboxx', 'maxxo'] as Kind[]) {
  test.serial(`${kind} mount on a fuzzing server: find, ls -lR, cat, writes stay inside the mount; the drive survives`, async (t) => {
    t.timeout(170_000);
    // Fewer mutations, so the mount's login probe gets through now and then.
    const srv = await server(t, kind, kind === 'vboxx' ? 505 : 606, 0.08);
    const parent = tempDir(t, 'cm-fuzz-mnt-');
    const mnt = path.join(parent, 'mnt');
    const cacheDir = path.join(parent, 'cache');
    let h;
    let why = '';
    for (let attempt = 0; attempt < 10 && !h; attempt++) {
      try {
        h = await mountChild(t, {
          kind, server: srv.url, user: kind === 'vboxx' ? 'demo' : 'demo@maxxo.test', password: 'fuzz-password-xyz',
          mountpoint: mnt, accountId: 'fuzz', cacheDir,
          vfs: { writebackDelayMs: 0, opTimeoutMs: 5000, attrTtlMs: 0, dirTtlMs: 0, negativeTtlMs: 0 },
          mount: { opMarginMs: 1000, longOpTimeoutMs: 15_000 },
          client: { timeoutMs: 3000, maxAttempts: 2, maxRetryTimeMs: 5000 },
        });
      } catch (e) { why = (e as Error).message; /* the probe met a broken answer: try again */ }
    }
    if (!h) { t.fail(`the mount never came up: ${why}`); return; }
    const runs: string[] = [];
    for (let round = 0; round < 4; round++) {
      const find = await prog('find', [mnt, '-maxdepth', '4'], 60_000);
      t.is(find.signal, null, 'find returns');
      for (const line of find.out.split('\n').filter((l) => l.startsWith('/'))) {
        t.true(line === mnt || line.startsWith(mnt + '/'), `inside the mount: ${line.slice(0, 120)}`);
        t.false(line.split('/').includes('..'), `no '..' component: ${line.slice(0, 120)}`);
      }
      const ls = await prog('ls', ['-laR', mnt], 60_000);
      t.is(ls.signal, null, 'ls -lR returns');
      const files = find.out.split('\n').filter((l) => l.startsWith(mnt + '/')).slice(0, 8);
      for (const f of files) {
        const c = await prog('head', ['-c', '65536', f], 30_000);
        t.is(c.signal, null, `read of ${f.slice(0, 80)} returns`);
      }
      const w = await prog('sh', ['-c', 'printf x > "$1/w.txt"; mkdir "$1/d" ; mv "$1/w.txt" "$1/d/w2.txt"; rm -rf "$1/d"', 'sh', kind === 'vboxx' ? path.join(mnt, 'Files') : mnt], 60_000);
      t.is(w.signal, null, 'writes return');
      runs.push(`round ${round}: ${find.out.split('\n').length - 1} paths`);
    }
    const st = await h.status();
    t.truthy(st, 'the drive still answers');
    t.is(h.child.exitCode, null, 'the drive process is alive');
    t.deepEqual(fs.readdirSync(parent).sort(), ['cache', 'mnt'], 'nothing created beside the mount');
    t.false(fs.existsSync(path.join(os.tmpdir(), 'escape')), 'no ../escape');
    t.is(await h.stop(), 0);
    t.log(`${kind} mount: server requests ${srv.requests}; ${runs.join(', ')}`);
  });
}
