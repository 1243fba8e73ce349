"""A ``rows x cols`` systolic array timed as SCALE-Sim times it (``systolic``): output-, weight- or
input-stationary, with fill, stationary-operand load and drain paid in every fold.

SCALE-Sim (Samajdar et al., "A Systematic Methodology for Characterizing Scalability of DNN Accelerators using
SCALE-Sim", ISPASS 2020; the ``scalesim`` package's ``compute/systolic_compute_{os,ws,is}.py``) maps a GEMM
``(M x K) @ (K x N)`` onto the array as two spatial dimensions ``Sr x Sc`` folded over the rows and columns, and
one temporal dimension ``T`` streamed through it:

==========  ==========  ==========  =====  ==========================
dataflow    Sr (rows)   Sc (cols)   T      cycles per fold
==========  ==========  ==========  =====  ==========================
``os``      M           N           K      T + R + C - 2
``ws``      K           N           M      2R + C + T - 2
``is``      K           M           N      2R + C + T - 2
==========  ==========  ==========  =====  ==========================

with ``ceil(Sr/R) * ceil(Sc/C)`` folds run one after another. ``R + C - 2`` is the skew of the operand wavefront
(fill and drain), and WS/IS first shift the stationary operand into the rows (``R`` more cycles). These are the
lengths of SCALE-Sim's demand matrices; SCALE-Sim reports the 0-based index of the last of those cycles as the
layer's compute cycles, one less. A conv runs as its GEMM (reduction ``k * taps``, SCALE-Sim's im2col window), a
grouped or depthwise conv and a multi-head matmul as their GEMMs one after another (SCALE-Sim runs a depthwise
layer as one single-channel layer per channel), so a depthwise conv uses one column of the array.

Operand traffic is SCALE-Sim's SRAM access count: the operand that is not stationary is re-read once per fold of
the other spatial dimension, and WS/IS write a partial sum of every output once per row fold (``psum_bits`` wide)
before the last fold writes the result.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Mapping

from archsim.config.schema import Bits, Defaults, EngineBase, NonNegFloat, PosInt
from archsim.hardware.kind import AreaUnits, EngineKind, OpCost, register_engine_kind
from archsim.workloads.geometry import Depthwise, Gemm, geometry
from archsim.workloads.ir import Op, Tensor
from archsim.workloads.kinds import is_mac

SystolicDataflow = Literal["os", "ws", "is"]


class SystolicEngine(EngineBase):
    """Config keys of a ``systolic`` engine: the array's shape, its dataflow and its MAC's width and energy."""

    type: Literal["systolic"] = "systolic"
    rows: PosInt = 32
    cols: PosInt = 32
    dataflow: SystolicDataflow = "ws"  # os: outputs stay in the PEs; ws: weights; is: inputs
    mac_pj: NonNegFloat = 0.23  # one multiplier_bits x multiplier_bits MAC (8b: Horowitz ISSCC'14, 45 nm)
    multiplier_bits: Bits = 8  # operand width of a PE's multiplier; wider operands take several passes
    psum_bits: Bits = 32  # width of the partial sums WS/IS write back between row folds


@dataclass(frozen=True, slots=True)
class SystolicCounts:
    """Cycles and SRAM element accesses of a GEMM on a systolic array (whole op, all groups)."""

    folds: int
    fold_cycles: int  # cycles of one fold: stream T, fill and drain, load the stationary operand
    ifmap_reads: int  # elements of the left operand (activations) read into the array
    filter_reads: int  # elements of the right operand (weights) read into the array
    output_writes: int  # final outputs written
    psum_writes: int  # partial sums written before the last row fold (WS, IS)

    @property
    def cycles(self) -> int:
        return self.folds * self.fold_cycles


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _bytes(elements: int, bits: int) -> int:
    return (elements * bits + 7) // 8


def gemm_counts(m: int, k: int, n: int, rows: int, cols: int, dataflow: SystolicDataflow,
                groups: int = 1) -> SystolicCounts:
    """SCALE-Sim's fold count, cycles per fold and SRAM accesses of ``groups`` GEMMs ``(m x k) @ (k x n)``."""
    r, c = rows, cols
    if dataflow == "os":  # each PE accumulates one output; both operands stream in, k steps
        folds_m, folds_n = _cdiv(m, r), _cdiv(n, c)
        return SystolicCounts(folds=groups * folds_m * folds_n, fold_cycles=k + r + c - 2,
                              ifmap_reads=groups * m * k * folds_n, filter_reads=groups * k * n * folds_m,
                              output_writes=groups * m * n, psum_writes=0)
    folds_k = _cdiv(k, r)
    psums = groups * m * n * (folds_k - 1)
    if dataflow == "ws":  # a k x n weight tile stays; the m input rows stream through
        folds_n = _cdiv(n, c)
        return SystolicCounts(folds=groups * folds_k * folds_n, fold_cycles=2 * r + c + m - 2,
                              ifmap_reads=groups * m * k * folds_n, filter_reads=groups * k * n,
                              output_writes=groups * m * n, psum_writes=psums)
    folds_m = _cdiv(m, c)  # is: a k x m input tile stays; the n weight columns stream through
    return SystolicCounts(folds=groups * folds_k * folds_m, fold_cycles=2 * r + c + n - 2,
                          ifmap_reads=groups * m * k, filter_reads=groups * k * n * folds_m,
                          output_writes=groups * m * n, psum_writes=psums)


