"""result.json.gz: a finished run's :class:`~archsim.result.Result`, kept so ``archsim plot RUN_DIR`` can redraw
every plot and report.html without simulating again.

The encoding walks the dataclass fields and their type hints, so a field added to Result or OpRecord later round-
trips without touching this module. Tuples of records (ops, spans) are stored column by column (one list per
field), which is several times smaller and faster than a list of objects. Floats are written with ``repr`` (exact),
values typed ``Any`` keep tuples apart from lists with a ``{"(tuple)": [...]}`` tag, and gzip gets ``mtime=0``, so
the same Result always gives the same bytes and loads back equal to what was saved.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import operator
import os
import types
import typing
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from archsim.errors import UsageError
from archsim.outputs import staged_file
from archsim.result import Result

#: Written into every file; a reader refuses another ``format`` and a newer ``version``.
FORMAT = "archsim-result"
VERSION = 1
#: zlib level: 1 is ~4x faster than the default 6 and only ~15% bigger on a whole-model result.
GZIP_LEVEL = 1
_TUPLE_TAG = "(tuple)"
_DICT_TAG = "(dict)"
_KEYS_TAG = "(keys)"
_INDEX_TAG = "(index)"


# ---- type-directed encoding ---------------------------------------------------------------------------------------


@functools.cache
def _hints(cls: type) -> tuple[tuple[str, Any], ...]:
    """(name, type hint) of the init fields of a dataclass or NamedTuple, in constructor order."""
    hints = typing.get_type_hints(cls)
    if dataclasses.is_dataclass(cls):
        return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.init)
    return tuple((name, hints[name]) for name in cls._fields)  # type: ignore[attr-defined]


def _is_record(tp: Any) -> bool:
    """A dataclass or NamedTuple class, stored field by field."""
    return isinstance(tp, type) and (dataclasses.is_dataclass(tp) or (issubclass(tp, tuple) and
                                                                      hasattr(tp, "_fields")))


def _record_tuple(tp: Any) -> Any:
    """The record class X of ``tuple[X, ...]``, else None."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis and _is_record(args[0]):
        return args[0]
    return None


_SIMPLE = (int, float, str, bool)


@functools.cache
def _encoder(tp: Any) -> Callable[[Any], Any]:
    """A function turning a value of type hint ``tp`` into JSON data, built once per type hint."""
    if tp in _SIMPLE:
        return _identity
    if _is_record(tp):
        fields = [(operator.attrgetter(name), name, _encoder(hint)) for name, hint in _hints(tp)]
        return lambda value: None if value is None else {name: enc(get(value)) for get, name, enc in fields}
    cls = _record_tuple(tp)
    if cls is not None:
        columns = [(operator.attrgetter(name), name, _encoder(hint), hint in _SIMPLE, hint)
                   for name, hint in _hints(cls)]
        return lambda rows: {name: _column(list(map(get, rows)), hint) if simple else [enc(get(row)) for row in rows]
                             for get, name, enc, simple, hint in columns}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (dict, Mapping) and args:
        item = _encoder(args[1])
        return lambda value: {str(key): item(v) for key, v in value.items()}
    if origin is tuple and args and args[-1] is Ellipsis:
        item = _encoder(args[0])
        return lambda value: [item(v) for v in value]
    if origin is tuple and args:
        items = [_encoder(arg) for arg in args]
        return lambda value: [enc(v) for enc, v in zip(items, value, strict=True)]
    if origin in (typing.Union, types.UnionType):
        arms = [arm for arm in args if arm is not type(None)]
        if len(arms) == 1:
            arm = _encoder(arms[0])
            return lambda value: None if value is None else arm(value)
    return _encode_any


def _column(values: list[Any], hint: Any) -> Any:
    """A column of plain values; a string column as its distinct values and one index per row (op and component
    names repeat thousands of times in the spans)."""
    if hint is not str:
        return values
    keys = {key: index for index, key in enumerate(dict.fromkeys(values))}
    return {_KEYS_TAG: list(keys), _INDEX_TAG: list(map(keys.__getitem__, values))}


def _uncolumn(data: Any) -> list[Any]:
    """The inverse of :func:`_column`."""
    if isinstance(data, dict):
        return list(map(data[_KEYS_TAG].__getitem__, data[_INDEX_TAG]))
    return list(data)


def _identity(value: Any) -> Any:
    return value


