"""Tests of perflab.env: PCIe rates, machine detection and live/reference mode."""

import re

import pytest

from perflab import env
from perflab.env import Gpu, Machine


def has_cuda():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


no_cuda = pytest.mark.skipif(has_cuda(), reason="checks behaviour on a machine without CUDA")


def machine(*gpus):
    return Machine(os="Linux", cpu_model="Test CPU", cpu_count=8, numa_nodes=1, memory_GiB=64.0,
                   python="3.11", torch="2.3", torch_cuda=None, cupy=None, driver=None, gpus=gpus)


H100 = Gpu(index=0, name="NVIDIA H100", cc="9.0", memory_GiB=80.0, sm_count=132, l2_MiB=50.0,
           pcie_gen=5, pcie_width=16)


@pytest.fixture(autouse=True)
def no_forcing(monkeypatch):
    monkeypatch.delenv("PERFLAB_FORCE_REFERENCE", raising=False)


def test_pcie_link_rates():
    assert env.pcie_link_GBps(5, 16) == pytest.approx(63.0, rel=1e-3)
    assert env.pcie_link_GBps(4, 16) == pytest.approx(31.5, rel=1e-3)
    assert env.pcie_link_GBps(3, 16) == pytest.approx(15.75, rel=1e-3)
    assert env.pcie_link_GBps(2, 16) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="PCIe generation"):
        env.pcie_link_GBps(7, 16)


@no_cuda
def test_detect_and_banner_without_gpu():
    m = env.detect()
    assert m.gpus == () and m.gpu is None and m.cpu_count >= 1
    text = env.banner()
    assert isinstance(text, str) and "GPU: none" in text and m.cpu_model in text


def test_banner_lists_a_fake_gpu():
    text = env.banner(machine(H100))
    assert "GPU 0: NVIDIA H100, CC 9.0, 132 SMs" in text and "PCIe gen 5 x16" in text
    assert "GPU: none" not in text


def test_requirement_mode():
    assert env.requirement_mode({"gpus": 0}, machine()).live
    mode = env.requirement_mode({"gpus": 1}, machine())
    assert not mode.live and mode.reason == "needs 1 CUDA GPU, found none"
    assert env.requirement_mode({"gpus": 1}, machine(H100)) == env.Mode(True, "NVIDIA H100 available")
    assert env.requirement_mode({"gpus": 2}, machine(H100)).reason == "needs 2 CUDA GPUs, found 1"
    assert env.requirement_mode({"gpus": 1, "min_cc": "8.0"}, machine(H100)).live
    low = env.requirement_mode({"gpus": 1, "min_cc": "10.0"}, machine(H100))
    assert not low.live and "compute capability 10.0" in low.reason


def test_force_reference(monkeypatch):
    monkeypatch.setenv("PERFLAB_FORCE_REFERENCE", "1")
    mode = env.requirement_mode({"gpus": 1}, machine(H100))
    assert not mode.live and "PERFLAB_FORCE_REFERENCE=1" in mode.reason


def test_require_prints_the_mode(capsys):
    mode = env.require(gpus=0)
    assert mode.live and capsys.readouterr().out.strip() == "LIVE: needs no GPU"


def test_fingerprint_is_stable():
    first, second = env.fingerprint(), env.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{10}", first["id"]) and first == second
    fake = env.fingerprint(machine(H100))
    assert fake["gpu"] == "NVIDIA H100" and fake["gpu_count"] == 1 and fake["id"] != first["id"]


def test_cpu_caches_are_positive_ints():
    caches = env.cpu_caches()
    assert isinstance(caches, dict)
    assert all(re.fullmatch(r"L\dd?", k) and isinstance(v, int) and v > 0 for k, v in caches.items())


@pytest.mark.parametrize("name, found", [("json", True), ("perflab.env", True), ("no_such_module_xyz", False),
                                         ("no_such_package_xyz.sub", False)])
def test_has_module(name, found):
    assert env.has_module(name) is found
