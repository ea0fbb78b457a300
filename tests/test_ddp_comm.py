"""The DDP communication worker (helpers/perflab/workers/ddp_comm.py), run for real: gloo, 2 CPU processes.

The worker checks its own correctness (DDP gradients are the mean of the ranks' local gradients, the
lone all-reduce sums, the ranks end with equal parameters) and exits non-zero otherwise, which
run_workers turns into WorkerError. Sizes are tiny so the test takes a few seconds.
"""

from pathlib import Path

import pytest

from perflab import procs

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

WORKER = Path(procs.__file__).parent / "workers" / "ddp_comm.py"
BATCHES = [4, 8, 16]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch has no gloo backend")
def test_two_gloo_ranks_report_consistent_timings(tmp_path):
    args = ["--backend", "gloo", "--store", tmp_path / "store", "--width", "64", "--layers", "2", "--d-in", "32",
            "--batches", ",".join(map(str, BATCHES)), "--warmup", "1", "--steps", "3"]
    found = procs.run_workers(WORKER, 2, args, env={"GLOO_SOCKET_IFNAME": "lo"}, timeout_s=90)

    assert [w.rank for w in found] == [0, 1]
    expected_bytes = 4 * ((32 * 64 + 64) + (64 * 64 + 64) + (64 * 10 + 10))  # fp32 weights and biases
    for w in found:
        r = w.result
        assert r["world"] == 2 and r["backend"] == "gloo" and r["device"] == "cpu"
        assert r["grad_bytes"] == expected_bytes, "the gradient bytes follow from the model, not the batch"
        assert r["lone_allreduce_p20_ms"] <= r["lone_allreduce_ms"] <= r["lone_allreduce_p80_ms"]
        assert [row["batch"] for row in r["rows"]] == BATCHES
        for row in r["rows"]:
            assert row["grad_bytes"] == expected_bytes
            for name in ("forward", "backward_ddp", "backward_local", "step"):
                assert 0 < row[f"{name}_p20_ms"] <= row[f"{name}_ms"] <= row[f"{name}_p80_ms"] < 10_000


def test_a_bad_argument_is_reported(tmp_path):
    args = ["--backend", "gloo", "--store", tmp_path / "store", "--batches", "0,4"]
    with pytest.raises(procs.WorkerError, match="exited with code"):
        procs.run_workers(WORKER, 2, args, env={"GLOO_SOCKET_IFNAME": "lo"}, timeout_s=60)
