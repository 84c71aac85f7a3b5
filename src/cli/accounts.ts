// Saved accounts: $XDG_CONFIG_HOME/cloudmount/accounts.json (dir 0700, file 0600), written
// atomically so a crash never leaves half a file with a password in it.
import { readFileSync, writeFileSync, renameSync, chmodSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { configDir, privateDir } from './paths.js';

export type Kind = 'maxxo' | 'vboxx';

export interface SavedAccount {
  kind: Kind;
  server: string;
  user: string;
  /** Absent with --no-save-password: asked for (or taken from a file/env) at each use. */
  password?: string;
  root?: string;
  /** Absolute path of a PEM CA bundle given with `login --ca`, trusted at every later use. */
  ca?: string;
  savedAt: string;
}

export interface AccountsFile {
  version: 1;
  accounts: Record<string, SavedAccount>;
}

export function accountsPath(): string {
  return join(configDir(), 'accounts.json');
}

export class ConfigError extends Error {}

export function loadAccounts(): AccountsFile {
  const p = accountsPath();
  if (!existsSync(p)) return { version: 1, accounts: {} };
  const st = statSync(p);
  if ((st.mode & 0o077) !== 0) {
    // Tighten it rather than refuse: the file is ours and the fix is obvious.
    try { chmodSync(p, 0o600); } catch { /* reported by the next write */ }
  }
  let data: unknown;
  try { data = JSON.parse(readFileSync(p, 'utf8')); } catch (e) {
    throw new ConfigError(`${p} is not valid JSON (${(e as Error).message}); fix or remove it`);
  }
  const d = data as Partial<AccountsFile>;
  if (!d || typeof d !== 'object' || typeof d.accounts !== 'object' || d.accounts === null) {
    throw new ConfigError(`${p} has an unexpected shape; fix or remove it`);
  }
  return { version: 1, accounts: d.accounts as Record<string, SavedAccount> };
}

export function saveAccounts(f: AccountsFile): void {
  privateDir(configDir());
  const p = accountsPath();
  const tmp = `${p}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(f, null, 2) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, p);
}

export function validName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name) && name !== 'maxxo' && name !== 'vboxx';
}
