"""A noisy neighbour: one process that keeps one CPU busy, optionally confined to a CPU set.

It spins in pure Python until it is killed or `--seconds` have passed (a safety net, so it can never
outlive a crashed notebook by long), and asks the kernel to kill it if its parent dies.

Usage: python busy_neighbour.py [--cpus 4,5,6] [--seconds 120]

Taught in: notebooks/ch03_os_containers/03_02_numa_cpu_affinity.ipynb
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import time

PR_SET_PDEATHSIG = 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpus", default="", help="comma-separated CPUs to stay on (default: any)")
    ap.add_argument("--seconds", type=float, default=120.0, help="stop by itself after this long")
    args = ap.parse_args()
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: rely on the time limit
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        for _ in range(200_000):
            pass


if __name__ == "__main__":
    main()
