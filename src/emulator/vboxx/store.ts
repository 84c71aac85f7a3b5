// The vBoxx service core: sessions, access rules, policy checks and the file tree of each root.
// The tree's metadata is in vboxx_nodes; bytes are at <filesDir>/vboxx/root-<id>/<path>. Every change
// that must be atomic (decide the name, place the bytes, record the row) runs synchronously in one
// event-loop turn, so concurrent requests never interleave inside it.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { EmulatorContext } from '../context.js';
import { cleanPath, confine, newToken, PathError, verifyPassword } from '../security.js';
import { type Node, type Person, type Policy, type Root, type Statements, statements, initSchema, sha256, ACT } from './db.js';
import { fail, humanSize, iconFor, isoMicro, isoSeconds, parseExtensions } from './util.js';

export const MB = 1024 * 1024;

export interface PlaceOptions {
  overwrite: boolean;
  parentRev?: number;
  clientMtime?: number | null;
}

/** One entry as JSON text; the same fields, order and values as Vboxx.entry(). */
function entryJson(rootId: number, path: string, name: string, isDir: number, bytes: number, mtime: number,
  cm: number | null, rev: number): string {
  const p = JSON.stringify(path);
  if (isDir) {
    return `{"rev":0,"thumb_exists":false,"modified_unix_timestamp":0,"path":${p},"is_dir":true,"client_mtime":0,` +
      `"size":"0B","is_deleted":false,"bytes":0,"modified":0,"icon":"folder","root":${rootId}}`;
  }
  const modified = isoSeconds(mtime);
  const client = cm != null ? isoSeconds(cm * 1000) : modified;
  return `{"rev":${rev},"thumb_exists":false,"modified_unix_timestamp":${Math.floor(mtime / 1000)},"path":${p},` +
    `"is_dir":false,"client_mtime":"${client}","size":"${humanSize(bytes)}","is_deleted":false,"bytes":${bytes},` +
    `"modified":"${modified}","icon":"${iconFor(name, false)}","root":${rootId}}`;
}

export class Vboxx {
  st: Statements;
  readonly base: string;
  readonly tmpDir: string;
  readonly uploadDir: string;
  /** Chunked uploads with a chunk being received right now (one at a time per upload). */
  readonly busyUploads = new Set<string>();

  constructor(public ctx: EmulatorContext) {
    initSchema(ctx.db);
    this.st = statements(ctx.db);
    this.base = join(ctx.filesDir, 'vboxx');
    this.tmpDir = join(this.base, 'tmp');
    this.uploadDir = join(this.base, 'uploads');
    mkdirSync(this.tmpDir, { recursive: true, mode: 0o700 });
    mkdirSync(this.uploadDir, { recursive: true, mode: 0o700 });
    // Leftovers of requests cut off by a crash are never referenced again.
    rmSync(this.tmpDir, { recursive: true, force: true });
    mkdirSync(this.tmpDir, { recursive: true, mode: 0o700 });
    const now = Date.now();
    for (const u of ctx.db.prepare<[number], { id: string }>('SELECT id FROM vboxx_uploads WHERE expires < ?').all(now)) {
      rmSync(join(this.uploadDir, u.id), { force: true });
    }
    ctx.db.prepare('DELETE FROM vboxx_uploads WHERE expires < ?').run(now);
  }

  // ---- sessions and people -------------------------------------------------------------------

  async login(username: string, password: string): Promise<string | null> {
    const p = this.st.personByLogin.get(username, username);
    if (!p || !(await verifyPassword(password, p.password_hash))) return null;
    const token = newToken(128);
    this.st.addSession.run(sha256(token), p.id, Date.now());
    return token;
  }

  personForToken(token: string | undefined): Person {
    if (!token) return fail(401, 'missing session_token');
    const s = this.st.session.get(sha256(token));
    const p = s && this.st.person.get(s.person_id);
    if (!p) return fail(401, 'invalid or expired session_token');
    return p;
  }

  displayName(p: Person): string { return `${p.first_name} ${p.last_name}`.trim(); }

  /** Organizations the person administers: all for a system admin, their own for a site admin. */
  adminsCompany(p: Person, companyId: number): boolean {
    return !!p.system_admin || (!!p.site_admin && p.company_id === companyId);
  }

  // ---- roots and access ----------------------------------------------------------------------

  rootDir(rootId: number): string { return join(this.base, `root-${rootId}`); }

