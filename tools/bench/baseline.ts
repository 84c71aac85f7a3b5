// --baseline DIR: the same mounts with another checkout's CLI, so one run compares two builds on
// the same machine under the same load (issue "vfs core by concern": no row slower than before).
// DIR's CLI finds its own libfuse3 addon (build/Release, relative to its dist/) and its own
// node_modules, so nothing of this checkout leaks into the baseline's mounts.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BASE_OF, BASELINE_COLUMNS, type BaselineInfo, type ColumnId } from './report.js';

/** The CLI the mounts of a checkout run. */
export const cliOf = (checkout: string): string => join(checkout, 'dist', 'src', 'cli', 'main.js');

/** The columns of a run: the -base ones need --baseline (and are left out of the default without it); --baseline needs one. */
export function baselineColumns(cols: ColumnId[], given: boolean, baseline: string | null): ColumnId[] {
  const base = cols.filter((c) => BASELINE_COLUMNS.includes(c));
  if (baseline) {
    if (!base.length) throw new Error(`--baseline: --columns has none of ${BASELINE_COLUMNS.join(', ')}`);
    return cols;
  }
  if (given && base.length) throw new Error(`columns ${base.join(', ')} need --baseline DIR`);
  return cols.filter((c) => !BASELINE_COLUMNS.includes(c));
}

/** Checks DIR can mount and says what it is; warnings for what makes the comparison doubtful. */
export function inspectBaseline(dir: string): { info: BaselineInfo; warnings: string[] } {
  const abs = resolve(dir);
  const cli = cliOf(abs);
  if (!existsSync(cli)) throw new Error(`--baseline ${dir}: ${cli} is missing (build that checkout: tsc -p .)`);
  if (!existsSync(join(abs, 'node_modules'))) throw new Error(`--baseline ${dir}: no node_modules there (npm ci, or a symlink to another checkout's)`);
  const git = (...a: string[]) => spawnSync('git', ['-C', abs, ...a], { encoding: 'utf8' });
  const head = git('rev-parse', 'HEAD');
  const commit = head.status === 0 ? head.stdout.trim() : null;
  const st = git('status', '--porcelain', '--untracked-files=no');
  const dirty = commit !== null && st.status === 0 && st.stdout.trim() !== '';
  const addon = ['Release', 'Debug'].some((d) => existsSync(join(abs, 'build', d, 'cmfuse3.node')));
  const warnings: string[] = [];
  if (commit === null) warnings.push(`${abs} is not a git checkout: the results name no commit`);
  if (dirty) warnings.push(`${abs} has uncommitted changes: its commit does not name what ran`);
  if (!addon) warnings.push(`${abs} has no build/Release/cmfuse3.node: its mounts run on fuse-native (libfuse 2)`);
  const built = existsSync(join(abs, 'dist', '.built')) ? join(abs, 'dist', '.built') : cli;
  const newer = newestSource(join(abs, 'src'));
  if (newer && newer.mtimeMs > statSync(built).mtimeMs) warnings.push(`${newer.file} is newer than ${abs}'s build: rebuild it (tsc -p .) or the baseline runs older code`);
  return { info: { dir: abs, commit, dirty, addon }, warnings };
}

function newestSource(dir: string): { file: string; mtimeMs: number } | null {
  let best: { file: string; mtimeMs: number } | null = null;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) {
        const m = statSync(p).mtimeMs;
        if (!best || m > best.mtimeMs) best = { file: p, mtimeMs: m };
      }
    }
  };
  if (existsSync(dir)) walk(dir);
  return best;
}

/**
 * The order the columns run in one phase (round = the phase's index in the run): each of our
 * columns and its baseline column trade places every other phase, so neither build always runs
 * first (the load of a shared machine drifts within a phase too).
 */
export function phaseOrder<C extends { id: ColumnId }>(cols: C[], round: number): C[] {
  const out = [...cols];
  if (round % 2 === 0) return out;
  for (const [mine, base] of Object.entries(BASE_OF)) {
    const i = out.findIndex((c) => c.id === mine);
    const j = out.findIndex((c) => c.id === base);
    if (i >= 0 && j >= 0) [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
