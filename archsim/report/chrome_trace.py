"""trace.json: the run in the Chrome Trace Event Format, to browse in ui.perfetto.dev or chrome://tracing.

Process 1 holds one thread per component with its busy spans; process 2 holds one thread per engine with the
simulated ops. Complete ("X") events on one thread must not partly overlap, so a component whose spans overlap
(e.g. a DRAM channel with several requests in flight) gets extra lanes named ``<component> [2]``, ``[3]``, ...
Times are microseconds (the format's unit): ``ts = cycle / clock_mhz``.
"""
from __future__ import annotations

import heapq
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from archsim.report.layers import op_bound
from archsim.report.summary import json_safe, write_text_atomic
from archsim.result import OpRecord, Result, Span

COMPONENTS_PID = 1
OPS_PID = 2


#: Display rank of component types after the engines: compute on top, then on-chip memory, NoC, DRAM, the rest.
COMPONENT_TYPE_RANK: dict[str, int] = {"sram": 1, "buffer": 1, "noc": 2, "dram": 3}


def component_rows(result: Result) -> list[str]:
    """Rows in display order: engines (config order, idle ones too), then buffers, NoC links, DRAM channels and
    anything else (each group in the order ``result.components`` lists it), then components seen only in spans."""
    names = [*result.engines, *result.components, *(span.component for span in result.spans)]
    unique = list(dict.fromkeys(names))

    def rank(name: str) -> int:
        if name in result.engines:
            return 0
        stat = result.components.get(name)
        return COMPONENT_TYPE_RANK.get(stat.type, 4) if stat is not None else 5

    return sorted(unique, key=rank)  # stable: keeps the order within a group


def assign_lanes(intervals: Sequence[tuple[int, int]]) -> list[int]:
    """Give each [start, end) interval the lowest lane index free at its start, so no lane holds an overlap."""
    order = sorted(range(len(intervals)), key=lambda i: (intervals[i][0], intervals[i][1], i))
    lanes = [0] * len(intervals)
    busy: list[tuple[int, int]] = []  # (end, lane) of lanes in use
    free: list[int] = []
    lane_count = 0
    for index in order:
        start, end = intervals[index]
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane = lane_count
            lane_count += 1
        lanes[index] = lane
        heapq.heappush(busy, (end, lane))
    return lanes


def _metadata(name: str, pid: int, args: dict[str, Any], tid: int = 0) -> dict[str, Any]:
    """A metadata ("M") event such as process_name or thread_sort_index."""
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "args": args}


def _thread_events(pid: int, tid: int, name: str) -> list[dict[str, Any]]:
    """Name a thread and pin its position (rows otherwise get sorted by activity)."""
    return [
        _metadata("thread_name", pid, {"name": name}, tid),
        _metadata("thread_sort_index", pid, {"sort_index": tid}, tid),
    ]


def _lane_name(base: str, lane: int) -> str:
    """Thread name of lane ``lane`` of a component or engine."""
    return base if lane == 0 else f"{base} [{lane + 1}]"


def _complete(name: str, cat: str, pid: int, tid: int, start: int, end: int, clock_mhz: float,
              args: dict[str, Any]) -> dict[str, Any]:
    """A complete ("X") event over cycles [start, end), in microseconds."""
    return {"name": name, "cat": cat, "ph": "X", "pid": pid, "tid": tid, "ts": start / clock_mhz,
            "dur": (end - start) / clock_mhz, "args": args}


def _span_event(span: Span, tid: int, clock_mhz: float) -> dict[str, Any]:
    """A complete event for one component span."""
    return _complete(span.op, span.category, COMPONENTS_PID, tid, span.start, span.end, clock_mhz,
                     {"tile": span.tile, "bytes": span.nbytes, "start_cycle": span.start, "end_cycle": span.end})


