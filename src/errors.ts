// The drive's generic errors: what a Remote reports and what the vfs throws, each a RemoteError
// with a stable `code` that fuse/errno.ts maps to errno. A service's own codes stay in
// remote/<service>/ and are turned into these where its client meets the Remote interface.
// Messages never contain tokens or passwords: `path` is the request path without its query string.

export interface ErrorContext {
  status?: number;
  method?: string;
  /** Request path without query string (no secrets), or the remote file path. */
  path?: string;
  cause?: unknown;
}

export class RemoteError extends Error {
  readonly code: string;
  readonly status?: number;
  readonly method?: string;
  readonly path?: string;
  /** Whether repeating the same request may succeed (used by retry). */
  readonly retryable: boolean;

  constructor(code: string, message: string, ctx: ErrorContext = {}, retryable = false) {
    super(message, ctx.cause !== undefined ? { cause: ctx.cause } : undefined);
    this.name = 'RemoteError';
    this.code = code;
    this.status = ctx.status;
    this.method = ctx.method;
    this.path = ctx.path;
    this.retryable = retryable;
  }

  override toString(): string {
    const where = this.method && this.path ? ` (${this.method} ${this.path})` : this.path ? ` (${this.path})` : '';
    const st = this.status ? ` [${this.status}]` : '';
    return `${this.name} ${this.code}${st}: ${this.message}${where}`;
  }
}

export function def(code: string, defaultStatus: number | undefined, retryable = false) {
  const C = class extends RemoteError {
    static readonly code = code;
    constructor(message: string = code, ctx: ErrorContext = {}) {
      super(code, message, { status: defaultStatus, ...ctx }, retryable);
    }
  };
  Object.defineProperty(C, 'name', { value: code.toLowerCase().replace(/(^|_)(\w)/g, (_, __, c: string) => c.toUpperCase()) + 'Error' });
  return C;
}

export const AuthFailed = def('AUTH_FAILED', 403);
export const QuotaExceeded = def('QUOTA_EXCEEDED', 403);
export const NotFound = def('NOT_FOUND', 404);
export const AlreadyExists = def('ALREADY_EXISTS', 403);
export const NotADirectory = def('NOT_A_DIRECTORY', 400);
export const IsADirectory = def('IS_A_DIRECTORY', 400);
export const NotEmpty = def('NOT_EMPTY', 400);
export const Forbidden = def('FORBIDDEN', 403);
export const BadRequest = def('BAD_REQUEST', 400);
export const Unauthorized = def('UNAUTHORIZED', 401);
export const RangeNotSatisfiable = def('RANGE_NOT_SATISFIABLE', 416);
export const PolicyFileTooLarge = def('POLICY_FILE_TOO_LARGE', 413);
export const PolicyExcludedExtension = def('POLICY_EXCLUDED_EXTENSION', 403);
export const RateLimited = def('RATE_LIMITED', 429, true);
export const ServerError = def('SERVER_ERROR', 500, true);
export const ServiceUnavailable = def('SERVICE_UNAVAILABLE', 503, true);
export const BadGateway = def('BAD_GATEWAY', 502, true);
export const GatewayTimeout = def('GATEWAY_TIMEOUT', 504, true);
export const Timeout = def('TIMEOUT', undefined, true);
export const NetworkError = def('NETWORK_ERROR', undefined, true);
export const Cancelled = def('CANCELLED', undefined);
/** The server answered something we cannot understand (malformed JSON, wrong types). */
export const BadResponse = def('BAD_RESPONSE', undefined, true);
export const InvalidName = def('INVALID_NAME', 400);
export const ReadOnly = def('READ_ONLY', undefined);
export const NoSpace = def('NO_SPACE', undefined);
/** A folder cannot go while something still needs its path (EBUSY, as NFS answers for its .nfs names). */
export const Busy = def('BUSY', undefined);
export const Unsupported = def('UNSUPPORTED', undefined);
/** A move the service cannot do in one step (vBoxx: between roots); maps to EXDEV so mv copies. */
export const CrossDevice = def('CROSS_DEVICE', undefined);
/** The extended attribute does not exist (ENODATA). */
export const NoXattr = def('NO_XATTR', undefined);
/** rsync data-plane failure that is not one of the above. */
export const TransferFailed = def('TRANSFER_FAILED', undefined, true);


/** The generic errors by code. */
export const GENERIC_ERRORS: ReadonlyMap<string, new (message?: string, ctx?: ErrorContext) => RemoteError> = new Map(
  [AuthFailed, QuotaExceeded, NotFound, AlreadyExists, NotADirectory, IsADirectory, NotEmpty, Forbidden, BadRequest,
    Unauthorized, RangeNotSatisfiable, PolicyFileTooLarge, PolicyExcludedExtension, RateLimited, ServerError,
    ServiceUnavailable, BadGateway, GatewayTimeout, Timeout, NetworkError, Cancelled, BadResponse, InvalidName, ReadOnly,
    NoSpace, Unsupported, NoXattr, CrossDevice, TransferFailed].map((C) => [C.code, C]));

/**
 * The typed error for a code. Unknown codes keep the server's text as the code (errno maps
 * them by HTTP status), so nothing the server said is lost.
 */
export function errorFromCode(code: string, message?: string, ctx: ErrorContext = {}): RemoteError {
  const C = GENERIC_ERRORS.get(code);
  if (C) return new C(message ?? code, ctx);
  return new RemoteError(code, message ?? code, ctx, (ctx.status ?? 0) >= 500);
}

export function isRemoteError(e: unknown, code?: string): e is RemoteError {
  return e instanceof RemoteError && (code === undefined || e.code === code);
}
