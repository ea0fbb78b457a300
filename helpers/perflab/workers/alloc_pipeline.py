"""An allocation-heavy input pipeline, run in its own process so LD_PRELOAD can swap the allocator.

Worker threads build batches the way a data loader does: every sample is copied out of a "file" into a
fresh buffer (1 KiB to 4 MiB, log-uniform sizes), decoded to float32, normalised, and the samples of a
batch are collated into one array. A consumer thread takes the batches from a bounded queue. Every
step allocates new NumPy buffers and frees the old ones, so the C allocator (glibc malloc, jemalloc,
tcmalloc) is on the hot path.

Usage: python alloc_pipeline.py OUT.json [--threads 2] [--batches 100] [--warmup 8] [--batch-size 16]
Writes JSON: wall time, per-batch latencies, peak RSS, the allocator libraries mapped into the process
and an exact checksum (the same for every allocator, or the allocator broke something).

Taught in: notebooks/ch03_os_containers/03_04_os_memory_cpu_knobs.ipynb
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import threading
import time

import numpy as np

KiB, MiB = 2**10, 2**20


def sample_sizes(rng: np.random.Generator, n: int, lo: int, hi: int) -> np.ndarray:
    """n sizes in bytes, log-uniform between lo and hi."""
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n)).astype(np.int64)


def make_batch(index: int, pool: np.ndarray, batch_size: int, seed: int, lo: int, hi: int) -> np.ndarray:
    """Decode and collate one batch; its content depends only on (seed, index)."""
    rng = np.random.default_rng([seed, index])
    samples = []
    for size in sample_sizes(rng, batch_size, lo, hi):
        start = int(rng.integers(0, pool.size - size + 1))
        raw = pool[start:start + size].copy()  # "read" the sample into a fresh buffer
        x = raw.astype(np.float32)  # decode
        x = x * 0.5 + 0.25  # normalise (two temporaries; exact in float32)
        samples.append(x[::-1])  # augment: a flipped view
    return np.concatenate(samples)  # collate


def allocator_libraries() -> list[str]:
    """Shared objects mapped into this process whose name says they are a malloc replacement."""
    with open("/proc/self/maps") as maps:
        paths = {fields[5] for fields in (line.split() for line in maps) if len(fields) >= 6}
    return sorted(p for p in paths if any(word in os.path.basename(p) for word in ("jemalloc", "tcmalloc", "mimalloc")))


def run_pipeline(indices: range, threads: int, make) -> tuple[float, list[float], dict[int, float]]:
    """Producer threads build the batches in ``indices``; this thread consumes them.

    Returns the wall time in s, every batch's build time in ms, and a checksum per batch.
    """
    todo = iter(indices)
    todo_lock = threading.Lock()
    ready: queue.Queue = queue.Queue(maxsize=2 * threads)  # bounded, like a prefetch queue
    latencies_ms: list[float] = []
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            while not errors:
                with todo_lock:
                    index = next(todo, None)
                if index is None:
                    return
                t0 = time.perf_counter()
                batch = make(index)
                latencies_ms.append((time.perf_counter() - t0) * 1e3)  # list.append is atomic under the GIL
                ready.put((index, batch))
        except BaseException as err:  # hand it to the consumer, which re-raises it
            errors.append(err)
        finally:
            ready.put(None)  # "this producer is done", even after an error

    checksums: dict[int, float] = {}
    t0 = time.perf_counter()
    workers = [threading.Thread(target=producer) for _ in range(threads)]
    for w in workers:
        w.start()
    finished = 0
    while finished < threads:  # the consumer: one "training step" per batch
        item = ready.get()
        if item is None:
            finished += 1
            continue
        index, batch = item
        checksums[index] = float(batch.sum(dtype=np.float64))  # exact: multiples of 0.25, far below 2**53
    wall_s = time.perf_counter() - t0
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return wall_s, latencies_ms, checksums


def peak_rss_MiB() -> float:
    """This process's peak resident memory (VmHWM).

    Not getrusage's ru_maxrss: Linux carries that over from the parent across fork and exec, so a
    worker started from a large Jupyter kernel would report the kernel's peak.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / KiB
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="where to write the JSON result")
    ap.add_argument("--threads", type=int, default=2, help="producer threads")
    ap.add_argument("--batches", type=int, default=100, help="timed batches")
    ap.add_argument("--warmup", type=int, default=8, help="untimed batches first")
    ap.add_argument("--batch-size", type=int, default=16, help="samples per batch")
    ap.add_argument("--min-KiB", type=int, default=1, help="smallest sample")
    ap.add_argument("--max-KiB", type=int, default=4096, help="largest sample")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    lo, hi = args.min_KiB * KiB, args.max_KiB * KiB
    pool = np.random.default_rng(args.seed).integers(0, 256, 4 * hi, dtype=np.uint8)  # the "file"

    def make(index: int) -> np.ndarray:
        return make_batch(index, pool, args.batch_size, args.seed, lo, hi)

    # warm-up: the allocator fills its caches (batch indices past the timed ones)
    run_pipeline(range(args.batches, args.batches + args.warmup), args.threads, make)
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    wall_s, latencies_ms, checksums = run_pipeline(range(args.batches), args.threads, make)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = dict(
        wall_s=wall_s,
        batches=len(checksums),
        batches_per_s=len(checksums) / wall_s,
        latencies_ms=latencies_ms,
        peak_rss_MiB=peak_rss_MiB(),
        minor_faults=usage.ru_minflt - faults0,
        checksum=sum(checksums[i] for i in sorted(checksums)),
        allocator_libraries=allocator_libraries(),
        ld_preload=os.environ.get("LD_PRELOAD", ""),
    )
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
