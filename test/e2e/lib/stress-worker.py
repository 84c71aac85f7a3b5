# One load process of the drive stress (test/e2e/lib/cycle-child.ts): mostly what a mounted drive
# answers from its caches (write, read back, stat, listdir, open/close of the same files), with a
# namespace change (rename, unlink, mkdir/rmdir: server round trips) now and then, and names that
# race on purpose in a folder all workers share (a lost race is ENOENT/EEXIST, anything else fails
# the worker). Prints the number of syscalls made. argv: folder, worker id, iterations.
import errno, os, sys

root, wid, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mine = os.path.join(root, f"w{wid}")
shared = os.path.join(root, "shared")
os.makedirs(mine, exist_ok=True)
os.makedirs(shared, exist_ok=True)
ok_races = {errno.ENOENT, errno.EEXIST}
ops = 0
for i in range(iters):
    p = os.path.join(mine, f"f{i % 7}")
    data = (f"{wid}:{i}:" * 300).encode()[: 1000 + (i * 37) % 20000]
    with open(p, "wb") as f:
        f.write(data)
    ops += 3
    for _ in range(8):
        with open(p, "rb") as f:
            got = f.read()
        ops += 3
        if got != data:
            sys.exit(f"worker {wid}: content mismatch at {i}")
    for q in range(7):
        try:
            os.stat(os.path.join(mine, f"f{q}"))
        except FileNotFoundError:
            pass
        ops += 1
    if os.stat(p).st_size != len(data):
        sys.exit(f"worker {wid}: size mismatch at {i}")
    names = os.listdir(mine)
    ops += 2
    if len(names) > 20:
        sys.exit(f"worker {wid}: {len(names)} names")
    if i % 8 == 0:
        q = p + ".r"
        os.rename(p, q)
        os.unlink(q)
        ops += 2
    if i % 6 == 0:
        s = os.path.join(shared, f"s{i % 3}")
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
        ops += 4
    if i % 40 == 0:
        d = os.path.join(mine, f"d{i}")
        os.mkdir(d)
        os.rmdir(d)
        ops += 2
for n in os.listdir(mine):
    os.unlink(os.path.join(mine, n))
os.rmdir(mine)
print(ops)
