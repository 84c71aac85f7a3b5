// Table and JSON output shared by every listing command.

export type Row = Record<string, unknown>;

function cell(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v).replace(/[\r\n\t]/g, ' ');
}

/** Columns: keys of the rows, or the given ones. Missing values print as "-". */
export function formatTable(rows: Row[], columns?: string[]): string {
  const cols = columns ?? [...new Set(rows.flatMap((r) => Object.keys(r)))];
  if (!rows.length) return '(none)\n';
  const cells = rows.map((r) => cols.map((c) => cell(r[c])));
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((r) => Math.min(60, r[i]!.length))));
  const fmt = (vals: string[]) => vals.map((v, i) => (i === vals.length - 1 ? v : v.padEnd(widths[i]!))).join('  ').trimEnd();
  return [fmt(cols.map((c) => c.toUpperCase())), ...cells.map(fmt)].join('\n') + '\n';
}

/** key: value lines for one object. */
export function formatRecord(obj: Row): string {
  const keys = Object.keys(obj);
  if (!keys.length) return '(empty)\n';
  const w = Math.max(...keys.map((k) => k.length)) + 1;
  return keys.map((k) => `${(k + ':').padEnd(w)} ${cell(obj[k])}`).join('\n') + '\n';
}

export function printJson(v: unknown): void {
  process.stdout.write(JSON.stringify(v, null, 2) + '\n');
}

export function out(text: string): void {
  process.stdout.write(text);
}

export function humanBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return 'unlimited';
  const units = ['B', 'K', 'M', 'G', 'T', 'P'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${v}B` : `${v.toFixed(v < 10 ? 1 : 0)}${units[i]}`;
}

/** "10G", "512M", "1.5T", "1000" (bytes) -> bytes. */
export function parseSize(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B)?$/i.exec(s.trim());
  if (!m) return undefined;
  const mult: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4, P: 1024 ** 5 };
  return Math.round(Number(m[1]) * mult[m[2]!.toUpperCase()]!);
}

/** "30s", "500ms", "2m", "1.5" (seconds, as sshfs/rclone take them) -> ms. */
export function parseDuration(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) return undefined;
  const mult: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  return Math.round(Number(m[1]) * mult[m[2] ?? 's']!);
}
