// One process of the model-based random test (test/e2e/model.test.ts): reads a WorkerConfig as
// JSON on stdin, runs a seeded random sequence of file operations on a mounted drive with
// synchronous fs calls (this process never serves a mount, so blocking on one is fine), checks
// every result and errno against its own PosixModel, and prints one WorkerResult JSON line.
//
// It works only inside `base` of the model (its own subtree), so other processes running at the
// same time cannot make its model ambiguous. Lines appended to the shared logs are the one
// exception: they commute, and the test checks them after the run.
import fs, { constants as C } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { prng, type Rng } from '../helpers/random.js';
import { Fail, PosixModel, metaOf, type FileMeta, type Handle, type OpenFlags, type Snap, type Stat, type TimeRange } from './posix.js';

export interface WorkerConfig {
  /** Names the process in logs and in the lines it appends ('p0', 'x', ...). */
  id: string;
  seed: number;
  /** Absolute folder of the mount the model's root stands for. */
  root: string;
  /** The model's starting tree (relative to root). */
  snapshot: Snap;
  /** Subtree of the model this process may touch ('' = all of it). Never removed or renamed itself. */
  base: string;
  ops: number;
  /** Absolute paths of shared append-only logs. */
  shared: string[];
  /** A pause long enough for the drive's write-back to upload what was closed before it. */
  waitMs: number;
  /**
   * The mount runs on libfuse 2 (fuse-native), whose high-level API finds an open file by its
   * path: once the folder of an unlinked open file were removed or replaced, ops on that handle
   * would fail ENOENT before they reach the drive (native-notes/fuse.md). So the drive answers
   * EBUSY to rmdir of such a folder and to a rename over it while the file is open; the model
   * expects exactly that where it would have let the folder go (see busyFolder).
   */
  pathBoundHandles?: boolean;
  /**
   * The mount's utimens takes the atime for both times (fuse-native, native-notes/fuse.md): the
   * worker's utimes then passes its mtime in both, so that the mtime asked is the one set.
   */
  atimeInBothSlots?: boolean;
}

export interface WorkerResult {
  id: string;
  seed: number;
  ok: boolean;
  failure?: string;
  log: string[];
  snapshot: Snap;
  /** Per shared log: the lines this process appended, in its order. */
  appended: Record<string, string[]>;
  counts: Record<string, number>;
}

type FlagName = 'r' | 'rw' | 'creat-rw' | 'creat-excl' | 'creat-trunc' | 'append' | 'append-rw';
const FLAGS: Record<FlagName, { os: number; m: OpenFlags }> = {
  r: { os: C.O_RDONLY, m: { read: true, write: false } },
  rw: { os: C.O_RDWR, m: { read: true, write: true } },
  'creat-rw': { os: C.O_RDWR | C.O_CREAT, m: { read: true, write: true, creat: true } },
  'creat-excl': { os: C.O_RDWR | C.O_CREAT | C.O_EXCL, m: { read: true, write: true, creat: true, excl: true } },
  'creat-trunc': { os: C.O_WRONLY | C.O_CREAT | C.O_TRUNC, m: { read: false, write: true, creat: true, trunc: true } },
  append: { os: C.O_WRONLY | C.O_CREAT | C.O_APPEND, m: { read: false, write: true, creat: true, append: true } },
  'append-rw': { os: C.O_RDWR | C.O_CREAT | C.O_APPEND, m: { read: true, write: true, creat: true, append: true } },
};

/** A handle reference: its number, or the name a planned sequence bound it to. */
type HRef = number | string;
export type Op =
  | { op: 'open'; path: string; flags: FlagName; bind?: string }
  | { op: 'write'; h: HRef; pos: number | null; len: number; seed: number }
  | { op: 'read'; h: HRef; pos: number | null; len: number }
  | { op: 'ftruncate'; h: HRef; len: number }
  | { op: 'fstat'; h: HRef }
  | { op: 'fsync'; h: HRef }
  | { op: 'close'; h: HRef }
  | { op: 'readfile'; path: string }
  | { op: 'truncate'; path: string; len: number }
  | { op: 'stat'; path: string }
  | { op: 'readdir'; path: string }
  | { op: 'mkdir'; path: string }
  | { op: 'rmdir'; path: string }
  | { op: 'unlink'; path: string }
  | { op: 'rename'; from: string; to: string }
  | { op: 'shappend'; path: string; len: number; seed: number }
  | { op: 'wait' }
  | { op: 'logline'; log: number; keepOpen: boolean }
  // mtime in seconds (frac: the call passes a fraction more, which whole-second times drop)
  | { op: 'utimes'; path: string; mtime: number; frac: number }
  | { op: 'futimes'; h: HRef; mtime: number; frac: number }
  | { op: 'chmod'; path: string; mode: number }
  | { op: 'fchmod'; h: HRef; mode: number };

