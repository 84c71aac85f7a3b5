// One sequence of the model-based random test (issue 10), shared by test/e2e/model.test.ts and the
// `scripts/soak --model` mode:
//   1. mount; several worker processes (test/model/worker.ts), each in its own subtree with an
//      exact model, plus `sh` loops, all appending whole lines to shared logs, run at once;
//   2. one process alone renames and replaces across the subtrees (the models merged);
//   3. the tree is read through the live mount, the mount is stopped cleanly (it flushes), then
//      read again through a fresh mount with an empty cache and from the server's own storage,
//      each compared byte for byte with the model; the shared logs must hold every line once,
//      whole, in each writer's order.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { prng } from '../helpers/random.js';
import { mountService, uniq, type Kind, type Servers } from '../e2e/lib/services.js';
import type { FileMeta, Snap } from './posix.js';
import { PosixModel } from './posix.js';
import { metaDiff, seenMeta, type SeenMeta, type WorkerConfig, type WorkerResult } from './worker.js';

export const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));

export interface SequenceOptions {
  kind: Kind;
  seed: number;
  /** Worker processes with a subtree each. */
  workers?: number;
  /** Random ops per worker. */
  ops?: number;
  /** Ops of the sequential cross-subtree phase. */
  crossOps?: number;
  /** `sh` loops appending with `>>`, and lines each. */
  shAppenders?: number;
  shLines?: number;
  /** Where the full op logs go (default: the temp dir). */
  reportDir?: string;
  /** Shared append-only logs (default 2); the sh loops append to the first. */
  logs?: number;
  /** Runs one worker's part (default: a new process each; the batch mode passes its pool's). */
  runWorker?: (cfg: WorkerConfig, timeoutMs: number) => Promise<WorkerResult>;
  /** The folder is on a fuse-native (libfuse 2) mount: WorkerConfig.pathBoundHandles; default unless CLOUDMOUNT_TEST_BACKEND=libfuse3. */
  pathBoundHandles?: boolean;
}

export interface SequenceReport {
  kind: Kind;
  seed: number;
  writebackDelayMs: number;
  problems: string[];
  /** The full op logs of every process, when there were problems. */
  logFile?: string;
  counts: Record<string, number>;
  ms: number;
  /** How to replay it (default: the single-sequence test's environment). */
  replay?: string;
}

export type Tree = Map<string, 'dir' | Buffer>;
/** Each file's mode and mtime as read (the same paths as its Tree); mode -1: the place keeps none. */
export type TreeMeta = Map<string, SeenMeta>;

/**
 * What a place shows of a file's mode, given the mode set on the mount (null: nothing to check):
 * the live mount shows it exactly; after a remount Maxxo keeps whether it is executable (0755 or
 * 0644) and vBoxx nothing (0644); Maxxo's server file is compared by its owner x bit alone.
 */
export type ModeRule = 'exact' | 'exec' | 'default' | 'xbit' | 'none';
const modeOf: Record<ModeRule, (m: number) => number | null> = {
  exact: (m) => m,
  exec: (m) => (m & 0o111 ? 0o755 : 0o644),
  default: () => 0o644,
  xbit: () => null,
  none: () => null,
};
/** The rules of a place, by service: the live mount, a fresh mount, the server's own storage. */
export const modeRules = (kind: Kind) => ({
  live: 'exact' as ModeRule,
  fresh: (kind === 'maxxo' ? 'exec' : 'default') as ModeRule,
  server: (kind === 'maxxo' ? 'xbit' : 'none') as ModeRule,
});

/** Deterministic per-process seeds from the sequence seed. */
export const derive = (seed: number, i: number) => (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(i + 1, 0xc2b2ae35)) >>> 0 || 1;

const noResult = (cfg: WorkerConfig, why: string): WorkerResult => ({
  id: cfg.id, seed: cfg.seed, ok: false, log: [], snapshot: cfg.snapshot, appended: {}, counts: {}, failure: `${cfg.id} (seed ${cfg.seed}): ${why}`,
});

