"""One rank of a two-rank DDP job that separates compute from the gradient all-reduce.

The model is an MLP of fixed size, so every step all-reduces the same number of gradient bytes
whatever the batch size. For each batch size given, the worker times, with the host clock read after
a device synchronisation (CUDA) or directly (CPU):

  forward                 the forward pass and the loss
  backward (DDP)          loss.backward() under DistributedDataParallel: the gradients are computed
                          and all-reduced bucket by bucket, the all-reduce overlapping the rest of
                          the backward pass; DDP returns only when every bucket has been reduced
  backward (local)        the same backward pass inside ``ddp.no_sync()``: no all-reduce at all
  optimizer step          SGD on the averaged gradients

and, once, an all-reduce of a buffer as large as all the gradients with nothing else running: the
rate the link gives a lone all-reduce. Achieved all-reduce rate during the backward pass = gradient
bytes / backward (DDP) time; exposed communication = backward (DDP) - backward (local).

Before timing, the worker checks that DDP's gradients are the mean of the two ranks' local gradients
and that the lone all-reduce sums correctly; after timing, that both ranks hold the same parameters.

Run by perflab.procs.run_workers (2 workers): each rank reads PERFLAB_RANK / PERFLAB_NWORKERS, joins
the process group through a file store (--store, a path that does not exist yet), prepares, waits
for the shared start, measures, and prints one JSON object as its last line.

Usage: python ddp_comm.py --backend gloo --store /tmp/x/store --width 512 --layers 4 --batches 16,32,64,128

Taught in: notebooks/ch05_storage_io/05_07_profiling_workflow.ipynb
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from perflab.procs import wait_for_start


def median_ms(samples_s: list[float]) -> float:
    return statistics.median(samples_s) * 1e3


def quantile_ms(samples_s: list[float], p: float) -> float:
    xs = sorted(samples_s)
    pos = p * (len(xs) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(xs) - 1)
    return (xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)) * 1e3


def build_model(width: int, layers: int, d_in: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)  # same seed on every rank: DDP also broadcasts rank 0's weights
    blocks: list[nn.Module] = [nn.Linear(d_in, width), nn.ReLU()]
    for _ in range(layers - 1):
        blocks += [nn.Linear(width, width), nn.ReLU()]
    blocks.append(nn.Linear(width, 10))
    return nn.Sequential(*blocks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("gloo", "nccl"), required=True)
    ap.add_argument("--store", required=True, help="file for the process group's FileStore (must not exist yet)")
    ap.add_argument("--width", type=int, default=512, help="hidden width of the MLP")
    ap.add_argument("--layers", type=int, default=4, help="hidden layers (each width x width)")
    ap.add_argument("--d-in", type=int, default=256, help="input features")
    ap.add_argument("--batches", default="16,32,64,128", help="per-rank batch sizes, comma-separated")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per batch size")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per batch size and variant")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads per rank (CPU)")
    ap.add_argument("--bucket-MB", type=float, default=25.0, help="DDP bucket_cap_mb")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if min(batches) < 1 or args.steps < 1 or args.layers < 1:
        raise SystemExit("batch sizes, --steps and --layers must be at least 1")

    rank, world = int(os.environ.get("PERFLAB_RANK", "0")), int(os.environ.get("PERFLAB_NWORKERS", "1"))
    torch.set_num_threads(args.threads)
    if args.backend == "nccl":
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
        sync = torch.cuda.synchronize
    else:
        device = torch.device("cpu")

        def sync() -> None:  # CPU work is done when the call returns
            pass

    dist.init_process_group(args.backend, init_method=f"file://{args.store}", rank=rank, world_size=world)
    model = build_model(args.width, args.layers, args.d_in, seed=0).to(device)
    ddp = DDP(model, device_ids=[rank] if device.type == "cuda" else None, bucket_cap_mb=args.bucket_MB)
    params = [p for p in model.parameters()]
    grad_bytes = sum(p.numel() * p.element_size() for p in params)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator(device="cpu").manual_seed(1000 + rank)  # each rank sees different data

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, args.d_in, generator=gen).to(device)
        y = torch.randint(0, 10, (n,), generator=gen).to(device)
        return x, y

    # Correctness 1: DDP's gradient = mean over ranks of the local gradients.
    x, y = batch(batches[0])
    with ddp.no_sync():
        loss_fn(ddp(x), y).backward()
    local = torch.cat([p.grad.reshape(-1) for p in params])
    opt.zero_grad(set_to_none=True)
    loss_fn(ddp(x), y).backward()
    synced = torch.cat([p.grad.reshape(-1) for p in params])
    opt.zero_grad(set_to_none=True)
    everyone = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(everyone, local)
    expected = torch.stack(everyone).mean(0)
    if not torch.allclose(synced, expected, rtol=1e-4, atol=1e-6):
        raise SystemExit("DDP's gradients are not the mean of the ranks' local gradients")

    # Correctness 2, and the lone all-reduce: a gradient-sized buffer of random values.
    flat = torch.randn(grad_bytes // 4, generator=torch.Generator().manual_seed(7 + rank)).to(device)
    parts = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(parts, flat)
    reduced = flat.clone()
    dist.all_reduce(reduced)
    if not torch.allclose(reduced, torch.stack(parts).sum(0), rtol=1e-4, atol=1e-5):
        raise SystemExit("all_reduce did not return the sum of the ranks' buffers")
    for _ in range(args.warmup):
        for kind in ("ddp", "local"):
            for n in batches:
                x, y = batch(n)
                if kind == "ddp":
                    loss_fn(ddp(x), y).backward()
                    opt.step()
                else:
                    with ddp.no_sync():
                        loss_fn(ddp(x), y).backward()
                opt.zero_grad(set_to_none=True)
        dist.all_reduce(reduced)
    sync()

    start = wait_for_start()
    lone_s = []
    for _ in range(max(3, args.steps)):
        dist.barrier()
        sync()
        t0 = time.perf_counter()
        dist.all_reduce(reduced)
        sync()
        lone_s.append(time.perf_counter() - t0)

    rows = []
    for n in batches:
        times: dict[str, list[float]] = {"forward": [], "backward_ddp": [], "backward_local": [], "step": []}
        for kind in ("ddp", "local"):
            for _ in range(args.steps):
                x, y = batch(n)
                dist.barrier()
                sync()
                t0 = time.perf_counter()
                # "local" runs the same passes inside no_sync(): the backward pass without the all-reduce.
                with contextlib.nullcontext() if kind == "ddp" else ddp.no_sync():
                    loss = loss_fn(ddp(x), y)
                    sync()
                    t1 = time.perf_counter()
                    loss.backward()
                    sync()
                    t2 = time.perf_counter()
                if kind == "local":
                    opt.zero_grad(set_to_none=True)
                    times["backward_local"].append(t2 - t1)
                    continue
                opt.step()
                opt.zero_grad(set_to_none=True)
                sync()
                t3 = time.perf_counter()
                times["forward"].append(t1 - t0)
                times["backward_ddp"].append(t2 - t1)
                times["step"].append(t3 - t2)
        row = dict(batch=n, grad_bytes=grad_bytes)
        for name, samples in times.items():
            row[f"{name}_ms"] = median_ms(samples)
            row[f"{name}_p20_ms"] = quantile_ms(samples, 0.2)
            row[f"{name}_p80_ms"] = quantile_ms(samples, 0.8)
        rows.append(row)
    end = time.time()

    # Correctness 3: the ranks still agree on every parameter.
    mine = torch.cat([p.detach().reshape(-1) for p in params])
    theirs = mine.clone()
    dist.broadcast(theirs, src=0)
    same = bool(torch.equal(mine, theirs))
    dist.barrier()
    del ddp  # release DDP's reducer before its process group goes
    dist.destroy_process_group()
    if not same:
        raise SystemExit(f"rank {rank}'s parameters differ from rank 0's after the DDP steps")
    print(json.dumps(dict(
        rank=rank, world=world, backend=args.backend, device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        width=args.width, layers=args.layers, d_in=args.d_in, params=sum(p.numel() for p in params),
        grad_bytes=grad_bytes, threads=args.threads, bucket_MB=args.bucket_MB, steps=args.steps,
        lone_allreduce_ms=median_ms(lone_s), lone_allreduce_p20_ms=quantile_ms(lone_s, 0.2),
        lone_allreduce_p80_ms=quantile_ms(lone_s, 0.8), rows=rows, start=start, end=end,
        nccl_env={k: os.environ.get(k) for k in ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST",
                                                 "NVSHMEM_DISABLE_NVLS")})), flush=True)
    # Leave without running C++ static destructors: a communication library's threads still winding
    # down at interpreter exit occasionally abort the process ("terminate called without an active
    # exception") after the work is done and reported.
    os._exit(0)


if __name__ == "__main__":
    main()
