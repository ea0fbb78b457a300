"""The roofline: measure a machine's ceilings, place measured kernels, pick the next move.

A kernel that does ``flops`` work and moves ``nbytes`` to and from memory has
*arithmetic intensity* I = flops / nbytes (FLOP/B). On a machine with memory
bandwidth B and a compute peak P it cannot run faster than

    attainable(I) = min(P, I x B)

so below the *ridge point* I = P / B it is capped by memory, above it by
compute. ``Ceilings`` holds measured (or datasheet) B and P per precision,
``Point`` one measured kernel, ``recommend`` the decision rules of chapter 12
and ``plot`` draws it all on log-log axes. Units: GB/s (10^9 B/s), TFLOP/s
(10^12 FLOP/s), FLOP/B.

Taught in: notebooks/ch12_orchestration/12_07_roofline.ipynb
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from perflab.timing import Timing, bench

GPU_PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp8")
NEAR_ROOF = 0.5  # achieved / attainable at or above this: the kernel is at its roof
FAR_BELOW = 0.1  # below this, and short: launch overhead or latency, not a roof
LAUNCH_US = 20.0  # a call shorter than this is dominated by its launch (a few us on a GPU)
MiB = 2**20

# Vendor figures for comparison (dense, no sparsity; "fp32" is the non-tensor-core peak).
# Source: NVIDIA H100 Tensor Core GPU datasheet (SXM5) and H200 product brief.
DATASHEETS: dict[str, dict[str, Any]] = {
    "NVIDIA H100 80GB HBM3": dict(bw_GBps=3350.0, peak_TFLOPs={
        "fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9}),
    "NVIDIA H200": dict(bw_GBps=4800.0, peak_TFLOPs={
        "fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9}),
}

ACTIONS = {
    "memory-bound": (
        "cut bytes: fuse producer and consumer so intermediates never go to memory",
        "lower precision (bf16, fp8) so each element costs fewer bytes",
        "overlap transfers (H2D/D2H, communication) with this kernel on other streams",
    ),
    "compute-bound": (
        "use tensor cores (bf16/tf32/fp8 matmul paths) for a higher roof",
        "lower precision: fp8 has about twice the bf16 peak",
        "cut FLOPs algorithmically (skip masked work, avoid recomputation)",
    ),
    "launch-bound": (
        "capture the sequence in a CUDA graph (one launch for many kernels)",
        "fuse the small kernels into one, or give each launch more work (batch)",
        "use a persistent kernel or device-side launch for a long chain of small steps",
    ),
    "in between": (
        "run independent kernels concurrently (streams, concurrent graph branches)",
        "raise parallelism: more blocks or bytes in flight, a bigger batch",
        "then re-measure: which roof does it approach now?",
    ),
}

# The same rules in a CPU's terms (NumPy, threads, BLAS), for ``recommend(..., actions=CPU_ACTIONS)``.
CPU_ACTIONS = {
    "memory-bound": (
        "cut bytes: block the loop for cache so intermediates never reach DRAM",
        "lower precision (float32) so each element costs fewer bytes",
        "overlap I/O or other transfers with this work in other threads",
    ),
    "compute-bound": (
        "use a vectorised library kernel (BLAS, SIMD) for the highest roof",
        "lower precision: float32 doubles the SIMD rate",
        "cut FLOPs algorithmically",
    ),
    "launch-bound": (
        "batch the work into fewer, larger calls (vectorise the Python loop)",
        "fuse the calls into one compiled kernel (numba, numexpr, C)",
        "move the loop out of the interpreter",
    ),
    "in between": (
        "use more cores: threads or processes on independent parts",
        "give each call more work (bigger blocks, batches)",
        "then re-measure: which roof does it approach now?",
    ),
}


@dataclass(frozen=True)
class Ceilings:
    """A machine's memory bandwidth (GB/s) and compute peaks (TFLOP/s per precision)."""

    device: str
    bw_GBps: float
    peak_TFLOPs: dict[str, float]
    source: str = ""  # provenance for plot titles, e.g. a record's ``.source``
    kind: str = "measured"  # or "datasheet"
    skipped: dict[str, str] = field(default_factory=dict)  # precision -> why it was not measured

    def peak(self, precision: str) -> float:
        """The compute roof for ``precision`` in TFLOP/s."""
        if precision not in self.peak_TFLOPs:
            why = f" ({self.skipped[precision]})" if precision in self.skipped else ""
            raise KeyError(f"No {precision} peak for {self.device}{why}; have: {', '.join(self.peak_TFLOPs)}.")
        return self.peak_TFLOPs[precision]

    def ridge(self, precision: str) -> float:
        """Intensity (FLOP/B) where the memory roof meets the compute roof."""
        return self.peak(precision) * 1e3 / self.bw_GBps

    def attainable(self, intensity: float, precision: str) -> float:
        """The roof at ``intensity`` (FLOP/B): min(peak, intensity x bandwidth), in TFLOP/s."""
        return min(self.peak(precision), intensity * self.bw_GBps / 1e3)

    def bound(self, intensity: float, precision: str) -> str:
        """Which roof caps this intensity: "memory" or "compute"."""
        return "memory" if intensity < self.ridge(precision) else "compute"

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]], *, device: str, source: str = "") -> "Ceilings":
        """Ceilings from measurement rows: the best bandwidth row, the best rate per precision."""
        bw, peaks, skipped = 0.0, {}, {}
        for r in rows:
            if r.get("skipped"):
                skipped[r.get("precision", r.get("kernel", "?"))] = r["skipped"]
            elif r.get("ceiling") == "bandwidth":
                bw = max(bw, r["GBps"])
            elif r.get("ceiling") == "compute":
                peaks[r["precision"]] = max(peaks.get(r["precision"], 0.0), r["TFLOPs"])
        if bw <= 0 or not peaks:
            raise ValueError("Ceilings need at least one bandwidth row and one compute row.")
        return cls(device, bw, peaks, source, "measured", skipped)

    @classmethod
    def from_record(cls, rec: Any) -> "Ceilings":
        """Ceilings from a results record made of ``measure_*_ceilings`` rows."""
        fp = rec.fingerprint
        gpu_rows = any(r.get("device_type", "cuda") == "cuda" for r in rec.rows)
        device = (fp.get("gpu") if gpu_rows else None) or fp.get("cpu") or "unknown device"
        return cls.from_rows(rec.rows, device=device, source=rec.source)


