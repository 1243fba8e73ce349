"""timeline.png, the zoom, energy.png and compare.png: real PNGs, drawn without pyplot, bounded in size whatever the
config, and matplotlib imported only when something is drawn."""
from __future__ import annotations

import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from archsim.compare import Variant, rows
from archsim.errors import UsageError
from archsim.report.blocks import find_block, model_blocks, op_blocks, scope_block, short_names
from archsim.report.compare import COMPARE_FILES, compare_png, render_compare, stall_shares, write_compare, \
    write_compare_png
from archsim.report.energy_plot import energy_png, energy_unit, figure_unit, group_energy, render_energy, \
    write_energy_png
from archsim.report.timeline import DEFAULT_MAX_ROWS, busy_fraction, merge_grouped, merge_intervals, op_labels, \
    render_timeline, timeline_png, write_timeline_png
from archsim.result import STALL_REASONS, ComponentStat, Result, Span

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_bytes: int = 5_000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes


def scoped(result: Result) -> Result:
    """The synthetic Result with real-looking scopes: each op's scope is its name minus the last part."""
    ops = tuple(replace(r, scope=r.op.rsplit(".", 1)[0] if "." in r.op else r.op) for r in result.ops)
    return replace(result, ops=ops)


def texts(fig: object) -> str:
    """Every figure-level text joined (titles and notes)."""
    return "\n".join(t.get_text() for t in fig.texts)  # type: ignore[attr-defined]


def legend_labels(fig: object, index: int = 0) -> list[str]:
    return [t.get_text() for t in fig.legends[index].get_texts()]  # type: ignore[attr-defined]


# ---- timeline ------------------------------------------------------------------------------------------------------
def test_timeline_png(result: Result, tmp_path: Path) -> None:
    assert_png(write_timeline_png(result, tmp_path / "timeline.png"))
    assert [p.name for p in tmp_path.iterdir()] == ["timeline.png"]


def test_timeline_panels_rows_legend_and_title(result: Result) -> None:
    fig = render_timeline(scoped(result))
    blocks_ax, gantt, util = fig.axes
    labels = [t.get_text().split(" (")[0] for t in gantt.get_yticklabels()]
    assert labels == ["mac0", "mac1", "nl0", "sram", "noc", "dram"]
    assert legend_labels(fig)[:3] == ["conv2d", "linear", "matmul"]  # colours by op kind, fixed order
    assert "requant" in legend_labels(fig)
    assert "tiny_vit" in texts(fig) and "1,000 cycles" in texts(fig)
    band_labels = {t.get_text() for t in blocks_ax.texts}
    assert band_labels & {"blocks.0", "b0"}  # the block band is labelled
    assert util.get_legend() is not None and util.get_ylim()[1] > 100


def test_timeline_colours_by_span_kind(result: Result) -> None:
    fig = render_timeline(result, color_by="span")
    assert legend_labels(fig)[:3] == ["compute", "nonlinear", "requant"]
    assert "dram_write" in legend_labels(fig) and "span kind" in texts(fig)
    with pytest.raises(ValueError, match="color_by"):
        render_timeline(result, color_by="op")  # type: ignore[arg-type]


def test_timeline_draws_all_spans_in_one_collection(result: Result) -> None:
    gantt = render_timeline(result).axes[1]
    polys = [c for c in gantt.collections if c.get_paths() and len(c.get_paths()[0].vertices) >= 4]
    assert len(polys) == 1
    assert 0 < len(polys[0].get_paths()) <= len(result.spans)


def test_timeline_without_pyplot_figures(result: Result) -> None:
    render_timeline(result)
    render_energy(result)
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or pyplot.get_fignums() == []


def test_thousands_of_components_fit_a_bounded_figure(result: Result) -> None:
    channels = [f"dram.ch{i}" for i in range(64)]
    buffers = [f"buf{i}" for i in range(400)]
    comps = {n: ComponentStat(n, "dram", 10 + i) for i, n in enumerate(channels)}
    comps |= {n: ComponentStat(n, "sram", i) for i, n in enumerate(buffers)}
    spans = tuple(Span(n, 10 * i, 10 * i + 50, "head", "dram_read") for i, n in enumerate(channels + buffers))
    big = replace(result, components={**result.components, **comps}, spans=result.spans + spans)
    fig = render_timeline(big)
    gantt = fig.axes[1]
    labels = [t.get_text() for t in gantt.get_yticklabels()]
    assert len(labels) <= DEFAULT_MAX_ROWS
    assert any(label.startswith("dram.ch* x64") for label in labels) and "buf* x400 (avg 20%)" in labels
    assert "mac0 (" in labels[0] and "dram.ch* (64)" in texts(fig)  # engines keep their rows: fewer merges fit
    assert fig.get_figheight() <= 12.5 and fig.get_figwidth() <= 14.0
    distinct = {f"unit_{chr(97 + i // 26)}{chr(97 + i % 26)}": ComponentStat("x", "sram", i) for i in range(300)}
    fig = render_timeline(replace(result, components={**result.components, **distinct}))
    assert len(fig.axes[1].get_yticklabels()) == DEFAULT_MAX_ROWS and "share the last row" in texts(fig)
    assert fig.get_figheight() <= 12.5


