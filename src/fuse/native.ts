// The one place that touches fuse-native: loads it, and subclasses it where 2.2.6 gets things
// wrong or does not expose what we need (see native-notes/fuse.md).
import { createRequire } from 'node:module';
import path from 'node:path';
import { errno } from './errno.js';

const require = createRequire(import.meta.url);

/** The slice of fuse-native's class we use (it ships no types). */
export interface FuseInstance {
  mnt: string;
  opts: Record<string, unknown>;
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
  _fuseOptions(): string;
}

interface FuseClass {
  new (mnt: string, ops: Record<string, unknown>, opts: Record<string, unknown>): FuseInstance;
}

const Fuse = require('fuse-native') as FuseClass & Record<string, unknown>;
const binding = require('node-gyp-build')(path.dirname(require.resolve('fuse-native/package.json'))) as {
  fuse_native_unmount(mnt: string, thread: Buffer): void;
};

export interface NativeOptions {
  /** Extra -o options fuse-native has no switch for (big_writes, max_write=..., negative_timeout=...). */
  extraOptions: string[];
  /** Replaces the fusermount -uz that fuse-native runs on close: ours retries EBUSY first. */
  unmountFn: (mnt: string) => Promise<void>;
}

type Signal = (...args: unknown[]) => void;
type Ops = Record<string, ((...args: any[]) => void) | undefined>;

/** Subclass of fuse-native's Fuse with our fixes. */
export function createFuse(mnt: string, ops: Ops, opts: Record<string, unknown>, native: NativeOptions): FuseInstance {
  const Base = Fuse as unknown as new (...a: unknown[]) => Record<string, any>;
  class CloudFuse extends Base {
    _fuseOptions(): string {
      const base = super._fuseOptions() as string;
      const extra = native.extraOptions.filter(Boolean);
      if (!extra.length) return base;
      return base ? `${base},${extra.join(',')}` : `-o${extra.join(',')}`;
    }

    // 2.2.6 routes fgetattr to ops.getattr and drops the handle.
    _op_fgetattr(signal: Signal, p: string, fd: number) {
      const self = this as Record<string, any>;
      if (!ops.fgetattr) return self._op_getattr(signal, p);
      ops.fgetattr(p, fd, (err: number, stat: unknown) => {
        if (err) return signal(err);
        return signal(0, getStatArray(stat));
      });
    }

    // The C side passes (path, fh, flags); 2.2.6's JS reads the handle as the flags.
    _op_opendir(signal: Signal, p: string, _fh: number, flags: number) {
      ops.opendir!(p, flags, (err: number, fh: number) => signal(err, fh));
    }

    // 2.2.6 copies a value larger than the kernel's buffer (silently truncated) instead of ERANGE.
    _op_getxattr(signal: Signal, p: string, name: string, valueBuf: Buffer, position: number) {
      ops.getxattr!(p, name, position, (err: number, value?: Buffer) => {
        if (err) return signal(err, valueBuf.buffer);
        if (!value) return signal(-(process.platform === 'darwin' ? 93 : 61), valueBuf.buffer);
        if (valueBuf.length === 0) return signal(value.length, valueBuf.buffer);
        if (value.length > valueBuf.length) return signal(-errno.ERANGE, valueBuf.buffer);
        value.copy(valueBuf);
        return signal(value.length, valueBuf.buffer);
      });
    }

    // fuse-native's close runs `fusermount -uz` (always lazy); ours tries a clean unmount first.
    _close(cb: (err: Error | null) => void) {
      const self = this as Record<string, any>;
      native.unmountFn(self.mnt).then(
        () => {
          try {
            binding.fuse_native_unmount(self.mnt, self._thread);
          } catch (err) {
            return cb(err as Error);
          }
          cb(null);
        },
        (err: Error) => cb(err),
      );
    }
  }
  return new CloudFuse(mnt, ops, opts) as unknown as FuseInstance;
}

/** fuse-native's stat encoding (index.js getStatArray), needed by the fgetattr fix. */
function getStatArray(stat: any): Uint32Array {
  const ints = new Uint32Array(18);
  const setDouble = (idx: number, num: number) => {
    ints[idx] = num % 4294967296;
    ints[idx + 1] = (num - ints[idx]) / 4294967296;
  };
  const ms = (t: unknown) => (typeof t === 'number' ? t : t instanceof Date ? t.getTime() : Date.now());
  ints[0] = stat?.mode || 0;
  ints[1] = stat?.uid || 0;
  ints[2] = stat?.gid || 0;
  setDouble(3, stat?.size || 0);
  ints[5] = stat?.dev || 0;
  ints[6] = stat?.nlink || 1;
  ints[7] = stat?.ino || 0;
  ints[8] = stat?.rdev || 0;
  ints[9] = stat?.blksize || 0;
  setDouble(10, stat?.blocks || 0);
  setDouble(12, ms(stat?.atime));
  setDouble(14, ms(stat?.mtime));
  setDouble(16, ms(stat?.ctime));
  return ints;
}
