"""benchmarks/mapper_speed.py and benchmarks/mapper_gains.py run end to end on one small pair and print what they
promise (slow: they trace a zoo model)."""
from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from helpers import ROOT


def _bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_bench", ROOT / "benchmarks" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(out: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| config")]


@pytest.mark.slow
def test_mapper_speed_times_every_search_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert _bench("mapper_speed").main(["--configs", str(ROOT / "arch_configs" / "generic16.yaml"),
                                        "--models", "deit_tiny", "--repeat", "1"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert [r[3] for r in rows] == ["fixed", "heuristic", "exhaustive"]
    assert rows[0][7] == "0" and int(rows[2][8].replace(",", "")) > 0  # fixed scores nothing; the search does


@pytest.mark.slow
def test_mapper_gains_compares_each_search_with_fixed(capsys: pytest.CaptureFixture[str]) -> None:
    assert _bench("mapper_gains").main(["--pairs", "arch_configs/generic16.yaml:deit_tiny"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert [r[3] for r in rows] == ["fixed", "heuristic", "exhaustive"]
    assert rows[0][8] == "1.000x"
    cycles = [int(r[4].replace(",", "")) for r in rows]
    assert cycles[2] < cycles[0]
