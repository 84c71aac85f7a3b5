// Uploads: one file with one rsync run, or many with one run (--files-from), each confirmed by
// ops/filesize and written into the cached daemon listing with the mtime (-t) and
// executability (-E) sent. Each upload is registered in flight (inflight.ts) until confirmed, so
// listings drop rsync's temp file of it.
import { mkdir as fsMkdir, rm, symlink, writeFile, stat as fsStat } from 'node:fs/promises';
import { dirname, join, resolve as resolvePath } from 'node:path';
import type { CallOptions, RemoteEntry, TransferOptions, UploadResult } from '../types.js';
import { toWholeSecond } from '../types.js';
import { RemoteError, IsADirectory, BadRequest, TransferFailed } from '../../errors.js';
import { pathParts } from '../url.js';
import { parseProgress } from './rsync.js';
import { modeOf } from './listings.js';
import { carryAttrs, push, type TransferPorts } from './push.js';
import { toWire } from './wire.js';

export type UploadItem = { localFile: string; path: string; mtimeMs?: number; mode?: number };

export class Uploads {
  constructor(private readonly p: TransferPorts) {}

  async upload(localFile: string, path: string, opts: TransferOptions = {}): Promise<RemoteEntry> {
    // rsync does not say when it starts changing the server: count it as sent from the start
    opts.onSend?.();
    const parts = pathParts(path);
    toWire(path);
    if (parts.length === 0) throw new IsADirectory('cannot upload onto the top folder', { path });
    const local = resolvePath(localFile);
    const st = await fsStat(local);
    if (!st.isFile()) throw new BadRequest('upload source is not a regular file', { path });
    const meta = await carryAttrs(local, st, opts);
    let last = -1;
    const onLine = (l: string) => {
      const n = parseProgress(l);
      if (n !== undefined && n > last) { last = n; opts.onProgress?.(n); }
    };
    const stage = await this.p.stages.make();
    const done = this.p.inflight.begin(parts.slice(0, -1).join('/'), parts[parts.length - 1]!);
    try {
      // -I: never skip by size+mtime; the temp-file-and-rename of rsync keeps readers from half files.
      // -t: the server file gets our mtime, so the entry below has it without a daemon listing.
      await push(this.p.rsync, stage, parts, local, ['-I', '-t', ...meta.flags, '--info=progress2', '--outbuf=L'], opts, onLine);
      const [e] = await this.p.sizes([path], opts);
      if (!e) throw new TransferFailed('uploaded file is not on the server', { path });
      if (e.type !== 'file') throw new IsADirectory('a folder is in the way on the server', { path });
      this.uploaded(path, e, { size: st.size, ...meta.sent });
      if (e.size > last) opts.onProgress?.(e.size);
      return e;
    } finally {
      // in flight until confirmed (see DaemonListings.source())
      done();
      await rm(stage, { recursive: true, force: true });
    }
  }

  /**
   * The mtime of a file we just uploaded with -t: the one we sent, to the second as the daemon
   * lists it, when the server has as many bytes as we sent (else another client's write came
   * between, and no mtime makes the drive check the content again); its executability the one we
   * sent with -E, else the one the server file had (rsync keeps an existing file's mode; a new
   * one gets the local file's, not executable: see carryAttrs()). It also goes into the cached
   * daemon listing, whose row for this name is the old version's.
   */
  private uploaded(path: string, e: RemoteEntry, local: { size: number; mtimeMs: number; exec?: boolean }): void {
    if (e.size === local.size) {
      e.mtimeMs = toWholeSecond(local.mtimeMs);
      const before = this.p.listings.row(path);
      const exec = local.exec ?? (before === null ? false : before?.exec);
      if (exec !== undefined) e.mode = modeOf(exec);
      this.p.listings.own(path, { name: e.name, type: 'file', size: e.size, mtimeMs: e.mtimeMs, exec });
    } else {
      this.p.listings.own(path, null);
    }
  }

  /**
   * Many uploads with one rsync run: every upload() costs a process start, a connection and the
   * daemon's auth (about 90 ms at 20 ms RTT, more than a small file's bytes). The local files
   * (cache files under names of their own) are presented under their server paths as a staging
   * tree of symlinks that rsync follows (-L); the names go literally in a NUL-separated
   * --files-from list (no wildcards, no option parsing, any byte but NUL and "/"), and missing
   * parents are created like --mkpath. A run that exits 0 confirms every file; after a
   * transient failure (connection, timeout, after rsync()'s own retries) each item gets that
   * retryable error, after any other failure (e.g. exit 23: some file refused) each item is
   * uploaded alone, so one bad file neither fails nor falsely confirms the others. Items with a
   * mode to keep go in a run of their own: -E would give the others the local files' modes.
   */
  async uploadMany(items: UploadItem[], opts: CallOptions = {}): Promise<UploadResult[]> {
    const moded = items.map((it, i) => (it.mode !== undefined ? i : -1)).filter((i) => i >= 0);
    if (moded.length === 0 || moded.length === items.length) return this.uploadBatch(items, opts);
    const plain = items.map((_, i) => i).filter((i) => items[i]!.mode === undefined);
    const [a, b] = await Promise.all([this.uploadBatch(moded.map((i) => items[i]!), opts), this.uploadBatch(plain.map((i) => items[i]!), opts)]);
    const out: UploadResult[] = new Array(items.length);
    moded.forEach((i, k) => { out[i] = a[k]!; });
    plain.forEach((i, k) => { out[i] = b[k]!; });
    return out;
  }

