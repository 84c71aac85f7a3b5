// The bench's --baseline comparison: new/old ratios of seconds, the ✗ past the 10 % noise margin
// (as the table rounds it), failures counted as slower, the raw wire row never judged, the table's
// columns and legend only when both sides ran; and the run order that alternates the two builds.
import test from 'ava';
import { formatTable, newOverOld, newOldCell, slowerRows, slowerThanOld, SLOWER_MARGIN, type Cell, type ColumnId, type Results } from '../../tools/bench/report.js';
import { baselineColumns, phaseOrder } from '../../tools/bench/baseline.js';
import { quickSizes } from '../../tools/bench/tree.js';

const cell = (seconds: number | null, error?: string): Cell => (error ? { seconds, error } : { seconds });

function results(columns: ColumnId[], rows: Results['rows'], baseline?: Results['baseline']): Results {
  return {
    date: '2026-01-01T00:00:00.000Z', command: 'scripts/bench', machine: { nproc: 2, cpu: 'x', memGiB: 1, kernel: 'k', node: 'v', rclone: 'r' },
    rttMs: 20, sizes: quickSizes, columns, rows, rss: {}, mounts: {}, notes: [], ...(baseline ? { baseline } : {}),
  };
}

/** The cells of the table row whose label starts with `label`, by header. */
function tableRow(table: string, label: string): Record<string, string> {
  const lines = table.split('\n').filter((l) => l.startsWith('|'));
  const split = (l: string) => l.split('|').slice(1, -1).map((c) => c.trim());
  const head = split(lines[0]!);
  const line = lines.find((l) => split(l)[0]!.startsWith(label));
  if (!line) throw new Error(`no row ${label}`);
  return Object.fromEntries(split(line).map((c, i) => [head[i]!, c]));
}

test('new/old is seconds of ours over seconds of the baseline, only when both ran cleanly', (t) => {
  t.is(newOverOld({ maxxo: cell(3), 'maxxo-base': cell(2) }, 'maxxo'), 1.5);
  t.is(newOverOld({ vboxx: cell(1), 'vboxx-base': cell(4) }, 'vboxx'), 0.25);
  t.is(newOverOld({ maxxo: cell(3) }, 'maxxo'), null);
  t.is(newOverOld({ maxxo: cell(null, 'boom'), 'maxxo-base': cell(2) }, 'maxxo'), null);
  t.is(newOverOld({ maxxo: cell(3, 'content differs'), 'maxxo-base': cell(2) }, 'maxxo'), null);
  t.is(newOverOld({ maxxo: cell(3), 'maxxo-base': cell(0) }, 'maxxo'), null);
  // the other service's baseline is not this one's
  t.is(newOverOld({ maxxo: cell(3), 'vboxx-base': cell(2) }, 'maxxo'), null);
});

test('slower means more than 10 % slower as shown (1.10 is not, 1.11 is), or failed where old did not', (t) => {
  t.is(SLOWER_MARGIN, 0.1);
  const r = (mine: Cell, old: Cell) => ({ maxxo: mine, 'maxxo-base': old });
  t.false(slowerThanOld(r(cell(1.1), cell(1)), 'maxxo'));
  t.false(slowerThanOld(r(cell(1.1004), cell(1)), 'maxxo'));
  t.true(slowerThanOld(r(cell(1.11), cell(1)), 'maxxo'));
  t.true(slowerThanOld(r(cell(2), cell(1)), 'maxxo'));
  t.false(slowerThanOld(r(cell(0.5), cell(1)), 'maxxo'));
  t.true(slowerThanOld(r(cell(null, 'mount failed'), cell(1)), 'maxxo'));
  t.true(slowerThanOld(r(cell(0.5, 'content differs'), cell(1)), 'maxxo'));
  t.false(slowerThanOld(r(cell(1), cell(null, 'mount failed')), 'maxxo'));
  t.false(slowerThanOld(r(cell(null, 'a'), cell(null, 'b')), 'maxxo'));
  t.false(slowerThanOld({ maxxo: cell(5) }, 'maxxo'));

  t.is(newOldCell(r(cell(1.1), cell(1)), 'maxxo'), '1.10');
  t.is(newOldCell(r(cell(1.2), cell(1)), 'maxxo'), '1.20 ✗');
  t.is(newOldCell(r(cell(1.2), cell(1)), 'maxxo', false), '1.20');
  t.is(newOldCell(r(cell(0.9), cell(1)), 'maxxo'), '0.90');
  t.is(newOldCell(r(cell(null, 'x'), cell(1)), 'maxxo'), 'new failed ✗');
  t.is(newOldCell(r(cell(1), cell(null, 'x')), 'maxxo'), 'old failed');
  t.is(newOldCell({ maxxo: cell(1) }, 'maxxo'), '');
});

