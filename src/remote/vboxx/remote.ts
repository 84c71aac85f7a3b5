// The vBoxx account as a drive (the Remote interface vfs uses). Each root of the account is a
// top-level folder named after it, or with `root` the one chosen root is the drive's top.
import { rm, stat as fsStat } from 'node:fs/promises';
import {
  BadRequest, Forbidden, NotADirectory, NotFound, RemoteError, CrossDevice, PolicyExcludedExtension,
} from '../../errors.js';
import { validName } from '../names.js';
import { recycleChunks } from '../rawget.js';
import type {
  AttrChange, BatchMkdir, CallOptions, FileMetadata, ListResult, RangeRead, RangeSink, RangedReads, Remote, RemoteEntry, ShareLinks, StatFs, TransferOptions, UploadPolicy,
} from '../types.js';
import { toWholeSecond } from '../types.js';
import type { VboxxClientOptions } from '../options.js';
import { VboxxClient, type VboxxClientConfig } from './client.js';
import { mapRoots, pickRoot, type MappedRoot } from './roots.js';
import { checkAgainst, effectivePolicy, excludedExtension, type EffectivePolicy } from './policy.js';
import { depth, lastComponent, type VboxxAccountInfo, type VboxxMetadata } from './wire.js';

type Resolved =
  | { top: true }
  | { top: false; root: MappedRoot; sub: string };

export interface VboxxRemoteOptions extends VboxxClientOptions, Omit<VboxxClientConfig, keyof VboxxClientOptions> {
  /** How long the roots list and the policy are trusted (ms, default 60000). */
  cacheTtlMs?: number;
}

const split = (p: string) => p.split('/').filter((s) => s !== '' && s !== '.');
/** A roots list this young counts as just asked (a listing of the top, a root not found in it). */
const FRESH_ROOTS_MS = 1000;

export class VboxxRemote implements Remote {
  readonly kind = 'vboxx' as const;
  /** list() is /metadata, as stat() is: of a file it answers the file (NotADirectory here). */
  readonly listBeforeType = true;
  readonly ranged: RangedReads = {
    readTo: (path, offset, length, sink, o) => this.readTo(path, offset, length, sink, o),
    recycle: recycleChunks,
  };
  readonly shareLinks: ShareLinks = { shareLink: (path, o) => this.shareLink(path, o) };
  // client_mtime (whole seconds) on every upload; no mode at all, no folder times
  readonly fileMeta?: FileMetadata;
  readonly client: VboxxClient;
  private readonly rootSel?: string;
  private readonly ttl: number;
  private roots?: { at: number; list: MappedRoot[]; account: VboxxAccountInfo };
  private rootsLoading?: Promise<MappedRoot[]>;
  private policyCache?: { at: number; pol: EffectivePolicy | null };

  constructor(opts: VboxxRemoteOptions) {
    this.client = new VboxxClient(opts);
    // -o no_modtime: no client_mtime sent (times hold for the mount); listings still carry the
    // server's times, which cost nothing there
    if (opts.modtimes !== false) {
      this.fileMeta = {
        mtimeResolutionMs: 1000, modeBits: 0, attrsNeedContent: true,
        setAttrs: (path, attrs, o) => this.setAttrs(path, attrs, o),
      };
    }
    if (opts.root !== undefined && opts.root !== '') this.rootSel = String(opts.root);
    this.ttl = opts.cacheTtlMs ?? 60_000;
  }

  private get log() { return this.client.log; }

  get offline(): boolean { return this.client.http.silent; }

  /** Diagnostics (Remote.counters): the API client's and its logins. */
  counters(): Record<string, number> {
    return { ...this.client.http.stats(), logins: this.client.logins };
  }

  // ---- roots ----

  /** maxAgeMs: how old a kept list may be (default the cache TTL; 0 asks the server). */
  private async loadRoots(o: CallOptions = {}, maxAgeMs = this.ttl): Promise<MappedRoot[]> {
    if (this.roots && Date.now() - this.roots.at < maxAgeMs) return this.roots.list;
    if (!this.rootsLoading) {
      this.rootsLoading = (async () => {
        try {
          const account = await this.client.accountInfo({ ...(o.signal ? { signal: o.signal } : {}) });
          const list = mapRoots(account.roots);
          this.roots = { at: Date.now(), list, account };
          return list;
        } finally {
          this.rootsLoading = undefined;
        }
      })();
    }
    return this.rootsLoading;
  }

