"""perflab.storage: page-cache control for the kit's own files, verified with mincore."""

from __future__ import annotations

import os
import time
import zlib

import pytest
from perflab import storage


@pytest.fixture
def disk_file():
    folder = storage.scratch_dir()
    if storage.is_memory_backed(folder):
        pytest.skip(f"{folder} is memory-backed on this machine")
    path = storage.write_random_file(folder / f"test_storage_{os.getpid()}.bin", 8 << 20, seed=1)
    yield path
    path.unlink(missing_ok=True)


def test_random_file_has_the_size_and_is_not_compressible(disk_file):
    data = disk_file.read_bytes()
    assert len(data) == 8 << 20
    assert len(zlib.compress(data[: 1 << 20], 1)) > 0.99 * (1 << 20)


def test_evict_then_read_moves_residency_from_zero_to_one(disk_file):
    assert storage.make_cold(disk_file) <= 0.01
    assert storage.resident_fraction(disk_file) <= 0.01  # asking does not read
    with open(disk_file, "rb") as f:
        f.read(1 << 20)  # the first MiB (read-ahead may bring more)
    partial = storage.resident_fraction(disk_file)
    assert 0.1 <= partial
    assert storage.make_warm(disk_file) >= 0.99


def test_make_cold_refuses_a_memory_file_system(tmp_path):
    shm = "/dev/shm"
    if not os.path.isdir(shm) or not storage.is_memory_backed(shm):
        pytest.skip("no tmpfs at /dev/shm")
    path = storage.write_random_file(f"{shm}/perflab_test_{os.getpid()}_{time.time_ns()}", 1 << 20)
    try:
        with pytest.raises(storage.CacheControlError, match="no read from it is cold"):
            storage.make_cold(path)
    finally:
        os.remove(path)


def test_scratch_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(storage.SCRATCH_DIR_VAR, str(tmp_path / "here"))
    assert storage.scratch_dir() == tmp_path / "here"
    assert (tmp_path / "here").is_dir()


def test_filesystem_of_finds_the_root_mount():
    assert storage.filesystem_of("/")["mount"] == "/"


def test_aligned_buffer_is_page_sized():
    buf = storage.aligned_buffer(5000)
    assert len(buf) % storage.PAGE == 0 and len(buf) >= 5000
