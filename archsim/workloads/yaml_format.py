"""Hand-written YAML workloads: describe ops by kind and shapes, no torch needed.

Format (see docs/workloads.md)::

    name: mlp_block
    inputs: {x: [1, 197, 384]}            # graph inputs and their shapes
    ops:
      - name: fc1                         # the op's output tensor takes the op's name
        kind: linear
        in: [x]                           # op names or graph inputs
        weights: {fc1.weight: [1536, 384], fc1.bias: [1536]}
        out: [1, 197, 1536]
      - {name: act, kind: activation, fn: gelu, in: [fc1], out: [1, 197, 1536]}

Any other key of an op (kernel, stride, groups, fn, ...) becomes an attribute. MACs are computed from the shapes.
Shapes and bit widths are integers (``197.0`` is refused, not truncated), and the workload is validated like a trace
(:mod:`archsim.workloads.validate`): a linear whose input features differ from its weight's, or a conv with
``groups: 0``, is a one-line error naming the file and the op.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from archsim.errors import WorkloadError
from archsim.workloads.kinds import OP_KINDS
from archsim.workloads.ir import Op, Tensor, Workload, make_workload
from archsim.workloads.jsonfile import MAX_DEPTH, check_tree, read_text
from archsim.workloads.macs import count_macs
from archsim.workloads.validate import MAX_BITS

Shape = list[StrictInt]
Bits = Annotated[StrictInt, Field(ge=1, le=MAX_BITS)]


class _OpSpec(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    name: str
    kind: str
    inputs: list[str] = Field(alias="in")
    out: Shape
    weights: dict[str, Shape] = {}
    scale_kind: Literal["float", "pot", "log2", "none"] = "none"
    bits: Bits | None = None


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "workload"
    inputs: dict[str, Shape]
    ops: list[_OpSpec]
    act_bits: Bits | None = None
    weight_bits: Bits | None = None


def load_yaml_workload(path: str | Path, *, act_bits: int = 8, weight_bits: int = 8, bias_bits: int = 32) -> Workload:
    """Read a YAML workload; errors name the file and the key path (e.g. ``ops[2].kind``)."""
    source = str(path)
    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise WorkloadError(f"YAML syntax error{where}: {getattr(exc, 'problem', exc)}", source=source) from None
    except RecursionError:
        raise WorkloadError(f"nested more than {MAX_DEPTH} levels deep", source=source) from None
    if isinstance(data, (dict, list)):
        check_tree(data, source)
    try:
        spec = _Spec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        raise WorkloadError(str(err["msg"]).lower(), source=source, key=key or None) from None
    a_bits = act_bits if spec.act_bits is None else spec.act_bits
    w_bits = weight_bits if spec.weight_bits is None else spec.weight_bits
    tensors: dict[str, Tensor] = {n: Tensor(n, tuple(s), a_bits) for n, s in spec.inputs.items()}
    ops: list[Op] = []
    for i, o in enumerate(spec.ops):
        key = f"ops[{i}]"
        if o.kind not in OP_KINDS:
            raise WorkloadError(f"unknown op kind {o.kind!r} (known: {', '.join(OP_KINDS.names())})", source=source, key=f"{key}.kind")
        for ref in o.inputs:
            if ref not in tensors or tensors[ref].is_weight:
                raise WorkloadError(f"input {ref!r} is neither a graph input nor an earlier op", source=source, key=f"{key}.in")
        if o.name in tensors:
            raise WorkloadError(f"name {o.name!r} is already used", source=source, key=f"{key}.name")
        for wname in o.weights:
            if wname in tensors or wname == o.name:
                raise WorkloadError(f"weight name {wname!r} is already used", source=source, key=f"{key}.weights")
        for j, (wname, wshape) in enumerate(o.weights.items()):
            bits = w_bits if j == 0 else bias_bits
            tensors[wname] = Tensor(wname, tuple(wshape), bits, is_weight=True)
        tensors[o.name] = Tensor(o.name, tuple(o.out), a_bits if o.bits is None else o.bits)
        attrs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in (o.model_extra or {}).items()}
        first_w = tuple(next(iter(o.weights.values()))) if o.weights else None
        try:
            macs = count_macs(o.kind, [tensors[x].shape for x in o.inputs], first_w, tuple(o.out))
        except ValueError as exc:
            raise WorkloadError(str(exc), source=source, key=key) from None
        ops.append(Op(name=o.name, kind=o.kind, inputs=tuple(o.inputs), weights=tuple(o.weights), output=o.name,
                      attrs=attrs, macs=macs, scope=o.name, scale_kind=o.scale_kind, source="yaml"))
    meta = {"model": spec.name, "source": "yaml", "file": source, "batch": 1, "act_bits": a_bits, "weight_bits": w_bits}
    try:
        return make_workload(spec.name, tensors.values(), ops, meta)
    except WorkloadError as exc:
        raise WorkloadError(exc.detail, source=source, key=exc.key) from None
