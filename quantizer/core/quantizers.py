"""Quantizer arithmetic: uniform grids with float or power-of-two scales, and the log2 grid.

Pure functions on tensors; the stateful pieces (observers, scale buffers, modes) live in ``observers.py`` and
``modules.py``. Conventions every function here follows:

* rounding is half to even (``torch.round``) everywhere;
* uniform fake quantization is ``q = clamp(round(x / s) + z, qmin, qmax)`` and ``x̂ = (q - z) * s``; the tie rule
  applies to ``x / s`` before the (integer) zero point is added, as an integer datapath would do it;
* a signed bit type is quantized symmetrically (``z = 0``), an unsigned one asymmetrically;
* the symmetric denominator and the zero-point policy are the explicit :class:`Conventions`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
from torch import Tensor

from quantizer.errors import UsageError
from quantizer.core.bits import BitType

SymDenominator = Literal["qmax", "half_span"]
ZeroPointRule = Literal["extend", "clamp"]
PtfZeroPoint = Literal["channel", "shared"]
PotRounding = Literal["nearest", "ceil", "floor"]
ScaleRounding = Literal["float", "nearest", "ceil", "floor", "adaptive"]
Log2Rule = Literal["linear", "log"]

SCALE_ROUNDINGS: tuple[str, ...] = ("float", "nearest", "ceil", "floor", "adaptive")
LOG2_RULES: tuple[str, ...] = ("linear", "log")
#: Smallest scale any observer returns (float32 machine epsilon), so that x / s never divides by zero.
MIN_SCALE = float(torch.finfo(torch.float32).eps)
#: Exponent offsets of P2-ViT's adaptive power-of-two search, relative to floor(log2 s).
ADAPTIVE_OFFSETS: tuple[int, ...] = (-1, 0, 1, 2)

ScaleScore = Callable[[Tensor], Tensor]
"""Scores a candidate scale tensor (shape of the scale) with a loss of the same shape (lower is better)."""


@dataclass(frozen=True)
class Conventions:
    """The choices that decide a grid from a range, recorded with every quantized model.

    ``sym_denominator``: symmetric scale = max|x| / ``qmax`` (127 for int8, the default: the maximum is
    representable) or / ``half_span`` = (qmax - qmin) / 2 (127.5, FQ-ViT's code: the maximum is clipped by half
    a step; defect F6, kept as a parity option).

    ``zero_point``: ``extend`` (default) widens [min, max] to contain 0 before computing an asymmetric grid, so the
    zero point never needs clamping and every value of the range round-trips within half a step; ``clamp`` keeps
    FQ-ViT's rule (range as observed, z = clamp(qmin - round(min / s), qmin, qmax)), which maps a range that
    excludes 0 badly. Both agree whenever min <= 0 <= max, the usual case for activations.

    ``ptf_zero_point``: how the PTF observer picks asymmetric zero points: ``channel`` (default, fixes F1: each
    candidate scale gets the zero point of the channel's own minimum at that scale) or ``shared`` (FQ-ViT's code:
    one zero point from the global minimum at the widest scale, reused by every candidate).
    """

    sym_denominator: SymDenominator = "qmax"
    zero_point: ZeroPointRule = "extend"
    ptf_zero_point: PtfZeroPoint = "channel"

    def __post_init__(self) -> None:
        if self.sym_denominator not in ("qmax", "half_span"):
            raise UsageError(f"sym_denominator must be 'qmax' or 'half_span', got {self.sym_denominator!r}")
        if self.zero_point not in ("extend", "clamp"):
            raise UsageError(f"zero_point must be 'extend' or 'clamp', got {self.zero_point!r}")
        if self.ptf_zero_point not in ("channel", "shared"):
            raise UsageError(f"ptf_zero_point must be 'channel' or 'shared', got {self.ptf_zero_point!r}")

    def sym_levels(self, bit_type: BitType) -> float:
        """The number of steps between 0 and max|x| on a symmetric grid (127 or 127.5 for int8)."""
        if self.sym_denominator == "qmax":
            return float(bit_type.qmax)
        return (bit_type.qmax - bit_type.qmin) / 2


# ---------------------------------------------------------------------------------------------------------------
# Uniform grids
# ---------------------------------------------------------------------------------------------------------------
def zero_point_for(lo: Tensor, scale: Tensor, bit_type: BitType) -> Tensor:
    """Asymmetric zero point that maps ``lo`` to qmin, clamped to the storable range [qmin, qmax]."""
    return torch.clamp(bit_type.qmin - torch.round(lo / scale), bit_type.qmin, bit_type.qmax)


def grid_from_range(lo: Tensor, hi: Tensor, bit_type: BitType,
                    conventions: Conventions = Conventions()) -> tuple[Tensor, Tensor]:
    """(scale, zero_point) covering [lo, hi] (elementwise tensors of equal shape) on ``bit_type``'s grid."""
    lo, hi = lo.float(), hi.float()
    if bit_type.signed:
        absmax = torch.maximum(lo.abs(), hi.abs())
        scale = torch.clamp(absmax / conventions.sym_levels(bit_type), min=MIN_SCALE)
        return scale, torch.zeros_like(scale)
    if conventions.zero_point == "extend":
        lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)
    scale = torch.clamp((hi - lo) / (bit_type.qmax - bit_type.qmin), min=MIN_SCALE)
    return scale, zero_point_for(lo, scale, bit_type)


