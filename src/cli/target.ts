// Which account a command talks to (a saved account NAME, or --server with --email/--username),
// its password, and the clients built from them.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { OptDef, Parsed } from './args.js';
import { UsageError, str } from './args.js';
import { loadAccounts, validName, type Kind, type SavedAccount } from './accounts.js';
import { obtainPassword } from './password.js';
import { log, CliError } from './context.js';
import type { ClientOptions } from '../remote/options.js';
import type { Remote } from '../remote/types.js';
import { isRemoteError } from '../errors.js';
import { serverSentence, type Subject } from './server-messages.js';

export interface Target {
  kind: Kind;
  server: string;
  user: string;
  /** Saved account name, when one was used. */
  name?: string;
  savedPassword?: string;
  root?: string;
  /** --ca: PEM bundle trusted for an https server with a private CA (else the system CAs only). */
  caFile?: string;
  /** The caFile came from the saved account (for the error message when it is gone). */
  caSaved?: boolean;
}

export const caOption: OptDef = { name: 'ca', value: 'FILE', desc: 'Trust the PEM CA certificate(s) in FILE for an https server (TLS is always verified)' };

export const connectOptions = (kind?: Kind): OptDef[] => [
  { name: 'account', short: 'a', value: 'NAME', desc: 'Saved account to use (see `cloudmount login`)' },
  { name: 'server', value: 'URL', desc: 'Service base URL, e.g. https://maxxo.example' },
  ...(kind !== 'vboxx' ? [{ name: 'email', value: 'EMAIL', desc: 'Maxxo e-mail to log in with' }] : []),
  ...(kind !== 'maxxo' ? [{ name: 'username', value: 'USER', desc: 'vBoxx username to log in with' }] : []),
  { name: 'password-file', value: 'FILE', desc: 'Read the password from FILE (else CLOUDMOUNT_PASSWORD, else prompt)' },
  caOption,
];

export function normalizeServer(s: string): string {
  let u: URL;
  try { u = new URL(s); } catch { throw new UsageError(`--server '${s}' is not a URL (expected e.g. https://host:port)`); }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--server must be an http:// or https:// URL, not '${s}'`);
  if (u.username || u.password) throw new UsageError('--server must not contain credentials; use --email/--username and --password-file');
  return u.toString().replace(/\/+$/, '');
}

/** Target from explicit flags; kind is known. */
export function targetFromFlags(kind: Kind, p: Parsed): Target {
  const server = str(p, 'server');
  const email = str(p, 'email');
  const username = str(p, 'username');
  if (!server) throw new UsageError(`--server URL is required for ${kind} (or use a saved account: cloudmount login)`);
  if (kind === 'maxxo') {
    if (username) throw new UsageError('Maxxo logs in with --email, not --username');
    if (!email) throw new UsageError('--email is required for maxxo');
    if (!email.includes('@')) throw new UsageError(`--email '${email}' is not an e-mail address`);
    return { kind, server: normalizeServer(server), user: email, root: str(p, 'root') };
  }
  if (email) throw new UsageError('vBoxx logs in with --username, not --email');
  if (!username) throw new UsageError('--username is required for vboxx');
  return { kind, server: normalizeServer(server), user: username, root: str(p, 'root') };
}

export function targetFromSaved(name: string, want?: Kind): Target {
  if (!validName(name)) throw new UsageError(`'${name}' is not a valid account name`);
  const a: SavedAccount | undefined = loadAccounts().accounts[name];
  if (!a) throw new UsageError(`no saved account '${name}' (see \`cloudmount accounts\`, \`cloudmount login\`)`);
  if (want && a.kind !== want) throw new UsageError(`account '${name}' is a ${a.kind} account, not ${want}`);
  return {
    kind: a.kind, server: a.server, user: a.user, name, savedPassword: a.password, root: a.root,
    ...(a.ca ? { caFile: a.ca, caSaved: true } : {}),
  };
}

