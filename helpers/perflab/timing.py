"""Timing that a performance engineer can trust.

``bench`` times a zero-argument callable. Device work is timed with CUDA
events recorded on the current stream, one pair per call; host work with
``time.perf_counter`` read only after the GPU (if one is in use) has been
synchronised. Both warm up first, repeat for a time budget, and return a
``Timing`` that keeps every sample.

Taught in: notebooks/ch03_os_containers/03_03_pinned_memory.ipynb
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal

Clock = Literal["host", "cuda"]

METHODS = {"host": "host clock + sync", "cuda": "CUDA events"}
SPREAD_WARNING = 0.10  # warn when (p80 - p20) / median reaches this
LAUNCH_BOUND_MS = 0.010  # below ~10 us per call, launch overhead dominates
_MIN_SAMPLE_MS = 0.2  # host clock: group fast calls so each sample lasts this long
_FLOOR_MS = 1e-6  # never divide by a zero estimate


@dataclass
class Timing:
    """Every sample of one measurement, with the method that took them.

    ``samples_ms`` holds one value per sample; for host-clock timing of fast
    work a sample is the mean over ``calls_per_sample`` back-to-back calls.
    """

    samples_ms: list[float]
    method: str
    n_warmup: int
    calls_per_sample: int = 1
    label: str = ""
    flushed: bool = False
    first_call_ms: float | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.samples_ms:
            raise ValueError("A Timing needs at least one sample.")
        self.warnings = list(self.warnings) + self._spread_warnings()

    @property
    def n(self) -> int:
        """Number of samples."""
        return len(self.samples_ms)

    def q(self, p: float) -> float:
        """The p-quantile of the samples in ms (linear interpolation), p in [0, 1]."""
        if not 0 <= p <= 1:
            raise ValueError(f"Quantile must lie in [0, 1]; got {p}.")
        xs = sorted(self.samples_ms)
        pos = p * (len(xs) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    @property
    def median_ms(self) -> float:
        return self.q(0.5)

    @property
    def p20_ms(self) -> float:
        return self.q(0.2)

    @property
    def p80_ms(self) -> float:
        return self.q(0.8)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.samples_ms)

    @property
    def best_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def rel_spread(self) -> float:
        """(p80 - p20) / median: the spread as a fraction of the headline."""
        return (self.p80_ms - self.p20_ms) / max(self.median_ms, _FLOOR_MS)

    def rate(self, *, nbytes: float | None = None, flops: float | None = None) -> float:
        """Throughput at the median: GB/s (10^9 B/s) for bytes, TFLOP/s for FLOPs."""
        if (nbytes is None) == (flops is None):
            raise ValueError("Give exactly one of `nbytes` or `flops`.")
        seconds = max(self.median_ms, _FLOOR_MS) / 1e3
        return nbytes / seconds / 1e9 if nbytes is not None else flops / seconds / 1e12

    def rates(self, *, nbytes: float) -> tuple[float, float, float]:
        """GB/s at the median, p80 (slow end) and p20 (fast end) of the time."""
        return tuple(nbytes / max(t, _FLOOR_MS) / 1e6 for t in (self.median_ms, self.p80_ms, self.p20_ms))

    def _spread_warnings(self) -> list[str]:
        found = []
        if self.n >= 3 and self.rel_spread >= SPREAD_WARNING:
            found.append(
                f"spread is {self.rel_spread:.0%} of the median: the machine was busy or the "
                "work varies; rerun or raise the repeat budget"
            )
        if self.method == METHODS["cuda"] and self.median_ms < LAUNCH_BOUND_MS:
            found.append("under 10 us per call: launch overhead dominates; consider a CUDA graph")
        return found

    def __str__(self) -> str:
        unit, scale = _unit(self.median_ms)
        how = self.method + (", L2 flushed" if self.flushed else "")
        text = (
            f"{self.median_ms * scale:.3f} {unit} median "
            f"(p20–p80 {self.p20_ms * scale:.3f}–{self.p80_ms * scale:.3f}, n={self.n}; {how})"
        )
        if self.label:
            text = f"{self.label}: {text}"
        return "\n".join([text] + [f"  WARNING: {w}" for w in self.warnings])

    def __repr__(self) -> str:
        return f"<Timing {self}>"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a results record: summary first, then every sample."""
        summary = {
            "median_ms": self.median_ms,
            "p20_ms": self.p20_ms,
            "p80_ms": self.p80_ms,
            "n": self.n,
        }
        return summary | asdict(self)


def summary(samples_s: list[float], name: str) -> dict[str, float]:
    """Median and p20/p80 of samples given in seconds, in µs, keyed ``name_us``, ``name_p20_us``, ``name_p80_us``.

    For worker processes that report plain JSON rows.
    """
    t = Timing([x * 1e3 for x in samples_s], method="samples in seconds", n_warmup=0)
    return {f"{name}_us": t.median_ms * 1e3, f"{name}_p20_us": t.p20_ms * 1e3, f"{name}_p80_us": t.p80_ms * 1e3}


