"""trace.json: the run in the Chrome Trace Event Format, to browse in ui.perfetto.dev or chrome://tracing.

* Process "ops" (pid 2): one thread per engine, one slice per simulated op (MACs, DRAM bytes, bits, energy, stalls
  and bottleneck as arguments).
* Process "components" (pid 1): one thread per component with its busy spans, one slice per tile or transfer, named
  by the op it serves (tile index and bytes as arguments). Complete ("X") events on one thread must not partly
  overlap, so a component whose spans overlap (e.g. a DRAM channel with several requests in flight) gets extra lanes
  named ``<component> [2]``, ``[3]``, ...
* Flow arrows from producer to consumer, on the engines' tile slices: the producer's last tile to the consumer's
  first, and tile i to tile i between two ops of one fused group (``OpRecord.inputs``).
* Process "counters" (pid 3): DRAM bandwidth per channel (GB/s, read and write, binned from the DRAM spans) and
  every series of ``Result.counters`` (buffer occupancy in bytes).

Times are microseconds (the format's unit), rounded to whole nanoseconds of ``cycle / clock_mhz``, so a slice's
``ts + dur`` is exactly the next one's ``ts`` when they touch. The text is assembled line by line rather than through
``json.dumps`` of a dict per event: a whole model has ~40k slices and this keeps the file small and quick to write.
"""
from __future__ import annotations

import heapq
import json
import math
import operator
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from archsim.report.layers import op_bound
from archsim.report.summary import json_safe, round_sig, write_text_atomic
from archsim.result import OpRecord, Result, Span

COMPONENTS_PID = 1
OPS_PID = 2
COUNTERS_PID = 3

#: Display rank of component types after the engines: compute on top, then on-chip memory, NoC, DRAM, the rest.
COMPONENT_TYPE_RANK: dict[str, int] = {"sram": 1, "buffer": 1, "noc": 2, "dram": 3}
#: Number of bins of the DRAM bandwidth counters over the run (fewer when the run is shorter in cycles).
BANDWIDTH_BINS = 400
FLOW_NAME = "data"
_COMPONENT, _START, _END, _OP, _CATEGORY = (operator.itemgetter(i) for i in range(5))  # fields of a Span
_START_END = operator.itemgetter(1, 2)
_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)


def component_rows(result: Result) -> list[str]:
    """Rows in display order: engines (config order, idle ones too), then buffers, NoC links, DRAM channels and
    anything else (each group in the order ``result.components`` lists it), then components seen only in spans."""
    unique = list(dict.fromkeys([*result.engines, *result.components, *dict.fromkeys(map(_COMPONENT,
                                                                                          result.spans))]))

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


def _lane_name(base: str, lane: int) -> str:
    """Thread name of lane ``lane`` of a component or engine."""
    return base if lane == 0 else f"{base} [{lane + 1}]"


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class _Writer:
    """Collects the event lines of one trace; caches the JSON text of names and times that repeat."""

    def __init__(self, clock_mhz: float) -> None:
        self.lines: list[str] = []
        self.ns_per_cycle = 1e3 / clock_mhz
        self._names: dict[str, str] = {}
        self._ts: dict[int, str] = {}

    def name(self, text: str) -> str:
        quoted = self._names.get(text)
        if quoted is None:
            quoted = self._names[text] = json.dumps(text)
        return quoted

    def ns(self, cycle: int) -> int:
        """Whole nanoseconds at ``cycle``: monotone in ``cycle``, so rounding never reorders two times."""
        return round(cycle * self.ns_per_cycle)

    def us(self, ns: int) -> str:
        """A time or duration in whole ns as microseconds text: ``repr`` of ``ns / 1000`` is the shortest text that
        reads back as that float, and the reader's ``round(x * 1000)`` gives ``ns`` again."""
        text = self._ts.get(ns)
        if text is None:
            text = self._ts[ns] = str(ns / 1000)
        return text

    def metadata(self, name: str, pid: int, args: dict[str, Any], tid: int = 0) -> None:
        self.lines.append(f'{{"ph":"M","pid":{pid},"tid":{tid},"name":"{name}","args":{_dump(args)}}}')

    def thread(self, pid: int, tid: int, name: str) -> None:
        """Name a thread and pin its position (rows otherwise get sorted by activity)."""
        self.metadata("thread_name", pid, {"name": name}, tid)
        self.metadata("thread_sort_index", pid, {"sort_index": tid}, tid)


