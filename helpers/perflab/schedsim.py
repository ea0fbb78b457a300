"""A list-scheduling simulator: uneven work items on identical workers.

Two ways to hand out ``n`` items of uneven cost to ``n_workers`` workers (think
of a worker as an SM, an item as a warp's share of the work):

- **static**: every worker gets a fixed share up front (one contiguous chunk,
  or every ``n_workers``-th item) and works through it;
- **dynamic**: a free worker claims the next ``batch`` items from a shared
  counter. The counter is a single server, like one atomic in L2: each claim
  occupies it for ``t_atomic`` and claims queue up first come, first served.

Costs and times share one unit (the notebooks use µs). A ``Schedule`` keeps one
span per chunk or claim, so it can be drawn with ``plots.timeline``.

Taught in: notebooks/ch12_orchestration/12_01_atomic_work_queues.ipynb
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import numpy as np

PATTERNS = ("sawtooth", "uniform", "heavy_shuffled", "heavy_sorted")
LAYOUTS = ("contiguous", "cyclic")


def cost_pattern(
    name: str, n: int, mean: float = 100.0, *, sigma: float = 1.25, cap: float = 16.0, seed: int = 0
) -> np.ndarray:
    """Integer costs (each >= 1) of ``n`` items, about ``mean`` on average.

    Args:
        name: "sawtooth": item i costs in proportion to 1 + i % 256 (the book's example);
            "uniform": every item costs ``mean``;
            "heavy_shuffled": log-normal costs (spread ``sigma``) capped at ``cap`` x the
            mean, in random order;
            "heavy_sorted": the same costs sorted from largest to smallest, so the heavy
            items sit together at the start.
        n: number of items.
        mean: target mean cost (e.g. µs, or loop steps on a GPU).
        sigma, cap, seed: shape, ceiling (in means) and random seed of the heavy tail.

    Example:
        costs = cost_pattern("heavy_sorted", 100_000, mean=10)
    """
    if name not in PATTERNS:
        raise ValueError(f"`name` must be one of {', '.join(PATTERNS)}; got {name!r}.")
    if n < 1 or mean < 1:
        raise ValueError(f"Need n >= 1 and mean >= 1; got n={n} and mean={mean}.")
    if name == "sawtooth":
        raw = 1.0 + np.arange(n) % 256
    elif name == "uniform":
        raw = np.ones(n)
    else:
        raw = np.random.default_rng(seed).lognormal(0.0, sigma, n)
        for _ in range(50):  # clipping lowers the mean, so clip again until the cap holds
            if raw.max() <= cap * raw.mean() * (1 + 1e-9):
                break
            raw = np.minimum(raw, cap * raw.mean())
        if name == "heavy_sorted":
            raw = np.sort(raw)[::-1]
    return np.maximum(1, np.rint(raw * (mean / raw.mean()))).astype(np.int64)


def _check(costs: Any, n_workers: int) -> np.ndarray:
    costs = np.asarray(costs, dtype=float)
    if costs.ndim != 1 or costs.size == 0:
        raise ValueError(f"`costs` must be a non-empty 1-D array; got shape {costs.shape}.")
    if (costs < 0).any() or not np.isfinite(costs).all():
        raise ValueError("`costs` must be finite and non-negative.")
    if n_workers < 1:
        raise ValueError(f"`n_workers` must be at least 1; got {n_workers}.")
    return costs


def merge_spans(
    lanes: Any, starts: Any, ends: Any, *, gap: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge the spans of each lane that overlap or lie at most ``gap`` apart.

    Returns (lanes, starts, ends) sorted by lane, then start. Useful to turn
    thousands of per-warp or per-claim spans into a light per-SM timeline.
    """
    lanes, starts, ends = (np.asarray(a) for a in (lanes, starts, ends))
    order = np.lexsort((starts, lanes))
    out_l: list[Any] = []
    out_s: list[float] = []
    out_e: list[float] = []
    for lane, s, e in zip(lanes[order].tolist(), starts[order].tolist(), ends[order].tolist()):
        if out_l and out_l[-1] == lane and s <= out_e[-1] + gap:
            out_e[-1] = max(out_e[-1], e)
        else:
            out_l.append(lane)
            out_s.append(s)
            out_e.append(e)
    return np.array(out_l), np.array(out_s, dtype=float), np.array(out_e, dtype=float)


def active_fraction(lanes: Any, starts: Any, ends: Any, n_lanes: int) -> float:
    """Time with work on a lane, summed over lanes, over n_lanes x (last end - first start).

    This is the "SM active" fraction when lanes are SMs: 1.0 means no lane was
    ever idle between the first start and the last end.
    """
    _, s, e = merge_spans(lanes, starts, ends)
    window = float(np.max(ends) - np.min(starts))
    return float((e - s).sum() / (n_lanes * window)) if window > 0 else 1.0


@dataclass(frozen=True)
class Schedule:
    """The outcome of one simulated run: one span per static chunk or dynamic claim."""

    policy: str
    n_workers: int
    worker: np.ndarray  # per span: the worker that ran it
    start: np.ndarray  # per span: when its first item started
    end: np.ndarray  # per span: when its last item finished
    n_claims: int  # atomic operations on the shared counter (0 for static)

    @property
    def finish(self) -> np.ndarray:
        """Per worker: when it finished its last item (0 for a worker that got none)."""
        out = np.zeros(self.n_workers)
        np.maximum.at(out, self.worker, self.end)
        return out

    @property
    def busy(self) -> np.ndarray:
        """Per worker: total time spent on items."""
        return np.bincount(self.worker, weights=self.end - self.start, minlength=self.n_workers)

    @property
    def makespan(self) -> float:
        """When the last item finished."""
        return float(self.end.max())

    @property
    def utilization(self) -> float:
        """Busy time over n_workers x makespan (1.0 = nobody ever idle)."""
        return float(self.busy.sum() / (self.n_workers * self.makespan)) if self.makespan > 0 else 1.0

    @property
    def finish_spread(self) -> float:
        """(latest - earliest worker finish) / makespan: 0 when all finish together."""
        f = self.finish
        return float((f.max() - f.min()) / self.makespan) if self.makespan > 0 else 0.0

    def spans(self, *, lane: str = "worker", merge_gap: float = 0.0) -> list[dict[str, Any]]:
        """Rows for ``plots.timeline``: {lane: worker, "start_us", "end_us"}, merged per worker."""
        w, s, e = merge_spans(self.worker, self.start, self.end, gap=merge_gap)
        return [{lane: int(a), "start_us": float(b), "end_us": float(c)} for a, b, c in zip(w, s, e)]


def static_schedule(costs: Any, n_workers: int, *, layout: str = "contiguous") -> Schedule:
    """Give every worker a fixed share of the items, decided before any runs.

    ``layout="contiguous"``: worker w gets items [w*n//W, (w+1)*n//W);
    ``layout="cyclic"``: worker w gets items w, w+W, w+2W, ... (a grid-stride loop).
    """
    costs = _check(costs, n_workers)
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {', '.join(LAYOUTS)}; got {layout!r}.")
    n = costs.size
    if layout == "contiguous":
        csum = np.concatenate(([0.0], np.cumsum(costs)))
        bounds = np.arange(n_workers + 1) * n // n_workers
        busy = csum[bounds[1:]] - csum[bounds[:-1]]
    else:
        busy = np.bincount(np.arange(n) % n_workers, weights=costs, minlength=n_workers)
    has_items = np.arange(n_workers) < n if layout == "cyclic" else np.diff(bounds) > 0
    worker = np.flatnonzero(has_items)
    return Schedule(f"static ({layout})", n_workers, worker, np.zeros(worker.size), busy[worker], 0)


def dynamic_schedule(costs: Any, n_workers: int, *, batch: int = 1, t_atomic: float = 0.0) -> Schedule:
    """Workers claim ``batch`` items at a time from a shared counter until none are left.

    A worker that is free asks the counter; the counter serves one claim at a
    time, each taking ``t_atomic``, first come first served (ties: lower worker
    index first). The worker then runs its items back to back and asks again.

    Example:
        sched = dynamic_schedule(costs, 132, batch=32, t_atomic=0.01)
        print(sched.makespan, sched.utilization)
    """
    costs = _check(costs, n_workers)
    if batch < 1:
        raise ValueError(f"`batch` must be at least 1; got {batch}.")
    if t_atomic < 0:
        raise ValueError(f"`t_atomic` must be >= 0; got {t_atomic}.")
    n = costs.size
    csum = np.concatenate(([0.0], np.cumsum(costs)))
    ready = [(0.0, w) for w in range(n_workers)]  # (time the worker asks, worker): already a heap
    counter_free = 0.0  # when the counter can serve the next claim
    head = 0  # next unclaimed item
    workers, starts, ends = [], [], []
    while head < n:
        asked, w = heapq.heappop(ready)
        counter_free = max(asked, counter_free) + t_atomic
        lo, head = head, min(head + batch, n)
        end = counter_free + (csum[head] - csum[lo])
        workers.append(w)
        starts.append(counter_free)
        ends.append(end)
        heapq.heappush(ready, (end, w))
    return Schedule(f"dynamic (batch {batch})", n_workers, np.array(workers), np.array(starts),
                    np.array(ends), len(workers))


def lower_bound(costs: Any, n_workers: int) -> float:
    """No schedule can finish sooner: max(total / n_workers, largest item)."""
    costs = _check(costs, n_workers)
    return float(max(costs.sum() / n_workers, costs.max()))
