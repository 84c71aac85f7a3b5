// A chmod or utimens by inode number (libfuse 3 setattr) that waits (a lookup that goes to the
// server) while a rename gives the number's name to another file (an editor's write-temp-then-rename,
// `mv a b` while `chmod b` runs) or moves the number's own file to another name: the change is the
// number's file's, never the file that holds the name now. It was applied to the path the number
// named when setattr started, so the replacing file got the mode or mtime, and the metadata
// journalled for the server went to it too.
import test, { type ExecutionContext } from 'ava';
import { setup, O_CREAT, O_WRONLY } from './helpers.js';
import { until } from '../support/wait.js';
import type { SetAttrChanges } from '../../src/vfs/api.js';

const T0 = Date.UTC(2020, 0, 1);
const T1 = Date.UTC(2001, 1, 3, 4, 5, 6);

const code = async (p: Promise<unknown>) => {
  try { await p; return 'OK'; } catch (e) { return (e as { code?: string }).code ?? String(e); }
};

type S = Awaited<ReturnType<typeof setup>>;
type Ino = S['vfs']['inodes'];

function node(remote: unknown, path: string): { mtimeMs: number; mode?: number; data: Buffer } | undefined {
  return (remote as { nodes: Map<string, { mtimeMs: number; mode?: number; data: Buffer }> }).nodes.get(path);
}

/**
 * The nth lookup of path from now on waits until release(), as one whose cached entry ran out
 * waits for the server; it then answers what the drive holds at path by that time.
 */
function holdLookup(vfs: unknown, path: string, nth: number): { held: () => boolean; release: () => void } {
  const lookups = (vfs as { lookups: { lookup(p: string): Promise<unknown> } }).lookups;
  const lookup = lookups.lookup.bind(lookups);
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  let seen = 0;
  let waiting = false;
  lookups.lookup = async (p) => {
    if (p === path && ++seen === nth) {
      lookups.lookup = lookup;
      waiting = true;
      await gate;
    }
    return lookup(p);
  };
  return { held: () => waiting, release };
}

/** A new version written to /d/f.tmp and closed (mode 0644). */
async function tempVersion(ino: Ino, dir: number): Promise<void> {
  const c = await ino.create(dir, 'f.tmp', 0o644, O_CREAT | O_WRONLY);
  await ino.write(c.fh, Buffer.from('TWO'), 3, 0);
  await ino.flush(c.fh);
  await ino.release(c.fh);
}

interface Case {
  name: string;
  /** which of its waits the rename lands in */
  at: string;
  change: SetAttrChanges;
  /** which lookup of the name waits: setTimes looks twice (the entry, then the atime it shows) */
  nth: number;
  /** the change shows in these attributes */
  applied(a: { perm: number; mtimeMs: number }): boolean;
  /** the change reached the server for this file */
  sent(n: { mtimeMs: number; mode?: number }): boolean;
}

const cases: Case[] = [
  { name: 'chmod', at: 'its lookup', change: { mode: 0o600 }, nth: 1, applied: (a) => a.perm === 0o600, sent: (n) => n.mode === 0o600 },
  { name: 'utimens (mtime)', at: 'its lookup', change: { mtime: T1 }, nth: 1, applied: (a) => a.mtimeMs === T1, sent: (n) => n.mtimeMs === T1 },
  { name: 'utimens (mtime)', at: 'the lookup of the atime it keeps', change: { mtime: T1 }, nth: 2, applied: (a) => a.mtimeMs === T1, sent: (n) => n.mtimeMs === T1 },
];

async function start(t: ExecutionContext): Promise<{ s: S; ino: Ino; d: number; f: number }> {
  const s = await setup(t, { keepsAttrs: true }, { writebackDelayMs: 60_000 });
  s.remote.putFile('/d/f', 'one', T0);
  const ino = s.vfs.inodes;
  const d = await ino.lookup(1, 'd');
  const f = await ino.lookup(d.ino, 'f');
  return { s, ino, d: d.ino, f: f.ino };
}

/** The case's setattr of f, started and waiting at the case's lookup of /d/f (release() lets it go). */
async function heldSetattr(s: S, ino: Ino, f: number, c: Case) {
  const gate = holdLookup(s.vfs, '/d/f', c.nth);
  const setting = ino.setattr(f, c.change);
  setting.catch(() => {});
  await until(() => gate.held(), 'the setattr waits at its lookup');
  return { setting, release: gate.release };
}

for (const c of cases) {
  test(`${c.name} by number waiting (${c.at}) while a rename replaces its name: the replacing file keeps its mode and mtime`, async (t) => {
    const { s, ino, d, f } = await start(t);
    await tempVersion(ino, d);
    const gate = await heldSetattr(s, ino, f, c);
    const setting = gate.setting;
    await ino.rename(d, 'f.tmp', d, 'f');
    gate.release();
    const got = await code(setting);
    t.log(`setattr: ${got}`);
    if (got === 'OK') {
      // the number's own file (named nothing now) may have taken it
      const a = await setting;
      t.is(a.ino, f);
      t.true(c.applied(a));
    } else {
      t.is(got, 'NOT_FOUND');
    }
    const f2 = await ino.lookup(d, 'f');
    t.not(f2.ino, f);
    t.false(c.applied(f2), 'the replacing file is untouched');
    t.is(f2.perm, 0o644);
    t.not(f2.mtimeMs, T1);
    t.is((await s.vfs.flushAll()).pending, 0);
    const n = node(s.remote, '/d/f')!;
    t.is(n.data.toString(), 'TWO');
    t.false(c.sent(n), 'nothing of the change reached the server for the replacing file');
  });

  test(`${c.name} by number waiting (${c.at}) while its file is renamed: the change lands at the new name`, async (t) => {
    const { s, ino, d, f } = await start(t);
    const gate = await heldSetattr(s, ino, f, c);
    const setting = gate.setting;
    await ino.rename(d, 'f', d, 'g');
    gate.release();
    t.is(await code(setting), 'OK');
    const a = await setting;
    t.is(a.ino, f);
    t.true(c.applied(a));
    const g = await ino.lookup(d, 'g');
    t.is(g.ino, f);
    t.true(c.applied(g));
    t.is((await s.vfs.flushAll()).pending, 0);
    t.false(s.remote.has('/d/f'));
    const n = node(s.remote, '/d/g')!;
    t.is(n.data.toString(), 'one');
    t.true(c.sent(n), 'the server has the change for the renamed file');
  });
}
