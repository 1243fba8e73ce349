"""MAC arrays: the multiplier-adder trees (``mat``), the reconfigurable MAC array (``rmac``) and the PE array
(``pe_array``, output- or row-stationary), their config keys and their dataflow cost models.

Each model is a closed-form count over the engine's loop nest, documented in docs/architecture.md, so every figure
can be checked by hand. They give whole-op totals; the tiler divides them over tiles.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Mapping

from archsim.config.schema import Bits, EngineBase, NonNegFloat, PosInt
from archsim.hardware.kind import EngineKind, OpCost, register_engine_kind
from archsim.workloads.geometry import Depthwise, Gemm, geometry
from archsim.workloads.ir import Op, Tensor
from archsim.workloads.kinds import is_mac


# ---- config keys ---------------------------------------------------------------------------------------------------


class MacArrayBase(EngineBase):
    lanes: PosInt = 8
    groups: PosInt = 1  # replicated processing groups (PGs)
    macs_per_multiplier: PosInt = 1  # 2 when two 8-bit products share one DSP
    mac_pj: NonNegFloat = 0.23  # energy of one 8x8-bit MAC (Horowitz 45 nm: 0.2 mult + 0.03 add)
    pg_split: Literal["auto", "channels", "pixels", "groups"] = "auto"
    multiplier_bits: Bits = 8  # operand width of one multiplier
    pack_weights: bool = False  # narrow weights share a multiplier: two 4-bit weights x one 8-bit activation
    multipliers_per_dsp: PosInt = 1  # FPGA DSP packing (two 8-bit products per DSP48): only for DSP counts
    #: lanes that only add (Trio-ViT's K-sum tree): their work is still counted per engine, but they are left out
    #: of the design's peak and achieved GOPS, as the papers count them (Trio-ViT's 819.2 GOPS is MAT + R-MAC)
    adder_tree: bool = False

    @property
    def peak_macs_per_cycle(self) -> int:
        """Multiply-accumulates per cycle of the whole array (every processing group)."""
        raise NotImplementedError

    @property
    def multiplier_count(self) -> int:
        """Physical multipliers (MAC units before ``macs_per_multiplier``)."""
        return self.peak_macs_per_cycle // self.macs_per_multiplier

    @property
    def dsps(self) -> int:
        """DSP slices the multipliers occupy on an FPGA (``multipliers_per_dsp`` products per slice)."""
        return -(-self.multiplier_count // self.multipliers_per_dsp)

class MatEngine(MacArrayBase):
    """Multiplier-adder trees: lanes over output channels, ``multipliers`` per lane reduce input channels."""

    type: Literal["mat"] = "mat"
    multipliers: PosInt = 8

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.lanes * self.multipliers * self.groups * self.macs_per_multiplier


class RmacEngine(MacArrayBase):
    """Reconfigurable MAC array: MAT-like for pointwise, lanes over output pixels and PEs over channels for DW."""

    type: Literal["rmac"] = "rmac"
    pes: PosInt = 8

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.lanes * self.pes * self.groups * self.macs_per_multiplier


class PeArrayEngine(MacArrayBase):
    """A ``rows x cols`` PE array (systolic fill and drain per fold). ``output_stationary``: each PE keeps one
    output; ``row_stationary``: each PE row keeps one weight row (an output channel's ``cols`` inputs) while the
    activation rows (tokens or pixels) stream past, so finished output rows leave the array one per cycle."""

    type: Literal["pe_array"] = "pe_array"
    rows: PosInt = 16
    cols: PosInt = 16
    lanes: PosInt = 1
    dataflow: Literal["output_stationary", "row_stationary"] = "output_stationary"

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.rows * self.cols * self.groups * self.macs_per_multiplier




# ---- loop-nest counts ------------------------------------------------------------------------------------------------


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



# ---- the kinds ---------------------------------------------------------------------------------------------------


class MacArrayKind(EngineKind):
    """What every MAC array shares: it runs ``mac`` op kinds, tries each processing-group split and keeps the
    fastest, packs narrow weights, and charges ``mac_pj`` scaled by the operand widths."""

    category: ClassVar[str] = "compute"
    shares_work: ClassVar[bool] = True

    def supports(self, cfg: EngineBase, op: Op, classes: list[str]) -> str | None:
        return op.kind if is_mac(op.kind) else None

    def peak_macs_per_cycle(self, cfg: EngineBase) -> int:
        assert isinstance(cfg, MacArrayBase)
        return cfg.peak_macs_per_cycle

    def counts_in_peak(self, cfg: EngineBase) -> bool:
        assert isinstance(cfg, MacArrayBase)
        return not cfg.adder_tree

    def cycles(self, cfg: MacArrayBase, geom: Gemm | Depthwise, split: str) -> int:
        """Cycles of ``geom`` with the processing groups split by ``split`` (before MAC packing)."""
        raise NotImplementedError

    def reads(self, cfg: MacArrayBase, geom: Gemm | Depthwise, split: str) -> tuple[int, int]:
        """(activation element reads, weight element reads) of ``geom``."""
        g = _as_gemm(geom)
        if isinstance(geom, Depthwise):
            # horizontal taps reuse inputs shifted across adjacent lanes; each input row is re-read once per kernel row
            return (geom.channels * geom.rows * geom.width * geom.kernel_rows, geom.channels * geom.taps * geom.rows)
        pgs = cfg.groups
        lanes_per_pass = cfg.lanes * (pgs if split == "channels" else 1)
        return (g.groups * g.m * g.k * g.taps * _cdiv(g.n, lanes_per_pass),
                g.groups * g.n * g.k * g.taps * (pgs if split == "pixels" else 1))

    def resources(self, cfg: EngineBase) -> dict[str, int]:
        """Multipliers and the DSP slices they take; an adder tree has neither (it adds in LUTs)."""
        assert isinstance(cfg, MacArrayBase)
        return {} if cfg.adder_tree else {"multipliers": cfg.multiplier_count, "dsps": cfg.dsps}

    def summary(self, cfg: EngineBase) -> str:
        line = super().summary(cfg)
        return line.replace("(not in the design's peak)", "(adder tree: not in the peak)")

    def cost(self, cfg: EngineBase, op: Op, tensors: Mapping[str, Tensor], cls: str,
             share: Gemm | Depthwise | None = None) -> OpCost:
        assert isinstance(cfg, MacArrayBase)
        geom = geometry(op, tensors) if share is None else share
        a_bits = tensors[op.inputs[0]].bits
        w_name = op.weights[0] if op.weights else op.inputs[1]
        w_bits = tensors[w_name].bits
        o_bits = tensors[op.output].bits
        best: tuple[int, str] | None = None
        for split in _pg_options(cfg):
            cycles = self.cycles(cfg, geom, split)
            if best is None or cycles < best[0]:
                best = (cycles, split)
        assert best is not None
        cycles, split = best
        cycles = _cdiv(cycles, cfg.macs_per_multiplier * weight_packing(cfg, a_bits, w_bits))
        in_reads, w_reads = self.reads(cfg, geom, split)
        g = _as_gemm(geom)
        out_elems = g.groups * g.m * g.n if isinstance(geom, Gemm) else geom.channels * geom.rows * geom.width
        weight_from_act = not op.weights  # activation x activation: both operands come from the activation buffer
        return OpCost(
            cycles=max(cycles, 1),
            macs=geom.macs,
            elements=out_elems,
            act_read_bytes=_bytes(in_reads, a_bits) + (_bytes(w_reads, w_bits) if weight_from_act else 0),
            weight_read_bytes=0 if weight_from_act else _bytes(w_reads, w_bits),
            write_bytes=_bytes(out_elems, o_bits),
            energy_pj=geom.macs * cfg.mac_pj * (a_bits * w_bits) / 64.0,
            detail=f"pg_split={split}",
        )


@register_engine_kind
class MatKind(MacArrayKind):
    name: ClassVar[str] = "mat"
    config_model: ClassVar[type[EngineBase]] = MatEngine
    description: ClassVar[str] = "multiplier-adder trees: lanes over output channels, multipliers reduce inputs"

    def cycles(self, cfg: MacArrayBase, geom: Gemm | Depthwise, split: str) -> int:
        assert isinstance(cfg, MatEngine)
        return _lane_cycles(_as_gemm(geom), cfg.lanes, cfg.multipliers, cfg.groups, split)


@register_engine_kind
class RmacKind(MacArrayKind):
    name: ClassVar[str] = "rmac"
    config_model: ClassVar[type[EngineBase]] = RmacEngine
    description: ClassVar[str] = "reconfigurable MAC array: MAT-like for GEMMs, lanes over pixels for depthwise"

    def cycles(self, cfg: MacArrayBase, geom: Gemm | Depthwise, split: str) -> int:
        assert isinstance(cfg, RmacEngine)
        if isinstance(geom, Depthwise):
            return _dw_cycles(geom, cfg.lanes, cfg.pes, cfg.groups, split if split != "groups" else "channels")
        return _lane_cycles(_as_gemm(geom), cfg.lanes, cfg.pes, cfg.groups, split)


@register_engine_kind
class PeArrayKind(MacArrayKind):
    name: ClassVar[str] = "pe_array"
    config_model: ClassVar[type[EngineBase]] = PeArrayEngine
    description: ClassVar[str] = "rows x cols PE array, output- or row-stationary"

    def cycles(self, cfg: MacArrayBase, geom: Gemm | Depthwise, split: str) -> int:
        assert isinstance(cfg, PeArrayEngine)
        model = _rs_cycles if cfg.dataflow == "row_stationary" else _pe_cycles
        return model(_as_gemm(geom), cfg.rows, cfg.cols, cfg.groups, split)

    def reads(self, cfg: MacArrayBase, geom: Gemm | Depthwise, split: str) -> tuple[int, int]:
        assert isinstance(cfg, PeArrayEngine)
        g = _as_gemm(geom)
        if cfg.dataflow == "row_stationary":
            # activations once per output-channel fold; weights loaded once into the rows
            return g.groups * g.m * g.k * g.taps * _cdiv(g.n, cfg.rows), g.groups * g.n * g.k * g.taps
        return (g.groups * g.m * g.k * g.taps * _cdiv(g.n, cfg.cols),
                g.groups * g.n * g.k * g.taps * _cdiv(g.m, cfg.rows))


__all__ = ["MacArrayBase", "MacArrayKind", "MatEngine", "MatKind", "PeArrayEngine", "PeArrayKind", "RmacEngine",
           "RmacKind", "weight_packing"]
