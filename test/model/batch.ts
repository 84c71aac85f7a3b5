// Batch mode of the model-based random test (issue 10: thousands of sequences per service).
// One mount session runs many small independent sequences, several at once, each in its own run
// folder with its own model and its own processes (from a pool of worker processes, each process
// confined to its sequence's folder). Each sequence is checked against its model op by op and
// through the live mount when it ends; then one clean stop (which flushes), one fresh mount with
// an empty cache and one read of the server's own storage check every sequence byte for byte.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { prng } from '../helpers/random.js';
import { mountService, uniq, type Kind, type Servers } from '../e2e/lib/services.js';
import {
  WORKER, compareTree, derive, loggedErrors, modeRules, readTree, runWorkload, vboxxServerTree,
  type SequenceOptions, type SequenceReport, type Tree, type TreeMeta, type Workload,
} from './harness.js';
import type { WorkerConfig, WorkerResult } from './worker.js';

/** The shape of one small sequence, drawn from its seed (so a seed alone replays it). */
export function batchShape(seed: number): Omit<SequenceOptions, 'kind' | 'seed'> {
  const r = prng(derive(seed, 1000));
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const workers = int(1, 3);
  const ops = int(30, 60);
  const crossOps = r() < 0.6 ? int(10, 30) : 0;
  const logs = r() < 0.5 ? 1 : 2;
  // Occasionally a shared log with 2-3 `sh >>` loops beside the processes' own lines.
  const shAppenders = r() < 0.3 ? int(2, 3) : 0;
  const shLines = int(20, 60);
  return { workers, ops, crossOps, logs, shAppenders, shLines };
}

/** The write-back delay of a mount session, from its first seed. */
export function batchDelay(firstSeed: number): number {
  return prng(derive(firstSeed, 2000))() < 0.7 ? 100 : 700;
}

interface PoolProc {
  child: ChildProcess;
  out: string;
  err: string;
  job?: { cfg: WorkerConfig; resolve: (r: WorkerResult) => void; timer: NodeJS.Timeout };
  dead: boolean;
}

const failed = (cfg: WorkerConfig, why: string): WorkerResult => ({
  id: cfg.id, seed: cfg.seed, ok: false, log: [], snapshot: cfg.snapshot, appended: {}, counts: {}, failure: `${cfg.id} (seed ${cfg.seed}): ${why}`,
});

/**
 * Worker processes kept alive between jobs (test/model/worker.ts --serve): a process runs one
 * job (one process's part of one sequence) at a time; the pool grows to what runs at once.
 */
export class WorkerPool {
  private idle: PoolProc[] = [];
  private procs = new Set<PoolProc>();
  spawned = 0;