  /** The drive's roots as top-level folder names (all roots, or the chosen one). */
  async listRoots(o: CallOptions = {}): Promise<MappedRoot[]> {
    const list = await this.loadRoots(o);
    return this.rootSel ? [pickRoot(list, this.rootSel)] : list;
  }

  /** The components of path, refused where it could escape (NUL, '..'). */
  private partsOf(path: string): string[] {
    if (typeof path !== 'string' || path.includes('\0')) throw new BadRequest('invalid path');
    const parts = split(path);
    if (parts.includes('..')) throw new BadRequest('path traversal refused', { path });
    return parts;
  }

  /** parts against a roots list; undefined when the root they name is not in it. */
  private resolveIn(list: MappedRoot[], parts: string[]): Resolved | undefined {
    if (this.rootSel) {
      try { return { top: false, root: pickRoot(list, this.rootSel), sub: '/' + parts.join('/') }; } catch { return undefined; }
    }
    if (parts.length === 0) return { top: true };
    const root = list.find((r) => r.name === parts[0]);
    return root && { top: false, root, sub: '/' + parts.slice(1).join('/') };
  }

  private async resolve(path: string, o: CallOptions = {}): Promise<Resolved> {
    const parts = this.partsOf(path);
    if (!this.rootSel && parts.length === 0) return { top: true };
    const r = this.resolveIn(await this.loadRoots(o), parts);
    if (r) return r;
    // The chosen root, or a root created since we last looked: refresh once before saying ENOENT.
    if (this.rootSel || (this.roots && Date.now() - this.roots.at > FRESH_ROOTS_MS)) {
      const list = await this.loadRoots(o, 0);
      const again = this.resolveIn(list, parts);
      if (again) return again;
      if (this.rootSel) pickRoot(list, this.rootSel); // throws, saying which root it could not find
    }
    throw new NotFound(`no such root: ${parts[0]}`, { path });
  }

  private rootEntry(r: MappedRoot): RemoteEntry {
    return { name: r.name, type: 'dir', size: 0 };
  }

  /** Metadata -> RemoteEntry; null when the server's name cannot be a path component. */
  private toEntry(m: VboxxMetadata, nameOverride?: string): RemoteEntry | null {
    const name = nameOverride ?? lastComponent(m.path);
    if (!validName(name)) {
      this.log.warn(`vboxx: dropped an entry with an invalid name ${JSON.stringify(name).slice(0, 80)}`);
      return null;
    }
    const e: RemoteEntry = { name, type: m.is_dir ? 'dir' : 'file', size: m.is_dir ? 0 : m.bytes };
    // the writer's mtime (client_mtime, as the upload set it) before the server's write time
    const client = m.is_dir ? undefined : clientMtimeMs(m.client_mtime);
    const ts = m.modified_unix_timestamp;
    if (client !== undefined) e.mtimeMs = client;
    else if (typeof ts === 'number' && ts > 0) e.mtimeMs = Math.round(ts * 1000);
    if (!m.is_dir && typeof ts === 'number' && ts > 0) e.written = Math.round(ts * 1000);
    if (m.rev !== undefined) e.rev = m.rev;
    return e;
  }

  // ---- Remote ----

