"""The outcome of one simulation: per-op records, per-component statistics, energy and timeline spans.

A :class:`Result` is plain data: the report writers turn it into summary.json, layers.csv, plots and traces, and
tests check invariants on it. It holds no wall-clock time, so two runs of the same inputs are identical.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from archsim.kernel.ledger import Span

#: Why an engine's time went where it went, in report order. busy = computing; dram = blocked on a DRAM transfer it
#: needs; buffer = blocked on a buffer port or on buffer/FIFO space; producer = waiting for an input not yet produced
#: (a dependency or an empty FIFO: a pipeline bubble); noc = blocked on a NoC link; idle = nothing to do.
STALL_REASONS: tuple[str, ...] = ("busy", "dram", "buffer", "producer", "noc", "idle")


#: Share of an op's window its DRAM traffic must fill (memory bound / elapsed) for the op to count as DRAM-bound.
DRAM_BOUND_SHARE = 0.9


@dataclass(frozen=True, slots=True)
class OpRecord:
    """What one op cost: when it ran, where, and what it moved and spent.

    ``status`` is ``simulated``, ``folded`` (absorbed into its producer at zero cost, e.g. a batchnorm folded into
    a conv, or a view) or ``unmodelled`` (counted and reported, never silently dropped). ``group`` names the
    inter-layer fusion group it ran in ('' when it ran alone).
    """

    op: str
    kind: str
    engine: str
    start_cycle: int
    end_cycle: int
    macs: int
    elements: int
    dram_read_bytes: int
    dram_write_bytes: int
    energy_pj: float
    tiles: int
    status: str = "simulated"
    group: str = ""
    scope: str = ""
    compute_bound_cycles: int = 0
    memory_bound_cycles: int = 0
    mapping: str = ""  # the mapper's choice in one line (archsim.mapping.search.label)
    group_loss_cycles: int = 0  # what the processing groups lose against one group, on the part that sets the time
    group_loss: str = ""  # and why (idle groups, uneven split)
    busy_cycles: int = 0  # cycles its engine(s) computed for this op (<= cycles)
    # the stall reasons (STALL_REASONS minus idle) over the op's elapsed window, reason -> cycles
    stalls: Mapping[str, int] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()  # the ops producing its inputs

    @property
    def cycles(self) -> int:
        return self.end_cycle - self.start_cycle

    @property
    def bottleneck(self) -> str:
        """What limits the op: ``dram`` when its DRAM traffic alone fills at least :data:`DRAM_BOUND_SHARE` of its
        window (its engines may then be seen waiting on a buffer port or a stage that the DRAM stream keeps busy:
        the immediate wait, not the limit), else the reason that took most of its window ("busy": compute-bound);
        '' when nothing was recorded."""
        if self.cycles and self.memory_bound_cycles >= DRAM_BOUND_SHARE * self.cycles:
            return "dram"
        best, most = "", 0
        for reason in STALL_REASONS:
            value = self.stalls.get(reason, 0)
            if value > most:
                best, most = reason, value
        return best


@dataclass(frozen=True, slots=True)
class EngineStat:
    """Utilisation of one compute engine over the whole run."""

    name: str
    type: str
    peak_macs_per_cycle: int
    busy_cycles: int
    macs: int
    utilization: float  # macs / (peak_macs_per_cycle * latency_cycles); 0 for engines without MACs
    ops: int
    adder_tree: bool = False  # adds only: outside the design's peak and achieved GOPS


@dataclass(frozen=True, slots=True)
class ComponentStat:
    """Busy time and traffic of one component (engine, buffer, DRAM channel, NoC)."""

    name: str
    type: str
    busy_cycles: int
    read_bytes: int = 0
    write_bytes: int = 0


@dataclass(frozen=True)
class Result:
    """Everything a run produced; ``archsim.report`` turns it into files. ``OpRecord.engine`` joins the engines of
    an op split over several with ``+`` (``mat+rmac``). Energy by component and by op kind are sums of the same
    charges, so both add up to ``energy_pj_total``."""

    model: str
    config: str
    clock_mhz: float
    batch: int
    latency_cycles: int
    ops: tuple[OpRecord, ...]
    engines: Mapping[str, EngineStat]
    components: Mapping[str, ComponentStat]
    energy_pj_by_component: Mapping[str, float]
    energy_pj_by_op_kind: Mapping[str, float]
    spans: tuple[Span, ...]
    dram_read_bytes: int
    dram_write_bytes: int
    events: int
    workload_meta: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # the config's area proxy (archsim.hardware.area.area_of): total and per component in mm², and whether it was
    # derived, given by the config or mixed; None / empty when the run did not record it
    area_mm2: float | None = None
    area_by_component: Mapping[str, float] = field(default_factory=dict)
    area_source: str = ""
    # per engine, STALL_REASONS -> cycles over the whole run; the six values sum to latency_cycles
    stalls: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # step series of (cycle, value), value changes only, first point at cycle 0: "<buffer>.occupancy_bytes", ...
    counters: Mapping[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)
    # energy by component, then op kind (static under ``static``): the charges both totals above sum
    energy_pj_by_component_kind: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float:
        return self.latency_cycles / (self.clock_mhz * 1e3)

    @property
    def fps(self) -> float:
        return self.batch / (self.latency_ms / 1e3) if self.latency_cycles else 0.0

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.ops)

    @property
    def energy_pj_total(self) -> float:
        return sum(self.energy_pj_by_component.values())

    @property
    def unmodelled_ops(self) -> tuple[OpRecord, ...]:
        return tuple(r for r in self.ops if r.status == "unmodelled")

    # ---- derived throughput metrics: over the engines of the design's peak (adder trees left out) -----------------
    @property
    def peak_macs_per_cycle(self) -> int:
        """Sum of the peak MAC rates of the engines that count toward the design's peak."""
        return sum(s.peak_macs_per_cycle for s in self.engines.values() if s.peak_macs_per_cycle and not s.adder_tree)

    @property
    def multiply_macs(self) -> int:
        """MACs done on the engines of the peak (adder-tree additions left out)."""
        return sum(s.macs for s in self.engines.values() if s.peak_macs_per_cycle and not s.adder_tree)

    @property
    def mac_utilization(self) -> float:
        """MACs done / (peak MACs per cycle x latency): how busy the arrays are, in [0, 1]."""
        denominator = self.peak_macs_per_cycle * self.latency_cycles
        return self.multiply_macs / denominator if denominator else 0.0

    @property
    def achieved_gops(self) -> float:
        """Achieved throughput of the engines of the peak in GOPS, one MAC counting as two operations."""
        seconds = self.latency_ms / 1e3
        return 2.0 * self.multiply_macs / seconds / 1e9 if seconds else 0.0

    @property
    def peak_gops(self) -> float:
        """Peak throughput of the engines of the peak in GOPS at the run's clock."""
        return 2.0 * self.peak_macs_per_cycle * self.clock_mhz * 1e6 / 1e9
