// Paths up to PATH_MAX inside the mount work on both services; a longer one is ENAMETOOLONG and
// leaves nothing behind on the server. A program reaches such depths by cd'ing down (an absolute
// path, mountpoint included, stops at PATH_MAX in the kernel), so the walk runs in a child node
// process with relative names; the server is checked with a client of its own.
import test from 'ava';
import fsp from 'node:fs/promises';
import { createMaxxoRemote } from '../../src/remote/maxxo/index.js';
import { createVboxxRemote } from '../../src/remote/vboxx/index.js';
import type { Remote } from '../../src/remote/types.js';
import { useServers, mountService, KINDS, DEMO, uniq, run, type Kind } from './lib/services.js';

const servers = useServers(test);

// argv: start folder, then component names; creates and enters each, writes f.txt (fsync: on the
// server before it returns) in the last, then tries one more component; prints JSON.
const WALK = `
const fs = require('fs');
const [start, extra, ...names] = process.argv.slice(1);
process.chdir(start);
const out = { made: 0 };
try {
  for (const n of names) { fs.mkdirSync(n); process.chdir(n); out.made++; }
  const fd = fs.openSync('f.txt', 'w'); fs.writeSync(fd, 'deep content'); fs.fsyncSync(fd); fs.closeSync(fd);
  out.read = fs.readFileSync('f.txt', 'utf8');
} catch (e) { out.error = e.code; }
try { fs.mkdirSync(extra); out.extra = 'OK'; } catch (e) { out.extra = e.code; }
out.listed = fs.readdirSync('.').sort();
console.log(JSON.stringify(out));
`;

function remoteFor(kind: Kind): Remote {
  const o = { server: servers.url, user: DEMO[kind].user, password: DEMO[kind].password };
  return kind === 'maxxo' ? createMaxxoRemote(o) : createVboxxRemote(o);
}

for (const kind of KINDS) {
  for (const [label, unit] of [['ASCII', 'd'], ['two-byte UTF-8', 'é']] as const) {
    test.serial(`${kind}: ${label} paths of 3950 bytes work, one past PATH_MAX is ENAMETOOLONG and not made`, async (t) => {
      const d = await mountService(t, servers, kind);
      const top = uniq('lp');
      await fsp.mkdir(d.p(top));
      const inMount = d.p(top).slice(d.mnt.length); // "/lp-..." or "/Files/lp-..."
      // ~250-byte components to 3950 bytes (the Maxxo reference server keeps files by absolute
      // host paths under its data folder, which costs it ~100 of the 4095 bytes: its own limit),
      // then a name that takes the path past PATH_MAX
      const comp = (i: number) => String.fromCharCode(97 + i) + unit.repeat(Math.floor(249 / Buffer.byteLength(unit)));
      const TARGET = 3950;
      const names: string[] = [];
      let len = Buffer.byteLength(inMount);
      for (let i = 0; len + 1 + Buffer.byteLength(comp(i)) <= TARGET; i++) { names.push(comp(i)); len += 1 + Buffer.byteLength(comp(i)); }
      if (len < TARGET - 1) { names.push('p'.repeat(TARGET - len - 1)); len = TARGET; }
      // one more name than PATH_MAX (4096 with its NUL) holds
      const extra = 'z'.repeat(4096 - len);
      const r = await run(process.execPath, ['-e', WALK, d.p(top), extra, ...names], { timeoutMs: 120_000 });
      t.is(r.code, 0, r.stderr);
      const res = JSON.parse(r.stdout) as { made: number; error?: string; read?: string; extra: string; listed: string[] };
      t.is(res.error, undefined, `failed after ${res.made} levels (path ${len} bytes)`);
      t.is(res.made, names.length);
      t.is(res.read, 'deep content');
      t.is(res.extra, 'ENAMETOOLONG');
      t.deepEqual(res.listed, ['f.txt'], 'the refused folder is not there');

      const remote = remoteFor(kind);
      t.teardown(() => remote.close());
      const deepDir = [inMount, ...names].join('/');
      const e = await remote.stat(`${deepDir}/f.txt`);
      t.is(e?.size, 'deep content'.length, 'the file is on the server');
      t.deepEqual((await remote.list(deepDir)).entries.map((x) => x.name), ['f.txt'], 'no half-made folder on the server');
    });
  }
}
