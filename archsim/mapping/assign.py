"""Which engine runs an op: the op's classes, most specific first, looked up in ``mapping.assign``."""
from __future__ import annotations

from typing import Mapping

from archsim.config.load import ArchConfig
from archsim.mapping.geometry import is_depthwise
from archsim.workloads.ir import Op, Tensor


def op_classes(op: Op, tensors: Mapping[str, Tensor]) -> list[str]:
    """Names an op answers to in ``mapping.assign`` and in a non-linear unit's ``ops``, most specific first.

    conv2d: dwconv | pwconv (1x1, groups 1) | gconv (grouped, not depthwise) | conv, then conv2d.
    activation/eltwise/reduce/pool: the function name (gelu, add, mean, ...), then the kind.
    """
    if op.kind == "conv2d":
        kernel = tuple(op.attrs.get("kernel", (1, 1)))
        groups = int(op.attrs.get("groups", 1))
        if is_depthwise(op, tensors):
            return ["dwconv", "conv2d"]
        if groups > 1:
            return ["gconv", "pwconv", "conv2d"] if kernel == (1, 1) else ["gconv", "conv", "conv2d"]
        if kernel == (1, 1):
            return ["pwconv", "conv2d"]
        return ["conv", "conv2d"]
    if op.kind in ("activation", "eltwise", "reduce", "pool") and op.fn:
        return [op.fn, op.kind]
    return [op.kind]


def assigned_engines(op: Op, tensors: Mapping[str, Tensor], cfg: ArchConfig) -> tuple[tuple[str, ...], str] | None:
    """(engine names, the class that matched) for ``op``, or None when the config assigns no engine."""
    assign = cfg.raw.mapping.assign
    for cls in op_classes(op, tensors):
        target = assign.get(cls)
        if target is not None:
            return ((target,) if isinstance(target, str) else tuple(target)), cls
    return None
