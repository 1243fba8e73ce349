"""trace.json: valid Trace Event Format, a named thread per component, every span present with the right times,
no partly overlapping events on one thread, one event per simulated op, deterministic bytes."""
from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from archsim.report.chrome_trace import COMPONENTS_PID, OPS_PID, assign_lanes, component_rows, write_chrome_trace
from archsim.result import ComponentStat, Result, Span

LANE_SUFFIX = re.compile(r" \[\d+\]$")
ROWS = ["mac0", "mac1", "nl0", "sram", "noc", "dram"]  # engines, buffers, NoC, DRAM


def load(result: Result, path: Path) -> dict[str, Any]:
    trace: dict[str, Any] = json.loads(write_chrome_trace(result, path).read_text(encoding="utf-8"))
    return trace


def thread_names(trace: dict[str, Any], pid: int) -> dict[int, str]:
    return {e["tid"]: e["args"]["name"] for e in trace["traceEvents"]
            if e["ph"] == "M" and e["name"] == "thread_name" and e["pid"] == pid}


def complete_events(trace: dict[str, Any], pid: int) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X" and e["pid"] == pid]


def test_top_level_and_process_names(result: Result, tmp_path: Path) -> None:
    trace = load(result, tmp_path / "trace.json")
    assert trace["displayTimeUnit"] == "ns"
    assert isinstance(trace["traceEvents"], list)
    names = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"}
    assert "test_accel" in names[COMPONENTS_PID] and "tiny_vit" in names[COMPONENTS_PID]
    assert OPS_PID in names
    assert trace["otherData"]["unmodelled_ops"] == ["aten.weird|op"]


def test_one_named_sorted_thread_per_component(result: Result, tmp_path: Path) -> None:
    trace = load(result, tmp_path / "trace.json")
    names = thread_names(trace, COMPONENTS_PID)
    first_lanes = [name for name in names.values() if not LANE_SUFFIX.search(name)]
    assert first_lanes == ROWS
    sort_index = {e["tid"]: e["args"]["sort_index"] for e in trace["traceEvents"]
                  if e["name"] == "thread_sort_index" and e["pid"] == COMPONENTS_PID}
    assert sort_index.keys() == names.keys()
    ordered = [LANE_SUFFIX.sub("", names[tid]) for tid in sorted(names, key=sort_index.__getitem__)]
    assert list(dict.fromkeys(ordered)) == ROWS  # lanes of a component stay together


def test_every_span_present_with_consistent_times(result: Result, tmp_path: Path) -> None:
    trace = load(result, tmp_path / "trace.json")
    names = thread_names(trace, COMPONENTS_PID)
    events = complete_events(trace, COMPONENTS_PID)
    seen: Counter[tuple[str, int, int, str, str, int, int]] = Counter()
    for e in events:
        start, end = e["args"]["start_cycle"], e["args"]["end_cycle"]
        assert e["ts"] == pytest.approx(start / result.clock_mhz)
        assert e["dur"] == pytest.approx((end - start) / result.clock_mhz)
        component = LANE_SUFFIX.sub("", names[e["tid"]])
        seen[(component, start, end, e["name"], e["cat"], e["args"]["tile"], e["args"]["bytes"])] += 1
    expected = Counter((s.component, s.start, s.end, s.op, s.category, s.tile, s.nbytes) for s in result.spans)
    assert seen == expected
    assert len(events) == len(result.spans)


def test_no_partial_overlap_within_a_thread(result: Result, tmp_path: Path) -> None:
    trace = load(result, tmp_path / "trace.json")
    by_thread: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for e in trace["traceEvents"]:
        if e["ph"] == "X":
            by_thread.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for intervals in by_thread.values():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert start >= end - 1e-9
    dram_lanes = [n for n in thread_names(trace, COMPONENTS_PID).values() if n.startswith("dram")]
    # reads overlap writes, and the fused qkv / qk ops overlap each other: four requests in flight at most
    assert dram_lanes == ["dram", "dram [2]", "dram [3]", "dram [4]"]


def test_one_event_per_simulated_op(result: Result, tmp_path: Path) -> None:
    trace = load(result, tmp_path / "trace.json")
    events = complete_events(trace, OPS_PID)
    simulated = [r for r in result.ops if r.status == "simulated"]
    assert sorted(e["name"] for e in events) == sorted(r.op for r in simulated)
    by_name = {e["name"]: e for e in events}
    qkv = by_name["blocks.0.qkv"]
    assert qkv["args"]["macs"] == 12000 and qkv["args"]["engine"] == "mac0"
    assert qkv["args"]["energy_pj"] == pytest.approx(1500.25)
    assert qkv["ts"] == pytest.approx(200 / 500.0) and qkv["dur"] == pytest.approx(200 / 500.0)
    assert set(thread_names(trace, OPS_PID).values()) == {"mac0", "mac1", "nl0"}


def test_output_is_deterministic(result: Result, tmp_path: Path) -> None:
    first = write_chrome_trace(result, tmp_path / "a.json").read_bytes()
    assert first == write_chrome_trace(result, tmp_path / "b.json").read_bytes()


def test_assign_lanes_uses_fewest_lanes() -> None:
    intervals = [(0, 10), (5, 15), (10, 20), (12, 14), (20, 30)]
    lanes = assign_lanes(intervals)
    assert lanes == [0, 1, 0, 2, 0]
    assert assign_lanes([]) == []


def test_component_rows_group_by_type_and_keep_idle_and_span_only_rows(result: Result) -> None:
    extra = {"dram.ch1": ComponentStat("dram.ch1", "dram", 0), "x": ComponentStat("x", "?", 0)}
    components = {**result.components, **extra}
    engines = {**result.engines, "dma": replace(result.engines["nl0"], name="dma")}
    spans = (*result.spans, Span("ghost", 0, 1, "head", "compute"))
    rows = component_rows(replace(result, components=components, engines=engines, spans=spans))
    assert rows == ["mac0", "mac1", "nl0", "dma", "sram", "noc", "dram", "dram.ch1", "x", "ghost"]
