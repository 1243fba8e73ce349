"""Colours shared by the plots, so an op kind or a span kind has the same colour in every figure.

Plain colour strings only (no matplotlib import), so the report package stays cheap to import.
"""
from __future__ import annotations

from typing import Iterable

#: Fixed colours of the op kinds the tracer emits: MAC-heavy kinds in cool colours, vector work in warm ones.
KIND_COLORS: dict[str, str] = {
    "conv2d": "#1f77b4",
    "linear": "#2ca02c",
    "matmul": "#9467bd",
    "softmax": "#d62728",
    "layernorm": "#ff7f0e",
    "batchnorm": "#c5b0d5",
    "activation": "#e377c2",
    "eltwise": "#bcbd22",
    "reduce": "#17becf",
    "divide": "#ffbb78",
    "log2": "#98df8a",
    "data_movement": "#8c564b",
    "requant": "#7f7f7f",
    "static": "#c7c7c7",
}

#: Fixed colours of the span categories the simulator records.
CATEGORY_COLORS: dict[str, str] = {
    "compute": "#1f77b4",
    "nonlinear": "#17becf",
    "requant": "#e377c2",
    "buffer_read": "#2ca02c",
    "buffer_write": "#bcbd22",
    "dram_read": "#ff7f0e",
    "dram_write": "#d62728",
    "noc": "#9467bd",
    "dma": "#8c564b",
}

#: Colours for names without a fixed one, handed out in sorted-name order so the choice is stable.
EXTRA_COLORS: tuple[str, ...] = (
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194",
    "#6b6ecf", "#b5cf6b", "#e7ba52", "#d6616b", "#ce6dbd", "#9c9ede", "#cedb9c", "#e7cb94", "#e7969c", "#de9ed6",
)

#: Colour of whatever is "not this" (other ops in a zoom, merged remainders).
OTHER_COLOR = "#d9d9d9"


def colors_for(names: Iterable[str], fixed: dict[str, str]) -> dict[str, str]:
    """Colour per name: ``fixed`` ones in ``fixed``'s order, then the rest sorted, from ``EXTRA_COLORS``."""
    wanted = set(names)
    out = {name: color for name, color in fixed.items() if name in wanted}
    for index, name in enumerate(sorted(wanted - set(fixed))):
        out[name] = EXTRA_COLORS[index % len(EXTRA_COLORS)]
    return out


def kind_colors(kinds: Iterable[str]) -> dict[str, str]:
    """Colour per op kind."""
    return colors_for(kinds, KIND_COLORS)


def category_colors(categories: Iterable[str]) -> dict[str, str]:
    """Colour per span category."""
    return colors_for(categories, CATEGORY_COLORS)
