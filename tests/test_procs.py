"""perflab.procs: workers released together, and an MPS daemon that never outlives its owner.

The MPS tests on the CPU use a fake `nvidia-cuda-mps-control` put first on PATH: `-d` starts a
long-sleeping background process (the "daemon", its command line carrying a unique marker) and writes
its pid and a `control` file into the pipe directory, as the real one does; "quit" on stdin kills it.
The last test, marked `gpu`, starts the real daemon on a GPU machine.
"""

import json
import os
import signal
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from perflab import procs

WORKERS = Path(procs.__file__).parent / "workers"

FAKE_MPS = textwrap.dedent('''\
    #!{python}
    import os, signal, subprocess, sys
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")
    log = os.environ.get("CUDA_MPS_LOG_DIRECTORY", "/var/log/nvidia-mps")
    pid_file = os.path.join(pipe, "nvidia-cuda-mps-control.pid")
    if sys.argv[1:] == ["-d"]:
        daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{marker}"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        open(os.path.join(pipe, "control"), "w").close()
        with open(pid_file, "w") as f:
            f.write(str(daemon.pid))
        with open(os.path.join(log, "control.log"), "a") as f:
            f.write("Starting control daemon\\n")
        sys.exit(0)
    command = sys.stdin.read().strip()
    with open(os.path.join(log, "control.log"), "a") as f:
        f.write(f"command {{command}}\\n")
    if command == "quit" and not os.environ.get("FAKE_MPS_IGNORES_QUIT"):
        os.kill(int(open(pid_file).read()), signal.SIGTERM)
''')


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_for(condition, timeout_s: float = 15.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _pgrep(pattern: str) -> list[str]:
    """Command lines matching ``pattern``: pgrep -af where installed, else a /proc scan."""
    if shutil.which("pgrep"):
        out = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if line.strip()]
    return [cmd for _, cmd in procs.find_processes(pattern)]


@pytest.fixture
def fake_mps(tmp_path, monkeypatch):
    """Put a fake nvidia-cuda-mps-control first on PATH; yield the marker its daemon carries."""
    marker = f"fake-mps-daemon-{uuid.uuid4().hex[:12]}"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "nvidia-cuda-mps-control"
    fake.write_text(FAKE_MPS.format(python=sys.executable, marker=marker))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    yield marker
    for pid, _ in procs.find_processes(marker):  # never leave one behind, even when a test fails
        os.kill(pid, signal.SIGKILL)


def _assert_all_gone(marker: str, root: Path) -> None:
    assert _wait_for(lambda: not _pgrep(marker)), f"a fake MPS daemon survived: {_pgrep(marker)}"
    assert not procs.find_processes(marker)
    assert not root.exists(), f"{root} was not removed"
    assert _wait_for(lambda: not procs.find_processes("perflab.procs --watchdog")), "the watchdog did not exit"


# ---------------------------------------------------------------- the MPS daemon, with the fake


def test_daemon_runs_privately_and_stops_on_normal_exit(fake_mps):
    before = dict(os.environ)
    with procs.mps_daemon() as mps:
        root = mps.root
        pipe = Path(mps.env["CUDA_MPS_PIPE_DIRECTORY"])
        assert set(mps.env) == {"CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"}
        assert pipe.is_dir() and str(pipe) != "/tmp/nvidia-mps" and pipe.parent == root
        assert _running(mps.pid) and _pgrep(fake_mps)
        assert len(procs.find_processes("perflab.procs --watchdog")) >= 1
    assert dict(os.environ) == before, "the daemon must not change this process's environment"
    assert not _running(mps.pid)
    assert "command quit" in mps.logs["control.log"]
    _assert_all_gone(fake_mps, root)
    mps.stop()  # a second stop does nothing


def test_a_crashed_client_inside_the_block_still_shuts_down(fake_mps, tmp_path):
    crash = tmp_path / "crash.py"
    crash.write_text("import os\nassert os.environ['CUDA_MPS_PIPE_DIRECTORY']\nraise RuntimeError('client crashed')\n")
    with pytest.raises(procs.WorkerError, match="client crashed"):
        with procs.mps_daemon() as mps:
            root = mps.root
            procs.run_workers(crash, 2, [], env=mps.env, timeout_s=30)
    _assert_all_gone(fake_mps, root)