  private spawn(): PoolProc {
    const child = spawn(process.execPath, [WORKER, '--serve'], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.spawned++;
    const p: PoolProc = { child, out: '', err: '', dead: false };
    this.procs.add(p);
    child.stdin!.on('error', () => {});
    child.stderr!.on('data', (d) => {
      p.err += d;
      if (p.err.length > 20_000) p.err = p.err.slice(-10_000);
    });
    child.stdout!.on('data', (d) => {
      p.out += d;
      const nl = p.out.indexOf('\n');
      if (nl < 0 || !p.job) return;
      const line = p.out.slice(0, nl);
      p.out = p.out.slice(nl + 1);
      const job = p.job;
      p.job = undefined;
      clearTimeout(job.timer);
      let r: WorkerResult;
      try {
        r = JSON.parse(line) as WorkerResult;
      } catch (e) {
        r = failed(job.cfg, `unreadable result: ${(e as Error).message}`);
      }
      if (!p.dead) this.idle.push(p);
      job.resolve(r);
    });
    child.on('close', (code, sig) => {
      p.dead = true;
      this.procs.delete(p);
      this.idle = this.idle.filter((x) => x !== p);
      if (p.job) {
        const job = p.job;
        p.job = undefined;
        clearTimeout(job.timer);
        job.resolve(failed(job.cfg, `worker process ended (${sig ?? code}) without a result: ${p.err.slice(-2000)}`));
      }
    });
    return p;
  }

  run = (cfg: WorkerConfig, timeoutMs: number): Promise<WorkerResult> => new Promise((resolve) => {
    const p = this.idle.pop() ?? this.spawn();
    // A drive that stops answering must fail the sequence, not hang the run.
    const timer = setTimeout(() => {
      p.err += `\n(killed after ${timeoutMs} ms)`;
      p.child.kill('SIGKILL');
    }, timeoutMs);
    p.job = { cfg, resolve, timer };
    p.child.stdin!.write(JSON.stringify(cfg) + '\n');
  });

  async close(): Promise<void> {
    const all = [...this.procs];
    await Promise.all(all.map((p) => new Promise<void>((r) => {
      if (p.dead) return r();
      const t = setTimeout(() => { p.child.kill('SIGKILL'); r(); }, 10_000);
      p.child.once('close', () => { clearTimeout(t); r(); });
      p.child.stdin!.end();
    })));
  }
}

export interface BatchOptions {
  kind: Kind;
  /** One sequence per seed, each in its own folder. */
  seeds: number[];
  /** Sequences at once (default 6). */
  concurrency?: number;
  /** Where the full op logs of failed sequences go (default: the temp dir). */
  reportDir?: string;
  /** Called when a sequence has run and was checked through the live mount. */
  onLive?: (seed: number, problems: string[], done: number) => void;
}

export interface BatchReport {
  kind: Kind;
  seeds: number[];
  writebackDelayMs: number;
  concurrency: number;
  /** Every sequence, its problems from all checks (live, fresh mount, server). */
  sequences: SequenceReport[];
  /** Findings of the session not owned by one sequence (stop, upload failures, strays). */
  runProblems: string[];
  /** Runtime of the sequences (live phase), and in all. */
  liveMs: number;
  ms: number;
  /** Worker processes started. */
  processes: number;
  /** Where the report of a failed run went. */
  logFile?: string;
}

/** The subtree of `name` in a tree (or its meta) read at the session's top folder. */
function subTree<T>(tree: Map<string, T>, name: string): Map<string, T> {
  const out = new Map<string, T>();
  for (const [k, v] of tree) {
    if (k === name) out.set('', v);
    else if (k.startsWith(`${name}/`)) out.set(k.slice(name.length + 1), v);
  }
  return out;
}

/** readTree of root, its top-level entries read `lanes` at once; the same map and errors. */
async function readTreeParallel(root: string, errors: string[], where: string, lanes: number, meta: TreeMeta): Promise<Tree> {
  const out: Tree = new Map();
  let names: string[];
  try {
    const st = await fsp.lstat(root);
    if (!st.isDirectory()) return readTree(root, errors, where, meta);
    names = (await fsp.readdir(root)).sort();
  } catch (e) {
    errors.push(`${where}: (run folder): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    return out;
  }
  out.set('', 'dir');
  const parts: Tree[] = new Array(names.length);
  let next = 0;
  const lane = async () => {
    while (next < names.length) {
      const i = next++;
      const n = names[i]!;
      const errs: string[] = [];
      const subMeta: TreeMeta = new Map();
      const sub = await readTree(path.join(root, n), errs, where, subMeta);
      for (const [k, v] of subMeta) meta.set(k ? `${n}/${k}` : n, v);
      // readTree names paths relative to the folder it reads: put the sequence folder in front
      for (const e of errs) {
        errors.push(e.startsWith(`${where}: (run folder)`) ? e.replace(`${where}: (run folder)`, `${where}: ${n}`) : e.replace(`${where}: `, `${where}: ${n}/`));
      }
      const m: Tree = new Map();
      for (const [k, v] of sub) m.set(k ? `${n}/${k}` : n, v);
      parts[i] = m;
    }
  };
  await Promise.all(Array.from({ length: Math.min(lanes, names.length) }, lane));
  for (const m of parts) for (const [k, v] of m) out.set(k, v);
  return out;
}

/** Runs one mount session of `seeds.length` sequences; problems are returned, not thrown. */
export async function runBatch(t: ExecutionContext, servers: Servers, o: BatchOptions): Promise<BatchReport> {
  const t0 = Date.now();
  const { kind, seeds } = o;
  const concurrency = Math.max(1, o.concurrency ?? 6);
  const delay = batchDelay(seeds[0]!);
  const waitMs = delay * 2 + 400;
  const runProblems: string[] = [];
  const d = await mountService(t, servers, kind, { vfs: { writebackDelayMs: delay } });
  const top = uniq('batch');
  const topAbs = d.p(top);
  await fsp.mkdir(topAbs);
  const pool = new WorkerPool();
  const rules = modeRules(kind);

  interface Seq { seed: number; name: string; w?: Workload; problems: string[]; ms: number; mountLog?: string }
  const seqs: Seq[] = seeds.map((seed) => ({ seed, name: `s${seed}`, problems: [], ms: 0 }));
  let next = 0;
  let done = 0;
  const lane = async () => {
    while (next < seqs.length) {
      const s = seqs[next++]!;
      const ts = Date.now();
      const runAbs = path.join(topAbs, s.name);
      try {
        await fsp.mkdir(runAbs);
        s.w = await runWorkload(runAbs, { seed: s.seed, ...batchShape(s.seed), runWorker: pool.run }, waitMs);
        s.problems.push(...s.w.problems);
        const liveMeta: TreeMeta = new Map();
        const live = await readTree(runAbs, s.problems, 'live mount', liveMeta);
        if (live.has('')) s.problems.push(...compareTree('live mount', s.w.exp, live, s.w.context, liveMeta, rules.live));
      } catch (e) {
        s.problems.push(`sequence aborted: ${(e as Error).stack ?? e}`);
      }
      s.ms = Date.now() - ts;
      // The mount's log right when a sequence went wrong (the end of the session's log is later).
      // Warnings, errors and (at debug level) the errno answers, so a verbose log still reaches back.
      if (s.problems.length) s.mountLog = d.stderr().split('\n').filter((l) => /WARN|ERROR|errno/.test(l)).join('\n').slice(-60_000);
      o.onLive?.(s.seed, s.problems, ++done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, seqs.length) }, lane));
  await pool.close();
  const liveMs = Date.now() - t0;

  // One clean stop (it flushes), one fresh mount with an empty cache, the server's own storage.
  const st = await d.status().catch(() => null);
  if (st?.failures.length) runProblems.push(`live mount: upload failures reported: ${JSON.stringify(st.failures).slice(0, 1000)}`);
  const code = await d.stop();
  const mountLog = d.stderr();
  if (code !== 0) runProblems.push(`the mount child exited ${code} on a clean stop: ${mountLog.slice(-1500)}`);
  runProblems.push(...loggedErrors('live mount', mountLog));

  const errors: string[] = [];
  const fresh = await mountService(t, servers, kind);
  // The sequence folders are read several at once (a Maxxo file is a whole rsync transfer).
  const freshMeta: TreeMeta = new Map();
  const freshTree = await readTreeParallel(fresh.p(top), errors, 'fresh mount', 8, freshMeta);
  await fresh.stop();
  runProblems.push(...loggedErrors('fresh mount', fresh.stderr()));
  const serverMeta: TreeMeta = new Map();
  const serverTree = kind === 'maxxo'
    ? await readTreeParallel(path.join(await servers.maxxoFolder(), top), errors, 'server', 4, serverMeta)
    : await vboxxServerTree(servers, top, serverMeta);
  if (!serverTree.has('')) errors.push(`server: the session folder ${top} is missing`);

  // Read errors belong to the sequence whose folder they name.
  const byName = new Map(seqs.map((s) => [s.name, s]));
  for (const e of errors) {
    const m = /^(?:fresh mount|server): (s\d+)(?:\/|\s|$)/.exec(e);
    const s = m ? byName.get(m[1]!) : undefined;
    if (s) s.problems.push(e);
    else runProblems.push(e);
  }
  for (const [where, tree, meta, rule] of [['fresh mount', freshTree, freshMeta, rules.fresh], ['server', serverTree, serverMeta, rules.server]] as const) {
    if (!tree.has('')) continue;
    for (const k of tree.keys()) {
      if (k && !k.includes('/') && !byName.has(k)) runProblems.push(`${where}: ${top}/${k} exists, no sequence made it`);
    }
    for (const s of seqs) {
      if (!s.w) continue;
      const sub = subTree(tree, s.name);
      if (!sub.has('')) s.problems.push(`${where}: the sequence folder ${s.name} is missing`);
      else s.problems.push(...compareTree(where, s.w.exp, sub, s.w.context, subTree(meta, s.name), rule));
    }
  }

  const sequences: SequenceReport[] = seqs.map((s) => {
    const counts: Record<string, number> = s.w?.counts ?? {};
    const replay = `scripts/soak --model --service ${kind} --batch 1 --seed ${s.seed} --target 1`;
    return { kind, seed: s.seed, writebackDelayMs: delay, problems: s.problems, counts, ms: s.ms, replay };
  });
  let logFile: string | undefined;
  const bad = seqs.filter((s) => s.problems.length);
  if (bad.length || runProblems.length) {
    logFile = path.join(o.reportDir ?? os.tmpdir(), `cloudmount-model-batch-${kind}-${seeds[0]}-${process.pid}-${Date.now().toString(36)}.log`);
    const text = [
      `batch of ${seeds.length} sequences (seeds ${seeds[0]}..${seeds.at(-1)}), ${kind}, write-back delay ${delay} ms, ` +
        `${concurrency} at once, session folder ${top}`,
      ...runProblems, '',
      ...bad.flatMap((s) => [
        `######## sequence seed ${s.seed} (${s.name}): ${JSON.stringify(batchShape(s.seed))}`,
        ...s.problems, '',
        ...(s.w?.all ?? []).flatMap((r) => [`==== process ${r.id} (seed ${r.seed})${r.failure ? `: ${r.failure}` : ''}`, ...r.log, '']),
        ...(s.mountLog ? ['==== log of the mount when this sequence ended (its end)', s.mountLog, ''] : []),
      ]),
      '==== log of the mount (its end)', mountLog.slice(-30_000),
    ].join('\n');
    fs.writeFileSync(logFile, text);
    for (const r of sequences) if (r.problems.length) r.logFile = logFile;
  }
  return { kind, seeds, writebackDelayMs: delay, concurrency, sequences, runProblems, liveMs, ms: Date.now() - t0, processes: pool.spawned, logFile };
}
