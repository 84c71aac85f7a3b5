// The two FUSE bindings a drive can mount through, behind one small face (mount.ts owns the
// lifecycle around them):
//  - libfuse3: our own addon over libfuse 3's low-level API (lowlevel.ts + ll-adapter.ts, the vfs
//    addressed by inode). Default on Linux when the addon loads.
//  - fuse-native: fuse-native 2.2.6 on libfuse 2 (native.ts + adapter.ts, path-based). macOS, or
//    Linux without the addon.
// native-notes/lowlevel.md and fuse.md explain each.
import type { VfsApi } from '../vfs/api.js';
import type { Logger } from '../log.js';
import { createOps } from './adapter.js';
import { createLowLevelHandlers, forwardInvalidations } from './ll-adapter.js';
import { LowLevelSession, lowlevelAvailable, type OpLatency } from './lowlevel.js';
import { createFuse, type FuseInstance } from './native.js';
import { MountError, unmountPath, type MountOptions } from './mount.js';
import { lazyUnmount } from '../util/mounts.js';

export type BackendName = 'libfuse3' | 'fuse-native';
export const BACKENDS: BackendName[] = ['libfuse3', 'fuse-native'];

const IS_MAC = process.platform === 'darwin';

/** The backend to use: the one asked for (an error if it cannot serve), else libfuse3 when it loads. */
export function chooseBackend(asked: BackendName | undefined, log: Logger): BackendName {
  const ll = lowlevelAvailable();
  if (asked === 'libfuse3') {
    if (!ll.ok) throw new MountError(`-o backend=libfuse3 is not available: ${ll.reason}`);
    return asked;
  }
  if (asked === 'fuse-native') return asked;
  if (asked !== undefined) throw new MountError(`unknown backend ${String(asked)} (known: ${BACKENDS.join(', ')})`);
  if (ll.ok) return 'libfuse3';
  // on Linux the missing addon costs speed and correct times: worth a line at the default level
  const line = `FUSE backend: fuse-native (libfuse 2), because ${ll.reason}`;
  if (IS_MAC) log.info(line); else log.warn(line);
  return 'fuse-native';
}

export interface MountedBackend {
  name: BackendName;
  /** What the log says was mounted (options). */
  describe: string;
  /** Unmounts: cleanly (retrying while busy, then lazily), or at once when force. */
  unmount(force: boolean): Promise<void>;
  /** FUSE requests by op: all the kernel sent, and those that reached JS (libfuse3). */
  stats?(): FuseOpStats;
}

export interface FuseOpStats {
  received: Record<string, number>;
  toJs: Record<string, number>;
  nativeAnswered: number;
  /** Of those, folder GETATTRs answered from attributes handed over with a change (libfuse3). */
  attrSlotHits?: number;
  latency?: OpLatency;
}

export interface BackendConfig {
  mnt: string;
  vfs: VfsApi;
  opts: MountOptions;
  readOnly: boolean;
  uid: number;
  gid: number;
  log: Logger;
  opBoundMs: number;
  longOpBoundMs: number;
  fsname: string;
}

const bounded = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref())]);

/** Long enough to cover a program's turn between two calls (wake-up, its own work); see native-notes/lowlevel.md "The poll reader and spinning". */
const DEFAULT_SPIN_US = 200;

export async function mountLibfuse3(c: BackendConfig): Promise<MountedBackend> {
  const { opts, log, mnt } = c;
  const toJs: Record<string, number> = {};
  const handlers = createLowLevelHandlers(c.vfs.inodes, {
    counts: toJs,
    cacheReaddir: !!opts.cacheReaddir,
    uid: c.uid, gid: c.gid, umask: opts.umask, log, opBoundMs: c.opBoundMs, longOpBoundMs: c.longOpBoundMs, debug: !!opts.debug,
  });
  const extra: string[] = [];
  // libfuse 3 has no nonempty option: it always mounts over a non-empty folder, and our own
  // check in prepareMountpoint refuses one unless -o nonempty was given
  if (opts.allowRoot && !opts.allowOther) extra.push('allow_root');
  let session: LowLevelSession;
  try {
    session = await LowLevelSession.mount(mnt, handlers, {
      fsname: c.fsname,
      subtype: 'cloudmount',
      allowOther: !!opts.allowOther,
      readOnly: c.readOnly,
      debug: !!opts.fuseDebug,
      maxWrite: opts.maxWrite ?? 1024 * 1024,
      attrTimeout: opts.attrTimeoutS ?? 1,
      entryTimeout: opts.entryTimeoutS ?? 1,
      negativeTimeout: opts.negativeTimeoutS ?? 0,
      ...(opts.writebackCache ? { writebackCache: true } : {}),
      ...(opts.readdirplus ? { readdirplus: opts.readdirplus } : {}),
      reader: opts.fuseReader ?? 'poll',
      spinUs: opts.spinUs ?? DEFAULT_SPIN_US,
      extraOptions: extra,
      initTimeoutMs: opts.mountTimeoutMs ?? 30_000,
    });
  } catch (e) {
    throw new MountError(`mount of ${mnt} (libfuse3) failed: ${(e as Error).message}`);
  }
  session.on('error', (e) => log.error(`libfuse3 request failed: ${(e as Error)?.message ?? e}`));
  const stopInvalidations = forwardInvalidations(c.vfs.inodes, session, log);
  void session.closed.then(stopInvalidations, stopInvalidations);
  const busyMs = opts.unmountBusyMs ?? 5000;
  const conn = session.conn;
  return {
    name: 'libfuse3',
    describe: `libfuse3 ${lowlevelAvailable().ok ? (lowlevelAvailable() as { libfuseVersion: string }).libfuseVersion : ''}, ` +
      `max_write ${conn.maxWrite}, read-ahead ${conn.readAheadKb ?? conn.maxReadahead / 1024} KiB, ${conn.features.join(' ')}`,
    stats() {
      const n = session.stats();
      return { received: { ...n.received }, toJs: { ...toJs }, nativeAnswered: n.nativeAnswered, attrSlotHits: n.attrSlotHits ?? 0, latency: n.latency, spins: n.spins, spinHits: n.spinHits, batches: n.batches };
    },
    async unmount(force) {
      if (force) {
        if ((await lazyUnmount(mnt)).code !== 0) throw new MountError(`cannot detach ${mnt}`);
      } else {
        await unmountPath(mnt, busyMs, log);
      }
      // the session ends when the kernel lets go (at once unless a lazy detach left users)
      await bounded(session.closed, force ? 2000 : 10_000);
    },
  };
}

