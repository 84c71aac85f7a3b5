// `-o opt,opt=val` mount options in the sshfs/rclone style -> vfs and client settings.
import { didYouMean, UsageError } from './args.js';
import { parseDuration, parseSize } from './output.js';
import type { VfsOptions } from '../vfs/api.js';
import type { ClientOptions } from '../remote/options.js';

export interface MountSettings {
  vfs: Partial<VfsOptions>;
  client: Partial<ClientOptions>;
  allowOther: boolean;
  /** -o allow_root: root may use the mount too. */
  allowRoot: boolean;
  /** -o nonempty: mount over a folder that has files (hidden while mounted). */
  allowNonEmpty: boolean;
  /** -o umask=022: permission bits taken away from every file and folder. */
  umask?: number;
  debug: boolean;
  /** -o password_file=F (for fstab lines, where no flag can be given). */
  passwordFile?: string;
  root?: string;
  /** -o backend=libfuse3|fuse-native (undefined: libfuse3 on Linux when its addon loads). */
  backend?: 'libfuse3' | 'fuse-native';
  /** -o kernel_timeout=SEC: the kernel's entry and attribute cache (default 1 s). */
  kernelTimeoutS?: number;
  /** -o cache_readdir: the kernel keeps folder listings while ours are unchanged (libfuse3). */
  cacheReaddir?: boolean;
  /** -o writeback_cache: the kernel's write-back cache (libfuse3). */
  writebackCache?: boolean;
  /** -o readdirplus=always|auto|off (libfuse3). */
  readdirplus?: 'always' | 'auto' | 'off';
  /** -o fuse_reader=threads|poll (libfuse3). */
  fuseReader?: 'threads' | 'poll';
  /** -o spin=USEC (libfuse3): how long the event loop polls after requests before it sleeps. */
  spinUs?: number;
}

/** The table the help text, README and the parser share. */
export const mountOptionTable: Array<{ name: string; value?: string; desc: string }> = [
  { name: 'cache_dir', value: 'DIR', desc: 'On-disk cache and write-back journal (default $XDG_CACHE_HOME/cloudmount)' },
  { name: 'cache_size', value: 'SIZE', desc: 'Bound of cached clean data, e.g. 10G (dirty data is never evicted)' },
  { name: 'attr_timeout', value: 'SEC', desc: 'How long file attributes are cached' },
  { name: 'dir_timeout', value: 'SEC', desc: 'How long directory listings are cached' },
  { name: 'negative_timeout', value: 'SEC', desc: 'How long "does not exist" answers are cached' },
  { name: 'read_ahead', value: 'SIZE', desc: 'Initial read-ahead window (doubles on sequential reads)' },
  { name: 'read_ahead_max', value: 'SIZE', desc: 'Largest read-ahead window' },
  { name: 'concurrency', value: 'N', desc: 'Parallel requests to the service' },
  { name: 'rate_limit', value: 'N', desc: 'Requests per second (0 = unlimited)' },
  { name: 'writeback_delay', value: 'SEC', desc: 'Delay between close() and upload (0 = upload before close returns)' },
  { name: 'sync_close', desc: 'close() waits until the journal is on the disk (survives power loss; default: within 1 s)' },
  { name: 'timeout', value: 'SEC', desc: 'Per-request timeout; an operation gives EIO after its retries' },
  { name: 'allow_other', desc: 'Let other users access the mount (needs user_allow_other in /etc/fuse.conf)' },
  { name: 'allow_root', desc: 'Let root (and you) access the mount (needs user_allow_other in /etc/fuse.conf)' },
  { name: 'nonempty', desc: 'Mount over a folder that has files (they are hidden while mounted)' },
  { name: 'uid', value: 'N', desc: 'Owner shown for every file and folder (default: the user who mounts)' },
  { name: 'gid', value: 'N', desc: 'Group shown for every file and folder (default: that user\'s group)' },
  { name: 'umask', value: 'OCTAL', desc: 'Permission bits taken away from every file and folder, e.g. 022 or 077' },
  { name: 'ro', desc: 'Mount read-only' },
  { name: 'rw', desc: 'Mount read-write (the default)' },
  { name: 'root', value: 'ID|NAME', desc: 'vBoxx: mount one root (same as --root)' },
  { name: 'password_file', value: 'FILE', desc: 'Read the password from FILE (for fstab lines)' },
  { name: 'debug', desc: 'Log every FUSE operation (implies -vv)' },
  { name: 'kernel_timeout', value: 'SEC', desc: 'How long the kernel caches names and attributes before asking again (default 1; libfuse3 is told of server changes a listing reveals)' },
  { name: 'no_modtime', desc: 'Neither keep nor read modification times (as rclone --no-modtime): Maxxo walks folders without rsync listings; times and chmod +x hold for the mount only, and a same-size change by another client goes unseen in cached files' },
  { name: 'bulk_reader', value: 'R', desc: 'vBoxx: who reads file content from the server: raw (default: our own connections read straight into large buffers, ~0.5 s less CPU per 512 MiB) or undici (as every other request)' },
  { name: 'no_warm_start', desc: 'Do not list the top folder and its subfolders in the background when the drive mounts (default: listed, so the first walk into the drive waits for no listing of its first two levels)' },
  { name: 'cache_readdir', desc: 'libfuse3: the kernel keeps a folder listing while ours is unchanged (pays off with a long kernel_timeout)' },
  { name: 'readdirplus', value: 'MODE', desc: 'libfuse3: always (default: attributes with every listing, so ls -l asks nothing more), auto (the kernel asks for them when lookups follow a listing) or off' },
  { name: 'writeback_cache', desc: 'libfuse3, experimental: the kernel gathers writes in its page cache and hands them over at close/fsync (see native-notes/lowlevel.md for what it changes)' },
  { name: 'fuse_reader', value: 'R', desc: 'libfuse3: who reads requests from the kernel: poll (default: the JS thread itself, one thread crossing less per request) or threads (a reader thread hands them over; keeps big write copies off the JS thread)' },
  { name: 'spin', value: 'USEC', desc: 'libfuse3: after requests, the JS thread polls this long for the next one before it sleeps, so a program\'s next call finds it awake (default 200; 0 = never; costs CPU only while requests come)' },
  { name: 'backend', value: 'B', desc: 'FUSE binding: libfuse3 (default on Linux when its addon is built) or fuse-native (libfuse 2: macOS, no addon)' },
];

