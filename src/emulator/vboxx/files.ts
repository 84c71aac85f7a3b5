// File endpoints: metadata, download (ranges, streaming), files_put, chunked upload, fileops, share links.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createWriteStream } from 'node:fs';
import { open, rm, stat, type FileHandle } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Transform, type Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { newToken } from '../security.js';
import type { Node, Person, Root } from './db.js';
import { type Vboxx } from './store.js';
import { fail, headerJson, params, parseBoolField, parseIntField, sendError, VboxxError } from './util.js';

const HWM = 1024 * 1024;
const UPLOAD_TTL_MS = 48 * 3600 * 1000;

export type Handler = (req: FastifyRequest, reply: FastifyReply) => unknown;

/** Registers path for the given methods; other methods answer 405 (HEAD follows GET). */
export function route(inst: FastifyInstance, methods: string[], path: string, handler: Handler): void {
  // HEAD is ours too: Fastify's automatic HEAD would rewrite Content-Length of a file to 0.
  const all = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH'];
  const h = async (req: FastifyRequest, reply: FastifyReply) => {
    const m = req.method === 'HEAD' ? 'GET' : req.method;
    if (!methods.includes(m)) return sendError(reply, 405, `method ${req.method} not allowed here`);
    return handler(req, reply);
  };
  const variants = path.endsWith('*') ? [path] : path.endsWith('/') ? [path, path.slice(0, -1)] : [path, `${path}/`];
  for (const url of new Set(variants)) inst.route({ method: all, url, handler: h });
}

/** Root segment and still-encoded rest of a wildcard URL: "/1/files/<root>/<rest>?query". */
function splitRaw(req: FastifyRequest, prefix: string): { rootSeg: string; rest: string } {
  const raw = req.raw.url ?? '';
  const q = raw.indexOf('?');
  const pathname = q >= 0 ? raw.slice(0, q) : raw;
  const after = pathname.slice(pathname.indexOf(prefix) + prefix.length);
  const slash = after.indexOf('/');
  const rootSeg = slash >= 0 ? after.slice(0, slash) : after;
  let seg: string;
  try { seg = decodeURIComponent(rootSeg); } catch { seg = rootSeg; }
  return { rootSeg: seg, rest: slash >= 0 ? after.slice(slash + 1) : '' };
}

