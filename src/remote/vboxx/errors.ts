// vBoxx error answers ({status_code, message, code:"error"} with that HTTP status) -> the typed
// errors of src/errors.ts. The same status means different things on different
// endpoints (403 on fileops/move = the target exists, elsewhere = not allowed), so the caller
// says which kind of endpoint it was.
import {
  AlreadyExists, AuthFailed, BadGateway, BadRequest, errorFromCode, Forbidden, GatewayTimeout, NotFound,
  PolicyExcludedExtension, PolicyFileTooLarge, QuotaExceeded, RangeNotSatisfiable, RateLimited, RemoteError,
  ServerError, ServiceUnavailable, Unauthorized, type ErrorContext,
} from '../../errors.js';
import { redact } from '../../log.js';

export type EndpointKind =
  | 'auth'
  /** create_folder, move, copy: 403 means the target exists. */
  | 'fileops-target'
  | 'fileops'
  | 'upload'
  | 'files'
  | 'metadata'
  | 'management'
  | 'other';

/** The server's message, bounded and with anything secret-looking masked. */
export function serverMessage(body: unknown, fallback: string): string {
  let msg = fallback;
  if (typeof body === 'object' && body !== null) {
    const b = body as Record<string, unknown>;
    if (typeof b.message === 'string' && b.message.trim() !== '') msg = b.message;
    else if (typeof b.error === 'string' && b.error.trim() !== '') msg = b.error;
  } else if (typeof body === 'string' && body.trim() !== '') {
    msg = body.trim();
  }
  if (msg.length > 300) msg = msg.slice(0, 300) + '...';
  return redact(msg);
}

export const isInvalidLogin = (msg: string) => /invalid username or password/i.test(msg);
const mentionsQuota = (msg: string) => /quota|insufficient (storage|space)|space (limit|exceeded)/i.test(msg);
const mentionsExtension = (msg: string) => /extension|excluded|file type/i.test(msg);
const mentionsTooLarge = (msg: string) => /too large|max(imum)?[ _]file[ _]size|exceeds/i.test(msg);

/**
 * The typed error for a failed vBoxx request. `status` is the HTTP status (the body's
 * status_code is only a fallback: the spec promises they match).
 */
export function vboxxError(kind: EndpointKind, status: number, body: unknown, ctx: ErrorContext): RemoteError {
  const bodyStatus = typeof body === 'object' && body !== null ? (body as Record<string, unknown>).status_code : undefined;
  const st = status >= 400 ? status : typeof bodyStatus === 'number' && bodyStatus >= 400 ? bodyStatus : status;
  const msg = serverMessage(body, `HTTP ${st}`);
  const c: ErrorContext = { ...ctx, status: st };

  // Missing credentials (400) are as final as wrong ones: never retried, one clear error.
  if (kind === 'auth' && (isInvalidLogin(msg) || st === 400 || st === 401 || st === 403)) return new AuthFailed(msg, c);
  if (st === 401) return new Unauthorized(msg, c);
  if (st === 404) return new NotFound(msg, c);
  if (st === 413) return new PolicyFileTooLarge(msg, c);
  if (st === 507) return new QuotaExceeded(msg, c);
  if (st === 416) return new RangeNotSatisfiable(msg, c);
  if (st === 429) return new RateLimited(msg, c);
  if (st === 403) {
    if (mentionsQuota(msg)) return new QuotaExceeded(msg, c);
    if (mentionsExtension(msg)) return new PolicyExcludedExtension(msg, c);
    if (mentionsTooLarge(msg)) return new PolicyFileTooLarge(msg, c);
    // On create_folder/move/copy a 403 means "target exists", unless the server says otherwise.
    if (kind === 'fileops-target' && !/no access|permission|not allowed|into itself|root folder/i.test(msg)) return new AlreadyExists(msg, c);
    return new Forbidden(msg, c);
  }
  if (st === 400 || st === 409 || st === 422) {
    if (kind === 'upload' && mentionsQuota(msg)) return new QuotaExceeded(msg, c);
    if (kind === 'upload' && mentionsExtension(msg)) return new PolicyExcludedExtension(msg, c);
    if (st === 409 && kind === 'fileops-target') return new AlreadyExists(msg, c);
    if (st === 400) return new BadRequest(msg, c);
  }
  if (st === 500) return new ServerError(msg, c);
  if (st === 502) return new BadGateway(msg, c);
  if (st === 503) return new ServiceUnavailable(msg, c);
  if (st === 504) return new GatewayTimeout(msg, c);
  // Unknown: keep the server's text, retry only what a server-side failure suggests.
  return errorFromCode(`HTTP_${st}`, msg, c);
}