/** Modes the generator sets: each keeps the owner's read and write, so no open is refused. */
const MODES = [0o644, 0o600, 0o755, 0o700, 0o640, 0o744, 0o664, 0o775, 0o754, 0o611];

/** A file's mode and mtime (whole seconds) as stat shows them. */
export interface SeenMeta { mtime: number; mode: number }

export const seenMeta = (s: fs.Stats): SeenMeta => ({ mtime: Math.floor(s.mtimeMs / 1000), mode: s.mode & 0o7777 });

const showRange = (r: TimeRange) => (r[0] === r[1] ? `${r[0]}` : `${r[0]}..${r[1]}`);

/** null when what stat shows fits the model; else what differs. */
export function metaDiff(want: FileMeta, got: SeenMeta, mode: (m: number) => number | null = (m) => m): string | null {
  const out: string[] = [];
  const wm = mode(want.mode);
  if (wm !== null && wm !== got.mode) out.push(`mode: model ${wm.toString(8)}, actual ${got.mode.toString(8)}`);
  if (want.mtime && (got.mtime < want.mtime[0] || got.mtime > want.mtime[1])) {
    out.push(`mtime: model ${showRange(want.mtime)}, actual ${got.mtime} (${got.mtime < want.mtime[0] ? want.mtime[0] - got.mtime : got.mtime - want.mtime[1]} s ${got.mtime < want.mtime[0] ? 'early' : 'late'})`);
  }
  return out.length ? out.join('; ') : null;
}

type Outcome<T> = { ok: true; v: T } | { ok: false; codes: string[] };

class Mismatch extends Error {}

