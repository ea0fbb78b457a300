"""The collective-benchmark worker (helpers/perflab/workers/nccl_bench.py), run for real under torchrun:
gloo, 2 CPU processes, tiny sizes.

The worker checks its own results (the all-reduce sum, the bucketed gradients against one all-reduce at the
end) and exits non-zero otherwise, which run_torchrun turns into WorkerError.
"""

from pathlib import Path

import pytest

from perflab import procs

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch has no gloo backend")

WORKER = Path(procs.__file__).parent / "workers" / "nccl_bench.py"
SIZES = [8, 4096, 65536]


def test_two_gloo_ranks_report_the_curve_and_the_buckets():
    args = ["--backend", "gloo", "--sizes", ",".join(map(str, SIZES)), "--reps", "3", "--buckets", "1,4",
            "--grad-rows", "64", "--grad-cols", "32", "--batch", "8"]
    found = procs.run_torchrun(WORKER, 2, args, gpus_per_proc=0, timeout_s=120)

    assert [w.rank for w in found] == [0, 1]
    for w in found:
        r = w.result
        assert r["world"] == 2 and r["backend"] == "gloo"
        assert r["multicast_env"] == procs.NVLINK_MULTICAST_OFF, "the launcher sets multicast off in every rank"
        assert [row["bytes"] for row in r["allreduce"]] == SIZES
        for row in r["allreduce"]:
            assert 0 < row["time_p20_us"] <= row["time_us"] <= row["time_p80_us"]
            assert row["busbw_GBps"] == pytest.approx(row["algbw_GBps"]), "for 2 ranks bus = algorithm bandwidth"
            assert row["algbw_GBps"] == pytest.approx(row["bytes"] / row["time_us"] / 1e3)
        b = r["buckets"]
        assert b["grad_bytes"] == 64 * 32 * 4 and b["flops_per_rank"] == 2 * 64 * 32 * 8
        assert {(row["variant"], row["buckets"]) for row in b["rows"]} == {
            (v, k) for v in ("all-reduce at the end", "bucketed, overlapped") for k in (1, 4)}
        assert "graph" not in r, "graph capture needs NCCL and CUDA"
    assert found[0].result["buckets"]["global_compute_one_device"]["time_us"] > 0
    assert found[1].result["buckets"]["global_compute_one_device"] is None, "only rank 0 times the one-device step"


def test_a_bad_argument_is_reported():
    with pytest.raises(procs.WorkerError, match="exited with code"):
        procs.run_torchrun(WORKER, 2, ["--backend", "gloo", "--reps", "1"], gpus_per_proc=0, timeout_s=60)
