"""On-disk cache of traced workloads, keyed by everything that changes a trace.

A trace is stored as ``<cache_dir>/<key>.json`` (the IR's versioned JSON). The key is the SHA-256 of a canonical JSON
of the caller's fields (model, resolution, batch, bit widths, scale kind, checkpoint identity, ...) plus the IR schema
version and the archsim, torch and timm versions, so upgrading any of them invalidates old entries. Writes are atomic
(temporary file, then rename), and an unreadable or corrupt entry is a miss, never a crash.

This module never imports torch: package versions come from ``importlib.metadata``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from archsim.errors import UsageError
from archsim.workloads.ir import SCHEMA_VERSION, Workload

__all__ = ["cache_dir", "cache_key", "cache_path", "load", "package_versions", "store"]

_KEY_RE = re.compile(r"^[0-9a-f]{64}$")


def _version(dist: str, fallback: str | None) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return fallback


def package_versions() -> dict[str, str | None]:
    """Installed archsim, torch and timm versions (archsim falls back to ``0.0.0+local`` when not installed)."""
    return {
        "archsim": _version("archsim", "0.0.0+local"),
        "torch": _version("torch", None),
        "timm": _version("timm", None),
    }


def cache_dir() -> Path:
    """``$ARCHSIM_CACHE_DIR`` if set, else ``~/.cache/archsim/traces``."""
    env = os.environ.get("ARCHSIM_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "archsim" / "traces"


def cache_key(**fields: Any) -> str:
    """SHA-256 hex digest of the canonical JSON of ``fields`` plus the schema and package versions.

    Field values must be JSON scalars, lists or dicts (paths are accepted and stringified).
    """
    payload = {"fields": fields, "schema_version": SCHEMA_VERSION, "versions": package_versions()}
    try:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_path_to_str)
    except TypeError as exc:
        raise UsageError(f"cache_key: field values must be JSON-serialisable ({exc})") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _path_to_str(value: Any) -> str:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def cache_path(key: str) -> Path:
    """File that holds the entry for ``key``."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise UsageError(f"cache key must be a 64-character lowercase hex digest, got {key!r}")
    return cache_dir() / f"{key}.json"


def load(key: str) -> Workload | None:
    """The cached workload for ``key``, or None on a miss (absent, unreadable, corrupt or incompatible file)."""
    path = cache_path(key)
    if not path.is_file():
        return None
    try:
        return Workload.load(path)
    except Exception:  # noqa: BLE001 - any damage to a cache entry is a miss; the caller re-traces and overwrites
        return None


def store(key: str, workload: Workload) -> Path:
    """Write ``workload`` as the entry for ``key`` atomically (temporary file in the same directory, then rename)."""
    path = cache_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(workload.to_dict(), indent=1) + "\n"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
