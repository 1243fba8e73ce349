"""Everything a plugin needs to extend archsim, in one import.

Extension points (docs/extending.md has a complete example of each):

- **engine kinds**: subclass :class:`EngineKind` (its config keys in a subclass of :class:`EngineBase`) and decorate
  it with :func:`register_engine_kind`; configs then use it as ``engines.<name>.type``.
- **mapping policies**: subclass :class:`Policy`, decorate with :func:`register_policy`; ``mapping.policy`` names it.
- **op kinds**: :func:`register_op_kind` with how the mapper classifies it; a lowering (:func:`register_lowering`)
  turns aten ops into ops of that kind when a model is traced.
- **models**: :func:`register_model` adds a named builder to the zoo (``--model NAME``).
- **quantization methods** live in the quantizer, which stands alone: ``quantizer.methods.register_method``.

A package makes its registrations on import and names that module in the ``archsim.plugins`` entry-point group;
archsim imports it after its built-ins (:func:`load_plugins`).
"""
from __future__ import annotations

from archsim.config.schema import Bits, EngineBase, Model, NonNegFloat, NonNegInt, PosFloat, PosInt
from archsim.errors import MappingError
from archsim.hardware.kind import ENGINE_KINDS, EngineKind, OpCost, kind_of, register_engine_kind
from archsim.mapping.assign import Neighbours
from archsim.mapping.policy import POLICIES, Policy, register_policy
from archsim.mapping.taskgraph import Part, Task
from archsim.registry import PLUGIN_GROUP, load_plugins
from archsim.workloads.extract import AtenCall, TraceContext, extract, register_lowering
from archsim.workloads.geometry import Depthwise, Gemm, geometry
from archsim.workloads.ir import Op, Tensor, Workload
from archsim.workloads.kinds import OP_KINDS, OpKind, register_op_kind
from archsim.workloads.zoo import register_model

__all__ = [
    "AtenCall", "Bits", "MappingError", "TraceContext", "extract", "Depthwise", "ENGINE_KINDS", "EngineBase", "EngineKind", "Gemm", "Model", "Neighbours", "NonNegFloat",
    "NonNegInt", "OP_KINDS", "Op", "OpCost", "OpKind", "POLICIES", "PLUGIN_GROUP", "Part", "Policy", "PosFloat",
    "PosInt", "Task", "Tensor", "Workload", "geometry", "kind_of", "load_plugins", "register_engine_kind",
    "register_lowering", "register_model", "register_op_kind", "register_policy",
]