function runWorker(cfg: WorkerConfig, timeoutMs: number): Promise<WorkerResult> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [WORKER], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { err += d; });
    // A drive that stops answering must fail the run, not hang it.
    const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code, sig) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out) as WorkerResult);
      } catch {
        resolve(noResult(cfg, `worker process ended (${sig ?? code}) without a result${sig === 'SIGKILL' ? ` after ${timeoutMs} ms` : ''}: ${err.slice(-2000)}`));
      }
    });
    c.stdin.end(JSON.stringify(cfg));
  });
}

const SH_LOOP = 'i=1; while [ $i -le "$2" ]; do echo "$3 $i $4" >> "$1"; i=$((i+1)); done';

function runSh(args: string[], timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const c = spawn('sh', ['-c', SH_LOOP, 'sh', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code, sig) => {
      clearTimeout(timer);
      resolve(code === 0 ? null : `sh appender ${args[2]} on ${args[0]}: exit ${sig ?? code}: ${err.slice(-500)}`);
    });
  });
}

/**
 * Every path under root ('' = root): folders as 'dir', files as their bytes. A name listed but not
 * found (or not readable) goes to `errors` and the walk goes on.
 */
export async function readTree(root: string, errors: string[], where: string, meta?: TreeMeta): Promise<Tree> {
  const out: Tree = new Map();
  const walk = async (rel: string) => {
    const abs = path.join(root, rel);
    try {
      const st = await fsp.lstat(abs);
      if (st.isDirectory()) {
        out.set(rel, 'dir');
        for (const n of (await fsp.readdir(abs)).sort()) await walk(rel ? `${rel}/${n}` : n);
      } else {
        out.set(rel, await fsp.readFile(abs));
        meta?.set(rel, seenMeta(st));
      }
    } catch (e) {
      errors.push(`${where}: ${rel || '(run folder)'}${rel ? ' (listed by its folder)' : ''}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  await walk('');
  return out;
}

/** The vBoxx server's own view: the tree rows of its database, the bytes from its data dir. */
export async function vboxxServerTree(servers: Servers, top: string, meta?: TreeMeta): Promise<Tree> {
  const [root] = await servers.sql<Array<{ id: number }>>(
    `SELECT r.id FROM vboxx_roots r JOIN vboxx_persons p ON r.person_id = p.id WHERE p.username = 'demo' AND r.name = 'Files'`);
  const rows = await servers.sql<Array<{ path: string; is_dir: number; bytes: number; client_mtime: number | null; mtime: number }>>(
    'SELECT path, is_dir, bytes, client_mtime, mtime FROM vboxx_nodes WHERE root_id = ? AND (path = ? OR substr(path, 1, ?) = ?) ORDER BY path',
    [root!.id, top, top.length + 1, `${top}/`]);
  const out: Tree = new Map();
  for (const r of rows) {
    const rel = r.path === top ? '' : r.path.slice(top.length + 1);
    if (r.is_dir) {
      out.set(rel, 'dir');
      continue;
    }
    // client_mtime: the writer's mtime in seconds; without it the server's own (ms)
    meta?.set(rel, { mtime: r.client_mtime ?? Math.floor(r.mtime / 1000), mode: -1 });
    const disk = path.join(servers.dataDir, 'files', 'vboxx', `root-${root!.id}`, r.path);
    const b = await fsp.readFile(disk).catch((e: Error) => Buffer.from(`<server row without bytes on disk: ${e.message}>`));
    if (b.length !== r.bytes) out.set(rel, Buffer.concat([b, Buffer.from(` <database says ${r.bytes} bytes, disk has ${b.length}>`)]));
    else out.set(rel, b);
  }
  return out;
}

function nulCount(b: Buffer): number {
  let n = 0;
  for (const x of b) if (x === 0) n++;
  return n;
}

export function diffBytes(want: Buffer, got: Buffer): string {
  let i = 0;
  while (i < want.length && i < got.length && want[i] === got[i]) i++;
  const hex = (b: Buffer) => b.subarray(i, i + 16).toString('hex') || '(end)';
  return `model ${want.length} bytes (${nulCount(want)} NUL), actual ${got.length} bytes (${nulCount(got)} NUL); ` +
    `first difference at offset ${i}: model ${hex(want)}, actual ${hex(got)}`;
}

/**
 * A shared log: every line appended exactly once and whole, each writer's lines in its order,
 * nothing else (no NUL bytes, no torn or doubled lines).
 */
export function checkLog(name: string, data: Buffer, writers: Map<string, string[]>): string | null {
  const owner = new Map<string, { w: string; i: number }>();
  for (const [w, lines] of writers) lines.forEach((l, i) => owner.set(l, { w, i }));
  const text = data.toString('latin1');
  const lines = text.split('\n');
  const tail = lines.pop();
  const seen = new Set<string>();
  const last = new Map<string, number>();
  const garbled: string[] = [];
  let dups = 0;
  let disorder = 0;
  for (const l of lines) {
    const o = owner.get(l);
    if (!o) { garbled.push(l); continue; }
    if (seen.has(l)) { dups++; continue; }
    seen.add(l);
    if ((last.get(o.w) ?? -1) > o.i) disorder++;
    last.set(o.w, o.i);
  }
  const missing = [...owner.keys()].filter((l) => !seen.has(l));
  const nul = nulCount(data);
  if (!missing.length && !garbled.length && !dups && !disorder && !nul && tail === '') return null;
  // NUL runs are counted, not spelled out: a line of 4,000 of them says nothing more.
  const clip = (s: string) => {
    const c = s.replace(/\0+/g, (m) => `<${m.length} NUL>`);
    return JSON.stringify(c.length > 80 ? `${c.slice(0, 80)}...` : c);
  };
  const parts = [`${name}: ${seen.size} of ${owner.size} lines`];
  if (missing.length) parts.push(`${missing.length} missing (e.g. ${missing.slice(0, 3).map((l) => clip(l.slice(0, 30))).join(', ')})`);
  if (garbled.length) parts.push(`${garbled.length} lines nobody wrote (e.g. ${garbled.slice(0, 2).map(clip).join(', ')})`);
  if (dups) parts.push(`${dups} duplicated`);
  if (disorder) parts.push(`${disorder} out of their writer's order`);
  if (nul) parts.push(`${nul} NUL bytes, the first at offset ${data.indexOf(0)}`);
  if (tail) parts.push(`ends in a partial line ${clip(tail)}`);
  parts.push(`${data.length} bytes`);
  return parts.join(', ');
}

/**
 * ERROR lines of a mount's log: in a run without injected faults each is a finding (an upload or
 * metadata change that failed and waited for a later flush, seen only there until it was
 * counted: soak seeds 271304, 271520, 271845, 273264).
 */
export function loggedErrors(where: string, log: string): string[] {
  const lines = log.split('\n').filter((l) => / ERROR /.test(l));
  return lines.length ? [`${where}: the mount logged ${lines.length} ERROR line(s), e.g. ${lines.slice(0, 3).join(' | ').slice(0, 1500)}`] : [];
}

export interface Expected {
  tree: Tree;
  /** Every file's times and mode, by the tree's paths. */
  meta: Map<string, FileMeta>;
  /** Shared logs (relative paths) and their writers' lines. */
  logs: Map<string, Map<string, string[]>>;
  /** Subtrees whose process failed: their state is unknown, so they are not compared. */
  unknown: string[];
}

export function compareTree(where: string, exp: Expected, got: Tree, context: (rel: string) => string,
  gotMeta?: TreeMeta, rule: ModeRule = 'exact'): string[] {
  const problems: string[] = [];
  const skip = (p: string) => exp.unknown.some((u) => p === u || p.startsWith(`${u}/`));
  const keys = [...new Set([...exp.tree.keys(), ...got.keys(), ...exp.logs.keys()])].sort();
  for (const k of keys) {
    if (skip(k)) continue;
    const w = exp.tree.get(k);
    const g = got.get(k);
    const log = exp.logs.get(k);
    if (log) {
      if (!(g instanceof Buffer)) problems.push(`${where}: shared log ${k} is ${g ? 'a folder' : 'missing'}`);
      else {
        const bad = checkLog(`${where}: shared log ${k}`, g, log);
        if (bad) problems.push(bad);
      }
      continue;
    }
    if (w === undefined) problems.push(`${where}: ${k} ${g === 'dir' ? 'folder' : `file (${(g as Buffer).length} bytes)`} exists, the model has nothing there${context(k)}`);
    else if (g === undefined) problems.push(`${where}: ${k} is missing, the model has a ${w === 'dir' ? 'folder' : `file of ${w.length} bytes`}${context(k)}`);
    else if (w === 'dir' && g !== 'dir') problems.push(`${where}: ${k} is a file, the model has a folder${context(k)}`);
    else if (w !== 'dir' && g === 'dir') problems.push(`${where}: ${k} is a folder, the model has a file${context(k)}`);
    else if (w !== 'dir' && !w.equals(g as Buffer)) problems.push(`${where}: ${k} differs: ${diffBytes(w, g as Buffer)}${context(k)}`);
    else if (w !== 'dir' && gotMeta) {
      const want = exp.meta.get(k);
      const seen = gotMeta.get(k);
      if (!want || !seen) continue;
      if (rule === 'xbit' && !!(want.mode & 0o111) !== !!(seen.mode & 0o100)) {
        problems.push(`${where}: ${k}: executable ${!!(want.mode & 0o111)} in the model (${want.mode.toString(8)}), mode ${seen.mode.toString(8)} there${context(k)}`);
      }
      const d = metaDiff(want, seen, modeOf[rule]);
      if (d) problems.push(`${where}: ${k}: ${d}${context(k)}`);
    }
  }
  return problems;
}

export interface Workload {
  problems: string[];
  counts: Record<string, number>;
  exp: Expected;
  /** Every process's result (the op logs). */
  all: WorkerResult[];
  context: (rel: string) => string;
}

/**
 * Phases 1 and 2 in the folder runAbs (on a mount, or on a local file system to check the model
 * itself): priv/<id> subtrees, shared/log0 and shared/log1.
 */
export async function runWorkload(runAbs: string, o: Omit<SequenceOptions, 'kind'>, waitMs: number): Promise<Workload> {
  const PATH_BOUND_HANDLES = o.pathBoundHandles ?? (process.env.CLOUDMOUNT_TEST_BACKEND !== 'libfuse3');
  const nWorkers = o.workers ?? 3;
  const problems: string[] = [];
  const counts: Record<string, number> = {};
  const priv = path.join(runAbs, 'priv');
  const logRel = Array.from({ length: o.logs ?? 2 }, (_, i) => `shared/log${i}`);
  const run = o.runWorker ?? runWorker;
  const logAbs = logRel.map((r) => path.join(runAbs, r));
  const ids = Array.from({ length: nWorkers }, (_, i) => `p${i}`);
  for (const id of ids) await fsp.mkdir(path.join(priv, id), { recursive: true });
  await fsp.mkdir(path.join(runAbs, 'shared'));
  for (const l of logAbs) await fsp.writeFile(l, '');

  // Phase 1: processes at once, each in its subtree; all of them and the sh loops share the logs.
  const workerTimeout = 240_000;
  const cfgs: WorkerConfig[] = ids.map((id, i) => ({
    id, seed: derive(o.seed, i), root: priv, snapshot: { dir: { [id]: { dir: {} } } }, base: id,
    ops: o.ops ?? 150, shared: logAbs, waitMs, pathBoundHandles: PATH_BOUND_HANDLES, atimeInBothSlots: PATH_BOUND_HANDLES,
  }));
  // The sh loops all append to log0, so that one writer's close often meets another's write.
  const shN = o.shAppenders ?? 3;
  const shLines = o.shLines ?? 200;
  const pad = 'x'.repeat(53);
  const shArgs = Array.from({ length: shN }, (_, j) => [logAbs[0]!, String(shLines), `s${j}`, pad]);
  const [results, shErrs] = await Promise.all([
    Promise.all(cfgs.map((c) => run(c, workerTimeout))),
    Promise.all(shArgs.map((a) => runSh(a, workerTimeout))),
  ]);
  for (const e of shErrs) if (e) problems.push(e);

  // Phase 2: one process alone moves things between the subtrees (their models merged).
  const merged: { dir: Record<string, Snap> } = { dir: {} };
  const unknown: string[] = [];
  for (const r of results) {
    if (!r.ok) {
      problems.push(`during the run: ${r.failure}`);
      unknown.push(`priv/${r.id}`);
      continue;
    }
    const sub = (r.snapshot as { dir: Record<string, Snap> }).dir[r.id];
    if (sub) merged.dir[r.id] = sub;
  }
  let final: Snap = merged;
  const all: WorkerResult[] = [...results];
  if (unknown.length === 0 && (o.crossOps ?? 80) > 0) {
    const x = await run({ id: 'x', seed: derive(o.seed, 99), root: priv, snapshot: merged, base: '', ops: o.crossOps ?? 80, shared: [], waitMs, pathBoundHandles: PATH_BOUND_HANDLES, atimeInBothSlots: PATH_BOUND_HANDLES }, workerTimeout);
    all.push(x);
    if (x.ok) final = x.snapshot;
    else {
      problems.push(`during the cross-subtree phase: ${x.failure}`);
      unknown.push('priv');
    }
  }
  for (const r of all) for (const [k, v] of Object.entries(r.counts)) counts[k] = (counts[k] ?? 0) + v;

  const exp: Expected = { tree: new Map(), meta: PosixModel.fromSnap(final).meta('priv'), logs: new Map(), unknown };
  exp.tree.set('', 'dir');
  exp.tree.set('shared', 'dir');
  for (const [k, v] of PosixModel.fromSnap(final).flatten('priv')) exp.tree.set(k, v);
  logRel.forEach((rel, i) => {
    const w = new Map<string, string[]>();
    for (const r of results) w.set(r.id, r.appended[logAbs[i]!] ?? []);
    shArgs.forEach((a) => {
      if (a[0] === logAbs[i]) w.set(a[2]!, Array.from({ length: shLines }, (_, k) => `${a[2]} ${k + 1} ${pad}`));
    });
    exp.logs.set(rel, w);
  });
  const context = (rel: string) => {
    const needle = rel.replace(/^priv\//, '');
    if (!rel.startsWith('priv/')) return '';
    const lines = all.flatMap((r) => r.log.filter((l) => l.includes(needle)).map((l) => `    ${r.id} ${l}`));
    return lines.length ? `\n  ops on it (last ${Math.min(lines.length, 20)} of ${lines.length}):\n${lines.slice(-20).join('\n')}` : '';
  };
  return { problems, counts, exp, all, context };
}

/** Checks a finished workload's folder (e.g. on a local file system) against its model. */
export async function checkTree(where: string, root: string, w: Workload): Promise<string[]> {
  const problems: string[] = [];
  const meta: TreeMeta = new Map();
  const tree = await readTree(root, problems, where, meta);
  if (tree.has('')) problems.push(...compareTree(where, w.exp, tree, w.context, meta));
  return problems;
}

/** Runs one seeded sequence against `kind`; problems are returned, not thrown. */
export async function runSequence(t: ExecutionContext, servers: Servers, o: SequenceOptions): Promise<SequenceReport> {
  const t0 = Date.now();
  const rng = prng(o.seed);
  // The test default (100 ms) keeps waits short; the longer one lets uploads overlap more ops.
  const delay = rng() < 0.7 ? 100 : 700;
  const waitMs = delay * 2 + 400;
  const d = await mountService(t, servers, o.kind, { vfs: { writebackDelayMs: delay } });
  const top = uniq('model');
  const runAbs = d.p(top);
  const w = await runWorkload(runAbs, o, waitMs);
  const { problems, counts, exp, all, context } = w;

  // Phase 3: the live mount, then (after a clean stop, which flushes) a fresh mount and the server.
  // An unreadable run folder is one finding already (e.g. ENOTCONN): no list of everything missing.
  const rules = modeRules(o.kind);
  const liveMeta: TreeMeta = new Map();
  const live = await readTree(runAbs, problems, 'live mount', liveMeta);
  if (live.has('')) problems.push(...compareTree('live mount', exp, live, context, liveMeta, rules.live));
  const st = await d.status().catch(() => null);
  if (st?.failures.length) problems.push(`live mount: upload failures reported: ${JSON.stringify(st.failures).slice(0, 1000)}`);
  const code = await d.stop();
  const mountLog = d.stderr();
  if (code !== 0) problems.push(`the mount child exited ${code} on a clean stop: ${d.stderr().slice(-1500)}`);
  problems.push(...loggedErrors('live mount', mountLog));

  const fresh = await mountService(t, servers, o.kind);
  const freshMeta: TreeMeta = new Map();
  const again = await readTree(fresh.p(top), problems, 'fresh mount', freshMeta);
  await fresh.stop();
  problems.push(...loggedErrors('fresh mount', fresh.stderr()));
  if (again.has('')) problems.push(...compareTree('fresh mount', exp, again, context, freshMeta, rules.fresh));

  const serverMeta: TreeMeta = new Map();
  const server = o.kind === 'maxxo'
    ? await readTree(path.join(await servers.maxxoFolder(), top), problems, 'server', serverMeta)
    : await vboxxServerTree(servers, top, serverMeta);
  if (server.has('')) problems.push(...compareTree('server', exp, server, context, serverMeta, rules.server));
  else if (o.kind === 'vboxx') problems.push(`server: the run folder ${top} is missing`);

  let logFile: string | undefined;
  if (problems.length) {
    const dir = o.reportDir ?? os.tmpdir();
    logFile = path.join(dir, `cloudmount-model-${o.kind}-${o.seed}.log`);
    const text = [
      `seed ${o.seed}, ${o.kind}, write-back delay ${delay} ms, run folder ${top}`,
      ...problems, '',
      ...all.flatMap((r) => [`==== process ${r.id} (seed ${r.seed})${r.failure ? `: ${r.failure}` : ''}`, ...r.log, '']),
      '==== log of the mount (its end)', mountLog.slice(-30_000),
    ].join('\n');
    fs.writeFileSync(logFile, text);
  }
  return { kind: o.kind, seed: o.seed, writebackDelayMs: delay, problems, logFile, counts, ms: Date.now() - t0 };
}

/** The seeds of a bounded or long run: CLOUDMOUNT_MODEL_SEED replays one (and those after it). */
export function seedsFromEnv(defaultRuns: number): number[] {
  const env = process.env.CLOUDMOUNT_MODEL_SEED;
  const first = env ? Number(env) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0;
  const runs = Number(process.env.CLOUDMOUNT_MODEL_RUNS ?? defaultRuns) || defaultRuns;
  return Array.from({ length: runs }, (_, i) => (first + i) >>> 0);
}

/** The report of a failed sequence, readable in a test log. */
export function formatReport(r: SequenceReport): string {
  const head = `model-based run FAILED: ${r.kind}, seed ${r.seed} (replay: ${r.replay ?? `CLOUDMOUNT_MODEL_SEED=${r.seed} CLOUDMOUNT_MODEL_RUNS=1`}), ` +
    `write-back delay ${r.writebackDelayMs} ms; full op logs: ${r.logFile}`;
  // The same finding seen through the live mount, the fresh mount and the server is one line.
  const seen = new Map<string, string[]>();
  for (const p of r.problems) {
    const m = /^(live mount|fresh mount|server): (.*)$/s.exec(p);
    const key = m ? m[2]! : p;
    const w = seen.get(key) ?? [];
    if (m) w.push(m[1]!);
    seen.set(key, w);
  }
  const lines = [...seen].map(([k, w]) => (w.length ? `${w.join(', ')}: ${k}` : k));
  const shown = lines.slice(0, 12);
  return [head, ...shown.map((p) => `- ${p}`), ...(lines.length > shown.length ? [`... and ${lines.length - shown.length} more`] : [])].join('\n');
}
