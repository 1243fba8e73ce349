"""Load an architecture YAML into an :class:`ArchConfig`, with one-line errors naming the file and key path."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from pydantic import ValidationError

from archsim.config.schema import ArchConfigRaw, AreaSpec, Buffer, Defaults, Dram, EngineBase, Noc, Quant
from archsim.config.schema import Mapping as MappingSpec
from archsim.errors import ConfigError, UsageError
from archsim.registry import ENGINE_KINDS, POLICIES


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
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (['a','b','c'], value parsed as YAML)."""
    if "=" not in text:
        raise UsageError(f"--set {text!r}: expected KEY=VALUE, e.g. mapping.pipeline.inter_layer=false")
    key, _, value = text.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise UsageError(f"--set {text!r}: empty key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return parts, parsed


def _apply_override(data: dict[str, Any], path: list[str], value: Any, source: str) -> None:
    node: Any = data
    for i, part in enumerate(path[:-1]):
        if not isinstance(node, dict):
            raise ConfigError(f"--set cannot descend into a {type(node).__name__}", source=source, key=".".join(path[: i + 1]))
        node = node.setdefault(part, {})
    if not isinstance(node, dict):
        raise ConfigError(f"--set cannot descend into a {type(node).__name__}", source=source, key=".".join(path[:-1]))
    node[path[-1]] = value


def _describe(err: Mapping[str, Any]) -> str:
    """Turn one pydantic error into a short phrase with the offending value."""
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    got = err.get("input")
    shown = repr(got) if isinstance(got, str) else got
    if kind == "missing":
        return "missing required key"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()), "")
        noun = "an integer" if isinstance(got, int) and not isinstance(got, bool) else "a number"
        if isinstance(bound, float):  # a float key (its bound is a float): a number, whatever was written
            noun = "a number"
        if kind == "greater_than" and bound == 0:
            return f"must be a positive {noun.split()[-1]}, got {shown}"
        limit = f"{bound:g}" if isinstance(bound, float) else bound
        return f"must be {noun} {op} {limit}, got {shown}"
    if kind.startswith("int_"):
        return f"must be an integer, got {shown}"
    if kind.startswith("float_"):
        return f"must be a number, got {shown}"
    if kind == "finite_number":
        return f"must be a finite number, got {shown}"
    if kind.startswith("bool_"):
        return f"must be true or false, got {shown}"
    if kind.startswith("string_"):
        return f"must be a string, got {shown}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping, got {type(got).__name__}"
    if kind in ("tuple_type", "list_type"):
        return f"must be a list, got {type(got).__name__}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}, got {shown}"
    msg = str(err.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")


def _raise_validation(exc: ValidationError, source: str, prefix: Sequence[str] = ()) -> None:
    err = exc.errors()[0]
    loc = [*prefix, *(str(p) for p in err.get("loc", ()))]
    # union members show up as extra loc entries ('str', 'tuple[str, ...]'); drop them from the key path
    loc = [p for p in loc if "[" not in p and p not in ("str", "int", "float", "bool")]
    raise ConfigError(_describe(err), source=source, key=".".join(loc) or None)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ArchConfig:
    """Read, override (``--set key=value``), validate; raise ConfigError naming file and key on any problem."""
    source = str(path)
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError("no such file", source=source) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML file", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read ({getattr(exc, 'strerror', None) or exc})", source=source) from None
    try:
        data = yaml.load(text, Loader=_FAST_LOADER)  # libyaml when present: a sweep loads a config per point
    except yaml.YAMLError:
        data = None
    try:
        if data is None:
            data = yaml.safe_load(text)  # the pure-Python loader words its errors as the messages promise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"YAML syntax error at {where}{problem}", source=source) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", source=source)
    for text_override in overrides:
        keys, value = parse_override(text_override)
        _apply_override(data, keys, value, source)

    try:
        raw = ArchConfigRaw.model_validate(data)
    except ValidationError as exc:
        _raise_validation(exc, source)

    engines: dict[str, EngineBase] = {}
    for name, spec in raw.engines.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"must be a mapping, got {type(spec).__name__}", source=source, key=f"engines.{name}")
        type_name = spec.get("type")
        if type_name is None:
            raise ConfigError("missing required key", source=source, key=f"engines.{name}.type")
        kind = ENGINE_KINDS.find(str(type_name))
        if kind is None:
            raise ConfigError(
                f"unknown engine type {type_name!r} (known: {', '.join(ENGINE_KINDS.names())})",
                source=source,
                key=f"engines.{name}.type",
            )
        try:
            engines[name] = kind.config_model.model_validate(spec)
        except ValidationError as exc:
            _raise_validation(exc, source, prefix=("engines", name))

    if raw.mapping.policy not in POLICIES:
        raise ConfigError(f"unknown mapping policy {raw.mapping.policy!r} (known: {', '.join(POLICIES.names())})",
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
            found = ", ".join(holders) or "none"
            raise ConfigError(f"exactly one buffer must hold {what} tensors (found: {found})", source=source, key="buffers")
    streams = [n for n, b in raw.buffers.items() if "stream" in b.holds]
    if len(streams) > 1:
        raise ConfigError(f"at most one buffer may hold stream tensors (found: {', '.join(streams)})", source=source,
                          key="buffers")
    for cls, target in raw.mapping.assign.items():
        names = (target,) if isinstance(target, str) else target
        if not names:
            raise ConfigError("must name at least one engine", source=source, key=f"mapping.assign.{cls}")
        for n in names:
            if n not in engines:
                raise ConfigError(
                    f"unknown engine {n!r} (engines: {', '.join(engines)})", source=source, key=f"mapping.assign.{cls}"
                )
        if len(names) > 1 and not all(ENGINE_KINDS.get(engines[n].type).shares_work for n in names):
            raise ConfigError("only MAC engines can share one op", source=source, key=f"mapping.assign.{cls}")
    if raw.mapping.requant:
        if raw.mapping.assign.get("requant") is None:
            raise ConfigError(
                "mapping.requant is true but no engine is assigned to 'requant'", source=source, key="mapping.assign.requant"
            )