  ensureRootDir(rootId: number): void { mkdirSync(this.rootDir(rootId), { recursive: true, mode: 0o700 }); }

  canAccessRoot(p: Person, r: Root): boolean {
    if (p.system_admin) return true;
    if (r.person_id === p.id) return true;
    return r.company_id === p.company_id && (!!r.dept_share || !!p.site_admin);
  }

  /** The root named by a URL segment, checked for access: 404 unknown, 403 not yours. */
  rootFor(p: Person, seg: string): Root {
    const id = /^\d{1,15}$/.test(seg) ? Number(seg) : NaN;
    const r = Number.isFinite(id) ? this.st.root.get(id) : undefined;
    if (!r) return fail(404, `unknown root with id ${seg.slice(0, 40)}`);
    if (!this.canAccessRoot(p, r)) return fail(403, `no access to root with id ${r.id}`);
    return r;
  }

  rootType(r: Root): 'sync' | 'share' | 'backup' {
    return r.backup ? 'backup' : r.dept_share ? 'share' : 'sync';
  }

  // Bytes per root, summed once from SQL and then kept up to date by every change, so a quota
  // check costs no scan of the tree (10,000 uploads into one folder stay linear).
  private usageCache = new Map<number, number>();

  usage(rootId: number): number {
    let u = this.usageCache.get(rootId);
    if (u === undefined) { u = this.st.rootUsage.get(rootId)?.s ?? 0; this.usageCache.set(rootId, u); }
    return u;
  }

  private addUsage(rootId: number, delta: number): void {
    const u = this.usageCache.get(rootId);
    if (u !== undefined) this.usageCache.set(rootId, u + delta);
  }

  companyUsage(companyId: number): number {
    let s = 0;
    for (const r of this.st.rootsOfCompany.all(companyId)) s += this.usage(r.id);
    return s;
  }

  personUsage(personId: number): number {
    let s = 0;
    for (const r of this.st.rootsOfPerson.all(personId)) s += this.usage(r.id);
    return s;
  }

  // ---- paths ---------------------------------------------------------------------------------

  /** Decodes a raw (still percent-encoded) path exactly once and normalizes it; 400 on traversal. */
  decodePath(raw: string): string {
    let dec: string;
    try { dec = decodeURIComponent(raw); } catch { return fail(400, 'malformed percent-encoding in path'); }
    return this.clean(dec);
  }

  clean(p: string): string {
    try { return cleanPath(p); } catch (e) {
      if (e instanceof PathError) return fail(400, `invalid path: ${e.message}`);
      throw e;
    }
  }

  disk(rootId: number, path: string): string { return confine(this.rootDir(rootId), path); }

  node(rootId: number, path: string): Node | undefined {
    if (path === '') return { root_id: rootId, path: '', parent: '', name: '', is_dir: 1, bytes: 0, mtime: 0, client_mtime: null, rev: 0 };
    return this.st.node.get(rootId, path);
  }

  mustNode(rootId: number, path: string): Node {
    const n = this.node(rootId, path);
    if (!n) return fail(404, `path /${path} not found`);
    return n;
  }

  // ---- metadata JSON -------------------------------------------------------------------------

  /** One entry the way the text shows it (folders carry rev/modified 0 as in its sample). */
  entry(n: Node, deleted = false): Record<string, unknown> {
    const path = `/${n.path}`;
    if (n.is_dir) {
      return { rev: 0, thumb_exists: false, modified_unix_timestamp: 0, path, is_dir: true, client_mtime: 0,
        size: '0B', is_deleted: deleted, bytes: 0, modified: 0, icon: 'folder', root: n.root_id };
    }
    const modified = isoSeconds(n.mtime);
    return {
      rev: n.rev, thumb_exists: false, modified_unix_timestamp: Math.floor(n.mtime / 1000), path, is_dir: false,
      client_mtime: n.client_mtime != null ? isoSeconds(n.client_mtime * 1000) : modified,
      size: humanSize(n.bytes), is_deleted: deleted, bytes: n.bytes, modified, icon: iconFor(n.name, false),
      root: n.root_id,
    };
  }

  // ---- folder listings -----------------------------------------------------------------------
  // A listing is one indexed query, serialized straight to JSON text (no per-entry objects), and
  // kept per folder until something in that folder changes: a revalidation or a repeat is a lookup.

  private listings = new Map<string, { root: number; dir: string; hash: string; json: string }>();