export function registerFileRoutes(api: FastifyInstance, v: Vboxx): void {
  const who = (req: FastifyRequest): Person => v.personForToken(params(req).session_token);
  const target = (req: FastifyRequest, prefix: string): { p: Person; root: Root; path: string } => {
    const p = who(req);
    const { rootSeg, rest } = splitRaw(req, prefix);
    const root = v.rootFor(p, rootSeg);
    return { p, root, path: v.decodePath(rest) };
  };

  route(api, ['GET'], '/metadata/*', async (req, reply) => {
    const { root, path } = target(req, '/metadata/');
    const q = params(req);
    const n = v.mustNode(root.id, path);
    const top = v.entry(n);
    if (!n.is_dir) return { ...top, status_code: 200 };
    const list = parseBoolField(q, 'list') ?? true;
    if (!list) return { ...top, status_code: 200 };
    const { hash, json } = v.listing(root.id, path);
    if (q.hash && q.hash === hash) return reply.code(304).send();
    // Spliced as text: a 10,000-entry listing is never materialized as objects.
    const head = JSON.stringify({ hash, ...top });
    return reply.type('application/json; charset=utf-8').send(`${head.slice(0, -1)},"contents":${json},"status_code":200}`);
  });

  route(api, ['GET'], '/files/*', async (req, reply) => {
    const { root, path } = target(req, '/files/');
    // (serveFile looks the path up itself: 404 for none, 400 for a folder)
    return serveFile(v, req, reply, root.id, path);
  });

  route(api, ['GET', 'POST'], '/shares/create_link/*', async (req) => {
    const { p, root, path } = target(req, '/shares/create_link/');
    v.mustNode(root.id, path);
    const existing = v.ctx.db.prepare<[number, string, number], { id: string; expires: number | null }>(
      'SELECT id, expires FROM vboxx_shares WHERE root_id = ? AND path = ? AND person_id = ?').get(root.id, path, p.id);
    const id = existing?.id ?? newToken(24);
    if (!existing) {
      v.ctx.db.prepare('INSERT INTO vboxx_shares (id, root_id, path, person_id, created, expires) VALUES (?, ?, ?, ?, ?, NULL)')
        .run(id, root.id, path, p.id, Date.now());
    }
    const expires = existing?.expires != null ? new Date(existing.expires).toISOString() : null;
    return { url: `${baseUrl(req)}/s/${id}`, expires };
  });

  route(api, ['POST', 'PUT'], '/commit_chunked_upload/*', async (req) => {
    const q = params(req);
    const p = v.personForToken(q.session_token);
    const { rootSeg, rest } = splitRaw(req, '/commit_chunked_upload/');
    const root = v.rootFor(p, rootSeg);
    const path = v.decodePath(rest);
    if (path === '') fail(400, 'a file path is required');
    const id = need(q, 'upload_id');
    const u = v.st.upload.get(id);
    if (!u || u.person_id !== p.id || u.expires < Date.now()) return fail(404, 'unknown or expired upload_id');
    if (v.busyUploads.has(id)) fail(409, 'a chunk or commit of this upload is still in progress');
    const opts = writeOptions(q);
    const file = join(v.uploadDir, id);
    // Busy while committing too: a second commit of the same upload must not race this one.
    v.busyUploads.add(id);
    try {
      const size = (await stat(file).catch(() => ({ size: 0 }))).size;
      // Not in the raw context: the fields may come as a form body (Dropbox v1) or in the query.
      // placeFile renames the upload file into the root, so a refused commit leaves it for a retry.
      const n = v.placeFile(root, path, file, size, opts);
      v.ctx.db.prepare('DELETE FROM vboxx_uploads WHERE id = ?').run(id);
      return v.entry(n);
    } finally {
      v.busyUploads.delete(id);
    }
  });

  route(api, ['POST', 'GET'], '/fileops/create_folder', async (req) => {
    const q = params(req);
    const p = who(req);
    const root = v.rootFor(p, need(q, 'root'));
    return v.entry(v.createFolder(root, v.clean(need(q, 'path'))));
  });
  route(api, ['POST', 'GET'], '/fileops/delete', async (req) => {
    const q = params(req);
    const p = who(req);
    const root = v.rootFor(p, need(q, 'root'));
    return v.entry(v.remove(root, v.clean(need(q, 'path'))), true);
  });
  route(api, ['POST', 'GET'], '/fileops/move', async (req) => {
    const q = params(req);
    const p = who(req);
    const root = v.rootFor(p, need(q, 'root'));
    return v.entry(v.move(root, v.clean(need(q, 'from_path')), v.clean(need(q, 'to_path'))));
  });
  route(api, ['POST', 'GET'], '/fileops/copy', async (req) => {
    const q = params(req);
    const p = who(req);
    const root = v.rootFor(p, need(q, 'root'));
    return v.entry(await v.copy(root, v.clean(need(q, 'from_path')), v.clean(need(q, 'to_path'))));
  });
}