def _op_args(record: OpRecord, bits: dict[str, Any]) -> dict[str, Any]:
    """Arguments of one op slice."""
    args: dict[str, Any] = {
        "kind": record.kind,
        "engine": record.engine,
        "macs": record.macs,
        "dram_read_bytes": record.dram_read_bytes,
        "dram_write_bytes": record.dram_write_bytes,
        **bits,
        "energy_pj": json_safe(record.energy_pj),
        "cycles": record.cycles,
        "busy_cycles": record.busy_cycles,
        "bottleneck": record.bottleneck,
        "stall_cycles": {reason: int(cycles) for reason, cycles in record.stalls.items()},
        "start_cycle": record.start_cycle,
        "end_cycle": record.end_cycle,
        "tiles": record.tiles,
        "bound": op_bound(record),
        "group": record.group,
        "scope": record.scope,
        "inputs": list(record.inputs),
    }
    if record.mapping:
        args["mapping"] = record.mapping
    return args


def _laned(items: Sequence[tuple[int, int, Any]]) -> tuple[list[int], int]:
    """Lane of each (start, end, item) and the number of lanes (at least one)."""
    lanes = assign_lanes([(start, end) for start, end, _ in items])
    return lanes, max(lanes, default=0) + 1


def _op_tracks(out: _Writer, result: Result) -> None:
    """Threads and op slices of the ops process (simulated ops only: folded ones cost nothing, unmodelled ones have
    no time)."""
    by_engine: dict[str, list[tuple[int, int, OpRecord]]] = defaultdict(list)
    for record in result.ops:
        if record.status == "simulated":
            by_engine[record.engine or "(no engine)"].append((record.start_cycle, record.end_cycle, record))
    names = [name for name in result.engines if name in by_engine]
    names += [name for name in by_engine if name not in result.engines]
    meta = result.workload_meta
    bits = json_safe({key: meta[key] for key in ("act_bits", "weight_bits") if key in meta})
    tid = 1
    for name in names:
        items = by_engine[name]
        lanes, count = _laned(items)
        for lane in range(count):
            out.thread(OPS_PID, tid + lane, _lane_name(name, lane))
        for lane, (start, end, record) in zip(lanes, items, strict=True):
            t0, t1 = out.ns(start), out.ns(end)
            out.lines.append(
                f'{{"ph":"X","pid":{OPS_PID},"tid":{tid + lane},"ts":{out.us(t0)},"dur":{out.us(t1 - t0)},'
                f'"name":{out.name(record.op)},"cat":{out.name(record.kind)},'
                f'"args":{_dump(_op_args(record, bits))}}}'
            )
        tid += count


#: Where a tile slice sits, for flow arrows: (tid, mid-point in ns); mid-points are strictly inside the slice.
TileSlices = dict[str, dict[int, tuple[int, int]]]


