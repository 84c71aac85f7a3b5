// The kernel's mount table and the unmount helpers (fusermount3/fusermount, umount on macOS), for
// the FUSE backends, the CLI and the bench alike. Reading /proc/self/mountinfo never enters a
// mount, so even a hung FUSE mount cannot block these; unmounts run in child processes because
// this process may be the one serving the mount (an in-process umount could wait on itself).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { run, type RunResult } from './run.js';

const IS_MAC = process.platform === 'darwin';
const UNMOUNT_TIMEOUT_MS = 15_000;

export interface MountEntry {
  /** What was mounted (fsname), e.g. cloudmount:<account>. */
  source: string;
  /** The mountpoint, absolute. */
  target: string;
  /** e.g. fuse.cloudmount, ext4. */
  fstype: string;
  /** "major:minor" of the mount's device; for FUSE, minor names /sys/fs/fuse/connections/<minor>. */
  dev: string;
}

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** mountinfo: id parent major:minor root target options [optional fields...] - fstype source super */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (f.length < 7 || sep < 0) continue;
    out.push({ source: unescape(f[sep + 2] ?? ''), target: unescape(f[4]!), fstype: f[sep + 1] ?? '', dev: f[2]! });
  }
  return out;
}

/** Mount table entries, in mount order (Linux; empty elsewhere). */
export function mountTable(): MountEntry[] {
  try { return parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')); } catch { return []; }
}

/** mountTable() off the caller's thread (for periodic checks in a process serving a mount). */
export async function mountTableAsync(): Promise<MountEntry[]> {
  return parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8').catch(() => ''));
}

/** The mount on top at `target` (the last entry for it), if any. */
export function findMount(target: string, table: MountEntry[] = mountTable()): MountEntry | undefined {
  for (let i = table.length - 1; i >= 0; i--) if (table[i]!.target === target) return table[i];
  return undefined;
}

export async function findMountAsync(target: string): Promise<MountEntry | undefined> {
  return findMount(target, await mountTableAsync());
}

export function isMounted(target: string): boolean {
  return findMount(target) !== undefined;
}

export async function isMountedAsync(target: string): Promise<boolean> {
  return (await findMountAsync(target)) !== undefined;
}

/** fusermount3 where installed (it unmounts libfuse 2 mounts too), else fusermount. */
export function fusermountBin(): string {
  for (const b of ['/usr/bin/fusermount3', '/bin/fusermount3', '/usr/bin/fusermount', '/bin/fusermount']) if (existsSync(b)) return b;
  return 'fusermount';
}

/** Plain unmount: the kernel refuses it (EBUSY, "busy" in stderr) while a file or working folder is in use. */
export function cleanUnmount(mnt: string): Promise<RunResult> {
  if (IS_MAC) return run('umount', [mnt], { timeoutMs: UNMOUNT_TIMEOUT_MS });
  return run(fusermountBin(), ['-u', mnt], { timeoutMs: UNMOUNT_TIMEOUT_MS });
}

/** Lazy unmount: detaches now even a busy, hung or dead mount (umount -l as a root fallback). */
export async function lazyUnmount(mnt: string): Promise<RunResult> {
  if (IS_MAC) {
    const r = await run('diskutil', ['unmount', 'force', mnt], { timeoutMs: UNMOUNT_TIMEOUT_MS });
    return r.code === 0 ? r : run('umount', ['-f', mnt], { timeoutMs: UNMOUNT_TIMEOUT_MS });
  }
  const r = await run(fusermountBin(), ['-uz', mnt], { timeoutMs: UNMOUNT_TIMEOUT_MS });
  if (r.code !== 0 && process.getuid?.() === 0) return run('umount', ['-l', mnt], { timeoutMs: UNMOUNT_TIMEOUT_MS });
  return r;
}

/** lazyUnmount for the last moments of a process (exit handlers, a third Ctrl-C): blocks. */
export function lazyUnmountSync(mnt: string): void {
  if (IS_MAC) { spawnSync('umount', ['-f', mnt], { stdio: 'ignore', timeout: 10_000 }); return; }
  const r = spawnSync(fusermountBin(), ['-uz', mnt], { stdio: 'ignore', timeout: 10_000 });
  if (r.status !== 0 && process.getuid?.() === 0) spawnSync('umount', ['-l', mnt], { stdio: 'ignore', timeout: 10_000 });
}
