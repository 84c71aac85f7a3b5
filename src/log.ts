// Leveled logging to stderr. Anything that looks like a secret is masked before it is written,
// as a second line of defence: callers must not pass secrets in the first place.
export type Level = 'error' | 'warn' | 'info' | 'debug' | 'trace';
const order: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3, trace: 4 };

export interface Logger {
  error(msg: string): void;
  warn(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
  trace(msg: string): void;
  level: Level;
}

const SECRET_PATTERNS: RegExp[] = [
  /((?:session_token|token|password|rsync|RSYNC_PASSWORD|current_password|new_password)["']?\s*[:=]\s*["']?)[^"'&\s,}]+/gi,
];

export function redact(s: string): string {
  let out = s;
  for (const re of SECRET_PATTERNS) out = out.replace(re, '$1***');
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

export const silentLogger: Logger = createLogger('error', () => {});
