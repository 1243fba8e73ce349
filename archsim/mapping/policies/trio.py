"""``trio``: Trio-ViT's mapping rules, on top of ``assign``.

Trio-ViT (Shi et al., TCAS-I 2024) and its engine (Shao et al., ISCAS 2024) map EfficientViT by these rules:

- **K-sum adder tree.** A ``kv_matmul`` (ReLU(K)ᵀ·[V, 1]) assigned to two engines gives the ones columns of the
  padded V (the K-sums Σ ReLU(K_n)) to the second engine, the adder tree, and the rest to the first (the R-MAC).
  Without a ones column (the trace sums K explicitly) the adder tree gets no share of the matmul.
- **Heads across arrays** (Rule E). A multi-head matmul assigned to several MAC engines is split by heads.
- **DW -> PW overlap** (Rule D). A ``dw_pwconv`` fused with its depthwise conv runs on its own engines (the MAT)
  while the depthwise runs; the output channels the MAT cannot finish in that window are a *tail* that all the
  group's MAC engines (MAT + R-MAC) take once the depthwise ends. The tail needs the whole depthwise output on
  chip, so it is only used when that tensor fits the stream (auxiliary) buffer.
- **Streaming grain.** A group with a depthwise conv streams row by row (one tile per output row: a finished DW
  row releases PW work); a group with a multi-head matmul streams head by head (the intra-layer pipeline of
  heads: KᵀV of head i on the R-MAC while the MAT computes Q·S of head i-1).

A fused consumer may take the streamed tensor as any operand, not only the first (Q·S reads S as its second).
Other fused groups are cut into at least ``pipeline.min_tiles`` tiles.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, ClassVar, Mapping, Sequence

from archsim.config.load import ArchConfig
from archsim.config.schema import EngineBase
from archsim.hardware.kind import OpCost, kind_of
from archsim.mapping.assign import Neighbours
from archsim.mapping.policy import Policy, heads_tiles, multi_head, register_policy
from archsim.mapping.taskgraph import Part, Task
from archsim.workloads.geometry import Depthwise, Gemm, geometry, is_depthwise
from archsim.workloads.ir import Op, Tensor


def ones_columns(op: Op, tensors: Mapping[str, Tensor], ctx: Neighbours) -> int:
    """Columns a ``constant_pad_nd`` appended to a matmul's second operand (the ones column of V in ReLU linear
    attention, which turns KᵀV into [KᵀV, Σ K]); 0 if none."""
    if op.kind != "matmul" or len(op.inputs) < 2:
        return 0
    src = ctx.producers.get(op.inputs[1])
    if src is None or src.kind != "data_movement" or src.fn != "constant_pad_nd" or not src.inputs:
        return 0
    before = src.input_shape(0, tensors)
    after = tensors[src.output].shape
    if len(before) != len(after) or before[:-1] != after[:-1]:
        return 0
    return max(0, after[-1] - before[-1])


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def overlap_channels(pw: Op, tensors: Mapping[str, Tensor], geom: Gemm, mat: EngineBase, window: int) -> int:
    """Rule D: the most output channels of ``geom`` the MAT alone finishes within ``window`` cycles."""
    kind = kind_of(mat)
    lo, hi = 0, geom.n
    while lo < hi:  # cycles grow with the channel count, so bisect for the largest count that fits
        mid = (lo + hi + 1) // 2
        if kind.cost(mat, pw, tensors, pw.kind, replace(geom, n=mid)).cycles <= window:
            lo = mid
        else:
            hi = mid - 1
    return lo


def dw_setup_cycles(dw_cycles: int, dw: Op, tensors: Mapping[str, Tensor]) -> int:
    """Cycles until the first depthwise output row exists (the PW cannot start earlier): one row's share."""
    g = geometry(dw, tensors)
    assert isinstance(g, Depthwise)
    return _cdiv(dw_cycles, g.rows)


def _shares(size: int, weights: Sequence[int]) -> list[int]:
    """``size`` split in proportion to ``weights``; the shares sum to ``size``."""
    total, given, out = sum(weights), 0, []
    for i, w in enumerate(weights):
        s = size - given if i == len(weights) - 1 else min(size - given, round(size * w / total))
        given += s
        out.append(s)
    return out


