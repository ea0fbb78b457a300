"""Tests of perflab.system: it reads the machine and never writes a setting."""

import builtins
import os
import pathlib
import stat

import pytest

from perflab import system

PUBLIC = [system.numa_nodes, system.gpu_numa_node, system.gpu_cpu_affinity, system.gpu_pci_bus_id, system.thp,
          system.swap_total_GiB, system.memlock_limit, system.cpu_governors, system.cpu_idle_states, system.irqs,
          system.cgroup_limits, system.container, system.shm_bytes, system.gpu_modes, system.summary]


@pytest.fixture
def recording_nvidia_smi(tmp_path, monkeypatch):
    """An nvidia-smi stand-in first on PATH that records its arguments and prints a line."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\necho "NVIDIA H100 80GB HBM3, Default"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return log


def test_cpu_list_format():
    assert system.parse_cpu_list("0-3,8,10-11\n") == (0, 1, 2, 3, 8, 10, 11)
    assert system.parse_cpu_list("") == ()


def test_readings_have_the_promised_types():
    nodes = system.numa_nodes()
    assert nodes and all(n.cpus for n in nodes)
    assert set(system.thp()) == {"enabled", "defrag"}
    assert system.sysctl("kernel.ostype") == "Linux"
    assert system.sysctl("no.such.setting") is None
    assert system.swap_total_GiB() >= 0
    soft, hard = system.memlock_limit()
    assert soft is None or soft >= 0
    assert isinstance(system.cpu_governors(), dict) and isinstance(system.cpu_idle_states(), list)
    assert all(isinstance(irq.total, int) for irq in system.irqs(""))
    assert isinstance(system.container()[0], bool)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in system.summary())


def test_irq_lines_are_parsed(monkeypatch):
    files = {
        "/proc/interrupts": "           CPU0       CPU1\n 24:    10    4   PCI-MSI 123-edge   nvidia\n"
                            " 25:     1    0   PCI-MSI 456-edge   eth0\nNMI:  0  0  Non-maskable interrupts\n",
        "/proc/irq/24/smp_affinity_list": "0-1",
    }
    monkeypatch.setattr(system, "_read", lambda path: files.get(str(path)))
    assert system.irqs("nvidia") == [system.Irq(24, "PCI-MSI 123-edge nvidia", 14, "0-1")]


def test_thp_reads_the_bracketed_choice(monkeypatch):
    monkeypatch.setattr(system, "_read", lambda path: "always [madvise] never")
    assert system.thp() == {"enabled": "madvise", "defrag": "madvise"}


@pytest.mark.parametrize("args", [("-pm", "1"), ("-i", "0", "-c", "EXCLUSIVE_PROCESS"), ("-lgc", "1980"),
                                  ("--power-limit=300",), ("-r",), ("-mig", "1"), ("mig", "-cgi", "9")])
def test_nvidia_smi_refuses_setting_flags(args, recording_nvidia_smi):
    with pytest.raises(ValueError, match="only reads"):
        system.nvidia_smi(*args)
    assert not recording_nvidia_smi.exists(), "a refused command must not run"


def test_nvidia_smi_runs_queries(recording_nvidia_smi):
    assert "H100" in system.nvidia_smi("--query-gpu=name,compute_mode", "--format=csv,noheader")
    assert recording_nvidia_smi.read_text().split() == ["--query-gpu=name,compute_mode", "--format=csv,noheader"]


def test_inspection_never_writes(monkeypatch, recording_nvidia_smi):
    """Run every reader with writes trapped: any write, anywhere, fails the test."""
    attempts = []
    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            attempts.append((str(file), mode))
            raise PermissionError(f"write attempt: {file}")
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
            attempts.append((str(path), flags))
            raise PermissionError(f"write attempt: {path}")
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    monkeypatch.setattr(pathlib.Path, "write_text", lambda self, *a, **k: attempts.append(str(self)))
    monkeypatch.setattr(pathlib.Path, "write_bytes", lambda self, *a, **k: attempts.append(str(self)))
    for reader in PUBLIC:
        reader()
    system.nvidia_smi("topo", "-m")
    assert attempts == []
    calls = recording_nvidia_smi.read_text().splitlines()
    assert calls == ["topo -m"], "only the query asked for reached nvidia-smi"
