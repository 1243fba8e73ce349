"""Fuzz archsim's commands with mutated shipped inputs and count how each case ended (issue 14).

    python benchmarks/fuzz.py                    # 500 cases: configs, YAML workloads, traces
    python benchmarks/fuzz.py --cases 2000 --no-plots --show 5

Cases come from the strategies in ``tests/fuzz/mutate.py`` (every arch_configs/*.yaml for ``validate`` and ``run``,
examples/workloads/mlp_block.yaml for ``run`` and ``trace --workload``, its trace JSON for ``run`` and
``trace --trace``), drawn by Hypothesis with a fixed seed: the same cases on every run. Each runs through
``archsim.cli.main`` in this process (``tests/fuzz/harness.py``) and ends as one of: exit 0 with the result's
invariants holding; a clean error (exit 2, one stderr line naming the file); or a bug: a traceback, a hang (past
``--deadline``), an unclean error, a wrong acceptance, a broken invariant, another exit status. Prints the counts per
target and overall, the slowest case, and the first ``--show`` bugs with reproducers; exits 1 if there was a bug.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fuzz.harness import BUGS, OUTCOMES, Case, Outcome, run_case  # noqa: E402
from fuzz.mutate import config_cases, trace_cases, workload_cases  # noqa: E402

#: Share of the cases per target: configs have nine files and two commands, so they get half.
TARGETS: dict[str, tuple[st.SearchStrategy[Case], float]] = {
    "config": (config_cases(), 0.5),
    "workload": (workload_cases(), 0.25),
    "trace": (trace_cases(), 0.25),
}


def fuzz(strategy: st.SearchStrategy[Case], n: int, deadline: float, plots: bool) -> list[Outcome]:
    """Run ``n`` cases drawn from ``strategy`` (fixed seed, generation only: no shrinking, no database)."""
    outcomes: list[Outcome] = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(case: Case) -> None:
        outcomes.append(run_case(case, deadline=deadline, plots=plots))

    one()
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500, help="cases in all, shared out over the targets")
    parser.add_argument("--deadline", type=float, default=10.0, help="seconds after which a case is a hang")
    parser.add_argument("--no-plots", action="store_true", help="runs write no PNG plots (run --no-plots; they take about a second a run)")
    parser.add_argument("--show", type=int, default=3, help="bugs to print with a reproducer")
    args = parser.parse_args()

    everything: list[Outcome] = []
    print(f"{'target':<10}{'cases':>7}" + "".join(f"{k:>11}" for k in OUTCOMES))
    for name, (strategy, share) in TARGETS.items():
        outcomes = fuzz(strategy, max(1, round(args.cases * share)), args.deadline, not args.no_plots)
        counts = Counter(o.kind for o in outcomes)
        print(f"{name:<10}{len(outcomes):>7}" + "".join(f"{counts[k]:>11}" for k in OUTCOMES))
        everything += outcomes
    counts = Counter(o.kind for o in everything)
    print(f"{'all':<10}{len(everything):>7}" + "".join(f"{counts[k]:>11}" for k in OUTCOMES))
    slowest = max(everything, key=lambda o: o.seconds)
    assert slowest.case is not None
    print(f"\ncases tried: {len(everything)}")
    print(f"exit 0 with invariants holding: {counts['ok']}")
    print(f"clean errors (exit 2, one line naming the file): {counts['clean']}")
    print(f"tracebacks: {counts['traceback']}")
    print(f"hangs (over {args.deadline:g} s): {counts['hang']}")
    print(f"other bugs (unclean error, wrong acceptance, broken invariant, other exit): "
          f"{sum(counts[k] for k in BUGS) - counts['traceback'] - counts['hang']}")
    print(f"slowest case: {slowest.seconds:.2f} s ({slowest.case.command} on a mutated {slowest.case.base}: "
          f"{'; '.join(slowest.case.mutations)[:120]})")
    bugs = [o for o in everything if o.kind in BUGS]
    for o in bugs[: args.show]:
        print("\n" + o.report())
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
