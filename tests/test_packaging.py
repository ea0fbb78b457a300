"""Packaging: the conda and pip routes agree, CI runs the README's command, perflab imports bare."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib", reason="needs Python 3.11+ to read pyproject.toml")

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge name, where they differ


def _split(requirement: str) -> tuple[str, str]:
    """'ipywidgets>=8.1,<8.2' -> ('ipywidgets', '<8.2,>=8.1'): name and sorted specifiers."""
    for i, ch in enumerate(requirement):
        if ch in "<>=!~ ":
            name, spec = requirement[:i], requirement[i:]
            break
    else:
        name, spec = requirement, ""
    parts = sorted(p.strip() for p in spec.replace(" ", "").split(",") if p.strip())
    return name.strip().lower().replace("_", "-"), ",".join(parts)


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    expected = dict(_split(r) for r in wanted)
    expected = {CONDA_NAMES.get(name, name): spec for name, spec in expected.items()}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(_split(d) for d in env["dependencies"] if isinstance(d, str) and not d.startswith(("python", "pip")))
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    from_pip = dict(_split(d.split("#")[0]) for d in pip_section if not d.startswith("-"))
    assert conda | from_pip == expected
    assert not set(conda) & set(from_pip), "each dependency comes from one route"
    assert "-e ." in pip_section and "--no-deps" in pip_section


def test_widgets_are_pinned_together():
    deps = dict(_split(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert "<8.2" in deps["ipywidgets"] and "<3.1" in deps["jupyterlab-widgets"]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make lab" in quick_start and "make test" in quick_start
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "--nbval-lax" in (ROOT / "Makefile").read_text()


def test_perflab_imports_without_gpu_libraries():
    modules = sorted(p.stem for p in (ROOT / "helpers" / "perflab").glob("*.py") if not p.stem.startswith("_"))
    assert {"env", "timing", "roofline", "schedsim", "graphsim"} <= set(modules)
    code = (
        "import sys; sys.modules['cupy'] = None\n"
        + "".join(f"import perflab.{m}\n" for m in modules)
        + "heavy = [m for m in ('torch', 'cupy', 'matplotlib', 'pynvml') if sys.modules.get(m)]\n"
        + "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