  /** Drops the cached listings a change of path affects: its parent's, and its own subtree's. */
  changed(rootId: number, path: string): void {
    const parent = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
    for (const [k, l] of this.listings) {
      if (l.root === rootId && (l.dir === parent || l.dir === path || l.dir.startsWith(`${path}/`))) this.listings.delete(k);
    }
  }

  /** Forget cached usage and listings (after writes that bypass the methods below, e.g. demo seeding). */
  resetCaches(): void { this.usageCache.clear(); this.listings.clear(); }

  /** The folder's direct listing: its hash and the JSON text of its `contents` array. */
  listing(rootId: number, path: string): { hash: string; json: string } {
    const key = `${rootId}\0${path}`;
    const hit = this.listings.get(key);
    if (hit) return hit;
    const rows = this.st.childrenRaw.all(rootId, path) as unknown as Array<[string, number, number, number, number | null, number]>;
    const prefix = path ? `/${path}/` : '/';
    const parts: string[] = new Array(rows.length);
    const fp: string[] = new Array(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const [name, isDir, bytes, mtime, cm, rev] = rows[i]!;
      fp[i] = `${name}\0${isDir}\0${rev}\0${bytes}\0${mtime}\0${cm ?? ''}\n`;
      parts[i] = entryJson(rootId, prefix + name, name, isDir, bytes, mtime, cm, rev);
    }
    const hash = createHash('sha1').update(fp.join('')).digest('hex');
    const out = { root: rootId, dir: path, hash, json: `[${parts.join(',')}]` };
    this.listings.delete(key);
    this.listings.set(key, out);
    // A handful of folders is what clients revalidate in a loop; bound the memory.
    while (this.listings.size > 16) this.listings.delete(this.listings.keys().next().value!);
    return out;
  }

  // ---- policy --------------------------------------------------------------------------------

  policyFor(companyId: number): Policy | undefined { return this.st.policy.get(companyId); }

  maxFileBytes(companyId: number): number {
    const mfs = Number(this.policyFor(companyId)?.max_file_size ?? '');
    return Number.isFinite(mfs) && mfs > 0 ? mfs * MB : Infinity;
  }

  checkName(root: Root, path: string): void {
    const pol = this.policyFor(root.company_id);
    const name = path.slice(path.lastIndexOf('/') + 1).toLowerCase();
    for (const ext of parseExtensions(pol?.excluded_extensions)) {
      if (name.endsWith(ext)) fail(403, `files with the excluded extension ${ext} are not allowed by the organization policy (excluded_extensions)`);
    }
  }

  checkSize(root: Root, bytes: number): void {
    const max = this.maxFileBytes(root.company_id);
    if (bytes > max) fail(413, `file size ${bytes} bytes exceeds the organization policy max_file_size of ${max / MB} MB`);
  }

  /** Quota answers 507 Insufficient Storage: the organization's space_quota, then the root owner's. */
  checkQuota(root: Root, delta: number): void {
    if (delta <= 0) return;
    const pol = this.policyFor(root.company_id);
    if (pol?.space_quota != null && pol.space_quota > 0) {
      const used = this.companyUsage(root.company_id);
      if (used + delta > pol.space_quota) fail(507, `organization space_quota of ${pol.space_quota} bytes exceeded (used ${used}, needed ${delta} more)`);
    }
    const owner = root.person_id != null ? this.st.person.get(root.person_id) : undefined;
    if (owner?.space_quota != null && owner.space_quota > 0) {
      const used = this.personUsage(owner.id);
      if (used + delta > owner.space_quota) fail(507, `person space_quota of ${owner.space_quota} bytes exceeded (used ${used}, needed ${delta} more)`);
    }
  }

  // ---- tree changes (synchronous critical sections) ------------------------------------------

  newRev(rootId: number, path: string, bytes: number, action: string): number {
    return Number(this.st.addRevision.run(rootId, path, bytes, action, Date.now()).lastInsertRowid);
  }

  /** Creates the missing folders of path (not path itself unless includeSelf); 403 if a file is in the way. */
  mkdirs(rootId: number, path: string, includeSelf: boolean): void {
    const parts = path.split('/').filter(Boolean);
    const upto = includeSelf ? parts.length : parts.length - 1;
    let cur = '';
    for (let i = 0; i < upto; i++) {
      const parent = cur;
      cur = cur ? `${cur}/${parts[i]}` : parts[i]!;
      const n = this.st.node.get(rootId, cur);
      if (n && !n.is_dir) fail(403, `a file exists at /${cur}, cannot create a folder there`);
      if (!n) {
        mkdirSync(this.disk(rootId, cur), { recursive: true, mode: 0o700 });
        this.st.upsertNode.run({ root_id: rootId, path: cur, parent, name: parts[i]!, is_dir: 1, bytes: 0,
          mtime: Date.now(), client_mtime: null, rev: 0 });
        this.changed(rootId, cur);
      }
    }
  }

