"""Tests of perflab.roofline: ceilings, points, the decision rules, counting, measuring and the plot.

The last test needs a CUDA GPU (marked `gpu`): the measured ceilings must agree with
triton.testing.do_bench within 10 % on a large copy and a large bf16 matmul.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from perflab import results, roofline  # noqa: E402
from perflab.roofline import Ceilings, Point, recommend  # noqa: E402
from perflab.timing import METHODS, Timing  # noqa: E402

SOURCE = "reference data from NVIDIA H100 80GB HBM3, 2026-11-22"
MiB = 2**20


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def gpu_like() -> Ceilings:
    # 3000 GB/s and 750 TFLOP/s bf16: ridge at 750e12 / 3000e9 = 250 FLOP/B
    return Ceilings("GPU", 3000.0, {"bf16": 750.0, "fp32": 50.0}, source=SOURCE)


def test_ridge_and_attainable():
    c = gpu_like()
    assert c.ridge("bf16") == pytest.approx(250.0)
    assert c.ridge("fp32") == pytest.approx(50e12 / 3000e9)
    assert c.attainable(1.0, "bf16") == pytest.approx(3.0)  # 1 FLOP/B x 3000 GB/s = 3 TFLOP/s
    assert c.attainable(1000.0, "bf16") == 750.0
    assert c.attainable(250.0, "bf16") == pytest.approx(750.0)
    assert c.bound(100.0, "bf16") == "memory" and c.bound(300.0, "bf16") == "compute"


def test_unknown_precision_names_what_there_is():
    c = Ceilings("GPU", 1.0, {"bf16": 1.0}, skipped={"fp8": "needs CC 8.9"})
    with pytest.raises(KeyError, match="needs CC 8.9"):
        c.peak("fp8")
    with pytest.raises(KeyError, match="have: bf16"):
        c.peak("fp64")


def ceiling_rows():
    return [
        dict(ceiling="bandwidth", kernel="copy", device_type="cuda", GBps=2900.0),
        dict(ceiling="bandwidth", kernel="add", device_type="cuda", GBps=3000.0),
        dict(ceiling="compute", precision="bf16", device_type="cuda", TFLOPs=700.0),
        dict(ceiling="compute", precision="bf16", device_type="cuda", TFLOPs=710.0),
        dict(ceiling="compute", precision="fp8", device_type="cuda", skipped="needs compute capability 8.9+"),
    ]


def test_from_rows_takes_the_best_of_each_and_keeps_skips():
    c = Ceilings.from_rows(ceiling_rows(), device="GPU", source=SOURCE)
    assert c.bw_GBps == 3000.0 and c.peak_TFLOPs == {"bf16": 710.0}
    assert c.skipped == {"fp8": "needs compute capability 8.9+"}
    with pytest.raises(ValueError, match="bandwidth row"):
        Ceilings.from_rows(ceiling_rows()[2:], device="GPU")


def test_from_record_names_the_gpu_or_the_cpu():
    fp = {"gpu": "NVIDIA H100 80GB HBM3", "cpu": "AMD EPYC"}
    rec = results.Record("x", ceiling_rows(), fingerprint=fp, created="2026-11-22T00:00:00", live=False)
    c = Ceilings.from_record(rec)
    assert c.device == "NVIDIA H100 80GB HBM3" and c.source == rec.source
    cpu_rows = [dict(r, device_type="cpu") for r in ceiling_rows()]
    assert Ceilings.from_record(results.Record("x", cpu_rows, fingerprint=fp)).device == "AMD EPYC"


def test_datasheet():
    h100 = roofline.datasheet("NVIDIA H100 80GB HBM3")
    assert h100.kind == "datasheet" and h100.ridge("bf16") == pytest.approx(989.4e12 / 3350e9)
    assert roofline.datasheet("Some GPU") is None


def test_point_rates_and_from_timing():
    p = Point("add", flops=1e9, nbytes=12e9, time_ms=4.0)
    assert p.intensity == pytest.approx(1 / 12)
    assert p.GBps == pytest.approx(3000.0)  # 12e9 B in 4 ms
    assert p.TFLOPs == pytest.approx(0.25)
    t = Timing([1.0, 2.0, 3.0, 4.0, 5.0], METHODS["cuda"], 0)
    q = Point.from_timing("k", 2e12, 1e9, t, precision="bf16", group="gemm")
    assert (q.time_ms, q.p20_ms, q.p80_ms, q.precision, q.group) == (3.0, 1.8, 4.2, "bf16", "gemm")
    assert Point.from_row(q.to_dict() | {"median_ms": 3.0}) == q


@pytest.mark.parametrize(
    "intensity, achieved, kw, category",
    [
        (1 / 12, 0.22, {}, "memory-bound"),  # 2640 GB/s of 3000: 88 % of the memory roof
        (2000.0, 700.0, {}, "compute-bound"),
        (1 / 8, 0.0004, dict(time_us=10.0), "launch-bound"),  # far below both roofs, 10 us per call
        (1 / 8, 0.0004, {}, "launch-bound"),  # far below, time unknown: the chapter's rule
        (1 / 8, 0.0004, dict(time_us=5000.0), "in between"),  # far below but long: not launches
        (100.0, 100.0, dict(time_us=500.0), "in between"),  # 33 % of the memory roof
        (2000.0, 700.0, dict(overhead_fraction=0.5), "launch-bound"),
    ],
)
def test_recommend_categories(intensity, achieved, kw, category):
    advice = recommend(intensity, achieved, gpu_like(), "bf16", **kw)
    assert advice.category == category
    assert advice.actions == roofline.ACTIONS[category]
    assert category.split("-")[0] in str(advice) or category == "in between"


def test_recommend_side_and_fraction():
    a = recommend(1 / 12, 0.22, gpu_like(), "bf16")
    assert a.side == "memory" and a.fraction == pytest.approx(0.22 / 0.25)
    assert "fuse" in a.actions[0] and "lower precision" in a.actions[1]
    assert "tensor cores" in recommend(2000.0, 700.0, gpu_like(), "bf16").actions[0]
    assert "graph" in recommend(0.1, 1e-4, gpu_like(), "bf16").actions[0]
    with pytest.raises(ValueError, match="positive"):
        recommend(0.0, 1.0, gpu_like())


def test_recommend_speaks_cpu_when_asked():
    cpu = Ceilings("CPU", 50.0, {"fp64": 0.1})
    advice = recommend(1 / 16, 1e-4, cpu, "fp64", time_us=0.4, actions=roofline.CPU_ACTIONS)
    assert advice.category == "launch-bound" and "batch" in advice.actions[0]
    assert set(roofline.CPU_ACTIONS) == set(roofline.ACTIONS)


def test_place_and_table():
    pts = [Point("add", 1e9, 12e9, 4.0, "fp32"), Point("gemm", 2 * 8192**3, 6 * 8192**2, 1.6, "bf16")]
    rows = roofline.place(pts, gpu_like())
    assert [r["category"] for r in rows] == ["memory-bound", "compute-bound"]
    assert rows[1]["attainable_TFLOPs"] == 750.0 and rows[1]["ridge"] == pytest.approx(250.0)
    tiny = Point("tiny x100", 4096 * 100, 8 * 4096 * 100, 1.2, "fp32", launches=100)  # 12 us per launch
    assert tiny.time_us_per_launch == pytest.approx(12.0)
    assert roofline.place([tiny], gpu_like())[0]["category"] == "launch-bound"
    text = roofline.table(rows + roofline.place([tiny], gpu_like()))
    assert "0.1%" in text or "0.09" in text
    assert "add" in text and "memory-bound" in text and text.splitlines()[-1].startswith("FLOP/B")


def test_counts():
    assert roofline.elementwise_counts(10, reads=2, writes=1, itemsize=4) == (10, 120)
    assert roofline.reduction_counts(10, itemsize=8) == (10.0, 88)
    assert roofline.matmul_counts(2, 3, 4, itemsize=2) == (48.0, 2 * (8 + 12 + 6))
    assert roofline.matmul_counts(2, 3, 4, itemsize=1, out_itemsize=2) == (48.0, 8 + 12 + 12)
    flops, nbytes = roofline.attention_counts(2, 4, 128, 128, 64, itemsize=2)
    assert flops == 4 * 2 * 4 * 128 * 128 * 64 and nbytes == 2 * 2 * 4 * 64 * 4 * 128
    causal, _ = roofline.attention_counts(1, 1, 4, 4, 8, itemsize=2, causal=True)
    assert causal == 4 * 10 * 8  # 10 of the 16 query-key pairs
    np = pytest.importorskip("numpy")
    assert roofline.operand_bytes(np.zeros(3), np.zeros(2, dtype=np.float32)) == 32


def test_fmt_rate():
    assert roofline.fmt_rate(1.5) == "1.5 TFLOP/s"
    assert roofline.fmt_rate(0.002) == "2 GFLOP/s"
    assert roofline.fmt_rate(2e-6) == "2 MFLOP/s"


def test_plot_roofs_points_arrows_title():
    pts = [Point("unfused", 4e9, 32e9, 12.0, "fp32", "chain"), Point("fused", 4e9, 8e9, 3.0, "fp32", "chain"),
           Point("gemm", 2 * 4096**3, 6 * 4096**2, 0.2, "bf16", "gemm")]
    ax = roofline.plot(gpu_like(), pts, title="H100", source=SOURCE, arrows=[("unfused", "fused")],
                       reference=roofline.datasheet("NVIDIA H100 80GB HBM3"))
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_title() == f"H100\n{SOURCE}"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lbl.startswith("fp32 roof") for lbl in labels) and any(lbl.startswith("bf16 roof") for lbl in labels)
    assert "chain" in labels and "gemm" in labels and "bf16 datasheet" in labels
    assert labels.count("chain") == 1
    assert any(t.arrow_patch is not None for t in ax.texts if hasattr(t, "arrow_patch"))
    assert "TFLOP/s" in ax.get_ylabel()


def test_plot_uses_gflops_on_a_small_machine():
    cpu = Ceilings("CPU", 20.0, {"fp64": 0.05})
    ax = roofline.plot(cpu, [Point("add", 1e8, 2.4e9, 150.0, "fp64")], title="CPU", source="live · CPU")
    assert "GFLOP/s" in ax.get_ylabel()


def test_measure_cpu_ceilings_small():
    rows = roofline.measure_cpu_ceilings(stream_MiB=8, matmul_n=64, rep_ms=5, threads=2)
    kinds = [(r["ceiling"], r["kernel"], r.get("precision")) for r in rows]
    assert kinds == [("bandwidth", "read", None), ("bandwidth", "copy", None), ("bandwidth", "add", None),
                     ("compute", "matmul", "fp64"), ("compute", "matmul", "fp32")]
    assert [r["nbytes"] for r in rows[:3]] == [8 * MiB, 2 * 8 * MiB, 3 * 8 * MiB]
    # a ceiling is the best sample's rate, never below the median's
    assert all(r["GBps"] >= r["nbytes"] / (r["median_ms"] * 1e6) * 0.999 for r in rows[:3])
    assert all(r.get("GBps", r.get("TFLOPs", 0)) > 0 and r["n"] >= 3 for r in rows)
    c = Ceilings.from_rows(rows, device="CPU")
    assert set(c.peak_TFLOPs) == {"fp64", "fp32"}


def test_measure_gpu_ceilings_code_path_on_cpu():
    torch = pytest.importorskip("torch")
    before = torch.backends.cuda.matmul.fp32_precision if hasattr(torch.backends.cuda.matmul, "fp32_precision") else None
    rows = roofline.measure_gpu_ceilings(copy_MiB=1, matmul_n=64, rep_ms=5, device="cpu")
    assert rows[0]["ceiling"] == "bandwidth" and rows[0]["nbytes"] == 2 * MiB
    by = {r.get("precision"): r for r in rows[1:]}
    assert list(by) == list(roofline.GPU_PRECISIONS)
    assert "needs a CUDA GPU" in by["fp8"]["skipped"]
    assert all(by[p]["TFLOPs"] > 0 and by[p]["rel_error"] < 1e-2 for p in ("fp32", "tf32", "bf16", "fp16"))
    if before is not None:
        assert torch.backends.cuda.matmul.fp32_precision == before  # the TF32 setting is restored


@pytest.mark.gpu
def test_gpu_ceilings_agree_with_triton_do_bench():
    torch = pytest.importorskip("torch")
    testing = pytest.importorskip("triton.testing")
    rows = roofline.measure_gpu_ceilings(copy_MiB=1024, matmul_n=8192, precisions=("bf16",), rep_ms=200)
    ours = Ceilings.from_rows(rows, device=torch.cuda.get_device_name())

    src = torch.randint(0, 256, (1024 * MiB,), dtype=torch.uint8, device="cuda")  # independent buffers
    dst = torch.empty_like(src)
    copy_ms = testing.do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode="median")
    theirs_GBps = 2 * src.nbytes / (copy_ms * 1e-3) / 1e9
    del src, dst
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    mm_ms = testing.do_bench(lambda: a @ b, warmup=25, rep=200, return_mode="median")
    theirs_TFLOPs = 2 * 8192**3 / (mm_ms * 1e-3) / 1e12

    assert ours.bw_GBps == pytest.approx(theirs_GBps, rel=0.10), f"{ours.bw_GBps:.0f} vs {theirs_GBps:.0f} GB/s"
    assert ours.peak("bf16") == pytest.approx(theirs_TFLOPs, rel=0.10), (
        f"{ours.peak('bf16'):.0f} vs {theirs_TFLOPs:.0f} TFLOP/s")
