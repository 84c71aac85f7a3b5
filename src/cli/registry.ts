// Registry of live mounts: each mount process keeps <runDir>/<pid>.json (0600 in a 0700 dir)
// with what it mounts and a status snapshot refreshed every second; `unmount`, `status` and
// `share` read it. A file whose pid is dead is stale and removed by whoever sees it.
import { readdirSync, readFileSync, writeFileSync, renameSync, unlinkSync, chmodSync, realpathSync } from 'node:fs';
import { writeFile, rename, chmod } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { runDir, privateDir } from './paths.js';
import type { DriveStatus } from '../vfs/api.js';

export interface MountRecord {
  pid: number;
  mountpoint: string;
  kind: 'maxxo' | 'vboxx';
  /** Saved account name, when mounted by name. */
  name?: string;
  server: string;
  user: string;
  accountId: string;
  root?: string;
  readOnly: boolean;
  startedAt: string;
  updatedAt: string;
  /** 'mounting' until the kernel mount is live, then 'mounted'; 'unmounting' while flushing. */
  state: 'mounting' | 'mounted' | 'unmounting';
  status?: DriveStatus;
  /** Several mounts in one process (demo): file <pid>-<slot>.json. */
  slot?: number;
}

export function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

export function recordPath(pid: number, slot?: number): string {
  return join(runDir(), `${pid}${slot ? `-${slot}` : ''}.json`);
}

export function writeRecord(r: MountRecord): void {
  privateDir(runDir());
  const p = recordPath(r.pid, r.slot);
  const tmp = `${p}.tmp`;
  writeFileSync(tmp, JSON.stringify(r) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, p);
}

/**
 * The periodic refresh of a live mount's record: off the JS thread, and only when something but
 * the timestamp changed (or a minute passed). A synchronous replace-by-rename every second blocked
 * the FUSE loop behind the file system's journal commit: up to hundreds of ms per second while the
 * cache disk was busy (measured: 1.7 s of 15 s during a create benchmark).
 */
export class RecordWriter {
  private last = '';
  private lastAt = 0;
  private inflight = 0;
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly r: MountRecord) {}

  /** Periodic: skipped while a write runs or when nothing but the time changed. */
  refresh(): void {
    if (this.inflight > 0) return;
    const { updatedAt: _t, ...rest } = this.r;
    if (JSON.stringify(rest) === this.last && Date.now() - this.lastAt < 60_000) return;
    void this.write();
  }

  /** A state change: written after any write in flight, whatever changed. */
  write(): Promise<void> {
    this.inflight++;
    const run = this.chain.then(async () => {
      const now = Date.now();
      this.r.updatedAt = new Date(now).toISOString();
      const { updatedAt: _t, ...rest } = this.r;
      const key = JSON.stringify(rest);
      const p = recordPath(this.r.pid, this.r.slot);
      const tmp = `${p}.tmp`;
      await writeFile(tmp, JSON.stringify(this.r) + '\n', { mode: 0o600 });
      await chmod(tmp, 0o600);
      await rename(tmp, p);
      this.last = key;
      this.lastAt = now;
    }).catch(() => { /* the next refresh tries again */ }).finally(() => { this.inflight--; });
    this.chain = run;
    return run;
  }

  /** Resolves when no write is in flight (before the record is removed). */
  idle(): Promise<void> { return this.chain; }
}

export function removeRecord(pid: number, slot?: number): void {
  try { unlinkSync(recordPath(pid, slot)); } catch { /* already gone */ }
}

/** Live mounts; stale records (dead pid, unreadable) are removed on the way. */
export function listRecords(): MountRecord[] {
  const dir = runDir();
  let names: string[];
  try { names = readdirSync(dir); } catch { return []; }
  const outp: MountRecord[] = [];
  for (const n of names) {
    const m = /^(\d+)(?:-\d+)?\.json$/.exec(n);
    if (!m) continue;
    const pid = Number(m[1]);
    const p = join(dir, n);
    if (!alive(pid)) { try { unlinkSync(p); } catch { /* raced */ } continue; }
    try {
      const r = JSON.parse(readFileSync(p, 'utf8')) as MountRecord;
      if (r && r.pid === pid && typeof r.mountpoint === 'string') outp.push(r);
    } catch { /* being rewritten: the rename makes this rare; skip this round */ }
  }
  return outp.sort((a, b) => a.mountpoint.localeCompare(b.mountpoint));
}

export function readRecord(pid: number, slot?: number): MountRecord | undefined {
  try { return JSON.parse(readFileSync(recordPath(pid, slot), 'utf8')) as MountRecord; } catch { return undefined; }
}

/**
 * Absolute form of a mountpoint without touching the mount itself (a realpath through a hung
 * FUSE mount would block): resolve the parent only.
 */
export function canonicalMountpoint(p: string): string {
  const abs = resolve(p);
  const parent = resolve(abs, '..');
  const base = abs.slice(parent.length).replace(/^\//, '');
  let rp = parent;
  try { rp = realpathSync(parent); } catch { /* keep as is */ }
  return base ? join(rp, base) : rp;
}

export function findByMountpoint(mp: string): MountRecord | undefined {
  const want = canonicalMountpoint(mp);
  return listRecords().find((r) => r.mountpoint === want);
}

/** The live mount that holds `path` (longest mountpoint prefix), with the path inside it. */
export function findByPath(path: string): { rec: MountRecord; inner: string } | undefined {
  const abs = canonicalMountpoint(path);
  let best: MountRecord | undefined;
  for (const r of listRecords()) {
    if (abs === r.mountpoint || abs.startsWith(r.mountpoint.endsWith('/') ? r.mountpoint : r.mountpoint + '/')) {
      if (!best || r.mountpoint.length > best.mountpoint.length) best = r;
    }
  }
  if (!best) return undefined;
  const inner = abs.slice(best.mountpoint.length) || '/';
  return { rec: best, inner: inner.startsWith('/') ? inner : '/' + inner };
}
