"""A bit-serial MAC array, engine type ``bitserial``: time scales with the precision of one operand.

Stripes (P. Judd, J. Albericio, T. Hetherington, T. M. Aamodt, A. Moshovos, "Stripes: Bit-Serial Deep Neural
Network Computing", MICRO 2016) feeds activations into its serial inner-product units one bit per cycle; each unit
ANDs that bit with a bit-parallel weight and shift-adds the partial product, so a layer runs in time proportional to
its activation precision instead of a fixed 16-bit datapath. The same datapath with the operands swapped is serial
in the weights, as in UNPU (J. Lee et al., "UNPU: An Energy-Efficient Deep Neural Network Accelerator With Fully
Variable Weight Bit Precision", IEEE JSSC 54(1), 2019): then 4-bit weights run twice as fast as 8-bit ones.
``serial_operand`` picks which one.

Dataflow (a closed form, checkable by hand): ``rows x cols`` processing elements (PEs); each PE row holds ``cols``
weights of one output channel (weight stationary) and an adder tree sums the row, so one fold covers ``rows``
output channels x ``cols`` reduction elements (input channels x kernel taps) while every output pixel / token
streams past, taking ``b`` cycles each for a ``b``-bit serial operand::

    cycles = groups x ceil(n / rows) x ceil(k * taps / cols) x m x b_serial x ceil(b_parallel / parallel_bits)

Weights are read once; each activation is read once per output-channel fold; each output is written once.
Energy is one ``step_pj`` per PE step: ``macs x b_serial x passes x step_pj``.

torch is never imported here.
"""
from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Mapping

from pydantic import Field

from archsim.extend import (Depthwise, EngineBase, EngineKind, Gemm, MappingError, NonNegFloat, Op, OpCost, PosInt,
                            Tensor, geometry, register_engine_kind)
from archsim.extend import OP_KINDS

#: An operand width in bits (the range archsim's own ``Bits`` config type allows).
OperandBits = Annotated[int, Field(ge=1, le=32, strict=True)]


class BitSerialEngine(EngineBase):
    """Config keys of a ``bitserial`` engine (see the module docstring for the cost model)."""

    type: Literal["bitserial"] = "bitserial"
    rows: PosInt = 16  # PE rows: output channels in flight
    cols: PosInt = 16  # PEs per row: reduction elements in flight, summed by the row's adder tree
    serial_operand: Literal["activation", "weight"] = "activation"  # Stripes: activation; UNPU: weight
    parallel_bits: OperandBits = 8  # width of the bit-parallel operand a PE takes; wider ones take several passes
    peak_bits: OperandBits = 8  # serial width the peak MACs/cycle is quoted at (use the narrowest width you run)
    step_pj: NonNegFloat = 0.03  # energy of one PE step: AND of one bit with the parallel operand, then shift-add


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _bytes(elements: int, bits: int) -> int:
    return (elements * bits + 7) // 8


def as_gemm(geom: Gemm | Depthwise) -> Gemm:
    """A depthwise conv as ``channels`` independent 1 x 1 GEMMs over its taps (no sliding-window reuse)."""
    if isinstance(geom, Gemm):
        return geom
    return Gemm(groups=geom.channels, m=geom.rows * geom.width, k=1, n=1, taps=geom.taps)


@register_engine_kind
class BitSerialKind(EngineKind):
    """Bit-serial ``rows x cols`` PE array (Stripes, MICRO 2016): cycles proportional to the serial operand's bits."""

    name: ClassVar[str] = "bitserial"
    config_model: ClassVar[type[EngineBase]] = BitSerialEngine
    category: ClassVar[str] = "compute"
    shares_work: ClassVar[bool] = True  # several arrays may split one op by output channels
    description: ClassVar[str] = "bit-serial PE array (Stripes, MICRO 2016): cycles scale with the serial operand's bits"

    def supports(self, cfg: EngineBase, op: Op, classes: list[str]) -> str | None:
        """Every multiply-accumulate op kind, including ones other plugins register."""
        kind = OP_KINDS.find(op.kind)
        return op.kind if kind is not None and kind.category == "mac" else None

    def peak_macs_per_cycle(self, cfg: EngineBase) -> int:
        """MACs per cycle with ``peak_bits``-wide serial operands: every PE finishes one MAC per ``peak_bits`` steps."""
        assert isinstance(cfg, BitSerialEngine)
        return max(1, cfg.rows * cfg.cols // cfg.peak_bits)

    def resources(self, cfg: EngineBase) -> dict[str, int]:
        assert isinstance(cfg, BitSerialEngine)
        return {"bit_serial_pes": cfg.rows * cfg.cols}

    def summary(self, cfg: EngineBase) -> str:
        assert isinstance(cfg, BitSerialEngine)
        return (f"{cfg.type} {cfg.rows}x{cfg.cols}, {cfg.serial_operand}-serial, "
                f"{self.peak_macs_per_cycle(cfg)} MACs/cycle at {cfg.peak_bits}-bit")

    def cost(self, cfg: EngineBase, op: Op, tensors: Mapping[str, Tensor], cls: str,
             share: Gemm | Depthwise | None = None) -> OpCost:
        assert isinstance(cfg, BitSerialEngine)
        geom = geometry(op, tensors) if share is None else share
        g = as_gemm(geom)
        a_bits = tensors[op.inputs[0]].bits
        weight_from_act = not op.weights  # activation x activation (attention): both operands are activations
        w_bits = tensors[op.inputs[1] if weight_from_act else op.weights[0]].bits
        serial, parallel = (w_bits, a_bits) if cfg.serial_operand == "weight" else (a_bits, w_bits)
        if serial < cfg.peak_bits:  # it would run faster than the peak the design quotes: utilization above 1
            raise MappingError(f"op {op.name}: {serial}-bit {cfg.serial_operand}s are narrower than peak_bits "
                               f"({cfg.peak_bits}); set peak_bits to the narrowest width you run")
        passes = _cdiv(parallel, cfg.parallel_bits)
        reduction = g.k * g.taps
        cycles = g.groups * _cdiv(g.n, cfg.rows) * _cdiv(reduction, cfg.cols) * g.m * serial * passes
        act_reads = g.groups * g.m * reduction * _cdiv(g.n, cfg.rows)
        w_reads = g.groups * g.n * reduction
        outputs = g.groups * g.m * g.n
        w_bytes = _bytes(w_reads, w_bits)
        return OpCost(
            cycles=max(cycles, 1),
            macs=geom.macs,
            elements=outputs,
            act_read_bytes=_bytes(act_reads, a_bits) + (w_bytes if weight_from_act else 0),
            weight_read_bytes=0 if weight_from_act else w_bytes,
            write_bytes=_bytes(outputs, tensors[op.output].bits),
            energy_pj=geom.macs * serial * passes * cfg.step_pj,
            detail=f"{cfg.serial_operand}-serial {serial}b x {passes} pass(es)",
        )