export async function mountFuseNative(c: BackendConfig): Promise<MountedBackend> {
  const { opts, log, mnt } = c;
  const ops = createOps(c.vfs, { uid: c.uid, gid: c.gid, umask: opts.umask, log, opBoundMs: c.opBoundMs, longOpBoundMs: c.longOpBoundMs, debug: !!opts.debug });
  // fuse-native's timer answers ETIMEDOUT; it must only ever fire after ours answered EIO.
  const nativeMargin = 10_000;
  const timeout = {
    default: c.opBoundMs + nativeMargin,
    flush: c.longOpBoundMs + nativeMargin,
    release: c.longOpBoundMs + nativeMargin,
    fsync: c.longOpBoundMs + nativeMargin,
    fsyncdir: c.longOpBoundMs + nativeMargin,
  };
  const extra = [
    'big_writes',
    `max_write=${opts.maxWrite ?? 1024 * 1024}`,
    `negative_timeout=${opts.negativeTimeoutS ?? 0}`,
    // Programs keep files open after unlink (editors, rm of an open log): libfuse renames them
    // to .fuse_hidden* until release; the adapter makes that a server delete now (vfs keeps the
    // content for the open handles). hard_remove would hand us ops with a NULL path instead.
  ];
  // re-reads come from the page cache while the server copy is unchanged (kernel_cache overrides)
  if (opts.autoCache !== false && !opts.kernelCache) extra.push('auto_cache');
  if (c.readOnly) extra.push('ro');
  if (opts.allowNonEmpty && !IS_MAC) extra.push('nonempty');
  if (opts.allowRoot && !opts.allowOther) extra.push('allow_root');
  let forceNext = false;
  const busyMs = opts.unmountBusyMs ?? 5000;
  const fuse: FuseInstance = createFuse(mnt, ops, {
    fsname: c.fsname,
    subtype: 'cloudmount',
    entryTimeout: opts.entryTimeoutS ?? 1,
    attrTimeout: opts.attrTimeoutS ?? 1,
    maxRead: opts.maxRead ?? 1024 * 1024,
    defaultPermissions: true,
    allowOther: !!opts.allowOther,
    kernelCache: !!opts.kernelCache,
    debug: !!opts.fuseDebug,
    timeout,
  }, {
    extraOptions: extra,
    unmountFn: async (m) => {
      if (forceNext) {
        if ((await lazyUnmount(m)).code !== 0) throw new MountError(`cannot detach ${m}`);
        return;
      }
      await unmountPath(m, busyMs, log);
    },
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new MountError(`mount of ${mnt} did not come up within ${opts.mountTimeoutMs ?? 30_000} ms`)), opts.mountTimeoutMs ?? 30_000);
      fuse.mount((err) => {
        clearTimeout(t);
        if (err) reject(new MountError(`mount of ${mnt} failed: ${err.message} (options ${fuse._fuseOptions()})`));
        else resolve();
      });
    });
  } catch (e) {
    await lazyUnmount(mnt).catch(() => {});
    throw e;
  }
  return {
    name: 'fuse-native',
    describe: `fuse-native ${fuse._fuseOptions()}`,
    async unmount(force) {
      if (force) {
        forceNext = true;
        await lazyUnmount(mnt);
      }
      try {
        await new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve())));
      } catch (e) {
        // Already detached by the lazy unmount above.
        if (!force) throw e;
      }
    },
  };
}
