"""A GPU as one engine (``gpu_roofline``): every op is a kernel that pays a launch overhead and then runs at a
fraction of the GPU's peak, tensor cores for MAC ops and CUDA cores for everything else.

The engine prices compute only. An op's DRAM traffic is not added to its cycles: the runner streams it through
the DRAM target while the engine computes (double buffering), so a kernel takes about the larger of the two, as a
roofline does, and adding the memory time here would count it twice. The operand reads from L2 / shared memory
(``act_read_bytes``, ``weight_read_bytes``) go through the buffers the same way. The shipped instance, with the
source of every figure, is arch_configs/gpu_turing.yaml (an RTX 2080 Ti).
"""
from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal, Mapping

from pydantic import Field, field_validator

from archsim.config.schema import Defaults, EngineBase, Model, NonNegFloat, NonNegInt, NotBool, PosFloat, PosInt
from archsim.hardware.kind import AreaUnits, EngineKind, OpCost, register_engine_kind
from archsim.hardware.vector import elementwise_count
from archsim.workloads.geometry import Depthwise, Gemm, geometry
from archsim.workloads.ir import Op, Tensor
from archsim.workloads.kinds import is_mac

#: A fraction of peak: more than 0, at most 1.
Fraction = Annotated[float, NotBool, Field(gt=0, le=1, allow_inf_nan=False)]  # `true` is not 1.0

Precision = Literal["int8", "fp16"]


class TensorOps(Model):
    """Dense tensor-core throughput of one SM per cycle, in operations (a MAC is two), by operand precision."""

    int8: PosInt = 2048
    fp16: PosInt = 1024


class TensorEnergy(Model):
    """Dynamic energy of one tensor-core MAC by operand precision, everything on chip included (pJ)."""

    int8: NonNegFloat = 1.43
    fp16: NonNegFloat = 2.86


#: Fraction of peak each op class reaches by default (all assumed; see arch_configs/gpu_turing.yaml for reasons).
DEFAULT_EFFICIENCY: dict[str, float] = {
    "linear": 0.5, "conv2d": 0.5, "dwconv": 0.05, "matmul": 0.25,
    "softmax": 0.1, "layernorm": 0.2, "activation": 0.1, "eltwise": 0.5, "batchnorm": 0.5, "reduce": 0.5,
    "pool": 0.5, "divide": 0.25, "log2": 0.25, "data_movement": 0.5,
}


