# One load process of test/lowlevel/stress.test.ts: mixed metadata and data operations on a
# libfuse 3 mount, in its own folder plus a folder all workers share (there names race on purpose:
# a lost race is an expected errno, anything else fails the worker). Bounded: argv iterations.
import errno, os, sys

root, wid, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mine = os.path.join(root, f"w{wid}")
shared = os.path.join(root, "shared")
os.makedirs(mine, exist_ok=True)
os.makedirs(shared, exist_ok=True)
ok_races = {errno.ENOENT, errno.EEXIST}
ops = 0
for i in range(iters):
    p = os.path.join(mine, f"f{i % 17}")
    data = (f"{wid}:{i}:" * 200).encode()[: 1000 + (i * 37) % 9000]
    with open(p, "wb") as f:
        f.write(data)
    ops += 1
    with open(p, "rb") as f:
        got = f.read()
    ops += 1
    if got != data:
        sys.exit(f"worker {wid}: content mismatch at {i}")
    st = os.stat(p)
    ops += 1
    if st.st_size != len(data):
        sys.exit(f"worker {wid}: size {st.st_size} != {len(data)}")
    q = p + ".r"
    os.rename(p, q)
    ops += 1
    if i % 3 == 0:
        os.unlink(q)
        ops += 1
    os.utime(mine, ns=(i * 1000, i * 2000))
    ops += 1
    names = os.listdir(mine)
    ops += 1
    if len(names) > 40:
        sys.exit(f"worker {wid}: {len(names)} names")
    s = os.path.join(shared, f"s{i % 5}")
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
    ops += 2
    if i % 50 == 0:
        d = os.path.join(mine, f"d{i}")
        os.mkdir(d)
        os.rmdir(d)
        ops += 2
for n in os.listdir(mine):
    os.unlink(os.path.join(mine, n))
os.rmdir(mine)
print(ops)