test('the table gets a new/old column per service whose both sides ran, and a legend naming the baseline and the slower rows', (t) => {
  const res = results(['maxxo', 'maxxo-base', 'vboxx', 'vboxx-base'], {
    wire: { maxxo: cell(2), 'maxxo-base': cell(1), vboxx: cell(1), 'vboxx-base': cell(1) },
    ls_l: { maxxo: cell(0.5), 'maxxo-base': cell(0.4), vboxx: cell(0.3), 'vboxx-base': cell(0.3) },
    create: { maxxo: cell(1), 'maxxo-base': cell(1.05), vboxx: cell(null, 'mount failed'), 'vboxx-base': cell(2) },
  }, { dir: '/work/old', commit: 'de0b7a9164feca344b7ccde48ce7fada63a3e6c5', dirty: false, addon: true });
  const table = formatTable(res);
  const ls = tableRow(table, 'ls -l');
  t.is(ls['Maxxo new/old'], '1.25 ✗');
  t.is(ls['vBoxx new/old'], '1.00');
  t.is(ls['base Maxxo (s)'], '0.400');
  const cr = tableRow(table, 'create');
  t.is(cr['Maxxo new/old'], '0.95');
  t.is(cr['vBoxx new/old'], 'new failed ✗');
  // the raw wire compares the two servers' copies, not the builds: shown, never marked
  t.is(tableRow(table, 'raw wire')['Maxxo new/old'], '2.00');
  t.deepEqual(slowerRows(res), ['ls_l (Maxxo)', 'create (vBoxx)']);
  t.regex(table, /base: `\/work\/old` at de0b7a9164fe\)/);
  t.regex(table, /more than 10 % slower/);
  t.regex(table, /Rows where new is slower than old: ls_l \(Maxxo\), create \(vBoxx\)\./);
});

test('the legend says which side of the pairs ran first in each phase (the first can be slower on the same build)', (t) => {
  const cols: ColumnId[] = ['maxxo', 'maxxo-base', 'vboxx', 'vboxx-base'];
  const res = results(cols, { ls_l: { maxxo: cell(1), 'maxxo-base': cell(1), vboxx: cell(1), 'vboxx-base': cell(1) } });
  t.false(formatTable(res).includes('Order by phase'));
  const ids = (round: number) => phaseOrder(cols.map((id) => ({ id })), round).map((c) => c.id);
  // --base-first starts at round 1: the baseline leads the first phase
  res.phaseOrder = { find: ids(1), small: ids(2), big: ids(3) };
  t.regex(formatTable(res), /Order by phase: new first in small; old first in find, big \(`--base-first` swaps it\)\./);
});

test('no new/old column without both sides of a pair, and none at all in a run without a baseline', (t) => {
  const half = formatTable(results(['maxxo', 'maxxo-base', 'vboxx'], { ls_l: { maxxo: cell(1), 'maxxo-base': cell(1), vboxx: cell(1) } }));
  t.true(half.includes('Maxxo new/old'));
  t.false(half.includes('vBoxx new/old'));
  t.regex(half, /Rows where new is slower than old: none\./);
  const plain = formatTable(results(['maxxo', 'vboxx'], { ls_l: { maxxo: cell(1), vboxx: cell(1) } }));
  t.false(plain.includes('new/old'));
  t.false(plain.includes('base'));
});

test('the -base columns need --baseline, which needs one of them; without it the default leaves them out', (t) => {
  const all: ColumnId[] = ['maxxo', 'maxxo-base', 'vboxx', 'vboxx-base', 'rclone-writes', 'rclone-full'];
  t.deepEqual(baselineColumns(all, false, null), ['maxxo', 'vboxx', 'rclone-writes', 'rclone-full']);
  t.deepEqual(baselineColumns(all, false, '/old'), all);
  t.throws(() => baselineColumns(['maxxo', 'maxxo-base'], true, null), { message: /need --baseline/ });
  t.throws(() => baselineColumns(['maxxo', 'vboxx'], true, '/old'), { message: /none of maxxo-base, vboxx-base/ });
});

test('each pair trades places every other phase; the other columns keep theirs', (t) => {
  const cols = (['maxxo', 'maxxo-base', 'vboxx', 'vboxx-base', 'rclone-full'] as ColumnId[]).map((id) => ({ id }));
  const ids = (round: number) => phaseOrder(cols, round).map((c) => c.id);
  t.deepEqual(ids(0), ['maxxo', 'maxxo-base', 'vboxx', 'vboxx-base', 'rclone-full']);
  t.deepEqual(ids(1), ['maxxo-base', 'maxxo', 'vboxx-base', 'vboxx', 'rclone-full']);
  t.deepEqual(ids(2), ids(0));
  // a column without its pair stays put
  t.deepEqual(phaseOrder([{ id: 'maxxo' as ColumnId }, { id: 'vboxx-base' as ColumnId }], 1).map((c) => c.id), ['maxxo', 'vboxx-base']);
});
