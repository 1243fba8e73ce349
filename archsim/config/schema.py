"""Typed, validated architecture configuration (YAML -> frozen pydantic models).

Units are explicit in key names: ``_mhz``, ``_gbps`` (GB/s, 1e9 bytes), ``_ns``, ``_kib``, ``_bits``, ``_pj``
(picojoules), ``_mw`` (milliwatts). Energy defaults cite their sources in docs/configuration.md.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PosInt = Annotated[int, Field(gt=0, strict=True)]
NonNegInt = Annotated[int, Field(ge=0, strict=True)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Bits = Annotated[int, Field(ge=1, le=32, strict=True)]


class Model(BaseModel):
    """Base: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- memory system ----------------------------------------------------------------------------------------------


class RowBuffer(Model):
    """Optional DRAM row-buffer timing: each newly opened row costs tRP + tRCD, spread over ``banks``."""

    row_bytes: PosInt = 8192
    banks: PosInt = 16
    trcd_ns: NonNegFloat = 14.2
    tcl_ns: NonNegFloat = 14.2
    trp_ns: NonNegFloat = 14.2
    activate_pj: NonNegFloat = 3450.0  # DDR4-2400 x8 rank, ACT+PRE (DRAMsim3 IDD model; docs/configuration.md)


#: DRAM energy defaults by type in pJ/bit (read, write); sources in docs/configuration.md.
DRAM_ENERGY_PJ_PER_BIT: dict[str, tuple[float, float]] = {
    "ddr4": (12.5, 12.5),  # DRAMsim3 DDR4-2400 x8, one 64 B access per activate (core only)
    "ddr3": (70.0, 70.0),  # Accelergy CACTI plug-in
    "lpddr4": (8.0, 8.0),  # Accelergy CACTI plug-in
    "hbm2": (3.9, 3.9),  # Accelergy CACTI plug-in
    "gddr5": (14.0, 14.0),  # Accelergy CACTI plug-in
}


class Dram(Model):
    type: Literal["ddr4", "ddr3", "lpddr4", "hbm2", "gddr5"] = "ddr4"
    channels: PosInt = 1
    bandwidth_gbps: PosFloat = 19.2  # per channel
    latency_ns: NonNegFloat = 45.0
    burst_bytes: PosInt = 64
    read_pj_per_bit: NonNegFloat | None = None
    write_pj_per_bit: NonNegFloat | None = None
    static_mw: NonNegFloat = 0.0
    row_buffer: RowBuffer | None = None

    @property
    def read_energy(self) -> float:
        return self.read_pj_per_bit if self.read_pj_per_bit is not None else DRAM_ENERGY_PJ_PER_BIT[self.type][0]

    @property
    def write_energy(self) -> float:
        return self.write_pj_per_bit if self.write_pj_per_bit is not None else DRAM_ENERGY_PJ_PER_BIT[self.type][1]


