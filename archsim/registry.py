"""The registries: the one kind of global state archsim has, and its extension points.

Each :class:`Registry` maps a name to what the simulator needs to know about it (an engine kind, a mapping policy,
an op kind) and remembers where the entry came from (``archsim`` for the built-ins, else the registering module).
The built-ins register through the same public calls a plugin uses; they are loaded on first use, followed by every
module named in the ``archsim.plugins`` entry-point group, so a pip-installed package extends configs and the CLI
without an edit of archsim.

This module imports nothing of archsim's but its errors: the packages that define entries import it, never the
reverse (built-ins and plugins are found by module name).
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, Iterator, TypeVar, cast

from archsim.errors import UsageError

T = TypeVar("T")
C = TypeVar("C", bound=type)

#: The entry-point group a plugin package declares: each entry names a module that registers on import.
PLUGIN_GROUP = "archsim.plugins"

#: Modules holding archsim's own registrations, imported before any plugin.
BUILTIN_MODULES: tuple[str, ...] = ("archsim.builtins",)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object and where it came from (a module path or a plugin's entry-point name)."""

    name: str
    value: T
    origin: str


class Registry(Generic[T]):
    """Named entries of one kind. Registering an existing name is an error unless ``replace=True``."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, value: T, *, origin: str | None = None, replace: bool = False) -> T:
        """Add ``value`` under ``name``; ``origin`` defaults to the calling module."""
        if not isinstance(name, str) or not name:
            raise UsageError(f"a {self.what} needs a non-empty name, got {name!r}")
        if name in self._entries and not replace:
            raise UsageError(f"{self.what} {name!r} is already registered (by {self._entries[name].origin}); "
                             "pass replace=True to override it")
        self._entries[name] = Entry(name, value, origin or _caller_module())
        return value

    def register_class(self, cls: C, base: type) -> C:
        """Register an instance of ``cls``, a subclass of ``base``, under ``cls.name``; return ``cls`` (the body of
        a class decorator such as ``register_engine_kind``)."""
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"a {self.what} is registered as a {base.__name__} subclass, got {cls!r}")
        self.register(getattr(cls, "name", ""), cast(T, cls()))
        return cls

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and plugins that replace a kind for one run)."""
        self._entries.pop(name, None)

    def find(self, name: str) -> T | None:
        load_plugins()
        entry = self._entries.get(name)
        return entry.value if entry is not None else None

    def get(self, name: str) -> T:
        """The entry ``name``; a one-line UsageError naming the known ones otherwise."""
        value = self.find(name)
        if value is None:
            raise UsageError(f"unknown {self.what} {name!r} (known: {', '.join(self.names())})")
        return value

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        load_plugins()
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _caller_module() -> str:
    """The module on whose behalf ``register`` runs: the first frame outside the registry and the registration
    helpers that wrap it (a module-level loop of built-in registrations counts as its own module's)."""
    helpers = {"archsim.hardware.kind", "archsim.mapping.policy", "archsim.workloads.kinds"}
    frame = inspect.currentframe()
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != __name__ and not (module in helpers and frame.f_code.co_name != "<module>"):
            return "archsim" if module == "archsim" or module.startswith("archsim.") else module
        frame = frame.f_back
    return "unknown"


_state = {"loaded": False, "loading": False}
#: plugin entry-point name -> the module it loaded and its distribution's version, in load order
PLUGINS: dict[str, str] = {}


def load_plugins() -> None:
    """Import the built-in registrations, then every ``archsim.plugins`` entry point (once per process).

    A plugin that fails to import is a one-line error naming it, not a traceback."""
    if _state["loaded"] or _state["loading"]:
        return
    _state["loading"] = True
    try:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
            try:
                ep.load()
            except UsageError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken third-party plugin is the user's input
                raise UsageError(f"plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
                                 ) from None
            dist = getattr(ep, "dist", None)
            PLUGINS[ep.name] = f"{ep.value} ({dist.name} {dist.version})" if dist is not None else ep.value
        _state["loaded"] = True
    finally:
        _state["loading"] = False


# ---- the registries ------------------------------------------------------------------------------------------------
# Defined here, typed loosely, so that config validation can consult them without importing the packages that fill
# them; archsim.hardware.kind, archsim.mapping.policy and archsim.workloads.kinds give each its precise type.

#: Engine kinds by the ``type`` name configs use (archsim.hardware.kind.EngineKind).
ENGINE_KINDS: Registry[Any] = Registry("engine type")
#: Mapping policies by the name ``mapping.policy`` takes (archsim.mapping.policy.Policy).
POLICIES: Registry[Any] = Registry("mapping policy")
#: Op kinds by name (archsim.workloads.kinds.OpKind).
OP_KINDS: Registry[Any] = Registry("op kind")