def as_gemm(geom: Gemm | Depthwise) -> Gemm:
    """A depthwise conv as ``channels`` GEMMs of (pixels x taps) @ (taps x 1), SCALE-Sim's per-channel layers."""
    if isinstance(geom, Gemm):
        return geom
    return Gemm(groups=geom.channels, m=geom.rows * geom.width, k=1, n=1, taps=geom.taps, batch=geom.batch)


def counts(cfg: SystolicEngine, geom: Gemm | Depthwise) -> SystolicCounts:
    """:func:`gemm_counts` of an op's geometry on ``cfg`` (a conv's reduction is its channels x kernel taps)."""
    g = as_gemm(geom)
    return gemm_counts(g.m, g.k * g.taps, g.n, cfg.rows, cfg.cols, cfg.dataflow, g.groups)


def passes(cfg: SystolicEngine, a_bits: int, w_bits: int) -> tuple[int, int]:
    """(activation slices, weight slices): operands wider than the multiplier run as narrower slices, one pass
    through the array per pair of slices (each pass re-streams the other operand's slices)."""
    return _cdiv(a_bits, cfg.multiplier_bits), _cdiv(w_bits, cfg.multiplier_bits)


@register_engine_kind
class SystolicKind(EngineKind):
    """SCALE-Sim's systolic array: folds x (stream + fill/drain [+ stationary load]) cycles per GEMM."""

    name: ClassVar[str] = "systolic"
    config_model: ClassVar[type[EngineBase]] = SystolicEngine
    category: ClassVar[str] = "compute"
    shares_work: ClassVar[bool] = True
    description: ClassVar[str] = "rows x cols systolic array, os/ws/is, timed as SCALE-Sim (ISPASS 2020)"

    def supports(self, cfg: EngineBase, op: Op, classes: list[str]) -> str | None:
        """Every MAC op; a depthwise conv runs channel by channel on one column."""
        return op.kind if is_mac(op.kind) else None

    def peak_macs_per_cycle(self, cfg: EngineBase) -> int:
        assert isinstance(cfg, SystolicEngine)
        return cfg.rows * cfg.cols

    def resources(self, cfg: EngineBase) -> dict[str, int]:
        assert isinstance(cfg, SystolicEngine)
        return {"multipliers": cfg.rows * cfg.cols}

    def area_units(self, cfg: EngineBase, defaults: Defaults) -> AreaUnits:
        """A multiplier of ``multiplier_bits`` and a ``psum_bits`` adder in every PE."""
        assert isinstance(cfg, SystolicEngine)
        pes = cfg.rows * cfg.cols
        return AreaUnits(multipliers=pes, multiplier_bits=cfg.multiplier_bits, adders=pes, adder_bits=cfg.psum_bits)

    def summary(self, cfg: EngineBase) -> str:
        assert isinstance(cfg, SystolicEngine)
        return f"{super().summary(cfg)}, {cfg.rows}x{cfg.cols} {cfg.dataflow}"

    def cost(self, cfg: EngineBase, op: Op, tensors: Mapping[str, Tensor], cls: str,
             share: Gemm | Depthwise | None = None) -> OpCost:
        """Cycles from the fold count; operand reads and output writes as SCALE-Sim counts them, in bytes."""
        assert isinstance(cfg, SystolicEngine)
        geom = geometry(op, tensors) if share is None else share
        w_name = op.weights[0] if op.weights else op.inputs[1]
        a_bits, w_bits, o_bits = tensors[op.inputs[0]].bits, tensors[w_name].bits, tensors[op.output].bits
        c = counts(cfg, geom)
        a_passes, w_passes = passes(cfg, a_bits, w_bits)
        act_bytes = _bytes(c.ifmap_reads, a_bits) * w_passes
        w_bytes = _bytes(c.filter_reads, w_bits) * a_passes
        weight_from_act = not op.weights  # activation x activation: both operands come from the activation buffer
        return OpCost(
            cycles=c.cycles * a_passes * w_passes,
            macs=geom.macs,
            elements=c.output_writes,
            act_read_bytes=act_bytes + (w_bytes if weight_from_act else 0),
            weight_read_bytes=0 if weight_from_act else w_bytes,
            write_bytes=_bytes(c.output_writes, o_bits) + _bytes(c.psum_writes, cfg.psum_bits),
            energy_pj=geom.macs * cfg.mac_pj * a_bits * w_bits / cfg.multiplier_bits ** 2,
            detail=f"dataflow={cfg.dataflow},folds={c.folds}",
        )


__all__ = ["SystolicCounts", "SystolicEngine", "SystolicKind", "as_gemm", "counts", "gemm_counts", "passes"]
