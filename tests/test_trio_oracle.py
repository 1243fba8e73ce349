"""The Trio-ViT authors' cycle model (Shi et al., TCAS-I 2024), Rules A-F, as an oracle for archsim.

Unit tests check tests/oracles/trio_rules.py against small cases worked by hand from the rules' formulas; the slow
tests run benchmarks/trio_oracle.py's comparison (EfficientViT-B1 at 288, idealized memory, one processing group,
the authors' fixed loop nests) and assert the agreement issue 11 asks for: without the ops the authors' model omits,
every block and the total within 5 % of the oracle, with the same MACs per block (docs/validation.md, "Against the
Trio-ViT authors' cycle model").
"""
from __future__ import annotations

import importlib.util
import math

import pytest

from helpers import ROOT
from oracles.trio_rules import (EFFICIENTVIT_B1, V1, V2, cdiv, efficientvit_blocks, oracle_cycles, rule_b,
                                rule_b_utilization, rule_c, rule_d_v1, rule_d_v2, rule_d_v2_terms, rule_e)

L = dict(L_M=8, L_R=8, P_M=8)   # the v2 slice


def test_cdiv() -> None:
    assert [cdiv(a, 8) for a in (0, 1, 8, 9, 16, 17)] == [0, 1, 1, 2, 2, 3]


def test_rule_b_hand_cases() -> None:
    # stem at 288: ceil(16/16) * ceil(3/8) * 144^2 * 9
    assert rule_b(16, 3, 144 * 144 * 9, **L) == 186_624
    # ceil(20/16) = 2 passes, ceil(9/8) = 2 chunks, 10 positions
    assert rule_b(20, 9, 10, **L) == 40
    # v1 slice (P_M = 16): ceil(64/16) * ceil(16/16) * 100
    assert rule_b(64, 16, 100, L_M=V1.L_M, L_R=V1.L_R, P_M=V1.P_M) == 400
    assert rule_b_utilization(16, 3, pes=V2.pes, **L) == pytest.approx(48 / 128)
    assert rule_b_utilization(64, 64, pes=V2.pes, **L) == 1.0


def test_rule_c_hand_cases() -> None:
    # DSConv DW 3x3 at 288: ceil(144/8) * ceil(16/8) * 144 * 9 and the setup ceil(16/8) * 9
    assert rule_c(16, 144, 3, L_R=8, P_R=8) == (46_656, 18)
    # 5x5 on 9 channels at E = 9: ceil(9/8) * ceil(9/8) * 9 * 25, setup 2 * 25
    assert rule_c(9, 9, 5, L_R=8, P_R=8) == (900, 50)


def test_rule_d_v2_hand_cases() -> None:
    # hidden: C_pw = 8 (1 cycle/pixel), n = 96 * 8 = 768, c = 16 * floor(768 / 64) = 192 >= 40 -> T_D = T_dw
    assert rule_d_v2(100, 4, 8, 40, 2, **L) == 100
    # not hidden: per pixel 2, n = floor(16/2) * 8 = 64, c = 16 * floor(64/64) = 16 < 40,
    # p = 4 - floor((64 - 64)/16) = 4, r = 40 - 16 - 16 = 8, T_tail = 1*2*4 + 1*2*4 = 16
    t = rule_d_v2_terms(20, 4, 16, 40, 2, **L)
    assert (t["s"], t["n"], t["c"], t["p"], t["r"], t["t_tail"], t["t_d"]) == (16, 64, 16, 4, 8, 16, 36)
    # EfficientViT-B1 stem DSConv at 288 (C = 16, E = 144): n = floor(46638/2) * 8 = 186552, c = 0,
    # p = 20736 - floor(186552/16) = 9077, r = 0, T_tail = 2 * 9077
    t = rule_d_v2_terms(46_656, 18, 16, 16, 144, **L)
    assert (t["n"], t["c"], t["p"], t["r"], t["t_tail"], t["t_d"]) == (186_552, 0, 9077, 0, 18_154, 64_810)
    # stage-1 first MBConv (C_pw = 64, C_out = 32, E = 72): p = 5184 - floor(46584/16) = 2273, r = 16,
    # T_tail = 8 * 2273 + 8 * 5184
    t = rule_d_v2_terms(46_656, 72, 64, 32, 72, **L)
    assert (t["n"], t["p"], t["r"], t["t_tail"], t["t_d"]) == (46_584, 2273, 16, 59_656, 106_312)


