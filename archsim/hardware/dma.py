"""The DMA: on-chip copies (concat, pad, layout changes) at a fixed byte rate."""
from __future__ import annotations

import math
from typing import ClassVar, Literal, Mapping

from archsim.config.schema import EngineBase, Model, NonNegFloat, NonNegInt, PosFloat, PosInt
from archsim.hardware.kind import EngineKind, OpCost, register_engine_kind
from archsim.workloads.geometry import Depthwise, Gemm
from archsim.workloads.ir import Op, Tensor


class DmaEngine(EngineBase):
    """Copies within on-chip memory (concat, pad, layout changes) at ``bytes_per_cycle``."""

    type: Literal["dma"] = "dma"
    bytes_per_cycle: PosFloat = 64.0
    latency_cycles: NonNegInt = 4
    pj_per_byte: NonNegFloat = 0.0


@register_engine_kind
class DmaKind(EngineKind):
    """An on-chip copy: its output bytes at the DMA's rate, after a fixed latency."""

    name: ClassVar[str] = "dma"
    config_model: ClassVar[type[EngineBase]] = DmaEngine
    category: ClassVar[str] = "dma"
    description: ClassVar[str] = "copies within on-chip memory (concat, pad, layout changes)"

    def supports(self, cfg: EngineBase, op: Op, classes: list[str]) -> str | None:
        return "data_movement" if op.kind == "data_movement" else None

    def cost(self, cfg: EngineBase, op: Op, tensors: Mapping[str, Tensor], cls: str,
             share: Gemm | Depthwise | None = None) -> OpCost:
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
