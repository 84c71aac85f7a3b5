// An in-memory model of the POSIX file semantics the drive promises (as Linux applies them), for
// the model-based random test. Written from POSIX and the Linux man pages, never from src/vfs: if
// the two agreed only because one was copied from the other, the test would prove nothing.
//
// Names are resolved against nodes, not strings: an open handle keeps its file node after the
// name is unlinked or replaced by a rename, exactly as an inode outlives its directory entry.
// Every operation checks all its error cases before it changes anything, so a failed operation
// leaves the model untouched (as a failed syscall leaves the file system).

export type Errno = 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ENOTEMPTY' | 'EINVAL' | 'EBADF';

/** The call fails; any one of `codes` is a correct answer (POSIX allows a choice in a few cases). */
export class Fail extends Error {
  constructor(readonly codes: Errno[]) {
    super(codes.join('|'));
  }
}
const fail = (...codes: Errno[]): never => {
  throw new Fail(codes);
};

/**
 * Whole seconds an mtime may hold: [lo, hi]. A change to the data puts "now" there, which the
 * model knows only as the wall-clock window around the call; null: not known (no check).
 */
export type TimeRange = [number, number];

export interface FileNode { kind: 'file'; data: Buffer; mtime: TimeRange | null; mode: number }
export interface DirNode { kind: 'dir'; entries: Map<string, Node> }
export type Node = FileNode | DirNode;

export interface OpenFlags {
  read: boolean;
  write: boolean;
  append?: boolean;
  creat?: boolean;
  excl?: boolean;
  trunc?: boolean;
}

export interface Handle {
  node: FileNode;
  pos: number;
  flags: OpenFlags;
}

/** A serializable copy of a tree: files as base64. */
export type Snap = { dir: Record<string, Snap> } | { file: string; mtime?: TimeRange | null; mode?: number };

export type Stat = { type: 'dir' } | { type: 'file'; size: number };

/** What the model knows of a file's times and mode (folders: none). */
export interface FileMeta { mtime: TimeRange | null; mode: number }

/** A file's times and mode as the model knows them. */
export const metaOf = (n: FileNode): FileMeta => ({ mtime: n.mtime, mode: n.mode });

/** open(2)'s default mode (0666) under the umask the worker sets (022). */
export const CREATE_MODE = 0o644;

export const split = (p: string): string[] => p.split('/').filter((s) => s !== '');

export class PosixModel {
  root: DirNode = { kind: 'dir', entries: new Map() };

  static fromSnap(s: Snap): PosixModel {
    const m = new PosixModel();
    const load = (x: Snap): Node => ('file' in x
      ? { kind: 'file', data: Buffer.from(x.file, 'base64'), mtime: x.mtime ?? null, mode: x.mode ?? CREATE_MODE }
      : { kind: 'dir', entries: new Map(Object.entries(x.dir).map(([k, v]) => [k, load(v)])) });
    const r = load(s);
    if (r.kind !== 'dir') throw new Error('snapshot root must be a folder');
    m.root = r;
    return m;
  }

  snap(node: Node = this.root): Snap {
    if (node.kind === 'file') return { file: node.data.toString('base64'), mtime: node.mtime, mode: node.mode };
    const dir: Record<string, Snap> = {};
    for (const [k, v] of [...node.entries].sort(([a], [b]) => (a < b ? -1 : 1))) dir[k] = this.snap(v);
    return { dir };
  }

  /** Every path under the root: '' is the root itself, folders as 'dir', files as their bytes. */
  flatten(prefix = ''): Map<string, 'dir' | Buffer> {
    const out = new Map<string, 'dir' | Buffer>();
    const walk = (n: Node, p: string) => {
      if (n.kind === 'file') {
        out.set(p, n.data);
        return;
      }
      out.set(p, 'dir');
      for (const [k, v] of n.entries) walk(v, p ? `${p}/${k}` : k);
    };
    walk(this.root, prefix);
    return out;
  }

  /** Every file's times and mode, by the same paths as flatten(). */
  meta(prefix = ''): Map<string, FileMeta> {
    const out = new Map<string, FileMeta>();
    const walk = (n: Node, p: string) => {
      if (n.kind === 'file') out.set(p, metaOf(n));
      else for (const [k, v] of n.entries) walk(v, p ? `${p}/${k}` : k);
    };
    walk(this.root, prefix);
    return out;
  }

  // ---- times ---------------------------------------------------------------------------------

  /**
   * Files whose mtime the last operation set to "now" (sure), or may have (a truncate that kept
   * the size: Linux's FUSE leaves that to the file system, POSIX asks it only when the size
   * changed). The caller knows when the call ran and stamps them (stamp()).
   */
  private touched: Array<{ node: FileNode; sure: boolean }> = [];

