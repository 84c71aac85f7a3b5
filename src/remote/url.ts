// The one place that turns paths and parameters into URL text. Both clients build every request
// path here so that each path segment is percent-encoded exactly once.

/**
 * Percent-encodes each segment of a POSIX path once (encodeURIComponent), keeping the '/'
 * separators: '/a b/ü.txt' -> '/a%20b/%C3%BC.txt'. Never feed it an already-encoded path.
 */
export function encodePathSegments(path: string): string {
  return path.split('/').map((s) => encodeURIComponent(s)).join('/');
}

export type QueryValue = string | number | boolean | undefined | null;
export type Query = Record<string, QueryValue | QueryValue[]>;

/** 'a=1&b=x%20y'; undefined/null values are left out; arrays repeat the key as given. */
export function encodeQuery(query: Query | undefined): string {
  if (!query) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(query)) {
    const values = Array.isArray(v) ? v : [v];
    for (const one of values) {
      if (one === undefined || one === null) continue;
      parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(one))}`);
    }
  }
  return parts.join('&');
}

/** application/x-www-form-urlencoded body; arrays repeat the key as given (e.g. 'file[]'). */
export function encodeForm(form: Record<string, string | number | boolean | Array<string | number>>): string {
  return encodeQuery(form as Query);
}

/**
 * base (may carry a path prefix, e.g. 'http://h:1/api/1') + encoded path + query -> full URL text.
 * `path` must already be encoded (encodePathSegments) and start with '/'.
 */
export function joinUrl(base: string, path: string, query?: Query): string {
  const b = base.replace(/\/+$/, '');
  const p = path.startsWith('/') ? path : '/' + path;
  const q = encodeQuery(query);
  return b + p + (q ? '?' + q : '');
}

/** Origin and path prefix of a base URL: 'http://h:1/api/1/' -> { origin: 'http://h:1', prefix: '/api/1' }. */
export function splitBase(base: string): { origin: string; prefix: string } {
  let u: URL;
  try { u = new URL(base); } catch { throw new TypeError(`invalid server URL: ${JSON.stringify(base)}`); }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`unsupported URL scheme: ${u.protocol}`);
  if (u.username || u.password) throw new TypeError('credentials in the server URL are not supported');
  return { origin: u.origin, prefix: u.pathname.replace(/\/+$/, '') };
}

/** Mount path '/a//b/' -> ['a', 'b'] (no empty components). */
export function pathParts(path: string): string[] {
  return path.split('/').filter((p) => p !== '' && p !== '.');
}
