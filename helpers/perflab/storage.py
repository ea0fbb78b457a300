"""Files for storage experiments, and control of the page cache for those files only.

A cold read is only cold if none of the file's pages are in the page cache.
``evict`` asks the kernel to drop one file's cached pages (``posix_fadvise``
with ``POSIX_FADV_DONTNEED``); ``resident_fraction`` asks which of its pages are
still cached (``mincore`` on a mapping of the file), so a notebook can verify
before it times. Nothing here touches the machine-wide cache (no
``drop_caches``) or any other setting: block-device facts are only read.

Taught in: notebooks/ch05_storage_io/05_01_reads_and_page_cache.ipynb
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from pathlib import Path
from typing import Any

import numpy as np

from perflab.results import kit_root

SCRATCH_DIR_VAR = "PERFLAB_SCRATCH_DIR"
# File systems whose "disk" is memory: reads from them never touch a device.
MEMORY_FILESYSTEMS = {"tmpfs", "ramfs", "devtmpfs", "overlay-tmpfs"}
PAGE = mmap.PAGESIZE


class CacheControlError(RuntimeError):
    """The page cache could not be put into the state an experiment needs."""


def scratch_dir() -> Path:
    """A folder for experiment files on a real disk: ``$PERFLAB_SCRATCH_DIR`` or ``results/scratch``.

    The default lies inside the kit (git-ignored), so it is on the same disk as
    the kit rather than on a memory-backed ``/tmp``.
    """
    chosen = os.environ.get(SCRATCH_DIR_VAR)
    root = kit_root()
    folder = Path(chosen) if chosen else (root / "results" / "scratch" if root else Path.cwd() / "perflab-scratch")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def filesystem_of(path: str | Path) -> dict[str, str]:
    """The mount holding ``path``: its mount point, file-system type and source device."""
    target = Path(path).resolve()
    best = {"mount": "/", "fstype": "unknown", "source": "unknown"}
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        source, mount, fstype = line.split()[:3]
        mount = mount.replace("\\040", " ")
        inside = target == Path(mount) or Path(mount) in target.parents
        if inside and len(mount) >= len(best["mount"]):
            best = {"mount": mount, "fstype": fstype, "source": source}
    return best


def is_memory_backed(path: str | Path) -> bool:
    """True when ``path`` lives on tmpfs or a similar file system, where "cold" has no meaning."""
    return filesystem_of(path)["fstype"] in MEMORY_FILESYSTEMS


def block_device_info(path: str | Path) -> dict[str, Any]:
    """Read-only facts about the block device under ``path``: name, scheduler, read-ahead, rotational."""
    source = filesystem_of(path)["source"]
    info: dict[str, Any] = {"source": source}
    name = Path(source).name if source.startswith("/dev/") else None
    if not name:
        return info
    queue = _queue_dir(name)
    if queue is None:
        return info
    info["device"] = queue.parent.name
    for key, file in (("scheduler", "scheduler"), ("read_ahead_kb", "read_ahead_kb"),
                      ("rotational", "rotational"), ("nr_requests", "nr_requests")):
        try:
            info[key] = (queue / file).read_text().strip()
        except OSError:
            pass
    return info


def _queue_dir(name: str) -> Path | None:
    """The sysfs queue folder of a disk or of the disk a partition belongs to."""
    block = Path("/sys/class/block") / name
    for candidate in (block / "queue", block.resolve().parent / "queue"):
        if candidate.is_dir():
            return candidate
    return None


def write_random_file(path: str | Path, nbytes: int, *, seed: int = 0, chunk_bytes: int = 64 << 20) -> Path:
    """Write ``nbytes`` of incompressible random bytes to ``path``, flushed to the disk (fsync)."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        left = nbytes
        while left > 0:
            n = min(chunk_bytes, left)
            f.write(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
            left -= n
        f.flush()
        os.fsync(f.fileno())
    return path


def evict(path: str | Path) -> None:
    """Ask the kernel to drop this file's pages from the page cache (dirty pages are written first)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_fraction(path: str | Path) -> float:
    """The fraction of this file's pages now in the page cache, from ``mincore``.

    Mapping a file does not read it, so asking does not change the answer.
    """
    size = os.path.getsize(path)
    if size == 0:
        return 0.0
    pages = (size + PAGE - 1) // PAGE
    libc = _libc()
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise CacheControlError(f"mmap failed on {path}: {os.strerror(ctypes.get_errno())}")
        try:
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), vec) != 0:
                raise CacheControlError(f"mincore failed on {path}: {os.strerror(ctypes.get_errno())}")
        finally:
            libc.munmap(ctypes.c_void_p(address), ctypes.c_size_t(size))
    finally:
        os.close(fd)
    return int(np.count_nonzero(np.frombuffer(vec, dtype=np.uint8) & 1)) / pages


def make_cold(path: str | Path, *, tolerance: float = 0.01, tries: int = 3) -> float:
    """Evict ``path`` and verify that at most ``tolerance`` of it is still cached; return that fraction.

    Raises ``CacheControlError`` when the file lives in memory (tmpfs) or the
    kernel keeps its pages, so a "cold" timing can never be warm by accident.
    """
    if is_memory_backed(path):
        raise CacheControlError(f"{path} is on {filesystem_of(path)['fstype']}: its pages are memory, so no read "
                                f"from it is cold. Set {SCRATCH_DIR_VAR} to a folder on a disk.")
    fraction = 1.0
    for _ in range(tries):
        evict(path)
        fraction = resident_fraction(path)
        if fraction <= tolerance:
            return fraction
    raise CacheControlError(f"{fraction:.1%} of {path} stayed in the page cache after {tries} evictions "
                            f"(allowed: {tolerance:.1%}); another process may be reading it.")


def make_warm(path: str | Path, *, block_bytes: int = 8 << 20, tolerance: float = 0.99) -> float:
    """Read all of ``path`` once so its pages are cached, verify, and return the cached fraction."""
    buf = bytearray(block_bytes)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    fraction = resident_fraction(path)
    if fraction < tolerance:
        raise CacheControlError(f"only {fraction:.1%} of {path} is cached after reading it: the file may not "
                                f"fit in free memory.")
    return fraction


def aligned_buffer(nbytes: int) -> mmap.mmap:
    """A page-aligned anonymous buffer, as ``O_DIRECT`` reads need (use it with ``os.preadv``)."""
    return mmap.mmap(-1, max(PAGE, (nbytes + PAGE - 1) // PAGE * PAGE))


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    return libc
