"""Output files of the ``quantizer`` command: refuse a bad path before the work, write whole or not at all.

A short copy of the file rules of ``archsim/outputs.py`` (the quantizer never imports archsim): no empty path, no
symlink, nothing but a regular file (never a device, FIFO or socket), never one of the command's inputs.
"""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Iterable

from quantizer.errors import UsageError


def check_output_path(path: str | None, option: str, inputs: Iterable[str | None] = ()) -> Path:
    """``path`` as a Path if a command may write a file there; else a one-line UsageError naming ``option``.
    Creates nothing."""
    if not (path or "").strip():
        raise UsageError(f"{option}: empty path")
    out = Path(str(path)).expanduser()
    problem = None
    if out.is_symlink():
        problem = "is a symbolic link; give the path it points to, or a new name"
    elif out.exists():
        mode = out.stat().st_mode
        if stat.S_ISDIR(mode):
            problem = "is a folder, expected a file name"
        elif not stat.S_ISREG(mode):
            problem = "is not a regular file (a device, FIFO or socket); give another path"
    for given in inputs:
        if problem is None and given and _same(out, Path(given).expanduser()):
            problem = f"would overwrite the input {given}; choose another file"
    if problem is None:
        parent = Path(os.path.abspath(out)).parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            problem = f"cannot create the folder ({parent} is not a folder)"
        elif not os.access(parent, os.W_OK | os.X_OK):
            problem = f"cannot create the folder ({parent}: permission denied)"
    if problem is not None:
        raise UsageError(f"{option} {out}: {problem}")
    return out


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it and os.replace: whole or not at all, with no
    temporary file left behind (KeyboardInterrupt included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(os.path.abspath(a)).resolve() == Path(os.path.abspath(b)).resolve()

