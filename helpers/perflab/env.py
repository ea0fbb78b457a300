"""What this machine is, and whether an experiment can run live on it.

Everything here only reads: no setting of the machine or its GPUs is changed.
GPU libraries (torch, NVML) are imported inside functions, so this module
imports on a machine with no GPU and no CuPy.

Taught in: notebooks/00_start_here.ipynb
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from perflab import __version__

# Raw signalling rate of one PCIe lane, in GT/s, by generation, and the line
# encoding's payload fraction (8b/10b up to gen 2, 128b/130b from gen 3 on).
PCIE_GT_PER_S = {1: 2.5, 2: 5.0, 3: 8.0, 4: 16.0, 5: 32.0, 6: 64.0}
PCIE_ENCODING = {1: 8 / 10, 2: 8 / 10, 3: 128 / 130, 4: 128 / 130, 5: 128 / 130, 6: 1.0}

FORCE_REFERENCE_VAR = "PERFLAB_FORCE_REFERENCE"


@dataclass(frozen=True)
class Gpu:
    """One CUDA device as the driver reports it."""

    index: int
    name: str
    cc: str  # compute capability, e.g. "9.0"
    memory_GiB: float
    sm_count: int
    l2_MiB: float
    pcie_gen: int | None = None  # the link's maximum generation
    pcie_width: int | None = None  # the link's maximum width (lanes)
    numa_node: int | None = None


@dataclass(frozen=True)
class Machine:
    """The machine an experiment runs on."""

    os: str
    cpu_model: str
    cpu_count: int
    numa_nodes: int
    memory_GiB: float
    python: str
    torch: str | None
    torch_cuda: str | None
    cupy: str | None
    driver: str | None
    gpus: tuple[Gpu, ...] = field(default_factory=tuple)
    mps_control: str | None = None  # path of nvidia-cuda-mps-control, if present

    @property
    def gpu(self) -> Gpu | None:
        """The first GPU, or None on a machine without one."""
        return self.gpus[0] if self.gpus else None


@dataclass(frozen=True)
class Mode:
    """Whether a notebook measures live or shows reference records, and why."""

    live: bool
    reason: str

    def __str__(self) -> str:
        return f"{'LIVE' if self.live else 'REFERENCE'}: {self.reason}"


def pcie_link_GBps(gen: int, width: int) -> float:
    """Raw per-direction payload rate of a PCIe link in GB/s.

    rate = GT/s per lane x lanes x encoding efficiency / 8 bits per byte.
    Gen 5 x16: 32 x 16 x 128/130 / 8 = 63.0 GB/s. Packet headers cost a
    further 10-15 %, so copies top out below this figure.
    """
    if gen not in PCIE_GT_PER_S:
        raise ValueError(f"PCIe generation must be one of {sorted(PCIE_GT_PER_S)}; got {gen!r}.")
    return PCIE_GT_PER_S[gen] * width * PCIE_ENCODING[gen] / 8


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpu_model() -> str:
    info = _read("/proc/cpuinfo") or ""
    for line in info.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_GiB() -> float:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def _numa_nodes() -> int:
    nodes = list(Path("/sys/devices/system/node").glob("node[0-9]*"))
    return max(1, len(nodes))


def cpu_caches() -> dict[str, int]:
    """Data cache sizes of CPU 0 in bytes, e.g. {"L1d": 49152, "L2": 1048576, "L3": 33554432}.

    Read from sysfs; empty where the kernel does not expose them.
    """
    caches: dict[str, int] = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index[0-9]*")):
        kind, level, size = (_read(str(index / f)) for f in ("type", "level", "size"))
        if kind == "Instruction" or not (level and size):
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        number = int(size.rstrip("KMG"))
        caches[f"L{level}" + ("d" if kind == "Data" else "")] = number * units.get(size[-1], 1)
    return caches


def has_module(name: str) -> bool:
    """True if ``import name`` would find the module, without importing it ("cuda.core" too)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent package of a dotted name is missing
        return False


def _module_version(name: str) -> str | None:
    try:
        module = __import__(name)
    except Exception:  # a broken GPU library must not stop detection
        return None
    return getattr(module, "__version__", "unknown")


def _nvml_link(index: int) -> tuple[int | None, int | None, int | None, str | None]:
    """PCIe max generation and width, NUMA node and driver version from NVML."""
    try:
        import pynvml
    except ImportError:
        return None, None, None, None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None, None, None, None
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        gen = pynvml.nvmlDeviceGetMaxPcieLinkGeneration(handle)
        width = pynvml.nvmlDeviceGetMaxPcieLinkWidth(handle)
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        try:
            numa = pynvml.nvmlDeviceGetNumaNodeId(handle)
        except Exception:
            numa = None
        return gen, width, numa, driver
    except Exception:
        return None, None, None, None
    finally:
        pynvml.nvmlShutdown()


def _gpus() -> tuple[tuple[Gpu, ...], str | None]:
    try:
        import torch
    except ImportError:
        return (), None
    if not torch.cuda.is_available():
        return (), None
    gpus, driver = [], None
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        gen, width, numa, driver = _nvml_link(i)
        gpus.append(
            Gpu(
                index=i,
                name=props.name,
                cc=f"{props.major}.{props.minor}",
                memory_GiB=round(props.total_memory / 2**30, 1),
                sm_count=props.multi_processor_count,
                l2_MiB=round(getattr(props, "L2_cache_size", 0) / 2**20, 1),
                pcie_gen=gen,
                pcie_width=width,
                numa_node=numa,
            )
        )
    return tuple(gpus), driver


