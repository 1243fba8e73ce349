"""The mapper's output: every op as a :class:`Task` placed on engines and costed, grouped for inter-layer
pipelining, with where its tensors live and how many tiles it runs in; the runner plays it."""
from __future__ import annotations

from dataclasses import dataclass, field

from archsim.hardware.kind import OpCost
from archsim.workloads.ir import Op


@dataclass(frozen=True, slots=True)
class Part:
    """One engine's share of an op (an op split over several engines runs one part on each, concurrently)."""

    engine: str
    macs: int
    cycles: int
    energy_pj: float
    dataflow: str = ""  # the mapper's pick (Dataflow.label); empty: the engine's fixed loop nest
    group_loss: int = 0  # cycles over a perfect share of one processing group's cycles (EngineKind.group_loss)
    group_loss_why: str = ""


@dataclass(frozen=True, slots=True)
class RequantStage:
    """The re-quantization stage pipelined behind a MAC op's output tiles."""

    engine: str
    name: str
    scale_kind: str
    elements: int
    cycles: int
    energy_pj: float
    mode: str


@dataclass
class Task:
    """An op ready to simulate: engines, whole-op costs, where its tensors live, and its tile count."""

    op: Op
    index: int
    cls: str
    parts: tuple[Part, ...]
    cost: OpCost
    requant: RequantStage | None = None
    group: str = ""
    tiles: int = 1
    weight_dram_bytes: int = 0
    act_dram_bytes: int = 0
    out_dram_bytes: int = 0
    resident_out: bool = False
    stream_in: str = ""  # tensor received tile by tile from the previous task of the group
    stream_out: bool = False
    deps: tuple[str, ...] = ()
    role: str = ""  # the mapping.assign class that placed it
    tail: tuple[Part, ...] = ()  # work run on several engines at once after the last tile (Trio Rule D)
    order: str = ""  # loop order when neither operand fits on chip: weights-outer or activations-outer

    @property
    def name(self) -> str:
        return self.op.name

    @property
    def engines(self) -> tuple[str, ...]:
        return tuple(p.engine for p in self.parts)

    @property
    def all_engines(self) -> tuple[str, ...]:
        """Every engine the op uses, its tail included."""
        return tuple(dict.fromkeys([*self.engines, *(p.engine for p in self.tail)]))

    @property
    def cycles(self) -> int:
        return max(p.cycles for p in self.parts)

    @property
    def slowest(self) -> Part:
        """The part that sets the op's compute time."""
        return max(self.parts, key=lambda p: p.cycles)

    @property
    def dram_bytes(self) -> int:
        return self.weight_dram_bytes + self.act_dram_bytes + self.out_dram_bytes


@dataclass(frozen=True, slots=True)
class Skipped:
    """An op that costs nothing (folded into its producer, or a view) or that cannot be modelled."""

    op: Op
    status: str  # folded | unmodelled
    reason: str


@dataclass
class TaskGraph:
    groups: list[list[Task]]
    skipped: list[Skipped]
    order: list[str]  # every op name, trace order
    notes: list[str] = field(default_factory=list)

    @property
    def tasks(self) -> list[Task]:
        return [t for g in self.groups for t in g]
