"""One rank of a torch.distributed job that measures collectives: the all-reduce curve, eager vs
graph-captured steps, and bucketed all-reduce overlapped with compute.

Started by ``perflab.procs.run_torchrun`` (torchrun sets RANK, LOCAL_RANK, WORLD_SIZE); with
``--backend nccl`` each rank drives GPU LOCAL_RANK and times with CUDA events on its current stream, with
``--backend gloo`` it runs on the CPU and times with the host clock. Three experiments, each optional:

  allreduce   for each message size, the median time of one all-reduce (float32 sum) over repeats of
              back-to-back calls; algorithm bandwidth = bytes / time, bus bandwidth = that x 2(n-1)/n.
  graph       a small step (matmul -> all-reduce -> matmul) run eagerly and replayed from a CUDA graph
              that captured it (NCCL only): the host's time to issue a step (bursts of up to 50 into an
              idle queue), time per step in a long stream of steps, and the latency of single steps
              (median and 99th percentile).
  buckets     a gradient buffer computed bucket by bucket (matmuls), all-reduced once at the end or one
              bucket at a time with ``async_op=True`` as soon as that bucket is ready, so the reduction
              of bucket k overlaps the compute of bucket k+1; also compute alone, the all-reduce alone,
              and (rank 0) the whole global batch's compute on one device.

Every experiment checks its result before timing: the all-reduce against the sum of the gathered inputs,
the graph's output against the eager step's, the bucketed gradients against the single all-reduce's.
Each rank reports one JSON object through ``procs.report``.

Usage: torchrun --nproc-per-node 2 nccl_bench.py --backend nccl --sizes 8,1024,1048576 --buckets 1,4,16

Taught in: notebooks/ch12_orchestration/12_08_p2p_and_nccl.ipynb
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import torch
import torch.distributed as dist

from perflab.procs import report
from perflab.timing import Timing, summary


class Clock:
    """Seconds taken by fn(): CUDA events on the current stream, or the host clock on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def time(self, fn: Callable[[], object]) -> float:
        dist.barrier()  # everyone starts together: a collective's time must not include a late peer
        self.sync()
        if not self.cuda:
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) * 1e-3


def random_tensor(n: int, device: torch.device, seed: int, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape or (n,), generator=gen).to(device)