/** Deterministic bytes: the log names the seed, so a failing write can be rebuilt exactly. */
export function bytesOf(seed: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = (seed >>> 0) || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

function model<T>(f: () => T): Outcome<T> {
  try {
    return { ok: true, v: f() };
  } catch (e) {
    if (e instanceof Fail) return { ok: false, codes: e.codes };
    throw e;
  }
}

function real<T>(f: () => T): Outcome<T> {
  try {
    return { ok: true, v: f() };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (!code) throw e;
    return { ok: false, codes: [code] };
  }
}

const show = (o: Outcome<unknown>) => (o.ok ? 'OK' : o.codes.join('|'));

function describeBytes(want: Buffer, got: Buffer): string {
  let i = 0;
  while (i < want.length && i < got.length && want[i] === got[i]) i++;
  const nul = (b: Buffer) => b.reduce((n, x) => n + (x === 0 ? 1 : 0), 0);
  const hex = (b: Buffer) => b.subarray(i, i + 16).toString('hex');
  return `model ${want.length} bytes (${nul(want)} NUL), actual ${got.length} bytes (${nul(got)} NUL), ` +
    `first difference at offset ${i}: model ${hex(want) || '(end)'} / actual ${hex(got) || '(end)'}`;
}

export class Worker {
  readonly m: PosixModel;
  readonly rng: Rng;
  readonly log: string[] = [];
  readonly counts: Record<string, number> = {};
  readonly appended: Record<string, string[]> = {};
  private handles = new Map<number, { fd: number; mh: Handle; path: string; flags: FlagName }>();
  private bound = new Map<string, number>();
  private nextHandle = 1;
  private plan: Op[] = [];
  private logFds = new Map<number, number>();
  private lineSeq = 0;
  private uniq = 0;

  constructor(readonly cfg: WorkerConfig) {
    // The model's create mode is 0666 under this umask (CREATE_MODE).
    process.umask(0o022);
    this.m = PosixModel.fromSnap(cfg.snapshot);
    this.rng = prng(cfg.seed);
    for (const s of cfg.shared) this.appended[s] = [];
  }

  // ---- choices -------------------------------------------------------------------------------

  private int(n: number): number { return Math.floor(this.rng() * n); }
  private pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]!; }
  private chance(p: number): boolean { return this.rng() < p; }

  private inBase(p: string): boolean {
    return this.cfg.base === '' || p.startsWith(this.cfg.base + '/');
  }

  private tree() {
    const { files, dirs } = this.m.paths();
    const f = files.filter((p) => this.inBase(p));
    const d = dirs.filter((p) => this.inBase(p));
    return { files: f, dirs: d, parents: [this.cfg.base, ...d] };
  }

  // A small shared pool of names makes collisions (EEXIST, EISDIR, ENOTDIR, replace) common.
  private static NAMES = ['a', 'b', 'c', 'd', 'e', 'f.txt', 'g.txt'];

  private join(dir: string, name: string): string { return dir ? `${dir}/${name}` : name; }

  private newPath(): string {
    const { parents } = this.tree();
    return this.join(this.pick(parents), this.pick(Worker.NAMES));
  }

  /** A path that fails to resolve: below a file (ENOTDIR) or below a missing folder (ENOENT). */
  private badPath(): string {
    const { files, parents } = this.tree();
    if (files.length && this.chance(0.5)) return `${this.pick(files)}/x`;
    return this.join(this.pick(parents), 'missing/x');
  }

  private existingFile(): string {
    const { files } = this.tree();
    if (files.length && this.chance(0.85)) return this.pick(files);
    return this.chance(0.8) ? this.newPath() : this.badPath();
  }

  private existingDir(): string {
    const { dirs } = this.tree();
    if (dirs.length && this.chance(0.85)) return this.pick(dirs);
    return this.chance(0.8) ? this.newPath() : this.badPath();
  }

  private anyPath(): string {
    const { files, dirs } = this.tree();
    const all = [...files, ...dirs];
    if (all.length && this.chance(0.6)) return this.pick(all);
    return this.chance(0.9) ? this.newPath() : this.badPath();
  }

  private size(): number {
    const r = this.rng();
    if (r < 0.55) return 1 + this.int(512);
    if (r < 0.9) return 1 + this.int(16 * 1024);
    if (r < 0.98) return 1 + this.int(140 * 1024);
    return 1 + this.int(400 * 1024);
  }

  private seed(): number { return 1 + this.int(0x7fffffff); }

  /** The next operation: the rest of a planned sequence first, else a fresh random one. */
  next(): Op {
    const planned = this.plan.shift();
    if (planned) return planned;
    const open = [...this.handles.keys()];
    const writable = open.filter((h) => this.handles.get(h)!.mh.flags.write);
    if (open.length > 8) return { op: 'close', h: this.pick(open) };
    if (this.chance(0.08)) return this.metaOp(open);
    const r = this.int(100);
    if (r < 12) {
      const flags = this.pick<FlagName>(['r', 'rw', 'creat-rw', 'creat-excl', 'creat-trunc', 'creat-trunc', 'append', 'append-rw']);
      let p = flags === 'r' || flags === 'rw' ? this.existingFile() : this.chance(0.5) ? this.existingFile() : this.newPath();
      // Read-only opens of folders succeed and are outside the model.
      if (flags === 'r' && this.m.lookup(p)?.kind === 'dir') p = this.badPath();
      return { op: 'open', path: p, flags };
    }
    if (r < 28 && writable.length) {
      const h = this.pick(writable);
      const e = this.handles.get(h)!;
      const size = e.mh.node.data.length;
      const pos = e.mh.flags.append || this.chance(0.4) ? null : this.int(size + (this.chance(0.2) ? 20_000 : 1));
      return { op: 'write', h, pos, len: this.size(), seed: this.seed() };
    }
    if (r < 36 && open.length) {
      const h = this.pick(open);
      const size = this.handles.get(h)!.mh.node.data.length;
      return { op: 'read', h, pos: this.chance(0.3) ? null : this.int(size + 10), len: 1 + this.int(Math.max(1, size + 100)) };
    }
    if (r < 41) return { op: 'readfile', path: this.existingFile() };
    if (r < 44 && writable.length) {
      const h = this.pick(open);
      return { op: 'ftruncate', h, len: this.int(this.handles.get(h)!.mh.node.data.length + 3000) };
    }
    if (r < 47) return { op: 'truncate', path: this.existingFile(), len: this.int(30_000) };
    if (r < 50) return open.length && this.chance(0.5) ? { op: 'fstat', h: this.pick(open) } : { op: 'stat', path: this.anyPath() };
    if (r < 55 && open.length) return { op: 'fsync', h: this.pick(open) };
    if (r < 62 && open.length) return { op: 'close', h: this.pick(open) };
    if (r < 70) return { op: 'rename', from: this.anyPath(), to: this.chance(0.5) ? this.anyPath() : this.newPath() };
    if (r < 75) return { op: 'unlink', path: this.existingFile() };
    if (r < 81) return { op: 'mkdir', path: this.chance(0.85) ? this.newPath() : this.badPath() };
    if (r < 85) return { op: 'rmdir', path: this.existingDir() };
    if (r < 90) return { op: 'readdir', path: this.chance(0.9) ? this.pick(this.tree().parents) : this.anyPath() };
    if (r < 91) return { op: 'shappend', path: this.existingFile(), len: 1 + this.int(300), seed: this.seed() };
    if (r < 92) return { op: 'wait' };
    if (r < 94) return this.planSave();
    if (r < 96) return this.planReplaceThenDelete();
    // Rare while other processes run: when it kills the mount it hides every other finding of
    // the sequence; the sequential phase (base '') does it more often.
    if (r < 97 && (this.cfg.base === '' || this.chance(0.25))) return this.planOrphan();
    if (this.cfg.shared.length) return { op: 'logline', log: this.int(this.cfg.shared.length), keepOpen: this.chance(0.6) };
    return { op: 'stat', path: this.anyPath() };
  }

  /** Times and modes: utimes/futimes (cp -p, tar, rsync -t, touch -d) and chmod/fchmod. */
  private metaOp(open: number[]): Op {
    const r = this.rng();
    const mtime = 1_000_000_000 + this.int(900_000_000);
    const frac = this.chance(0.25) ? 0.25 + this.int(50) / 100 : 0;
    if (r < 0.2 && open.length) return { op: 'futimes', h: this.pick(open), mtime, frac };
    if (r < 0.55) return { op: 'utimes', path: this.anyPath(), mtime, frac };
    if (r < 0.75 && open.length) return { op: 'fchmod', h: this.pick(open), mode: this.pick(MODES) };
    let p = this.existingFile();
    // chmod of folders is outside the model
    if (this.m.lookup(p)?.kind === 'dir') p = this.badPath();
    return { op: 'chmod', path: p, mode: this.pick(MODES) };
  }

  /**
   * The editor's save: write name.tmp, rename it over name, then (often) unlink or rename the
   * result away. The target was usually made durable first, so the server has the old content
   * the replace must hide for good.
   */
  private planSave(): Op {
    const target = this.existingFile();
    const dir = path.posix.dirname(target) === '.' ? '' : path.posix.dirname(target);
    const tmp = `${target}.tmp`;
    const s = this.seed();
    const ops: Op[] = [];
    if (this.chance(0.5)) ops.push({ op: 'wait' });
    else ops.push({ op: 'open', path: target, flags: 'rw', bind: 'old' }, { op: 'fsync', h: 'old' }, { op: 'close', h: 'old' });
    ops.push({ op: 'open', path: tmp, flags: 'creat-trunc', bind: 'tmp' }, { op: 'write', h: 'tmp', pos: null, len: this.size(), seed: s });
    if (this.chance(0.3)) ops.push({ op: 'fsync', h: 'tmp' });
    ops.push({ op: 'close', h: 'tmp' }, { op: 'rename', from: tmp, to: target });
    const after = this.rng();
    if (after < 0.35) ops.push({ op: 'unlink', path: target });
    else if (after < 0.7) ops.push({ op: 'rename', from: target, to: this.newPath() });
    else ops.push({ op: 'readfile', path: target });
    if (this.chance(0.5)) ops.push({ op: 'readdir', path: dir });
    if (this.chance(0.4) && dir !== this.cfg.base && this.inBase(dir)) ops.push({ op: 'rmdir', path: dir });
    this.plan.push(...ops.slice(1));
    return ops[0]!;
  }

  /** Issue 10's second case, in a folder of its own: uploaded file, replaced, then deleted or moved. */
  private planReplaceThenDelete(): Op {
    const dir = this.join(this.pick(this.tree().parents), `r${this.cfg.id}-${this.uniq++}`);
    const f = `${dir}/f.txt`;
    const ops: Op[] = [
      { op: 'mkdir', path: dir },
      { op: 'open', path: f, flags: 'creat-trunc', bind: 'o' },
      { op: 'write', h: 'o', pos: null, len: 4 + this.int(64), seed: this.seed() },
      { op: 'close', h: 'o' },
      this.chance(0.5) ? { op: 'wait' } : { op: 'stat', path: f },
      { op: 'open', path: `${f}.tmp`, flags: 'creat-trunc', bind: 't' },
      { op: 'write', h: 't', pos: null, len: 4 + this.int(64), seed: this.seed() },
      { op: 'close', h: 't' },
      { op: 'rename', from: `${f}.tmp`, to: f },
    ];
    if (this.chance(0.5)) ops.push({ op: 'unlink', path: f }, { op: 'readdir', path: dir }, { op: 'rmdir', path: dir });
    else ops.push({ op: 'rename', from: f, to: `${dir}/g.txt` }, { op: 'readdir', path: dir });
    // The wait above must follow a close that made the file durable: fsync instead, half the time.
    if (ops[4]!.op === 'stat') ops.splice(3, 0, { op: 'fsync', h: 'o' });
    this.plan.push(...ops.slice(1));
    return ops[0]!;
  }

  /** A file open while its name and then its folder go away: the handle must keep working. */
  private planOrphan(): Op {
    const dir = this.join(this.pick(this.tree().parents), `o${this.cfg.id}-${this.uniq++}`);
    const f = `${dir}/f`;
    const ops: Op[] = [
      { op: 'mkdir', path: dir },
      { op: 'open', path: f, flags: 'creat-rw', bind: 'u' },
      { op: 'write', h: 'u', pos: null, len: this.size(), seed: this.seed() },
      this.chance(0.5) ? { op: 'fsync', h: 'u' } : { op: 'wait' },
      { op: 'unlink', path: f },
      { op: 'rmdir', path: dir },
      { op: 'write', h: 'u', pos: 3, len: 1 + this.int(5000), seed: this.seed() },
      { op: 'ftruncate', h: 'u', len: this.int(6000) },
      { op: 'read', h: 'u', pos: 0, len: 8000 },
      { op: 'fstat', h: 'u' },
      { op: 'close', h: 'u' },
    ];
    this.plan.push(...ops.slice(1));
    return ops[0]!;
  }

  // ---- execution -----------------------------------------------------------------------------

  private abs(p: string): string { return path.join(this.cfg.root, p); }

  private handle(h: HRef) {
    const n = typeof h === 'number' ? h : this.bound.get(h);
    const e = n === undefined ? undefined : this.handles.get(n);
    return e ? { n: n!, ...e } : undefined;
  }

  private describe(op: Op): string {
    const h = (r: HRef) => {
      const e = this.handle(r);
      return e ? `h${e.n}[${e.path} ${e.flags}]` : `h(${r}, not open)`;
    };
    switch (op.op) {
      case 'open': return `open ${op.path} ${op.flags}`;
      case 'write': return `write ${h(op.h)} ${op.pos === null ? 'at pos' : `@${op.pos}`} len ${op.len} seed ${op.seed}`;
      case 'read': return `read ${h(op.h)} ${op.pos === null ? 'at pos' : `@${op.pos}`} len ${op.len}`;
      case 'ftruncate': return `ftruncate ${h(op.h)} ${op.len}`;
      case 'fstat': case 'fsync': case 'close': return `${op.op} ${h(op.h)}`;
      case 'truncate': return `truncate ${op.path} ${op.len}`;
      case 'rename': return `rename ${op.from} -> ${op.to}`;
      case 'shappend': return `sh: printf >> ${op.path} len ${op.len} seed ${op.seed}`;
      case 'wait': return `wait ${this.cfg.waitMs} ms`;
      case 'logline': return `append a line to ${this.cfg.shared[op.log]} (${op.keepOpen ? 'kept-open fd' : 'open, write, close'})`;
      case 'utimes': return `utimes ${op.path} mtime ${op.mtime + op.frac}`;
      case 'futimes': return `futimes ${h(op.h)} mtime ${op.mtime + op.frac}`;
      case 'chmod': return `chmod ${op.path} ${op.mode.toString(8)}`;
      case 'fchmod': return `fchmod ${h(op.h)} ${op.mode.toString(8)}`;
      default: return `${op.op} ${op.path}`;
    }
  }

  /** Compares outcomes; values with `eq` (bytes, names, stats). */
  /**
   * The model's outcome of an op that removes or replaces the folder dir (null: none), applied to
   * the model unless the drive must refuse it: with pathBoundHandles, a folder the model would let
   * go while a handle opened in it is open can hold only files deleted while open (a linked one
   * would make it non-empty), and the drive answers EBUSY for them (WorkerConfig.pathBoundHandles).
   */
  private unlessBusy(dir: string | null, op: (m: PosixModel) => void): Outcome<void> {
    const busy = dir !== null && !!this.cfg.pathBoundHandles && [...this.handles.values()].some((e) => e.path.startsWith(dir + '/'));
    if (busy && model(() => op(PosixModel.fromSnap(this.m.snap()))).ok) return { ok: false, codes: ['EBUSY'] };
    return model(() => op(this.m));
  }

  private check<T, U = T>(what: string, want: Outcome<T>, got: Outcome<U>, eq: (a: T, b: U) => string | null = () => null): void {
    if (want.ok !== got.ok || (!want.ok && !got.ok && !want.codes.some((c) => got.codes.includes(c)))) {
      throw new Mismatch(`${what}: model ${show(want)}, actual ${show(got)}`);
    }
    if (want.ok && got.ok) {
      const d = eq(want.v, got.v);
      if (d) throw new Mismatch(`${what}: ${d}`);
    }
  }

  /** The atime and mtime a utimes/futimes passes (see WorkerConfig.atimeInBothSlots). */
  private times(op: { mtime: number; frac: number }): [number, number] {
    const mt = op.mtime + op.frac;
    return [this.cfg.atimeInBothSlots ? mt : mt + 86_400, mt];
  }

  private readFully(fd: number, len: number, pos: number | null): Buffer {
    const buf = Buffer.alloc(len);
    let off = 0;
    while (off < len) {
      const n = fs.readSync(fd, buf, off, len - off, pos === null ? null : pos + off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  }

  private writeFully(fd: number, b: Buffer, pos: number | null): number {
    let off = 0;
    while (off < b.length) off += fs.writeSync(fd, b, off, b.length - off, pos === null ? null : pos + off);
    return off;
  }

  /**
   * Runs one op on the drive and on the model; throws Mismatch when they disagree. The files it
   * changed get the window of wall-clock seconds around the call as their mtime (50 ms of slack
   * each side for the clocks' granularity).
   */
  exec(op: Op): string {
    this.m.clearTouched();
    const t0 = Date.now();
    const r = this.execOp(op);
    this.m.stamp([Math.floor((t0 - 50) / 1000), Math.floor((Date.now() + 50) / 1000)]);
    return r;
  }

  private execOp(op: Op): string {
    const bytesEq = (a: Buffer, b: Buffer) => (a.equals(b) ? null : describeBytes(a, b));
    const statEq = (a: Stat, b: Stat) => (JSON.stringify(a) === JSON.stringify(b) ? null : `model ${JSON.stringify(a)}, actual ${JSON.stringify(b)}`);
    const realStat = (s: fs.Stats): Stat => (s.isDirectory() ? { type: 'dir' } : { type: 'file', size: s.size });
    const needHandle = (r: HRef) => {
      const e = this.handle(r);
      if (!e) throw new Error(`worker: op on handle ${r}, which is not open (a plan step failed without a mismatch?)`);
      return e;
    };
    let out: Outcome<unknown>;
    switch (op.op) {
      case 'open': {
        const want = model(() => this.m.open(op.path, FLAGS[op.flags].m));
        const got = real(() => fs.openSync(this.abs(op.path), FLAGS[op.flags].os));
        if (got.ok && !want.ok) fs.closeSync(got.v);
        this.check('open', want, got);
        if (want.ok && got.ok) {
          const n = this.nextHandle++;
          this.handles.set(n, { fd: got.v, mh: want.v, path: op.path, flags: op.flags });
          if (op.bind) this.bound.set(op.bind, n);
          return `OK h${n}`;
        }
        out = got;
        break;
      }
      case 'write': {
        const e = needHandle(op.h);
        const b = bytesOf(op.seed, op.len);
        const want = model(() => this.m.write(e.mh, b, op.pos));
        const got = real(() => this.writeFully(e.fd, b, op.pos));
        this.check('write', want, got, (a, c) => (a === c ? null : `wrote ${c} of ${a} bytes`));
        out = got;
        break;
      }
      case 'read': {
        const e = needHandle(op.h);
        const want = model(() => this.m.read(e.mh, op.len, op.pos));
        const got = real(() => this.readFully(e.fd, op.len, op.pos));
        this.check(`read of ${e.path}`, want, got, bytesEq);
        out = got;
        break;
      }
      case 'ftruncate': {
        const e = needHandle(op.h);
        out = real(() => fs.ftruncateSync(e.fd, op.len));
        this.check('ftruncate', model(() => this.m.ftruncate(e.mh, op.len)), out);
        break;
      }
      case 'fstat': {
        const e = needHandle(op.h);
        const got = real(() => fs.fstatSync(e.fd));
        this.check(`fstat of ${e.path}`, model(() => this.m.fstat(e.mh)), got, (a, b) => statEq(a, realStat(b)) ?? metaDiff(metaOf(e.mh.node), seenMeta(b)));
        out = got;
        break;
      }
      case 'fsync': {
        const e = needHandle(op.h);
        out = real(() => fs.fsyncSync(e.fd));
        this.check('fsync', { ok: true, v: undefined }, out);
        break;
      }
      case 'close': {
        const e = needHandle(op.h);
        this.handles.delete(e.n);
        for (const [k, v] of this.bound) if (v === e.n) this.bound.delete(k);
        out = real(() => fs.closeSync(e.fd));
        this.check('close', { ok: true, v: undefined }, out);
        break;
      }
      case 'readfile': {
        const want = model(() => this.m.readFile(op.path));
        const got = real(() => fs.readFileSync(this.abs(op.path)));
        this.check(`readFile of ${op.path}`, want, got, bytesEq);
        out = got;
        break;
      }
      case 'truncate':
        out = real(() => fs.truncateSync(this.abs(op.path), op.len));
        this.check('truncate', model(() => this.m.truncate(op.path, op.len)), out);
        break;
      case 'stat': {
        const got = real(() => fs.statSync(this.abs(op.path)));
        const n = this.m.lookup(op.path);
        this.check('stat', model(() => this.m.stat(op.path)), got, (a, b) => statEq(a, realStat(b)) ??
          (n?.kind === 'file' ? metaDiff(metaOf(n), seenMeta(b)) : null));
        out = got;
        break;
      }
      case 'utimes': {
        const [at, mt] = this.times(op);
        out = real(() => fs.utimesSync(this.abs(op.path), at, mt));
        this.check('utimes', model(() => this.m.utimes(op.path, op.mtime)), out);
        break;
      }
      case 'futimes': {
        const e = needHandle(op.h);
        const [at, mt] = this.times(op);
        out = real(() => fs.futimesSync(e.fd, at, mt));
        this.check('futimes', model(() => this.m.futimes(e.mh, op.mtime)), out);
        break;
      }
      case 'chmod':
        out = real(() => fs.chmodSync(this.abs(op.path), op.mode));
        this.check('chmod', model(() => this.m.chmod(op.path, op.mode)), out);
        break;
      case 'fchmod': {
        const e = needHandle(op.h);
        out = real(() => fs.fchmodSync(e.fd, op.mode));
        this.check('fchmod', model(() => this.m.fchmod(e.mh, op.mode)), out);
        break;
      }
      case 'readdir': {
        const want = model(() => this.m.readdir(op.path));
        const got = real(() => fs.readdirSync(this.abs(op.path)).sort());
        this.check(`readdir of ${op.path || '.'}`, want, got, (a, b) => (a.join('/') === b.join('/') ? null : `model [${a.join(', ')}], actual [${b.join(', ')}]`));
        out = got;
        break;
      }
      case 'mkdir':
        out = real(() => fs.mkdirSync(this.abs(op.path)));
        this.check('mkdir', model(() => this.m.mkdir(op.path)), out);
        break;
      case 'rmdir':
        out = real(() => fs.rmdirSync(this.abs(op.path)));
        this.check('rmdir', this.unlessBusy(op.path, (m) => m.rmdir(op.path)), out);
        break;
      case 'unlink':
        out = real(() => fs.unlinkSync(this.abs(op.path)));
        this.check('unlink', model(() => this.m.unlink(op.path)), out);
        break;
      case 'rename': {
        // Which handles the rename carries along, decided before it: those whose file is the one
        // at `from`, and those opened below a folder at `from`. A handle whose file was replaced
        // or unlinked keeps the folder it was opened in (libfuse 2 hides such a file there), even
        // when a new file of the same name moves away.
        const carried = [...this.handles.values()].filter((e) =>
          e.path.startsWith(op.from + '/') || (e.path === op.from && this.m.lookup(op.from) === e.mh.node));
        out = real(() => fs.renameSync(this.abs(op.from), this.abs(op.to)));
        const over = op.from !== op.to && this.m.lookup(op.to)?.kind === 'dir' ? op.to : null;
        this.check('rename', this.unlessBusy(over, (m) => m.rename(op.from, op.to)), out);
        // where each handle's file now lives, for pathBoundHandles
        if (out.ok && op.from !== op.to) for (const e of carried) e.path = op.to + e.path.slice(op.from.length);
        break;
      }
      case 'shappend': {
        // Another program's O_APPEND: sh opens, appends and closes on its own.
        const b = Buffer.from(bytesOf(op.seed, op.len).map((x) => 0x61 + (x % 26)));
        const want = model((): void => {
          const h = this.m.open(op.path, FLAGS.append.m);
          this.m.write(h, b, null);
        });
        const r = spawnSync('sh', ['-c', 'printf %s "$1" >> "$2"', 'sh', b.toString('latin1'), this.abs(op.path)], { encoding: 'utf8' });
        // dash says "Directory nonexistent" for both ENOENT and ENOTDIR of the path.
        const codes = /Directory nonexistent/.test(r.stderr) ? ['ENOENT', 'ENOTDIR'] : /Is a directory/.test(r.stderr) ? ['EISDIR']
          : [`sh exit ${r.status}: ${r.stderr.trim()}`];
        out = r.status === 0 ? { ok: true, v: undefined } : { ok: false, codes };
        this.check('sh append', want, out);
        break;
      }
      case 'wait':
        sleepSync(this.cfg.waitMs);
        out = { ok: true, v: undefined };
        break;
      case 'logline': {
        const file = this.cfg.shared[op.log]!;
        const line = `${this.cfg.id} ${++this.lineSeq} ${'x'.repeat(this.int(200))}\n`;
        out = real(() => {
          let fd = this.logFds.get(op.log);
          if (fd === undefined) fd = fs.openSync(file, C.O_WRONLY | C.O_APPEND | C.O_CREAT);
          // One write(2) per line: O_APPEND makes each one land whole at the end.
          fs.writeSync(fd, line);
          if (op.keepOpen) this.logFds.set(op.log, fd);
          else {
            this.logFds.delete(op.log);
            fs.closeSync(fd);
          }
        });
        if (out.ok) this.appended[file]!.push(line.slice(0, -1));
        this.check('append a line', { ok: true, v: undefined }, out);
        break;
      }
    }
    return show(out);
  }

  run(): WorkerResult {
    let failure: string | undefined;
    for (let i = 0; i < this.cfg.ops && !failure; i++) {
      const op = this.next();
      const what = `#${i} ${this.describe(op)}`;
      try {
        const r = this.exec(op);
        this.log.push(`${what} -> ${r}`);
        this.counts[op.op] = (this.counts[op.op] ?? 0) + 1;
        if (r !== 'OK' && !r.startsWith('OK ')) this.counts[`${op.op} ${r}`] = (this.counts[`${op.op} ${r}`] ?? 0) + 1;
      } catch (e) {
        this.log.push(`${what} -> MISMATCH`);
        failure = `${this.cfg.id} (seed ${this.cfg.seed}) op ${what}: ${e instanceof Mismatch ? e.message : (e as Error).stack}`;
      }
      // A planned open that failed (as the model said) leaves steps on a handle that never
      // opened: drop those, keep the steps whose handle is open or still to be opened.
      const will = new Set(this.bound.keys());
      this.plan = this.plan.filter((p) => {
        if (p.op === 'open' && p.bind) will.add(p.bind);
        return !('h' in p && typeof p.h === 'string' && !will.has(p.h));
      });
    }
    // Every handle is closed at the end, each close checked like any other op.
    for (const n of [...this.handles.keys()]) {
      const what = `#end ${this.describe({ op: 'close', h: n })}`;
      try {
        this.log.push(`${what} -> ${this.exec({ op: 'close', h: n })}`);
      } catch (e) {
        this.log.push(`${what} -> MISMATCH`);
        failure ??= `${this.cfg.id} (seed ${this.cfg.seed}) op ${what}: ${(e as Error).message}`;
      }
    }
    for (const [log, fd] of this.logFds) {
      try {
        fs.closeSync(fd);
      } catch (e) {
        failure ??= `${this.cfg.id}: close of the shared log ${this.cfg.shared[log]} failed: ${(e as Error).message}`;
      }
    }
    this.logFds.clear();
    return { id: this.cfg.id, seed: this.cfg.seed, ok: !failure, failure, log: this.log, snapshot: this.m.snap(), appended: this.appended, counts: this.counts };
  }
}

function writeLine(s: string): void {
  const b = Buffer.from(s + '\n');
  let off = 0;
  while (off < b.length) {
    try {
      off += fs.writeSync(1, b, off);
    } catch (e) {
      // stdout is a pipe the parent reads at its own pace
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      sleepSync(2);
    }
  }
}

// Run as a process (not when imported by the test for its types). One config on stdin, one
// result on stdout; with --serve (the batch mode's pool of processes), one config per stdin line,
// one result line each, until stdin ends: a process runs one sequence's part at a time.
if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1]))) {
  if (process.argv.includes('--serve')) {
    let buf = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim()) writeLine(JSON.stringify(new Worker(JSON.parse(line) as WorkerConfig).run()));
      }
    });
  } else {
    const cfg = JSON.parse(fs.readFileSync(0, 'utf8')) as WorkerConfig;
    const result = new Worker(cfg).run();
    writeLine(JSON.stringify(result));
  }
}