  private touch(node: FileNode, sure: boolean): void {
    this.touched.push({ node, sure });
  }

  /** Gives the files the last operation changed the window `now`; returns how many. */
  stamp(now: TimeRange): number {
    for (const { node, sure } of this.touched) {
      if (sure) node.mtime = [now[0], now[1]];
      else if (node.mtime) node.mtime = [Math.min(node.mtime[0], now[0]), Math.max(node.mtime[1], now[1])];
    }
    const n = this.touched.length;
    this.touched = [];
    return n;
  }

  /** Forgets what a failed (or abandoned) operation touched. */
  clearTouched(): void {
    this.touched = [];
  }

  // ---- resolution ----------------------------------------------------------------------------

  /** The folder named by all of `parts`: a missing component is ENOENT, a file on the way ENOTDIR. */
  private dir(parts: string[]): DirNode {
    let d: DirNode = this.root;
    for (const p of parts) {
      const n = d.entries.get(p);
      if (!n) return fail('ENOENT');
      if (n.kind !== 'dir') return fail('ENOTDIR');
      d = n;
    }
    return d;
  }

  private parentOf(path: string): { dir: DirNode; name: string; parts: string[] } {
    const parts = split(path);
    if (parts.length === 0) throw new Error('the model root itself is not an operand');
    return { dir: this.dir(parts.slice(0, -1)), name: parts[parts.length - 1]!, parts };
  }

  lookup(path: string): Node | undefined {
    try {
      const { dir, name } = this.parentOf(path);
      return dir.entries.get(name);
    } catch (e) {
      if (e instanceof Fail) return undefined;
      throw e;
    }
  }

  // ---- operations ----------------------------------------------------------------------------

  open(path: string, f: OpenFlags): Handle {
    const { dir, name } = this.parentOf(path);
    let n = dir.entries.get(name);
    if (n && f.creat && f.excl) fail('EEXIST');
    if (!n && !f.creat) fail('ENOENT');
    if (n?.kind === 'dir') {
      // open(2): a folder opened for writing is EISDIR. Read-only opens of folders succeed and
      // are not modelled: the generator never asks for one.
      if (!f.write) throw new Error(`model: read-only open of the folder ${path} is not modelled`);
      fail('EISDIR');
    }
    if (!n) {
      n = { kind: 'file', data: Buffer.alloc(0), mtime: null, mode: CREATE_MODE };
      dir.entries.set(name, n);
      this.touch(n, true);
    } else if (f.trunc && f.write) {
      this.touch(n as FileNode, (n as FileNode).data.length > 0);
      (n as FileNode).data = Buffer.alloc(0);
    }
    return { node: n as FileNode, pos: 0, flags: f };
  }

  /**
   * write(2) at the handle's position (pos === null) or pwrite(2) at pos. With O_APPEND every
   * write goes to the end first; the worker never pwrites on an O_APPEND handle, where Linux
   * departs from POSIX (it appends anyway).
   */
  write(h: Handle, buf: Buffer, pos: number | null): number {
    if (!h.flags.write) fail('EBADF');
    const file = h.node;
    const at = h.flags.append ? file.data.length : (pos ?? h.pos);
    const end = at + buf.length;
    if (end > file.data.length) {
      // Bytes between the old end and `at` read as zeros (a hole).
      const grown = Buffer.alloc(end);
      file.data.copy(grown);
      file.data = grown;
    }
    buf.copy(file.data, at);
    if (buf.length > 0) this.touch(file, true);
    if (pos === null || h.flags.append) h.pos = end;
    return buf.length;
  }

  read(h: Handle, len: number, pos: number | null): Buffer {
    if (!h.flags.read) fail('EBADF');
    const at = pos ?? h.pos;
    const out = Buffer.from(h.node.data.subarray(Math.min(at, h.node.data.length), Math.min(at + len, h.node.data.length)));
    if (pos === null) h.pos = at + out.length;
    return out;
  }

  private resize(file: FileNode, len: number): void {
    this.touch(file, len !== file.data.length);
    const next = Buffer.alloc(len);
    file.data.copy(next, 0, 0, Math.min(len, file.data.length));
    file.data = next;
  }

  ftruncate(h: Handle, len: number): void {
    // POSIX: EBADF or EINVAL when the handle is not open for writing (Linux says EINVAL).
    if (!h.flags.write) fail('EINVAL', 'EBADF');
    this.resize(h.node, len);
  }

  truncate(path: string, len: number): void {
    const { dir, name } = this.parentOf(path);
    const n = dir.entries.get(name);
    if (!n) fail('ENOENT');
    if (n!.kind === 'dir') fail('EISDIR');
    this.resize(n as FileNode, len);
  }

