// Mount-relative POSIX path helpers ("/" is the top of the drive).

export function normPath(p: string): string {
  if (!p || p === '/') return '/';
  if (!p.startsWith('/')) p = '/' + p;
  while (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  return p;
}

export function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}

export function baseOf(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

export function joinPath(dir: string, name: string): string {
  return dir === '/' ? '/' + name : dir + '/' + name;
}

/** True when p is strictly inside dir. */
export function isUnder(p: string, dir: string): boolean {
  return dir === '/' ? p !== '/' : p.length > dir.length && p.charCodeAt(dir.length) === 47 && p.startsWith(dir);
}

/** p with its `from` prefix replaced by `to` (p is from or under from). */
export function rebase(p: string, from: string, to: string): string {
  return p === from ? to : to + p.slice(from.length);
}

/** Moves the keys of m that are `from` or under it to their place under `to` (a rename). */
export function rekeyMap<V>(m: Map<string, V>, from: string, to: string, onMove?: (v: V, newKey: string) => void): void {
  const moved: [string, V][] = [];
  for (const [k, v] of m) if (k === from || isUnder(k, from)) moved.push([k, v]);
  for (const [k] of moved) m.delete(k);
  for (const [k, v] of moved) {
    const nk = rebase(k, from, to);
    onMove?.(v, nk);
    m.set(nk, v);
  }
}

/**
 * The keys of a path-keyed table by folder, so that what is at or under a path (a rename's or an
 * rmdir's tree) is found in O(that tree). A scan of every key cost a rename or rmdir 5 ms with
 * 20,000 cached paths and 170-240 ms with 200,000 (the metadata cache's bound), on the JS thread.
 * Each key is linked under its parent, and each folder above it under its own parent up to the
 * top (a key's folder need not be a key itself); the table says what is a key (`isKey`), and tells
 * the index of each key it gains or loses.
 */
export class PathIndex {
  private readonly children = new Map<string, Set<string>>();

  constructor(private readonly isKey: (path: string) => boolean) {}

  /** path became a key of the table. */
  add(path: string): void {
    for (let c = path; c !== '/';) {
      const dir = parentOf(c);
      let s = this.children.get(dir);
      if (!s) this.children.set(dir, s = new Set());
      else if (s.has(c)) return;
      s.add(c);
      c = dir;
    }
  }

  /** path is no longer a key: unlinked, with the folders above it that link nothing else. */
  delete(path: string): void {
    for (let c = path; c !== '/';) {
      // still the folder of keys below it, or a key itself (a folder above the one removed)
      if (this.children.has(c) || (c !== path && this.isKey(c))) return;
      const dir = parentOf(c);
      const s = this.children.get(dir);
      if (!s) return;
      s.delete(c);
      if (s.size > 0) return;
      this.children.delete(dir);
      c = dir;
    }
  }

  /** The keys at or under path. */
  under(path: string): string[] {
    const out: string[] = [];
    const stack = [path];
    while (stack.length) {
      const c = stack.pop()!;
      const key = this.isKey(c);
      if (key) out.push(c);
      const s = this.children.get(c);
      if (s) for (const k of s) stack.push(k);
      // a folder left linked by a removal while it was still a key itself (a table that drops
      // several keys at once may say so until it is done): unlinked when found
      else if (!key && c !== path) this.delete(c);
    }
    return out;
  }

  /** The keys directly in folder dir (not below its subfolders). */
  childKeys(dir: string): string[] {
    const s = this.children.get(dir);
    return s ? [...s].filter((c) => this.isKey(c)) : [];
  }

  /** Folders linked (tests: nothing is left once the table is empty). */
  get size(): number {
    return this.children.size;
  }
}

/** A key set in a path-keyed map and its PathIndex together (the index learns new keys only). */
export function setIndexed<V>(m: Map<string, V>, idx: PathIndex, k: string, v: V): void {
  const had = m.has(k);
  m.set(k, v);
  if (!had) idx.add(k);
}

/** A key deleted from a path-keyed map and its PathIndex together. */
export function deleteIndexed<V>(m: Map<string, V>, idx: PathIndex, k: string): void {
  if (m.delete(k)) idx.delete(k);
}

/** rekeyMap for a map with a PathIndex: visits the keys of the renamed tree only. */
export function rekeyIndexed<V>(m: Map<string, V>, idx: PathIndex, from: string, to: string, onMove?: (v: V, newKey: string) => void): void {
  const moved: [string, V][] = [];
  for (const k of idx.under(from)) moved.push([k, m.get(k)!]);
  for (const [k] of moved) deleteIndexed(m, idx, k);
  for (const [k, v] of moved) {
    const nk = rebase(k, from, to);
    onMove?.(v, nk);
    setIndexed(m, idx, nk, v);
  }
}
