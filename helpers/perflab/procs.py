"""Worker processes released at one instant, torchrun jobs, and a private MPS daemon that always stops.

``run_workers`` starts n copies of a Python script. Each prepares (imports, CUDA start-up, warm-up),
says it is ready and waits; when all are ready they are told one wall-clock start time a little ahead,
so start-up cost stays out of what they time. ``mps_daemon`` runs ``nvidia-cuda-mps-control -d`` with
private pipe and log directories, so only processes given ``mps.env`` become MPS clients, and shuts it
down on a normal exit, an exception, an interrupt, or (through a watchdog process) the death of the
process that started it. ``run_torchrun`` runs a torch.distributed script under torchrun (one
node here, several with a rendezvous endpoint), with NVLink multicast off, and collects what each rank
``report``s. Nothing here changes the GPU's compute mode or any other setting.

Taught in: notebooks/ch03_os_containers/03_05_mps_gpu_sharing.ipynb,
notebooks/ch12_orchestration/12_08_p2p_and_nccl.ipynb
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

READY = "PERFLAB_READY"  # what a worker prints when it is ready to be released
_MPS_FALLBACK = Path("/usr/local/nvidia/bin/nvidia-cuda-mps-control")
_TAIL = 15  # stderr lines kept per worker
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])


class WorkerError(RuntimeError):
    """A worker failed, printed no JSON result, or was still running at the time limit."""


class MpsUnavailable(RuntimeError):
    """nvidia-cuda-mps-control is not installed here."""


@dataclass
class WorkerResult:
    """What one worker reported: its rank, exit status, last-line JSON object and last stderr lines."""

    rank: int
    returncode: int
    result: dict[str, Any]
    stderr_tail: str


def _with_package(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` with perflab's folder first on PYTHONPATH, so children can import it."""
    return environ | {"PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_PARENT, environ.get("PYTHONPATH")]))}


def wait_for_start() -> float:
    """Worker side: print READY, sleep until the start time the parent sends, and return it.

    Outside ``run_workers`` (PERFLAB_BARRIER unset) it returns the current time at once.
    """
    if os.environ.get("PERFLAB_BARRIER") != "1":
        return time.time()
    print(READY, flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        raise SystemExit("run_workers closed the barrier without sending a start time")
    start = float(line)
    while (left := start - time.time()) > 0:
        time.sleep(left)  # sleep, not spin: spinners would fight for the CPUs the others wake on
    return start


def _read_lines(stream, sink, ready: threading.Event | None) -> None:
    for line in stream:
        if ready is not None and line.rstrip("\n") == READY:
            ready.set()
        else:
            sink.append(line.rstrip("\n"))


def run_workers(script: Path | str, n: int, args: list[str], env: dict[str, str | None] | None = None,
                timeout_s: float = 120) -> list[WorkerResult]:
    """Run n copies of ``python script *args`` released together; return their results by rank.

    Each worker sees PERFLAB_RANK, PERFLAB_NWORKERS and PERFLAB_BARRIER=1, calls ``wait_for_start()``
    when ready, and prints one JSON object as its last line. ``env`` is added to this process's
    environment (a None value removes a variable). A failing worker, or one still running after
    ``timeout_s`` seconds (start-up included), gets every worker killed and raises WorkerError.

    Example:
        results = run_workers(WORKERS / "mps_fma.py", 4, ["--blocks", "16"], env=mps.env)
    """
    script = Path(script)
    if not script.is_file():
        raise FileNotFoundError(f"No worker script at {script}.")
    if n < 1:
        raise ValueError(f"`n` must be at least 1; got {n}.")
    env = env or {}
    base = {k: v for k, v in os.environ.items() if env.get(k, "") is not None}  # None removes a variable
    base = _with_package(base | {k: str(v) for k, v in env.items() if v is not None})
    deadline, procs, threads = time.monotonic() + timeout_s, [], []
    outs, errs = [[] for _ in range(n)], [deque(maxlen=_TAIL) for _ in range(n)]
    ready = [threading.Event() for _ in range(n)]

    def wait_until(done) -> tuple[str, int] | None:  # None, or (what went wrong, whose stderr to show)
        while True:
            for r, p in enumerate(procs):
                if p.poll() not in (None, 0):
                    how = f"was killed by signal {-p.returncode}" if p.returncode < 0 else f"exited with code {p.returncode}"
                    return f"Worker {r} of {n} ({script.name}) {how}; the end of its stderr follows.", r
            if all(done(r) for r in range(n)):
                return None
            if time.monotonic() > deadline:
                late = [r for r in range(n) if not done(r)]
                return (f"Workers {late} of {n} ({script.name}) were still running after {timeout_s:g} s and "
                        f"were killed; the end of worker {late[0]}'s stderr follows.", late[0])
            time.sleep(0.005)

    try:
        for rank in range(n):
            extra = {"PERFLAB_RANK": str(rank), "PERFLAB_NWORKERS": str(n), "PERFLAB_BARRIER": "1"}
            p = subprocess.Popen([sys.executable, str(script), *map(str, args)], env=base | extra, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 start_new_session=True)
            procs.append(p)
            for stream, sink, flag in ((p.stdout, outs[rank], ready[rank]), (p.stderr, errs[rank], None)):
                threads.append(threading.Thread(target=_read_lines, args=(stream, sink, flag), daemon=True))
                threads[-1].start()
        failure = wait_until(lambda r: ready[r].is_set() or procs[r].poll() is not None)
        if failure is None:
            start_at = time.time() + 0.05 + 0.005 * n  # time to tell everyone before it arrives
            for p in procs:
                with suppress(OSError):  # a worker that already exited is judged by its exit status
                    p.stdin.write(f"{start_at!r}\n")
                    p.stdin.close()
            failure = wait_until(lambda r: procs[r].poll() is not None)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)  # each worker leads its own session
            p.wait()
        for t in threads:
            t.join(timeout=2)
    if failure is not None:  # raised only now, when the readers have the whole stderr
        raise WorkerError(failure[0] + "\n" + "\n".join(errs[failure[1]]))
    found = []
    for rank, p in enumerate(procs):
        lines = [line for line in outs[rank] if line.strip()]
        try:
            result = json.loads(lines[-1])
        except (IndexError, ValueError):
            result = None
        if not isinstance(result, dict):
            raise WorkerError(f"Worker {rank} of {n} ({script.name}) did not print a JSON object as its last line "
                              f"(it printed {lines[-1][:200] if lines else 'nothing'!r}); the end of its stderr "
                              "follows.\n" + "\n".join(errs[rank]))
        found.append(WorkerResult(rank, p.returncode, result, "\n".join(errs[rank])))
    return found


# Set in every process of a multi-GPU run: NVLink multicast (NVLS) stays off, as the kit's safety rules ask.
NVLINK_MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
RESULT_DIR_VAR = "PERFLAB_RESULT_DIR"  # where a torchrun worker's ``report`` writes rank<N>.json


class NotEnoughGPUs(RuntimeError):
    """A run asked for more GPUs than this machine has."""

    def _render_traceback_(self) -> list[str]:
        return [f"NotEnoughGPUs: {self}"]  # IPython shows the sentence instead of a traceback


def torchrun_command(script: Path | str, nproc_per_node: int, args: list[str], *, nnodes: int = 1,
                     rdzv_endpoint: str | None = None, rdzv_id: str = "perflab") -> list[str]:
    """The ``torchrun`` command line (as ``python -m torch.distributed.run``) for one node of a job.

    One node with no ``rdzv_endpoint`` runs ``--standalone``. For several nodes, run the same command on
    every node with ``rdzv_endpoint="host:port"`` of one of them (torchrun's c10d rendezvous assigns the
    node ranks) and the same ``rdzv_id``.
    """
    if nproc_per_node < 1 or nnodes < 1:
        raise ValueError(f"`nproc_per_node` and `nnodes` must be at least 1; got {nproc_per_node} and {nnodes}.")
    if nnodes > 1 and not rdzv_endpoint:
        raise ValueError("A job on several nodes needs `rdzv_endpoint`, the host:port every node can reach.")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc_per_node),
                "--max-restarts", "0"]
    if rdzv_endpoint:
        launcher += ["--nnodes", str(nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv_endpoint,
                     "--rdzv-id", rdzv_id]
    else:
        launcher += ["--standalone", "--nnodes", "1"]
    return launcher + [str(script), *map(str, args)]


def gpus_here() -> int:
    """How many CUDA GPUs this process can see (0 without torch or CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count()


def run_torchrun(script: Path | str, nproc_per_node: int, args: list[str], *, gpus_per_proc: int = 1,
                 nnodes: int = 1, rdzv_endpoint: str | None = None, rdzv_id: str = "perflab",
                 env: dict[str, str] | None = None, timeout_s: float = 300) -> list[WorkerResult]:
    """Run ``script`` under torchrun on this node; return this node's results, by global rank.

    Each worker is an ordinary torch.distributed program (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR come
    from torchrun) that ends with ``procs.report(result)``. ``gpus_per_proc`` is 1 for NCCL and 0 for a
    CPU (gloo) job; asking for more GPUs than this machine has raises NotEnoughGPUs before anything
    starts. NVLINK_MULTICAST_OFF is always set. A failing worker, or a job still running after
    ``timeout_s``, stops every process and raises WorkerError with the end of the job's output.

    Example:
        results = run_torchrun(WORKERS / "nccl_bench.py", 2, ["--backend", "nccl"])
    """
    script = Path(script)
    if not script.is_file():
        raise FileNotFoundError(f"No worker script at {script}.")
    need, have = nproc_per_node * gpus_per_proc, gpus_here() if gpus_per_proc else 0
    if need > have:
        raise NotEnoughGPUs(f"This run needs {need} GPU{'s' if need != 1 else ''} on this machine "
                            f"({nproc_per_node} x {gpus_per_proc} per process), but it has {have}.")
    command = torchrun_command(script, nproc_per_node, args, nnodes=nnodes, rdzv_endpoint=rdzv_endpoint,
                               rdzv_id=rdzv_id)
    with tempfile.TemporaryDirectory(prefix="perflab-torchrun-") as folder:
        extra = {RESULT_DIR_VAR: folder, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        if not rdzv_endpoint:  # every process is on this machine: gloo can talk over loopback
            extra["GLOO_SOCKET_IFNAME"] = os.environ.get("GLOO_SOCKET_IFNAME", "lo")
        log_path = Path(folder) / "output.log"
        with open(log_path, "w+") as log:
            job = subprocess.Popen(command, env=_with_package(os.environ | (env or {}) | NVLINK_MULTICAST_OFF | extra),
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, text=True)
            try:
                rc = job.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                rc = None
            finally:
                _stop_job(job, f"{RESULT_DIR_VAR}={folder}".encode())
            log.seek(0)
            lines = log.read().splitlines()
            from_workers = [line for line in lines if line.startswith("[rank")]  # torchrun's prefix on their errors
            tail = "\n".join((from_workers or lines)[-_TAIL:])
        if rc != 0:
            how = f"was still running after {timeout_s:g} s and was stopped" if rc is None else f"exited with code {rc}"
            raise WorkerError(f"The torchrun job ({script.name}) {how}; the end of its output follows.\n{tail}")
        found = sorted(Path(folder).glob("rank*.json"), key=lambda p: int(p.stem[4:]))
        if len(found) != nproc_per_node:
            raise WorkerError(f"{len(found)} of {nproc_per_node} workers ({script.name}) reported a result; "
                              f"each must call procs.report(). The end of the job's output follows.\n{tail}")
        return [WorkerResult(int(p.stem[4:]), 0, json.loads(p.read_text()), tail) for p in found]


def _stop_job(job: subprocess.Popen, marker: bytes) -> None:
    """End a torchrun job and every worker whose environment holds ``marker`` (workers get their own sessions)."""
    if job.poll() is None:
        job.terminate()  # torchrun passes SIGTERM on to its workers
        try:
            job.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    for pid, _ in _scan("environ", lambda environ: marker in environ.split(b"\0")):
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def report(result: dict[str, Any]) -> None:
    """Worker side of ``run_torchrun``: hand this rank's JSON result back (printed when run by hand)."""
    text = json.dumps(result)
    folder = os.environ.get(RESULT_DIR_VAR)
    if not folder:
        print(text, flush=True)
        return
    path = Path(folder) / f"rank{os.environ.get('RANK', '0')}.json"
    path.with_suffix(".tmp").write_text(text)
    path.with_suffix(".tmp").replace(path)  # whole or absent, never half written


def _scan(field: str, keep) -> list[tuple[int, bytes]]:
    """(pid, /proc/<pid>/<field>) of other live, non-zombie processes for which keep(contents) holds."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with suppress(OSError, IndexError):
            data = (entry / field).read_bytes()
            if keep(data) and int(entry.name) != os.getpid():
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append((int(entry.name), data))
    return found


def find_processes(pattern: str) -> list[tuple[int, str]]:
    """(pid, command line) of processes whose command line contains ``pattern``, as ``pgrep -af`` lists."""
    hits = _scan("cmdline", lambda cmd: pattern.encode() in cmd.replace(b"\0", b" "))
    return [(pid, cmd.replace(b"\0", b" ").decode(errors="replace").strip()) for pid, cmd in hits]


def find_programs(name: str) -> list[tuple[int, str]]:
    """(pid, command line) of processes whose program name starts with ``name``, as ``pgrep -l`` matches.

    Unlike ``find_processes`` it ignores arguments, so a shell whose command merely mentions the name
    (``pgrep -af nvidia-cuda-mps`` itself, say) is not mistaken for the program.
    """
    hits = _scan("cmdline", lambda cmd: os.path.basename(cmd.split(b"\0", 1)[0]).startswith(name.encode()))
    return [(pid, cmd.replace(b"\0", b" ").decode(errors="replace").strip()) for pid, cmd in hits]


def _shutdown(binary: str, env: dict[str, str], root: Path, timeout_s: float) -> dict[str, str]:
    """Quit the daemon, wait, kill whatever of ours is left, keep the logs, remove the directories."""
    with suppress(OSError, subprocess.SubprocessError):  # if quitting fails, the kills below still end it
        subprocess.run([binary], input="quit\n", text=True, env=os.environ | env, capture_output=True,
                       timeout=timeout_s, start_new_session=True)
    ours = f"CUDA_MPS_PIPE_DIRECTORY={env['CUDA_MPS_PIPE_DIRECTORY']}".encode()  # in daemon, server, clients

    def left() -> list[int]:
        return [pid for pid, _ in _scan("environ", lambda environ: ours in environ.split(b"\0"))]

    for sig, wait_s in ((None, timeout_s), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        for pid in left() if sig else []:
            with suppress(OSError):
                os.kill(pid, sig)
        end = time.monotonic() + wait_s
        while (pids := left()) and time.monotonic() < end:
            time.sleep(0.05)
        if not pids:
            break
    logs = {path.name: path.read_text(errors="replace") for path in sorted((root / "log").glob("*.log"))}
    shutil.rmtree(root, ignore_errors=True)
    return logs


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (a notebook's interrupt) while cleaning up; raise it afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    old = signal.signal(signal.SIGINT, lambda *_: caught.append(1))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old if old is not None else signal.default_int_handler)
        if caught:
            raise KeyboardInterrupt


def find_mps_control() -> str | None:
    """Path of nvidia-cuda-mps-control on PATH or in /usr/local/nvidia/bin, else None."""
    return shutil.which("nvidia-cuda-mps-control") or (str(_MPS_FALLBACK) if _MPS_FALLBACK.is_file() else None)


def mps_available() -> tuple[bool, str]:
    """(True, where the control program is) or (False, why MPS is unavailable)."""
    if path := find_mps_control():
        return True, f"MPS control program found at {path}"
    return False, f"MPS is unavailable: nvidia-cuda-mps-control is neither on PATH nor at {_MPS_FALLBACK}"


class MpsDaemon:
    """A private MPS control daemon: ``with mps_daemon() as mps:``, then give clients ``env=mps.env``."""

    def __init__(self, binary: str | None = None, *, start_timeout_s: float = 15, stop_timeout_s: float = 10):
        self.binary = binary or find_mps_control()
        if not self.binary:
            raise MpsUnavailable(mps_available()[1] + "; the notebook shows reference records instead.")
        self.start_timeout_s, self.stop_timeout_s = start_timeout_s, stop_timeout_s
        self.root: Path | None = None  # temporary folder holding pipe/ and log/
        self.env: dict[str, str] = {}  # what a client needs: CUDA_MPS_PIPE_DIRECTORY, CUDA_MPS_LOG_DIRECTORY
        self.pid: int | None = None  # the control daemon's pid, from its pid file
        self.logs: dict[str, str] = {}  # control.log and server.log, kept at shutdown
        self._watchdog: subprocess.Popen | None = None

    def start(self) -> MpsDaemon:
        """Start the watchdog and the daemon; return once the daemon's control socket exists."""
        if self.root is not None:
            raise RuntimeError("This MPS daemon is already running.")
        self.root = Path(tempfile.mkdtemp(prefix="perflab-mps-"))
        pipe, log = self.root / "pipe", self.root / "log"
        pipe.mkdir(), log.mkdir()
        self.env = {"CUDA_MPS_PIPE_DIRECTORY": str(pipe), "CUDA_MPS_LOG_DIRECTORY": str(log)}
        config = dict(owner=os.getpid(), binary=self.binary, env=self.env, root=str(self.root),
                      timeout_s=self.stop_timeout_s)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CUDA_MPS_")}
        # The watchdog's stdin is a pipe only we write to: it reads end-of-file when we close it or die.
        self._watchdog = subprocess.Popen([sys.executable, "-m", "perflab.procs", "--watchdog"],
                                          env=_with_package(clean | {"PERFLAB_MPS_WATCHDOG": json.dumps(config)}),
                                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True)
        atexit.register(self.stop)
        try:
            with open(self.root / "start.out", "w+") as out:
                rc = subprocess.run([self.binary, "-d"], env=os.environ | self.env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, timeout=self.start_timeout_s,
                                    start_new_session=True).returncode
                out.seek(0)
                said = out.read().strip() or "no output"
            if rc != 0:
                raise RuntimeError(f"nvidia-cuda-mps-control -d exited with code {rc}: {said}")
            pid_file, end = pipe / "nvidia-cuda-mps-control.pid", time.monotonic() + self.start_timeout_s
            while not ((pipe / "control").exists() and pid_file.exists() and pid_file.read_text().strip()):
                if time.monotonic() > end:
                    raise RuntimeError(f"The MPS control daemon did not create its control socket in {pipe}.")
                time.sleep(0.02)
            self.pid = int(pid_file.read_text())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Quit the daemon, kill whatever of ours is left, remove the directories; safe to call again."""
        if self.root is None:
            return
        with _sigint_deferred():
            self.logs = _shutdown(self.binary, self.env, self.root, self.stop_timeout_s)
            self.root = None
            atexit.unregister(self.stop)
            self._watchdog.stdin.close()  # end of input: it finds the directory gone and exits
            try:
                self._watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()

    def __enter__(self) -> MpsDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def mps_daemon(**options: Any) -> MpsDaemon:
    """A private MPS control daemon for a ``with`` block (options: binary, start_timeout_s, stop_timeout_s)."""
    return MpsDaemon(**options)


def _watchdog_main() -> None:
    """Wait until the owner closes our stdin or dies; if its daemon is still there, shut it down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(os.environ["PERFLAB_MPS_WATCHDOG"])
    root = Path(config["root"])
    while root.exists():
        readable, _, _ = select.select([0], [], [], 0.25)
        if readable and not os.read(0, 4096):
            break  # end of input: the owner closed it, or died
        try:
            os.kill(config["owner"], 0)
        except ProcessLookupError:
            break
    if root.exists():
        _shutdown(config["binary"], config["env"], root, config["timeout_s"])


if __name__ == "__main__" and sys.argv[1:] == ["--watchdog"]:
    _watchdog_main()