def test_rule_d_v1_hand_cases() -> None:
    # the stop test never fires (t reaches 10 < 20 - 4): all 40 channels on the MAT, T_pw = 5 tiles * 2 * 4 = 40
    assert rule_d_v1(20, 4, 16, 40, 2, **L) == max(20, 40 + 4)
    # fires at the third tile (t = 6 >= 10 - 4): 16 channels left go to 16 lanes, t = 6 + 2 = 8, T_pw = 32
    assert rule_d_v1(10, 4, 16, 40, 2, **L) == 36


def _b1_fused_pairs(resolution: int) -> list[tuple[int, int, int, int, int]]:
    """(C_dw, E, k, C_pw, C_out) of every DW -> PW pair of EfficientViT-B1, from the widths (Rule F)."""
    w, d, dim = EFFICIENTVIT_B1["widths"], EFFICIENTVIT_B1["depths"], EFFICIENTVIT_B1["head_dim"]
    e = resolution // 2
    pairs = [(w[0], e, 3, w[0], w[0])] * d[0]
    for i in range(4):
        e //= 2
        pairs.append((4 * w[i], e, 3, 4 * w[i], w[i + 1]))
        c = w[i + 1]
        extra = [(4 * c, e, 3, 4 * c, c)]
        if i >= 2:
            extra = [(3 * c, e, 5, dim, 3 * c), (4 * c, e, 3, 4 * c, c)]
        pairs += extra * (d[i + 1] if i >= 2 else d[i + 1] - 1)
    return pairs


@pytest.mark.parametrize(("s", "resolution"), [(V1, 224), (V2, 288)])
def test_rule_d_v1_never_fires_on_b1(s, resolution: int) -> None:
    """The authors' note: for EfficientViT-B1 shapes v1's stop test never fires, so the whole PW runs on the MAT:
    T_D = max(T_dw, ceil(C_out/L_M) ceil(C_pw/P_M) E^2 + T_setup)."""
    pairs = _b1_fused_pairs(resolution)
    assert len(pairs) == 1 + 2 + 3 + (1 + 2 * 3) + (1 + 2 * 4)
    for c_dw, e, k, c_pw, c_out in pairs:
        t_dw, t_setup = rule_c(c_dw, e, k, s.L_R, s.P_R)
        closed = max(t_dw, cdiv(c_out, s.L_M) * cdiv(c_pw, s.P_M) * e * e + t_setup)
        assert rule_d_v1(t_dw, t_setup, c_pw, c_out, e, s.L_M, s.L_R, s.P_M) == closed
    # one pair by hand: stage-3 MBConv PW 1024 -> 256 at E = 9 (v2 slice); T_dw = 2 * 128 * 81
    t_dw, t_setup = rule_c(1024, 9, 3, L_R=8, P_R=8)
    assert (t_dw, t_setup) == (20_736, 1152)
    assert rule_d_v1(t_dw, t_setup, 1024, 256, 9, **L) == 32 * 128 * 81 + 1152


def test_rule_e_hand_case() -> None:
    # C = 128, dim = 16 (h = 8), N = 18^2: T_KV = 8 * 2 * ceil(324/8) * 16, T_QKV = 8 * 2 * 2 * 324
    assert rule_e(128, 16, 324, lanes=8, pes=8) == (10_496, 10_368)


