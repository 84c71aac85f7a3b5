// Process-wide CLI state: the logger chosen by -v / --log-level / --log-file.
import { createLogger, fileSink, type Level, type Logger } from '../log.js';

const byVerbosity: Level[] = ['warn', 'info', 'debug', 'trace'];
let sink: (line: string) => void = (l) => process.stderr.write(l + '\n');
let closeFile: (() => void) | undefined;
/** One logger object for the whole process: clients keep it, so later settings reach them too. */
export const log: Logger = createLogger('warn', (l) => sink(l));

export function setVerbosity(v: number): Logger {
  log.level = byVerbosity[Math.min(v, byVerbosity.length - 1)]!;
  return log;
}

/** --log-level wins over -v; --log-file sends the log there instead of stderr (as rclone does). */
export function configureLog(o: { verbose: number; level?: Level; file?: string }): void {
  if (o.level) log.level = o.level;
  else setVerbosity(o.verbose);
  if (o.file) {
    const f = fileSink(o.file);
    closeFile?.();
    closeFile = f.close;
    sink = f.write;
  }
}

/** The level set by the command line, raised to at least `l` (e.g. -o debug). */
export function raiseLevel(l: Level): void {
  if (byVerbosity.indexOf(l) > byVerbosity.indexOf(log.level)) log.level = l;
}

/**
 * Set by long-running commands when their terminal hung up (SIGHUP). After their cleanup the
 * process then ends by that signal rather than exit(): Node's exit restores the terminal's
 * settings and aborts when the terminal is gone (EIO).
 */
export let hungUp = false;
export function noteHangup(): void { hungUp = true; }

/** Failures that end the command with exit 1 and one line, no stack. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}
