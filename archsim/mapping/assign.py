"""Which engine runs an op: the op's classes, most specific first, looked up in ``mapping.assign``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from archsim.config.load import ArchConfig
from archsim.workloads.geometry import is_depthwise
from archsim.workloads.ir import Op, Tensor, Workload
from archsim.workloads.kinds import category_of, op_kind

#: single-input ops that sit between a depthwise conv and the pointwise conv it feeds (they stream through)
_PASS_THROUGH = frozenset({"activation", "batchnorm", "requant"})


@dataclass(frozen=True)
class Neighbours:
    """Who produces and who reads each tensor: the context the role classes (``dw_pwconv``, ``kv_matmul``) need."""

    producers: Mapping[str, Op]
    readers: Mapping[str, tuple[Op, ...]]

    @classmethod
    def of(cls, w: Workload) -> "Neighbours":
        readers: dict[str, list[Op]] = {}
        for op in w.ops:
            for name in dict.fromkeys(op.inputs):
                readers.setdefault(name, []).append(op)
        return cls({op.output: op for op in w.ops}, {k: tuple(v) for k, v in readers.items()})

    def fed_by_depthwise(self, op: Op, tensors: Mapping[str, Tensor]) -> Op | None:
        """The depthwise conv whose output reaches ``op``'s first input through single-input ops, if any."""
        name = op.inputs[0] if op.inputs else ""
        for _ in range(8):
            src = self.producers.get(name)
            if src is None:
                return None
            if is_depthwise(src, tensors):
                return src
            if not (src.kind in _PASS_THROUGH or category_of(src.kind) == "unmodelled") or not src.inputs:
                return None  # an unmodelled op is aliased to its first input by the mapper, so it passes too
            name = src.inputs[0]
        return None


def _role_classes(op: Op, tensors: Mapping[str, Tensor], ctx: Neighbours | None) -> list[str]:
    """Classes that depend on an op's neighbours, more specific than its shape classes."""
    if ctx is None:
        return []
    if op.kind == "conv2d" and tuple(op.attrs.get("kernel", (1, 1))) == (1, 1) and not is_depthwise(op, tensors):
        return ["dw_pwconv"] if ctx.fed_by_depthwise(op, tensors) is not None else []
    if op.kind == "matmul":
        if any(r.kind == "matmul" and len(r.inputs) > 1 and r.inputs[1] == op.output for r in ctx.readers.get(op.output, ())):
            return ["kv_matmul"]
    return []


def op_classes(op: Op, tensors: Mapping[str, Tensor], ctx: Neighbours | None = None) -> list[str]:
    """Names an op answers to in ``mapping.assign`` and in a non-linear unit's ``ops``, most specific first.

    conv2d: dw_pwconv (a 1x1 conv fed by a depthwise conv) | dwconv | pwconv (1x1, groups 1) | gconv (grouped, not
    depthwise) | conv, then conv2d. matmul: kv_matmul (its result is another matmul's second operand, as KᵀV in
    linear attention), then matmul. activation/eltwise/reduce/pool: the function name (gelu, add, mean, ...), then
    the kind. The role classes need ``ctx``; without it they are left out.
    """
    roles = _role_classes(op, tensors, ctx)
    if op.kind == "conv2d":
        kernel = tuple(op.attrs.get("kernel", (1, 1)))
        groups = int(op.attrs.get("groups", 1))
        if is_depthwise(op, tensors):
            return ["dwconv", "conv2d"]
        if groups > 1:
            return [*roles, "gconv", "pwconv", "conv2d"] if kernel == (1, 1) else ["gconv", "conv", "conv2d"]
        if kernel == (1, 1):
            return [*roles, "pwconv", "conv2d"]
        return ["conv", "conv2d"]
    if _by_function(op):
        return [*_impl_classes(op), op.fn, op.kind]
    return [*roles, *_impl_classes(op), op.kind]


def _by_function(op: Op) -> bool:
    """True when the op's ``attrs.fn`` is a more specific class than its kind (activation, eltwise, reduce, pool
    and any registered kind that says so)."""
    kind = op_kind(op.kind)
    return bool(op.fn) and kind is not None and kind.by_function


def _impl_classes(op: Op) -> list[str]:
    """``<function>_<impl>`` for a non-linear op the quantizer made integer (``softmax_lis``, ``layernorm_int``,
    ``divide_shift``, ``hardswish_int``, ``log2_leading_one``), so a config can price the integer form apart."""
    facts = op.attrs.get("quant")
    impl = facts.get("impl") if isinstance(facts, Mapping) else None
    if not impl:
        return []
    base = op.fn if _by_function(op) else op.kind
    return [f"{base}_{impl}"]


def assigned_engines(op: Op, tensors: Mapping[str, Tensor], cfg: ArchConfig,
                     ctx: Neighbours | None = None) -> tuple[tuple[str, ...], str] | None:
    """(engine names, the class that matched) for ``op``, or None when the config assigns no engine."""
    assign = cfg.mapping.assign
    for cls in op_classes(op, tensors, ctx):
        target = assign.get(cls)
        if target is not None:
            return ((target,) if isinstance(target, str) else tuple(target)), cls
    return None
