"""From points of the space to runnable tasks: each point's config (the base config with the point's overrides,
validated on the client) and the key of the workload it runs (one trace per model and quantization setting).

Torch-free: the workloads themselves are made by :mod:`archsim.sweep.workloads`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from archsim.config import load_config
from archsim.config.load import ArchConfig
from archsim.errors import ArchsimError, ConfigError
from archsim.sweep.spec import WORKLOAD_AXES, Axis, SweepSpec


@dataclass(frozen=True)
class Point:
    """One point of the space: an index (its place in the enumeration or the search) and a value per key."""

    index: int
    assignments: tuple[tuple[str, Any], ...]  # (key, value) in the spec's key order

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.assignments)

    @property
    def id(self) -> str:
        return point_id(self.values)


@dataclass(frozen=True)
class Task:
    """What a worker needs for one point: the validated config and which workload to run it on."""

    index: int
    id: str
    config: ArchConfig
    workload_key: str


def canonical(value: Any) -> str:
    """A value as canonical JSON (tuples as lists), the form ids and table cells use."""
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def point_id(values: Mapping[str, Any]) -> str:
    """A stable id for a set of key values: the same values give the same id in every run."""
    return hashlib.sha256(canonical(sorted(values.items())).encode()).hexdigest()[:12]


def point_from(spec: SweepSpec, index: int, choice: Mapping[str, Any]) -> Point:
    """The point that takes, for each axis, the value ``choice[axis.name]``."""
    pairs: list[tuple[str, Any]] = []
    for axis in spec.axes:
        pairs.extend(axis.assignments(choice[axis.name]).items())
    return Point(index, tuple(pairs))


def grid(spec: SweepSpec) -> Iterator[Point]:
    """Every point of the grid, the last axis varying fastest."""
    axes = spec.axes
    sizes = [len(a.grid_values()) for a in axes]
    total = 1
    for n in sizes:
        total *= n
    for index in range(total):
        rest, choice = index, {}
        for axis, n in zip(reversed(axes), reversed(sizes)):
            rest, i = divmod(rest, n)
            choice[axis.name] = axis.grid_values()[i]
        yield point_from(spec, index, choice)


def overrides_of(spec: SweepSpec, values: Mapping[str, Any]) -> list[str]:
    """The ``--set`` overrides that make a point's config: the command line's first, then the point's keys."""
    return [*spec.extra_overrides, *(f"{k}={canonical(v)}" for k, v in values.items() if k not in WORKLOAD_AXES)]


def config_of(spec: SweepSpec, values: Mapping[str, Any], *, blame: Axis | None = None) -> ArchConfig:
    """The point's config; a bad value is a ConfigError naming the sweep file and the axis (``blame``, else every
    config key of the point)."""
    try:
        return load_config(spec.config, overrides_of(spec, values))
    except ConfigError as exc:
        if exc.source != str(spec.config) or exc.key is None:
            raise
        where = blame.name if blame is not None else exc.key
        shown = {k: v for k, v in values.items() if k not in WORKLOAD_AXES}
        raise ConfigError(f"{canonical(shown)} makes {spec.config.name} invalid: {exc.key}: {exc.detail}",
                          source=spec.source, key=f"axes.{where}") from None


def check_axes(spec: SweepSpec) -> None:
    """Every value of every axis on its own over the base config (before any point runs): a bad key or value is a
    one-line error naming the sweep file and the axis."""
    load_config(spec.config, list(spec.extra_overrides))
    for axis in spec.axes:
        if axis.range is not None and axis.range.step is None:
            samples: tuple[Any, ...] = axis.range.bounds
        else:
            samples = axis.grid_values()
        for value in samples:
            config_of(spec, axis.assignments(value), blame=axis)


def workload_key(spec: SweepSpec, cfg: ArchConfig, values: Mapping[str, Any]) -> str:
    """What decides a point's IR: the model, its size and batch and the quantization the config's ``quant:``
    section asks for (or the default bit widths), or the trace / YAML file."""
    wl = spec.workload
    d = cfg.defaults
    body: dict[str, Any] = {"bits": [d.act_bits, d.weight_bits, d.bias_bits, d.scale_kind]}
    if wl.trace:
        body = {"trace": wl.trace}  # a saved trace is already what it is
    elif wl.workload:
        body["workload"] = wl.workload
    else:
        body.update(model=values.get("model", wl.model), resolution=values.get("resolution", wl.resolution),
                    batch=values.get("batch", wl.batch), checkpoint=wl.checkpoint,
                    quant=cfg.quant.to_dict() if cfg.quant is not None else None)
    return canonical(body)


def task_of(spec: SweepSpec, point: Point) -> Task:
    cfg = config_of(spec, point.values)
    return Task(point.index, point.id, cfg, workload_key(spec, cfg, point.values))


def error_line(exc: BaseException) -> str:
    """One line for a failed point: the error's own rendering, or its type and message."""
    text = exc.render() if isinstance(exc, ArchsimError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


__all__ = ["Point", "Task", "canonical", "check_axes", "config_of", "error_line", "grid", "overrides_of",
           "point_from", "point_id", "task_of", "workload_key"]