  async list(dir: string, o: CallOptions & { hash?: string } = {}): Promise<ListResult> {
    const r = await this.resolve(dir, o);
    if (r.top) {
      // a list asked for within the last second is as fresh as this listing (the mount's own
      // login check, a statfs, fetched one just before the first listing of the top)
      const roots = await this.loadRoots(o, FRESH_ROOTS_MS);
      return { entries: roots.map((x) => this.rootEntry(x)) };
    }
    const res = await this.client.metadata(r.root.id, r.sub, { ...o, ...(o.hash ? { hash: o.hash } : {}) });
    if (res.unchanged) return { entries: [], unchanged: true, ...(o.hash ? { hash: o.hash } : {}) };
    const m = res.meta;
    if (!m.is_dir) throw new NotADirectory('not a folder', { path: dir });
    const want = depth(r.sub) + 1;
    const entries: RemoteEntry[] = [];
    const seen = new Set<string>();
    for (const c of m.contents ?? []) {
      if (c.is_deleted === true) continue;
      // An entry that is not a direct child of the folder asked for (hostile or confused
      // server) would appear under a wrong name: drop it.
      if (depth(c.path) !== want) {
        this.log.warn(`vboxx: dropped a listing entry outside ${dir}`);
        continue;
      }
      const e = this.toEntry(c);
      if (!e) continue;
      if (seen.has(e.name)) { this.log.warn('vboxx: dropped a duplicate listing entry'); continue; }
      seen.add(e.name);
      entries.push(e);
    }
    return { entries, ...(m.hash ? { hash: m.hash } : {}) };
  }

  async stat(path: string, o: CallOptions = {}): Promise<RemoteEntry | null> {
    let r: Resolved;
    try { r = await this.resolve(path, o); } catch (e) {
      if (e instanceof RemoteError && e.code === 'NOT_FOUND' && !this.rootSel) return null;
      throw e;
    }
    if (r.top) return { name: '/', type: 'dir', size: 0 };
    try {
      const res = await this.client.metadata(r.root.id, r.sub, { ...o, list: false });
      if (res.unchanged) return null;
      if (r.sub === '/') return { ...this.rootEntry(r.root), name: this.rootSel ? '/' : r.root.name };
      return this.toEntry(res.meta, split(path).at(-1));
    } catch (e) {
      if (e instanceof RemoteError && e.code === 'NOT_FOUND') return null;
      throw e;
    }
  }

  async readTo(path: string, offset: number, length: number, sink: RangeSink, o: CallOptions = {}): Promise<RangeRead> {
    const r = await this.fileTarget(path, o);
    return this.client.readTo(r.root.id, r.sub, offset, length, sink, o);
  }

  async download(path: string, localFile: string, o: TransferOptions = {}): Promise<void> {
    const r = await this.fileTarget(path, o);
    await this.client.download(r.root.id, r.sub, localFile, o);
  }

  async upload(localFile: string, path: string, o: TransferOptions = {}): Promise<RemoteEntry> {
    const r = await this.fileTarget(path, o);
    const data = o.data && o.data.length <= this.client.chunkThreshold ? o.data : undefined;
    const size = data ? data.length : (await fsStat(localFile)).size;
    await this.checkResolved(r, path, size, o);
    const m = data ? await this.client.filesPut(r.root.id, r.sub, data, o) : await this.client.upload(r.root.id, r.sub, localFile, o);
    this.bumpUsage(size);
    const e = this.toEntry(m, split(path).at(-1));
    if (!e) throw new BadRequest('uploaded under an invalid name', { path });
    return e;
  }

  /**
   * The API has no call that changes a file's times alone: the cheapest is a files_put of the
   * same bytes with the new client_mtime (a new rev, the same content). Nothing is sent when the
   * server already holds that time, or when its content is no longer revision `rev` nor the same
   * write moved (another client's newer content and its time stand). Remaining windows: a write
   * by another client between our metadata call and the put is overwritten by our (older) bytes;
   * one of the same size in the same second as ours counts as the same write.
   */
  async setAttrs(path: string, attrs: AttrChange, o: CallOptions & { localFile?: string; rev?: string; written?: number; scratch?: string } = {}): Promise<RemoteEntry | null> {
    const r = await this.fileTarget(path, o);
    const res = await this.client.metadata(r.root.id, r.sub, { signal: o.signal, priority: o.priority, list: false }).catch((e) => {
      if (e instanceof RemoteError && e.code === 'NOT_FOUND') return null;
      throw e;
    });
    if (!res || res.unchanged || res.meta.is_dir) return null;
    const cur = this.toEntry(res.meta, split(path).at(-1));
    if (!cur) return null;
    // a move gives a new rev but keeps the server's write time: the same bytes, moved (ours)
    const moved = o.written !== undefined && cur.written === o.written;
    if (o.rev !== undefined && cur.rev !== undefined && cur.rev !== o.rev && !moved) return null;
    if (attrs.mtimeMs === undefined || cur.mtimeMs === toWholeSecond(attrs.mtimeMs)) return cur;
    let source = o.localFile;
    // the caller's copy is not this version any more (written here since: its upload carries the
    // time), as on Maxxo (remote/maxxo/attrs.ts; model soak seed 273264)
    if (source !== undefined && (await fsStat(source).catch(() => null))?.size !== cur.size) return null;
    let scratch: string | undefined;
    try {
      if (source === undefined) {
        if (!o.scratch) throw new BadRequest('a scratch file is needed to change the times of a file not cached', { path });
        scratch = o.scratch;
        const got = await this.client.download(r.root.id, r.sub, scratch, { signal: o.signal, priority: o.priority });
        if (got.rev !== undefined && cur.rev !== undefined && got.rev !== cur.rev) return null;
        source = scratch;
      }
      return await this.upload(source, path, { signal: o.signal, priority: o.priority, mtimeMs: attrs.mtimeMs });
    } finally {
      if (scratch) await rm(scratch, { force: true });
    }
  }

