// Demo accounts, ensured on every start with --demo: the accounts exist with these passwords and
// their demo files exist (missing ones are recreated; files the user added or changed are kept).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { EmulatorContext } from '../context.js';
import { hashPassword, verifyPassword } from '../security.js';
import { getUserByEmail, pgTimestamp, userFolder, type MaxxoUser, type NewUser } from './store.js';

export const MAXXO_DEMO_ACCOUNTS = [
  { email: 'demo@maxxo.test', password: 'demo-password', fullname: 'Demo User' },
  { email: 'friend@maxxo.test', password: 'friend-password', fullname: 'Friend User' },
] as const;

/** 10 MiB of deterministic pseudo-random bytes (xorshift32), the same on every machine. */
export function demoBinary(size = 10 * 1024 * 1024, seed = 0x9e3779b9): Buffer {
  const words = new Uint32Array(size / 4);
  let x = seed >>> 0;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    words[i] = x;
  }
  return Buffer.from(words.buffer);
}

type Entry = string | Buffer | null; // null = folder

const DEMO_TREE: Record<string, () => Entry> = {
  'Welcome to Maxxo.txt': () => 'Welcome to your Maxxo demo account.\nThis folder is mounted by cloudmount.\n',
  'Documents/Café Menü.txt': () => 'Crème brûlée, Käsekuchen, Smørrebrød.\n',
  'Documents/Reports/2024/Quarterly report Q1.txt': () => 'Revenue went up.\n',
  'Documents/Reports/2024/numbers.csv': () => 'month,value\njan,1\nfeb,2\nmar,3\n',
  'Photos/Summer Trip/notes on the trip.txt': () => 'Sun, sea and sand.\n',
  'Empty Folder': () => null,
  'Large Files/random-10MiB.bin': () => demoBinary(),
};

const FRIEND_TREE: Record<string, () => Entry> = {
  'Hello from Friend.txt': () => 'Hi! These are the friend account\'s files.\n',
  'Projects/Ideas/ideas.md': () => '# Ideas\n\n- mount everything\n',
};

function ensureTree(base: string, tree: Record<string, () => Entry>): void {
  for (const [rel, make] of Object.entries(tree)) {
    const p = join(base, rel);
    if (existsSync(p)) continue;
    const content = make();
    if (content === null) mkdirSync(p, { recursive: true });
    else {
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p, content);
    }
  }
}

export async function ensureMaxxoDemo(ctx: EmulatorContext, create: (u: NewUser, passwordHash: string) => MaxxoUser): Promise<void> {
  // the hashes side by side (thread pool), then the accounts in their documented order
  const hashes = await Promise.all(MAXXO_DEMO_ACCOUNTS.map(async (a) => {
    const u = getUserByEmail(ctx.db, a.email);
    return u && await verifyPassword(a.password, u.password_hash) ? null : hashPassword(a.password);
  }));
  const users: MaxxoUser[] = [];
  MAXXO_DEMO_ACCOUNTS.forEach((a, i) => {
    let u = getUserByEmail(ctx.db, a.email);
    if (!u) u = create({ email: a.email, password: a.password, fullname: a.fullname }, hashes[i]!);
    else if (hashes[i]) ctx.db.prepare('UPDATE maxxo_users SET password_hash = ? WHERE id = ?').run(hashes[i], u.id);
    users.push(u);
  });
  const [demo, friend] = users as [MaxxoUser, MaxxoUser];
  ensureTree(userFolder(ctx, demo.login), DEMO_TREE);
  ensureTree(userFolder(ctx, friend.login), FRIEND_TREE);
  const link = ctx.db.prepare('INSERT OR IGNORE INTO maxxo_contacts (user_id, contact_id, created) VALUES (?, ?, ?)');
  link.run(demo.id, friend.id, pgTimestamp());
  link.run(friend.id, demo.id, pgTimestamp());
}
