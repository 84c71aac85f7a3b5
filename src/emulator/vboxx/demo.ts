// Demo data, ensured at every start with --demo: the accounts and their passwords are reset to the
// documented values; organizations, roots and trees are created only when missing, so a test's
// changes on a kept data dir survive a restart.
//   org 1 "vBoxx System" (slug vboxx-system): admin / admin-password (system admin), root "Files"
//   org 2 "Demo Organization" (slug demo-organization, parent 1): demo / demo-password (plain user),
//     roots "Files" (sync, the demo user's default) and "Team Share" (dept_share, type share),
//     a machine "demo-laptop" owned by demo.
//   Demo policy (both orgs): space_quota 10 GiB, max_file_size "1024" (MB), excluded_extensions ".exe".
import { writeFileSync } from 'node:fs';
import { hashPassword, verifyPassword } from '../security.js';
import type { Org, Person, Root } from './db.js';
import type { Vboxx } from './store.js';
import { isoMicro } from './util.js';

export const DEMO_POLICY = { space_quota: 10 * 1024 ** 3, max_file_size: '1024', excluded_extensions: '.exe' };

/** Deterministic pseudo-random bytes (xorshift32), so the demo binary is the same on every machine. */
export function demoBytes(size: number, seed = 0x2545f491): Buffer {
  const buf = Buffer.alloc(size);
  const words = Math.floor(size / 4);
  let x = seed >>> 0;
  for (let i = 0; i < words; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    buf.writeUInt32LE(x, i * 4);
  }
  for (let i = words * 4; i < size; i++) buf[i] = i & 0xff;
  return buf;
}

const DEMO_PASSWORDS: Record<string, string> = { admin: 'admin-password', demo: 'demo-password' };

