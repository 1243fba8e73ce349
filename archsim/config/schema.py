"""Typed, validated architecture configuration (YAML -> frozen pydantic models).

Units are explicit in key names: ``_mhz``, ``_gbps`` (GB/s, 1e9 bytes), ``_ns``, ``_kib``, ``_bits``, ``_pj``
(picojoules), ``_mw`` (milliwatts). Energy defaults cite their sources in docs/configuration.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from archsim.workloads.bridge import QuantConfig

PosInt = Annotated[int, Field(gt=0, strict=True)]
NonNegInt = Annotated[int, Field(ge=0, strict=True)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Bits = Annotated[int, Field(ge=1, le=32, strict=True)]
#: An area or per-unit area figure: a finite number >= 0 (``inf`` and ``nan`` are rejected).
AreaFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


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
    area_mm2: AreaFloat | None = None  # a published macro area; overrides the derived one (docs: Area proxy)

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
    """Fields every engine has. An engine kind (``archsim.hardware``) subclasses it with its own keys and registers
    under the ``type`` name configs use."""

    type: str
    static_mw: NonNegFloat = 0.0
    area_mm2: AreaFloat | None = None  # a published area; overrides the derived one (docs: Area proxy)


# ---- area proxy ---------------------------------------------------------------------------------------------------


class AreaSpec(Model):
    """Per-unit areas in µm² at one technology (45 nm) that ``archsim.hardware.area`` derives a design's area from.

    Arithmetic: M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014
    (doi:10.1109/ISSCC.2014.6757323), 45 nm. SRAM: Intel's 45 nm 6T bitcell (Mistry et al., IEDM 2007). Sources
    and the scaling rules in docs/configuration.md ("Area proxy").
    """

    int_mult8_um2: AreaFloat = 282.0  # 8-bit integer multiplier (Horowitz ISSCC'14, 45 nm)
    int_add8_um2: AreaFloat = 36.0  # 8-bit integer adder (Horowitz ISSCC'14, 45 nm)
    fp16_mult_um2: AreaFloat = 1640.0  # 16-bit floating-point multiplier (Horowitz ISSCC'14, 45 nm)
    fp16_add_um2: AreaFloat = 1360.0  # 16-bit floating-point adder (Horowitz ISSCC'14, 45 nm)
    fp32_mult_um2: AreaFloat = 7700.0  # 32-bit floating-point multiplier (Horowitz ISSCC'14, 45 nm)
    fp32_add_um2: AreaFloat = 4184.0  # 32-bit floating-point adder (Horowitz ISSCC'14, 45 nm)
    sram_bitcell_um2: AreaFloat = 0.346  # Intel 45 nm high-k/metal-gate 6T cell (Mistry et al., IEDM 2007)
    # assumed: bitcells fill 70% of an SRAM macro (decoders, sense amplifiers, I/O take the rest)
    sram_array_efficiency: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.7


# ---- mapping ------------------------------------------------------------------------------------------------------


class Pipeline(Model):
    """The three overlaps of a pipelined accelerator, each with its own switch (docs/configuration.md)."""

    # a consumer op starts on the first tiles (rows) of its producer's output, streamed through an on-chip FIFO
    # (LayerNorm -> matmul, DW -> PW): fusion between layers
    inter_layer: bool = True
    # the stages inside one operator overlap: a tile's MACs, its re-quantization and write-back; in attention,
    # Q·Kᵀ -> softmax -> ·V (or KᵀV -> Q·S) run head by head, fused
    intra_layer: bool = True
    # DRAM tiles are double-buffered: tile i+1 (or the next layer's first tile) loads while tile i computes
    double_buffering: bool = True
    fifo_depth: PosInt = 2  # tiles a FIFO between fused ops holds
    max_group_ops: PosInt = 4
    min_tiles: PosInt = 1  # a fusion group is cut into at least this many tiles, so consumers start early
    # the mapper cuts a group into at most this many tiles unless its buffers need more (bounds simulation events)
    max_tiles: PosInt = 32


class Mapping(Model):
    """How ops reach engines. ``assign`` maps an op class (most specific first, see docs) to engine names; a list
    of several engines runs the op on all of them at once, split by output channels."""

    assign: dict[str, str | tuple[str, ...]]
    pipeline: Pipeline = Pipeline()
    fold_batchnorm: bool = True
    requant: bool = True  # a re-quantization stage after every MAC op, on the engine assign['requant'] names
    resident_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    on_unmapped: Literal["error", "report"] = "error"
    # a registered mapping policy (archsim.mapping.policy): generic = assign + fuse as written; trio = Trio-ViT's
    # rules; p2vit = head-streamed attention (docs/configuration.md, mapping.policy); checked by the loader
    policy: str = "generic"
    # the mapper (archsim.mapping.search): fixed = each engine's closed-form loop nest and the fewest tiles that fit;
    # heuristic = greedy over dataflows then tile counts; exhaustive = every candidate, up to ``budget`` per op
    search: Literal["exhaustive", "heuristic", "fixed"] = "exhaustive"
    objective: Literal["latency", "energy", "edp"] = "latency"
    budget: PosInt = 64  # candidate mappings evaluated per op (dataflows) and per fusion group (tile counts)


class Defaults(Model):
    """Bit widths and scale kind used until the quantizer supplies per-op values."""

    act_bits: Bits = 8
    weight_bits: Bits = 8
    bias_bits: Bits = 32
    acc_bits: Bits = 32
    scale_kind: Literal["float", "pot", "log2"] = "pot"


def _bits_range() -> tuple[int, int]:
    """The quantizer's bit-width range (``quantizer.core.bits``), through the bridge (imported on first use)."""
    from archsim.workloads import bridge

    return bridge.MIN_BITS, bridge.MAX_BITS


