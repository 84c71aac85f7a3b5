// Password hashing, tokens and path confinement shared by both reference servers.
import { scrypt, scryptSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { resolve, sep } from 'node:path';

// On libuv's thread pool, not the event loop: one scrypt is ~50-70 ms of CPU, and a synchronous
// one stalled every request of the server meanwhile (each mount's login), and the demo accounts'
// hashes at start ran one after another (each service's now run side by side).
function scryptAsync(password: string, salt: Buffer, keylen: number): Promise<Buffer> {
  return new Promise((res, rej) => scrypt(password, salt, keylen, (err, key) => (err ? rej(err) : res(key))));
}

const encodeHash = (salt: Buffer, hash: Buffer) => `scrypt$${salt.toString('base64')}$${hash.toString('base64')}`;

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  return encodeHash(salt, await scryptAsync(password, salt, 32));
}

/** hashPassword for in-process callers between their own steps (createMaxxoUser), never a route. */
export function hashPasswordSync(password: string): string {
  const salt = randomBytes(16);
  return encodeHash(salt, scryptSync(password, salt, 32));
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [kind, saltB64, hashB64] = stored.split('$');
  if (kind !== 'scrypt' || !saltB64 || !hashB64) return false;
  const want = Buffer.from(hashB64, 'base64');
  // A truncated record must never verify: an empty hash would compare equal to anything.
  if (want.length !== 32) return false;
  const got = await scryptAsync(password, Buffer.from(saltB64, 'base64'), want.length);
  return timingSafeEqual(want, got);
}

const TOKEN_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
/** Random alphanumeric token (64 characters by default, as both services hand out). */
export function newToken(length = 64): string {
  const bytes = randomBytes(length * 2);
  let out = '';
  // Rejection sampling keeps the alphabet uniform (256 is not a multiple of 62).
  for (let i = 0; i < bytes.length && out.length < length; i++) {
    const b = bytes[i]!;
    if (b < 248) out += TOKEN_ALPHABET[b % 62];
  }
  return out.length === length ? out : newToken(length);
}

export class PathError extends Error {
  constructor(message: string) { super(message); this.name = 'PathError'; }
}

/**
 * Normalizes a user-supplied path inside an account to "a/b/c" (no leading slash, "" = top).
 * Refuses "..", NUL, backslashes used as separators and anything that is not a plain path;
 * callers have already percent-decoded once, so an encoded "%2e%2e" arrives here as "..".
 */
export function cleanPath(input: string): string {
  if (typeof input !== 'string') throw new PathError('path must be a string');
  if (input.includes('\0')) throw new PathError('path contains NUL');
  if (input.length > 4096) throw new PathError('path too long');
  const parts: string[] = [];
  for (const p of input.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') throw new PathError('path traversal refused');
    if (p.length > 255) throw new PathError('path component too long');
    parts.push(p);
  }
  return parts.join('/');
}

/** Host path of a clean account path under base; double-checks confinement after resolve(). */
export function confine(base: string, clean: string): string {
  const b = resolve(base);
  const full = resolve(b, clean);
  if (full !== b && !full.startsWith(b + sep)) throw new PathError('path escapes the account');
  return full;
}