def allreduce_curve(sizes: list[int], reps: int, clock: Clock, device: torch.device, rank: int,
                    world: int) -> list[dict]:
    check = random_tensor(1 << 18, device, seed=11 + rank)
    gathered = [torch.empty_like(check) for _ in range(world)]
    dist.all_gather(gathered, check)
    reduced = check.clone()
    dist.all_reduce(reduced)
    if not torch.allclose(reduced, torch.stack(gathered).sum(0), rtol=1e-5, atol=1e-5):
        raise SystemExit("all_reduce did not return the sum of the ranks' tensors")
    rows = []
    for nbytes in sizes:
        original = random_tensor(max(1, nbytes // 4), device, seed=100 + rank)
        buf = original.clone()
        inner = 20 if nbytes <= 1 << 20 else 5 if nbytes <= 64 << 20 else 2  # calls per timed sample

        def calls() -> None:
            for _ in range(inner):
                dist.all_reduce(buf)

        for _ in range(2):  # warm-up: NCCL sets up its channels for this size
            calls()
        samples = []
        for _ in range(reps):
            buf.copy_(original)  # sums double the values each call: start each sample afresh
            samples.append(clock.time(calls) / inner)
        row = dict(bytes=buf.numel() * 4, inner=inner, **summary(samples, "time"))
        row["algbw_GBps"] = row["bytes"] / (row["time_us"] * 1e-6) / 1e9
        row["busbw_GBps"] = row["algbw_GBps"] * 2 * (world - 1) / world
        rows.append(row)
    return rows


def eager_vs_graph(dim: int, steps: int, clock: Clock, device: torch.device, rank: int) -> dict:
    """A small matmul -> all_reduce -> matmul step, eager and as one CUDA graph replay (NCCL only)."""
    x = random_tensor(0, device, 21 + rank, (dim, dim))
    w1, w2 = random_tensor(0, device, 22, (dim, dim)) / dim ** 0.5, random_tensor(0, device, 23, (dim, dim)) / dim ** 0.5
    out = torch.empty_like(x)

    def step() -> None:
        h = x @ w1
        dist.all_reduce(h)
        torch.matmul(h, w2, out=out)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm the communicator and the kernels off the default stream
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    step()
    eager_out = out.clone()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):  # every rank captures the same collective, in the same order
        step()
    graph.replay()
    torch.cuda.synchronize()
    if not torch.allclose(out, eager_out, rtol=1e-4, atol=1e-4):
        raise SystemExit("the graph replay's output differs from the eager step's")

    result = {"dim": dim, "allreduce_bytes": dim * dim * 4, "steps": steps}
    for name, run in (("eager", step), ("graph", graph.replay)):
        for _ in range(20):
            run()
        host_s, wall_s = [], []
        burst = min(steps, 50)  # few enough that the GPU's launch queue never fills and pushes back
        for _ in range(5):
            dist.barrier()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(burst):
                run()
            host_s.append((time.perf_counter() - t0) / burst)  # host time to issue one step
            torch.cuda.synchronize()
            dist.barrier()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):  # a stream of steps: per-step cost when the host runs ahead
                run()
            torch.cuda.synchronize()
            wall_s.append((time.perf_counter() - t0) / steps)
        single = []
        for _ in range(steps):  # one step at a time, waited for: latency and its jitter
            single.append(clock.time(run))
        latency = Timing([x * 1e3 for x in single], method="CUDA events, one step each", n_warmup=20)
        result[name] = dict(per_step_us=statistics.median(wall_s) * 1e6,
                            host_issue_us=statistics.median(host_s) * 1e6,
                            single_p50_us=latency.median_ms * 1e3,
                            single_p99_us=latency.q(0.99) * 1e3,
                            single_us=[round(s * 1e6, 2) for s in single[:: max(1, steps // 500)]])
    return result


def bucketed(n_rows: int, n_cols: int, batch: int, buckets: list[int], reps: int, clock: Clock,
             device: torch.device, rank: int, world: int) -> dict:
    """Gradient = dY^T-like product computed bucket by bucket; all-reduce at the end or per bucket."""
    b_t = random_tensor(0, device, 31 + rank, (n_rows, batch))  # this rank's half of the batch
    a_t = random_tensor(0, device, 32 + rank, (batch, n_cols))
    grad = torch.empty(n_rows, n_cols, device=device)

    def blocks(k: int) -> list[tuple[int, int]]:
        """k row ranges of nearly equal size covering the gradient."""
        return [(i * n_rows // k, (i + 1) * n_rows // k) for i in range(k)]

    def compute(k: int) -> None:
        for lo, hi in blocks(k):
            torch.matmul(b_t[lo:hi], a_t, out=grad[lo:hi])

    def at_end(k: int) -> None:
        compute(k)
        dist.all_reduce(grad)

    def overlapped(k: int) -> None:
        works = []
        for lo, hi in blocks(k):
            torch.matmul(b_t[lo:hi], a_t, out=grad[lo:hi])
            # async_op: the reduction of this block runs on the communication stream while the next
            # block computes; NCCL's stream first waits for the work queued so far (this block's matmul).
            works.append(dist.all_reduce(grad[lo:hi], async_op=True))
        for work in works:
            work.wait()  # the current stream waits for every reduction before the step is done

    expected_grad = None
    for k in buckets:  # correctness first: both orders give the same sums, bit for bit
        at_end(k)
        expected_grad = grad.clone()
        overlapped(k)
        if not torch.equal(grad, expected_grad):
            raise SystemExit(f"bucketed all-reduce with {k} buckets differs from one all-reduce at the end")

    def timed(fn: Callable[[], object]) -> dict[str, float]:
        for _ in range(2):
            fn()
        return summary([clock.time(fn) for _ in range(reps)], "time")

    rows = []
    for k in buckets:
        rows.append(dict(variant="all-reduce at the end", buckets=k, **timed(lambda: at_end(k))))
        rows.append(dict(variant="bucketed, overlapped", buckets=k, **timed(lambda: overlapped(k))))
    compute_only = timed(lambda: compute(1))
    comm_only = timed(lambda: dist.all_reduce(grad))
    global_compute = None
    if rank == 0:  # the whole global batch on one device, no communication: the one-device step
        b_full = random_tensor(0, device, 41, (n_rows, batch * world))
        a_full = random_tensor(0, device, 42, (batch * world, n_cols))
        for _ in range(2):
            torch.matmul(b_full, a_full, out=grad)
        clock.sync()
        samples = []
        for _ in range(reps):  # no barrier: the other ranks are not part of this
            t0 = time.perf_counter()
            torch.matmul(b_full, a_full, out=grad)
            clock.sync()
            samples.append(time.perf_counter() - t0)
        global_compute = summary(samples, "time")
    dist.barrier()
    return dict(n_rows=n_rows, n_cols=n_cols, batch_per_rank=batch, grad_bytes=grad.numel() * 4,
                flops_per_rank=2 * n_rows * n_cols * batch, rows=rows, compute_only=compute_only,
                allreduce_only=comm_only, global_compute_one_device=global_compute)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("nccl", "gloo"), required=True)
    ap.add_argument("--sizes", default="", help="all-reduce message sizes in bytes, comma-separated ('' skips)")
    ap.add_argument("--reps", type=int, default=7, help="timed samples per point")
    ap.add_argument("--graph-dim", type=int, default=0, help="matrix size of the eager-vs-graph step (0 skips)")
    ap.add_argument("--graph-steps", type=int, default=1000, help="steps timed for eager and for graph")
    ap.add_argument("--buckets", default="", help="bucket counts to compare, comma-separated ('' skips)")
    ap.add_argument("--grad-rows", type=int, default=8192, help="rows of the bucketed gradient")
    ap.add_argument("--grad-cols", type=int, default=4096, help="columns of the bucketed gradient")
    ap.add_argument("--batch", type=int, default=512, help="per-rank batch (the matmuls' inner dimension)")
    args = ap.parse_args()
    if args.reps < 3:
        raise SystemExit("--reps must be at least 3")

    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if args.backend == "nccl":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 gradients computed in float32
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(1)
        dist.init_process_group("gloo")
    clock = Clock(device)
    result = dict(rank=rank, world=world, backend=args.backend, device=str(device),
                  device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                  nccl_version=".".join(map(str, torch.cuda.nccl.version())) if device.type == "cuda" else None,
                  multicast_env={k: os.environ.get(k) for k in ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST",
                                                                "NVSHMEM_DISABLE_NVLS")})
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
        result["allreduce"] = allreduce_curve(sizes, args.reps, clock, device, rank, world)
    if args.graph_dim and device.type == "cuda":
        result["graph"] = eager_vs_graph(args.graph_dim, args.graph_steps, clock, device, rank)
    if args.buckets:
        ks = [int(k) for k in args.buckets.split(",")]
        result["buckets"] = bucketed(args.grad_rows, args.grad_cols, args.batch, ks, args.reps, clock, device,
                                     rank, world)
    dist.barrier()
    dist.destroy_process_group()
    report(result)
    os._exit(0)  # skip C++ static destructors: NCCL threads winding down can abort a finished process


if __name__ == "__main__":
    main()
