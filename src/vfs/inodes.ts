// The vfs addressed by inode number (InodeApi, for the libfuse 3 backend). The inode table is the
// vfs's own (meta/attrs.ts: the numbers st_ino always came from, kept across renames), which also
// keeps the kernel's lookup counts; every call resolves its number to the path it names now and
// runs the path operation, so the semantics stay in one place.
//
// What differs from the path API:
// - An unlinked file that is still open is not renamed to a hidden name: its content object is
//   detached (deleted on the server now, never uploaded again) and its handles keep reading and
//   writing it; getattr through a handle still answers (nlink 0).
// - setattr carries both times, each set, 'now' or left alone, and the size/mode in one call.
// - Every entry returned by lookup/create/mkdir counts one kernel reference.
// - open (and a truncate by name) binds its handle to the content of the path its number names
//   only while the number still names it: a rename over the name (or an unlink) that landed while the open waited leaves the
//   number to its own file (found where it went, or gone: ENOENT), never the new one's bytes.
//   chmod and utimens by number likewise change the file the number names, not the name's new file.
import { AlreadyExists, InvalidName, NotFound } from '../errors.js';
import type { Attr, FileExtent, FsStats, InoAttr, InodeApi, Invalidation, RenameFlags, SetAttrChanges, TimeChange, VfsApi } from './api.js';
import type { ServerChange } from './meta/cache.js';
import type { Obj } from './content/obj.js';
import type { AttrTable } from './meta/attrs.js';
import { joinPath, parentOf } from './paths.js';

/** What the inode layer needs of the facade beyond the path API. */
export interface InodeDeps {
  /** The content object behind an open handle (undefined for an unknown handle). */
  handleObj(fh: number): Obj | undefined;
  /** The content object at path, if any. */
  objAt(path: string): Obj | undefined;
  /** What identifies the folder's cached listing while it is fresh (undefined: none fresh). */
  listingStamp(path: string): { slot: object; gen: number } | undefined;
  /** What the drive shows for a content object (as fgetattr). */
  objAttr(o: Obj): Attr;
  /** chmod / utimens of a content object no name holds any more (deleted or replaced while open). */
  setObjAttrs(o: Obj, c: { mode?: number; atime?: TimeChange; mtime?: TimeChange }): void;
}

export class InodeVfs implements InodeApi {
  /**
   * Numbers of files deleted (or replaced by a rename) while open: the kernel still asks for their
   * attributes without a handle (fstat goes by inode), so they answer from the content object
   * until its last handle is released.
   */
  private readonly orphans = new Map<number, Obj>();
  /** Per folder number: the listing last served to the kernel (cache_readdir keeps it while unchanged). */
  private readonly served = new Map<number, { slot: object; gen: number }>();
  /** The numbers each open folder handle's latest listing holds (pinned in the table until releasedir). */
  private readonly listed = new Map<number, number[]>();

  constructor(
    private readonly vfs: VfsApi & {
      openCached(path: string, flags: number, names?: () => boolean): Promise<{ fh: number; keepCache: boolean; noFlush: boolean } | null>;
      truncateNamed(path: string, size: number, names?: () => boolean): Promise<boolean>;
      chmodNamed(path: string, mode: number, names?: () => boolean): Promise<boolean>;
      setTimesNamed(path: string, times: { atime?: TimeChange; mtime?: TimeChange }, names?: () => boolean): Promise<boolean>;
      readExtent(fh: number, length: number, position: number): Promise<FileExtent>;
    },
    private readonly table: AttrTable,
    private readonly deps: InodeDeps,
  ) {}

  private handleObj(fh: number): Obj | undefined {
    return this.deps.handleObj(fh);
  }

  private orphan(ino: number): Obj | undefined {
    const o = this.orphans.get(ino);
    if (o && o.refs > 0) return o;
    if (o) this.orphans.delete(ino);
    return undefined;
  }

  /** Runs a change that may take path's name away from an open file, and keeps that file's number answering. */
  private async keepingOpen(path: string, change: () => Promise<void>): Promise<void> {
    const o = this.deps.objAt(path);
    const ino = o && o.refs > 0 ? this.table.ino(path) : undefined;
    await change();
    if (o && ino !== undefined && o.unlinked && o.refs > 0 && this.table.pathOf(ino) === undefined) this.orphans.set(ino, o);
  }

