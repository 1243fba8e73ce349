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
``groups: 0``, is a one-line error naming the file and the op. The file is read within bounds before anything is
built (:func:`scan_yaml`, which architecture configs share): a key given twice, nesting past 64 levels, an alias bomb
or an integer literal of more than 100 digits is refused with its key path and line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from archsim.errors import ArchsimError, WorkloadError
from archsim.workloads.ir import Op, Tensor, Workload, make_workload
from archsim.workloads.jsonfile import MAX_BYTES, MAX_DEPTH, check_tree, read_text
from archsim.workloads.kinds import OP_KINDS
from archsim.workloads.macs import count_macs
from archsim.workloads.validate import MAX_BITS, short

Shape = list[StrictInt]
Bits = Annotated[StrictInt, Field(ge=1, le=MAX_BITS)]


# ---- bounded YAML reading (shared with archsim.config.load) ----------------------------------------------------

#: The C (libyaml) safe loader when PyYAML was built with it; the same documents, about 8x faster.
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Most values (scalars, mappings, lists) a YAML workload may hold, each alias counted as the values it repeats: a
#: hand-written workload needs about 20 per op, so this is some 10 000 ops; an alias bomb is refused unbuilt.
MAX_VALUES = 200_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
#: Longest integer literal read (Python refuses to convert ones over 4300 digits; no config key needs 20).
_MAX_DIGITS = 100
_RESOLVER = yaml.resolver.Resolver()
#: First characters an implicitly typed plain scalar (bool, int, float, null, ``<<`` ...) may start with; other plain
#: scalars are strings without asking the resolver (the common case: a sweep loads a config per point).
_TYPED_FIRST = frozenset(yaml.resolver.Resolver.yaml_implicit_resolvers)
_SCALARS = yaml.constructor.SafeConstructor()


def _key_path(parts: Sequence[object]) -> str:
    """Dotted key path, each key cut short; a very deep one shows its first keys and its last."""
    keys = [str(p) if len(str(p)) <= 60 and str(p).isprintable() else short(str(p)) for p in parts]
    return ".".join(keys if len(keys) <= 8 else [*keys[:6], "...", keys[-1]])


class _Frame:
    """A mapping or list open in the event stream: its key in the key path, its size, the keys it has had."""

    __slots__ = ("is_map", "anchor", "values", "levels", "keys", "key", "expect_key", "index")

    def __init__(self, is_map: bool, anchor: str | None) -> None:
        self.is_map, self.anchor = is_map, anchor
        self.values, self.levels = 1, 0  # values inside it (aliases expanded) and itself; levels below it
        self.keys: dict[Any, int] = {}  # key, as the loader constructs it -> its line
        self.key: object = None
        self.expect_key, self.index = True, 0

    def path_part(self) -> object:
        return self.key if self.is_map else self.index


def _tag(event: yaml.ScalarEvent) -> str:
    """The tag the loader gives a scalar."""
    if event.tag not in (None, "!"):
        return str(event.tag)
    if not event.implicit[0] or event.value[:1] not in _TYPED_FIRST:  # quoted, or plain and clearly a string
        return _STR_TAG
    return str(_RESOLVER.resolve(yaml.ScalarNode, event.value, event.implicit))


def _key_identity(event: yaml.ScalarEvent) -> Any:
    """A scalar key as the loader constructs it (``yes`` and ``true`` are one key); None for a ``<<`` merge."""
    tag = _tag(event)
    if tag == _STR_TAG:
        return event.value
    if tag == _MERGE_TAG:
        return None
    construct = yaml.SafeLoader.yaml_constructors.get(tag)
    try:
        return construct(_SCALARS, yaml.ScalarNode(tag, event.value)) if construct else (tag, event.value)
    except Exception:  # noqa: BLE001 - a key the constructor refuses: the loader words that error itself
        return (tag, event.value)


