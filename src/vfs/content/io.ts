// Reading and changing a content object's bytes: read (from the recent in-memory segments or the
// cache file, fetching what is missing), write, truncate, and the bookkeeping of a modification.
//
// Owns: the read counters (readsFrom). Rules:
// - Content is made complete before its first write or a truncate that keeps bytes (so dirty
//   content is always a whole file), and its clean .meta index goes first (beforeModify).
// - Writes run shared, truncates exclusive, under the I/O gate (content/obj.ts); an append takes
//   its place (the current size) before any await, so two appends in flight get two places.
// - A write that reserved space past the end gives back what nobody wrote after it if it fails.
// - The policy's size limit applies as RLIMIT_FSIZE does: what fits is written, the write at the
//   limit fails with EFBIG.
import fs from 'node:fs';
import { PolicyFileTooLarge } from '../../errors.js';
import type { FileExtent } from '../api.js';
import type { Ctx } from '../context.js';
import type { AttrTable } from '../meta/attrs.js';
import type { PolicyGate } from '../writeback/policy.js';
import { isSequential } from '../ranges.js';
import type { Fetcher, ReadCursor } from './fetch.js';
import { ftruncateFd, pread, pwrite } from './fileio.js';
import { copyRecent, exclusiveIo, sharedIo, type Obj } from './obj.js';
import type { ContentStore } from './store.js';

/** Writes up to this size go into the cache file inline (see write()). */
const INLINE_WRITE_BYTES = 32 * 1024;

export class ContentIo {
  /** Where reads of cached content were served from (diagnostics: DriveStatus.counters). */
  readonly readsFrom = { memory: 0, file: 0 };

  constructor(
    private readonly ctx: Ctx,
    private readonly store: ContentStore,
    private readonly fetcher: Fetcher,
    private readonly policy: PolicyGate,
    private readonly attrs: AttrTable,
  ) {}

  private async beforeModify(o: Obj): Promise<void> {
    // a clean index entry for bytes that are about to change would serve them after a crash
    if (!o.dirty) await this.store.dropMeta(o, true);
  }

  private modified(o: Obj): void {
    o.gen++;
    o.localMtime = Date.now();
    this.attrs.contentModified(o);
    this.store.markLocal(o);
  }

  async truncate(o: Obj, size: number): Promise<void> {
    const max = size > o.size ? await this.policy.maxFileSize(o.path) : null;
    if (max !== null && size > max) throw new PolicyFileTooLarge(`the organization policy allows files of at most ${max} bytes`, { path: o.path });
    if (size > 0 && !o.complete) await this.fetcher.ensureWhole(o);
    await this.beforeModify(o);
    if (size === 0) await this.fetcher.quiesce(o);
    await exclusiveIo(o, async () => {
      await ftruncateFd(o.fd, size);
      if (size < o.size) this.store.truncateRanges(o, size); else this.store.addRange(o, o.size, size);
      o.size = size;
      this.modified(o);
    });
  }

  /** Fills buf[0..n) from position of o's content; h is the handle's read-ahead state. */
  async read(o: Obj, h: ReadCursor, buf: Buffer, length: number, position: number): Promise<number> {
    o.copyReader = true;
    const end = await this.present(o, h, length, position);
    if (end <= position) return 0;
    if (o.recent.length > 0 && copyRecent(o, buf, position, end)) { this.readsFrom.memory++; return end - position; }
    this.readsFrom.file++;
    let n = 0;
    const want = end - position;
    while (n < want) {
      const r = await pread(o.fd, buf, n, want - n, position + n);
      if (r === 0) break;
      n += r;
    }
    return n;
  }

  /**
   * read() without the copy: where in the cache file the bytes asked are, once present (for a
   * reader that takes them from the file itself: the libfuse3 binding's data thread). The
   * extent is the cache file's at this moment; a write or truncate after it is as good as one
   * that came before the read.
   */
  async extent(o: Obj, h: ReadCursor, length: number, position: number): Promise<FileExtent> {
    const end = await this.present(o, h, length, position);
    this.readsFrom.file++;
    return { fd: o.fd, offset: position, length: Math.max(0, end - position) };
  }

