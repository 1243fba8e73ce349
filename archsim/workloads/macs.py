"""Multiply-accumulate counts from shapes: one definition shared by every workload front end."""
from __future__ import annotations

import math
from typing import Sequence


def count_macs(kind: str, input_shapes: Sequence[Sequence[int]], weight_shape: Sequence[int] | None,
               output_shape: Sequence[int]) -> int:
    """MACs of a MAC op from its shapes (0 for non-MAC kinds).

    conv2d: every output element reduces Cin/groups x kh x kw products (weight shape (Cout, Cin/g, kh, kw));
    linear: every output element reduces in_features products; matmul: every output element reduces the
    first operand's last dimension.
    """
    out = math.prod(output_shape) if output_shape else 1
    if kind == "conv2d":
        if weight_shape is None or len(weight_shape) != 4:
            raise ValueError("conv2d needs a 4-d weight shape (Cout, Cin/groups, kh, kw)")
        return out * math.prod(weight_shape[1:])
    if kind == "linear":
        if weight_shape is None or len(weight_shape) != 2:
            raise ValueError("linear needs a 2-d weight shape (out_features, in_features)")
        return out * int(weight_shape[1])
    if kind == "matmul":
        if not input_shapes or not input_shapes[0]:
            raise ValueError("matmul needs its first operand's shape")
        return out * int(input_shapes[0][-1])
    return 0
