// Maxxo reference server: the REST API of shared/specs/maxxo-api.txt under /api/1, and its data
// plane, a real rsync daemon serving the same folders the API lists.
//
// Where the text is silent, this server decides (and the tests pin it):
// - Success of an endpoint whose text names only `error` answers 200 `{}`.
// - ops/list of a missing path: FILE_NOT_FOUND 404; of a file: METHOD_BAD_REQUEST 400.
// - ops/filesize adds `type` ("f"/"d") to each row; folders report 4096 as in ops/list.
// - ops/move is rename(2): the destination's parent must exist (FILE_NOT_FOUND), an existing file
//   is replaced, an empty folder replaced by a folder, a non-empty folder or a file/folder type
//   mismatch or a move into itself is METHOD_BAD_REQUEST.
// - ops/delete removes folders recursively; a path that does not exist: FILE_NOT_FOUND 404 (the
//   others are still deleted). The top folder cannot be deleted or moved (METHOD_BAD_REQUEST).
// - ops/send of a missing file: FILE_NOT_FOUND; the content is copied when sent. Each folder entry
//   becomes one message (destination = the folder's name), each file of a non-folder entry one
//   message (destination = the file's name). Accepting puts it at the receiver's top folder,
//   as "name (2).ext" when the name is taken.
// - notifications/list and inbox/list show what is not yet read/processed; inbox `size` is a
//   string, as in the spec's example.
// - contacts/add: any unknown email -> USER_NOT_FOUND and nothing added; yourself -> 400; one
//   already a contact -> ALREADY_CONTACT 202 (the others are added). Contacts are one-way.
// - settings/update also takes `email` (INVALID_EMAIL, EMAIL_ALREADY_EXIST, both in the table);
//   new_password needs current_password (else WRONG_CURRENT_PASSWORD) and 6+ characters.
//   Nothing is changed when any field is refused; existing tokens stay valid.
// - user-photo/update answers {"photo": URL}; photos are served at /photos/NAME without a token.
// - Parameters: GET reads the query; POST reads query and body (urlencoded, multipart, JSON or an
//   untyped body read as urlencoded), body winning; `x`, `x[]` and `x[N]` all fill list x.
// - /slice with --no-rsync still answers (rsync_port absent = 873, where nothing listens).
// - Unknown resource under /api: 404 {"error":"METHOD_NOT_FOUND"}.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import type { EmulatorContext } from '../context.js';
import { hashPassword, hashPasswordSync, verifyPassword } from '../security.js';
import { startRsyncDaemon, type RsyncDaemon } from '../rsyncd.js';
import { MaxxoError, Params, bad, errorCode, readParams, sendError, type UploadedFile } from './http.js';
import { UserFiles, copyTree, listDir, usage, type Resolved } from './files.js';
import { PHOTO_MAX_BYTES, validPhoto } from './photo.js';
import { ensureMaxxoDemo } from './demo.js';
import {
  EMAIL_RE, allUsers, currentMonth, getUserByEmail, getUserById, initSchema, insertUser, issueToken,
  pgTimestamp, randomName, receivedThisMonth, userByToken, userFolder, type MaxxoUser, type NewUser,
} from './store.js';

export { MAXXO_DEMO_ACCOUNTS } from './demo.js';
export type { NewUser, MaxxoUser } from './store.js';

const ALL_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;

interface Call {
  req: FastifyRequest;
  reply: FastifyReply;
  user: MaxxoUser;
  params: Params;
  file?: UploadedFile;
}
type Result = { status?: number; body: unknown };
type Handler = (c: Call) => Result | Promise<Result>;

const ok = (body: unknown = {}, status = 200): Result => ({ status, body });

class MaxxoServer {
  rsyncd?: RsyncDaemon;
  readonly holdingDir: string;
  readonly photoDir: string;

  constructor(readonly ctx: EmulatorContext) {
    this.holdingDir = join(ctx.filesDir, 'maxxo-holding');
    this.photoDir = join(ctx.filesDir, 'maxxo-photos');
    mkdirSync(join(ctx.filesDir, 'maxxo'), { recursive: true });
    mkdirSync(this.holdingDir, { recursive: true, mode: 0o700 });
    mkdirSync(this.photoDir, { recursive: true });
  }

