"""Mapping policies (``mapping.policy``): the published accelerators' own mapping rules, on top of ``assign``.

``generic`` changes nothing. ``trio`` adds Trio-ViT's rules (../shared/research/accelerators.md 3.7-3.9):

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

``p2vit`` streams attention groups head by head (Q·Kᵀ -> Softmax per head). Both non-generic policies let a
fused consumer take the streamed tensor as any operand, not only the first (Q·S reads S as its second).
Every policy cuts other fused groups into at least ``pipeline.min_tiles`` tiles.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from archsim.config.load import ArchConfig
from archsim.config.schema import MacArrayBase
from archsim.mapping.assign import Neighbours
from archsim.mapping.dataflow import OpCost, mac_cost
from archsim.mapping.geometry import Depthwise, Gemm, geometry, is_depthwise
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


def split_pieces(policy: str, cls: str, op: Op, tensors: Mapping[str, Tensor], ctx: Neighbours,
                 geom: Gemm | Depthwise, engines: Sequence[str]) -> list[Gemm | Depthwise] | None:
    """The policy's own split of a multi-engine op, or None for the default (output channels by peak MACs)."""
    if policy != "trio" or not isinstance(geom, Gemm) or len(engines) != 2:
        return None
    pad = ones_columns(op, tensors, ctx) if cls == "kv_matmul" else 0
    if 0 < pad < geom.n:
        return [Gemm(geom.groups, geom.m, geom.k, geom.n - pad, geom.taps), Gemm(geom.groups, geom.m, geom.k, pad, geom.taps)]
    if op.kind == "matmul" and geom.groups > 1:
        first = geom.groups // 2 + geom.groups % 2
        return [Gemm(first, geom.m, geom.k, geom.n, geom.taps), Gemm(geom.groups - first, geom.m, geom.k, geom.n, geom.taps)]
    return None


def starts_group(policy: str, op: Op, tensors: Mapping[str, Tensor]) -> bool:
    """Trio: a depthwise conv always opens a fusion group, so its group is DW -> (act) -> PW on R-MAC then MAT,
    never the tail of the previous layer's post-processing (which would take the auxiliary unit's slot)."""
    return policy == "trio" and is_depthwise(op, tensors)


def streamable_inputs(policy: str) -> str:
    """``first``: a fused consumer streams only its first operand (generic); ``any``: any operand."""
    return "first" if policy == "generic" else "any"


def min_group_tiles(policy: str, ops: Sequence[Op], tensors: Mapping[str, Tensor], min_tiles: int) -> int:
    """The fewest tiles a fusion group of ``ops`` is cut into: its streaming grain."""
    if len(ops) < 2:
        return 1
    tiles = min_tiles
    for op in ops:
        if policy == "trio" and is_depthwise(op, tensors):
            g = geometry(op, tensors)
            assert isinstance(g, Depthwise)
            tiles = max(tiles, g.rows)  # one tile per DW output row
        elif policy in ("trio", "p2vit") and op.kind == "matmul":
            g = geometry(op, tensors)
            assert isinstance(g, Gemm)
            tiles = max(tiles, g.groups)  # one tile per head
    return tiles


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def overlap_channels(pw: Op, tensors: Mapping[str, Tensor], geom: Gemm, mat: MacArrayBase, window: int) -> int:
    """Rule D: the most output channels of ``geom`` the MAT alone finishes within ``window`` cycles."""
    lo, hi = 0, geom.n
    while lo < hi:  # cycles grow with the channel count, so bisect for the largest count that fits
        mid = (lo + hi + 1) // 2
        if mac_cost(pw, tensors, Gemm(geom.groups, geom.m, geom.k, mid, geom.taps), mat).cycles <= window:
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
    peaks = [c.peak_macs_per_cycle for c in cfgs]
    total = sum(peaks)
    out: list[tuple[str, OpCost]] = []
    given = 0
    for i, (e, c, p) in enumerate(zip(engines, cfgs, peaks)):
        s = channels - given if i == len(engines) - 1 else min(channels - given, round(channels * p / total))
        given += s
        if s > 0:
            assert isinstance(c, MacArrayBase)
            out.append((e, mac_cost(pw, tensors, Gemm(geom.groups, geom.m, geom.k, s, geom.taps), c)))
    return out


__all__ = [
    "ones_columns",
    "split_pieces",
    "starts_group",
    "streamable_inputs",
    "min_group_tiles",
    "overlap_channels",
    "dw_setup_cycles",
    "tail_split",
]