  readonly uploadPolicy: UploadPolicy = {
    checkName: async (path, o = {}) => this.checkNameWith(await this.policy(o), path),
    checkNameCached: (path) => {
      const pol = this.policyFresh();
      if (pol === undefined) return false;
      this.checkNameWith(pol, path);
      return true;
    },
    maxFileSize: async (_path, o = {}) => (await this.policy(o))?.maxFileSize ?? null,
  };

  async checkUpload(path: string, size: number, o: CallOptions = {}): Promise<void> {
    const r = await this.fileTarget(path, o);
    await this.checkResolved(r, path, size, o);
  }

  checkUploadCached(path: string, size: number): boolean {
    // (a close checks every file: ~0.1 ms of promise and timer plumbing per small file, where
    // the answer is almost always in the caches)
    const pol = this.policyFresh();
    const roots = this.roots;
    if (pol === undefined || !roots || Date.now() - roots.at >= this.ttl || !Number.isSafeInteger(size) || size < 0) return false;
    let parts: string[];
    let r: Resolved | undefined;
    // (a path the server would refuse, or a root not known yet: the async check says why)
    try { parts = this.partsOf(path); r = this.resolveIn(roots.list, parts); } catch { return false; }
    if (!r || r.top || r.sub === '/') return false;
    const { total, info } = this.quota(pol ?? effectivePolicy(null), roots.account);
    // near the quota the server's size of the file decides (a replaced file frees its bytes)
    if (total !== null && info.space_usage + size > total) return false;
    checkAgainst(pol ?? effectivePolicy(null), path, parts.at(-1) ?? '', size, { total, used: info.space_usage, replaced: 0 });
    return true;
  }

  async mkdir(path: string, o: CallOptions & { existingOk?: boolean } = {}): Promise<void> {
    const r = await this.resolveForWrite(path, o, 'create a folder');
    await this.client.createFolder(r.root.id, r.sub, o);
  }

  /**
   * Folders written back (vfs/namespace/mkdirs.ts), as on Maxxo: mkdir answers once journalled, so
   * `tar x`, `git clone` or `mkdir d && cp f d/` do not wait a round trip per folder before the
   * files (one create_folder is ~1 RTT: 23 ms at the bench's 20 ms; tar x of 10 folders waited
   * ten). create_folder makes one folder per request: a batch goes depth by depth, the folders of
   * one depth side by side. files_put and the chunked commit make the missing parents of a file
   * themselves, so an upload into a pending folder need not wait for it, and the batch then finds
   * the folder there: a folder already at the path counts as made (as after a replay, or another
   * client's), only a file in the way is a refusal.
   */
  readonly batchMkdir: BatchMkdir = {
    check: (path) => {
      if (!this.rootSel && split(path).length <= 1) throw new Forbidden('cannot create a folder at the top of the drive: its folders are the account\'s roots', { path });
    },
    mkdirMany: (paths, o) => this.mkdirMany(paths, o),
  };

