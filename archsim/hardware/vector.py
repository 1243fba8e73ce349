"""The non-linear (vector) unit: softmax, LayerNorm, activations, element-wise ops and reductions, each function
priced by the unit's own ``ops`` table; an op whose class is not in the table does not run here."""
from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal, Mapping

from pydantic import Field, field_validator

from archsim.config.schema import Defaults, EngineBase, Model, NonNegFloat, NonNegInt, PosFloat, PosInt
from archsim.hardware.kind import AreaUnits, EngineKind, OpCost, register_engine_kind
from archsim.workloads.geometry import Depthwise, Gemm
from archsim.workloads.ir import Op, Tensor


class NonlinearOp(Model):
    """Throughput and cost of one function on a non-linear unit."""

    cycles_per_element: PosFloat = 1.0  # per lane
    latency_cycles: NonNegInt = 8
    pj_per_element: NonNegFloat = 0.5


class NonlinearEngine(EngineBase):
    """Vector unit for softmax, layernorm, activations, eltwise, reductions; ``ops`` lists what it supports."""

    op_class_tables: ClassVar[tuple[str, ...]] = ("ops",)

    type: Literal["nonlinear"] = "nonlinear"
    lanes: PosInt = 16
    ops: Annotated[dict[str, NonlinearOp], Field(max_length=256)]  # op class -> cost; keys checked by the loader

    @field_validator("ops")
    @classmethod
    def _ops_nonempty(cls, v: dict[str, NonlinearOp]) -> dict[str, NonlinearOp]:
        if not v:
            raise ValueError("must list at least one supported op")
        return v


def elementwise_count(op: Op, tensors: Mapping[str, Tensor]) -> int:
    """Elements a vector unit evaluates: the larger of the output and the first input (reductions read more)."""
    out = tensors[op.output].numel
    first = math.prod(op.input_shape(0, tensors)) if op.inputs else out
    return max(out, first)


@register_engine_kind
class NonlinearKind(EngineKind):
    """``latency + elements x cycles_per_element / lanes`` for the function the op's class names."""

    name: ClassVar[str] = "nonlinear"
    config_model: ClassVar[type[EngineBase]] = NonlinearEngine
    category: ClassVar[str] = "nonlinear"
    description: ClassVar[str] = "vector unit for softmax, layernorm, activations, eltwise, reductions"

    def supports(self, cfg: EngineBase, op: Op, classes: list[str]) -> str | None:
        assert isinstance(cfg, NonlinearEngine)
        return next((c for c in classes if c in cfg.ops), None)

    def cost(self, cfg: EngineBase, op: Op, tensors: Mapping[str, Tensor], cls: str,
             share: Gemm | Depthwise | None = None) -> OpCost:
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

    def area_units(self, cfg: EngineBase, defaults: Defaults) -> AreaUnits:
        """assumed: each lane evaluates its functions with one FP16 multiply-add per cycle (polynomial or
        piecewise-linear approximations); an integer unit of the same throughput is smaller."""
        assert isinstance(cfg, NonlinearEngine)
        return AreaUnits(fp_lanes=cfg.lanes, fp_bits=16)
