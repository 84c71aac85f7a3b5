// The README's shell blocks, run as written. Every ```sh block carries a marker comment right
// before it:
//   <!-- test: run ... -->       run here (a temp HOME; the "real account" block against the
//                                 reference servers, with their URL and demo users put in)
//   <!-- test: run demo ... -->  run in a checkout while `cloudmount demo` runs there
//   <!-- test: skip (why) -->    not run, with the reason (npm itself, sudo into /sbin)
// so a new block without a marker fails here. npm start/test themselves are never run: their
// parts (the demo, the CLI) are. Mounts run in children and are torn down whatever happens.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, symlinkSync, copyFileSync, accessSync, constants, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import { createVboxxRemote } from '../../src/remote/vboxx/index.js';
import { REPO, makeHome, isMounted, type Home } from './helpers.js';
import { ptyCli, hasScript } from './pty.js';

interface Block { kind: 'run' | 'run demo' | 'skip'; marker: string; code: string; line: number }

function shellBlocks(md: string): Block[] {
  const lines = md.split('\n');
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(sh|bash|shell)\s*$/.test(lines[i]!)) continue;
    let j = i - 1;
    while (j >= 0 && lines[j]!.trim() === '') j--;
    const marker = lines[j]?.trim() ?? '';
    const m = /^<!-- test: (run demo|run|skip)\b.*-->$/.exec(marker);
    const end = lines.indexOf('```', i + 1);
    out.push({ kind: (m?.[1] ?? 'missing') as Block['kind'], marker, code: lines.slice(i + 1, end).join('\n'), line: i + 1 });
    i = end;
  }
  return out;
}

const README = readFileSync(join(REPO, 'README.md'), 'utf8');
const blocks = shellBlocks(README);

