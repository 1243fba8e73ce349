"""How long the mapper takes to map a whole model, per search mode, on the shipped configs.

    python benchmarks/mapper_speed.py                        # every shipped config x deit_small, efficientvit_b1
    python benchmarks/mapper_speed.py --models deit_tiny --repeat 5

For each (config, model) it times ``build_taskgraph`` (assign, search, fuse, plan memory, tile: the whole mapping
stage, no simulation) with a fresh :class:`~archsim.mapping.search.Mapper` (cold cache) and again with the same
mapper (warm: every op shape a cache hit), the best of ``--repeat`` runs, and prints the candidates scored. Models
are traced with the config's quantizer where it supports them, else unquantized at the config's default widths;
traces come from the trace cache after the first run.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archsim.config.load import ArchConfig, load_config  # noqa: E402
from archsim.errors import UnsupportedModelError  # noqa: E402
from archsim.mapping.schedule import build_taskgraph  # noqa: E402
from archsim.mapping.search import Mapper  # noqa: E402
from archsim.workloads.ir import Workload  # noqa: E402
from archsim.workloads.zoo import trace_model  # noqa: E402

SEARCHES = ("fixed", "heuristic", "exhaustive")


def workload(cfg: ArchConfig, model: str) -> tuple[Workload, str]:
    """The model as the config's quantizer prepares it, or unquantized when that quantizer does not support it."""
    try:
        return trace_model(model, quant=cfg.quant), cfg.quant.method if cfg.quant else "none"
    except UnsupportedModelError:
        d = cfg.defaults
        return trace_model(model, act_bits=d.act_bits, weight_bits=d.weight_bits, bias_bits=d.bias_bits,
                           scale_kind=d.scale_kind), "none"


def best_of(repeat: int, run: Callable[[], object]) -> float:
    """The shortest wall time of ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(config: Path, model: str, repeat: int) -> list[tuple[str, ...]]:
    rows = []
    for search in SEARCHES:
        cfg = load_config(config, [f"mapping.search={search}"])
        w, quant = workload(cfg, model)
        cold = best_of(repeat, lambda: build_taskgraph(w, cfg, Mapper()))
        mapper = Mapper()
        build_taskgraph(w, cfg, mapper)
        scored = (mapper.dataflows_scored, mapper.tilings_scored)
        warm = best_of(repeat, lambda: build_taskgraph(w, cfg, mapper))
        rows.append((config.stem, model, quant, search, f"{len(w.ops)}", f"{cold * 1e3:.0f}", f"{warm * 1e3:.0f}",
                     f"{scored[0]:,}", f"{scored[1]:,}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="*", type=Path, default=sorted((ROOT / "arch_configs").glob("*.yaml")))
    p.add_argument("--models", nargs="*", default=["deit_small", "efficientvit_b1"])
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement; the fastest is kept")
    args = p.parse_args(argv)
    header = ("config", "model", "quant", "search", "ops", "mapping ms (cold)", "mapping ms (warm cache)",
              "dataflows scored", "tilings scored")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i < 4 else "---:" for i in range(len(header))) + "|")
    for config in args.configs:
        for model in args.models:
            for row in measure(config, model, args.repeat):
                print("| " + " | ".join(row) + " |", flush=True)
    print("\nRegenerate: python benchmarks/mapper_speed.py (wall time of build_taskgraph, best of --repeat).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
