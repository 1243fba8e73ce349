"""The Trio-ViT authors' analytical cycle model (Shi et al., TCAS-I 2024), Rules A-F, as an independent oracle.

The authors (Trio-ViT; its engine from Shao et al., ISCAS 2024) published a compute-only cycle model of one
(MAT + R-MAC) slice: no memory system, no frequency, no non-linear units, divisions, re-quantization, residual adds
or classifier head. This module restates its rules from the formulas alone. It imports nothing from archsim (in
particular not archsim's mapping or hardware code), so it can be used to check archsim rather than to echo it.

Symbols (one slice): the MAT has ``L_M`` lanes (multiplier-adder trees) of ``P_M`` multipliers, the R-MAC ``L_R``
lanes of ``P_R`` PEs; one MAC per multiplier per cycle. The configuration used here is the authors' v2 one
(:data:`V2`: L_M = P_M = L_R = P_R = 8, EfficientViT-B1 at 288); :data:`V1` is their earlier 8 x 16 one.

Rules (restated; names as in the authors' model):

* A: engine assignment: stem conv, expansion 1x1, LiteMSA qkv and projection on all PEs (B); depthwise convs on
  the R-MAC (C); the 1x1 after a depthwise conv on the MAT while the DW runs, then on all PEs (D); the
  linear-attention matmuls with heads split between the two arrays (E). Head, non-linearities, divisions and
  residual adds are not modelled.
* B: ``ceil(c_out / (L_M + L_R)) * ceil(c_in / P_M) * X`` with X = H^2 (1x1) or E^2 k^2 (stem, C_in = 3).
* C: ``T_dw = ceil(E / L_R) * ceil(C / P_R) * E * k^2``, ``T_setup = ceil(C / P_R) * k^2``.
* D: fused DW -> PW: v2 bookkeeping (:func:`rule_d_v2`) or the v1 tile walk (:func:`rule_d_v1`).
* E: ``T_KV = h ceil(dim/L_R) ceil(N/P_M) dim`` and ``T_QKV = h ceil(dim/L_R) ceil(dim/P_M) N`` per array, the
  two arrays running concurrently on the 2h heads of the two scales.
* F: the total is the sum over the layer list; blocks do not overlap.

Deliberate choices about the documented quirks of the authors' code (see :func:`efficientvit_blocks`):

1. LiteMSA grouped 1x1: v2 passes C_out = C although the layer has 3C outputs. **Fixed by default** (v1's
   choice, C_out = 3C): archsim simulates the real layer (3C outputs, MACs N 3C dim), so an oracle that gives it a
   third of its outputs would disagree for a reason that is a bug, not a modelling difference.
2. LiteMSA projection: v2 swaps C_out = 2C and C_in = C. **Fixed by default** (v1's orientation, 2C -> C): the
   MACs are equal but the tiling is not, and the real layer reduces over 2C inputs.
   ``v2_quirks=True`` reproduces both as the authors' v2 script has them. For EfficientViT-B1 neither changes a
   block's count (the grouped 1x1 is hidden behind its DW either way; ceil(C/16) ceil(2C/8) = ceil(2C/16) ceil(C/8)
   for C a multiple of 16), so the choice matters only for other widths.
3. v1's Rule D stop test mixes per-pixel and absolute cycle counts: reproduced as stated in :func:`rule_d_v1`
   (which is not the default; v2 bookkeeping is).
4. Rule E tiles with L_R lanes and P_M PEs: **reproduced** (the composition passes ``L_R`` and ``P_M``); harmless
   because P_M = P_R in both configurations.
5./6. One slice, no memory model: that is what the oracle is; archsim is compared with it under an
   idealized-memory, one-processing-group setting (benchmarks/trio_oracle.py).

Model widths: EfficientViT-B1 as timm builds it, ``timm.models.efficientvit_mit.efficientvit_b1``'s model_args
``widths=(16, 32, 64, 128, 256), depths=(1, 2, 3, 3, 4), head_dim=16`` with expand ratio 4 (the EfficientViT
default); they are written out in :data:`EFFICIENTVIT_B1` and ``tests/test_trio_oracle.py`` checks them against
the channel counts of the timm model's convolutions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for non-negative integers."""
    return -(-a // b)


@dataclass(frozen=True)
class Slice:
    """One (MAT + R-MAC) slice of the authors' model."""

    L_M: int = 8   # MAT lanes (S)
    P_M: int = 8   # multipliers per MAT lane (T)
    L_R: int = 8   # R-MAC lanes (M)
    P_R: int = 8   # PEs per R-MAC lane (N)

    @property
    def pes(self) -> int:
        return self.L_M * self.P_M + self.L_R * self.P_R


V2 = Slice(8, 8, 8, 8)      # the authors' v2 configuration: one "(8x8 + 8x8)" slice, B1 at 288
V1 = Slice(8, 16, 8, 16)    # the authors' v1 configuration: B1 at 224

# timm.models.efficientvit_mit.efficientvit_b1 model_args (+ the default expand ratio of 4)
EFFICIENTVIT_B1: dict[str, Any] = {"widths": (16, 32, 64, 128, 256), "depths": (1, 2, 3, 3, 4), "head_dim": 16, "expand_ratio": 4}


# ---------------------------------------------------------------------------------------------------------------
# Rules B-E: one layer each
# ---------------------------------------------------------------------------------------------------------------

def rule_b(c_out: int, c_in: int, x: int, L_M: int, L_R: int, P_M: int) -> int:
    """Rule B, "use all PEs": both arrays as one C_out-parallel array of L_M + L_R lanes, P_M-wide C_in reduction.

    ``x`` is the number of output positions: H^2 for a 1x1 layer, E^2 k^2 for the stem (each tap a 1x1 pass).
    """
    return cdiv(c_out, L_M + L_R) * cdiv(c_in, P_M) * x


def rule_b_utilization(c_out: int, c_in: int, L_M: int, L_R: int, P_M: int, pes: int) -> float:
    """U_B = C_in C_out / (ceil(C_out/(L_M+L_R)) ceil(C_in/P_M) P_tot)."""
    return c_in * c_out / (cdiv(c_out, L_M + L_R) * cdiv(c_in, P_M) * pes)


def rule_c(c: int, e: int, k: int, L_R: int, P_R: int) -> tuple[int, int]:
    """Rule C, depthwise k x k conv on the R-MAC: returns (T_dw, T_setup).

    Lanes cover the E output pixels of one output row, PEs cover channels; rows and taps are sequential.
    T_setup is the time to the first DW outputs of all channels.
    """
    t_dw = cdiv(e, L_R) * cdiv(c, P_R) * e * k * k
    t_setup = cdiv(c, P_R) * k * k
    return t_dw, t_setup


def rule_d_v2_terms(t_dw: int, t_setup: int, c_pw: int, c_out: int, e: int,
                    L_M: int, L_R: int, P_M: int) -> dict[str, int]:
    """Rule D, v2 bookkeeping, with its intermediate quantities (s, n, c, p, r, T_tail, T_D).

    The PW (C_pw inputs per output, C_out outputs, E x E pixels) runs on the MAT from T_setup while the DW runs;
    when the DW ends, all PEs take what is left.
    """
    lanes = L_M + L_R
    per_pixel = cdiv(c_pw, P_M)
    pixels = e * e
    s = min(lanes, c_out)                                   # output channels buffered per pass
    n = ((t_dw - t_setup) // per_pixel) * L_M               # PW output elements done on the MAT during the DW
    c = s * (n // (2 * L_M * pixels))                       # output channels counted as finished
    if c >= c_out:                                          # "already finished before layer fusion"
        return {"s": s, "n": n, "c": c, "p": 0, "r": 0, "t_tail": 0, "t_d": t_dw}
    p = pixels - (n - c * pixels) // s                      # pixels left of the current pass
    r = c_out - c - s                                       # output channels left after that pass
    t_tail = cdiv(s, lanes) * per_pixel * p + (cdiv(r, lanes) * per_pixel * pixels if r > 0 else 0)
    return {"s": s, "n": n, "c": c, "p": p, "r": r, "t_tail": t_tail, "t_d": t_dw + t_tail}


def rule_d_v2(t_dw: int, t_setup: int, c_pw: int, c_out: int, e: int, L_M: int, L_R: int, P_M: int) -> int:
    """Rule D (v2): cycles of the fused DW -> PW pair, T_D = T_dw + T_tail (T_dw if the PW is fully hidden)."""
    return rule_d_v2_terms(t_dw, t_setup, c_pw, c_out, e, L_M, L_R, P_M)["t_d"]


def rule_d_v1(t_dw: int, t_setup: int, c_pw: int, c_out: int, e: int, L_M: int, L_R: int, P_M: int) -> int:
    """Rule D (v1): walk the PW's output-channel tiles of L_M lanes on the MAT, adding ceil(C_pw/P_M) per tile to a
    per-pixel count t; at the first tile where t >= T_dw - T_setup (quirk 3: a per-pixel count against an absolute
    one, reproduced), the remaining channels go to L_M + L_R lanes. T_D = max(T_dw, t E^2 + T_setup).

    Reading of "stop at the first tile": that tile itself is counted on the MAT, the channels after it are the
    remainder. For EfficientViT-B1 shapes the test never fires and T_pw = ceil(C_out/L_M) ceil(C_pw/P_M) E^2.
    """
    per_pixel = cdiv(c_pw, P_M)
    t = 0
    done = 0
    while done < c_out:
        t += per_pixel
        done = min(done + L_M, c_out)
        if t >= t_dw - t_setup:
            t += cdiv(c_out - done, L_M + L_R) * per_pixel
            break
    return max(t_dw, t * e * e + t_setup)


def rule_e(c: int, dim: int, n: int, lanes: int, pes: int) -> tuple[int, int]:
    """Rule E, linear-attention matmuls of one LiteMSA with C channels per scale: returns (T_KV, T_QKV).

    h = C / dim heads per scale, 2h in all (two scales); "different heads map to different PE arrays", so each
    array runs h heads one after another while the other array runs the other h. Per head: K^T V has lanes over
    one output dimension and PEs reducing over the N tokens; Q (K^T V) lanes over the output dimension, PEs
    reducing over dim, looping over tokens. The authors pass lanes = L_R and pes = P_M (quirk 4). The ones column
    of V, the K-sum, the divisor and the division are not counted.
    """
    h = c // dim
    t_kv = h * cdiv(dim, lanes) * cdiv(n, pes) * dim
    t_qkv = h * cdiv(dim, lanes) * cdiv(dim, pes) * n
    return t_kv, t_qkv


# ---------------------------------------------------------------------------------------------------------------
# Rule F: composition over EfficientViT-B1
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layer:
    """One entry of the authors' layer list: the archsim scopes it stands for, its rule, cycles and MACs."""

    scopes: tuple[str, ...]
    rule: str
    cycles: int
    macs: int


@dataclass(frozen=True)
class Block:
    """A block of the model (named like archsim's op scopes) and its layers; cycles and MACs are their sums."""

    name: str
    layers: tuple[Layer, ...]

    @property
    def cycles(self) -> int:
        return sum(layer.cycles for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)


def _fused_dw_pw(scope_dw: str, scope_pw: str, c_dw: int, e: int, k: int, c_pw: int, c_out: int, pw_macs: int,
                 s: Slice, rule_d: str) -> Layer:
    t_dw, t_setup = rule_c(c_dw, e, k, s.L_R, s.P_R)
    fn = rule_d_v2 if rule_d == "v2" else rule_d_v1
    cycles = fn(t_dw, t_setup, c_pw, c_out, e, s.L_M, s.L_R, s.P_M)
    return Layer((scope_dw, scope_pw), f"C+D({rule_d})", cycles, e * e * c_dw * k * k + pw_macs)


def _mbconv(name: str, c_in: int, c_out: int, h_in: int, stride: int, expand: int, s: Slice, rule_d: str) -> Block:
    mid = expand * c_in
    e = h_in // stride
    expansion = Layer((f"{name}.main.inverted_conv",), "B", rule_b(mid, c_in, h_in * h_in, s.L_M, s.L_R, s.P_M),
                      h_in * h_in * c_in * mid)
    fused = _fused_dw_pw(f"{name}.main.depth_conv", f"{name}.main.point_conv", mid, e, 3, mid, c_out,
                         e * e * mid * c_out, s, rule_d)
    return Block(name, (expansion, fused))


def _lite_msa(name: str, c: int, h: int, dim: int, s: Slice, rule_d: str, v2_quirks: bool) -> Block:
    n = h * h
    main = f"{name}.main"
    qkv = Layer((f"{main}.qkv",), "B", rule_b(3 * c, c, n, s.L_M, s.L_R, s.P_M), n * c * 3 * c)
    # DW 5x5 on 3C channels, then the grouped 1x1 (3C/dim groups of dim -> dim): C_pw = dim, C_out = 3C
    # (quirk 1: the v2 script passes C_out = C; reproduced only with v2_quirks)
    c_out_grouped = c if v2_quirks else 3 * c
    aggreg = _fused_dw_pw(f"{main}.aggreg.0.0", f"{main}.aggreg.0.1", 3 * c, h, 5, dim, c_out_grouped,
                          n * 3 * c * dim, s, rule_d)
    t_kv, t_qkv = rule_e(c, dim, n, s.L_R, s.P_M)           # quirk 4 reproduced: L_R lanes, P_M PEs
    heads = c // dim
    attention = Layer((main,), "E", t_kv + t_qkv, 2 * (2 * heads * n * dim * dim))   # 2 scales x (K^T V + Q(K^T V))
    # projection 2C -> C (quirk 2: the v2 script passes C_out = 2C, C_in = C; reproduced only with v2_quirks)
    p_out, p_in = (2 * c, c) if v2_quirks else (c, 2 * c)
    proj = Layer((f"{main}.proj",), "B", rule_b(p_out, p_in, n, s.L_M, s.L_R, s.P_M), n * 2 * c * c)
    return Block(name, (qkv, aggreg, attention, proj))


def efficientvit_blocks(resolution: int = 288, s: Slice = V2, rule_d: str = "v2", v2_quirks: bool = False,
                        arch: dict[str, Any] | None = None) -> list[Block]:
    """Rule F over EfficientViT-B1 (timm's layout), in model order, one :class:`Block` per archsim block scope.

    Blocks: ``stem.in_conv`` (Rule B, X = E^2 9), ``stem.res0`` (DSConv: C+D), ``stages.i.blocks.j`` (MBConv:
    B then C+D; the first of each stage has stride 2), and for the attention stages 2-3 (the paper's stages 3-4)
    ``stages.i.blocks.j.context_module`` (LiteMSA: B, C+D, E, B) and ``stages.i.blocks.j.local_module`` (MBConv).
    ``rule_d`` is ``"v2"`` (default) or ``"v1"``; ``v2_quirks`` reproduces quirks 1 and 2 (see the module doc).
    """
    a = arch or EFFICIENTVIT_B1
    widths, depths, dim, expand = a["widths"], a["depths"], a["head_dim"], a["expand_ratio"]
    blocks: list[Block] = []
    e = resolution // 2
    w0 = widths[0]
    blocks.append(Block("stem.in_conv", (
        Layer(("stem.in_conv",), "B", rule_b(w0, 3, e * e * 9, s.L_M, s.L_R, s.P_M), e * e * w0 * 9 * 3),)))
    for i in range(depths[0]):                              # DSConv: DW 3x3 + PW w0 -> w0
        name = f"stem.res{i}"
        blocks.append(Block(name, (_fused_dw_pw(f"{name}.main.depth_conv", f"{name}.main.point_conv", w0, e, 3, w0,
                                                w0, e * e * w0 * w0, s, rule_d),)))
    h, c_in = e, w0
    for stage, (c_out, depth) in enumerate(zip(widths[1:], depths[1:])):
        vit = stage >= 2
        blocks.append(_mbconv(f"stages.{stage}.blocks.0", c_in, c_out, h, 2, expand, s, rule_d))
        h //= 2
        if vit:
            for j in range(1, depth + 1):
                base = f"stages.{stage}.blocks.{j}"
                blocks.append(_lite_msa(f"{base}.context_module", c_out, h, dim, s, rule_d, v2_quirks))
                blocks.append(_mbconv(f"{base}.local_module", c_out, c_out, h, 1, expand, s, rule_d))
        else:
            for j in range(1, depth):
                blocks.append(_mbconv(f"stages.{stage}.blocks.{j}", c_out, c_out, h, 1, expand, s, rule_d))
        c_in = c_out
    return blocks


def oracle_cycles(resolution: int = 288, s: Slice = V2, rule_d: str = "v2",
                  v2_quirks: bool = False) -> list[tuple[str, int]]:
    """(block name, cycles) in model order: the oracle's answer for EfficientViT-B1."""
    return [(b.name, b.cycles) for b in efficientvit_blocks(resolution, s, rule_d, v2_quirks)]
