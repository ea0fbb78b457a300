"""One-sided (PGAS) communication on the CPU: an emulator of NVSHMEM's programming model.

``launch(fn, n_pes, ...)`` runs ``fn(ctx, *args)`` in n processes ("processing elements", PEs). Each PE
owns a symmetric heap in shared memory; ``ctx.array`` and ``ctx.signal`` allocate the same offset on
every PE, so a local array also names the matching array on any other PE. The calls mirror NVSHMEM's
host API (``put``, ``get``, ``put_signal``, ``signal_wait``, ``quiet``, ``barrier_all``,
``atomic_fetch_inc``), so code written against ``ctx`` runs unchanged on GPUs through the kit's
nvshmem4py adapter (``workers/nvshmem_bench.py``), as long as it sticks to slicing, arithmetic and
assignment, which mean the same for NumPy arrays and torch tensors.

``weak=True`` delays every plain ``put`` until the issuing PE calls ``quiet`` or ``barrier_all``, while
signals land at once: real interconnects may deliver a put after a later flag, and this makes that
reordering happen every time, so a missing ``quiet`` is caught deterministically.

Taught in: notebooks/ch12_orchestration/12_09_nvshmem_one_sided.ipynb, labs/lab_12_09_pass_a_halo.ipynb
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from multiprocessing.shared_memory import SharedMemory
from typing import Any, Callable

import numpy as np

_ALIGN = 64  # bytes: every allocation starts on a cache line, as NVSHMEM aligns its heap


class PgasError(RuntimeError):
    """A PE failed, waited too long, or the job ran past its time limit."""

    def _render_traceback_(self) -> list[str]:
        return [f"PgasError: {self}"]  # IPython shows the sentence instead of a traceback


class Context:
    """One PE's view: its number, its heap, and one-sided operations on the other PEs' heaps."""

    def __init__(self, pe: int, heaps: list[SharedMemory], barrier, lock, weak: bool, wait_s: float):
        self._pe, self._heaps, self._barrier, self._lock = pe, heaps, barrier, lock
        self._weak, self._wait_s = weak, wait_s
        self._next = 0  # next free byte of the symmetric heap: the same on every PE
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # weak mode: puts not yet delivered

    def my_pe(self) -> int:
        return self._pe

    def n_pes(self) -> int:
        return len(self._heaps)

    def _allocate(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        start = -(-self._next // _ALIGN) * _ALIGN
        if start + nbytes > self._heaps[self._pe].size:
            raise MemoryError(f"PE {self._pe}: the symmetric heap ({self._heaps[self._pe].size} bytes) is full")
        self._next = start + nbytes
        local = np.ndarray(shape, dtype, buffer=self._heaps[self._pe].buf, offset=start)
        local[...] = 0
        self.barrier_all()  # collective, as in NVSHMEM: nobody puts into it before every PE has zeroed it
        return local

    def array(self, shape) -> np.ndarray:
        """A zeroed float64 array on the symmetric heap (collective: same order and shape on every PE)."""
        return self._allocate(tuple(shape) if isinstance(shape, (tuple, list)) else (int(shape),), np.float64)

    def signal(self) -> np.ndarray:
        """A zeroed one-element uint64 signal on the symmetric heap (collective)."""
        return self._allocate((1,), np.uint64)

    def _remote(self, local: np.ndarray, pe: int) -> np.ndarray:
        """The array at the same heap offset as ``local`` (a symmetric array or a slice of one) on PE ``pe``."""
        if not 0 <= pe < self.n_pes():
            raise ValueError(f"PE {self._pe}: there is no PE {pe} (n_pes = {self.n_pes()})")
        base = np.frombuffer(self._heaps[self._pe].buf, np.uint8).__array_interface__["data"][0]
        offset = local.__array_interface__["data"][0] - base
        if not 0 <= offset < self._heaps[self._pe].size:
            raise ValueError(f"PE {self._pe}: the destination is not on the symmetric heap (use ctx.array)")
        return np.ndarray(local.shape, local.dtype, buffer=self._heaps[pe].buf, offset=offset, strides=local.strides)

    def put(self, dst: np.ndarray, src: np.ndarray, pe: int) -> None:
        """Copy local ``src`` into ``dst`` on PE ``pe`` (delivered at the next quiet in weak mode)."""
        target = self._remote(dst, pe)
        if self._weak:
            self._pending.append((target, np.array(src, copy=True)))
        else:
            target[...] = src

    def get(self, dst: np.ndarray, src: np.ndarray, pe: int) -> None:
        """Copy ``src`` on PE ``pe`` into local ``dst``."""
        dst[...] = self._remote(src, pe)

    def signal_op(self, sig: np.ndarray, value: int, pe: int) -> None:
        """Set ``sig`` on PE ``pe`` to ``value`` at once (no data, and no ordering with earlier puts)."""
        self._remote(sig, pe)[0] = value

    def put_signal(self, dst: np.ndarray, src: np.ndarray, sig: np.ndarray, value: int, pe: int) -> None:
        """Put, then set ``sig`` on PE ``pe``; this put's data is visible before the signal."""
        self._remote(dst, pe)[...] = src
        self.signal_op(sig, value, pe)

    def signal_wait(self, sig: np.ndarray, value: int) -> None:
        """Wait until the local ``sig[0] >= value``."""
        deadline = time.monotonic() + self._wait_s
        while int(sig[0]) < value:
            if time.monotonic() > deadline:
                raise PgasError(f"PE {self._pe} waited {self._wait_s:g} s for a signal to reach {value}; "
                                f"it is {int(sig[0])}. A put_signal is missing, or goes to the wrong PE or signal.")
            time.sleep(20e-6)  # yield the core: the CPU may have fewer cores than PEs

    def quiet(self) -> None:
        """Every put this PE issued is now visible at its target."""
        for target, data in self._pending:
            target[...] = data
        self._pending.clear()

    def barrier_all(self) -> None:
        """Wait until every PE has arrived; every put issued before the barrier is visible after it."""
        self._meet()
        self.quiet()  # delivered only once all have arrived, so a read before the barrier sees old data
        self._meet()

    def _meet(self) -> None:
        try:
            self._barrier.wait(timeout=self._wait_s)
        except Exception:  # BrokenBarrierError or a timeout: another PE failed or never came
            raise PgasError(f"PE {self._pe} waited in barrier_all, but not every PE arrived within "
                            f"{self._wait_s:g} s (one failed or skipped the barrier).") from None

    def atomic_fetch_inc(self, target: np.ndarray, pe: int) -> int:
        """Add one to ``target[0]`` on PE ``pe`` as one indivisible step; return the value before."""
        with self._lock:
            remote = self._remote(target, pe)
            old = int(remote[0])
            remote[0] = old + 1
        return old


