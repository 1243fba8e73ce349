"""How quantization choices move latency and energy: W8A8 vs W4A8 and PoT vs float re-quantization scales.

    python benchmarks/quant_effects.py

For each case (a model on a config, traced from the quantizer-prepared model), it simulates:

* ``W8A8``: the method at 8-bit weights and activations (its own scale kinds);
* ``W4A8``: 4-bit weights; the same engines, so MACs cost less energy and weights move half the bytes;
* ``W4A8 packed``: 4-bit weights with ``pack_weights`` on every MAC engine (two 4-bit weights share one 8-bit
  multiplier, so MAC cycles halve);
* ``W8A8 pot`` / ``W8A8 float``: the W8A8 trace with every MAC op's scale kind set to the other kind, a what-if
  that changes the re-quantization stage (a shift or a multiply) and nothing else;
* ``p2vit W8A8``: the P2-ViT-quantized model (power-of-two scales), where the case supports it and p2vit is
  installed.

Ratios are to the case's W8A8 row. Zoo models have random weights: latency and energy depend only on shapes and bits.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from archsim import load_config, simulate
from archsim.config.load import ArchConfig
from archsim.errors import UsageError
from archsim.result import Result
from archsim.workloads.bridge import quant_config
from archsim.workloads.ir import MAC_KINDS, Workload
from archsim.workloads.quant import with_scale_kind
from archsim.workloads.zoo import trace_model

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    model: str
    config: str
    method: str
    alternative: str | None = None  # another method to compare, e.g. p2vit (PoT) next to fqvit (float)


CASES = [Case("deit_small", "generic16.yaml", "fqvit", "p2vit"), Case("efficientvit_b1", "trio.yaml", "trio")]


def packed(cfg_path: Path) -> ArchConfig:
    """The config with ``pack_weights: true`` on every MAC engine."""
    base = load_config(cfg_path)
    sets = [f"engines.{name}.pack_weights=true" for name, e in base.engines.items() if e.has_macs]
    return load_config(cfg_path, sets)


def variants(case: Case) -> list[tuple[str, Callable[[], tuple[ArchConfig, Workload]]]]:
    path = ROOT / "arch_configs" / case.config
    cfg = load_config(path)
    w8 = trace_model(case.model, quant=quant_config(case.method, w_bits=8))
    w4 = trace_model(case.model, quant=quant_config(case.method, w_bits=4))
    own = sorted({op.scale_kind for op in w8.ops if op.kind in MAC_KINDS})
    flip = "pot" if own == ["float"] else "float"
    rows: list[tuple[str, Callable[[], tuple[ArchConfig, Workload]]]] = [
        (f"{case.method} W8A8 ({'/'.join(own)})", lambda: (cfg, w8)),
        (f"{case.method} W4A8", lambda: (cfg, w4)),
        (f"{case.method} W4A8 packed", lambda: (packed(path), w4)),
        (f"{case.method} W8A8 {flip} scales", lambda: (cfg, with_scale_kind(w8, flip))),
    ]
    if case.alternative:
        try:
            alt = trace_model(case.model, quant=quant_config(case.alternative, w_bits=8))
        except UsageError as exc:
            print(f"({case.alternative} skipped: {exc})")
        else:
            rows.append((f"{case.alternative} W8A8", lambda: (cfg, alt)))
    return rows


def requant_energy(result: Result) -> float:
    return result.energy_pj_by_op_kind.get("requant", 0.0)


def main() -> None:
    header = (f"{'model':<16} {'config':<15} {'variant':<26} {'latency ms':>10} {'x':>6} {'energy uJ':>10} {'x':>6} "
              f"{'requant uJ':>10} {'DRAM MB':>8}")
    print(header)
    print("-" * len(header))
    for case in CASES:
        base: Result | None = None
        for label, make in variants(case):
            cfg, workload = make()
            result = simulate(cfg, workload)
            base = base or result
            print(f"{case.model:<16} {case.config:<15} {label:<26} {result.latency_ms:>10.3f} "
                  f"{result.latency_ms / base.latency_ms:>6.3f} {result.energy_pj_total / 1e6:>10.1f} "
                  f"{result.energy_pj_total / base.energy_pj_total:>6.3f} {requant_energy(result) / 1e6:>10.2f} "
                  f"{(result.dram_read_bytes + result.dram_write_bytes) / 1e6:>8.2f}")
        print()


if __name__ == "__main__":
    main()
