"""Tests of perflab.results: saving, loading and reference records."""

import datetime
import json
import types

import numpy as np
import pytest

from perflab import results
from perflab.results import Record

ROWS = [{"memory": "pinned", "nbytes": 4096, "GBps": 1.5}, {"memory": "pageable", "nbytes": 4096, "GBps": 0.5}]


@pytest.fixture(autouse=True)
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFLAB_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("PERFLAB_REFERENCE_DIR", str(tmp_path / "reference"))
    monkeypatch.setenv("PERFLAB_PROFILE", "full")
    monkeypatch.delenv("PERFLAB_SAVE_REFERENCE", raising=False)
    return tmp_path


def saved(dirs, experiment):
    return sorted((dirs / "results" / experiment).glob("*.json"))


def test_record_saves_and_loads_back(dirs):
    rec = results.record("t.exp", ROWS, params={"size": 4})
    (path,) = saved(dirs, "t.exp")
    back = results.load(path)
    assert back == rec and back.rows == ROWS and back.params == {"size": 4}
    assert back.profile == "full" and back.created and back.fingerprint["id"]
    assert not (dirs / "reference").exists()


def test_select_and_one():
    rec = Record("t.exp", ROWS)
    assert rec.select(nbytes=4096) == ROWS
    assert rec.one(memory="pinned")["GBps"] == 1.5
    for where in ({"memory": "managed"}, {"nbytes": 4096}):
        with pytest.raises(LookupError, match="expected one row"):
            rec.one(**where)


def test_source_says_live_or_reference():
    rec = results.record("t.exp", ROWS)
    assert rec.source == f"live · {rec.fingerprint['gpu'] or rec.fingerprint['cpu']}"
    ref = Record("t.exp", ROWS, fingerprint={"gpu": "NVIDIA H100 80GB HBM3"},
                 created="2026-11-20T10:00:00+00:00", live=False)
    assert ref.source == "reference data from NVIDIA H100 80GB HBM3, 2026-11-20"


def test_save_reference_in_full_profile(dirs, monkeypatch, capsys):
    monkeypatch.setenv("PERFLAB_SAVE_REFERENCE", "1")
    rec = results.record("t.exp", ROWS)
    assert (dirs / "reference" / "t.exp.json").exists()
    assert "saved reference record" in capsys.readouterr().out
    ref = results.load_reference("t.exp")
    assert ref.live is False and ref.rows == ROWS and ref.created == rec.created
    results.record("t.other", ROWS, reference=False)
    assert not (dirs / "reference" / "t.other.json").exists()


def test_save_reference_refused_in_smoke(dirs, monkeypatch):
    monkeypatch.setenv("PERFLAB_SAVE_REFERENCE", "1")
    monkeypatch.setenv("PERFLAB_PROFILE", "smoke")
    with pytest.raises(RuntimeError, match="only from the full profile"):
        results.record("t.exp", ROWS)
    assert not (dirs / "reference" / "t.exp.json").exists()


def test_missing_reference_says_how_to_make_one():
    with pytest.raises(FileNotFoundError, match=r"No reference record for 't.none'.*--save-reference"):
        results.load_reference("t.none")


def test_record_needs_rows():
    with pytest.raises(ValueError, match="at least one row"):
        results.record("t.exp", [])


def test_numpy_scalars_serialise(dirs):
    results.record("t.np", [{"n": np.int64(3), "x": np.float32(0.5), "ok": np.bool_(True)}])
    row = json.loads(saved(dirs, "t.np")[0].read_text())["rows"][0]
    assert row == {"n": 3, "x": 0.5, "ok": True}


def test_numpy_arrays_serialise_as_lists(dirs):
    results.record("t.arr", [{"samples": np.array([1.0, 2.0])}])
    assert json.loads(saved(dirs, "t.arr")[0].read_text())["rows"][0] == {"samples": [1.0, 2.0]}


def test_two_records_in_one_second_both_kept(dirs, monkeypatch):
    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)

    monkeypatch.setattr(results, "_dt", types.SimpleNamespace(datetime=Frozen, timezone=datetime.timezone))
    results.record("t.exp", ROWS[:1])
    results.record("t.exp", ROWS[1:])
    assert len(saved(dirs, "t.exp")) == 2


def test_every_shipped_reference_record_is_sound(monkeypatch):
    monkeypatch.delenv("PERFLAB_REFERENCE_DIR")
    paths = sorted(results.PACKAGE_REFERENCE_DIR.glob("*.json"))
    assert paths, "no reference records are shipped"
    for path in paths:
        rec = results.load_reference(path.stem)
        assert rec.experiment == path.stem and not rec.live, path.name
        assert rec.fingerprint.get("gpu") and rec.created and rec.profile == "full", path.name
        assert len(rec.rows) >= 1, path.name