  private async mkdirMany(paths: string[], o: CallOptions = {}): Promise<(unknown | undefined)[]> {
    const out: (unknown | undefined)[] = new Array(paths.length).fill(undefined);
    const byDepth = new Map<number, number[]>();
    for (const [i, p] of paths.entries()) {
      const d = split(p).length;
      const at = byDepth.get(d);
      if (at) at.push(i); else byDepth.set(d, [i]);
    }
    // a folder below one that failed: refused with it, or tried again with it
    const failed = new Map<string, unknown>();
    const key = (p: string) => split(p).join('/');
    for (const d of [...byDepth.keys()].sort((a, b) => a - b)) {
      await Promise.all(byDepth.get(d)!.map(async (i) => {
        const p = paths[i]!;
        const up = failed.get(split(p).slice(0, -1).join('/'));
        if (up !== undefined) {
          out[i] = up instanceof RemoteError && up.retryable ? up : new NotFound('its parent folder could not be made', { path: p });
          failed.set(key(p), out[i]);
          return;
        }
        try {
          await this.mkdir(p, { ...o, existingOk: true });
        } catch (e) {
          out[i] = e;
          failed.set(key(p), e);
        }
      }));
    }
    return out;
  }

  async move(from: string, to: string, o: CallOptions = {}): Promise<RemoteEntry | void> {
    const a = await this.resolveForWrite(from, o, 'move');
    const b = await this.resolveForWrite(to, o, 'move');
    if (a.root.id !== b.root.id) {
      // The service moves only inside one root. EXDEV makes mv(1) and file managers fall back
      // to copy + delete through the drive, with their own progress and error handling.
      throw new CrossDevice('cannot move between roots; copy and delete instead', { path: from });
    }
    const m = await this.client.move(a.root.id, a.sub, b.sub, o);
    return (m && this.toEntry(m, split(to).at(-1))) ?? undefined;
  }

  checkMove(from: string, to: string): void {
    if (this.rootSel) return;
    const a = split(from);
    const b = split(to);
    if (a.length === 1 || b.length === 1) throw new Forbidden('cannot move a root from the drive', { path: a.length === 1 ? from : to });
    if (a[0] !== b[0]) throw new CrossDevice('cannot move between roots; copy and delete instead', { path: from });
  }

  checkRemove(path: string): void {
    if (!this.rootSel && split(path).length === 1) throw new Forbidden('cannot delete a root from the drive', { path });
  }

  async remove(paths: string[], o: CallOptions = {}): Promise<void> {
    for (const p of paths) {
      const r = await this.resolveForWrite(p, o, 'delete');
      await this.client.delete(r.root.id, r.sub, o);
    }
  }

  async statfs(o: CallOptions = {}): Promise<StatFs> {
    const [info, pol] = await Promise.all([this.client.accountInfo(o), this.policy(o)]);
    // the same answer names the roots: the mount's login check (a statfs) spares the first
    // path lookup its own account call
    this.roots = { at: Date.now(), list: mapRoots(info.roots), account: info };
    // `df` shows what an upload may really use: the user's own quota or the organization's
    // policy quota, whichever is tighter (the same bound checkResolved enforces).
    const totals = [info.space_quota, pol?.quota].filter((x): x is number => typeof x === 'number' && x > 0);
    return { total: totals.length ? Math.min(...totals) : null, used: info.space_usage };
  }

