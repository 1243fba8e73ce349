"""Fake-quantization modules: QAct, QLinear, QConv2d, QMatMul, QIntLayerNorm and QIntSoftmax.

Modes (:data:`Mode`, set on every module by ``quantizer.calibrate.set_mode``):

* ``float``: pass-through, the float model;
* ``calibrate``: float forward, every quantizer folds the batch into its observer's statistics;
* ``search``: as ``calibrate``, then every quantizer computes its grid from the statistics and this batch (the
  declared search batch) and stores it in its buffers;
* ``quant``: fake quantization; a quantizer without a grid raises;
* ``auto`` (the mode a module is created with): ``quant`` once the module's grids exist, else ``float``. So a
  freshly prepared model runs in float, and one that received a calibrated state dict runs quantized.

Every scale is a registered buffer allocated with its final shape in ``__init__``, so a calibrated state dict loads
with ``strict=True`` into a freshly prepared model. Every module carries a :class:`~quantizer.core.spec.QuantSpec`
as ``quant_spec``. Weights and biases keep the parameter names of the float module they replace.

QIntLayerNorm and QIntSoftmax take the quantizers around them at call time (``in_q``, ``out_q``): their integer
arithmetic is defined by those grids, and this way no module holds a second reference to another.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, NamedTuple, Sequence, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quantizer.errors import UsageError
from quantizer.core.bits import BitType
from quantizer.core.observers import Granularity, make_observer
from quantizer.core.quantizers import (
    LOG2_RULES,
    SCALE_ROUNDINGS,
    Conventions,
    Log2Rule,
    ScaleRounding,
    dequantize,
    fake_quantize,
    floor_log2,
    log2_dequantize,
    log2_round,
    mse_per_channel,
    pow2,
    quantize,
    round_scale,
)
from quantizer.core.spec import QuantSpec

Mode = Literal["auto", "float", "calibrate", "search", "quant"]
MODES: tuple[str, ...] = ("auto", "float", "calibrate", "search", "quant")

GridScore = Callable[[Tensor, Tensor], Tensor]
"""Scores a candidate grid (scale, zero point) with a loss shaped like the scale; lower is better."""


@dataclass(frozen=True)
class QuantFormat:
    """What one quantizer computes: bit type, granularity, observer and how its scale is rounded.

    ``scale_rounding``: ``float`` keeps the observer's scale; ``nearest``/``ceil``/``floor`` round it to a power of
    two; ``adaptive`` picks among 2**(floor(log2 s) + {-1, 0, 1, 2}) by a score (P2-ViT).
    """

    bit_type: BitType
    granularity: Granularity = "tensor"
    observer: str = "minmax"
    scale_rounding: ScaleRounding = "float"

    def __post_init__(self) -> None:
        if self.scale_rounding not in SCALE_ROUNDINGS:
            raise UsageError(f"scale rounding must be one of {', '.join(SCALE_ROUNDINGS)}, "
                             f"got {self.scale_rounding!r}")

    @property
    def scale_kind(self) -> Literal["float", "pot"]:
        return "float" if self.scale_rounding == "float" else "pot"


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


class QuantModule(nn.Module):
    """Base of every quantized module: a calibration ``mode`` and a ``quant_spec``."""

    def __init__(self) -> None:
        super().__init__()
        self.mode: Mode = "auto"

    @property
    def quant_spec(self) -> QuantSpec:
        raise NotImplementedError

    def set_mode(self, mode: Mode) -> None:
        _check_mode(mode)
        self.mode = mode


def _quantizing(mode: Mode, calibrated: bool, what: str) -> bool:
    """Whether a module in ``mode`` fake-quantizes now; ``quant`` without a grid is an error."""
    if mode == "quant":
        if not calibrated:
            raise UsageError(f"{what} has no calibrated grid: calibrate the model (or load a calibrated state "
                             f"dict) before quant mode")
        return True
    return mode == "auto" and calibrated


# ---------------------------------------------------------------------------------------------------------------
# One grid: scale/zero-point buffers plus the observer that fills them
# ---------------------------------------------------------------------------------------------------------------
class UniformQuantizer(nn.Module):
    """A uniform grid in buffers (``scale``, ``zero_point``, ``calibrated``) and the observer that computes it.

    ``channels`` is the length of the channel axis ``channel_dim`` for per-channel formats (1 = per tensor).
    """

    scale: Tensor
    zero_point: Tensor
    calibrated: Tensor

    def __init__(self, fmt: QuantFormat, channels: int = 1, channel_dim: int = -1,
                 conventions: Conventions = Conventions()) -> None:
        super().__init__()
        if fmt.granularity == "channel" and channels < 1:
            raise ValueError("a per-channel quantizer needs its channel count")
        size = channels if fmt.granularity == "channel" else 1
        self.fmt = fmt
        self.channel_dim = channel_dim
        self.conventions = conventions
        self.observer = make_observer(fmt.observer, fmt.bit_type, fmt.granularity, channel_dim, conventions)
        self.register_buffer("scale", torch.ones(size))
        self.register_buffer("zero_point", torch.zeros(size))
        self.register_buffer("calibrated", torch.tensor(False))

    @property
    def bit_type(self) -> BitType:
        return self.fmt.bit_type

    @property
    def per_channel(self) -> bool:
        return self.fmt.granularity == "channel"

    @property
    def is_calibrated(self) -> bool:
        return bool(self.calibrated)

    def observe(self, x: Tensor) -> None:
        """Statistics phase: fold one calibration batch into the observer."""
        self.observer.update(x)

    def default_score(self, x: Tensor) -> GridScore:
        """Tensor MSE of ``x`` on a candidate grid, per channel or per tensor (the activation score)."""
        return lambda s, z: mse_per_channel(x, fake_quantize(x, s, z, self.bit_type, self.channel_dim),
                                            self.channel_dim, self.per_channel)

    def search(self, x: Tensor, score: GridScore | None = None) -> None:
        """Search phase: compute the grid from the statistics and the search batch ``x`` and store it.

        ``score`` ranks power-of-two candidates for ``adaptive`` rounding (default: tensor MSE of ``x``); the
        zero point found by the observer is kept for every candidate scale.
        """
        params = self.observer.compute(x)
        rank = score or self.default_score(x)
        scale = round_scale(params.scale, self.fmt.scale_rounding, lambda s: rank(s, params.zero_point))
        self.set_grid(scale, params.zero_point)

    def set_grid(self, scale: Tensor, zero_point: Tensor) -> None:
        """Store a grid (e.g. computed elsewhere) and mark the quantizer calibrated."""
        if scale.numel() != self.scale.numel() or zero_point.numel() != self.zero_point.numel():
            raise ValueError(f"grid of {scale.numel()} scales does not fit a quantizer of {self.scale.numel()}")
        self.scale.copy_(scale.reshape(self.scale.shape))
        self.zero_point.copy_(zero_point.reshape(self.zero_point.shape))
        self.calibrated.fill_(True)

    def quantize(self, x: Tensor) -> Tensor:
        """Integer codes of ``x`` (float tensor)."""
        return quantize(x, self.scale, self.zero_point, self.bit_type, self.channel_dim)

    def dequantize(self, q: Tensor) -> Tensor:
        return dequantize(q, self.scale, self.zero_point, self.channel_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Fake quantization of ``x`` on the stored grid."""
        return fake_quantize(x, self.scale, self.zero_point, self.bit_type, self.channel_dim)

    def extra_repr(self) -> str:
        f = self.fmt
        return f"{f.bit_type.name}, {f.granularity}, observer={f.observer}, scale={f.scale_rounding}"