def _rule_f_macs(name: str, resolution: int) -> int:
    """The MACs the authors' scripts count (Rule F), with the grouped 1x1 included as v1 does."""
    w, dim = EFFICIENTVIT_B1["widths"], EFFICIENTVIT_B1["head_dim"]
    e = resolution // 2
    if name == "stem.in_conv":
        return e * e * w[0] * 9 * 3
    if name.startswith("stem.res"):
        return e * e * w[0] * 9 + e * e * w[0] * w[0]
    stage, j = int(name.split(".")[1]), int(name.split(".")[3])
    h_in = e >> stage                      # input resolution of the stage
    c_out = w[stage + 1]
    if j == 0:                             # stride-2 MBConv
        c = w[stage]
        return h_in ** 2 * c * 4 * c + (h_in // 2) ** 2 * 4 * c * 9 + (h_in // 2) ** 2 * c_out * 4 * c
    h, c = h_in // 2, c_out
    if name.endswith("context_module"):
        return h * h * c * 3 * c + h * h * 3 * c * 25 + 2 * h * h * dim * dim * (c // dim) * 2 + h * h * 2 * c * c \
            + h * h * 3 * c * dim
    return h * h * c * 4 * c + h * h * 4 * c * 9 + h * h * c * 4 * c


@pytest.mark.parametrize("resolution", [224, 288])
def test_composition_macs_match_rule_f(resolution: int) -> None:
    blocks = efficientvit_blocks(resolution)
    assert len(blocks) == 1 + 1 + 2 + 3 + 1 + 2 * 3 + 1 + 2 * 4
    for b in blocks:
        assert b.macs == _rule_f_macs(b.name, resolution), b.name
    if resolution == 288:
        assert sum(b.macs for b in blocks) == 818_906_112


def test_composition_hand_checked_blocks() -> None:
    blocks = {b.name: b for b in efficientvit_blocks(288)}
    assert blocks["stem.in_conv"].cycles == 186_624
    assert blocks["stem.res0"].cycles == 64_810
    # stage-1 block 0: expansion ceil(64/16) * ceil(16/8) * 144^2 + the fused pair worked in test_rule_d_v2
    assert blocks["stages.0.blocks.0"].cycles == 4 * 2 * 144 * 144 + 106_312
    # LiteMSA at C = 128, H = 18: qkv ceil(384/16) * 16 * 324; DW 5x5 3 * 48 * 18 * 25 with the grouped 1x1 hidden;
    # Rule E 10496 + 10368; projection 2C -> C ceil(128/16) * ceil(256/8) * 324
    assert [layer.cycles for layer in blocks["stages.2.blocks.1.context_module"].layers] == [
        24 * 16 * 324, 3 * 48 * 18 * 25, 10_496 + 10_368, 8 * 32 * 324]


def test_v2_quirks_do_not_change_b1() -> None:
    """Quirks 1 (grouped 1x1 with C_out = C) and 2 (projection C -> 2C) are fixed by default; for B1 they change no
    block's cycles: the grouped 1x1 is hidden behind its DW either way and ceil(C/16) ceil(2C/8) = ceil(2C/16)
    ceil(C/8) for C a multiple of 16."""
    assert oracle_cycles(288, V2, v2_quirks=True) == oracle_cycles(288, V2)


@pytest.mark.slow
def test_widths_match_timm() -> None:
    """EFFICIENTVIT_B1 is timm's efficientvit_b1, and the oracle's blocks are the timm model's blocks."""
    timm = pytest.importorskip("timm")
    import torch

    with torch.device("meta"):
        model = timm.create_model("efficientvit_b1")
    w, d = EFFICIENTVIT_B1["widths"], EFFICIENTVIT_B1["depths"]
    modules = dict(model.named_modules())
    assert modules["stem.in_conv.conv"].out_channels == w[0]
    assert sum(1 for n in modules if n.startswith("stem.res") and n.count(".") == 1) == d[0]
    for i, stage in enumerate(model.stages):
        assert len(stage.blocks) == d[i + 1] + (1 if i >= 2 else 0)
        assert stage.blocks[0].main.point_conv.conv.out_channels == w[i + 1]
        assert stage.blocks[0].main.inverted_conv.conv.out_channels == EFFICIENTVIT_B1["expand_ratio"] * w[i]
    for i in (2, 3):
        msa = model.stages[i].blocks[1].context_module.main
        assert msa.qkv.conv.out_channels == 3 * w[i + 1]
        assert msa.aggreg[0][1].groups == 3 * w[i + 1] // EFFICIENTVIT_B1["head_dim"]
        assert msa.proj.conv.in_channels == 2 * w[i + 1]
    for b in efficientvit_blocks(288):
        assert b.name in modules, b.name
        for layer in b.layers:
            assert all(s in modules for s in layer.scopes), layer.scopes


# ------------------------------------------------------------------------------------------------------------------
# End to end: archsim in the idealized-memory, one-PG setting against the oracle
# ------------------------------------------------------------------------------------------------------------------

def _bench():
    spec = importlib.util.spec_from_file_location("trio_oracle_bench", ROOT / "benchmarks" / "trio_oracle.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def comparison():
    bench = _bench()
    return bench, bench.compare(288)


@pytest.mark.slow
def test_archsim_against_oracle(comparison) -> None:
    bench, res = comparison
    blocks = efficientvit_blocks(288)
    assert [b["block"] for b in res["blocks"]] == [b.name for b in blocks]
    # archsim and the oracle count the same layers: the same MACs in every block
    for b in res["blocks"]:
        assert b["archsim_macs"] == b["oracle_macs"], b["block"]
        assert abs(b["authors_ops"] / b["oracle"] - 1) <= 0.05, b["block"]  # without the ops the authors omit
        assert b["all_ops"] >= b["oracle"] > 0
    total = sum(b["authors_ops"] for b in res["blocks"]) / sum(b["oracle"] for b in res["blocks"])
    assert abs(total - 1) <= 0.05
    # only the classifier head is outside the oracle's blocks (of the run with every op)
    assert {r["scope"].split(".")[0] for r in res["unassigned"]} == {"head"}
    # 7 LiteMSAs x 2 scales: one divisor matmul each, left out of the authors' ops
    assert len(res["divisors"]) == 14


@pytest.mark.slow
def test_rule_b_and_c_layers_agree(comparison) -> None:
    """Layer by layer, archsim's Rule B ops (stem, expansions, qkv, projections) take at least the authors' count and
    at most 5 % more; its depthwise convs take at least T_dw and at most 1 % more (pipeline fill). Rule D tails and
    Rule E are modelled differently (docs/validation.md) and are not asserted."""
    bench, res = comparison
    rows, divisors = res["rows"], res["divisors"]
    for block in efficientvit_blocks(288):
        for layer in block.layers:
            ops = [r for r in rows if bench.is_authors_op(r, divisors) and r["scope"] in layer.scopes]
            if layer.rule == "B":
                assert len(ops) == 1
                assert layer.cycles <= bench.span(ops) <= 1.05 * layer.cycles, layer.scopes
            elif layer.rule.startswith("C+D"):
                dw = next(r for r in ops if r["scope"] == layer.scopes[0])
                t_dw = _t_dw(layer.scopes[0], block.name)
                assert t_dw <= int(dw["cycles"]) <= 1.01 * t_dw, layer.scopes[0]


def _t_dw(scope: str, block: str) -> int:
    """T_dw of the depthwise conv at ``scope`` from the oracle's shapes (B1 at 288)."""
    w = EFFICIENTVIT_B1["widths"]
    e = 144
    if block.startswith("stem"):
        return rule_c(w[0], e, 3, 8, 8)[0]
    stage, j = int(block.split(".")[1]), int(block.split(".")[3])
    h = e >> (stage + 1)
    c_in = w[stage] if j == 0 else w[stage + 1]
    if block.endswith("context_module"):
        return rule_c(3 * w[stage + 1], h, 5, 8, 8)[0]
    return rule_c(4 * c_in, h, 3, 8, 8)[0]
