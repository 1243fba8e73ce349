"""trace.json: valid Trace Event Format (every event has ph/ts/pid/tid, durations non-negative, flows bound to existing
slices, counters in time order), a named thread per component, every span present with the right times, no partly
overlapping slices on one thread, one slice per simulated op, flow arrows along OpRecord.inputs, DRAM bandwidth and
occupancy counters, deterministic bytes. Perfetto's own loader runs only where its binary is installed (the perfetto
package downloads it at first use, which a test may not do)."""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from archsim.report.chrome_trace import (
    COMPONENTS_PID,
    COUNTERS_PID,
    OPS_PID,
    assign_lanes,
    component_rows,
    dram_bandwidth,
    write_chrome_trace,
)
from archsim.result import ComponentStat, Result, Span

LANE_SUFFIX = re.compile(r" \[\d+\]$")
ROWS = ["mac0", "mac1", "nl0", "sram", "noc", "dram"]  # engines, buffers, NoC, DRAM
OCCUPANCY = ((0, 0.0), (200, 4096.0), (450, 8192.0), (450, 6144.0), (900, 0.0))


def load(result: Result, path: Path) -> dict[str, Any]:
    trace: dict[str, Any] = json.loads(write_chrome_trace(result, path).read_text(encoding="utf-8"))
    return trace


def with_links(result: Result) -> Result:
    """The synthetic result with producer links (one across groups, one inside fusion group g0) and counters."""
    inputs = {"blocks.0.qkv": ("patch_embed",), "blocks.0.attn.qk": ("blocks.0.qkv",),
              "blocks.0.attn.softmax": ("blocks.0.attn.qk", "not.an.op")}
    ops = tuple(replace(r, inputs=inputs.get(r.op, ())) for r in result.ops)
    return replace(result, ops=ops, counters={"sram.occupancy_bytes": OCCUPANCY})


def thread_names(trace: dict[str, Any], pid: int) -> dict[int, str]:
    return {e["tid"]: e["args"]["name"] for e in trace["traceEvents"]
            if e["ph"] == "M" and e["name"] == "thread_name" and e["pid"] == pid}


def complete_events(trace: dict[str, Any], pid: int) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X" and e["pid"] == pid]


def ns(value: float) -> int:
    """A trace time in whole ns, as Perfetto reads it (round(us * 1000))."""
    return round(value * 1000)


def check_valid(trace: dict[str, Any]) -> None:
    """The structural rules of the Trace Event Format that Perfetto's JSON importer relies on."""
    events = trace["traceEvents"]
    slices: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for e in events:
        assert {"ph", "pid", "tid"} <= e.keys(), e
        assert e["ph"] == "M" or "ts" in e, e
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "X":
            assert e["dur"] >= 0 and e["ts"] >= 0 and isinstance(e["name"], str)
            slices[(e["pid"], e["tid"])].append((ns(e["ts"]), ns(e["ts"]) + ns(e["dur"])))
    for intervals in slices.values():  # complete events on one thread nest or follow, never partly overlap
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert start >= end
    flows: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for e in events:
        if e["ph"] in ("s", "f"):
            assert e["ph"] not in flows[e["id"]], "one start and one end per flow id"
            flows[e["id"]][e["ph"]] = e
            inside = [(a, b) for a, b in slices[(e["pid"], e["tid"])] if a < ns(e["ts"]) < b]
            assert inside, f"flow {e['id']} binds to no slice"
    assert all(set(pair) == {"s", "f"} for pair in flows.values())
    counters: dict[tuple[int, str], list[int]] = defaultdict(list)
    for e in events:
        if e["ph"] == "C":
            assert e["args"] and all(isinstance(v, (int, float)) for v in e["args"].values())
            counters[(e["pid"], e["name"])].append(ns(e["ts"]))
    for times in counters.values():
        assert times == sorted(times) and len(set(times)) == len(times)


def test_valid_trace_event_format(result: Result, tmp_path: Path) -> None:
    trace = load(with_links(result), tmp_path / "trace.json")
    check_valid(trace)
    assert "displayTimeUnit" not in trace  # old Perfetto read "ns" there as the unit of ts
    assert {e["ph"] for e in trace["traceEvents"]} == {"M", "X", "s", "f", "C"}


def test_top_level_and_process_names(result: Result, tmp_path: Path) -> None:
    trace = load(result, tmp_path / "trace.json")
    assert isinstance(trace["traceEvents"], list)
    names = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"}
    assert "test_accel" in names[COMPONENTS_PID] and "tiny_vit" in names[COMPONENTS_PID]
    assert OPS_PID in names and COUNTERS_PID in names
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
    ns_per_cycle = 1000 / result.clock_mhz  # 2 ns at 500 MHz: every cycle lands on a whole ns
    seen: Counter[tuple[str, int, int, str, str, int, int]] = Counter()
    for e in events:
        start = ns(e["ts"]) / ns_per_cycle
        end = (ns(e["ts"]) + ns(e["dur"])) / ns_per_cycle
        component = LANE_SUFFIX.sub("", names[e["tid"]])
        seen[(component, int(start), int(end), e["name"], e["cat"], e["args"]["tile"],
              e["args"].get("bytes", 0))] += 1
    expected = Counter((s.component, s.start, s.end, s.op, s.category, s.tile, s.nbytes) for s in result.spans)
    assert seen == expected
    assert len(events) == len(result.spans)