class GpuEngine(EngineBase):
    """A GPU running one kernel per op: ``sms`` streaming multiprocessors with tensor cores (MAC ops) and CUDA cores
    (every other op), a fixed launch overhead per kernel, and the fraction of peak each op class reaches."""

    op_class_tables: ClassVar[tuple[str, ...]] = ("efficiency",)

    type: Literal["gpu_roofline"] = "gpu_roofline"
    sms: PosInt = 68
    tensor_ops_per_cycle_per_sm: TensorOps = TensorOps()
    cuda_elements_per_cycle_per_sm: PosFloat = 64.0  # one element per CUDA core per cycle at best
    launch_overhead_cycles: NonNegInt = 3270
    #: op class -> fraction of peak; the engine runs an op only if one of its classes is listed (keys checked by
    #: the loader)
    efficiency: Annotated[dict[str, Fraction], Field(max_length=256)] = dict(DEFAULT_EFFICIENCY)
    tensor_pj_per_mac: TensorEnergy = TensorEnergy()
    cuda_pj_per_op: NonNegFloat = 22.9  # one CUDA-core lane operation; an element costs 1 / efficiency of them

    @field_validator("efficiency")
    @classmethod
    def _efficiency_nonempty(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("must list at least one op class")
        return v

    @property
    def peak_macs_per_cycle(self) -> int:
        """MACs per cycle of all SMs at the fastest tensor-core precision."""
        rates = self.tensor_ops_per_cycle_per_sm
        return self.sms * max(rates.int8, rates.fp16) // 2

    def macs_per_cycle(self, precision: Precision) -> float:
        """MACs per cycle of all SMs at ``precision``."""
        return self.sms * getattr(self.tensor_ops_per_cycle_per_sm, precision) / 2

    @property
    def cuda_elements_per_cycle(self) -> float:
        """Elements per cycle of all SMs' CUDA cores at best."""
        return self.sms * self.cuda_elements_per_cycle_per_sm


def precision_of(a_bits: int, w_bits: int) -> Precision:
    """The tensor-core mode an op runs in: INT8 when both operands fit 8 bits, else FP16 (a GPU runs wider
    operands as half precision)."""
    return "int8" if max(a_bits, w_bits) <= 8 else "fp16"


def _operand_bytes(op: Op, tensors: Mapping[str, Tensor]) -> tuple[int, int]:
    """(activation bytes, weight bytes) the kernel reads, each operand once: a GEMM kernel keeps its tiles in
    shared memory and registers, so L2 sees every operand about once."""
    acts = sum(op.input_bytes(i, tensors) for i in range(len(op.inputs)))
    weights = sum(tensors[w].nbytes for w in op.weights)
    return acts, weights


@register_engine_kind
class GpuKind(EngineKind):
    """``launch_overhead + work / (efficiency x peak)``: MACs at the tensor-core rate of the op's precision, other
    ops' elements at the CUDA-core rate. Energy: MACs x ``tensor_pj_per_mac`` or elements / efficiency x
    ``cuda_pj_per_op``; static power comes from ``static_mw`` over the whole run."""

    name: ClassVar[str] = "gpu_roofline"
    config_model: ClassVar[type[EngineBase]] = GpuEngine
    category: ClassVar[str] = "compute"
    description: ClassVar[str] = "GPU as a roofline: one kernel per op, launch overhead, efficiency per op class"

    def supports(self, cfg: EngineBase, op: Op, classes: list[str]) -> str | None:
        assert isinstance(cfg, GpuEngine)
        return next((c for c in classes if c in cfg.efficiency), None)

    def peak_macs_per_cycle(self, cfg: EngineBase) -> int:
        assert isinstance(cfg, GpuEngine)
        return cfg.peak_macs_per_cycle

    def resources(self, cfg: EngineBase) -> dict[str, int]:
        assert isinstance(cfg, GpuEngine)
        return {"sms": cfg.sms}

    def area_units(self, cfg: EngineBase, defaults: Defaults) -> AreaUnits:
        """Not derived: a GPU is far more than its tensor-core multipliers (give ``area_mm2``, its die area)."""
        return AreaUnits(note="a GPU's area is not derived from its arithmetic: give area_mm2 (its die area)")

    def summary(self, cfg: EngineBase) -> str:
        assert isinstance(cfg, GpuEngine)
        return (f"{super().summary(cfg)} ({cfg.sms} SMs, {cfg.launch_overhead_cycles} cycles per kernel launch, "
                f"{cfg.cuda_elements_per_cycle:g} CUDA-core elements/cycle)")

    def cost(self, cfg: EngineBase, op: Op, tensors: Mapping[str, Tensor], cls: str,
             share: Gemm | Depthwise | None = None) -> OpCost:
        assert isinstance(cfg, GpuEngine)
        eff = cfg.efficiency[cls]
        acts, weights = _operand_bytes(op, tensors)
        out = tensors[op.output]
        if is_mac(op.kind):
            geom = geometry(op, tensors) if share is None else share
            w_name = op.weights[0] if op.weights else op.inputs[1]
            precision = precision_of(tensors[op.inputs[0]].bits, tensors[w_name].bits)
            compute = math.ceil(geom.macs / (cfg.macs_per_cycle(precision) * eff))
            return OpCost(
                cycles=cfg.launch_overhead_cycles + compute,
                macs=geom.macs,
                elements=out.numel,
                act_read_bytes=acts,
                weight_read_bytes=weights,
                write_bytes=out.nbytes,
                energy_pj=geom.macs * getattr(cfg.tensor_pj_per_mac, precision),
                detail=f"tensor {precision}, eff={eff:g}",
            )
        n = elementwise_count(op, tensors)
        return OpCost(
            cycles=cfg.launch_overhead_cycles + math.ceil(n / (cfg.cuda_elements_per_cycle * eff)),
            elements=n,
            act_read_bytes=acts,
            weight_read_bytes=weights,
            write_bytes=out.nbytes,
            energy_pj=n / eff * cfg.cuda_pj_per_op,
            detail=f"cuda {cls}, eff={eff:g}",
        )


__all__ = ["DEFAULT_EFFICIENCY", "GpuEngine", "GpuKind", "TensorEnergy", "TensorOps", "precision_of"]
