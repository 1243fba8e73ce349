"""The mobile CPU (``mobile_cpu``): multi-core Arm NEON-class SIMD running a whole ViT, GEMMs as dot-product
instructions and every other op as vectorised loops on the same cores, with PackQViT's packed sub-8-bit operands.

A MAC op costs its SIMD dot-product instructions spread over ``cores x pipes``. One instruction (SDOT-style)
fills ``simd_bits // acc_bits`` accumulator lanes (4 x 32-bit outputs) with ``acc_bits // lane_bits`` products
each (4 x 8-bit): 16 MACs at 8 bits. An operand narrower than ``dot_bits`` still takes a whole ``dot_bits`` lane,
because SIMD instructions work on 8-bit or wider elements (PackQViT, Dong et al., NeurIPS 2023), unless
``pack_subbyte`` packs up to ``pack_per_lane`` operands of at most half a lane into one: a 4-bit GEMM then needs
half the instructions with the same MACs and the same bytes. Non-MAC ops (softmax, LayerNorm, GELU, adds, re-quantization, copies) run at
the ``ops`` table's elements per core-cycle, whatever their bit width. Everything runs on one engine, so the ops
of a model run one after another, as on the cores of a phone.
"""
from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal, Mapping

from pydantic import Field, ValidationInfo, field_validator

from archsim.config.schema import Bits, Defaults, EngineBase, Model, NonNegFloat, NonNegInt, PosFloat, PosInt
from archsim.hardware.kind import AreaUnits, EngineKind, OpCost, register_engine_kind
from archsim.workloads.geometry import Depthwise, Gemm, geometry
from archsim.workloads.ir import Op, Tensor
from archsim.workloads.kinds import is_mac


class CpuVectorOp(Model):
    """Throughput and cost of one non-MAC function on the SIMD units (per core, at the core clock)."""

    elements_per_cycle: PosFloat = 1.0
    latency_cycles: NonNegInt = 0  # per op (loop set-up), in core cycles
    pj_per_element: NonNegFloat = 0.0


