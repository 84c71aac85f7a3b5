// Rows, targets and the printed table of the benchmark (Markdown, so it can go into the README).
import type { Sizes, ScaleSizes } from './tree.js';
import { MiB } from './tree.js';

// In table order: each --baseline column next to the column of this checkout it mirrors.
export const COLUMNS = ['maxxo', 'maxxo-base', 'vboxx', 'vboxx-base', 'rclone-writes', 'rclone-full'] as const;
export type ColumnId = (typeof COLUMNS)[number];
export type OurColumn = 'maxxo' | 'vboxx';
const OURS: OurColumn[] = ['maxxo', 'vboxx'];
const RCLONE: ColumnId[] = ['rclone-writes', 'rclone-full'];
/** The column that mounts the --baseline checkout's CLI in place of this checkout's. */
export const BASE_OF = { maxxo: 'maxxo-base', vboxx: 'vboxx-base' } as const satisfies Record<OurColumn, ColumnId>;
export const BASELINE_COLUMNS: ColumnId[] = Object.values(BASE_OF);
const TITLE: Record<ColumnId, string> = {
  maxxo: 'ours Maxxo', vboxx: 'ours vBoxx', 'maxxo-base': 'base Maxxo', 'vboxx-base': 'base vBoxx',
  'rclone-writes': 'rclone writes', 'rclone-full': 'rclone full',
};
const SERVICE: Record<OurColumn, string> = { maxxo: 'Maxxo', vboxx: 'vBoxx' };
/**
 * New over old above 1 + this is "slower": a row moves by about that much between two runs of
 * the same build on this shared machine, so less is not taken as a regression.
 */
export const SLOWER_MARGIN = 0.1;

export interface RowDef {
  id: string;
  phase: 'find' | 'small' | 'big' | 'write' | 'ns' | 'scale';
  label: string;
  /** Target for ours / best rclone mode (issue 6), when there is one. */
  target?: number;
}

const n = (x: number) => x.toLocaleString('en-US');
const size = (b: number) => (b >= MiB ? `${b / MiB} MiB` : `${b / 1024} KiB`);

/** Scaling rows (--scaling): how time grows with entries per folder and with file size. */
export function scaleRowDefs(sc: ScaleSizes): RowDef[] {
  return [
    ...sc.counts.map((c) => ({ id: `scale_ls_${c}`, phase: 'scale' as const, label: `scaling: ls -l of ${n(c)} entries, cold` })),
    ...sc.counts.map((c) => ({ id: `scale_find_${c}`, phase: 'scale' as const, label: `scaling: find over ${n(c)} entries, cold` })),
    { id: 'scale_read', phase: 'scale', label: `scaling: sequential read ${size(sc.bigBytes)}, cold` },
  ];
}

export function rowDefs(s: Sizes, sc?: ScaleSizes): RowDef[] {
  return [...baseRowDefs(s), ...(sc ? scaleRowDefs(sc) : [])];
}

function baseRowDefs(s: Sizes): RowDef[] {
  const findEntries = 3 + s.mediumCount + 1 + s.dirs * (1 + s.smallPerDir);
  return [
    { id: 'wire', phase: 'big', label: `raw wire: one transfer of ${size(s.bigBytes)}` },
    { id: 'find_cold', phase: 'find', label: `find, cold (${n(findEntries)} entries)`, target: 0.5 },
    { id: 'find_warm', phase: 'find', label: 'find, warm (median of 5)', target: 1 },
    { id: 'ls_l', phase: 'small', label: `ls -l of ${n(s.smallPerDir)} files, cold` },
    { id: 'cat_small', phase: 'small', label: `cat ${n(s.smallPerDir)} x ${size(s.smallBytes)}, cold`, target: 0.15 },
    { id: 'cat_medium', phase: 'small', label: `cat ${n(s.mediumCount)} x ${size(s.mediumBytes)}, cold`, target: 0.8 },
    { id: 'read_cold', phase: 'big', label: `sequential read ${size(s.bigBytes)}, cold`, target: 0.6 },
    { id: 'read_warm', phase: 'big', label: `re-read ${size(s.bigBytes)}`, target: 0.2 },
    { id: 'write_fsync', phase: 'write', label: `write ${size(s.writeBytes)} + fsync, returned` },
    { id: 'write_server', phase: 'write', label: `write ${size(s.writeBytes)} + fsync, on the server`, target: 1 },
    { id: 'create', phase: 'write', label: `create ${n(s.createCount)} x ${size(s.createBytes)}, returned`, target: 1 },
    { id: 'create_server', phase: 'write', label: `create ${n(s.createCount)}, all on the server` },
    { id: 'rename', phase: 'write', label: `rename a folder of ${n(s.smallPerDir)} files`, target: 1 },
    { id: 'rmrf', phase: 'write', label: `rm -rf a folder of ${n(s.smallPerDir)} files` },
    // namespace changes in bulk (issue 14): everyday programs that make or remove many names
    { id: 'tar_x', phase: 'ns', label: `tar x of ${n(s.tarFiles)} files in ${n(s.tarFiles / 100)} folders, returned` },
    { id: 'tar_x_server', phase: 'ns', label: `tar x of ${n(s.tarFiles)} files, all on the server` },
    { id: 'git_clone', phase: 'ns', label: `git clone of a ${n(s.gitFiles)}-file local repository, returned` },
    { id: 'rm_tree', phase: 'ns', label: `rm -rf of those ${n(s.tarFiles)} files, returned`, target: 0.1 },
    { id: 'rm_tree_server', phase: 'ns', label: `rm -rf of ${n(s.tarFiles)} files, gone from the server` },
  ];
}

