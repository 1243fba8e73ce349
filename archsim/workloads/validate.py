"""The checks that make a :class:`~archsim.workloads.ir.Workload` trustworthy, run whenever one is built.

Traces and YAML workloads come from users, so nothing downstream may assume more than these checks give: typed,
bounded, finite values; every tensor an op names defined; ops in topological order, each output written once (so
no cycles); for the built-in kinds, shapes that agree (a linear's input features equal its weight's, a conv's
channels divide by its groups, a matmul's inner dimensions agree, an eltwise's inputs broadcast to its output) and
a MAC count equal to what the shapes give; a typed ``meta``. Every failure is a one-line :class:`WorkloadError`
whose key names the op, tensor or meta key at fault (the caller adds the file). All checks are linear in the size
of the workload.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, TypeGuard

from archsim.errors import WorkloadError
from archsim.workloads.kinds import OP_KINDS
from archsim.workloads.macs import count_macs

if TYPE_CHECKING:
    from archsim.workloads.ir import Op, Tensor, Workload

#: Bounds on what a workload may describe: far above any real model, low enough that arithmetic on them is cheap.
MAX_DIM = 2**31
MAX_NUMEL = 2**40
MAX_BITS = 64
MAX_MACS = 2**62
MAX_RANK = 32
MAX_NAME = 1024
#: Deepest nesting of lists and mappings in an op's ``attrs`` or in ``meta``.
MAX_DEPTH = 32

#: Scale kinds of a quantized op's output (how its re-quantization is done).
SCALE_KINDS: frozenset[str] = frozenset({"float", "pot", "log2", "none"})

#: The op kinds archsim itself defines (see :mod:`archsim.workloads.kinds`): the ones whose shapes are checked here.
BUILTIN_KINDS = frozenset({
    "conv2d", "linear", "matmul", "eltwise", "activation", "softmax", "layernorm", "batchnorm", "reduce", "pool",
    "divide", "log2", "requant", "data_movement", "other",
})

#: The keys ``meta.quant`` must have (readers print ``method W<w_bits>A<a_bits>``).
QUANT_KEYS = ("method", "w_bits", "a_bits")


def label(name: Any) -> str:
    """``name`` as it appears in an error key: a long name is cut short so the error stays one short line."""
    text = str(name)
    return text if len(text) <= 80 else text[:77] + "..."


def check_name(name: Any, what: str, key: str) -> str:
    """``name`` if it is a non-empty string of at most :data:`MAX_NAME` characters, else a WorkloadError."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise WorkloadError(f"{what} name must be a string of 1..{MAX_NAME} characters, got {short(name)}", key=key)
    return name


