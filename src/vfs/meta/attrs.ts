// The inode table and the attributes the drive keeps locally (chmod, utimens), and how an entry
// becomes the Attr the adapter shows.
//
// What a service cannot hold: permission bits outside fileMeta.modeBits answer what a program
// set (create mode, chmod) for the mount and the defaults (0644 files, 0755 folders) after a
// remount; a file's mtime is shown at the service's resolution
// (vBoxx: whole seconds) so that it does not move when the server's copy is read back. Times the
// services hold nowhere (atime, ctime, folder mtimes on vBoxx) live for the mount: folder times
// move with our own changes inside them, else they come from the listing (or the mount time).
//
// Owns: path -> inode number (stable for the mount, moved by renames, root = 1), its reverse
// (the libfuse 3 backend addresses everything by inode), the kernel's lookup counts, and path ->
// local attributes. Ordering: a rename moves them with rekey() before the caller's rename
// returns; unlink and rmdir forget() them.
import type { AttrChange, FileMetadata, RemoteEntry } from '../../remote/types.js';
import type { Attr } from '../api.js';
import { PathIndex, deleteIndexed, rekeyIndexed, setIndexed } from '../paths.js';
import { sameIdent } from '../content/obj.js';

export interface LocalAttrs { perm?: number; mtimeMs?: number; atimeMs?: number; ctimeMs?: number }

/** What toAttr needs of a path's content object. */
export interface ContentView {
  readonly authoritative: boolean;
  readonly size: number;
  readonly localMtime: number;
  readonly refs: number;
  readonly ident: RemoteEntry | null;
  readonly unlinked: boolean;
  readonly ownAttrs: LocalAttrs | undefined;
}

/** What contentModified needs of a content object. */
export interface ModifiedView { readonly path: string; readonly unlinked: boolean; readonly ownAttrs: LocalAttrs | undefined }

export class AttrTable {
  /** The path/inode table: one stable number per path seen, moved by renames. */
  private readonly inos = new Map<string, number>([['/', 1]]);
  /** ino -> path: the inode-addressed entry points resolve through it (numbers are never reused). */
  private readonly paths = new Map<number, string>([[1, '/']]);
  /** The paths of inos by folder: a rename moves its tree only (a scan of every path the kernel holds before). */
  private readonly inoPaths = new PathIndex((k) => this.inos.has(k));
  /**
   * The kernel's lookup count per inode (libfuse 3 backend): what entries it was sent minus what it
   * forgot. An unlinked name leaves the table at once (its open handles do not need it); a counted
   * number whose name went away is then unknown to getattr without a handle (ENOENT), as for any
   * node removed on the server.
   *
   * Bounding the table: a number the kernel has forgotten entirely (count back to 0) and that no
   * open folder listing still holds (pins: its entries may yet go out in a readdirplus page) leaves
   * the table, so it holds what the kernel caches, not every path ever seen. The kernel keeps a
   * count while it caches the inode, so an open file (which pins its inode) is never dropped; its
   * name gets a new number at the next lookup (st_ino is stable while the kernel knows the inode, as
   * on NFS and rclone). Without forgets (the fuse-native backend) nothing is dropped: numbers stay
   * for the mount, as st_ino always did there. Local attributes are path-keyed and stay.
   */
  private readonly counts = new Map<number, number>();
  /** Numbers held by open folder listings (InodeVfs.readdir with a handle), how many times. */
  private readonly pins = new Map<number, number>();
  private nextIno = 2;
  /** Numbers dropped since the mount (status). */
  private dropped = 0;
  /**
   * chmod / utimens / a create's mode: kept locally (the services have no such attributes), for
   * the mount's life. Indexed by folder like the numbers: tar x and rsync -t give every file an
   * entry, and a scan of them per rename cost 1.9 ms with 100,000 (rsync renames each file it
   * writes: quadratic over a tree).
   */
  private readonly local = new Map<string, LocalAttrs>();
  private readonly localPaths = new PathIndex((k) => this.local.has(k));
  private readonly mountTime = Date.now();

  /** meta: what the service keeps of a file's times and mode (absent: nothing, all lives for the mount). */
  constructor(private readonly meta?: FileMetadata) {}

  ino(path: string): number {
    let ino = this.inos.get(path);
    if (ino === undefined) { ino = this.nextIno++; setIndexed(this.inos, this.inoPaths, path, ino); this.paths.set(ino, path); }
    return ino;
  }