def scan_yaml(text: str, source: str, error: type[ArchsimError] = WorkloadError, *, max_bytes: int = MAX_BYTES,
              max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES,
              key_path: Callable[[Sequence[object]], str] | None = None) -> None:
    """Walk the document's YAML events (libyaml's parser: no recursion, nothing built) and refuse, naming the key
    path and the line, what would make loading unbounded or ambiguous: more than ``max_bytes`` characters; nesting
    deeper than ``max_depth`` (libyaml's composer recurses in C and crashes the process on a deep enough document,
    PyYAML's raises RecursionError); more than ``max_values`` values with aliases expanded (an alias bomb); a key
    given twice in one mapping (YAML keeps the last silently); an integer literal too long to convert. Syntax errors
    are left to the loader, which words them. Configs (archsim.config.load) and YAML workloads both read through
    it; ``key_path`` prints a key path (default: dotted, long keys cut short)."""
    key_path = key_path or _key_path
    if len(text) > max_bytes:
        mib = f" ({max_bytes / 2**20:g} MiB)" if max_bytes >= 2**20 else ""
        raise error(f"is {len(text)} characters long; at most {max_bytes}{mib} are read", source=source)
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels) of what it names
    stack: list[_Frame] = []
    top = _Frame(False, None)  # the document: its one item is the root value
    total = 0
    event: Any  # a yaml.Event, told apart by exact type below (isinstance chains cost a sweep time)

    def fail(detail: str, line: int, note: str = "") -> ArchsimError:
        path = [f.path_part() for f in stack if f.path_part() is not None]
        return error(f"{detail} at line {line + 1}{note}", source=source, key=key_path(path) or None)

    try:
        for event in yaml.parse(text, Loader=FAST_LOADER):
            cls = type(event)
            if cls is yaml.MappingEndEvent or cls is yaml.SequenceEndEvent:
                closed = stack.pop()
                values, levels = closed.values, closed.levels + 1
                if closed.anchor is not None:
                    anchors[closed.anchor] = values, levels
            elif cls is yaml.ScalarEvent or cls is yaml.AliasEvent or cls is yaml.MappingStartEvent or (
                    cls is yaml.SequenceStartEvent):
                parent = stack[-1] if stack else top
                if parent.is_map and parent.expect_key:  # this value is a key of the open mapping
                    if cls is yaml.ScalarEvent:
                        parent.key = event.value
                        line = event.start_mark.line if event.start_mark is not None else 0
                        plain_str = event.tag is None and (not event.implicit[0] or event.value[:1] not in _TYPED_FIRST)
                        ident = event.value if plain_str else _key_identity(event)
                        try:
                            first = parent.keys.get(ident) if ident is not None else None
                            if ident is not None and first is None:
                                parent.keys[ident] = line
                        except TypeError:  # an unhashable key: the loader refuses it
                            first = None
                        if first is not None:
                            raise fail("duplicate key", line, f" (first at line {first + 1}; YAML keeps only the last)")
                    else:
                        parent.key = "?"
                if cls is yaml.MappingStartEvent or cls is yaml.SequenceStartEvent:
                    total += 1
                    stack.append(_Frame(cls is yaml.MappingStartEvent, event.anchor))
                    if len(stack) > max_depth:
                        raise fail(f"nested deeper than {max_depth} levels", event.start_mark.line)
                    continue
                if cls is yaml.ScalarEvent:
                    values, levels = 1, 0
                    if len(event.value) > _MAX_DIGITS and _tag(event) == _INT_TAG:
                        raise fail(f"an integer of {len(event.value)} characters", event.start_mark.line)
                    if event.anchor is not None:
                        anchors[event.anchor] = 1, 0
                else:  # an alias: as many values and levels as what it names
                    values, levels = anchors.get(event.anchor or "", (1, 0))
                    if len(stack) + levels > max_depth:
                        raise fail(f"an alias nests values deeper than {max_depth} levels", event.start_mark.line)
                total += values
                if total > max_values:
                    raise fail(f"the document expands to more than {max_values} values (aliases counted in full)",
                               event.start_mark.line)
            else:
                continue
            parent = stack[-1] if stack else top  # a value is complete: count it in, move to the next key or item
            parent.values += values
            if levels > parent.levels:
                parent.levels = levels
            if parent.is_map:
                parent.expect_key = not parent.expect_key
            else:
                parent.index += 1
    except yaml.YAMLError:
        return


# ---- the workload format ----------------------------------------------------------------------------------------


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


def _load_for_message(text: str, source: str) -> Any:
    """Load with the pure-Python loader, which words a syntax error as the messages promise (line and column)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise WorkloadError(f"YAML syntax error{where}: {problem}", source=source) from None


def load_yaml_workload(path: str | Path, *, act_bits: int = 8, weight_bits: int = 8, bias_bits: int = 32) -> Workload:
    """Read a YAML workload; errors name the file and the key path (e.g. ``ops[2].kind``)."""
    source = str(path)
    text = read_text(path)
    scan_yaml(text, source)  # size, nesting, alias expansion and duplicate keys, before anything is built
    try:
        data = yaml.load(text, Loader=FAST_LOADER)
    except yaml.YAMLError:
        data = _load_for_message(text, source)
    except ValueError as exc:  # a scalar Python cannot convert (the scan refuses the known ones)
        raise WorkloadError(f"cannot read a value ({short(str(exc))})", source=source) from None
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
            raise WorkloadError(f"unknown op kind {short(o.kind)} (known: {', '.join(OP_KINDS.names())})", source=source, key=f"{key}.kind")
        for ref in o.inputs:
            if ref not in tensors or tensors[ref].is_weight:
                raise WorkloadError(f"input {short(ref)} is neither a graph input nor an earlier op", source=source, key=f"{key}.in")
        if o.name in tensors:
            raise WorkloadError(f"name {short(o.name)} is already used", source=source, key=f"{key}.name")
        for wname in o.weights:
            if wname in tensors or wname == o.name:
                raise WorkloadError(f"weight name {short(wname)} is already used", source=source, key=f"{key}.weights")
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
