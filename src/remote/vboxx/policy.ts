// The organization policy as the client enforces it before an upload starts, so a refused file
// costs no transfer: max_file_size (MB) -> PolicyFileTooLarge, excluded_extensions ->
// PolicyExcludedExtension, space quota -> QuotaExceeded.
import { PolicyExcludedExtension, PolicyFileTooLarge, QuotaExceeded } from '../../errors.js';
import type { VboxxPolicy } from './wire.js';

export interface EffectivePolicy {
  /** Bytes; null = unlimited. */
  maxFileSize: number | null;
  /** Lower-case suffixes with their dot: [".exe", ".mp3"]. */
  excluded: string[];
  /** Bytes; null = unlimited. */
  quota: number | null;
}

const MB = 1024 * 1024;

/** ".exe,.MP3" / "*.mp3, *.ogg" / "exe mp3" -> [".exe", ".mp3"]. */
export function parseExtensions(list: string | null | undefined): string[] {
  if (!list) return [];
  const out = new Set<string>();
  for (let e of list.split(/[,;\s]+/)) {
    e = e.trim().toLowerCase();
    if (e.startsWith('*')) e = e.slice(1);
    if (e === '' || e === '.') continue;
    if (!e.startsWith('.')) e = '.' + e;
    out.add(e);
  }
  return [...out];
}

export function parseMaxFileSize(v: string | number | null | undefined): number | null {
  if (v === null || v === undefined || v === '') return null;
  const n = typeof v === 'number' ? v : Number(String(v).trim());
  // 0 or garbage means "no limit configured" rather than "nothing may be uploaded".
  if (!Number.isFinite(n) || n <= 0) return null;
  return Math.floor(n * MB);
}

export function effectivePolicy(p: VboxxPolicy | null): EffectivePolicy {
  if (!p) return { maxFileSize: null, excluded: [], quota: null };
  const q = p.space_quota;
  return {
    maxFileSize: parseMaxFileSize(p.max_file_size),
    excluded: parseExtensions(p.excluded_extensions),
    quota: typeof q === 'number' && Number.isFinite(q) && q > 0 ? q : null,
  };
}

export function excludedExtension(name: string, excluded: string[]): string | null {
  const lower = name.toLowerCase();
  for (const e of excluded) if (lower.endsWith(e) && lower.length > e.length) return e;
  return null;
}

/**
 * Throws when an upload of `size` bytes named `name` breaks the policy. `used` is the account's
 * usage, `replaced` the size of the file being overwritten (its bytes are given back).
 */
export function checkAgainst(pol: EffectivePolicy, path: string, name: string, size: number,
  quota: { total: number | null; used: number; replaced: number }): void {
  const ext = excludedExtension(name, pol.excluded);
  if (ext) throw new PolicyExcludedExtension(`files ending in ${ext} are excluded by the organization policy`, { path });
  if (pol.maxFileSize !== null && size > pol.maxFileSize) {
    throw new PolicyFileTooLarge(`file of ${size} bytes exceeds the policy's maximum of ${pol.maxFileSize / MB} MB`, { path });
  }
  if (quota.total !== null && quota.used - quota.replaced + size > quota.total) {
    throw new QuotaExceeded(`upload of ${size} bytes exceeds the space quota (${quota.used} of ${quota.total} bytes used)`, { path });
  }
}
