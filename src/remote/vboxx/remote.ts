// The vBoxx account as a drive (the Remote interface vfs uses). Each root of the account is a
// top-level folder named after it, or with `root` the one chosen root is the drive's top.
import { stat as fsStat } from 'node:fs/promises';
import {
  BadRequest, Forbidden, NotADirectory, NotFound, RemoteError, CrossDevice, PolicyExcludedExtension,
} from '../errors.js';
import { validName } from '../names.js';
import type {
  Capabilities, CallOptions, ListResult, RangeRead, RangeSink, Remote, RemoteEntry, StatFs, TransferOptions, UploadPolicy,
} from '../types.js';
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

export class VboxxRemote implements Remote {
  readonly kind = 'vboxx' as const;
  readonly capabilities: Capabilities = {
    rangedReads: true, listingRevalidation: true, serverRevision: true, mtime: true,
    shareLinks: true, batchStat: false, emptyFolders: true, reportsSend: true,
  };
  readonly client: VboxxClient;
  private readonly rootSel?: string;
  private readonly ttl: number;
  private roots?: { at: number; list: MappedRoot[]; account: VboxxAccountInfo };
  private rootsLoading?: Promise<MappedRoot[]>;
  private policyCache?: { at: number; pol: EffectivePolicy | null };

  constructor(opts: VboxxRemoteOptions) {
    this.client = new VboxxClient(opts);
    if (opts.root !== undefined && opts.root !== '') this.rootSel = String(opts.root);
    this.ttl = opts.cacheTtlMs ?? 60_000;
  }

  private get log() { return this.client.log; }

  // ---- roots ----

  private async loadRoots(o: CallOptions = {}, force = false): Promise<MappedRoot[]> {
    if (!force && this.roots && Date.now() - this.roots.at < this.ttl) return this.roots.list;
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

  private async resolve(path: string, o: CallOptions = {}): Promise<Resolved> {
    if (typeof path !== 'string' || path.includes('\0')) throw new BadRequest('invalid path');
    const parts = split(path);
    if (parts.includes('..')) throw new BadRequest('path traversal refused', { path });
    if (this.rootSel) {
      let list = await this.loadRoots(o);
      let root: MappedRoot;
      try { root = pickRoot(list, this.rootSel); } catch {
        list = await this.loadRoots(o, true);
        root = pickRoot(list, this.rootSel);
      }
      return { top: false, root, sub: '/' + parts.join('/') };
    }
    if (parts.length === 0) return { top: true };
    let list = await this.loadRoots(o);
    let root = list.find((r) => r.name === parts[0]);
    if (!root && this.roots && Date.now() - this.roots.at > 1000) {
      // A root created since we last looked: refresh once before saying ENOENT.
      list = await this.loadRoots(o, true);
      root = list.find((r) => r.name === parts[0]);
    }
    if (!root) throw new NotFound(`no such root: ${parts[0]}`, { path });
    return { top: false, root, sub: '/' + parts.slice(1).join('/') };
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
    const ts = m.modified_unix_timestamp;
    if (typeof ts === 'number' && ts > 0) e.mtimeMs = Math.round(ts * 1000);
    if (m.rev !== undefined) e.rev = m.rev;
    return e;
  }

  // ---- Remote ----

  async list(dir: string, o: CallOptions & { hash?: string } = {}): Promise<ListResult> {
    const r = await this.resolve(dir, o);
    if (r.top) {
      const roots = await this.loadRoots(o, true);
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

  async read(path: string, offset: number, length: number, o: CallOptions = {}): Promise<Buffer> {
    const r = await this.fileTarget(path, o);
    return this.client.readRange(r.root.id, r.sub, offset, length, o);
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
    const size = (await fsStat(localFile)).size;
    await this.checkResolved(r, path, size, o);
    const m = await this.client.upload(r.root.id, r.sub, localFile, o);
    this.bumpUsage(size);
    const e = this.toEntry(m, split(path).at(-1));
    if (!e) throw new BadRequest('uploaded under an invalid name', { path });
    return e;
  }

  readonly uploadPolicy: UploadPolicy = {
    checkName: async (path, o = {}) => {
      const pol = await this.policy(o);
      const name = split(path).at(-1) ?? '';
      const ext = pol ? excludedExtension(name, pol.excluded) : null;
      if (ext) throw new PolicyExcludedExtension(`files ending in ${ext} are excluded by the organization policy`, { path });
    },
    maxFileSize: async (_path, o = {}) => (await this.policy(o))?.maxFileSize ?? null,
  };

  async checkUpload(path: string, size: number, o: CallOptions = {}): Promise<void> {
    const r = await this.fileTarget(path, o);
    await this.checkResolved(r, path, size, o);
  }

  async mkdir(path: string, o: CallOptions = {}): Promise<void> {
    const r = await this.resolveForWrite(path, o, 'create a folder');
    await this.client.createFolder(r.root.id, r.sub, o);
  }

  async move(from: string, to: string, o: CallOptions = {}): Promise<void> {
    const a = await this.resolveForWrite(from, o, 'move');
    const b = await this.resolveForWrite(to, o, 'move');
    if (a.root.id !== b.root.id) {
      // The service moves only inside one root. EXDEV makes mv(1) and file managers fall back
      // to copy + delete through the drive, with their own progress and error handling.
      throw new CrossDevice('cannot move between roots; copy and delete instead', { path: from });
    }
    await this.client.move(a.root.id, a.sub, b.sub, o);
  }

  async remove(paths: string[], o: CallOptions = {}): Promise<void> {
    for (const p of paths) {
      const r = await this.resolveForWrite(p, o, 'delete');
      await this.client.delete(r.root.id, r.sub, o);
    }
  }

  async statfs(o: CallOptions = {}): Promise<StatFs> {
    const [info, pol] = await Promise.all([this.client.accountInfo(o), this.policy(o)]);
    if (this.roots) this.roots.account = info;
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
    let info = this.roots?.account;
    if (!info || Date.now() - (this.roots?.at ?? 0) > this.ttl) { await this.loadRoots(o, true); info = this.roots!.account; }
    // The user's own quota (account info) and the organization's (policy), whichever is tighter.
    const totals = [info.space_quota, pol.quota].filter((x): x is number => typeof x === 'number');
    const total = totals.length ? Math.min(...totals) : null;
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

