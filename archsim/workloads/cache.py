"""On-disk cache of traced workloads, keyed by everything that changes a trace.

A trace is stored as ``<cache_dir>/<digest>.json``: a JSON entry holding the full key (the canonical JSON of the
caller's fields, e.g. model, resolution, batch, bit widths, checkpoint identity, plus the entry format, the IR schema
version and the archsim, torch and timm versions), the SHA-256 of the workload's canonical JSON, and the workload
(the IR's versioned JSON). ``digest`` is the SHA-256 of the key text, so upgrading any version invalidates old
entries. A hit must earn its place: the entry's key must be the requested key, its content must match its digest,
and the workload must pass validation; anything else (absent, unreadable, corrupt, tampered with, another
workload's entry copied over this one, an older format) is a miss, and the caller re-traces and overwrites it.
Writes are atomic (temporary file in the same directory, then ``os.replace``).

This module never imports torch: package versions come from ``importlib.metadata``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from archsim.errors import UsageError
from archsim.workloads.ir import SCHEMA_VERSION, Workload
from archsim.workloads.jsonfile import read_json

__all__ = ["CacheKey", "ENTRY_FORMAT", "cache_dir", "cache_key", "cache_path", "load", "package_versions", "store"]

#: Version of the entry layout (key, digests, workload); part of every key.
ENTRY_FORMAT = 2

_KEY_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class CacheKey:
    """A cache key: ``text``, the canonical JSON of everything that changes a trace, and ``digest``, its SHA-256
    (the entry's file name). The entry records ``text`` so a hit is checked against the whole key, not the name."""

    text: str
    digest: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or _sha256(self.text) != self.digest:
            raise UsageError("CacheKey: digest is not the SHA-256 of text (make keys with cache_key())")

    def __str__(self) -> str:
        return self.digest


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
    """``$ARCHSIM_CACHE_DIR`` if set, else ``~/.cache/archsim/traces``; OSError if neither can be found."""
    env = os.environ.get("ARCHSIM_CACHE_DIR")
    try:
        return Path(env).expanduser() if env else Path.home() / ".cache" / "archsim" / "traces"
    except RuntimeError as exc:  # no $HOME and no password entry, or an unknown ~user
        raise OSError(f"cannot locate the cache directory ({exc})") from None


def cache_key(**fields: Any) -> CacheKey:
    """The key of ``fields`` plus the entry format, the schema and the package versions.

    Field values must be JSON scalars, lists or dicts (paths are accepted and stringified).
    """
    payload = {"fields": fields, "format": ENTRY_FORMAT, "schema_version": SCHEMA_VERSION,
               "versions": package_versions()}
    try:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_path_to_str, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cache_key: field values must be JSON-serialisable ({exc})") from None
    return CacheKey(text, _sha256(text))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(value: Any) -> str:
    """The JSON text a digest is taken of: sorted keys, no spaces (stable across a write and a read)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _path_to_str(value: Any) -> str:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _digest(key: CacheKey | str) -> str:
    digest = key.digest if isinstance(key, CacheKey) else key
    if not isinstance(digest, str) or not _KEY_RE.match(digest):
        raise UsageError(f"cache key must be a 64-character lowercase hex digest, got {digest!r}")
    return digest


def cache_path(key: CacheKey | str) -> Path:
    """File that holds the entry for ``key`` (a CacheKey or its digest)."""
    return cache_dir() / f"{_digest(key)}.json"


def load(key: CacheKey | str) -> Workload | None:
    """The cached workload for ``key``, or None on a miss: absent, unreadable, corrupt, of another key, with content
    that does not match its digest, or failing validation. Never raises for anything found on disk."""
    digest = _digest(key)
    try:
        path = cache_path(digest)
        if not path.is_file():
            return None
        return _unpack(read_json(path), key, digest, path)
    except Exception:  # noqa: BLE001 - any damage to a cache entry is a miss; the caller re-traces and overwrites
        return None


def _unpack(entry: Any, key: CacheKey | str, digest: str, path: Path) -> Workload | None:
    """The workload of a parsed entry if it is the entry of ``key`` and intact, else None."""
    if not isinstance(entry, dict) or entry.get("format") != ENTRY_FORMAT:
        return None
    text, body = entry.get("key"), entry.get("workload")
    if not isinstance(text, str) or _sha256(text) != digest or entry.get("key_sha256") != digest:
        return None
    if isinstance(key, CacheKey) and text != key.text:
        return None
    if entry.get("content_sha256") != _sha256(_canonical(body)):
        return None
    return Workload.from_dict(body, source=str(path))


def store(key: CacheKey, workload: Workload) -> Path:
    """Write ``workload`` as the entry for ``key`` atomically (temporary file in the same directory, then
    ``os.replace``); OSError if the cache directory cannot be written."""
    if not isinstance(key, CacheKey):
        raise UsageError(f"store needs a CacheKey from cache_key(), got {type(key).__name__}")
    path = cache_path(key)
    body = workload.to_dict()
    entry = {"format": ENTRY_FORMAT, "key": key.text, "key_sha256": key.digest,
             "content_sha256": _sha256(_canonical(body)), "workload": body}
    text = json.dumps(entry, separators=(",", ":"), allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{key.digest[:16]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
