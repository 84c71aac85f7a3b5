// A Remote seen from outside: one log line per transfer and namespace change (-v: path, size,
// time), upload byte counters that move within a file (unmount progress), and the link state
// (retrying / offline) for `status`. Pure decoration: every call goes to the wrapped remote as is.
import { stat } from 'node:fs/promises';
import { isRemoteError } from '../errors.js';
import type { Logger } from '../log.js';
import type { RangeSink, Remote, RemoteActivity, TransferOptions } from './types.js';

export function humanSize(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return i ? `${v.toFixed(1)} ${u[i]}` : `${v} B`;
}

function took(ms: number, bytes?: number): string {
  const t = ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
  if (bytes === undefined || ms < 50 || bytes < 64 * 1024) return t;
  return `${t}, ${humanSize(Math.round(bytes / (ms / 1000)))}/s`;
}

const sizeOf = (f: string) => stat(f).then((s) => s.size, () => 0);

export function observeRemote(inner: Remote, log: Logger): Remote {
  let sentBytes = 0;
  const inFlight = new Map<number, number>();
  let nextId = 0;
  let state: { failed: boolean; sinceMs: number; error?: string } = { failed: false, sinceMs: Date.now() };
  let offlineSince: number | undefined;

  const ok = () => { if (state.failed) state = { failed: false, sinceMs: Date.now() }; };
  const failed = (e: unknown) => {
    // a refusal (no space, bad name) is no link trouble; only what will be retried is
    if (!isRemoteError(e) || !e.retryable) return;
    if (!state.failed) state = { failed: true, sinceMs: Date.now(), error: `${e.code}: ${e.message}` };
    else state.error = `${e.code}: ${e.message}`;
  };

  /** Runs one call with its log line (info on success; a failure is logged by whoever handles it, at debug here). */
  async function timed<T>(what: string, bytes: () => number | undefined, call: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    try {
      const r = await call();
      ok();
      const b = bytes();
      log.info(`${what}${b !== undefined ? ` ${humanSize(b)}` : ''} in ${took(Date.now() - t0, b)}`);
      return r;
    } catch (e) {
      failed(e);
      log.debug(`${what} failed after ${took(Date.now() - t0)}: ${isRemoteError(e) ? `${e.code}: ${e.message}` : (e as Error)?.message ?? e}`);
      throw e;
    }
  }

  const wrapped: Partial<Remote> = {
    async upload(localFile: string, path: string, opts: TransferOptions = {}) {
      const id = nextId++;
      let sent = 0;
      inFlight.set(id, 0);
      const onProgress = (n: number) => {
        if (n > sent) { sentBytes += n - sent; sent = n; inFlight.set(id, n); }
        opts.onProgress?.(n);
      };
      let size: number | undefined;
      try {
        const e = await timed(`upload ${path}`, () => size, async () => {
          const r = await inner.upload(localFile, path, { ...opts, onProgress });
          size = r.size;
          return r;
        });
        if (e.size > sent) sentBytes += e.size - sent;
        return e;
      } finally {
        inFlight.delete(id);
      }
    },
    ...(inner.batchUpload ? { batchUpload: {
      async uploadMany(items: { localFile: string; path: string }[], opts = {}) {
        const sizes = await Promise.all(items.map((i) => sizeOf(i.localFile)));
        const total = sizes.reduce((a, b) => a + b, 0);
        const res = await timed(items.length === 1 ? `upload ${items[0]!.path}` : `upload of ${items.length} files (${items.slice(0, 3).map((i) => i.path).join(', ')}${items.length > 3 ? ', ...' : ''})`,
          () => total, () => inner.batchUpload!.uploadMany(items, opts));
        res.forEach((r, i) => {
          if (r.entry) { sentBytes += sizes[i]!; if (items.length > 1) log.info(`upload ${items[i]!.path} ${humanSize(r.entry.size)} (in that batch)`); }
          else failed(r.error);
        });
        return res;
      },
    } } : {}),
    download(path: string, localFile: string, opts: TransferOptions = {}) {
      let got = 0;
      const onProgress = (n: number) => { got = n; opts.onProgress?.(n); };
      return timed(`download ${path}`, () => got, () => inner.download(path, localFile, { ...opts, onProgress }));
    },
    ...(inner.downloadMany ? {
      async downloadMany(items: { path: string; localFile: string }[], opts: TransferOptions = {}) {
        const byPath = new Map(items.map((i) => [i.path, i.localFile]));
        let sizes: number[] = [];
        const done = await timed(items.length === 1 ? `download ${items[0]!.path}` : `download of ${items.length} files (${items.slice(0, 3).map((i) => i.path).join(', ')}${items.length > 3 ? ', ...' : ''})`,
          () => sizes.reduce((a, b) => a + b, 0), async () => {
            const r = await inner.downloadMany!(items, opts);
            sizes = await Promise.all(r.map((p) => sizeOf(byPath.get(p)!)));
            return r;
          });
        if (items.length > 1) done.forEach((p, i) => log.info(`download ${p} ${humanSize(sizes[i]!)} (in that batch)`));
        return done;
      },
    } : {}),
    ...(inner.ranged ? { ranged: {
      readTo(path: string, offset: number, length: number, sink: RangeSink, opts = {}) {
        // Ranged remotes download by ranges: the first range of a file is its download at -v
        // (a small file is fetched whole with it), each later range is a -vv line.
        const t0 = Date.now();
        return inner.ranged!.readTo(path, offset, length, sink, opts).then((r) => {
          ok();
          (offset === 0 ? log.info : log.debug)(`${offset === 0 ? 'download' : 'read'} ${path} ${offset === 0 ? '' : `at ${offset} `}${humanSize(r.bytes)}${r.bytes < length ? ' (to the end)' : ''} in ${took(Date.now() - t0, r.bytes)}`);
          return r;
        }, (e) => { failed(e); throw e; });
      },
      ...(inner.ranged.recycle ? { recycle: (chunks: readonly Buffer[]) => inner.ranged!.recycle!(chunks) } : {}),
    } } : {}),
    mkdir(path: string, opts = {}) {
      return timed(`mkdir ${path}`, () => undefined, () => inner.mkdir(path, opts));
    },
    ...(inner.batchMkdir ? { batchMkdir: {
      check: (path: string) => inner.batchMkdir!.check(path),
      mkdirMany(paths: string[], opts = {}) {
        return timed(paths.length === 1 ? `mkdir ${paths[0]}` : `mkdir of ${paths.length} folders (${paths.slice(0, 3).join(', ')}${paths.length > 3 ? ', ...' : ''})`,
          () => undefined, () => inner.batchMkdir!.mkdirMany(paths, opts));
      },
    } } : {}),
    move(from: string, to: string, opts = {}) {
      return timed(`rename ${from} -> ${to}`, () => undefined, () => inner.move(from, to, opts));
    },
    ...(inner.removeBatchMax ? { removeBatchMax: inner.removeBatchMax } : {}),
    ...(inner.checkRemove ? { checkRemove: (path: string) => inner.checkRemove!(path) } : {}),
    ...(inner.moveReplaces ? { moveReplaces: true } : {}),
    ...(inner.checkMove ? { checkMove: (from: string, to: string) => inner.checkMove!(from, to) } : {}),
    remove(paths: string[], opts = {}) {
      return timed(`delete ${paths.length === 1 ? paths[0] : `${paths.length} items (${paths.slice(0, 3).join(', ')}${paths.length > 3 ? ', ...' : ''})`}`,
        () => undefined, () => inner.remove(paths, opts));
    },
    activity(): RemoteActivity {
      let sending = 0;
      for (const n of inFlight.values()) sending += n;
      // the wrapped client knows no time for it: the first look at it is close enough (polled each second)
      if (inner.offline) offlineSince ??= Date.now();
      else offlineSince = undefined;
      return {
        state: offlineSince !== undefined ? 'offline' : state.failed ? 'retrying' : 'ok',
        sinceMs: offlineSince ?? state.sinceMs,
        ...(state.error ? { error: state.error } : {}),
        sentBytes, sendingBytes: sending,
      };
    },
  };

  return new Proxy(inner, {
    get(target, prop) {
      if (typeof prop === 'string' && Object.prototype.hasOwnProperty.call(wrapped, prop)) return (wrapped as Record<string, unknown>)[prop];
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}
