// vBoxxCloud wire shapes and their validation. Everything the server sends passes through
// here before the rest of the client trusts it: wrong types become BadResponse (for the object
// asked for) or are dropped with a warning (for one entry of a listing), never a crash later.
import { BadResponse, type ErrorContext } from '../../errors.js';
import type { Logger } from '../../log.js';

/** One file or folder as /1/metadata, files_put and fileops describe it. */
export interface VboxxMetadata {
  /** Path inside the root as the user sees it, "/" for the root itself. */
  path: string;
  is_dir: boolean;
  bytes: number;
  rev?: string;
  /** Seconds since the epoch; 0/absent when the server does not say. */
  modified_unix_timestamp?: number;
  modified?: string | number;
  client_mtime?: string | number;
  hash?: string;
  root?: number;
  is_deleted?: boolean;
  icon?: string;
  size?: string;
  contents?: VboxxMetadata[];
  [k: string]: unknown;
}

export interface VboxxRootInfo {
  id: number;
  name: string;
  type?: string;
  space_used?: number;
}

export interface VboxxAccountInfo {
  id?: number;
  first_name?: string;
  last_name?: string;
  display_name?: string;
  email?: string;
  root_id?: number;
  company_id?: number;
  space_usage: number;
  space_quota: number | null;
  roots: VboxxRootInfo[];
  [k: string]: unknown;
}

export interface VboxxPolicy {
  id?: number;
  company_id?: number;
  /** Bytes, null/absent = unlimited. */
  space_quota?: number | null;
  /** Megabytes as the service sends it (often a string, "300"); "" or absent = unlimited. */
  max_file_size?: string | number | null;
  /** ".exe,.mp3" or "*.mp3,*.ogg". */
  excluded_extensions?: string | null;
  [k: string]: unknown;
}

export interface VboxxShareLink {
  url: string;
  expires: string | null;
}

export interface ChunkState {
  upload_id: string;
  offset: number;
  expires?: string;
}

/** Paged list answer of the management API (10 per page). */
export interface Paged<T> {
  items: T[];
  page: number;
  total_pages: number;
  total: number | null;
  raw: Record<string, unknown>;
}

export type Json = Record<string, unknown>;

