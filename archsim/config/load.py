"""Load an architecture YAML into an :class:`ArchConfig`, with one-line errors naming the file and key path."""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Iterable, Mapping, NoReturn, Sequence, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from archsim.config.schema import MAX_SHOWN, ArchConfigRaw, AreaSpec, Buffer, Defaults, Dram, EngineBase, Noc, Quant
from archsim.config.schema import Mapping as MappingSpec
from archsim.config.schema import op_class_names, shown
from archsim.errors import ArchsimError, ConfigError, UsageError
from archsim.registry import ENGINE_KINDS, POLICIES
from archsim.workloads.yaml_format import FAST_LOADER, scan_yaml


@dataclass(frozen=True)
class ArchConfig:
    """A validated architecture: every section typed, engines by the config model of their registered kind."""

    name: str
    source: str
    clock_mhz: float
    defaults: Defaults
    quant: Quant | None
    dram: Dram
    buffers: Mapping[str, Buffer]
    noc: Noc
    engines: Mapping[str, EngineBase]
    mapping: MappingSpec
    description: str = ""
    area: AreaSpec = AreaSpec()  # per-unit areas of the area proxy (archsim.hardware.area)

    def buffer_for(self, what: str) -> str:
        """Name of the buffer that holds ``activation`` or ``weight`` tensors."""
        return next(name for name, b in self.buffers.items() if what in b.holds)

    def stream_buffer(self) -> str | None:
        """Name of the buffer that holds fused intermediates (auxiliary buffers between engines), if any."""
        return next((name for name, b in self.buffers.items() if "stream" in b.holds), None)

    def ns_to_cycles(self, ns: float) -> int:
        return int(-(-ns * self.clock_mhz // 1e3))


#: The C (libyaml) safe loader when PyYAML was built with it; the same documents, about 8x faster.
_FAST_LOADER = FAST_LOADER

#: Largest config (or ``--set`` value) read, in bytes: the shipped configs are under 12 KiB.
MAX_DOCUMENT_BYTES = 1 << 20
#: Deepest nesting of mappings and lists (the shipped configs nest 5 deep); deeper would exhaust the stack.
MAX_DEPTH = 64
#: Most values (scalars, mappings, lists) a document may hold, each alias counted as the values it repeats, so an
#: alias bomb (a list of aliases of lists of aliases ...) is refused before anything is built.
MAX_NODES = 100_000


def _part(p: object) -> str:
    """One key of a key path as printed: itself, or quoted and cut short when long or unprintable."""
    text = str(p)
    return text if len(text) <= MAX_SHOWN and text.isprintable() else shown(text)


def _key_path(parts: Sequence[object]) -> str:
    """Dotted key path; a very deep one shows its first keys and its last."""
    keys = [_part(p) for p in parts]
    return ".".join(keys if len(keys) <= 8 else [*keys[:6], "...", keys[-1]])


def _scan(text: str, source: str, error: type[ArchsimError] = ConfigError) -> None:
    """Refuse, naming the key path and the line, what would make loading unbounded or ambiguous (more than
    MAX_DOCUMENT_BYTES, nesting deeper than MAX_DEPTH, more than MAX_NODES values with aliases expanded, a key
    given twice in one mapping, an integer literal too long to convert): see
    :func:`archsim.workloads.yaml_format.scan_yaml`, which hand-written workloads share."""
    scan_yaml(text, source, error, max_bytes=MAX_DOCUMENT_BYTES, max_depth=MAX_DEPTH, max_values=MAX_NODES,
              key_path=_key_path)


def _parse(text: str, source: str) -> Any:
    """The config document as Python data, after :func:`_scan`; a syntax error is one line with its line and
    column."""
    _scan(text, source)
    try:
        return yaml.load(text, Loader=_FAST_LOADER)  # libyaml when present: a sweep loads a config per point
    except yaml.YAMLError:
        pass
    except ValueError as exc:  # a scalar Python cannot convert (the scan refuses the known ones)
        raise ConfigError(f"cannot read a value ({_one_line(str(exc), MAX_SHOWN)})", source=source) from None
    try:
        return yaml.safe_load(text)  # the pure-Python loader words its errors as the messages promise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"YAML syntax error at {where}{problem}", source=source) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (['a','b','c'], value parsed as YAML, bounded as a config is)."""
    if "=" not in text:
        raise UsageError(f"--set {shown(text)}: expected KEY=VALUE, e.g. mapping.pipeline.inter_layer=false")
    key, _, value = text.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise UsageError(f"--set {shown(text)}: empty key")
    if len(parts) > MAX_DEPTH:
        raise UsageError(f"--set {_key_path(parts)}: the key nests deeper than {MAX_DEPTH} levels")
    _scan(value, f"--set {_key_path(parts)}", UsageError)
    try:
        parsed = yaml.load(value, Loader=_FAST_LOADER) if value.strip() else ""
    except (yaml.YAMLError, ValueError):
        parsed = value
    return parts, parsed


def _apply_override(data: dict[str, Any], path: list[str], value: Any, source: str) -> None:
    node: Any = data
    for i, part in enumerate(path[:-1]):
        if not isinstance(node, dict):
            raise ConfigError(f"--set cannot descend into a {type(node).__name__}", source=source,
                              key=_key_path(path[: i + 1]))
        node = node.setdefault(part, {})
    if not isinstance(node, dict):
        raise ConfigError(f"--set cannot descend into a {type(node).__name__}", source=source,
                          key=_key_path(path[:-1]))
    node[path[-1]] = value


def _bound(value: object) -> str:
    """A range bound as printed: whole numbers without a decimal point (1073741824, not 1.07374e+09)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _describe(err: Mapping[str, Any], integer: bool = False) -> str:
    """Turn one pydantic error into a short phrase with the offending value (at most MAX_SHOWN characters of it).
    ``integer``: the key holds an integer (so a bound error says "an integer", whatever was written)."""
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    got = err.get("input")
    text = shown(got)
    noun = "an integer" if integer else "a number"
    if kind == "missing":
        return "missing required key"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        if isinstance(got, float) and not math.isfinite(got):
            return f"must be a finite number, got {text}"
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()), "")
        # a float key's lower bound above 0 (1e-06, one byte) reads as "positive" to a value <= 0
        nonpositive = isinstance(got, (int, float)) and not isinstance(got, bool) and got <= 0
        float_floor = kind == "greater_than_equal" and not integer and isinstance(bound, float) and bound > 0
        if kind == "greater_than" and bound == 0 or float_floor and nonpositive:
            return f"must be a positive {noun.split()[-1]}, got {text}"
        return f"must be {noun} {op} {_bound(bound)}, got {text}"
    if kind.startswith("int_"):
        return f"must be an integer, got {text}"
    if kind.startswith("float_"):
        return f"must be a number, got {text}"
    if kind == "finite_number":
        return f"must be a finite number, got {text}"
    if kind.startswith("bool_"):
        return f"must be true or false, got {text}"
    if kind.startswith("string_"):
        return f"must be a string, got {text}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping, got {type(got).__name__}"
    if kind in ("tuple_type", "list_type"):
        return f"must be a list, got {type(got).__name__}"
    if kind == "invalid_key":
        return f"keys must be strings, got {text}"
    if kind == "too_long":
        return f"may have at most {ctx.get('max_length')} entries, got {ctx.get('actual_length')}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}, got {text}"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return _one_line(msg)


def _one_line(detail: str, limit: int = 300) -> str:
    """A message from a validator as one line of bounded length (a plugin's validator may quote a whole value)."""
    flat = " ".join(detail.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _strip(tp: Any) -> Any:
    """``tp`` without Annotated metadata, and without None when it is optional."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _strip(members[0])
    return tp


def _holds_int(model: type[BaseModel], loc: Sequence[Any]) -> bool:
    """True when the key at ``loc`` (a pydantic error location) under ``model`` holds integers; False when it holds
    floats or cannot be told."""
    tp: Any = model
    for part in loc:
        tp = _strip(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return False
            tp = field.annotation
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        elif get_origin(tp) in (list, tuple):
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, UnionType):  # the location names the member: 'int', 'tuple[str, ...]'
            tp = next((a for a in get_args(tp) if str(part) in (getattr(a, "__name__", ""), str(a))), None)
            if tp is None:
                return False
        else:
            return False
    return _strip(tp) is int


def _raise_validation(exc: ValidationError, source: str, prefix: Sequence[str] = (),
                      model: type[BaseModel] | None = None) -> NoReturn:
    err = exc.errors()[0]
    loc = [*prefix, *(str(p) for p in err.get("loc", ()))]
    # union members show up as extra loc entries ('str', 'tuple[str, ...]'); drop them from the key path
    loc = [p for p in loc if "[" not in p and p not in ("str", "int", "float", "bool")]
    integer = model is not None and _holds_int(model, err.get("loc", ()))
    raise ConfigError(_describe(err, integer), source=source, key=_key_path(loc) or None)


def _read(p: Path, source: str) -> str:
    """The file's text, refusing files over MAX_DOCUMENT_BYTES before reading them whole."""
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_DOCUMENT_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("no such file", source=source) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML file", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read ({getattr(exc, 'strerror', None) or exc})", source=source) from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ConfigError(f"is larger than {MAX_DOCUMENT_BYTES} bytes (1 MiB), the most a config may be",
                          source=source)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read (not UTF-8: {exc.reason} at byte {exc.start})", source=source) from None


def _names(items: Iterable[object], limit: int = 12) -> str:
    """A list of names for a message: the first ``limit``, each cut short."""
    shown_items = [_part(x) for x in items]
    return ", ".join(shown_items[:limit] + (["..."] if len(shown_items) > limit else []))


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ArchConfig:
    """Read, override (``--set key=value``), validate; raise ConfigError naming file and key on any problem."""
    source = str(path)
    p = Path(path)
    data = _parse(_read(p, source), source)
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", source=source)
    for text_override in overrides:
        keys, value = parse_override(text_override)
        _apply_override(data, keys, value, source)

    try:
        raw = ArchConfigRaw.model_validate(data)
    except ValidationError as exc:
        _raise_validation(exc, source, model=ArchConfigRaw)

    engines: dict[str, EngineBase] = {}
    for name, spec in raw.engines.items():
        where = f"engines.{_part(name)}"
        if not isinstance(spec, dict):
            raise ConfigError(f"must be a mapping, got {type(spec).__name__}", source=source, key=where)
        type_name = spec.get("type")
        if type_name is None:
            raise ConfigError("missing required key", source=source, key=f"{where}.type")
        kind = ENGINE_KINDS.find(type_name) if isinstance(type_name, str) else None
        if kind is None:
            raise ConfigError(f"unknown engine type {shown(type_name)} (known: {', '.join(ENGINE_KINDS.names())})",
                              source=source, key=f"{where}.type")
        try:
            engines[name] = kind.config_model.model_validate(spec)
        except ValidationError as exc:
            _raise_validation(exc, source, prefix=("engines", name), model=kind.config_model)

    if raw.mapping.policy not in POLICIES:
        raise ConfigError(f"unknown mapping policy {shown(raw.mapping.policy)} (known: {', '.join(POLICIES.names())})",
                          source=source, key="mapping.policy")
    _check_semantics(raw, engines, source)
    return ArchConfig(name=raw.name or p.stem, source=source, clock_mhz=raw.clock_mhz, defaults=raw.defaults,
                      quant=raw.quant, dram=raw.dram, buffers=raw.buffers, noc=raw.noc, engines=engines,
                      mapping=raw.mapping, description=raw.description, area=raw.area)


def _check_semantics(raw: ArchConfigRaw, engines: Mapping[str, EngineBase], source: str) -> None:
    """Cross-field rules pydantic cannot see: references between sections."""
    for what in ("activation", "weight"):
        holders = [n for n, b in raw.buffers.items() if what in b.holds]
        if len(holders) != 1:
            found = _names(holders) or "none"
            raise ConfigError(f"exactly one buffer must hold {what} tensors (found: {found})", source=source, key="buffers")
    streams = [n for n, b in raw.buffers.items() if "stream" in b.holds]
    if len(streams) > 1:
        raise ConfigError(f"at most one buffer may hold stream tensors (found: {_names(streams)})", source=source,
                          key="buffers")
    known = op_class_names()
    for name, engine in engines.items():  # tables keyed by op class: the engine section comes before mapping
        for table in type(engine).op_class_tables:
            for cls in getattr(engine, table):
                _check_op_class(cls, known, source, f"engines.{_part(name)}.{table}.{_part(cls)}")
    _check_assign(raw.mapping.assign, engines, source, known)
    if raw.mapping.requant:
        if raw.mapping.assign.get("requant") is None:
            raise ConfigError(
                "mapping.requant is true but no engine is assigned to 'requant'", source=source, key="mapping.assign.requant"
            )


def _check_op_class(cls: str, known: frozenset[str], source: str, key: str) -> None:
    """``cls`` (a key of ``mapping.assign`` or of an engine's table by op class) is a class some op can answer to:
    a typo would silently never match."""
    if cls not in known:
        close = difflib.get_close_matches(cls.lower(), sorted(known), n=3)
        hint = f"did you mean {' or '.join(map(repr, close))}?" if close else "see docs/configuration.md"
        raise ConfigError(f"unknown op class {shown(cls)}: not an op kind, role class, function or integer form "
                          f"({hint})", source=source, key=key)


def _check_assign(assign: Mapping[str, str | tuple[str, ...]], engines: Mapping[str, EngineBase], source: str,
                  known: frozenset[str]) -> None:
    """Every key of ``mapping.assign`` is an op class some op can answer to (``known``), and every entry names known
    engines, each once, sharing the op only when they are MAC engines."""
    for cls, target in assign.items():
        key = f"mapping.assign.{_part(cls)}"
        _check_op_class(cls, known, source, key)
        names = (target,) if isinstance(target, str) else target
        if not names:
            raise ConfigError("must name at least one engine", source=source, key=key)
        for i, n in enumerate(names):
            if n not in engines:
                raise ConfigError(f"unknown engine {shown(n)} (engines: {_names(engines)})", source=source, key=key)
            if n in names[:i]:
                raise ConfigError(f"engine {shown(n)} is listed twice (an engine shares an op once)", source=source,
                                  key=key)
        if len(names) > 1 and not all(ENGINE_KINDS.get(engines[n].type).shares_work for n in names):
            raise ConfigError("only MAC engines can share one op", source=source, key=key)
