// A small inode-based in-memory file system over src/fuse/lowlevel.ts, for the binding's tests
// and benchmark. It keeps the kernel's lookup counts the way the real vfs will have to: an inode
// leaves the table only when it has no names left and the kernel forgot it.
import fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import {
  RENAME_EXCHANGE, RENAME_NOREPLACE,
  type Attr, type DirPlusEntry, type Entry, type Handlers, type Request, type Timespec,
} from '../../src/fuse/lowlevel.js';

const E = osConstants.errno;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const O_TRUNC = 0o1000;

export interface MemNode {
  attr: Attr;
  data: Buffer;
  children?: Map<string, number>;
  target?: string;
  xattrs: Map<string, Buffer>;
  nlookup: number;
  parent: number;
}

export interface MemfsOptions {
  /** open(): keep the page cache across opens */
  keepCache?: boolean;
  /** opendir(): let the kernel cache listings */
  cacheReaddir?: boolean;
  /** a virtual file of this many bytes at /big, served from one buffer, never stored per byte */
  bigFileBytes?: number;
  /** serve /big from this file of ours through replyFd (libfuse reads it; splice if asked) */
  bigFromFd?: { fd: number; splice: boolean; async?: { path: string } };
  /** leave readdirplus unhandled (plain readdir only) */
  noReaddirplus?: boolean;
  /** st_blksize we report */
  blksize?: number;
  entryTimeout?: number;
  negativeTimeout?: number;
  /**
   * create/mkdir/unlink hand the parent's attributes over with the answer (Request.dirAttr), as
   * the drive does; the answer waits holdMs after the ticket and the attributes were taken (a
   * slow drive: another change of the folder may arrive and finish meanwhile).
   */
  dirAttrs?: { holdMs?: number };
}

function now(): Timespec {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 };
}

export class MemFs {
  readonly nodes = new Map<number, MemNode>();
  private nextIno = 2;
  private nextFh = 1;
  /** requests that reached JS, by op */
  counts: Record<string, number> = {};
  /** sizes of READ and WRITE requests seen */
  readSizes: number[] = [];
  writeSizes: number[] = [];
  /** every setattr's changes, every create's flags/mode, every rename's flags */
  setattrs: { ino: number; changes: unknown }[] = [];
  creates: { name: string; flags: number; mode: number; umask: number }[] = [];
  renames: { name: string; newName: string; flags: number }[] = [];
  forgets = 0;
  /** lookups of "slow" that the kernel interrupted (they wait until it does) */
  interruptedLookups = 0;
  /** second replies the binding refused (must stay harmless) */
  secondRepliesRefused = 0;
  private bigBuf?: Buffer;

  constructor(private readonly o: MemfsOptions = {}) {
    const t = now();
    this.nodes.set(1, {
      attr: { ino: 1, mode: S_IFDIR | 0o755, nlink: 2, size: 0, atime: t, mtime: t, ctime: t, uid: 0, gid: 0 },
      data: Buffer.alloc(0), children: new Map(), xattrs: new Map(), nlookup: 1, parent: 1,
    });
    if (o.bigFileBytes) {
      // a 1 MiB pattern, twice: any read of up to 1 MiB is one slice of it (no copy), so 512 MiB
      // costs 2 MiB of memory
      this.bigBuf = Buffer.alloc(2 << 20);
      for (let i = 0; i < this.bigBuf.length; i++) this.bigBuf[i] = (i * 31) & 0xff;
      const ino = this.mk(1, 'big', S_IFREG | 0o444);
      this.nodes.get(ino)!.attr.size = o.bigFileBytes;
    }
  }

  resetCounters() {
    this.counts = {};
    this.readSizes = [];
    this.writeSizes = [];
    this.setattrs = [];
    this.creates = [];
    this.renames = [];
    this.forgets = 0;
  }

