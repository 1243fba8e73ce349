"""``archsim compare``: the table it prints and writes, the ablation form, and one-line errors."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from archsim.cli import main
from helpers import GENERIC, MLP_YAML, P2VIT, P2VIT_FP, TRIO


def _rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "compare.csv").open()))


def test_ablation_compares_a_config_with_itself(tmp_path: Path, capsys) -> None:
    code = main(["compare", str(P2VIT), "--set", "mapping.pipeline.inter_layer=false", "--workload", str(MLP_YAML),
                 "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    rows = _rows(tmp_path)
    assert [r["variant"] for r in rows] == ["p2vit", "p2vit [mapping.pipeline.inter_layer=false]"]
    assert float(rows[0]["speedup"]) == 1.0 and float(rows[0]["energy_ratio"]) == 1.0
    assert float(rows[1]["speedup"]) <= 1.0  # turning a pipeline off never speeds a run up
    assert int(rows[1]["latency_cycles"]) >= int(rows[0]["latency_cycles"])
    assert "| p2vit |" in out and "speed-up" in out
    assert (tmp_path / "compare.md").read_text().startswith("# archsim compare")


def test_several_configs_with_ratios_to_the_first(tmp_path: Path, capsys) -> None:
    code = main(["compare", str(P2VIT), str(P2VIT_FP), str(GENERIC), "--workload", str(MLP_YAML), "--out",
                 str(tmp_path), "--quiet"])
    assert code == 0 and capsys.readouterr().out == ""
    rows = _rows(tmp_path)
    assert [r["config"] for r in rows] == ["p2vit", "p2vit_fp", "generic16"]
    base = float(rows[0]["latency_ms"])
    for r in rows:
        assert float(r["speedup"]) == pytest.approx(base / float(r["latency_ms"]), rel=1e-5)
        assert 0.0 <= float(r["mac_utilization"]) <= 1.0


@pytest.mark.parametrize("args, message", [
    ([str(P2VIT), "--workload", str(MLP_YAML)], "give two or more configs, or one config with --set"),
    ([str(P2VIT), "--set", "mapping.policy=nope", "--workload", str(MLP_YAML)], "mapping.policy: unknown mapping policy"),
    ([str(P2VIT), "missing.yaml", "--workload", str(MLP_YAML)], "missing.yaml: no such file"),
    ([str(P2VIT), str(TRIO)], "give exactly one of --model"),
])
def test_errors_are_one_line_with_exit_2(tmp_path: Path, capsys, args, message) -> None:
    code = main(["compare", *args, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_pot_vs_float_on_a_traced_model(tmp_path: Path, capsys) -> None:
    code = main(["compare", str(P2VIT), str(P2VIT_FP), "--model", "deit_tiny", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    pot, flt = _rows(tmp_path)
    assert float(flt["speedup"]) <= 1.0 and float(flt["energy_ratio"]) >= 1.0
