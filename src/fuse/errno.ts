// THE one table from the drive's generic errors (src/errors.ts) to errno. Everything the adapter
// answers to the kernel goes through toErrno(); nothing else in the code base picks errno values.
// Service codes never get here: each Remote maps its own to the generic ones.
import os from 'node:os';
import path from 'node:path';
import { RemoteError } from '../errors.js';
import type { Logger } from '../log.js';

const E = os.constants.errno as Record<string, number>;
const IS_MAC = process.platform === 'darwin';

/** Positive errno numbers of this platform (fuse-native's own constants are Linux-only). */
export const errno = {
  EPERM: E.EPERM,
  ENOENT: E.ENOENT,
  EINTR: E.EINTR,
  EIO: E.EIO,
  EBADF: E.EBADF,
  EAGAIN: E.EAGAIN,
  EACCES: E.EACCES,
  EBUSY: E.EBUSY,
  EEXIST: E.EEXIST,
  EXDEV: E.EXDEV,
  ENOTDIR: E.ENOTDIR,
  EISDIR: E.EISDIR,
  EINVAL: E.EINVAL,
  EFBIG: E.EFBIG,
  ENOSPC: E.ENOSPC,
  EROFS: E.EROFS,
  ERANGE: E.ERANGE,
  ENAMETOOLONG: E.ENAMETOOLONG,
  ENOSYS: E.ENOSYS,
  ENOTEMPTY: E.ENOTEMPTY,
  ENOTSUP: E.ENOTSUP ?? E.EOPNOTSUPP,
  // Linux reports a missing xattr as ENODATA, macOS as ENOATTR (93, absent from os.constants).
  ENODATA: IS_MAC ? 93 : E.ENODATA,
  EDQUOT: E.EDQUOT,
  ETIMEDOUT: E.ETIMEDOUT,
  ENOTCONN: E.ENOTCONN,
} as const;

export type ErrnoName = keyof typeof errno;

/** Generic error code -> errno name. Codes not listed (HTTP_nnn) fall back by HTTP status, then EIO. */
const BY_CODE: Record<string, ErrnoName> = {
  NOT_FOUND: 'ENOENT',
  ALREADY_EXISTS: 'EEXIST',
  NOT_EMPTY: 'ENOTEMPTY',
  IS_A_DIRECTORY: 'EISDIR',
  NOT_A_DIRECTORY: 'ENOTDIR',
  POLICY_FILE_TOO_LARGE: 'EFBIG',
  POLICY_EXCLUDED_EXTENSION: 'EPERM',
  QUOTA_EXCEEDED: 'EDQUOT',
  READ_ONLY: 'EROFS',
  BUSY: 'EBUSY',
  NO_SPACE: 'ENOSPC',
  UNSUPPORTED: 'ENOTSUP',
  // mv falls back to copy + delete on EXDEV, which is what a move between vBoxx roots needs.
  CROSS_DEVICE: 'EXDEV',
  NO_XATTR: 'ENODATA',
  INVALID_NAME: 'EINVAL',
  BAD_REQUEST: 'EINVAL',
  UNAUTHORIZED: 'EACCES',
  AUTH_FAILED: 'EACCES',
  FORBIDDEN: 'EACCES',
  CANCELLED: 'EINTR',
  // Transient conditions reach us only after the client's bounded retries gave up.
  TIMEOUT: 'EIO',
  NETWORK_ERROR: 'EIO',
  RATE_LIMITED: 'EIO',
  SERVER_ERROR: 'EIO',
  SERVICE_UNAVAILABLE: 'EIO',
  BAD_GATEWAY: 'EIO',
  GATEWAY_TIMEOUT: 'EIO',
  BAD_RESPONSE: 'EIO',
  TRANSFER_FAILED: 'EIO',
  RANGE_NOT_SATISFIABLE: 'EIO',
};

const NAME_MAX = 255;

function tooLong(e: RemoteError): boolean {
  if (/too long/i.test(e.message)) return true;
  if (!e.path) return false;
  return path.posix.basename(e.path).length > 0 && Buffer.byteLength(path.posix.basename(e.path)) > NAME_MAX;
}

function byStatus(status: number | undefined): ErrnoName | undefined {
  if (status === undefined) return undefined;
  if (status === 404) return 'ENOENT';
  if (status === 401 || status === 403) return 'EACCES';
  if (status === 409) return 'EEXIST';
  if (status === 413) return 'EFBIG';
  if (status === 507) return 'EDQUOT';
  // any other status the services never document (402, 418, a 3xx of a proxy) is the server's
  // failure, not the program's: EIO, like the transient codes after their retries
  if (status >= 300) return 'EIO';
  return undefined;
}

const warned = new Set<string>();

/**
 * Positive errno for any failure a vfs call threw. Never throws: an unknown error is EIO plus a
 * log line (once per kind), so a surprise in one request can never take the mount down.
 */
export function toErrno(err: unknown, log?: Logger, op?: string): number {
  const name = errnoName(err);
  if (name) return errno[name];
  const kind = err instanceof RemoteError ? `RemoteError ${err.code}` : err instanceof Error ? `${err.name}` : typeof err;
  if (log && !warned.has(kind)) {
    warned.add(kind);
    log.warn(`unmapped error in ${op ?? 'fuse op'} answered EIO: ${describe(err)}`);
  }
  return errno.EIO;
}

/** The errno name for err, or undefined when the table does not know it (caller answers EIO). */
export function errnoName(err: unknown): ErrnoName | undefined {
  if (err instanceof RemoteError) {
    if (err.code === 'INVALID_NAME' && tooLong(err)) return 'ENAMETOOLONG';
    // a service's "path too long" (vBoxx answers 400 BAD_REQUEST) is the program's ENAMETOOLONG
    if (err.code === 'BAD_REQUEST' && /\btoo long\b/i.test(err.message)) return 'ENAMETOOLONG';
    return BY_CODE[err.code] ?? byStatus(err.status);
  }
  // Local failures of the cache/journal (disk full, ...) arrive as Node system errors.
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (code in errno) return code as ErrnoName;
    if (code === 'EOPNOTSUPP') return 'ENOTSUP';
    if (code === 'ENOATTR') return 'ENODATA';
    if (BY_CODE[code]) return BY_CODE[code];
  }
  return undefined;
}

function describe(err: unknown): string {
  if (err instanceof RemoteError) return err.toString();
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
