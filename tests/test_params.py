"""Tests of perflab.params: parameter rules, check(), and the smoke profile."""

import pytest

from perflab import params
from perflab.params import Bool, Choice, Float, Int, ParameterError


@pytest.fixture(autouse=True)
def full_profile(monkeypatch):
    monkeypatch.setenv("PERFLAB_PROFILE", "full")


def test_rules():
    assert Int(1, 10).problem(5) is None
    assert Int(1, 10).problem(0) and Int(1, 10).problem(11)
    assert Int(0, 10).problem(True)  # a bool is not an Int
    assert Int(1, 10).problem("5") and Int(1, 10).problem(5.0)
    assert Float(0, 1).problem(0.5) is None and Float(0, 1).problem(1) is None
    assert Float(0, 1).problem(1.5) and Float(0, 1).problem("0.5") and Float(0, 1).problem(False)
    assert Choice(("a", "b")).problem("a") is None and Choice(("a", "b")).problem("c")
    assert Bool().problem(False) is None and Bool().problem(1) and Bool().problem("True")


def test_check_returns_good_values():
    ns = {"size_MiB": 64, "ratio": 0.5, "mode": "pinned", "verbose": True, "other": 1}
    spec = dict(size_MiB=Int(1, 4096), ratio=Float(0, 1), mode=Choice(("pinned", "pageable")), verbose=Bool())
    assert params.check(ns, **spec) == {"size_MiB": 64, "ratio": 0.5, "mode": "pinned", "verbose": True}


@pytest.mark.parametrize("value, allowed", [(-4, "between 1 and 4096"), ("big", "must be an integer")])
def test_bad_value_is_one_sentence(value, allowed):
    with pytest.raises(ParameterError) as err:
        params.check({"size_MiB": value}, size_MiB=Int(1, 4096))
    msg = str(err.value)
    assert "`size_MiB`" in msg and repr(value) in msg and allowed in msg
    assert "\n" not in msg and ". " not in msg and msg.endswith(".")


def test_missing_parameter_raises():
    with pytest.raises(ParameterError, match="`size_MiB` is missing"):
        params.check({}, size_MiB=Int(1, 4096))


def test_smoke_values_apply_only_in_smoke(monkeypatch, capsys):
    ns = {"size_MiB": 1024}
    assert params.check(ns, smoke={"size_MiB": 16}, size_MiB=Int(1, 4096)) == {"size_MiB": 1024}
    assert ns["size_MiB"] == 1024
    monkeypatch.setenv("PERFLAB_PROFILE", "smoke")
    capsys.readouterr()
    assert params.check(ns, smoke={"size_MiB": 16}, size_MiB=Int(1, 4096)) == {"size_MiB": 16}
    assert ns["size_MiB"] == 16
    assert "smoke profile: size_MiB = 1024 -> 16" in capsys.readouterr().out


@pytest.mark.parametrize("active", ["smoke", "full"])
def test_bad_smoke_value_raises_in_any_profile(monkeypatch, active):
    monkeypatch.setenv("PERFLAB_PROFILE", active)
    with pytest.raises(ParameterError, match="smoke value"):
        params.check({"size_MiB": 1024}, smoke={"size_MiB": 0}, size_MiB=Int(1, 4096))


def test_smoke_value_without_rule_raises():
    with pytest.raises(ParameterError, match="without a rule: reps"):
        params.check({"size_MiB": 1}, smoke={"reps": 2}, size_MiB=Int(1, 4096))


def test_invalid_profile_raises(monkeypatch):
    monkeypatch.setenv("PERFLAB_PROFILE", "fast")
    with pytest.raises(ParameterError, match="PERFLAB_PROFILE must be one of full, smoke"):
        params.check({"size_MiB": 1}, size_MiB=Int(1, 4096))


def test_render_traceback_is_one_line():
    lines = ParameterError("Parameter `x` must be True or False.")._render_traceback_()
    assert lines == ["ParameterError: Parameter `x` must be True or False."]
