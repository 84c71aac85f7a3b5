// The inode table and the attributes the drive keeps locally (chmod, utimens), and how an entry
// becomes the Attr the adapter shows.
//
// Owns: path -> inode number (stable for the mount, moved by renames, root = 1) and path ->
// local attributes. Ordering: a rename moves both with rekey() before the caller's rename
// returns; unlink and rmdir forget() them.
import type { RemoteEntry } from '../../remote/types.js';
import type { Attr } from '../api.js';
import { rekeyMap } from '../paths.js';
import { sameIdent } from '../content/obj.js';

export interface LocalAttrs { perm?: number; mtimeMs?: number; atimeMs?: number; ctimeMs?: number }

/** What toAttr needs of a path's content object. */
export interface ContentView {
  readonly authoritative: boolean;
  readonly size: number;
  readonly localMtime: number;
  readonly refs: number;
  readonly ident: RemoteEntry | null;
}

export class AttrTable {
  /** The path/inode table: one stable number per path seen, moved by renames. */
  private readonly inos = new Map<string, number>([['/', 1]]);
  private nextIno = 2;
  /** chmod / utimens / a create's mode: kept locally (the services have no such attributes). */
  readonly local = new Map<string, LocalAttrs>();
  private readonly mountTime = Date.now();

  ino(path: string): number {
    let ino = this.inos.get(path);
    if (ino === undefined) { ino = this.nextIno++; this.inos.set(path, ino); }
    return ino;
  }

  /** The path is gone (unlink, rmdir): its number and local attributes go too. */
  forget(path: string): void {
    this.inos.delete(path);
    this.local.delete(path);
  }

  rekey(from: string, to: string): void {
    rekeyMap(this.local, from, to);
    rekeyMap(this.inos, from, to);
  }

  update(path: string, change: LocalAttrs): void {
    const la = this.local.get(path) ?? {};
    Object.assign(la, change);
    this.local.set(path, la);
  }

  /** The content changed: an explicit mtime (utimens) no longer holds. */
  contentModified(path: string): void {
    const la = this.local.get(path);
    if (la && la.mtimeMs !== undefined) la.mtimeMs = undefined;
  }

  toAttr(path: string, e: RemoteEntry, o?: ContentView): Attr {
    const la = this.local.get(path);
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
      mtimeMs = la?.mtimeMs ?? own ?? e.mtimeMs ?? this.mountTime;
    }
    return {
      ino: this.ino(path),
      type: e.type,
      size,
      perm: la?.perm ?? (isDir ? 0o755 : 0o644),
      mtimeMs,
      ctimeMs: la?.ctimeMs ?? mtimeMs,
      atimeMs: la?.atimeMs ?? mtimeMs,
      nlink: isDir ? 2 : 1,
    };
  }
}
