"""Read-only inspection of the operating system and the GPU's modes.

Every function here only reads files under /proc and /sys, asks NVML, or runs
``nvidia-smi`` with query arguments. Nothing writes a setting, nothing needs
root, and everything answers None, {} or [] where a feature is absent, so the
lessons and ``perflab doctor`` run on any Linux machine.

Taught in: notebooks/ch03_os_containers/03_02_numa_cpu_affinity.ipynb,
03_04_os_memory_cpu_knobs.ipynb, 03_07_containers_kubernetes.ipynb
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GiB = 2**30
# nvidia-smi arguments that change something; nvidia_smi() refuses them all.
_SETTING_FLAGS = re.compile(
    r"^(-pm|-pl|-lgc|-rgc|-lmc|-rmc|-ac|-rac|-acp|-c|-e|-r|-am|-caa|-mig|-cc|"
    r"--persistence-mode|--power-limit|--lock-gpu-clocks|--reset-gpu-clocks|--lock-memory-clocks|"
    r"--reset-memory-clocks|--applications-clocks|--reset-applications-clocks|--compute-mode|"
    r"--ecc-config|--gpu-reset|--multi-instance-gpu|--auto-boost-default|--cuda-clocks)(=.*)?$"
)
_SETTING_SUBCOMMANDS = {"-cgi", "-dgi", "-cci", "-dci", "--create-gpu-instance", "--destroy-gpu-instance",
                        "--create-compute-instance", "--destroy-compute-instance", "set", "-i2c"}


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """"0-3,8,10-11" -> (0, 1, 2, 3, 8, 10, 11): the kernel's CPU list format."""
    cpus: list[int] = []
    for part in filter(None, text.strip().split(",")):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(cpus)


@dataclass(frozen=True)
class NumaNode:
    id: int
    cpus: tuple[int, ...]
    memory_GiB: float | None