/** Routes whose body is raw file bytes: they live in a context where no parser touches the body. */
export function registerRawRoutes(raw: FastifyInstance, v: Vboxx): void {
  route(raw, ['PUT', 'POST'], '/files_put/*', async (req, reply) => {
    const q = params(req);
    const p = v.personForToken(q.session_token);
    const { rootSeg, rest } = splitRaw(req, '/files_put/');
    const root = v.rootFor(p, rootSeg);
    const path = v.decodePath(rest);
    if (path === '') fail(400, 'a file path is required');
    const opts = writeOptions(q);
    // Refuse before reading the body when the headers already tell: saves streaming a doomed upload.
    v.checkName(root, path);
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared)) {
      try { v.checkSize(root, declared); } catch (e) { reply.header('connection', 'close'); throw e; }
    }
    const tmp = join(v.tmpDir, `put-${randomBytes(8).toString('hex')}`);
    try {
      const bytes = await receive(req.raw, tmp, v.maxFileBytes(root.company_id), 'w');
      return v.entry(v.placeFile(root, path, tmp, bytes, opts));
    } catch (e) {
      if (e instanceof VboxxError && e.status === 413) reply.header('connection', 'close');
      throw e;
    } finally {
      await rm(tmp, { force: true });
    }
  });

  route(raw, ['PUT', 'POST'], '/chunked_upload', async (req, reply) => {
    const q = params(req);
    const p = v.personForToken(q.session_token);
    const offset = parseIntField(q, 'offset', { min: 0 }) ?? 0;
    let id = q.upload_id;
    let cur = 0;
    if (id) {
      const u = v.st.upload.get(id);
      if (!u || u.person_id !== p.id || u.expires < Date.now()) fail(404, 'unknown or expired upload_id');
      cur = u!.offset;
    } else {
      id = newToken(32);
    }
    if (offset !== cur) fail(400, `wrong offset ${offset}, the upload is at offset ${cur}`, { upload_id: id, offset: cur });
    if (v.busyUploads.has(id)) fail(409, 'another chunk of this upload is in progress');
    const max = v.maxFileBytes(p.company_id);
    const file = join(v.uploadDir, id);
    v.busyUploads.add(id);
    try {
      if (!q.upload_id) {
        v.ctx.db.prepare('INSERT INTO vboxx_uploads (id, person_id, offset, created, expires) VALUES (?, ?, 0, ?, ?)')
          .run(id, p.id, Date.now(), Date.now() + UPLOAD_TTL_MS);
      }
      let err: unknown;
      try { await receive(req.raw, file, max - cur, 'a'); } catch (e) { err = e; }
      // Whatever arrived counts, as in Dropbox: the client resumes from the offset we answer.
      const size = (await stat(file).catch(() => ({ size: cur }))).size;
      const expires = Date.now() + UPLOAD_TTL_MS;
      v.ctx.db.prepare('UPDATE vboxx_uploads SET offset = ?, expires = ? WHERE id = ?').run(size, expires, id);
      if (err) {
        if (err instanceof VboxxError && err.status === 413) reply.header('connection', 'close');
        throw err;
      }
      return { upload_id: id, offset: size, expires: new Date(expires).toISOString() };
    } finally {
      v.busyUploads.delete(id);
    }
  });
}

/** Raw share links: a file streams, a folder answers a JSON listing; no session needed. */
export function registerShareRoutes(s: FastifyInstance, v: Vboxx): void {
  route(s, ['GET'], '/*', async (req, reply) => {
    const raw = req.raw.url ?? '';
    const q = raw.indexOf('?');
    const pathname = q >= 0 ? raw.slice(0, q) : raw;
    const after = pathname.replace(/^\/s\//, '');
    const slash = after.indexOf('/');
    const id = slash >= 0 ? after.slice(0, slash) : after;
    const share = id ? v.st.share.get(id) : undefined;
    if (!share || (share.expires != null && share.expires < Date.now())) return fail(404, 'unknown or expired share link');
    const sub = v.decodePath(slash >= 0 ? after.slice(slash + 1) : '');
    const path = [share.path, sub].filter(Boolean).join('/');
    const n = v.mustNode(share.root_id, path);
    if (!n.is_dir) return serveFile(v, req, reply, share.root_id, path);
    const rel = (p: string) => p.slice(share.path.length).replace(/^\/?/, '/');
    const entry = (c: Node) => {
      const e = v.entry(c);
      return { ...e, path: rel(c.path), root: undefined,
        url: `${baseUrl(req)}/s/${id}${rel(c.path).split('/').map(encodeURIComponent).join('/')}` };
    };
    return { ...entry(n), contents: v.st.children.all(share.root_id, path).map(entry) };
  });
}

function need(q: Record<string, string | undefined>, name: string): string {
  const x = q[name];
  if (x === undefined || x === '') return fail(400, `missing required parameter ${name}`);
  return x;
}

function writeOptions(q: Record<string, string | undefined>) {
  const overwrite = parseBoolField(q, 'overwrite') ?? true;
  const parentRev = parseIntField(q, 'parent_rev', { min: 0 });
  // Extension: client_mtime (unix seconds) keeps the writer's mtime, shown as client_mtime.
  const clientMtime = parseIntField(q, 'client_mtime', { min: 0 }) ?? null;
  // Beyond year 9999 a date has no ISO form: refuse it here rather than break every later listing.
  if (clientMtime !== null && clientMtime > 253402300799) fail(400, 'client_mtime must be a unix time before the year 10000');
  return { overwrite, parentRev, clientMtime };
}

function baseUrl(req: FastifyRequest): string {
  const host = req.headers.host ?? `${req.hostname}`;
  return `${req.protocol}://${host}`;
}

/** Streams the request body into file, refusing with 413 once more than limit bytes arrived. */
async function receive(body: Readable, file: string, limit: number, flags: 'w' | 'a'): Promise<number> {
  let n = 0;
  const counter = new Transform({
    highWaterMark: HWM,
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      if (n > limit) cb(new VboxxError(413, `upload exceeds the organization policy max_file_size of ${limit === Infinity ? '?' : Math.round(limit / (1024 * 1024))} MB`));
      else cb(null, chunk);
    },
  });
  try {
    await pipeline(body, counter, createWriteStream(file, { flags, mode: 0o600, highWaterMark: HWM }));
  } catch (e) {
    if (e instanceof VboxxError) throw e;
    throw new VboxxError(400, 'upload interrupted before the body was complete');
  }
  return n;
}

