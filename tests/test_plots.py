"""Tests of perflab.plots: size labels, bandwidth curves and grouped bars (Agg backend)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402

from perflab import plots  # noqa: E402

SOURCE = "reference data from NVIDIA H100, 2026-11-20"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("nbytes, text", [(4096, "4 KiB"), (2**30, "1 GiB"), (1536 * 2**20, "1.5 GiB"), (100, "100 B")])
def test_size_label(nbytes, text):
    assert plots.size_label(nbytes) == text


def test_size_label_near_the_next_unit():
    assert plots.size_label(1000 * 2**20) == "1000 MiB"


def rows(band=True):
    out = []
    for memory, scale in (("pageable", 1.0), ("pinned", 2.0)):
        for nbytes in (4096, 2**20, 2**26):
            row = {"memory": memory, "nbytes": nbytes, "GBps": scale * nbytes / 2**26}
            if band:
                row |= {"GBps_lo": 0.9 * row["GBps"], "GBps_hi": 1.1 * row["GBps"]}
            out.append(row)
    return out


def test_bandwidth_vs_size_lines_band_title_ceilings():
    ax = plots.bandwidth_vs_size(rows(), series=["memory"], title="H2D copy", source=SOURCE,
                                 ceilings={"PCIe gen 5 x16": 63.0})
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["pageable", "pinned"]
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2
    assert ax.get_title() == f"H2D copy\n{SOURCE}"
    assert any(list(line.get_ydata()) == [63.0, 63.0] for line in ax.get_lines())
    assert "PCIe gen 5 x16" in [t.get_text() for t in ax.texts]
    assert ax.get_xscale() == "log"


def test_bandwidth_vs_size_without_band():
    ax = plots.bandwidth_vs_size(rows(band=False), series=["memory"], title="t", source=SOURCE)
    assert len(ax.get_lines()) == 2 and not ax.collections


def test_grouped_bars():
    groups = {"4 KiB": {"pageable": 1.0, "pinned": 2.0}, "1 MiB": {"pageable": 3.0, "pinned": 6.0}}
    errors = {"4 KiB": {"pinned": (1.8, 2.2)}}
    ax = plots.grouped_bars(groups, title="copies", source=SOURCE, ylabel="GB/s", errors=errors, log=True)
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [b.get_label() for b in bars] == ["pageable", "pinned"]
    assert [[p.get_height() for p in b] for b in bars] == [[1.0, 3.0], [2.0, 6.0]]
    assert SOURCE in ax.get_title() and ax.get_yscale() == "log"


def test_timeline_draws_one_bar_per_span_in_lane_order():
    spans = [
        {"lane": "SM 0", "start_us": 0.0, "end_us": 5.0, "kind": "static"},
        {"lane": "SM 1", "start_us": 1.0, "end_us": 2.0, "kind": "static"},
        {"lane": "SM 0", "start_us": 6.0, "end_us": 9.0, "kind": "dynamic"},
    ]
    ax = plots.timeline(spans, title="per-SM work", source=SOURCE, color_by="kind")
    boxes = [p.get_paths() for c in ax.collections for p in [c]]
    assert sum(len(b) for b in boxes) == 3
    assert [t.get_text() for t in ax.get_yticklabels()] == ["SM 0", "SM 1"]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["static", "dynamic"]
    bar_colours = [tuple(c.get_facecolor()[0]) for c in ax.collections]
    legend_colours = [tuple(h.get_facecolor()) for h in legend.legend_handles]
    assert legend_colours[0] != legend_colours[1]
    assert set(legend_colours) == set(bar_colours)
    assert SOURCE in ax.get_title()


def test_timeline_thins_labels_for_many_lanes():
    spans = [{"lane": f"SM {i}", "start_us": 0, "end_us": i + 1} for i in range(132)]
    ax = plots.timeline(spans, title="t", source=SOURCE)
    assert len(ax.get_yticks()) <= 22
    assert ax.get_legend() is None
