"""How a run was made: the exact command, the config file and its ``--set`` overrides, and the resolved config.

summary.json and report.md record this, so a report says how to make it again, and a default report folder made by
another command is recognised (its ``run.key`` differs) instead of silently replaced.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from typing import Any, Mapping, Sequence

from pydantic import BaseModel

from archsim.config.load import ArchConfig


def command_line(argv: Sequence[str], program: str = "archsim") -> str:
    """The command as a user would paste it into a POSIX shell."""
    return shlex.join([program, *argv])


def resolved_config(cfg: ArchConfig) -> dict[str, Any]:
    """Every section of ``cfg`` as plain JSON data, defaults filled in: what the run actually used."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        out[f.name] = _plain(getattr(cfg, f.name))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def run_key(parts: Mapping[str, Any]) -> str:
    """A short digest of what decides a run's result (config file, overrides, workload options), to tell two
    commands' report folders apart."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def record(argv: Sequence[str], cfg: ArchConfig, overrides: Sequence[str], key: str) -> dict[str, Any]:
    """The ``run`` section of summary.json."""
    return {"command": command_line(argv), "key": key, "config_file": cfg.source, "overrides": list(overrides),
            "config": resolved_config(cfg)}