interface Out { code: number | null; out: string }
/** bash -e on a block, in cwd with env; stdout and stderr together (what a terminal would show). */
function bash(script: string, o: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Out> {
  return new Promise((resolve) => {
    const c = spawn('bash', ['-e', '-o', 'pipefail', '-c', script], { cwd: o.cwd, env: o.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    c.stderr.setEncoding('utf8').on('data', (d: string) => { out += d; });
    const t = setTimeout(() => c.kill('SIGKILL'), o.timeoutMs ?? 180_000);
    c.on('close', (code) => { clearTimeout(t); resolve({ code, out }); });
  });
}

/** A home like a fresh user's: ~/.local/bin on PATH (as distributions' profiles add it). */
function userEnv(h: Home, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...h.env, PATH: `${join(h.env.HOME!, '.local', 'bin')}:${process.env.PATH}`, ...extra };
}

function unmountOnTeardown(t: { teardown(fn: () => void): void }, mps: string[]): void {
  t.teardown(() => {
    for (const mp of mps) {
      if (!isMounted(mp)) continue;
      spawnSync('fusermount', ['-uz', mp]);
    }
  });
}

test('every shell block of the README is marked run or skip (with a reason)', (t) => {
  t.true(blocks.length >= 5, `found ${blocks.length} shell blocks`);
  for (const b of blocks) {
    t.not(b.kind as string, 'missing', `README line ${b.line}: a shell block without <!-- test: run|skip ... --> before it`);
    if (b.kind === 'skip') t.regex(b.marker, /skip \(.+\)/, `README line ${b.line}: a skip says why`);
  }
  t.true(blocks.filter((b) => b.kind !== 'skip').length >= 3, 'the runnable blocks are run');
});

let emu: Emulator | undefined;
test.after.always(async () => { await emu?.close(); });

test.serial('the "mounting a real account" block, against the reference servers', async (t) => {
  t.timeout(600_000);
  const b = blocks.find((x) => x.kind === 'run' && /cloudmount login/.test(x.code));
  if (!b) return t.fail('no runnable block with cloudmount login');
  emu = await startEmulator();
  // The block shares ~/vBoxx/Files/report.pdf: the account has one, as the example assumes.
  const vb = createVboxxRemote({ server: emu.url, user: 'demo', password: 'demo-password' });
  try {
    const info = await vb.client.accountInfo();
    const files = info.roots.find((r) => r.name === 'Files')!;
    await vb.client.filesPut(files.id, 'report.pdf', Buffer.from('%PDF-1.4 example\n'));
  } finally { await vb.close(); }

  const script = b.code
    .replaceAll('https://maxxo.example', emu.url).replaceAll('https://web.vboxx.example', emu.url)
    .replaceAll('me@example.com', 'demo@maxxo.test').replace(/--username me\b/g, '--username demo');
  const h = makeHome();
  const home = h.env.HOME!;
  unmountOnTeardown(t, [join(home, 'Maxxo'), join(home, 'vBoxx')]);
  // The password: a person types it at the prompt; here it comes from the environment.
  const r = await bash(script, { cwd: REPO, env: userEnv(h, { CLOUDMOUNT_PASSWORD: 'demo-password' }), timeoutMs: 480_000 });
  t.is(r.code, 0, r.out);
  t.regex(r.out, /saved account work: maxxo demo@maxxo\.test/);
  t.regex(r.out, /saved account box: vboxx demo/);
  t.regex(r.out, /^https?:\/\/\S+\/s\/\S+$/m, 'the share link');
  t.false(isMounted(join(home, 'Maxxo')), 'the block unmounts ~/Maxxo');
  t.true(isMounted(join(home, 'vBoxx')), 'and leaves ~/vBoxx mounted');
  const um = await bash('cloudmount unmount ~/vBoxx', { cwd: home, env: userEnv(h), timeoutMs: 120_000 });
  t.is(um.code, 0, um.out);
});

test('the systemd block installs a unit whose commands exist (systemctl itself is not run)', async (t) => {
  const b = blocks.find((x) => x.kind === 'run' && /systemd/.test(x.code));
  if (!b) return t.fail('no runnable systemd block');
  const h = makeHome();
  const script = b.code.split('\n').filter((l) => !/^\s*systemctl\b/.test(l)).join('\n');
  const r = await bash(script, { cwd: REPO, env: userEnv(h) });
  t.is(r.code, 0, r.out);
  const home = h.env.HOME!;
  const unit = readFileSync(join(home, '.config', 'systemd', 'user', 'cloudmount@.service'), 'utf8');
  for (const key of ['ExecStart', 'ExecStop']) {
    const line = new RegExp(`^${key}=(\\S+)`, 'm').exec(unit);
    t.truthy(line, key);
    const bin = line![1]!.replace(/%h/g, home);
    t.notThrows(() => accessSync(bin, constants.X_OK), `${key}: ${bin} is executable`);
    const help = await bash(`"${bin}" ${key === 'ExecStart' ? 'mount' : 'unmount'} --help`, { cwd: '/', env: { ...h.env } });
    t.is(help.code, 0, help.out);
  }
});

test.serial('the demo block and the hints the demo prints, while `cloudmount demo` runs; Ctrl-C stops it with 0', async (t) => {
  t.timeout(600_000);
  if (!hasScript) return t.fail('util-linux `script` is needed');
  const b = blocks.find((x) => x.kind === 'run demo');
  if (!b) return t.fail('no demo block');
  const h = makeHome();
  // A checkout as the README assumes: its scripts and README (the compiled CLI is this one).
  const co = mkdtempSync(join(tmpdir(), 'cloudmount-readme-co-'));
  symlinkSync(join(REPO, 'scripts'), join(co, 'scripts'));
  copyFileSync(join(REPO, 'README.md'), join(co, 'README.md'));
  const mps = [join(co, 'mnt', 'maxxo'), join(co, 'mnt', 'vboxx')];
  t.teardown(() => { if (!mps.some(isMounted)) rmSync(co, { recursive: true, force: true }); });
  unmountOnTeardown(t, mps);
  mkdirSync(join(h.dir, 'tmp'));
  const env = { ...h.env, TMPDIR: join(h.dir, 'tmp') };
  const p = ptyCli(['demo'], { env, cwd: co });
  t.teardown(() => p.kill());
  await p.waitFor(/Ctrl-C flushes pending uploads/, 300_000);

  const r = await bash(b.code, { cwd: co, env, timeoutMs: 240_000 });
  t.is(r.code, 0, r.out);
  t.regex(r.out, /^# cloudmount$/m, 'README.md copied into the drive and read back');
  t.regex(r.out, /https?:\/\/\S+\/s\/\S+/, 'the share link');

  // The printed hints work from any folder, as pasted.
  const shown = p.output().replace(/\r/g, '');
  const hints = /Try, in another terminal:\n((?: {2}.+\n)+)/.exec(shown)?.[1]?.split('\n').map((l) => l.trim()).filter(Boolean) ?? [];
  t.true(hints.length >= 5, shown);
  for (const hint of hints) {
    const hr = await bash(hint, { cwd: '/', env: { ...env, CLOUDMOUNT_PASSWORD: 'demo-password' }, timeoutMs: 120_000 });
    t.is(hr.code, 0, `${hint}\n${hr.out}`);
  }

  p.type('\x03');
  t.is(await p.exited, 0, p.output());
  t.regex(p.output(), /unmounted both drives and stopped the servers/);
  for (const mp of mps) t.false(isMounted(mp));
});
