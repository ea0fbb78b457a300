"""Validate a notebook's ``parameters`` cell and apply the run profile.

A notebook keeps its parameters as plain literals in one cell tagged
``parameters`` (papermill injects overrides after it). The next cell calls
``check``, which stops with one sentence on a bad value, before any GPU work,
and then applies the profile named by ``PERFLAB_PROFILE``:

- ``full`` (the default): the notebook's own values;
- ``smoke``: the notebook's smaller values for a fast CPU run in CI.

Taught in: notebooks/00_start_here.ipynb
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, MutableMapping

PROFILE_VAR = "PERFLAB_PROFILE"
PROFILES = ("full", "smoke")


class ParameterError(ValueError):
    """A parameter has a value the notebook cannot use."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: the sentence is the whole story.
        return [f"ParameterError: {self}"]


def profile() -> str:
    """The run profile from $PERFLAB_PROFILE: "full" (default) or "smoke"."""
    name = os.environ.get(PROFILE_VAR, "full") or "full"
    if name not in PROFILES:
        raise ParameterError(f"{PROFILE_VAR} must be one of {', '.join(PROFILES)}; got '{name}'.")
    return name


@dataclass(frozen=True)
class Int:
    """An integer in [lo, hi]."""

    lo: int
    hi: int

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer between {self.lo} and {self.hi}"
        if not self.lo <= value <= self.hi:
            return f"must be between {self.lo} and {self.hi}"
        return None


@dataclass(frozen=True)
class Float:
    """A number in [lo, hi]; integers are accepted."""

    lo: float
    hi: float

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number between {self.lo:g} and {self.hi:g}"
        if not self.lo <= value <= self.hi:
            return f"must be between {self.lo:g} and {self.hi:g}"
        return None


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of values."""

    options: tuple[Any, ...]

    def problem(self, value: Any) -> str | None:
        if value not in self.options:
            return "must be one of " + ", ".join(repr(o) for o in self.options)
        return None


@dataclass(frozen=True)
class Bool:
    """True or False."""

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else "must be True or False"


Spec = Int | Float | Choice | Bool


def _complain(name: str, value: Any, problem: str) -> ParameterError:
    return ParameterError(
        f"Parameter `{name}` {problem}, but got {value!r} ({type(value).__name__}); "
        "fix it in the parameters cell or in papermill's `-p` option."
    )


def check(
    namespace: MutableMapping[str, Any],
    smoke: dict[str, Any] | None = None,
    **spec: Spec,
) -> dict[str, Any]:
    """Validate the parameters in ``namespace`` and apply the profile to it.

    Args:
        namespace: the notebook's ``globals()``; values are read from it and
            profile overrides are written back into it.
        smoke: smaller values used in the smoke profile (each is validated too).
        spec: one rule per parameter, e.g. ``max_size_MiB=Int(1, 4096)``.

    Returns the final values, for the experiment's record.

    Example:
        p = params.check(globals(), max_size_MiB=params.Int(1, 4096), smoke={"max_size_MiB": 16})
    """
    smoke = smoke or {}
    unknown = sorted(set(smoke) - set(spec))
    if unknown:
        raise ParameterError(f"Smoke values given for parameters without a rule: {', '.join(unknown)}.")
    for name, rule in spec.items():
        if name not in namespace:
            raise ParameterError(f"Parameter `{name}` is missing; define it in the parameters cell.")
        problem = rule.problem(namespace[name])
        if problem:
            raise _complain(name, namespace[name], problem)
    for name, value in smoke.items():
        problem = spec[name].problem(value)
        if problem:
            raise _complain(name, value, problem + " (smoke value)")
    active = profile()
    if active == "smoke":
        for name, value in smoke.items():
            if namespace[name] != value:
                print(f"smoke profile: {name} = {namespace[name]!r} -> {value!r}")
                namespace[name] = value
    values = {name: namespace[name] for name in spec}
    print(f"profile '{active}': " + ", ".join(f"{k}={v!r}" for k, v in values.items()))
    return values
