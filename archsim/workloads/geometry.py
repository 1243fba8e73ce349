"""The loop-nest shapes of MAC ops, in the two forms the dataflow models use."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from archsim.workloads.ir import Op, Tensor
from archsim.workloads.kinds import op_kind


@dataclass(frozen=True, slots=True)
class Gemm:
    """``groups`` independent (m x k) @ (k x n) products, each reduction repeated over ``taps`` kernel taps."""

    groups: int
    m: int
    k: int
    n: int
    taps: int = 1
    batch: int = 1  # images in ``m`` (conv, linear), so processing groups may split by image; a matmul's are in groups

    @property
    def macs(self) -> int:
        return self.groups * self.m * self.k * self.n * self.taps


@dataclass(frozen=True, slots=True)
class Depthwise:
    """A depthwise conv: ``channels`` independent filters of ``taps`` over ``rows`` x ``width`` output pixels."""

    channels: int
    rows: int
    width: int
    taps: int
    multiplier: int = 1  # output channels per input channel
    kernel_rows: int = 1  # kh: a sliding window re-reads each input row once per kernel row
    batch: int = 1  # images in ``rows``

    @property
    def macs(self) -> int:
        return self.channels * self.rows * self.width * self.taps


def is_depthwise(op: Op, tensors: Mapping[str, Tensor]) -> bool:
    if op.kind != "conv2d":
        return False
    groups = int(op.attrs.get("groups", 1))
    cin = op.input_shape(0, tensors)[1]
    return groups > 1 and groups == cin


def geometry(op: Op, tensors: Mapping[str, Tensor]) -> Gemm | Depthwise:
    """Shape a MAC op for the dataflow models; raises ValueError for non-MAC ops or inconsistent shapes.

    A MAC kind a plugin registered with its own ``geometry`` function is shaped by that function."""
    kind = op_kind(op.kind)
    if kind is not None and kind.geometry is not None:
        return kind.geometry(op, tensors)
    out = tensors[op.output].shape
    if op.kind == "conv2d":
        w = tensors[op.weights[0]].shape  # (Cout, Cin/g, kh, kw)
        groups = int(op.attrs.get("groups", 1))
        b, cout, ho, wo = out
        taps = w[2] * w[3]
        if is_depthwise(op, tensors):
            return Depthwise(channels=cout, rows=b * ho, width=wo, taps=taps * w[1], multiplier=cout // groups,
                             kernel_rows=w[2], batch=b)
        return Gemm(groups=groups, m=b * ho * wo, k=w[1], n=cout // groups, taps=taps, batch=b)
    if op.kind == "linear":
        w = tensors[op.weights[0]].shape  # (out, in)
        return Gemm(groups=1, m=math.prod(out[:-1]) if len(out) > 1 else 1, k=w[1], n=w[0],
                    batch=out[0] if len(out) > 2 else 1)
    if op.kind == "matmul":
        a = op.input_shape(0, tensors)
        lead = math.prod(out[:-2]) if len(out) > 2 else 1
        m = out[-2] if len(out) >= 2 else 1
        return Gemm(groups=lead, m=m, k=a[-1], n=out[-1])  # images are among the groups (heads)
    raise ValueError(f"op kind {op.kind!r} has no MAC geometry")
