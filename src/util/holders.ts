// Which processes keep a mount busy, as fuser -vm shows them: open files (from /proc/PID/fd),
// working and root folders inside the mountpoint. Reading the links never enters the mount
// itself (the kernel prints the path it keeps), so a hung mount cannot block this.
import { promises as fsp } from 'node:fs';

export interface Holder {
  pid: number;
  command: string;
  /** Paths inside the mount (absolute), with what holds them. */
  uses: { path: string; how: 'read' | 'write' | 'cwd' | 'root' }[];
}

const O_ACCMODE = 3;

function inside(target: string, mp: string): boolean {
  const t = target.replace(/ \(deleted\)$/, '');
  return t === mp || t.startsWith(mp.endsWith('/') ? mp : mp + '/');
}

/** Processes (other than `exclude`) using files under mountpoint; [] where /proc is missing. */
export async function mountHolders(mountpoint: string, exclude: number[] = [process.pid]): Promise<Holder[]> {
  let pids: string[];
  try { pids = (await fsp.readdir('/proc')).filter((n) => /^\d+$/.test(n)); } catch { return []; }
  const out: Holder[] = [];
  await Promise.all(pids.map(async (p) => {
    const pid = Number(p);
    if (exclude.includes(pid)) return;
    const uses: Holder['uses'] = [];
    for (const how of ['cwd', 'root'] as const) {
      const l = await fsp.readlink(`/proc/${p}/${how}`).catch(() => '');
      if (l && inside(l, mountpoint) && !(how === 'root' && l === '/')) uses.push({ path: l, how });
    }
    const fds = await fsp.readdir(`/proc/${p}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const l = await fsp.readlink(`/proc/${p}/fd/${fd}`).catch(() => '');
      if (!l || !inside(l, mountpoint)) continue;
      const info = await fsp.readFile(`/proc/${p}/fdinfo/${fd}`, 'utf8').catch(() => '');
      const flags = /^flags:\s*([0-7]+)/m.exec(info);
      const write = flags ? (parseInt(flags[1]!, 8) & O_ACCMODE) !== 0 : false;
      uses.push({ path: l.replace(/ \(deleted\)$/, ''), how: write ? 'write' : 'read' });
    }
    if (!uses.length) return;
    const command = (await fsp.readFile(`/proc/${p}/comm`, 'utf8').catch(() => '?')).trim();
    out.push({ pid, command, uses });
  }));
  return out.sort((a, b) => a.pid - b.pid);
}

/** One line per process: "pid 123 (python3): /m/open.txt (open for writing), cwd /m/docs". */
export function describeHolders(holders: Holder[]): string[] {
  const how = { read: 'open', write: 'open for writing', cwd: 'working folder', root: 'root folder' };
  return holders.map((h) => `pid ${h.pid} (${h.command}): ` +
    [...new Set(h.uses.map((u) => `${u.path} (${how[u.how]})`))].join(', '));
}
