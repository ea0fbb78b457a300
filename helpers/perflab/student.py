"""Make a lab's student copy from its solution notebook.

The solution is the source. In its code cells, each region between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes a TODO stub that
raises ``NotImplementedError`` (which ``checks.attempt`` reports as "not
attempted yet"). In markdown, "**SOLUTION:**" becomes "**TODO:**" and
" — SOLUTION" leaves the title. Every cell stays, in order; outputs are dropped.

Taught in: README.md (For instructors)
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION(?P<note>.*)$")
END = re.compile(r"^\s*### END SOLUTION\s*$")
SUFFIX = "__SOLUTION"


def student_path(solution: Path) -> Path:
    """labs/solutions/x__SOLUTION.ipynb -> labs/x.ipynb"""
    if solution.parent.name != "solutions" or not solution.stem.endswith(SUFFIX):
        raise ValueError(f"{solution} is not a solution notebook (labs/solutions/<name>{SUFFIX}.ipynb).")
    return solution.parent.parent / (solution.stem[: -len(SUFFIX)] + ".ipynb")


def strip_solutions(source: str) -> str:
    """Replace every solution region in a code cell's source with a TODO stub."""
    out, inside = [], False
    for line in source.splitlines():
        begin = BEGIN.match(line)
        if begin:
            if inside:
                raise ValueError("Nested '### BEGIN SOLUTION'.")
            inside = True
            indent, note = begin["indent"], begin["note"].strip()
            out.append(f"{indent}# TODO: fill this in{(' ' + note) if note else ''}")
            out.append(f'{indent}raise NotImplementedError("TODO: your code here")')
        elif END.match(line):
            if not inside:
                raise ValueError("'### END SOLUTION' without a BEGIN.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("'### BEGIN SOLUTION' without an END.")
    return "\n".join(out)


def make_student(solution: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The student copy of the solution notebook called ``name`` (the input is unchanged)."""
    nb = copy.deepcopy(solution)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs, cell.execution_count = [], None
        elif cell.cell_type == "markdown":
            cell.source = cell.source.replace("**SOLUTION:**", "**TODO:**").replace(" — SOLUTION", "")
    nb.metadata.setdefault("perflab", {})["student_copy_of"] = f"solutions/{name}"
    return nb


def write_student(solution_path: Path) -> Path:
    """Generate and write the student copy next to ``labs/solutions/``; return its path."""
    solution = nbformat.read(solution_path, as_version=4)
    nb = make_student(solution, solution_path.name)
    target = student_path(solution_path)
    nbformat.write(nb, target)
    return target
