"""Fixed CPU work in one process: the CPU analogue of a GPU client, for lesson 03.05 and lab 03.05.

The work is a plain Python loop of ``--work-M`` million additions (its result is checked). Where the
process may run decides how processes share the CPU:

  --placement one     pin to the first allowed CPU: all workers take turns on one core (time-slicing)
  --placement spread  pin to allowed CPU number (rank mod count): each has a core of its own while
                      they last (concurrent sharing, as MPS gives GPU kernels)
  --placement all     split the work over a pool of one process per allowed CPU, started before the
                      shared start time, so one worker already fills the machine (like a kernel with a
                      block on every SM)

Run by perflab.procs.run_workers: start-up and warm-up happen before the shared start time; the last
line of output is one JSON object.

Taught in: notebooks/ch03_os_containers/03_05_mps_gpu_sharing.ipynb
"""

import argparse
import json
import multiprocessing
import os
import time

from perflab.procs import wait_for_start


def spin(n: int) -> int:
    """n additions in the interpreter: fixed work that needs one core and little memory."""
    total = 0
    for i in range(n):
        total += i & 7
    return total


def expected(n: int) -> int:
    """What spin(n) returns: each full group of 8 adds 0+1+...+7 = 28."""
    return 28 * (n // 8) + sum(range(n % 8))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-M", type=float, default=20, help="millions of loop steps done by this worker")
    parser.add_argument("--placement", choices=("one", "spread", "all"), default="spread")
    args = parser.parse_args()

    rank = int(os.environ.get("PERFLAB_RANK", "0"))
    allowed = sorted(os.sched_getaffinity(0))
    cpus = {"one": allowed[:1], "spread": [allowed[rank % len(allowed)]], "all": allowed}[args.placement]
    os.sched_setaffinity(0, cpus)
    steps = round(args.work_M * 1e6)
    width = len(cpus) if args.placement == "all" else 1
    shares = [steps // width + (i < steps % width) for i in range(width)]
    pool = multiprocessing.get_context("fork").Pool(width) if width > 1 else None
    spin(10_000)  # warm-up
    if pool:
        pool.map(spin, [10_000] * width)

    start = wait_for_start()
    t0 = time.time()
    done = pool.map(spin, shares, chunksize=1) if pool else [spin(shares[0])]
    end = time.time()
    if pool:
        pool.close()
    if done != [expected(n) for n in shares]:
        raise SystemExit("the loop gave a wrong result")
    print(json.dumps(dict(rank=rank, pid=os.getpid(), placement=args.placement, cpus=cpus, parallel=width,
                          work_M=args.work_M, start=start, t0=t0, end=end, elapsed_s=end - t0)))
