"""compare.csv, compare.md and compare.png: what ``archsim compare`` writes, one row (or bar) per variant.

compare.png draws, per variant, latency and energy relative to the first variant (energy split into dynamic and
static) and where the MAC engines' time goes (the stall reasons of ``Result.stalls``, summed over the engines).
matplotlib is imported only when the figure is drawn.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from archsim.compare import CompareRow
from archsim.outputs import staged_folder
from archsim.result import STALL_REASONS, Result

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLUMNS = ["variant", "config", "latency_cycles", "clock_mhz", "latency_ms", "fps", "energy_uj", "mac_utilization",
           "dram_mb", "speedup", "energy_ratio"]

#: The files ``archsim compare`` writes into its output folder (compare.png when given the results).
COMPARE_FILES = ("compare.csv", "compare.md", "compare.png")


def format_markdown(table: Sequence[CompareRow], model: str) -> str:
    """A Markdown table; speed-up and energy ratio are relative to the first row."""
    lines = [
        f"# archsim compare: {model}",
        "",
        "| variant | latency (ms) | cycles | FPS | energy (uJ) | MAC util. | DRAM (MB) | speed-up | energy ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        lines.append(f"| {r.label} | {r.latency_ms:.3f} | {r.latency_cycles:,} | {r.fps:.1f} | {r.energy_uj:.1f} | "
                     f"{100 * r.mac_utilization:.1f}% | {r.dram_mb:.2f} | {r.speedup:.3f}x | {r.energy_ratio:.3f}x |")
    lines += ["", "speed-up = first latency / this latency; energy ratio = this energy / first energy."]
    return "\n".join(lines) + "\n"


def write_compare(table: Sequence[CompareRow], model: str, out: Path,
                  results: Sequence[tuple[str, Result]] | None = None) -> tuple[Path, Path]:
    """Write compare.csv and compare.md into ``out`` and, given the labelled ``results``, compare.png, replacing the
    folder whole (see :func:`archsim.outputs.staged_folder`); returns the paths of the two tables."""
    with staged_folder(out, owned=COMPARE_FILES) as staged:
        with (staged / "compare.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for r in table:
                w.writerow([r.label, r.config, r.latency_cycles, f"{r.clock_mhz:g}", f"{r.latency_ms:.6f}",
                            f"{r.fps:.3f}", f"{r.energy_uj:.3f}", f"{r.mac_utilization:.6f}", f"{r.dram_mb:.6f}",
                            f"{r.speedup:.6f}", f"{r.energy_ratio:.6f}"])
        (staged / "compare.md").write_text(format_markdown(table, model))
        if results is not None:
            write_compare_png(results, staged / "compare.png")
    return out / "compare.csv", out / "compare.md"


# ---- compare.png -----------------------------------------------------------------------------------------------------
#: Colour of each stall reason in the compare chart (archsim.result.STALL_REASONS order).
STALL_COLORS: dict[str, str] = {"busy": "#2ca02c", "dram": "#ff7f0e", "buffer": "#bcbd22", "producer": "#9467bd",
                                "noc": "#17becf", "idle": "#d9d9d9"}
DYNAMIC_COLOR = "#8c564b"


def stall_shares(result: Result) -> dict[str, float]:
    """Share of the MAC engines' time (all engines' when none has MACs) per stall reason, summed over the engines;
    empty when the run recorded no stalls."""
    mac = [n for n, s in result.engines.items() if s.peak_macs_per_cycle and not s.adder_tree]
    names = [n for n in (mac or list(result.engines)) if n in result.stalls]
    totals = {reason: float(sum(result.stalls[n].get(reason, 0) for n in names)) for reason in STALL_REASONS}
    whole = sum(totals.values())
    return {reason: value / whole for reason, value in totals.items()} if whole else {}


def render_compare(results: Sequence[tuple[str, Result]]) -> Figure:
    """The compare figure (not saved): per variant (labelled), latency and energy relative to the first variant, and
    where the MAC engines' time goes (stall reasons, stacked to 100%)."""
    import numpy as np
    from matplotlib.patches import Patch

    from archsim.report.energy_plot import STATIC, figure_unit
    from archsim.report.figure_io import new_figure, rectangles

    labels = [_clip(label) for label, _ in results] or ["(none)"]
    n = len(results)
    height_in = max(1.5 + 0.42 * max(n, 2) + 0.35, 3.0)  # room for both legends
    label_in = min(max(0.068 * max(len(label) for label in labels) + 0.3, 1.0), 3.0)
    fig = new_figure(14.0, height_in)
    panel_w = (14.0 - label_in - 1.6 - 2 * 0.35) / 3
    bottom, top = 0.55 / height_in, 0.75 / height_in
    axes = [fig.add_axes(((label_in + i * (panel_w + 0.35)) / 14.0, bottom, panel_w / 14.0, 1 - top - bottom))
            for i in range(3)]
    ys = np.arange(n) - 0.35
    heights = np.full(n, 0.7)
    base = results[0][1] if results else None
    energy_total = [r.energy_pj_total for _, r in results]
    unit = figure_unit(max(energy_total, default=0.0), max(energy_total, default=0.0))

    # latency
    lat = np.array([r.latency_cycles / r.clock_mhz for _, r in results]) if n else np.zeros(0)
    lat_ratio = lat / lat[0] if n and lat[0] else np.zeros(n)
    rectangles(axes[0], np.zeros(n), lat_ratio, ys, heights, "#1f77b4")
    for i, (_, r) in enumerate(results):
        axes[0].text(lat_ratio[i], i, f" {lat_ratio[i]:.2f}x ({r.latency_ms:.4g} ms)", va="center", fontsize=8)
    axes[0].set_title("latency, relative to the first", fontsize=10, loc="left")

    # energy: dynamic, then static hatched
    static = np.array([r.energy_pj_by_op_kind.get(STATIC, 0.0) for _, r in results]) if n else np.zeros(0)
    total = np.array(energy_total) if n else np.zeros(0)
    first = total[0] if n and total[0] else 1.0
    rectangles(axes[1], np.zeros(n), (total - static) / first, ys, heights, DYNAMIC_COLOR)
    rectangles(axes[1], (total - static) / first, static / first, ys, heights, "#c7c7c7", edge="white", hatch="//")
    for i in range(n):
        axes[1].text(total[i] / first, i, f" {total[i] / first:.2f}x ({unit.format(total[i])})", va="center",
                     fontsize=8)
    axes[1].set_title("energy, relative to the first", fontsize=10, loc="left")
    for ax, values in ((axes[0], lat_ratio), (axes[1], total / first if n else np.zeros(0))):
        ax.axvline(1.0, color="0.3", linewidth=0.8, linestyle="--")
        ax.set_xlim(0, max(float(values.max(initial=0.0)), 1.0) * 1.6)
        ax.set_xlabel("x first variant", fontsize=9)

    # stall reasons
    shares = [stall_shares(r) for _, r in results]
    left = np.zeros(n)
    for reason in STALL_REASONS:
        widths = np.array([100 * s.get(reason, 0.0) for s in shares]) if n else np.zeros(0)
        if widths.any():
            rectangles(axes[2], left, widths, ys, heights, STALL_COLORS[reason])
            left += widths
    for i, s in enumerate(shares):
        if not s:
            axes[2].text(2, i, "no stall data recorded", va="center", fontsize=8, color="0.4")
    axes[2].set_xlim(0, 100)
    axes[2].set_xlabel("% of MAC engines' time", fontsize=9)
    axes[2].set_title("where the MAC engines' time goes", fontsize=10, loc="left")
    legend_x = (14.0 - 1.45) / 14.0
    fig.legend(handles=[Patch(facecolor=STALL_COLORS[r], label=r) for r in STALL_REASONS], loc="upper left",
               bbox_to_anchor=(legend_x, 1 - top), fontsize=8, frameon=False, title="stall reason", title_fontsize=8)
    fig.legend(handles=[Patch(facecolor=DYNAMIC_COLOR, label="dynamic"),
                        Patch(facecolor="#c7c7c7", hatch="//", edgecolor="white", label="static")],
               loc="upper left", bbox_to_anchor=(legend_x, top), fontsize=8, frameon=False, title="energy",
               title_fontsize=8)
    for index, ax in enumerate(axes):
        ax.set_ylim(max(n, 1) - 0.5, -0.5)
        ax.set_yticks(range(len(labels)) if index == 0 else [], labels if index == 0 else [], fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    model = base.model if base is not None else ""
    fig.text(0.5, 1 - 0.12 / height_in, f"archsim compare: {model}, {n} variants (the first is the baseline)",
             ha="center", va="top", fontsize=10)
    return fig


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compare_png(results: Sequence[tuple[str, Result]]) -> bytes:
    """The compare figure as PNG bytes; picklable for a worker process."""
    from archsim.report.figure_io import png_bytes

    return png_bytes(render_compare(results))


def write_compare_png(results: Sequence[tuple[str, Result]], path: str | os.PathLike[str]) -> Path:
    """Render the compare figure and save it atomically as a PNG at ``path``."""
    from archsim.report.figure_io import save_png

    return save_png(render_compare(results), path)