class MobileCpuEngine(EngineBase):
    """A cluster of ``cores`` identical cores, each with ``pipes`` SIMD pipes of ``simd_bits``."""

    op_class_tables: ClassVar[tuple[str, ...]] = ("ops",)

    type: Literal["mobile_cpu"] = "mobile_cpu"
    cores: PosInt = 4
    pipes: PosInt = 2  # SIMD pipes per core that issue a dot-product instruction each cycle
    clock_ratio: PosFloat = 1.0  # core clock / the config's clock_mhz
    dot_bits: Bits = 8  # narrowest element width of the dot-product instruction
    acc_bits: Bits = 32  # width of its accumulator lanes (SDOT: 4 products of 8 bits into one 32-bit lane)
    simd_bits: PosInt = 128  # width of one SIMD register / instruction (after acc_bits: validated against it)
    pack_subbyte: bool = False  # pack operands of at most dot_bits / 2 bits into one dot_bits lane (PackQViT)
    pack_per_lane: PosInt = 2  # operands one lane holds when packed (two 4-bit values in an 8-bit lane)
    block_n: PosInt = 64  # output channels whose weights stay in L1 while the inputs stream past
    op_overhead_cycles: NonNegInt = 0  # per MAC op (thread dispatch and join), in core cycles
    instr_pj: NonNegFloat = 0.0  # energy of one dot-product instruction
    # non-MAC functions by op class (softmax, gelu, requant, data_movement, ...); keys checked by the loader
    ops: Annotated[dict[str, CpuVectorOp], Field(max_length=256)] = {}

    @field_validator("acc_bits")
    @classmethod
    def _acc_holds_products(cls, v: int, info: ValidationInfo) -> int:
        dot = info.data.get("dot_bits")
        if dot is not None and v % dot:
            raise ValueError(f"must be a multiple of dot_bits ({dot}), got {v}")
        return v

    @field_validator("simd_bits")
    @classmethod
    def _simd_holds_accumulators(cls, v: int, info: ValidationInfo) -> int:
        acc = info.data.get("acc_bits")
        if acc is not None and v % acc:
            raise ValueError(f"must be a multiple of acc_bits ({acc}), got {v}")
        return v

    def lane_bits(self, bits: int) -> int:
        """Width of the SIMD lane an operand of ``bits`` occupies unpacked: whole ``dot_bits`` lanes."""
        return self.dot_bits * -(-bits // self.dot_bits)

    def packing(self, bits: int) -> int:
        """Operands of ``bits`` per lane: ``pack_per_lane`` (at most ``dot_bits // bits``) when packing is on and
        they are narrower than half a lane, else 1."""
        if not self.pack_subbyte or 2 * bits > self.dot_bits:
            return 1
        return min(self.pack_per_lane, self.dot_bits // bits)

    def macs_per_instruction(self, bits: int) -> int:
        """Products one dot-product instruction makes from operands of ``bits`` (16 for 8-bit in 128-bit SDOT)."""
        return (self.simd_bits // self.acc_bits) * self.depth(bits)

    def depth(self, bits: int) -> int:
        """Products one accumulator lane sums per instruction (the reduction depth)."""
        return max(1, self.acc_bits // self.lane_bits(bits)) * self.packing(bits)

    @property
    def peak_macs_per_cycle(self) -> int:
        """At the narrowest operands the engine packs, in config-clock cycles, rounded up so that no op beats it."""
        best = self.macs_per_instruction(1 if self.pack_subbyte else self.dot_bits)
        return math.ceil(self.cores * self.pipes * best * self.clock_ratio)


def _as_gemm(geom: Gemm | Depthwise) -> Gemm:
    """A depthwise conv as one tiny GEMM per channel: each output pixel reduces over the kernel taps."""
    if isinstance(geom, Gemm):
        return geom
    return Gemm(groups=geom.channels, m=geom.rows * geom.width, k=1, n=1, taps=geom.taps, batch=geom.batch)


def _bytes(elements: int, bits: int) -> int:
    return (elements * bits + 7) // 8


def simd_instructions(cfg: MobileCpuEngine, g: Gemm, bits: int) -> int:
    """Dot-product instructions of ``g`` with operands of ``bits``: output lanes fill ``simd_bits // acc_bits`` at
    a time, each reducing ``depth`` products per instruction (a ragged end still takes a whole instruction)."""
    outputs = cfg.simd_bits // cfg.acc_bits
    return g.groups * -(-(g.m * g.n) // outputs) * -(-(g.k * g.taps) // cfg.depth(bits))


def core_to_config(cfg: MobileCpuEngine, core_cycles: int) -> int:
    """Core cycles in the config's clock (``clock_ratio`` = core clock / config clock), rounded up."""
    return math.ceil(core_cycles / cfg.clock_ratio)


@register_engine_kind
class MobileCpuKind(EngineKind):
    """MAC ops: ``ceil(instructions / (cores x pipes)) + op_overhead_cycles`` core cycles; other ops: ``latency +
    ceil(elements / (elements_per_cycle x cores))``; both converted to the config clock by ``clock_ratio``."""

    name: ClassVar[str] = "mobile_cpu"
    config_model: ClassVar[type[EngineBase]] = MobileCpuEngine
    category: ClassVar[str] = "compute"
    description: ClassVar[str] = "mobile CPU: SIMD dot products over cores x pipes, packed sub-8-bit (PackQViT)"

    def supports(self, cfg: EngineBase, op: Op, classes: list[str]) -> str | None:
        assert isinstance(cfg, MobileCpuEngine)
        if is_mac(op.kind):
            return op.kind
        return next((c for c in classes if c in cfg.ops), None)

    def peak_macs_per_cycle(self, cfg: EngineBase) -> int:
        assert isinstance(cfg, MobileCpuEngine)
        return cfg.peak_macs_per_cycle

    def resources(self, cfg: EngineBase) -> dict[str, int]:
        assert isinstance(cfg, MobileCpuEngine)
        return {"cores": cfg.cores, "simd_pipes": cfg.cores * cfg.pipes}

    def area_units(self, cfg: EngineBase, defaults: Defaults) -> AreaUnits:
        """Not derived: a CPU cluster is far more than its SIMD multipliers (give ``area_mm2``, its cores' area)."""
        return AreaUnits(note="a CPU's area is not derived from its arithmetic: give area_mm2 (its cores' area)")

    def summary(self, cfg: EngineBase) -> str:
        assert isinstance(cfg, MobileCpuEngine)
        packed = f", packed sub-{cfg.dot_bits}-bit x{cfg.pack_per_lane}" if cfg.pack_subbyte else ""
        return (f"{super().summary(cfg)} ({cfg.cores} cores x {cfg.pipes} x {cfg.simd_bits}-bit SIMD at "
                f"{cfg.clock_ratio:g}x the clock{packed})")

    def cost(self, cfg: EngineBase, op: Op, tensors: Mapping[str, Tensor], cls: str,
             share: Gemm | Depthwise | None = None) -> OpCost:
        assert isinstance(cfg, MobileCpuEngine)
        if is_mac(op.kind):
            return self._mac_cost(cfg, op, tensors, share)
        return self._vector_cost(cfg, op, tensors, cls)

    def _mac_cost(self, cfg: MobileCpuEngine, op: Op, tensors: Mapping[str, Tensor],
                  share: Gemm | Depthwise | None) -> OpCost:
        """Dot-product instructions over every core's pipes; inputs re-read from L2 once per ``block_n`` output
        channels, weights read once (they stay in L1 while the inputs stream past)."""
        geom = geometry(op, tensors) if share is None else share
        g = _as_gemm(geom)
        a_bits = tensors[op.inputs[0]].bits
        w_name = op.weights[0] if op.weights else op.inputs[1]
        w_bits = tensors[w_name].bits
        bits = max(a_bits, w_bits)  # one lane width serves both operands of a dot product
        instructions = simd_instructions(cfg, g, bits)
        core_cycles = -(-instructions // (cfg.cores * cfg.pipes)) + cfg.op_overhead_cycles
        in_reads = g.groups * g.m * g.k * g.taps * -(-g.n // cfg.block_n)
        w_reads = g.groups * g.n * g.k * g.taps
        out_elems = g.groups * g.m * g.n
        weight_from_act = not op.weights  # activation x activation (attention): both operands from L2
        return OpCost(
            cycles=max(1, core_to_config(cfg, core_cycles)),
            macs=geom.macs,
            elements=out_elems,
            act_read_bytes=_bytes(in_reads, a_bits) + (_bytes(w_reads, w_bits) if weight_from_act else 0),
            weight_read_bytes=0 if weight_from_act else _bytes(w_reads, w_bits),
            write_bytes=_bytes(out_elems, tensors[op.output].bits),
            energy_pj=instructions * cfg.instr_pj,
            detail=f"simd_instructions={instructions},pack={cfg.packing(bits)}",
        )

    def _vector_cost(self, cfg: MobileCpuEngine, op: Op, tensors: Mapping[str, Tensor], cls: str) -> OpCost:
        """A vectorised loop over the op's elements on every core (re-quantization: the accumulators it scales)."""
        spec = cfg.ops[cls]
        out = tensors[op.output]
        first = math.prod(op.input_shape(0, tensors)) if op.inputs else out.numel
        n = max(out.numel, first)
        core_cycles = spec.latency_cycles + math.ceil(n / (spec.elements_per_cycle * cfg.cores))
        requant = op.kind == "requant"  # a stage on the MAC op's own output: nothing more to read or write
        reads = 0 if requant else sum(op.input_bytes(i, tensors) for i in range(len(op.inputs)))
        return OpCost(
            cycles=core_to_config(cfg, core_cycles),
            elements=n,
            act_read_bytes=reads,
            write_bytes=0 if requant else out.nbytes,
            energy_pj=n * spec.pj_per_element,
            detail=f"fn={cls}",
        )


__all__ = ["CpuVectorOp", "MobileCpuEngine", "MobileCpuKind", "core_to_config", "simd_instructions"]
