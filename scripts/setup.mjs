#!/usr/bin/env node
// Brings a fresh machine to a runnable checkout: system packages, npm deps, build.
// Plain Node with no dependencies, because it runs before `npm ci` has.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, statSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const quiet = process.argv.includes('--quiet');
const log = (m) => { if (!quiet) console.error(`[setup] ${m}`); };

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}
function haveLib(name) {
  const r = spawnSync('sh', ['-c', `ldconfig -p | grep -q '${name}'`], { stdio: 'ignore' });
  return r.status === 0;
}

// Debian package -> how we know it is present.
const wanted = [
  ['fuse3', () => have('fusermount3') || have('fusermount')],
  ['libfuse2', () => haveLib('libfuse.so.2')],
  ['rsync', () => have('rsync')],
  ['attr', () => have('getfattr')],
  // the libfuse 3 addon (scripts/build-native.mjs): headers, pkg-config, a C compiler
  ['pkg-config', () => have('pkg-config')],
  ['libfuse3-dev', () => spawnSync('sh', ['-c', 'pkg-config --exists fuse3'], { stdio: 'ignore' }).status === 0],
  ['gcc', () => have('cc')],
  ['make', () => have('make')],
];
if (process.platform === 'linux') {
  const missing = wanted.filter(([, ok]) => !ok()).map(([p]) => p);
  if (missing.length) {
    const isRoot = process.getuid && process.getuid() === 0;
    if (!isRoot || !have('apt-get')) {
      console.error(`[setup] missing system packages: ${missing.join(' ')}\n` +
        `[setup] install them with:\n  sudo apt-get update && sudo apt-get install -y ${missing.join(' ')}`);
      process.exit(1);
    }
    log(`installing system packages: ${missing.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    execFileSync('apt-get', ['install', '-y', '-qq', ...missing], { stdio: 'inherit', env });
  }
  if (!existsSync('/dev/fuse')) {
    console.error('[setup] /dev/fuse does not exist: this machine cannot mount FUSE filesystems (modprobe fuse, or run the container with --device /dev/fuse)');
    process.exit(1);
  }
}

const mtime = (p) => { try { return statSync(p).mtimeMs; } catch { return 0; } };
const nm = join(root, 'node_modules');
const stamp = join(nm, '.package-lock.json');
let linked = false;
try { linked = lstatSync(nm).isSymbolicLink(); } catch { /* absent: installed below */ }
if (linked) {
  // npm ci empties node_modules through the link: another checkout's dependencies would vanish
  if (mtime(join(root, 'package-lock.json')) > mtime(stamp)) log('node_modules is a link to another checkout: not reinstalling it (run npm ci where it lives if the lock changed)');
} else if (!existsSync(nm) || mtime(join(root, 'package-lock.json')) > mtime(stamp)) {
  log('installing npm dependencies (npm ci; better-sqlite3 builds from source, about 80 s)');
  // One retry: a native build (better-sqlite3 via node-gyp) that trips once is not worth a red run.
  const ci = () => spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' }).status === 0;
  if (!ci()) {
    log('npm ci failed; trying once more');
    if (!ci()) { console.error('[setup] npm ci failed twice; see the output above'); process.exit(1); }
  }
}

// The libfuse 3 addon: npm ci builds it (install script) when it can; build it now if that could
// not happen then (system packages just installed, node_modules linked from another checkout) or
// if its source changed.
if (process.platform === 'linux' && !process.env.CLOUDMOUNT_SKIP_NATIVE) {
  const addon = join(root, 'build', 'Release', 'cmfuse3.node');
  const srcM = Math.max(mtime(join(root, 'native', 'cmfuse3.c')), mtime(join(root, 'binding.gyp')));
  if (mtime(addon) < srcM) {
    log('building the libfuse 3 addon (node-gyp)');
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--strict'], { cwd: root, stdio: 'inherit' });
    if (r.status !== 0) { console.error('[setup] the libfuse 3 addon did not build; see above'); process.exit(1); }
  }
}

// Rebuild when any source is newer than the last build.
function newest(dir) {
  let m = 0;
  if (!existsSync(dir)) return 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    m = Math.max(m, e.isDirectory() ? newest(p) : mtime(p));
  }
  return m;
}
const built = mtime(join(root, 'dist', '.built'));
const src = Math.max(newest(join(root, 'src')), newest(join(root, 'test')), newest(join(root, 'tools')), mtime(join(root, 'tsconfig.json')));
if (!built || src > built) {
  log('building (tsc)');
  const r = spawnSync(join(nm, '.bin', 'tsc'), ['-p', root], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) { console.error('[setup] TypeScript build failed'); process.exit(1); }
  execFileSync('touch', [join(root, 'dist', '.built')]);
}
