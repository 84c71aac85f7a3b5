// Service error codes -> one sentence naming what the command was acting on ("no Maxxo user
// x@y (USER_NOT_FOUND)"). One table per service; every account command reports through
// explainServerError. The code stays at the end in parentheses: scripts and users searching the
// spec still find it.
import type { RemoteError } from '../errors.js';

/** What a command acts on: the words the sentences fill in. */
export interface Subject {
  /** Maxxo e-mail addresses the request names (contacts, invite, settings). */
  users?: string[];
  /** Receiver of a send. */
  to?: string;
  /** Message / notification id of a per-id failure row. */
  id?: number | string;
  /** A local file the command read (photo, new-password file). */
  file?: string;
  /** Paths in the drive. */
  paths?: string[];
  /** vBoxx management: the entity and id the command addresses ("person", 31). */
  entity?: string;
  entityId?: number;
  /** What the command tried, for refusals ("update person 31"). */
  action?: string;
}

type Sentence = (s: Subject, e: { message: string }) => string | undefined;

const list = (xs: Array<string | number>) => xs.length <= 1 ? String(xs[0] ?? '') : `${xs.slice(0, -1).join(', ')} and ${xs[xs.length - 1]}`;
const anyOf = (xs: string[]) => xs.length === 1 ? xs[0]! : `one of ${xs.join(', ')}`;

/** Maxxo: the codes of its error table and of its per-id failure rows. */
export const maxxoMessages: Record<string, Sentence> = {
  USER_NOT_FOUND: (s) => s.users?.length ? (s.users.length === 1 ? `no Maxxo user ${s.users[0]}` : `${anyOf(s.users)} is not a Maxxo user`)
    : s.to ? `no Maxxo user ${s.to}` : 'no such Maxxo user',
  CONTACT_NOT_FOUND: (s) => s.users?.length ? `${list(s.users)} is not in your contacts` : 'no such contact',
  ALREADY_CONTACT: (s) => s.users?.length ? `${anyOf(s.users)} is already in your contacts` : 'already a contact',
  // The spec gives one code for "wrong parameter(s) or user does not exist"; for a send the
  // receiver is the likely cause (the paths were checked just before).
  METHOD_BAD_REQUEST: (s) => s.to ? `cannot send to ${s.to}: no Maxxo user ${s.to}, or the server refused the request`
    : s.paths?.length ? `the server refused the request for ${list(s.paths)}` : 'the server refused the request',
  NOTIFICATION_NOT_FOUND: (s) => s.id !== undefined ? `no notification ${s.id}` : 'no such notification',
  NOTIFICATION_ALREADY_READ: (s) => s.id !== undefined ? `notification ${s.id} was already read` : 'already read',
  MESSAGE_NOT_FOUND: (s) => s.id !== undefined ? `no message ${s.id} in your inbox` : 'no such message in your inbox',
  MESSAGE_ALREADY_READ: (s) => s.id !== undefined ? `message ${s.id} was already accepted or declined` : 'already accepted or declined',
  MESSAGE_ALREADY_PROCESSED: (s) => s.id !== undefined ? `message ${s.id} was already accepted or declined` : 'already accepted or declined',
  QUOTA_EXCEEDED: (s) => `${s.id !== undefined ? `message ${s.id}: ` : ''}not enough storage or monthly receiving quota left`,
  FILE_NOT_FOUND: (s) => s.id !== undefined ? `message ${s.id}: the sent files no longer exist`
    : s.paths?.length ? `no file or folder ${list(s.paths)} in your Maxxo drive` : 'no such file in your Maxxo drive',
  INVALID_PHOTO: (s) => `${s.file ?? 'the photo'} is not accepted: a photo must be PNG or JPEG, at most 2 MB and 1600x1200`,
  INVALID_EMAIL: (s) => s.users?.length ? `the server does not take ${anyOf(s.users)} as an e-mail address` : 'invalid e-mail address',
  EMAIL_ALREADY_EXIST: (s) => s.users?.length ? `${anyOf(s.users)} already has a Maxxo account` : 'that e-mail address already has a Maxxo account',
  WRONG_CURRENT_PASSWORD: () => 'the current password (the one this command logged in with) is wrong',
  INVALID_NEW_PASSWORD: (s) => `the new password${s.file ? ` in ${s.file}` : ''} is not accepted (too short or invalid)`,
  METHOD_NOT_ALLOWED: () => 'the server does not allow this request',
  ERR_UNKNOWN: () => 'the Maxxo server failed with an internal error; try again later',
  TOKEN_CANNOT_BE_GENERATED: () => 'the Maxxo server could not start a session; try again later',
};

const unknownEntity = /unknown (\w+) with id (\S+)/i;

/**
 * vBoxx answers {status_code, message}; the client turns the status into a code. The server's
 * message often names the item already ("unknown root with id 20"): the sentence uses what it
 * names, else the entity the command addressed, and keeps the server's words when they add more.
 */
export const vboxxMessages: Record<string, Sentence> = {
  NOT_FOUND: (s, e) => {
    const m = unknownEntity.exec(e.message);
    if (m) return `no ${m[1]!.toLowerCase()} ${m[2]}`;
    if (s.paths?.length) return `no file or folder ${list(s.paths)}`;
    if (s.entity && s.entityId !== undefined) return `no ${s.entity} ${s.entityId}`;
    return undefined;
  },
  FORBIDDEN: (s, e) => {
    const m = /you do not have permission to (.+)/i.exec(e.message);
    const what = m?.[1] ?? s.action;
    return what ? `not allowed to ${what} with this account` : undefined;
  },
  UNAUTHORIZED: () => 'the session was refused; log in again',
  BAD_REQUEST: (s, e) => `${s.action ? `the server refused to ${s.action}: ` : 'the server refused the request: '}${e.message}`,
  ALREADY_EXISTS: (s, e) => `${s.action ? `cannot ${s.action}: ` : ''}${e.message}`,
  QUOTA_EXCEEDED: (_s, e) => `over the space quota: ${e.message}`,
  RATE_LIMITED: () => 'the server asks to slow down (too many requests); try again shortly',
  SERVER_ERROR: (s, e) => `the vBoxx server failed${s.action ? ` to ${s.action}` : ''}: ${e.message}`,
};

/** The sentence for a service error, or undefined when the table has none for its code. */
export function serverSentence(kind: 'maxxo' | 'vboxx', e: Pick<RemoteError, 'code' | 'message'>, s: Subject = {}): string | undefined {
  const f = (kind === 'maxxo' ? maxxoMessages : vboxxMessages)[e.code];
  const text = f?.(s, e);
  return text ? `${text} (${e.code})` : undefined;
}