  /** The number of path if it has one (never allocates). */
  peek(path: string): number | undefined {
    return this.inos.get(path);
  }

  /** The path an inode number names now (renames followed), or undefined when it names none. */
  pathOf(ino: number): string | undefined {
    return this.paths.get(ino);
  }

  /** The kernel got n more references to ino (an entry reply, a readdirplus entry). */
  counted(ino: number, n = 1): void {
    this.counts.set(ino, (this.counts.get(ino) ?? 0) + n);
  }

  /** The kernel dropped n references (forget). Returns what it still holds; at 0 the number may leave the table. */
  uncounted(ino: number, n: number): number {
    const left = (this.counts.get(ino) ?? 0) - n;
    if (left > 0) { this.counts.set(ino, left); return left; }
    this.counts.delete(ino);
    this.dropIfIdle(ino);
    return 0;
  }

  lookupCount(ino: number): number {
    return this.counts.get(ino) ?? 0;
  }

  /** An open folder listing holds these numbers until unpin (it may still send them to the kernel). */
  pin(inos: Iterable<number>): void {
    for (const i of inos) this.pins.set(i, (this.pins.get(i) ?? 0) + 1);
  }

  /** The listing is gone: its numbers nobody counted leave the table. */
  unpin(inos: Iterable<number>): void {
    for (const i of inos) {
      const left = (this.pins.get(i) ?? 0) - 1;
      if (left > 0) { this.pins.set(i, left); continue; }
      this.pins.delete(i);
      if (!this.counts.has(i)) this.dropIfIdle(i);
    }
  }

  private dropIfIdle(ino: number): void {
    if (ino === 1 || this.counts.has(ino) || this.pins.has(ino)) return;
    const path = this.paths.get(ino);
    if (path === undefined) return;
    this.paths.delete(ino);
    if (this.inos.get(path) === ino) deleteIndexed(this.inos, this.inoPaths, path);
    this.dropped++;
  }

  /** Sizes of the tables (tests, status). */
  get sizes(): { inodes: number; counted: number; pinned: number; dropped: number } {
    return { inodes: this.inos.size, counted: this.counts.size, pinned: this.pins.size, dropped: this.dropped };
  }

  /** The path is gone (unlink, rmdir): its number and local attributes go too. */
  forget(path: string): void {
    const ino = this.inos.get(path);
    if (ino !== undefined && ino !== 1) {
      deleteIndexed(this.inos, this.inoPaths, path);
      this.paths.delete(ino);
    }
    deleteIndexed(this.local, this.localPaths, path);
  }

  rekey(from: string, to: string): void {
    // what was kept for a replaced target (its mode, an explicit mtime) is not the moved file's:
    // left in place, a save by rename over a file that had been chmod'ed or `cp -p`'d showed (and
    // sent) the old file's mode and mtime for the new content
    for (const k of this.localPaths.under(to)) deleteIndexed(this.local, this.localPaths, k);
    rekeyIndexed(this.local, this.localPaths, from, to);
    rekeyIndexed(this.inos, this.inoPaths, from, to, (ino, nk) => {
      // a replaced target's number names nothing any more
      const old = this.inos.get(nk);
      if (old !== undefined && old !== ino) this.paths.delete(old);
      this.paths.set(ino, nk);
    });
  }

  update(path: string, change: LocalAttrs): void {
    const la = this.local.get(path);
    if (la) Object.assign(la, change);
    else setIndexed(this.local, this.localPaths, path, { ...change });
  }

  /** A new file's or folder's own attributes (its mode): what an earlier node at path had is gone. */
  setLocal(path: string, la: LocalAttrs | undefined): void {
    if (la) setIndexed(this.local, this.localPaths, path, la);
    else deleteIndexed(this.local, this.localPaths, path);
  }

  /**
   * path's content replaces a server file it is not (a local-only file renamed over it): where the
   * service keeps modes, its mode is sent with it even when it is the default.
   */
  ownMode(path: string): void {
    if (this.meta?.modeBits && this.local.get(path)?.perm === undefined) this.update(path, { perm: 0o644 });
  }

  /** A copy of what is kept for path, for a content object that is losing the name (Obj.ownAttrs). */
  copyOf(path: string): LocalAttrs | undefined {
    const la = this.local.get(path);
    return la && { ...la };
  }