/** Options mount(8) and fstab pass along that mean nothing to us. */
const IGNORED = new Set(['defaults', 'auto', 'noauto', 'user', 'users', 'nouser', 'nofail', '_netdev', 'exec', 'noexec',
  'suid', 'nosuid', 'dev', 'nodev', 'atime', 'noatime', 'relatime', 'sync', 'async', 'daemon', 'foreground']);

export function parseMountOptions(specs: string[]): MountSettings {
  const s: MountSettings = { vfs: {}, client: {}, allowOther: false, allowRoot: false, allowNonEmpty: false, debug: false };
  for (const spec of specs) {
    for (const raw of spec.split(',')) {
      const item = raw.trim();
      if (!item) continue;
      const eq = item.indexOf('=');
      const key = eq < 0 ? item : item.slice(0, eq);
      const val = eq < 0 ? undefined : item.slice(eq + 1);
      if (IGNORED.has(key) || key.startsWith('x-')) continue;
      const need = () => {
        if (val === undefined || val === '') throw new UsageError(`-o ${key} needs a value (${key}=...)`);
        return val;
      };
      const size = () => {
        const n = parseSize(need());
        if (n === undefined) throw new UsageError(`-o ${key}=${val}: not a size (e.g. 512M, 10G)`);
        return n;
      };
      const dur = () => {
        const n = parseDuration(need());
        if (n === undefined) throw new UsageError(`-o ${key}=${val}: not a duration in seconds (e.g. 1, 0.5, 30s, 500ms)`);
        return n;
      };
      const count = (min: number) => {
        const v = need();
        if (!/^\d+$/.test(v) || Number(v) < min) throw new UsageError(`-o ${key}=${v}: expected a whole number >= ${min}`);
        return Number(v);
      };
      const oneOf = <T extends string>(...vals: T[]): T => {
        const v = need();
        if (!(vals as string[]).includes(v)) throw new UsageError(`-o ${key}=${v}: expected ${vals.slice(0, -1).join(', ')} or ${vals[vals.length - 1]}`);
        return v as T;
      };
      const flag = () => { if (val !== undefined) throw new UsageError(`-o ${key} takes no value`); };
      switch (key) {
        case 'cache_dir': s.vfs.cacheDir = need(); break;
        case 'cache_size': s.vfs.cacheMaxBytes = size(); break;
        case 'attr_timeout': s.vfs.attrTtlMs = dur(); break;
        case 'dir_timeout': s.vfs.dirTtlMs = dur(); break;
        case 'negative_timeout': s.vfs.negativeTtlMs = dur(); break;
        case 'read_ahead': s.vfs.readAheadBytes = size(); break;
        case 'read_ahead_max': s.vfs.readAheadMaxBytes = size(); break;
        case 'concurrency': s.client.concurrency = count(1); break;
        case 'rate_limit': s.client.rateLimit = count(0); break;
        case 'writeback_delay': s.vfs.writebackDelayMs = dur(); break;
        case 'sync_close': flag(); s.vfs.syncClose = true; break;
        case 'timeout': {
          const ms = dur();
          if (ms <= 0) throw new UsageError('-o timeout must be > 0');
          s.client.timeoutMs = ms;
          break;
        }
        case 'allow_other': flag(); s.allowOther = true; break;
        case 'allow_root': flag(); s.allowRoot = true; break;
        case 'nonempty': flag(); s.allowNonEmpty = true; break;
        case 'uid': s.vfs.uid = count(0); break;
        case 'gid': s.vfs.gid = count(0); break;
        case 'umask': {
          const v = need();
          if (!/^[0-7]{1,4}$/.test(v)) throw new UsageError(`-o umask=${v}: expected octal permission bits, e.g. 022`);
          s.umask = parseInt(v, 8);
          break;
        }
        case 'ro': flag(); s.vfs.readOnly = true; break;
        case 'rw': flag(); s.vfs.readOnly = false; break;
        case 'root': s.root = need(); break;
        case 'password_file': s.passwordFile = need(); break;
        case 'debug': flag(); s.debug = true; break;
        case 'kernel_timeout': s.kernelTimeoutS = dur() / 1000; break;
        case 'cache_readdir': flag(); s.cacheReaddir = true; break;
        case 'no_modtime': flag(); s.client.modtimes = false; break;
        case 'bulk_reader': {
          const v = need();
          if (v !== 'raw' && v !== 'undici') throw new UsageError(`-o bulk_reader=${v}: expected raw or undici`);
          s.client.bulkReader = v;
          break;
        }
        case 'no_warm_start': flag(); s.vfs.warmStart = false; break;
        case 'writeback_cache': flag(); s.writebackCache = true; break;
        case 'readdirplus': s.readdirplus = oneOf('always', 'auto', 'off'); break;
        case 'backend': s.backend = oneOf('libfuse3', 'fuse-native'); break;
        case 'fuse_reader': s.fuseReader = oneOf('threads', 'poll'); break;
        case 'spin': {
          const v = count(0);
          if (v > 100_000) throw new UsageError(`-o spin=${v}: at most 100000 microseconds`);
          s.spinUs = v;
          break;
        }
        default: {
          const known = mountOptionTable.map((o) => o.name);
          const near = didYouMean(key, known);
          throw new UsageError(`unknown mount option -o ${key}${near ? ` (did you mean -o ${near}?)` : ''} (known: ${known.join(', ')})`);
        }
      }
    }
  }
  if (s.allowOther && s.allowRoot) throw new UsageError('-o allow_root and allow_other exclude each other (allow_other already lets root in)');
  if (s.vfs.readAheadBytes !== undefined && s.vfs.readAheadMaxBytes !== undefined && s.vfs.readAheadMaxBytes < s.vfs.readAheadBytes) {
    throw new UsageError('-o read_ahead_max must not be smaller than read_ahead');
  }
  return s;
}

export function mountOptionsHelp(): string {
  const labels = mountOptionTable.map((o) => (o.value ? `${o.name}=${o.value}` : o.name));
  const w = Math.max(...labels.map((l) => l.length)) + 2;
  return 'Mount options (-o, comma-separated, may repeat):\n' +
    mountOptionTable.map((o, i) => `  ${labels[i]!.padEnd(w)}${o.desc}`).join('\n') +
    `\nAccepted and ignored (fstab and mount(8) options): ${[...IGNORED].join(', ')}, x-* (e.g. x-systemd.automount).`;
}
