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
        stream.write(`\r\x1b[K${label} ${bar} ${text}${note ? ', ' + note : ''}`);
        drawn = true;
      } else {
        const line = `${label}: ${text}${note ? ', ' + note : ''}`;
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

/** Seconds as "1m05s" / "42s" for an ETA. */
export function formatEta(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const r = Math.ceil(s);
  if (r < 60) return `${r}s`;
  if (r < 3600) return `${Math.floor(r / 60)}m${String(r % 60).padStart(2, '0')}s`;
  return `${Math.floor(r / 3600)}h${String(Math.floor((r % 3600) / 60)).padStart(2, '0')}m`;
}

/** What a flush meter needs of a drive's status (DriveStatus, as the mount record carries it). */
export interface FlushSample {
  pending: number;
  pendingBytes: number;
  sentBytes?: number;
  sendingBytes?: number;
  link?: { state: string; error?: string };
}

/**
 * Progress of a flush in bytes: bytes sent since the meter started (within files too, so one big
 * file moves the bar) against those plus the bytes still to send; speed over the last seconds, ETA.
 */
export function createFlushMeter(label: string, opts: { stream?: NodeJS.WriteStream; plainEveryMs?: number } = {}) {
  const bar = createProgress(label, { unit: 'bytes', ...opts });
  let base: number | undefined;
  const samples: Array<[number, number]> = [];
  let shown = false;
  return {
    sample(s: FlushSample | undefined): void {
      if (!s) return;
      const sent = s.sentBytes ?? 0;
      base ??= sent;
      const done = Math.max(0, sent - base);
      const left = Math.max(0, s.pendingBytes - (s.sendingBytes ?? 0));
      if (!shown && s.pending === 0 && done === 0) return; // nothing to flush: no bar at all
      shown = true;
      const now = Date.now();
      samples.push([now, done]);
      while (samples.length > 2 && now - samples[0]![0] > 5000) samples.shift();
      const [t0, d0] = samples[0]!;
      const speed = now - t0 >= 500 ? ((done - d0) * 1000) / (now - t0) : 0;
      const parts = [`${s.pending} pending`];
      if (speed > 0) parts.push(`${bytes(Math.round(speed))}/s`, `ETA ${formatEta(left / speed)}`);
      if (s.link && s.link.state !== 'ok') parts.push(`${s.link.state}${s.link.error ? `: ${s.link.error}` : ''}`);
      bar.update(done, done + left, parts.join(', '));
    },
    done(message?: string): void { bar.done(message); },
  };
}
