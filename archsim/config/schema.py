"""Typed, validated architecture configuration (YAML -> frozen pydantic models).

Units are explicit in key names: ``_mhz``, ``_gbps`` (GB/s, 1e9 bytes), ``_ns``, ``_kib``, ``_bits``, ``_pj``
(picojoules), ``_mw`` (milliwatts). Energy defaults cite their sources in docs/configuration.md.
"""
from __future__ import annotations

import reprlib
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from archsim.workloads.bridge import QuantConfig

# ---- ranges ---------------------------------------------------------------------------------------------------------
# Every number of a config is finite and within a range no real design leaves, so a run stays bounded (in memory and
# in simulated events) whatever a file says. The shared types below carry the ranges the engine kinds inherit
# (archsim.hardware, plugins); keys with a range of their own say so where they are declared. docs/configuration.md
# ("Ranges") lists them all.

#: Most units of one kind a key may count (lanes, rows, banks, multipliers, bytes of a DRAM row ...): 2**16.
MAX_COUNT = 65_536
#: Most cycles a latency or overhead key may give (1 ms at 1 GHz).
MAX_CYCLES = 1_000_000
#: Smallest positive rate or size (cycles per element, GB/s, clock ratio ...): smaller ones overflow the cycle count.
MIN_POSITIVE = 1e-6
#: Largest rate, energy (pJ), power (mW), latency (ns) or area a key may give.
MAX_MAGNITUDE = 1e6
#: Characters of a bad value that an error message quotes.
MAX_SHOWN = 60

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = MAX_SHOWN


