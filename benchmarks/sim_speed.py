"""Simulation speed: wall time of trace extraction and of simulation, event counts and events per second.

    python benchmarks/sim_speed.py            # the two reference cases of issue #2
    python benchmarks/sim_speed.py --profile  # also print the top of a cProfile of one simulation

Simulation is timed on a cached trace (extraction is timed separately, uncached), best of --repeat runs.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path

from archsim import load_config, simulate
from archsim.workloads.zoo import trace_model

ROOT = Path(__file__).resolve().parents[1]
CASES = [("efficientvit_b1", "trio.yaml"), ("deit_small", "generic16.yaml")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="simulation runs per case; the best is reported")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the first case's simulation")
    args = parser.parse_args()

    t_import = time.perf_counter()
    import timm  # noqa: F401  (imports torch: paid once per process, reported apart from extraction)

    print(f"import torch + timm: {time.perf_counter() - t_import:.2f} s (once per process, not in 'trace s')")
    header = f"{'model':<16} {'config':<16} {'ops':>5} {'trace s':>8} {'sim s':>7} {'events':>8} {'events/s':>10} {'latency ms':>10}"
    print(header)
    print("-" * len(header))
    for model, config in CASES:
        t0 = time.perf_counter()
        workload = trace_model(model, cache=False)
        t_trace = time.perf_counter() - t0
        cfg = load_config(ROOT / "arch_configs" / config)
        best = float("inf")
        result = None
        for _ in range(args.repeat):
            t1 = time.perf_counter()
            result = simulate(cfg, workload)
            best = min(best, time.perf_counter() - t1)
        assert result is not None
        print(f"{model:<16} {config:<16} {len(workload.ops):>5} {t_trace:>8.2f} {best:>7.3f} {result.events:>8} "
              f"{result.events / best:>10.0f} {result.latency_ms:>10.3f}")
    if args.profile:
        model, config = CASES[0]
        workload = trace_model(model)
        cfg = load_config(ROOT / "arch_configs" / config)
        prof = cProfile.Profile()
        prof.runcall(simulate, cfg, workload)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
