"""Error types that the CLI turns into one-line messages and exit codes.

Every user-facing failure is an :class:`ArchsimError`; anything else reaching the CLI is a bug.
Usage, config and workload errors exit with status 2; a simulation that cannot make progress exits with 3.
"""
from __future__ import annotations


class ArchsimError(Exception):
    """Base of all errors the CLI reports as a single line."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        self.source = source
        self.key = key
        self.detail = message
        super().__init__(self.render())

    def render(self) -> str:
        parts = [p for p in (self.source, self.key) if p]
        return ": ".join([*parts, self.detail])


class UsageError(ArchsimError):
    """A bad command-line argument (unknown model name, bad --set, ...)."""


class UnsupportedModelError(UsageError):
    """A quantization method asked to prepare a model of a family it does not support (e.g. trio on DeiT)."""


class ConfigError(ArchsimError):
    """An architecture config that is missing, unreadable, or invalid; names the file and key path."""


class WorkloadError(ArchsimError):
    """A workload (trace JSON or hand-written YAML) that is malformed or inconsistent."""


class MappingError(ArchsimError):
    """An op that no engine can run, or a tile that can never fit its buffer."""


class SimulationError(ArchsimError):
    """The simulation stopped without finishing every op (deadlock or starvation)."""

    exit_code = 3