def test_max_rows_merges_the_least_busy(result: Result) -> None:
    gantt = render_timeline(result, max_rows=3).axes[1]
    labels = [t.get_text() for t in gantt.get_yticklabels()]
    assert len(labels) == 3 and labels[0].startswith("mac* x2") and labels[-1].startswith("others x3")


def test_timeline_png_is_deterministic_and_picklable(result: Result) -> None:
    assert timeline_png(result) == timeline_png(result)
    assert pickle.loads(pickle.dumps(timeline_png)) is timeline_png  # a worker process can be handed the function


@pytest.mark.parametrize("empty", ["spans", "ops"])
def test_timeline_copes_with_empty_data(result: Result, tmp_path: Path, empty: str) -> None:
    bare = replace(result, spans=(), components={}) if empty == "spans" else replace(result, ops=())
    assert_png(write_timeline_png(bare, tmp_path / "timeline.png"), min_bytes=1000)


# ---- zoom ----------------------------------------------------------------------------------------------------------
def test_zoom_on_a_block_draws_its_tiles_and_op_names(result: Result, tmp_path: Path) -> None:
    fig = render_timeline(scoped(result), zoom="blocks.0")
    ops_ax, gantt = fig.axes
    assert "zoom on blocks.0" in texts(fig)
    names = legend_labels(fig)
    assert {"qkv", "qk", "softmax", "av", "proj", "act"} <= set(names) and "requant steps" in names
    lo, hi = gantt.get_xlim()
    assert lo < 200 and 900 <= hi < 1000  # the block's engines worked from cycle 200 to 900
    tiles = [c for c in gantt.collections if len(c.get_paths())]
    assert sum(len(c.get_paths()) for c in tiles) >= 2 * 6  # each tile on its own, never merged
    assert_png(write_timeline_png(scoped(result), tmp_path / "zoom.png", zoom="blocks.0.attn"))


def test_zoom_on_an_unknown_block_names_the_known_ones(result: Result) -> None:
    with pytest.raises(UsageError, match=r"--zoom: no block or scope 'blocks\.9'.*blocks: patch_embed, blocks\.0"):
        render_timeline(scoped(result), zoom="blocks.9")


# ---- blocks --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("scope", "block"), [
    ("blocks.3.attn.qkv", "blocks.3"),
    ("stages.2.blocks.1.context_module.main.aggreg.0.0", "stages.2.blocks.1"),
    ("head.classifier.0", "head"),
    ("patch_embed.proj", "patch_embed"),
    ("norm", "norm"),
    ("", ""),
])
def test_scope_block(scope: str, block: str) -> None:
    assert scope_block(scope) == block


def test_op_blocks_name_the_modules_between_blocks_and_ops_without_scope(result: Result) -> None:
    base = result.ops[0]
    scopes = ["layers.0.blocks.0.attn", "", "layers.0.blocks.1.mlp", "layers.0.downsample.norm", "layers.1.blocks.0"]
    ops = tuple(replace(base, op=f"op{i}", scope=s) for i, s in enumerate(scopes))
    blocks = op_blocks(replace(result, ops=ops, spans=()))
    assert list(blocks.values()) == ["layers.0.blocks.0", "layers.0.blocks.0", "layers.0.blocks.1",
                                     "layers.0.downsample", "layers.1.blocks.0"]
    assert short_names("stages.2.blocks.1") == ["stages.2.blocks.1", "s2.b1", "s2b1", "b1"]
    assert short_names("blocks.3") == ["blocks.3", "b3"]


def test_blocks_span_their_engines_work(result: Result) -> None:
    blocks = {b.name: b for b in model_blocks(scoped(result))}
    assert (blocks["blocks.0"].start, blocks["blocks.0"].end) == (200, 900)
    assert find_block(scoped(result), "blocks.0.attn").ops == ("blocks.0.attn.qk", "blocks.0.attn.softmax",
                                                                 "blocks.0.attn.av")


