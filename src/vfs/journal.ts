// The durable write-back journal: an append-only file of JSON lines recording which closed files
// still have to reach the server (and renames/cancellations that affect them). A record is
// fdatasync'd before the operation that wrote it returns, so after a crash (kill -9) the next
// start() knows every closed file whose upload had not been confirmed. Appends are group-committed
// (one write + one fdatasync for everything queued meanwhile) and the file is compacted to the
// live state when it grows.
import { promises as fsp } from 'node:fs';
import { isUnder } from './paths.js';

export interface PendingUpload {
  /** Unique per enqueued upload; `done` refers to it. */
  uid: string;
  /** Current target path on the server. */
  path: string;
  /** Cache file id (data/<id>) holding the content. */
  id: string;
  size: number;
}

type Rec =
  | { t: 'u'; uid: string; p: string; id: string; n: number }
  | { t: 'd'; uid: string }
  | { t: 'c'; p: string }
  | { t: 'r'; f: string; to: string };

export class Journal {
  readonly pending = new Map<string, PendingUpload>();
  private fh: fsp.FileHandle | null = null;
  private queue: { line: string; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private writing: Promise<void> | null = null;
  /** Cleared synchronously when drain() finds the queue empty, so no append is ever stranded. */
  private draining = false;
  private records = 0;

  constructor(private readonly file: string, private readonly compactAfter = 1000) {}

  /** Reads what an earlier run left, compacts it, and opens for appending. */
  async open(): Promise<PendingUpload[]> {
    let text = '';
    try { text = await fsp.readFile(this.file, 'utf8'); } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    for (const line of text.split('\n')) {
      if (!line) continue;
      let rec: Rec;
      // a torn last line from a crash mid-append is skipped; everything before it is intact
      try { rec = JSON.parse(line) as Rec; } catch { continue; }
      this.apply(rec);
    }
    await this.rewrite();
    return [...this.pending.values()];
  }

  upload(p: PendingUpload): Promise<void> {
    return this.append({ t: 'u', uid: p.uid, p: p.path, id: p.id, n: p.size });
  }
  done(uid: string): Promise<void> {
    if (!this.pending.has(uid)) return Promise.resolve();
    return this.append({ t: 'd', uid });
  }
  /** Forgets pending uploads of path and of everything under it (deleted). */
  cancel(path: string): Promise<void> {
    let any = false;
    for (const p of this.pending.values()) if (p.path === path || isUnder(p.path, path)) { any = true; break; }
    if (!any) return this.durable();
    return this.append({ t: 'c', p: path });
  }
  rename(from: string, to: string): Promise<void> {
    let any = false;
    for (const p of this.pending.values()) if (p.path === from || isUnder(p.path, from)) { any = true; break; }
    if (!any) return this.durable();
    return this.append({ t: 'r', f: from, to });
  }

  /**
   * Resolves once every record appended so far is on disk. A cancel or rename with nothing
   * pending writes no record, but the caller's server change must still not overtake an earlier
   * record that is only queued: a `done` of an upload that finished just before (nobody waits for
   * it) would otherwise be lost in a crash right after the server delete/move, and the replay
   * would upload that old content again, resurrecting the name or overwriting what was moved there.
   */
  private durable(): Promise<void> {
    if (!this.draining) return Promise.resolve();
    return new Promise<void>((resolve, reject) => { this.queue.push({ line: '', resolve, reject }); });
  }

  /** Pending upload of exactly `path`, if any. */
  forPath(path: string): PendingUpload | undefined {
    for (const p of this.pending.values()) if (p.path === path) return p;
    return undefined;
  }

  async close(): Promise<void> {
    while (this.draining) await this.writing;
    if (this.fh) { await this.fh.close(); this.fh = null; }
  }

  private apply(rec: Rec): void {
    this.records++;
    switch (rec.t) {
      case 'u':
        for (const [k, p] of this.pending) if (p.path === rec.p) this.pending.delete(k);
        this.pending.set(rec.uid, { uid: rec.uid, path: rec.p, id: rec.id, size: rec.n });
        break;
      case 'd':
        this.pending.delete(rec.uid);
        break;
      case 'c':
        for (const [k, p] of this.pending) if (p.path === rec.p || isUnder(p.path, rec.p)) this.pending.delete(k);
        break;
      case 'r':
        for (const [k, p] of this.pending) {
          if (p.path === rec.to || isUnder(p.path, rec.to)) this.pending.delete(k);
        }
        for (const p of this.pending.values()) {
          if (p.path === rec.f || isUnder(p.path, rec.f)) p.path = rec.to + p.path.slice(rec.f.length);
        }
        break;
    }
  }

  private append(rec: Rec): Promise<void> {
    // state changes at once (callers see it synchronously); durability follows with the promise
    this.apply(rec);
    const line = JSON.stringify(rec) + '\n';
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ line, resolve, reject });
      if (!this.draining) {
        this.draining = true;
        this.writing = this.drainLoop();
      }
    });
  }

  /**
   * There is no await between the last queue check and clearing `draining`: an append that runs
   * after it (e.g. the continuation of a caller just resolved) starts a new drain.
   */
  private async drainLoop(): Promise<void> {
    for (;;) {
      if (this.queue.length === 0) { this.draining = false; return; }
      const batch = this.queue;
      this.queue = [];
      try {
        if (!this.fh) this.fh = await fsp.open(this.file, 'a', 0o600);
        await this.fh.write(batch.map((b) => b.line).join(''));
        await this.fh.datasync();
        if (this.records > this.compactAfter && this.records > 4 * this.pending.size) await this.rewrite();
        for (const b of batch) b.resolve();
      } catch (e) {
        for (const b of batch) b.reject(e);
      }
    }
  }

  /** Replaces the file by the live state only (atomically: temp file, fsync, rename, fsync dir). */
  private async rewrite(): Promise<void> {
    if (this.fh) { await this.fh.close(); this.fh = null; }
    const tmp = this.file + '.tmp';
    const lines = [...this.pending.values()].map((p) => JSON.stringify({ t: 'u', uid: p.uid, p: p.path, id: p.id, n: p.size }) + '\n');
    const fh = await fsp.open(tmp, 'w', 0o600);
    try {
      await fh.write(lines.join(''));
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, this.file);
    const dir = await fsp.open(this.file.slice(0, this.file.lastIndexOf('/')) || '/', 'r');
    try { await dir.sync(); } catch { /* some filesystems refuse fsync on directories */ } finally { await dir.close(); }
    this.records = this.pending.size;
    this.fh = await fsp.open(this.file, 'a', 0o600);
  }
}
