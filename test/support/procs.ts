// Processes seen through /proc, for every suite that watches the drive's children.
import { readFileSync } from 'node:fs';

/** Running: not exited, and not a zombie its parent has yet to reap (dead for our purposes). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch { return false; }
}