def _pe_main(pe: int, fn: Callable, args: tuple, heaps, barrier, lock, weak: bool, wait_s: float, out) -> None:
    try:
        result = fn(Context(pe, heaps, barrier, lock, weak, wait_s), *args)
        out.put((pe, True, result))
    except BaseException as error:  # report it, and break the barrier so no other PE waits for us
        barrier.abort()
        out.put((pe, False, f"{type(error).__name__}: {error}"))


def _root_cause(pe: int, error: str, out, n_pes: int) -> str:
    """The first failure that is not just a PE stuck at a barrier another PE abandoned."""
    failures = [(pe, error)]
    end = time.monotonic() + 1.0
    while time.monotonic() < end:  # the PE that failed first may report a moment later
        try:
            other, ok, value = out.get(timeout=0.1)
        except queue.Empty:
            continue
        if not ok:
            failures.append((other, value))
    first = next(((p, e) for p, e in failures if "waited in barrier_all" not in e), failures[0])
    return f"PE {first[0]} of {n_pes} failed: {first[1]}"


def launch(fn: Callable[..., Any], n_pes: int, *args: Any, weak: bool = False, heap_MiB: float = 16,
           wait_s: float = 10, timeout_s: float = 60) -> list[Any]:
    """Run ``fn(ctx, *args)`` on n_pes PEs (processes); return each PE's return value, by PE.

    ``wait_s`` bounds every ``signal_wait`` and barrier; ``timeout_s`` the whole job. Any failure stops
    every PE and raises PgasError naming the PE and its error. The shared memory is always released.

    Example:
        ids = pgas.launch(lambda ctx: ctx.my_pe(), 4)     # [0, 1, 2, 3]
    """
    if n_pes < 1:
        raise ValueError(f"`n_pes` must be at least 1; got {n_pes}.")
    context = mp.get_context("fork")  # children inherit fn (even one defined in a notebook) and the heaps
    heaps = [SharedMemory(create=True, size=max(_ALIGN, int(heap_MiB * 2**20))) for _ in range(n_pes)]
    barrier, lock, out = context.Barrier(n_pes), context.Lock(), context.Queue()
    procs = [context.Process(target=_pe_main, args=(pe, fn, args, heaps, barrier, lock, weak, wait_s, out),
                             daemon=True) for pe in range(n_pes)]
    results: dict[int, Any] = {}
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout_s
        while len(results) < n_pes:
            try:
                pe, ok, value = out.get(timeout=max(0.01, min(0.5, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() > deadline:
                    late = sorted(set(range(n_pes)) - set(results))
                    raise PgasError(f"PEs {late} of {n_pes} were still running after {timeout_s:g} s.") from None
                if dead := [pe for pe, p in enumerate(procs) if p.exitcode not in (None, 0) and pe not in results]:
                    raise PgasError(f"PE {dead[0]} of {n_pes} died (exit code {procs[dead[0]].exitcode}).") from None
                continue
            if not ok:
                raise PgasError(_root_cause(pe, value, out, n_pes))
            results[pe] = value
        return [results[pe] for pe in range(n_pes)]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(timeout=5)
        for heap in heaps:
            heap.close()
            heap.unlink()
