"""A sweep's output folder: the manifest, the append-only log of finished points, and resumption.

``points.jsonl`` gets one line per finished point (ok or error) as soon as it finishes, flushed, so a sweep killed at
any moment loses at most the points in flight; a rerun skips every point already logged. ``sweep.json`` records
the sweep's fingerprint: a folder never mixes the points of two different sweeps.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from archsim.errors import UsageError

POINTS = "points.jsonl"
MANIFEST = "sweep.json"


class Store:
    """The finished points of one sweep in ``folder`` (created if needed)."""

    def __init__(self, folder: Path, manifest: Mapping[str, Any], *, fresh: bool = False) -> None:
        self.folder = folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out {folder}: cannot create the folder ({exc.strerror or exc})") from None
        self.path = folder / POINTS
        meta = folder / MANIFEST
        if fresh:
            self.path.unlink(missing_ok=True)
        elif meta.exists() and self.path.exists():
            old = _read_json(meta)
            if old.get("fingerprint") != manifest["fingerprint"]:
                raise UsageError(f"--out {folder}: holds the points of a different sweep ({old.get('name')!r}, "
                                 "another config, axes or search); pass --fresh to start over, or another --out")
        _write_json(meta, dict(manifest))
        self.done: dict[str, dict[str, Any]] = {}
        self._load()
        self._file = self.path.open("a", encoding="utf-8")

    def _load(self) -> None:
        if not self.path.exists():
            return
        good: list[str] = []
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut short by a kill: that point runs again
                if not isinstance(row, dict) or "id" not in row:
                    break
                self.done[row["id"]] = row
                good.append(line if line.endswith("\n") else line + "\n")
        text = "".join(good)
        if text != self.path.read_text(encoding="utf-8"):
            self.path.write_text(text, encoding="utf-8")

    def add(self, row: Mapping[str, Any]) -> None:
        """Log one finished point (flushed at once)."""
        self.done[str(row["id"])] = dict(row)
        self._file.write(json.dumps(row, sort_keys=True, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a sweep folder (for ``--report``); a one-line error when there is none."""
    path = folder / MANIFEST
    if not path.exists():
        raise UsageError(f"--report {folder}: no {MANIFEST} here (not an archsim sweep output folder)")
    data = _read_json(path)
    if not data:
        raise UsageError(f"--report {folder}: {MANIFEST} is not valid JSON")
    return data


__all__ = ["MANIFEST", "POINTS", "Store", "read_manifest"]
