// Small helpers shared by the vBoxx routes: the error type, parameter access, formatting.
import type { FastifyReply, FastifyRequest } from 'fastify';

/** An error the API answers as {status_code, message, code:"error"} with that HTTP status. */
export class VboxxError extends Error {
  constructor(public status: number, message: string, public extra: Record<string, unknown> = {}) {
    super(message);
    this.name = 'VboxxError';
  }
}

export const fail = (status: number, message: string, extra: Record<string, unknown> = {}): never => {
  throw new VboxxError(status, message, extra);
};

export function sendError(reply: FastifyReply, status: number, message: string, extra: Record<string, unknown> = {}) {
  return reply.code(status).type('application/json; charset=utf-8')
    .send({ status_code: status, message, code: 'error', ...extra });
}

type Params = Record<string, string | undefined>;

/** Query parameters merged with form fields (form wins); repeated fields keep their first value. */
export function params(req: FastifyRequest): Params {
  const out: Params = {};
  const add = (src: unknown) => {
    if (!src || typeof src !== 'object' || typeof (src as any).pipe === 'function' || Buffer.isBuffer(src)) return;
    for (const [k, v] of Object.entries(src as Record<string, unknown>)) {
      const first = Array.isArray(v) ? v[0] : v;
      if (first === undefined || first === null) continue;
      if (typeof first === 'string') out[k] = first;
      else if (typeof first === 'number' || typeof first === 'boolean') out[k] = String(first);
      else if (typeof first === 'object' && typeof (first as any).value === 'string') out[k] = (first as any).value; // multipart field
    }
  };
  add(req.query);
  add(req.body);
  return out;
}

export function requireFields(p: Params, names: string[]): void {
  for (const n of names) {
    if (p[n] === undefined || p[n] === '') fail(500, `missing required field ${n}`);
  }
}

export function parseIntField(p: Params, name: string, opts: { min?: number } = {}): number | undefined {
  const v = p[name];
  if (v === undefined || v === '') return undefined;
  if (!/^-?\d+$/.test(v.trim())) fail(400, `${name} must be an integer`);
  const n = Number(v.trim());
  if (!Number.isSafeInteger(n)) fail(400, `${name} must be an integer`);
  if (opts.min !== undefined && n < opts.min) fail(400, `${name} must be at least ${opts.min}`);
  return n;
}

export function parseBoolField(p: Params, name: string): boolean | undefined {
  const v = p[name];
  if (v === undefined || v === '') return undefined;
  const s = v.trim().toLowerCase();
  if (s === 'true' || s === '1') return true;
  if (s === 'false' || s === '0') return false;
  return fail(400, `${name} must be either 'true' or 'false'`);
}

/** Positive integer id from a URL segment; anything else is a 404 like an unknown id. */
export function parseId(v: string | undefined, what: string): number {
  if (!v || !/^\d{1,15}$/.test(v)) return fail(404, `unknown ${what} with id ${String(v ?? '').slice(0, 40)}`);
  return Number(v);
}

/** Human size as in the text's samples: "0B", "512B", "1.91k", "3.02M". */
export function humanSize(bytes: number): string {
  if (bytes < 1024) return `${bytes}B`;
  const units = ['k', 'M', 'G', 'T', 'P'];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(2)}${units[i]}`;
}

/** "2012-11-20T17:04:06" (UTC, seconds), the file timestamp format of the text. */
export function isoSeconds(ms: number): string {
  // Files of one folder often share their second; a listing formats each second once.
  const sec = Math.floor(ms / 1000);
  let s = isoCache.get(sec);
  if (s === undefined) {
    s = new Date(sec * 1000).toISOString().slice(0, 19);
    if (isoCache.size >= 4096) isoCache.clear();
    isoCache.set(sec, s);
  }
  return s;
}
const isoCache = new Map<number, string>();

/** "2012-10-17T16:23:26.598000+00:00", the management timestamp format of the text. */
export function isoMicro(ms = Date.now()): string {
  const s = new Date(ms).toISOString();
  return `${s.slice(0, 23)}000+00:00`;
}

/** JSON safe for an HTTP header value (Node refuses non-latin1 header bytes). */
export function headerJson(v: unknown): string {
  return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const ICONS: Record<string, string> = {
  jpg: 'page_white_picture', jpeg: 'page_white_picture', png: 'page_white_picture', gif: 'page_white_picture',
  bmp: 'page_white_picture', svg: 'page_white_picture', webp: 'page_white_picture',
  txt: 'page_white_text', md: 'page_white_text', csv: 'page_white_text', log: 'page_white_text',
  pdf: 'page_white_acrobat', doc: 'page_white_word', docx: 'page_white_word', xls: 'page_white_excel',
  xlsx: 'page_white_excel', ppt: 'page_white_powerpoint', pptx: 'page_white_powerpoint',
  zip: 'page_white_compressed', gz: 'page_white_compressed', tgz: 'page_white_compressed', '7z': 'page_white_compressed',
  mp3: 'page_white_sound', ogg: 'page_white_sound', wav: 'page_white_sound', flac: 'page_white_sound',
  mp4: 'page_white_film', avi: 'page_white_film', mkv: 'page_white_film', mov: 'page_white_film',
  js: 'page_white_code', ts: 'page_white_code', py: 'page_white_code', html: 'page_white_code', json: 'page_white_code',
};
export function iconFor(name: string, isDir: boolean): string {
  if (isDir) return 'folder';
  const dot = name.lastIndexOf('.');
  return (dot > 0 && ICONS[name.slice(dot + 1).toLowerCase()]) || 'page_white';
}

/** Parses "a,b" or "*.a, .b" extension lists into normalized ".a" forms. */
export function parseExtensions(list: string | null | undefined): string[] {
  if (!list) return [];
  return list.split(',').map((e) => e.trim().toLowerCase().replace(/^\*/, ''))
    .filter((e) => e.length > 0).map((e) => (e.startsWith('.') ? e : `.${e}`));
}
