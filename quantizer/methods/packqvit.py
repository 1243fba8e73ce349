"""PackQViT (Dong et al., NeurIPS 2023): fully sub-8-bit quantization-aware training of ViT/DeiT, in place on timm.

What the method does (docs page: packqvit.md; "reading" marks a documented interpretation where the paper's exact
formula was not available):

* placement: FQ-ViT's (``fqvit.prepare_vit``): every tensor between two ops is quantized; weights per output
  channel, activations per tensor, ``cfg.w_bits`` / ``cfg.a_bits``; the patch embedding and the classifier head
  (weights and inputs) at ``embed_head_bits`` (8, as the authors' ``quant_vit.py`` keeps the head); the logits stay
  at accumulator width (int32), as there;
* long-tailed activations: post-softmax values are 4-bit log2 codes (``attn_bits``); post-GELU values are signed
  log2 codes of ``a_bits`` (``log2_gelu``; off: a uniform grid whose scale, learned in QAT, is the clipping);
* residual links (every tensor that feeds a LayerNorm): outlier-aware grids. The ``outlier_channels`` channels with
  the widest calibration ranges are predicted once, after calibration (buffer ``outlier_index``, never recomputed),
  and get their own scales s·2^a (a in 0..``outlier_max_shift``, the "regularized" power-of-two multiples of the
  shared scale s of the other channels), so the integer LayerNorm aligns them with shifts (reading);
* integer-only non-linears: Int-2^n-Softmax on the q·kᵀ accumulator (``quantizer.core.int_exp2``), FQ-ViT's
  integer LayerNorm (``QIntLayerNorm``, float parts declared), and an integer GELU x·σ(1.702x) with a base-2
  exponential on the fc1 accumulator (I-ViT-style ShiftGELU, reading). The MLP keeps GELU (the authors' code swaps
  in Hardswish, which would change the float model);
* training: PTQ initialisation (FQ-ViT's protocol: statistics on every calibration batch, grids on the last), then
  ``qat_steps`` steps of AdamW on the calibration images against the float model's own predictions (hard
  distillation, the authors' ``run.sh`` recipe, with the float model as the teacher). Rounding passes gradients
  straight through (STE); scales are learned (LSQ-style, in the log domain) unless ``learn_scales`` is false; the
  integer softmax, LayerNorm and GELU run forward and pass the float function's gradient back.

``cfg.options`` (all optional):

==================  ======================================  ====================================================
key                 values (default first)                  meaning
==================  ======================================  ====================================================
qat_steps           300 (0..100000)                         QAT optimizer steps (0: the PTQ initialisation only)
qat_batch           32 (1..4096)                            images per step, drawn from the calibration images
lr                  1e-4 (> 0)                              AdamW learning rate of the weights (cosine decay)
scale_lr            1e-3 (> 0)                              AdamW learning rate of the log-scales
weight_decay        0.0 (>= 0)                              AdamW weight decay (run.sh: 0)
learn_scales        true, false                             learn every scale in QAT, or keep the PTQ scales
distill             hard, soft                              CE to the float model's argmax, or KL to its softmax
log2_softmax        true, false                             log2 (else uniform 2^-bits) softmax output codes
log2_gelu           true, false                             signed log2 post-GELU codes (else uniform, clipped)
attn_bits           4 (2..8)                                bits of the softmax output
outlier_channels    0.05 (count >= 0, or fraction in 0..1)  residual channels with their own scales
outlier_max_shift   3 (0..8)                                largest exponent a of an outlier scale s·2^a
embed_head_bits     8 (2..8)                                patch embedding and head: weights and input
log2_rule           linear, log                             rounding of log2 codes (FQ-ViT's F8)
input_quant         auto, true, false                       quantize the image (auto: not for mean = std = 0.5)
progress            true, false                             QAT progress bar on stderr (terminals only)
==================  ======================================  ====================================================
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence, cast

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from quantizer.calibrate import calibrate_model, set_mode
from quantizer.core.bits import BitType, check_bits
from quantizer.core.int_exp2 import (EXP2_FRAC_BITS, EXP2_OUT_BITS, GELU_SIGMOID_COEFF, SIGMOID_BITS, SoftmaxOutput,
                                     int2n_softmax, int_gelu_values)
from quantizer.core.modules import (ACCUMULATOR_BITS, QAct, QConv2d, QIntLayerNorm, QLinear, QuantFormat,
                                    QuantModule, UniformQuantizer, _QWeighted, _quantizing, by_row_blocks)
from quantizer.core.quantizers import (MIN_SCALE, Log2Rule, broadcast_to_channels, log2_codes, log2_dequantize,
                                       pow2, zero_point_for)
from quantizer.core.spec import QuantSpec
from quantizer.errors import UsageError
from quantizer.methods.base import Method, QuantConfig, register_method
from quantizer.methods.fqvit import ACT_OBSERVERS, FqVitRecipe, QAttention, QBlock, QMlp, prepare_vit

# ---------------------------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------------------------
_CHOICES: dict[str, tuple[Any, ...]] = {
    "learn_scales": (True, False), "distill": ("hard", "soft"), "log2_softmax": (True, False),
    "log2_gelu": (True, False), "log2_rule": ("linear", "log"), "input_quant": ("auto", True, False),
    "progress": (True, False),
}
_INTS: dict[str, tuple[int, int, int]] = {  # key: (default, lo, hi)
    "qat_steps": (300, 0, 100_000), "qat_batch": (32, 1, 4096), "attn_bits": (4, 2, 8),
    "outlier_max_shift": (3, 0, 8), "embed_head_bits": (8, 2, 8),
}
_FLOATS: dict[str, tuple[float, float, bool]] = {  # key: (default, lo, lo_inclusive)
    "lr": (1e-4, 0.0, False), "scale_lr": (1e-3, 0.0, False), "weight_decay": (0.0, 0.0, True),
}
_OUTLIERS_DEFAULT = 0.05


def _choice(options: Mapping[str, Any], key: str) -> Any:
    choices = _CHOICES[key]
    value = options.get(key, choices[0])
    if not any(type(value) is type(c) and value == c for c in choices):  # 1 is not True here
        raise UsageError(f"packqvit option {key} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def _int(options: Mapping[str, Any], key: str) -> int:
    default, lo, hi = _INTS[key]
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UsageError(f"packqvit option {key} must be an integer from {lo} to {hi}, got {value!r}")
    return value


def _float(options: Mapping[str, Any], key: str) -> float:
    """A number; text such as "1e-4" is accepted because YAML 1.1 (the CLI's --option parser) reads it as text."""
    default, lo, inclusive = _FLOATS[key]
    value = options.get(key, default)
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < lo or (number == lo and not inclusive):
        bound = f">= {lo:g}" if inclusive else f"> {lo:g}"
        raise UsageError(f"packqvit option {key} must be a number {bound}, got {value!r}")
    return number


def _outliers(options: Mapping[str, Any]) -> float | int:
    value = options.get("outlier_channels", _OUTLIERS_DEFAULT)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and 0.0 <= value < 1.0:
        return value
    raise UsageError(f"packqvit option outlier_channels must be a channel count (integer >= 0) or a fraction in "
                     f"[0, 1), got {value!r}")


@dataclass(frozen=True)
class PackQVitOptions:
    """The validated ``cfg.options`` of a packqvit run (see the module docstring)."""

    qat_steps: int = 300
    qat_batch: int = 32
    lr: float = 1e-4
    scale_lr: float = 1e-3
    weight_decay: float = 0.0
    learn_scales: bool = True
    distill: str = "hard"
    log2_softmax: bool = True
    log2_gelu: bool = True
    attn_bits: int = 4
    outlier_channels: float | int = _OUTLIERS_DEFAULT
    outlier_max_shift: int = 3
    embed_head_bits: int = 8
    log2_rule: Log2Rule = "linear"
    input_quant: bool | None = None
    progress: bool = True

    @classmethod
    def from_config(cls, cfg: QuantConfig) -> "PackQVitOptions":
        options = dict(cfg.options)
        known = set(_CHOICES) | set(_INTS) | set(_FLOATS) | {"outlier_channels"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(f"unknown packqvit option(s): {', '.join(unknown)}")
        input_quant = _choice(options, "input_quant")
        return cls(
            qat_steps=_int(options, "qat_steps"), qat_batch=_int(options, "qat_batch"), lr=_float(options, "lr"),
            scale_lr=_float(options, "scale_lr"), weight_decay=_float(options, "weight_decay"),
            attn_bits=_int(options, "attn_bits"), outlier_max_shift=_int(options, "outlier_max_shift"),
            embed_head_bits=_int(options, "embed_head_bits"), learn_scales=_choice(options, "learn_scales"),
            distill=_choice(options, "distill"),
            log2_softmax=_choice(options, "log2_softmax"), log2_gelu=_choice(options, "log2_gelu"),
            outlier_channels=_outliers(options), log2_rule=_choice(options, "log2_rule"),
            input_quant=None if input_quant == "auto" else input_quant, progress=_choice(options, "progress"),
        )

    def outlier_count(self, channels: int) -> int:
        """Outlier channels of a residual tensor of ``channels`` channels (a fraction rounds to nearest; at least
        one channel always keeps the shared scale)."""
        value = self.outlier_channels
        count = value if isinstance(value, int) else int(round(value * channels))
        return max(0, min(count, channels - 1))


def check_config(cfg: QuantConfig) -> PackQVitOptions:
    """The options of ``cfg``, after the checks of what packqvit does not have (one-line UsageErrors)."""
    check_bits(cfg.w_bits, "weight bits")
    check_bits(cfg.a_bits, "activation bits")
    if cfg.observer not in ACT_OBSERVERS:
        raise UsageError(f"packqvit observer must be one of {', '.join(ACT_OBSERVERS)}, got {cfg.observer!r}")
    if cfg.mixed:
        raise UsageError("packqvit has no mixed precision (that is p2vit)")
    if cfg.ptf or cfg.lis:
        raise UsageError("packqvit has its own residual grids and softmax: --ptf / --lis do not apply to it")
    return PackQVitOptions.from_config(cfg)


# ---------------------------------------------------------------------------------------------------------------
# Quantization-aware training: straight-through rounding and learnable scales
# ---------------------------------------------------------------------------------------------------------------
def round_ste(x: Tensor) -> Tensor:
    """round(x) forward (half to even), identity backward: the straight-through estimator."""
    return x + (torch.round(x) - x).detach()


def ste_through(reference: Tensor, value: Tensor) -> Tensor:
    """``value`` forward, the gradient of ``reference`` backward (an integer kernel trained through its float twin)."""
    return reference + (value - reference).detach()


class QatQuantizer(UniformQuantizer):
    """A UniformQuantizer that, while QAT runs, fake-quantizes with straight-through rounding and (optionally) a
    learnable scale.

    The scale is learned in the log domain (positive, scale-free steps): s = exp(θ) per element, or, for a
    ``shared_base`` quantizer (the outlier-aware residual grids), s_c = exp(θ)·2^a_c with one θ and the exponents
    a_c fixed, so outlier channels keep their power-of-two ratios. Outside QAT it is exactly a UniformQuantizer.
    """

    shared_base: bool = False
    qat_on: bool = False
    qat_log_scale: Tensor | None = None
    qat_ratio: Tensor | None = None

    def start_qat(self, learn_scale: bool) -> Tensor | None:
        """Straight-through rounding from now on; with ``learn_scale``, returns the leaf tensor to optimize."""
        self.qat_on = True
        if not learn_scale:
            return None
        base = self.scale.detach().clone()
        if self.shared_base:
            base = base.min().reshape(1)
            self.qat_ratio = self.scale.detach() / base
        self.qat_log_scale = base.log().requires_grad_(True)
        return self.qat_log_scale

    def current_scale(self) -> Tensor:
        if self.qat_log_scale is None:
            return self.scale
        scale = torch.exp(self.qat_log_scale)
        if self.qat_ratio is not None:
            scale = scale * self.qat_ratio
        return scale.clamp(min=MIN_SCALE)

    @torch.no_grad()
    def sync(self) -> None:
        """Copy the learned scale into the ``scale`` buffer (what the integer kernels and the state dict read)."""
        if self.qat_log_scale is not None:
            self.scale.copy_(self.current_scale().reshape(self.scale.shape))

    def stop_qat(self) -> None:
        self.sync()
        self.qat_on = False
        self.qat_log_scale = self.qat_ratio = None

    def forward(self, x: Tensor) -> Tensor:
        if not self.qat_on:
            return super().forward(x)
        scale = broadcast_to_channels(self.current_scale(), x.dim(), self.channel_dim)
        zero = broadcast_to_channels(self.zero_point, x.dim(), self.channel_dim)
        q = torch.clamp(round_ste(x / scale) + zero, self.bit_type.qmin, self.bit_type.qmax)
        return (q - zero) * scale


class QLog2Act(QuantModule):
    """Signed log2 activation quantizer for long-tailed tensors (post-GELU): x̂ = sign(x)·s·2^-k with a
    (bits - 1)-bit code k (0 .. 2^(bits-1) - 1, smaller magnitudes become 0) and one per-tensor scale s.

    Calibration (reading): s is searched on the search batch among max|x|·2^(-j/8), j = 0..15, by tensor MSE; the
    observe phase keeps the running max|x|. In QAT, s is learned like the uniform scales (d x̂/ds = sign·2^-k, the
    input's gradient passes straight through inside [-s, s]).
    """

    scale: Tensor
    calibrated: Tensor
    SEARCH_STEPS = 16

    def __init__(self, bits: int, rule: Log2Rule = "linear") -> None:
        super().__init__()
        if not 2 <= bits <= 8:
            raise UsageError(f"log2 activation bits must be 2..8, got {bits}")
        self.bits = bits
        self.rule: Log2Rule = rule
        self.register_buffer("scale", torch.ones(1))
        self.register_buffer("calibrated", torch.tensor(False))
        self.absmax: Tensor | None = None
        self.qat_on = False
        self.qat_log_scale: Tensor | None = None

    @property
    def quant_spec(self) -> QuantSpec:
        return QuantSpec(kind="act", act_bits=self.bits, out_bits=self.bits, act_granularity="tensor",
                         scale_kind="log2", symmetric_acts=True,
                         extra={"observer": "log2_mse", "log2": "signed", "log2_rule": self.rule})

    @property
    def quantizing(self) -> bool:
        return _quantizing(self.mode, bool(self.calibrated), "log2 activation quantizer")

    def units(self, x: Tensor, scale: Tensor) -> Tensor:
        """sign(x)·2^-k (0 where the magnitude underflows): the quantized value in units of the scale."""
        codes = log2_codes((x.abs() / scale).detach(), self.bits - 1, self.rule)
        return torch.sign(x.detach()) * log2_dequantize(codes, x.dtype)

    def search(self, x: Tensor) -> None:
        assert self.absmax is not None
        top = float(self.absmax.clamp(min=MIN_SCALE))
        best: tuple[float, float] | None = None
        for j in range(self.SEARCH_STEPS):
            s = torch.tensor([top * 2.0 ** (-j / 8)])
            loss = float((self.units(x, s) * s - x).pow(2).mean())
            if best is None or loss < best[0]:
                best = (loss, float(s))
        assert best is not None
        self.scale.fill_(best[1])
        self.calibrated.fill_(True)

    def start_qat(self, learn_scale: bool) -> Tensor | None:
        self.qat_on = True
        if not learn_scale:
            return None
        self.qat_log_scale = self.scale.detach().clone().log().requires_grad_(True)
        return self.qat_log_scale

    def current_scale(self) -> Tensor:
        if self.qat_log_scale is None:
            return self.scale
        return torch.exp(self.qat_log_scale).clamp(min=MIN_SCALE)

    @torch.no_grad()
    def sync(self) -> None:
        if self.qat_log_scale is not None:
            self.scale.copy_(self.current_scale())

    def stop_qat(self) -> None:
        self.sync()
        self.qat_on = False
        self.qat_log_scale = None

    def forward(self, x: Tensor) -> Tensor:
        if self.mode in ("calibrate", "search"):
            batch_max = x.detach().abs().amax().reshape(1).float()
            self.absmax = batch_max if self.absmax is None else torch.maximum(self.absmax, batch_max)
            if self.mode == "search":
                self.search(x.detach())
            return x
        if not self.quantizing:
            return x
        if not self.qat_on:
            return self.units(x, self.scale) * self.scale
        scale = self.current_scale()
        clipped = torch.maximum(torch.minimum(x, scale), -scale)
        return self.units(x, scale) * scale + (clipped - clipped.detach())

    def extra_repr(self) -> str:
        return f"signed log2, {self.bits} bits, rule={self.rule}"


# ---------------------------------------------------------------------------------------------------------------
# Residual links: outlier-aware grids
# ---------------------------------------------------------------------------------------------------------------
class QOutlierAct(QAct):
    """Quantizer of a residual link: one shared scale s for ordinary channels, s·2^a_c for the predicted outlier
    channels (``outlier_index``, fixed after calibration), per-channel zero points. Class-swapped onto a per-channel
    minmax QAct, whose statistics it reads once after calibration (:meth:`set_outlier_grid`)."""

    outlier_index: Tensor
    max_shift: int

    @property
    def outliers(self) -> int:
        return int(self.outlier_index.numel())

    @property
    def quant_spec(self) -> QuantSpec:
        spec = super().quant_spec
        extra = {**spec.extra, "outlier_aware": True, "outliers": self.outliers, "outlier_scale": "pot_multiple",
                 "max_shift": self.max_shift}
        return replace(spec, extra=extra)

    @torch.no_grad()
    def set_outlier_grid(self) -> None:
        """Predict the outlier channels (widest calibration ranges) and set the grid from the observed ranges.

        range_c = max(hi_c, 0) - min(lo_c, 0); the ``outliers`` widest channels (ties to the lower index) are the
        outliers; R = the widest range among the others, s = R / (qmax - qmin); outlier c gets a_c =
        clamp(ceil(log2(range_c / R)), 0, max_shift); z_c = qmin - round(min(lo_c, 0) / s_c).
        """
        q = self.quantizer
        lo, hi = q.observer.observed_range()
        lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
        span = (hi - lo).clamp(min=MIN_SCALE)
        order = torch.sort(span, descending=True, stable=True).indices
        index = order[: self.outliers].sort().values
        ordinary = torch.ones_like(span, dtype=torch.bool)
        ordinary[index] = False
        widest = span[ordinary].max()
        base = (widest / (q.bit_type.qmax - q.bit_type.qmin)).clamp(min=MIN_SCALE)
        shift = torch.zeros_like(span, dtype=torch.int64)
        ratio = (span[index] / widest).double()
        shift[index] = torch.ceil(torch.log2(ratio)).to(torch.int64).clamp(0, self.max_shift)
        scale = base * pow2(shift, base)
        q.set_grid(scale, zero_point_for(lo, scale, q.bit_type))
        self.outlier_index.copy_(index)


def _make_outlier_act(qact: nn.Module, count: int, max_shift: int) -> QOutlierAct:
    assert isinstance(qact, QAct) and qact.quantizer.per_channel
    qact.__class__ = QOutlierAct
    qact.register_buffer("outlier_index", torch.zeros(count, dtype=torch.int64))
    setattr(qact, "max_shift", max_shift)  # a plain int attribute (nn.Module's typing expects tensors/modules)
    setattr(qact.quantizer, "shared_base", True)  # read once the quantizer is a QatQuantizer (prepare_packqvit)
    return cast(QOutlierAct, qact)


# ---------------------------------------------------------------------------------------------------------------
# Integer non-linears as modules
# ---------------------------------------------------------------------------------------------------------------
def _training(x: Tensor) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


class QInt2nSoftmax(QuantModule):
    """Softmax over the last axis that runs Int-2^n-Softmax on the q·kᵀ accumulator once the q/k quantizer has a
    grid: the input step is S = s_qk²·d^-1/2 (``in_q`` per tensor, ``logit_scale`` the attention's 1/√d), so no
    quantizer sits between q·kᵀ and the softmax. Float softmax before calibration (2^(x·log2 e) = e^x)."""

    def __init__(self, *, bits: int = 4, log2: bool = True, rule: Log2Rule = "linear") -> None:
        super().__init__()
        self.bits = bits
        self.log2 = log2
        self.rule: Log2Rule = rule

    @property
    def quant_spec(self) -> QuantSpec:
        extra = {"softmax": "int2n", "exp_base": 2, "exp2": "shift + line 1 - f/2", "input": "qk accumulator",
                 "output": "log2" if self.log2 else "uniform", "log2_rule": self.rule,
                 "frac_bits": EXP2_FRAC_BITS, "exp_bits": EXP2_OUT_BITS, "accumulator_bits": ACCUMULATOR_BITS}
        return QuantSpec(kind="softmax", act_bits=32, out_bits=self.bits, act_granularity="tensor",
                         scale_kind="log2" if self.log2 else "pot", symmetric_acts=False, extra=extra)

    def integer_active(self, in_q: QAct | None) -> bool:
        if self.mode in ("float", "calibrate", "search"):
            return False
        if in_q is None:
            if self.mode == "quant":
                raise ValueError("Int-2^n-Softmax needs the q/k quantizer")
            return False
        return in_q.quantizing

    def forward(self, x: Tensor, in_q: QAct | None = None, logit_scale: float = 1.0) -> Tensor:
        if not self.integer_active(in_q):
            return x.softmax(dim=-1)
        assert in_q is not None
        if in_q.scale.numel() != 1:
            raise ValueError("Int-2^n-Softmax needs a per-tensor q/k scale")
        step = float(in_q.scale) ** 2 * logit_scale
        output: SoftmaxOutput = "log2" if self.log2 else "uniform"
        values = by_row_blocks(
            lambda rows: int2n_softmax(rows.detach(), step, self.bits, output, self.rule).values, x)
        return ste_through(x.softmax(dim=-1), values) if _training(x) else values


class QIntGelu(QuantModule):
    """GELU that runs the integer x·σ(1.702x) (:func:`quantizer.core.int_exp2.int_gelu`) on the fc1 accumulator
    once fc1's input and weights have grids: input step s_x·s_w[c] per output channel, the bias an int32 at that
    step. Exact float GELU before calibration."""

    def __init__(self, a_bits: int) -> None:
        super().__init__()
        self.a_bits = a_bits

    @property
    def quant_spec(self) -> QuantSpec:
        extra = {"gelu": "int", "form": "x·sigmoid(1.702x)", "sigmoid_coeff": GELU_SIGMOID_COEFF, "exp_base": 2,
                 "exp2": "shift + line 1 - f/2", "input": "fc1 accumulator", "sigmoid_bits": SIGMOID_BITS,
                 "accumulator_bits": ACCUMULATOR_BITS}
        return QuantSpec(kind="gelu", act_bits=32, out_bits=32, act_granularity="channel", scale_kind="float",
                         symmetric_acts=True, extra=extra)

    def integer_active(self, in_q: QAct | None, layer: _QWeighted | None) -> bool:
        if self.mode in ("float", "calibrate", "search"):
            return False
        if in_q is None or layer is None:
            if self.mode == "quant":
                raise ValueError("the integer GELU needs fc1 and its input quantizer")
            return False
        return in_q.quantizing and layer.weight_quantizer.is_calibrated

    def forward(self, x: Tensor, in_q: QAct | None = None, layer: _QWeighted | None = None) -> Tensor:
        if not self.integer_active(in_q, layer):
            return F.gelu(x)
        assert in_q is not None and layer is not None
        if in_q.scale.numel() != 1:
            raise ValueError("the integer GELU needs a per-tensor fc1 input scale")
        step = in_q.scale * layer.weight_quantizer.scale  # per output channel of fc1
        values = by_row_blocks(lambda rows: int_gelu_values(rows.detach(), step), x)
        return ste_through(F.gelu(x), values) if _training(x) else values


class PackIntLayerNorm(QIntLayerNorm):
    """FQ-ViT's integer LayerNorm, trained through: its integer output forward, float LayerNorm's gradient back."""

    def forward(self, x: Tensor, in_q: QAct | None = None, out_q: QAct | None = None,
                out_scale: Tensor | None = None) -> Tensor:
        y = super().forward(x, in_q, out_q, out_scale)
        if not (_training(x) and self.integer_active(in_q, out_q)):
            return y
        return ste_through(F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps), y)


# ---------------------------------------------------------------------------------------------------------------
# The rewritten timm pieces (class-swapped: same data, PackQViT's forward)
# ---------------------------------------------------------------------------------------------------------------
class PackLinear(QLinear):
    """QLinear whose QuantSpec also says how its input is coded (fc2 reads signed log2 post-GELU codes)."""

    spec_extra: dict[str, Any]

    @property
    def quant_spec(self) -> QuantSpec:
        spec = super().quant_spec
        return replace(spec, extra={**spec.extra, **self.spec_extra})


class PackAttention(QAttention):
    """Attention: qkv -> qact1 (q, k, v share its grid), q·kᵀ·d^-1/2 at accumulator width -> Int-2^n-Softmax ->
    attn·v (reads the log2 codes) -> qact2, proj -> qact3."""

    softmax: QInt2nSoftmax

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        if attn_mask is not None or is_causal:
            raise UsageError("packqvit attention does not support attention masks")
        batch, tokens, _ = x.shape
        qkv = self.qact1(self.qkv(x)).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        logits = self.matmul_qk(q, k.transpose(-2, -1)) * self.scale
        attn = self.attn_drop(self.softmax(logits, self.qact1, self.scale))
        x = self.matmul_av(attn, v).transpose(1, 2).reshape(batch, tokens, self.num_heads * self.head_dim)
        return self.proj_drop(self.qact3(self.proj(self.qact2(x))))


class PackMlp(QMlp):
    """MLP: fc1 (accumulator) -> integer GELU -> qact1 (signed log2, or uniform) -> fc2 -> qact2."""

    act: QIntGelu

    def forward(self, x: Tensor, in_q: QAct | None = None) -> Tensor:
        h = self.act(self.fc1(x), in_q, cast(_QWeighted, self.fc1))
        h = self.qact1(self.drop1(h))
        return self.drop2(self.qact2(self.fc2(h)))


class PackBlock(QBlock):
    """FQ-ViT's block, with fc1's input quantizer passed to the MLP (the integer GELU reads its scale)."""

    def forward(self, x: Tensor, in_q: QAct) -> Tensor:  # type: ignore[override]
        h = self.qact1(self.norm1(x, in_q, self.qact1))
        x = self.qact2(x + self.drop_path1(self.ls1(self.attn(h))))
        h = self.qact3(self.norm2(x, self.qact2, self.qact3))
        return self.qact4(x + self.drop_path2(self.ls2(self.mlp(h, self.qact3))))


def build_recipe(cfg: QuantConfig, opts: PackQVitOptions) -> FqVitRecipe:
    """FQ-ViT's placement with PackQViT's formats: uint activations per tensor, int weights per channel, per-channel
    statistics on the residual links (their grids are set by :meth:`QOutlierAct.set_outlier_grid`)."""
    act = QuantFormat(BitType(cfg.a_bits, signed=False), "tensor", cfg.observer)
    return FqVitRecipe(act=act, residual=QuantFormat(act.bit_type, "channel", "minmax"),
                       weights=(QuantFormat(BitType(cfg.w_bits, signed=True), "channel", "minmax"),),
                       integer_layernorm=True, lis=False, input_quant=opts.input_quant)


def _edge_layers(model: VisionTransformer, cfg: QuantConfig, opts: PackQVitOptions) -> None:
    """Image quantizer, patch embedding, final LayerNorm output and head at ``embed_head_bits``; int32 logits."""
    bits = opts.embed_head_bits
    act = QuantFormat(BitType(bits, signed=False), "tensor", cfg.observer)
    weights = (QuantFormat(BitType(bits, signed=True), "channel", "minmax"),)
    if isinstance(model.qact_input, QAct):
        model.qact_input = QAct(act)
    proj = model.patch_embed.proj
    assert isinstance(proj, QConv2d)
    setattr(model.patch_embed, "proj", QConv2d(  # surgery: timm declares proj an nn.Conv2d
        proj.weight, proj.bias, stride=proj.stride, padding=proj.padding, dilation=proj.dilation,
        groups=proj.groups, weight_formats=weights, act_format=act, out_bits=cfg.a_bits))
    if isinstance(model.head, QLinear):
        head = model.head
        setattr(model, "head", QLinear(head.weight, head.bias, weight_formats=weights, act_format=act,  # surgery
                                       out_bits=32))
        model.act_out = nn.Identity()  # logits stay at accumulator width, as in the authors' code
        if isinstance(model.qact2, QAct) and model.global_pool == "token":
            model.qact2 = QAct(act)
            if isinstance(model.norm, QIntLayerNorm):
                model.norm.out_bits = bits


def _rewrite_block(block: nn.Module, cfg: QuantConfig, opts: PackQVitOptions, outliers: int) -> None:
    assert isinstance(block, QBlock)
    attn, mlp = block.attn, block.mlp
    assert isinstance(attn, QAttention) and isinstance(mlp, QMlp)
    del attn.qact_attn1, attn.qact_softmax
    attn.softmax = QInt2nSoftmax(bits=opts.attn_bits, log2=opts.log2_softmax, rule=opts.log2_rule)
    attn.matmul_qk.out_bits = 32
    attn.matmul_av.extra = {"lhs_bits": opts.attn_bits, "lhs_scale": "log2" if opts.log2_softmax else "pot"}
    attn.__class__ = PackAttention
    if not isinstance(mlp.act, nn.GELU) or mlp.act.approximate != "none":
        raise UsageError(f"packqvit needs the exact GELU in the MLP, found {mlp.act}")
    mlp.act = QIntGelu(cfg.a_bits)
    fc1, fc2 = mlp.fc1, mlp.fc2
    assert isinstance(fc1, QLinear) and isinstance(fc2, QLinear)
    fc1.out_bits = 32  # the integer GELU reads the accumulator
    fc2.__class__ = PackLinear
    cast(PackLinear, fc2).spec_extra = {}
    if opts.log2_gelu:
        setattr(mlp, "qact1", QLog2Act(cfg.a_bits, opts.log2_rule))  # surgery: QMlp declares a QAct
        cast(PackLinear, fc2).spec_extra = {"lhs_bits": cfg.a_bits, "lhs_scale": "log2"}
    mlp.__class__ = PackMlp
    for name in ("qact2", "qact4"):
        _make_outlier_act(getattr(block, name), outliers, opts.outlier_max_shift)
    block.__class__ = PackBlock


def prepare_packqvit(model: VisionTransformer, cfg: QuantConfig, opts: PackQVitOptions) -> None:
    """Rewrite a timm VisionTransformer (DeiT/ViT) in place with PackQViT's quantizers and integer kernels."""
    try:
        prepare_vit(model, build_recipe(cfg, opts))
    except UsageError as exc:  # the FQ-ViT placement's own checks, named for this method
        raise UsageError(str(exc).replace("fqvit", "packqvit")) from None
    outliers = opts.outlier_count(model.embed_dim)
    _edge_layers(model, cfg, opts)
    _make_outlier_act(cast(nn.Module, model.qact1), outliers, opts.outlier_max_shift)
    for block in model.blocks:
        _rewrite_block(block, cfg, opts, outliers)
    for module in model.modules():
        if type(module) is QIntLayerNorm:
            module.__class__ = PackIntLayerNorm
        elif type(module) is UniformQuantizer:
            module.__class__ = QatQuantizer


# ---------------------------------------------------------------------------------------------------------------
# Calibration and training
# ---------------------------------------------------------------------------------------------------------------
def learnable_quantizers(model: nn.Module) -> list[QatQuantizer | QLog2Act]:
    """Every grid QAT may learn: activation quantizers, log2 quantizers and each layer's active weight quantizer."""
    out: list[QatQuantizer | QLog2Act] = []
    for module in model.modules():
        if isinstance(module, _QWeighted):
            out.append(cast(QatQuantizer, module.weight_quantizer))
        elif isinstance(module, QAct):
            out.append(cast(QatQuantizer, module.quantizer))
        elif isinstance(module, QLog2Act):
            out.append(module)
    return out


def distillation_loss(logits: Tensor, teacher: Tensor, kind: str) -> Tensor:
    """``hard``: cross-entropy to the teacher's argmax (DeiT's hard distillation); ``soft``: KL(teacher || student)."""
    if kind == "hard":
        return F.cross_entropy(logits, teacher.argmax(dim=-1))
    return F.kl_div(F.log_softmax(logits, dim=-1), F.log_softmax(teacher, dim=-1), log_target=True,
                    reduction="batchmean")


@torch.no_grad()
def teacher_logits(model: nn.Module, batches: Sequence[Tensor]) -> list[Tensor]:
    """The float model's logits (every quantized module passes through in ``float`` mode)."""
    set_mode(model, "float")
    model.eval()
    return [model(b) for b in batches]


def train(model: nn.Module, images: Tensor, targets: Tensor, opts: PackQVitOptions, seed: int) -> list[float]:
    """``opts.qat_steps`` AdamW steps on minibatches of ``images`` (a seeded draw per step) against ``targets``;
    returns the loss of every step. Weights: lr with cosine decay; scales: ``scale_lr``, no weight decay."""
    from tqdm import tqdm

    quantizers = learnable_quantizers(model)
    weights = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    try:
        scales = [leaf for q in quantizers if (leaf := q.start_qat(opts.learn_scales)) is not None]
        groups: list[dict[str, Any]] = [{"params": weights, "lr": opts.lr, "weight_decay": opts.weight_decay}]
        if scales:
            groups.append({"params": scales, "lr": opts.scale_lr, "weight_decay": 0.0})
        opt = torch.optim.AdamW(groups)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=opts.qat_steps)
        set_mode(model, "quant")
        model.eval()  # no dropout: QAT steps stay deterministic
        bar = tqdm(range(opts.qat_steps), desc="packqvit QAT", unit="step", file=sys.stderr, leave=False,
                   disable=None if opts.progress else True)  # None: shown on terminals only, as the CLI's bars
        with bar, torch.enable_grad():
            for step in bar:
                idx = torch.randint(images.shape[0], (min(opts.qat_batch, images.shape[0]),), generator=gen)
                loss = distillation_loss(model(images[idx]), targets[idx], opts.distill)
                if not torch.isfinite(loss):
                    raise UsageError(f"packqvit QAT diverged (non-finite loss at step {step}); lower lr / scale_lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                for q in quantizers:
                    q.sync()
                losses.append(float(loss.detach()))
                if step % 10 == 0:
                    bar.set_postfix(loss=f"{losses[-1]:.4f}")
    finally:
        for q in quantizers:
            q.stop_qat()
        model.zero_grad(set_to_none=True)
    return losses


def _calibrated_log2(model: nn.Module) -> None:
    missing = [name for name, m in model.named_modules() if isinstance(m, QLog2Act) and not bool(m.calibrated)]
    if missing:
        raise UsageError(f"calibration did not reach {len(missing)} log2 quantizer(s): {', '.join(missing[:3])}")


@register_method
class PackQVit(Method):
    """PackQViT: sub-8-bit QAT of timm ViT/DeiT (log2 softmax/GELU, outlier-aware residuals, integer non-linears)."""

    name = "packqvit"
    families = ("vit",)

    def prepare(self, model: nn.Module, cfg: QuantConfig) -> nn.Module:
        self.check_supported(model)
        self.check_not_quantized(model)
        opts = check_config(cfg)
        prepare_packqvit(cast(VisionTransformer, model), cfg, opts)
        return model

    def calibrate(self, model: nn.Module, calib: Sequence[Tensor], cfg: QuantConfig,
                  holdout: Sequence[Tensor] = ()) -> nn.Module:
        """Teacher logits (float mode), FQ-ViT's calibration protocol, the outlier-aware residual grids, then QAT on
        the calibration images (``holdout`` is not used)."""
        opts = check_config(cfg)
        batches = list(calib)
        if not batches:
            raise UsageError("calibration needs at least one batch")
        teacher = teacher_logits(model, batches)
        calibrate_model(model, batches, seed=cfg.seed)
        _calibrated_log2(model)
        for module in model.modules():
            if isinstance(module, QOutlierAct):
                module.set_outlier_grid()
        if opts.qat_steps:
            torch.manual_seed(cfg.seed)
            train(model, torch.cat(batches), torch.cat(teacher), opts, cfg.seed)
        set_mode(model, "quant")
        return model.eval()


__all__ = ["PackAttention", "PackBlock", "PackIntLayerNorm", "PackLinear", "PackMlp", "PackQVit", "PackQVitOptions",
           "QInt2nSoftmax", "QIntGelu", "QLog2Act", "QOutlierAct", "QatQuantizer", "build_recipe", "check_config",
           "distillation_loss", "learnable_quantizers", "prepare_packqvit", "round_ste",
           "ste_through", "teacher_logits", "train"]
