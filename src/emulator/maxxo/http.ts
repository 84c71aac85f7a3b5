// Request plumbing for the Maxxo routes: PHP-style parameters from query, urlencoded, JSON or
// multipart bodies, the error table of the spec, and the method check (405) before anything else.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { PathError } from '../security.js';

/** HTTP status of every Maxxo error code (the spec's table; MESSAGE_ALREADY_READ as its sibling). */
export const ERROR_STATUS: Record<string, number> = {
  ERR_UNKNOWN: 500,
  ALREADY_CONTACT: 202,
  USER_NOT_FOUND: 404,
  CONTACT_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  NO_PERMISSION: 401,
  AUTH_FAILED: 403,
  TOKEN_CANNOT_BE_GENERATED: 500,
  NOTIFICATION_NOT_FOUND: 404,
  NOTIFICATION_ALREADY_READ: 202,
  METHOD_BAD_REQUEST: 400,
  MESSAGE_NOT_FOUND: 404,
  MESSAGE_ALREADY_PROCESSED: 202,
  MESSAGE_ALREADY_READ: 202,
  INVALID_PHOTO: 400,
  INVALID_EMAIL: 400,
  EMAIL_ALREADY_EXIST: 400,
  WRONG_CURRENT_PASSWORD: 400,
  INVALID_NEW_PASSWORD: 400,
  QUOTA_EXCEEDED: 403,
  FILE_NOT_FOUND: 404,
};

export class MaxxoError extends Error {
  constructor(readonly code: string) { super(code); this.name = 'MaxxoError'; }
}
export const bad = () => new MaxxoError('METHOD_BAD_REQUEST');

export function sendError(reply: FastifyReply, code: string): FastifyReply {
  return reply.code(ERROR_STATUS[code] ?? 500).type('application/json; charset=utf-8').send({ error: code });
}

/** Form parameters as PHP sees them: `name`, `name[]` and `name[i]` all feed list(name). */
export class Params {
  private m = new Map<string, string[]>();

  add(key: string, value: unknown): void {
    if (value === undefined || value === null) return;
    let vals: string[];
    if (Array.isArray(value)) {
      // A JSON body may carry an array of objects for `source`/`messages`: keep it as JSON text.
      vals = value.every((v) => v === null || typeof v !== 'object')
        ? value.filter((v) => v !== null).map(String)
        : [JSON.stringify(value)];
    } else if (typeof value === 'object') {
      vals = [JSON.stringify(value)];
    } else vals = [String(value)];
    const k = key.replace(/\[[^\]]*\]$/, '');
    const list = this.m.get(k) ?? [];
    list.push(...vals);
    this.m.set(k, list);
  }

  has(name: string): boolean { return this.m.has(name); }
  keys(): string[] { return [...this.m.keys()]; }
  get(name: string): string | undefined { return this.m.get(name)?.[0]; }
  list(name: string): string[] { return this.m.get(name) ?? []; }
  /** A required non-empty string parameter, else METHOD_BAD_REQUEST. */
  req(name: string): string {
    const v = this.get(name);
    if (v === undefined || v === '') throw bad();
    return v;
  }
  /** A required non-empty list parameter, else METHOD_BAD_REQUEST. */
  reqList(name: string): string[] {
    const v = this.list(name);
    if (v.length === 0) throw bad();
    return v;
  }
}

export interface UploadedFile { field: string; data: Buffer; truncated: boolean; filename?: string }

const MAX_FORM = 1024 * 1024;

const MAX_DRAIN = 64 * 1024 * 1024;

/**
 * Reads a raw body up to limit. An oversized body is still drained before the 400: answering
 * while the client is still sending leaves it (undici) waiting forever on a half-read socket.
 */
async function readStream(s: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of s) {
    const b = Buffer.isBuffer(c) ? c : Buffer.from(c);
    n += b.length;
    if (n <= limit) chunks.push(b);
    else if (n > MAX_DRAIN) break; // past any sane form: drop the connection instead
  }
  if (n > limit) throw bad();
  return Buffer.concat(chunks);
}

/**
 * Collects parameters (query, then body: later values win for get()) and, for multipart, the
 * uploaded file of `fileField` buffered up to fileLimit+1 bytes (the rest is drained).
 */
export async function readParams(req: FastifyRequest, fileField?: string, fileLimit = 0):
    Promise<{ params: Params; file?: UploadedFile }> {
  const params = new Params();
  let file: UploadedFile | undefined;
  const query = (req.query ?? {}) as Record<string, unknown>;
  const bodyParams = new Params();
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    if (req.isMultipart()) {
      for await (const part of req.parts()) {
        if (part.type === 'file') {
          if (fileField && part.fieldname === fileField && !file) {
            const chunks: Buffer[] = [];
            let n = 0;
            let truncated = false;
            for await (const c of part.file) {
              if (n <= fileLimit) { chunks.push(c as Buffer); n += (c as Buffer).length; } else truncated = true;
            }
            if (part.file.truncated || n > fileLimit) truncated = true;
            file = { field: part.fieldname, data: Buffer.concat(chunks), truncated, filename: part.filename };
          } else {
            part.file.resume();
            await new Promise<void>((r) => { part.file.once('end', r); part.file.once('close', r); });
          }
        } else {
          bodyParams.add(part.fieldname, part.value);
        }
      }
    } else {
      const body = req.body as unknown;
      if (body && typeof (body as Readable).pipe === 'function') {
        // Unparsed content type (or none): read it as a urlencoded form, PHP does the same.
        const text = (await readStream(body as Readable, MAX_FORM)).toString('utf8');
        for (const [k, v] of new URLSearchParams(text)) bodyParams.add(k, v);
      } else if (typeof body === 'string') {
        for (const [k, v] of new URLSearchParams(body)) bodyParams.add(k, v);
      } else if (body && typeof body === 'object') {
        for (const [k, v] of Object.entries(body as Record<string, unknown>)) bodyParams.add(k, v);
      }
    }
  }
  // Body values take precedence over query values of the same name (as $_REQUEST with GP order).
  const bodyKeys = new Set(bodyParams.keys());
  for (const [k, v] of Object.entries(query)) {
    const base = k.replace(/\[[^\]]*\]$/, '');
    if (!bodyKeys.has(base)) params.add(k, v);
  }
  for (const k of bodyKeys) for (const v of bodyParams.list(k)) params.add(k, v);
  return { params, file };
}

/** Maps anything thrown by a handler to the spec's error shape; never leaks a message or path. */
export function errorCode(e: unknown, log: (m: string) => void): string {
  if (e instanceof MaxxoError) return e.code;
  if (e instanceof PathError) return 'METHOD_BAD_REQUEST';
  const status = (e as { statusCode?: number })?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) return 'METHOD_BAD_REQUEST';
  log(`maxxo: unexpected error: ${(e as Error)?.message ?? String(e)}`);
  return 'ERR_UNKNOWN';
}
