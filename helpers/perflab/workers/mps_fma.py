"""A fixed amount of small-grid GPU work: the MPS client of lesson 03.05 and lab 03.05.

Each launch runs ``--blocks`` blocks of 256 threads; every thread repeats a dependent multiply-add
``a = a * b + 0.5f`` ``--iters`` times. The work is fixed (not a clock-spinning sleep, which keeps
"advancing" while time-sliced out and so fakes concurrency), and each FMA waits for the previous one,
so a block keeps its SM busy for a known number of instructions. After a correctness check and a
warm-up launch (CUDA start-up and compilation happen here, before the shared start time), the worker
issues ``--launches`` launches back to back, synchronises once, and prints one JSON line.

Needs CuPy. Taught in: notebooks/ch03_os_containers/03_05_mps_gpu_sharing.ipynb
"""

import argparse
import json
import os
import time

began = time.time()
import cupy as cp  # noqa: E402
import numpy as np  # noqa: E402

from perflab.procs import wait_for_start  # noqa: E402

SOURCE = r"""
extern "C" __global__ void fma_loop(float* out, float b, int iters) {
    float a = (float) threadIdx.x;
    for (int i = 0; i < iters; ++i) {
        a = a * b + 0.5f;  // each step needs the previous one: a chain of dependent FMAs
    }
    out[blockIdx.x * blockDim.x + threadIdx.x] = a;
}
"""
THREADS = 256
B = np.float32(1.0001)

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--blocks", type=int, default=16, help="blocks per launch (grid size)")
parser.add_argument("--iters", type=int, default=200_000, help="dependent FMAs per thread per launch")
parser.add_argument("--launches", type=int, default=500, help="launches timed after the start")
args = parser.parse_args()

kernel = cp.RawKernel(SOURCE, "fma_loop")
out = cp.empty(args.blocks * THREADS, dtype=cp.float32)

# Correctness first: a_n = a_0 b^n + 0.5 (b^n - 1) / (b - 1), per thread, a_0 = threadIdx.x.
check_iters = 1000
kernel((args.blocks,), (THREADS,), (out, B, np.int32(check_iters)))
a0 = np.tile(np.arange(THREADS, dtype=np.float64), args.blocks)
bn = float(B) ** check_iters
expected = a0 * bn + 0.5 * (bn - 1) / (float(B) - 1)
if not np.allclose(cp.asnumpy(out), expected, rtol=1e-3):
    raise SystemExit("fma_loop gave wrong results: the kernel or the driver is broken")

kernel((args.blocks,), (THREADS,), (out, B, np.int32(args.iters)))  # warm-up at full length
cp.cuda.Device().synchronize()
ready = time.time()

start = wait_for_start()
t0 = time.time()
for _ in range(args.launches):
    kernel((args.blocks,), (THREADS,), (out, B, np.int32(args.iters)))
cp.cuda.Device().synchronize()
end = time.time()

print(json.dumps(dict(
    rank=int(os.environ.get("PERFLAB_RANK", "0")), pid=os.getpid(), blocks=args.blocks, threads=THREADS,
    iters=args.iters, launches=args.launches, start=start, t0=t0, end=end, elapsed_s=end - t0,
    startup_s=ready - began, mps="CUDA_MPS_PIPE_DIRECTORY" in os.environ,
    active_thread_pct=os.environ.get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"),
    sm_count=cp.cuda.Device().attributes["MultiProcessorCount"])))
