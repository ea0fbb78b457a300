"""Tests that need a CUDA GPU (marked `gpu`; skipped elsewhere).

Run them on a GPU machine with `make gpu-test` or `pytest -m gpu tests`.
"""

import pytest

from perflab import env
from perflab.timing import bench

pytestmark = pytest.mark.gpu
MiB = 2**20


@pytest.fixture(scope="module")
def pinned_copy():
    """A 256 MiB pinned-host to device copy of random bytes, checked once."""
    import torch

    host = torch.randint(0, 256, (256 * MiB,), dtype=torch.uint8).pin_memory()
    dev = torch.empty_like(host, device="cuda")
    dev.copy_(host)
    assert torch.equal(dev.cpu(), host)
    return lambda: dev.copy_(host, non_blocking=True)


def test_copy_timing_agrees_with_triton_do_bench(pinned_copy):
    triton_testing = pytest.importorskip("triton.testing")
    ours = bench(pinned_copy, clock="cuda", rep_ms=300).median_ms
    theirs = triton_testing.do_bench(pinned_copy, warmup=25, rep=300, return_mode="median")
    assert ours == pytest.approx(theirs, rel=0.05), f"perflab {ours:.4f} ms vs do_bench {theirs:.4f} ms"


def test_copy_timing_agrees_with_cupyx_benchmark(pinned_copy):
    profiler = pytest.importorskip("cupyx.profiler")
    import numpy as np

    ours = bench(pinned_copy, clock="cuda", rep_ms=300).median_ms
    result = profiler.benchmark(pinned_copy, n_repeat=50, n_warmup=5)
    theirs = float(np.median(result.gpu_times[0])) * 1e3
    assert ours == pytest.approx(theirs, rel=0.05), f"perflab {ours:.4f} ms vs cupyx {theirs:.4f} ms"


def test_pinned_h2d_reaches_50_GBps_on_gen5_x16():
    import torch

    gpu = env.detect().gpu
    if (gpu.pcie_gen, gpu.pcie_width) != (5, 16):
        pytest.skip(f"needs a PCIe gen 5 x16 link; this GPU reports gen {gpu.pcie_gen} x{gpu.pcie_width}")
    for n in (64 * MiB, 256 * MiB):
        host = torch.randint(0, 256, (n,), dtype=torch.uint8).pin_memory()
        dev = torch.empty_like(host, device="cuda")
        copy = bench(lambda: dev.copy_(host, non_blocking=True), clock="cuda", warmup_ms=200, rep_ms=500)
        rate = copy.rate(nbytes=n)
        assert rate >= 50, f"pinned H2D of {n // MiB} MiB ran at {rate:.1f} GB/s"


def test_detect_reports_the_gpu():
    import torch

    machine = env.detect()
    assert len(machine.gpus) == torch.cuda.device_count()
    assert machine.gpu.name == torch.cuda.get_device_name(0)
    assert machine.driver, "NVML should report the driver version"
    assert env.requirement_mode({"gpus": 1}, machine).live
