"""Tests of perflab.student: solution stripping and the committed student copies."""

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from perflab import cli
from perflab.student import make_student, strip_solutions, student_path

ROOT = Path(__file__).resolve().parents[1]

SOLVED = """def copy(x):
    y = 1
    ### BEGIN SOLUTION (use two streams)
    y = x + 1
    return y
    ### END SOLUTION
print(copy)"""


def test_strip_solutions_keeps_indent_and_note():
    assert strip_solutions(SOLVED) == (
        "def copy(x):\n"
        "    y = 1\n"
        "    # TODO: fill this in (use two streams)\n"
        '    raise NotImplementedError("TODO: your code here")\n'
        "print(copy)"
    )
    assert strip_solutions("a = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION") == (
        'a = 1\n# TODO: fill this in\nraise NotImplementedError("TODO: your code here")'
    )


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "without an END"),
    ("x = 1\n### END SOLUTION", "without a BEGIN"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "Nested"),
])
def test_unbalanced_markers_raise(source, message):
    with pytest.raises(ValueError, match=message):
        strip_solutions(source)


def test_make_student():
    code = new_code_cell(SOLVED, execution_count=3, outputs=[new_output("stream", name="stdout", text="hi")])
    solution = new_notebook(cells=[
        new_markdown_cell("# Lab 3.3 — SOLUTION"),
        code,
        new_markdown_cell("**SOLUTION:** copy in chunks."),
        new_code_cell("print(2)"),
    ])
    student = make_student(solution, "lab__SOLUTION.ipynb")
    assert [c.cell_type for c in student.cells] == ["markdown", "code", "markdown", "code"]
    assert [c.id for c in student.cells] == [c.id for c in solution.cells]
    assert student.cells[0].source == "# Lab 3.3"
    assert student.cells[2].source == "**TODO:** copy in chunks."
    assert "raise NotImplementedError" in student.cells[1].source and "x + 1" not in student.cells[1].source
    assert all(c.outputs == [] and c.execution_count is None for c in student.cells if c.cell_type == "code")
    assert student.metadata["perflab"]["student_copy_of"] == "solutions/lab__SOLUTION.ipynb"
    assert solution.cells[1].outputs and solution.cells[1].source == SOLVED  # input untouched


def test_student_path():
    assert student_path(Path("labs/solutions/x__SOLUTION.ipynb")) == Path("labs/x.ipynb")
    for bad in ("labs/x__SOLUTION.ipynb", "labs/solutions/x.ipynb"):
        with pytest.raises(ValueError, match="not a solution notebook"):
            student_path(Path(bad))


def test_committed_student_copies_are_up_to_date():
    solutions = sorted((ROOT / "labs" / "solutions").glob("*__SOLUTION.ipynb"))
    assert solutions, "no lab solutions found"
    assert cli.student(ROOT, check_only=True) == 0
    for solution in solutions:
        student = nbformat.read(student_path(solution), as_version=4)
        assert "### BEGIN SOLUTION" not in "".join(c.source for c in student.cells)
