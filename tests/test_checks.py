"""Tests of perflab.checks: PASS lines, CheckFailed messages, speed checks and attempt()."""

import math

import pytest

from perflab import checks, timing
from perflab.checks import CheckFailed


def failure(fn, *args, **kwargs):
    with pytest.raises(CheckFailed) as err:
        fn(*args, **kwargs)
    text = str(err.value)
    assert "expected:" in text and "measured:" in text
    return text


def test_check_true(capsys):
    checks.check_true(True, "copies match")
    assert capsys.readouterr().out == "PASS copies match\n"
    text = failure(checks.check_true, False, "copies match", expected="equal", measured="differ", hint="sync first")
    assert text.startswith("FAIL copies match") and "hint:     sync first" in text


def test_check_close(capsys):
    checks.check_close(10.4, 10.0, "rate", rtol=0.05)
    assert capsys.readouterr().out.startswith("PASS rate")
    text = failure(checks.check_close, 12.0, 10.0, "rate", rtol=0.05, hint="pin the buffer")
    assert "10 ± 5%" in text and "12 (+20.0%)" in text and "hint:" in text
    failure(checks.check_close, math.nan, 10.0, "rate")


def test_check_at_least(capsys):
    checks.check_at_least(50, 50, "bandwidth", unit="GB/s")
    assert capsys.readouterr().out.startswith("PASS bandwidth")
    text = failure(checks.check_at_least, 20, 50, "bandwidth", unit="GB/s", hint="use pinned memory")
    assert ">= 50 GB/s" in text and "20 GB/s" in text and "hint:" in text


def t(ms):
    return timing.Timing([ms] * 5, timing.METHODS["host"], 0)


def test_check_faster_in_full_profile(monkeypatch, capsys):
    monkeypatch.setenv("PERFLAB_PROFILE", "full")
    checks.check_faster(t(1.0), t(3.0), "overlap", min_speedup=2)
    assert capsys.readouterr().out.startswith("PASS overlap (3.00x)")
    text = failure(checks.check_faster, t(2.0), t(3.0), "overlap", min_speedup=2, hint="use two streams")
    assert "speed-up >= 2.00x" in text and "1.50x" in text and "hint:" in text


def test_check_faster_skips_in_smoke(monkeypatch, capsys):
    monkeypatch.setenv("PERFLAB_PROFILE", "smoke")
    checks.check_faster(t(3.0), t(1.0), "overlap", min_speedup=2)  # would fail in full
    assert capsys.readouterr().out.startswith("SKIP overlap")


def test_attempt(capsys):
    assert checks.attempt(lambda a, b=0: a + b, 2, b=3) == 5

    def copy_in_chunks():
        raise NotImplementedError

    assert checks.attempt(copy_in_chunks) is None
    assert "not attempted yet: implement `copy_in_chunks`" in capsys.readouterr().out

    def broken():
        raise KeyError("x")

    with pytest.raises(KeyError):
        checks.attempt(broken)
