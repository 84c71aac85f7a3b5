// A progress bar on a terminal; plain occasional lines otherwise, so logs of CI runs stay
// readable and never fill with carriage returns.

export interface Progress {
  /** done/total in the unit of the bar; total 0 = unknown. */
  update(done: number, total: number, note?: string): void;
  done(message?: string): void;
}

export function createProgress(label: string, opts: { stream?: NodeJS.WriteStream; unit?: 'bytes' | 'items'; plainEveryMs?: number } = {}): Progress {
  const stream = opts.stream ?? process.stderr;
  const tty = !!stream.isTTY;
  const fmt = (n: number) => (opts.unit === 'bytes' ? bytes(n) : String(n));
  let lastPlain = 0;
  let lastText = '';
  let drawn = false;
  return {
    update(done, total, note) {
      const text = total > 0 ? `${fmt(done)}/${fmt(total)}` : fmt(done);
      if (tty) {
        const cols = Math.max(40, stream.columns ?? 80);
        const width = Math.max(10, Math.min(40, cols - label.length - text.length - (note?.length ?? 0) - 12));
        const frac = total > 0 ? Math.min(1, done / total) : 0;
        const fill = Math.round(frac * width);
        const bar = total > 0 ? `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${String(Math.round(frac * 100)).padStart(3)}%` : '';
        stream.write(`\r\x1b[K${label} ${bar} ${text}${note ? ' ' + note : ''}`);
        drawn = true;
      } else {
        const line = `${label}: ${text}${note ? ' ' + note : ''}`;
        const now = Date.now();
        if (line !== lastText && now - lastPlain >= (opts.plainEveryMs ?? 1000)) {
          stream.write(line + '\n');
          lastPlain = now;
          lastText = line;
        }
      }
    },
    done(message) {
      if (tty && drawn) stream.write('\r\x1b[K');
      if (message) stream.write(message + '\n');
    },
  };
}

function bytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return i ? `${v.toFixed(1)} ${u[i]}` : `${v} B`;
}