def _op_event(record: OpRecord, tid: int, clock_mhz: float) -> dict[str, Any]:
    """A complete event for one simulated op."""
    return _complete(
        record.op, record.kind, OPS_PID, tid, record.start_cycle, record.end_cycle, clock_mhz,
        json_safe(
            {
                "kind": record.kind,
                "engine": record.engine,
                "macs": record.macs,
                "energy_pj": record.energy_pj,
                "cycles": record.cycles,
                "start_cycle": record.start_cycle,
                "end_cycle": record.end_cycle,
                "tiles": record.tiles,
                "dram_read_bytes": record.dram_read_bytes,
                "dram_write_bytes": record.dram_write_bytes,
                "bound": op_bound(record),
                "group": record.group,
                "scope": record.scope,
            }
        ),
    )


def _laned_tracks(
    pid: int,
    groups: Iterable[tuple[str, Sequence[tuple[tuple[int, int], Any]]]],
    clock_mhz: float,
    make_event: Callable[[Any, int, float], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Events of several named tracks (tids 1, 2, ... in order), each split into non-overlapping lanes.

    Every track gets at least one thread, even without events, so an idle component still shows as a row.
    """
    events: list[dict[str, Any]] = []
    tid = 1
    for name, items in groups:
        lanes = assign_lanes([interval for interval, _ in items])
        lane_tids: dict[int, int] = {}
        for lane in sorted(set(lanes)) or [0]:
            lane_tids[lane] = tid
            events.extend(_thread_events(pid, tid, _lane_name(name, lane)))
            tid += 1
        for lane, (_, item) in sorted(zip(lanes, items, strict=True), key=lambda pair: pair[0]):
            events.append(make_event(item, lane_tids[lane], clock_mhz))
    return events


def _component_tracks(result: Result) -> list[dict[str, Any]]:
    """Metadata and span events of process 1."""
    by_component: dict[str, list[tuple[tuple[int, int], Span]]] = defaultdict(list)
    for span in sorted(result.spans, key=lambda s: (s.start, s.end)):
        by_component[span.component].append(((span.start, span.end), span))
    groups = [(name, by_component.get(name, [])) for name in component_rows(result)]
    return _laned_tracks(COMPONENTS_PID, groups, result.clock_mhz, _span_event)


def _op_tracks(result: Result) -> list[dict[str, Any]]:
    """Metadata and op events of process 2 (simulated ops only: folded ones cost nothing, unmodelled ones have
    no time)."""
    by_engine: dict[str, list[tuple[tuple[int, int], OpRecord]]] = defaultdict(list)
    for record in result.ops:
        if record.status == "simulated":
            by_engine[record.engine or "(no engine)"].append(((record.start_cycle, record.end_cycle), record))
    names = [name for name in result.engines if name in by_engine]
    names += [name for name in by_engine if name not in result.engines]
    return _laned_tracks(OPS_PID, [(n, by_engine[n]) for n in names], result.clock_mhz, _op_event)


def build_chrome_trace(result: Result) -> dict[str, Any]:
    """The trace.json content: ``traceEvents`` plus run facts under ``otherData``; depends only on the result."""
    title = f"{result.config} / {result.model}"
    events = [
        _metadata("process_name", OPS_PID, {"name": f"ops: {title}"}),
        _metadata("process_sort_index", OPS_PID, {"sort_index": 0}),
        _metadata("process_name", COMPONENTS_PID, {"name": title}),
        _metadata("process_sort_index", COMPONENTS_PID, {"sort_index": 1}),
    ]
    events += _op_tracks(result)
    events += _component_tracks(result)
    other = {
        "model": result.model,
        "config": result.config,
        "clock_mhz": result.clock_mhz,
        "batch": result.batch,
        "latency_cycles": result.latency_cycles,
        "unmodelled_ops": [record.op for record in result.unmodelled_ops],
    }
    return {"traceEvents": events, "displayTimeUnit": "ns", "otherData": json_safe(other)}


def write_chrome_trace(result: Result, path: str | os.PathLike[str]) -> Path:
    """Write trace.json atomically as compact JSON."""
    text = json.dumps(build_chrome_trace(result), separators=(",", ":"), allow_nan=False)
    return write_text_atomic(path, text + "\n")
