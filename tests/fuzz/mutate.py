"""Hypothesis strategies that mutate the shipped inputs into fuzz :class:`~fuzz.harness.Case` s.

Three targets: every ``arch_configs/*.yaml`` (read by ``validate`` and ``run``), the YAML workload
``examples/workloads/mlp_block.yaml`` (``run`` and ``trace --workload``) and its trace JSON (``run`` and
``trace --trace``). A case applies one to three edits to the parsed document (replace a value with an odd one of
any type, scale a number, delete or add a key, swap a name) and/or one edit to its text (duplicate a key, truncate,
insert bytes, nest deeply, an alias bomb, a non-finite or enormous number). Edits whose acceptance would be a bug
(a number replaced by a bool or infinity, a duplicate key, a shape that is not positive integers, a cycle ...) mark
the case ``must_refuse``.
"""
from __future__ import annotations

import copy
import json
import math
import re
from functools import lru_cache
from typing import Any, Callable

import yaml
from hypothesis import strategies as st

from fuzz.harness import CONFIGS, GENERIC, WORKLOADS, Case

Path_ = tuple[Any, ...]

# ---- values ---------------------------------------------------------------------------------------------------------

#: Numbers at and past every edge: zero, negatives, the float limits, non-finite, bigger than any int64.
EDGE_NUMBERS: tuple[Any, ...] = (
    0, -1, 1, 2, 3, 7, 2**31, 2**63, 10**30, 10**100, -(10**9), 0.0, -0.0, 0.5, 1.5, 1e-9, 1e-320, 5e-324, 1e300,
    -1e300, 1.7976931348623157e308, math.inf, -math.inf, math.nan,
)
#: Strings that mean something to a YAML 1.1 reader or a number parser, and some that are just long.
ODD_STRINGS: tuple[str, ...] = ("", "1e30", "16", "true", "null", ".inf", "0x10", "~", "x" * 500, "é\u0000\u202e",
                                "../../etc", "/abs/path", "a.b", "[1, 2]")


def odd_values() -> st.SearchStrategy[Any]:
    """Any YAML/JSON value, biased to the edges: bools, None, edge numbers, odd strings, small containers."""
    scalar = st.one_of(
        st.booleans(), st.none(), st.sampled_from(EDGE_NUMBERS), st.integers(-(10**6), 10**6),
        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(ODD_STRINGS), st.text(max_size=12),
    )
    return st.one_of(scalar, st.lists(scalar, max_size=4), st.dictionaries(st.text(max_size=6), scalar, max_size=3))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bad_for_a_number(value: Any) -> bool:
    """A value no number key may take: a bool, a non-finite float, a container."""
    return (isinstance(value, bool) or isinstance(value, (list, dict))
            or isinstance(value, float) and not math.isfinite(value))


# ---- documents ----------------------------------------------------------------------------------------------------


