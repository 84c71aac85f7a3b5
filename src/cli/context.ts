// Process-wide CLI state: the logger chosen by -v flags.
import { createLogger, type Level, type Logger } from '../log.js';

const levels: Level[] = ['warn', 'info', 'debug', 'trace'];
export let log: Logger = createLogger('warn');

export function setVerbosity(v: number): Logger {
  log = createLogger(levels[Math.min(v, levels.length - 1)]!);
  return log;
}

/** Failures that end the command with exit 1 and one line, no stack. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}
