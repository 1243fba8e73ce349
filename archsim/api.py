"""The Python entry point: ``simulate(config, workload) -> Result``. The CLI is a thin layer over it.

This module and everything it imports stay free of torch, so a saved trace simulates without it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

from archsim.config.load import ArchConfig, load_config
from archsim.mapping.schedule import build_taskgraph
from archsim.result import Result
from archsim.run import execute
from archsim.run.guard import Limits, check
from archsim.workloads.ir import Workload


class Progress(Protocol):
    def update(self, n: int = 1) -> object: ...


def simulate(config: ArchConfig | str | Path, workload: Workload, overrides: Sequence[str] = (),
             limits: Limits = Limits()) -> Result:
    """Map ``workload`` onto ``config`` and simulate it; deterministic for the same inputs. A run whose estimated
    cost exceeds ``limits`` is refused before it starts (``Limits.none()`` lifts them)."""
    cfg = config if isinstance(config, ArchConfig) else load_config(config, overrides)
    return run_stages(cfg, workload, limits=limits)


def run_stages(cfg: ArchConfig, workload: Workload, progress: Progress | None = None,
               limits: Limits = Limits()) -> Result:
    """Mapping, the size guard (archsim.run.guard), then simulation, advancing ``progress`` (e.g. a tqdm bar) by
    one step after mapping and one after simulation."""
    graph = build_taskgraph(workload, cfg)
    check(cfg, graph, limits)
    if progress is not None:
        progress.update(1)
    result = execute(cfg, workload, graph)
    if progress is not None:
        progress.update(1)
    return result
