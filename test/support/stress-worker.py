# One load process of the stress tests: write, read back and check, stat, rename/unlink, listdir in
# its own folder, names that race on purpose in a folder all workers share (a lost race is ENOENT
# or EEXIST, anything else fails the worker), mkdir/rmdir now and then; at the end its folder is
# removed. Bounded by iterations. Prints the number of syscalls made (open/read/close counted
# apart). argv: folder, worker id, iterations, mix:
#   drive   (test/e2e/lib/cycle-child.ts): mostly what a mounted drive answers from its caches
#           (8 reads of each file written, stats of every file), a namespace change (server round
#           trips) now and then.
#   binding (test/lowlevel/stress.test.ts): every request kind of the libfuse 3 binding in each
#           iteration (one read, a rename every time, utimens of the folder, a race every time).
import errno, os, sys

MIXES = {
    "drive": dict(files=7, repeat=300, span=20000, reads=8, stat_all=True, rename_every=8, unlink_every=1,
                  utime=False, max_names=20, race_every=6, race_names=3, mkdir_every=40),
    "binding": dict(files=17, repeat=200, span=9000, reads=1, stat_all=False, rename_every=1, unlink_every=3,
                    utime=True, max_names=40, race_every=1, race_names=5, mkdir_every=50),
}

root, wid, iters, mix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
m = MIXES[mix]
mine = os.path.join(root, f"w{wid}")
shared = os.path.join(root, "shared")
os.makedirs(mine, exist_ok=True)
os.makedirs(shared, exist_ok=True)
ok_races = {errno.ENOENT, errno.EEXIST}
ops = 0


def race(s):
    """Create s exclusively, then unlink it: another worker may have either first."""
    try:
        fd = os.open(s, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.write(fd, b"x")
        os.close(fd)
    except OSError as e:
        if e.errno not in ok_races:
            raise
    try:
        os.unlink(s)
    except OSError as e:
        if e.errno not in ok_races:
            raise


for i in range(iters):
    p = os.path.join(mine, f"f{i % m['files']}")
    data = (f"{wid}:{i}:" * m["repeat"]).encode()[: 1000 + (i * 37) % m["span"]]
    with open(p, "wb") as f:
        f.write(data)
    ops += 3
    for _ in range(m["reads"]):
        with open(p, "rb") as f:
            got = f.read()
        ops += 3
        if got != data:
            sys.exit(f"worker {wid}: content mismatch at {i}")
    if m["stat_all"]:
        for q in range(m["files"]):
            try:
                os.stat(os.path.join(mine, f"f{q}"))
            except FileNotFoundError:
                pass
            ops += 1
    st = os.stat(p)
    ops += 1
    if st.st_size != len(data):
        sys.exit(f"worker {wid}: size {st.st_size} != {len(data)} at {i}")
    if i % m["rename_every"] == 0:
        q = p + ".r"
        os.rename(p, q)
        ops += 1
        if i % m["unlink_every"] == 0:
            os.unlink(q)
            ops += 1
    if m["utime"]:
        os.utime(mine, ns=(i * 1000, i * 2000))
        ops += 1
    names = os.listdir(mine)
    ops += 2
    if len(names) > m["max_names"]:
        sys.exit(f"worker {wid}: {len(names)} names")
    if i % m["race_every"] == 0:
        race(os.path.join(shared, f"s{i % m['race_names']}"))
        ops += 4
    if i % m["mkdir_every"] == 0:
        d = os.path.join(mine, f"d{i}")
        os.mkdir(d)
        os.rmdir(d)
        ops += 2
for n in os.listdir(mine):
    os.unlink(os.path.join(mine, n))
os.rmdir(mine)
print(ops)