def _act_spec(kind: str, act: QuantFormat, out_bits: int, extra: Mapping[str, Any] | None = None,
              weight: QuantFormat | None = None, scale_kind: str | None = None) -> QuantSpec:
    """The QuantSpec of a module reading activations of format ``act`` (and weights of format ``weight``)."""
    scale_kind = scale_kind or (weight or act).scale_kind
    return QuantSpec(
        kind=kind, act_bits=act.bit_type.bits, out_bits=out_bits,
        weight_bits=weight.bit_type.bits if weight else None,
        weight_granularity=weight.granularity if weight else "channel",
        act_granularity=act.granularity, scale_kind=scale_kind,  # type: ignore[arg-type]
        symmetric_weights=weight.bit_type.signed if weight else True,
        symmetric_acts=act.bit_type.signed, extra=dict(extra or {}),
    )


# ---------------------------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------------------------
class QAct(QuantModule):
    """Activation quantizer: observes in calibration, fake-quantizes in quant mode.

    ``channels`` is needed for per-channel formats (PTF); ``channel_dim`` is the channel axis of the tensors it
    sees (the last one for token tensors (B, N, C) and (B, H, W, C)).
    """

    def __init__(self, fmt: QuantFormat, channels: int = 1, channel_dim: int = -1,
                 conventions: Conventions = Conventions()) -> None:
        super().__init__()
        self.quantizer = UniformQuantizer(fmt, channels, channel_dim, conventions)

    @property
    def fmt(self) -> QuantFormat:
        return self.quantizer.fmt

    @property
    def quant_spec(self) -> QuantSpec:
        extra: dict[str, Any] = {"observer": self.fmt.observer}
        if self.fmt.observer == "ptf":
            extra["ptf"] = True
        return _act_spec("act", self.fmt, self.fmt.bit_type.bits, extra)

    @property
    def quantizing(self) -> bool:
        """True if the next forward fake-quantizes (quant mode, or auto with a calibrated grid)."""
        return _quantizing(self.mode, self.quantizer.is_calibrated, "activation quantizer")

    @property
    def scale(self) -> Tensor:
        return self.quantizer.scale

    @property
    def zero_point(self) -> Tensor:
        return self.quantizer.zero_point

    def forward(self, x: Tensor) -> Tensor:
        if self.mode in ("calibrate", "search"):
            self.quantizer.observe(x)
            if self.mode == "search":
                self.quantizer.search(x)
            return x
        return self.quantizer(x) if self.quantizing else x


