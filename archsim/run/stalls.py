"""Stall attribution: why each engine and each op waited, resolved from the stage logs the runner kept.

During a run every stage process of a task logs ``(cycle, state)`` marks (archsim.run.runner, packed as
archsim.kernel.stall says): a reason it is blocked on (``dram``, ``buffer``, ``producer``, ``noc``), ``busy`` while
computing, or a pointer to another stage of the same task it waits for (the previous stage, the next stage, the
operand fetch). Here, after the run:

- an op's timeline is its compute stage's log with the pointers followed (so "waiting for the load stage, which
  waits for a DRAM channel" is ``dram``), over the op's window;
- an engine's run is split over its ops in the order it runs them: an op holds the engine from the end of the
  previous one to its own end. Cycles the engine computes are ``busy``; the rest take the reason of the op it holds
  at that cycle, except that while that op computes on other engines only (the engine's share of the tile is done,
  or it joins for the op's tail only) the engine is ``idle``, as it is after its last op.

Every cycle of [0, latency) is counted once per engine, so an engine's six figures sum to the run's latency.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from itertools import accumulate
from typing import Iterable, Mapping, Sequence

from archsim.kernel.stall import FETCH, MASK, POINTERS, REASONS, SHIFT, UP
from archsim.mapping.taskgraph import TaskGraph
from archsim.result import STALL_REASONS
from archsim.run.runner import Marks, TaskLog

#: A resolved stretch of time: [start, end) and its reason's index in STALL_REASONS.
Segment = tuple[int, int, int]

_PRODUCER = STALL_REASONS.index("producer")
_IDLE = STALL_REASONS.index("idle")
_MAX_DEPTH = 4  # pointers followed at most (a stage waiting for a stage waiting for ...); deeper: a bubble
assert STALL_REASONS[:len(REASONS)] == REASONS  # the kernel's reason codes index STALL_REASONS


def task_timeline(log: TaskLog, end: int) -> list[Segment]:
    """The op's reasons over [0, end): its compute stage's log with every pointer to another stage followed."""
    out: list[Segment] = []
    _walk(log, log.compute, log.stages[log.compute], 0, end, out, 0)
    return out


def _walk(log: TaskLog, k: int, marks: Marks, lo: int, hi: int, out: list[Segment], depth: int) -> None:
    """Append the reasons of stage ``k`` (``marks``; -1: the fetch log) over [lo, hi) to ``out``, merging a segment
    into the previous one when both have the same reason and meet."""
    j = bisect_right(marks, lo << SHIFT | MASK) - 1
    t = lo
    n = len(marks)
    if j < 0:  # before the stage's first mark: it had not started, so it waited for work elsewhere
        first = min(marks[0] >> SHIFT if marks else hi, hi)
        if first > t:
            out.append((t, first, _PRODUCER))
            t = first
        j = 0
    while t < hi and j < n:
        end = marks[j + 1] >> SHIFT if j + 1 < n else hi
        if end > t:
            if end > hi:
                end = hi
            code = marks[j] & MASK
            if code >= POINTERS:
                target = -1 if code == FETCH else k - 1 if code == UP else k + 1
                if depth < _MAX_DEPTH and k >= 0 and target < len(log.stages):
                    _walk(log, target, log.fetch if target < 0 else log.stages[target], t, end, out, depth + 1)
                    t = end
                    j += 1
                    continue
                code = _PRODUCER  # a pointer loop or a stage that does not exist: a pipeline bubble
            if out:
                last = out[-1]
                if last[2] == code and last[1] == t:
                    out[-1] = (last[0], end, code)
                    t = end
                    j += 1
                    continue
            out.append((t, end, code))
            t = end
        j += 1


def op_stalls(timeline: Sequence[Segment], start: int, end: int) -> dict[str, int]:
    """Cycles per reason (STALL_REASONS but idle) of an op's timeline within its window [start, end)."""
    totals = [0] * len(STALL_REASONS)
    for s, e, code in timeline:
        if e <= start:
            continue
        if s >= end:
            break
        totals[code] += (e if e < end else end) - (s if s > start else start)
    return dict(zip(STALL_REASONS[:-1], totals))