def test_a_client_left_running_is_killed_at_shutdown(fake_mps):
    with procs.mps_daemon(stop_timeout_s=2) as mps:
        root = mps.root
        client = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                  env=os.environ | mps.env, start_new_session=True)
    assert client.wait(timeout=10) != 0, "the stray client should have been killed"
    _assert_all_gone(fake_mps, root)


def test_keyboard_interrupt_inside_the_block_still_shuts_down(fake_mps):
    with pytest.raises(KeyboardInterrupt):
        with procs.mps_daemon() as mps:
            root = mps.root
            os.kill(os.getpid(), signal.SIGINT)  # what a notebook's interrupt button sends
            time.sleep(5)
    _assert_all_gone(fake_mps, root)


def test_a_daemon_that_ignores_quit_is_killed(fake_mps, monkeypatch):
    monkeypatch.setenv("FAKE_MPS_IGNORES_QUIT", "1")
    with procs.mps_daemon(stop_timeout_s=1) as mps:
        root, pid = mps.root, mps.pid
    assert not _running(pid)
    _assert_all_gone(fake_mps, root)


def test_the_watchdog_shuts_down_when_the_owner_is_sigkilled(fake_mps, tmp_path):
    owner = tmp_path / "owner.py"
    owner.write_text(textwrap.dedent("""\
        import json, time
        from perflab import procs
        with procs.mps_daemon() as mps:
            print(json.dumps({"root": str(mps.root), "pid": mps.pid}), flush=True)
            time.sleep(600)
        """))
    child = subprocess.Popen([sys.executable, str(owner)], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(child.stdout.readline())
        assert _running(info["pid"]) and _pgrep(fake_mps), "the fake daemon should run before the kill"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        child.kill()
    _assert_all_gone(fake_mps, Path(info["root"]))
    assert not _running(info["pid"])


def test_missing_binary_says_mps_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(procs, "_MPS_FALLBACK", tmp_path / "absent" / "nvidia-cuda-mps-control")
    ok, why = procs.mps_available()
    assert not ok and "MPS is unavailable" in why
    with pytest.raises(procs.MpsUnavailable, match="MPS is unavailable"):
        with procs.mps_daemon():
            pass


# ---------------------------------------------------------------- run_workers


def _worker(tmp_path: Path, body: str, name: str = "worker.py") -> Path:
    script = tmp_path / name
    script.write_text("import json, os, sys, time\nfrom perflab.procs import wait_for_start\n" + textwrap.dedent(body))
    return script


def test_every_worker_reports_and_the_barrier_aligns_starts(tmp_path):
    script = _worker(tmp_path, """\
        rank = int(os.environ["PERFLAB_RANK"])
        time.sleep(0.1 * rank)  # uneven start-up, as CUDA initialisation would be
        start = wait_for_start()
        t0 = time.time()
        print("some chatter before the result")
        print(json.dumps({"rank": rank, "n": int(os.environ["PERFLAB_NWORKERS"]), "start": start, "t0": t0,
                          "arg": sys.argv[1]}))
        """)
    results = procs.run_workers(script, 4, ["hello"], timeout_s=60)
    assert [r.rank for r in results] == [0, 1, 2, 3]
    assert all(r.returncode == 0 and r.result["arg"] == "hello" and r.result["n"] == 4 for r in results)
    assert len({r.result["start"] for r in results}) == 1, "every worker must get the same start time"
    t0 = [r.result["t0"] for r in results]
    assert min(t0) >= results[0].result["start"], "no worker may start before the start time"
    # Start-ups differ by 300 ms; released together, the starts differ by the time the OS takes to wake
    # four processes: well under a millisecond on an idle machine, a few ms on a busy 2-CPU VM.
    assert max(t0) - min(t0) < 0.02, f"starts differ by {1e3 * (max(t0) - min(t0)):.1f} ms"


def test_env_is_added_and_none_removes(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFLAB_TEST_DROP", "x")
    script = _worker(tmp_path, """\
        wait_for_start()
        print(json.dumps({"add": os.environ.get("PERFLAB_TEST_ADD"), "drop": os.environ.get("PERFLAB_TEST_DROP")}))
        """)
    [r] = procs.run_workers(script, 1, [], env={"PERFLAB_TEST_ADD": "y", "PERFLAB_TEST_DROP": None})
    assert r.result == {"add": "y", "drop": None}


def test_a_failing_worker_raises_with_its_stderr(tmp_path):
    script = _worker(tmp_path, """\
        wait_for_start()
        if os.environ["PERFLAB_RANK"] == "1":
            print("about to fail", file=sys.stderr)
            raise ValueError("boom in worker one")
        time.sleep(600)
        """)
    t0 = time.monotonic()
    with pytest.raises(procs.WorkerError, match=r"Worker 1 of 3 \(worker.py\) exited with code 1") as err:
        procs.run_workers(script, 3, [], timeout_s=60)
    assert "about to fail" in str(err.value) and "ValueError: boom in worker one" in str(err.value)
    assert time.monotonic() - t0 < 30, "the other workers should be killed, not waited for"


def test_a_hanging_worker_is_killed_at_the_timeout(tmp_path):
    script = _worker(tmp_path, """\
        open(os.path.join(sys.argv[1], f"pid{os.environ['PERFLAB_RANK']}"), "w").write(str(os.getpid()))
        wait_for_start()
        if os.environ["PERFLAB_RANK"] == "0":
            print(json.dumps({"ok": True}))
            sys.exit(0)
        print("hanging now", file=sys.stderr, flush=True)
        time.sleep(600)
        """)
    t0 = time.monotonic()
    with pytest.raises(procs.WorkerError, match=r"Workers \[1\] of 2 .* still running after 3 s") as err:
        procs.run_workers(script, 2, [str(tmp_path)], timeout_s=3)
    assert 3 <= time.monotonic() - t0 < 10
    assert "hanging now" in str(err.value)
    assert not _running(int((tmp_path / "pid1").read_text())), "the hanging worker must be killed"


def test_a_worker_without_a_json_result_raises(tmp_path):
    script = _worker(tmp_path, "wait_for_start()\nprint('done, but no JSON')\n")
    with pytest.raises(procs.WorkerError, match="did not print a JSON object"):
        procs.run_workers(script, 1, [])


def test_wait_for_start_outside_run_workers_returns_at_once(monkeypatch):
    monkeypatch.delenv("PERFLAB_BARRIER", raising=False)
    assert abs(procs.wait_for_start() - time.time()) < 0.1


def test_the_cpu_share_worker_reports_fixed_work(tmp_path):
    for placement in ("one", "spread", "all"):
        [r] = procs.run_workers(WORKERS / "cpu_share.py", 1, ["--work-M", "0.5", "--placement", placement])
        assert r.result["work_M"] == 0.5 and r.result["elapsed_s"] > 0 and r.result["cpus"]


def test_a_worker_failing_before_the_barrier_reports_its_exit_code(tmp_path):
    with pytest.raises(procs.WorkerError, match=r"(?s)Worker 0 of 1 \(cpu_share.py\) exited with code 2.*unrecognized"):
        procs.run_workers(WORKERS / "cpu_share.py", 1, ["--no-such-option"])


# ---------------------------------------------------------------- the real daemon, on a GPU


def _compute_mode() -> str:
    from perflab import system

    mode = system.gpu_modes().get("compute_mode")
    if mode is None:
        out = system.nvidia_smi("--query-gpu=compute_mode", "--format=csv,noheader", "-i", "0")
        mode = (out or "").strip()
    return mode


@pytest.mark.gpu
def test_real_mps_daemon_serves_two_clients_and_leaves_nothing_behind():
    ok, why = procs.mps_available()
    if not ok:
        pytest.skip(why)
    pytest.importorskip("cupy")
    assert not procs.find_programs("nvidia-cuda-mps"), "an MPS daemon is already running on this machine"
    before = _compute_mode()
    args = ["--blocks", "16", "--iters", "20000", "--launches", "20"]
    with procs.mps_daemon() as mps:
        results = procs.run_workers(WORKERS / "mps_fma.py", 2, args, env=mps.env, timeout_s=180)
        assert _pgrep("nvidia-cuda-mps-control")
    assert all(r.result["mps"] and r.result["elapsed_s"] > 0 for r in results)
    assert "NEW CLIENT" in mps.logs.get("control.log", ""), mps.logs
    assert _wait_for(lambda: not procs.find_programs("nvidia-cuda-mps")), procs.find_programs("nvidia-cuda-mps")
    assert _compute_mode() == before == "Default"


# --- torchrun jobs ---------------------------------------------------------------------------------

REPORTER = textwrap.dedent('''\
    import os, sys, time
    from perflab.procs import report
    mode = sys.argv[1]
    if mode == "sleep":
        time.sleep(600)
    if mode == "fail" and os.environ["RANK"] == "1":
        sys.exit(3)
    if mode != "silent":
        report({"rank": int(os.environ["RANK"]), "world": int(os.environ["WORLD_SIZE"]),
                "local": int(os.environ["LOCAL_RANK"]), "nvls": os.environ.get("NCCL_NVLS_ENABLE")})
''')


def test_torchrun_command_is_standalone_on_one_node_and_uses_a_rendezvous_on_several():
    one = procs.torchrun_command("w.py", 4, ["--x", 1])
    assert one[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in one and one[-3:] == ["w.py", "--x", "1"]
    many = procs.torchrun_command("w.py", 8, [], nnodes=2, rdzv_endpoint="node0:29500", rdzv_id="job7")
    assert "--standalone" not in many
    for flag, value in (("--nnodes", "2"), ("--nproc-per-node", "8"), ("--rdzv-endpoint", "node0:29500"),
                        ("--rdzv-id", "job7"), ("--rdzv-backend", "c10d")):
        assert many[many.index(flag) + 1] == value
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        procs.torchrun_command("w.py", 8, [], nnodes=2)


def test_asking_for_more_gpus_than_the_machine_has_stops_with_one_sentence(tmp_path, monkeypatch):
    script = tmp_path / "w.py"
    script.write_text(REPORTER)
    monkeypatch.setattr(procs, "gpus_here", lambda: 2)
    with pytest.raises(procs.NotEnoughGPUs) as caught:
        procs.run_torchrun(script, 4, ["ok"], gpus_per_proc=1)
    message = str(caught.value)
    assert message == "This run needs 4 GPUs on this machine (4 x 1 per process), but it has 2."
    assert caught.value._render_traceback_() == [f"NotEnoughGPUs: {message}"]


@pytest.fixture
def reporter(tmp_path):
    pytest.importorskip("torch.distributed.run")
    script = tmp_path / "w.py"
    script.write_text(REPORTER)
    return script


def test_run_torchrun_collects_every_rank_and_sets_multicast_off(reporter):
    found = procs.run_torchrun(reporter, 3, ["ok"], gpus_per_proc=0, timeout_s=60)
    assert [w.rank for w in found] == [0, 1, 2]
    assert [w.result["local"] for w in found] == [0, 1, 2]
    assert all(w.result["world"] == 3 and w.result["nvls"] == "0" for w in found)


@pytest.mark.parametrize("mode, message", [("fail", "exited with code"), ("silent", "0 of 2 workers"),
                                           ("sleep", "still running after 8 s")])
def test_run_torchrun_failures_say_what_happened(reporter, mode, message):
    start = time.monotonic()
    with pytest.raises(procs.WorkerError, match=message):
        procs.run_torchrun(reporter, 2, [mode], gpus_per_proc=0, timeout_s=8)
    assert time.monotonic() - start < 30
    assert not procs.find_processes(str(reporter)), "no worker outlives its job"