  /** open(O_RDONLY) + read to the end + close, as readFile does: a folder fails with EISDIR. */
  readFile(path: string): Buffer {
    const { dir, name } = this.parentOf(path);
    const n = dir.entries.get(name);
    if (!n) return fail('ENOENT');
    if (n.kind === 'dir') return fail('EISDIR');
    return Buffer.from(n.data);
  }

  fstat(h: Handle): Stat {
    return { type: 'file', size: h.node.data.length };
  }

  stat(path: string): Stat {
    const { dir, name } = this.parentOf(path);
    const n = dir.entries.get(name);
    if (!n) return fail('ENOENT');
    return n.kind === 'dir' ? { type: 'dir' } : { type: 'file', size: n.data.length };
  }

  readdir(path: string): string[] {
    const parts = split(path);
    if (parts.length === 0) return [...this.root.entries.keys()].sort();
    return [...this.dir(parts).entries.keys()].sort();
  }

  /** utimes(2) with a whole-second mtime: a folder's times are not modelled. */
  utimes(path: string, mtime: number): void {
    const { dir, name } = this.parentOf(path);
    const n = dir.entries.get(name);
    if (!n) return fail('ENOENT');
    if (n.kind === 'file') n.mtime = [mtime, mtime];
  }

  futimes(h: Handle, mtime: number): void {
    h.node.mtime = [mtime, mtime];
  }

  chmod(path: string, mode: number): void {
    const { dir, name } = this.parentOf(path);
    const n = dir.entries.get(name);
    if (!n) return fail('ENOENT');
    if (n.kind === 'dir') throw new Error(`model: chmod of the folder ${path} is not modelled`);
    n.mode = mode;
  }

  fchmod(h: Handle, mode: number): void {
    h.node.mode = mode;
  }

  mkdir(path: string): void {
    const { dir, name } = this.parentOf(path);
    if (dir.entries.has(name)) fail('EEXIST');
    dir.entries.set(name, { kind: 'dir', entries: new Map() });
  }

  rmdir(path: string): void {
    const { dir, name } = this.parentOf(path);
    const n = dir.entries.get(name);
    if (!n) fail('ENOENT');
    if (n!.kind !== 'dir') fail('ENOTDIR');
    // rmdir(2): POSIX allows EEXIST for a non-empty folder; Linux answers ENOTEMPTY.
    if ((n as DirNode).entries.size > 0) fail('ENOTEMPTY', 'EEXIST');
    dir.entries.delete(name);
  }

  unlink(path: string): void {
    const { dir, name } = this.parentOf(path);
    const n = dir.entries.get(name);
    if (!n) fail('ENOENT');
    // unlink(2) on Linux: EISDIR for a folder (POSIX says EPERM; the kernel decides, not the drive).
    if (n!.kind === 'dir') fail('EISDIR');
    dir.entries.delete(name);
  }

  /** rename(2), checks in the order Linux's do_renameat2 makes them. */
  rename(from: string, to: string): void {
    const a = this.parentOf(from);
    const b = this.parentOf(to);
    const src = a.dir.entries.get(a.name);
    if (!src) fail('ENOENT');
    const fp = a.parts.join('/');
    const tp = b.parts.join('/');
    if (fp === tp) return;
    // A folder cannot move below itself; a target that is an ancestor of the source is never empty.
    if (tp.startsWith(fp + '/')) fail('EINVAL');
    if (fp.startsWith(tp + '/')) fail('ENOTEMPTY', 'EEXIST');
    const dst = b.dir.entries.get(b.name);
    if (dst) {
      if (src!.kind === 'file' && dst.kind === 'dir') fail('EISDIR');
      if (src!.kind === 'dir' && dst.kind === 'file') fail('ENOTDIR');
      if (dst.kind === 'dir' && dst.entries.size > 0) fail('ENOTEMPTY', 'EEXIST');
    }
    a.dir.entries.delete(a.name);
    b.dir.entries.set(b.name, src!);
  }

  /** Paths of every file and every folder (root excluded), for the generator's choices. */
  paths(): { files: string[]; dirs: string[] } {
    const files: string[] = [];
    const dirs: string[] = [];
    const walk = (d: DirNode, p: string) => {
      for (const [k, v] of d.entries) {
        const q = p ? `${p}/${k}` : k;
        if (v.kind === 'dir') {
          dirs.push(q);
          walk(v, q);
        } else files.push(q);
      }
    };
    walk(this.root, '');
    return { files: files.sort(), dirs: dirs.sort() };
  }
}
