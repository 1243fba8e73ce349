"""Engine kinds: one registered object per engine type that owns everything the simulator needs to know about it.

An :class:`EngineKind` names the ``type`` a config's ``engines.<name>.type`` selects, validates that engine's keys
with its ``config_model``, says which ops it runs (:meth:`EngineKind.supports`), prices an op or a share of one
(:meth:`EngineKind.cost`: cycles, operand traffic, compute energy), gives its timeline and statistics category and
its contribution to the design's peak. Mapping, the runner, statistics, reports, ``validate`` and ``compare`` ask
the kind and never test concrete classes; the built-in kinds register through :func:`register_engine_kind`, the
same call a plugin uses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping, TypeVar, cast

from archsim.config.schema import Defaults, EngineBase
from archsim import registry
from archsim.registry import Registry
from archsim.workloads.geometry import Depthwise, Gemm
from archsim.workloads.ir import Op, Tensor


@dataclass(frozen=True, slots=True)
class OpCost:
    """What an op (or one engine's share of it) costs on an engine, whole-op totals; the tiler divides them."""

    cycles: int
    macs: int = 0
    elements: int = 0
    act_read_bytes: int = 0  # operands read from the activation buffer
    weight_read_bytes: int = 0  # operands read from the weight buffer
    write_bytes: int = 0  # results written back
    energy_pj: float = 0.0  # compute energy (MACs, non-linear evaluations, copies)
    detail: str = ""  # the dataflow choice, e.g. "pg_split=channels"


@dataclass(frozen=True, slots=True)
class Dataflow:
    """One legal way an engine runs an op, a choice the mapper searches over: how the engine's processing groups
    share the work (``split``: channels, pixels, heads, groups or batch) and what a lane's multipliers reduce over
    (``reduce``: ``k``, the input channels, or ``k*taps``, channels and kernel taps unrolled together) and what its
    lanes run in parallel (``lanes``). Empty fields mean the engine has no choice there."""

    split: str = ""
    reduce: str = ""
    lanes: str = ""  # what a MAC array's lanes run in parallel: output ``channels`` or output ``pixels``

    @property
    def label(self) -> str:
        """``split=pixels,reduce=k*taps,lanes=channels``; empty for an engine with no choices."""
        return ",".join(f"{k}={v}" for k, v in (("split", self.split), ("reduce", self.reduce), ("lanes", self.lanes))
                        if v)


@dataclass(frozen=True, slots=True)
class AreaUnits:
    """The arithmetic an engine is built from, which the area proxy (``archsim.hardware.area``) prices: integer
    ``multipliers`` of ``multiplier_bits`` x ``multiplier_bits`` operands (the MAC multipliers when the engine does
    MACs), integer ``adders`` of ``adder_bits``, and floating-point ``fp_lanes`` of ``fp_bits`` (one multiplier plus
    one adder each). ``note`` says why a kind's area is not derived this way (a GPU, a CPU): it then counts 0 unless
    the config gives ``area_mm2``."""

    multipliers: int = 0
    multiplier_bits: int = 8
    adders: int = 0
    adder_bits: int = 32
    fp_lanes: int = 0
    fp_bits: int = 16
    note: str = ""


class EngineKind:
    """Base of every engine kind. Subclasses set the class attributes and override what differs.

    ``category`` labels the engine's busy spans (compute, nonlinear, requant, dma, or a plugin's own word).
    ``shares_work``: several engines of such kinds may run one op at once, split by output channels (MAC arrays);
    they then take a geometry ``share`` in :meth:`cost`.
    """

    name: ClassVar[str] = ""
    config_model: ClassVar[type[EngineBase]] = EngineBase
    category: ClassVar[str] = "compute"
    shares_work: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def supports(self, cfg: EngineBase, op: Op, classes: list[str]) -> str | None:
        """The class (of ``classes``, most specific first) under which this engine runs ``op``; None if it cannot."""
        return None

    def cost(self, cfg: EngineBase, op: Op, tensors: Mapping[str, Tensor], cls: str,
             share: Gemm | Depthwise | None = None) -> OpCost:
        """Whole-op cost of ``op`` (or of ``share``, its part on this engine) run as ``cls``, in the engine's own
        fixed dataflow. A kind whose :meth:`dataflows` offers choices also accepts ``dataflow=`` (a
        :class:`Dataflow`), the mapper's pick."""
        raise NotImplementedError(f"engine kind {self.name!r} has no cost model")

    def dataflows(self, cfg: EngineBase, op: Op, tensors: Mapping[str, Tensor],
                  share: Gemm | Depthwise | None = None) -> tuple[Dataflow, ...]:
        """Every legal dataflow of ``op`` (or ``share``) on this engine, in a fixed order; empty when the engine has
        only its fixed one (the mapper then calls :meth:`cost` without ``dataflow``)."""
        return ()

    def peak_macs_per_cycle(self, cfg: EngineBase) -> int:
        """Multiply-accumulates per cycle at best (0 for engines that do no MACs)."""
        return 0

    def group_loss(self, cfg: EngineBase, op: Op, tensors: Mapping[str, Tensor],
                   share: Gemm | Depthwise | None = None, dataflow: Dataflow | None = None) -> tuple[int, str]:
        """(cycles, why): what running ``op`` on the engine's replicated processing groups costs over a perfect
        share of one group's cycles (idle groups, an uneven split); (0, "") for kinds without groups."""
        return 0, ""

    def counts_in_peak(self, cfg: EngineBase) -> bool:
        """Whether the engine's MACs count toward the design's peak and achieved GOPS (adder trees do not)."""
        return self.peak_macs_per_cycle(cfg) > 0

    def resources(self, cfg: EngineBase) -> dict[str, int]:
        """Countable hardware the engine occupies (``multipliers``, FPGA ``dsps``, ...), for area and per-resource
        figures; empty when the kind counts none."""
        return {}

    def area_units(self, cfg: EngineBase, defaults: Defaults) -> AreaUnits:
        """What the engine's area is derived from (``archsim.hardware.area``). By default one multiplier of the
        config's widest operand plus one ``acc_bits`` accumulator adder per MAC per cycle, so a kind without MACs
        (the DMA) counts 0; kinds whose hardware differs (vector lanes, re-quantization, GPU, CPU) override it."""
        peak = self.peak_macs_per_cycle(cfg)
        return AreaUnits(multipliers=peak, multiplier_bits=max(defaults.act_bits, defaults.weight_bits), adders=peak,
                         adder_bits=defaults.acc_bits)

    def summary(self, cfg: EngineBase) -> str:
        """One line for ``archsim validate``."""
        peak = self.peak_macs_per_cycle(cfg)
        extra = f", {peak} MACs/cycle" if peak else ""
        if peak and not self.counts_in_peak(cfg):
            extra += " (not in the design's peak)"
        return f"{cfg.type}{extra}"


#: Engine kinds by their config ``type`` name.
ENGINE_KINDS = cast(Registry[EngineKind], registry.ENGINE_KINDS)

K = TypeVar("K", bound=type[EngineKind])


def register_engine_kind(cls: K) -> K:
    """Class decorator (or call): register an instance of ``cls`` under ``cls.name``."""
    return ENGINE_KINDS.register_class(cls, EngineKind)


def kind_of(cfg: EngineBase) -> EngineKind:
    """The kind that owns engine config ``cfg`` (by its ``type``)."""
    return ENGINE_KINDS.get(cfg.type)


def design_peak_macs(engines: Mapping[str, EngineBase]) -> int:
    """MACs per cycle of the engines that count toward the design's peak."""
    total = 0
    for cfg in engines.values():
        kind = kind_of(cfg)
        if kind.counts_in_peak(cfg):
            total += kind.peak_macs_per_cycle(cfg)
    return total


def peak_macs(engines: Mapping[str, EngineBase], names: tuple[str, ...]) -> int:
    """MACs per cycle of the engines ``names`` together (an op's compute bound)."""
    return sum(kind_of(engines[n]).peak_macs_per_cycle(engines[n]) for n in names)
