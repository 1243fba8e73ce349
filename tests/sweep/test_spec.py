"""Sweep files and --grid flags: what validates, and the one-line errors (naming the file and the key) raised
before any point runs."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim.errors import ArchsimError, ConfigError, UsageError
from archsim.sweep.plan import check_axes, grid, overrides_of, point_id
from archsim.sweep.spec import build_spec, load_sweep, parse_grid_flag
from helpers import GENERIC, MLP_YAML


def write(tmp_path: Path, body: dict) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"config": str(GENERIC), "workload": {"workload": str(MLP_YAML)}, **body},
                                   sort_keys=False))
    return path


def test_grid_enumerates_every_combination_last_axis_fastest(tmp_path: Path) -> None:
    spec = load_sweep(write(tmp_path, {"axes": {"engines.pe.rows": [8, 16], "dram.bandwidth_gbps": [6.4, 12.8, 25.6]},
                                       "together": {"buf": {"buffers.act_buf.capacity_kib": [128, 256],
                                                            "buffers.wgt_buf.capacity_kib": [64, 128]}}}))
    points = list(grid(spec))
    assert spec.grid_size == len(points) == 12
    assert [p.index for p in points] == list(range(12))
    assert points[0].values == {"engines.pe.rows": 8, "dram.bandwidth_gbps": 6.4, "buffers.act_buf.capacity_kib": 128,
                                "buffers.wgt_buf.capacity_kib": 64}
    assert points[1].values["buffers.act_buf.capacity_kib"] == 256  # the together group is the last axis
    assert len({p.id for p in points}) == 12
    assert point_id(points[3].values) == points[3].id  # ids depend on the values only
    assert overrides_of(spec, points[0].values)[:2] == ["engines.pe.rows=8", "dram.bandwidth_gbps=6.4"]


def test_grid_flags_and_ranges() -> None:
    assert parse_grid_flag("dram.bandwidth_gbps=6.4,12.8") == ("dram.bandwidth_gbps", [6.4, 12.8])
    assert parse_grid_flag("mapping.search=[fixed, heuristic]") == ("mapping.search", ["fixed", "heuristic"])
    spec = build_spec({"config": str(GENERIC), "workload": {"workload": str(MLP_YAML)},
                       "axes": {"engines.pe.rows": {"low": 4, "high": 16, "step": 4}}},
                      "s.yaml", Path.cwd(), grid=["dram.bandwidth_gbps=6.4,12.8"])
    assert [p.values["engines.pe.rows"] for p in grid(spec)][::2] == [4, 8, 12, 16]
    assert spec.keys == ("engines.pe.rows", "dram.bandwidth_gbps")


@pytest.mark.parametrize("body, key, phrase", [
    ({"axes": {"engines.pe.rows": [8]}, "serach": {}}, "serach", "unknown key"),
    ({"axes": {"rows": [8]}}, "axes.rows", "not a config key or a workload axis"),
    ({"axes": {"engines.pe.rows": []}}, "axes.engines.pe.rows", "at least one value"),
    ({"axes": {"engines.pe.rows": [8, 8]}}, "axes.engines.pe.rows", "listed twice"),
    ({"axes": {"engines.pe.rows": {"low": 4, "high": 16}}}, "axes.engines.pe.rows", "a grid needs values"),
    ({"axes": {"engines.pe.rows": [8]}, "search": {"method": "nsga2"}}, "search.budget", "needs a point budget"),
    ({"axes": {"engines.pe.rows": [8]}, "search": {"objectives": ["speed"]}}, "search.objectives",
     "unknown objective 'speed'"),
    ({"axes": {"engines.pe.rows": [8]}, "together": {"g": {"engines.pe.cols": [1, 2], "dram.channels": [1]}}},
     "together.g", "same number of values"),
    ({"axes": {"engines.pe.rows": [8]}, "color": "dram.channels"}, "color", "must be a swept key"),
    ({}, "axes", "no axes"),
])
def test_bad_sweep_files_are_one_line_errors(tmp_path: Path, body: dict, key: str, phrase: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: ") and phrase in message and "\n" not in message


@pytest.mark.parametrize("axes, key, phrase", [
    ({"engines.pe.rows": [8, -1]}, "axes.engines.pe.rows", "engines.pe.rows: must be a positive integer, got -1"),
    ({"engines.pe.colums": [8]}, "axes.engines.pe.colums", "engines.pe.colums: unknown key"),
    ({"dram.bandwidth_gbps": [12.8, "fast"]}, "axes.dram.bandwidth_gbps", "must be a number"),
])
def test_bad_values_fail_before_any_point_runs(tmp_path: Path, axes: dict, key: str, phrase: str) -> None:
    spec = load_sweep(write(tmp_path, {"axes": axes}))
    with pytest.raises(ConfigError) as info:
        check_axes(spec)
    message = str(info.value)
    assert message.startswith(f"{spec.source}: {key}: ") and phrase in message and "\n" not in message


def test_command_line_sweeps_and_their_errors(tmp_path: Path) -> None:
    spec = load_sweep(None, config=str(GENERIC), workload=str(MLP_YAML), grid=["engines.pe.rows=8,16"])
    assert spec.name == "generic16" and spec.grid_size == 2 and spec.source == "--grid"
    with pytest.raises(UsageError, match="give a sweep file, or --config"):
        load_sweep(None, grid=["engines.pe.rows=8"])
    with pytest.raises(UsageError, match="expected KEY=V1,V2"):
        load_sweep(None, config=str(GENERIC), workload=str(MLP_YAML), grid=["engines.pe.rows"])
    with pytest.raises(ArchsimError, match="no such file"):
        load_sweep(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("axes: [1, 2\n")
    with pytest.raises(ConfigError, match="YAML syntax error at line"):
        load_sweep(tmp_path / "bad.yaml")


def test_the_fingerprint_follows_what_decides_the_points(tmp_path: Path) -> None:
    a = load_sweep(write(tmp_path, {"axes": {"engines.pe.rows": [8, 16]}}))
    b = load_sweep(write(tmp_path, {"axes": {"engines.pe.rows": [8, 16]}}))
    c = load_sweep(write(tmp_path, {"axes": {"engines.pe.rows": [8, 32]}}))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