class Buffer(Model):
    """An on-chip SRAM: capacity is enforced by tiling; ``banks * port_bits`` bits move per cycle."""

    capacity_kib: PosFloat
    banks: PosInt = 8
    port_bits: PosInt = 64
    read_pj_per_bit: NonNegFloat = 0.3  # 64-128 KB SRAMs land at 0.2-0.5 pJ/bit (docs/configuration.md)
    write_pj_per_bit: NonNegFloat = 0.35
    static_mw: NonNegFloat = 0.0
    holds: tuple[Literal["activation", "weight", "stream"], ...] = ("activation",)

    @property
    def capacity_bytes(self) -> int:
        return int(self.capacity_kib * 1024)

    @property
    def bytes_per_cycle(self) -> float:
        return self.banks * self.port_bits / 8

    @field_validator("holds")
    @classmethod
    def _holds_nonempty(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("must name at least one of: activation, weight, stream")
        return v


class Noc(Model):
    """The on-chip interconnect between buffers and engines: a shared bus, a crossbar, or a 2-D mesh."""

    topology: Literal["bus", "crossbar", "mesh"] = "bus"
    link_bits: PosInt = 512
    hop_latency_cycles: NonNegInt = 1
    pj_per_bit_hop: NonNegFloat = 0.05
    mesh_cols: PosInt = 4  # mesh only: engines and buffers are placed row-major in declaration order
    static_mw: NonNegFloat = 0.0

    @property
    def bytes_per_cycle(self) -> float:
        return self.link_bits / 8


# ---- compute engines ---------------------------------------------------------------------------------------------


class EngineBase(Model):
    """Fields every engine has. Subclasses register under a ``type`` name (see archsim.components.registry)."""

    type: str
    static_mw: NonNegFloat = 0.0

    #: engine type names for which this engine executes multiply-accumulates
    has_macs: ClassVar[bool] = False

    @property
    def peak_macs_per_cycle(self) -> int:
        return 0


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
    def multiplier_count(self) -> int:
        """Physical multipliers (MAC units before ``macs_per_multiplier``)."""
        return self.peak_macs_per_cycle // self.macs_per_multiplier

    @property
    def dsps(self) -> int:
        """DSP slices the multipliers occupy on an FPGA (``multipliers_per_dsp`` products per slice)."""
        return -(-self.multiplier_count // self.multipliers_per_dsp)

    has_macs: ClassVar[bool] = True


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


class NonlinearOp(Model):
    """Throughput and cost of one function on a non-linear unit."""

    cycles_per_element: PosFloat = 1.0  # per lane
    latency_cycles: NonNegInt = 8
    pj_per_element: NonNegFloat = 0.5


class NonlinearEngine(EngineBase):
    """Vector unit for softmax, layernorm, activations, eltwise, reductions; ``ops`` lists what it supports."""

    type: Literal["nonlinear"] = "nonlinear"
    lanes: PosInt = 16
    ops: dict[str, NonlinearOp]

    @field_validator("ops")
    @classmethod
    def _ops_nonempty(cls, v: dict[str, NonlinearOp]) -> dict[str, NonlinearOp]:
        if not v:
            raise ValueError("must list at least one supported op")
        return v


class RequantMode(Model):
    cycles_per_element: PosFloat = 1.0
    latency_cycles: NonNegInt = 1
    pj_per_element: NonNegFloat = 0.02


class RequantEngine(EngineBase):
    """Re-quantization unit: a shift for power-of-two scales, a multiply for float scales."""

    type: Literal["requant"] = "requant"
    lanes: PosInt = 16
    shift: RequantMode = RequantMode(cycles_per_element=1.0, latency_cycles=1, pj_per_element=0.03)
    multiply: RequantMode = RequantMode(cycles_per_element=1.0, latency_cycles=3, pj_per_element=0.25)


class DmaEngine(EngineBase):
    """Copies within on-chip memory (concat, pad, layout changes) at ``bytes_per_cycle``."""

    type: Literal["dma"] = "dma"
    bytes_per_cycle: PosFloat = 64.0
    latency_cycles: NonNegInt = 4
    pj_per_byte: NonNegFloat = 0.0


# ---- mapping ------------------------------------------------------------------------------------------------------


class Pipeline(Model):
    inter_layer: bool = True  # stream tiles between fused ops on different engines through on-chip FIFOs
    intra_layer: bool = True  # double buffering: fetch tile i+1 while computing tile i
    fifo_depth: PosInt = 2  # tiles a FIFO between fused ops holds
    max_group_ops: PosInt = 4
    min_tiles: PosInt = 1  # a fusion group is cut into at least this many tiles, so consumers start early


class Mapping(Model):
    """How ops reach engines. ``assign`` maps an op class (most specific first, see docs) to engine names; a list
    of several engines runs the op on all of them at once, split by output channels."""

    assign: dict[str, str | tuple[str, ...]]
    pipeline: Pipeline = Pipeline()
    fold_batchnorm: bool = True
    requant: bool = True  # a re-quantization stage after every MAC op, on the engine assign['requant'] names
    resident_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    on_unmapped: Literal["error", "report"] = "error"
    # generic: assign + fuse as written; trio: Trio-ViT's rules (DW->PW tail on all PEs, K-sum adder tree,
    # head-pipelined linear attention, row-by-row DW streaming); p2vit: row-streamed attention and MLP
    # (docs/configuration.md, mapping.policy)
    policy: Literal["generic", "trio", "p2vit"] = "generic"


class Defaults(Model):
    """Bit widths and scale kind used until the quantizer supplies per-op values."""

    act_bits: Bits = 8
    weight_bits: Bits = 8
    bias_bits: Bits = 32
    acc_bits: Bits = 32
    scale_kind: Literal["float", "pot", "log2"] = "pot"


#: Quantization methods a ``quant:`` section may name (``none`` = no quantizer: bit widths from ``defaults``).
QuantMethod = Literal["fqvit", "p2vit", "trio", "none"]
QuantBits = Annotated[int, Field(ge=2, le=8, strict=True)]  # the quantizer's range (quantizer.core.bits)


class Quant(Model):
    """Which post-training quantizer prepares a ``--model`` before its trace is extracted (issue 4).

    The method and its settings decide every op's bit widths and scale kind, which then take precedence over
    ``defaults``. The keys mirror ``quantizer.methods.base.QuantConfig``.
    """

    method: QuantMethod
    w_bits: QuantBits = 8
    a_bits: QuantBits = 8
    observer: Literal["minmax", "ema", "percentile", "omse"] = "minmax"
    ptf: bool | None = None  # power-of-two factor and integer LayerNorm; None: the method's default (on for p2vit)
    lis: bool | None = None  # Log-Int-Softmax (4-bit log2 attention probabilities); None: as ptf
    mixed: bool = False  # P2-ViT mixed precision (needs calibration: prefer --quantized FILE from `quantizer save`)
    options: dict[str, str | bool | int | float] = {}  # method-specific knobs, as `quantizer --option KEY=VALUE`

    @property
    def enabled(self) -> bool:
        return self.method != "none"


class ArchConfigRaw(Model):
    """Top level as written in YAML; engines are validated per type afterwards."""

    name: str | None = None
    description: str = ""
    clock_mhz: PosFloat
    defaults: Defaults = Defaults()
    quant: Quant | None = None
    dram: Dram = Dram()
    buffers: dict[str, Buffer]
    noc: Noc = Noc()
    engines: dict[str, dict[str, Any]]
    mapping: Mapping

    @model_validator(mode="after")
    def _nonempty(self) -> "ArchConfigRaw":
        if not self.buffers:
            raise ValueError("buffers: at least one buffer is needed")
        if not self.engines:
            raise ValueError("engines: at least one engine is needed")
        return self