export interface Cell {
  seconds: number | null;
  error?: string;
  [k: string]: unknown;
}

export interface BaselineInfo {
  dir: string;
  /** `git -C dir rev-parse HEAD`, null when dir is not a git checkout. */
  commit: string | null;
  /** Uncommitted changes in dir (the commit alone does not name what ran). */
  dirty: boolean;
  /** dir has build/Release/cmfuse3.node (else its mounts run on fuse-native). */
  addon: boolean;
}

export interface Results {
  date: string;
  command: string;
  machine: Record<string, unknown>;
  rttMs: number;
  sizes: Sizes;
  scale?: ScaleSizes;
  columns: ColumnId[];
  /** --baseline: the other checkout whose CLI the *-base columns mounted. */
  baseline?: BaselineInfo;
  rows: Record<string, Partial<Record<ColumnId, Cell>>>;
  rss: Partial<Record<ColumnId, { hwmMiB: number; treePeakMiB: number }>>;
  mounts: Partial<Record<ColumnId, Record<string, { mountSeconds?: number; unmountSeconds?: number }>>>;
  notes: string[];
  /** The order the columns ran in, by phase (a pair's first side can be slower on the same build). */
  phaseOrder?: Record<string, ColumnId[]>;
  profiles?: Record<string, Array<{ fn: string; selfMs: number; pct: number }>>;
}

const ok = (c: Cell | undefined): c is Cell & { seconds: number } => !!c && c.seconds !== null && !c.error;

/** Smallest time of the rclone modes that ran cleanly on this row. */
export function bestRclone(r: Partial<Record<ColumnId, Cell>> | undefined): number | null {
  const t = RCLONE.map((c) => r?.[c]).filter(ok).map((c) => c.seconds);
  return t.length ? Math.min(...t) : null;
}

export function ratio(results: Results, row: string, col: ColumnId): number | null {
  const r = results.rows[row];
  const mine = r?.[col];
  const best = bestRclone(r);
  if (!ok(mine) || best === null || best <= 0) return null;
  return mine.seconds / best;
}

type Row = Partial<Record<ColumnId, Cell>>;

/** Seconds of this checkout over seconds of the --baseline checkout; null unless both ran cleanly. */
export function newOverOld(r: Row | undefined, col: OurColumn): number | null {
  const mine = r?.[col];
  const old = r?.[BASE_OF[col]];
  if (!ok(mine) || !ok(old) || old.seconds <= 0) return null;
  return mine.seconds / old.seconds;
}

/** New more than SLOWER_MARGIN slower than old (as the table rounds it), or failed where old did not. */
export function slowerThanOld(r: Row | undefined, col: OurColumn): boolean {
  const v = newOverOld(r, col);
  if (v !== null) return Math.round(v * 100) / 100 > 1 + SLOWER_MARGIN;
  const mine = r?.[col];
  return !!mine && !ok(mine) && ok(r?.[BASE_OF[col]]);
}

/** The new/old cell; `judged` false for rows that measure no build (the raw wire). */
export function newOldCell(r: Row | undefined, col: OurColumn, judged = true): string {
  const v = newOverOld(r, col);
  const slower = judged && slowerThanOld(r, col);
  if (v !== null) return `${v.toFixed(2)}${slower ? ' ✗' : ''}`;
  const mine = r?.[col];
  const old = r?.[BASE_OF[col]];
  if (!mine || !old) return '';
  if (!ok(mine) && ok(old)) return `new failed${slower ? ' ✗' : ''}`;
  if (ok(mine) && !ok(old)) return 'old failed';
  return '';
}