def broadcast_to_channels(param: Tensor, ndim: int, channel_dim: int) -> Tensor:
    """View a (C,) or (1,) parameter so it broadcasts along ``channel_dim`` of an ``ndim``-D tensor."""
    if param.numel() == 1:
        return param.reshape(())
    shape = [1] * ndim
    shape[channel_dim] = param.numel()
    return param.reshape(shape)


def quantize(x: Tensor, scale: Tensor, zero_point: Tensor, bit_type: BitType, channel_dim: int = -1) -> Tensor:
    """Integer codes (as a float tensor) of ``x``: clamp(round(x / s) + z, qmin, qmax)."""
    s = broadcast_to_channels(scale, x.dim(), channel_dim)
    z = broadcast_to_channels(zero_point, x.dim(), channel_dim)
    return torch.clamp(torch.round(x / s) + z, bit_type.qmin, bit_type.qmax)


def dequantize(q: Tensor, scale: Tensor, zero_point: Tensor, channel_dim: int = -1) -> Tensor:
    """Real values of integer codes: (q - z) * s."""
    s = broadcast_to_channels(scale, q.dim(), channel_dim)
    z = broadcast_to_channels(zero_point, q.dim(), channel_dim)
    return (q - z) * s


def fake_quantize(x: Tensor, scale: Tensor, zero_point: Tensor, bit_type: BitType, channel_dim: int = -1) -> Tensor:
    """Quantize then dequantize: ``x`` moved onto the grid, in float."""
    return dequantize(quantize(x, scale, zero_point, bit_type, channel_dim), scale, zero_point, channel_dim)


def channel_rows(x: Tensor, channel_dim: int) -> Tensor:
    """``x`` as (C, -1): one row per channel of ``channel_dim``."""
    return x.movedim(channel_dim, 0).reshape(x.shape[channel_dim], -1)


def mse_per_channel(x: Tensor, x_hat: Tensor, channel_dim: int, per_channel: bool) -> Tensor:
    """Mean squared error per channel (shape (C,)) or over the whole tensor (shape (1,))."""
    err = (x_hat - x).pow(2)
    if per_channel:
        return channel_rows(err, channel_dim).mean(dim=1)
    return err.mean().reshape(1)


# ---------------------------------------------------------------------------------------------------------------
# Power-of-two scales
# ---------------------------------------------------------------------------------------------------------------
def floor_log2(x: Tensor) -> Tensor:
    """Exact floor(log2 x) of positive values, as int64 (from the float exponent, no log rounding)."""
    _, exponent = torch.frexp(x)
    return exponent.to(torch.int64) - 1


#: IEEE-754 layouts: the integer type of the same width, mantissa bits and exponent bias.
_FLOAT_LAYOUT = {torch.float32: (torch.int32, 23, 127), torch.float64: (torch.int64, 52, 1023)}


def pow2(exponent: Tensor, like: Tensor | None = None) -> Tensor:
    """2**exponent of integer exponents, exact, in the dtype of ``like`` (float32 by default).

    Within the normal range the float is assembled from its exponent field (one shift; ``torch.ldexp`` computes a
    ``pow`` per element and was the quantizer's hottest op); subnormal, overflowing or other dtypes use ldexp.
    """
    dtype = like.dtype if like is not None else torch.float32
    layout = _FLOAT_LAYOUT.get(dtype)
    if layout is not None and exponent.numel() and not exponent.is_floating_point():
        int_dtype, mantissa_bits, bias = layout
        lo, hi = torch.aminmax(exponent)
        if int(lo) >= 1 - bias and int(hi) <= bias:
            return ((exponent.to(int_dtype) + bias) << mantissa_bits).view(dtype)
    return torch.ldexp(torch.ones(exponent.shape, dtype=dtype, device=exponent.device), exponent)


