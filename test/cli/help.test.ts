// One style of help and errors: every command's --help lists exactly its options, the README
// carries every command's help verbatim, and bad input exits 2 with one clear line.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, REPO } from './helpers.js';
import { commands } from '../../src/cli/commands.js';
import { formatHelp, globalOptions, type OptDef } from '../../src/cli/args.js';

const flagOf = (o: OptDef) => (o.name.length === 1 ? `-${o.name}` : `--${o.name}`);

/** The flags named in the "Options:" table of a help text. */
function helpFlags(help: string): string[] {
  const lines = help.split('\n');
  const start = lines.indexOf('Options:');
  const flags: string[] = [];
  for (const l of lines.slice(start + 1)) {
    if (!l.trim()) break;
    const m = /^\s+(?:-\w, )?(--?[\w-]+)/.exec(l);
    if (m) flags.push(m[1]!);
  }
  return flags;
}

const visible = commands.filter((c) => !c.hidden && !c.passthrough);

test('every command --help lists exactly the options of its definition', async (t) => {
  // Several at a time: each is a node start.
  const queue = [...visible];
  const worker = async () => {
    for (let c = queue.shift(); c; c = queue.shift()) {
      const r = await cli([...c.path, '--help']);
      const name = c.path.join(' ');
      t.is(r.code, 0, `${name} --help exits 0`);
      t.is(r.stdout, formatHelp(c), `${name} --help is the formatted definition`);
      const want = [...c.options, ...globalOptions].map(flagOf).sort();
      t.deepEqual(helpFlags(r.stdout).sort(), want, `${name} --help option table`);
      for (const o of c.options) t.true(r.stdout.includes(o.desc), `${name} --help describes ${flagOf(o)}`);
      t.true(r.stdout.startsWith(`Usage: cloudmount ${name}`), `${name} usage line`);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
});

test('README has every command and its help text verbatim', (t) => {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  for (const c of commands.filter((x) => !x.hidden)) {
    const name = c.path.join(' ');
    t.true(readme.includes(`cloudmount ${name}`), `README mentions cloudmount ${name}`);
    if (!c.passthrough) t.true(readme.includes(formatHelp(c)), `README has the --help of ${name} verbatim (regenerate: cloudmount help --markdown)`);
  }
  t.true(readme.includes('<!-- bench-table -->'));
  for (const cmd of ['npm start', 'npm test']) t.true(readme.includes(cmd));
});

test('top-level help lists every command; group help lists its subcommands', async (t) => {
  const r = await cli(['--help']);
  t.is(r.code, 0);
  for (const c of visible.filter((x) => x.path.length === 1)) t.true(r.stdout.includes(`  ${c.path[0]}`), c.path[0]!);
  const g = await cli(['vboxx', 'admin', '--help']);
  t.is(g.code, 0);
  for (const c of visible.filter((x) => x.path[0] === 'vboxx' && x.path[1] === 'admin')) t.true(g.stdout.includes(c.path.slice(2).join(' ')));
  const bare = await cli(['maxxo']);
  t.is(bare.code, 0);
  t.regex(bare.stdout, /contacts list/);
});

test('unknown command, unknown flag, missing or extra argument: one line, exit 2', async (t) => {
  const unknown = await cli(['frobnicate']);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /unknown command 'frobnicate'/);
  const sub = await cli(['maxxo', 'frobnicate']);
  t.is(sub.code, 2);
  t.regex(sub.stderr, /unknown command 'maxxo frobnicate'/);
  const flag = await cli(['status', '--bogus']);
  t.is(flag.code, 2);
  t.regex(flag.stderr, /^cloudmount status: unknown option --bogus\n/);
  const missing = await cli(['unmount']);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /missing argument: expected MOUNTPOINT/);
  const extra = await cli(['status', 'x']);
  t.is(extra.code, 2);
  t.regex(extra.stderr, /unexpected argument 'x'/);
  const val = await cli(['vboxx', 'admin', 'person', 'list', '--page']);
  t.is(val.code, 2);
  t.regex(val.stderr, /--page needs a value/);
  for (const r of [unknown, flag, missing, extra]) t.notRegex(r.stderr, /\n\s+at /, 'no stack trace');
});

test('-o mount options are checked before anything else happens', async (t) => {
  const bad = await cli(['mount', 'maxxo', '/nonexistent-mnt', '--server', 'http://127.0.0.1:9', '--email', 'a@b.c', '-o', 'cache_size=lots']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /cache_size=lots: not a size/);
  const unknown = await cli(['mount', 'maxxo', '/nonexistent-mnt', '--server', 'http://127.0.0.1:9', '--email', 'a@b.c', '-o', 'frob=1']);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /unknown mount option -o frob/);
  const srv = await cli(['mount', 'maxxo', '/nonexistent-mnt', '--server', 'ftp://x', '--email', 'a@b.c']);
  t.is(srv.code, 2);
  t.regex(srv.stderr, /http:\/\/ or https:\/\//);
});

test('serve passes its flags through: --help and a bad flag', async (t) => {
  const h = await cli(['serve', '--help']);
  t.is(h.code, 0);
  t.regex(h.stdout, /Usage: cloudmount serve/);
  t.regex(h.stdout, /--demo/);
  const bad = await cli(['serve', '--bogus']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /unknown option/);
});

test('serve runs the reference servers until SIGTERM', async (t) => {
  const { spawn } = await import('node:child_process');
  const { CLI } = await import('./helpers.js');
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--demo', '--quiet', '--no-rsync'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { child.kill('SIGKILL'); });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const to = setTimeout(() => reject(new Error(`serve did not start: ${out}`)), 30_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /listening (http:\/\/\S+)/.exec(out);
      if (m) { clearTimeout(to); resolve(m[1]!); }
    });
  });
  const r = await fetch(`${url}/1/auth?username=demo&password=demo-password`, { method: 'POST' });
  t.is(r.status, 200);
  const code = new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
  child.kill('SIGTERM');
  t.is(await code, 0);
});