/** Rows (and services) where this checkout is slower than the baseline, as the table marks them. */
export function slowerRows(res: Results): string[] {
  const out: string[] = [];
  for (const def of rowDefs(res.sizes, res.scale)) {
    if (def.id === 'wire') continue;
    for (const c of basePairs(res)) if (slowerThanOld(res.rows[def.id], c)) out.push(`${def.id} (${SERVICE[c]})`);
  }
  return out;
}

/** Our columns whose baseline column ran too. */
function basePairs(res: Results): OurColumn[] {
  return OURS.filter((c) => res.columns.includes(c) && res.columns.includes(BASE_OF[c]));
}

function baselineLegend(res: Results): string[] {
  const pairs = basePairs(res);
  if (!pairs.length) return [];
  const b = res.baseline;
  const what = b ? `\`${b.dir}\` at ${b.commit ? b.commit.slice(0, 12) : 'an unknown commit'}${b.dirty ? ' with uncommitted changes' : ''}` +
    `${b.addon ? '' : ', without its libfuse3 addon (fuse-native)'}` : 'the --baseline checkout';
  const slow = slowerRows(res);
  return [
    '',
    `new/old: seconds of this checkout (ours) over seconds of the baseline (base: ${what}) on the same row; ` +
      'each side mounts its own copy of the reference server (same program, tree, RTT and phases), one right after the other. ' +
      `✗: new more than ${SLOWER_MARGIN * 100} % slower than old, or failed where old did not; ` +
      `a difference within ${SLOWER_MARGIN * 100} % is this machine's run-to-run noise, not a regression. ` +
      'The raw wire row compares the two server copies, not the builds: it shows that noise.',
    `Rows where new is slower than old: ${slow.length ? slow.join(', ') : 'none'}.`,
    ...firstOfPairs(res, pairs),
  ];
}

/** Which side of the pairs ran first in each phase ("new first in small; old first in find, big"). */
function firstOfPairs(res: Results, pairs: OurColumn[]): string[] {
  if (!res.phaseOrder) return [];
  const by: Record<'new' | 'old', string[]> = { new: [], old: [] };
  for (const [phase, order] of Object.entries(res.phaseOrder)) {
    const c = pairs[0]!;
    const i = order.indexOf(c), j = order.indexOf(BASE_OF[c]);
    if (i >= 0 && j >= 0) by[i < j ? 'new' : 'old'].push(phase);
  }
  const part = (k: 'new' | 'old') => (by[k].length ? [`${k} first in ${by[k].join(', ')}`] : []);
  const parts = [...part('new'), ...part('old')];
  return parts.length ? [`Order by phase: ${parts.join('; ')} (\`--base-first\` swaps it).`] : [];
}

function secs(c: Cell | undefined): string {
  if (!c) return '';
  if (c.seconds === null) return 'failed';
  const v = c.seconds < 10 ? c.seconds.toFixed(3) : c.seconds.toFixed(1);
  return c.error ? `${v} (!)` : v;
}

function mark(v: number | null, target: number | undefined, higherIsBetter = false): string {
  if (v === null) return '';
  const s = v.toFixed(2);
  if (target === undefined) return s;
  const good = higherIsBetter ? v >= target : v <= target;
  return `${s} ${good ? '✓' : '✗'}`;
}

