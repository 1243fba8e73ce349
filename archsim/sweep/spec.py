"""A design-space sweep as written: the base config, the workload, the axes and how to search them.

A sweep file (YAML) validates into a frozen :class:`SweepSpec`; ``--grid KEY=V1,V2`` flags add axes to it. Every
problem is a one-line :class:`~archsim.errors.ConfigError` naming the sweep file and the key at fault, raised before
any point runs. An axis is a config key (dotted, as ``--set`` takes it: ``dram.bandwidth_gbps``) or one of the
workload axes ``model``, ``batch`` and ``resolution``; ``together:`` groups keys that change in step.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from archsim.errors import ConfigError, UsageError

#: Axis names that choose the workload, not a config key.
WORKLOAD_AXES = ("model", "batch", "resolution")
#: Metrics a search can minimise or maximise, as named in the results table.
OBJECTIVES = ("latency_ms", "energy_uj", "energy_uj_per_inference", "area_mm2", "edp", "dram_mb", "fps",
              "mac_utilization")
#: Objectives where more is better (the search maximises them).
MAXIMISE = frozenset({"fps", "mac_utilization"})
METHODS = ("grid", "random", "nsga2", "tpe")

Scalar = bool | int | float | str | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Model):
    """A numeric axis: ``low``..``high``; ``step`` makes it a grid, ``log`` samples it on a log scale. Integer
    bounds (and step) make an integer axis unless ``integer: false``."""

    low: int | float
    high: int | float
    step: int | float | None = Field(default=None, gt=0)
    log: bool = False
    integer: bool | None = None

    @property
    def is_integer(self) -> bool:
        if self.integer is not None:
            return self.integer
        return all(isinstance(v, int) for v in (self.low, self.high, self.step) if v is not None)

    @property
    def bounds(self) -> tuple[int | float, int | float]:
        """(low, high) as the axis's type."""
        return (int(self.low), int(self.high)) if self.is_integer else (float(self.low), float(self.high))

    def values(self) -> list[int | float]:
        """The grid values (``step`` needed): low, low + step, ... up to high."""
        if self.step is None:
            raise ValueError("a range needs step to be enumerated")
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        out = [self.low + i * self.step for i in range(count)]
        return [int(round(v)) for v in out] if self.is_integer else [round(float(v), 12) for v in out]


class WorkloadSpec(_Model):
    """Where the IR comes from: a zoo model (traced once per quantization setting), a saved trace or a YAML one."""

    model: str | None = None
    trace: str | None = None
    workload: str | None = None
    resolution: int | None = Field(default=None, ge=1)
    batch: int = Field(default=1, ge=1)
    checkpoint: str | None = None


class SearchSpec(_Model):
    """How points are chosen: the whole grid, or ``budget`` points by a seeded sampler (random, NSGA-II, TPE)."""

    method: Literal["grid", "random", "nsga2", "tpe"] = "grid"
    budget: int | None = Field(default=None, ge=1)
    population: int = Field(default=8, ge=2)  # points asked per generation (nsga2's population; the batch of others)
    seed: int = 0
    objectives: tuple[str, ...] = ("latency_ms", "energy_uj_per_inference", "area_mm2")

    @field_validator("objectives")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("give at least one objective")
        bad = [o for o in v if o not in OBJECTIVES]
        if bad:
            raise ValueError(f"unknown objective {bad[0]!r} (known: {', '.join(OBJECTIVES)})")
        if len(set(v)) != len(v):
            raise ValueError("objectives repeat")
        return v


class SweepFile(_Model):
    """The sweep file as written (paths relative to the file)."""

    name: str | None = None
    description: str = ""
    config: str
    workload: WorkloadSpec = WorkloadSpec()
    axes: dict[str, list[Any] | Range] = {}
    together: dict[str, dict[str, list[Any]]] = {}
    search: SearchSpec = SearchSpec()
    color: str | None = None