  /** The path ino names now. An unknown number is a node that went away (deleted here or on the server). */
  private path(ino: number): string {
    const p = this.table.pathOf(ino);
    if (p === undefined) throw new NotFound(`inode ${ino} names nothing any more`);
    return p;
  }

  private child(parent: number, name: string): string {
    // the kernel never sends these as names to create or look up; refuse rather than walk the tree
    if (!name || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
      throw new InvalidName(`invalid name ${JSON.stringify(name)}`);
    }
    return joinPath(this.path(parent), name);
  }

  private withIno(a: Attr, ino?: number): InoAttr {
    return { ...a, ino: ino ?? a.ino! };
  }

  private invalidate: ((x: Invalidation) => void) | undefined;
  /** Invalidations asked for since the mount (status). */
  invalidations = 0;

  onInvalidate(fn: ((x: Invalidation) => void) | undefined): void {
    this.invalidate = fn;
  }

  /**
   * Another client changed path on the server (meta/cache.ts compared two answers): the kernel's
   * copies of what it holds of it go. Only numbers the kernel holds (counted) are worth a
   * notification; the others it will ask about anyway.
   */
  serverChanged(path: string, what: ServerChange): void {
    if (!this.invalidate) return;
    const held = (p: string) => {
      const i = this.table.peek(p);
      return i !== undefined && this.table.lookupCount(i) > 0 ? i : undefined;
    };
    const tell = (x: Invalidation) => { this.invalidations++; this.invalidate!(x); };
    const ino = held(path);
    if (what === 'gone' && path !== '/') {
      const parent = held(parentOf(path));
      if (parent !== undefined) tell({ parent, name: path.slice(path.lastIndexOf('/') + 1) });
    }
    // attributes and cached data; for a folder ('listing') also its cached listing (cache_readdir)
    if (ino !== undefined) tell({ ino });
  }

  counted(ino: number, n = 1): void {
    this.table.counted(ino, n);
  }

  forget(ino: number, n: number): void {
    if (this.table.uncounted(ino, n) === 0) { this.orphans.delete(ino); this.served.delete(ino); }
  }

  /**
   * Counts the kernel's new reference to the entry at path and returns the number to send. A
   * forget that arrived while the entry was being fetched may have dropped the number (the kernel
   * forgot its inode meanwhile): the name then gets its number anew, never a dropped one.
   */
  private countEntry(path: string, a: InoAttr): InoAttr {
    if (this.table.pathOf(a.ino) === undefined) a = { ...a, ino: this.table.ino(path) };
    this.table.counted(a.ino);
    return a;
  }

  async lookup(parent: number, name: string): Promise<InoAttr> {
    const a = await this.find(parent, name);
    if (!a) throw new NotFound('no such file or directory', { path: this.child(parent, name) });
    return a;
  }

  async find(parent: number, name: string): Promise<InoAttr | null> {
    const path = this.child(parent, name);
    const a = await this.vfs.stat(path);
    return a && this.countEntry(path, this.withIno(a));
  }

  async getattr(ino: number, fh?: number): Promise<InoAttr> {
    if (fh !== undefined && this.handleObj(fh)) return this.withIno(await this.vfs.fgetattr('', fh), ino);
    const o = this.orphans.size > 0 ? this.orphan(ino) : undefined;
    if (o) return this.withIno({ ...this.deps.objAttr(o), nlink: 0 }, ino);
    return this.withIno(await this.vfs.getattr(this.path(ino)), ino);
  }

  cachedAttr(ino: number): InoAttr | undefined {
    const p = this.table.pathOf(ino);
    const a = p === undefined ? undefined : this.vfs.statCached(p);
    return a && this.withIno(a, ino);
  }

