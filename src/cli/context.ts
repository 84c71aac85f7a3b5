// Process-wide CLI state: the logger chosen by -v flags.
import { createLogger, type Level, type Logger } from '../log.js';

const levels: Level[] = ['warn', 'info', 'debug', 'trace'];
export let log: Logger = createLogger('warn');

export function setVerbosity(v: number): Logger {
  log = createLogger(levels[Math.min(v, levels.length - 1)]!);
  return log;
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
