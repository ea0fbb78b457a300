"""One PE of an NVSHMEM job on GPUs: put-with-signal ping-pong against NCCL send/recv, and a halo
exchange written against the kit's one-sided interface (the ``ctx`` of ``perflab.pgas``).

Started by ``perflab.procs.run_torchrun`` with one process per GPU. The PEs join a gloo process group,
which carries NVSHMEM's unique id from rank 0 to the others (the UID bootstrap), and an NCCL group for the
send/recv comparison. Every NVSHMEM operation here is host-initiated and stream-ordered: the host
enqueues it on the current CUDA stream and moves on; the GPU performs it in stream order.

  pingpong   PE 0 puts a message with a signal into PE 1, PE 1 waits for the signal and puts it back;
             the same exchange with NCCL send/recv. Both streams are first held by a sleeping kernel while
             the host enqueues every round trip, so CUDA events time the device side, not the host's
             issue rate. One-way time = round trip / 2.
  halo       functions from ``--halo-impl`` (a file holding the notebook's cell), each
             ``fn(ctx, u0, steps, alpha) -> final interior`` for a 1-D periodic heat equation split over
             the PEs, run on GPUs through ``NvshmemContext`` and checked against a NumPy solution; the
             time per step is (time of 2 x steps - time of steps) / steps, free of set-up costs.

Usage: torchrun --nproc-per-node 2 nvshmem_bench.py --sizes 8,1024,1048576 --halo-impl cell.py --halo-functions f,g

Taught in: notebooks/ch12_orchestration/12_09_nvshmem_one_sided.ipynb
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib.util
import sys
from importlib import metadata
import os
import statistics
import time

import numpy as np
import torch
import torch.distributed as dist

from perflab.procs import report
from perflab.timing import summary

CYCLES_PER_US = 2000  # cycles of the holding kernel per microsecond (about 2 GHz; only needs to be long enough)


class NvshmemContext:
    """The kit's one-sided interface over nvshmem4py: symmetric torch tensors, on-stream operations."""

    def __init__(self, nvshmem_core, bindings, stream: torch.cuda.Stream):
        self.nv, self.nb, self.stream = nvshmem_core, bindings, stream
        self.owned: list[torch.Tensor] = []

    def my_pe(self) -> int:
        return self.nv.my_pe()

    def n_pes(self) -> int:
        return self.nv.n_pes()

    def _symmetric(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        t = self.nv.tensor(shape, dtype=dtype)
        t.zero_()
        self.owned.append(t)
        self.barrier_all()  # no peer may put into it before it is zeroed here
        # Wait for that barrier: NVSHMEM's own collectives (the next allocation's) must not overtake an
        # on-stream barrier still queued, or the PEs pair up different barriers and deadlock.
        torch.cuda.synchronize()
        return t

    def array(self, shape) -> torch.Tensor:
        return self._symmetric(tuple(shape) if isinstance(shape, (tuple, list)) else (int(shape),), torch.float64)

    def signal(self) -> torch.Tensor:
        return self._symmetric((1,), torch.uint64)

    @staticmethod
    def _nbytes(dst: torch.Tensor, src: torch.Tensor) -> int:
        if dst.numel() != src.numel() or not (dst.is_contiguous() and src.is_contiguous()):
            raise ValueError(f"put/get need contiguous tensors of equal size; got {dst.numel()} and {src.numel()}")
        return dst.numel() * dst.element_size()

    def put(self, dst: torch.Tensor, src: torch.Tensor, pe: int) -> None:
        self.nb.putmem_on_stream(dst.data_ptr(), src.data_ptr(), self._nbytes(dst, src), pe, self.stream.cuda_stream)

    def get(self, dst: torch.Tensor, src: torch.Tensor, pe: int) -> None:
        self.nb.getmem_on_stream(dst.data_ptr(), src.data_ptr(), self._nbytes(dst, src), pe, self.stream.cuda_stream)

    def put_signal(self, dst: torch.Tensor, src: torch.Tensor, sig: torch.Tensor, value: int, pe: int) -> None:
        self.nb.putmem_signal_on_stream(dst.data_ptr(), src.data_ptr(), self._nbytes(dst, src), sig.data_ptr(),
                                        int(value), int(self.nv.SignalOp.SIGNAL_SET), pe, self.stream.cuda_stream)

    def signal_wait(self, sig: torch.Tensor, value: int) -> None:
        self.nb.signal_wait_until_on_stream(sig.data_ptr(), int(self.nv.ComparisonType.CMP_GE), int(value),
                                            self.stream.cuda_stream)

    def quiet(self) -> None:
        self.nb.quiet_on_stream(self.stream.cuda_stream)

    def barrier_all(self) -> None:
        self.nb.barrier_all_on_stream(self.stream.cuda_stream)

    def free_all(self) -> None:
        torch.cuda.synchronize()
        self.barrier_all()
        torch.cuda.synchronize()
        for t in self.owned:
            self.nv.free_tensor(t)
        self.owned.clear()


def log(message: str) -> None:
    """A progress line on stderr (run_torchrun shows the end of it if the job fails)."""
    print(f"[PE {os.environ.get('RANK')}] {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def round_trips(nbytes: int) -> int:
    """Round trips per timed sample: many for small messages, few for large (about 20 ms a sample)."""
    estimate_s = 2 * (10e-6 + nbytes / 300e9)
    return max(5, min(200, int(20e-3 / estimate_s)))


def held_events(rank_plays, trips: int) -> float:
    """Seconds between two events around ``rank_plays()``, the stream held while the host enqueues it."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(int(trips * 40 * CYCLES_PER_US))  # holds the stream; enqueueing takes far less
    start.record()
    rank_plays()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e-3


def pingpong(ctx: NvshmemContext, nccl, sizes: list[int], reps: int, rank: int) -> list[dict]:
    """One-way time of PE 0 <-> PE 1 exchanges: NVSHMEM put_signal vs NCCL send/recv."""
    largest = max(sizes)
    inbox = ctx.array((largest // 8,))  # symmetric: PE 0 and PE 1 put into each other's inbox
    arrived = ctx.signal()
    gen = torch.Generator(device="cuda").manual_seed(1234 + rank)
    mine = torch.rand(largest // 8, device="cuda", dtype=torch.float64, generator=gen)
    received = torch.empty_like(mine)
    theirs = torch.rand(largest // 8, device="cuda", dtype=torch.float64,
                        generator=torch.Generator(device="cuda").manual_seed(1234 + (1 - rank)))
    active = rank < 2  # PE 0 and PE 1 exchange; any others only take part in the collectives
    peer, rows, count = 1 - rank, [], 0
    for nbytes in sizes:
        n, trips = max(1, nbytes // 8), round_trips(nbytes)

        def nvshmem_trips() -> None:
            nonlocal count
            for _ in range(trips if active else 0):
                count += 1
                if rank == 0:
                    ctx.put_signal(inbox[:n], mine[:n], arrived, count, peer)
                    ctx.signal_wait(arrived, count)
                else:
                    ctx.signal_wait(arrived, count)
                    ctx.put_signal(inbox[:n], mine[:n], arrived, count, peer)

        def nccl_trips() -> None:
            for _ in range(trips if active else 0):
                if rank == 0:
                    dist.send(mine[:n], dst=peer, group=nccl)
                    dist.recv(received[:n], src=peer, group=nccl)
                else:
                    dist.recv(received[:n], src=peer, group=nccl)
                    dist.send(mine[:n], dst=peer, group=nccl)

        for name, play in (("NVSHMEM put_signal", nvshmem_trips), ("NCCL send/recv", nccl_trips)):
            log(f"{name}, {nbytes} bytes, {trips} round trips")
            dist.barrier()
            play()  # warm-up, and the correctness check: the peer's data arrived intact
            torch.cuda.synchronize()
            got = inbox[:n] if name.startswith("NVSHMEM") else received[:n]
            if active and not torch.equal(got, theirs[:n]):
                raise SystemExit(f"{name}: PE {rank} received wrong data for {nbytes} bytes")
            samples = []
            for _ in range(reps):
                dist.barrier()
                samples.append(held_events(play, trips) / trips / 2)
            row = dict(mechanism=name, bytes=n * 8, round_trips=trips, **summary(samples, "one_way"))
            row["GBps"] = row["bytes"] / (row["one_way_us"] * 1e-6) / 1e9
            rows.append(row)
    return rows


def load_functions(path: str, names: list[str]) -> list:
    spec = importlib.util.spec_from_file_location("halo_cell", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [getattr(module, name) for name in names]


def halo(ctx: NvshmemContext, functions, cells_per_pe: int, steps: int, alpha: float, reps: int,
         rank: int, world: int) -> list[dict]:
    """Run each halo function on the GPUs; time it (events) and compare with a NumPy solution."""
    rng = np.random.default_rng(7)
    u0 = rng.random(cells_per_pe * world)  # the whole rod, the same on every PE
    expected = u0.copy()
    for _ in range(steps):
        expected = expected + alpha * (np.roll(expected, 1) - 2 * expected + np.roll(expected, -1))
    mine = torch.from_numpy(u0[rank * cells_per_pe:(rank + 1) * cells_per_pe]).cuda()
    rows = []
    for fn in functions:
        log(f"halo: {fn.__name__}")
        got = fn(ctx, mine, steps, alpha)
        torch.cuda.synchronize()
        err = float(np.abs(got.cpu().numpy() - expected[rank * cells_per_pe:(rank + 1) * cells_per_pe]).max())
        samples, issue = [], []
        for _ in range(reps):  # runs of `steps` and of 2 x `steps`: the difference is `steps` steps, no set-up
            seconds = []
            for count in (steps, 2 * steps):
                dist.barrier()
                torch.cuda.synchronize()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                t0 = time.perf_counter()
                start.record()
                fn(ctx, mine, count, alpha)
                end.record()
                host_s = time.perf_counter() - t0
                end.synchronize()
                seconds.append((start.elapsed_time(end) * 1e-3, host_s))
            samples.append((seconds[1][0] - seconds[0][0]) / steps)
            issue.append((seconds[1][1] - seconds[0][1]) / steps)
        ctx.free_all()  # each call allocated its symmetric buffers; free them together
        rows.append(dict(variant=fn.__name__, cells_per_pe=cells_per_pe, steps=steps, max_abs_err=err,
                         host_issue_us=statistics.median(issue) * 1e6, **summary(samples, "step")))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="", help="ping-pong message sizes in bytes, comma-separated ('' skips)")
    ap.add_argument("--reps", type=int, default=5, help="timed samples per point")
    ap.add_argument("--halo-impl", default="", help="Python file defining the halo functions ('' skips)")
    ap.add_argument("--halo-functions", default="", help="names of the functions to run, comma-separated")
    ap.add_argument("--cells", type=int, default=1 << 20, help="halo: cells per PE")
    ap.add_argument("--steps", type=int, default=200, help="halo: time steps")
    ap.add_argument("--alpha", type=float, default=0.25, help="halo: diffusion number (stable up to 0.5)")
    ap.add_argument("--stall-s", type=float, default=240, help="print every thread's stack and exit after this long")
    args = ap.parse_args()
    faulthandler.dump_traceback_later(args.stall_s, exit=True)  # a deadlock reports where it is, then ends

    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    dist.init_process_group("gloo")
    nccl = dist.new_group(backend="nccl")
    import nvshmem.bindings as bindings
    import nvshmem.core as nv
    from cuda.core import Device

    device = Device(local)
    device.set_current()
    uid = [nv.get_unique_id(empty=rank != 0)]
    dist.broadcast_object_list(uid, src=0)  # the UID bootstrap: rank 0's id reaches every PE
    nv.init(device=device, uid=uid[0], rank=rank, nranks=world, initializer_method="uid")
    log(f"NVSHMEM initialised: PE {nv.my_pe()} of {nv.n_pes()}")
    ctx = NvshmemContext(nv, bindings, torch.cuda.current_stream())
    result = dict(rank=rank, world=world, device_name=torch.cuda.get_device_name(local),
                  nvshmem4py=metadata.version("nvshmem4py-cu13"),
                  multicast_env={k: os.environ.get(k) for k in ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST",
                                                                "NVSHMEM_DISABLE_NVLS")})
    try:  # device-initiated communication: kernels that put and signal themselves (numba-cuda)
        import nvshmem.core.device.numba  # noqa: F401
        result["device_api"] = "nvshmem.core.device.numba imports: device-initiated puts are available"
    except Exception as error:
        result["device_api"] = f"nvshmem.core.device.numba does not import here ({type(error).__name__}: {error})"
    if args.sizes and world >= 2:
        result["pingpong"] = pingpong(ctx, nccl, [int(s) for s in args.sizes.split(",")], args.reps, rank)
        ctx.free_all()
    dist.barrier()
    if args.halo_impl:
        functions = load_functions(args.halo_impl, args.halo_functions.split(","))
        result["halo"] = halo(ctx, functions, args.cells, args.steps, args.alpha, args.reps, rank, world)
    ctx.free_all()
    nv.finalize()
    dist.barrier()
    dist.destroy_process_group()
    report(result)
    os._exit(0)  # skip C++ static destructors: communication threads winding down can abort the process


if __name__ == "__main__":
    main()