  files(u: MaxxoUser): UserFiles {
    return new UserFiles(userFolder(this.ctx, u.login), this.ctx.opts.dataDir);
  }

  rsyncModules() {
    return allUsers(this.ctx.db).map((u) => ({
      name: u.login, path: userFolder(this.ctx, u.login), user: u.login, password: u.rsync_password,
    }));
  }

  /** A new account, its password hashed by the caller (off the loop, or several side by side). */
  addUser(n: NewUser, passwordHash: string): MaxxoUser {
    const u = insertUser(this.ctx, n, passwordHash);
    this.rsyncd?.update(this.rsyncModules());
    return u;
  }

  photoUrl(req: FastifyRequest, photo: string): string {
    if (!photo) return '';
    return `http://${req.headers.host ?? '127.0.0.1'}/photos/${encodeURIComponent(photo)}`;
  }

  /** Moves a pending message's content into the receiver's folder; answers an error code or undefined. */
  deliver(msgId: number): string | undefined {
    const db = this.ctx.db;
    const msg = db.prepare('SELECT * FROM maxxo_messages WHERE id = ?').get(msgId) as
      { id: number; receiver_id: number; destination: string; size: number; state: string } | undefined;
    if (!msg) return 'MESSAGE_NOT_FOUND';
    if (msg.state !== 'pending') return 'MESSAGE_ALREADY_READ';
    const receiver = getUserById(db, msg.receiver_id)!;
    const src = join(this.holdingDir, String(msg.id), 'data');
    if (!existsSync(src)) return 'FILE_NOT_FOUND';
    const base = userFolder(this.ctx, receiver.login);
    const received = receivedThisMonth(receiver);
    if (usage(base) + msg.size > receiver.quota) return 'QUOTA_EXCEEDED';
    if (received + msg.size > receiver.receiving_quota) return 'QUOTA_EXCEEDED';
    // Everything from the checks to the rename is synchronous: no other request interleaves.
    const name = basename(msg.destination);
    let target = join(base, name);
    if (existsSync(target) || isSymlink(target)) {
      const ext = extname(name);
      const stem = ext && ext !== name ? name.slice(0, -ext.length) : name;
      const e = ext && ext !== name ? ext : '';
      for (let i = 2; ; i++) {
        target = join(base, `${stem} (${i})${e}`);
        if (!existsSync(target) && !isSymlink(target)) break;
      }
    }
    mkdirSync(base, { recursive: true });
    renameSync(src, target);
    rmSync(join(this.holdingDir, String(msg.id)), { recursive: true, force: true });
    db.prepare('UPDATE maxxo_users SET received = ?, received_month = ? WHERE id = ?')
      .run(received + msg.size, currentMonth(), receiver.id);
    db.prepare("UPDATE maxxo_messages SET state = 'accepted' WHERE id = ?").run(msg.id);
    return undefined;
  }

  decline(msgId: number): void {
    this.ctx.db.prepare("UPDATE maxxo_messages SET state = 'declined' WHERE id = ?").run(msgId);
    rmSync(join(this.holdingDir, String(msgId)), { recursive: true, force: true });
  }
}

function isSymlink(p: string): boolean {
  try { return lstatSync(p).isSymbolicLink(); } catch { return false; }
}

const servers = new WeakMap<EmulatorContext, MaxxoServer>();

/** Creates a Maxxo account on a running emulator in this process (tests); its rsync module
 *  follows. Synchronous, so a test's helpers need not wait: it blocks this process's loop for one
 *  hash, which a route never does. */
export function createMaxxoUser(ctx: EmulatorContext, user: NewUser): MaxxoUser {
  const s = servers.get(ctx);
  if (!s) throw new Error('Maxxo server not registered on this context');
  return s.addUser(user, hashPasswordSync(user.password));
}

/** Host folder of a Maxxo account (tests fill it directly, e.g. the 10,000-entry listing). */
export function maxxoUserFolder(ctx: EmulatorContext, email: string): string {
  const u = getUserByEmail(ctx.db, email);
  if (!u) throw new Error(`no Maxxo user ${email}`);
  return userFolder(ctx, u.login);
}

function parseJsonArray(text: string): unknown[] {
  let v: unknown;
  try { v = JSON.parse(text); } catch { throw bad(); }
  if (!Array.isArray(v)) throw bad();
  return v;
}

