"""The blocks of a model (``blocks.3``, ``stages.2.blocks.1``, ``patch_embed``, ``head``), read from the ops' scopes.

Plots group ops by block: the timeline draws one labelled band per block along the time axis and zooms into one
block, the energy figure gives one bar per block. A block is the scope prefix made of the top module and every
following ``<container>.<index>`` pair (``stages.2.blocks.1.context_module.qkv`` -> ``stages.2.blocks.1``); when that
prefix also heads deeper blocks (``layers.0`` beside ``layers.0.blocks.0``), the next name is kept so the module
between blocks gets its own name (``layers.0.downsample``). Ops without a scope belong to the block before them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from archsim.errors import UsageError
from archsim.result import Result


@dataclass(frozen=True, slots=True)
class Block:
    """One block: its ops in trace order and the cycles its engines worked on them, [start, end)."""

    name: str
    ops: tuple[str, ...]
    start: int
    end: int


def scope_block(scope: str) -> str:
    """The top module and, when an index follows it, the ``<container>.<index>`` pairs after it (see the module
    docstring)."""
    parts = scope.split(".") if scope else []
    if not parts:
        return ""
    if len(parts) < 2 or not parts[1].isdigit():
        return parts[0]  # a module without an index (stem, head, norm) is one block however deep its scopes go
    keep = 2
    while keep + 1 < len(parts) and not parts[keep].isdigit() and parts[keep + 1].isdigit():
        keep += 2
    return ".".join(parts[:keep])


def op_blocks(result: Result) -> dict[str, str]:
    """Block name of every op, by op name."""
    keys = [scope_block(record.scope) for record in result.ops]
    heads = {key.rsplit(".", 2)[0] for key in keys if key.count(".") >= 3}  # 'layers.0' of 'layers.0.blocks.1'
    names: list[str] = []
    for record, key in zip(result.ops, keys, strict=True):
        if key in heads and record.scope != key:
            key = ".".join(record.scope.split(".")[: key.count(".") + 2])
        names.append(key)
    first = next((name for name in names if name), "model")
    previous = first
    out: dict[str, str] = {}
    for record, name in zip(result.ops, names, strict=True):
        previous = name or previous
        out[record.op] = previous
    return out


def engine_extents(result: Result) -> dict[str, tuple[int, int]]:
    """Per op, the first and last cycle any engine worked on it (ops without engine spans are absent)."""
    engines = set(result.engines)
    out: dict[str, tuple[int, int]] = {}
    for span in result.spans:
        if span.component in engines:
            seen = out.get(span.op)
            out[span.op] = (span.start, span.end) if seen is None else (min(seen[0], span.start),
                                                                        max(seen[1], span.end))
    return out


def model_blocks(result: Result, extents: Mapping[str, tuple[int, int]] | None = None) -> list[Block]:
    """The blocks in order of their first op; each spans its engines' work, or its ops' windows without any.
    ``extents`` is :func:`engine_extents` of the result, if the caller has it already."""
    by_op = op_blocks(result)
    extents = engine_extents(result) if extents is None else extents
    grouped: dict[str, list[str]] = {}
    for record in result.ops:
        grouped.setdefault(by_op[record.op], []).append(record.op)
    windows = {record.op: (record.start_cycle, record.end_cycle) for record in result.ops}
    blocks = []
    for name, ops in grouped.items():
        spans = [extents[op] for op in ops if op in extents] or [windows[op] for op in ops]
        blocks.append(Block(name, tuple(ops), min(s for s, _ in spans), max(e for _, e in spans)))
    return blocks


def find_block(result: Result, name: str) -> Block:
    """The block named ``name``, or the ops whose scope or name starts with it (``blocks.3.attn``, ``stages.2``).

    Raises UsageError naming the known blocks when nothing matches.
    """
    blocks = model_blocks(result)
    for block in blocks:
        if block.name == name:
            return block
    prefix = name.rstrip(".") + "."
    chosen = [r.op for r in result.ops if r.scope == name or r.scope.startswith(prefix) or r.op.startswith(prefix)]
    if not chosen:
        raise UsageError(f"no block or scope {name!r} in {result.model}; blocks: {_listing([b.name for b in blocks])}",
                         key="--zoom")
    extents = engine_extents(result)
    windows = {r.op: (r.start_cycle, r.end_cycle) for r in result.ops}
    spans = [extents.get(op, windows[op]) for op in chosen]
    return Block(name, tuple(chosen), min(s for s, _ in spans), max(e for _, e in spans))


def short_names(name: str) -> list[str]:
    """Ever shorter labels for a block, longest first: ``stages.2.blocks.1``, ``s2.b1``, ``s2b1``, ``b1``."""
    parts = name.split(".")
    out = [name]
    if any(part.isdigit() for part in parts):
        compact = _join_pairs(parts)
        out += [compact, compact.replace(".", ""), compact.rsplit(".", 1)[-1]]
    else:
        out.append(name[:4])
    return list(dict.fromkeys(out))


def _join_pairs(parts: Sequence[str]) -> str:
    """``['stages', '2', 'blocks', '1']`` -> ``s2.b1``; a trailing name keeps its first four letters."""
    out: list[str] = []
    for index, part in enumerate(parts):
        if part.isdigit():
            out[-1] = out[-1] + part if out else part
        else:
            out.append(part[0] if index + 1 < len(parts) and parts[index + 1].isdigit() else part[:4])
    return ".".join(out)


def _listing(names: Sequence[str], limit: int = 8) -> str:
    """A short, one-line list of names."""
    head = ", ".join(names[:limit])
    return head + (f", ... ({len(names)} in all)" if len(names) > limit else "")