export function formatTable(res: Results): string {
  const cols = COLUMNS.filter((c) => res.columns.includes(c));
  const ours = OURS.filter((c) => cols.includes(c));
  const pairs = basePairs(res);
  const none = () => pairs.map(() => '');
  const head = ['', ...cols.map((c) => `${TITLE[c]} (s)`), ...ours.map((c) => `${TITLE[c]} / best rclone`),
    ...pairs.map((c) => `${SERVICE[c]} new/old`), 'target'];
  const lines: string[][] = [];
  for (const def of rowDefs(res.sizes, res.scale)) {
    const r = res.rows[def.id];
    if (!r) continue;
    lines.push([
      def.label,
      ...cols.map((c) => secs(r[c])),
      ...ours.map((c) => (def.id === 'wire' ? '' : mark(ratio(res, def.id, c), def.target))),
      ...pairs.map((c) => newOldCell(r, c, def.id !== 'wire')),
      def.target !== undefined ? `<= ${def.target}` : '',
    ]);
  }
  // Sequential read against the wire: our cold read should reach half of the raw transfer rate.
  const wire = res.rows.wire;
  const cold = res.rows.read_cold;
  if (wire && cold) {
    const frac = (c: ColumnId) => {
      const w = wire[c];
      const r = cold[c];
      return ok(w) && ok(r) ? w.seconds / r.seconds : null;
    };
    // the baseline's figure sits in its own seconds column (it has no ratio column of its own)
    const base = (c: ColumnId) => (BASELINE_COLUMNS.includes(c) ? (frac(c)?.toFixed(2) ?? '') : '');
    lines.push(['cold read speed / wire speed', ...cols.map(base), ...ours.map((c) => mark(frac(c), 0.5, true)), ...none(), '>= 0.5']);
    lines.push(['(same, rclone: writes / full)', ...cols.map((c) => (RCLONE.includes(c) ? (frac(c)?.toFixed(2) ?? '') : '')), ...ours.map(() => ''), ...none(), '']);
  }
  if (Object.keys(res.rss).length) {
    const mib = (v: number | undefined) => (v === undefined ? '' : `${v.toFixed(0)} MiB`);
    lines.push(['peak RSS of the mount process during the cold read', ...cols.map((c) => mib(res.rss[c]?.hwmMiB)),
      ...ours.map((c) => { const v = res.rss[c]?.hwmMiB; return v === undefined ? '' : (v <= 150 ? '✓' : '✗'); }), ...none(), '<= 150 MiB']);
    lines.push(['peak RSS with child processes (sampled)', ...cols.map((c) => mib(res.rss[c]?.treePeakMiB)), ...ours.map(() => ''), ...none(), '']);
  }
  const m = res.machine;
  const traffic = trafficTable(res, cols);
  const failures = Object.entries(res.rows).flatMap(([row, r]) =>
    Object.entries(r ?? {}).filter(([, c]) => c?.error).map(([col, c]) => `- ${row} / ${col}: ${String(c!.error).split('\n')[0]}`));
  return [
    `${res.date.slice(0, 16).replace('T', ' ')} UTC; ${m.nproc} CPUs (${m.cpu}), ${m.memGiB} GiB RAM, Linux ${m.kernel}, Node ${m.node}, ${m.rclone}; ` +
      `RTT ${res.rttMs} ms through the delay proxy; ` +
      (m.loadAvgAtStart ? `load average ${fmtLoad(m.loadAvgAtStart)} at start, ${fmtLoad(m.loadAvgAtEnd)} at end; ` : '') +
      `command: \`${res.command}\``,
    '',
    ...markdown(head, lines),
    ...baselineLegend(res),
    ...(traffic.length ? ['', 'Traffic per row (through the delay proxy; ours: server requests by route in the JSON):', '', ...traffic] : []),
    ...(failures.length ? ['', 'Failures and checks that did not hold ((!) above):', ...failures] : []),
    ...(res.notes?.length ? ['', 'Notes:', ...res.notes.map((x) => `- ${x}`)] : []),
  ].join('\n');
}

const fmtLoad = (v: unknown) => (Array.isArray(v) ? v.map((x) => Number(x).toFixed(1)).join('/') : '?');

function markdown(head: string[], lines: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length), 3));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [fmt(head), sep, ...lines.map(fmt)];
}

interface Wire {
  http?: { connections: number; bytesUp: number; bytesDown: number };
  rsync?: { connections: number; bytesUp: number; bytesDown: number };
  requestTotal?: number;
}

/** Requests, connections and bytes each row cost: what bounds a row at a given RTT. */
function trafficTable(res: Results, cols: ColumnId[]): string[] {
  const lines: string[][] = [];
  const mb = (b: number) => (b >= 10 * MiB ? `${(b / MiB).toFixed(0)} MiB` : b >= MiB ? `${(b / MiB).toFixed(1)} MiB` : `${(b / 1024).toFixed(0)} KiB`);
  for (const def of rowDefs(res.sizes, res.scale)) {
    const r = res.rows[def.id];
    if (!r) continue;
    const cells = cols.map((c) => {
      const w = r[c]?.wire as Wire | undefined;
      if (!w) return '';
      const parts: string[] = [];
      if (w.requestTotal !== undefined) parts.push(`${w.requestTotal} req`);
      if (w.rsync && w.rsync.connections) parts.push(`${w.rsync.connections} rsync`);
      const conn = (w.http?.connections ?? 0) + (w.rsync?.connections ?? 0);
      parts.push(`${conn} conn`);
      const bytes = (w.http?.bytesDown ?? 0) + (w.http?.bytesUp ?? 0) + (w.rsync?.bytesDown ?? 0) + (w.rsync?.bytesUp ?? 0);
      parts.push(mb(bytes));
      return parts.join(', ');
    });
    if (cells.some((c) => c)) lines.push([def.label, ...cells]);
  }
  return lines.length ? markdown(['', ...cols.map((c) => TITLE[c])], lines) : [];
}
