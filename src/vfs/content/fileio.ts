// Promise wrappers of the fd calls the content cache makes (callback fs: no FileHandle objects,
// one threadpool job each).
import fs from 'node:fs';

export function pread(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

export function pwrite(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.write(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/**
 * The first size bytes of fd, read inline (a few pages of our own cache file: cheaper than a
 * threadpool hop). Fewer when the file is shorter: the caller decides what that means.
 */
export function readStartSync(fd: number, size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  let n = 0;
  while (n < size) {
    const r = fs.readSync(fd, buf, n, size - n, n);
    if (r === 0) break;
    n += r;
  }
  return n === size ? buf : buf.subarray(0, n);
}

function pwritev(fd: number, bufs: Buffer[], pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.writev(fd, bufs, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/** All of bufs at pos (writev may write less than asked). */
export async function pwritevAll(fd: number, bufs: Buffer[], pos: number): Promise<void> {
  let total = 0;
  for (const b of bufs) total += b.length;
  let done = await pwritev(fd, bufs, pos);
  while (done < total) {
    let skip = done;
    const rest: Buffer[] = [];
    for (const b of bufs) {
      if (skip >= b.length) { skip -= b.length; continue; }
      rest.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    done += await pwritev(fd, rest, pos + done);
  }
}

export function ftruncateFd(fd: number, size: number): Promise<void> {
  return new Promise<void>((r, j) => fs.ftruncate(fd, size, (err) => (err ? j(err) : r())));
}

export function fdatasyncFd(fd: number): Promise<void> {
  return new Promise<void>((r, j) => fs.fdatasync(fd, (err) => (err ? j(err) : r())));
}

export function fstatFd(fd: number): Promise<fs.Stats> {
  return new Promise<fs.Stats>((r, j) => fs.fstat(fd, (err, st) => (err ? j(err) : r(st))));
}

/** fresh: a file that must not exist yet (a new cache file name). */
export function openRw(file: string, fresh = false): Promise<number> {
  const flags = fs.constants.O_RDWR | fs.constants.O_CREAT | (fresh ? fs.constants.O_EXCL : 0);
  return new Promise<number>((resolve, reject) => fs.open(file, flags, 0o600, (err, fd) => (err ? reject(err) : resolve(fd))));
}
