"""`archsim sweep` from the command line: a flags-only sweep, the one-line errors (exit 2, nothing run), --report,
and (slow) the shipped example on EfficientViT-B1."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from archsim.cli import main
from helpers import GENERIC, MLP_YAML, ROOT


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_flags_only_sweep_prints_the_pareto_set_and_writes_the_table(tmp_path: Path, capsys) -> None:
    code, out, err = _cli(["sweep", "--config", str(GENERIC), "--workload", str(MLP_YAML), "--workers", "1",
                           "--grid", "engines.pe.rows=8,16", "--grid", "dram.bandwidth_gbps=6.4,25.6",
                           "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "sweep generic16: 4 points (4 run now, 0 from the log, 0 failed)" in out
    assert "| index | engines.pe.rows | dram.bandwidth_gbps | latency_ms |" in out
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [(r["engines.pe.rows"], r["dram.bandwidth_gbps"]) for r in rows] == \
        [("8", "6.4"), ("8", "25.6"), ("16", "6.4"), ("16", "25.6")]
    code, out, _ = _cli(["sweep", "--config", str(GENERIC), "--workload", str(MLP_YAML), "--workers", "1",
                         "--grid", "engines.pe.rows=8,16", "--grid", "dram.bandwidth_gbps=6.4,25.6",
                         "--out", str(tmp_path), "--quiet"], capsys)
    assert code == 0 and out == ""
    code, out, _ = _cli(["sweep", "--report", str(tmp_path)], capsys)
    assert code == 0 and "Pareto set (" in out and "pareto.png" in out


@pytest.mark.parametrize("args, message", [
    (["--grid", "engines.pe.rows=8,-2"], "--grid: axes.engines.pe.rows: "),
    (["--grid", "engines.pe.rowz=8"], "engines.pe.rowz: unknown key"),
    (["--grid", "rows=8"], "--grid: axes.rows: not a config key"),
    (["--grid", "engines.pe.rows"], "--grid 'engines.pe.rows': expected KEY=V1,V2"),
    (["--grid", "engines.pe.rows=8", "--workers", "0"], "--workers must be a positive integer, got 0"),
    (["--grid", "engines.pe.rows=8", "--dask", "tcp://h:1", "--workers", "2"], "--workers is for local runs"),
])
def test_bad_sweeps_are_one_line_errors_and_run_nothing(tmp_path: Path, capsys, args: list[str],
                                                         message: str) -> None:
    code, out, err = _cli(["sweep", "--config", str(GENERIC), "--workload", str(MLP_YAML), *args,
                           "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("archsim: error: ") and message in err, err
    assert not (tmp_path / "out" / "points.jsonl").exists()


@pytest.mark.slow
def test_an_unreachable_dask_scheduler_is_one_line(tmp_path: Path, capsys) -> None:  # slow: a 10 s connect timeout
    code, out, err = _cli(["sweep", "--config", str(GENERIC), "--workload", str(MLP_YAML), "--grid",
                           "engines.pe.rows=8", "--dask", "tcp://127.0.0.1:1", "--out", str(tmp_path)], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--dask tcp://127.0.0.1:1: cannot reach the scheduler" in err


def test_report_needs_a_sweep_folder(tmp_path: Path, capsys) -> None:
    code, _, err = _cli(["sweep", "--report", str(tmp_path)], capsys)
    assert code == 2 and "no sweep.json here" in err and err.count("\n") == 1
    code, _, err = _cli(["sweep", "--report", str(tmp_path), "--grid", "engines.pe.rows=8"], capsys)
    assert code == 2 and "--report redraws an existing sweep folder" in err


@pytest.mark.slow
def test_the_shipped_trio_sweep(tmp_path: Path, capsys) -> None:
    code, out, err = _cli(["sweep", str(ROOT / "examples" / "sweeps" / "trio_dse.yaml"), "--workers", "2",
                           "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "sweep trio_dse: 27 points (27 run now, 0 from the log, 0 failed)" in out
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 27 and all(r["status"] == "ok" for r in rows)
    # more processing groups: more multipliers and more area; never slower at the same buffer and bandwidth
    by = {(r["engines.mat.groups"], r["buffers.buf_ab.capacity_kib"], r["dram.bandwidth_gbps"]): r for r in rows}
    for (groups, buf, bw), r in by.items():
        if groups != "32":
            bigger = by[({"8": "16", "16": "32"}[groups], buf, bw)]
            assert int(bigger["multipliers"]) == 2 * int(r["multipliers"])
            assert float(bigger["area_mm2"]) > float(r["area_mm2"])
            assert int(bigger["latency_cycles"]) <= int(r["latency_cycles"])
    assert (tmp_path / "pareto.png").stat().st_size > 0
