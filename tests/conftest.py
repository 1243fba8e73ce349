"""Fixtures shared by all tests."""
from __future__ import annotations

import pytest


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