  /** Makes [position, position+length) present in the cache file (up to the end of o); returns its end. */
  private async present(o: Obj, h: ReadCursor, length: number, position: number): Promise<number> {
    const size = o.size;
    if (position >= size || length <= 0) return position;
    let end = position + length;
    if (end > size) end = size;
    // the kernel sends its read-ahead reads concurrently and they may arrive a little out of
    // order: reads near the front of a sequential run still count as sequential
    const seq = isSequential(position, h.nextPos);
    if (!seq) { h.window = this.ctx.opts.readAheadBytes; h.raEnd = 0; h.nextPos = end; } else if (end > h.nextPos) h.nextPos = end;
    if (!o.ranges.covers(position, end)) {
      if (this.ctx.ranged) {
        end = await this.fetcher.fillRanged(o, h, position, end, seq);
      } else {
        await this.fetcher.ensureDownloaded(o, end);
        if (o.size < end) end = Math.max(position, o.size);
      }
    } else if (seq && !o.dirty && this.ctx.ranged) {
      this.fetcher.readAhead(o, h, end);
    }
    return end;
  }

  /** Writes buf[0..length) at position (append: at the end, taken before any await); returns what was written. */
  async write(o: Obj, append: boolean, buf: Buffer, length: number, position: number): Promise<number> {
    if (!o.complete) await this.fetcher.ensureWhole(o);
    if (!o.dirty) await this.beforeModify(o);
    const max = await this.policy.maxFileSize(o.path);
    return sharedIo(o, async () => {
      // An append's place is taken now, before any await: two appends in flight get two places.
      if (append) position = o.size;
      if (max !== null && position + length > max) {
        // as with RLIMIT_FSIZE: what fits is written, the write at the limit fails with EFBIG
        if (position >= max) throw new PolicyFileTooLarge(`the organization policy allows files of at most ${max} bytes`, { path: o.path });
        length = max - position;
      }
      const reserved = position + length;
      const grow = (end: number) => {
        if (end <= o.size) return;
        this.store.addRange(o, o.size, end);
        o.size = end;
      };
      const prev = o.size;
      grow(reserved);
      let n = 0;
      let evicted = false;
      try {
        while (n < length) {
          try {
            // A few pages into our own cache file's page cache: written inline, where the
            // threadpool hop costs a small file's create ~0.1 ms on a busy machine. Bigger writes
            // go through the pool, beside each other and off the JS thread.
            n += length - n <= INLINE_WRITE_BYTES
              ? fs.writeSync(o.fd, buf, n, length - n, position + n)
              : await pwrite(o.fd, buf, n, length - n, position + n);
          } catch (err) {
            // cache disk full: clean cached content goes first; only then does the program see ENOSPC
            if ((err as NodeJS.ErrnoException).code !== 'ENOSPC' || evicted) { if (n > 0) break; throw err; }
            evicted = true;
            if ((await this.store.evictForSpace()) === 0) { if (n > 0) break; throw err; }
          }
        }
      } finally {
        // a short or failed write gives back the part of its reservation nobody wrote after it
        if (n < length && o.size === reserved && reserved > prev) {
          const end = n > 0 ? Math.max(prev, position + n) : prev;
          this.store.truncateRanges(o, end);
          o.size = end;
        }
        if (n > 0) {
          o.gen++;
          o.localMtime = Date.now();
          // every write, not only the first of dirty content: a utimens between two writes (touch
          // -d, then >>) would otherwise keep its time over the later data, here and on the server
          this.attrs.contentModified(o);
          if (!this.store.localObjs.has(o)) this.store.markLocal(o);
        }
      }
      return n;
    });
  }
}
