"""Op kinds: the IR's vocabulary, open to extension.

Every op of a workload has a kind registered here. The kind says how the mapper classifies the op: whether its work
is multiply-accumulates with a loop-nest geometry (``mac``), element-wise or row-wise vector work (``vector``), a
re-quantization (``requant``), a copy (``data_movement``) or an op with no lowering (``unmodelled``, counted and
reported, never simulated). Engines decide on their own which kinds they run; an op no assigned engine supports is a
mapping error naming it, never priced by a default.

A lowering that introduces a new kind registers it with :func:`register_op_kind` before the workload is built.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal, Mapping, cast

from archsim import registry
from archsim.registry import Registry

if TYPE_CHECKING:
    from archsim.workloads.geometry import Depthwise, Gemm
    from archsim.workloads.ir import Op, Tensor

Category = Literal["mac", "vector", "requant", "data_movement", "unmodelled"]
CATEGORIES: tuple[str, ...] = ("mac", "vector", "requant", "data_movement", "unmodelled")

#: A MAC kind's loop-nest shape: (op, tensors) -> Gemm | Depthwise.
GeometryFn = Callable[["Op", Mapping[str, "Tensor"]], "Gemm | Depthwise"]


@dataclass(frozen=True)
class OpKind:
    """How the mapper treats ops of one kind.

    ``by_function``: the op's ``attrs.fn`` (gelu, add, mean, ...) is a more specific mapping class than the kind.
    ``streamable``: it may take or pass tiles through an on-chip FIFO in a fusion group (a reduction needs its whole
    input first, so it cannot). ``geometry``: for a new ``mac`` kind, its loop-nest shape (the built-in conv2d,
    linear and matmul shapes live in :mod:`archsim.workloads.geometry`)."""

    name: str
    category: Category
    by_function: bool = False
    streamable: bool = True
    geometry: GeometryFn | None = None
    description: str = ""


#: Every op kind the IR accepts, by name.
OP_KINDS = cast(Registry[OpKind], registry.OP_KINDS)


def register_op_kind(name: str, category: Category, *, by_function: bool = False, streamable: bool = True,
                     geometry: GeometryFn | None = None, description: str = "", replace: bool = False) -> OpKind:
    """Make op kind ``name`` valid in workloads and tell the mapper how to classify it."""
    if category not in CATEGORIES:
        from archsim.errors import UsageError

        raise UsageError(f"op kind {name!r}: category must be one of {', '.join(CATEGORIES)}, got {category!r}")
    kind = OpKind(name, category, by_function, streamable, geometry, description)
    return OP_KINDS.register(name, kind, replace=replace)


def op_kind(name: str) -> OpKind | None:
    """The registered kind ``name``, or None."""
    return OP_KINDS.find(name)


def category_of(name: str) -> str:
    """The category of kind ``name`` ('' for an unknown kind)."""
    kind = OP_KINDS.find(name)
    return kind.category if kind is not None else ""


def is_mac(name: str) -> bool:
    """True for kinds whose work is multiply-accumulates."""
    return category_of(name) == "mac"


for _name, _cat, _fn, _stream, _desc in (
    ("conv2d", "mac", False, True, "attrs: kernel (kh, kw), stride (sh, sw), padding (ph, pw), groups"),
    ("linear", "mac", False, True, "inputs[0] @ weight^T (+ bias)"),
    ("matmul", "mac", False, True, "activation x activation (attention), batched over leading dims"),
    ("eltwise", "vector", True, True, "attrs.fn: add, sub, mul, div, ... over the output's elements"),
    ("activation", "vector", True, True, "attrs.fn: relu, gelu, hardswish, silu, sigmoid, tanh, ..."),
    ("softmax", "vector", False, True, "row-wise softmax"),
    ("layernorm", "vector", False, True, "row-wise layer normalization"),
    ("batchnorm", "vector", False, True, "inference batchnorm; foldable into the preceding conv"),
    ("reduce", "vector", True, False, "attrs.fn: mean, sum, max over some dims"),
    ("pool", "vector", True, False, "attrs.fn: avg, max; kernel/stride"),
    ("divide", "vector", False, True, "the linear-attention divisor division (a shift when log2-quantized)"),
    ("log2", "vector", False, True, "log2 quantization of a tensor (e.g. the divisor)"),
    ("requant", "requant", False, True, "re-quantization of an accumulator to the next layer's bit width"),
    ("data_movement", "data_movement", False, True, "copies that move bytes: cat, pad, permute-with-copy, roll, ..."),
    ("other", "unmodelled", False, True, "an aten op with no lowering: kept (attrs.aten names it) and reported"),
):
    register_op_kind(_name, _cat, by_function=_fn, streamable=_stream, description=_desc)  # type: ignore[arg-type]
del _name, _cat, _fn, _stream, _desc
