"""Tests of perflab.cli: value parsing, notebook discovery, doctor and the commands."""

import json
from pathlib import Path

import pytest

from perflab import cli, env

ROOT = Path(__file__).resolve().parents[1]
GPU_NOTEBOOKS = [
    "notebooks/ch03_os_containers/03_03_pinned_memory.ipynb",
    "labs/lab_03_03_overlap_input_copies.ipynb",
    "labs/solutions/lab_03_03_overlap_input_copies__SOLUTION.ipynb",
]


def has_cuda():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.parametrize("text, value", [("5", 5), ("2.5", 2.5), ("True", True), ("False", False),
                                         ("None", None), ("abc", "abc")])
def test_parse_value(text, value):
    assert cli.parse_value(text) == value and type(cli.parse_value(text)) is type(value)


def test_repo_root_from_a_subfolder():
    assert cli.repo_root(ROOT / "helpers" / "perflab") == ROOT
    assert cli.repo_root(ROOT / "notebooks" / "ch03_os_containers") == ROOT


def test_notebooks_lists_lessons_then_labs():
    found = [str(p.relative_to(ROOT)) for p in cli.notebooks(ROOT)]
    assert all(nb in found for nb in GPU_NOTEBOOKS)
    kinds = [p.split("/")[0] for p in found]
    assert kinds == sorted(kinds, key=lambda k: k != "notebooks")


def test_notebooks_skips_checkpoints(tmp_path):
    for rel in ("notebooks/a.ipynb", "notebooks/.ipynb_checkpoints/a-checkpoint.ipynb", "labs/b.ipynb"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    assert [p.relative_to(tmp_path).as_posix() for p in cli.notebooks(tmp_path)] == ["notebooks/a.ipynb", "labs/b.ipynb"]


@pytest.mark.skipif(has_cuda(), reason="checks the report on a machine without CUDA")
def test_doctor_reports_each_notebook(monkeypatch):
    monkeypatch.delenv("PERFLAB_FORCE_REFERENCE", raising=False)
    report = cli.doctor(ROOT)
    assert report.startswith(env.banner())
    lines = report.splitlines()
    for path in cli.notebooks(ROOT):
        rel = str(path.relative_to(ROOT))
        (line,) = [ln for ln in lines if ln.startswith(rel + " ")]
        gpus = json.loads(path.read_text())["metadata"].get("perflab", {}).get("requires", {}).get("gpus", 0)
        if gpus:
            needs = f"needs {gpus} CUDA GPU{'s' if gpus > 1 else ''}, found none"
            assert " reference " in line and needs in line, line
        else:
            assert " live " in line, line


def test_run_missing_notebook_returns_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "missing.ipynb"]) == 2
    assert "no notebook at missing.ipynb" in capsys.readouterr().err


def test_student_check_command(monkeypatch):
    monkeypatch.chdir(ROOT / "labs")
    assert cli.main(["student", "--check"]) == 0


def _fake_papermill(monkeypatch, failing: set[str]):
    """Replace cli.run with a stand-in that fails for the named notebooks."""
    import papermill

    ran = []

    def fake_run(notebook, out_dir, parameters, profile, save_reference, timeout_s):
        ran.append(notebook.name)
        if notebook.name in failing:
            raise papermill.PapermillExecutionError(2, 3, "boom", "ValueError", "bad value", [])
        return out_dir / notebook.name

    monkeypatch.setattr(cli, "run", fake_run)
    return ran


@pytest.mark.parametrize("keep_going, expected_runs", [(False, ["a.ipynb"]), (True, ["a.ipynb", "b.ipynb"])])
def test_run_stops_at_a_failure_unless_keep_going(tmp_path, monkeypatch, capsys, keep_going, expected_runs):
    for name in ("a.ipynb", "b.ipynb"):
        (tmp_path / name).write_text("{}")
    monkeypatch.chdir(tmp_path)
    ran = _fake_papermill(monkeypatch, failing={"a.ipynb"})
    argv = ["run", "a.ipynb", "b.ipynb"] + (["--keep-going"] if keep_going else [])
    assert cli.main(argv) == 1
    assert ran == expected_runs
    err = capsys.readouterr().err
    assert "a.ipynb stopped in cell 3: ValueError: bad value" in err
    assert ("1 of 2 notebooks failed: a.ipynb" in err) == keep_going
