"""The ``perflab`` command.

    perflab doctor                 what this machine is, and for each notebook
                                   whether it runs live here or shows reference data
    perflab run NOTEBOOK... [-p NAME VALUE ...] [--profile full|smoke] [--save-reference] [--keep-going]
                                   execute notebooks headless with papermill
    perflab student [--check]      write (or check) the labs' student copies
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from perflab import env, params, results, system


def repo_root(start: Path | None = None) -> Path:
    """The kit's top folder: the nearest parent of ``start`` holding notebooks/ and helpers/,
    else the checkout this package was installed from."""
    return results.kit_root(start) or Path(__file__).resolve().parents[2]


def notebooks(root: Path) -> list[Path]:
    """Every lesson and lab notebook under ``root``, in reading order."""
    found = sorted((root / "notebooks").rglob("*.ipynb")) + sorted((root / "labs").rglob("*.ipynb"))
    return [p for p in found if ".ipynb_checkpoints" not in p.parts]


def notebook_meta(path: Path) -> dict[str, Any]:
    """The notebook's ``perflab`` metadata block (requires, minutes, cpu_live)."""
    return json.loads(path.read_text()).get("metadata", {}).get("perflab", {})


def doctor(root: Path) -> str:
    """The machine's banner and, per notebook, live or reference mode with the reason."""
    lines = [env.banner(), ""]
    lines += [f"{setting:32} {value}" for setting, value in system.summary()]
    lines += ["", f"{'notebook':62} {'mode':9} {'min':>3}  why"]
    for path in notebooks(root):
        meta = notebook_meta(path)
        mode = env.requirement_mode(meta.get("requires", {}))
        why = mode.reason
        if not mode.live and meta.get("cpu_live"):
            why += f"; live on this CPU: {meta['cpu_live']}"
        kind = "live" if mode.live else "reference"
        lines.append(f"{str(path.relative_to(root)):62} {kind:9} {meta.get('minutes', '?'):>3}  {why}")
    m = env.detect()
    lines += ["", f"MPS control daemon: {m.mps_control or 'not found'}"]
    return "\n".join(lines)


def parse_value(text: str) -> Any:
    """Read a -p value as papermill does: int, float, bool, None, else the string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def run(notebook: Path, out_dir: Path, parameters: dict[str, Any], profile: str,
        save_reference: bool, timeout_s: int) -> Path:
    """Execute ``notebook`` with papermill; return the executed copy's path."""
    import papermill

    if save_reference and profile != "full":
        raise SystemExit("--save-reference needs the full profile: reference records come from full runs.")
    os.environ[params.PROFILE_VAR] = profile
    os.environ[results.RESULTS_DIR_VAR] = str(results.results_dir().resolve())
    if save_reference:
        os.environ[results.SAVE_REFERENCE_VAR] = "1"
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{notebook.stem}.{profile}.ipynb"
    papermill.execute_notebook(
        str(notebook), str(output), parameters=parameters, cwd=str(notebook.parent),
        execution_timeout=timeout_s, kernel_name="python3", progress_bar=False,
    )
    return output


def student(root: Path, check_only: bool) -> int:
    """Write the labs' student copies, or report which are out of date."""
    import nbformat

    from perflab.student import make_student, student_path, write_student

    stale = []
    for solution in sorted((root / "labs" / "solutions").glob("*__SOLUTION.ipynb")):
        target = student_path(solution)
        if check_only:
            expected = make_student(nbformat.read(solution, as_version=4), solution.name)
            if not target.exists() or nbformat.read(target, as_version=4) != expected:
                stale.append(target)
        else:
            print(f"wrote {write_student(solution).relative_to(root)}")
    for target in stale:
        print(f"out of date: {target.relative_to(root)} (run `perflab student`)")
    return 1 if stale else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="perflab", description="AI Systems Performance Lab helper.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="describe this machine and which notebooks run live here")
    p_run = sub.add_parser("run", help="execute a notebook headless with papermill")
    p_run.add_argument("notebooks", type=Path, nargs="+", metavar="NOTEBOOK")
    p_run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    p_run.add_argument("--profile", choices=params.PROFILES, default="full")
    p_run.add_argument("--save-reference", action="store_true",
                       help="also write the records as the kit's reference records (full profile only)")
    p_run.add_argument("--out", type=Path, default=Path("runs"), help="folder for the executed notebook")
    p_run.add_argument("--timeout", type=int, default=1800, help="per-cell time limit in seconds")
    p_run.add_argument("--keep-going", action="store_true",
                       help="run the remaining notebooks after one fails; list every failure at the end")
    p_student = sub.add_parser("student", help="generate the labs' student copies from the solutions")
    p_student.add_argument("--check", action="store_true", help="only report copies that are out of date")
    args = parser.parse_args(argv)

    root = repo_root()
    if args.command == "doctor":
        print(doctor(root))
        return 0
    if args.command == "run":
        missing = [str(nb) for nb in args.notebooks if not nb.exists()]
        if missing:
            print(f"perflab run: no notebook at {', '.join(missing)}", file=sys.stderr)
            return 2
        import papermill

        values = {name: parse_value(value) for name, value in args.parameter}
        failed = []
        for notebook in args.notebooks:
            try:
                output = run(notebook, args.out, values, args.profile, args.save_reference, args.timeout)
            except papermill.PapermillExecutionError as err:
                print(f"perflab run: {notebook} stopped in cell {err.exec_count}: {err.ename}: {err.evalue}",
                      file=sys.stderr)
                failed.append(str(notebook))
                if not args.keep_going:
                    return 1
                continue
            print(f"executed notebook: {output}")
        if failed:
            print(f"perflab run: {len(failed)} of {len(args.notebooks)} notebooks failed: {', '.join(failed)}",
                  file=sys.stderr)
        return 1 if failed else 0
    return student(root, args.check)
