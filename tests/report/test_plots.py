"""timeline.png and energy.png: real PNG files, drawn without pyplot, fast on a whole model's worth of spans."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from archsim.report.energy_plot import energy_unit, render_energy, write_energy_png
from archsim.report.timeline import merge_intervals, render_timeline, write_timeline_png
from archsim.result import Result, Span

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_bytes: int = 10_000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes


def test_timeline_png(result: Result, tmp_path: Path) -> None:
    assert_png(write_timeline_png(result, tmp_path / "timeline.png"))
    assert [p.name for p in tmp_path.iterdir()] == ["timeline.png"]


def test_timeline_rows_legend_and_title(result: Result) -> None:
    fig = render_timeline(result)
    assert isinstance(fig.canvas, FigureCanvasAgg)
    ax = fig.axes[0]
    labels = [t.get_text().split(" (")[0] for t in ax.get_yticklabels()]
    assert labels == ["mac0", "mac1", "nl0", "sram", "noc", "dram"]
    legend_box = ax.get_legend()
    assert legend_box is not None
    legend = [t.get_text() for t in legend_box.get_texts()]
    assert legend[:3] == ["compute", "nonlinear", "requant"] and "dram_write" in legend
    assert "tiny_vit" in ax.get_title() and "1,000 cycles" in ax.get_title()


def test_timeline_max_rows_keeps_the_busiest(result: Result) -> None:
    ax = render_timeline(result, max_rows=2).axes[0]
    assert [t.get_text().split(" (")[0] for t in ax.get_yticklabels()] == ["mac0", "dram"]
    assert "4 less busy components not shown" in ax.get_title()


def test_timeline_without_pyplot_figures(result: Result) -> None:
    render_timeline(result)
    render_energy(result)
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or pyplot.get_fignums() == []


def test_timeline_is_fast_with_a_whole_model(result: Result, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    components = [f"pe{i}" for i in range(12)] + ["sram", "dram"]
    categories = ["compute", "buffer_read", "buffer_write", "dram_read", "dram_write"]
    starts = np.sort(rng.integers(0, 5_000_000, size=50_000))
    spans = tuple(
        Span(components[i % len(components)], int(s), int(s) + int(rng.integers(1, 400)), f"op{i // 50}",
             categories[i % len(categories)], tile=i % 7, nbytes=64)
        for i, s in enumerate(starts)
    )
    big = replace(result, spans=spans, latency_cycles=5_000_400)
    # what keeps a whole model cheap to draw: one broken_barh per row and category, never one artist per span
    ax = render_timeline(big).axes[0]
    assert len(ax.collections) <= len(components) * len(categories)
    assert sum(len(c.get_paths()) for c in ax.collections) <= len(spans)
    write_timeline_png(big, tmp_path / "timeline.png")
    assert_png(tmp_path / "timeline.png")


def test_merge_intervals() -> None:
    starts, ends = np.array([10.0, 0.0, 5.0, 30.0]), np.array([20.0, 6.0, 8.0, 30.0])
    assert merge_intervals(starts, ends) == [(0.0, 8.0), (10.0, 10.0), (30.0, 0.0)]
    assert merge_intervals(starts, ends, min_width=2.0)[-1] == (30.0, 2.0)
    assert merge_intervals(np.array([]), np.array([])) == []


def test_energy_png(result: Result, tmp_path: Path) -> None:
    assert_png(write_energy_png(result, tmp_path / "energy.png"))


def test_energy_panels_and_labels(result: Result) -> None:
    fig = render_energy(result)
    by_component, by_kind = fig.axes
    assert by_component.get_yticklabels()[0].get_text() == "dram"  # largest on top
    labels = [t.get_text() for t in by_component.texts]
    assert "5.000 nJ (46.2%)" in labels  # one unit for the figure, chosen by its largest bar
    assert "total 10.829 nJ" in fig.get_suptitle() and "5.414 nJ per inference" in fig.get_suptitle()
    assert {t.get_text() for t in by_kind.get_yticklabels()} == set(result.energy_pj_by_op_kind)


@pytest.mark.parametrize("empty", ["energy", "spans"])
def test_plots_cope_with_empty_data(result: Result, tmp_path: Path, empty: str) -> None:
    if empty == "energy":
        bare = replace(result, energy_pj_by_component={}, energy_pj_by_op_kind={})
        assert_png(write_energy_png(bare, tmp_path / "energy.png"), min_bytes=1000)
    else:
        bare = replace(result, spans=(), components={})
        assert_png(write_timeline_png(bare, tmp_path / "timeline.png"), min_bytes=1000)


def test_energy_unit_reads_in_one_to_999() -> None:
    assert energy_unit(250e6).format(250e6) == "250.0 µJ"
    assert energy_unit(250e6).format(1.5e6) == "1.5 µJ"
    assert energy_unit(1.5e9).format(2e7) == "0.020 mJ"
    assert energy_unit(12.0).format(0.5) == "0.50 pJ"
    assert energy_unit(0.0).format(0.0) == "0.000 pJ"


def test_failed_render_leaves_no_file(result: Result, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_savefig(self: object, fname: Path, **kwargs: object) -> None:
        Path(fname).write_bytes(PNG_SIGNATURE)  # a partial file, then the failure
        raise OSError("disk full")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        write_timeline_png(result, tmp_path / "timeline.png")
    assert list(tmp_path.iterdir()) == []
