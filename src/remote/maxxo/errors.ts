// Maxxo's own error codes (its API's error table), as the MaxxoClient throws them for the CLI's
// account commands. The drive never sees them: MaxxoRemote turns each into its generic kind
// (toGeneric), so fuse/errno.ts maps generic codes only.
import {
  AlreadyExists, BadRequest, GENERIC_ERRORS, NotFound, RemoteError, ServerError, Unauthorized, Unsupported, def,
  type ErrorContext,
} from '../../errors.js';

// status from the Maxxo table
export const ErrUnknown = def('ERR_UNKNOWN', 500, true);
export const AlreadyContact = def('ALREADY_CONTACT', 202);
export const UserNotFound = def('USER_NOT_FOUND', 404);
export const ContactNotFound = def('CONTACT_NOT_FOUND', 404);
export const MethodNotAllowed = def('METHOD_NOT_ALLOWED', 405);
export const NoPermission = def('NO_PERMISSION', 401);
export const TokenCannotBeGenerated = def('TOKEN_CANNOT_BE_GENERATED', 500, true);
export const NotificationNotFound = def('NOTIFICATION_NOT_FOUND', 404);
export const NotificationAlreadyRead = def('NOTIFICATION_ALREADY_READ', 202);
export const MethodBadRequest = def('METHOD_BAD_REQUEST', 400);
export const MessageNotFound = def('MESSAGE_NOT_FOUND', 404);
export const MessageAlreadyProcessed = def('MESSAGE_ALREADY_PROCESSED', 202);
export const MessageAlreadyRead = def('MESSAGE_ALREADY_READ', 202);
export const InvalidPhoto = def('INVALID_PHOTO', 400);
export const InvalidEmail = def('INVALID_EMAIL', 400);
export const EmailAlreadyExist = def('EMAIL_ALREADY_EXIST', 400);
export const WrongCurrentPassword = def('WRONG_CURRENT_PASSWORD', 400);
export const InvalidNewPassword = def('INVALID_NEW_PASSWORD', 400);
export const FileNotFound = def('FILE_NOT_FOUND', 404);

type ErrorClass = (new (message?: string, ctx?: ErrorContext) => RemoteError) & { code: string };

/** Each Maxxo code and the generic kind the drive sees. (AUTH_FAILED, QUOTA_EXCEEDED are generic already.) */
const MAXXO: [ErrorClass, ErrorClass][] = [
  [ErrUnknown, ServerError], [AlreadyContact, AlreadyExists], [UserNotFound, NotFound], [ContactNotFound, NotFound],
  [MethodNotAllowed, Unsupported], [NoPermission, Unauthorized], [TokenCannotBeGenerated, ServerError],
  [NotificationNotFound, NotFound], [NotificationAlreadyRead, BadRequest], [MethodBadRequest, BadRequest],
  [MessageNotFound, NotFound], [MessageAlreadyProcessed, BadRequest], [MessageAlreadyRead, BadRequest],
  [InvalidPhoto, BadRequest], [InvalidEmail, BadRequest], [EmailAlreadyExist, AlreadyExists],
  [WrongCurrentPassword, BadRequest], [InvalidNewPassword, BadRequest], [FileNotFound, NotFound],
];
const BY_CODE = new Map(MAXXO.map(([C]) => [C.code, C]));
const GENERIC = new Map(MAXXO.map(([C, G]) => [C.code, G]));

/** The typed error for a code in a Maxxo answer (its own table first, then the generic ones). */
export function maxxoError(code: string, ctx: ErrorContext = {}): RemoteError {
  const C = BY_CODE.get(code) ?? GENERIC_ERRORS.get(code);
  if (C) return new C(code, ctx);
  return new RemoteError(code, code, ctx, (ctx.status ?? 0) >= 500);
}

/** A Maxxo-coded error as its generic kind (the original as `cause`); anything else as it is. */
export function toGeneric(e: unknown): unknown {
  if (!(e instanceof RemoteError)) return e;
  const G = GENERIC.get(e.code);
  if (!G) return e;
  return new G(e.message, { status: e.status, method: e.method, path: e.path, cause: e });
}

/** The client boundary: Maxxo's own error codes leave the Remote as their generic kind. */
export const generic = (e: unknown): never => { throw toGeneric(e); };
