"""Memory latency and bandwidth as seen from where this process runs (start it under numactl).

Latency: a pointer chase through a random single cycle over a large int64 array, one dependent load
per hop, so every hop waits for the previous one (no overlap of misses). The loop runs in Python, so
each hop also costs the interpreter's overhead; the same chase over an array that fits in the L1/L2
caches measures that overhead, which is subtracted. Bandwidth: numpy.copyto between two large arrays
(bytes read + bytes written per second).

Usage: numactl --cpunodebind=0 --membind=1 python numa_memory.py OUT.json [--chain-MiB 256] [--copy-MiB 512]

Taught in: notebooks/ch03_os_containers/03_02_numa_cpu_affinity.ipynb
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

MiB = 2**20


def random_cycle(n: int, seed: int = 0) -> np.ndarray:
    """next[i] for one random cycle through all n slots, so a chase visits every slot once."""
    order = np.random.default_rng(seed).permutation(n)
    nxt = np.empty(n, dtype=np.int64)
    nxt[order[:-1]] = order[1:]
    nxt[order[-1]] = order[0]
    return nxt


def chase_ns(nxt: np.ndarray, hops: int) -> float:
    """Nanoseconds per dependent hop (including Python's per-iteration overhead)."""
    view = memoryview(nxt)
    i = 0
    t0 = time.perf_counter()
    for _ in range(hops):
        i = view[i]
    return (time.perf_counter() - t0) / hops * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="where to write the JSON result")
    ap.add_argument("--chain-MiB", type=float, default=256, help="size of the pointer-chase array (MiB)")
    ap.add_argument("--copy-MiB", type=float, default=512, help="size of each array of the copy (MiB)")
    ap.add_argument("--hops", type=int, default=1_000_000, help="hops per latency sample")
    ap.add_argument("--repeats", type=int, default=5, help="samples of each measurement")
    args = ap.parse_args()

    small = random_cycle(16 * 1024 // 8)  # 16 KiB: stays in L1
    big = random_cycle(int(args.chain_MiB * MiB) // 8)
    chase_ns(big, args.hops)  # warm-up: touch the pages (first touch places them, by the memory policy)
    overhead = [chase_ns(small, args.hops) for _ in range(args.repeats)]
    chase = [chase_ns(big, args.hops) for _ in range(args.repeats)]

    n = int(args.copy_MiB * MiB) // 8
    src = np.random.default_rng(1).standard_normal(n)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # warm-up and first touch
    if not np.array_equal(dst, src):
        raise RuntimeError("copy check failed")
    copy_s = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        copy_s.append(time.perf_counter() - t0)

    result = dict(
        chase_ns=chase,
        overhead_ns=overhead,
        latency_ns=float(np.median(chase) - np.median(overhead)),
        copy_GBps=[2 * src.nbytes / s / 1e9 for s in copy_s],
        affinity=sorted(os.sched_getaffinity(0)),
        chain_MiB=args.chain_MiB,
        copy_MiB=args.copy_MiB,
    )
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
