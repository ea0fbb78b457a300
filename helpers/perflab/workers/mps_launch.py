"""Many tiny matrix products issued from Python: the launch-bound client of lesson 03.05.

Each product of two ``--size`` x ``--size`` bf16 matrices takes the GPU a few microseconds, about as
long as Python and the driver take to launch it, so the GPU idles between kernels and the process's
speed is set by how fast its CPU thread can launch. After a check and a warm-up, the worker issues
``--launches`` products back to back from the shared start time, synchronises once, and prints one
JSON line.

Taught in: notebooks/ch03_os_containers/03_05_mps_gpu_sharing.ipynb
"""

import argparse
import json
import os
import time

import torch

from perflab.procs import wait_for_start

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--size", type=int, default=256, help="matrix size n")
parser.add_argument("--launches", type=int, default=20_000, help="products timed after the start")
args = parser.parse_args()

n = args.size
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
ref = a.float() @ b.float()
err = ((a @ b).float() - ref).abs().max().item() / ref.abs().max().item()
if err > 2e-2:
    raise SystemExit(f"bf16 product differs from float32 by {err:.3g} of its largest value")
for _ in range(200):  # warm-up
    torch.mm(a, b, out=c)
torch.cuda.synchronize()

start = wait_for_start()
t0 = time.time()
for _ in range(args.launches):
    torch.mm(a, b, out=c)
torch.cuda.synchronize()
end = time.time()

print(json.dumps(dict(
    rank=int(os.environ.get("PERFLAB_RANK", "0")), pid=os.getpid(), size=n, launches=args.launches,
    start=start, t0=t0, end=end, elapsed_s=end - t0, us_per_launch=1e6 * (end - t0) / args.launches,
    mps="CUDA_MPS_PIPE_DIRECTORY" in os.environ)))
