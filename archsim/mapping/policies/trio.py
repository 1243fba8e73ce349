"""``trio``: Trio-ViT's mapping rules, on top of ``assign``.

Trio-ViT (Shi et al., TCAS-I 2024) and its engine (Shao et al., ISCAS 2024) map EfficientViT by these rules:

- **K-sum adder tree.** A ``kv_matmul`` (ReLU(K)ᵀ·[V, 1]) assigned to two engines gives the ones columns of the
  padded V (the K-sums Σ ReLU(K_n)) to the second engine, the adder tree, and the rest to the first (the R-MAC).
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

from typing import ClassVar, Mapping, Sequence

from archsim.config.load import ArchConfig
from archsim.config.schema import EngineBase
from archsim.hardware.kind import OpCost, kind_of
from archsim.mapping.assign import Neighbours
from archsim.mapping.policy import Policy, heads_tiles, register_policy
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
        if kind.cost(mat, pw, tensors, pw.kind, Gemm(geom.groups, geom.m, geom.k, mid, geom.taps)).cycles <= window:
            lo = mid
        else:
            hi = mid - 1
    return lo


def dw_setup_cycles(dw_cycles: int, dw: Op, tensors: Mapping[str, Tensor]) -> int:
    """Cycles until the first depthwise output row exists (the PW cannot start earlier): one row's share."""
    g = geometry(dw, tensors)
    assert isinstance(g, Depthwise)
    return _cdiv(dw_cycles, g.rows)


def tail_split(pw: Op, tensors: Mapping[str, Tensor], geom: Gemm, channels: int, cfg: ArchConfig,
               engines: Sequence[str]) -> list[tuple[str, OpCost]]:
    """The last ``channels`` output channels of the PW on all of ``engines`` at once, split by peak MACs."""
    cfgs = [cfg.engines[e] for e in engines]
    peaks = [kind_of(c).peak_macs_per_cycle(c) for c in cfgs]
    total = sum(peaks)
    out: list[tuple[str, OpCost]] = []
    given = 0
    for i, (e, c, p) in enumerate(zip(engines, cfgs, peaks)):
        s = channels - given if i == len(engines) - 1 else min(channels - given, round(channels * p / total))
        given += s
        if s > 0:
            out.append((e, kind_of(c).cost(c, pw, tensors, pw.kind, Gemm(geom.groups, geom.m, geom.k, s, geom.taps))))
    return out


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
                                for e, c in tail_split(t.op, tensors, geom, geom.n, cfg, engines))
                continue
            if tensors[dw.op.output].nbytes > room:
                continue  # the tail would need the whole depthwise output on chip
            mat = cfg.engines[t.engines[0]]
            window = dw.cycles - dw_setup_cycles(dw.cycles, dw.op, tensors)
            done = overlap_channels(t.op, tensors, geom, mat, window)
            if done >= geom.n:
                continue  # the PW hides entirely behind the depthwise conv
            head = kind_of(mat).cost(mat, t.op, tensors, t.op.kind, Gemm(geom.groups, geom.m, geom.k, done, geom.taps)
                                     ) if done else None
            t.parts = (Part(t.engines[0], head.macs, head.cycles, head.energy_pj),) if head else (
                Part(t.engines[0], 0, 0, 0.0),)
            t.tail = tuple(Part(e, c.macs, c.cycles, c.energy_pj)
                           for e, c in tail_split(t.op, tensors, geom, geom.n - done, cfg, engines))


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
        pad = ones_columns(op, tensors, ctx) if cls == "kv_matmul" else 0
        if 0 < pad < geom.n:
            return [Gemm(geom.groups, geom.m, geom.k, geom.n - pad, geom.taps),
                    Gemm(geom.groups, geom.m, geom.k, pad, geom.taps)]
        if op.kind == "matmul" and geom.groups > 1:
            first = geom.groups // 2 + geom.groups % 2
            return [Gemm(first, geom.m, geom.k, geom.n, geom.taps),
                    Gemm(geom.groups - first, geom.m, geom.k, geom.n, geom.taps)]
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

    def after_fusion(self, groups: list[list[Task]], tensors: Mapping[str, Tensor], cfg: ArchConfig,
                     ctx: Neighbours) -> None:
        overlap_tails(groups, tensors, cfg, ctx)  # Rule D depends on what is fused
