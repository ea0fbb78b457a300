"""Self-checks for lessons and exercises.

A check prints one line starting "PASS" or raises ``CheckFailed`` with the
expected and measured values, the tolerance and a hint, so nbval fails the
cell. An exercise stub that still raises ``NotImplementedError`` is reported
as "not attempted yet" without failing, so student copies run top to bottom.

Taught in: labs/ch03_overlap_input_copies.ipynb
"""

from __future__ import annotations

import math
from typing import Any, Callable

from perflab.params import profile
from perflab.timing import Timing


class CheckFailed(AssertionError):
    """A self-check did not hold."""


def _fail(what: str, expected: str, measured: str, hint: str) -> CheckFailed:
    lines = [f"FAIL {what}", f"  expected: {expected}", f"  measured: {measured}"]
    if hint:
        lines.append(f"  hint:     {hint}")
    return CheckFailed("\n".join(lines))


def check_true(condition: bool, what: str, *, expected: str = "true", measured: str = "false", hint: str = "") -> None:
    """Pass when ``condition`` holds; otherwise raise with the labelled values."""
    if not condition:
        raise _fail(what, expected, measured, hint)
    print(f"PASS {what}")


def check_close(actual: float, expected: float, what: str, *, rtol: float = 0.05, hint: str = "") -> None:
    """Pass when ``actual`` lies within ``rtol`` (relative) of ``expected``."""
    ok = math.isfinite(actual) and abs(actual - expected) <= rtol * abs(expected)
    check_true(
        ok,
        what,
        expected=f"{expected:.4g} ± {rtol:.0%}",
        measured=f"{actual:.4g} ({(actual - expected) / expected:+.1%})" if expected else f"{actual:.4g}",
        hint=hint,
    )


def check_at_least(value: float, floor: float, what: str, *, unit: str = "", hint: str = "") -> None:
    """Pass when ``value >= floor``."""
    check_true(
        math.isfinite(value) and value >= floor,
        what,
        expected=f">= {floor:.4g} {unit}".rstrip(),
        measured=f"{value:.4g} {unit}".rstrip(),
        hint=hint,
    )


def check_faster(fast: Timing, slow: Timing, what: str, *, min_speedup: float = 1.0, hint: str = "") -> None:
    """Pass when ``slow.median / fast.median >= min_speedup``.

    In the smoke profile the timings are too short to judge, so the check is
    skipped with a reason; correctness checks are never skipped.
    """
    if profile() == "smoke":
        print(f"SKIP {what}: the smoke profile's timings are too short to judge speed")
        return
    speedup = slow.median_ms / fast.median_ms
    overlap = fast.p80_ms >= slow.p20_ms
    note = " The two spreads overlap: raise the repeat budget and rerun." if overlap else ""
    check_true(
        speedup >= min_speedup,
        f"{what} ({speedup:.2f}x)",
        expected=f"speed-up >= {min_speedup:.2f}x",
        measured=f"{speedup:.2f}x ({fast.median_ms:.3f} ms vs {slow.median_ms:.3f} ms)",
        hint=(hint + note).strip(),
    )


def attempt(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any | None:
    """Call an exercise function; if it is still a stub, say so and return None.

    Example:
        result = checks.attempt(copy_in_chunks, host, dev, 1 << 20)
        if result is not None: checks.check_close(...)
    """
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        print(f"not attempted yet: implement `{fn.__name__}` above, then rerun this cell")
        return None