def tail_split(pw: Op, tensors: Mapping[str, Tensor], geom: Gemm, cfg: ArchConfig,
               engines: Sequence[str], by: str = "channels") -> list[tuple[str, OpCost]]:
    """``geom`` (a part of the PW) on all of ``engines`` at once, split by output channels or by pixels in
    proportion to the engines' peak MACs."""
    cfgs = [cfg.engines[e] for e in engines]
    peaks = [kind_of(c).peak_macs_per_cycle(c) for c in cfgs]
    out: list[tuple[str, OpCost]] = []
    for e, c, s in zip(engines, cfgs, _shares(geom.n if by == "channels" else geom.m, peaks)):
        if s > 0 and geom.macs:
            share = replace(geom, n=s) if by == "channels" else replace(geom, m=s)
            out.append((e, kind_of(c).cost(c, pw, tensors, pw.kind, share)))
    return out


def _largest(limit: int, ok: Callable[[int], bool]) -> int:
    """The largest x in [0, limit] with ``ok(x)`` (``ok`` holds up to some point, then never)."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def partial_pass(pw: Op, tensors: Mapping[str, Tensor], geom: Gemm, mat: EngineBase, done: int,
                 left: int) -> tuple[int, int]:
    """(channels, pixels): the MAT spends the ``left`` cycles after its ``done`` whole channels on the first pixels
    of its next pass (the channels its lanes take together)."""
    kind = kind_of(mat)
    if done >= geom.n or left <= 0:
        return 0, 0

    def cycles(n: int, m: int) -> int:
        return kind.cost(mat, pw, tensors, pw.kind, replace(geom, n=n, m=m)).cycles

    one = cycles(1, geom.m)
    width = _largest(geom.n - done, lambda x: x >= 1 and cycles(x, geom.m) <= one)
    pixels = _largest(geom.m, lambda px: px == 0 or cycles(width, px) <= left)
    return (width, pixels) if pixels else (0, 0)


def _sum_parts(engine: str, costs: Sequence[OpCost]) -> Part:
    return Part(engine, sum(c.macs for c in costs), sum(c.cycles for c in costs), sum(c.energy_pj for c in costs))


def overlap_tails(groups: list[list[Task]], tensors: Mapping[str, Tensor], cfg: ArchConfig, ctx: Neighbours) -> None:
    """Trio Rule D: a PW fused behind its depthwise conv keeps on its engine (the MAT) the output channels it can
    finish while the depthwise runs; the rest becomes a tail on every MAC engine of the group once the depthwise
    ends. The tail re-reads the whole depthwise output, so it needs that tensor to fit the stream buffer."""
    stream_buf = cfg.stream_buffer()
    room = cfg.buffers[stream_buf].capacity_bytes if stream_buf else 0
    everywhere = {t.name: t for g in groups for t in g}
    for g in groups:
        by_name = {t.name: t for t in g}
        for t in g:
            if t.role != "dw_pwconv" or len(t.parts) != 1:
                continue
            dw_op = ctx.fed_by_depthwise(t.op, tensors)
            dw = everywhere.get(dw_op.name) if dw_op is not None else None
            if dw is None:
                continue
            engines = [*t.engines, *(e for e in dw.engines if e not in t.engines)]
            if not all(kind_of(cfg.engines[e]).shares_work for e in engines) or len(engines) < 2:
                continue
            geom = geometry(t.op, tensors)
            assert isinstance(geom, Gemm)
            if dw.name not in by_name:  # not fused (pipeline off): the depthwise has ended, so all PEs (Rule B)
                t.parts = tuple(Part(e, c.macs, c.cycles, c.energy_pj)
                                for e, c in tail_split(t.op, tensors, geom, cfg, engines))
                continue
            if tensors[dw.op.output].nbytes > room:
                continue  # the tail would need the whole depthwise output on chip
            mat = cfg.engines[t.engines[0]]
            window = dw.cycles - dw_setup_cycles(dw.cycles, dw.op, tensors)
            done = overlap_channels(t.op, tensors, geom, mat, window)
            if done >= geom.n:
                continue  # the PW hides entirely behind the depthwise conv
            kind = kind_of(mat)
            head = [kind.cost(mat, t.op, tensors, t.op.kind, replace(geom, n=done))] if done else []
            # the MAT goes on into its next pass pixel by pixel; once the DW ends, all PEs share the rest of that
            # pass by pixels and the channels after it by channels
            width, pixels = partial_pass(t.op, tensors, geom, mat, done, window - sum(c.cycles for c in head))
            if pixels:
                head.append(kind.cost(mat, t.op, tensors, t.op.kind, replace(geom, n=width, m=pixels)))
            rest = tail_split(t.op, tensors, replace(geom, n=width, m=geom.m - pixels), cfg, engines, by="pixels")
            rest += tail_split(t.op, tensors, replace(geom, n=geom.n - done - width), cfg, engines)
            t.parts = (_sum_parts(t.engines[0], head),)
            t.tail = tuple(_sum_parts(e, [c for name, c in rest if name == e]) for e in engines
                           if any(name == e for name, _ in rest))


@register_policy
class TrioPolicy(Policy):
    name: ClassVar[str] = "trio"
    description: ClassVar[str] = "Trio-ViT: K-sum adder tree, heads across arrays, DW->PW overlap, row/head streaming"
    streams_any_operand: ClassVar[bool] = True

    def split(self, cls: str, op: Op, tensors: Mapping[str, Tensor], ctx: Neighbours, geom: Gemm | Depthwise,
              engines: Sequence[str]) -> list[Gemm | Depthwise] | None:
        """K-sum adder tree (a kv_matmul's ones columns to the second engine), else heads across the arrays."""
        if not isinstance(geom, Gemm) or len(engines) != 2:
            return None
        if cls == "kv_matmul":
            # the adder tree only adds: it takes the ones columns, and nothing when the trace has none (the K-sum is
            # then an explicit reduction elsewhere, and the products all belong on the R-MAC)
            pad = min(ones_columns(op, tensors, ctx), geom.n)
            return [replace(geom, n=geom.n - pad), replace(geom, n=pad)]
        if op.kind == "matmul" and geom.groups > 1:
            first = geom.groups // 2 + geom.groups % 2
            # heads, not images: the halves no longer hold whole images, so they cannot be split by batch
            return [Gemm(first, geom.m, geom.k, geom.n, geom.taps), Gemm(geom.groups - first, geom.m, geom.k, geom.n,
                                                                         geom.taps)]
        return None

    def starts_group(self, op: Op, tensors: Mapping[str, Tensor]) -> bool:
        """A depthwise conv always opens a fusion group, so its group is DW -> (act) -> PW on R-MAC then MAT, never
        the tail of the previous layer's post-processing (which would take the auxiliary unit's slot)."""
        return is_depthwise(op, tensors)

    def group_tiles(self, ops: Sequence[Op], tensors: Mapping[str, Tensor], min_tiles: int) -> int:
        """One tile per depthwise output row (a finished DW row releases PW work) and per attention head."""
        if len(ops) < 2:
            return 1
        tiles = heads_tiles(ops, tensors, min_tiles)
        for op in ops:
            if is_depthwise(op, tensors):
                g = geometry(op, tensors)
                assert isinstance(g, Depthwise)
                tiles = max(tiles, g.rows)
        return tiles

    def fixed_grain(self, ops: Sequence[Op], tensors: Mapping[str, Tensor]) -> bool:
        """The R-MAC's depthwise dataflow works a row at a time and attention a head at a time: both are kept."""
        return len(ops) > 1 and (multi_head(ops, tensors) or any(is_depthwise(op, tensors) for op in ops))

    def after_fusion(self, groups: list[list[Task]], tensors: Mapping[str, Tensor], cfg: ArchConfig,
                     ctx: Neighbours) -> None:
        overlap_tails(groups, tensors, cfg, ctx)  # Rule D depends on what is fused