def _component_tracks(out: _Writer, result: Result) -> TileSlices:
    """Threads and span slices of the components process; returns the engines' tile slices by op, then tile.

    Written for speed (a whole model has ~40k spans): the text of every distinct name and time is made once, and
    each component's slices come from one list comprehension over its span columns."""
    spans = result.spans
    by_component: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        by_component[span.component].append(span)
    cycles = set(map(_START, spans))
    cycles.update(map(_END, spans))
    cycle_list = list(cycles)
    scale = out.ns_per_cycle
    times = [round(cycle * scale) for cycle in cycle_list]
    ns = dict(zip(cycle_list, times))
    us = dict(zip(cycle_list, map(str, [value / 1000 for value in times])))
    # the constant middle of a slice's text, per (op, category): name, category and the start of the arguments
    tails = {key: f',"name":{out.name(key[0])},"cat":{out.name(key[1])},"args":{{"tile":'
             for key in set(zip(map(_OP, spans), map(_CATEGORY, spans)))}
    durations: dict[int, str] = {}
    tiles: TileSlices = defaultdict(dict)
    engines = set(result.engines)
    pid = COMPONENTS_PID
    tid = 1
    for name in component_rows(result):
        items = sorted(by_component.get(name, ()), key=_START_END)
        starts, ends = list(map(_START, items)), list(map(_END, items))
        if all(map(operator.le, ends[:-1], starts[1:])):  # the common case: no overlap, one lane
            lanes, count = [0] * len(items), 1
        else:
            lanes, count = _laned([(span.start, span.end, span) for span in items])
        for lane in range(count):
            out.thread(pid, tid + lane, _lane_name(name, lane))
        heads = [f'{{"ph":"X","pid":{pid},"tid":{tid + lane},"ts":' for lane in range(count)]
        widths = [ns[end] - ns[start] for start, end in zip(starts, ends)]
        for width in set(widths).difference(durations):
            durations[width] = out.us(width)
        out.lines += [
            f'{heads[lane]}{us[start]},"dur":{durations[width]}{tails[op, cat]}{tile},"bytes":{nbytes}}}}}' if nbytes
            else f'{heads[lane]}{us[start]},"dur":{durations[width]}{tails[op, cat]}{tile}}}}}'
            for lane, width, (_, start, _, op, cat, tile, nbytes) in zip(lanes, widths, items, strict=True)
        ]
        if name in engines:
            for lane, span in zip(lanes, items, strict=True):
                t0, t1 = ns[span.start], ns[span.end]
                if t1 - t0 >= 2:  # a mid-point strictly inside the slice, for flows to bind to
                    tiles[span.op].setdefault(span.tile, (tid + lane, (t0 + t1) // 2))
        tid += count
    return tiles


def _flow_pairs(result: Result, tiles: TileSlices) -> Iterable[tuple[tuple[int, int], tuple[int, int]]]:
    """(producer slice, consumer slice) of every flow arrow, as (tid, ns) binding points."""
    groups = {record.op: record.group for record in result.ops}
    for record in result.ops:
        mine = tiles.get(record.op)
        if not mine or record.status != "simulated":
            continue
        for producer in record.inputs:
            theirs = tiles.get(producer)
            if not theirs:
                continue
            if record.group and groups.get(producer) == record.group:
                for index in sorted(mine.keys() & theirs.keys()):
                    yield theirs[index], mine[index]
            else:
                yield theirs[max(theirs)], mine[min(mine)]


def _flows(out: _Writer, result: Result, tiles: TileSlices) -> None:
    """Flow start ("s") and end ("f", bound to the enclosing slice) events, one id per arrow."""
    for flow_id, ((tid0, ns0), (tid1, ns1)) in enumerate(_flow_pairs(result, tiles), start=1):
        common = f'"pid":{COMPONENTS_PID},"name":"{FLOW_NAME}","cat":"flow","id":{flow_id}'
        out.lines.append(f'{{"ph":"s",{common},"tid":{tid0},"ts":{out.us(ns0)}}}')
        out.lines.append(f'{{"ph":"f","bp":"e",{common},"tid":{tid1},"ts":{out.us(ns1)}}}')


def dram_bandwidth(result: Result, bins: int = BANDWIDTH_BINS) -> dict[str, list[tuple[int, float, float]]]:
    """Per DRAM channel: (bin start cycle, read GB/s, write GB/s) over the run, bytes of each transfer spread evenly
    over its span; plus a closing point at the run's end with zeros. Channels are components of type ``dram``."""
    channels = [name for name, stat in result.components.items() if stat.type == "dram"]
    length = max(result.latency_cycles, max((s.end for s in result.spans), default=0))
    if not channels or length <= 0:
        return {}
    width = max(1, math.ceil(length / bins))
    count = math.ceil(length / width)
    totals = {name: ([0.0] * count, [0.0] * count) for name in channels}
    for span in [span for span in result.spans if span.nbytes and span.component in totals]:
        pair = totals[span.component]
        column = pair[1] if span.category.endswith("write") else pair[0]
        if span.end <= span.start:
            column[min(span.start // width, count - 1)] += span.nbytes
            continue
        rate = span.nbytes / (span.end - span.start)
        first, last = span.start // width, min((span.end - 1) // width, count - 1)
        for index in range(first, last + 1):
            overlap = min(span.end, (index + 1) * width) - max(span.start, index * width)
            column[index] += rate * overlap
    to_gbs = result.clock_mhz / width / 1e3  # bytes per bin -> GB/s
    series = {}
    for name, (reads, writes) in totals.items():
        points = [(index * width, round_sig(r * to_gbs, 4), round_sig(w * to_gbs, 4))
                  for index, (r, w) in enumerate(zip(reads, writes, strict=True))]
        series[name] = [*_changes(points), (count * width, 0.0, 0.0)]
    return series


def _changes(points: list[tuple[int, float, float]]) -> list[tuple[int, float, float]]:
    """Points whose values differ from the previous point's (a counter holds its value until the next one)."""
    kept: list[tuple[int, float, float]] = []
    for point in points:
        if not kept or kept[-1][1:] != point[1:]:
            kept.append(point)
    return kept


def _counter_name(key: str) -> tuple[str, str]:
    """Track name and argument of a ``Result.counters`` key: ``buf_ab.occupancy_bytes`` -> (buf_ab, occupancy_bytes);
    Perfetto shows the track as ``buf_ab occupancy_bytes``."""
    head, _, tail = key.rpartition(".")
    return (head, tail) if head and tail else (key, "value")


def _counters(out: _Writer, result: Result) -> None:
    """Counter events, each track in time order (one value per timestamp, the last one given)."""
    pid = COUNTERS_PID
    for name, points in dram_bandwidth(result).items():
        track = out.name(f"{name} GB/s")
        for cycle, read, write in points:
            out.lines.append(f'{{"ph":"C","pid":{pid},"tid":0,"ts":{out.us(out.ns(cycle))},"name":{track},'
                             f'"args":{{"read":{read!r},"write":{write!r}}}}}')
    for key in sorted(result.counters):
        name, arg = _counter_name(key)
        head = f'{{"ph":"C","pid":{pid},"tid":0,"name":{out.name(name)},"args":{{{out.name(arg)}:'
        steps = sorted(result.counters[key], key=_FIRST)
        scale = out.ns_per_cycle
        by_ns = dict(zip([round(cycle * scale) for cycle, _ in steps], map(_SECOND, steps)))  # the last one wins
        out.lines += [f'{head}{_number(value)}}},"ts":{value_ns / 1000}}}' for value_ns, value in by_ns.items()]


def _number(value: float) -> str:
    """A counter value as JSON: whole values without a fraction, others to six significant digits."""
    if not math.isfinite(value):
        return "0"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(round_sig(value))


def render_chrome_trace(result: Result) -> str:
    """The trace.json text (one event per line); depends only on the result."""
    title = f"{result.config} / {result.model}"
    out = _Writer(result.clock_mhz)
    out.metadata("process_name", OPS_PID, {"name": f"ops: {title}"})
    out.metadata("process_sort_index", OPS_PID, {"sort_index": 0})
    out.metadata("process_name", COMPONENTS_PID, {"name": f"components: {title}"})
    out.metadata("process_sort_index", COMPONENTS_PID, {"sort_index": 1})
    out.metadata("process_name", COUNTERS_PID, {"name": f"counters: {title}"})
    out.metadata("process_sort_index", COUNTERS_PID, {"sort_index": 2})
    _op_tracks(out, result)
    tiles = _component_tracks(out, result)
    _flows(out, result, tiles)
    _counters(out, result)
    other = {
        "model": result.model,
        "config": result.config,
        "clock_mhz": result.clock_mhz,
        "batch": result.batch,
        "latency_cycles": result.latency_cycles,
        "time": "ts and dur in microseconds = cycle / clock_mhz, rounded to whole ns",
        "unmodelled_ops": [record.op for record in result.unmodelled_ops],
    }
    return '{"otherData":' + _dump(json_safe(other)) + ',"traceEvents":[\n' + ",\n".join(out.lines) + "\n]}\n"


def build_chrome_trace(result: Result) -> dict[str, Any]:
    """The trace.json content as data (``traceEvents`` plus run facts under ``otherData``)."""
    trace: dict[str, Any] = json.loads(render_chrome_trace(result))
    return trace


def write_chrome_trace(result: Result, path: str | os.PathLike[str]) -> Path:
    """Write trace.json atomically."""
    return write_text_atomic(path, render_chrome_trace(result))