def is_int(value: Any) -> TypeGuard[int]:
    """True for a Python int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_workload(w: "Workload") -> None:
    """Check ``w`` whole; raise WorkloadError naming the op, tensor or meta key at fault."""
    check_name(w.name, "workload", "name")
    check_meta(w.meta)
    if not isinstance(w.tensors, Mapping):
        raise WorkloadError("tensors must be a mapping of name to Tensor", key="tensors")
    for i, (name, t) in enumerate(w.tensors.items()):
        check_tensor(name, t, f"tensors[{i}] ({label(name)})")
    if not w.ops:
        raise WorkloadError("the workload has no ops", key="ops")
    keys = [f"ops[{i}] ({label(op.name)})" for i, op in enumerate(w.ops)]
    for op, key in zip(w.ops, keys):
        _check_op_fields(op, key)
    written: set[str] = set()
    names: set[str] = set()
    produced = {op.output for op in w.ops}
    for op, key in zip(w.ops, keys):
        if op.name in names:
            raise WorkloadError("duplicate op name", key=key)
        names.add(op.name)
        for field, refs in (("inputs", op.inputs), ("weights", op.weights), ("output", (op.output,))):
            for ref in refs:
                if ref not in w.tensors:
                    raise WorkloadError(f"names unknown tensor {short(ref)}", key=f"{key}.{field}")
        for ref in op.inputs:
            if ref in produced and ref not in written:
                raise WorkloadError(f"reads {short(ref)} before the op that writes it (ops must be in topological "
                                    "order, without cycles)", key=f"{key}.inputs")
        for ref in op.weights:
            if not w.tensors[ref].is_weight:
                raise WorkloadError(f"weight {short(ref)} is not a weight tensor (is_weight is false)",
                                    key=f"{key}.weights")
        if op.output in written:
            raise WorkloadError(f"tensor {short(op.output)} is written by more than one op", key=f"{key}.output")
        if w.tensors[op.output].is_weight:
            raise WorkloadError(f"writes weight tensor {short(op.output)}", key=f"{key}.output")
        written.add(op.output)
        _check_shapes(op, w.tensors, key)


def check_tensor(name: str, t: "Tensor", key: str) -> None:
    """Types and bounds of one tensor registered as ``name``; errors name ``key``."""
    check_name(t.name, "tensor", key)
    if name != t.name:
        raise WorkloadError(f"tensor registered as {short(name)} is named {short(t.name)}", key=key)
    check_shape(t.shape, f"{key}.shape")
    if not is_int(t.bits) or not 1 <= t.bits <= MAX_BITS:
        raise WorkloadError(f"bits must be an integer in 1..{MAX_BITS}, got {short(t.bits)}", key=f"{key}.bits")
    if not isinstance(t.is_weight, bool):
        raise WorkloadError(f"is_weight must be true or false, got {short(t.is_weight)}", key=f"{key}.is_weight")


def check_shape(shape: Any, key: str) -> tuple[int, ...]:
    """``shape`` as a tuple if it is a sequence of positive integers within the bounds, else a WorkloadError."""
    if not isinstance(shape, (tuple, list)):
        raise WorkloadError(f"shape must be a list of integers, got {short(shape)}", key=key)
    if len(shape) > MAX_RANK:
        raise WorkloadError(f"shape has {len(shape)} dimensions (at most {MAX_RANK})", key=key)
    for s in shape:
        if not is_int(s):
            raise WorkloadError(f"shape must hold integers, got {short(s)} in {short(shape)}", key=key)
        if not 1 <= s <= MAX_DIM:
            raise WorkloadError(f"every dimension must be in 1..2^31, got {s} in {short(shape)}", key=key)
    if math.prod(shape) > MAX_NUMEL:
        raise WorkloadError(f"shape {short(shape)} has more than 2^40 elements", key=key)
    return tuple(shape)


def check_meta(meta: Any) -> None:
    """``meta`` is a mapping of JSON values; the keys readers use have their types."""
    if not isinstance(meta, Mapping):
        raise WorkloadError(f"meta must be a mapping, got {type(meta).__name__}", key="meta")
    check_value(meta, "meta")
    if "batch" in meta and (not is_int(meta["batch"]) or not 1 <= meta["batch"] <= MAX_DIM):
        raise WorkloadError(f"must be a positive integer, got {short(meta['batch'])}", key="meta.batch")
    res = meta.get("resolution")  # None (not an image model), a side, or [height, width]
    sides = res if isinstance(res, (list, tuple)) else [res]
    if res is not None and not (sides and all(is_int(s) and 1 <= s <= MAX_DIM for s in sides)):
        raise WorkloadError(f"must be a positive integer or [height, width], got {short(res)}", key="meta.resolution")
    for k in ("act_bits", "weight_bits", "bias_bits"):
        if k in meta and (not is_int(meta[k]) or not 1 <= meta[k] <= MAX_BITS):
            raise WorkloadError(f"must be an integer in 1..{MAX_BITS}, got {short(meta[k])}", key=f"meta.{k}")
    if "folded_ops" in meta and (not is_int(meta["folded_ops"]) or meta["folded_ops"] < 0):
        raise WorkloadError(f"must be a non-negative integer, got {short(meta['folded_ops'])}",
                            key="meta.folded_ops")
    for k in ("model", "source", "scale_kind"):
        if k in meta and not isinstance(meta[k], str):
            raise WorkloadError(f"must be a string, got {short(meta[k])}", key=f"meta.{k}")
    quant = meta.get("quant")
    if quant is None:
        return
    if not isinstance(quant, Mapping):
        raise WorkloadError(f"must be a mapping with {', '.join(QUANT_KEYS)}, got {short(quant)}", key="meta.quant")
    missing = [k for k in QUANT_KEYS if k not in quant]
    if missing:
        raise WorkloadError(f"lacks {', '.join(missing)}", key="meta.quant")
    if not isinstance(quant["method"], str) or not quant["method"]:
        raise WorkloadError(f"must be a non-empty string, got {short(quant['method'])}", key="meta.quant.method")
    for k in ("w_bits", "a_bits"):
        if not is_int(quant[k]) or not 1 <= quant[k] <= MAX_BITS:
            raise WorkloadError(f"must be an integer in 1..{MAX_BITS}, got {short(quant[k])}", key=f"meta.quant.{k}")


def check_value(value: Any, key: str, depth: int = 0) -> None:
    """``value`` is JSON data: strings, finite numbers, booleans, None, lists/tuples, mappings with string keys."""
    if depth > MAX_DEPTH:
        raise WorkloadError(f"nested more than {MAX_DEPTH} levels deep", key=label(key))
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise WorkloadError(f"numbers must be finite, got {short(value)}", key=key)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_value(v, f"{key}[{i}]", depth + 1)
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise WorkloadError(f"keys must be strings, got {short(k)}", key=key)
            check_value(v, f"{key}.{k}", depth + 1)
        return
    raise WorkloadError(f"unsupported value of type {type(value).__name__}", key=key)


def _check_op_fields(op: "Op", key: str) -> None:
    """Types of one op's fields, its kind and scale kind, and its attributes."""
    check_name(op.name, "op", key)
    if not isinstance(op.kind, str) or op.kind not in OP_KINDS:
        raise WorkloadError(f"unknown op kind {short(op.kind)} (known: {', '.join(OP_KINDS.names())})",
                            key=f"{key}.kind")
    for field in ("inputs", "weights"):
        refs = getattr(op, field)
        if not isinstance(refs, tuple) or not all(isinstance(r, str) for r in refs):
            raise WorkloadError(f"{field} must be a list of tensor names, got {short(refs)}", key=f"{key}.{field}")
    if not isinstance(op.output, str):
        raise WorkloadError(f"output must be a tensor name, got {short(op.output)}", key=f"{key}.output")
    if not isinstance(op.scale_kind, str) or op.scale_kind not in SCALE_KINDS:
        raise WorkloadError(f"unknown scale_kind {short(op.scale_kind)} (known: {', '.join(sorted(SCALE_KINDS))})",
                            key=f"{key}.scale_kind")
    if not is_int(op.macs) or not 0 <= op.macs <= MAX_MACS:
        raise WorkloadError(f"macs must be an integer in 0..2^62, got {short(op.macs)}", key=f"{key}.macs")
    for field in ("scope", "source"):
        if not isinstance(getattr(op, field), str):
            raise WorkloadError(f"{field} must be a string", key=f"{key}.{field}")
    if not isinstance(op.attrs, Mapping):
        raise WorkloadError(f"attrs must be a mapping, got {type(op.attrs).__name__}", key=f"{key}.attrs")
    check_value(op.attrs, f"{key}.attrs")
    if "fn" in op.attrs and not isinstance(op.attrs["fn"], str):
        raise WorkloadError(f"fn must be a string, got {short(op.attrs['fn'])}", key=f"{key}.attrs.fn")
    shapes = op.attrs.get("in_shapes")
    if shapes is not None:
        if not isinstance(shapes, (list, tuple)) or len(shapes) > len(op.inputs):
            raise WorkloadError(f"in_shapes must list at most one shape per input ({len(op.inputs)})",
                                key=f"{key}.attrs.in_shapes")
        for j, s in enumerate(shapes):
            check_shape(s, f"{key}.attrs.in_shapes[{j}]")


