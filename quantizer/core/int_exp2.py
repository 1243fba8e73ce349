"""Integer non-linear kernels built on a base-2 exponential: Int-2^n-Softmax and a shift-based integer GELU.

Both replace e^x by 2^(x·log2 e), so the exponential becomes a right shift by the integer part of the exponent
and a line on its fractional part (PackQViT's Int-2^n-Softmax, Dong et al., NeurIPS 2023; the line
2^-f ≈ 1 - f/2 is I-ViT's Shiftmax, Li & Gu, ICCV 2023, arXiv 2207.01405). The constant log2 e (and GELU's 1.702)
is folded with the input scale into one dyadic multiplier m / 2^n, fixed once the scales are known, as a
re-quantization multiplier is. Every runtime step is an int64 operation.

Accuracy, by construction (tested): the line lies above 2^-f on [0, 1] (2^-f is convex), by at most
max_f (1 - f/2)·2^f - 1 = 1/(2 ln 2)·2^(2 - 1/ln 2) - 1 ≈ 6.14 % (:data:`EXP2_LINE_MAX_ERROR`), at f ≈ 0.557.
"""
from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from quantizer.core.quantizers import Log2Rule, floor_log2, log2_dequantize, log2_round, pow2

LOG2E = 1.0 / math.log(2.0)
#: Fractional bits of the fixed-point exponent u = -x·log2(e).
EXP2_FRAC_BITS = 16
#: 2^-u is returned as an integer in units of 2^-EXP2_OUT_BITS (so 1.0 is 2^30; a row of 2^32 entries sums below 2^62).
EXP2_OUT_BITS = 30
#: Mantissa bits of the dyadic constants (scale·log2 e, scale·1.702·log2 e).
MULT_BITS = 16
#: Relative error bound of the line 2^-f ≈ 1 - f/2 on [0, 1): it is never below 2^-f and at most this above.
EXP2_LINE_MAX_ERROR = (2.0 ** (2.0 - LOG2E)) / (2.0 * math.log(2.0)) - 1.0
#: GELU(x) ≈ x·σ(1.702 x) (Hendrycks & Gimpel, arXiv 1606.08415, section 2), the form I-ViT's ShiftGELU uses.
GELU_SIGMOID_COEFF = 1.702
#: σ is returned as an integer in units of 2^-SIGMOID_BITS.
SIGMOID_BITS = 15
#: Exponents u at or beyond this give 2^-u = 0 at EXP2_OUT_BITS; inputs are clamped there so products stay in int64.
_U_SATURATE = 64
#: Smallest constant the fixed-point product handles without leaving int64 (scales below this are not realistic).
MIN_CONSTANT = 2.0 ** -39

SoftmaxOutput = Literal["log2", "uniform"]


def dyadic_constant(c: Tensor, bits: int = MULT_BITS) -> tuple[Tensor, Tensor]:
    """(m, n), int64 and shaped like ``c``, with m / 2**n ≈ c: m is a ``bits``-bit mantissa in [2**(bits-1), 2**bits),
    n may be negative for c >= 2**bits. ValueError for c below :data:`MIN_CONSTANT` or not finite."""
    c = c.double()
    if not bool(torch.isfinite(c).all()) or bool((c < MIN_CONSTANT).any()):
        raise ValueError(f"integer exp2 needs finite constants >= 2^-39, got {c.min().item():g}")
    n = (bits - 1) - floor_log2(c)
    m = torch.round(c * pow2(n, c)).to(torch.int64)
    carry = m >= (1 << bits)  # rounding up to 2**bits: one bit less of shift
    return torch.where(carry, m >> 1, m), torch.where(carry, n - 1, n)


def div_round(num: Tensor, den: Tensor) -> Tensor:
    """round(num / den) for int64 num >= 0, den > 0, ties rounded up: one floor division of 2·num + den by 2·den."""
    return torch.div(2 * num + den, 2 * den, rounding_mode="floor")


