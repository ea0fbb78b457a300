"""Tests of perflab.widgets: explore() and progress()."""

import pytest

from perflab import widgets

ipywidgets = pytest.importorskip("ipywidgets")


def controls():
    return {"n": ipywidgets.IntSlider(value=64, min=1, max=4096), "x": ipywidgets.FloatSlider(value=0.5)}


def test_explore_calls_with_starting_values(capsys):
    calls = []
    widgets.explore(lambda n, x: calls.append((n, x)), **controls())
    assert calls[0] == (64, 0.5)
    assert "With the starting values" in capsys.readouterr().out


def test_explore_calls_once():
    calls = []
    widgets.explore(lambda n, x: calls.append((n, x)), **controls())
    assert calls == [(64, 0.5)]


def test_moving_a_control_calls_again_with_the_new_value():
    calls, ctrl = [], controls()
    widgets.explore(lambda n, x: calls.append((n, x)), **ctrl)
    ctrl["n"].value = 128
    assert calls == [(64, 0.5), (128, 0.5)]


def test_explore_rejects_control_without_value():
    calls = []
    with pytest.raises(TypeError, match="not: n"):
        widgets.explore(lambda n: calls.append(n), n=64)
    assert calls == []


def test_progress_yields_every_item():
    assert list(widgets.progress(range(5), desc="sizes")) == [0, 1, 2, 3, 4]
    assert list(widgets.progress(iter("abc"), desc="letters", total=3)) == ["a", "b", "c"]