# ---- shapes of the built-in kinds --------------------------------------------------------------------------------
def _check_shapes(op: "Op", tensors: Mapping[str, "Tensor"], key: str) -> None:
    """Shape agreement and MAC count of an op of a built-in kind (a plugin's own geometry is its own business)."""
    check = _SHAPE_CHECKS.get(op.kind)
    kind = OP_KINDS.find(op.kind)
    if kind is None or kind.geometry is not None or op.kind not in BUILTIN_KINDS:
        return
    if kind.category != "mac" and op.macs:
        raise WorkloadError(f"a {op.kind} op does no multiply-accumulates, but says {op.macs}", key=f"{key}.macs")
    if check is None:
        return
    check(op, tensors, key)
    if op.kind in _MAC_CHECKED:
        first_w = tensors[op.weights[0]].shape if op.weights else None
        ins = [op.input_shape(i, tensors) for i in range(len(op.inputs))]
        expected = count_macs(op.kind, ins, first_w, tensors[op.output].shape)
        if op.macs != expected:
            raise WorkloadError(f"says {op.macs} MACs but its shapes give {expected}", key=f"{key}.macs")


def _conv2d(op: "Op", tensors: Mapping[str, "Tensor"], key: str) -> None:
    if len(op.inputs) < 1 or not op.weights:
        raise WorkloadError("conv2d needs an input and a weight", key=key)
    x, w, out = op.input_shape(0, tensors), tensors[op.weights[0]].shape, tensors[op.output].shape
    for what, shape in (("input", x), ("weight (Cout, Cin/groups, kh, kw)", w), ("output", out)):
        if len(shape) != 4:
            raise WorkloadError(f"conv2d {what} must be 4-d, got {list(shape)}", key=key)
    groups = op.attrs.get("groups", 1)
    if not is_int(groups) or groups < 1:
        raise WorkloadError(f"groups must be an integer >= 1, got {short(groups)}", key=f"{key}.attrs.groups")
    for name, low in (("kernel", 1), ("stride", 1), ("dilation", 1), ("padding", 0)):
        value = op.attrs.get(name)
        if value is None:
            continue
        pair = (value, value) if is_int(value) else tuple(value) if isinstance(value, (list, tuple)) else ()
        if len(pair) == 1:
            pair = (pair[0], pair[0])
        if len(pair) != 2 or not all(is_int(v) and low <= v <= MAX_DIM for v in pair):
            raise WorkloadError(f"{name} must be an integer >= {low} or a list of two, got {short(value)}",
                                key=f"{key}.attrs.{name}")
        if name == "kernel" and pair != tuple(w[2:]):
            raise WorkloadError(f"kernel {list(pair)} differs from the weight's {list(w[2:])}",
                                key=f"{key}.attrs.kernel")
    cin, cout = x[1], out[1]
    if cin % groups or cout % groups:
        raise WorkloadError(f"channels (in {cin}, out {cout}) are not divisible by groups {groups}", key=key)
    if w[1] * groups != cin:
        raise WorkloadError(f"input has {cin} channels but the weight {list(w)} with groups {groups} expects "
                            f"{w[1] * groups}", key=key)
    if w[0] != cout:
        raise WorkloadError(f"output has {cout} channels but the weight {list(w)} has {w[0]}", key=key)
    if x[0] != out[0]:
        raise WorkloadError(f"input batch {x[0]} differs from output batch {out[0]}", key=key)


