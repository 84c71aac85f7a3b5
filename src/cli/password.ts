// Where a password comes from: --password-file, else CLOUDMOUNT_PASSWORD, else a hidden prompt
// on a terminal. Never from argv. The value is only ever held in memory.
import { readFileSync, statSync } from 'node:fs';
import { UsageError } from './args.js';

export function readPasswordFile(file: string, warn: (m: string) => void): string {
  let text: string;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new UsageError(`--password-file ${file}: not a regular file`);
    if ((st.mode & 0o077) !== 0) warn(`password file ${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`cannot read password file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  // One line: the first, without its newline (files written by `echo` end with one).
  const pw = text.split(/\r?\n/)[0] ?? '';
  if (!pw) throw new UsageError(`password file ${file} is empty`);
  return pw;
}

/** Reads a line from the terminal without echoing it. */
export function promptHidden(question: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    const out = process.stderr;
    let buf = '';
    const wasRaw = stdin.isRaw;
    // Echo off before the question appears: whoever answers it the moment it shows must not be echoed.
    stdin.setRawMode(true);
    out.write(question);
    stdin.resume();
    stdin.setEncoding('utf8');
    const done = (err?: Error) => {
      stdin.setRawMode(wasRaw);
      stdin.pause();
      stdin.removeListener('data', onData);
      out.write('\n');
      if (err) reject(err); else resolve(buf);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return done();
        if (ch === '\u0003') return done(new UsageError('cancelled'));
        if (ch === '\u007f' || ch === '\b') { buf = buf.slice(0, -1); continue; }
        buf += ch;
      }
    };
    stdin.on('data', onData);
  });
}

export async function obtainPassword(opts: {
  file?: string; saved?: string; what: string; warn: (m: string) => void;
}): Promise<string> {
  if (opts.file) return readPasswordFile(opts.file, opts.warn);
  if (opts.saved) return opts.saved;
  const env = process.env.CLOUDMOUNT_PASSWORD;
  if (env) return env;
  if (process.stdin.isTTY) {
    const pw = await promptHidden(`Password for ${opts.what}: `);
    if (!pw) throw new UsageError('empty password');
    return pw;
  }
  throw new UsageError(`no password for ${opts.what}: use --password-file FILE, CLOUDMOUNT_PASSWORD, a saved account, or run on a terminal`);
}