  /** What is kept locally of path (undefined: nothing). */
  localOf(path: string): Readonly<LocalAttrs> | undefined {
    return this.local.get(path);
  }

  /** Paths with local attributes (tests, status). */
  get localCount(): number {
    return this.local.size;
  }

  /**
   * Where the service keeps folder times: told of each folder time our own changes moved, so that
   * it is sent (the server moves it again when those changes land: without this, what the mount
   * showed would change at a remount, and rsync, which compares whole seconds, may have found it
   * equal to its source's and set nothing).
   */
  onDirChanged?: (dir: string, mtimeMs: number) => void;

  /** Our own create/unlink/mkdir/rmdir/rename inside dir (or a mkdir of dir): its mtime and ctime move (POSIX). */
  dirChanged(dir: string): void {
    const now = Date.now();
    this.update(dir, { mtimeMs: now, ctimeMs: now });
    this.onDirChanged?.(dir, now);
  }

  /** The times and mode of path to send with its content (only what the service keeps). */
  toSend(path: string, localMtime: number): AttrChange {
    const la = this.local.get(path);
    const out: AttrChange = {};
    if (this.meta) {
      const m = la?.mtimeMs ?? (localMtime || undefined);
      if (m !== undefined) out.mtimeMs = m;
    }
    if (this.meta?.modeBits && la?.perm !== undefined) out.mode = la.perm & this.meta.modeBits;
    return out;
  }

  /** The content changed: an explicit mtime (utimens) no longer holds. */
  contentModified(o: ModifiedView): void {
    const la = o.unlinked ? o.ownAttrs : this.local.get(o.path);
    if (la && la.mtimeMs !== undefined) la.mtimeMs = undefined;
  }

  /** subdirs: the folder's number of subfolders, when its listing is known (nlink = 2 + that). */
  toAttr(path: string, e: RemoteEntry, o?: ContentView, subdirs?: number): Attr {
    const la = o?.unlinked ? o.ownAttrs : this.local.get(path);
    const isDir = e.type === 'dir';
    let mtimeMs: number;
    let size: number;
    if (o && o.authoritative) {
      size = o.size;
      mtimeMs = la?.mtimeMs ?? (o.localMtime || e.mtimeMs || this.mountTime);
    } else {
      size = isDir ? 4096 : (o && o.refs > 0 ? o.size : e.size);
      // Our own upload must not move the mtime a program saw while the file was local:
      // editors (vim E949 "file changed while writing") compare it before they save.
      const own = o && o.localMtime && !isDir && sameIdent(o.ident, e) ? o.localMtime : undefined;
      // An entry without a time (Maxxo: the daemon's row missing or of another size, e.g. a
      // listing that began before our own move into the folder landed) says nothing new of the
      // file: the time of the version we hold, if it is the same size, rather than the mount's.
      const held = !isDir && e.mtimeMs === undefined && o?.ident?.mtimeMs !== undefined && o.ident.size === e.size ? o.ident.mtimeMs : undefined;
      mtimeMs = la?.mtimeMs ?? own ?? e.mtimeMs ?? held ?? this.mountTime;
    }
    const res = this.meta?.mtimeResolutionMs ?? 1;
    // a folder's too where the service keeps it: the time our own changes moved is sent, and what
    // a remount shows must be what this mount showed
    if (this.meta && res > 1 && (!isDir || this.meta.folderTimes)) mtimeMs = Math.floor(mtimeMs / res) * res;
    const def = isDir ? 0o755 : 0o644;
    const held = isDir ? 0 : (this.meta?.modeBits ?? 0);
    // Bits the service cannot hold still answer what a program set (create mode, chmod +x of a
    // script it then runs) for the rest of the mount; a remount shows the default again. The
    // README promise section says so. Showing the default at once (rclone) broke `./script` after
    // `chmod +x` and create modes (mode 0 gave 0644) for no gain but remount symmetry.
    const shown = (def & ~held) | ((e.mode ?? def) & held);
    return {
      ino: this.ino(path),
      type: e.type,
      size,
      perm: la?.perm ?? shown,
      mtimeMs,
      ctimeMs: la?.ctimeMs ?? mtimeMs,
      atimeMs: la?.atimeMs ?? mtimeMs,
      nlink: isDir ? 2 + (subdirs ?? 0) : 1,
    };
  }
}