export async function seedDemo(v: Vboxx): Promise<void> {
  const db = v.ctx.db;
  const now = isoMicro();
  // the password hashes first, side by side on the thread pool (null: the stored one still
  // verifies); the rest is one synchronous transaction
  const hashes = new Map(await Promise.all(Object.entries(DEMO_PASSWORDS).map(async ([username, password]) => {
    const p = db.prepare<[string], Person>('SELECT * FROM vboxx_persons WHERE username = ?').get(username);
    return [username, p && await verifyPassword(password, p.password_hash) ? null : await hashPassword(password)] as const;
  })));
  const ensureOrg = (slug: string, name: string, parent: number | null, email: string): Org => {
    let o = db.prepare<[string], Org>('SELECT * FROM vboxx_orgs WHERE slug = ?').get(slug);
    if (!o) {
      const id = Number(db.prepare(`INSERT INTO vboxx_orgs (parent_id, name, slug, email, hostname, created)
        VALUES (?, ?, ?, ?, 'localhost', ?)`).run(parent, name, slug, email, now).lastInsertRowid);
      o = v.st.org.get(id)!;
    }
    if (!v.st.policy.get(o.id)) {
      db.prepare(`INSERT INTO vboxx_policies (id, company_id, space_quota, max_file_size, excluded_extensions)
        VALUES (?, ?, ?, ?, ?)`).run(o.id, o.id, DEMO_POLICY.space_quota, DEMO_POLICY.max_file_size, DEMO_POLICY.excluded_extensions);
    }
    return o;
  };
  const ensurePerson = (username: string, org: Org, first: string, last: string, email: string,
    systemAdmin: boolean): Person => {
    let p = db.prepare<[string], Person>('SELECT * FROM vboxx_persons WHERE username = ?').get(username);
    const hash = hashes.get(username);
    if (!p) {
      const id = Number(db.prepare(`INSERT INTO vboxx_persons (company_id, username, email, first_name, last_name,
        password_hash, system_admin, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(org.id, username, email, first, last, hash, systemAdmin ? 1 : 0, now).lastInsertRowid);
      p = v.st.person.get(id)!;
    } else {
      db.prepare(`UPDATE vboxx_persons SET company_id = ?, system_admin = ?, site_admin = 0, password_hash = ? WHERE id = ?`)
        .run(org.id, systemAdmin ? 1 : 0, hash ?? p.password_hash, p.id);
      p = v.st.person.get(p.id)!;
    }
    return p;
  };
  const ensureRoot = (org: Org, owner: Person | null, name: string, dept: boolean, tree: (r: Root) => void): Root => {
    let r = db.prepare<[number, string, number, number | null], Root>(
      'SELECT * FROM vboxx_roots WHERE company_id = ? AND name = ? AND dept_share = ? AND person_id IS ? ORDER BY id LIMIT 1')
      .get(org.id, name, dept ? 1 : 0, owner?.id ?? null);
    if (!r) {
      const id = Number(db.prepare(`INSERT INTO vboxx_roots (company_id, person_id, name, dept_share, created)
        VALUES (?, ?, ?, ?, ?)`).run(org.id, owner?.id ?? null, name, dept ? 1 : 0, now).lastInsertRowid);
      r = v.st.root.get(id)!;
      v.ensureRootDir(r.id);
      tree(r);
    }
    v.ensureRootDir(r.id);
    if (owner && !dept && owner.default_root_id == null) {
      db.prepare('UPDATE vboxx_persons SET default_root_id = ? WHERE id = ?').run(r.id, owner.id);
    }
    return r;
  };
  const file = (r: Root, path: string, data: Buffer | string) => {
    v.mkdirs(r.id, path, false);
    const body = typeof data === 'string' ? Buffer.from(data) : data;
    writeFileSync(v.disk(r.id, path), body, { mode: 0o600 });
    const slash = path.lastIndexOf('/');
    v.st.upsertNode.run({ root_id: r.id, path, parent: slash >= 0 ? path.slice(0, slash) : '', name: path.slice(slash + 1),
      is_dir: 0, bytes: body.length, mtime: Date.now(), client_mtime: null, rev: v.newRev(r.id, path, body.length, 'put') });
  };

  db.transaction(() => {
    const sys = ensureOrg('vboxx-system', 'vBoxx System', null, 'admin@vboxx.test');
    const demoOrg = ensureOrg('demo-organization', 'Demo Organization', sys.id, 'demo@vboxx.test');
    const admin = ensurePerson('admin', sys, 'System', 'Admin', 'admin@vboxx.test', true);
    const demo = ensurePerson('demo', demoOrg, 'Demo', 'User', 'demo@vboxx.test', false);
    ensureRoot(sys, admin, 'Files', false, (r) => {
      file(r, 'admin-notes.txt', 'Notes of the system administrator.\n');
    });
    ensureRoot(demoOrg, demo, 'Files', false, (r) => {
      file(r, 'readme.txt', 'Welcome to the vBoxxCloud demo account.\n');
      file(r, 'documents/abc.txt', 'abc\n');
      file(r, 'documents/Café Menü.txt', 'Soupe du jour: 4,50 €\nCrème brûlée: 3,80 €\n');
      file(r, 'documents/projects/2024/plan.md', '# Plan\n\n- mount\n- sync\n');
      file(r, 'documents/projects/2024/notes with spaces.txt', 'spaces in names work\n');
      file(r, 'pictures/vBoxxCloud.jpg', demoBytes(1953, 7));
      file(r, 'Ünïcödé Földer/naïve résumé.txt', 'non-ASCII names\n');
      file(r, 'big/random-10MiB.bin', demoBytes(10 * 1024 * 1024));
      v.mkdirs(r.id, 'empty folder', true);
    });
    ensureRoot(demoOrg, null, 'Team Share', true, (r) => {
      file(r, 'welcome.txt', 'Shared with everyone in Demo Organization.\n');
      file(r, 'Shared Plans/roadmap.txt', 'Q1: cloudmount\n');
      v.mkdirs(r.id, 'Shared Plans/empty', true);
    });
    if (!db.prepare('SELECT 1 FROM vboxx_machines WHERE company_id = ? AND name = ?').get(demoOrg.id, 'demo-laptop')) {
      db.prepare('INSERT INTO vboxx_machines (company_id, person_id, name, created) VALUES (?, ?, ?, ?)')
        .run(demoOrg.id, demo.id, 'demo-laptop', now);
    }
  })();
  v.resetCaches();
}
