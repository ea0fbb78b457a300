"""What a process's children and threads inherit: its CPU affinity and its NUMA memory policy.

The probe pins itself to some CPUs (os.sched_setaffinity) and binds its memory to one NUMA node (the
set_mempolicy system call, as `numactl --membind` does), then starts children every way Python can:
multiprocessing's fork, spawn and forkserver, and subprocess (fork + exec of a new program). Each child
reports what it got. Threads started before and after pinning report too. Options add the two classic
ways a binding is lost: a forkserver started before pinning, and OpenMP thread binding
(OMP_PROC_BIND) in a library imported after pinning.

Usage: python affinity_probe.py OUT.json [--cpus 0] [--node 0] [--forkserver-first] [--import-module torch]
Writes JSON: a list of {"who", "affinity", "mempolicy"}.

Taught in: notebooks/ch03_os_containers/03_02_numa_cpu_affinity.ipynb
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import threading

# set_mempolicy / get_mempolicy system call numbers (glibc has no wrapper; libnuma wraps them).
_SYSCALLS = {"x86_64": (238, 239), "aarch64": (237, 236)}
_POLICIES = {0: "default", 1: "preferred", 2: "bind", 3: "interleave", 4: "local"}
MPOL_BIND = 2


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def set_membind(node: int) -> str:
    """Bind this thread's future allocations to one NUMA node; return "" or why it failed."""
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return f"no system call number known for {platform.machine()}"
    mask = (ctypes.c_ulong * 16)()
    mask[node // 64] = 1 << (node % 64)
    libc = _libc()
    if libc.syscall(ctypes.c_long(numbers[0]), ctypes.c_long(MPOL_BIND), mask, ctypes.c_ulong(16 * 64)) != 0:
        return os.strerror(ctypes.get_errno())
    return ""


def mempolicy() -> str:
    """This thread's memory policy, e.g. "bind 0" or "default"."""
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return "unknown"
    mode, mask = ctypes.c_int(-1), (ctypes.c_ulong * 16)()
    libc = _libc()
    if libc.syscall(ctypes.c_long(numbers[1]), ctypes.byref(mode), mask, ctypes.c_ulong(16 * 64),
                    ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        return "unavailable: " + os.strerror(ctypes.get_errno())
    nodes = [64 * w + b for w in range(16) for b in range(64) if mask[w] >> b & 1]
    name = _POLICIES.get(mode.value, str(mode.value))
    return name if mode.value in (0, 4) else f"{name} {','.join(map(str, nodes))}"


def observe(who: str) -> dict:
    return {"who": who, "affinity": sorted(os.sched_getaffinity(0)), "mempolicy": mempolicy()}


def _child(queue, who: str) -> None:
    queue.put(observe(who))


def _from_context(method: str, who: str) -> dict:
    ctx = mp.get_context(method)
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue, who))
    child.start()
    found = queue.get(timeout=60)
    child.join(timeout=60)
    return found


def _exec_child(who: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--report", who], capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", help="where to write the JSON result")
    ap.add_argument("--cpus", default="", help="comma-separated CPUs to pin to (default: do not pin)")
    ap.add_argument("--node", type=int, default=-1, help="NUMA node to bind memory to (default: do not bind)")
    ap.add_argument("--forkserver-first", action="store_true", help="start the forkserver before pinning")
    ap.add_argument("--import-module", default="", help="import this module after pinning, then observe again")
    ap.add_argument("--report", default="", help=argparse.SUPPRESS)  # used by the exec'd child
    args = ap.parse_args()
    if args.report:
        print(json.dumps(observe(args.report)))
        return

    rows = []
    if args.forkserver_first:
        _from_context("forkserver", "(warm-up)")  # the forkserver process now exists, unpinned

    release = threading.Event()
    early_thread = threading.Thread(target=release.wait)
    early_thread.start()

    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    if args.node >= 0:
        problem = set_membind(args.node)
        if problem:
            rows.append({"who": "set_mempolicy", "affinity": [], "mempolicy": "failed: " + problem})
    rows.append(observe("parent, after pinning" if args.cpus else "parent"))

    if args.import_module:
        importlib.import_module(args.import_module)
        rows.append(observe(f"parent, after import {args.import_module}"))
        rows.append(_exec_child(f"subprocess exec, after import {args.import_module}"))
    elif args.forkserver_first:
        rows.append(_from_context("forkserver", "forkserver child, server started before pinning"))
    else:
        rows.append({"who": "thread started before pinning", "affinity": sorted(os.sched_getaffinity(early_thread.native_id)),
                     "mempolicy": "(per thread; not readable from outside)"})
        late: list[dict] = []
        late_thread = threading.Thread(target=lambda: late.append(observe("thread started after pinning")))
        late_thread.start()
        late_thread.join()
        rows.extend(late)
        for method in ("fork", "spawn", "forkserver"):
            rows.append(_from_context(method, f"multiprocessing {method} child"))
        rows.append(_exec_child("subprocess exec (fork + exec)"))
    release.set()
    early_thread.join()

    with open(args.out, "w") as f:
        json.dump(rows, f)


if __name__ == "__main__":
    main()
