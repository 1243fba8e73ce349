"""energy.png: where the energy goes, by component group and op kind, and by block, in one unit.

Left panel: one stacked bar per component group (DRAM, SRAM, MAC engines, vector engines, NoC, other, static; empty
groups dropped) split by op kind, and a last bar for the whole run; static (leakage) energy, which
archsim.run.assemble charges per component over the whole run under the op kind ``static``, is its own bar, so the
static/dynamic split is read at sight. Right panel: the dynamic energy of each block (the ops' own charges, from
:mod:`archsim.report.blocks`), split by op kind. Every figure is in µJ unless the run spends less than 1 µJ.

The split of a group by op kind needs the run's energy by (component, op kind), read from the Result's
``energy_pj_by_component_kind`` (component -> op kind -> pJ) when it has one; without it (an empty map) each group is one
undivided bar and only the total is split by kind.
matplotlib is imported only when a figure is drawn (see :mod:`archsim.report.figure_io`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping


from archsim.report.blocks import op_blocks
from archsim.report.units import ENERGY_UNITS, EnergyUnit, energy_unit
from archsim.report.figure_io import new_figure, png_bytes, rectangles, save_png
from archsim.report.palette import KIND_COLORS, OTHER_COLOR, kind_colors
from archsim.report.summary import safe_ratio
from archsim.result import Result

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Component groups in display order; ``static`` holds every component's leakage.
GROUPS: tuple[str, ...] = ("DRAM", "SRAM", "MAC engines", "vector engines", "NoC", "other", "static")
STATIC = "static"
TOTAL = "whole run"
MAX_BLOCK_BARS = 36
FIG_WIDTH_IN = 14.0
BAR_IN = 0.24
CHAR_IN = 0.062


def figure_unit(total_pj: float, largest_pj: float) -> EnergyUnit:
    """The unit of an energy figure: µJ (the console's unit) unless the run spends less than 1 µJ; decimals give
    the largest value three significant digits, at least one."""
    if abs(total_pj) >= 1e6:
        label, scale = "µJ", 1e6
    else:
        base = energy_unit(total_pj)
        label, scale = base.label, base.scale
    scaled = abs(largest_pj) / scale
    decimals = 2 - math.floor(math.log10(scaled)) if scaled > 0 else 1
    return EnergyUnit(label, scale, min(max(decimals, 1), 4))


def component_group(result: Result, name: str) -> str:
    """The group a component's energy is shown under."""
    engine = result.engines.get(name)
    if engine is not None:
        return "MAC engines" if engine.peak_macs_per_cycle else "vector engines"
    stat = result.components.get(name)
    kind = stat.type if stat is not None else ""
    if kind == "dram" or name.startswith("dram"):
        return "DRAM"
    if kind in ("sram", "buffer"):
        return "SRAM"
    if kind == "noc" or name.startswith("noc"):
        return "NoC"
    return "other"


def group_energy(result: Result) -> tuple[dict[str, dict[str, float]], bool]:
    """Energy per group, then per op kind (groups and kinds without energy left out), and whether the split by op
    kind is known. Without the Result's (component, op kind) energy a group's only key is ``all kinds``."""
    matrix: Mapping[str, Mapping[str, float]] = result.energy_pj_by_component_kind
    out: dict[str, dict[str, float]] = {}
    if matrix:
        for component, kinds in matrix.items():
            for kind, pj in kinds.items():
                group = STATIC if kind == STATIC else component_group(result, component)
                cell = out.setdefault(group, {})
                cell[kind] = cell.get(kind, 0.0) + pj
    else:
        static = result.energy_pj_by_op_kind.get(STATIC, 0.0)
        for component, pj in result.energy_pj_by_component.items():
            group = component_group(result, component)
            cell = out.setdefault(group, {})
            cell["all kinds"] = cell.get("all kinds", 0.0) + pj
        if static:  # leakage is inside the groups' totals; shown once more as its own bar would count it twice
            out.setdefault(STATIC, {})[STATIC] = static
    cleaned = {g: {k: v for k, v in out[g].items() if v > 0} for g in GROUPS if g in out}
    return {g: kinds for g, kinds in cleaned.items() if kinds}, bool(matrix)


def block_energy(result: Result) -> dict[str, dict[str, float]]:
    """Dynamic energy per block (ops' own charges), then per op kind, blocks in model order; beyond
    ``MAX_BLOCK_BARS`` blocks the smallest share one "other blocks" bar."""
    by_op = op_blocks(result)
    out: dict[str, dict[str, float]] = {}
    for record in result.ops:
        if record.energy_pj:
            cell = out.setdefault(by_op[record.op], {})
            cell[record.kind] = cell.get(record.kind, 0.0) + record.energy_pj
    if len(out) > MAX_BLOCK_BARS:
        ranked = sorted(out, key=lambda b: -sum(out[b].values()))
        kept, rest = set(ranked[: MAX_BLOCK_BARS - 1]), ranked[MAX_BLOCK_BARS - 1:]
        merged: dict[str, float] = {}
        for name in rest:
            for kind, pj in out[name].items():
                merged[kind] = merged.get(kind, 0.0) + pj
        out = {name: kinds for name, kinds in out.items() if name in kept}
        out[f"{len(rest)} other blocks"] = merged
    return out


def _stacked(ax: Axes, rows: Mapping[str, Mapping[str, float]], colors: Mapping[str, str], unit: EnergyUnit,
             total: float, title: str) -> None:
    """Horizontal bars stacked by op kind (in ``colors`` order), top to bottom in ``rows`` order, each labelled with
    its energy and share of ``total``."""
    import numpy as np  # here, not at import: report.md and the console use this module's units without numpy

    names = list(rows)
    ax.set_title(title, fontsize=10, loc="left")
    if not names:
        ax.text(0.5, 0.5, "no energy recorded", transform=ax.transAxes, ha="center", va="center")
        ax.set_yticks([])
        ax.set_xticks([])
        return
    left = np.zeros(len(names))
    ys = np.arange(len(names)) - 0.35
    for kind, color in colors.items():
        widths = np.array([rows[name].get(kind, 0.0) / unit.scale for name in names])
        shown = widths > 0
        if shown.any():
            hatch = "//" if kind == STATIC else None
            rectangles(ax, left[shown], widths[shown], ys[shown], np.full(int(shown.sum()), 0.7), color,
                       edge="white" if hatch else None, hatch=hatch)
            left += widths
    sums = [sum(rows[name].values()) for name in names]
    for index, value in enumerate(sums):
        ax.text(left[index], index, f"  {unit.format(value)} ({100 * safe_ratio(value, total):.1f}%)", va="center",
                ha="left", fontsize=8)
    ax.set_yticks(range(len(names)), [_clip(n) for n in names], fontsize=8)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlim(0, max(float(left.max()), 1e-12) * 1.45)  # room for the labels
    ax.set_xlabel(f"energy ({unit.label})", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)


def _clip(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_energy(result: Result) -> Figure:
    """The energy figure (not saved): component group x op kind, and energy per block."""
    from matplotlib.patches import Patch

    groups, split = group_energy(result)
    blocks = block_energy(result)
    total = result.energy_pj_total
    static = result.energy_pj_by_op_kind.get(STATIC, 0.0)
    left_rows: dict[str, dict[str, float]] = dict(groups)
    by_kind = {k: v for k, v in result.energy_pj_by_op_kind.items() if v > 0}
    if groups:
        left_rows[TOTAL] = by_kind or {"all kinds": total}
    fixed = list(KIND_COLORS)
    kinds = sorted({k for row in (*left_rows.values(), *blocks.values()) for k in row},
                   key=lambda k: (k == "all kinds", k == STATIC, fixed.index(k) if k in fixed else len(fixed), k))
    colors = kind_colors([k for k in kinds if k != "all kinds"])
    colors = {k: colors.get(k, OTHER_COLOR) for k in kinds}
    largest = max([sum(r.values()) for r in (*left_rows.values(), *blocks.values())], default=0.0)
    unit = figure_unit(total, largest)

    n_rows = max(len(left_rows), len(blocks), len(kinds) + 1, 4)
    height_in = 1.25 + BAR_IN * n_rows + 0.55
    fig = new_figure(FIG_WIDTH_IN, height_in)
    label_in = max(CHAR_IN * max((len(_clip(n)) for n in blocks), default=8), 0.9) + 0.2
    legend_in = 0.45 + CHAR_IN * max((len(k) for k in kinds), default=6) + 0.2
    left_label_in = 1.15
    panel_w = (FIG_WIDTH_IN - left_label_in - label_in - legend_in - 0.6) / 2
    top, bottom = 1.0 / height_in, 0.55 / height_in
    ax_groups = fig.add_axes((left_label_in / FIG_WIDTH_IN, bottom, panel_w / FIG_WIDTH_IN, 1 - top - bottom))
    ax_blocks = fig.add_axes(((left_label_in + panel_w + 0.6 + label_in) / FIG_WIDTH_IN, bottom,
                              panel_w / FIG_WIDTH_IN, 1 - top - bottom))
    group_title = "by component group and op kind" if split else "by component group (split by op kind not recorded)"
    _stacked(ax_groups, left_rows, colors, unit, total, group_title)
    _stacked(ax_blocks, blocks, colors, unit, total - static, "dynamic energy per block, by op kind (% of dynamic)")
    handles = [Patch(facecolor=colors[k], label=k, hatch="//" if k == STATIC else None,
                     edgecolor="white" if k == STATIC else None) for k in kinds]
    if handles:
        fig.legend(handles=handles, loc="upper left", fontsize=8, title="op kind", title_fontsize=8, frameon=False,
                   bbox_to_anchor=(1 - legend_in / FIG_WIDTH_IN, 1 - top))
    per_inference = unit.format(safe_ratio(total, result.batch))
    macs = result.total_macs
    per_mac = f", {safe_ratio(total - static, macs):.2f} pJ per MAC (dynamic)" if macs else ""
    fig.text(0.5, 1 - 0.12 / height_in, f"Energy of {result.model} on {result.config}: {unit.format(total)} total "
             f"(batch {result.batch}, {per_inference} per inference{per_mac})", ha="center", va="top", fontsize=10)
    static_text = (f"static {unit.format(static)} ({100 * safe_ratio(static, total):.1f}%, leakage over the whole "
                   "run, in no block)" if static else "no static power in this config")
    fig.text(0.5, 1 - 0.38 / height_in, f"dynamic {unit.format(total - static)} "
             f"({100 * safe_ratio(total - static, total):.1f}%), {static_text}", ha="center", va="top", fontsize=8,
             color="0.3")
    return fig


def energy_png(result: Result) -> bytes:
    """The energy figure as PNG bytes; picklable for a worker process."""
    return png_bytes(render_energy(result))


def write_energy_png(result: Result, path: str | os.PathLike[str]) -> Path:
    """Render the energy figure and save it atomically as a PNG at ``path``."""
    return save_png(render_energy(result), path)

