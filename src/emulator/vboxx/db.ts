// vBoxx state in the shared SQLite file: every table is prefixed vboxx_. File metadata (rev, size,
// mtime) lives here so a listing is one indexed query; the bytes are plain files on disk.
import type Database from 'better-sqlite3';
import { createHash } from 'node:crypto';

export interface Org {
  id: number; parent_id: number | null; name: string; slug: string; description: string; email: string;
  hostname: string; created: string; email_server_id: number | null; psa: string | null;
  bandwidth_throttle: number | null; throttle_exception_days: string | null; throttle_exception_start: string | null;
  throttle_exception_end: string | null; throttle_exception_throttle: number | null; throttle_exception_dow: string | null;
  throttled: number; active: number;
}
export interface Policy {
  id: number; company_id: number; space_quota: number | null; max_file_size: string; purge_deleted: number;
  trim_revisions: number; excluded_extensions: string; user_purge_deleted: number; purge_deleted_frequency: string;
  user_trim_revisions: number; user_create_backups: number; trim_revisions_x: string;
}
export interface Person {
  id: number; company_id: number; username: string | null; email: string; first_name: string; last_name: string;
  password_hash: string; space_quota: number | null; mobile_phone: string | null; mobile_service_provider_id: number | null;
  site_admin: number; system_admin: number; use_ldap: number; default_root_id: number | null; created: string;
}
export interface Root {
  id: number; company_id: number; person_id: number | null; name: string; description: string;
  dept_share: number; backup: number; created: string;
}
export interface Machine {
  id: number; company_id: number; person_id: number | null; name: string; bandwidth_throttle: number | null;
  throttle_exception_dow: string | null; throttle_exception_days: string | null; throttle_exception_start: string | null;
  throttle_exception_end: string | null; throttle_exception_throttle: number | null; created: string;
}
export interface Node {
  root_id: number; path: string; parent: string; name: string; is_dir: number; bytes: number;
  mtime: number; client_mtime: number | null; rev: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS vboxx_orgs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, parent_id INTEGER, name TEXT NOT NULL UNIQUE, slug TEXT NOT NULL UNIQUE,
  description TEXT NOT NULL DEFAULT '', email TEXT NOT NULL DEFAULT '', hostname TEXT NOT NULL DEFAULT '',
  created TEXT NOT NULL, email_server_id INTEGER, psa TEXT, bandwidth_throttle INTEGER,
  throttle_exception_days TEXT, throttle_exception_start TEXT, throttle_exception_end TEXT,
  throttle_exception_throttle INTEGER, throttle_exception_dow TEXT,
  throttled INTEGER NOT NULL DEFAULT 0, active INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS vboxx_policies (
  id INTEGER PRIMARY KEY, company_id INTEGER NOT NULL UNIQUE, space_quota INTEGER,
  max_file_size TEXT NOT NULL DEFAULT '', purge_deleted INTEGER NOT NULL DEFAULT 0,
  trim_revisions INTEGER NOT NULL DEFAULT 0, excluded_extensions TEXT NOT NULL DEFAULT '',
  user_purge_deleted INTEGER NOT NULL DEFAULT 0, purge_deleted_frequency TEXT NOT NULL DEFAULT '',
  user_trim_revisions INTEGER NOT NULL DEFAULT 0, user_create_backups INTEGER NOT NULL DEFAULT 0,
  trim_revisions_x TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS vboxx_persons (
  id INTEGER PRIMARY KEY AUTOINCREMENT, company_id INTEGER NOT NULL, username TEXT UNIQUE COLLATE NOCASE,
  email TEXT NOT NULL UNIQUE COLLATE NOCASE, first_name TEXT NOT NULL, last_name TEXT NOT NULL,
  password_hash TEXT NOT NULL, space_quota INTEGER, mobile_phone TEXT, mobile_service_provider_id INTEGER,
  site_admin INTEGER NOT NULL DEFAULT 0, system_admin INTEGER NOT NULL DEFAULT 0, use_ldap INTEGER NOT NULL DEFAULT 0,
  default_root_id INTEGER, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vboxx_sessions (
  token_hash TEXT PRIMARY KEY, person_id INTEGER NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vboxx_roots (
  id INTEGER PRIMARY KEY AUTOINCREMENT, company_id INTEGER NOT NULL, person_id INTEGER, name TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '', dept_share INTEGER NOT NULL DEFAULT 0, backup INTEGER NOT NULL DEFAULT 0,
  created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vboxx_machines (
  id INTEGER PRIMARY KEY AUTOINCREMENT, company_id INTEGER NOT NULL, person_id INTEGER, name TEXT NOT NULL,
  bandwidth_throttle INTEGER, throttle_exception_dow TEXT, throttle_exception_days TEXT,
  throttle_exception_start TEXT, throttle_exception_end TEXT, throttle_exception_throttle INTEGER,
  created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vboxx_activity_types (
  id INTEGER PRIMARY KEY, activity TEXT NOT NULL, machine_scope INTEGER NOT NULL DEFAULT 0,
  user_scope INTEGER NOT NULL DEFAULT 0, system_scope INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS vboxx_activities (
  id INTEGER PRIMARY KEY AUTOINCREMENT, activity_type_id INTEGER NOT NULL, actor_type TEXT, actor_text TEXT,
  actor_company_id INTEGER, actor_machine_id INTEGER, actor_person_id INTEGER, action_text TEXT,
  acted_on_type TEXT, acted_on_text TEXT, acted_on_company_id INTEGER, acted_on_machine_id INTEGER,
  acted_on_person_id INTEGER, acted_on_root_id INTEGER, data_text TEXT, num_alerts INTEGER NOT NULL DEFAULT 0,
  created TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS vboxx_activities_company ON vboxx_activities(acted_on_company_id);
CREATE INDEX IF NOT EXISTS vboxx_activities_person ON vboxx_activities(acted_on_person_id);
CREATE TABLE IF NOT EXISTS vboxx_nodes (
  root_id INTEGER NOT NULL, path TEXT NOT NULL, parent TEXT NOT NULL, name TEXT NOT NULL,
  is_dir INTEGER NOT NULL, bytes INTEGER NOT NULL DEFAULT 0, mtime INTEGER NOT NULL, client_mtime INTEGER,
  rev INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (root_id, path)) WITHOUT ROWID;
-- Covering: a listing reads only this index, never the table.
DROP INDEX IF EXISTS vboxx_nodes_parent;
CREATE INDEX IF NOT EXISTS vboxx_nodes_listing ON vboxx_nodes(root_id, parent, name, is_dir, bytes, mtime, client_mtime, rev);
CREATE TABLE IF NOT EXISTS vboxx_revisions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, root_id INTEGER NOT NULL, path TEXT NOT NULL, bytes INTEGER NOT NULL,
  action TEXT NOT NULL, created INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS vboxx_revisions_root ON vboxx_revisions(root_id);
CREATE TABLE IF NOT EXISTS vboxx_uploads (
  id TEXT PRIMARY KEY, person_id INTEGER NOT NULL, offset INTEGER NOT NULL, created INTEGER NOT NULL,
  expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vboxx_shares (
  id TEXT PRIMARY KEY, root_id INTEGER NOT NULL, path TEXT NOT NULL, person_id INTEGER NOT NULL,
  created INTEGER NOT NULL, expires INTEGER);
`;

// Types the server records itself; ids are stable because clients may pass them to activity/create.
export const ACTIVITY_TYPES: Array<[number, string]> = [
  [1, 'added account'], [2, 'removed account'], [3, 'updated account'], [4, 'created organization'],
  [5, 'updated organization'], [6, 'updated policy'], [7, 'created root'], [8, 'updated root'],
  [9, 'updated machine'], [10, 'added auth source to'], [11, 'logged in'], [12, 'uploaded file'],
  [13, 'deleted file'], [14, 'created share link'], [15, 'restored file'], [22, 'configured storage'],
];
export const ACT = {
  personCreated: 1, personUpdated: 3, orgCreated: 4, orgUpdated: 5, policyUpdated: 6, rootCreated: 7,
  rootUpdated: 8, machineUpdated: 9,
} as const;

export const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export function initSchema(db: Database.Database): void {
  db.exec(SCHEMA);
  const ins = db.prepare('INSERT OR IGNORE INTO vboxx_activity_types (id, activity) VALUES (?, ?)');
  for (const [id, a] of ACTIVITY_TYPES) ins.run(id, a);
}

/** Prepared statements, created once (a prepare per request would dominate small requests). */
export function statements(db: Database.Database) {
  return {
    org: db.prepare<[number], Org>('SELECT * FROM vboxx_orgs WHERE id = ?'),
    policy: db.prepare<[number], Policy>('SELECT * FROM vboxx_policies WHERE company_id = ?'),
    person: db.prepare<[number], Person>('SELECT * FROM vboxx_persons WHERE id = ?'),
    personByLogin: db.prepare<[string, string], Person>(
      'SELECT * FROM vboxx_persons WHERE username = ? OR email = ? ORDER BY username IS NULL LIMIT 1'),
    session: db.prepare<[string], { person_id: number }>('SELECT person_id FROM vboxx_sessions WHERE token_hash = ?'),
    addSession: db.prepare('INSERT INTO vboxx_sessions (token_hash, person_id, created) VALUES (?, ?, ?)'),
    root: db.prepare<[number], Root>('SELECT * FROM vboxx_roots WHERE id = ?'),
    machine: db.prepare<[number], Machine>('SELECT * FROM vboxx_machines WHERE id = ?'),
    node: db.prepare<[number, string], Node>('SELECT * FROM vboxx_nodes WHERE root_id = ? AND path = ?'),
    children: db.prepare<[number, string], Node>(
      'SELECT * FROM vboxx_nodes WHERE root_id = ? AND parent = ? ORDER BY name'),
    childrenRaw: db.prepare<[number, string], unknown[]>(
      'SELECT name, is_dir, bytes, mtime, client_mtime, rev FROM vboxx_nodes WHERE root_id = ? AND parent = ? ORDER BY name').raw(),
    upsertNode: db.prepare(
      `INSERT INTO vboxx_nodes (root_id, path, parent, name, is_dir, bytes, mtime, client_mtime, rev)
       VALUES (@root_id, @path, @parent, @name, @is_dir, @bytes, @mtime, @client_mtime, @rev)
       ON CONFLICT (root_id, path) DO UPDATE SET is_dir = excluded.is_dir, bytes = excluded.bytes,
       mtime = excluded.mtime, client_mtime = excluded.client_mtime, rev = excluded.rev`),
    addRevision: db.prepare('INSERT INTO vboxx_revisions (root_id, path, bytes, action, created) VALUES (?, ?, ?, ?, ?)'),
    rootUsage: db.prepare<[number], { s: number | null }>('SELECT SUM(bytes) AS s FROM vboxx_nodes WHERE root_id = ?'),
    rootFileCount: db.prepare<[number], { n: number }>('SELECT COUNT(*) AS n FROM vboxx_nodes WHERE root_id = ? AND is_dir = 0'),
    rootRevisionCount: db.prepare<[number], { n: number }>('SELECT COUNT(*) AS n FROM vboxx_revisions WHERE root_id = ?'),
    rootsOfCompany: db.prepare<[number], { id: number }>('SELECT id FROM vboxx_roots WHERE company_id = ?'),
    rootsOfPerson: db.prepare<[number], { id: number }>('SELECT id FROM vboxx_roots WHERE person_id = ?'),
    visibleRoots: db.prepare<[number, number], Root>(
      'SELECT * FROM vboxx_roots WHERE person_id = ? OR (dept_share = 1 AND company_id = ?) ORDER BY id'),
    addActivity: db.prepare(
      `INSERT INTO vboxx_activities (activity_type_id, actor_type, actor_text, actor_company_id, actor_machine_id,
        actor_person_id, action_text, acted_on_type, acted_on_text, acted_on_company_id, acted_on_machine_id,
        acted_on_person_id, acted_on_root_id, data_text, created)
       VALUES (@activity_type_id, @actor_type, @actor_text, @actor_company_id, @actor_machine_id, @actor_person_id,
        @action_text, @acted_on_type, @acted_on_text, @acted_on_company_id, @acted_on_machine_id,
        @acted_on_person_id, @acted_on_root_id, @data_text, @created)`),
    activityType: db.prepare<[number], { id: number; activity: string }>('SELECT * FROM vboxx_activity_types WHERE id = ?'),
    upload: db.prepare<[string], { id: string; person_id: number; offset: number; created: number; expires: number }>(
      'SELECT * FROM vboxx_uploads WHERE id = ?'),
    share: db.prepare<[string], { id: string; root_id: number; path: string; person_id: number; expires: number | null }>(
      'SELECT * FROM vboxx_shares WHERE id = ?'),
  };
}
export type Statements = ReturnType<typeof statements>;
