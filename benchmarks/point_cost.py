"""What one design point costs: the split of ``archsim.api.run_stages`` (mapping, then simulation) on a trace already
in memory, the way a sweep runs its points.

    python benchmarks/point_cost.py              # the two reference cases, best of 5
    python benchmarks/point_cost.py --repeat 9   # more runs on a noisy machine
    python benchmarks/point_cost.py --profile    # also the top of a cProfile of one point of each case

For each case it prints the best (lowest) wall time of mapping (``build_taskgraph``, a fresh mapper as
``run_stages`` makes) and of simulation (``run.execute``: components, the SimPy run, result assembly), the point as
the best run's sum, the events the kernel processed, events per second and microseconds per event of the
simulation. The traces come from the trace cache (the first run traces them, which needs torch and timm); the
cases and the warm-up run are outside the timings.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path

from archsim import load_config
from archsim.config.load import ArchConfig
from archsim.mapping.schedule import build_taskgraph
from archsim.run import execute
from archsim.workloads.ir import Workload

ROOT = Path(__file__).resolve().parents[1]
CASES = [("efficientvit_b1", "trio.yaml"), ("deit_small", "generic16.yaml")]


def point(cfg: ArchConfig, workload: Workload) -> tuple[float, float, int]:
    """(mapping s, simulation s, events) of one point: what ``run_stages`` does, timed stage by stage."""
    t0 = time.perf_counter()
    graph = build_taskgraph(workload, cfg)
    t1 = time.perf_counter()
    result = execute(cfg, workload, graph)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, result.events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="points per case; the best of each stage is reported")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one point of each case")
    args = parser.parse_args()

    from archsim.workloads.zoo import trace_model  # imports torch only to trace a model missing from the cache

    header = (f"{'model':<16} {'config':<15} {'mapping ms':>10} {'sim ms':>8} {'point ms':>9} {'events':>8} "
              f"{'events/s':>9} {'us/event':>8}")
    print(header)
    print("-" * len(header))
    cases = []
    for model, config in CASES:
        workload = trace_model(model)
        cfg = load_config(ROOT / "arch_configs" / config)
        point(cfg, workload)  # warm-up: plugin registry, first imports
        runs = [point(cfg, workload) for _ in range(args.repeat)]
        mapping = min(r[0] for r in runs)
        sim = min(r[1] for r in runs)
        total = min(r[0] + r[1] for r in runs)
        events = runs[0][2]
        print(f"{model:<16} {config:<15} {mapping * 1e3:>10.1f} {sim * 1e3:>8.1f} {total * 1e3:>9.1f} {events:>8} "
              f"{events / sim:>9.0f} {sim / events * 1e6:>8.2f}")
        cases.append((model, cfg, workload))
    if args.profile:
        for model, cfg, workload in cases:
            prof = cProfile.Profile()
            prof.runcall(point, cfg, workload)
            print(f"\n=== {model} on {cfg.name}: one point under cProfile (which inflates call-heavy code)")
            pstats.Stats(prof).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
