"""What the mapper's search buys: each pair simulated with ``mapping.search`` fixed, heuristic and exhaustive.

    python benchmarks/mapper_gains.py                       # the shipped configs on their papers' models
    python benchmarks/mapper_gains.py --pairs arch_configs/trio.yaml:efficientvit_b1:16

A pair is CONFIG:MODEL[:BATCH]. Each model is traced once, as ``archsim run CONFIG --model MODEL`` traces it (the
config's bit widths and ``quant:`` section), and simulated three times; the table gives latency, MAC utilization
and energy per search mode and the speed-up over ``fixed``. The same comparison, one pair at a time, is
``archsim compare CONFIG --set mapping.search=fixed --model MODEL``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archsim.api import run_stages  # noqa: E402
from archsim.config import load_config  # noqa: E402

PAIRS = ("arch_configs/trio.yaml:efficientvit_b1:1", "arch_configs/trio.yaml:efficientvit_b1:16",
         "arch_configs/p2vit.yaml:deit_small:1", "arch_configs/p2vit_fp.yaml:deit_small:1",
         "arch_configs/generic16.yaml:deit_tiny:1", "arch_configs/generic16.yaml:efficientvit_b1:1")
SEARCHES = ("fixed", "heuristic", "exhaustive")


def gains(config: Path, model: str, batch: int) -> list[tuple[str, ...]]:
    from archsim.workloads.zoo import trace_model  # imports torch

    rows, base = [], None
    workload = None
    for search in SEARCHES:
        cfg = load_config(config, [f"mapping.search={search}"])
        if workload is None:
            d = cfg.defaults
            workload = trace_model(model, batch=batch, act_bits=d.act_bits, weight_bits=d.weight_bits,
                                   bias_bits=d.bias_bits, scale_kind=d.scale_kind, quant=cfg.quant)
        r = run_stages(cfg, workload)
        base = r.latency_cycles if base is None else base
        rows.append((config.stem, model, str(batch), search, f"{r.latency_cycles:,}", f"{r.latency_ms:.3f}",
                     f"{r.mac_utilization:.1%}", f"{r.energy_pj_total / 1e6:.1f}", f"{base / r.latency_cycles:.3f}x"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), metavar="CONFIG:MODEL[:BATCH]")
    args = p.parse_args(argv)
    header = ("config", "model", "batch", "search", "cycles", "latency (ms)", "MAC util.", "energy (µJ)",
              "speed-up over fixed")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i < 4 else "---:" for i in range(len(header))) + "|")
    for pair in args.pairs:
        config, model, *rest = pair.split(":")
        path = Path(config) if Path(config).exists() else ROOT / config
        for row in gains(path, model, int(rest[0]) if rest else 1):
            print("| " + " | ".join(row) + " |", flush=True)
    print("\nRegenerate: python benchmarks/mapper_gains.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
