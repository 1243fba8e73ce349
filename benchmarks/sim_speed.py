"""Simulation speed: wall time of trace extraction and of simulation, event counts and events per second, and the
main command's whole wall time against a fixed yardstick.

    python benchmarks/sim_speed.py            # the two reference cases of issue #2, then the main command
    python benchmarks/sim_speed.py --profile  # also print the top of a cProfile of one simulation
    python benchmarks/sim_speed.py --main-only  # only the main command's ratio (no torch needed once traced)

Simulation is timed on a cached trace (extraction is timed separately, uncached), best of --repeat runs.

The main command (`archsim run arch_configs/trio.yaml --model efficientvit_b1`, trace cached by a first run, best
of --repeat) is timed whole, in a fresh process as a user runs it, with and without --no-plots, and printed as a
ratio to the wall time of one million bare SimPy timeouts measured in this same run (best of --repeat), so the
figure compares across machines and loads. Issue 15's target: ratio <= 1.0 with plots.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Generator

from archsim import load_config, simulate
from archsim.workloads.zoo import trace_model

ROOT = Path(__file__).resolve().parents[1]
CASES = [("efficientvit_b1", "trio.yaml"), ("deit_small", "generic16.yaml")]
MAIN_COMMAND = ["run", "arch_configs/trio.yaml", "--model", "efficientvit_b1"]
TIMEOUTS = 1_000_000


def bare_simpy_seconds(count: int = TIMEOUTS) -> float:
    """Wall time of ``count`` bare SimPy timeouts in one process: the yardstick of the main command's cost."""
    import simpy

    env = simpy.Environment()

    def ticker(env: simpy.Environment) -> Generator[simpy.events.Event, Any, None]:
        for _ in range(count):
            yield env.timeout(1)

    env.process(ticker(env))
    t0 = time.perf_counter()
    env.run()
    return time.perf_counter() - t0


def archsim_command() -> list[str]:
    """How to start the archsim CLI in a fresh process (the console script's entry point)."""
    return [sys.executable, "-c", "import sys; from archsim.cli import main; sys.exit(main())"]


def main_command_seconds(extra: list[str], repeat: int) -> float:
    """Best wall time of the main command (plus ``extra`` flags) in a fresh process, into a scratch folder."""
    best = float("inf")
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(repeat):
            out = Path(scratch) / f"run{index}"
            command = [*archsim_command(), *MAIN_COMMAND, "--out", str(out), "--quiet", *extra]
            t0 = time.perf_counter()
            subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            best = min(best, time.perf_counter() - t0)
    return best


def has_flag(flag: str) -> bool:
    """Whether ``archsim run`` accepts ``flag``."""
    text = subprocess.run([*archsim_command(), "run", "--help"], cwd=ROOT, capture_output=True, text=True).stdout
    return flag in text


def report_main_command(repeat: int) -> None:
    """Print the main command's wall time, with and without plots, as a ratio to bare SimPy timeouts."""
    with tempfile.TemporaryDirectory() as scratch:  # a first run caches the trace (torch + timm, once)
        subprocess.run([*archsim_command(), *MAIN_COMMAND, "--out", os.path.join(scratch, "warm"), "--quiet"],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    yardstick = min(bare_simpy_seconds() for _ in range(repeat))
    print(f"\n1M bare SimPy timeouts: {yardstick:.3f} s (best of {repeat})")
    print(f"{'main command':<60} {'wall s':>7} {'ratio':>6}")
    variants: list[tuple[str, list[str]]] = [("", [])] + ([("--no-plots", ["--no-plots"])] if has_flag("--no-plots") else [])
    for label, extra in variants:
        seconds = main_command_seconds(extra, repeat)
        text = "archsim " + " ".join([*MAIN_COMMAND, *extra])
        print(f"{text:<60} {seconds:>7.3f} {seconds / yardstick:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="simulation runs per case; the best is reported")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the first case's simulation")
    parser.add_argument("--main-only", action="store_true", help="time only the main command against SimPy")
    args = parser.parse_args()
    if args.main_only:
        report_main_command(args.repeat)
        return

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
    report_main_command(args.repeat)


if __name__ == "__main__":
    main()
