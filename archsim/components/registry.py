"""Registry of engine types usable from YAML (``engines.<name>.type``): the hardware extension point.

Registering a type binds its name to a config model (a pydantic model, validated with the file's key path in
errors). The registry is explicit and module-level by design (the one allowed
kind of global state).
"""
from __future__ import annotations

from dataclasses import dataclass
from archsim.config.schema import EngineBase


@dataclass(frozen=True)
class ComponentType:
    name: str
    config_model: type[EngineBase]


ENGINE_TYPES: dict[str, ComponentType] = {}


def register_component(name: str, config_model: type[EngineBase]) -> None:
    """Make engine type ``name`` available to configs; re-registering the same name replaces it.

    The config model's class decides the cost model (MAC array, non-linear unit, re-quantization unit, DMA), so a
    new type subclasses one of those models (see docs/extending.md)."""
    ENGINE_TYPES[name] = ComponentType(name, config_model)


def engine_type(name: str) -> ComponentType | None:
    _load_builtins()
    return ENGINE_TYPES.get(name)


def known_types() -> list[str]:
    _load_builtins()
    return sorted(ENGINE_TYPES)


def _load_builtins() -> None:
    if not ENGINE_TYPES:
        import archsim.components.builtin  # noqa: F401  (registers the built-in engine types)
