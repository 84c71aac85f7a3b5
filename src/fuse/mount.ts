// Mount lifecycle: mountpoint checks (stale mounts of a crashed run are cleaned, live ones and
// non-empty folders refused), journal replay before the mount goes live, kernel options, clean
// unmount (flush, EBUSY retries, then lazy) and signal handling.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Remote, StatFs } from '../remote/types.js';
import type { DriveStatus, VfsApi, VfsOptions } from '../vfs/api.js';
import { Vfs, defaultVfsOptions } from '../vfs/vfs.js';
import type { Logger } from '../log.js';
import { chooseBackend, mountFuseNative, mountLibfuse3, type BackendConfig, type BackendName, type MountedBackend } from './backends.js';
import { exitWhenDrained } from '../util/exit.js';
import { describeHolders, mountHolders } from '../util/holders.js';
import { cleanUnmount, findMountAsync, isMountedAsync, lazyUnmount } from '../util/mounts.js';
import { sleep } from '../util/sleep.js';

const IS_MAC = process.platform === 'darwin';

export interface MountOptions extends Partial<VfsOptions> {
  accountId: string;
  /** The caller's own login check (a statfs and when it was asked): no second one is made. */
  checkedLogin?: { statfs: StatFs; at: number };
  /** allow_other: other users may use the mount (root, or user_allow_other in /etc/fuse.conf). */
  allowOther?: boolean;
  /** Log every FUSE op (at info level). */
  debug?: boolean;
  /** libfuse's own -o debug (very verbose, to stderr). */
  fuseDebug?: boolean;
  /** Kernel dentry cache, seconds (default 1). */
  entryTimeoutS?: number;
  /** Kernel attribute cache, seconds (default 1). */
  attrTimeoutS?: number;
  /**
   * libfuse3: opendir lets the kernel cache the listing, kept across opens while the vfs's
   * listing of that folder is the one it served last (fresh, unchanged). Default off: a listing
   * served from the kernel's cache carries no attributes, so with short entry/attr timeouts ls -l
   * pays one lookup per name where readdirplus answered all at once.
   */
  cacheReaddir?: boolean;
  /**
   * libfuse3: the kernel's write-back cache (FUSE_CAP_WRITEBACK_CACHE): writes land in the page
   * cache and reach us in big batches at close/fsync or under memory pressure. Off by default;
   * measured in native-notes/lowlevel.md.
   */
  writebackCache?: boolean;
  /** libfuse3: readdirplus always (default), auto (the kernel decides per folder) or off. */
  readdirplus?: 'always' | 'auto' | 'off';
  /** libfuse3: the JS thread itself (poll, default) or reader threads read requests (native-notes/lowlevel.md, "The poll reader and spinning"). */
  fuseReader?: 'threads' | 'poll';
  /** libfuse3: microseconds the JS thread polls for the next request before it sleeps (default 200). */
  spinUs?: number;
  /** Kernel cache of "no such file", seconds (default 0: the vfs keeps its own negative cache). */
  negativeTimeoutS?: number;
  /** Keep page cache across opens always (only safe when nobody else changes the files). */
  kernelCache?: boolean;
  /**
   * Keep the kernel page cache across opens while the file's size and mtime (our getattr, which
   * follows the server's copy) are unchanged; libfuse drops it at the next open otherwise
   * (`auto_cache`). Default true; see native-notes/fuse.md.
   */
  autoCache?: boolean;
  /** Permission bits taken away from every file and folder (-o umask). */
  umask?: number;
  /** allow_root: root may use the mount too (user_allow_other in /etc/fuse.conf unless root). */
  allowRoot?: boolean;
  /** Mount over a non-empty folder (hides its content while mounted). */
  allowNonEmpty?: boolean;
  /** Create the mountpoint folder when missing. */
  createMountpoint?: boolean;
  /** Largest write the kernel sends (libfuse 2 caps it at 128 KiB). */
  maxWrite?: number;
  maxRead?: number;
  /** Added to opTimeoutMs for the adapter's own EIO bound. */
  opMarginMs?: number;
  /** Bound for flush/release/fsync, which wait for uploads. */
  longOpTimeoutMs?: number;
  /** How long unmount retries while the mount is busy before it detaches lazily. */
  unmountBusyMs?: number;
  /** Bound for the mount to come up. */
  mountTimeoutMs?: number;
  /** FUSE binding (default: libfuse3 on Linux when the cmfuse3 addon loads, else fuse-native). */
  backend?: BackendName;
}