def numa_nodes() -> list[NumaNode]:
    """The NUMA nodes with their CPUs and memory; one node with every CPU where sysfs has none."""
    nodes = []
    for folder in sorted(Path("/sys/devices/system/node").glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        meminfo = _read(folder / "meminfo") or ""
        match = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
        nodes.append(NumaNode(int(folder.name[4:]), parse_cpu_list(_read(folder / "cpulist") or ""),
                              int(match.group(1)) / 2**20 if match else None))
    if not nodes:
        nodes.append(NumaNode(0, tuple(sorted(os.sched_getaffinity(0))), None))
    return nodes


def _nvml_call(fn_name: str, index: int, *args: Any) -> Any:
    """Call one pynvml device function read-only; None where NVML or the GPU is absent."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return getattr(pynvml, fn_name)(handle, *args)
    except Exception:
        return None
    finally:
        pynvml.nvmlShutdown()


def gpu_pci_bus_id(index: int = 0) -> str | None:
    """The GPU's PCI address in sysfs form, e.g. "0000:1b:00.0" (NVML gives 8 hex digits of domain)."""
    info = _nvml_call("nvmlDeviceGetPciInfo", index)
    if info is None:
        return None
    bus = info.busId.decode() if isinstance(info.busId, bytes) else info.busId
    domain, rest = bus.lower().split(":", 1)
    return f"{int(domain, 16):04x}:{rest}"


def gpu_numa_node(index: int = 0) -> int | None:
    """The NUMA node nearest the GPU: NVML's answer, else sysfs numa_node (-1 means unknown -> None)."""
    node = _nvml_call("nvmlDeviceGetNumaNodeId", index)
    if node is not None and node >= 0:
        return int(node)
    bus = gpu_pci_bus_id(index)
    value = _read(f"/sys/bus/pci/devices/{bus}/numa_node") if bus else None
    return int(value) if value is not None and int(value) >= 0 else None


def gpu_cpu_affinity(index: int = 0) -> list[int] | None:
    """The CPUs NVML considers close to the GPU, from its affinity bit mask."""
    words = os.cpu_count() or 1
    mask = _nvml_call("nvmlDeviceGetCpuAffinity", index, (words + 63) // 64)
    if mask is None:
        return None
    return [64 * w + b for w, word in enumerate(mask) for b in range(64) if word >> b & 1]


def thp() -> dict[str, str | None]:
    """Transparent huge page modes: the [bracketed] choice of each setting."""
    found = {}
    for key in ("enabled", "defrag"):
        text = _read(f"/sys/kernel/mm/transparent_hugepage/{key}")
        match = re.search(r"\[(\w+)\]", text or "")
        found[key] = match.group(1) if match else None
    return found


def sysctl(name: str) -> str | None:
    """Read one kernel setting, e.g. sysctl("vm.swappiness") -> "60"."""
    return _read(Path("/proc/sys", *name.split(".")))


def swap_total_GiB() -> float:
    """Total swap space, from /proc/meminfo."""
    match = re.search(r"SwapTotal:\s+(\d+) kB", _read("/proc/meminfo") or "")
    return int(match.group(1)) / 2**20 if match else 0.0


def memlock_limit() -> tuple[int | None, int | None]:
    """RLIMIT_MEMLOCK (soft, hard) in bytes; None means unlimited."""
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return tuple(None if v == resource.RLIM_INFINITY else v for v in (soft, hard))


def cpu_governors() -> dict[str, int]:
    """Frequency governor -> how many CPUs use it; {} where cpufreq is absent."""
    counts: dict[str, int] = {}
    for path in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor"):
        governor = _read(path)
        if governor:
            counts[governor] = counts.get(governor, 0) + 1
    return counts


def cpu_idle_states() -> list[str]:
    """Names of CPU 0's idle (C-) states; [] where cpuidle is absent."""
    folders = sorted(Path("/sys/devices/system/cpu/cpu0/cpuidle").glob("state[0-9]*"), key=lambda p: int(p.name[5:]))
    return [name for name in (_read(f / "name") for f in folders) if name]


@dataclass(frozen=True)
class Irq:
    number: int
    name: str
    total: int
    affinity: str | None


def irqs(match: str = "nvidia") -> list[Irq]:
    """Interrupt lines whose name contains ``match``, with counts and CPU affinity."""
    lines = (_read("/proc/interrupts") or "").splitlines()
    if not lines:
        return []
    n_cpus = len(lines[0].split())
    found = []
    for line in lines[1:]:
        head, _, rest = line.partition(":")
        if not head.strip().isdigit() or match not in rest:
            continue
        fields = rest.split()
        counts = [int(f) for f in fields[:n_cpus] if f.isdigit()]
        found.append(Irq(int(head), " ".join(fields[n_cpus:]), sum(counts),
                         _read(f"/proc/irq/{int(head)}/smp_affinity_list")))
    return found


@dataclass(frozen=True)
class Cgroup:
    version: int | None
    cpu_quota_cores: float | None
    memory_max_bytes: int | None
    cpuset: str | None


def cgroup_limits() -> Cgroup:
    """This process's cgroup limits (v2, or v1 where mounted); None means no limit."""
    own = _read("/proc/self/cgroup") or ""
    v2 = re.search(r"^0::(.*)$", own, re.M)
    if v2 and Path("/sys/fs/cgroup/cgroup.controllers").exists():
        folder = Path("/sys/fs/cgroup") / v2.group(1).lstrip("/")
        quota, _, period = (_read(folder / "cpu.max") or "max").partition(" ")
        memory = _read(folder / "memory.max")
        return Cgroup(2, None if quota == "max" else int(quota) / int(period),
                      None if memory in (None, "max") else int(memory), _read(folder / "cpuset.cpus.effective"))
    quota = _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") or _read("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us")
    period = _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us") or _read("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us")
    memory = _read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
    if quota is None and memory is None:
        return Cgroup(None, None, None, None)
    unlimited_memory = memory is None or int(memory) >= 2**62
    return Cgroup(1, int(quota) / int(period) if quota and int(quota) > 0 and period else None,
                  None if unlimited_memory else int(memory), _read("/sys/fs/cgroup/cpuset/cpuset.effective_cpus"))


def container() -> tuple[bool, str]:
    """Whether this process runs in a container, and the evidence in a few words."""
    if Path("/.dockerenv").exists():
        return True, "/.dockerenv exists (Docker)"
    if Path("/run/.containerenv").exists():
        return True, "/run/.containerenv exists (Podman)"
    if "KUBERNETES_SERVICE_HOST" in os.environ:
        return True, "KUBERNETES_SERVICE_HOST is set (a Kubernetes pod)"
    own = _read("/proc/1/cgroup") or ""
    for word in ("docker", "kubepods", "containerd", "libpod", "lxc"):
        if word in own:
            return True, f"PID 1's cgroup mentions {word}"
    return False, "no container markers found"


def shm_bytes() -> int | None:
    """Size of /dev/shm, where DataLoader workers pass tensors."""
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return None
    return stats.f_blocks * stats.f_frsize


def gpu_modes(index: int = 0) -> dict[str, Any]:
    """The GPU's modes and clocks, read from NVML; {} without NVML or a GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return {}
    modes: dict[str, Any] = {}
    names = {0: "Default", 1: "Exclusive_Thread", 2: "Prohibited", 3: "Exclusive_Process"}
    reads = {
        "compute_mode": lambda h: names.get(pynvml.nvmlDeviceGetComputeMode(h), "unknown"),
        "persistence": lambda h: bool(pynvml.nvmlDeviceGetPersistenceMode(h)),
        "mig_current": lambda h: bool(pynvml.nvmlDeviceGetMigMode(h)[0]),
        "mig_pending": lambda h: bool(pynvml.nvmlDeviceGetMigMode(h)[1]),
        "ecc_current": lambda h: bool(pynvml.nvmlDeviceGetEccMode(h)[0]),
        "power_limit_W": lambda h: pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000,
        "sm_clock_MHz": lambda h: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
        "max_sm_clock_MHz": lambda h: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
    }
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        for key, read in reads.items():
            try:
                modes[key] = read(handle)
            except Exception:  # not supported on this GPU
                modes[key] = None
    except Exception:
        return {}
    finally:
        pynvml.nvmlShutdown()
    return modes


def nvidia_smi(*args: str, timeout_s: float = 10) -> str | None:
    """Run nvidia-smi with read-only arguments and return its output; None if it is absent.

    Any argument that would change a setting raises ValueError, so a lesson
    cannot change the GPU by accident.
    """
    for arg in args:
        if _SETTING_FLAGS.match(arg) or arg in _SETTING_SUBCOMMANDS:
            raise ValueError(f"nvidia_smi() only reads; `{arg}` would change a setting.")
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout_s)
    return done.stdout if done.returncode == 0 else None


def summary() -> list[tuple[str, str]]:
    """(setting, value) rows describing the OS and GPU state, for doctor and lessons."""
    soft, _ = memlock_limit()
    cgroup = cgroup_limits()
    in_container, evidence = container()
    shm = shm_bytes()
    rows = [
        ("NUMA nodes", ", ".join(f"{n.id}: CPUs {len(n.cpus)}" for n in numa_nodes())),
        ("transparent huge pages", f"enabled={thp()['enabled']}, defrag={thp()['defrag']}"),
        ("swap", f"{swap_total_GiB():.1f} GiB, vm.swappiness={sysctl('vm.swappiness')}"),
        ("locked-memory limit (ulimit -l)", "unlimited" if soft is None else f"{soft // 1024} KiB"),
        ("CPU governor", ", ".join(f"{g} ({n} CPUs)" for g, n in cpu_governors().items()) or "no cpufreq"),
        ("container", f"{'yes' if in_container else 'no'} ({evidence})"),
        ("cgroup limits", f"v{cgroup.version}: CPUs {cgroup.cpu_quota_cores or 'no limit'}, memory "
                          f"{'no limit' if cgroup.memory_max_bytes is None else f'{cgroup.memory_max_bytes / GiB:.1f} GiB'}"
         if cgroup.version else "none found"),
        ("/dev/shm", "absent" if shm is None else f"{shm / GiB:.1f} GiB"),
    ]
    modes = gpu_modes()
    if modes:
        rows.append(("GPU 0 modes", f"compute {modes['compute_mode']}, persistence {modes['persistence']}, "
                                    f"MIG {modes['mig_current']}, ECC {modes['ecc_current']}"))
    return rows