  async shareLink(path: string, o: CallOptions = {}): Promise<{ url: string; expires?: string | null }> {
    const r = await this.resolve(path, o);
    if (r.top) throw new Forbidden('the top of the drive holds the roots and has no share link', { path });
    return this.client.createLink(r.root.id, r.sub, o);
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  // ---- helpers ----

  private async fileTarget(path: string, o: CallOptions): Promise<{ root: MappedRoot; sub: string }> {
    const r = await this.resolve(path, o);
    if (r.top || r.sub === '/') throw new BadRequest('not a file', { path });
    return r;
  }

  private async resolveForWrite(path: string, o: CallOptions, what: string): Promise<{ root: MappedRoot; sub: string }> {
    const parts = split(path);
    if (!this.rootSel && parts.length === 1) {
      // Top-level folders are the account's roots; creating or removing them is root management.
      throw new Forbidden(`cannot ${what} a root from the drive`, { path });
    }
    const r = await this.resolve(path, o);
    if (r.top || r.sub === '/') throw new Forbidden(`cannot ${what} the top of the drive`, { path });
    return r;
  }

  /** The cached policy while fresh (null: none readable), undefined when it must be asked for. */
  private policyFresh(): EffectivePolicy | null | undefined {
    return this.policyCache && Date.now() - this.policyCache.at < this.ttl ? this.policyCache.pol : undefined;
  }

  private checkNameWith(pol: EffectivePolicy | null, path: string): void {
    const name = split(path).at(-1) ?? '';
    const ext = pol ? excludedExtension(name, pol.excluded) : null;
    if (ext) throw new PolicyExcludedExtension(`files ending in ${ext} are excluded by the organization policy`, { path });
  }

  /** The user's own quota (account info) and the organization's (policy), whichever is tighter. */
  private quota(pol: EffectivePolicy, info: VboxxAccountInfo): { total: number | null; info: VboxxAccountInfo } {
    const totals = [info.space_quota, pol.quota].filter((x): x is number => typeof x === 'number');
    return { total: totals.length ? Math.min(...totals) : null, info };
  }

  /** The org policy of the user's company, cached; null when the user may not read it. */
  private async policy(o: CallOptions): Promise<EffectivePolicy | null> {
    if (this.policyCache && Date.now() - this.policyCache.at < this.ttl) return this.policyCache.pol;
    let pol: EffectivePolicy | null = null;
    try {
      const me = await this.client.person(o);
      const company = typeof me.company_id === 'number' ? me.company_id : undefined;
      if (company !== undefined) pol = effectivePolicy(await this.client.policy(company, o));
    } catch (e) {
      if (!(e instanceof RemoteError) || !['FORBIDDEN', 'UNAUTHORIZED', 'NOT_FOUND'].includes(e.code)) throw e;
      // A plain user may not read the policy: the quota from account info and the server's own
      // refusal at upload time still hold.
      this.log.debug(`vboxx: policy not readable (${e.code}); relying on account info and server refusals`);
    }
    this.policyCache = { at: Date.now(), pol };
    return pol;
  }

  private async checkResolved(r: { root: MappedRoot; sub: string }, path: string, size: number, o: CallOptions): Promise<void> {
    if (!Number.isSafeInteger(size) || size < 0) throw new BadRequest('invalid size', { path });
    const name = split(path).at(-1) ?? '';
    const pol = (await this.policy(o)) ?? effectivePolicy(null);
    // the account's usage as last asked (with the roots), asked again once their TTL has passed
    await this.loadRoots(o);
    const { total, info } = this.quota(pol, this.roots!.account);
    let replaced = 0;
    if (total !== null && info.space_usage + size > total) {
      const cur = await this.client.metadata(r.root.id, r.sub, { ...o, list: false }).catch(() => null);
      if (cur && !cur.unchanged && !cur.meta.is_dir) replaced = cur.meta.bytes;
    }
    checkAgainst(pol, path, name, size, { total, used: info.space_usage, replaced });
  }

  private bumpUsage(n: number): void {
    // Keeps the cached usage close until the next account info, so a burst of uploads is checked
    // against what it already used.
    if (this.roots) this.roots.account = { ...this.roots.account, space_usage: this.roots.account.space_usage + n };
  }
}

export function createVboxxRemote(opts: VboxxClientOptions): VboxxRemote {
  return new VboxxRemote(opts);
}


/**
 * client_mtime as the reference server writes it ("YYYY-MM-DDTHH:MM:SS", UTC), as Dropbox v1 did
 * ("Sat, 21 Aug 2010 22:31:20 +0000"), or unix seconds; undefined when absent or not a time.
 */
export function clientMtimeMs(v: string | number | undefined): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v > 0 ? v * 1000 : undefined;
  if (typeof v !== 'string' || v === '' || v === '0') return undefined;
  const iso = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?$/.test(v) ? v + 'Z' : v;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : undefined;
}