export interface MountedDrive {
  mountpoint: string;
  vfs: VfsApi;
  /** The FUSE binding serving the mount. */
  backend: BackendName;
  /** Waits until every pending upload, rename and delete reached the server. */
  flush(): Promise<void>;
  status(): DriveStatus;
  /** Flush, unmount (retrying while busy, then lazily), close. force: detach now, keep the journal. */
  unmount(opts?: { force?: boolean }): Promise<void>;
  /** Settles once the drive is unmounted and closed, whoever unmounted it. */
  readonly closed: Promise<void>;
}

export class MountError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MountError';
  }
}

/** Clean unmount, retried while the mount is busy; lazy after busyMs. */
export async function unmountPath(mnt: string, busyMs: number, log?: Logger): Promise<void> {
  const deadline = Date.now() + busyMs;
  let told = false;
  for (;;) {
    const r = await cleanUnmount(mnt);
    if (r.code === 0) return;
    if (/not mounted|not found in|no mount point|not currently mounted|invalid argument/i.test(r.stderr) && !(await isMountedAsync(mnt))) return;
    if (/busy/i.test(r.stderr) && Date.now() < deadline) {
      if (!told) {
        told = true;
        const who = describeHolders(await mountHolders(mnt));
        log?.warn(`${mnt} is busy${who.length ? ` (${who.join('; ')})` : ''}; waiting up to ${Math.round(busyMs / 1000)} s, ` +
          'then detaching: what programs wrote to files they keep open is saved, their later calls fail');
      }
      await sleep(200);
      continue;
    }
    log?.warn(`unmount ${mnt}: ${r.stderr.trim() || 'failed'}; detaching lazily`);
    if ((await lazyUnmount(mnt)).code === 0) return;
    throw new MountError(`cannot unmount ${mnt}: ${r.stderr.trim()}`);
  }
}

/** A stat that cannot hang the caller on a hung mount (the libuv thread stays stuck, we don't). */
async function statBounded(p: string, ms = 5000): Promise<fs.Stats> {
  return boundedFs(fsp.stat(p), ms, 'stat');
}

