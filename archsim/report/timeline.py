"""timeline.png: a Gantt chart of every component's busy spans, to see at a glance where the time goes.

One row per component; a row with several span categories is split into one thin lane per category so that,
e.g., overlapping DRAM reads and writes both stay visible. Spans of one (component, category) are merged where
they touch or overlap and drawn with a single ``broken_barh`` call, so a whole model (~50k spans) renders fast.
The figure is drawn on a private Agg canvas and never touches pyplot's global state or backend.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter
from numpy.typing import ArrayLike

from archsim.report.chrome_trace import component_rows
from archsim.report.summary import atomic_path, safe_ratio
from archsim.result import Result

#: Display order and colours of the span categories the simulator emits; others get colours from ``EXTRA_COLORS``.
CATEGORY_COLORS: dict[str, str] = {
    "compute": "tab:blue",
    "nonlinear": "tab:cyan",
    "requant": "tab:pink",
    "buffer_read": "tab:green",
    "buffer_write": "tab:olive",
    "dram_read": "tab:orange",
    "dram_write": "tab:red",
    "noc": "tab:purple",
}
EXTRA_COLORS: tuple[str, ...] = ("tab:brown", "tab:gray", "gold", "teal", "navy", "maroon", "lime", "black")

FIG_WIDTH_IN = 14.0
DPI = 110
ROW_HEIGHT_IN = 0.32
ROW_FILL = 0.8  # fraction of a row's height covered by its lanes

Intervals = list[tuple[float, float]]


def category_colors(categories: Sequence[str]) -> dict[str, str]:
    """Colour per category: fixed for known ones, then a stable palette for the rest (sorted by name)."""
    colors = {name: CATEGORY_COLORS[name] for name in CATEGORY_COLORS if name in categories}
    others = sorted(set(categories) - set(CATEGORY_COLORS))
    for index, name in enumerate(others):
        colors[name] = EXTRA_COLORS[index % len(EXTRA_COLORS)]
    return colors


def merge_intervals(starts: np.ndarray, ends: np.ndarray, min_width: float = 0.0) -> Intervals:
    """Union of [start, end) intervals as (xmin, width) pairs; widths are raised to ``min_width`` to stay visible."""
    if starts.size == 0:
        return []
    order = np.argsort(starts, kind="stable")
    begin, finish = starts[order], np.maximum.accumulate(ends[order])
    new_run = np.flatnonzero(begin[1:] > finish[:-1]) + 1
    first = np.concatenate(([0], new_run))
    last = np.concatenate((new_run - 1, [begin.size - 1]))
    widths = np.maximum(finish[last] - begin[first], min_width)
    return list(zip(begin[first].tolist(), widths.tolist(), strict=True))


def collect_spans(result: Result) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Span start and end arrays per component, then per category."""
    raw: dict[str, dict[str, tuple[list[int], list[int]]]] = defaultdict(dict)
    for span in result.spans:
        starts, ends = raw[span.component].setdefault(span.category, ([], []))
        starts.append(span.start)
        ends.append(span.end)
    return {
        component: {cat: (np.asarray(s, dtype=float), np.asarray(e, dtype=float)) for cat, (s, e) in cats.items()}
        for component, cats in raw.items()
    }


def busy_cycles(result: Result, component: str, spans: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """Busy cycles of a component: the simulator's figure if it has one, else the union of its spans."""
    stat = result.components.get(component)
    if stat is not None:
        return float(stat.busy_cycles)
    if not spans:
        return 0.0
    starts = np.concatenate([s for s, _ in spans.values()])
    ends = np.concatenate([e for _, e in spans.values()])
    return float(sum(width for _, width in merge_intervals(starts, ends)))


def pick_rows(rows: list[str], busy: dict[str, float], max_rows: int | None) -> list[str]:
    """The ``max_rows`` busiest rows (all if None), kept in display order."""
    if max_rows is None or len(rows) <= max_rows:
        return rows
    ranked = sorted(range(len(rows)), key=lambda i: (-busy[rows[i]], i))[: max(max_rows, 0)]
    return [rows[i] for i in sorted(ranked)]


def _title(result: Result, hidden: int) -> str:
    """Figure title: what ran, and how long it took."""
    title = (
        f"{result.model} on {result.config} (batch {result.batch}): {result.latency_cycles:,} cycles = "
        f"{result.latency_ms:.4g} ms @ {result.clock_mhz:g} MHz"
    )
    return title + (f"\n{hidden} less busy components not shown" if hidden else "")


def _add_ms_axis(ax: Axes, clock_mhz: float) -> None:
    """Secondary x axis on top, in milliseconds."""
    cycles_per_ms = clock_mhz * 1e3

    def to_ms(cycles: ArrayLike) -> ArrayLike:
        return np.asarray(cycles, dtype=float) / cycles_per_ms

    def to_cycles(ms: ArrayLike) -> ArrayLike:
        return np.asarray(ms, dtype=float) * cycles_per_ms

    top = ax.secondary_xaxis("top", functions=(to_ms, to_cycles))
    top.set_xlabel("time (ms)")


def render_timeline(result: Result, max_rows: int | None = None) -> Figure:
    """Build the Gantt figure (not saved); ``max_rows`` keeps only the busiest components."""
    spans = collect_spans(result)
    all_rows = component_rows(result)
    busy = {row: busy_cycles(result, row, spans.get(row, {})) for row in all_rows}
    rows = pick_rows(all_rows, busy, max_rows)
    colors = category_colors(sorted({span.category for span in result.spans}))
    end = max([result.latency_cycles, *(span.end for span in result.spans)]) or 1
    height = max(3.0, 1.8 + ROW_HEIGHT_IN * len(rows))
    fig = Figure(figsize=(FIG_WIDTH_IN, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    min_width = end / (FIG_WIDTH_IN * DPI)  # one pixel, so that short isolated spans remain visible
    for row_index, row in enumerate(rows):
        lanes = [cat for cat in colors if cat in spans.get(row, {})]
        lane_height = ROW_FILL / max(len(lanes), 1)
        for lane_index, category in enumerate(lanes):
            bars = merge_intervals(*spans[row][category], min_width=min_width)
            y0 = row_index - ROW_FILL / 2 + lane_index * lane_height
            ax.broken_barh(bars, (y0, lane_height), facecolors=colors[category], linewidth=0)
    labels = [f"{row} ({100 * safe_ratio(busy[row], result.latency_cycles):.0f}%)" for row in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylim(max(len(rows), 1) - 0.5, -0.5)
    ax.set_xlim(0, end)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel("cycles")
    ax.set_ylabel("component (busy % of latency)")
    ax.grid(axis="x", alpha=0.3)
    _add_ms_axis(ax, result.clock_mhz)
    handles = [Patch(facecolor=color, label=name) for name, color in colors.items()]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, title="span")
    else:
        ax.text(0.5, 0.5, "no spans recorded", transform=ax.transAxes, ha="center", va="center")
    ax.set_title(_title(result, len(all_rows) - len(rows)), fontsize=10)
    return fig


def write_timeline_png(result: Result, path: str | os.PathLike[str], max_rows: int | None = None) -> Path:
    """Render the Gantt chart and save it atomically as a PNG."""
    fig = render_timeline(result, max_rows)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return Path(path)