/** For account commands: --account NAME, else flags, else the only saved account of that kind. */
export function resolveTarget(kind: Kind, p: Parsed): Target {
  const t = resolveTargetOnly(kind, p);
  const ca = str(p, 'ca');
  if (ca) { t.caFile = ca; t.caSaved = false; }
  return t;
}

function resolveTargetOnly(kind: Kind, p: Parsed): Target {
  const name = str(p, 'account');
  if (name) {
    if (str(p, 'server') || str(p, 'email') || str(p, 'username')) {
      throw new UsageError('--account cannot be combined with --server/--email/--username');
    }
    return targetFromSaved(name, kind);
  }
  if (str(p, 'server') || str(p, 'email') || str(p, 'username')) return targetFromFlags(kind, p);
  const saved = Object.entries(loadAccounts().accounts).filter(([, a]) => a.kind === kind);
  if (saved.length === 1) return targetFromSaved(saved[0]![0], kind);
  if (saved.length === 0) throw new UsageError(`no ${kind} account given: use --account NAME or --server URL with ${kind === 'maxxo' ? '--email' : '--username'}`);
  throw new UsageError(`several saved ${kind} accounts (${saved.map(([n]) => n).join(', ')}): choose one with --account NAME`);
}

export function accountId(t: { kind: Kind; server: string; user: string }): string {
  const h = createHash('sha256').update(`${t.kind}\0${t.server}\0${t.user}`).digest('hex');
  return `${t.kind}-${h.slice(0, 16)}`;
}

export async function passwordFor(t: Target, p: Parsed): Promise<string> {
  return obtainPassword({ file: str(p, 'password-file'), saved: t.savedPassword, what: `${t.kind} ${t.user} at ${t.server}`, warn: (m) => log.warn(m) });
}

export function clientOptions(t: Target, password: string, extra: Partial<ClientOptions> = {}): ClientOptions {
  let ca: Buffer | undefined;
  if (t.caFile) {
    try { ca = readFileSync(t.caFile); } catch (e) {
      const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      if (t.caSaved) throw new CliError(`cannot read the CA file ${t.caFile} saved with account ${t.name}: ${why} (give --ca FILE, or log in again with --ca)`);
      throw new CliError(`cannot read --ca ${t.caFile}: ${why}`);
    }
  }
  return { server: t.server, user: t.user, password, log, ...(ca ? { ca } : {}), ...extra };
}

/** A Remote of either service (lazy import: the clients pull in undici and rsync plumbing). */
export async function createRemote(t: Target, password: string, extra: Partial<ClientOptions> = {}): Promise<Remote> {
  const co = clientOptions(t, password, extra);
  if (t.kind === 'maxxo') {
    const m = await import('../remote/maxxo/index.js');
    return m.createMaxxoRemote(co);
  }
  const v = await import('../remote/vboxx/index.js');
  return v.createVboxxRemote({ ...co, root: t.root });
}

/**
 * Turns a typed failure into one clear line: login and network failures here, service codes
 * through the per-service tables of server-messages.ts (naming `subject`, what the command acted on).
 */
export function explainRemoteError(e: unknown, t?: Target, subject?: Subject): never {
  if (isRemoteError(e)) {
    const who = t ? `${t.kind} ${t.user} at ${t.server}` : 'the server';
    if (e.code === 'AUTH_FAILED' || e.code === 'UNAUTHORIZED' || e.code === 'NO_PERMISSION') {
      throw new CliError(`login failed for ${who}: wrong ${t?.kind === 'vboxx' ? 'username' : 'e-mail'} or password (${e.code})`);
    }
    if (e.code === 'NETWORK_ERROR' || e.code === 'TIMEOUT') {
      throw new CliError(`cannot reach ${t?.server ?? 'the server'}: ${e.message} (${e.code})`);
    }
    const sentence = t ? serverSentence(t.kind, e, subject) : undefined;
    if (sentence) throw new CliError(sentence);
    throw new CliError(e.message && e.message !== e.code ? `${e.code}: ${e.message}` : e.code);
  }
  throw e;
}
