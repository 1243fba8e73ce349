"""Energy units: one unit and number of decimals per table or figure, so values line up and compare at sight.

Kept apart from the plots, so report.md and the console format energy without importing numpy or matplotlib.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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


__all__ = ["ENERGY_UNITS", "EnergyUnit", "energy_unit"]