  /** "a.txt" -> "a (1).txt", the Dropbox v1 rename for a name already taken. */
  freeName(rootId: number, path: string): string {
    const slash = path.lastIndexOf('/');
    const dir = slash >= 0 ? path.slice(0, slash + 1) : '';
    const name = path.slice(slash + 1);
    const dot = name.lastIndexOf('.');
    const stem = dot > 0 ? name.slice(0, dot) : name;
    const ext = dot > 0 ? name.slice(dot) : '';
    for (let i = 1; ; i++) {
      const cand = `${dir}${stem} (${i})${ext}`;
      if (!this.st.node.get(rootId, cand)) return cand;
    }
  }

  /**
   * Places an uploaded temp file at path. overwrite=false with an existing target, a parent_rev that
   * is not the current rev, or a folder at the target all keep both: the upload gets a " (n)" name.
   */
  placeFile(root: Root, path: string, tmp: string, bytes: number, o: PlaceOptions): Node {
    if (path === '') fail(400, 'cannot write to the root folder itself');
    this.checkName(root, path);
    this.checkSize(root, bytes);
    let target = path;
    const cur = this.st.node.get(root.id, path);
    if (cur) {
      const conflict = cur.is_dir
        || (o.parentRev !== undefined ? o.parentRev !== cur.rev : !o.overwrite);
      if (conflict) target = this.freeName(root.id, path);
    }
    const old = target === path && cur && !cur.is_dir ? cur.bytes : 0;
    this.checkQuota(root, bytes - old);
    const parent = target.includes('/') ? target.slice(0, target.lastIndexOf('/')) : '';
    const placed = this.ctx.db.transaction(() => {
      this.mkdirs(root.id, target, false);
      renameSync(tmp, this.disk(root.id, target));
      const node: Node = { root_id: root.id, path: target, parent, name: target.slice(target.lastIndexOf('/') + 1),
        is_dir: 0, bytes, mtime: Date.now(), client_mtime: o.clientMtime ?? null, rev: this.newRev(root.id, target, bytes, 'put') };
      this.st.upsertNode.run(node);
      return node;
    })();
    this.addUsage(root.id, bytes - old);
    this.changed(root.id, target);
    return placed;
  }

  createFolder(root: Root, path: string): Node {
    if (path === '' || this.st.node.get(root.id, path)) fail(403, `a file or folder already exists at /${path}`);
    this.checkName(root, path);
    this.ctx.db.transaction(() => this.mkdirs(root.id, path, true))();
    return this.st.node.get(root.id, path)!;
  }

  /** Recursive delete; the bytes go to the trash dir at once and are removed in the background. */
  remove(root: Root, path: string): Node {
    if (path === '') fail(403, 'cannot delete the root folder');
    const n = this.mustNode(root.id, path);
    const freed = n.is_dir
      ? (this.ctx.db.prepare<[number, number, string], { s: number | null }>(
        'SELECT SUM(bytes) AS s FROM vboxx_nodes WHERE root_id = ? AND substr(path, 1, ?) = ?').get(root.id, path.length + 1, `${path}/`)?.s ?? 0)
      : n.bytes;
    const trash = join(this.tmpDir, `del-${randomBytes(8).toString('hex')}`);
    this.ctx.db.transaction(() => {
      renameSync(this.disk(root.id, path), trash);
      this.ctx.db.prepare('DELETE FROM vboxx_nodes WHERE root_id = ? AND (path = ? OR substr(path, 1, ?) = ?)')
        .run(root.id, path, path.length + 1, `${path}/`);
      this.newRev(root.id, path, 0, 'delete');
    })();
    this.addUsage(root.id, -freed);
    this.changed(root.id, path);
    rm(trash, { recursive: true, force: true }).catch(() => {});
    return n;
  }

