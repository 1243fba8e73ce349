"""timeline.png: where the time of a whole model goes, readable at a glance, and a zoom into one block.

The whole-model figure has three panels on one time axis: the model's blocks as labelled bands (from the ops'
scopes, see :mod:`archsim.report.blocks`), a Gantt chart with one row per component coloured by op kind (or by span
kind), and the mean busy fraction per time bin of the MAC engines and of the other engines. Spans are merged per
(row, lane, colour) where they touch or lie closer than half a pixel, and every rectangle goes into one
PolyCollection, so a model of ~100k spans draws in a fraction of a second. Rows are capped: beyond ``max_rows`` like
components (``dram.ch0`` .. ``dram.ch63``) share one row, largest families first, then the least busy share an
"others" row, and the figure says so; its height is bounded whatever the config. :func:`render_zoom` draws one block
at tile resolution: every span on its own, coloured by op, with the op names.

matplotlib is imported only when a figure is drawn (see :mod:`archsim.report.figure_io`).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np

from archsim.report.blocks import Block, find_block, model_blocks, short_names
from archsim.report.chrome_trace import component_rows
from archsim.report.figure_io import DPI, new_figure, png_bytes, rectangles, rgba, save_png
from archsim.report.palette import OTHER_COLOR, category_colors, kind_colors
from archsim.result import Result

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ColorBy = Literal["kind", "span"]

FIG_WIDTH_IN = 14.0
ROW_HEIGHT_IN = 0.26
ROW_FILL = 0.8  # fraction of a row's height covered by its lanes
TITLE_IN = 0.62
BLOCKS_IN = 0.42
UTIL_IN = 1.25
BOTTOM_IN = 0.5
GAP_IN = 0.08
LEGEND_ROW_IN = 0.2  # height of one legend entry at 8 pt
CHAR_IN = 0.062  # average width of one 8 pt character
DEFAULT_MAX_ROWS = 32
UTIL_BINS = 240
MAX_LABEL_CHARS = 30
BAND_COLORS = ("#dbe9f6", "#fde3c8")


# ---- data: spans as arrays, rows, merged rectangles -----------------------------------------------------------------
@dataclass(frozen=True)
class SpanArrays:
    """The run's spans as parallel arrays: component, op and category as indices into the name lists."""

    components: list[str]
    ops: list[str]
    categories: list[str]
    component: np.ndarray
    op: np.ndarray
    category: np.ndarray
    start: np.ndarray
    end: np.ndarray
    tile: np.ndarray


def span_arrays(result: Result) -> SpanArrays:
    """Columns of ``result.spans`` (transposed once, so later steps are vectorized)."""
    if not result.spans:
        empty = np.zeros(0, dtype=np.int64)
        return SpanArrays([], [], [], empty, empty, empty, empty.astype(float), empty.astype(float), empty)
    component, start, end, op, category, tile, _ = zip(*result.spans, strict=True)

    def encode(values: Sequence[str]) -> tuple[list[str], np.ndarray]:
        index: dict[str, int] = {}
        codes = [index.setdefault(v, len(index)) for v in values]
        return list(index), np.asarray(codes, dtype=np.int64)

    components, comp_codes = encode(component)
    ops, op_codes = encode(op)
    categories, cat_codes = encode(category)
    return SpanArrays(components, ops, categories, comp_codes, op_codes, cat_codes,
                      np.asarray(start, dtype=float), np.asarray(end, dtype=float), np.asarray(tile, dtype=np.int64))


def engine_extents(result: Result, arrays: SpanArrays) -> dict[str, tuple[int, int]]:
    """Per op, the first and last cycle any engine worked on it (as :func:`archsim.report.blocks.engine_extents`,
    vectorized over the span columns)."""
    engines = np.array([name in result.engines for name in arrays.components], dtype=bool)
    if not engines.any():
        return {}
    mask = engines[arrays.component]
    first = np.full(len(arrays.ops), np.inf)
    last = np.full(len(arrays.ops), -np.inf)
    np.minimum.at(first, arrays.op[mask], arrays.start[mask])
    np.maximum.at(last, arrays.op[mask], arrays.end[mask])
    seen = np.flatnonzero(np.isfinite(first))
    return {arrays.ops[i]: (int(first[i]), int(last[i])) for i in seen.tolist()}