# ---------------------------------------------------------------------------------------------------------------
# Weighted layers
# ---------------------------------------------------------------------------------------------------------------
class _QWeighted(QuantModule):
    """Shared logic of QLinear and QConv2d: one weight quantizer per weight format (per bit type, P4), one of
    them active (its index is the ``weight_format`` buffer, so it is saved with the model).

    The bias stays float: on integer hardware it is an int32 added at scale s_x * s_w, which this ignores.
    """

    kind: str = ""
    out_channel_dim: int = -1  # channel axis of the layer's output
    weight_format: Tensor

    def __init__(self, weight: Tensor, bias: Tensor | None, weight_formats: Sequence[QuantFormat],
                 act_format: QuantFormat, out_bits: int | None, conventions: Conventions) -> None:
        super().__init__()
        if not weight_formats:
            raise ValueError("a quantized layer needs at least one weight format")
        names = [f.bit_type.name for f in weight_formats]
        if len(set(names)) != len(names):
            raise ValueError(f"one weight format per bit type, got {names}")
        self.weight = weight
        self.bias = bias
        self.act_format = act_format
        self.out_bits = act_format.bit_type.bits if out_bits is None else out_bits
        self.weight_quantizers = nn.ModuleDict({
            f.bit_type.name: UniformQuantizer(f, weight.shape[0], 0, conventions) for f in weight_formats})
        self.register_buffer("weight_format", torch.tensor(0))

    def _compute(self, x: Tensor, weight: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def weight_quantizer(self) -> UniformQuantizer:
        """The active weight quantizer."""
        return cast(UniformQuantizer, list(self.weight_quantizers.values())[int(self.weight_format)])

    def select_weight_format(self, bit_type_name: str) -> None:
        """Make the quantizer of ``bit_type_name`` (e.g. ``int4``) the active one."""
        names = list(self.weight_quantizers.keys())
        if bit_type_name not in names:
            raise UsageError(f"no weight format {bit_type_name!r} (this layer has {', '.join(names)})")
        self.weight_format.fill_(names.index(bit_type_name))

    @property
    def quant_spec(self) -> QuantSpec:
        return _act_spec(self.kind, self.act_format, self.out_bits, weight=self.weight_quantizer.fmt)

    def output_score(self, x: Tensor, quantizer: UniformQuantizer) -> GridScore:
        """Layer-output MSE of a candidate weight grid on input ``x``, per output channel or per tensor."""
        reference = self._compute(x, self.weight)
        bit_type = quantizer.bit_type

        def score(scale: Tensor, zero_point: Tensor) -> Tensor:
            w_hat = fake_quantize(self.weight, scale, zero_point, bit_type, 0)
            return mse_per_channel(reference, self._compute(x, w_hat), self.out_channel_dim, quantizer.per_channel)

        return score

    def search_weights(self, x: Tensor) -> None:
        """Compute the grid of every weight format; ``adaptive`` ones are scored by layer-output MSE on ``x``."""
        w = self.weight.detach()
        for quantizer in self.weight_quantizers.values():
            assert isinstance(quantizer, UniformQuantizer)
            quantizer.observer.reset()
            quantizer.observe(w)
            score = self.output_score(x, quantizer) if quantizer.fmt.scale_rounding == "adaptive" else None
            quantizer.search(w, score)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "search":
            self.search_weights(x)
        elif self.mode not in ("calibrate", "float"):
            quantizer = self.weight_quantizer
            if _quantizing(self.mode, quantizer.is_calibrated, f"{self.kind} weight quantizer"):
                return self._compute(x, quantizer(self.weight))
        return self._compute(x, self.weight)


class QLinear(_QWeighted):
    """Linear layer with fake-quantized weights (per output channel or per tensor)."""

    kind = "linear"
    out_channel_dim = -1

    def __init__(self, weight: Tensor, bias: Tensor | None, *, weight_formats: Sequence[QuantFormat],
                 act_format: QuantFormat, out_bits: int | None = None,
                 conventions: Conventions = Conventions()) -> None:
        super().__init__(weight, bias, weight_formats, act_format, out_bits, conventions)

    @classmethod
    def from_float(cls, linear: nn.Linear, **kwargs: Any) -> "QLinear":
        """Wrap the parameters of ``linear`` (shared, not copied)."""
        return cls(linear.weight, linear.bias, **kwargs)

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def _compute(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight, self.bias)


class QConv2d(_QWeighted):
    """2-D convolution with fake-quantized weights (per output channel or per tensor)."""

    kind = "conv2d"
    out_channel_dim = 1

    def __init__(self, weight: Tensor, bias: Tensor | None, *, stride: tuple[int, int],
                 padding: tuple[int, int] | str, dilation: tuple[int, int], groups: int,
                 weight_formats: Sequence[QuantFormat], act_format: QuantFormat, out_bits: int | None = None,
                 conventions: Conventions = Conventions()) -> None:
        super().__init__(weight, bias, weight_formats, act_format, out_bits, conventions)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    @classmethod
    def from_float(cls, conv: nn.Conv2d, **kwargs: Any) -> "QConv2d":
        if conv.padding_mode != "zeros":
            raise UsageError(f"QConv2d supports zero padding only, got {conv.padding_mode!r}")
        return cls(conv.weight, conv.bias, stride=conv.stride, padding=conv.padding,  # type: ignore[arg-type]
                   dilation=conv.dilation, groups=conv.groups, **kwargs)  # type: ignore[arg-type]

    def _compute(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class QMatMul(QuantModule):
    """Activation x activation product (attention's q·kᵀ and attn·v). It computes in float on operands that
    its neighbours already quantized; it exists so the trace sees the product as a module with a QuantSpec."""

    def __init__(self, act_format: QuantFormat, out_bits: int | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.act_format = act_format
        self.out_bits = act_format.bit_type.bits if out_bits is None else out_bits
        self.extra = dict(extra or {})

    @property
    def quant_spec(self) -> QuantSpec:
        return _act_spec("matmul", self.act_format, self.out_bits, self.extra)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.matmul(a, b)


#: Elements per block of rows in the integer LayerNorm and LIS forwards: int64 temporaries of a few MiB stay in
#: cache and in malloc's reused heap (whole attention maps of tens of MiB are mapped and faulted in afresh on every
#: operation, which made the integer paths ~4x slower on CPU).
ROW_BLOCK_ELEMENTS = 1 << 18


def by_row_blocks(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``fn`` (an op on rows: the last axis whole, rows independent) applied block of rows by block of rows.

    Bit-identical to ``fn(x)``; only the size of the temporaries changes.
    """
    flat = x.reshape(-1, x.shape[-1])
    rows = max(1, ROW_BLOCK_ELEMENTS // max(1, x.shape[-1]))
    if flat.shape[0] <= rows:
        return fn(x)
    return torch.cat([fn(flat[i:i + rows]) for i in range(0, flat.shape[0], rows)]).reshape(x.shape)


# ---------------------------------------------------------------------------------------------------------------
# Integer LayerNorm (FQ-ViT, appendix Eqs. 31-32)
# ---------------------------------------------------------------------------------------------------------------
def dyadic(a: Tensor, bits: int = 8) -> tuple[Tensor, Tensor]:
    """(M, N) with M / 2**N ≈ |a|: N = clamp(bits - 1 - floor(log2|a|), 0, 31), M = clamp(floor(|a| 2**N),
    0, 2**bits - 1), so M is a ``bits``-bit mantissa and N a right shift. Both int64."""
    mag = a.abs().double()
    n = torch.clamp(bits - 1 - floor_log2(mag), 0, 31)
    m = torch.clamp(torch.floor(mag * pow2(n, mag)), 0, (1 << bits) - 1).to(torch.int64)
    return m, n


def shift_round_half_even(num: Tensor, shift: Tensor) -> Tensor:
    """round(num / 2**shift) for int64 tensors, ties to even, in integer arithmetic."""
    q = num >> shift
    rem = num - (q << shift)
    half = (torch.ones_like(shift) << shift) >> 1
    up = (rem > half) | ((rem == half) & (half > 0) & ((q & 1) == 1))
    return q + up.to(torch.int64)


def channel_shifts(in_scale: Tensor) -> Tensor:
    """Exponents a_c with s_c = s_min * 2**a_c; ValueError if the ratios are not powers of two."""
    ratio = (in_scale / in_scale.min()).double()
    shifts = floor_log2(ratio)
    if not torch.allclose(pow2(shifts, ratio), ratio, rtol=1e-5, atol=0.0):
        raise ValueError("integer LayerNorm needs power-of-two ratios between its input channel scales (PTF)")
    return shifts


class IntLayerNormResult(NamedTuple):
    y_int: Tensor  # output codes (int64), the output is y_int * out_scale
    m: Tensor  # per token and channel 8-bit multiplier (int64)
    n: Tensor  # per token and channel right shift (int64)
    x_int: Tensor  # input in units of the smallest input scale (int64)


def int_layernorm(x: Tensor, in_scale: Tensor, out_scale: Tensor, weight: Tensor | None, bias: Tensor | None,
                  eps: float, bits: int = 8) -> IntLayerNormResult:
    """FQ-ViT's integer LayerNorm over the last axis of ``x``, whose values lie on the input grid.

    Integer parts: alignment of channels by shifts, the sums Σx and Σx², the numerator C·Σx² - (Σx)², the
    multiply by M, the add of B and the rounding shift by N. **Float parts** (defect F5, declared): the square
    root, the division by std, and the folding of gamma, beta and the scales into A and B (float64 here); eps
    is added to the variance as in float LayerNorm.
    """
    channels = x.shape[-1]
    in_scale = in_scale.reshape(-1)
    if in_scale.numel() not in (1, channels):
        if channels % in_scale.numel():
            raise ValueError(f"{in_scale.numel()} input scales do not tile {channels} channels")
        in_scale = in_scale.repeat(channels // in_scale.numel())  # Swin patch merging: 4 sub-patches of C
    s_min = float(in_scale.min())
    x_int = torch.round(x / in_scale).to(torch.int64) << channel_shifts(in_scale)
    sum1 = x_int.sum(-1, keepdim=True)
    sum2 = (x_int * x_int).sum(-1, keepdim=True)
    var_num = channels * sum2 - sum1 * sum1
    mean = s_min * sum1.double() / channels
    std = torch.sqrt((s_min / channels) ** 2 * var_num.double() + eps)
    gamma = weight.double() if weight is not None else torch.ones(channels, dtype=torch.float64)
    beta = bias.double() if bias is not None else torch.zeros(channels, dtype=torch.float64)
    s_out = out_scale.reshape(-1).double()
    a = s_min * gamma / (std * s_out)
    b = (beta - mean * gamma / std) / s_out
    m, n = dyadic(a, bits)
    b_int = torch.round(b * pow2(n, b)).to(torch.int64)
    num = torch.sign(a).to(torch.int64) * m * x_int + b_int
    return IntLayerNormResult(shift_round_half_even(num, n), m, n, x_int)


class QIntLayerNorm(QuantModule):
    """LayerNorm that runs FQ-ViT's integer form once its input and output quantizers are calibrated.

    ``integer=False`` keeps it a float LayerNorm in every mode (FQ-ViT without ``--ptf``). Otherwise it is float
    in the ``float``/``calibrate``/``search`` modes (it must be: the grids do not exist yet, FQ-ViT issue #36) and
    integer in ``quant`` (and in ``auto`` once ``in_q`` and ``out_q`` quantize). The integer output y_int * s_out
    is then clamped onto the output grid by ``out_q``, which the caller applies next.
    """

    def __init__(self, normalized_shape: int, weight: nn.Parameter | None, bias: nn.Parameter | None, eps: float,
                 *, act_format: QuantFormat, out_bits: int | None = None, integer: bool = True,
                 dyadic_bits: int = 8) -> None:
        super().__init__()
        self.normalized_shape = (normalized_shape,)
        self.weight = weight
        self.bias = bias
        self.eps = eps
        self.act_format = act_format
        self.out_bits = act_format.bit_type.bits if out_bits is None else out_bits
        self.integer = integer
        self.dyadic_bits = dyadic_bits
        self.spec_extra: dict[str, Any] = {}  # facts a recipe adds to the QuantSpec (e.g. a folded output scale)

    @classmethod
    def from_float(cls, norm: nn.LayerNorm, **kwargs: Any) -> "QIntLayerNorm":
        if len(norm.normalized_shape) != 1:
            raise UsageError("QIntLayerNorm normalizes over the last axis only")
        return cls(norm.normalized_shape[0], norm.weight, norm.bias, norm.eps, **kwargs)

    @property
    def quant_spec(self) -> QuantSpec:
        extra: dict[str, Any] = {"layernorm": "int" if self.integer else "float"}
        if self.integer:
            extra["dyadic_bits"] = self.dyadic_bits
            extra["float_parts"] = "sqrt, 1/std, A and B folding of gamma, beta and scales"
        extra.update(self.spec_extra)
        return _act_spec("layernorm", self.act_format, self.out_bits, extra)

    def integer_active(self, in_q: QAct | None, out_q: QAct | None) -> bool:
        """Whether the next forward runs the integer form."""
        if not self.integer or self.mode in ("float", "calibrate", "search"):
            return False
        if in_q is None or out_q is None:
            if self.mode == "quant":
                raise ValueError("integer LayerNorm needs its input and output quantizers")
            return False
        return in_q.quantizing and out_q.quantizing

    def forward(self, x: Tensor, in_q: QAct | None = None, out_q: QAct | None = None,
                out_scale: Tensor | None = None) -> Tensor:
        """LayerNorm of ``x``; ``out_scale`` overrides ``out_q``'s scale as the integer output grid (e.g. a
        per-channel scale that folds P2-ViT's smoothing factors into the LayerNorm)."""
        if not self.integer_active(in_q, out_q):
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        assert in_q is not None and out_q is not None
        scale = out_q.scale if out_scale is None else out_scale

        def rows(block: Tensor) -> Tensor:
            result = int_layernorm(block, in_q.scale, scale, self.weight, self.bias, self.eps, self.dyadic_bits)
            return (result.y_int.double() * scale.reshape(-1).double()).to(x.dtype)

        return by_row_blocks(rows, x)


# ---------------------------------------------------------------------------------------------------------------
# Log-Int-Softmax (FQ-ViT; integer exp from I-BERT)
# ---------------------------------------------------------------------------------------------------------------
IEXP_X0 = -0.6931  # -ln 2 as FQ-ViT writes it
IEXP_A, IEXP_B, IEXP_C = 0.35815147, 0.96963238, 1.0  # exp(r) ≈ a r² + b r + c on (-ln 2, 0]
ACCUMULATOR_BITS = 64


def int_exp(x_int: Tensor, scale: float, exp_shift: int, row_len: int) -> tuple[Tensor, int]:
    """I-BERT's integer exp of non-positive int64 codes ``x_int`` at ``scale``, in int64.

    Returns (exp_int, pre_shift): exp_int ≈ exp(x_int * scale) * 2**(exp_shift - pre_shift) / (a scale²).
    Range analysis (F4): exp_int <= c_int * 2**exp_shift with c_int = floor(1 / (a scale²)), so a row of
    ``row_len`` entries sums to at most row_len * c_int * 2**exp_shift; ``pre_shift`` (0 for any realistic
    scale) drops that many low bits so the sum stays below 2**62.
    """
    x0_int = math.floor(IEXP_X0 / scale)
    b_int = math.floor(IEXP_B / IEXP_A / scale)
    c_int = math.floor(IEXP_C / IEXP_A / scale ** 2)
    pre_shift = max(0, (row_len * max(c_int, 1)).bit_length() + exp_shift - (ACCUMULATOR_BITS - 2))
    x_int = torch.clamp(x_int, min=exp_shift * x0_int)
    q = torch.div(x_int, x0_int, rounding_mode="floor")
    r = x_int - q * x0_int
    z = r * (r + b_int) + c_int
    shift = exp_shift - pre_shift - q
    out = torch.where(shift >= 0, z << shift.clamp(min=0), z >> (-shift).clamp(min=0))
    return out.clamp(min=0), pre_shift


def div_round_half_even(num: Tensor, den: Tensor) -> Tensor:
    """round(num / den) for positive int64 tensors, ties to even, in integer arithmetic."""
    q = torch.div(num, den, rounding_mode="floor")
    twice_rem = 2 * (num - q * den)
    up = (twice_rem > den) | ((twice_rem == den) & ((q & 1) == 1))
    return q + up.to(torch.int64)


class LisResult(NamedTuple):
    codes: Tensor  # int64 log2 codes k (output 2**-k), -1 where the output is 0
    values: Tensor  # 2**-codes as float (0 where codes == -1)
    exp_int: Tensor  # the integer exponentials
    ratio: Tensor  # round(Σ exp_int / exp_int), the integer ≈ 1 / p


def log_int_softmax(x: Tensor, scale: float, bits: int = 4, rule: Log2Rule = "linear",
                    exp_shift: int = 30) -> LisResult:
    """Log-Int-Softmax over the last axis of ``x`` (values on a grid of step ``scale``; entries off the grid,
    e.g. Swin's -100 mask, are rounded onto it).

    x_int = round(x / scale) - row max; integer exp; ratio = round(Σ exp / exp) (integer division, ties to
    even); k = log2_round(ratio, rule); k >= 2**bits gives 0, else the output is 2**-k. All integer steps use
    int64 accumulators (fixes F4).
    """
    x_int = torch.round(x / scale).to(torch.int64)
    x_int = x_int - x_int.amax(dim=-1, keepdim=True)
    exp_int, _ = int_exp(x_int, scale, exp_shift, x.shape[-1])
    total = exp_int.sum(dim=-1, keepdim=True)
    positive = exp_int > 0
    ratio = div_round_half_even(total, torch.where(positive, exp_int, torch.ones_like(exp_int)))
    k = log2_round(ratio, rule)
    codes = torch.where(positive & (k < (1 << bits)), k, torch.full_like(k, -1))
    return LisResult(codes, log2_dequantize(codes, x.dtype), exp_int, ratio)


class QIntSoftmax(QuantModule):
    """Softmax over the last axis that becomes Log-Int-Softmax (``bits``-bit log2 output) once its input
    quantizer ``in_q`` (passed at call time, per tensor) has a grid; until then a float softmax."""

    def __init__(self, *, act_format: QuantFormat, bits: int = 4, rule: Log2Rule = "linear",
                 exp_shift: int = 30) -> None:
        super().__init__()
        if rule not in LOG2_RULES:
            raise UsageError(f"log2 rounding rule must be 'linear' or 'log', got {rule!r}")
        self.act_format = act_format
        self.bits = bits
        self.rule: Log2Rule = rule
        self.exp_shift = exp_shift

    @property
    def quant_spec(self) -> QuantSpec:
        extra = {"softmax": "lis", "exp_shift": self.exp_shift, "log2_rule": self.rule,
                 "accumulator_bits": ACCUMULATOR_BITS}
        return _act_spec("softmax", self.act_format, self.bits, extra, scale_kind="log2")

    def lis_active(self, in_q: QAct | None) -> bool:
        """Whether the next forward runs LIS (needs a calibrated per-tensor input grid)."""
        if self.mode in ("float", "calibrate", "search"):
            return False
        if in_q is None:
            if self.mode == "quant":
                raise ValueError("Log-Int-Softmax needs its input quantizer")
            return False
        return in_q.quantizing

    def forward(self, x: Tensor, in_q: QAct | None = None) -> Tensor:
        if not self.lis_active(in_q):
            return x.softmax(dim=-1)
        assert in_q is not None
        if in_q.scale.numel() != 1:
            raise ValueError("Log-Int-Softmax needs a per-tensor input scale")
        scale = float(in_q.scale)
        return by_row_blocks(lambda rows: log_int_softmax(rows, scale, self.bits, self.rule, self.exp_shift).values,
                             x)
