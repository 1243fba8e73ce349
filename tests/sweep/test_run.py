"""Running sweeps: the grid inline and on a process pool give the same table; a sweep stopped mid-way and rerun
gives the table of an uninterrupted one; a failing point is a row, not the end; searches are seeded; --report
redraws. Small workloads (the hand-written MLP block) keep each point to milliseconds."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pytest
import yaml

from archsim.errors import UsageError
from archsim.sweep import execute
from archsim.sweep.plan import Task
from archsim.sweep.run import run_sweep
from archsim.sweep.spec import load_sweep
from archsim.sweep.store import POINTS
from archsim.sweep.table import read_table
from helpers import GENERIC, MLP_YAML

GRID_27 = {"axes": {"engines.pe.rows": [4, 8, 16], "buffers.act_buf.capacity_kib": [128, 256, 384],
                    "dram.bandwidth_gbps": [6.4, 12.8, 25.6]}}


def sweep_file(tmp_path: Path, body: dict[str, Any], name: str = "s.yaml") -> Path:
    path = tmp_path / name
    data = {"name": "t", "config": str(GENERIC), "workload": {"workload": str(MLP_YAML)}, **body}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def table(folder: Path) -> list[dict[str, Any]]:
    return read_table(folder)


def test_a_27_point_grid_gives_one_row_per_point_with_sane_metrics(tmp_path: Path) -> None:
    out = run_sweep(load_sweep(sweep_file(tmp_path, GRID_27)), tmp_path / "out", workers=1, progress=False)
    rows = table(tmp_path / "out")
    assert rows == out.rows and len(rows) == 27 and out.ran == 27 and out.failed == 0
    assert [r["index"] for r in rows] == list(range(27))
    for r in rows:
        assert r["status"] == "ok" and r["error"] == ""
        assert 0.0 < r["mac_utilization"] <= 1.0 and r["latency_ms"] > 0 and r["area_mm2"] > 0
        assert r["edp"] == pytest.approx(r["latency_ms"] * r["energy_uj_per_inference"])
    # more rows of PEs: never slower; more DRAM bandwidth: never slower (same rows, same buffer)
    by = {(r["engines.pe.rows"], r["buffers.act_buf.capacity_kib"], r["dram.bandwidth_gbps"]): r for r in rows}
    for (pe, buf, bw), r in by.items():
        if bw != 25.6:
            assert by[(pe, buf, {6.4: 12.8, 12.8: 25.6}[bw])]["latency_cycles"] <= r["latency_cycles"]
    assert out.front and all(rows[i]["status"] == "ok" for i in out.front)
    for name in ("results.parquet", "results.csv", "pareto.png", "pareto.md", POINTS, "sweep.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    csv_lines = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 28 and csv_lines[0].startswith("index,id,engines.pe.rows,")


@pytest.mark.slow  # spawning the pool's processes takes seconds
def test_a_process_pool_gives_the_same_table_as_one_worker(tmp_path: Path) -> None:
    body = {"axes": {"engines.pe.rows": [8, 16], "dram.bandwidth_gbps": [6.4, 12.8]}}
    run_sweep(load_sweep(sweep_file(tmp_path, body)), tmp_path / "one", workers=1, progress=False)
    run_sweep(load_sweep(sweep_file(tmp_path, body)), tmp_path / "two", workers=2, progress=False)
    assert table(tmp_path / "one") == table(tmp_path / "two")


class _Crash(Exception):
    pass


def test_a_stopped_sweep_resumes_to_the_uninterrupted_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_sweep(sweep_file(tmp_path, {"axes": {"engines.pe.rows": [4, 8, 16, 32],
                                                     "dram.bandwidth_gbps": [6.4, 12.8, 25.6]}}))
    run_sweep(spec, tmp_path / "whole", workers=1, progress=False)

    real = execute.InlineExecutor.run

    def crash_after_ten(self: execute.InlineExecutor, tasks: Sequence[Task], on_done: Any) -> None:
        def counted(row: dict[str, Any]) -> None:
            on_done(row)
            if len(list((tmp_path / "cut").glob(POINTS))) and \
                    len((tmp_path / "cut" / POINTS).read_text().splitlines()) == 10:
                raise _Crash
        real(self, tasks, counted)

    monkeypatch.setattr(execute.InlineExecutor, "run", crash_after_ten)
    with pytest.raises(_Crash):
        run_sweep(spec, tmp_path / "cut", workers=1, progress=False)
    monkeypatch.setattr(execute.InlineExecutor, "run", real)
    log = tmp_path / "cut" / POINTS
    with log.open("a") as f:
        f.write('{"id": "cut short by a ki')  # a point being written when the process died
    out = run_sweep(spec, tmp_path / "cut", workers=1, progress=False)
    assert out.ran == 2
    assert table(tmp_path / "cut") == table(tmp_path / "whole")
    assert len(log.read_text().splitlines()) == 12


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    # 1 KiB of weight buffer passes the config's checks but no tile of fc1's weights fits in it
    body = {"axes": {"buffers.wgt_buf.capacity_kib": [1, 128], "engines.pe.rows": [8, 16]}}
    out = run_sweep(load_sweep(sweep_file(tmp_path, body)), tmp_path / "out", workers=1, progress=False)
    failed = [r for r in out.rows if r["status"] == "error"]
    assert len(failed) == 2 and out.failed == 2
    assert all(r["buffers.wgt_buf.capacity_kib"] == 1 and r["error"] and "\n" not in r["error"] for r in failed)
    assert all(r["latency_ms"] is None for r in failed)
    assert sum(r["status"] == "ok" for r in out.rows) == 2
    assert all(out.rows[i]["status"] == "ok" for i in out.front)


def test_an_output_folder_never_mixes_two_sweeps(tmp_path: Path) -> None:
    run_sweep(load_sweep(sweep_file(tmp_path, {"axes": {"engines.pe.rows": [8, 16]}})), tmp_path / "out",
              workers=1, progress=False)
    other = load_sweep(sweep_file(tmp_path, {"axes": {"engines.pe.rows": [8, 32]}}, "other.yaml"))
    with pytest.raises(UsageError, match="holds the points of a different sweep"):
        run_sweep(other, tmp_path / "out", workers=1, progress=False)
    out = run_sweep(other, tmp_path / "out", workers=1, progress=False, fresh=True)
    assert [r["engines.pe.rows"] for r in out.rows] == [8, 32] and out.ran == 2


@pytest.mark.parametrize("method", ["random", "nsga2"])
def test_searches_are_seeded_and_resume_by_replaying_the_log(tmp_path: Path, method: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"axes": {"engines.pe.rows": {"low": 2, "high": 32},
                     "engines.pe.cols": [4, 8, 16, 32], "dram.bandwidth_gbps": {"low": 3.2, "high": 25.6, "log": True}},
            "search": {"method": method, "budget": 12, "population": 4, "seed": 3}}
    spec = load_sweep(sweep_file(tmp_path, body))
    a = run_sweep(spec, tmp_path / "a", workers=1, progress=False)
    assert 1 <= len(a.rows) <= 12 and a.failed == 0
    real = execute.InlineExecutor.run
    calls = {"n": 0}

    def stop_in_second_generation(self: execute.InlineExecutor, tasks: Sequence[Task], on_done: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            on_done(execute.run_point(tasks[0], self.workloads[tasks[0].workload_key]))
            raise _Crash
        real(self, tasks, on_done)

    monkeypatch.setattr(execute.InlineExecutor, "run", stop_in_second_generation)
    with pytest.raises(_Crash):
        run_sweep(spec, tmp_path / "b", workers=1, progress=False)
    monkeypatch.setattr(execute.InlineExecutor, "run", real)
    b = run_sweep(spec, tmp_path / "b", workers=1, progress=False)
    assert table(tmp_path / "b") == table(tmp_path / "a")
    assert b.ran == len(a.rows) - 5  # 4 of the first generation and 1 of the second came from the log
    values = [(r["engines.pe.rows"], r["dram.bandwidth_gbps"]) for r in a.rows]
    assert all(2 <= rows <= 32 and 3.2 <= bw <= 25.6 for rows, bw in values)


def test_report_redraws_from_the_table(tmp_path: Path) -> None:
    from archsim.cli import main

    run_sweep(load_sweep(sweep_file(tmp_path, {"axes": {"engines.pe.rows": [8, 16]}})), tmp_path / "out",
              workers=1, progress=False)
    (tmp_path / "out" / "pareto.png").unlink()
    assert main(["sweep", "--report", str(tmp_path / "out"), "--quiet"]) == 0
    assert (tmp_path / "out" / "pareto.png").stat().st_size > 0
    assert "| index | engines.pe.rows |" in (tmp_path / "out" / "pareto.md").read_text()
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["keys"] == ["engines.pe.rows"]
