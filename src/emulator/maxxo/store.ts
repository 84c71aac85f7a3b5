// Maxxo state in SQLite (tables prefixed maxxo_): users, tokens, contacts, notifications, inbox
// messages and invitations. File bytes are plain files under filesDir/maxxo/<login>.
import type Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { EmulatorContext } from '../context.js';
import { newToken } from '../security.js';

export const MiB = 1024 * 1024;

export interface MaxxoUser {
  id: number;
  email: string;
  fullname: string;
  password_hash: string;
  login: string;
  rsync_password: string;
  photo: string;
  accept_all: number;
  package: string;
  quota: number;
  receiving_quota: number;
  received: number;
  received_month: string;
  created: string;
}

export function initSchema(db: Database.Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS maxxo_users (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      email TEXT NOT NULL UNIQUE COLLATE NOCASE,
      fullname TEXT NOT NULL,
      password_hash TEXT NOT NULL,
      login TEXT NOT NULL UNIQUE,
      rsync_password TEXT NOT NULL,
      photo TEXT NOT NULL DEFAULT '',
      accept_all INTEGER NOT NULL DEFAULT 0,
      package TEXT NOT NULL DEFAULT 'FREE',
      quota INTEGER NOT NULL,
      receiving_quota INTEGER NOT NULL,
      received INTEGER NOT NULL DEFAULT 0,
      received_month TEXT NOT NULL DEFAULT '',
      created TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS maxxo_tokens (
      token TEXT PRIMARY KEY,
      user_id INTEGER NOT NULL REFERENCES maxxo_users(id) ON DELETE CASCADE,
      created TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS maxxo_contacts (
      user_id INTEGER NOT NULL REFERENCES maxxo_users(id) ON DELETE CASCADE,
      contact_id INTEGER NOT NULL REFERENCES maxxo_users(id) ON DELETE CASCADE,
      created TEXT NOT NULL,
      PRIMARY KEY (user_id, contact_id)
    );
    CREATE TABLE IF NOT EXISTS maxxo_notifications (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      user_id INTEGER NOT NULL REFERENCES maxxo_users(id) ON DELETE CASCADE,
      type TEXT NOT NULL,
      from_id INTEGER NOT NULL REFERENCES maxxo_users(id) ON DELETE CASCADE,
      is_read INTEGER NOT NULL DEFAULT 0,
      created TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS maxxo_messages (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      receiver_id INTEGER NOT NULL REFERENCES maxxo_users(id) ON DELETE CASCADE,
      sender_id INTEGER NOT NULL REFERENCES maxxo_users(id) ON DELETE CASCADE,
      type TEXT NOT NULL DEFAULT 'SEND',
      destination TEXT NOT NULL,
      size INTEGER NOT NULL,
      state TEXT NOT NULL DEFAULT 'pending',
      created TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS maxxo_invites (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      user_id INTEGER NOT NULL REFERENCES maxxo_users(id) ON DELETE CASCADE,
      email TEXT NOT NULL,
      created TEXT NOT NULL
    );
  `);
}

/** Postgres-style timestamp as in the spec's inbox example: "2011-11-28 16:12:11.008021+00". */
export function pgTimestamp(d = new Date()): string {
  const iso = d.toISOString(); // 2011-11-28T16:12:11.008Z
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}000+00`;
}

export function userFolder(ctx: EmulatorContext, login: string): string {
  return join(ctx.filesDir, 'maxxo', login);
}

export const EMAIL_RE = /^[^\s@"'<>\\/]+@[^\s@"'<>\\/]+\.[^\s@"'<>\\/]+$/;

function loginFromEmail(db: Database.Database, email: string): string {
  // rsync module names and folder names: keep them to a safe alphabet.
  const base = (email.split('@')[0] ?? '').toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 24) || 'user';
  const taken = db.prepare('SELECT 1 FROM maxxo_users WHERE login = ?');
  if (!taken.get(base)) return base;
  for (let i = 2; ; i++) if (!taken.get(`${base}${i}`)) return `${base}${i}`;
}

export interface NewUser {
  email: string;
  password: string;
  fullname?: string;
  /** Storage quota in bytes (default 10 GiB). */
  quota?: number;
  /** Monthly receiving quota in bytes (default 5 GiB). */
  receivingQuota?: number;
  acceptAll?: boolean;
  package?: string;
}

export function getUserByEmail(db: Database.Database, email: string): MaxxoUser | undefined {
  return db.prepare('SELECT * FROM maxxo_users WHERE email = ?').get(email) as MaxxoUser | undefined;
}
export function getUserById(db: Database.Database, id: number): MaxxoUser | undefined {
  return db.prepare('SELECT * FROM maxxo_users WHERE id = ?').get(id) as MaxxoUser | undefined;
}
export function allUsers(db: Database.Database): MaxxoUser[] {
  return db.prepare('SELECT * FROM maxxo_users ORDER BY id').all() as MaxxoUser[];
}

/** Synchronous from the login's choice to the insert, so two new accounts never take one login. */
export function insertUser(ctx: EmulatorContext, u: NewUser, passwordHash: string): MaxxoUser {
  if (!EMAIL_RE.test(u.email)) throw new Error('invalid email');
  const db = ctx.db;
  const login = loginFromEmail(db, u.email);
  const info = db.prepare(`INSERT INTO maxxo_users
      (email, fullname, password_hash, login, rsync_password, accept_all, package, quota, receiving_quota, created)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
    u.email, u.fullname ?? u.email.split('@')[0], passwordHash, login, newToken(32),
    u.acceptAll ? 1 : 0, u.package ?? 'FREE', u.quota ?? 10 * 1024 * MiB, u.receivingQuota ?? 5 * 1024 * MiB,
    pgTimestamp());
  mkdirSync(userFolder(ctx, login), { recursive: true, mode: 0o755 });
  return getUserById(db, Number(info.lastInsertRowid))!;
}

export function issueToken(db: Database.Database, userId: number): string {
  for (let i = 0; i < 5; i++) {
    const token = newToken(64);
    const r = db.prepare('INSERT OR IGNORE INTO maxxo_tokens (token, user_id, created) VALUES (?, ?, ?)')
      .run(token, userId, pgTimestamp());
    if (r.changes === 1) return token;
  }
  throw new Error('TOKEN_CANNOT_BE_GENERATED');
}

export function userByToken(db: Database.Database, token: string): MaxxoUser | undefined {
  return db.prepare('SELECT u.* FROM maxxo_tokens t JOIN maxxo_users u ON u.id = t.user_id WHERE t.token = ?')
    .get(token) as MaxxoUser | undefined;
}

export function randomName(n = 8): string {
  return randomBytes(n).toString('hex').slice(0, n);
}

/** The month whose receiving quota is being spent, "YYYY-MM" (UTC). */
export function currentMonth(d = new Date()): string {
  return d.toISOString().slice(0, 7);
}

export function receivedThisMonth(u: MaxxoUser): number {
  return u.received_month === currentMonth() ? u.received : 0;
}