def round_shift(num: Tensor, shift: Tensor | int) -> Tensor:
    """round(num / 2**shift) for int64 ``num`` and shifts >= 0 (an int, or an int64 tensor broadcasting against
    ``num``), ties rounded up: add half, shift right."""
    if isinstance(shift, int):
        return num if shift == 0 else (num + (1 << (shift - 1))) >> shift
    return (num + ((torch.ones_like(shift) << shift) >> 1)) >> shift


def fixed_point_product(v: Tensor, m: Tensor, n: Tensor, frac_bits: int = EXP2_FRAC_BITS) -> Tensor:
    """round(v·m / 2**n · 2**frac_bits) for int64 v >= 0: v times the dyadic constant m / 2**n, in fixed point with
    ``frac_bits`` fractional bits. ``m`` and ``n`` are one value or broadcast against ``v`` (per channel)."""
    num = v * m
    right = n - frac_bits
    if right.numel() == 1:
        r = int(right)
        return round_shift(num, r) if r >= 0 else num << -r
    if int(right.min()) >= 0:
        return round_shift(num, right)
    return torch.where(right >= 0, round_shift(num, right.clamp(min=0)), num << (-right).clamp(min=0))


def saturation(m: Tensor, n: Tensor) -> Tensor:
    """The input magnitude beyond which 2^-(v·m/2^n) is 0 at :data:`EXP2_OUT_BITS` (inputs are clamped to it)."""
    c = m.double() / pow2(n, m.double())
    return torch.ceil(_U_SATURATE / c).to(torch.int64) + 1


def exp2_neg(u_fix: Tensor, frac_bits: int = EXP2_FRAC_BITS, out_bits: int = EXP2_OUT_BITS) -> Tensor:
    """2^-u for u = ``u_fix`` / 2**frac_bits >= 0, as int64 in units of 2**-out_bits.

    u = q + f with q = floor(u): 2^-f is the line 1 - f/2 (never below 2^-f, at most :data:`EXP2_LINE_MAX_ERROR`
    above), 2^-q a right shift by q (truncating: less than one unit of 2**-out_bits; q >= 62 gives 0).
    """
    if out_bits < frac_bits + 1 or out_bits > 60:
        raise ValueError("exp2_neg needs frac_bits < out_bits <= 60")
    q = u_fix >> frac_bits
    f = u_fix & ((1 << frac_bits) - 1)
    line = ((1 << (frac_bits + 1)) - f) << (out_bits - frac_bits - 1)  # (1 - f/2)·2^out_bits
    return line >> q.clamp(max=62)


class Int2nSoftmaxResult(NamedTuple):
    codes: Tensor  # int64: log2 codes k (value 2**-k, -1 = 0) or uniform codes (value code / 2**bits)
    values: Tensor  # the output in float
    exp_int: Tensor  # 2^(x - max) in units of 2**-EXP2_OUT_BITS (int64)
    total: Tensor  # row sums of exp_int (int64)


