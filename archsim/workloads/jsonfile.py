"""Reading a JSON file that a user (or a damaged disk) wrote, with bounds, so bad bytes are one-line errors.

:func:`read_json` refuses a file larger than :data:`MAX_BYTES` (before reading it whole), bytes that are not UTF-8,
``NaN``/``Infinity``, numbers with absurdly many digits or that overflow a float, a key given twice in one object
(the standard parser keeps the last), and nesting deeper than
:data:`MAX_DEPTH`; the standard parser alone would crash with a RecursionError, a ValueError from the integer
digit limit, or accept non-finite numbers. Every refusal is a :class:`WorkloadError` naming the file.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, NoReturn

from archsim.errors import WorkloadError

#: Largest file read (the biggest zoo trace is well under 1 MiB).
MAX_BYTES = 64 * 2**20
#: Deepest nesting of arrays and objects.
MAX_DEPTH = 64
#: Most lists and objects in one file.
MAX_CONTAINERS = 2**20
#: Longest integer literal (2^63 has 19 digits) and float literal.
MAX_INT_DIGITS = 24
MAX_FLOAT_CHARS = 64


class _Refused(Exception):
    """A literal the hooks refuse; :func:`read_json` turns it into a WorkloadError."""


def _refuse(message: str) -> NoReturn:
    raise _Refused(message)


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        _refuse(f"integer {text[:12]}... has {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_FLOAT_CHARS:
        _refuse(f"number {text[:12]}... has {len(text)} characters (at most {MAX_FLOAT_CHARS})")
    value = float(text)
    if not math.isfinite(value):
        _refuse(f"number {text} is out of range")
    return value


def _parse_constant(text: str) -> NoReturn:
    _refuse(f"{text} is not a valid number (numbers must be finite)")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (the standard parser keeps the last silently)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                _refuse(f"key {key[:40]!r} is given twice in one object")
            seen.add(key)
    return obj


def check_tree(value: Any, source: str) -> None:
    """Refuse a parsed value nested deeper than :data:`MAX_DEPTH` or with more than :data:`MAX_CONTAINERS` lists
    and dicts (YAML aliases can make a small file a huge tree). Iterative, so depth cannot exhaust the stack."""
    count = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        depth += 1
        count += 1
        if depth > MAX_DEPTH:
            raise WorkloadError(f"nested more than {MAX_DEPTH} levels deep", source=source)
        if count > MAX_CONTAINERS:
            raise WorkloadError(f"more than {MAX_CONTAINERS} lists and mappings", source=source)
        stack.extend((child, depth) for child in children if isinstance(child, (dict, list)))


def read_text(path: str | Path) -> str:
    """The UTF-8 text of ``path``, at most :data:`MAX_BYTES`; a one-line WorkloadError naming the file otherwise."""
    source = str(path)
    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise WorkloadError("no such file", source=source) from None
    except OSError as exc:
        raise WorkloadError(f"cannot read ({exc.strerror or exc})", source=source) from None
    if len(raw) > MAX_BYTES:
        raise WorkloadError(f"file is larger than {MAX_BYTES // 2**20} MiB", source=source)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkloadError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                            source=source) from None


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path``; a one-line WorkloadError naming the file for anything wrong with it."""
    source = str(path)
    text = read_text(path)
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant,
                           object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        raise WorkloadError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", source=source) from None
    except _Refused as exc:
        raise WorkloadError(f"invalid JSON: {exc}", source=source) from None
    except RecursionError:  # deeper than the parser's stack allows
        raise WorkloadError(f"nested more than {MAX_DEPTH} levels deep", source=source) from None
    if isinstance(value, (dict, list)):
        check_tree(value, source)
    return value
