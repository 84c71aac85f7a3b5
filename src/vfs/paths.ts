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