/** Parses a single "bytes=" range; null = serve the whole file (absent or unparsable, or several). */
function parseRange(h: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | null {
  if (!h) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(h);
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  let end = m[2] === '' ? size - 1 : Number(m[2]);
  if (m[2] !== '' && end < start) return null;
  if (start >= size) return 'unsatisfiable';
  if (end >= size) end = size - 1;
  return { start, end };
}

export async function serveFile(v: Vboxx, req: FastifyRequest, reply: FastifyReply, rootId: number, path: string) {
  // The revision named in the answer must be the one whose bytes it carries. An upload commits
  // (rename into place, new rev) between two turns of the event loop, so one landing while the
  // open below runs in the thread pool gave the new bytes under the old ETag: a client that
  // follows versions landed them next to the old version's (seen as mixed content in an e2e test).
  // The rev is read again once the file is open; when it moved, the open is done again.
  let n: Node | undefined;
  let fh: Awaited<ReturnType<typeof open>> | null = null;
  for (let attempt = 0; ; attempt++) {
    n = v.mustNode(rootId, path);
    if (n.is_dir) return fail(400, `/${path} is a folder, not a file`);
    fh = await open(v.disk(rootId, path), 'r').catch(() => null);
    const now = v.st.node.get(rootId, path);
    if (now && now.rev === n.rev && !now.is_dir) break;
    await fh?.close();
    fh = null;
    if (attempt >= 8) return fail(503, `/${path} keeps changing; try again`);
  }
  if (!fh) return fail(404, `path /${n.path} not found`);
  let size: number;
  try { size = (await fh.stat()).size; } catch (e) { await fh.close(); throw e; }
  const etag = `"${n.rev}"`;
  reply.header('accept-ranges', 'bytes');
  reply.header('etag', etag);
  reply.header('last-modified', new Date(n.mtime).toUTCString());
  reply.header('x-vboxx-metadata', headerJson({ ...v.entry(n), bytes: size }));
  reply.header('content-type', 'application/octet-stream');
  if (req.headers['if-none-match'] === etag) { await fh.close(); return reply.code(304).send(); }
  // If-Range: the range applies only to the version the client already holds; otherwise 200 whole.
  const ifRange = req.headers['if-range'];
  const lastModified = new Date(n.mtime).toUTCString();
  const rangeOk = ifRange === undefined || ifRange === etag || ifRange === lastModified;
  const r = rangeOk ? parseRange(req.headers.range, size) : null;
  if (r === 'unsatisfiable') {
    await fh.close();
    reply.header('content-range', `bytes */${size}`);
    return sendError(reply, 416, `requested range not satisfiable (file has ${size} bytes)`);
  }
  const start = r ? r.start : 0;
  const end = r ? r.end : size - 1;
  const length = size === 0 ? 0 : end - start + 1;
  reply.header('content-length', String(length));
  if (r) { reply.code(206); reply.header('content-range', `bytes ${start}-${end}/${size}`); }
  if (req.method === 'HEAD' || length === 0) { await fh.close(); return reply.send(); }
  // An injected mid-body drop (server.ts onSend) needs Fastify's send path; so does nothing else.
  if ((req as { cloudmountDrop?: boolean }).cloudmountDrop) {
    return reply.send(fh.createReadStream({ start, end, highWaterMark: HWM }));
  }
  reply.hijack();
  reply.raw.writeHead(reply.statusCode, reply.getHeaders() as Record<string, string>);
  await streamBody(reply.raw, fh, start, end);
  return reply;
}

// Download bodies are read into reused buffers, not a stream's fresh 1 MiB buffer per read: at
// ~500 allocations per 512 MiB the external-memory pressure forced a full mark-compact every
// ~30 MiB, most of the server's CPU per download. Buffers come from one slab allocated at load,
// so it is mmapped (glibc: page + 16 bytes) and the 4080-byte offset page-aligns every buffer:
// a copy from the page cache to a destination 16 bytes past a page boundary hits the CPU's 4K
// aliasing stall and took 4x as long on the reference machine.
const CHUNK = 1024 * 1024;
const PER_DOWNLOAD = 3;
const POOL_KEEP = 16;
const freeChunks: Buffer[] = [];
function newChunks(n: number): Buffer[] {
  const slab = Buffer.allocUnsafeSlow(n * CHUNK + 4096);
  return Array.from({ length: n }, (_, i) => slab.subarray(4080 + i * CHUNK, 4080 + (i + 1) * CHUNK));
}
// Address space only: a page counts in RSS once a download first reads into it.
freeChunks.push(...newChunks(POOL_KEEP));

/**
 * Writes bytes start..end of fh to res with up to PER_DOWNLOAD reads queued ahead of the socket,
 * so the socket never runs dry between reads (a half-empty socket costs more CPU per byte than a
 * full one). A buffer is read into again only after its write has completed. A client that goes
 * away or a file that shrinks ends the response by destroying it: the length was promised.
 */
async function streamBody(res: ServerResponse, fh: FileHandle, start: number, end: number): Promise<void> {
  // From the end, as they were given back: the same few buffers stay hot (and the rest of the
  // slab never becomes resident).
  const own = freeChunks.splice(-PER_DOWNLOAD, PER_DOWNLOAD);
  if (own.length < 2) own.push(...newChunks(2));
  const idle = [...own];
  let pending = 0;
  let broken = false;
  let wake: (() => void) | null = null;
  const notify = () => { const w = wake; wake = null; w?.(); };
  const sleep = () => new Promise<void>((r) => { wake = r; });
  const onClose = () => { if (!res.writableFinished) { broken = true; notify(); } };
  res.on('close', onClose);
  try {
    let pos = start;
    while (pos <= end && !broken) {
      const b = idle.pop();
      if (!b) { await sleep(); continue; }
      const { bytesRead } = await fh.read(b, 0, Math.min(CHUNK, end - pos + 1), pos);
      if (bytesRead === 0) { broken = true; break; }
      pos += bytesRead;
      pending++;
      const chunk = bytesRead === CHUNK ? b : b.subarray(0, bytesRead);
      const done = (err?: Error | null) => {
        pending--;
        if (err) broken = true; else idle.push(b);
        notify();
      };
      // The last bytes end the response in the same call: once they are out, the client holds the
      // whole body and may send its next request at once, so the response must already be finished
      // then (not after the file closes), or a server counting requests in flight sees one too many.
      if (pos > end) res.end(chunk, done); else res.write(chunk, done);
    }
    while (pending > 0 && !broken) await sleep();
  } catch {
    broken = true;
  } finally {
    res.off('close', onClose);
    await fh.close().catch(() => {});
  }
  if (broken) { res.destroy(); return; }
  // Only buffers no write still holds go back; after a failure they are left to the GC.
  if (freeChunks.length < POOL_KEEP) freeChunks.push(...own.slice(0, POOL_KEEP - freeChunks.length));
}