def merge(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of [start, end) intervals, sorted and disjoint."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def engine_reasons(windows: Sequence[tuple[int, int, list[Segment]]], last_active: int, latency: int) -> list[Segment]:
    """The reason timeline of one engine over [0, latency): each (start, end, op timeline) window in order, and
    outside them ``producer`` while the engine still has work ahead (before ``last_active``), ``idle`` after."""
    out: list[Segment] = []
    t = 0
    for start, end, timeline in windows:
        if start > t:
            out.extend(_gap(t, start, last_active))
            t = start
        i = bisect_right(timeline, (t, latency + 1, 0)) - 1  # the segment holding t
        for k in range(max(i, 0), len(timeline)):
            s, e, code = timeline[k]
            if s >= end:
                break
            if e > t:
                out.append((t, e if e < end else end, code))
                t = e if e < end else end
        if end > t:  # an op's timeline runs to its finish, so this only guards the exact cover
            out.extend(_gap(t, end, last_active))
            t = end
    if latency > t:
        out.extend(_gap(t, latency, last_active))
    return out


def _gap(t: int, until: int, last_active: int) -> list[Segment]:
    """[t, until) outside the engine's ops: a bubble while it has work ahead, idle after."""
    out = []
    if t < last_active:
        out.append((t, min(until, last_active), _PRODUCER))
        t = min(until, last_active)
    if until > t:
        out.append((t, until, _IDLE))
    return out


def engine_stalls(busy: Sequence[tuple[int, int]], reasons: Sequence[Segment], latency: int) -> dict[str, int]:
    """Split [0, latency) of one engine: ``busy`` (its merged compute intervals) counts as busy, the rest takes the
    reason of the segment of ``reasons`` (sorted, disjoint, covering [0, latency)) it falls in; a ``busy`` segment
    where the engine itself does not compute counts as idle."""
    totals = [0] * len(STALL_REASONS)
    totals[0] = sum((e if e < latency else latency) - s for s, e in busy if s < latency)
    i, nb = 0, len(busy)
    for s, e, code in reasons:
        if e > latency:
            e = latency
        if e <= s:
            continue
        while i < nb and busy[i][1] <= s:
            i += 1
        free, j = e - s, i
        while j < nb and busy[j][0] < e:
            bs, be = busy[j]
            free -= (be if be < e else e) - (bs if bs > s else s)
            j += 1
        if free:
            totals[_IDLE if code == 0 else code] += free
    return dict(zip(STALL_REASONS, totals))


def attribute(graph: TaskGraph, logs: Mapping[str, TaskLog], spans: Iterable[tuple[str, int, int, str, str, int, int]],
              engines: Iterable[str], op_windows: Mapping[str, tuple[int, int]], latency: int,
              ) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]], dict[str, int]]:
    """Per engine, reason -> cycles over the run; per op (tasks and their re-quantization stages), reason -> cycles
    over its window (no idle); per op, its busy cycles."""
    names = list(engines)
    wanted = set(names)
    requant_of = {t.requant.name: t.requant.engine for t in graph.tasks if t.requant is not None}
    by_engine: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
    by_requant: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
    for span in spans:
        if span[0] in wanted:
            by_engine[span[0]].append((span[1], span[2]))
            if span[3] in requant_of:
                by_requant[span[3]].append((span[1], span[2]))
    timelines = {name: task_timeline(log, max(log.done, 0)) for name, log in logs.items()}
    ops: dict[str, dict[str, int]] = {}
    for name, timeline in timelines.items():
        start, end = op_windows.get(name, (0, 0))
        ops[name] = op_stalls(timeline, start, end)
    for name in requant_of:  # a re-quantization stage computes its tiles and waits for the next one in between
        start, end = op_windows.get(name, (0, 0))
        computed = sum(e - s for s, e in merge(by_requant[name]))
        ops[name] = {**dict.fromkeys(STALL_REASONS[:-1], 0), "busy": computed,
                     "producer": max(0, end - start - computed)}
    runs: dict[str, list[str]] = {name: [] for name in names}  # each engine's ops, in the order it runs them
    for t in graph.tasks:
        if t.name in logs:
            for engine in t.all_engines:
                if engine in runs:
                    runs[engine].append(t.name)
    stalls: dict[str, dict[str, int]] = {}
    for engine in names:
        busy = merge(by_engine[engine])
        windows: list[tuple[int, int, list[Segment]]] = []
        held = 0
        for name in runs[engine]:
            end = max(held, logs[name].done)
            if end > held:
                windows.append((held, end, timelines[name]))
            held = end
        last_active = max(held, busy[-1][1] if busy else 0)
        stalls[engine] = engine_stalls(busy, engine_reasons(windows, last_active, latency), latency)
    return stalls, ops, {name: totals["busy"] for name, totals in ops.items()}


def occupancy_series(changes: Mapping[str, Sequence[int]], buffers: Iterable[str]
                     ) -> dict[str, tuple[tuple[int, float], ...]]:
    """``<buffer>.occupancy_bytes`` step series from the run's per-buffer log of (cycle, delta) flat pairs: value
    changes only, the last value of a cycle, first point (0, 0.0) or the value at cycle 0."""
    out: dict[str, tuple[tuple[int, float], ...]] = {}
    for name in buffers:
        log = changes.get(name, ())
        cycles, levels = log[0::2], list(accumulate(log[1::2]))
        points: list[tuple[int, float]] = [(0, 0.0)]
        value = 0
        last = len(cycles) - 1
        for i, cycle in enumerate(cycles):
            if i < last and cycles[i + 1] == cycle:
                continue  # not the cycle's last change
            level = levels[i]
            if level != value:
                value = level
                if cycle == 0:
                    points[0] = (0, float(level))
                else:
                    points.append((cycle, float(level)))
        out[f"{name}.occupancy_bytes"] = tuple(points)
    return out
