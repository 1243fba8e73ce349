"""Workload IR: the op trace the simulator consumes.

A :class:`Workload` is a topologically ordered list of :class:`Op` over named :class:`Tensor` s. It is what trace
extraction produces from a PyTorch model, what a hand-written YAML workload describes, and what is cached on disk as
versioned JSON. It never imports torch.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from archsim.errors import WorkloadError
from archsim.workloads.kinds import OP_KINDS

SCHEMA_VERSION = 1

#: The built-in op kinds whose work is multiply-accumulates (the quantizer's specs know these three). Mapping asks
#: :func:`archsim.workloads.kinds.is_mac`, which also knows kinds a plugin registered.
MAC_KINDS: frozenset[str] = frozenset({"conv2d", "linear", "matmul"})

#: Scale kinds of a quantized op's output (how its re-quantization is done).
SCALE_KINDS: frozenset[str] = frozenset({"float", "pot", "log2", "none"})


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
    @property
    def total_macs(self) -> int:
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
    def from_dict(cls, data: Mapping[str, Any], source: str = "<workload>") -> "Workload":
        if not isinstance(data, Mapping):
            raise WorkloadError("expected a JSON object at the top level", source=source)
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise WorkloadError(
                f"unsupported schema_version {version!r} (this archsim reads {SCHEMA_VERSION})",
                source=source,
                key="schema_version",
            )
        try:
            tensors = {}
            for i, t in enumerate(data["tensors"]):
                tensors[t["name"]] = Tensor(
                    name=str(t["name"]),
                    shape=tuple(int(s) for s in t["shape"]),
                    bits=int(t.get("bits", 8)),
                    is_weight=bool(t.get("is_weight", False)),
                )
            ops = tuple(
                Op(
                    name=str(o["name"]),
                    kind=str(o["kind"]),
                    inputs=tuple(o.get("inputs", ())),
                    weights=tuple(o.get("weights", ())),
                    output=str(o["output"]),
                    attrs=_tuplify(dict(o.get("attrs", {}))),
                    macs=int(o.get("macs", 0)),
                    scope=str(o.get("scope", "")),
                    scale_kind=str(o.get("scale_kind", "none")),
                    source=str(o.get("source", "")),
                )
                for o in data["ops"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WorkloadError(f"malformed workload JSON ({exc.__class__.__name__}: {exc})", source=source) from None
        try:
            return cls(name=str(data.get("name", "workload")), tensors=tensors, ops=ops, meta=dict(data.get("meta", {})))
        except WorkloadError as exc:
            raise WorkloadError(exc.detail, source=source, key=exc.key) from None

    @classmethod
    def load(cls, path: str | Path) -> "Workload":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise WorkloadError(f"cannot read workload file ({exc.strerror})", source=str(path)) from None
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", source=str(path)) from None
        return cls.from_dict(data, source=str(path))


def validate(w: Workload) -> None:
    """Check names, references, kinds, bit widths and topological order; raise WorkloadError naming the op."""
    for name, t in w.tensors.items():
        if name != t.name:
            raise WorkloadError(f"tensor registered as {name!r} is named {t.name!r}", key=f"tensors.{name}")
        if not 1 <= t.bits <= 32:
            raise WorkloadError(f"bits must be in 1..32, got {t.bits}", key=f"tensors.{name}.bits")
        if any(s <= 0 for s in t.shape):
            raise WorkloadError(f"shape must be positive, got {list(t.shape)}", key=f"tensors.{name}.shape")
    written: set[str] = set()
    names: set[str] = set()
    produced = {op.output for op in w.ops}
    for i, op in enumerate(w.ops):
        key = f"ops[{i}] ({op.name})"
        if op.name in names:
            raise WorkloadError("duplicate op name", key=key)
        names.add(op.name)
        if op.kind not in OP_KINDS:
            raise WorkloadError(f"unknown op kind {op.kind!r} (known: {', '.join(OP_KINDS.names())})", key=f"{key}.kind")
        if op.scale_kind not in SCALE_KINDS:
            raise WorkloadError(f"unknown scale_kind {op.scale_kind!r}", key=f"{key}.scale_kind")
        if op.macs < 0:
            raise WorkloadError(f"macs must be >= 0, got {op.macs}", key=f"{key}.macs")
        for ref in (*op.inputs, *op.weights, op.output):
            if ref not in w.tensors:
                raise WorkloadError(f"refers to unknown tensor {ref!r}", key=key)
        for ref in op.inputs:
            if ref in produced and ref not in written:
                raise WorkloadError(f"reads {ref!r} before the op that writes it (ops must be in topological order)",
                                    key=key)
        if op.output in written:
            raise WorkloadError(f"tensor {op.output!r} is written by more than one op", key=key)
        if w.tensors[op.output].is_weight:
            raise WorkloadError(f"writes weight tensor {op.output!r}", key=key)
        written.add(op.output)


def make_workload(name: str, tensors: Iterable[Tensor], ops: Iterable[Op], meta: Mapping[str, Any] | None = None) -> Workload:
    """Build a Workload from iterables (tensors keyed by name, insertion order kept)."""
    return Workload(name=name, tensors={t.name: t for t in tensors}, ops=tuple(ops), meta=dict(meta or {}))
