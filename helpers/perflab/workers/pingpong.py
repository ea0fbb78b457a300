"""Round trips between two processes on two CPUs: a blocking hand-off (pipe) or a busy-polled one.

"pipe": each side sleeps in read() until the other writes a byte, so every hand-off wakes a sleeping
thread, through the scheduler and, on bare metal, out of whatever idle state (C-state) its CPU entered.
"spin": each side polls a counter in shared memory and never sleeps; the hand-off costs a cache-line
transfer between the two cores, and both CPUs stay 100 % busy.

Usage: python pingpong.py MODE N OUT.json   (MODE: pipe or spin)
Writes JSON: the round-trip times in µs, the CPUs used, and whether every message came back in order.

Taught in: notebooks/ch03_os_containers/03_04_os_memory_cpu_knobs.ipynb
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import signal
import sys
import time

WARMUP = 200  # untimed round trips first
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this (child) process if its parent dies, so no spinner is left behind."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before we asked
        os._exit(1)


def partner_pipe(rfd: int, wfd: int, n: int) -> None:
    for _ in range(n):
        os.write(wfd, os.read(rfd, 1))  # blocks in read() until the byte arrives


def partner_spin(shared: memoryview, n: int) -> None:
    for seq in range(1, n + 1):
        while shared[0] != seq:  # poll the "ping" counter
            pass
        shared[1] = seq  # answer on the "pong" counter


def main() -> None:
    mode, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode not in ("pipe", "spin"):
        raise SystemExit(f"MODE must be 'pipe' or 'spin'; got {mode!r}.")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("needs two CPUs in this process's affinity mask")
    mine, theirs = cpus[0], cpus[1]
    total = WARMUP + n
    region = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)  # survives fork
    shared = memoryview(region).cast("Q")  # two 64-bit counters: ping, pong
    child_reads, parent_writes = os.pipe()  # os.pipe() returns (read end, write end)
    parent_reads, child_writes = os.pipe()

    parent = os.getpid()
    pid = os.fork()  # a fresh single-threaded interpreter: safe to fork
    if pid == 0:
        die_with_parent(parent)
        os.sched_setaffinity(0, {theirs})
        if mode == "pipe":
            partner_pipe(child_reads, child_writes, total)
        else:
            partner_spin(shared, total)
        os._exit(0)

    os.sched_setaffinity(0, {mine})
    round_trip_us, in_order = [], True
    clock = time.perf_counter_ns
    for seq in range(1, total + 1):
        if mode == "pipe":
            t0 = clock()
            os.write(parent_writes, b"x")
            reply = os.read(parent_reads, 1)
            t1 = clock()
            in_order &= reply == b"x"
        else:
            t0 = clock()
            shared[0] = seq
            while shared[1] != seq:
                pass
            t1 = clock()
        if seq > WARMUP:
            round_trip_us.append((t1 - t0) / 1e3)
    _, status = os.waitpid(pid, 0)
    in_order &= status == 0 and (mode == "pipe" or shared[1] == total)
    shared.release()
    region.close()
    with open(out, "w") as f:
        json.dump(dict(mode=mode, round_trip_us=round_trip_us, cpus=[mine, theirs], in_order=bool(in_order)), f)


if __name__ == "__main__":
    main()
