"""``archsim compare``: the same workload on several configs (or one config with and without ``--set``
overrides), reduced to one row per variant with ratios to the first. The CLI runs the simulations; this module
only decides the variants and turns results into rows, so it stays testable without a model."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from archsim.errors import UsageError
from archsim.result import Result


@dataclass(frozen=True)
class Variant:
    """One column of a comparison: a config file and the overrides applied to it."""

    config: str
    overrides: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        stem = Path(self.config).stem
        return f"{stem} [{', '.join(self.overrides)}]" if self.overrides else stem


@dataclass(frozen=True)
class CompareRow:
    """What one variant achieved, and its ratios to the first variant (the baseline)."""

    label: str
    config: str
    latency_cycles: int
    clock_mhz: float
    latency_ms: float
    fps: float
    energy_uj: float
    mac_utilization: float
    dram_mb: float
    speedup: float  # baseline latency / this latency: > 1 is faster
    energy_ratio: float  # this energy / baseline energy: < 1 is cheaper


def variants(configs: Sequence[str], overrides: Sequence[str]) -> list[Variant]:
    """One config with ``--set``: the config against itself with the overrides (an ablation). Several configs:
    each with the overrides applied to all of them."""
    if not configs:
        raise UsageError("compare: give at least one config")
    if len(configs) == 1:
        if not overrides:
            raise UsageError("compare: give two or more configs, or one config with --set KEY=VALUE to ablate")
        return [Variant(configs[0]), Variant(configs[0], tuple(overrides))]
    return [Variant(c, tuple(overrides)) for c in configs]


def rows(results: Sequence[tuple[Variant, Result]]) -> list[CompareRow]:
    """Rows in the given order; ratios are relative to the first."""
    if not results:
        return []
    base = results[0][1]
    out = []
    for v, r in results:
        out.append(CompareRow(
            label=v.label, config=r.config, latency_cycles=r.latency_cycles, clock_mhz=r.clock_mhz,
            latency_ms=r.latency_ms, fps=r.fps, energy_uj=r.energy_pj_total / 1e6, mac_utilization=r.mac_utilization,
            dram_mb=(r.dram_read_bytes + r.dram_write_bytes) / 1e6,
            speedup=base.latency_ms / r.latency_ms if r.latency_ms else 0.0,
            energy_ratio=r.energy_pj_total / base.energy_pj_total if base.energy_pj_total else 0.0,
        ))
    return out
