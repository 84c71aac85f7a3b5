#!/usr/bin/env node
// Builds the libfuse 3 addon (native/cmfuse3.c -> build/Release/cmfuse3.node) with node-gyp.
// Runs as the root package's `install` script, so `npm ci` builds it. The addon is optional:
// without it cloudmount uses fuse-native, so by default any failure (macOS, no libfuse3-dev, no
// compiler) prints why and exits 0, never failing `npm ci`. `--strict` (setup.mjs, CI) exits 1.
// `--asan` builds with AddressSanitizer (native-notes/lowlevel.md).
// Plain Node with no dependencies.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const strict = process.argv.includes('--strict');
const asan = process.argv.includes('--asan');
const say = (m) => console.error(`[cmfuse3] ${m}`);
const give_up = (why, fix) => {
  say(`not built: ${why}`);
  if (fix) say(fix);
  say('cloudmount still works with the fuse-native backend (libfuse 2).');
  process.exit(strict ? 1 : 0);
};
const ok = (cmd, args) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;

if (process.env.CLOUDMOUNT_SKIP_NATIVE) give_up('CLOUDMOUNT_SKIP_NATIVE is set');
if (process.platform !== 'linux') {
  say(`skipped on ${process.platform}: the libfuse 3 backend is Linux-only`);
  process.exit(0);
}
if (!ok('pkg-config', ['--version'])) give_up('pkg-config is missing', 'install it: apt-get install -y pkg-config libfuse3-dev (node scripts/setup.mjs does this as root)');
if (!ok('pkg-config', ['--exists', 'fuse3'])) give_up('libfuse 3 headers are missing', 'install them: apt-get install -y libfuse3-dev (node scripts/setup.mjs does this as root)');
if (!ok('cc', ['--version']) || !ok('make', ['--version'])) give_up('no C compiler or make', 'install them: apt-get install -y gcc make');

// npm hands lifecycle scripts its bundled node-gyp; elsewhere look beside this node, then PATH.
const gyp = [
  process.env.npm_config_node_gyp,
  join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
].find((p) => p && existsSync(p));
const args = gyp ? [gyp, 'rebuild'] : null;
if (!args && !ok('node-gyp', ['--version'])) give_up('node-gyp not found', 'run this through npm (npm run build:native), which brings its own');
// Node's own headers: a download of them from the internet is not possible everywhere.
const nodedir = process.env.npm_config_nodedir ||
  [join(dirname(process.execPath), '..')].find((d) => existsSync(join(d, 'include', 'node', 'node_api.h')));
const extra = [];
if (nodedir) extra.push(`--nodedir=${nodedir}`);
if (asan) extra.push('--debug');
say(`building${asan ? ' with AddressSanitizer' : ''} (libfuse ${spawnSync('pkg-config', ['--modversion', 'fuse3']).stdout?.toString().trim()})`);
const env = { ...process.env, ...(asan ? { CMFUSE3_ASAN: '1' } : {}) };
const gypRun = () => args
  ? spawnSync(process.execPath, [...args, ...extra], { cwd: root, encoding: 'utf8', env })
  : spawnSync('node-gyp', ['rebuild', ...extra], { cwd: root, encoding: 'utf8', env });
// node-gyp rebuild empties build/: the ASan build is kept aside in build-asan/ (not next to the
// Release addon it would otherwise delete) and the Release one is rebuilt after it.
const r = gypRun();
if (r.status !== 0) {
  process.stderr.write((r.stdout ?? '').split('\n').slice(-30).join('\n'));
  process.stderr.write((r.stderr ?? '').split('\n').filter((l) => !l.startsWith('gyp info')).slice(-30).join('\n'));
  give_up('the compile failed (output above)');
}
if (asan) {
  mkdirSync(join(root, 'build-asan'), { recursive: true });
  copyFileSync(join(root, 'build', 'Debug', 'cmfuse3.node'), join(root, 'build-asan', 'cmfuse3.node'));
  say('built build-asan/cmfuse3.node; run with: LD_PRELOAD=$(cc -print-file-name=libasan.so) CMFUSE3_ADDON=build-asan/cmfuse3.node');
  say('rebuilding the Release addon');
  const r2 = spawnSync(process.execPath, [process.argv[1], ...(strict ? ['--strict'] : [])], { cwd: root, stdio: 'inherit' });
  process.exit(r2.status ?? 1);
}
say('built build/Release/cmfuse3.node');
