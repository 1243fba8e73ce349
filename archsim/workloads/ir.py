"""Workload IR: the op trace the simulator consumes.

A :class:`Workload` is a topologically ordered list of :class:`Op` over named :class:`Tensor` s. It is what trace
extraction produces from a PyTorch model, what a hand-written YAML workload describes, and what is cached on disk as
versioned JSON. It never imports torch.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping

from archsim.errors import WorkloadError
from archsim.workloads.jsonfile import read_json
from archsim.workloads.validate import SCALE_KINDS, check_name, check_shape, check_workload, label, short

SCHEMA_VERSION = 1

#: The built-in op kinds whose work is multiply-accumulates (the quantizer's specs know these three). Mapping asks
#: :func:`archsim.workloads.kinds.is_mac`, which also knows kinds a plugin registered.
MAC_KINDS: frozenset[str] = frozenset({"conv2d", "linear", "matmul"})

__all__ = ["MAC_KINDS", "SCALE_KINDS", "SCHEMA_VERSION", "Op", "Tensor", "Workload", "make_workload", "validate"]


@dataclass(frozen=True, slots=True)
class Tensor:
    """A named tensor: shape, element bit width, and whether it is a weight (parameter) read from DRAM."""

    name: str
    shape: tuple[int, ...]
    bits: int = 8
    is_weight: bool = False

    @property
    def numel(self) -> int:
        return math.prod(self.shape) if self.shape else 1

    @property
    def nbytes(self) -> int:
        """Storage size in bytes, packing sub-byte elements (4-bit values take half a byte)."""
        return (self.numel * self.bits + 7) // 8

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "bits": self.bits, "is_weight": self.is_weight}


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of the trace.

    ``inputs`` are activation tensors (in argument order), ``weights`` parameter tensors (weight first, then bias),
    ``output`` the tensor it writes. ``macs`` counts multiply-accumulates (0 for non-MAC ops); ``scope`` is the
    module path it came from; ``source`` the aten op (or ``yaml``) that produced it.
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    output: str
    weights: tuple[str, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)
    macs: int = 0
    scope: str = ""
    scale_kind: str = "none"
    source: str = ""

    def input_shape(self, i: int, tensors: Mapping[str, "Tensor"]) -> tuple[int, ...]:
        """The shape the op actually reads from input ``i``.

        Views cost nothing, so an input is named by the tensor it views; ``attrs['in_shapes']`` records the view's
        shape (e.g. q, k and v are views of one qkv tensor) and takes precedence over the base tensor's shape."""
        shapes = self.attrs.get("in_shapes")
        if shapes is not None and i < len(shapes):
            return tuple(shapes[i])
        return tensors[self.inputs[i]].shape

    def input_bytes(self, i: int, tensors: Mapping[str, "Tensor"]) -> int:
        """Bytes the op reads from input ``i`` (its viewed shape at the tensor's bit width)."""
        numel = math.prod(self.input_shape(i, tensors))
        return (numel * tensors[self.inputs[i]].bits + 7) // 8

    @property
    def fn(self) -> str:
        """The function of an activation/eltwise/reduce/pool op ('' if none)."""
        return str(self.attrs.get("fn", ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "inputs": list(self.inputs),
            "weights": list(self.weights),
            "output": self.output,
            "attrs": _jsonable(dict(self.attrs)),
            "macs": self.macs,
            "scope": self.scope,
            "scale_kind": self.scale_kind,
            "source": self.source,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _tuplify(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Workload:
    """A validated, topologically ordered op trace with its tensors and provenance (``meta``)."""

    name: str
    tensors: Mapping[str, Tensor]
    ops: tuple[Op, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)

    # ---- graph queries -------------------------------------------------------------------------------------
    @cached_property
    def total_macs(self) -> int:
        """Multiply-accumulates of the whole workload (summed once, then cached: a size guard may ask often)."""
        return sum(op.macs for op in self.ops)

    def producers(self) -> dict[str, str]:
        """Tensor name -> name of the op that writes it."""
        return {op.output: op.name for op in self.ops}

    def consumers(self) -> dict[str, list[str]]:
        """Tensor name -> names of the ops that read it as an activation input, in trace order."""
        out: dict[str, list[str]] = {}
        for op in self.ops:
            for t in dict.fromkeys(op.inputs):
                out.setdefault(t, []).append(op.name)
        return out

    def graph_inputs(self) -> list[str]:
        """Activation tensors no op produces (the model's inputs, read from DRAM)."""
        produced = self.producers()
        seen: dict[str, None] = {}
        for op in self.ops:
            for t in op.inputs:
                if t not in produced:
                    seen[t] = None
        return list(seen)

    def graph_outputs(self) -> list[str]:
        """Tensors produced but never consumed (written back to DRAM)."""
        cons = self.consumers()
        return [op.output for op in self.ops if op.output not in cons]

    def op_kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.kind] = counts.get(op.kind, 0) + 1
        return dict(sorted(counts.items()))

    # ---- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "meta": _jsonable(dict(self.meta)),
            "tensors": [t.to_dict() for t in self.tensors.values()],
            "ops": [op.to_dict() for op in self.ops],
        }

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n")
        tmp.replace(path)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<workload>") -> "Workload":
        """The workload in ``data`` (parsed trace JSON), type-checked field by field and validated; a one-line
        WorkloadError naming ``source`` and the key at fault otherwise."""
        try:
            return _from_dict(cls, data)
        except WorkloadError as exc:
            raise WorkloadError(exc.detail, source=source, key=exc.key) from None

    @classmethod
    def load(cls, path: str | Path) -> "Workload":
        """Read a trace written by :meth:`save` (bounded, UTF-8, finite JSON; see :mod:`archsim.workloads.jsonfile`)."""
        return cls.from_dict(read_json(path), source=str(path))


def _field(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], key: str, default: Any = ...) -> Any:
    """``obj[name]`` if it has type ``kind`` (bool is not an int here), else a WorkloadError naming ``key.name``."""
    if name not in obj:
        if default is ...:
            raise WorkloadError("missing", key=f"{key}.{name}" if key else name)
        return default
    value = obj[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        raise WorkloadError(f"must be {names}, got {short(value)}", key=f"{key}.{name}" if key else name)
    return value


def _names(obj: Mapping[str, Any], name: str, key: str) -> tuple[str, ...]:
    refs = _field(obj, name, list, key, [])
    if not all(isinstance(r, str) for r in refs):
        raise WorkloadError("must be a list of tensor names", key=f"{key}.{name}")
    return tuple(refs)


def _from_dict(cls: type[Workload], data: Any) -> Workload:
    if not isinstance(data, Mapping):
        raise WorkloadError(f"expected a JSON object at the top level, got {type(data).__name__}")
    version = data.get("schema_version")
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise WorkloadError(f"unsupported schema_version {short(version)} (this archsim reads {SCHEMA_VERSION})",
                            key="schema_version")
    tensors: dict[str, Tensor] = {}
    for i, t in enumerate(_field(data, "tensors", list, "")):
        key = f"tensors[{i}]"
        if not isinstance(t, Mapping):
            raise WorkloadError("must be an object", key=key)
        name = check_name(_field(t, "name", str, key), "tensor", f"{key}.name")
        key = f"tensors[{i}] ({label(name)})"
        if name in tensors:
            raise WorkloadError("duplicate tensor name", key=key)
        tensors[name] = Tensor(name=name, shape=check_shape(_field(t, "shape", list, key), f"{key}.shape"),
                               bits=_field(t, "bits", int, key, 8), is_weight=_field(t, "is_weight", bool, key, False))
    ops = []
    for i, o in enumerate(_field(data, "ops", list, "")):
        key = f"ops[{i}]"
        if not isinstance(o, Mapping):
            raise WorkloadError("must be an object", key=key)
        key = f"ops[{i}] ({label(check_name(_field(o, 'name', str, key), 'op', f'{key}.name'))})"
        ops.append(Op(
            name=o["name"],
            kind=_field(o, "kind", str, key),
            inputs=_names(o, "inputs", key),
            weights=_names(o, "weights", key),
            output=_field(o, "output", str, key),
            attrs=_tuplify(_field(o, "attrs", dict, key, {})),
            macs=_field(o, "macs", int, key, 0),
            scope=_field(o, "scope", str, key, ""),
            scale_kind=_field(o, "scale_kind", str, key, "none"),
            source=_field(o, "source", str, key, ""),
        ))
    return cls(name=_field(data, "name", str, "", "workload"), tensors=tensors, ops=tuple(ops),
               meta=dict(_field(data, "meta", dict, "", {})))


_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "an object", bool: "true or false"}


def validate(w: Workload) -> None:
    """Check types, bounds, references, kinds, topological order, shapes and meta; raise WorkloadError naming the
    op, tensor or key (see :mod:`archsim.workloads.validate`)."""
    check_workload(w)


def make_workload(name: str, tensors: Iterable[Tensor], ops: Iterable[Op], meta: Mapping[str, Any] | None = None) -> Workload:
    """Build a Workload from iterables (tensors keyed by name, insertion order kept)."""
    return Workload(name=name, tensors={t.name: t for t in tensors}, ops=tuple(ops), meta=dict(meta or {}))