  private checkTarget(root: Root, from: string, to: string): Node {
    if (from === '') fail(403, 'cannot move or copy the root folder');
    if (to === '') fail(403, 'a folder already exists at /');
    const src = this.mustNode(root.id, from);
    if (this.st.node.get(root.id, to)) fail(403, `a file or folder already exists at /${to}`);
    if (to === from || to.startsWith(`${from}/`)) fail(403, 'cannot move or copy a folder into itself');
    if (!src.is_dir) this.checkName(root, to);
    return src;
  }

  move(root: Root, from: string, to: string): Node {
    const src = this.checkTarget(root, from, to);
    const parent = to.includes('/') ? to.slice(0, to.lastIndexOf('/')) : '';
    const name = to.slice(to.lastIndexOf('/') + 1);
    this.ctx.db.transaction(() => {
      this.mkdirs(root.id, to, false);
      renameSync(this.disk(root.id, from), this.disk(root.id, to));
      const db = this.ctx.db;
      const rev = src.is_dir ? 0 : this.newRev(root.id, to, src.bytes, 'move');
      db.prepare('UPDATE vboxx_nodes SET path = ?, parent = ?, name = ?, rev = ? WHERE root_id = ? AND path = ?')
        .run(to, parent, name, rev, root.id, from);
      if (src.is_dir) {
        const k = from.length + 1;
        db.prepare(`UPDATE vboxx_nodes SET path = ? || substr(path, ?), parent = ? || substr(parent, ?)
                    WHERE root_id = ? AND substr(path, 1, ?) = ?`)
          .run(to, k, to, k, root.id, k, `${from}/`);
      }
    })();
    this.changed(root.id, from);
    this.changed(root.id, to);
    return this.st.node.get(root.id, to)!;
  }

  async copy(root: Root, from: string, to: string): Promise<Node> {
    const src = this.checkTarget(root, from, to);
    const srcRows = src.is_dir
      ? this.ctx.db.prepare<[number, number, string], Node>('SELECT * FROM vboxx_nodes WHERE root_id = ? AND substr(path, 1, ?) = ?')
        .all(root.id, from.length + 1, `${from}/`)
      : [];
    const total = src.bytes + srcRows.reduce((a, r) => a + r.bytes, 0);
    this.checkQuota(root, total);
    const tmp = join(this.tmpDir, `cp-${randomBytes(8).toString('hex')}`);
    const { cp } = await import('node:fs/promises');
    await cp(this.disk(root.id, from), tmp, { recursive: true, errorOnExist: true });
    try {
      // Re-check after the asynchronous copy: another request may have taken the name meanwhile.
      this.checkTarget(root, from, to);
      const parent = to.includes('/') ? to.slice(0, to.lastIndexOf('/')) : '';
      this.ctx.db.transaction(() => {
        this.mkdirs(root.id, to, false);
        renameSync(tmp, this.disk(root.id, to));
        const now = Date.now();
        const put = (n: Node, path: string, par: string, name: string) => this.st.upsertNode.run({
          root_id: root.id, path, parent: par, name, is_dir: n.is_dir, bytes: n.bytes, mtime: now,
          client_mtime: n.client_mtime, rev: n.is_dir ? 0 : this.newRev(root.id, path, n.bytes, 'copy') });
        put(src, to, parent, to.slice(to.lastIndexOf('/') + 1));
        const k = from.length;
        for (const r of srcRows) put(r, to + r.path.slice(k), to + r.parent.slice(k), r.name);
      })();
      this.addUsage(root.id, total);
      this.changed(root.id, to);
    } finally {
      if (existsSync(tmp)) await rm(tmp, { recursive: true, force: true });
    }
    return this.st.node.get(root.id, to)!;
  }

  // ---- activities ----------------------------------------------------------------------------

  record(typeId: number, actor: Person | null, on: { type: string; text?: string | null; company?: number | null;
    person?: number | null; root?: number | null; machine?: number | null; data?: string | null }): void {
    const t = this.st.activityType.get(typeId);
    this.st.addActivity.run({
      activity_type_id: typeId, actor_type: actor ? 'person' : null, actor_text: actor ? this.displayName(actor) : 'System',
      actor_company_id: actor?.company_id ?? null, actor_machine_id: null, actor_person_id: actor?.id ?? null,
      action_text: t?.activity ?? null, acted_on_type: on.type, acted_on_text: on.text ?? null,
      acted_on_company_id: on.company ?? null, acted_on_machine_id: on.machine ?? null,
      acted_on_person_id: on.person ?? null, acted_on_root_id: on.root ?? null, data_text: on.data ?? null,
      created: isoMicro(),
    });
  }
}

export { ACT };