def _encode_any(value: Any) -> Any:
    """A value typed ``Any``: plain JSON data, with tuples and non-string-keyed dicts tagged to come back as such."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {_TUPLE_TAG: [_encode_any(item) for item in value]}
    if isinstance(value, list):
        return [_encode_any(item) for item in value]
    if isinstance(value, Mapping):
        if all(isinstance(key, str) for key in value) and _TUPLE_TAG not in value and _DICT_TAG not in value:
            return {key: _encode_any(item) for key, item in value.items()}
        return {_DICT_TAG: [[_encode_any(key), _encode_any(item)] for key, item in value.items()]}
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    return _encode_any(tolist()) if callable(tolist) else str(value)


@functools.cache
def _decoder(tp: Any) -> Callable[[Any], Any]:
    """The inverse of :func:`_encoder`."""
    if tp is float:
        return lambda data: float(data) if isinstance(data, int) else data
    if tp in _SIMPLE:
        return _identity
    if _is_record(tp):
        fields = [(name, _decoder(hint)) for name, hint in _hints(tp)]
        return lambda data: None if data is None else tp(**{name: dec(data[name]) for name, dec in fields
                                                            if name in data})
    cls = _record_tuple(tp)
    if cls is not None:
        return lambda data: _decode_columns(cls, data)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (dict, Mapping) and args:
        item = _decoder(args[1])
        return lambda data: {key: item(v) for key, v in data.items()}
    if origin is tuple and args and args[-1] is Ellipsis:
        item = _decoder(args[0])
        return lambda data: tuple(item(v) for v in data)
    if origin is tuple and args:
        items = [_decoder(arg) for arg in args]
        return lambda data: tuple(dec(v) for dec, v in zip(items, data, strict=True))
    if origin in (typing.Union, types.UnionType):
        arms = [arm for arm in args if arm is not type(None)]
        if len(arms) == 1:
            arm = _decoder(arms[0])
            return lambda data: None if data is None else arm(data)
    return _decode_any


def _decode_any(data: Any) -> Any:
    if isinstance(data, list):
        return [_decode_any(item) for item in data]
    if isinstance(data, dict):
        if len(data) == 1 and _TUPLE_TAG in data:
            return tuple(_decode_any(item) for item in data[_TUPLE_TAG])
        if len(data) == 1 and _DICT_TAG in data:
            return {_decode_any(key): _decode_any(item) for key, item in data[_DICT_TAG]}
        return {key: _decode_any(item) for key, item in data.items()}
    return data


def _decode_columns(cls: type, columns: Mapping[str, list[Any]]) -> tuple[Any, ...]:
    """Rows of ``cls`` from one list per field; fields the file lacks take their defaults, unknown ones are
    ignored (a file from a later archsim with more fields still loads)."""
    present = [(name, hint) for name, hint in _hints(cls) if name in columns]
    decoded = [_uncolumn(columns[name]) if hint in (int, str, bool) else list(map(_decoder(hint), columns[name]))
               for name, hint in present]
    if len({len(column) for column in decoded}) > 1:
        raise ValueError(f"columns of {cls.__name__} differ in length")
    if len(present) == len(_hints(cls)):
        return tuple(map(cls._make, zip(*decoded))) if hasattr(cls, "_make") else tuple(
            cls(*row) for row in zip(*decoded))
    names = [name for name, _ in present]
    return tuple(cls(**dict(zip(names, row))) for row in zip(*decoded))


# ---- files --------------------------------------------------------------------------------------------------------


def result_to_data(result: Result) -> dict[str, Any]:
    """``result`` as plain JSON data (dicts, lists, numbers, strings), tagged with format and version."""
    return {"format": FORMAT, "version": VERSION, "result": _encoder(Result)(result)}


def result_from_data(data: Mapping[str, Any]) -> Result:
    """The Result :func:`result_to_data` encoded; ValueError when ``data`` is not one."""
    if not isinstance(data, Mapping) or data.get("format") != FORMAT or not isinstance(data.get("result"), dict):
        raise ValueError(f"not an {FORMAT} file")
    if not isinstance(data.get("version"), int) or data["version"] > VERSION:
        raise ValueError(f"version {data.get('version')!r} is newer than this archsim reads ({VERSION})")
    result: Result = _decoder(Result)(data["result"])
    return result


def dumps_result(result: Result, data: Mapping[str, Any] | None = None) -> bytes:
    """The bytes of result.json.gz: the same Result always gives the same bytes. ``data`` is
    ``result_to_data(result)`` when the caller has it already."""
    text = json.dumps(data if data is not None else result_to_data(result), separators=(",", ":"))
    return gzip.compress(text.encode("utf-8"), compresslevel=GZIP_LEVEL, mtime=0)


def save_result(result: Result, path: str | os.PathLike[str], data: Mapping[str, Any] | None = None) -> Path:
    """Write ``result`` to ``path`` (gzip-compressed JSON) whole or not at all; return the path."""
    blob = dumps_result(result, data)
    with staged_file(path) as tmp:
        tmp.write_bytes(blob)
    return Path(path)


def load_result(path: str | os.PathLike[str]) -> Result:
    """Read a Result that :func:`save_result` wrote; a one-line UsageError naming ``path`` if it cannot."""
    try:
        data = json.loads(gzip.decompress(Path(path).read_bytes()))
        return result_from_data(data)
    except FileNotFoundError:
        raise UsageError("no such file (every `archsim run` folder has one; older runs must be run again)",
                         source=str(path)) from None
    except OSError as exc:
        if isinstance(exc, (gzip.BadGzipFile, EOFError)):
            raise UsageError("not a gzip file, or cut short", source=str(path)) from None
        raise UsageError(f"cannot be read ({exc.strerror or exc})", source=str(path)) from None
    except (EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"damaged ({exc.__class__.__name__})", source=str(path)) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"not a result this archsim can read ({exc})", source=str(path)) from None