export function isObj(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bad(what: string, ctx: ErrorContext): never {
  throw new BadResponse(`malformed server answer: ${what}`, ctx);
}

export function expectObject(v: unknown, what: string, ctx: ErrorContext): Json {
  if (!isObj(v)) bad(`${what} is not an object`, ctx);
  return v;
}

function isCount(v: unknown): v is number {
  // safe integers only: 1e300 and 2^64 are "integers" too, and would reach stat(2) and offsets
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Validates one metadata object; returns a reason string when it cannot be trusted. */
function checkMeta(v: unknown): string | null {
  if (!isObj(v)) return 'entry is not an object';
  if (typeof v.path !== 'string' || v.path === '' || v.path.includes('\0')) return 'path missing or invalid';
  if (typeof v.is_dir !== 'boolean') return 'is_dir is not a boolean';
  if (v.bytes !== undefined && !isCount(v.bytes)) return 'bytes is not a non-negative integer';
  if (v.rev !== undefined && v.rev !== null && typeof v.rev !== 'string' && typeof v.rev !== 'number') return 'rev has a wrong type';
  const ts = v.modified_unix_timestamp;
  if (ts !== undefined && ts !== null && (typeof ts !== 'number' || !Number.isFinite(ts))) return 'modified_unix_timestamp is not a number';
  if (v.hash !== undefined && v.hash !== null && typeof v.hash !== 'string') return 'hash is not a string';
  if (v.contents !== undefined && v.contents !== null && !Array.isArray(v.contents)) return 'contents is not an array';
  return null;
}

function normalizeMeta(v: Json): VboxxMetadata {
  // Only the fields the drive uses are kept: a 10,000-entry listing is copied field by field,
  // and anything else the server adds is of no use downstream.
  const m: VboxxMetadata = { path: v.path as string, is_dir: v.is_dir as boolean, bytes: (v.bytes as number | undefined) ?? 0 };
  if (v.rev !== null && v.rev !== undefined) m.rev = String(v.rev);
  if (typeof v.modified_unix_timestamp === 'number') m.modified_unix_timestamp = v.modified_unix_timestamp;
  if (typeof v.hash === 'string') m.hash = v.hash;
  if (typeof v.root === 'number') m.root = v.root;
  if (typeof v.is_deleted === 'boolean') m.is_deleted = v.is_deleted;
  if (typeof v.modified === 'string' || typeof v.modified === 'number') m.modified = v.modified;
  if (typeof v.client_mtime === 'string' || typeof v.client_mtime === 'number') m.client_mtime = v.client_mtime;
  if (typeof v.icon === 'string') m.icon = v.icon;
  if (typeof v.size === 'string') m.size = v.size;
  return m;
}

/**
 * Parses a metadata answer. The object itself must be sound (BadResponse otherwise); unsound
 * entries of `contents` are dropped with a warning so one bad entry does not hide a folder.
 */
export function parseMetadata(v: unknown, ctx: ErrorContext, log?: Logger): VboxxMetadata {
  const why = checkMeta(v);
  if (why) bad(`metadata: ${why}`, ctx);
  const obj = v as Json;
  const m = normalizeMeta(obj);
  if (Array.isArray(obj.contents)) {
    const out: VboxxMetadata[] = [];
    for (const c of obj.contents as unknown[]) {
      const r = checkMeta(c);
      if (r) { log?.warn(`vboxx: dropped a listing entry of ${ctx.path ?? '?'}: ${r}`); continue; }
      out.push(normalizeMeta(c as Json));
    }
    m.contents = out;
  }
  return m;
}

export function parseAccountInfo(v: unknown, ctx: ErrorContext, log?: Logger): VboxxAccountInfo {
  const o = expectObject(v, 'account info', ctx);
  const usage = o.space_usage;
  if (usage !== undefined && !isCount(usage)) bad('space_usage is not a non-negative integer', ctx);
  const quota = o.space_quota;
  if (quota !== undefined && quota !== null && !isCount(quota)) bad('space_quota is not a non-negative integer', ctx);
  if (o.roots !== undefined && !Array.isArray(o.roots)) bad('roots is not an array', ctx);
  const roots: VboxxRootInfo[] = [];
  for (const r of (o.roots as unknown[] | undefined) ?? []) {
    if (!isObj(r) || !isCount(r.id) || typeof r.name !== 'string') {
      log?.warn('vboxx: dropped a malformed root of the account info');
      continue;
    }
    roots.push({ ...r, id: r.id, name: r.name } as VboxxRootInfo);
  }
  return { ...o, space_usage: (usage as number | undefined) ?? 0, space_quota: (quota as number | null | undefined) ?? null, roots } as VboxxAccountInfo;
}

export function parsePolicy(v: unknown, ctx: ErrorContext): VboxxPolicy {
  const o = expectObject(v, 'policy', ctx);
  const q = o.space_quota;
  if (q !== undefined && q !== null && q !== '' && !(isCount(q) || (typeof q === 'string' && /^\d+$/.test(q)))) bad('policy space_quota has a wrong type', ctx);
  const mfs = o.max_file_size;
  if (mfs !== undefined && mfs !== null && typeof mfs !== 'string' && typeof mfs !== 'number') bad('policy max_file_size has a wrong type', ctx);
  const ex = o.excluded_extensions;
  if (ex !== undefined && ex !== null && typeof ex !== 'string') bad('policy excluded_extensions is not a string', ctx);
  return { ...o, space_quota: q === '' || q === undefined || q === null ? null : Number(q) } as VboxxPolicy;
}

export function parseShareLink(v: unknown, ctx: ErrorContext): VboxxShareLink {
  const o = expectObject(v, 'share link', ctx);
  if (typeof o.url !== 'string' || o.url === '') bad('share link has no url', ctx);
  const exp = o.expires;
  return { url: o.url, expires: typeof exp === 'string' ? exp : null };
}

export function parseChunkState(v: unknown, ctx: ErrorContext): ChunkState {
  const o = expectObject(v, 'chunked upload state', ctx);
  if (typeof o.upload_id !== 'string' || o.upload_id === '') bad('chunked upload has no upload_id', ctx);
  if (!isCount(o.offset)) bad('chunked upload offset is not a non-negative integer', ctx);
  return { upload_id: o.upload_id, offset: o.offset, ...(typeof o.expires === 'string' ? { expires: o.expires } : {}) };
}

/**
 * A management list page: `{total_pages, page, total_<key>, <key>: [...]}`. Items must be
 * objects; anything else is dropped (the list is informational, not a path source).
 */
export function parsePaged<T = Json>(v: unknown, key: string, ctx: ErrorContext, log?: Logger): Paged<T> {
  const o = expectObject(v, `${key} page`, ctx);
  const arr = o[key];
  if (!Array.isArray(arr)) bad(`${key} is not an array`, ctx);
  const items: T[] = [];
  for (const it of arr) {
    if (!isObj(it)) { log?.warn(`vboxx: dropped a malformed item of ${key}`); continue; }
    items.push(it as T);
  }
  const page = isCount(o.page) && o.page >= 1 ? o.page : 1;
  const totalPages = isCount(o.total_pages) ? o.total_pages : page;
  const totalKey = `total_${key}`;
  const total = isCount(o[totalKey]) ? (o[totalKey] as number) : null;
  return { items, page, total_pages: totalPages, total, raw: o };
}

/** Last component of a server path ("/docs/a.txt" -> "a.txt"; "/" -> ""). */
export function lastComponent(p: string): string {
  const trimmed = p.endsWith('/') && p.length > 1 ? p.slice(0, -1) : p;
  const i = trimmed.lastIndexOf('/');
  return i < 0 ? trimmed : trimmed.slice(i + 1);
}

/** Number of components of a server path ("/" -> 0, "/a/b" -> 2). */
export function depth(p: string): number {
  return p.split('/').filter((s) => s !== '').length;
}