  /** Makes a node without the kernel knowing (as another client of the server would). */
  mk(parent: number, name: string, mode: number, content?: Buffer): number {
    const ino = this.nextIno++;
    const t = now();
    const dir = (mode & S_IFMT) === S_IFDIR;
    const node: MemNode = {
      attr: { ino, mode, nlink: dir ? 2 : 1, size: content?.length ?? 0, atime: t, mtime: t, ctime: t, uid: 0, gid: 0, blksize: this.o.blksize },
      data: content ?? Buffer.alloc(0), xattrs: new Map(), nlookup: 0, parent,
    };
    if (dir) node.children = new Map();
    this.nodes.set(ino, node);
    const p = this.nodes.get(parent)!;
    p.children!.set(name, ino);
    if (dir) p.attr.nlink = (p.attr.nlink ?? 2) + 1;
    p.attr.mtime = p.attr.ctime = t;
    return ino;
  }

  /** Path lookup inside the store, for tests that change it behind the kernel's back. */
  resolve(p: string): number | undefined {
    let ino = 1;
    for (const part of p.split('/').filter(Boolean)) {
      const n = this.nodes.get(ino)?.children?.get(part);
      if (n === undefined) return undefined;
      ino = n;
    }
    return ino;
  }

  private entry(ino: number): Entry {
    const n = this.nodes.get(ino)!;
    n.nlookup++;
    return { attr: n.attr, entryTimeout: this.o.entryTimeout };
  }

  private maybeDrop(ino: number) {
    const n = this.nodes.get(ino);
    if (n && ino !== 1 && n.nlookup <= 0 && (n.attr.nlink ?? 0) === 0) this.nodes.delete(ino);
  }

  private unlinkName(parent: number, name: string) {
    const p = this.nodes.get(parent)!;
    const ino = p.children!.get(name)!;
    const n = this.nodes.get(ino)!;
    p.children!.delete(name);
    const dir = (n.attr.mode & S_IFMT) === S_IFDIR;
    n.attr.nlink = dir ? 0 : (n.attr.nlink ?? 1) - 1;
    if (dir) p.attr.nlink = (p.attr.nlink ?? 3) - 1;
    p.attr.mtime = p.attr.ctime = n.attr.ctime = now();
    this.maybeDrop(ino);
  }

  private count(op: string) {
    this.counts[op] = (this.counts[op] ?? 0) + 1;
  }

  private dirOf(req: Request, ino = req.parent): MemNode | undefined {
    const d = this.nodes.get(ino);
    if (!d) {
      req.error(E.ENOENT);
      return undefined;
    }
    if (!d.children) {
      req.error(E.ENOTDIR);
      return undefined;
    }
    return d;
  }

  private newNode(req: Request, mode: number): number | undefined {
    const d = this.dirOf(req);
    if (!d) return undefined;
    if (d.children!.has(req.name)) {
      req.error(E.EEXIST);
      return undefined;
    }
    const ino = this.mk(req.parent, req.name, mode);
    const n = this.nodes.get(ino)!;
    n.attr.uid = req.uid;
    n.attr.gid = req.gid;
    return ino;
  }

  /** The change is made; the parent's attributes go with the answer when dirAttrs asks so. */
  private answerChange(req: Request, answer: () => void): void {
    const da = this.o.dirAttrs;
    if (!da) return answer();
    const ticket = req.dirTicket(req.parent);
    const snap = { ...this.nodes.get(req.parent)!.attr };
    const go = () => { req.dirAttr(snap, ticket); answer(); };
    if (da.holdMs) setTimeout(go, da.holdMs); else go();
  }

