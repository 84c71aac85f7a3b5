// A file replaced by write-temp-then-rename while other threads open and read it (libfuse 3
// backend, a cache too small for two versions): every open+read of the whole file gives the
// bytes of one version, the one of the inode the reader opened (each version's inode number is
// noted when its temp file is written: a rename keeps it), never a mix of two nor another version.
//
// Before the fix of InodeVfs.open (an OPEN of the old inode that waited while the RENAME landed
// was bound to the new file's content, so the inode's handles, and the kernel's pages of it, held
// two versions) Maxxo failed 1 of 2-3 runs under ASan (native-notes/lowlevel.md "Debugging"), e.g.
// 14@0+180224 15@180224+1916928 for all readers; without ASan 6 of 6 runs passed (why the slow
// binding widens the window is not measured: likely the OPEN and the RENAME reaching JS in one
// batch). The deterministic tests of the interleaving are in test/unit/vfs-open-rename.test.ts.
import test from 'ava';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { useServers, mountService, KINDS, uniq, run } from '../lib/services.js';

const servers = useServers(test);
const MiB = 1024 * 1024;

const py = `
import os, sys, threading, time
f, n = sys.argv[1], int(sys.argv[2])
size = 2 * 1024 * 1024
bad = []
# the inode number of each version (a rename keeps it): what a reader's open file must hold
version_of = {}
def write_version(v):
    tmp = f + '.tmp%d' % v
    with open(tmp, 'wb') as o:
        o.write(bytes([v]) * size)
        version_of[os.fstat(o.fileno()).st_ino] = v
    os.rename(tmp, f)
write_version(1)
stop = False
def reader(k):
    while not stop:
        try:
            with open(f, 'rb') as i:
                # the kernel's pages go: the reads reach the drive
                os.posix_fadvise(i.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                b = i.read()
                ino = os.fstat(i.fileno()).st_ino
        except FileNotFoundError: continue
        want = version_of.get(ino)
        if want is not None and len(b) == size and b.count(b[0]) == len(b) and b[0] != want:
            bad.append('reader %d: the inode of version %d read version %d' % (k, want, b[0]))
        if len(b) != size or b[0] == 0 or b.count(b[0]) != len(b):
            runs = []; i = 0
            while i < len(b) and len(runs) < 12:
                j = i
                while j < len(b) and b[j] == b[i]: j += 1
                runs.append('%d@%d+%d' % (b[i], i, j - i)); i = j
            bad.append('reader %d: %d bytes (version@offset+length): %s' % (k, len(b), ' '.join(runs)))
ts = [threading.Thread(target=reader, args=(k,)) for k in range(3)]
for x in ts: x.start()
for v in range(2, n + 2): time.sleep(0.05); write_version(v)
stop = True
for x in ts: x.join()
print('\\n'.join(bad[:5]) if bad else 'ok')
`;

for (const kind of KINDS) {
  test.serial(`${kind}: readers of a file replaced by rename (temp file, small cache) get one version per open`, async (t) => {
    const d = await mountService(t, servers, kind, { mount: { backend: 'libfuse3' }, vfs: { cacheMaxBytes: 3 * MiB } });
    const dir = d.p(uniq('mx'));
    await fsp.mkdir(dir);
    const r = await run('python3', ['-c', py, path.join(dir, 'f'), process.env.CM_MIXED_N ?? '60'], { timeoutMs: 240_000 });
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout.trim(), 'ok');
  });
}
