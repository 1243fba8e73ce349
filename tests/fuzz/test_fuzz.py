"""The fuzz suite (issue 14): mutated shipped configs, YAML workloads and traces through ``archsim validate``,
``run`` and ``trace``. Every case ends with exit 0 and the run's invariants holding, or exit 2 with one stderr line
naming the file; never a traceback, a hang (past DEADLINE seconds), a wrong acceptance or a broken invariant. A
failure prints the case and the shell lines that reproduce it. ``benchmarks/fuzz.py`` counts the outcomes."""
from __future__ import annotations

import pytest
from hypothesis import given, settings

from fuzz.harness import BUGS, Case, run_case
from fuzz.mutate import config_cases, trace_cases, workload_cases

#: Seconds after which a case is a hang: every case takes well under one (runs write no plots).
DEADLINE = 10.0

CI = settings.get_profile("fuzz-ci")
DEEP = settings.get_profile("fuzz-deep")


def _check(case: Case) -> None:
    outcome = run_case(case, deadline=DEADLINE)
    assert outcome.kind not in BUGS, outcome.report()
    assert outcome.kind in ("ok", "clean")


@settings(CI)
@given(config_cases())
def test_configs(case: Case) -> None:
    _check(case)


@settings(CI)
@given(workload_cases())
def test_workloads(case: Case) -> None:
    _check(case)


@settings(CI)
@given(trace_cases())
def test_traces(case: Case) -> None:
    _check(case)


@pytest.mark.slow
@settings(DEEP)
@given(config_cases())
def test_configs_deep(case: Case) -> None:
    _check(case)


@pytest.mark.slow
@settings(DEEP)
@given(workload_cases())
def test_workloads_deep(case: Case) -> None:
    _check(case)


@pytest.mark.slow
@settings(DEEP)
@given(trace_cases())
def test_traces_deep(case: Case) -> None:
    _check(case)
