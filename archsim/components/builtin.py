"""Registers the built-in engine types: mat, rmac, pe_array, nonlinear, requant, dma."""
from __future__ import annotations

from archsim.components.registry import register_component
from archsim.config.schema import DmaEngine, MatEngine, NonlinearEngine, PeArrayEngine, RequantEngine, RmacEngine

for _name, _model in (
    ("mat", MatEngine),
    ("rmac", RmacEngine),
    ("pe_array", PeArrayEngine),
    ("nonlinear", NonlinearEngine),
    ("requant", RequantEngine),
    ("dma", DmaEngine),
):
    register_component(_name, _model)
