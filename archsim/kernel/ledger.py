"""The Ledger: where every component charges its busy spans, traffic and energy during a run.

Spans are kept as plain tuples while the run records them and become :class:`Span` named tuples at the end (a
named tuple, not a dataclass: a run makes tens of thousands and a tuple is four times cheaper to make); energy is accumulated by (component, op kind) and by op, so that the
totals by component, by op kind and by op are sums of the same charges (energy is the sum of its parts).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple


class Span(NamedTuple):
    """A busy interval of one component, in accelerator cycles [start, end).

    ``category`` says what kind of work it is: compute, dram_read, dram_write, buffer_read, buffer_write, noc,
    nonlinear, requant (an engine kind names its own). ``op`` is the op it serves; ``tile`` the tile index within
    that op; ``nbytes`` the bytes a transfer moved.
    """

    component: str
    start: int
    end: int
    op: str
    category: str
    tile: int = 0
    nbytes: int = 0


@dataclass
class Ledger:
    """Mutable accumulator owned by one Simulator; converted to frozen Result records at the end."""

    spans: list[tuple[str, int, int, str, str, int, int]] = field(default_factory=list)
    energy: defaultdict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    energy_by_op: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    busy: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    read_bytes: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    write_bytes: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    op_dram_read: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    op_dram_write: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    op_first: dict[str, int] = field(default_factory=dict)
    op_last: dict[str, int] = field(default_factory=dict)
    # per buffer, its occupancy changes in time order as flat pairs: cycle, +/- bytes, cycle, ... (ints, no tuples:
    # a run makes tens of thousands)
    occupancy: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def span(self, component: str, start: int, end: int, op: str, category: str, tile: int = 0, nbytes: int = 0) -> None:
        """Record that ``component`` was busy on ``op`` over [start, end)."""
        if end <= start:
            return
        self.spans.append((component, start, end, op, category, tile, nbytes))
        self.busy[component] += end - start
        first = self.op_first.get(op)  # touch(), inlined: this runs for every hop of every transaction
        if first is None or start < first:
            self.op_first[op] = start
        last = self.op_last.get(op)
        if last is None or end > last:
            self.op_last[op] = end

    def touch(self, op: str, start: int, end: int) -> None:
        """Extend the active interval of ``op``."""
        first = self.op_first.get(op)
        if first is None or start < first:
            self.op_first[op] = start
        last = self.op_last.get(op)
        if last is None or end > last:
            self.op_last[op] = end

    def charge(self, component: str, op: str, op_kind: str, pj: float) -> None:
        """Charge ``pj`` picojoules spent by ``component`` on behalf of ``op``."""
        if pj:
            self.energy[(component, op_kind)] += pj
            self.energy_by_op[op] += pj

    def frozen_spans(self) -> tuple[Span, ...]:
        return tuple(map(Span._make, self.spans))

    def energy_by_component(self) -> dict[str, float]:
        out: defaultdict[str, float] = defaultdict(float)
        for (comp, _), pj in self.energy.items():
            out[comp] += pj
        return dict(sorted(out.items()))

    def energy_by_component_kind(self) -> dict[str, dict[str, float]]:
        """Energy by component, then by op kind (static energy under the kind ``static``): the same charges as
        the two totals above, not summed over either key."""
        out: dict[str, dict[str, float]] = {}
        for (comp, kind), pj in sorted(self.energy.items()):
            out.setdefault(comp, {})[kind] = pj
        return out

    def energy_by_op_kind(self) -> dict[str, float]:
        out: defaultdict[str, float] = defaultdict(float)
        for (_, kind), pj in self.energy.items():
            out[kind] += pj
        return dict(sorted(out.items()))