#: A ``quant:`` bit width: an integer within the quantizer's range (checked by :class:`QuantSection`).
QuantBits = Annotated[int, Field(strict=True)]


class QuantSection(Model):
    """The ``quant:`` section as written: which post-training quantizer prepares a ``--model`` before its trace is
    extracted (issue 4). Its keys are the quantizer's ``QuantConfig``'s; each is checked here so an error names
    its key. ``method: none`` means no quantizer (bit widths from ``defaults``).
    """

    method: str
    w_bits: QuantBits = 8
    a_bits: QuantBits = 8
    observer: str = "minmax"
    ptf: bool | None = None  # power-of-two factor and integer LayerNorm; None: the method's default (on for p2vit)
    lis: bool | None = None  # Log-Int-Softmax (4-bit log2 attention probabilities); None: as ptf
    mixed: bool = False  # P2-ViT mixed precision (needs calibration: prefer --quantized FILE from `quantizer save`)
    options: dict[str, str | bool | int | float] = {}  # method-specific knobs, as `quantizer --option KEY=VALUE`

    @field_validator("method")
    @classmethod
    def _registered(cls, value: str) -> str:
        from archsim.workloads import bridge

        known = bridge.method_names()
        if value != "none" and value not in known:
            raise ValueError(f"unknown quantization method {value!r} (known: {', '.join(known)}, or none)")
        return value

    @field_validator("w_bits", "a_bits")
    @classmethod
    def _in_range(cls, value: int) -> int:
        low, high = _bits_range()
        if not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}, got {value}")
        return value

    @field_validator("observer")
    @classmethod
    def _observer(cls, value: str) -> str:
        from archsim.workloads import bridge

        if value not in bridge.OBSERVERS:
            raise ValueError(f"must be one of {', '.join(bridge.OBSERVERS)}, got {value!r}")
        return value

    def to_config(self) -> QuantConfig | None:
        """The quantizer's validated record; None for ``method: none``."""
        from archsim.workloads import bridge

        if self.method == "none":
            return None
        try:
            return bridge.QuantConfig(**self.model_dump())
        except bridge.QuantizerError as exc:  # every key was checked above: a rule only the quantizer knows
            raise ValueError(exc.detail) from None


def _quant_config(section: QuantSection) -> QuantConfig | None:
    return section.to_config()


if TYPE_CHECKING:
    Quant: TypeAlias = QuantConfig
else:
    #: ``quant:`` validates into the quantizer's :class:`QuantConfig` (None for ``method: none``); see QuantSection.
    Quant = Annotated[QuantSection, AfterValidator(_quant_config)]


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
    area: AreaSpec = AreaSpec()

    @model_validator(mode="after")
    def _nonempty(self) -> "ArchConfigRaw":
        if not self.buffers:
            raise ValueError("buffers: at least one buffer is needed")
        if not self.engines:
            raise ValueError("engines: at least one engine is needed")
        return self
