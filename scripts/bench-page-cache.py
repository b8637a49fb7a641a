#!/usr/bin/env python3
"""What writing into fresh page-cache pages costs on this machine, next to writing
behind with the written pages dropped once synced (what the local blob store does with
each part, docs/SERVER.md "Page cache").

usage: scripts/bench-page-cache.py [SIZE_MIB] [ROUNDS]      (default 2048 MiB, 3 rounds)
env:   BENCH_DIR (default /var/tmp): where the test file is written (and deleted).

Each round writes SIZE_MIB of random bytes into a new file in 8 MiB pieces, three ways,
in turn:
  plain  pwrite only, one fsync at the end (a single PUT's path, which drops the
         object only after that fsync);
  sync   fdatasync after each piece (a part's path before the change);
  drop   fdatasync after each piece, then POSIX_FADV_DONTNEED on it (a part's path now).
It prints MB/s and the process's system CPU seconds for each, the medians over the
rounds, and first: the cost of touching anonymous memory the process never used, per
4 KiB page, against touching it again (on VMs that return free memory to the host,
the first is a fault into the host).
"""
import mmap
import os
import resource
import statistics
import sys
import time

PIECE = 8 << 20


def first_touch_us(size=1 << 30):
    """Microseconds per page to touch fresh anonymous memory, then to touch it again."""
    region = mmap.mmap(-1, size)
    pages = range(0, size, 4096)
    t0 = time.perf_counter()
    for off in pages:
        region[off] = 1
    t1 = time.perf_counter()
    for off in pages:
        region[off] = 2
    t2 = time.perf_counter()
    region.close()
    n = len(pages)
    return (t1 - t0) * 1e6 / n, (t2 - t1) * 1e6 / n


def write_file(path, size, mode, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        for off in range(0, size, PIECE):
            os.pwrite(fd, data, off)
            if mode in ("sync", "drop"):
                os.fdatasync(fd)
            if mode == "drop":
                os.posix_fadvise(fd, off, PIECE, os.POSIX_FADV_DONTNEED)
        os.fsync(fd)
        elapsed = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        os.close(fd)
        os.unlink(path)
    return size / elapsed / 1e6, after.ru_stime - before.ru_stime


def main():
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    size = size_mib << 20
    path = os.path.join(os.environ.get("BENCH_DIR", "/var/tmp"), f"hashdrop-page-cache.{os.getpid()}")
    data = os.urandom(PIECE)

    fresh, again = first_touch_us()
    print(f"anonymous memory, per 4 KiB page: first touch {fresh:.2f} us, again {again:.2f} us")
    print(f"writing {size_mib} MiB in {PIECE >> 20} MiB pieces, {rounds} round(s), into {path}")
    modes = ["plain", "sync", "drop"]
    results = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes:
            os.sync()
            time.sleep(3)  # let freed memory settle as it would between uploads
            rate, sys_s = write_file(path, size, mode, data)
            results[mode].append((rate, sys_s))
            print(f"round {r + 1} {mode:5}: {rate:6.0f} MB/s, system CPU {sys_s:.2f} s")
    for mode in modes:
        rates = [x[0] for x in results[mode]]
        cpu = [x[1] for x in results[mode]]
        print(f"median {mode:5}: {statistics.median(rates):6.0f} MB/s, system CPU {statistics.median(cpu):.2f} s")


if __name__ == "__main__":
    main()