def test_times_round_to_whole_ns_and_touching_slices_still_touch(make_result, tmp_path: Path) -> None:
    spans = (Span("mac0", 0, 1, "a", "compute"), Span("mac0", 1, 2, "a", "compute", tile=1),
             Span("mac0", 2, 5, "b", "compute"))
    trace = load(make_result(clock_mhz=300.0, spans=spans), tmp_path / "trace.json")
    slices = sorted((ns(e["ts"]), ns(e["ts"]) + ns(e["dur"])) for e in complete_events(trace, COMPONENTS_PID))
    assert slices == [(0, 3), (3, 7), (7, 17)]  # 3.33 ns per cycle, rounded per cycle: no gap, no overlap


def test_no_partial_overlap_within_a_thread(result: Result, tmp_path: Path) -> None:
    trace = load(result, tmp_path / "trace.json")
    check_valid(trace)
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
    assert qkv["args"]["dram_read_bytes"] == 16 * 200 and qkv["args"]["group"] == "g0"
    assert {"bottleneck", "busy_cycles", "stall_cycles", "inputs"} <= qkv["args"].keys()
    assert qkv["ts"] == pytest.approx(200 / 500.0) and qkv["dur"] == pytest.approx(200 / 500.0)
    assert set(thread_names(trace, OPS_PID).values()) == {"mac0", "mac1", "nl0"}


def test_op_slices_carry_the_workload_bits(make_result, tmp_path: Path) -> None:
    trace = load(make_result(workload_meta={"act_bits": 4, "weight_bits": 8}), tmp_path / "trace.json")
    args = complete_events(trace, OPS_PID)[0]["args"]
    assert args["act_bits"] == 4 and args["weight_bits"] == 8


def _tile_at(trace: dict[str, Any], event: dict[str, Any]) -> tuple[str, int]:
    """(op, tile) of the slice a flow event binds to."""
    for e in complete_events(trace, COMPONENTS_PID):
        if e["tid"] == event["tid"] and ns(e["ts"]) < ns(event["ts"]) < ns(e["ts"]) + ns(e["dur"]):
            return e["name"], e["args"]["tile"]
    raise AssertionError("unbound flow")


def test_flows_follow_producers_tile_by_tile_inside_a_group(result: Result, tmp_path: Path) -> None:
    trace = load(with_links(result), tmp_path / "trace.json")
    by_id: dict[int, dict[str, Any]] = defaultdict(dict)
    for e in trace["traceEvents"]:
        if e["ph"] in ("s", "f"):
            by_id[e["id"]][e["ph"]] = e
    arrows = sorted((_tile_at(trace, pair["s"]), _tile_at(trace, pair["f"])) for pair in by_id.values())
    assert arrows == sorted([
        (("patch_embed", 1), ("blocks.0.qkv", 0)),  # across groups: producer's last tile -> consumer's first
        (("blocks.0.qkv", 0), ("blocks.0.attn.qk", 0)),  # inside fusion group g0: tile i -> tile i
        (("blocks.0.qkv", 1), ("blocks.0.attn.qk", 1)),
        (("blocks.0.attn.qk", 1), ("blocks.0.attn.softmax", 0)),  # an unknown producer draws nothing
    ])


def test_dram_bandwidth_counter_carries_every_byte(result: Result) -> None:
    series = dram_bandwidth(result, bins=7)
    assert list(series) == ["dram"]
    points = series["dram"]
    assert points[0][0] == 0 and points[-1][1:] == (0.0, 0.0)
    assert [p[0] for p in points] == sorted({p[0] for p in points})
    # each value (GB/s) holds until the next point: bytes = GB/s * 1e3 * cycles / clock_mhz
    read = sum(a[1] * 1e3 * (b[0] - a[0]) / result.clock_mhz for a, b in itertools.pairwise(points))
    write = sum(a[2] * 1e3 * (b[0] - a[0]) / result.clock_mhz for a, b in itertools.pairwise(points))
    assert read == pytest.approx(result.dram_read_bytes, rel=1e-3)
    assert write == pytest.approx(result.dram_write_bytes, rel=1e-3)


def test_occupancy_counter_one_value_per_time(result: Result, tmp_path: Path) -> None:
    trace = load(with_links(result), tmp_path / "trace.json")
    points = [(ns(e["ts"]), e["args"]["occupancy_bytes"]) for e in trace["traceEvents"]
              if e["ph"] == "C" and e["name"] == "sram"]
    assert points == [(0, 0), (400, 4096), (900, 6144), (1800, 0)]  # the last value at a repeated cycle wins
    assert {e["pid"] for e in trace["traceEvents"] if e["ph"] == "C"} == {COUNTERS_PID}


def test_output_is_deterministic(result: Result, tmp_path: Path) -> None:
    first = write_chrome_trace(with_links(result), tmp_path / "a.json").read_bytes()
    assert first == write_chrome_trace(with_links(result), tmp_path / "b.json").read_bytes()


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


def _trace_processor_shell() -> str | None:
    return os.environ.get("PERFETTO_TRACE_PROCESSOR") or shutil.which("trace_processor_shell")


@pytest.mark.skipif(_trace_processor_shell() is None, reason="Perfetto's trace_processor_shell is not installed "
                    "(the perfetto package downloads it at first use; set PERFETTO_TRACE_PROCESSOR to its path)")
def test_perfetto_trace_processor_loads_it(result: Result, tmp_path: Path) -> None:
    tp_module = pytest.importorskip("perfetto.trace_processor")
    path = write_chrome_trace(with_links(result), tmp_path / "trace.json")
    config = tp_module.TraceProcessorConfig(bin_path=_trace_processor_shell())
    with tp_module.TraceProcessor(trace=str(path), config=config) as tp:
        slices = tp.query("select count(*) as n from slice").as_pandas_dataframe()["n"][0]
        flows = tp.query("select count(*) as n from flow").as_pandas_dataframe()["n"][0]
    assert slices == len(result.spans) + sum(r.status == "simulated" for r in result.ops)
    assert flows == 4
