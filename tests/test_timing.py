"""Tests of perflab.timing: Timing statistics, its printed line, and bench() on the host clock."""

import time

import pytest

from perflab import timing
from perflab.timing import Timing, bench

HOST = timing.METHODS["host"]


def make(samples, **kw):
    return Timing(list(samples), HOST, 0, **kw)


def test_quantiles_match_hand_computed_values():
    t = make([4, 1, 3, 2, 5])  # sorted 1..5: p20 at position 0.8, p80 at 3.2
    assert t.median_ms == 3
    assert t.p20_ms == pytest.approx(1.8)
    assert t.p80_ms == pytest.approx(4.2)
    assert (t.q(0), t.q(1), t.q(0.25)) == (1, 5, 2)
    assert (t.n, t.best_ms, t.mean_ms) == (5, 1, 3)
    assert t.rel_spread == pytest.approx(2.4 / 3)


def test_rate_uses_GB_and_TFLOP_at_the_median():
    t = make([2.0] * 5)  # 2 ms
    assert t.rate(nbytes=4e9) == pytest.approx(2000)  # 4e9 B / 2e-3 s = 2e12 B/s = 2000 GB/s
    assert t.rate(flops=4e12) == pytest.approx(2000)  # 4e12 / 2e-3 s = 2e15 FLOP/s = 2000 TFLOP/s
    with pytest.raises(ValueError, match="exactly one"):
        t.rate(nbytes=1, flops=1)
    with pytest.raises(ValueError, match="exactly one"):
        t.rate()


def test_rates_are_median_slow_end_fast_end():
    assert make([4, 1, 3, 2, 5]).rates(nbytes=1e9) == pytest.approx((1e3 / 3, 1e3 / 4.2, 1e3 / 1.8))


def test_empty_samples_and_bad_quantile_raise():
    with pytest.raises(ValueError, match="at least one sample"):
        make([])
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            make([1.0]).q(p)


@pytest.mark.parametrize(
    "ms, text",
    [
        (1.234, "1.234 ms median (p20–p80 1.234–1.234, n=5; host clock + sync)"),
        (0.5, "500.000 µs median (p20–p80 500.000–500.000, n=5; host clock + sync)"),
        (5e-4, "500.000 ns median (p20–p80 500.000–500.000, n=5; host clock + sync)"),
        (2500.0, "2.500 s median (p20–p80 2.500–2.500, n=5; host clock + sync)"),
    ],
)
def test_printed_line_and_units(ms, text):
    assert str(make([ms] * 5)) == text
    assert str(make([ms] * 5, label="copy")) == "copy: " + text


def test_spread_warning_from_ten_percent():
    at = make([9, 10, 10, 10, 11, 12])  # p20 10, median 10, p80 11: exactly 10 %
    below = make([9, 10, 10, 10, 10.99, 12])  # 9.9 %
    assert at.rel_spread == pytest.approx(0.10) and len(at.warnings) == 1
    assert "WARNING: spread is 10% of the median" in str(at)
    assert below.warnings == [] and "WARNING" not in str(below)
    assert make([1, 2]).warnings == []  # too few samples to judge


def test_to_dict_has_summary_and_every_sample():
    d = make([4, 1, 3, 2, 5]).to_dict()
    assert (d["median_ms"], d["n"], d["method"]) == (3, 5, HOST)
    assert (d["p20_ms"], d["p80_ms"]) == pytest.approx((1.8, 4.2))
    assert d["samples_ms"] == [4, 1, 3, 2, 5]


def test_bench_host_times_a_2ms_sleep():
    t = bench(lambda: time.sleep(0.002), warmup_ms=5, rep_ms=50)
    assert 1.95 <= t.median_ms <= 3.5, t
    assert t.calls_per_sample == 1 and t.n >= 5 and t.method == HOST


def test_bench_groups_fast_calls():
    t = bench(lambda: None, warmup_ms=1, rep_ms=10)
    assert t.calls_per_sample > 1
    assert t.median_ms < 0.1


def never_called():
    pytest.fail("bench called the function despite bad arguments")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"clock": "wall"}, "clock"),
        ({"rep_ms": 0}, "rep_ms"),
        ({"min_reps": 10, "max_reps": 5}, "min_reps <= max_reps"),
        ({"flush_l2": True}, "flush_l2"),
    ],
)
def test_bench_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bench(never_called, **kwargs)


def test_cuda_clock_without_cuda_says_so():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        bench(never_called, clock="cuda")


def test_summary_reports_median_and_spread_in_microseconds():
    from perflab.timing import summary

    got = summary([0.001, 0.002, 0.003, 0.004, 0.005], "step")
    assert got == pytest.approx({"step_us": 3000.0, "step_p20_us": 1800.0, "step_p80_us": 4200.0})