def _unit(ms: float) -> tuple[str, float]:
    if ms < 1e-3:
        return "ns", 1e6
    if ms < 1:
        return "µs", 1e3
    if ms < 1e3:
        return "ms", 1.0
    return "s", 1e-3


def _sync_if_cuda() -> None:
    """Wait for the GPU if this process has started using one."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _counts(est_ms: float, warmup_ms: float, rep_ms: float, min_reps: int, max_reps: int) -> tuple[int, int]:
    est_ms = max(est_ms, _FLOOR_MS)
    n_warmup = max(1, min(max_reps, round(warmup_ms / est_ms)))
    n_rep = max(min_reps, min(max_reps, round(rep_ms / est_ms)))
    return n_warmup, n_rep


def _validate(warmup_ms: float, rep_ms: float, min_reps: int, max_reps: int, clock: str) -> None:
    if clock not in METHODS:
        raise ValueError(f"`clock` must be 'host' or 'cuda'; got {clock!r}.")
    if warmup_ms < 0 or rep_ms <= 0:
        raise ValueError(f"`warmup_ms` must be >= 0 and `rep_ms` > 0; got {warmup_ms} and {rep_ms}.")
    if not 1 <= min_reps <= max_reps:
        raise ValueError(f"Need 1 <= min_reps <= max_reps; got {min_reps} and {max_reps}.")


def bench(
    fn: Callable[[], Any],
    *,
    clock: Clock = "host",
    warmup_ms: float = 25,
    rep_ms: float = 100,
    min_reps: int = 5,
    max_reps: int = 10_000,
    flush_l2: bool = False,
    label: str = "",
) -> Timing:
    """Time ``fn()`` and return every sample as a ``Timing``.

    Args:
        fn: zero-argument callable; close over its inputs with a lambda.
        clock: "cuda" times device work with CUDA events on the current stream
            (one pair per call, one synchronisation at the end); "host" uses
            perf_counter, synchronising the GPU (if in use) before each reading.
        warmup_ms: time budget for untimed warm-up calls, in milliseconds.
        rep_ms: time budget for timed calls, in milliseconds; the count comes
            from the first call and lies in [min_reps, max_reps].
        flush_l2: ("cuda" only) overwrite a buffer twice the GPU's L2 before
            each call, outside the timed window, so inputs come from memory.
        label: a name printed with the result.

    Example:
        t = bench(lambda: dev.copy_(host, non_blocking=True), clock="cuda")
        print(t, t.rate(nbytes=host.nbytes), "GB/s")
    """
    _validate(warmup_ms, rep_ms, min_reps, max_reps, clock)
    if clock == "cuda":
        return _bench_cuda(fn, warmup_ms, rep_ms, min_reps, max_reps, flush_l2, label)
    if flush_l2:
        raise ValueError("`flush_l2` needs clock='cuda'; host timing cannot flush the GPU's L2.")
    return _bench_host(fn, warmup_ms, rep_ms, min_reps, max_reps, label)


def _bench_host(fn, warmup_ms, rep_ms, min_reps, max_reps, label) -> Timing:
    _sync_if_cuda()
    t0 = time.perf_counter()
    fn()
    _sync_if_cuda()
    first_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    fn()  # the first call may include one-off costs; estimate from the second
    _sync_if_cuda()
    est_ms = (time.perf_counter() - t0) * 1e3
    per_sample = max(1, math.ceil(_MIN_SAMPLE_MS / max(est_ms, _FLOOR_MS)))
    n_warmup, n_rep = _counts(est_ms * per_sample, warmup_ms, rep_ms, min_reps, max_reps)
    for _ in range(n_warmup * per_sample):
        fn()
    samples = []
    for _ in range(n_rep):
        _sync_if_cuda()
        t0 = time.perf_counter()
        for _ in range(per_sample):
            fn()
        _sync_if_cuda()
        samples.append(max((time.perf_counter() - t0) * 1e3 / per_sample, _FLOOR_MS))
    return Timing(samples, METHODS["host"], n_warmup * per_sample, per_sample, label, False, first_ms)


def _bench_cuda(fn, warmup_ms, rep_ms, min_reps, max_reps, flush_l2, label) -> Timing:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("clock='cuda' needs a CUDA GPU and none is visible; use clock='host'.")
    scratch = None
    if flush_l2:
        l2 = torch.cuda.get_device_properties(torch.cuda.current_device()).L2_cache_size
        scratch = torch.empty(max(2 * l2, 1 << 20), dtype=torch.uint8, device="cuda")

    def flush() -> None:
        if scratch is not None:
            scratch.zero_()

    def timed(n: int) -> list[float]:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for start, end in zip(starts, ends):
            flush()
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return [max(s.elapsed_time(e), _FLOOR_MS) for s, e in zip(starts, ends)]

    torch.cuda.synchronize()
    first_ms = timed(1)[0]
    est_ms = statistics.median(timed(5))
    n_warmup, n_rep = _counts(est_ms, warmup_ms, rep_ms, min_reps, max_reps)
    for _ in range(n_warmup):
        flush()
        fn()
    samples = timed(n_rep)
    return Timing(samples, METHODS["cuda"], n_warmup + 6, 1, label, flush_l2, first_ms)