@dataclass(frozen=True)
class Axis:
    """One dimension of the space: its name and values; ``keys`` > 1 when a ``together:`` group sets several keys
    in step (``values`` are then tuples, one entry per key)."""

    name: str
    keys: tuple[str, ...]
    values: tuple[Any, ...] = ()
    range: Range | None = None

    @property
    def size(self) -> int | None:
        if self.values:
            return len(self.values)
        assert self.range is not None
        return len(self.range.values()) if self.range.step is not None else None

    def grid_values(self) -> tuple[Any, ...]:
        if self.values:
            return self.values
        assert self.range is not None
        return tuple(self.range.values())

    def assignments(self, value: Any) -> dict[str, Any]:
        """key -> value for one value of this axis."""
        if len(self.keys) == 1:
            return {self.keys[0]: value}
        return dict(zip(self.keys, value))


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: what the planner, the search and the table need."""

    name: str
    source: str  # the sweep file ('' for --grid flags only)
    config: Path
    workload: WorkloadSpec
    axes: tuple[Axis, ...]
    search: SearchSpec
    color: str | None = None
    description: str = ""
    extra_overrides: tuple[str, ...] = field(default=())  # --set on the command line: every point

    @property
    def keys(self) -> tuple[str, ...]:
        """Every swept key, in axis order (the table's value columns)."""
        return tuple(k for a in self.axes for k in a.keys)

    @property
    def grid_size(self) -> int | None:
        total = 1
        for a in self.axes:
            n = a.size
            if n is None:
                return None
            total *= n
        return total

    def fingerprint(self) -> str:
        """A hash of everything that decides the points and their results (the resume check)."""
        body = {
            "config": self.config.read_text() if self.config.exists() else str(self.config),
            "workload": self.workload.model_dump(), "search": self.search.model_dump(),
            "axes": [[a.name, list(a.keys), [_jsonable(v) for v in a.values],
                      a.range.model_dump() if a.range else None] for a in self.axes],
            "set": list(self.extra_overrides),
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _raise(exc: ValidationError, source: str) -> None:
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if not str(p).startswith(("list[", "Range", "function-"))]
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
    elif err.get("type") == "missing":
        msg = "missing required key"
    raise ConfigError(msg, source=source, key=".".join(loc) or None)


def parse_grid_flag(text: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2,...`` (or ``KEY=[V1, V2]`` in YAML flow) -> (key, values parsed as YAML)."""
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key or not rest.strip():
        raise UsageError(f"--grid {text!r}: expected KEY=V1,V2,... e.g. dram.bandwidth_gbps=6.4,12.8")
    if rest.strip().startswith("["):
        try:
            values = yaml.safe_load(rest)
        except yaml.YAMLError:
            raise UsageError(f"--grid {text!r}: the list is not valid YAML") from None
        if not isinstance(values, list):
            raise UsageError(f"--grid {text!r}: expected a list")
    else:
        try:
            values = [yaml.safe_load(v) if v.strip() else "" for v in rest.split(",")]
        except yaml.YAMLError:
            raise UsageError(f"--grid {text!r}: a value is not valid YAML") from None
    if not values:
        raise UsageError(f"--grid {text!r}: no values")
    return key, values


def _check_values(values: Sequence[Any], source: str, key: str) -> tuple[Any, ...]:
    if not values:
        raise ConfigError("an axis needs at least one value", source=source, key=key)
    seen: list[str] = []
    for v in values:
        text = json.dumps(_jsonable(v), sort_keys=True, default=str)
        if text in seen:
            raise ConfigError(f"value {v!r} is listed twice", source=source, key=key)
        seen.append(text)
    return tuple(values)


def _axis_from(name: str, raw: list[Any] | Range, source: str, where: str) -> Axis:
    from archsim.config.schema import ArchConfigRaw

    if not (name in WORKLOAD_AXES or "." in name or name in ArchConfigRaw.model_fields):
        raise ConfigError(f"not a config key or a workload axis ({', '.join(WORKLOAD_AXES)}); config keys are "
                          "dotted, e.g. dram.bandwidth_gbps", source=source, key=f"{where}.{name}")
    if isinstance(raw, Range):
        if raw.high < raw.low:
            raise ConfigError(f"high ({raw.high:g}) is below low ({raw.low:g})", source=source, key=f"{where}.{name}")
        if raw.log and raw.low <= 0:
            raise ConfigError("a log range needs low > 0", source=source, key=f"{where}.{name}")
        return Axis(name, (name,), range=raw)
    return Axis(name, (name,), _check_values(raw, source, f"{where}.{name}"))


def build_spec(data: Mapping[str, Any], source: str, base: Path, grid: Sequence[str] = (),
               overrides: Sequence[str] = ()) -> SweepSpec:
    """Validate a sweep mapping (``base``: the folder its relative paths start from) plus ``--grid`` flags."""
    try:
        raw = SweepFile.model_validate(data)
    except ValidationError as exc:
        _raise(exc, source)
    axes: list[Axis] = [_axis_from(k, v, source, "axes") for k, v in raw.axes.items()]
    for group, keys in raw.together.items():
        if len(keys) < 2:
            raise ConfigError("a together group needs two or more keys", source=source, key=f"together.{group}")
        lengths = {len(v) for v in keys.values()}
        if len(lengths) != 1:
            raise ConfigError("every key of a together group needs the same number of values", source=source,
                              key=f"together.{group}")
        for k in keys:
            _axis_from(k, [0], source, f"together.{group}")
        zipped = _check_values(list(zip(*keys.values())), source, f"together.{group}")
        axes.append(Axis(group, tuple(keys), zipped))
    for flag in grid:
        key, listed = parse_grid_flag(flag)
        axis = _axis_from(key, listed, "--grid", "axes")
        axes = [a for a in axes if a.name != key] + [axis]
    names = [k for a in axes for k in a.keys]
    dup = next((k for k in names if names.count(k) > 1), None)
    if dup is not None:
        raise ConfigError("swept twice (in axes and in a together group)", source=source, key=dup)
    if not axes:
        raise ConfigError("no axes: give axes: in the sweep file or --grid KEY=V1,V2", source=source, key="axes")
    search = raw.search
    if search.method == "grid":
        ungridded = [a.name for a in axes if a.size is None]
        if ungridded:
            raise ConfigError("a grid needs values or a range with step (or search.method: random, nsga2, tpe)",
                              source=source, key=f"axes.{ungridded[0]}")
    elif search.budget is None:
        raise ConfigError(f"search.method {search.method} needs a point budget", source=source, key="search.budget")
    wl = raw.workload
    given = [k for k in ("model", "trace", "workload") if getattr(wl, k)]
    model_axis = any(a.name == "model" for a in axes)
    if len(given) + model_axis != 1 and not (model_axis and given == ["model"]):
        raise ConfigError("give exactly one of workload.model, workload.trace, workload.workload (or a model axis)",
                          source=source, key="workload")
    if (wl.trace or wl.workload) and any(a.name in ("batch", "resolution") for a in axes):
        raise ConfigError("batch and resolution axes need a zoo model (workload.model)", source=source, key="axes")
    if raw.color is not None and raw.color not in names:
        raise ConfigError(f"must be a swept key (one of {', '.join(names)})", source=source, key="color")

    def resolve(p: str | None) -> str | None:
        return None if p is None else str((base / p).resolve()) if not Path(p).is_absolute() else p

    workload = wl.model_copy(update={"trace": resolve(wl.trace), "workload": resolve(wl.workload),
                                     "checkpoint": resolve(wl.checkpoint)})
    config = Path(resolve(raw.config) or raw.config)
    name = raw.name or (Path(source).stem if source.endswith((".yaml", ".yml")) else config.stem)
    return SweepSpec(name=name, source=source, config=config, workload=workload, axes=tuple(axes), search=search,
                     color=raw.color, description=raw.description, extra_overrides=tuple(overrides))


def load_sweep(path: str | Path | None, *, grid: Sequence[str] = (), config: str | None = None,
               model: str | None = None, trace: str | None = None, workload: str | None = None,
               overrides: Sequence[str] = ()) -> SweepSpec:
    """A sweep file (or none: ``--config`` and ``--grid`` flags alone), with command-line additions (a workload
    given here replaces the file's)."""
    data: dict[str, Any] = {}
    source = ""
    base = Path.cwd()
    if path is not None:
        source = str(path)
        p = Path(path)
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise ConfigError("no such file", source=source) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read ({getattr(exc, 'strerror', None) or exc})", source=source) from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
            raise ConfigError(f"YAML syntax error at {where}{getattr(exc, 'problem', None) or exc}",
                              source=source) from None
        if not isinstance(loaded, dict):
            raise ConfigError("expected a mapping at the top level", source=source)
        data = loaded
        base = p.resolve().parent
    if config is not None:
        data = {**data, "config": str(Path(config).resolve())}
    given = {k: v for k, v in (("model", model), ("trace", trace), ("workload", workload)) if v is not None}
    if len(given) > 1:
        raise UsageError("give at most one of --model, --trace and --workload")
    if given:
        kept = {k: v for k, v in dict(data.get("workload") or {}).items() if k not in ("model", "trace", "workload")}
        paths = {k: str(Path(v).resolve()) if k != "model" else v for k, v in given.items()}
        data = {**data, "workload": {**kept, **paths}}
    if "config" not in data:
        raise UsageError("archsim sweep: give a sweep file, or --config CONFIG.yaml with --grid KEY=V1,V2")
    return build_spec(data, source or "--grid", base, grid, overrides)


__all__ = ["Axis", "MAXIMISE", "METHODS", "OBJECTIVES", "Range", "SearchSpec", "SweepSpec", "WORKLOAD_AXES",
           "WorkloadSpec", "build_spec", "load_sweep", "parse_grid_flag"]