function parseId(s: string): number | undefined {
  return /^[0-9]{1,15}$/.test(s.trim()) ? Number(s.trim()) : undefined;
}

export async function registerMaxxo(app: FastifyInstance, ctx: EmulatorContext, stops: Array<() => Promise<void>>): Promise<void> {
  initSchema(ctx.db);
  const s = new MaxxoServer(ctx);
  servers.set(ctx, s);
  const db = ctx.db;

  if (ctx.opts.demo) await ensureMaxxoDemo(ctx, (n, hash) => s.addUser(n, hash));

  if (ctx.opts.rsync) {
    s.rsyncd = await startRsyncDaemon({
      dir: join(ctx.opts.dataDir, 'maxxo-rsyncd'), host: ctx.opts.host, modules: s.rsyncModules(), log: ctx.log,
    });
    ctx.rsync = { host: s.rsyncd.host, port: s.rsyncd.port };
    const d = s.rsyncd;
    stops.push(() => d.stop());
  }

  await app.register(async (api) => {
    api.setErrorHandler((err, _req, reply) => { sendError(reply, errorCode(err, ctx.log)); });
    api.setNotFoundHandler((_req, reply) => { reply.code(404).send({ error: 'METHOD_NOT_FOUND' }); });

    const route = (method: 'GET' | 'POST', path: string, handler: Handler,
      o: { auth?: boolean; fileField?: string } = {}) => {
      api.route({
        method: [...ALL_METHODS],
        url: `/1/${path}`,
        exposeHeadRoute: false,
        handler: async (req, reply) => {
          const allowed = req.method === method || (method === 'GET' && req.method === 'HEAD');
          if (!allowed) return sendError(reply, 'METHOD_NOT_ALLOWED');
          try {
            let user: MaxxoUser | undefined;
            if (o.auth !== false) {
              const h = req.headers['token'];
              const token = Array.isArray(h) ? h[0] : h;
              user = token ? userByToken(db, token) : undefined;
              if (!user) return sendError(reply, 'NO_PERMISSION');
            }
            // Whatever goes wrong reading the request (malformed multipart, cut-off body) is the
            // client's: METHOD_BAD_REQUEST, never ERR_UNKNOWN.
            const { params, file } = await readParams(req, o.fileField, PHOTO_MAX_BYTES)
              .catch((e: unknown) => { throw e instanceof MaxxoError ? e : bad(); });
            const r = await handler({ req, reply, user: user!, params, file });
            return reply.code(r.status ?? 200).type('application/json; charset=utf-8').send(JSON.stringify(r.body));
          } catch (e) {
            return sendError(reply, errorCode(e, ctx.log));
          }
        },
      });
    };

    // --- auth ---
    route('GET', 'auth/token', async ({ params }) => {
      const email = params.req('email');
      const password = params.req('password');
      const u = getUserByEmail(db, email);
      if (!u || !(await verifyPassword(password, u.password_hash))) throw new MaxxoError('AUTH_FAILED');
      let token: string;
      try { token = issueToken(db, u.id); } catch { throw new MaxxoError('TOKEN_CANNOT_BE_GENERATED'); }
      return ok({ token });
    }, { auth: false });

    // --- files ---
    route('GET', 'ops/list', ({ user, params }) => {
      const p = params.get('path');
      if (p === undefined) throw bad();
      const f = s.files(user);
      const r = f.resolve(p);
      const st = f.stat(r.host);
      if (!st) throw new MaxxoError('FILE_NOT_FOUND');
      if (!st.isDirectory()) throw bad();
      return ok(listDir(r.host, r.rel));
    });

    route('POST', 'ops/filesize', ({ user, params }) => {
      const list = params.reqList('files');
      const f = s.files(user);
      const resolved = list.map((p) => f.resolve(p));
      return ok(list.map((file, i) => {
        const st = f.stat(resolved[i]!.host);
        if (!st) return { file, size: -1 };
        return st.isDirectory() ? { file, size: 4096, type: 'd' } : { file, size: st.size, type: 'f' };
      }));
    });

    route('POST', 'ops/move', ({ user, params }) => {
      const f = s.files(user);
      const src = f.resolve(params.req('source'));
      const dst = f.resolve(params.req('destination'));
      if (!src.rel || !dst.rel) throw bad();
      const sst = f.stat(src.host);
      if (!sst) throw new MaxxoError('FILE_NOT_FOUND');
      if (src.rel === dst.rel) return ok();
      if (dst.rel.startsWith(src.rel + '/')) throw bad();
      const parentRel = dst.rel.includes('/') ? dst.rel.slice(0, dst.rel.lastIndexOf('/')) : '';
      const pst = f.stat(f.resolve(parentRel).host);
      if (!pst || !pst.isDirectory()) throw new MaxxoError('FILE_NOT_FOUND');
      if (isSymlink(dst.host)) throw bad();
      const dstSt = f.stat(dst.host);
      if (dstSt) {
        if (sst.isDirectory() !== dstSt.isDirectory()) throw bad();
        if (dstSt.isDirectory() && readdirSync(dst.host).length > 0) throw bad();
      }
      renameSync(src.host, dst.host);
      return ok();
    });

    route('POST', 'ops/delete', ({ user, params }) => {
      const f = s.files(user);
      const targets: Resolved[] = params.reqList('file').map((p) => f.resolve(p));
      if (targets.some((t) => !t.rel)) throw bad();
      let missing = false;
      for (const t of targets) {
        try { lstatSync(t.host); } catch { missing = true; continue; }
        rmSync(t.host, { recursive: true, force: true });
      }
      if (missing) throw new MaxxoError('FILE_NOT_FOUND');
      return ok();
    });

    route('POST', 'ops/send', async ({ user, params }) => {
      const source = parseJsonArray(params.req('source'));
      const to = params.req('to').trim();
      const receiver = getUserByEmail(db, to);
      if (!receiver) throw bad();
      const f = s.files(user);
      // Validate everything before copying anything: a bad entry sends nothing.
      const items: Array<{ destination: string; parts: Array<{ host: string; rel: string }>; folder: boolean }> = [];
      for (const e of source) {
        if (!e || typeof e !== 'object' || Array.isArray(e)) throw bad();
        const { path, files, folder } = e as { path?: unknown; files?: unknown; folder?: unknown };
        if (typeof path !== 'string') throw bad();
        if (files !== undefined && (!Array.isArray(files) || files.some((x) => typeof x !== 'string'))) throw bad();
        const dir = f.resolve(path);
        const dst = f.stat(dir.host);
        if (!dst) throw new MaxxoError('FILE_NOT_FOUND');
        const names = (files as string[] | undefined) ?? [];
        const isFolder = folder === true || folder === 'true' || folder === 1 || (names.length === 0 && dst.isDirectory());
        if (isFolder) {
          if (!dir.rel || !dst.isDirectory()) throw bad();
          const parts = names.length === 0 ? [{ host: dir.host, rel: '' }] : names.map((n) => {
            const r = f.resolve(dir.rel + '/' + n);
            if (!f.stat(r.host)) throw new MaxxoError('FILE_NOT_FOUND');
            return { host: r.host, rel: r.rel.slice(dir.rel.length + 1) };
          });
          items.push({ destination: basename(dir.rel), parts, folder: true });
        } else if (names.length === 0) {
          items.push({ destination: basename(dir.rel), parts: [{ host: dir.host, rel: '' }], folder: false });
        } else {
          if (!dst.isDirectory()) throw bad();
          for (const n of names) {
            const r = f.resolve(dir.rel + '/' + n);
            if (!r.rel || !f.stat(r.host)) throw new MaxxoError('FILE_NOT_FOUND');
            items.push({ destination: basename(r.rel), parts: [{ host: r.host, rel: '' }], folder: false });
          }
        }
      }
      if (items.length === 0) throw bad();
      const ids: number[] = [];
      for (const it of items) {
        const size = it.parts.reduce((a, p) => a + usage(p.host), 0);
        const info = db.prepare(`INSERT INTO maxxo_messages (receiver_id, sender_id, type, destination, size, state, created)
          VALUES (?, ?, 'SEND', ?, ?, 'copying', ?)`).run(receiver.id, user.id, it.destination, size, pgTimestamp());
        const id = Number(info.lastInsertRowid);
        const hold = join(s.holdingDir, String(id), 'data');
        try {
          if (it.folder && !(it.parts.length === 1 && it.parts[0]!.rel === '')) {
            mkdirSync(hold, { recursive: true });
            for (const p of it.parts) await copyTree(p.host, join(hold, p.rel));
          } else {
            await copyTree(it.parts[0]!.host, hold);
          }
        } catch (e) {
          db.prepare('DELETE FROM maxxo_messages WHERE id = ?').run(id);
          rmSync(join(s.holdingDir, String(id)), { recursive: true, force: true });
          throw e;
        }
        db.prepare("UPDATE maxxo_messages SET state = 'pending' WHERE id = ?").run(id);
        ids.push(id);
      }
      // accept_all: delivered on arrival; one that does not fit stays in the inbox.
      const fresh = getUserById(db, receiver.id)!;
      if (fresh.accept_all) for (const id of ids) s.deliver(id);
      return ok();
    });

    route('GET', 'slice', ({ req, user }) => {
      const reqHost = (req.headers.host ?? '127.0.0.1').replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
      const bindHost = ctx.rsync?.host ?? ctx.opts.host;
      const ip = bindHost === '0.0.0.0' || bindHost === '::' ? reqHost : bindHost;
      const port = ctx.opts.advertiseRsyncPort ?? ctx.rsync?.port ?? 873;
      const body: Record<string, unknown> = {
        ip, tracker: `http://${req.headers.host ?? ip}/announce`, login: user.login, rsync: user.rsync_password,
      };
      if (port !== 873) body.rsync_port = port;
      return ok(body);
    });

    // --- contacts ---
    route('POST', 'contacts/add', ({ user, params }) => {
      const emails = [...new Set(params.reqList('email').map((e) => e.trim()))];
      const found = emails.map((e) => getUserByEmail(db, e));
      if (found.some((u) => !u)) throw new MaxxoError('USER_NOT_FOUND');
      if (found.some((u) => u!.id === user.id)) throw bad();
      let already = false;
      const add = db.prepare('INSERT OR IGNORE INTO maxxo_contacts (user_id, contact_id, created) VALUES (?, ?, ?)');
      const notify = db.prepare(`INSERT INTO maxxo_notifications (user_id, type, from_id, created)
        VALUES (?, 'CONTACT_REQUEST', ?, ?)`);
      db.transaction(() => {
        for (const c of found) {
          if (add.run(user.id, c!.id, pgTimestamp()).changes === 0) { already = true; continue; }
          notify.run(c!.id, user.id, pgTimestamp());
        }
      })();
      if (already) throw new MaxxoError('ALREADY_CONTACT');
      return ok();
    });

    route('GET', 'contacts/list', ({ req, user, params }) => {
      const filter = (params.get('filter') ?? '').toLowerCase();
      const rows = db.prepare(`SELECT u.fullname, u.email, u.photo FROM maxxo_contacts c
        JOIN maxxo_users u ON u.id = c.contact_id WHERE c.user_id = ? ORDER BY u.fullname, u.email`)
        .all(user.id) as Array<{ fullname: string; email: string; photo: string }>;
      return ok(rows
        .filter((r) => !filter || r.fullname.toLowerCase().includes(filter) || r.email.toLowerCase().includes(filter))
        .map((r) => ({ fullname: r.fullname, email: r.email, photo: s.photoUrl(req, r.photo) })));
    });

    route('POST', 'contacts/remove', ({ user, params }) => {
      const email = params.req('email').trim();
      const c = getUserByEmail(db, email);
      const r = c ? db.prepare('DELETE FROM maxxo_contacts WHERE user_id = ? AND contact_id = ?').run(user.id, c.id) : undefined;
      if (!r || r.changes === 0) throw new MaxxoError('CONTACT_NOT_FOUND');
      return ok();
    });

    // --- account and settings ---
    route('GET', 'account/quota', ({ user }) => ok({
      quota: user.quota,
      normal: usage(userFolder(ctx, user.login)),
      receiving_quota: user.receiving_quota,
      received: receivedThisMonth(user),
    }));

    route('GET', 'settings/list', ({ req, user }) => ok({
      email: user.email,
      fullname: user.fullname,
      photo: s.photoUrl(req, user.photo),
      accept_all: user.accept_all === 1,
      package: user.package,
      storage: Math.floor(user.quota / (1024 * 1024)),
    }));

    route('POST', 'settings/update', async ({ user, params }) => {
      const sets: Array<[string, unknown]> = [];
      const fullname = params.get('fullname');
      if (fullname !== undefined) {
        const n = fullname.trim();
        if (!n || n.length > 255 || /[\0\r\n]/.test(n)) throw bad();
        sets.push(['fullname', n]);
      }
      const email = params.get('email');
      if (email !== undefined) {
        const e = email.trim();
        if (!EMAIL_RE.test(e) || e.length > 254) throw new MaxxoError('INVALID_EMAIL');
        const other = getUserByEmail(db, e);
        if (other && other.id !== user.id) throw new MaxxoError('EMAIL_ALREADY_EXIST');
        sets.push(['email', e]);
      }
      const accept = params.get('accept_all');
      if (accept !== undefined) {
        const a = accept.trim().toLowerCase();
        if (a === '1' || a === 'true') sets.push(['accept_all', 1]);
        else if (a === '0' || a === 'false') sets.push(['accept_all', 0]);
        else throw bad();
      }
      const newPassword = params.get('new_password');
      if (newPassword !== undefined) {
        const cur = params.get('current_password');
        if (cur === undefined || !(await verifyPassword(cur, user.password_hash))) throw new MaxxoError('WRONG_CURRENT_PASSWORD');
        if (newPassword.length < 6 || newPassword.length > 1024 || newPassword.includes('\0')) {
          throw new MaxxoError('INVALID_NEW_PASSWORD');
        }
        sets.push(['password_hash', await hashPassword(newPassword)]);
      }
      if (sets.length === 0) throw bad();
      db.prepare(`UPDATE maxxo_users SET ${sets.map(([k]) => `${k} = ?`).join(', ')} WHERE id = ?`)
        .run(...sets.map(([, v]) => v), user.id);
      return ok();
    });

    route('POST', 'user-photo/update', ({ req, user, file }) => {
      if (!file) throw bad();
      const info = file.truncated ? undefined : validPhoto(file.data);
      if (!info) throw new MaxxoError('INVALID_PHOTO');
      const name = `${user.login}-${randomName(12)}.${info.type}`;
      writeFileSync(join(s.photoDir, name), file.data);
      if (user.photo) { try { unlinkSync(join(s.photoDir, basename(user.photo))); } catch { /* gone */ } }
      db.prepare('UPDATE maxxo_users SET photo = ? WHERE id = ?').run(name, user.id);
      return ok({ photo: s.photoUrl(req, name) });
    }, { fileField: 'photo' });

    route('POST', 'user-photo/remove', ({ user }) => {
      if (user.photo) { try { unlinkSync(join(s.photoDir, basename(user.photo))); } catch { /* gone */ } }
      db.prepare("UPDATE maxxo_users SET photo = '' WHERE id = ?").run(user.id);
      return ok();
    });

    // --- notifications ---
    route('GET', 'notifications/list', ({ user }) => ok(db.prepare(`SELECT n.id, n.type, u.email FROM maxxo_notifications n
      JOIN maxxo_users u ON u.id = n.from_id WHERE n.user_id = ? AND n.is_read = 0 ORDER BY n.id`).all(user.id)));

    route('POST', 'notifications/update', ({ user, params }) => {
      const ids = params.reqList('id');
      const failed: Array<{ id: number | string; error: string }> = [];
      const get = db.prepare('SELECT id, is_read FROM maxxo_notifications WHERE id = ? AND user_id = ?');
      const mark = db.prepare('UPDATE maxxo_notifications SET is_read = 1 WHERE id = ?');
      for (const raw of ids) {
        const id = parseId(raw);
        const n = id === undefined ? undefined : get.get(id, user.id) as { id: number; is_read: number } | undefined;
        if (!n) failed.push({ id: id ?? raw, error: 'NOTIFICATION_NOT_FOUND' });
        else if (n.is_read) failed.push({ id: n.id, error: 'NOTIFICATION_ALREADY_READ' });
        else mark.run(n.id);
      }
      return ok(failed, failed.length ? 202 : 200);
    });

    // --- invite ---
    route('POST', 'invite', ({ user, params }) => {
      const emails = params.reqList('email').map((e) => e.trim());
      if (emails.some((e) => !EMAIL_RE.test(e) || e.length > 254)) throw new MaxxoError('INVALID_EMAIL');
      const ins = db.prepare('INSERT INTO maxxo_invites (user_id, email, created) VALUES (?, ?, ?)');
      db.transaction(() => { for (const e of emails) ins.run(user.id, e, pgTimestamp()); })();
      return ok();
    });

    // --- inbox ---
    route('GET', 'inbox/list', ({ user }) => {
      const rows = db.prepare(`SELECT m.id, m.type, m.size, m.destination, m.created, u.fullname, u.email
        FROM maxxo_messages m JOIN maxxo_users u ON u.id = m.sender_id
        WHERE m.receiver_id = ? AND m.state = 'pending' ORDER BY m.id DESC`).all(user.id) as
        Array<{ id: number; type: string; size: number; destination: string; created: string; fullname: string; email: string }>;
      // `size` is a string, as in the spec's example.
      return ok(rows.map((r) => ({
        id: r.id, type: r.type, size: String(r.size), destination: r.destination, timestamp: r.created,
        sender_name: r.fullname, sender_email: r.email,
      })));
    });

    route('POST', 'inbox/update', ({ user, params }) => {
      const list = parseJsonArray(params.req('messages'));
      const failed: Array<{ id: unknown; error: string }> = [];
      const get = db.prepare('SELECT id, state FROM maxxo_messages WHERE id = ? AND receiver_id = ?');
      for (const e of list) {
        if (!e || typeof e !== 'object' || Array.isArray(e)) throw bad();
      }
      for (const e of list as Array<{ id?: unknown; accept?: unknown }>) {
        const id = typeof e.id === 'number' ? e.id : typeof e.id === 'string' ? parseId(e.id) : undefined;
        const m = id === undefined || !Number.isInteger(id) ? undefined : get.get(id, user.id) as { id: number; state: string } | undefined;
        if (!m || m.state === 'copying') { failed.push({ id: e.id ?? null, error: 'MESSAGE_NOT_FOUND' }); continue; }
        if (m.state !== 'pending') { failed.push({ id: m.id, error: 'MESSAGE_ALREADY_READ' }); continue; }
        if (typeof e.accept === 'string' && e.accept.trim().toUpperCase() === 'YES') {
          const err = s.deliver(m.id);
          if (err) failed.push({ id: m.id, error: err });
        } else s.decline(m.id);
      }
      return ok(failed, failed.length ? 202 : 200);
    });
  }, { prefix: '/api' });

  // Photo URLs as the spec shows them (http://host/photos/NAME); no token, as an <img> would fetch.
  app.get('/photos/:name', async (req, reply) => {
    const name = (req.params as { name: string }).name;
    if (!/^[a-z0-9]+-[0-9a-f]+\.(png|jpg)$/.test(name)) return reply.code(404).send({ error: 'FILE_NOT_FOUND' });
    let data: Buffer;
    try { data = readFileSync(join(s.photoDir, name)); } catch { return reply.code(404).send({ error: 'FILE_NOT_FOUND' }); }
    return reply.type(name.endsWith('.png') ? 'image/png' : 'image/jpeg').send(data);
  });

  // Test/demo control (loopback tooling, like /_emulator/stats): create an account at run time.
  app.post('/_emulator/maxxo/users', async (req, reply) => {
    const b = (req.body ?? {}) as Record<string, unknown>;
    const str = (k: string) => (typeof b[k] === 'string' ? (b[k] as string) : undefined);
    const num = (k: string) => (str(k) !== undefined && /^[0-9]+$/.test(str(k)!) ? Number(str(k)) : undefined);
    const email = str('email');
    const password = str('password');
    if (!email || !password || !EMAIL_RE.test(email)) return reply.code(400).send({ error: 'METHOD_BAD_REQUEST' });
    // hashed first: the check for the email and the insert stay one synchronous step
    const hash = await hashPassword(password);
    if (getUserByEmail(db, email)) return reply.code(400).send({ error: 'EMAIL_ALREADY_EXIST' });
    const u = s.addUser({
      email, password, fullname: str('fullname'), quota: num('quota'), receivingQuota: num('receiving_quota'),
      acceptAll: str('accept_all') === '1',
    }, hash);
    return { email: u.email, login: u.login };
  });
}
