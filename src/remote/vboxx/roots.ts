// How the account's roots appear in the drive. Every root is one top-level folder named after
// the root; root names are free text ("C:\\Projects\\x", "Team Share 1"), so they are turned
// into one valid path component and clashes are broken deterministically (by root id), so the
// same account always shows the same names.
import type { VboxxRootInfo } from './wire.js';
import { NotFound } from '../../errors.js';

export interface MappedRoot {
  id: number;
  /** The component shown in the drive. */
  name: string;
  /** The root's name as the server spells it. */
  serverName: string;
  type?: string;
}

/** One valid path component from a root name: no '/', '\\', NUL, not '.'/'..' nor empty. */
export function sanitizeRootName(name: string, id: number): string {
  // Control characters other than NUL are legal in Linux names but confuse every shell and
  // file manager; a root name never needs them.
  let s = name.replace(/[/\\]/g, '_').replace(/[\u0000-\u001f\u007f]/g, '').trim();
  if (s === '.' || s === '..') s = s.replace(/\./g, '_');
  if (s === '') s = `root-${id}`;
  // Linux NAME_MAX is 255 bytes; keep room for a de-duplication suffix.
  while (Buffer.byteLength(s) > 200) s = s.slice(0, -1);
  return s;
}

/**
 * Maps roots to unique top-level names. Roots are taken in id order and the lower id keeps the
 * plain name, so adding a root never renames an existing folder with a lower id.
 */
export function mapRoots(roots: VboxxRootInfo[]): MappedRoot[] {
  const sorted = [...roots].sort((a, b) => a.id - b.id);
  const used = new Set<string>();
  const out: MappedRoot[] = [];
  for (const r of sorted) {
    const base = sanitizeRootName(r.name, r.id);
    let name = base;
    if (used.has(name)) name = `${base} (${r.id})`;
    for (let n = 2; used.has(name); n++) name = `${base} (${r.id}-${n})`;
    used.add(name);
    out.push({ id: r.id, name, serverName: r.name, ...(r.type !== undefined ? { type: r.type } : {}) });
  }
  return out;
}

/** The root that `sel` (an id or a name, raw or as shown) names. */
export function pickRoot(mapped: MappedRoot[], sel: string): MappedRoot {
  const t = sel.trim();
  if (/^\d+$/.test(t)) {
    const byId = mapped.find((r) => r.id === Number(t));
    if (byId) return byId;
  }
  const exact = mapped.find((r) => r.serverName === t) ?? mapped.find((r) => r.name === t);
  if (exact) return exact;
  const lower = t.toLowerCase();
  const ci = mapped.filter((r) => r.serverName.toLowerCase() === lower || r.name.toLowerCase() === lower);
  if (ci.length === 1) return ci[0]!;
  const known = mapped.map((r) => `${r.id} (${r.name})`).join(', ') || 'none';
  throw new NotFound(`no root "${t}" in this account; roots: ${known}`);
}
