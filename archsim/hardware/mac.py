"""MAC arrays: the multiplier-adder trees (``mat``), the reconfigurable MAC array (``rmac``) and the PE array
(``pe_array``, output- or row-stationary), their config keys and their dataflow cost models.

Each model is a closed-form count over the engine's loop nest, documented in docs/architecture.md, so every figure
can be checked by hand. They give whole-op totals; the tiler divides them over tiles.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Mapping

from archsim.config.schema import Bits, Defaults, EngineBase, NonNegFloat, PosInt
from archsim.hardware.kind import AreaUnits, Dataflow, EngineKind, OpCost, register_engine_kind
from archsim.workloads.geometry import Depthwise, Gemm, geometry
from archsim.workloads.ir import Op, Tensor
from archsim.workloads.kinds import is_mac


# ---- config keys ---------------------------------------------------------------------------------------------------


class MacArrayBase(EngineBase):
    lanes: PosInt = 8
    groups: PosInt = 1  # replicated processing groups (PGs)
    macs_per_multiplier: PosInt = 1  # 2 when two 8-bit products share one DSP
    mac_pj: NonNegFloat = 0.23  # energy of one 8x8-bit MAC (Horowitz 45 nm: 0.2 mult + 0.03 add)
    pg_split: Literal["auto", "channels", "pixels", "groups", "heads", "batch"] = "auto"
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
    """The splits the fixed mapping tries (the fastest wins), or the one ``pg_split`` names."""
    return ["channels", "pixels", "groups"] if cfg.pg_split == "auto" else [cfg.pg_split]


def _per_image(total: int, batch: int, pgs: int) -> int:
    """What one processing group handles of ``total`` (``batch`` whole images) when it takes whole images."""
    return _cdiv(batch, pgs) * (total // batch) if batch > 1 and total % batch == 0 else _cdiv(total, pgs)


def _per_pg(g: Gemm, pgs: int, split: str) -> tuple[int, int, int]:
    """(groups, m, n) one processing group handles when ``pgs`` of them share ``g`` by ``split``."""
    if split == "channels":
        return g.groups, g.m, _cdiv(g.n, pgs)
    if split == "pixels":
        return g.groups, _cdiv(g.m, pgs), g.n
    if split == "batch":
        return g.groups, _per_image(g.m, g.batch, pgs), g.n
    return _cdiv(g.groups, pgs), g.m, g.n  # groups, or heads of a matmul


def _lane_cycles(g: Gemm, lanes: int, width: int, pgs: int, split: str, reduce: str = "k",
                 over: str = "channels") -> int:
    """MAT/R-MAC pointwise loop nest: lanes over output channels, ``width`` multipliers reduce over inputs;
    weights stay in the lanes while every pixel streams past (cycles = groups x n-passes x k-chunks x taps x m).
    ``reduce="k*taps"`` unrolls the kernel taps into the reduction (k x taps-chunks x m): a 3-channel stem conv
    then fills the multipliers. ``over="pixels"`` gives each lane a pixel instead while one output channel's
    weights are broadcast (m-passes x k-chunks x taps x n): a one-column matmul then fills the lanes."""
    groups, m, n = _per_pg(g, pgs, split)
    if over == "pixels":
        m, n = n, m
    if reduce == "k*taps":
        return groups * _cdiv(n, lanes) * _cdiv(g.k * g.taps, width) * m
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
    elif split == "batch":
        rows = _per_image(rows, d.batch, pgs)
    else:
        channels = _cdiv(channels, pgs)
    return _cdiv(d.width, lanes) * _cdiv(channels, pes) * rows * d.taps


def _split_size(geom: Gemm | Depthwise, split: str) -> int:
    """How many pieces the split dimension has (output channels, pixels, heads or groups, images)."""
    if split == "batch":
        return geom.batch
    if isinstance(geom, Depthwise):
        return geom.rows if split == "pixels" else geom.channels
    return {"channels": geom.n, "pixels": geom.m}.get(split, geom.groups)


def _splits(geom: Gemm | Depthwise, op: Op) -> list[str]:
    """Every way the processing groups may share ``geom``: channels and pixels always; heads (a matmul's groups) or
    groups (a grouped conv's) when there are several; whole images when the op holds several."""
    out = ["channels", "pixels"]
    if isinstance(geom, Gemm) and geom.groups > 1:
        out.append("heads" if op.kind == "matmul" else "groups")
    images_in = geom.m if isinstance(geom, Gemm) else geom.rows
    if geom.batch > 1 and images_in % geom.batch == 0:
        out.append("batch")
    return out


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
    return Gemm(groups=geom.channels, m=geom.rows * geom.width, k=1, n=1, taps=geom.taps, batch=geom.batch)



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

    #: a lane array (MAT, R-MAC GEMMs): lanes may unroll kernel taps into their reduction (``reduce=k*taps``) and
    #: run output pixels instead of output channels in parallel (``lanes=pixels``)
    unrolls_taps: ClassVar[bool] = False

    def cycles(self, cfg: MacArrayBase, geom: Gemm | Depthwise, split: str, reduce: str = "k",
               lanes: str = "channels") -> int:
        """Cycles of ``geom`` with the processing groups split by ``split`` (before MAC packing)."""
        raise NotImplementedError

    def _fixed(self, cfg: MacArrayBase, geom: Gemm | Depthwise) -> tuple[int, str]:
        """(cycles, split) of the fixed mapping: the fastest ``pg_split`` option, reducing over k, lanes on
        channels."""
        best: tuple[int, str] | None = None
        for option in _pg_options(cfg):
            c = self.cycles(cfg, geom, option)
            if best is None or c < best[0]:
                best = (c, option)
        assert best is not None
        return best

    def group_loss(self, cfg: EngineBase, op: Op, tensors: Mapping[str, Tensor],
                   share: Gemm | Depthwise | None = None, dataflow: Dataflow | None = None) -> tuple[int, str]:
        """Cycles over one group's cycles / groups, and the split's cause: idle groups (the split dimension is
        smaller than the group count) or an uneven split (it is not a multiple)."""
        assert isinstance(cfg, MacArrayBase)
        pgs = cfg.groups
        if pgs == 1:
            return 0, ""
        geom = geometry(op, tensors) if share is None else share
        if dataflow is None:
            cycles, split = self._fixed(cfg, geom)
            reduce, lanes = "k", "channels"
        else:
            split, reduce, lanes = dataflow.split, dataflow.reduce or "k", dataflow.lanes or "channels"
            cycles = self.cycles(cfg, geom, split, reduce, lanes)
        one = self.cycles(cfg.model_copy(update={"groups": 1}), geom, split, reduce, lanes)
        lost = cycles - _cdiv(one, pgs)
        if lost <= 0:
            return 0, ""
        size = _split_size(geom, split)
        if size < pgs:
            return lost, f"{pgs - size} of {pgs} groups idle ({split}: {size})"
        if size % pgs:
            return lost, f"uneven split ({split}: {size} over {pgs})"
        return lost, f"lanes padded in each group ({split}: {size // pgs} per group)"

    def dataflows(self, cfg: EngineBase, op: Op, tensors: Mapping[str, Tensor],
                  share: Gemm | Depthwise | None = None) -> tuple[Dataflow, ...]:
        """Each split ``pg_split`` allows (all of them under ``auto``), times each reduction order."""
        assert isinstance(cfg, MacArrayBase)
        geom = geometry(op, tensors) if share is None else share
        if cfg.groups == 1:
            splits = ["channels"]  # one group: nothing to split (left out of the label)
        else:
            splits = _splits(geom, op) if cfg.pg_split == "auto" else [cfg.pg_split]
        lane_array = self.unrolls_taps and isinstance(geom, Gemm)
        reduces = ["k", "k*taps"] if lane_array and geom.taps > 1 else [""]
        lanes = ["channels", "pixels"] if lane_array else [""]
        return tuple(Dataflow(s if cfg.groups > 1 else "", r, x) for s in splits for r in reduces for x in lanes)

    def reads(self, cfg: MacArrayBase, geom: Gemm | Depthwise, split: str,
              lanes: str = "channels") -> tuple[int, int]:
        """(activation element reads, weight element reads) of ``geom``: the operand the lanes keep is read once
        (per processing group that needs it), the other once per pass of the lanes."""
        g = _as_gemm(geom)
        if isinstance(geom, Depthwise):
            # horizontal taps reuse inputs shifted across adjacent lanes; each input row is re-read once per kernel row
            return (geom.channels * geom.rows * geom.width * geom.kernel_rows, geom.channels * geom.taps * geom.rows)
        pgs = cfg.groups
        if lanes == "pixels":
            lanes_per_pass = cfg.lanes * (pgs if split in ("pixels", "batch") else 1)
            return (g.groups * g.m * g.k * g.taps * (pgs if split == "channels" else 1),
                    g.groups * g.n * g.k * g.taps * _cdiv(g.m, lanes_per_pass))
        lanes_per_pass = cfg.lanes * (pgs if split == "channels" else 1)
        return (g.groups * g.m * g.k * g.taps * _cdiv(g.n, lanes_per_pass),
                g.groups * g.n * g.k * g.taps * (pgs if split in ("pixels", "batch") else 1))

    def resources(self, cfg: EngineBase) -> dict[str, int]:
        """Multipliers and the DSP slices they take; an adder tree has neither (it adds in LUTs)."""
        assert isinstance(cfg, MacArrayBase)
        return {} if cfg.adder_tree else {"multipliers": cfg.multiplier_count, "dsps": cfg.dsps}

    def area_units(self, cfg: EngineBase, defaults: Defaults) -> AreaUnits:
        """Its physical multipliers of ``multiplier_bits`` (none in an adder tree) and one ``acc_bits`` adder per
        MAC per cycle (tree adders and accumulators alike)."""
        assert isinstance(cfg, MacArrayBase)
        return AreaUnits(multipliers=0 if cfg.adder_tree else cfg.multiplier_count,
                         multiplier_bits=cfg.multiplier_bits, adders=cfg.peak_macs_per_cycle,
                         adder_bits=defaults.acc_bits)

    def summary(self, cfg: EngineBase) -> str:
        line = super().summary(cfg)
        return line.replace("(not in the design's peak)", "(adder tree: not in the peak)")

    def cost(self, cfg: EngineBase, op: Op, tensors: Mapping[str, Tensor], cls: str,
             share: Gemm | Depthwise | None = None, dataflow: Dataflow | None = None) -> OpCost:
        """Without ``dataflow``, the fixed mapping: the fastest of the ``pg_split`` options, reducing over k."""
        assert isinstance(cfg, MacArrayBase)
        geom = geometry(op, tensors) if share is None else share
        a_bits = tensors[op.inputs[0]].bits
        w_name = op.weights[0] if op.weights else op.inputs[1]
        w_bits = tensors[w_name].bits
        o_bits = tensors[op.output].bits
        if dataflow is None:
            cycles, split = self._fixed(cfg, geom)
            reduce = lanes = ""
        else:
            split, reduce, lanes = dataflow.split or "channels", dataflow.reduce, dataflow.lanes
            cycles = self.cycles(cfg, geom, split, reduce or "k", lanes or "channels")
        cycles = _cdiv(cycles, cfg.macs_per_multiplier * weight_packing(cfg, a_bits, w_bits))
        in_reads, w_reads = self.reads(cfg, geom, split, lanes or "channels")
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
            detail=f"pg_split={split}" + (f",reduce={reduce}" if reduce else "") + (f",lanes={lanes}" if lanes else ""),
        )


@register_engine_kind
class MatKind(MacArrayKind):
    name: ClassVar[str] = "mat"
    config_model: ClassVar[type[EngineBase]] = MatEngine
    description: ClassVar[str] = "multiplier-adder trees: lanes over output channels, multipliers reduce inputs"

    unrolls_taps: ClassVar[bool] = True

    def cycles(self, cfg: MacArrayBase, geom: Gemm | Depthwise, split: str, reduce: str = "k",
               lanes: str = "channels") -> int:
        assert isinstance(cfg, MatEngine)
        return _lane_cycles(_as_gemm(geom), cfg.lanes, cfg.multipliers, cfg.groups, split, reduce, lanes)


@register_engine_kind
class RmacKind(MacArrayKind):
    name: ClassVar[str] = "rmac"
    config_model: ClassVar[type[EngineBase]] = RmacEngine
    description: ClassVar[str] = "reconfigurable MAC array: MAT-like for GEMMs, lanes over pixels for depthwise"

    unrolls_taps: ClassVar[bool] = True

    def cycles(self, cfg: MacArrayBase, geom: Gemm | Depthwise, split: str, reduce: str = "k",
               lanes: str = "channels") -> int:
        assert isinstance(cfg, RmacEngine)
        if isinstance(geom, Depthwise):
            return _dw_cycles(geom, cfg.lanes, cfg.pes, cfg.groups, split)
        return _lane_cycles(_as_gemm(geom), cfg.lanes, cfg.pes, cfg.groups, split, reduce, lanes)


@register_engine_kind
class PeArrayKind(MacArrayKind):
    name: ClassVar[str] = "pe_array"
    config_model: ClassVar[type[EngineBase]] = PeArrayEngine
    description: ClassVar[str] = "rows x cols PE array, output- or row-stationary"

    def cycles(self, cfg: MacArrayBase, geom: Gemm | Depthwise, split: str, reduce: str = "k",
               lanes: str = "channels") -> int:
        assert isinstance(cfg, PeArrayEngine)
        model = _rs_cycles if cfg.dataflow == "row_stationary" else _pe_cycles
        return model(_as_gemm(geom), cfg.rows, cfg.cols, cfg.groups, split)

    def reads(self, cfg: MacArrayBase, geom: Gemm | Depthwise, split: str,
              lanes: str = "channels") -> tuple[int, int]:
        assert isinstance(cfg, PeArrayEngine)
        g = _as_gemm(geom)
        if cfg.dataflow == "row_stationary":
            # activations once per output-channel fold; weights loaded once into the rows
            return g.groups * g.m * g.k * g.taps * _cdiv(g.n, cfg.rows), g.groups * g.n * g.k * g.taps
        return (g.groups * g.m * g.k * g.taps * _cdiv(g.n, cfg.cols),
                g.groups * g.n * g.k * g.taps * _cdiv(g.m, cfg.rows))


__all__ = ["MacArrayBase", "MacArrayKind", "MatEngine", "MatKind", "PeArrayEngine", "PeArrayKind", "RmacEngine",
           "RmacKind", "weight_packing"]
