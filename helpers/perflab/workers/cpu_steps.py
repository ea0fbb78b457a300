"""Fixed CPU work in timed steps: one process of the oversubscription experiment.

Each step multiplies two random n x n float64 matrices with NumPy, so the BLAS library does the work
with as many threads as the environment allows (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS;
the parent sets them before this process imports NumPy). The process optionally pins itself to a CPU
set first, warms up, prints "ready" and waits for one line on stdin, so that all processes of a run
start together. Then it times every step and writes a JSON file: per-step latencies, when it finished
(CLOCK_MONOTONIC, comparable across processes), its context switches, and on which CPUs its main
thread ran.

Usage: python cpu_steps.py OUT.json --steps 40 --n 256 [--cpus 0,1]

Taught in: notebooks/ch03_os_containers/03_02_numa_cpu_affinity.ipynb
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def current_cpu() -> int:
    """The CPU this thread last ran on: field 39 of /proc/thread-self/stat."""
    with open("/proc/thread-self/stat") as f:
        text = f.read()
    return int(text.rsplit(")", 1)[1].split()[36])  # fields after "(comm)" start at field 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="where to write the JSON result")
    ap.add_argument("--steps", type=int, default=40, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--n", type=int, default=256, help="matrix size of one step")
    ap.add_argument("--cpus", default="", help="comma-separated CPUs to pin this process to (default: leave it)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})  # before NumPy starts its threads
    import numpy as np

    rng = np.random.default_rng(args.seed)
    a = rng.standard_normal((args.n, args.n))
    b = rng.standard_normal((args.n, args.n))
    for _ in range(args.warmup):
        c = a @ b
    check = float(c[0, :8].sum())  # same value whatever the thread count, up to rounding
    threads = len(os.listdir("/proc/self/task"))  # the BLAS library has started its pool by now

    print("ready", flush=True)
    sys.stdin.readline()  # the parent writes one line when every process is ready

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    latencies_ms, cpus_seen = [], []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        c = a @ b
        latencies_ms.append((time.perf_counter() - t0) * 1e3)
        cpus_seen.append(current_cpu())
    end = time.clock_gettime(time.CLOCK_MONOTONIC)
    usage = resource.getrusage(resource.RUSAGE_SELF)  # summed over all threads of this process

    migrations = sum(1 for x, y in zip(cpus_seen, cpus_seen[1:]) if x != y)
    result = dict(
        end_monotonic_s=end,
        latencies_ms=latencies_ms,
        involuntary_switches=usage.ru_nivcsw - usage0.ru_nivcsw,
        voluntary_switches=usage.ru_nvcsw - usage0.ru_nvcsw,
        cpu_s=(usage.ru_utime + usage.ru_stime) - (usage0.ru_utime + usage0.ru_stime),
        main_thread_migrations=migrations,
        cpus_seen=sorted(set(cpus_seen)),
        affinity=sorted(os.sched_getaffinity(0)),
        threads=threads,
        check=check,
    )
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
