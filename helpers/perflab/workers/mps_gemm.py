"""One large bf16 matrix product in a loop, in TFLOP/s: the active-thread-percentage client of lesson 03.05.

Square ``--size`` matrices of random bf16 values; after a correctness check against a float32 product
and a warm-up, the worker times ``--reps`` blocks of ``--gemms`` products with CUDA events (after the
shared start time) and prints one JSON line with the median and p20/p80 TFLOP/s. Run it as an MPS
client with CUDA_MPS_ACTIVE_THREAD_PERCENTAGE set to cap the share of SMs it may use.

Taught in: notebooks/ch03_os_containers/03_05_mps_gpu_sharing.ipynb
"""

import argparse
import json
import os
import statistics
import time

import torch

from perflab.procs import wait_for_start

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--size", type=int, default=8192, help="matrix size n (n x n times n x n)")
parser.add_argument("--gemms", type=int, default=50, help="products per timed block")
parser.add_argument("--reps", type=int, default=5, help="timed blocks")
args = parser.parse_args()

n = args.size
gen = torch.Generator(device="cuda").manual_seed(int(os.environ.get("PERFLAB_RANK", "0")))
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=gen)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=gen)
c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)

rows = min(n, 256)  # correctness: a slice of the product against float32
ref = a[:rows].float() @ b.float()
err = ((a[:rows] @ b).float() - ref).abs().max().item() / ref.abs().max().item()
if err > 2e-2:
    raise SystemExit(f"bf16 product differs from float32 by {err:.3g} of its largest value")

for _ in range(5):  # warm-up: cuBLAS picks its kernel, clocks rise
    torch.mm(a, b, out=c)
torch.cuda.synchronize()

start = wait_for_start()
t0 = time.time()
events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(args.reps)]
for begin, finish in events:
    begin.record()
    for _ in range(args.gemms):
        torch.mm(a, b, out=c)
    finish.record()
torch.cuda.synchronize()
end = time.time()
flops = 2 * n**3 * args.gemms
tflops = sorted(flops / (begin.elapsed_time(finish) / 1e3) / 1e12 for begin, finish in events)
q = statistics.quantiles(tflops, n=5, method="inclusive") if len(tflops) > 1 else tflops * 4

print(json.dumps(dict(
    rank=int(os.environ.get("PERFLAB_RANK", "0")), pid=os.getpid(), size=n, gemms=args.gemms, reps=args.reps,
    tflops=statistics.median(tflops), tflops_p20=q[0], tflops_p80=q[3], tflops_all=tflops,
    start=start, t0=t0, end=end, elapsed_s=end - t0, mps="CUDA_MPS_PIPE_DIRECTORY" in os.environ,
    active_thread_pct=os.environ.get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"),
    sm_count_seen=torch.cuda.get_device_properties(0).multi_processor_count)))
