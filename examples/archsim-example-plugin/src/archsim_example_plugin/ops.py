"""The ``glu`` op kind and its lowering: the gated linear unit, which archsim's built-in front end does not lower.

GLU (Dauphin et al., "Language Modeling with Gated Convolutional Networks", ICML 2017) splits its input in two
halves along ``dim`` and returns ``a * sigmoid(b)``; GLU-variant MLPs (Shazeer, "GLU Variants Improve Transformer",
arXiv:2002.05202, 2020) use it in place of GELU. Without this lowering ``aten.glu`` traces to an unmodelled
``other`` op; with it, the op is a ``vector`` op that a non-linear unit listing ``glu`` in its ``ops`` runs (one
sigmoid and one multiply per output element, reading twice as many input elements).

torch is never imported here: the lowering only receives traced tensors.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from archsim.extend import register_lowering, register_op_kind

if TYPE_CHECKING:
    from archsim.workloads.extract import AtenCall, TraceContext

GLU = register_op_kind(
    "glu", "vector",
    description="gated linear unit: a * sigmoid(b) of the two halves of the input along attrs.dim",
)


@register_lowering("glu", "glu_")
def lower_glu(ctx: TraceContext, call: AtenCall) -> None:
    """``aten.glu(x, dim)`` -> one ``glu`` op reading ``x`` (both halves) and writing the half-size output."""
    acts, weights = ctx.operands(call.args[0])
    ctx.emit(call, "glu", acts, call.output, weights=weights, attrs={"dim": int(call.arg(1, "dim", -1))})
