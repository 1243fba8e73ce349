"""energy.png: where the energy goes, by component and by op kind, as two horizontal bar charts."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from archsim.report.summary import atomic_path, safe_ratio
from archsim.result import Result

DPI = 110
BAR_HEIGHT_IN = 0.3

#: Energy units by size, in pJ per unit.
ENERGY_UNITS: tuple[tuple[str, float], ...] = (("pJ", 1.0), ("nJ", 1e3), ("µJ", 1e6), ("mJ", 1e9), ("J", 1e12))


@dataclass(frozen=True, slots=True)
class EnergyUnit:
    """One unit and number of decimals for a whole table or figure, so its values line up and compare at sight."""

    label: str
    scale: float  # pJ per unit
    decimals: int

    def format(self, value_pj: float) -> str:
        """``value_pj`` in this unit, e.g. ``12.34 µJ``."""
        return f"{value_pj / self.scale:,.{self.decimals}f} {self.label}"


def energy_unit(largest_pj: float) -> EnergyUnit:
    """The unit in which ``largest_pj`` reads as 1 to 999, with decimals giving it four significant digits."""
    label, scale = ENERGY_UNITS[0]
    for candidate, candidate_scale in ENERGY_UNITS:
        if abs(largest_pj) >= candidate_scale:
            label, scale = candidate, candidate_scale
    scaled = abs(largest_pj) / scale
    decimals = 3 - math.floor(math.log10(scaled)) if scaled >= 1 else 3
    return EnergyUnit(label, scale, max(decimals, 0))


def _bar_panel(ax: Axes, title: str, values: Mapping[str, float], unit: EnergyUnit) -> None:
    """Horizontal bars, largest on top, each labelled with its energy and share of the panel total."""
    total = sum(values.values())
    ax.set_title(f"{title}: {unit.format(total)}", fontsize=10)
    if not values:
        ax.text(0.5, 0.5, "no energy recorded", transform=ax.transAxes, ha="center", va="center")
        ax.set_yticks([])
        return
    items = sorted(values.items(), key=lambda item: (-item[1], item[0]))
    names = [name for name, _ in items]
    scaled = [value / unit.scale for _, value in items]
    bars = ax.barh(range(len(items)), scaled, color="tab:blue")
    labels = [f"{unit.format(v)} ({100 * safe_ratio(v, total):.1f}%)" for _, v in items]
    ax.bar_label(bars, labels=labels, padding=3, fontsize=8)
    ax.set_yticks(range(len(items)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(max(scaled), 1e-12) * 1.35)  # room for the labels
    ax.set_xlabel(f"energy ({unit.label})")
    ax.grid(axis="x", alpha=0.3)


def render_energy(result: Result) -> Figure:
    """Build the two-panel energy figure (not saved)."""
    total = result.energy_pj_total
    values = [*result.energy_pj_by_component.values(), *result.energy_pj_by_op_kind.values()]
    unit = energy_unit(max(values, default=0.0))  # one unit for the whole figure
    rows = max(len(result.energy_pj_by_component), len(result.energy_pj_by_op_kind), 3)
    fig = Figure(figsize=(13.0, 1.6 + BAR_HEIGHT_IN * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    by_component, by_kind = fig.subplots(1, 2)
    _bar_panel(by_component, "by component", result.energy_pj_by_component, unit)
    _bar_panel(by_kind, "by op kind", result.energy_pj_by_op_kind, unit)
    per_inference = unit.format(safe_ratio(total, result.batch))
    fig.suptitle(
        f"Energy of {result.model} on {result.config}: total {unit.format(total)} "
        f"(batch {result.batch}, {per_inference} per inference)",
        fontsize=11,
    )
    return fig


def write_energy_png(result: Result, path: str | os.PathLike[str]) -> Path:
    """Render the energy figure and save it atomically as a PNG."""
    fig = render_energy(result)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return Path(path)
