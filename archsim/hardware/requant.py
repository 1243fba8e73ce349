"""The re-quantization unit: scales accumulators to the next layer's bit width, by a shift for power-of-two (and
log2) scales or by a multiply for float scales."""
from __future__ import annotations

import math
from typing import ClassVar, Literal, Mapping

from archsim.config.schema import Defaults, EngineBase, Model, NonNegFloat, NonNegInt, PosFloat, PosInt
from archsim.hardware.kind import AreaUnits, EngineKind, OpCost, register_engine_kind
from archsim.workloads.geometry import Depthwise, Gemm
from archsim.workloads.ir import Op, Tensor


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




@register_engine_kind
class RequantKind(EngineKind):
    """``latency + elements x cycles_per_element / lanes`` in the mode the op's scale kind needs. Its stages are
    served one at a time (the runner queues them on the unit)."""

    name: ClassVar[str] = "requant"
    config_model: ClassVar[type[EngineBase]] = RequantEngine
    category: ClassVar[str] = "requant"
    description: ClassVar[str] = "re-quantization unit: shift for power-of-two scales, multiply for float scales"

    def supports(self, cfg: EngineBase, op: Op, classes: list[str]) -> str | None:
        return "requant" if op.kind == "requant" else None

    def cost(self, cfg: EngineBase, op: Op, tensors: Mapping[str, Tensor], cls: str,
             share: Gemm | Depthwise | None = None) -> OpCost:
        assert isinstance(cfg, RequantEngine)
        elements = tensors[op.output].numel
        mode = cfg.shift if op.scale_kind in ("pot", "log2") else cfg.multiply
        return OpCost(
            cycles=mode.latency_cycles + math.ceil(elements * mode.cycles_per_element / cfg.lanes),
            elements=elements,
            energy_pj=elements * mode.pj_per_element,
            detail="shift" if mode is cfg.shift else "multiply",
        )

    def area_units(self, cfg: EngineBase, defaults: Defaults) -> AreaUnits:
        """Each lane: one multiplier for float scales and one ``acc_bits`` rounding adder (shifters not counted).
        assumed: the scale multiplier is ``REQUANT_MULTIPLIER_BITS`` wide (a fixed-point scale)."""
        assert isinstance(cfg, RequantEngine)
        return AreaUnits(multipliers=cfg.lanes, multiplier_bits=REQUANT_MULTIPLIER_BITS, adders=cfg.lanes,
                         adder_bits=defaults.acc_bits)


#: assumed: operand width of a re-quantization lane's scale multiplier (a 16-bit fixed-point scale).
REQUANT_MULTIPLIER_BITS = 16