  handlers(): Handlers {
    const h: Handlers = {
      lookup: (req) => {
        this.count('lookup');
        // contract checks: a throwing handler answers EIO; a second reply is refused, not sent
        if (req.name === 'boom') throw new Error('handler failure on purpose');
        if (req.name === 'slow') {
          // a lookup that waits (as one going to the server may) until the caller gives up
          const t = setTimeout(() => req.noEntry(), 30_000);
          req.signal.addEventListener('abort', () => {
            clearTimeout(t);
            this.interruptedLookups++;
            req.error(E.EINTR);
          }, { once: true });
          return;
        }
        if (req.name === 'twice') {
          req.error(E.EACCES);
          if (!req.error(E.ENOENT) && !req.noEntry(5)) this.secondRepliesRefused++;
          return;
        }
        const d = this.dirOf(req);
        if (!d) return;
        const ino = d.children!.get(req.name);
        if (ino === undefined) req.noEntry(this.o.negativeTimeout);
        else req.entry(this.entry(ino));
      },
      forget: (ino, n) => {
        this.forgets++;
        const node = this.nodes.get(ino);
        if (!node) return;
        node.nlookup -= n;
        this.maybeDrop(ino);
      },
      getattr: (req) => {
        this.count('getattr');
        const n = this.nodes.get(req.ino);
        if (!n) req.error(E.ENOENT);
        else req.attr(n.attr);
      },
      setattr: (req) => {
        this.count('setattr');
        const n = this.nodes.get(req.ino);
        if (!n) return req.error(E.ENOENT);
        const c = req.changes;
        this.setattrs.push({ ino: req.ino, changes: c });
        const t = now();
        if (c.mode !== undefined) n.attr.mode = (n.attr.mode & S_IFMT) | (c.mode & 0o7777);
        if (c.uid !== undefined) n.attr.uid = c.uid;
        if (c.gid !== undefined) n.attr.gid = c.gid;
        if (c.size !== undefined) {
          const b = Buffer.alloc(c.size);
          n.data.copy(b, 0, 0, Math.min(c.size, n.data.length));
          n.data = b;
          n.attr.size = c.size;
          n.attr.mtime = t;
        }
        if (c.atime) n.attr.atime = c.atime === 'now' ? t : c.atime;
        if (c.mtime) n.attr.mtime = c.mtime === 'now' ? t : c.mtime;
        n.attr.ctime = c.ctime ?? t;
        req.attr(n.attr);
      },
      readlink: (req) => {
        this.count('readlink');
        const n = this.nodes.get(req.ino);
        if (!n || n.target === undefined) req.error(E.EINVAL);
        else req.readlink(n.target);
      },
      mkdir: (req) => {
        this.count('mkdir');
        const ino = this.newNode(req, S_IFDIR | (req.mode & 0o7777));
        if (ino !== undefined) this.answerChange(req, () => req.entry(this.entry(ino)));
      },
      mknod: (req) => {
        this.count('mknod');
        if ((req.mode & S_IFMT) !== S_IFREG) return req.error(E.EPERM);
        const ino = this.newNode(req, req.mode);
        if (ino !== undefined) req.entry(this.entry(ino));
      },
      symlink: (req) => {
        this.count('symlink');
        const ino = this.newNode(req, S_IFLNK | 0o777);
        if (ino === undefined) return;
        const n = this.nodes.get(ino)!;
        n.target = req.target;
        n.attr.size = Buffer.byteLength(req.target);
        req.entry(this.entry(ino));
      },
      link: (req) => {
        this.count('link');
        const n = this.nodes.get(req.ino);
        const d = this.nodes.get(req.newParent);
        if (!n || !d?.children) return req.error(E.ENOENT);
        if (d.children.has(req.newName)) return req.error(E.EEXIST);
        d.children.set(req.newName, req.ino);
        n.attr.nlink = (n.attr.nlink ?? 1) + 1;
        req.entry(this.entry(req.ino));
      },
      unlink: (req) => {
        this.count('unlink');
        const d = this.dirOf(req);
        if (!d) return;
        const ino = d.children!.get(req.name);
        if (ino === undefined) return req.error(E.ENOENT);
        if (this.nodes.get(ino)!.children) return req.error(E.EISDIR);
        this.unlinkName(req.parent, req.name);
        req.ok();
      },
      rmdir: (req) => {
        this.count('rmdir');
        const d = this.dirOf(req);
        if (!d) return;
        const ino = d.children!.get(req.name);
        if (ino === undefined) return req.error(E.ENOENT);
        const n = this.nodes.get(ino)!;
        if (!n.children) return req.error(E.ENOTDIR);
        if (n.children.size) return req.error(E.ENOTEMPTY);
        this.unlinkName(req.parent, req.name);
        req.ok();
      },
      rename: (req) => {
        this.count('rename');
        this.renames.push({ name: req.name, newName: req.newName, flags: req.flags });
        const from = this.nodes.get(req.parent)?.children;
        const to = this.nodes.get(req.newParent)?.children;
        if (!from || !to) return req.error(E.ENOENT);
        const ino = from.get(req.name);
        if (ino === undefined) return req.error(E.ENOENT);
        const other = to.get(req.newName);
        if (req.flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return req.error(E.EINVAL);
        if (req.flags & RENAME_EXCHANGE) {
          if (other === undefined) return req.error(E.ENOENT);
          from.set(req.name, other);
          to.set(req.newName, ino);
          return req.ok();
        }
        if (other !== undefined) {
          if (req.flags & RENAME_NOREPLACE) return req.error(E.EEXIST);
          if (other === ino) return req.ok();
          const on = this.nodes.get(other)!;
          if (on.children?.size) return req.error(E.ENOTEMPTY);
          this.unlinkName(req.newParent, req.newName);
        }
        from.delete(req.name);
        to.set(req.newName, ino);
        const n = this.nodes.get(ino)!;
        n.attr.ctime = now();
        req.ok();
      },
      open: (req) => {
        this.count('open');
        const n = this.nodes.get(req.ino);
        if (!n) return req.error(E.ENOENT);
        if (req.flags & O_TRUNC && !this.isBig(req.ino)) {
          // atomic_o_trunc: the kernel leaves O_TRUNC to us
          n.data = Buffer.alloc(0);
          n.attr.size = 0;
        }
        req.open(this.nextFh++, { keepCache: this.o.keepCache });
      },
      create: (req) => {
        this.count('create');
        this.creates.push({ name: req.name, flags: req.flags, mode: req.mode, umask: req.umask });
        const ino = this.newNode(req, S_IFREG | (req.mode & 0o7777));
        if (ino !== undefined) this.answerChange(req, () => req.create(this.entry(ino), this.nextFh++, { keepCache: this.o.keepCache }));
      },
      read: (req) => {
        this.count('read');
        this.readSizes.push(req.size);
        const n = this.nodes.get(req.ino);
        if (!n) return req.error(E.ENOENT);
        if (this.isBig(req.ino) && this.o.bigFromFd) {
          const len = Math.max(0, Math.min(n.attr.size, req.offset + req.size) - req.offset);
          const a = this.o.bigFromFd.async;
          if (a) {
            // the binding's data thread answers; our fd is closed at once (it reads its own duplicate)
            const fd = fs.openSync(a.path, 'r');
            try { return req.dataFromFdAsync(fd, req.offset, len); } finally { fs.closeSync(fd); }
          }
          return req.dataFromFd(this.o.bigFromFd.fd, req.offset, len, this.o.bigFromFd.splice);
        }
        if (this.isBig(req.ino)) {
          const end = Math.min(n.attr.size, req.offset + req.size);
          const len = Math.max(0, end - req.offset);
          const start = req.offset % (1 << 20);
          return req.bytes(this.bigBuf!.subarray(start, start + Math.min(len, 1 << 20)));
        }
        req.bytes(n.data.subarray(req.offset, req.offset + req.size));
      },
      write: (req) => {
        this.count('write');
        this.writeSizes.push(req.data.length);
        const n = this.nodes.get(req.ino);
        if (!n) return req.error(E.ENOENT);
        const end = req.offset + req.data.length;
        if (end > n.data.length) {
          const cap = Math.max(end, Math.min(n.data.length * 2, end + (64 << 20)));
          const b = Buffer.alloc(cap);
          n.data.copy(b, 0, 0, n.attr.size);
          n.data = b;
        }
        req.data.copy(n.data, req.offset);
        n.attr.size = Math.max(n.attr.size, end);
        n.attr.mtime = n.attr.ctime = now();
        req.written(req.data.length);
      },
      flush: (req) => {
        this.count('flush');
        req.ok();
      },
      release: (req) => {
        this.count('release');
        const n = this.nodes.get(req.ino);
        if (n && n.data.length > n.attr.size) n.data = Buffer.from(n.data.subarray(0, n.attr.size));
        req.ok();
      },
      fsync: (req) => {
        this.count('fsync');
        req.ok();
      },
      opendir: (req) => {
        this.count('opendir');
        req.open(this.nextFh++, { cacheReaddir: this.o.cacheReaddir, keepCache: this.o.cacheReaddir });
      },
      readdir: (req) => {
        this.count('readdir');
        const d = this.dirOf(req, req.ino);
        if (!d) return;
        const list = this.listing(req.ino, d);
        req.dir(list.slice(req.offset).map((e, i) => ({ name: e.name, ino: e.ino, mode: this.nodes.get(e.ino)!.attr.mode, off: req.offset + i + 1 })));
      },
      readdirplus: (req) => {
        this.count('readdirplus');
        const d = this.dirOf(req, req.ino);
        if (!d) return;
        const list = this.listing(req.ino, d).slice(req.offset);
        const entries: DirPlusEntry[] = list.map((e, i) => ({
          name: e.name,
          off: req.offset + i + 1,
          entry: { attr: this.nodes.get(e.ino)!.attr, entryTimeout: this.o.entryTimeout },
        }));
        const added = req.dirplus(entries);
        // the kernel now holds one lookup for each entry that went in, but . and ..
        for (let i = 0; i < added; i++) {
          if (list[i].name !== '.' && list[i].name !== '..') this.nodes.get(list[i].ino)!.nlookup++;
        }
      },
      releasedir: (req) => {
        this.count('releasedir');
        req.ok();
      },
      statfs: (req) => {
        this.count('statfs');
        req.statfs({ bsize: 4096, blocks: 1 << 20, bfree: 1 << 19, bavail: 1 << 19, files: 1 << 20, ffree: 1 << 19 });
      },
      setxattr: (req) => {
        this.count('setxattr');
        const n = this.nodes.get(req.ino);
        if (!n) return req.error(E.ENOENT);
        n.xattrs.set(req.name, Buffer.from(req.value));
        req.ok();
      },
      getxattr: (req) => {
        this.count('getxattr');
        const v = this.nodes.get(req.ino)?.xattrs.get(req.name);
        if (!v) return req.error(E.ENODATA);
        req.xattr(v);
      },
      listxattr: (req) => {
        this.count('listxattr');
        const n = this.nodes.get(req.ino);
        if (!n) return req.error(E.ENOENT);
        req.xattr(Buffer.from([...n.xattrs.keys()].map((k) => k + '\0').join('')));
      },
      removexattr: (req) => {
        this.count('removexattr');
        const n = this.nodes.get(req.ino);
        if (!n?.xattrs.delete(req.name)) return req.error(E.ENODATA);
        req.ok();
      },
    };
    if (this.o.noReaddirplus) delete h.readdirplus;
    return h;
  }

  private isBig(ino: number) {
    return this.bigBuf !== undefined && ino === 2;
  }

  private listing(ino: number, d: MemNode): { name: string; ino: number }[] {
    return [{ name: '.', ino }, { name: '..', ino: d.parent }, ...[...d.children!].map(([name, i]) => ({ name, ino: i }))];
  }
}