def shown(value: object) -> str:
    """``value`` as an error message quotes it: a string in quotes, a number as written, a container abridged; at
    most :data:`MAX_SHOWN` characters, so an enormous (or alias-expanded) value never floods the message."""
    if isinstance(value, str):
        text = repr(value) if len(value) <= MAX_SHOWN else repr(value[: MAX_SHOWN - 10]) + "..."
    elif isinstance(value, bool):
        text = "true" if value else "false"  # as YAML spells it
    else:
        text = str(value) if isinstance(value, float) else _REPR.repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _not_bool(value: Any) -> Any:
    """YAML's ``true`` is not the number 1: a number key rejects it (pydantic's lax mode would take it as 1.0)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {shown(value)}")
    return value


NotBool = BeforeValidator(_not_bool)

#: A count of units: an integer from 1 to MAX_COUNT.
PosInt = Annotated[int, Field(gt=0, le=MAX_COUNT, strict=True)]
#: A cycle count or other integer that may be 0: 0 to MAX_CYCLES.
NonNegInt = Annotated[int, Field(ge=0, le=MAX_CYCLES, strict=True)]
#: A rate, size or ratio: a finite number from MIN_POSITIVE to MAX_MAGNITUDE.
PosFloat = Annotated[float, NotBool, Field(ge=MIN_POSITIVE, le=MAX_MAGNITUDE, allow_inf_nan=False)]
#: An energy (pJ), power (mW) or latency (ns): a finite number from 0 to MAX_MAGNITUDE.
NonNegFloat = Annotated[float, NotBool, Field(ge=0.0, le=MAX_MAGNITUDE, allow_inf_nan=False)]
#: A bit width: 1 to 32 (the widths a trace's tensors may have, archsim.workloads.extract.check_bits).
Bits = Annotated[int, Field(ge=1, le=32, strict=True)]
#: A clock frequency in MHz: 1 MHz to 100 GHz.
ClockMhz = Annotated[float, NotBool, Field(ge=1.0, le=100_000.0, allow_inf_nan=False)]
#: DRAM channels: 1 to 64 (a transfer is striped over every channel, one transaction each).
Channels = Annotated[int, Field(gt=0, le=64, strict=True)]
#: A buffer capacity in KiB: 1 byte (1/1024 KiB) to 1 TiB (2**30 KiB).
CapacityKib = Annotated[float, NotBool, Field(ge=2.0**-10, le=2.0**30, allow_inf_nan=False)]
#: A share of something, from 0 to just under 1.
Share = Annotated[float, NotBool, Field(ge=0.0, lt=1.0, allow_inf_nan=False)]
#: An area or per-unit area figure (mm² or µm²): a finite number from 0 to MAX_MAGNITUDE.
AreaFloat = Annotated[float, NotBool, Field(ge=0.0, le=MAX_MAGNITUDE, allow_inf_nan=False)]


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
    channels: Channels = 1
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

    capacity_kib: CapacityKib
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
    # up to 2^24 bits: wide enough to model "no NoC limit" (the Trio-ViT oracle recipe sets 2^20)
    link_bits: Annotated[int, Field(gt=0, le=1 << 24, strict=True)] = 512
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

    #: Fields that are tables keyed by op class (a non-linear unit's ``ops``, a GPU's ``efficiency``): the loader
    #: checks every key against :func:`op_class_names`, as it checks ``mapping.assign`` (a typo would never match).
    op_class_tables: ClassVar[tuple[str, ...]] = ()

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
    sram_array_efficiency: Annotated[float, NotBool, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.7


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
    # the bounds keep a run's simulated events (tiles x FIFO slots x ops) small enough to run in seconds
    fifo_depth: Annotated[PosInt, Field(le=64)] = 2  # tiles a FIFO between fused ops holds
    max_group_ops: Annotated[PosInt, Field(le=64)] = 4
    # a fusion group is cut into at least this many tiles, so consumers start early
    min_tiles: Annotated[PosInt, Field(le=1024)] = 1
    # the mapper cuts a group into at most this many tiles unless its buffers need more (bounds simulation events)
    max_tiles: Annotated[PosInt, Field(le=1024)] = 32


#: Classes of MAC ops by shape and role (archsim.mapping.assign.op_classes), more specific than their kind.
ROLE_CLASSES: tuple[str, ...] = ("dw_pwconv", "dwconv", "pwconv", "gconv", "conv", "kv_matmul")
#: Functions (``attrs.fn``) of the activation kind that archsim's tracer emits (archsim.workloads.extract).
ACTIVATION_FUNCTIONS: tuple[str, ...] = (
    "relu", "relu6", "gelu", "hardswish", "silu", "sigmoid", "tanh", "hardsigmoid", "hardtanh", "leaky_relu", "elu",
    "mish", "softplus", "clamp", "clamp_min", "clamp_max", "threshold",
)
#: Functions of the eltwise, reduce and pool kinds that archsim's tracer emits (archsim.workloads.extract).
OTHER_FUNCTIONS: tuple[str, ...] = (
    "add", "sub", "mul", "div", "rsub", "maximum", "minimum", "pow", "mask",  # eltwise, two operands
    "neg", "exp", "log", "log2", "sqrt", "rsqrt", "reciprocal", "abs", "erf", "square",  # eltwise, one operand
    "mean", "sum", "max", "min", "prod", "var", "std",  # reduce
    "avg",  # pool (and max)
)
#: ``<function>_<impl>`` classes of the non-linear ops a quantizer makes integer (archsim.workloads.quant); an
#: activation's integer form is ``<function>_int`` for any activation function (``gelu_int``, ``hardswish_int``).
IMPL_CLASSES: tuple[str, ...] = ("softmax_lis", "softmax_int2n", "layernorm_int", "divide_shift", "log2_leading_one")


def op_class_names() -> frozenset[str]:
    """Every class an op can answer to in ``mapping.assign``: the registered op kinds (a plugin's included), the
    role classes, the tracer's functions, the functions a plugin's lowering is named for, and the integer forms.
    Computed on each call: a plugin or a test may register an op kind or a lowering before loading a config."""
    from archsim.registry import OP_KINDS
    from archsim.workloads.extract import LOWERINGS

    plugin_fns = {name.rstrip("_") for name, fn in LOWERINGS.items()
                  if not getattr(fn, "__module__", "").startswith("archsim.")}
    activations = {*ACTIVATION_FUNCTIONS, *plugin_fns}
    return frozenset({*OP_KINDS.names(), *ROLE_CLASSES, *activations, *OTHER_FUNCTIONS, *IMPL_CLASSES,
                      *(f"{fn}_int" for fn in activations)})


class Mapping(Model):
    """How ops reach engines. ``assign`` maps an op class (most specific first, see docs) to engine names; a list
    of several engines runs the op on all of them at once, split by output channels."""

    # keys: op classes, checked by the loader against op_class_names(); each entry names an engine at most once
    assign: Annotated[dict[str, str | tuple[str, ...]], Field(max_length=256)]
    pipeline: Pipeline = Pipeline()
    fold_batchnorm: bool = True
    requant: bool = True  # a re-quantization stage after every MAC op, on the engine assign['requant'] names
    resident_fraction: Share = 0.5
    on_unmapped: Literal["error", "report"] = "error"
    # a registered mapping policy (archsim.mapping.policy): generic = assign + fuse as written; trio = Trio-ViT's
    # rules; p2vit = head-streamed attention (docs/configuration.md, mapping.policy); checked by the loader
    policy: str = "generic"
    # the mapper (archsim.mapping.search): fixed = each engine's closed-form loop nest and the fewest tiles that fit;
    # heuristic = greedy over dataflows then tile counts; exhaustive = every candidate, up to ``budget`` per op
    search: Literal["exhaustive", "heuristic", "fixed"] = "exhaustive"
    objective: Literal["latency", "energy", "edp"] = "latency"
    # candidate mappings evaluated per op (dataflows) and per fusion group (tile counts)
    budget: Annotated[PosInt, Field(le=4096)] = 64


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
            raise ValueError(f"unknown quantization method {shown(value)} (known: {', '.join(known)}, or none)")
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
            raise ValueError(f"must be one of {', '.join(bridge.OBSERVERS)}, got {shown(value)}")
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
    clock_mhz: ClockMhz
    defaults: Defaults = Defaults()
    quant: Quant | None = None
    dram: Dram = Dram()
    buffers: Annotated[dict[str, Buffer], Field(max_length=64)]
    noc: Noc = Noc()
    engines: Annotated[dict[str, dict[str, Any]], Field(max_length=256)]
    mapping: Mapping
    area: AreaSpec = AreaSpec()

    @model_validator(mode="after")
    def _nonempty(self) -> "ArchConfigRaw":
        if not self.buffers:
            raise ValueError("buffers: at least one buffer is needed")
        if not self.engines:
            raise ValueError("engines: at least one engine is needed")
        return self
