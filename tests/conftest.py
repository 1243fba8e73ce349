"""Fixtures shared by all tests."""
from __future__ import annotations

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one torch/OpenMP thread per xdist worker (set before any test module imports torch): `-n 2` on 2 cores is
    # already one worker per core, and oversubscribed OpenMP threads spin-wait, which slowed the quantizer tests
    # tenfold on a machine busy with other work
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

from archsim.config import load_config
from archsim.workloads.ir import Workload
from helpers import GENERIC, TRIO, mlp


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test's trace cache out of the user's home."""
    monkeypatch.setenv("ARCHSIM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "trace-cache"))


@pytest.fixture
def generic_cfg():
    return load_config(GENERIC)


@pytest.fixture
def trio_cfg():
    return load_config(TRIO)


@pytest.fixture
def mlp_workload() -> Workload:
    return mlp()
