"""Dataflow cost models: cycles, operand traffic and compute energy of an op (or its share) on one engine.

Each model is a closed-form count over the engine's loop nest, documented in docs/architecture.md, so every
figure can be checked by hand. They give whole-op totals; the tiler divides them over tiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from archsim.config.schema import (
    DmaEngine,
    EngineBase,
    MacArrayBase,
    NonlinearEngine,
    PeArrayEngine,
    RequantEngine,
    RmacEngine,
)
from archsim.mapping.geometry import Depthwise, Gemm
from archsim.workloads.ir import Op, Tensor


@dataclass(frozen=True, slots=True)
class OpCost:
    """What an op (or one engine's share of it) costs on an engine, whole-op totals."""

    cycles: int
    macs: int = 0
    elements: int = 0
    act_read_bytes: int = 0  # operands read from the activation buffer
    weight_read_bytes: int = 0  # operands read from the weight buffer
    write_bytes: int = 0  # results written back
    energy_pj: float = 0.0  # compute energy (MACs, non-linear evaluations, copies)
    detail: str = ""  # the dataflow choice, e.g. "pg_split=channels"


def _bytes(elements: int, bits: int) -> int:
    return (elements * bits + 7) // 8


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ---- MAC arrays ----------------------------------------------------------------------------------------------------


def _pg_options(cfg: MacArrayBase) -> list[str]:
    return ["channels", "pixels", "groups"] if cfg.pg_split == "auto" else [cfg.pg_split]


def _per_pg(g: Gemm, pgs: int, split: str) -> tuple[int, int, int]:
    """(groups, m, n) one processing group handles when ``pgs`` of them share ``g`` by ``split``."""
    if split == "channels":
        return g.groups, g.m, _cdiv(g.n, pgs)
    if split == "pixels":
        return g.groups, _cdiv(g.m, pgs), g.n
    return _cdiv(g.groups, pgs), g.m, g.n


def _lane_cycles(g: Gemm, lanes: int, width: int, pgs: int, split: str) -> int:
    """MAT/R-MAC pointwise loop nest: lanes over output channels, ``width`` multipliers reduce over inputs;
    weights stay in the lanes while every pixel streams past (cycles = groups x n-passes x k-chunks x taps x m)."""
    groups, m, n = _per_pg(g, pgs, split)
    return groups * _cdiv(n, lanes) * _cdiv(g.k, width) * g.taps * m


def _pe_cycles(g: Gemm, rows: int, cols: int, pgs: int, split: str) -> int:
    """Output-stationary rows x cols array: each fold of rows x cols outputs accumulates k x taps products and
    pays rows + cols - 1 cycles of fill and drain."""
    groups, m, n = _per_pg(g, pgs, split)
    return groups * _cdiv(m, rows) * _cdiv(n, cols) * (g.k * g.taps + rows + cols - 1)


def _rs_cycles(g: Gemm, rows: int, cols: int, pgs: int, split: str) -> int:
    """Row-stationary rows x cols array: each PE row keeps ``cols`` weights of one output channel, so a fold
    covers rows output channels x cols reduction elements while all m activation rows stream past, one per
    cycle. The next fold's weights load behind the current one, so fill and drain (rows + cols - 1) are paid
    once per op, not per fold."""
    groups, m, n = _per_pg(g, pgs, split)
    return groups * _cdiv(n, rows) * _cdiv(g.k * g.taps, cols) * m + rows + cols - 1


def _dw_cycles(d: Depthwise, lanes: int, pes: int, pgs: int, split: str) -> int:
    """R-MAC depthwise: lanes over the output pixels of a row, PEs over channels, rows and taps in sequence."""
    rows, channels = d.rows, d.channels
    if split == "pixels":
        rows = _cdiv(rows, pgs)
    else:
        channels = _cdiv(channels, pgs)
    return _cdiv(d.width, lanes) * _cdiv(channels, pes) * rows * d.taps


def weight_packing(cfg: MacArrayBase, a_bits: int, w_bits: int) -> int:
    """Products one multiplier makes per cycle from packed narrow weights (1 unless ``pack_weights``).

    With packing, ``multiplier_bits // w_bits`` weights share one activation operand, so W4A8 doubles the MAC rate
    of an 8-bit multiplier; operands wider than the multiplier cannot be packed."""
    if not cfg.pack_weights or a_bits > cfg.multiplier_bits or w_bits > cfg.multiplier_bits:
        return 1
    return max(1, cfg.multiplier_bits // w_bits)


def _as_gemm(geom: Gemm | Depthwise) -> Gemm:
    if isinstance(geom, Gemm):
        return geom
    return Gemm(groups=geom.channels, m=geom.rows * geom.width, k=1, n=1, taps=geom.taps)


def mac_cost(op: Op, tensors: Mapping[str, Tensor], geom: Gemm | Depthwise, cfg: EngineBase) -> OpCost:
    """Cycles and operand traffic of ``geom`` (an op or its share) on a MAT, R-MAC or PE array."""
    assert isinstance(cfg, MacArrayBase)
    a_bits = tensors[op.inputs[0]].bits
    w_name = op.weights[0] if op.weights else op.inputs[1]
    w_bits = tensors[w_name].bits
    o_bits = tensors[op.output].bits
    pgs = cfg.groups
    best: tuple[int, str] | None = None
    for split in _pg_options(cfg):
        if isinstance(cfg, RmacEngine) and isinstance(geom, Depthwise):
            cycles = _dw_cycles(geom, cfg.lanes, cfg.pes, pgs, split if split != "groups" else "channels")
        elif isinstance(cfg, PeArrayEngine):
            model = _rs_cycles if cfg.dataflow == "row_stationary" else _pe_cycles
            cycles = model(_as_gemm(geom), cfg.rows, cfg.cols, pgs, split)
        else:
            width = cfg.pes if isinstance(cfg, RmacEngine) else cfg.multipliers  # type: ignore[attr-defined]
            cycles = _lane_cycles(_as_gemm(geom), cfg.lanes, width, pgs, split)
        if best is None or cycles < best[0]:
            best = (cycles, split)
    assert best is not None
    cycles, split = best
    cycles = _cdiv(cycles, cfg.macs_per_multiplier * weight_packing(cfg, a_bits, w_bits))
    macs = geom.macs
    g = _as_gemm(geom)
    if isinstance(cfg, PeArrayEngine) and cfg.dataflow == "row_stationary":
        # activations once per output-channel fold; weights loaded once into the rows
        in_reads = g.groups * g.m * g.k * g.taps * _cdiv(g.n, cfg.rows)
        w_reads = g.groups * g.n * g.k * g.taps
    elif isinstance(cfg, PeArrayEngine):
        in_reads = g.groups * g.m * g.k * g.taps * _cdiv(g.n, cfg.cols)
        w_reads = g.groups * g.n * g.k * g.taps * _cdiv(g.m, cfg.rows)
    elif isinstance(geom, Depthwise):
        # horizontal taps reuse inputs shifted across adjacent lanes; each input row is re-read once per kernel row
        in_reads = geom.channels * geom.rows * geom.width * geom.kernel_rows
        w_reads = geom.channels * geom.taps * geom.rows
    else:
        lanes_per_pass = cfg.lanes * (pgs if split == "channels" else 1)
        in_reads = g.groups * g.m * g.k * g.taps * _cdiv(g.n, lanes_per_pass)
        w_reads = g.groups * g.n * g.k * g.taps * (pgs if split == "pixels" else 1)
    out_elems = g.groups * g.m * g.n if isinstance(geom, Gemm) else geom.channels * geom.rows * geom.width
    weight_from_act = not op.weights  # activation x activation: both operands come from the activation buffer
    energy = macs * cfg.mac_pj * (a_bits * w_bits) / 64.0
    return OpCost(
        cycles=max(cycles, 1),
        macs=macs,
        elements=out_elems,
        act_read_bytes=_bytes(in_reads, a_bits) + (_bytes(w_reads, w_bits) if weight_from_act else 0),
        weight_read_bytes=0 if weight_from_act else _bytes(w_reads, w_bits),
        write_bytes=_bytes(out_elems, o_bits),
        energy_pj=energy,
        detail=f"pg_split={split}",
    )


# ---- vector units ----------------------------------------------------------------------------------------------------


def elementwise_count(op: Op, tensors: Mapping[str, Tensor]) -> int:
    """Elements a vector unit evaluates: the larger of the output and the first input (reductions read more)."""
    out = tensors[op.output].numel
    first = math.prod(op.input_shape(0, tensors)) if op.inputs else out
    return max(out, first)


def nonlinear_cost(op: Op, tensors: Mapping[str, Tensor], cfg: EngineBase, cls: str) -> OpCost:
    """``latency + elements x cycles_per_element / lanes`` for the function ``cls`` on a non-linear unit."""
    assert isinstance(cfg, NonlinearEngine)
    spec = cfg.ops[cls]
    n = elementwise_count(op, tensors)
    reads = sum(op.input_bytes(i, tensors) for i in range(len(op.inputs)))
    return OpCost(
        cycles=spec.latency_cycles + math.ceil(n * spec.cycles_per_element / cfg.lanes),
        elements=n,
        act_read_bytes=reads,
        write_bytes=tensors[op.output].nbytes,
        energy_pj=n * spec.pj_per_element,
        detail=f"fn={cls}",
    )


def requant_cost(elements: int, scale_kind: str, cfg: EngineBase) -> OpCost:
    """Re-quantization of ``elements`` accumulators: a shift for pot/log2 scales, a multiply for float scales."""
    assert isinstance(cfg, RequantEngine)
    mode = cfg.shift if scale_kind in ("pot", "log2") else cfg.multiply
    return OpCost(
        cycles=mode.latency_cycles + math.ceil(elements * mode.cycles_per_element / cfg.lanes),
        elements=elements,
        energy_pj=elements * mode.pj_per_element,
        detail="shift" if mode is cfg.shift else "multiply",
    )


def dma_cost(op: Op, tensors: Mapping[str, Tensor], cfg: EngineBase) -> OpCost:
    """An on-chip copy (concat, pad, layout change): its output bytes at the DMA's rate."""
    assert isinstance(cfg, DmaEngine)
    out = tensors[op.output].nbytes
    reads = sum(op.input_bytes(i, tensors) for i in range(len(op.inputs)))
    return OpCost(
        cycles=cfg.latency_cycles + math.ceil(out / cfg.bytes_per_cycle),
        elements=tensors[op.output].numel,
        act_read_bytes=reads,
        write_bytes=out,
        energy_pj=out * cfg.pj_per_byte,
    )


def supports(cfg: EngineBase, op: Op, classes: list[str]) -> str | None:
    """The class under which ``cfg`` runs ``op`` (None if it cannot)."""
    if isinstance(cfg, MacArrayBase):
        return op.kind if op.kind in ("conv2d", "linear", "matmul") else None
    if isinstance(cfg, NonlinearEngine):
        return next((c for c in classes if c in cfg.ops), None)
    if isinstance(cfg, RequantEngine):
        return "requant" if op.kind == "requant" else None
    if isinstance(cfg, DmaEngine):
        return "data_movement" if op.kind == "data_movement" else None
    return None


__all__ = [
    "OpCost",
    "mac_cost",
    "nonlinear_cost",
    "requant_cost",
    "dma_cost",
    "supports",
    "elementwise_count",
]