def _mps_control() -> str | None:
    found = shutil.which("nvidia-cuda-mps-control")
    if found:
        return found
    fallback = Path("/usr/local/nvidia/bin/nvidia-cuda-mps-control")
    return str(fallback) if fallback.exists() else None


@functools.lru_cache(maxsize=1)
def detect() -> Machine:
    """Describe this machine: CPUs, memory, GPUs, driver and library versions.

    The answer is cached for the life of the process.
    """
    gpus, driver = _gpus()
    torch_cuda = None
    if _module_version("torch"):
        import torch

        torch_cuda = torch.version.cuda
    return Machine(
        os=f"{platform.system()} {platform.release()}",
        cpu_model=_cpu_model(),
        cpu_count=os.cpu_count() or 1,
        numa_nodes=_numa_nodes(),
        memory_GiB=round(_memory_GiB(), 1),
        python=platform.python_version(),
        torch=_module_version("torch"),
        torch_cuda=torch_cuda,
        cupy=_module_version("cupy") if gpus else None,
        driver=driver,
        gpus=gpus,
        mps_control=_mps_control(),
    )


def banner(machine: Machine | None = None) -> str:
    """Return a short description of the machine, for the top of a notebook."""
    m = machine or detect()
    lines = [
        f"perflab {__version__} · Python {m.python} · torch {m.torch or 'not installed'}"
        + (f" (CUDA {m.torch_cuda})" if m.torch_cuda else "")
        + (f" · CuPy {m.cupy}" if m.cupy else ""),
        f"CPU: {m.cpu_model}, {m.cpu_count} logical CPUs, {m.numa_nodes} NUMA node(s), "
        f"{m.memory_GiB:.0f} GiB",
    ]
    if not m.gpus:
        lines.append("GPU: none visible to PyTorch (GPU experiments show reference records)")
    for g in m.gpus:
        link = f", PCIe gen {g.pcie_gen} x{g.pcie_width}" if g.pcie_gen else ""
        lines.append(
            f"GPU {g.index}: {g.name}, CC {g.cc}, {g.sm_count} SMs, {g.memory_GiB:.0f} GiB, "
            f"L2 {g.l2_MiB:g} MiB{link}, driver {m.driver or 'unknown'}"
        )
    return "\n".join(lines)


def requirement_mode(requires: dict[str, Any], machine: Machine | None = None) -> Mode:
    """Decide live or reference mode for a notebook's ``requires`` metadata.

    Understood keys: ``gpus`` (how many CUDA GPUs) and ``min_cc`` (lowest
    compute capability, e.g. "8.0"). Setting PERFLAB_FORCE_REFERENCE=1 shows
    reference records even where the hardware is present.
    """
    m = machine or detect()
    gpus = int(requires.get("gpus", 0))
    min_cc = requires.get("min_cc")
    if gpus == 0:
        return Mode(True, "needs no GPU")
    if os.environ.get(FORCE_REFERENCE_VAR) == "1":
        return Mode(False, f"{FORCE_REFERENCE_VAR}=1 is set")
    if len(m.gpus) < gpus:
        found = f"found {len(m.gpus)}" if m.gpus else "found none"
        plural = "GPU" if gpus == 1 else "GPUs"
        return Mode(False, f"needs {gpus} CUDA {plural}, {found}")
    if min_cc is not None:
        low = [g for g in m.gpus[:gpus] if _cc_tuple(g.cc) < _cc_tuple(str(min_cc))]
        if low:
            return Mode(False, f"needs compute capability {min_cc}, {low[0].name} has {low[0].cc}")
    names = ", ".join(sorted({g.name for g in m.gpus[:gpus]}))
    return Mode(True, f"{names} available")


def _cc_tuple(cc: str) -> tuple[int, ...]:
    return tuple(int(part) for part in cc.split("."))


def require(gpus: int = 1, min_cc: str | None = None) -> Mode:
    """Choose live or reference mode for this notebook and print the reason.

    Example:
        mode = env.require(gpus=1)   # prints "LIVE: NVIDIA H100 80GB HBM3 available"
        if mode.live: ...measure...
    """
    requires: dict[str, Any] = {"gpus": gpus}
    if min_cc is not None:
        requires["min_cc"] = min_cc
    mode = requirement_mode(requires)
    print(mode)
    return mode


def fingerprint(machine: Machine | None = None) -> dict[str, Any]:
    """What a measurement depends on: hardware, driver and library versions.

    ``id`` is a short hash of the rest, to group records from one setup.
    """
    m = machine or detect()
    fp: dict[str, Any] = {
        "gpu": m.gpu.name if m.gpu else None,
        "gpu_count": len(m.gpus),
        "gpus": [asdict(g) for g in m.gpus],
        "driver": m.driver,
        "torch": m.torch,
        "torch_cuda": m.torch_cuda,
        "cupy": m.cupy,
        "cpu": m.cpu_model,
        "cpu_count": m.cpu_count,
        "numa_nodes": m.numa_nodes,
        "memory_GiB": m.memory_GiB,
        "os": m.os,
        "python": m.python,
        "perflab": __version__,
    }
    digest = hashlib.sha256(repr(sorted(fp.items())).encode()).hexdigest()
    fp["id"] = digest[:10]
    return fp