def _linear(op: "Op", tensors: Mapping[str, "Tensor"], key: str) -> None:
    if len(op.inputs) < 1 or not op.weights:
        raise WorkloadError("linear needs an input and a weight", key=key)
    x, w, out = op.input_shape(0, tensors), tensors[op.weights[0]].shape, tensors[op.output].shape
    if len(w) != 2:
        raise WorkloadError(f"linear weight must be 2-d (out_features, in_features), got {list(w)}", key=key)
    if not x or not out:
        raise WorkloadError("linear input and output need at least one dimension", key=key)
    if x[-1] != w[1]:
        raise WorkloadError(f"input {list(x)} has {x[-1]} features but the weight {list(w)} takes {w[1]}", key=key)
    if out[-1] != w[0]:
        raise WorkloadError(f"output {list(out)} has {out[-1]} features but the weight {list(w)} gives {w[0]}",
                            key=key)
    if math.prod(x[:-1]) != math.prod(out[:-1]):
        raise WorkloadError(f"input {list(x)} and output {list(out)} have different numbers of rows", key=key)


def _matmul(op: "Op", tensors: Mapping[str, "Tensor"], key: str) -> None:
    if len(op.inputs) < 2:
        raise WorkloadError("matmul needs two inputs", key=key)
    a, b = op.input_shape(0, tensors), op.input_shape(1, tensors)
    if not a or not b or a[-1] != (b[0] if len(b) == 1 else b[-2]):
        raise WorkloadError(f"inner dimensions of {list(a)} @ {list(b)} disagree", key=key)
    out = tensors[op.output].shape
    if len(b) >= 2 and (not out or out[-1] != b[-1]):
        raise WorkloadError(f"output {list(out)} does not end in {b[-1]} as {list(a)} @ {list(b)} does", key=key)


def _eltwise(op: "Op", tensors: Mapping[str, "Tensor"], key: str) -> None:
    out = tensors[op.output].shape
    # inputs only: a trace names a weight by the parameter it views (a sliced or permuted bias), not the view
    for shape in (op.input_shape(i, tensors) for i in range(len(op.inputs))):
        if not _broadcasts(shape, out):
            raise WorkloadError(f"operand {list(shape)} does not broadcast to the output {list(out)}", key=key)


def _broadcasts(shape: Sequence[int], out: Sequence[int]) -> bool:
    """True if ``shape`` broadcasts to ``out`` (NumPy rules, right-aligned)."""
    if len(shape) > len(out):
        return all(s == 1 for s in shape[: len(shape) - len(out)]) and _broadcasts(shape[len(shape) - len(out):], out)
    return all(s in (1, o) for s, o in zip(reversed(shape), reversed(out)))


def short(value: Any) -> str:
    """``repr(value)``, cut short so an error stays one short line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_SHAPE_CHECKS: dict[str, Callable[["Op", Mapping[str, "Tensor"], str], None]] = {
    "conv2d": _conv2d, "linear": _linear, "matmul": _matmul, "eltwise": _eltwise,
}
_MAC_CHECKED = frozenset({"conv2d", "linear", "matmul"})