def test_op_labels_are_short_and_distinct() -> None:
    ops = ["b.ctx.main.qkv.conv", "b.ctx.add", "b.local.add", "b.ctx.main.divide.0.log2", "b.ctx.main.divide.1.log2",
           "b.ctx.main.proj.conv"]
    assert op_labels(ops, "b") == {"b.ctx.main.qkv.conv": "qkv.conv", "b.ctx.main.proj.conv": "proj.conv",
                                   "b.ctx.add": "ctx.add",
                                   "b.local.add": "local.add", "b.ctx.main.divide.0.log2": "divide.0.log2",
                                   "b.ctx.main.divide.1.log2": "divide.1.log2"}


# ---- interval helpers ----------------------------------------------------------------------------------------------
def test_merge_intervals() -> None:
    starts, ends = np.array([10.0, 0.0, 5.0, 30.0]), np.array([20.0, 6.0, 8.0, 30.0])
    assert merge_intervals(starts, ends) == [(0.0, 8.0), (10.0, 10.0), (30.0, 0.0)]
    assert merge_intervals(starts, ends, min_width=2.0)[-1] == (30.0, 2.0)
    assert merge_intervals(np.array([]), np.array([])) == []


def test_merge_grouped_keeps_groups_apart_and_closes_small_gaps() -> None:
    groups = np.array([1, 0, 1, 0])
    starts, ends = np.array([0.0, 0.0, 11.0, 15.0]), np.array([10.0, 10.0, 20.0, 20.0])
    group, x0, width = merge_grouped(groups, starts, ends, gap=2.0, min_width=0.0)
    assert sorted(zip(group.tolist(), x0.tolist(), width.tolist())) == [(0, 0.0, 10.0), (0, 15.0, 5.0),
                                                                         (1, 0.0, 20.0)]


def test_busy_fraction_is_exact_per_bin() -> None:
    edges = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    fraction = busy_fraction(np.array([0.0, 5.0, 25.0]), np.array([10.0, 8.0, 35.0]), edges)
    assert fraction.tolist() == [1.0, 0.0, 0.5, 0.5]


# ---- energy --------------------------------------------------------------------------------------------------------
def test_energy_png(result: Result, tmp_path: Path) -> None:
    assert_png(write_energy_png(result, tmp_path / "energy.png"))
    assert pickle.loads(pickle.dumps(energy_png)) is energy_png


def test_energy_groups_drop_empty_rows_and_blocks_add_up(result: Result) -> None:
    fig = render_energy(scoped(result))
    groups_ax, blocks_ax = fig.axes
    groups = [t.get_text() for t in groups_ax.get_yticklabels()]
    assert groups == ["DRAM", "SRAM", "MAC engines", "vector engines", "NoC", "whole run"]
    sparse = replace(result, energy_pj_by_component={"dram": 5000.0, "mac0": 100.0, "noc": 0.0})
    assert [t.get_text() for t in render_energy(sparse).axes[0].get_yticklabels()] == ["DRAM", "MAC engines",
                                                                                        "whole run"]
    blocks = [t.get_text() for t in blocks_ax.get_yticklabels()]
    assert blocks == ["patch_embed", "blocks.0", "head"]
    assert "total 10,829.7 pJ" not in texts(fig) and "10.83 nJ total" in texts(fig)  # one unit: nJ below 1 µJ
    assert "no static power" in texts(fig)


def test_energy_split_by_kind_and_static(result: Result) -> None:
    static = {"dram": 700.0, "mac0": 300.0}
    matrix = {"dram": {"conv2d": 3000.0, "linear": 1000.0, "static": 700.0},
              "mac0": {"linear": 4000.0, "static": 300.0}, "noc": {"conv2d": 12.0}}
    split = replace(result, energy_pj_by_component={c: sum(k.values()) for c, k in matrix.items()},
                    energy_pj_by_op_kind={"conv2d": 3012.0, "linear": 5000.0, "static": sum(static.values())})
    object.__setattr__(split, "energy_pj_by_component_kind", matrix)  # the field S may add; read when present
    groups, known = group_energy(split)
    assert known and groups == {"DRAM": {"conv2d": 3000.0, "linear": 1000.0}, "MAC engines": {"linear": 4000.0},
                                "NoC": {"conv2d": 12.0}, "static": {"static": 1000.0}}
    fig = render_energy(split)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["DRAM", "MAC engines", "NoC", "static",
                                                                     "whole run"]
    assert "static" in legend_labels(fig) and "static 1.00 nJ (11.1%" in texts(fig)