def paths(tree: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every key path in ``tree`` (mappings by key, lists by index), parents before children."""
    found: list[Path_] = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for k, v in items:
        found.append((*prefix, k))
        found.extend(paths(v, (*prefix, k)))
    return found


def get(tree: Any, path: Path_) -> Any:
    for k in path:
        tree = tree[k]
    return tree


def put(tree: Any, path: Path_, value: Any) -> None:
    get(tree, path[:-1])[path[-1]] = value


def dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


@lru_cache(maxsize=None)
def _shipped(path: str) -> tuple[str, Any]:
    text = open(path, encoding="utf-8").read()
    return text, yaml.safe_load(text)


@lru_cache(maxsize=None)
def trace_json(workload: str) -> str:
    """A workload as ``archsim trace`` writes it (Workload.save's JSON); the conv one as a quantizer's trace, with
    ``meta.quant`` and per-op scale kinds."""
    from archsim.workloads.yaml_format import load_yaml_workload

    data = load_yaml_workload(workload).to_dict()
    if "conv" in workload:
        data["meta"]["quant"] = {"method": "fqvit", "w_bits": 8, "a_bits": 8}
        for op in data["ops"]:
            op["scale_kind"] = "pot"
    return json.dumps(data, indent=1) + "\n"


def _dump_yaml(tree: Any) -> str:
    return yaml.safe_dump(tree, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)


def _dump_json(tree: Any) -> str:
    return json.dumps(tree, indent=1)  # inf and nan as Infinity and NaN, as a careless writer would


# ---- tree edits ---------------------------------------------------------------------------------------------------


@st.composite
def tree_edit(draw: st.DrawFn, tree: Any, refuse: Callable[[Path_, Any, Any], str]) -> tuple[str, str, Path_]:
    """Edit ``tree`` in place; return (what was done, why acceptance would be wrong or '', the path that reason is
    about: it holds only while that path keeps its new value). ``refuse(path, old, new)`` is the target's own rule
    for a replaced value."""
    all_paths = paths(tree)
    if not all_paths:
        return "nothing to edit", "", ()
    path = draw(st.sampled_from(all_paths))
    old = get(tree, path)
    parent = get(tree, path[:-1])
    edit = draw(st.sampled_from(["replace", "replace", "scale", "scale", "delete", "add", "swap", "rename"]))
    where = dotted(path)
    if edit == "rename" and isinstance(parent, dict) and isinstance(path[-1], str):
        key = path[-1]
        new_key = draw(st.sampled_from([key + "x", key[:-1], key.upper(), key.replace("_", ""), "gleu", "softmx"]))
        if new_key and new_key not in parent:
            parent[new_key] = parent.pop(key)
            new_path = (*path[:-1], new_key)
            return f"{where}: renamed to {new_key!r}", refuse(new_path, "<key>", new_key), new_path
    if edit == "scale" and _is_number(old):
        factor = draw(st.sampled_from([0, -1, 0.5, 2, 3, 10, 1000, 1e6, 1e-6, 1e12]))
        new = old * factor
        new = int(new) if isinstance(old, int) and float(new).is_integer() and abs(new) < 1e30 else new
        put(tree, path, new)
        return f"{where}: {old!r} x {factor}", refuse(path, old, new), path
    if edit == "delete":
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
        return f"{where}: deleted", "", ()
    if edit == "add":
        target = old if isinstance(old, dict) else parent if isinstance(parent, dict) else None
        if target is not None:
            key = draw(st.sampled_from(["extra", "Rows", "type", "ops", "0", "name", "clock_mhz"]))
            target[key] = draw(odd_values())
            return f"{where}: added key {key!r}", "", ()
    if edit == "swap":
        names = sorted({str(p[-1]) for p in all_paths if isinstance(p[-1], str)}
                       | {v for v in (get(tree, p) for p in all_paths) if isinstance(v, str)})
        new = draw(st.sampled_from(names))
        put(tree, path, new)
        return f"{where}: {_short(old)} -> {new!r}", refuse(path, old, new), path
    new = draw(odd_values())
    put(tree, path, new)
    return f"{where}: {_short(old)} -> {_short(new)}", refuse(path, old, new), path


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---- text edits ---------------------------------------------------------------------------------------------------

_KEY_LINE = re.compile(r"^( *)([A-Za-z_][\w.]*):[ \t]+[^\s#{\[][^#]*$", re.M)


@st.composite
def yaml_text_edit(draw: st.DrawFn, text: str) -> tuple[str, str, str]:
    """(new text, what was done, why acceptance would be wrong or '')."""
    edit = draw(st.sampled_from(["duplicate", "duplicate", "truncate", "bytes", "nest", "bomb", "bomb_value",
                                 "flow_nest"]))
    if edit == "duplicate":
        lines = [m for m in _KEY_LINE.finditer(text)]
        if lines:
            m = draw(st.sampled_from(lines))
            new = text[: m.end()] + "\n" + m.group(0) + text[m.end():]
            line = text[: m.start()].count("\n") + 1
            return new, f"line {line} ({m.group(2)}) duplicated", "a key given twice is a duplicate key"
    if edit == "truncate":
        at = draw(st.integers(0, max(0, len(text) - 1)))
        return text[:at], f"truncated at character {at}", ""
    if edit == "bytes":
        raw = draw(st.binary(min_size=1, max_size=8))
        at = draw(st.integers(0, len(text)))
        return text[:at] + raw.decode("utf-8", "surrogateescape") + text[at:], f"bytes {raw!r} at {at}", ""
    if edit in ("nest", "flow_nest"):
        depth = draw(st.sampled_from([65, 100, 1000, 20_000]))
        if edit == "flow_nest":
            tail = "deep: " + "[" * depth + "]" * depth + "\n"
        else:
            tail = "deep:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, min(depth, 300))) + "  " * 300 + "v\n"
        return text + tail, f"{edit} {depth} deep", "nesting past the limit is refused"
    levels = draw(st.integers(3, 12))
    bomb = "b0: &b0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 9)}]\n" for i in range(1, levels))
    if edit == "bomb_value":
        lines = list(_KEY_LINE.finditer(text))
        if lines:
            m = draw(st.sampled_from(lines))
            new = bomb + text[: m.start()] + f"{m.group(1)}{m.group(2)}: *b{levels - 1}" + text[m.end():]
            return new, f"{m.group(2)} = alias bomb of 9**{levels}", "an alias bomb or its key is refused"
    return bomb + text, f"alias bomb of 9**{levels} at the top", "an unknown top-level key is refused"


_NUMBER = re.compile(r"(?<=[:\[ ,])-?\d+(\.\d+)?([eE][-+]?\d+)?(?=[,\]\n}])")


@st.composite
def json_text_edit(draw: st.DrawFn, text: str) -> tuple[str, str, str]:
    """(new text, what was done, why acceptance would be wrong or '') for a trace's JSON."""
    edit = draw(st.sampled_from(["number", "number", "truncate", "bytes", "latin1", "nest", "duplicate"]))
    if edit == "duplicate":  # a key of an object given twice: JSON readers keep the last silently
        keys = list(re.finditer(r'^( *)("\w+": [^\n{\[]+,)$', text, re.M))
        m = draw(st.sampled_from(keys))
        return (text[: m.end()] + "\n" + m.group(0) + text[m.end():], f"{m.group(2)[:30]} given twice",
                "a key given twice is a duplicate key")
    if edit == "number":
        numbers = list(_NUMBER.finditer(text))
        m = draw(st.sampled_from(numbers))
        new = draw(st.sampled_from(["Infinity", "-Infinity", "NaN", "1e999", "9" * 5000, "-" + "9" * 30,
                                    "1" + "0" * 400 + ".5", "1e-400", "0.1e1", "true", "null", "\"8\""]))
        must = "" if new in ("1e-400", "0.1e1") else "a non-finite, enormous or mistyped number is refused"
        return (text[: m.start()] + new + text[m.end():], f"number at {m.start()} ({m.group(0)}) -> {new[:20]}",
                must)
    if edit == "truncate":
        at = draw(st.integers(0, max(0, len(text) - 2)))
        return text[:at], f"truncated at character {at}", "a truncated trace is not JSON"
    if edit == "bytes":
        raw = draw(st.binary(min_size=1, max_size=8))
        at = draw(st.integers(0, len(text)))
        return text[:at] + raw.decode("utf-8", "surrogateescape") + text[at:], f"bytes {raw!r} at {at}", ""
    if edit == "latin1":  # the byte 0xe9 alone (surrogate-escaped until the case is encoded)
        at = text.index('"name"')
        return text[:at] + '"note": "caf\udce9",' + text[at:], "a Latin-1 e-acute", "Latin-1 is not UTF-8"
    depth = draw(st.sampled_from([65, 1000, 100_000]))
    return (text.replace('"meta": {', '"meta": {"deep": ' + "[" * depth + "]" * depth + ", ", 1),
            f"meta nested {depth} deep", "nesting past the limit is refused")


# ---- cases --------------------------------------------------------------------------------------------------------


def _config_refuse(path: Path_, old: Any, new: Any) -> str:
    """A number key that gets a bool, a non-finite number or a container must refuse it; so must a table keyed by
    op class (``mapping.assign``, a unit's ``ops``, a GPU's ``efficiency``) that gets a key no op answers to."""
    if path[:2] == ("quant", "options"):
        return ""
    if old == "<key>" and (path[:2] == ("mapping", "assign") or len(path) == 4 and path[0] == "engines"
                           and path[2] in ("ops", "efficiency")) and new not in _op_classes():
        return f"{dotted(path)} is no op class"
    if _is_number(old) and _bad_for_a_number(new):
        return f"{dotted(path)} is a number and got {_short(new)}"
    return ""


def _state(tree: Any, path: Path_) -> str:
    """The value at ``path`` as a string ('<gone>' when a later edit removed it), to tell whether it changed."""
    try:
        return repr(get(tree, path))
    except (KeyError, IndexError, TypeError):
        return "<gone>"


def _standing(tree: Any, claims: list[tuple[Path_, str, str]]) -> str:
    """The first reason to refuse whose value a later edit did not change or remove (an edit can undo another)."""
    return next((why for path, state, why in claims if why and state != "<gone>" and _state(tree, path) == state), "")


def _edit_case(draw: st.DrawFn, text: str, tree: Any, refuse: Callable[[Path_, Any, Any], str],
               text_edit: Callable[[str], st.SearchStrategy[tuple[str, str, str]]],
               dump: Callable[[Any], str]) -> tuple[str, tuple[str, ...], str]:
    """Tree edits, text edits or both: (text, what was done, why acceptance would be wrong)."""
    mode = draw(st.sampled_from(["numbers", "numbers", "tree", "tree", "text", "both"]))
    done: list[str] = []
    must = ""
    claims: list[tuple[Path_, str, str]] = []  # (path, its value just after the edit, why acceptance is wrong)
    if mode == "numbers":  # plausible edits, so that many cases run to the end and their invariants are checked
        tree = copy.deepcopy(tree)
        numeric = [p for p in paths(tree) if _is_number(get(tree, p))]
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(numeric))
            old = get(tree, path)
            new = draw(st.sampled_from([1, 2, 3, 4, 8, 16, 64, 256, 4096, 0.25, 1.5])) if draw(st.booleans()) else (
                old * draw(st.sampled_from([0.5, 2, 4, 0.125, 8])))
            if isinstance(old, int) and float(new).is_integer():
                new = int(new)
            put(tree, path, new)
            done.append(f"{dotted(path)}: {old!r} -> {new!r}")
            claims.append((path, _state(tree, path), refuse(path, old, new)))
        return dump(tree), tuple(done), _standing(tree, claims)
    if mode in ("tree", "both"):
        tree = copy.deepcopy(tree)
        for _ in range(draw(st.integers(1, 3))):
            what, why, path = draw(tree_edit(tree, refuse))
            done.append(what)
            claims.append((path, _state(tree, path), why))
        must = _standing(tree, claims)
        text = dump(tree)
    if mode in ("text", "both"):
        text, what, why = draw(text_edit(text))
        done.append(what)
        must = must or why
    return text, tuple(done), must


@st.composite
def config_cases(draw: st.DrawFn, commands: tuple[str, ...] = ("validate", "run")) -> Case:
    """A shipped architecture config, mutated, for ``validate`` or ``run --workload mlp_block.yaml``."""
    base = draw(st.sampled_from(CONFIGS))
    text, tree = _shipped(str(base))
    text, done, must = _edit_case(draw, text, tree, _config_refuse, yaml_text_edit, _dump_yaml)
    return Case("config", draw(st.sampled_from(commands)), base.name, text.encode("utf-8", "surrogateescape"),
                done, must, partner=draw(st.sampled_from(WORKLOADS)))


#: The weights of the MAC ops of both workloads: their shape fixes the op's other shapes (a bias or a norm's scale
#: is not checked against them).
MAC_WEIGHTS = frozenset({"fc1.weight", "fc2.weight", "stem.w", "dw.w", "pw.w", "q.w", "k.w", "v.w"})


def _workload_refuse(path: Path_, old: Any, new: Any) -> str:
    """Shapes are lists of positive integers; an op's kind is a known kind; a linear's weight fixes its features."""
    if len(path) >= 2 and (path[0] == "inputs" or path[-2] == "out" or "weights" in path[:-1]) and _is_number(old):
        if not (_is_number(new) and isinstance(new, int) and 1 <= new <= 2**31):
            return f"shape dimension {dotted(path)} got {_short(new)}"
        if "weights" in path and path[-2] in MAC_WEIGHTS:
            return "" if new == old else f"{dotted(path)} no longer agrees with the op's other shapes"
    if path[-1] == "kind" and isinstance(new, str) and new not in _known_kinds():
        return f"unknown op kind {_short(new)}"
    if path[-1] == "groups" and new != old:
        return f"groups {_short(new)} does not divide the channels as the weight says"
    if len(path) >= 4 and path[-2] == "kernel" and new != old:
        return f"{dotted(path)} differs from the weight's kernel"
    if len(path) >= 3 and path[-2 if isinstance(path[-1], int) else -1] in ("stride", "padding", "kernel") and (
            isinstance(new, bool) or not isinstance(new, (int, list))):
        return f"{dotted(path)} got {_short(new)}"
    return ""


@lru_cache(maxsize=1)
def _op_classes() -> frozenset[str]:
    from archsim.config.schema import op_class_names

    return op_class_names()


@lru_cache(maxsize=1)
def _known_kinds() -> frozenset[str]:
    from archsim.registry import OP_KINDS

    return frozenset(OP_KINDS.names())


@st.composite
def _graph_edit(draw: st.DrawFn, tree: Any) -> tuple[str, str]:
    """An edit of the op graph itself: a cycle, a duplicate name, an input that does not exist."""
    ops = tree.get("ops") if isinstance(tree, dict) else None
    if not isinstance(ops, list) or len(ops) < 2 or not all(isinstance(o, dict) and "name" in o for o in ops):
        return "graph left alone", ""
    i = draw(st.integers(0, len(ops) - 1))
    j = draw(st.integers(i, len(ops) - 1))
    edit = draw(st.sampled_from(["cycle", "duplicate", "unknown"]))
    if edit == "cycle":
        ops[i]["in"] = [ops[j]["name"]]
        return f"ops[{i}].in = [{ops[j]['name']}] (itself or later)", "an op reading itself or a later op is a cycle"
    if edit == "duplicate" and i != j:
        ops[j]["name"] = ops[i]["name"]
        return f"ops[{j}].name = {ops[i]['name']}", "two ops with one name"
    ops[i]["in"] = ["nowhere"]
    return f"ops[{i}].in = [nowhere]", "an input that is neither a graph input nor an op"


@st.composite
def workload_cases(draw: st.DrawFn, commands: tuple[str, ...] = ("run", "trace")) -> Case:
    """A YAML workload (examples/workloads/mlp_block.yaml or conv_attention.yaml), mutated, for ``run CONFIG
    --workload`` or ``trace --workload``."""
    base = draw(st.sampled_from(WORKLOADS))
    text, tree = _shipped(str(base))
    if draw(st.integers(0, 3)) == 0:
        tree = copy.deepcopy(tree)
        what, must = draw(_graph_edit(tree))
        text, done = _dump_yaml(tree), (what,)
    else:
        text, done, must = _edit_case(draw, text, tree, _workload_refuse, yaml_text_edit, _dump_yaml)
    return Case("workload", draw(st.sampled_from(commands)), base.name,
                text.encode("utf-8", "surrogateescape"), done, must, partner=_run_config(draw, base.name))


#: The op attributes archsim.workloads.validate checks (the others are free-form and kept as given).
CHECKED_ATTRS = frozenset({"fn", "in_shapes", "groups", "kernel", "stride", "dilation", "padding"})


def _trace_refuse(path: Path_, old: Any, new: Any) -> str:
    """Numbers are finite and typed; MAC counts and shapes are what the op's shapes give; meta is typed. An op's
    attributes are free-form beyond the ones the IR checks (a renamed one is just another attribute)."""
    if "attrs" in path and path.index("attrs") + 1 < len(path) and path[path.index("attrs") + 1] not in CHECKED_ATTRS:
        return ""
    if _is_number(old) and (_bad_for_a_number(new) or isinstance(new, str) or new is None):
        return f"{dotted(path)} is a number and got {_short(new)}"
    if path[-1] == "macs" and new != old:
        return f"{dotted(path)} no longer equals what the shapes give"
    if "shape" in path and _is_number(old) and not (isinstance(new, int) and 1 <= new <= 2**31):
        return f"shape dimension {dotted(path)} got {_short(new)}"
    if path == ("meta",) and not isinstance(new, dict):
        return "meta must be an object"
    if path == ("meta", "batch") and not (isinstance(new, int) and not isinstance(new, bool) and new >= 1):
        return f"meta.batch got {_short(new)}"
    return ""


@st.composite
def trace_cases(draw: st.DrawFn, commands: tuple[str, ...] = ("run", "trace")) -> Case:
    """A workload's trace JSON, mutated, for ``run CONFIG --trace`` or ``trace --trace``."""
    base = draw(st.sampled_from(WORKLOADS))
    text = trace_json(str(base))
    text, done, must = _edit_case(draw, text, json.loads(text), _trace_refuse, json_text_edit, _dump_json)
    return Case("trace", draw(st.sampled_from(commands)), f"{base.stem} trace",
                text.encode("utf-8", "surrogateescape"), done, must, partner=_run_config(draw, base.name))


def _run_config(draw: st.DrawFn, workload: str) -> Any:
    """The config a workload runs on: generic16.yaml mostly, any shipped one sometimes."""
    return draw(st.sampled_from([GENERIC, GENERIC, *CONFIGS]))
