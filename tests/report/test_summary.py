"""summary.json: required keys, correct numbers, byte-stable output, host data kept apart, atomic writes."""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from archsim.report.summary import (
    atomic_path,
    build_summary,
    dumps_summary,
    host_info,
    json_safe,
    round_sig,
    write_summary,
)
from archsim.result import Result

REQUIRED_KEYS = {
    "model", "config", "clock_mhz", "batch", "latency_cycles", "latency_ms", "fps", "total_macs",
    "dram_read_bytes", "dram_write_bytes", "dram_bytes_per_cycle", "energy_pj_total", "energy_pj_by_component",
    "energy_pj_by_op_kind", "engines", "components", "unmodelled_ops", "unmodelled", "ops", "events", "workload",
    "notes",
}
ENGINE_KEYS = {"peak_macs_per_cycle", "busy_cycles", "utilization", "macs", "type", "ops"}
COMPONENT_KEYS = {"type", "busy_cycles", "read_bytes", "write_bytes"}
DATE_OR_TIME = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}:\d{2}|wall|hostname")


def test_has_every_required_key(result: Result) -> None:
    summary = build_summary(result)
    assert summary.keys() >= REQUIRED_KEYS
    assert "host" not in summary
    for stats in summary["engines"].values():
        assert stats.keys() >= ENGINE_KEYS
    for stats in summary["components"].values():
        assert stats.keys() >= COMPONENT_KEYS


def test_headline_numbers(result: Result) -> None:
    s = build_summary(result)
    assert s["latency_cycles"] == 1000
    assert s["latency_ms"] == pytest.approx(1000 / (500.0 * 1e3))  # 0.002 ms
    assert s["fps"] == pytest.approx(2 / (0.002 / 1e3))  # batch 2 in 2 us
    assert s["total_macs"] == sum(r.macs for r in result.ops) == 43800
    bytes_moved = result.dram_read_bytes + result.dram_write_bytes
    assert s["dram_bytes_per_cycle"] == pytest.approx(bytes_moved / 1000)
    # every float is rounded to 6 significant digits, hence the 1e-5 tolerance between rounded values
    assert s["energy_pj_total"] == pytest.approx(sum(s["energy_pj_by_component"].values()), rel=1e-5)
    assert s["energy_pj_total"] == pytest.approx(sum(result.energy_pj_by_component.values()), rel=1e-5)
    assert s["energy_pj_per_inference"] == pytest.approx(s["energy_pj_total"] / 2, rel=1e-5)
    assert s["achieved_gops"] == pytest.approx(2 * 43800 / 2e-6 / 1e9)
    assert s["peak_gops"] == pytest.approx(2 * (64 + 32) * 500e6 / 1e9)
    assert s["mac_utilization"] == pytest.approx(43800 / ((64 + 32) * 1000), rel=1e-5)


def test_adder_trees_stay_out_of_the_peak(result: Result) -> None:
    """An adder tree (Trio's K-sum) keeps its per-engine figures but leaves the design's peak and GOPS."""
    tree = dataclasses.replace(result.engines["mac1"], adder_tree=True)
    s = build_summary(dataclasses.replace(result, engines={**result.engines, "mac1": tree}))
    mac0 = result.engines["mac0"]
    assert s["peak_macs_per_cycle"] == 64 and s["peak_gops"] == pytest.approx(2 * 64 * 500e6 / 1e9)
    assert s["achieved_gops"] == pytest.approx(2 * mac0.macs / 2e-6 / 1e9)
    assert s["mac_utilization"] == pytest.approx(mac0.macs / (64 * 1000), rel=1e-5) and s["mac_utilization"] <= 1
    assert s["total_macs"] == 43800 and s["engines"]["mac1"]["adder_tree"] is True
    assert s["engines"]["mac1"]["utilization"] == round_sig(tree.utilization)


def test_engines_components_ops_and_metadata(result: Result) -> None:
    s = build_summary(result)
    assert s["engines"]["mac0"] == {
        "type": "mat", "peak_macs_per_cycle": 64, "busy_cycles": 650, "busy_fraction": 0.65,
        "utilization": round_sig(35600 / 64000), "macs": 35600, "ops": 4, "adder_tree": False,
    }
    assert s["engines"]["nl0"]["utilization"] == 0.0 and s["engines"]["nl0"]["macs"] == 0
    assert s["components"]["dram"]["read_bytes"] == result.dram_read_bytes
    assert s["ops"] == {"simulated": 9, "folded": 1, "unmodelled": 1}
    assert s["unmodelled_ops"] == 1 and s["unmodelled"] == ["aten.weird|op"]
    assert s["events"] == 4321
    assert s["workload"] == {"source": "hand-built", "image_size": [224, 224], "params": 5700000,
                             "ratio": 0.333333}
    assert s["notes"] == list(result.notes)


def test_area_keys_are_null_until_a_run_records_the_area(make_result: Callable[..., Result]) -> None:
    """The area proxy's keys are always there (null / empty / '' when not recorded) and rounded like the rest."""
    s = build_summary(make_result())
    assert (s["area_mm2"], s["area_by_component"], s["area_source"]) == (None, {}, "")
    s = build_summary(make_result(area_mm2=2.2505912, area_by_component={"mac0": 0.1090561, "sram": 2.1415351},
                                  area_source="derived"))
    assert s["area_mm2"] == 2.25059 and s["area_by_component"] == {"mac0": 0.109056, "sram": 2.14154}
    assert s["area_source"] == "derived"


def test_file_is_byte_identical_and_timeless(result: Result, tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "summary.json", tmp_path / "b" / "summary.json"
    write_summary(result, first)
    write_summary(result, second, host=None)
    text = first.read_text(encoding="utf-8")
    assert first.read_bytes() == second.read_bytes()
    assert not DATE_OR_TIME.search(text)
    assert json.loads(text) == build_summary(result)
    assert text == dumps_summary(json.loads(text))  # sorted keys, fixed indent: a stable canonical form


def test_host_is_kept_in_its_own_object(result: Result, tmp_path: Path) -> None:
    host = host_info(simulate=1.25, total=2.5)
    path = write_summary(result, tmp_path / "summary.json", host=host)
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert loaded["host"]["wall_time_s"] == {"simulate": 1.25, "total": 2.5}
    assert {"hostname", "python"} <= loaded["host"].keys()
    loaded.pop("host")
    assert loaded == build_summary(result)


def test_zero_latency_run_does_not_divide_by_zero(make_result: Callable[..., Result]) -> None:
    s = build_summary(make_result(latency_cycles=0))
    assert s["fps"] == 0.0 and s["dram_bytes_per_cycle"] == 0.0 and s["achieved_gops"] == 0.0
    dumps_summary(s)  # strict JSON: would raise on NaN or inf


def test_round_sig_and_json_safe() -> None:
    assert round_sig(1234567.891) == 1234570.0
    assert round_sig(0.1 + 0.2) == 0.3
    assert round_sig(0.0) == 0.0
    data = json_safe({"a": np.float32(0.1), "b": np.int64(3), "c": (1, 2.0000001), "d": math.nan,
                      "e": {2: math.inf}, "f": Path("x"), "g": np.arange(2)})
    assert data == {"a": 0.1, "b": 3, "c": [1, 2.0], "d": None, "e": {"2": None}, "f": "x", "g": [0, 1]}


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("writer failed")
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
