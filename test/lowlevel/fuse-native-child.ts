// The reference for test/lowlevel/bench.ts: a do-nothing fuse-native (libfuse 2) file system with
// one read-only file of argv[3] bytes served from a 1 MiB pattern in memory. Prints "ready", and
// unmounts when stdin closes.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const Fuse = require('fuse-native');
const [mnt, sizeArg] = process.argv.slice(2);
const size = Number(sizeArg);
const pattern = Buffer.alloc(1 << 20);
for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 31) & 0xff;
const t = new Date();
const stat = (mode: number, sz: number) => ({ mtime: t, atime: t, ctime: t, nlink: 1, size: sz, mode, uid: 0, gid: 0 });

// files made through the mount (the create benchmark): name -> size, nothing stored
const made = new Map<string, number>();
const ops = {
  readdir: (p: string, cb: (e: number, n?: string[]) => void) => cb(0, p === '/' ? ['big', ...[...made.keys()].map((k) => k.slice(1))] : []),
  getattr: (p: string, cb: (e: number, s?: unknown) => void) => {
    if (p === '/') return cb(0, stat(0o40755, 0));
    if (p === '/big') return cb(0, stat(0o100444, size));
    if (made.has(p)) return cb(0, stat(0o100644, made.get(p)!));
    cb(Fuse.ENOENT);
  },
  create: (p: string, _mode: number, cb: (e: number, fd?: number) => void) => {
    made.set(p, 0);
    cb(0, 2);
  },
  write: (p: string, _fd: number, _buf: Buffer, len: number, pos: number, cb: (n: number) => void) => {
    made.set(p, Math.max(made.get(p) ?? 0, pos + len));
    cb(len);
  },
  truncate: (p: string, sz: number, cb: (e: number) => void) => {
    made.set(p, sz);
    cb(0);
  },
  flush: (_p: string, _fd: number, cb: (e: number) => void) => cb(0),
  open: (_p: string, _f: number, cb: (e: number, fd: number) => void) => cb(0, 1),
  release: (_p: string, _fd: number, cb: (e: number) => void) => cb(0),
  read: (_p: string, _fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) => {
    const end = Math.min(size, pos + len);
    let done = 0;
    while (pos + done < end) {
      const off = (pos + done) % pattern.length;
      done += pattern.copy(buf, done, off, Math.min(pattern.length, off + end - pos - done));
    }
    cb(done);
  },
};
const fuse = new Fuse(mnt, ops, { force: true, mkdir: false });
fuse.mount((err: Error | null) => {
  if (err) {
    process.stderr.write(`mount: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write('ready\n');
});
process.stdin.resume();
process.stdin.on('end', () => fuse.unmount(() => process.exit(0)));
