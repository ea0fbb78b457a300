"""The notebook format gate: every lesson and lab follows the kit's anatomy and rules."""

import ast
import json
import re
from pathlib import Path

import pytest

from perflab import results

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("notebooks/**/*.ipynb")) + sorted(ROOT.glob("labs/**/*.ipynb"))
KNOWN_TAGS = {"parameters"}
# Commands that change machine or GPU settings: a notebook may show them as text, never run them.
FORBIDDEN = re.compile(r"nvidia-smi[^\n]{0,40}\s-(pm|pl|lgc|lmc|ac|rgc|r|c|mig)\b|sysctl\s+-w|>\s*/proc/sys/")


def _cells(path: Path, kind: str | None = None) -> list[dict]:
    cells = json.loads(path.read_text())["cells"]
    return [c for c in cells if kind is None or c["cell_type"] == kind]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_there_are_notebooks():
    assert any("00_start_here" in p.name for p in NOTEBOOKS)
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_kernel_and_metadata(path):
    meta = json.loads(path.read_text())["metadata"]
    assert meta["kernelspec"]["name"] == "python3", "use the python3 kernelspec"
    perflab = meta.get("perflab", {})
    assert isinstance(perflab.get("requires", {}).get("gpus"), int), "declare perflab.requires.gpus"
    assert isinstance(perflab.get("minutes"), int), "declare perflab.minutes"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_no_stored_outputs(path):
    for cell in _cells(path, "code"):
        assert cell["outputs"] == [] and cell["execution_count"] is None, f"cell {cell.get('id')} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_one_parameters_cell_of_literals_then_a_check(path):
    code = _cells(path, "code")
    tagged = [i for i, c in enumerate(code) if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, f"expected exactly one 'parameters' cell, found {len(tagged)}"
    for stmt in ast.parse(_source(code[tagged[0]])).body:
        assert isinstance(stmt, ast.Assign), f"line {stmt.lineno}: the parameters cell holds assignments only"
        ast.literal_eval(stmt.value)  # raises on anything but a literal
    assert "params.check(" in _source(code[tagged[0] + 1]), "the cell after the parameters validates them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_known_tags_only(path):
    for cell in _cells(path):
        unknown = set(cell["metadata"].get("tags", [])) - KNOWN_TAGS
        assert not unknown, f"unknown tags {unknown}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_anatomy_sections(path):
    markdown = "\n".join(_source(c) for c in _cells(path, "markdown"))
    assert re.search(r"objectives", markdown, re.I), "state the learning objectives"
    assert re.search(r"^#+ .*takeaways", markdown, re.I | re.M), "end with a takeaways section"
    assert re.search(r"\*\*Time:\*\*", markdown), "give a time estimate"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_no_commands_that_change_settings(path):
    for cell in _cells(path, "code"):
        match = FORBIDDEN.search(_source(cell))
        assert not match, f"cell {cell.get('id')} runs '{match.group(0)}'; show such commands as text only"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_reference_records_exist_for_gpu_experiments(path):
    code = "\n".join(_source(c) for c in _cells(path, "code"))
    for experiment in re.findall(r"(?:measured_or_reference\([\w. ]+,|load_reference\()\s*\"([\w.]+)\"", code):
        record = results.load_reference(experiment)
        assert record.fingerprint.get("gpu"), f"{experiment}: the reference record names no GPU"


def test_gpu_notebooks_are_in_the_reference_target():
    makefile = (ROOT / "Makefile").read_text()
    for path in NOTEBOOKS:
        meta = json.loads(path.read_text())["metadata"]["perflab"]
        is_source = path.parent.name != "labs"  # lessons and solutions; student copies are generated
        if meta["requires"]["gpus"] > 0 and is_source:
            assert _name(path) in makefile, f"{_name(path)} needs a GPU: list it in REFERENCE_NOTEBOOKS"


MARKDOWN_LINK = re.compile(r"\]\(([^)\s#]+\.ipynb)(?:#[^)]*)?\)")


@pytest.mark.parametrize("path", NOTEBOOKS + [ROOT / "README.md"], ids=_name)
def test_links_to_notebooks_resolve(path):
    text = path.read_text() if path.suffix == ".md" else "\n".join(_source(c) for c in _cells(path, "markdown"))
    for target in MARKDOWN_LINK.findall(text):
        if "://" not in target:
            assert (path.parent / target).resolve().exists(), f"broken link to {target}"