  private async uploadBatch(items: UploadItem[], opts: CallOptions): Promise<UploadResult[]> {
    const out: (UploadResult | undefined)[] = new Array(items.length);
    const rels: string[] = [];
    const batch: number[] = [];
    const alone: number[] = [];
    const later: number[] = [];
    const seen = new Set<string>();
    for (const [i, it] of items.entries()) {
      try {
        toWire(it.path);
        const parts = pathParts(it.path);
        if (parts.length === 0) throw new IsADirectory('cannot upload onto the top folder', { path: it.path });
        rels[i] = parts.join('/');
        // the same path twice in one run: which bytes would win is up to rsync; the later goes alone
        if (seen.has(rels[i]!)) { later.push(i); continue; }
        seen.add(rels[i]!);
        batch.push(i);
      } catch (error) {
        out[i] = { error };
      }
    }
    if (batch.length === 1) alone.push(batch.pop()!);
    if (batch.length > 0) {
      const stage = await this.p.stages.make();
      try {
        const root = join(stage, 'd');
        const listed: number[] = [];
        const locals: { size: number; mtimeMs: number; exec?: boolean }[] = [];
        for (const i of batch) {
          const link = join(root, rels[i]!);
          try {
            const st = await fsStat(resolvePath(items[i]!.localFile));
            if (!st.isFile()) throw new BadRequest('upload source is not a regular file', { path: items[i]!.path });
            locals[i] = { size: st.size, ...(await carryAttrs(resolvePath(items[i]!.localFile), st, items[i]!)).sent };
            await fsMkdir(dirname(link), { recursive: true });
            await symlink(resolvePath(items[i]!.localFile), link);
            listed.push(i);
          } catch (e) {
            // a source gone, or a path that is a file for one item and a folder for another
            if (e instanceof RemoteError) out[i] = { error: e };
            else alone.push(i);
          }
        }
        if (listed.length > 0) {
          const list = join(stage, 'list');
          await writeFile(list, listed.map((i) => rels[i]!).join('\0') + '\0', { mode: 0o600 });
          let failed: unknown;
          // in flight until confirmed (see DaemonListings.source())
          const dones = listed.map((i) => { const ps = rels[i]!.split('/'); return this.p.inflight.begin(ps.slice(0, -1).join('/'), ps[ps.length - 1]!); });
          try {
            try {
              // -I: never skip by size+mtime; -L: send the files the links point to; -t: our
              // mtimes, -E: executability (see carryAttrs()); --no-implied-dirs: missing parents
              // are made, but a parent that is a file on the server fails that one file (implied
              // dirs would replace the other client's file)
              const flags = items[listed[0]!]!.mode !== undefined ? ['-E'] : [];
              await this.p.rsync(items[listed[0]!]!.path, opts,
                (url) => ['-I', '-t', ...flags, '-L', '--no-implied-dirs', '--from0', `--files-from=${list}`, root + '/', `${url}/`], undefined);
            } catch (e) {
              failed = e;
            }
            if (failed === undefined) {
              try {
                const st = await this.p.sizes(listed.map((i) => items[i]!.path), opts);
                listed.forEach((i, k) => {
                  const e = st[k];
                  if (e && e.type === 'file') this.uploaded(items[i]!.path, e, locals[i]!);
                  out[i] = e && e.type === 'file' ? { entry: e } : { error: new TransferFailed('uploaded file is not on the server', { path: items[i]!.path }) };
                });
              } catch (error) {
                // the bytes went, the confirmation did not: the items are tried again
                for (const i of listed) out[i] = { error };
              }
            } else if (opts.signal?.aborted || (failed instanceof RemoteError && (failed.retryable || failed.code === 'CANCELLED'))) {
              for (const i of listed) out[i] = { error: failed };
            } else {
              this.p.log.debug(`maxxo: batch upload of ${listed.length} files failed, each goes alone: ${(failed as Error).message}`);
              alone.push(...listed);
            }
          } finally {
            for (const d of dones) d();
          }
        }
      } finally {
        await rm(stage, { recursive: true, force: true });
      }
    }
    const one = async (i: number) => {
      try {
        const { mtimeMs, mode } = items[i]!;
        out[i] = { entry: await this.upload(items[i]!.localFile, items[i]!.path, { ...opts, ...(mtimeMs !== undefined ? { mtimeMs } : {}), ...(mode !== undefined ? { mode } : {}) }) };
      } catch (error) {
        out[i] = { error };
      }
    };
    await Promise.all(alone.map(one));
    for (const i of later) await one(i);
    return out.map((r) => r ?? { error: new TransferFailed('not uploaded', {}) });
  }

}