def datasheet(device: str) -> Ceilings | None:
    """The vendor's ceilings for a GPU named as torch names it, or None if the kit has none."""
    spec = DATASHEETS.get(device)
    if spec is None:
        return None
    return Ceilings(device, spec["bw_GBps"], dict(spec["peak_TFLOPs"]), "datasheet", "datasheet")


@dataclass(frozen=True)
class Point:
    """One measured kernel: counted FLOPs and bytes per call, and its median time."""

    name: str
    flops: float
    nbytes: float
    time_ms: float
    precision: str = "fp32"
    group: str = ""
    p20_ms: float | None = None
    p80_ms: float | None = None
    launches: int = 1  # kernel launches per measured call (e.g. a loop of 100 small kernels)

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved."""
        return self.flops / self.nbytes

    @property
    def TFLOPs(self) -> float:
        return self.flops / (self.time_ms * 1e-3) / 1e12

    @property
    def GBps(self) -> float:
        return self.nbytes / (self.time_ms * 1e-3) / 1e9

    @classmethod
    def from_timing(cls, name: str, flops: float, nbytes: float, t: Timing, **kw: Any) -> "Point":
        return cls(name, flops, nbytes, t.median_ms, p20_ms=t.p20_ms, p80_ms=t.p80_ms, **kw)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Point":
        """A point from a record row with name, flops, nbytes, median_ms (and optional extras)."""
        return cls(row["name"], row["flops"], row["nbytes"], row["median_ms"], row.get("precision", "fp32"),
                   row.get("group", ""), row.get("p20_ms"), row.get("p80_ms"), row.get("launches", 1))

    @property
    def time_us_per_launch(self) -> float:
        return self.time_ms * 1e3 / self.launches

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Advice:
    """What the roofline says about one kernel, and what to try first."""

    category: str  # "memory-bound", "compute-bound", "launch-bound" or "in between"
    side: str  # which roof caps its intensity: "memory" or "compute"
    fraction: float  # achieved / attainable at its intensity
    actions: tuple[str, ...]
    reason: str

    def __str__(self) -> str:
        return f"{self.category} ({self.fraction:.0%} of its {self.side} roof): {self.actions[0]}"


def recommend(
    intensity: float,
    achieved_TFLOPs: float,
    ceilings: Ceilings,
    precision: str = "fp32",
    *,
    time_us: float | None = None,
    overhead_fraction: float | None = None,
    launch_us: float = LAUNCH_US,
    actions: dict[str, tuple[str, ...]] = ACTIONS,
) -> Advice:
    """Apply the chapter's decision rules to one kernel.

    Args:
        intensity: counted FLOPs per counted byte.
        achieved_TFLOPs: counted FLOPs / measured time.
        time_us: time per call; a call under ``launch_us`` far below both roofs is launch-bound.
        overhead_fraction: share of the wall time the device sat idle between launches, if known.
        actions: what to try per category; ``ACTIONS`` (GPU) or ``CPU_ACTIONS``.

    Near its roof (>= NEAR_ROOF of attainable) a kernel is memory- or compute-bound by its side
    of the ridge; far below (< FAR_BELOW) and short, or with idle gaps >= 30 %, it is
    launch-bound; otherwise it is in between, where concurrency helps.

    Example:
        advice = recommend(p.intensity, p.TFLOPs, ceilings, "bf16", time_us=p.time_ms * 1e3)
    """
    if intensity <= 0 or achieved_TFLOPs <= 0:
        raise ValueError(f"Intensity and achieved rate must be positive; got {intensity} and {achieved_TFLOPs}.")
    side = ceilings.bound(intensity, precision)
    roof = ceilings.attainable(intensity, precision)
    frac = achieved_TFLOPs / roof
    short = time_us is None or time_us < launch_us
    if overhead_fraction is not None and overhead_fraction >= 0.3:
        category, reason = "launch-bound", f"the device idles {overhead_fraction:.0%} of the time between launches"
    elif frac >= NEAR_ROOF:
        category, reason = f"{side}-bound", f"at {frac:.0%} of the {side} roof"
    elif frac < FAR_BELOW and short:
        category = "launch-bound"
        reason = f"far below both roofs ({frac:.1%})" + (f" in {time_us:.1f} us per call" if time_us else "")
    else:
        category, reason = "in between", f"at {frac:.0%} of the {side} roof: neither roof is the limit yet"
    return Advice(category, side, frac, actions[category], reason)


def place(points: Iterable[Point], ceilings: Ceilings, **kw: Any) -> list[dict[str, Any]]:
    """One row per point: intensity, achieved rate, its roof and the advice (``kw`` to recommend).

    The time per launch that ``recommend`` judges is the point's time over its ``launches``.
    """
    rows = []
    for p in points:
        a = recommend(p.intensity, p.TFLOPs, ceilings, p.precision, time_us=p.time_us_per_launch, **kw)
        rows.append(dict(name=p.name, precision=p.precision, intensity=p.intensity, TFLOPs=p.TFLOPs,
                         GBps=p.GBps, attainable_TFLOPs=ceilings.attainable(p.intensity, p.precision),
                         ridge=ceilings.ridge(p.precision), fraction=a.fraction, side=a.side,
                         category=a.category, action=a.actions[0]))
    return rows


# ---- counting: the minimum (compulsory) traffic, each operand read or written once -------------

def elementwise_counts(n: int, *, reads: int, writes: int, itemsize: int, flops_per_element: float = 1) -> tuple[float, float]:
    """(FLOPs, bytes) of an elementwise kernel over ``n`` elements."""
    return flops_per_element * n, (reads + writes) * n * itemsize


def reduction_counts(n: int, *, itemsize: int) -> tuple[float, float]:
    """(FLOPs, bytes) of summing ``n`` elements into one."""
    return float(n), (n + 1) * itemsize


def matmul_counts(m: int, n: int, k: int, *, itemsize: int, out_itemsize: int | None = None) -> tuple[float, float]:
    """(FLOPs, bytes) of C[m,n] = A[m,k] @ B[k,n]: 2mnk FLOPs, A and B read once, C written once."""
    out = itemsize if out_itemsize is None else out_itemsize
    return 2.0 * m * n * k, float(itemsize * (m * k + k * n) + out * m * n)


def attention_counts(batch: int, heads: int, seq_q: int, seq_kv: int, head_dim: int, *, itemsize: int,
                     causal: bool = False) -> tuple[float, float]:
    """(FLOPs, bytes) of softmax(Q K^T) V, counting only its two matmuls (4 b h sq skv d).

    Softmax (a few operations per score) is left out, as is usual; a causal mask keeps
    only the sq(sq+1)/2 query-key pairs on or below the diagonal (seq_q == seq_kv).
    Bytes: Q, K, V read and O written once (a fused kernel never stores the scores).
    """
    pairs = seq_q * (seq_q + 1) / 2 if causal else seq_q * seq_kv
    if causal and seq_q != seq_kv:
        raise ValueError("Causal counting here needs seq_q == seq_kv.")
    flops = 4.0 * batch * heads * pairs * head_dim
    return flops, float(itemsize * batch * heads * head_dim * (2 * seq_q + 2 * seq_kv))


def operand_bytes(*arrays: Any) -> int:
    """Total size of the given arrays or tensors: the compulsory traffic if each moves once."""
    return int(sum(a.nbytes for a in arrays))


# ---- measuring ceilings ----------------------------------------------------------------------

def _timing_fields(t: Timing) -> dict[str, Any]:
    return dict(median_ms=t.median_ms, p20_ms=t.p20_ms, p80_ms=t.p80_ms, n=t.n)


@contextlib.contextmanager
def _fp32_matmul(torch: Any, tf32: bool) -> Iterator[None]:
    """Let fp32 matmuls use TF32 tensor cores or not, restoring the setting afterwards."""
    m = torch.backends.cuda.matmul
    if hasattr(m, "fp32_precision"):  # torch >= 2.9; mixing it with allow_tf32 raises, so use one API
        old = m.fp32_precision
        m.fp32_precision = "tf32" if tf32 else "ieee"
        try:
            yield
        finally:
            m.fp32_precision = old
    else:
        old = m.allow_tf32
        m.allow_tf32 = tf32
        try:
            yield
        finally:
            m.allow_tf32 = old


_CHECK_RTOL = {"fp32": 1e-4, "tf32": 1e-2, "bf16": 1e-2, "fp16": 1e-2, "fp8": 2e-2}


def _matmul_case(torch: Any, precision: str, n: int, device: Any):
    """Inputs and a call for an n x n x n matmul in ``precision``; raises RuntimeError if unsupported."""
    gen = torch.Generator(device=device).manual_seed(0)
    a32 = torch.randn(n, n, device=device, generator=gen)
    b32 = torch.randn(n, n, device=device, generator=gen)
    if precision in ("fp32", "tf32"):
        return a32, b32, lambda: torch.mm(a32, b32)
    if precision in ("bf16", "fp16"):
        dt = torch.bfloat16 if precision == "bf16" else torch.float16
        a, b = a32.to(dt), b32.to(dt)
        return a, b, lambda: torch.mm(a, b)
    if precision == "fp8":
        if device.type != "cuda":
            raise RuntimeError("fp8 matmul (torch._scaled_mm) needs a CUDA GPU")
        cc = torch.cuda.get_device_capability(device)
        if cc < (8, 9) or not hasattr(torch, "float8_e4m3fn") or not hasattr(torch, "_scaled_mm"):
            raise RuntimeError(f"fp8 matmul needs compute capability 8.9+ and torch._scaled_mm; have {cc[0]}.{cc[1]}")
        a = a32.to(torch.float8_e4m3fn)  # row-major [n, k]
        b = b32.to(torch.float8_e4m3fn).t()  # column-major [k, n], as _scaled_mm requires
        one = torch.ones((), device=device, dtype=torch.float32)  # per-tensor scales
        return a, b, lambda: torch._scaled_mm(a, b, one, one, out_dtype=torch.bfloat16)
    raise ValueError(f"Unknown precision {precision!r}; use one of {', '.join(GPU_PRECISIONS)}.")


def _check_matmul(torch: Any, a: Any, b: Any, c: Any, precision: str, rows: int = 128) -> float:
    """Relative error of the first rows of c against float64 on the same (rounded) inputs."""
    ref = a[:rows].double() @ b.double()
    got = c[:rows].double()
    err = (torch.linalg.norm(got - ref) / torch.linalg.norm(ref)).item()
    if not err <= _CHECK_RTOL[precision]:
        raise AssertionError(f"{precision} matmul is wrong: relative error {err:.2e} > {_CHECK_RTOL[precision]:.0e}.")
    return err


def measure_gpu_ceilings(
    *,
    copy_MiB: int = 1024,
    matmul_n: int = 8192,
    precisions: Sequence[str] = GPU_PRECISIONS,
    rep_ms: float = 100,
    crosscheck: bool = False,
    device: str = "cuda",
) -> list[dict[str, Any]]:
    """Measure copy bandwidth and n^3 matmul peaks with ``bench``; return rows for a record.

    Bandwidth: a device-to-device copy of ``copy_MiB`` (keep it >= 4x the L2), counting
    read + write. Compute: one square matmul per precision, checked against float64 first;
    fp8 uses ``torch._scaled_mm`` (e4m3, per-tensor scales, bf16 out) and is skipped, with
    the reason in the row, where unsupported. With ``crosscheck`` (on a GPU with triton
    installed) each row also gets ``do_bench_ms``, the median of ``triton.testing.do_bench``
    timing the same call: an independent timer to check the ceiling against.
    ``device="cpu"`` runs the same code with torch on the CPU (host clock), for tests.

    Example:
        rows = measure_gpu_ceilings(precisions=("bf16", "fp8"))
        ceilings = Ceilings.from_rows(rows, device=torch.cuda.get_device_name())
    """
    import torch

    dev = torch.device(device)
    clock = "cuda" if dev.type == "cuda" else "host"
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("measure_gpu_ceilings needs a CUDA GPU and none is visible.")
    do_bench = _do_bench() if crosscheck and dev.type == "cuda" else None
    extra = lambda fn: {"do_bench_ms": do_bench(fn)} if do_bench else {}  # noqa: E731

    nbytes = copy_MiB * MiB
    if dev.type == "cuda":
        l2 = torch.cuda.get_device_properties(dev).L2_cache_size
        if nbytes < 4 * l2:
            warnings.warn(f"copy buffer {copy_MiB} MiB is under 4x the {l2 / MiB:.0f} MiB L2: "
                          "the copy may partly run from cache", stacklevel=2)
    src = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    dst.copy_(src)
    if not torch.equal(dst, src):
        raise AssertionError("device copy returned different bytes")
    copy = lambda: dst.copy_(src)  # noqa: E731
    t = bench(copy, clock=clock, rep_ms=rep_ms, label="copy")
    rows = [dict(ceiling="bandwidth", kernel="copy", device_type=dev.type, nbytes=2 * nbytes,
                 GBps=t.rate(nbytes=2 * nbytes), **_timing_fields(t), **extra(copy))]
    del src, dst

    for precision in precisions:
        base = dict(ceiling="compute", kernel="matmul", precision=precision, device_type=dev.type, matmul_n=matmul_n)
        try:
            a, b, mm = _matmul_case(torch, precision, matmul_n, dev)
            with _fp32_matmul(torch, tf32=precision == "tf32"):
                err = _check_matmul(torch, a, b, mm(), precision)
                t = bench(mm, clock=clock, rep_ms=rep_ms, label=f"{precision} matmul")
                more = extra(mm)
        except RuntimeError as e:  # unsupported dtype or kernel on this device
            rows.append(base | dict(skipped=str(e).splitlines()[0]))
            continue
        flops = 2.0 * matmul_n**3
        rows.append(base | dict(flops=flops, TFLOPs=t.rate(flops=flops), rel_error=err, **_timing_fields(t), **more))
        del a, b
    return rows


def _do_bench():
    """triton.testing.do_bench as a one-argument timer (median ms), or None without triton."""
    try:
        from triton.testing import do_bench
    except ImportError:
        return None
    return lambda fn: float(do_bench(fn, warmup=25, rep=100, return_mode="median"))


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def measure_cpu_ceilings(
    *,
    stream_MiB: int | None = None,
    matmul_n: int = 1024,
    dtypes: Sequence[str] = ("float64", "float32"),
    threads: int | None = None,
    rep_ms: float = 200,
) -> list[dict[str, Any]]:
    """Measure NumPy read/copy/add bandwidth and matmul FLOP/s on this CPU; return rows for a record.

    Each ceiling is the rate of the *best* sample, as STREAM reports it: on a shared CPU the median
    undershoots what the memory system and cores can deliver, and a roof must not be beaten.
    Bandwidth: a read-only dot product of an array with itself (1 array moved: GEMV-like kernels stream reads only, and writes cost
    extra read-for-ownership traffic that no kernel count includes), STREAM's Copy (c = a, 2 arrays)
    and Add (c = a + b, 3 arrays) on float64
    arrays of ``stream_MiB`` each (default: 4x the last-level cache, 64 MiB to 1 GiB), split
    over ``threads`` threads (default: the CPUs this process may use; NumPy releases the GIL
    in these loops). NumPy has no one-pass triad (a = b + s*c needs a temporary), so Add stands
    in for it. Compute: an n x n matmul per dtype through NumPy's BLAS ("fp64", "fp32").
    """
    import numpy as np
    from concurrent.futures import ThreadPoolExecutor

    from perflab.env import cpu_caches

    threads = threads or _threads()
    if stream_MiB is None:
        llc = max(cpu_caches().values(), default=64 * MiB)
        stream_MiB = int(min(1024, max(64, 4 * llc // MiB)))
    n = stream_MiB * MiB // 8
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    c = np.empty_like(a)
    parts = [slice(i * n // threads, (i + 1) * n // threads) for i in range(threads)]
    rows = []
    with ThreadPoolExecutor(threads) as pool:
        def run(kernel):
            return lambda: list(pool.map(kernel, parts))

        kernels = {"read": (lambda s: np.dot(a[s], a[s]), 1,  # BLAS dot of a slice with itself: reads it once
                            lambda: np.isclose(sum(run(lambda s: np.dot(a[s], a[s]))()), np.dot(a, a), rtol=1e-9)),
                   "copy": (lambda s: np.copyto(c[s], a[s]), 2, lambda: np.array_equal(c, a)),
                   "add": (lambda s: np.add(a[s], b[s], out=c[s]), 3, lambda: np.array_equal(c, a + b))}
        for name, (kernel, arrays, ok) in kernels.items():
            run(kernel)()
            if not ok():
                raise AssertionError(f"NumPy {name} gave a wrong result")
            t = bench(run(kernel), clock="host", rep_ms=rep_ms, min_reps=3, label=name)
            moved = arrays * a.nbytes
            rows.append(dict(ceiling="bandwidth", kernel=name, device_type="cpu", nbytes=moved, threads=threads,
                             array_MiB=stream_MiB, GBps=moved / (t.best_ms * 1e6), **_timing_fields(t)))
    del a, b, c
    for dtype in dtypes:
        x = rng.standard_normal((matmul_n, matmul_n)).astype(dtype)
        y = rng.standard_normal((matmul_n, matmul_n)).astype(dtype)
        out = np.empty_like(x)
        np.matmul(x, y, out=out)
        ref = x[:8].astype(np.float64) @ y.astype(np.float64)
        err = float(np.linalg.norm(out[:8] - ref) / np.linalg.norm(ref))
        if not err <= (1e-10 if dtype == "float64" else 1e-4):
            raise AssertionError(f"NumPy {dtype} matmul is wrong: relative error {err:.1e}")
        t = bench(lambda: np.matmul(x, y, out=out), clock="host", rep_ms=rep_ms, min_reps=3, label=f"{dtype} matmul")
        flops = 2.0 * matmul_n**3
        precision = {"float64": "fp64", "float32": "fp32"}.get(dtype, dtype)
        rows.append(dict(ceiling="compute", kernel="matmul", precision=precision, device_type="cpu",
                         matmul_n=matmul_n, flops=flops, TFLOPs=flops / (t.best_ms * 1e9), rel_error=err,
                         **_timing_fields(t)))
    return rows


# ---- the plot --------------------------------------------------------------------------------

def plot(
    ceilings: Ceilings,
    points: Sequence[Point] = (),
    *,
    title: str,
    source: str,
    precisions: Sequence[str] | None = None,
    reference: Ceilings | None = None,
    arrows: Sequence[tuple[str, str]] = (),
    label_points: bool = True,
    ax: Any = None,
):
    """Draw the roofline on log-log axes: roofs per precision, ridge points, measured points.

    ``precisions`` picks the compute roofs (default: those the points use, else all);
    ``reference`` (e.g. ``datasheet(...)``) adds its roofs dashed; ``arrows`` joins named
    points (e.g. unfused -> fused). FLOP/s are shown in TFLOP/s, or GFLOP/s when every
    peak is under 1 TFLOP/s. The title carries ``source``; returns the Axes.
    """
    from perflab.plots import MARKERS, _new_axes, _title

    ax = _new_axes(ax)
    used = list(dict.fromkeys(p.precision for p in points))
    names = list(precisions or [q for q in used if q in ceilings.peak_TFLOPs] or ceilings.peak_TFLOPs)
    scale, unit = (1.0, "TFLOP/s") if max(ceilings.peak_TFLOPs.values()) >= 1 else (1e3, "GFLOP/s")
    ridges = [ceilings.ridge(q) for q in names]
    xs = [p.intensity for p in points] + ridges
    lo, hi = min(xs + [1.0]) / 4, max(xs) * 8
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    colours = ["C0", "C1", "C2", "C3", "C4", "C5", "C6"]
    for i, q in enumerate(names):
        roof = [ceilings.attainable(x, q) * scale for x in grid]
        ax.plot(grid, roof, "-", color=colours[i % 7], lw=2, alpha=0.8,
                label=f"{q} roof {ceilings.peak(q) * scale:.3g} {unit}, ridge {ceilings.ridge(q):.3g} FLOP/B")
        ax.axvline(ceilings.ridge(q), ls=":", lw=1, color=colours[i % 7], alpha=0.6)
        if reference is not None and q in reference.peak_TFLOPs:
            ax.plot(grid, [reference.attainable(x, q) * scale for x in grid], "--", lw=1,
                    color=colours[i % 7], alpha=0.6, label=f"{q} {reference.kind}")
    x_label = (lo * min(ridges)) ** 0.5 / 3
    ax.annotate(f"memory roof {ceilings.bw_GBps:.4g} GB/s", (x_label, x_label * ceilings.bw_GBps / 1e3 * scale),
                xytext=(-6, 6), textcoords="offset points", ha="right", fontsize=8, color="0.3")
    groups = list(dict.fromkeys(p.group or p.precision for p in points))
    by_name, labelled = {}, set()
    for p in points:
        group = p.group or p.precision
        g, y = groups.index(group), p.TFLOPs * scale
        ax.plot([p.intensity], [y], MARKERS[g % len(MARKERS)], color=_POINT_COLOURS[g % len(_POINT_COLOURS)], ms=7, mec="k",
                mew=0.5, ls="none", label=None if group in labelled else group)
        labelled.add(group)
        if label_points:
            ax.annotate(p.name, (p.intensity, y), xytext=(4, -10), textcoords="offset points", fontsize=7)
        by_name[p.name] = (p.intensity, y)
    for a, b in arrows:
        if a in by_name and b in by_name:
            ax.annotate("", xy=by_name[b], xytext=by_name[a],
                        arrowprops=dict(arrowstyle="->", color="0.2", lw=1.2, shrinkA=5, shrinkB=5))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ys = [p.TFLOPs * scale for p in points] + [ceilings.attainable(lo, q) * scale for q in names]
    ax.set_ylim(min(ys) / 3, max(ceilings.peak(q) for q in names) * scale * 3)
    ax.set_xlabel("arithmetic intensity (FLOP/B, counted)")
    ax.set_ylabel(f"performance ({unit})")
    ax.legend(fontsize=7, loc="lower right")
    _title(ax, title, source)
    return ax


_POINT_COLOURS = ("C3", "C4", "C2", "C6", "C9", "C8", "C5", "C7")  # roofs use C0, C1, ...


def fmt_rate(TFLOPs: float) -> str:
    """1.5 -> "1.5 TFLOP/s", 0.002 -> "2 GFLOP/s", 2e-6 -> "2 MFLOP/s"."""
    for unit, scale in (("TFLOP/s", 1.0), ("GFLOP/s", 1e3), ("MFLOP/s", 1e6)):
        if TFLOPs * scale >= 1:
            return f"{TFLOPs * scale:.3g} {unit}"
    return f"{TFLOPs * 1e9:.3g} kFLOP/s"


def table(rows: Sequence[dict[str, Any]]) -> str:
    """``place`` rows as a fixed-width text table with a units footer."""
    lines = [f"{'kernel':28} {'FLOP/B':>8} {'achieved':>14} {'of roof':>8}  {'verdict':14} first thing to try"]
    for r in rows:
        lines.append(f"{r['name'][:28]:28} {r['intensity']:8.3g} {fmt_rate(r['TFLOPs']):>14} {_pct(r['fraction']):>8}  "
                     f"{r['category']:14} {r['action']}")
    lines.append("FLOP/B from counted FLOPs and bytes; achieved = counted FLOPs / median time; "
                 "'of roof' = achieved / min(peak, intensity x bandwidth).")
    return "\n".join(lines)


def _pct(fraction: float) -> str:
    """0.87 -> "87%", 0.0013 -> "0.13%"."""
    return f"{fraction:.0%}" if fraction >= 0.01 else f"{fraction * 100:.2g}%"
