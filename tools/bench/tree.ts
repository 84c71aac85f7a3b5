// The benchmark tree: one big file, N medium files, D folders of small files; random bytes so
// no layer can compress or deduplicate. Generated once per run into a master folder, then copied
// to each server; its hashes let the harness check that a mount returned the right bytes.
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const KiB = 1024;
export const MiB = 1024 * 1024;

export interface Sizes {
  bigBytes: number;
  mediumCount: number;
  mediumBytes: number;
  dirs: number;
  smallPerDir: number;
  smallBytes: number;
  writeBytes: number;
  createCount: number;
  createBytes: number;
}

export const fullSizes: Sizes = {
  bigBytes: 512 * MiB, mediumCount: 100, mediumBytes: MiB, dirs: 10, smallPerDir: 1000, smallBytes: KiB,
  writeBytes: 256 * MiB, createCount: 200, createBytes: KiB,
};

export const quickSizes: Sizes = {
  bigBytes: 64 * MiB, mediumCount: 20, mediumBytes: MiB, dirs: 4, smallPerDir: 100, smallBytes: KiB,
  writeBytes: 32 * MiB, createCount: 50, createBytes: KiB,
};

/** Paths inside the tree (relative to the folder that holds `bench/`). */
export const T = {
  top: 'bench',
  big: 'bench/big.bin',
  medium: 'bench/medium',
  smallDir: (i: number) => `bench/small/d${String(i).padStart(2, '0')}`,
  mediumName: (i: number) => `m${String(i).padStart(3, '0')}.bin`,
  smallName: (i: number) => `f${String(i).padStart(4, '0')}.txt`,
  write: 'bench/written.bin',
  created: 'bench/created',
  createdName: (i: number) => `c${String(i).padStart(4, '0')}.txt`,
  /** Folders with roles in the workloads: listed, read, renamed then removed. */
  lsDir: 1,
  catDir: 2,
  renameDir: 3,
  renamed: 'bench/small/d03-renamed',
};

export interface TreeManifest {
  sizes: Sizes;
  /** sha256 of the big file. */
  big: string;
  /** sha256 over the medium files' bytes in name order. */
  medium: string;
  /** sha256 over each small folder's files' bytes in name order. */
  small: string[];
  /** Number of entries `find bench` prints (the top folder included). */
  findEntries: number;
  totalBytes: number;
}

function writeRandomFile(path: string, bytes: number, hash: ReturnType<typeof createHash>, buf: Buffer): void {
  const fd = openSync(path, 'w', 0o644);
  try {
    let left = bytes;
    while (left > 0) {
      const n = Math.min(left, buf.length);
      const chunk = buf.subarray(0, n);
      randomFillSync(chunk);
      hash.update(chunk);
      let off = 0;
      while (off < n) off += writeSync(fd, chunk, off, n - off);
      left -= n;
    }
  } finally {
    closeSync(fd);
  }
}

export function generateTree(base: string, sizes: Sizes): TreeManifest {
  const buf = Buffer.allocUnsafe(4 * MiB);
  mkdirSync(join(base, T.medium), { recursive: true });
  const big = createHash('sha256');
  writeRandomFile(join(base, T.big), sizes.bigBytes, big, buf);
  const medium = createHash('sha256');
  for (let i = 0; i < sizes.mediumCount; i++) writeRandomFile(join(base, T.medium, T.mediumName(i)), sizes.mediumBytes, medium, buf);
  const small: string[] = [];
  for (let d = 0; d < sizes.dirs; d++) {
    const dir = join(base, T.smallDir(d));
    mkdirSync(dir, { recursive: true });
    const h = createHash('sha256');
    for (let i = 0; i < sizes.smallPerDir; i++) writeRandomFile(join(dir, T.smallName(i)), sizes.smallBytes, h, buf);
    small.push(h.digest('hex'));
  }
  // bench, big.bin, medium, its files, small, its folders and their files.
  const findEntries = 1 + 1 + 1 + sizes.mediumCount + 1 + sizes.dirs * (1 + sizes.smallPerDir);
  const totalBytes = sizes.bigBytes + sizes.mediumCount * sizes.mediumBytes + sizes.dirs * sizes.smallPerDir * sizes.smallBytes;
  return { sizes, big: big.digest('hex'), medium: medium.digest('hex'), small, findEntries, totalBytes };
}

/** Scaling rows: folders of N empty entries (listing cost only) and one large file. */
export interface ScaleSizes {
  counts: number[];
  bigBytes: number;
}
export const fullScale: ScaleSizes = { counts: [1_000, 10_000, 100_000], bigBytes: 4 * 1024 * MiB };
export const quickScale: ScaleSizes = { counts: [100, 1_000, 10_000], bigBytes: 256 * MiB };

export const S = {
  top: 'scale',
  dir: (n: number) => `scale/n${n}`,
  name: (i: number) => `e${String(i).padStart(6, '0')}`,
  big: 'scale/big.bin',
};

export function generateScaleTree(base: string, sizes: ScaleSizes): { big: string } {
  for (const n of sizes.counts) {
    const dir = join(base, S.dir(n));
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < n; i++) closeSync(openSync(join(dir, S.name(i)), 'w', 0o644));
  }
  const h = createHash('sha256');
  writeRandomFile(join(base, S.big), sizes.bigBytes, h, Buffer.allocUnsafe(4 * MiB));
  return { big: h.digest('hex') };
}
