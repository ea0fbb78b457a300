"""The kit's standard plots, in one style.

Each function takes tidy rows (dicts), draws on the given ``Axes`` (or a new
one), returns the ``Axes`` and never calls ``show()`` or changes global style.
Every title carries its provenance: "live · <device>" or "reference data from
<device>, <date>", so a plot of shipped data cannot pass for a measurement.

Taught in: notebooks/ch03_os_containers/03_03_pinned_memory.ipynb
"""

from __future__ import annotations

import textwrap
from typing import Any, Iterable, Sequence

LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v")
_STYLE = {
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.figsize": (7, 4),
    "figure.dpi": 100,
    "legend.frameon": False,
}


def size_label(nbytes: float) -> str:
    """4096 -> "4 KiB", 2**30 -> "1 GiB" (binary units, up to four significant digits)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.4g} {unit}"
    return f"{nbytes:g} B"


def _new_axes(ax):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax
    with plt.rc_context(_STYLE):
        _, ax = plt.subplots(layout="constrained")
    for key in ("top", "right"):
        ax.spines[key].set_visible(False)
    ax.grid(True, alpha=0.3)
    return ax


def _title(ax, title: str, source: str) -> None:
    ax.set_title(f"{title}\n{source}", fontsize=11)


def _group(rows: Iterable[dict[str, Any]], series: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        key = " ".join(str(row[s]) for s in series) or "measured"
        groups.setdefault(key, []).append(row)
    return groups


def bandwidth_vs_size(
    rows: Sequence[dict[str, Any]],
    *,
    series: Sequence[str],
    title: str,
    source: str,
    x: str = "nbytes",
    y: str = "GBps",
    ylabel: str = "bandwidth (GB/s, 10⁹ B/s)",
    ceilings: dict[str, float] | None = None,
    marks: dict[str, float] | None = None,
    ax=None,
):
    """Median rate against size on a log2 axis, with the p20–p80 band shaded.

    Rows need ``x``, ``y`` and, for the band, ``y + "_lo"`` and ``y + "_hi"``.
    ``ceilings`` draws a dashed horizontal line per label; ``marks`` a dotted
    vertical line per label (e.g. cache sizes in bytes).
    """
    ax = _new_axes(ax)
    for i, (name, pts) in enumerate(_group(rows, series).items()):
        pts = sorted(pts, key=lambda r: r[x])
        xs = [r[x] for r in pts]
        (line,) = ax.plot(
            xs, [r[y] for r in pts], LINE_STYLES[i % 4], marker=MARKERS[i % 5], ms=4, label=name
        )
        if all(f"{y}_lo" in r for r in pts):
            ax.fill_between(xs, [r[f"{y}_lo"] for r in pts], [r[f"{y}_hi"] for r in pts],
                            color=line.get_color(), alpha=0.15, lw=0)
    for label, value in (ceilings or {}).items():
        ax.axhline(value, ls="--", lw=1, color="0.3")
        ax.annotate(label, (0.01, value), xycoords=("axes fraction", "data"),
                    va="bottom", fontsize=8, color="0.3")
    for label, value in (marks or {}).items():
        ax.axvline(value, ls=":", lw=1, color="0.5")
        ax.annotate(label, (value, 0.98), xycoords=("data", "axes fraction"),
                    rotation=90, va="top", ha="right", fontsize=8, color="0.4")
    ax.set_xscale("log", base=2)
    ticks = sorted({r[x] for r in rows})
    step = max(1, len(ticks) // 9)
    ax.set_xticks(ticks[::step], [size_label(t) for t in ticks[::step]], rotation=30)
    ax.set_xlabel("size")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=9)
    _title(ax, title, source)
    return ax


def grouped_bars(
    groups: dict[str, dict[str, float]],
    *,
    title: str,
    source: str,
    ylabel: str,
    errors: dict[str, dict[str, tuple[float, float]]] | None = None,
    log: bool = False,
    ax=None,
):
    """Bars for each group (x positions) and each member (colour), with labels.

    ``groups`` maps a group name to {member: value}; ``errors`` gives
    (low, high) per bar, drawn as the p20–p80 whisker.
    """
    import numpy as np

    ax = _new_axes(ax)
    members = list(dict.fromkeys(m for g in groups.values() for m in g))
    width = 0.8 / len(members)
    xs = np.arange(len(groups))
    for i, member in enumerate(members):
        values = [g.get(member, np.nan) for g in groups.values()]
        bars = ax.bar(xs + (i - (len(members) - 1) / 2) * width, values, width, label=member,
                      hatch=("", "//", "..", "xx")[i % 4], edgecolor="white")
        if errors:
            spans = [errors.get(name, {}).get(member) for name in groups]
            lo = [v - s[0] if s else 0 for v, s in zip(values, spans)]
            hi = [s[1] - v if s else 0 for v, s in zip(values, spans)]
            ax.errorbar([b.get_x() + b.get_width() / 2 for b in bars],
                        values, yerr=[lo, hi], fmt="none", ecolor="0.2", capsize=3, lw=1)
        ax.bar_label(bars, fmt="%.3g", fontsize=8, padding=2)
    ax.set_xticks(xs, [textwrap.fill(name, 16) for name in groups])
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=9)
    _title(ax, title, source)
    return ax


def timeline(
    spans: Sequence[dict[str, Any]],
    *,
    title: str,
    source: str,
    lane: str = "lane",
    start: str = "start_us",
    end: str = "end_us",
    color_by: str | None = None,
    xlabel: str = "time (µs)",
    ax=None,
):
    """A Gantt chart: one horizontal bar per span, one row per lane.

    Each span is a dict with ``lane``, ``start`` and ``end`` (same unit, e.g.
    µs from a common origin such as the first event). Lanes appear in the
    order first seen; ``color_by`` names a field that picks the bar colour
    (one legend entry per value). With hundreds of lanes (e.g. one per SM)
    the lane labels are thinned to about twenty.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    ax = _new_axes(ax)
    lanes = list(dict.fromkeys(str(s[lane]) for s in spans))
    row_of = {name: i for i, name in enumerate(lanes)}
    kinds = list(dict.fromkeys(str(s[color_by]) for s in spans)) if color_by else ["span"]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = []
    for k, kind in enumerate(kinds):
        colour = colours[k % len(colours)]
        bars: dict[int, list[tuple[float, float]]] = {}
        for s in spans:
            if not color_by or str(s[color_by]) == kind:
                bars.setdefault(row_of[str(s[lane])], []).append((s[start], s[end] - s[start]))
        for row, xranges in bars.items():
            ax.broken_barh(xranges, (row - 0.4, 0.8), facecolors=colour, edgecolor="none")
        handles.append(Patch(color=colour, label=kind))
    step = max(1, len(lanes) // 20)
    ax.set_yticks(range(0, len(lanes), step), lanes[::step], fontsize=8 if step > 1 else 9)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(lane)
    ax.grid(True, axis="x", alpha=0.3)
    ax.grid(False, axis="y")
    if color_by:
        ax.legend(handles=handles, fontsize=9, loc="upper right")
    _title(ax, title, source)
    return ax