def int2n_softmax(x: Tensor, scale: float, bits: int = 4, output: SoftmaxOutput = "log2",
                  rule: Log2Rule = "linear") -> Int2nSoftmaxResult:
    """Int-2^n-Softmax over the last axis of ``x``, whose values lie on a grid of step ``scale`` (entries off it are
    rounded onto it): softmax(x) = 2^(x·log2 e) / Σ 2^(x·log2 e), with integer steps only.

    x_int = round(x / scale) - row max; u = -x_int·(scale·log2 e) in fixed point (one multiply by the dyadic
    constant); exp = 2^-u by :func:`exp2_neg`; total = Σ exp. ``log2`` output: ratio = round(total / exp)
    (integer division, ties up), k = log2_round(ratio, rule), k >= 2**bits gives 0, else 2**-k (as FQ-ViT's
    LIS, whose log2 step it shares). ``uniform`` output: code = round(exp·2**bits / total) clamped to
    [0, 2**bits - 1], value code / 2**bits.
    """
    x_int = torch.round(x / scale).to(torch.int64)
    v = x_int.amax(dim=-1, keepdim=True) - x_int  # >= 0
    m, n = dyadic_constant(torch.tensor(scale * LOG2E))
    u = fixed_point_product(v.clamp(max=int(saturation(m, n))), m, n)
    exp_int = exp2_neg(u)
    total = exp_int.sum(dim=-1, keepdim=True)
    positive = exp_int > 0
    if output == "log2":
        ratio = div_round(total, torch.where(positive, exp_int, torch.ones_like(exp_int)))
        k = log2_round(ratio, rule)
        codes = torch.where(positive & (k < (1 << bits)), k, torch.full_like(k, -1))
        return Int2nSoftmaxResult(codes, log2_dequantize(codes, x.dtype), exp_int, total)
    if output != "uniform":
        raise ValueError(f"softmax output must be 'log2' or 'uniform', got {output!r}")
    codes = div_round(exp_int << bits, total).clamp(max=(1 << bits) - 1)
    return Int2nSoftmaxResult(codes, (codes.double() / (1 << bits)).to(x.dtype), exp_int, total)


class IntGeluResult(NamedTuple):
    y_int: Tensor  # int64: GELU(x) in units of scale·2**-SIGMOID_BITS
    sigmoid: Tensor  # int64: σ(1.702 x) in units of 2**-SIGMOID_BITS
    x_int: Tensor  # int64: the input codes


def int_gelu(x: Tensor, scale: Tensor) -> IntGeluResult:
    """Integer GELU(x) ≈ x·σ(1.702 x) of ``x`` on a grid of step ``scale`` (one value, or one per channel of the
    last axis), with the sigmoid from a base-2 exponential:

    x_int = round(x / scale); u = |x_int|·(scale·1.702·log2 e) in fixed point; e = 2^-u = e^(-1.702|x|) by
    :func:`exp2_neg`; σ = (x >= 0 ? 1 : e) / (1 + e) by one integer division (σ(z) for z >= 0 and e^z/(1 + e^z)
    for z < 0, so no exponential exceeds 1); y_int = x_int·σ.

    A sign-split reading of I-ViT's ShiftGELU (which subtracts a row maximum instead). Error: the exp2 line's
    relative error δ <= 6.14 % moves σ by at most δ/4, so |y - x·σ(1.702x)| <= 0.0154·|x| plus rounding.
    """
    s = scale.reshape(-1).double()
    x_int = torch.round(x.double() / s).to(torch.int64)
    m, n = dyadic_constant(s * (GELU_SIGMOID_COEFF * LOG2E))
    v = torch.minimum(x_int.abs(), saturation(m, n))
    e = exp2_neg(fixed_point_product(v, m, n))
    one = 1 << EXP2_OUT_BITS
    num = torch.where(x_int >= 0, torch.full_like(e, one), e) << SIGMOID_BITS
    sigmoid = div_round(num, one + e)
    return IntGeluResult(x_int * sigmoid, sigmoid, x_int)


def int_gelu_values(x: Tensor, scale: Tensor) -> Tensor:
    """:func:`int_gelu` as real values (y_int · scale / 2**SIGMOID_BITS), in the dtype of ``x``."""
    result = int_gelu(x, scale)
    s = scale.reshape(-1).double()
    return (result.y_int.double() * (s / (1 << SIGMOID_BITS))).to(x.dtype)


__all__ = ["EXP2_FRAC_BITS", "EXP2_LINE_MAX_ERROR", "EXP2_OUT_BITS", "GELU_SIGMOID_COEFF", "Int2nSoftmaxResult",
           "IntGeluResult", "LOG2E", "MULT_BITS", "SIGMOID_BITS", "div_round", "dyadic_constant", "exp2_neg",
           "fixed_point_product", "int2n_softmax", "int_gelu", "int_gelu_values", "round_shift", "saturation"]