def test_energy_copes_with_no_energy(result: Result, tmp_path: Path) -> None:
    bare = replace(result, energy_pj_by_component={}, energy_pj_by_op_kind={},
                   ops=tuple(replace(r, energy_pj=0.0) for r in result.ops))
    assert_png(write_energy_png(bare, tmp_path / "energy.png"), min_bytes=1000)


def test_energy_unit_reads_in_one_to_999() -> None:
    assert energy_unit(250e6).format(250e6) == "250.0 µJ"
    assert energy_unit(250e6).format(1.5e6) == "1.5 µJ"
    assert energy_unit(1.5e9).format(2e7) == "0.020 mJ"
    assert energy_unit(12.0).format(0.5) == "0.50 pJ"
    assert energy_unit(0.0).format(0.0) == "0.000 pJ"


def test_figure_unit_is_micro_joules_unless_tiny() -> None:
    assert figure_unit(1.9e9, 1.2e9).format(1.2e9) == "1,200.0 µJ"
    assert figure_unit(1.9e9, 1.2e9).label == "µJ"
    assert figure_unit(5e5, 5e5).format(5e5) == "500.0 nJ"


# ---- compare -------------------------------------------------------------------------------------------------------
def _with_stalls(result: Result, busy: int) -> Result:
    stalls = {name: {"busy": busy, "dram": 100, "buffer": 50, "producer": 0, "noc": 0,
                     "idle": result.latency_cycles - busy - 150} for name in result.engines}
    return replace(result, stalls=stalls)


def test_compare_png(result: Result, tmp_path: Path) -> None:
    slow = replace(_with_stalls(result, 600), latency_cycles=2000, energy_pj_by_op_kind={"static": 2000.0})
    variants = [("base", _with_stalls(result, 800)), ("a much slower variant with a long label", slow)]
    fig = render_compare(variants)
    latency, energy, stalls = fig.axes
    assert [t.get_text() for t in latency.get_yticklabels()] == ["base", "a much slower variant with a long label"]
    assert any(t.get_text().startswith(" 2.00x") for t in latency.texts)
    assert stalls.get_xlim() == (0.0, 100.0) and not stalls.texts  # both have stall data
    assert legend_labels(fig, 0) == list(STALL_REASONS)
    assert_png(write_compare_png(variants, tmp_path / "compare.png"))
    assert pickle.loads(pickle.dumps(compare_png)) is compare_png


def test_stall_shares_sum_to_one_over_the_mac_engines(result: Result) -> None:
    shares = stall_shares(_with_stalls(result, 700))
    assert set(shares) == set(STALL_REASONS) and sum(shares.values()) == pytest.approx(1.0)
    assert shares["busy"] == pytest.approx(0.7)
    assert stall_shares(result) == {}  # no stall data: nothing to stack, said in the figure
    assert any("no stall data" in t.get_text() for t in render_compare([("x", result)]).axes[2].texts)


def test_write_compare_adds_the_chart_when_given_results(result: Result, tmp_path: Path) -> None:
    table = rows([(Variant("a.yaml"), result), (Variant("b.yaml"), result)])
    write_compare(table, "tiny_vit", tmp_path / "cmp", results=[("a", result), ("b", result)])
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == sorted(COMPARE_FILES)
    write_compare(table, "tiny_vit", tmp_path / "no_png")
    assert "compare.png" not in {p.name for p in (tmp_path / "no_png").iterdir()}


# ---- cost ----------------------------------------------------------------------------------------------------------
def test_importing_the_report_package_does_not_import_matplotlib() -> None:
    code = "import sys, archsim.report, archsim.report.timeline, archsim.report.energy_plot, " \
           "archsim.report.compare; print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_text_reports_do_not_import_numpy() -> None:
    """report.md, summary.json and the console format energy without the plotting stack (a run without plots
    pays for none of it)."""
    code = "import sys, archsim.report.markdown, archsim.report.console, archsim.report.summary; " \
           "print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_failed_render_leaves_no_file(result: Result, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_savefig(self: object, fname: Path, **kwargs: object) -> None:
        Path(fname).write_bytes(PNG_SIGNATURE)  # a partial file, then the failure
        raise OSError("disk full")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        write_timeline_png(result, tmp_path / "timeline.png")
    assert list(tmp_path.iterdir()) == []