def merge_intervals(starts: np.ndarray, ends: np.ndarray, min_width: float = 0.0) -> list[tuple[float, float]]:
    """Union of [start, end) intervals as (xmin, width) pairs; widths are raised to ``min_width`` to stay visible."""
    groups = np.zeros(starts.size, dtype=np.int64)
    _, x0, width = merge_grouped(groups, starts, ends, gap=0.0, min_width=min_width)
    return list(zip(x0.tolist(), width.tolist(), strict=True))


def merge_grouped(groups: np.ndarray, starts: np.ndarray, ends: np.ndarray, gap: float,
                  min_width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge intervals within each group where they overlap or lie at most ``gap`` apart, all groups at once.

    Returns (group, xmin, width) of the merged intervals; widths are at least ``min_width``. Groups are kept apart
    by shifting each by a multiple of a stride larger than any time, so one sort and one running maximum do all.
    """
    if starts.size == 0:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty
    stride = 2.0 * (float(ends.max()) + gap) + 1.0
    shift = groups.astype(float) * stride
    order = np.lexsort((starts, groups))
    begin = starts[order] + shift[order]
    finish = np.maximum.accumulate(ends[order] + shift[order])
    new_run = np.flatnonzero(begin[1:] > finish[:-1] + gap) + 1
    first = np.concatenate(([0], new_run))
    last = np.concatenate((new_run - 1, [begin.size - 1]))
    group = groups[order][first]
    x0 = begin[first] - group * stride
    width = np.maximum(finish[last] - begin[first], min_width)
    return group, x0, width


@dataclass(frozen=True)
class Rows:
    """The rows drawn: their labels, which row each component goes to, and what was merged (for the figure note)."""

    labels: list[str]
    of_component: dict[str, int]
    notes: list[str]


def family(name: str) -> str:
    """The name with its numbers replaced by ``*``: components of one family (``dram.ch0``, ``dram.ch7``) share it."""
    return re.sub(r"\d+", "*", name)


def plan_rows(result: Result, names: list[str], busy: dict[str, float], max_rows: int) -> Rows:
    """One row per component while they fit in ``max_rows``; else families share a row, then the least busy
    components share one last "others" row. A shared row's busy % is the mean of its members'."""
    latency = max(result.latency_cycles, 1)
    max_rows = max(max_rows, 2)
    groups: list[list[str]] = [[name] for name in names]
    notes: list[str] = []
    if len(groups) > max_rows:  # merge families, the largest first, until the rows fit
        by_family: dict[str, list[str]] = {}
        for name in names:
            by_family.setdefault(family(name), []).append(name)
        merged: list[str] = []
        for key in sorted((k for k, m in by_family.items() if len(m) > 1), key=lambda k: -len(by_family[k])):
            if len(groups) <= max_rows:
                break
            family_set = set(by_family[key])
            first = next(i for i, g in enumerate(groups) if g[0] in family_set)
            groups = [g for i, g in enumerate(groups) if i == first or g[0] not in family_set]
            groups[first] = by_family[key]
            merged.append(f"{key} ({len(family_set)})")
        if merged:
            notes.append("rows shared by like components: " + ", ".join(merged[:4]) + (", ..." if len(merged) > 4
                                                                                           else ""))
    if len(groups) > max_rows:
        load = [sum(busy[m] for m in g) / len(g) for g in groups]
        ranked = sorted(range(len(groups)), key=lambda i: (-load[i], i))
        kept = sorted(ranked[: max_rows - 1])
        rest = [m for i in ranked[max_rows - 1:] for m in groups[i]]
        notes.append(f"{len(rest)} less busy components share the last row")
        groups = [groups[i] for i in kept] + [rest]
    labels, of_component = [], {}
    for index, members in enumerate(groups):
        mean = sum(busy[m] for m in members) / len(members) / latency
        if len(members) == 1:
            name = _clip(members[0])
            labels.append(f"{name} ({100 * mean:.0f}%)")
        else:
            key = family(members[0]) if len({family(m) for m in members}) == 1 else "others"
            labels.append(f"{_clip(key)} x{len(members)} (avg {100 * mean:.0f}%)")
        for member in members:
            of_component[member] = index
    return Rows(labels, of_component, notes)


def _clip(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    """``text`` cut to ``limit`` characters, marking the cut in the middle."""
    if len(text) <= limit:
        return text
    half = (limit - 1) // 2
    return text[:half] + "…" + text[len(text) - (limit - 1 - half):]


def busy_cycles(result: Result, arrays: SpanArrays) -> dict[str, float]:
    """Busy cycles per component: the simulator's figure where it has one, else the union of its spans."""
    out: dict[str, float] = {}
    for name, stat in result.components.items():
        out[name] = float(stat.busy_cycles)
    for name, engine in result.engines.items():
        out.setdefault(name, float(engine.busy_cycles))
    missing = [i for i, name in enumerate(arrays.components) if name not in out]
    for index in missing:
        mask = arrays.component == index
        _, _, width = merge_grouped(np.zeros(int(mask.sum()), dtype=np.int64), arrays.start[mask], arrays.end[mask],
                                    0.0, 0.0)
        out[arrays.components[index]] = float(width.sum())
    return out


def busy_fraction(starts: np.ndarray, ends: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Fraction of each bin [edges[i], edges[i+1]) covered by the union of the intervals (exact)."""
    _, x0, width = merge_grouped(np.zeros(starts.size, dtype=np.int64), starts, ends, 0.0, 0.0)
    if x0.size == 0:
        return np.zeros(edges.size - 1)
    xs = np.column_stack((x0, x0 + width)).ravel()
    ys = np.column_stack((np.cumsum(width) - width, np.cumsum(width))).ravel()
    covered = np.interp(edges, xs, ys, left=0.0, right=float(ys[-1]))
    return np.diff(covered) / np.diff(edges)


# ---- drawing helpers -------------------------------------------------------------------------------------------------
def _fits(label: str, width_px: float, points: float = 8.0) -> bool:
    """Whether ``label`` at ``points`` pt fits in ``width_px`` pixels, with a little air."""
    return (len(label) * CHAR_IN * points / 8.0 * DPI + 4) <= width_px


def _draw_blocks(ax: Axes, blocks: Sequence[Block], px_per_cycle: float) -> None:
    """Blocks as bands in two alternating lanes (consecutive blocks may overlap in a pipeline), each labelled with
    the longest of its names that fits."""
    if not blocks:
        ax.text(0.5, 0.5, "no blocks (ops carry no scope)", transform=ax.transAxes, ha="center", va="center",
                fontsize=8, color="0.4")
    x0 = np.array([b.start for b in blocks], dtype=float)
    width = np.array([max(b.end - b.start, 0) for b in blocks], dtype=float)
    lane = np.arange(len(blocks)) % 2
    width = np.maximum(width, 1.0 / max(px_per_cycle, 1e-30))
    rectangles(ax, x0, width, 1.0 - lane + 0.06, np.full(len(blocks), 0.88), [BAND_COLORS[i] for i in lane],
                edge="0.55")
    for block, left, w, row in zip(blocks, x0, width, lane, strict=True):
        label = next((name for name in short_names(block.name) if _fits(name, w * px_per_cycle, 7)), None)
        if label is not None:
            ax.text(left + w / 2, 1.5 - row, label, ha="center", va="center", fontsize=7, clip_on=True)
    ax.set_ylim(0, 2)
    ax.set_yticks([1.0], ["blocks"], fontsize=8)
    ax.tick_params(axis="y", length=0)
    ax.set_xticks([])  # the time axis is read on the bottom panel; no tick objects to build here


def _block_guides(ax: Axes, blocks: Sequence[Block]) -> None:
    """Faint vertical lines where blocks start, across the whole panel."""
    from matplotlib.collections import LineCollection

    if not blocks:
        return
    xs = np.array([b.start for b in blocks], dtype=float)
    bottom, top = np.column_stack((xs, np.zeros_like(xs))), np.column_stack((xs, np.ones_like(xs)))
    segments: Any = np.stack([bottom, top], axis=1)
    ax.add_collection(LineCollection(segments, colors="0.6", linewidths=0.5, linestyles="dotted",
                                     transform=ax.get_xaxis_transform()), autolim=False)


def _x_axis(ax: Axes, clock_mhz: float) -> None:
    """Cycles on the x axis, in engineering notation, with the clock to read them as time."""
    from matplotlib.ticker import EngFormatter

    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    per_ms = clock_mhz * 1e3
    ax.set_xlabel(f"cycles at {clock_mhz:g} MHz (1 ms = {per_ms:,.0f} cycles)", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)


def _title(result: Result) -> str:
    return (f"{result.model} on {result.config} (batch {result.batch}): {result.latency_cycles:,} cycles = "
            f"{result.latency_ms:.4g} ms @ {result.clock_mhz:g} MHz")


def _legend_width_in(labels: Sequence[str], columns: int) -> float:
    longest = max((len(label) for label in labels), default=4)
    return columns * (0.6 + CHAR_IN * min(longest, MAX_LABEL_CHARS)) + 0.15


# ---- the whole-model timeline ---------------------------------------------------------------------------------------
def render_timeline(result: Result, max_rows: int | None = DEFAULT_MAX_ROWS, color_by: ColorBy = "kind",
                    zoom: str | None = None) -> Figure:
    """The whole-model timeline figure (not saved); ``zoom`` names a block (or scope prefix) to draw instead at tile
    resolution (see :func:`render_zoom`). ``color_by`` is ``kind`` (op kind) or ``span`` (what the span did)."""
    from matplotlib.patches import Patch

    if zoom is not None:
        return render_zoom(result, zoom)
    if color_by not in ("kind", "span"):
        raise ValueError(f"color_by must be 'kind' or 'span', not {color_by!r}")
    arrays = span_arrays(result)
    busy = busy_cycles(result, arrays)
    names = list(dict.fromkeys([*component_rows(result), *arrays.components]))
    for name in names:
        busy.setdefault(name, 0.0)
    rows = plan_rows(result, names, busy, DEFAULT_MAX_ROWS if max_rows is None else max_rows)
    blocks = model_blocks(result, engine_extents(result, arrays))
    end = float(max(result.latency_cycles, int(arrays.end.max()) if arrays.end.size else 0, 1))

    # colours and lanes
    kind_of = {record.op: record.kind for record in result.ops}
    if color_by == "kind":
        span_kinds = [kind_of.get(op, "other") for op in arrays.ops]
        colors = kind_colors(span_kinds)
        color_names = list(colors)
        color_code = np.array([color_names.index(k) for k in span_kinds], dtype=np.int64)[arrays.op] \
            if arrays.ops else np.zeros(0, dtype=np.int64)
        lane_code = np.zeros(arrays.start.size, dtype=np.int64)
        lanes_per_row = np.ones(len(rows.labels), dtype=np.int64)
        legend_title = "op kind"
    else:
        colors = category_colors(arrays.categories)
        color_names = list(colors)
        order = np.array([color_names.index(c) for c in arrays.categories], dtype=np.int64)
        color_code = order[arrays.category] if arrays.categories else np.zeros(0, dtype=np.int64)
        legend_title = "span kind"
        lane_code, lanes_per_row = _category_lanes(arrays, rows, color_code, len(color_names))

    # figure geometry (inches), fixed so no layout engine runs
    legend_labels = list(color_names)
    legend_cols = 1 if len(legend_labels) <= 18 else 2
    right_in = max(_legend_width_in(legend_labels, legend_cols), 1.8)
    left_in = min(max(CHAR_IN * max((len(label) for label in rows.labels), default=8) + 0.45, 1.3), 2.8)
    gantt_in = max(ROW_HEIGHT_IN * len(rows.labels), 1.2,
                   LEGEND_ROW_IN * -(-len(legend_labels) // legend_cols) + 0.3 - BLOCKS_IN)
    title_in = TITLE_IN + (0.17 if rows.notes else 0.0)
    height_in = title_in + BLOCKS_IN + GAP_IN + gantt_in + 2 * GAP_IN + UTIL_IN + BOTTOM_IN
    fig = new_figure(FIG_WIDTH_IN, height_in)
    plot_w_in = FIG_WIDTH_IN - left_in - right_in
    px_per_cycle = plot_w_in * DPI / end

    def axes_at(top_in: float, h_in: float) -> Axes:
        return fig.add_axes((left_in / FIG_WIDTH_IN, 1 - (top_in + h_in) / height_in, plot_w_in / FIG_WIDTH_IN,
                             h_in / height_in))

    ax_blocks = axes_at(title_in, BLOCKS_IN)
    ax = axes_at(title_in + BLOCKS_IN + GAP_IN, gantt_in)
    ax_util = axes_at(title_in + BLOCKS_IN + GAP_IN + gantt_in + 2 * GAP_IN, UTIL_IN)
    for axis in (ax_blocks, ax, ax_util):
        axis.set_xlim(0, end)

    # gantt: one group per (row, lane, colour), merged below half a pixel, one collection for all
    row_code = np.array([rows.of_component[name] for name in arrays.components], dtype=np.int64)[arrays.component] \
        if arrays.components else np.zeros(0, dtype=np.int64)
    n_colors, max_lanes = max(len(color_names), 1), int(lanes_per_row.max(initial=1))
    groups = (row_code * max_lanes + lane_code) * n_colors + color_code
    group, x0, width = merge_grouped(groups, arrays.start, arrays.end, gap=0.5 / px_per_cycle,
                                     min_width=1.0 / px_per_cycle)
    g_color = group % n_colors
    g_lane = (group // n_colors) % max_lanes
    g_row = group // (n_colors * max_lanes)
    lane_h = ROW_FILL / lanes_per_row[g_row] if g_row.size else np.zeros(0)
    y0 = g_row - ROW_FILL / 2 + g_lane * lane_h
    palette = rgba([colors[name] for name in color_names]) if color_names else np.zeros((0, 4))
    rectangles(ax, x0, width, y0, lane_h, palette[g_color])
    ax.set_yticks(range(len(rows.labels)), rows.labels, fontsize=8)
    ax.set_ylim(max(len(rows.labels), 1) - 0.5, -0.5)
    ax.set_ylabel("component (busy % of run)", fontsize=9)
    ax.set_xticks([])  # block guides mark the time; ticks and labels are on the bottom panel
    _block_guides(ax, blocks)
    if not result.spans:
        ax.text(0.5, 0.5, "no spans recorded", transform=ax.transAxes, ha="center", va="center")
    handles = [Patch(facecolor=colors[name], label=name) for name in color_names]
    if handles:
        fig.legend(handles=handles, loc="upper left", fontsize=8, title=legend_title, title_fontsize=8,
                   ncols=legend_cols, frameon=False,
                   bbox_to_anchor=((left_in + plot_w_in + 0.1) / FIG_WIDTH_IN,
                                   1 - (title_in + BLOCKS_IN + GAP_IN) / height_in))

    _draw_blocks(ax_blocks, blocks, px_per_cycle)
    _draw_utilization(ax_util, result, arrays, end)
    _block_guides(ax_util, blocks)
    _x_axis(ax_util, result.clock_mhz)
    title = _title(result)
    fig.text(0.5, 1 - 0.12 / height_in, title, ha="center", va="top", fontsize=10)
    subtitle = f"colour: {legend_title}; bands: blocks (op scopes); bottom: engine busy per time bin"
    if rows.notes:
        subtitle += "\n" + "; ".join(rows.notes)
    fig.text(0.5, 1 - 0.34 / height_in, subtitle, ha="center", va="top", fontsize=8, color="0.3")
    return fig


def _category_lanes(arrays: SpanArrays, rows: Rows, color_code: np.ndarray,
                    n_colors: int) -> tuple[np.ndarray, np.ndarray]:
    """Span mode: a row with several span categories gets one thin lane per category (in colour order)."""
    row_code = np.array([rows.of_component[name] for name in arrays.components], dtype=np.int64)[arrays.component] \
        if arrays.components else np.zeros(0, dtype=np.int64)
    present = np.zeros((len(rows.labels), n_colors), dtype=bool)
    present[row_code, color_code] = True
    lane_of = np.cumsum(present, axis=1) - 1
    lanes_per_row = np.maximum(present.sum(axis=1), 1)
    lane_code = lane_of[row_code, color_code] if row_code.size else np.zeros(0, dtype=np.int64)
    return lane_code, lanes_per_row


def _draw_utilization(ax: Axes, result: Result, arrays: SpanArrays, end: float) -> None:
    """Mean busy fraction per time bin of the MAC engines (filled) and of the other engines (a line)."""
    edges = np.linspace(0.0, end, UTIL_BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    present = {name: i for i, name in enumerate(arrays.components)}
    mac = [n for n, s in result.engines.items() if s.peak_macs_per_cycle and not s.adder_tree]
    other = [n for n in result.engines if n not in mac]
    drawn = 0
    for label, members, filled in (("MAC", mac, True), ("others", other, False)):
        if not members:
            continue
        total = np.zeros(UTIL_BINS)
        for name in members:
            if name in present:
                mask = arrays.component == present[name]
                total += busy_fraction(arrays.start[mask], arrays.end[mask], edges)
        mean = 100 * total / len(members)
        legend = f"{label} ({members[0] if len(members) == 1 else len(members)})"
        if filled:
            ax.fill_between(centres, 0, mean, step="mid", color="#1f77b4", alpha=0.35, linewidth=0)
            ax.step(centres, mean, where="mid", color="#1f77b4", linewidth=1.0, label=legend)
        else:
            ax.step(centres, mean, where="mid", color="#ff7f0e", linewidth=1.0, label=legend)
        drawn += 1
    ax.set_ylim(0, 105)
    ax.set_yticks([0, 50, 100], ["0", "50", "100"], fontsize=8)
    ax.set_ylabel(f"mean busy %\n(bins of {end / UTIL_BINS:,.0f} cyc)", fontsize=8)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.02), fontsize=8, frameon=False, title="engines",
                  title_fontsize=8)


# ---- the zoom into one block -----------------------------------------------------------------------------------------
OPS_LANES = 3
OPS_LANE_IN = 0.2


def render_zoom(result: Result, block: str, max_rows: int | None = DEFAULT_MAX_ROWS) -> Figure:
    """One block (or scope prefix) at tile resolution: a strip of the block's ops (each from the first to the last
    cycle an engine worked on it, named where the name fits), then every span of the window on its own (a thin
    white edge between tiles wide enough to show one), one colour per op (the requant steps share one), lanes by
    span kind; spans of other blocks' ops in the window in light grey. Raises UsageError naming the known blocks
    when ``block`` matches nothing."""
    from matplotlib.patches import Patch

    chosen = find_block(result, block)
    arrays = span_arrays(result)
    margin = max((chosen.end - chosen.start) * 0.02, 1.0)
    lo, hi = chosen.start - margin, chosen.end + margin
    keep = np.flatnonzero((arrays.end > lo) & (arrays.start < hi))
    selected = set(chosen.ops)
    op_selected = np.array([op in selected for op in arrays.ops], dtype=bool)
    mine = keep[op_selected[arrays.op[keep]]] if keep.size else keep
    order = {name: i for i, name in enumerate(component_rows(result))}
    names = sorted({arrays.components[i] for i in arrays.component[mine].tolist()},
                   key=lambda n: (order.get(n, len(order)), n))
    code_of = {name: i for i, name in enumerate(arrays.components)}
    keep = keep[np.isin(arrays.component[keep], [code_of[n] for n in names])]
    busy = {}
    for name in names:
        mask = keep[arrays.component[keep] == code_of[name]]
        _, _, width = merge_grouped(np.zeros(mask.size, dtype=np.int64), np.clip(arrays.start[mask], lo, hi),
                                    np.clip(arrays.end[mask], lo, hi), 0.0, 0.0)
        busy[name] = float(width.sum())
    rows = plan_rows(replace_latency(result, int(hi - lo)), names, busy,
                     DEFAULT_MAX_ROWS if max_rows is None else max_rows)

    kind_of = {record.op: record.kind for record in result.ops}
    shown_ops = [op for op in chosen.ops if kind_of.get(op) != "requant"]
    has_requant = len(shown_ops) < len(chosen.ops)
    palette = _op_palette(len(shown_ops))
    op_color = {op: palette[i] for i, op in enumerate(shown_ops)}
    requant_color = "#7f7f7f"
    span_color = [op_color.get(op, requant_color if op in selected else OTHER_COLOR) for op in arrays.ops]
    names_of = op_labels(shown_ops, chosen.name)
    legend_labels = [names_of[op] for op in shown_ops]
    legend_labels += (["requant steps"] if has_requant else []) + ["other blocks' ops"]

    # geometry
    legend_cols = 1 if len(legend_labels) <= 32 else 2
    right_in = max(_legend_width_in(legend_labels, legend_cols), 1.6)
    left_in = min(max(CHAR_IN * max((len(label) for label in rows.labels), default=8) + 0.45, 1.3), 2.8)
    ops_in = OPS_LANES * OPS_LANE_IN + 0.1
    legend_in = LEGEND_ROW_IN * -(-(len(legend_labels) + 1) // legend_cols) + 0.2
    gantt_in = max(ROW_HEIGHT_IN * 1.4 * len(rows.labels), 1.5, legend_in - ops_in - GAP_IN)
    title_in = TITLE_IN + (0.17 if rows.notes else 0.0)
    height_in = title_in + ops_in + GAP_IN + gantt_in + BOTTOM_IN
    fig = new_figure(FIG_WIDTH_IN, height_in)
    plot_w_in = FIG_WIDTH_IN - left_in - right_in
    px_per_cycle = plot_w_in * DPI / (hi - lo)

    def axes_at(top_in: float, h_in: float) -> Axes:
        return fig.add_axes((left_in / FIG_WIDTH_IN, 1 - (top_in + h_in) / height_in, plot_w_in / FIG_WIDTH_IN,
                             h_in / height_in))

    ax_ops = axes_at(title_in, ops_in)
    ax = axes_at(title_in + ops_in + GAP_IN, gantt_in)
    for axis in (ax_ops, ax):
        axis.set_xlim(lo, hi)

    # the ops strip
    extents = _op_extents(result, chosen, arrays)
    for index, op in enumerate(shown_ops):
        if op not in extents:
            continue
        start, end = extents[op]
        lane = index % OPS_LANES
        bar_w = max(end - start, 1.0 / px_per_cycle)
        rectangles(ax_ops, np.array([start]), np.array([bar_w]), np.array([OPS_LANES - 1 - lane + 0.1]),
                   np.array([0.8]), op_color[op])
        label = legend_labels[index]
        visible = max(min(end, hi) - max(start, lo), 0.0) * px_per_cycle
        fitting = next((t for t in (label, label.split(".")[0]) if _fits(t, visible, 7)), None)
        if fitting is not None:
            ax_ops.text((max(start, lo) + min(end, hi)) / 2, OPS_LANES - 1 - lane + 0.5, fitting, ha="center",
                        va="center", fontsize=7, clip_on=True, color=_text_color(op_color[op]))
    ax_ops.set_ylim(0, OPS_LANES)
    ax_ops.set_yticks([OPS_LANES / 2], ["ops"], fontsize=8)
    ax_ops.tick_params(axis="y", length=0)
    ax_ops.set_xticks([])

    # every span of the window: lanes by span kind within a row
    row_code = np.array([rows.of_component[arrays.components[c]] for c in arrays.component[keep].tolist()],
                        dtype=np.int64)
    cats = arrays.category[keep]
    present = np.zeros((max(len(rows.labels), 1), max(len(arrays.categories), 1)), dtype=bool)
    present[row_code, cats] = True
    lane_of = np.cumsum(present, axis=1) - 1
    lanes_per_row = np.maximum(present.sum(axis=1), 1)
    lane_h = ROW_FILL / lanes_per_row[row_code]
    y0 = row_code - ROW_FILL / 2 + lane_of[row_code, cats] * lane_h
    x0 = arrays.start[keep]
    width = np.maximum(arrays.end[keep] - x0, 1.0 / px_per_cycle)
    colors = np.array([span_color[i] for i in arrays.op[keep].tolist()], dtype=object)
    grey = colors == OTHER_COLOR
    wide = width * px_per_cycle >= 4.0
    for mask, edge in ((grey, None), (~grey & ~wide, None), (~grey & wide, "white")):  # other ops underneath
        rectangles(ax, x0[mask], width[mask], y0[mask], lane_h[mask], list(colors[mask]), edge=edge)
    ax.set_yticks(range(len(rows.labels)), rows.labels, fontsize=8)
    ax.set_ylim(max(len(rows.labels), 1) - 0.5, -0.5)
    ax.set_ylabel("component (busy % of window)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    _x_axis(ax, result.clock_mhz)

    handles = [Patch(facecolor=op_color[op], label=label) for op, label in zip(shown_ops, legend_labels)]
    if has_requant:
        handles.append(Patch(facecolor=requant_color, label="requant steps"))
    handles.append(Patch(facecolor=OTHER_COLOR, label="other blocks' ops"))
    fig.legend(handles=handles, loc="upper left", fontsize=8, ncols=legend_cols, frameon=False, title="op",
               title_fontsize=8, bbox_to_anchor=((left_in + plot_w_in + 0.1) / FIG_WIDTH_IN, 1 - title_in / height_in))
    duration_ms = (chosen.end - chosen.start) / (result.clock_mhz * 1e3)
    fig.text(0.5, 1 - 0.12 / height_in, _title(result), ha="center", va="top", fontsize=10)
    subtitle = (f"zoom on {chosen.name}: cycles {chosen.start:,} to {chosen.end:,} ({duration_ms:.4g} ms), "
                f"{len(chosen.ops)} ops; one box per span and tile, lanes by span kind")
    if rows.notes:
        subtitle += "\n" + "; ".join(rows.notes)
    fig.text(0.5, 1 - 0.34 / height_in, subtitle, ha="center", va="top", fontsize=8, color="0.3")
    return fig


def replace_latency(result: Result, cycles: int) -> Result:
    """``result`` with another latency (the busy % of a zoom's rows are of its window)."""
    from dataclasses import replace

    return replace(result, latency_cycles=max(cycles, 1))


def _op_extents(result: Result, block: Block, arrays: SpanArrays) -> dict[str, tuple[float, float]]:
    """Per op of the block, the first and last cycle an engine worked on it (its window if no engine did)."""
    engines = np.array([name in result.engines for name in arrays.components], dtype=bool)
    on_engine = engines[arrays.component] if arrays.components else np.zeros(0, dtype=bool)
    code = {op: i for i, op in enumerate(arrays.ops)}
    windows = {r.op: (float(r.start_cycle), float(r.end_cycle)) for r in result.ops}
    out: dict[str, tuple[float, float]] = {}
    wanted = np.array([code[op] for op in block.ops if op in code], dtype=np.int64)
    mask = on_engine & np.isin(arrays.op, wanted)
    for op_code in np.unique(arrays.op[mask]).tolist():
        sel = mask & (arrays.op == op_code)
        out[arrays.ops[op_code]] = (float(arrays.start[sel].min()), float(arrays.end[sel].max()))
    for op in block.ops:
        if op not in out and op in windows and windows[op][1] > windows[op][0]:
            out[op] = windows[op]
    return out


def _text_color(background: str) -> str:
    """Black on light colours, white on dark ones (by relative luminance of a ``#rrggbb`` colour)."""
    r, g, b = (int(background[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def op_labels(ops: Sequence[str], block: str) -> dict[str, str]:
    """Short, distinct names for a block's ops: the shortest tail of the name (block prefix and ``main`` dropped)
    that no other op of the block shares and that starts with a word, not an index."""
    prefix = block + "."
    parts = {op: [t for t in (op[len(prefix):] if op.startswith(prefix) else op).split(".") if t != "main"] or [op]
             for op in ops}
    out: dict[str, str] = {}
    for op, tokens in parts.items():
        label = ".".join(tokens)
        for size in range(1, len(tokens) + 1):
            tail = tokens[-size:]
            if tail[0].isdigit():
                continue
            if sum(1 for other in parts.values() if other[-size:] == tail) == 1:
                label = ".".join(tail)
                break
        out[op] = _clip(label, MAX_LABEL_CHARS)
    return out


def _op_palette(count: int) -> list[str]:
    """``count`` distinct colours (tab20 then tab20b; they repeat beyond 40)."""
    tab20 = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd",
             "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5"]
    tab20b = ["#393b79", "#5254a3", "#6b6ecf", "#9c9ede", "#637939", "#8ca252", "#b5cf6b", "#cedb9c", "#8c6d31",
              "#bd9e39", "#e7ba52", "#e7cb94", "#843c39", "#ad494a", "#d6616b", "#e7969c", "#7b4173", "#a55194",
              "#ce6dbd", "#de9ed6"]
    colors = tab20 + tab20b
    return [colors[i % len(colors)] for i in range(count)]


# ---- files -----------------------------------------------------------------------------------------------------------
def timeline_png(result: Result, max_rows: int | None = DEFAULT_MAX_ROWS, color_by: ColorBy = "kind",
                 zoom: str | None = None) -> bytes:
    """The timeline (or a zoom, see :func:`render_timeline`) as PNG bytes; picklable for a worker process."""
    return png_bytes(render_timeline(result, max_rows, color_by, zoom))


def write_timeline_png(result: Result, path: str | os.PathLike[str], max_rows: int | None = DEFAULT_MAX_ROWS,
                       color_by: ColorBy = "kind", zoom: str | None = None) -> Path:
    """Render the timeline (or a zoom) and save it atomically as a PNG at ``path``."""
    return save_png(render_timeline(result, max_rows, color_by, zoom), path)
