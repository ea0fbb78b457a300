"""Records of measurements: save them, load them, and ship reference ones.

A record holds one experiment's tidy rows (one dict per measured point),
the parameters it ran with, the machine's fingerprint, when, and the kit
version. Records go to ``results/`` (git-ignored). Reference records, which
learners without the hardware see, are written only by running the notebook
on that hardware with ``perflab run ... --save-reference``; never by hand.

Taught in: notebooks/00_start_here.ipynb
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from perflab import __version__, env
from perflab.params import profile

RESULTS_DIR_VAR = "PERFLAB_RESULTS_DIR"
SAVE_REFERENCE_VAR = "PERFLAB_SAVE_REFERENCE"
REFERENCE_DIR_VAR = "PERFLAB_REFERENCE_DIR"
PACKAGE_REFERENCE_DIR = Path(__file__).parent / "reference"


@dataclass
class Record:
    """One experiment's measurements and where they came from."""

    experiment: str
    rows: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    kit_version: str = __version__
    profile: str = ""
    live: bool = True  # False once loaded as a reference record

    def select(self, **where: Any) -> list[dict[str, Any]]:
        """Rows whose fields equal every given value."""
        return [r for r in self.rows if all(r.get(k) == v for k, v in where.items())]

    def one(self, **where: Any) -> dict[str, Any]:
        """The single row matching ``where``; raises if there is not exactly one."""
        found = self.select(**where)
        if len(found) != 1:
            raise LookupError(f"{self.experiment}: expected one row for {where}, found {len(found)}.")
        return found[0]

    @property
    def source(self) -> str:
        """Provenance for plot titles: "live · <GPU>" or "reference data from <GPU>, <date>"."""
        device = self.fingerprint.get("gpu") or self.fingerprint.get("cpu") or "unknown device"
        if self.live:
            return f"live · {device}"
        return f"reference data from {device}, {self.created[:10]}"

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("live")
        return json.dumps(data, indent=1, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # NumPy and torch scalars and arrays
        return value.tolist()
    raise TypeError(f"Cannot store {type(value).__name__} in a record.")


def kit_root(start: Path | None = None) -> Path | None:
    """The kit's top folder (holding notebooks/ and helpers/) at or above ``start``, if any."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and (folder / "helpers").is_dir():
            return folder
    return None


def results_dir() -> Path:
    """Where records are saved: $PERFLAB_RESULTS_DIR, else results/ at the kit's top, else ./results."""
    if RESULTS_DIR_VAR in os.environ:
        return Path(os.environ[RESULTS_DIR_VAR])
    return (kit_root() or Path.cwd()) / "results"


def reference_dir() -> Path:
    """Where reference records live: $PERFLAB_REFERENCE_DIR or the package's own folder."""
    return Path(os.environ.get(REFERENCE_DIR_VAR, PACKAGE_REFERENCE_DIR))


def record(
    experiment: str,
    rows: list[dict[str, Any]],
    params: dict[str, Any] | None = None,
    *,
    reference: bool = True,
) -> Record:
    """Make a record of a live measurement on this machine and save it.

    The record is saved under ``results/<experiment>/``. When the notebook runs
    through ``perflab run --save-reference`` in the full profile, it is also
    written as the shipped reference record for ``experiment``, unless
    ``reference=False`` (experiments that run live everywhere need none).

    Example:
        rec = results.record("ch03.pinned.bandwidth", rows, params=p)
    """
    if not rows:
        raise ValueError(f"{experiment}: a record needs at least one row of measurements.")
    rec = Record(
        experiment=experiment,
        rows=rows,
        params=dict(params or {}),
        fingerprint=env.fingerprint(),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        profile=profile(),
    )
    save(rec)
    if reference and os.environ.get(SAVE_REFERENCE_VAR) == "1":
        _save_reference(rec)
    return rec


def save(rec: Record, root: Path | None = None) -> Path:
    """Write ``rec`` as JSON under ``<root>/<experiment>/`` and return the path."""
    folder = (root or results_dir()) / rec.experiment
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{rec.created.replace(':', '')}-{rec.fingerprint.get('id', 'unknown')}"
    path, copy = folder / f"{stem}.json", 1
    while path.exists():  # two records in one second: keep both
        copy += 1
        path = folder / f"{stem}-{copy}.json"
    path.write_text(rec.to_json())
    return path


def _save_reference(rec: Record) -> Path:
    if rec.profile != "full":
        raise RuntimeError(
            f"Reference records come only from the full profile; this run is '{rec.profile}'."
        )
    folder = reference_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{rec.experiment}.json"
    path.write_text(rec.to_json())
    print(f"saved reference record {path}")
    return path


def load(path: str | Path) -> Record:
    """Read a record written by ``save``."""
    data = json.loads(Path(path).read_text())
    return Record(**data)


def load_reference(experiment: str) -> Record:
    """The shipped reference record for ``experiment``, marked as not live."""
    path = reference_dir() / f"{experiment}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"No reference record for '{experiment}' in {path.parent}; run the notebook on the "
            "hardware with `perflab run NOTEBOOK --save-reference` to make one."
        )
    rec = load(path)
    rec.live = False
    return rec


def measured_or_reference(live: bool, experiment: str, measure) -> Record:
    """Run ``measure()`` (which returns a Record) when live, else load the reference record.

    Prints which one the notebook is showing, so the learner always knows.
    """
    if live:
        return measure()
    rec = load_reference(experiment)
    print(f"{experiment}: showing {rec.source} (not measured here)")
    return rec