def pot_exponent(scale: Tensor, rounding: PotRounding) -> Tensor:
    """Exponent e of the power of two 2**e chosen for ``scale`` by ``rounding``.

    ``floor``: largest 2**e <= s; ``ceil``: smallest 2**e >= s; ``nearest``: the nearer of the two in the
    *linear* domain (threshold 1.5 * 2**floor; an exact tie goes down), the rule P2-ViT uses for its smoothing
    factors.
    """
    f = floor_log2(scale)
    lower = pow2(f, scale)
    if rounding == "floor":
        return f
    if rounding == "ceil":
        return f + (scale > lower).to(torch.int64)
    if rounding == "nearest":
        return f + (scale - lower > 2 * lower - scale).to(torch.int64)
    raise UsageError(f"power-of-two rounding must be nearest, ceil or floor, got {rounding!r}")


def adaptive_pot_exponent(scale: Tensor, score: ScaleScore,
                          offsets: Sequence[int] = ADAPTIVE_OFFSETS) -> Tensor:
    """P2-ViT's adaptive choice: per element of ``scale``, the exponent among floor(log2 s) + ``offsets`` whose
    candidate scale 2**e scores lowest. ``score`` gets one candidate tensor (shape of ``scale``) at a time and
    returns a loss per element (layer-output MSE for weights, tensor MSE for activations: the caller decides).
    Ties go to the first offset listed."""
    base = floor_log2(scale)
    candidates = [base + o for o in offsets]
    losses = torch.stack([score(pow2(e, scale)).reshape(scale.shape) for e in candidates])
    best = torch.argmin(losses, dim=0)
    return torch.gather(torch.stack(candidates), 0, best.unsqueeze(0)).squeeze(0)


def round_scale(scale: Tensor, rounding: ScaleRounding, score: ScaleScore | None = None) -> Tensor:
    """``scale`` unchanged (``float``) or replaced by a power of two chosen by ``rounding``."""
    if rounding == "float":
        return scale
    if rounding == "adaptive":
        if score is None:
            raise ValueError("adaptive power-of-two rounding needs a score function")
        return pow2(adaptive_pot_exponent(scale, score), scale)
    return pow2(pot_exponent(scale, rounding), scale)


# ---------------------------------------------------------------------------------------------------------------
# Log2 grid
# ---------------------------------------------------------------------------------------------------------------
def log2_round(ratio: Tensor, rule: Log2Rule = "linear") -> Tensor:
    """Exponent k with 2**k nearest to ``ratio`` (>= 1), as int64.

    ``linear``: round up when ratio >= 1.5 * 2**floor(log2 ratio) (FQ-ViT's ``log_round``, nearest in the linear
    domain of the ratio); ``log``: round up when ratio >= sqrt(2) * 2**floor (nearest in the log domain).
    """
    if rule not in LOG2_RULES:
        raise UsageError(f"log2 rounding rule must be 'linear' or 'log', got {rule!r}")
    ratio = ratio.double()
    k = floor_log2(ratio)
    threshold = 1.5 if rule == "linear" else 2.0 ** 0.5
    return k + (ratio >= threshold * pow2(k, ratio)).to(torch.int64)


def log2_codes(x: Tensor, bits: int, rule: Log2Rule = "linear") -> Tensor:
    """Log2 codes of values in [0, 1]: k with x ≈ 2**-k, k in [0, 2**bits - 1]; -1 marks values that become 0
    (k >= 2**bits, including x = 0). Values above 1 saturate at code 0."""
    levels = 1 << bits
    x = x.double()
    positive = x > 0
    ratio = torch.where(positive, 1.0 / torch.where(positive, x, torch.ones_like(x)), torch.ones_like(x))
    k = log2_round(torch.clamp(ratio, min=1.0), rule)
    return torch.where(positive & (k < levels), k, torch.full_like(k, -1))


def log2_dequantize(codes: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Values of log2 codes: 2**-k, and 0 where the code is -1."""
    values = pow2(-codes.clamp(min=0), torch.empty((), dtype=dtype))
    return torch.where(codes >= 0, values, torch.zeros_like(values))


def log2_fake_quantize(x: Tensor, bits: int, rule: Log2Rule = "linear") -> Tensor:
    """``x`` (in [0, 1]) moved onto the 2**-k grid of ``bits``-bit codes."""
    return log2_dequantize(log2_codes(x, bits, rule), x.dtype)