/** A filesystem call on a mount that may hang (a hung FUSE daemon): ETIMEDOUT after ms. */
async function boundedFs<T>(call: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`${what} timed out`), { code: 'ETIMEDOUT' })), ms);
  });
  try {
    return await Promise.race([call, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const HUNG_HELP = (mnt: string) =>
  `${mnt} does not answer: a hung FUSE mount. Recover with: ` +
  `mount -t fusectl none /sys/fs/fuse/connections (once); echo 1 > /sys/fs/fuse/connections/N/abort ` +
  `(N = the mount's device minor, see "mountpoint -d ${mnt}"); fusermount -uz ${mnt}`;

/** Resolves the mountpoint without touching the mount itself (it may be dead). */
async function resolveMountpoint(mountpoint: string): Promise<string> {
  const abs = path.resolve(mountpoint);
  const parent = path.dirname(abs);
  try {
    return path.join(await fsp.realpath(parent), path.basename(abs));
  } catch {
    return abs;
  }
}

async function prepareMountpoint(mnt: string, opts: MountOptions, log: Logger): Promise<void> {
  let st: fs.Stats | undefined;
  let live: Awaited<ReturnType<typeof findMountAsync>>;
  try {
    st = await statBounded(mnt);
    live = await findMountAsync(mnt);
    // For a moment after its process died (kill -9, then a mount again at once) the kernel may
    // still answer a stat of a dead mount's root from its attribute cache; statfs always asks
    // the daemon, so a dead one answers ENOTCONN and is cleaned below instead of "already mounted".
    if (live) await boundedFs(fsp.statfs(mnt), 5000, 'statfs');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') {
      // A FUSE mount whose process is gone: what a crash or kill -9 leaves behind.
      const entry = live ?? await findMountAsync(mnt);
      log.warn(`${mnt}: stale mount of a crashed run${entry ? ` (${entry.source})` : ''}; cleaning it`);
      if ((await lazyUnmount(mnt)).code !== 0) throw new MountError(`${mnt} is a dead FUSE mount and "fusermount -uz ${mnt}" failed`);
      st = await statBounded(mnt).catch(() => undefined);
      // (another mount may lie under the one cleaned)
      live = await findMountAsync(mnt);
    } else if (code === 'ETIMEDOUT') {
      throw new MountError(HUNG_HELP(mnt));
    } else if (code === 'ENOENT') {
      if (!opts.createMountpoint) throw new MountError(`mountpoint ${mnt} does not exist`);
      await fsp.mkdir(mnt, { recursive: true });
      st = await fsp.stat(mnt);
    } else {
      throw new MountError(`mountpoint ${mnt}: ${(e as Error).message}`);
    }
  }
  if (!st) throw new MountError(`mountpoint ${mnt} is not usable after cleaning a stale mount`);
  if (live) throw new MountError(`${mnt} is already mounted (${live.fstype} ${live.source}); unmount it first`);
  if (!st.isDirectory()) throw new MountError(`mountpoint ${mnt} is not a folder`);
  if (!opts.allowNonEmpty) {
    const names = await fsp.readdir(mnt);
    if (names.length) throw new MountError(`mountpoint ${mnt} is not empty (use the nonempty option to mount over it)`);
  }
  if ((opts.allowOther || opts.allowRoot) && process.getuid?.() !== 0) {
    const conf = await fsp.readFile('/etc/fuse.conf', 'utf8').catch(() => '');
    if (!/^\s*user_allow_other\s*$/m.test(conf)) {
      throw new MountError(`${opts.allowOther ? 'allow_other' : 'allow_root'} needs "user_allow_other" in /etc/fuse.conf (or mounting as root)`);
    }
  }
}

/** -o option value: commas and whitespace would split the option string. */
function optValue(s: string): string {
  return s.replace(/[,\s\\]/g, '_');
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Mounts `remote` at `mountpoint`. Once this resolves the drive owns the remote (unmount closes
 * it); when it throws, the caller still owns it. Errors are MountError with a message for people.
 */
export async function mountDrive(remote: Remote, mountpoint: string, opts: MountOptions): Promise<MountedDrive> {
  if (!opts.accountId) throw new MountError('accountId is required');
  const vopts: VfsOptions = { ...defaultVfsOptions(opts.accountId), ...definedOnly(opts) } as VfsOptions;
  const log = vopts.log;
  const mnt = await resolveMountpoint(mountpoint);
  await prepareMountpoint(mnt, opts, log);

  // One cheap authenticated call, so a wrong password or an unreachable server is a clear error
  // here instead of EACCES/EIO on the first ls.
  let first = opts.checkedLogin;
  try {
    const at = Date.now();
    first ??= { statfs: await remote.statfs(), at };
  } catch (e) {
    const code = (e as { code?: string }).code ?? '';
    if (/AUTH_FAILED|UNAUTHORIZED|NO_PERMISSION|FORBIDDEN/.test(code)) throw new MountError(`login to the ${remote.kind} account failed (${code}): check user and password`);
    throw new MountError(`the ${remote.kind} service is not usable: ${(e as Error).message}`);
  }

  const core = new Vfs(remote, vopts);
  core.primeStatfs(first.statfs, first.at);
  const vfs: VfsApi = core;
  // Journal replay first: uploads a crashed run left are queued before any program sees the drive.
  try {
    await vfs.start();
  } catch (e) {
    await vfs.close({ force: true }).catch(() => {});
    throw new MountError(`cannot start the drive (cache ${vopts.cacheDir}): ${(e as Error).message}`);
  }

  const opBoundMs = vopts.opTimeoutMs + (opts.opMarginMs ?? 5000);
  const longOpBoundMs = opts.longOpTimeoutMs ?? Math.max(10 * 60_000, 10 * vopts.opTimeoutMs);
  let backend: MountedBackend;
  try {
    const name = chooseBackend(opts.backend, log);
    const cfg: BackendConfig = {
      mnt, vfs, opts, readOnly: vopts.readOnly, uid: vopts.uid, gid: vopts.gid, log, opBoundMs, longOpBoundMs,
      fsname: `cloudmount:${optValue(opts.accountId)}`,
    };
    backend = name === 'libfuse3' ? await mountLibfuse3(cfg) : await mountFuseNative(cfg);
  } catch (e) {
    await lazyUnmount(mnt).catch(() => {});
    await vfs.close({ force: true }).catch(() => {});
    throw e;
  }
  log.info(`mounted ${mnt} (${backend.describe})`);
  let forceNext = false;

  let state: 'mounted' | 'unmounting' | 'closed' = 'mounted';
  let closing: Promise<void> | undefined;
  let flushAbort: AbortController | undefined;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));


  // Someone ran fusermount -u / umount: the drive still has to deliver pending uploads.
  const watch = IS_MAC ? undefined : setInterval(() => {
    if (state !== 'mounted') return;
    void isMountedAsync(mnt).then((still) => {
      if (still || state !== 'mounted') return;
      state = 'unmounting';
      log.warn(`${mnt} was unmounted from outside; delivering pending changes and closing`);
      closing = vfs.close().catch((e) => log.error(`close after external unmount: ${(e as Error).message}`))
        .finally(() => {
          state = 'closed';
          resolveClosed();
        });
    });
  }, 2000);
  watch?.unref();

  async function unmount(o: { force?: boolean } = {}): Promise<void> {
    if (o.force) {
      forceNext = true;
      flushAbort?.abort();
      if (state === 'closed') return;
      state = 'unmounting';
      if (watch) clearInterval(watch);
      await backend.unmount(true).catch((e) => log.warn(`detaching ${mnt}: ${(e as Error).message}`));
      await vfs.close({ force: true }).catch((e) => log.error(`force close: ${(e as Error).message}`));
      state = 'closed';
      resolveClosed();
      return;
    }
    if (closing) return closing;
    state = 'unmounting';
    closing = (async () => {
      flushAbort = new AbortController();
      // Tell whoever waits what they wait for (and why an unmount can take long).
      const progress = setInterval(() => {
        const st = vfs.status();
        log.warn(`unmount of ${mnt}: waiting for ${st.pending} pending change(s), ${st.pendingBytes} bytes, to reach the server` +
          (st.failures.length ? ` (${st.failures.length} failed: ${st.failures.slice(-1)[0]!.error})` : ''));
      }, 10_000);
      progress.unref();
      try {
        // bounded by each upload's retry budget: what cannot reach the server stays in the journal
        const res = await vfs.flushAll({ signal: flushAbort.signal });
        if (res.failed.length > 0) {
          log.error(`unmount of ${mnt}: ${res.failed.length} upload(s) could not reach the server ` +
            `(${res.failed.slice(-1)[0]!.path}: ${res.failed.slice(-1)[0]!.error}); they stay in the journal ` +
            'and are delivered at the next mount of this account');
        }
      } catch (e) {
        if (forceNext) return;
        log.warn(`flush before unmount: ${(e as Error).message}`);
      } finally {
        clearInterval(progress);
      }
      const t0 = Date.now();
      if (forceNext) return;
      if (watch) clearInterval(watch);
      await backend.unmount(false);
      if (Date.now() - t0 > 3000) log.warn(`unmount of ${mnt} took ${Date.now() - t0} ms (busy)`);
      if (forceNext) return;
      await vfs.close();
      state = 'closed';
      resolveClosed();
    })();
    return closing;
  }

  return {
    mountpoint: mnt,
    vfs,
    backend: backend.name,
    flush: async () => { await vfs.flushAll(); },
    status: () => {
      const st = vfs.status();
      if (backend.stats && state === 'mounted') {
        try { st.fuse = backend.stats(); } catch { /* session gone */ }
      }
      return st;
    },
    unmount,
    closed,
  };
}

/**
 * SIGINT/SIGTERM: flush, unmount cleanly, exit 0. A second signal while that runs: cut loose
 * (lazy unmount, journal kept for the next mount) and exit 1. Returns the uninstaller.
 */
export function installSignalHandlers(
  drive: MountedDrive,
  o: { log?: Logger; exit?: (code: number) => void } = {},
): () => void {
  const exit = o.exit ?? ((code: number) => { void exitWhenDrained(code); });
  let count = 0;
  const handler = (sig: NodeJS.Signals) => {
    count++;
    if (count === 1) {
      o.log?.info(`${sig}: flushing and unmounting ${drive.mountpoint} (again to force)`);
      drive.unmount().then(
        () => exit(0),
        (e) => {
          o.log?.error(`unmount ${drive.mountpoint}: ${(e as Error).message}`);
          drive.unmount({ force: true }).finally(() => exit(1));
        },
      );
    } else if (count === 2) {
      o.log?.warn(`${sig} again: detaching ${drive.mountpoint} now; pending changes stay in the journal`);
      drive.unmount({ force: true }).finally(() => exit(1));
    }
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}