  async setattr(ino: number, c: SetAttrChanges, fh?: number): Promise<InoAttr> {
    const viaHandle = fh !== undefined && this.handleObj(fh) !== undefined;
    // a file deleted while open has no path: its size, mode and times are its content object's
    const orphan = viaHandle ? this.handleObj(fh!)! : this.orphans.size > 0 ? this.orphan(ino) : undefined;
    const gone = !!orphan?.unlinked;
    if (gone && !viaHandle && c.size !== undefined) throw new NotFound(`inode ${ino} was deleted`);
    const named = gone ? undefined : this.path(ino);
    if (c.size !== undefined) {
      if (viaHandle) await this.vfs.ftruncate(named ?? '', fh!, c.size);
      else await this.truncate(ino, c.size);
    }
    // fchmod and futimens arrive without a handle (the kernel passes none): by number, for an
    // orphan too
    if (gone && (c.mode !== undefined || c.atime !== undefined || c.mtime !== undefined)) {
      this.deps.setObjAttrs(orphan!, { mode: c.mode, atime: c.atime, mtime: c.mtime });
    }
    // A number that names nothing by now (deleted meanwhile, no open orphan) gets no mode or
    // times: getattr below fails (ENOENT).
    if (!gone) {
      const mode = c.mode;
      if (mode !== undefined) await this.changed(ino, 'its mode was set', (p, names) => this.vfs.chmodNamed(p, mode & 0o7777, names));
      if (c.atime !== undefined || c.mtime !== undefined) {
        const times = { atime: c.atime, mtime: c.mtime };
        await this.changed(ino, 'its times were set', (p, names) => this.vfs.setTimesNamed(p, times, names));
      }
    }
    return this.getattr(ino, viaHandle ? fh : undefined);
  }

  /**
   * An open or a change by name (truncate(2), chmod, utimens) of the file ino names: a rename over
   * the name landing while it waited (lookups, revalidation) gave it to the file that took the
   * name. `run` acts only while ino still names the path (its `names`, checked after its last
   * wait) and answers null otherwise; it is then run again at the path the number names now.
   * Null: the number names nothing any more.
   */
  private async byNumber<T>(ino: number, doing: string, run: (path: string, names: () => boolean) => Promise<T | null>): Promise<T | null> {
    for (let round = 0; round < 8; round++) {
      const path = this.table.pathOf(ino);
      if (path === undefined) return null;
      const r = await run(path, () => this.table.pathOf(ino) === path);
      if (r !== null) return r;
    }
    throw new NotFound(`inode ${ino} kept being renamed while ${doing}`);
  }

  /** A change by number that answers whether it was applied (Vfs.truncateNamed and the like). */
  private changed(ino: number, doing: string, run: (path: string, names: () => boolean) => Promise<boolean>): Promise<true | null> {
    return this.byNumber(ino, doing, async (p, names) => (await run(p, names)) || null);
  }

  private async truncate(ino: number, size: number): Promise<void> {
    if (!await this.changed(ino, 'it was truncated', (p, names) => this.vfs.truncateNamed(p, size, names))) {
      throw new NotFound(`inode ${ino} names nothing any more`);
    }
  }

  async opendir(ino: number): Promise<number> {
    return this.vfs.opendir(this.path(ino));
  }

  async fsyncdir(ino: number): Promise<void> {
    await this.vfs.fsyncdir?.(this.table.pathOf(ino) ?? '/');
  }

  listingUnchanged(ino: number): boolean {
    const was = this.served.get(ino);
    const p = this.table.pathOf(ino);
    const now = p === undefined ? undefined : this.deps.listingStamp(p);
    return !!was && !!now && was.slot === now.slot && was.gen === now.gen;
  }

  async releasedir(ino: number, fh: number): Promise<void> {
    this.unlist(fh);
    await this.vfs.releasedir(this.table.pathOf(ino) ?? '', fh);
  }

  private unlist(fh: number): void {
    const held = this.listed.get(fh);
    if (held) { this.listed.delete(fh); this.table.unpin(held); }
  }

  /**
   * fh: the open folder handle the listing is for. Its numbers stay in the table (pinned) until
   * the handle's next listing or its releasedir, since the adapter may send them in later
   * readdirplus pages, when they become kernel references.
   */
  async readdir(ino: number, fh?: number): Promise<{ self: number; parent: number; entries: { name: string; attr: InoAttr }[] }> {
    const path = this.path(ino);
    const listed = await this.vfs.readdir(path);
    const stamp = this.deps.listingStamp(path);
    if (stamp) this.served.set(ino, stamp); else this.served.delete(ino);
    const entries: { name: string; attr: InoAttr }[] = [];
    for (const { name, attr: a } of listed) {
      // a number dropped while the listing was fetched (a forget in between): the name's number anew
      // (readdir's attributes are fresh objects: the common case passes them on without a copy)
      if (a.ino !== undefined && this.table.pathOf(a.ino) !== undefined) entries.push({ name, attr: a as InoAttr });
      else entries.push({ name, attr: this.withIno(a, this.table.ino(joinPath(path, name))) });
    }
    if (fh !== undefined) {
      const inos = entries.map((e) => e.attr.ino);
      this.table.pin(inos);
      this.unlist(fh);
      this.listed.set(fh, inos);
    }
    return { self: ino, parent: path === '/' ? 1 : this.table.ino(parentOf(path)), entries };
  }

