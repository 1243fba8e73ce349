"""archsim: an event-driven, TLM-style simulator of accelerators for quantized Vision Transformers.

The simulator core (config, mapping, engine, components, report) never imports torch; only the trace front end
(archsim.workloads.extract / zoo) and the quantizer do. The names below load on first use, so the command line
starts without importing what a command does not need (and a Ctrl-C while it starts is handled, see
:mod:`archsim.entry`).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from archsim.api import run_stages, simulate
    from archsim.config import ArchConfig, load_config
    from archsim.result import Result
    from archsim.workloads.ir import Workload

#: Each public name and the module it lives in.
_EXPORTS = {"ArchConfig": "archsim.config", "Result": "archsim.result", "Workload": "archsim.workloads.ir",
            "load_config": "archsim.config", "run_stages": "archsim.api", "simulate": "archsim.api"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'archsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value
