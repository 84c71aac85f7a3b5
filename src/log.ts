// Leveled logging to stderr (or a file). Anything that looks like a secret is masked before it is
// written, as a second line of defence: callers must not pass secrets in the first place.
import { closeSync, fchmodSync, fstatSync, openSync, writeSync } from 'node:fs';

export type Level = 'error' | 'warn' | 'info' | 'debug' | 'trace';
export const LEVELS: Level[] = ['error', 'warn', 'info', 'debug', 'trace'];
const order: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3, trace: 4 };

export interface Logger {
  error(msg: string): void;
  warn(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
  trace(msg: string): void;
  level: Level;
}

/** Whether a message of level l would be written (to skip building expensive messages). */
export function enabled(log: Logger, l: Level): boolean {
  return order[l] <= order[log.level];
}

const SECRET_PATTERNS: Array<[RegExp, string]> = [
  [/((?:session_token|token|password|passwd|secret|rsync|RSYNC_PASSWORD|current_password|new_password|api_key)["']?\s*[:=]\s*["']?)[^"'&\s,}]+/gi, '$1***'],
  // Authorization: Bearer x / Basic x / Token x (headers dumped in an error, a curl line)
  [/(authorization["']?\s*[:=]\s*["']?)(?:(?:bearer|basic|token)\s+)?[^"'&\s,}]+/gi, '$1***'],
  [/\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, '$1 ***'],
  // credentials inside a URL: scheme://user:password@host
  [/(\b[a-z][a-z0-9+.-]*:\/\/[^/:@\s]+:)[^@/\s]+@/gi, '$1***@'],
];

export function redact(s: string): string {
  let out = s;
  for (const [re, by] of SECRET_PATTERNS) out = out.replace(re, by);
  return out;
}

export function createLogger(level: Level = 'warn', sink: (line: string) => void = (l) => process.stderr.write(l + '\n')): Logger {
  const lg: Logger = {
    level,
    error: (m) => emit('error', m),
    warn: (m) => emit('warn', m),
    info: (m) => emit('info', m),
    debug: (m) => emit('debug', m),
    trace: (m) => emit('trace', m),
  };
  function emit(l: Level, m: string) {
    if (order[l] > order[lg.level]) return;
    sink(`${new Date().toISOString()} ${l.toUpperCase().padEnd(5)} ${redact(m)}`);
  }
  return lg;
}

/**
 * A log file sink: appended to, created 0600 (a log names paths and accounts). An existing file
 * readable by others is made 0600 too when it is ours. Writes are synchronous so that the last
 * lines before an exit are in the file.
 */
export function fileSink(path: string): { write: (line: string) => void; close: () => void } {
  const fd = openSync(path, 'a', 0o600);
  const st = fstatSync(fd);
  if ((st.mode & 0o077) !== 0 && st.uid === process.getuid?.()) fchmodSync(fd, 0o600);
  let open = true;
  return {
    write: (line) => { if (open) { try { writeSync(fd, line + '\n'); } catch { /* disk full: logging must not stop the drive */ } } },
    close: () => { if (open) { open = false; closeSync(fd); } },
  };
}

export const silentLogger: Logger = createLogger('error', () => {});