  /**
   * The file ino names, opened. A rename over its name or an unlink of it may land while the open
   * waits (lookup, revalidation): the path then names another file or none, and a handle bound to
   * what it names would read another file's bytes for this inode (the kernel's pages of the inode
   * mixing the two). The open is bound only while ino still names the path (openCached's `names`),
   * else it follows the number to where it went, or finds it gone (ENOENT, as an open arriving
   * after the change).
   */
  async open(ino: number, flags: number): Promise<{ fh: number; keepCache: boolean; noFlush: boolean }> {
    const r = await this.byNumber(ino, 'it was opened', (p, names) => this.vfs.openCached(p, flags, names));
    if (!r) throw new NotFound(`inode ${ino} names nothing any more`);
    return r;
  }

  async create(parent: number, name: string, mode: number, flags: number): Promise<{ fh: number; attr: InoAttr }> {
    const path = this.child(parent, name);
    const fh = await this.vfs.create(path, mode & 0o7777, flags);
    try {
      const attr = this.countEntry(path, this.withIno(await this.vfs.fgetattr(path, fh)));
      return { fh, attr };
    } catch (e) {
      await this.vfs.release(path, fh).catch(() => {});
      throw e;
    }
  }

  async mkdir(parent: number, name: string, mode: number): Promise<InoAttr> {
    const path = this.child(parent, name);
    await this.vfs.mkdir(path, mode & 0o7777);
    return this.countEntry(path, this.withIno(await this.vfs.getattr(path)));
  }

  unlink(parent: number, name: string): Promise<void> {
    const path = this.child(parent, name);
    return this.keepingOpen(path, () => this.vfs.unlink(path));
  }

  rmdir(parent: number, name: string): Promise<void> {
    return this.vfs.rmdir(this.child(parent, name));
  }

  async rename(parent: number, name: string, newParent: number, newName: string, flags: RenameFlags = {}): Promise<void> {
    const from = this.child(parent, name);
    const to = this.child(newParent, newName);
    // renameat2 onto the same name: the target exists, so NOREPLACE refuses (the kernel does too)
    if (from === to && flags.noReplace) throw new AlreadyExists('target exists (RENAME_NOREPLACE)', { path: to });
    // a file open under the target name loses it: its handles keep working on the old content
    await this.keepingOpen(to, () => this.vfs.rename(from, to, flags));
  }

  read(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    return this.vfs.read('', fh, buf, length, position);
  }

  readExtent(fh: number, length: number, position: number): Promise<FileExtent> {
    return this.vfs.readExtent(fh, length, position);
  }

  write(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    return this.vfs.write('', fh, buf, length, position);
  }

  flush(fh: number): Promise<void> {
    return this.vfs.flush('', fh);
  }

  release(fh: number): Promise<void> {
    return this.vfs.release('', fh);
  }

  fsync(fh: number, datasync: boolean): Promise<void> {
    return this.vfs.fsync('', fh, datasync);
  }

  statfs(): Promise<FsStats> {
    return this.vfs.statfs('/');
  }

  access(ino: number, mode: number): Promise<void> {
    return this.vfs.access(this.path(ino), mode);
  }

  getxattr(ino: number, name: string): Promise<Buffer> {
    return this.vfs.getxattr(this.path(ino), name);
  }

  listxattr(ino: number): Promise<string[]> {
    return this.vfs.listxattr(this.path(ino));
  }

  setxattr(ino: number, name: string, value: Buffer, flags: number): Promise<void> {
    return this.vfs.setxattr(this.path(ino), name, value, flags);
  }

  removexattr(ino: number, name: string): Promise<void> {
    return this.vfs.removexattr(this.path(ino), name);
  }
}
