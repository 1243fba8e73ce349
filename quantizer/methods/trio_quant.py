"""Trio-ViT fake-quant primitives: uniform affine quantizers, MSE-p range search, AdaRound, quantized conv/linear.

Self-contained on purpose (the shared FQ-ViT core is a separate effort). Conventions, all from the method
description: x̂ = (clamp(round(x/s) + z, qmin, qmax) − z)·s with round half to even; activations per tensor on an
unsigned grid with a zero point; weights per output channel, symmetric on a signed grid (s = clip/qmax) unless the
asymmetric parity option is on. Scales live in registered buffers of fixed shape so a state dict reloads strictly.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quantizer.errors import QuantizerError, UsageError
from quantizer.core.bits import BitType
from quantizer.core.spec import QuantSpec

#: The range-search grid: candidate i shrinks the observed range by ``1 - 0.01 i``, i = 0..79.
SEARCH_STEPS = 80
SEARCH_SHRINK = 0.01
#: AdaRound's rectified-sigmoid stretch (zeta, gamma).
ZETA, GAMMA = 1.1, -0.1
_TINY = 1e-12
_SEARCH_CHUNK = 1 << 18  # elements per block of the range search (big blocks: few, cheap tensor ops)


class NonFiniteError(QuantizerError):
    """The quantized model produced NaN or infinity during calibration (the reference code called exit())."""


def round_ste(x: Tensor) -> Tensor:
    """Round half to even in the forward pass, identity gradient (straight-through)."""
    return x + (torch.round(x) - x).detach()


def fake_quant(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:
    """Uniform affine fake quantization; differentiable in ``x`` and ``scale`` (LSQ-style through round-STE)."""
    q = torch.clamp(round_ste(x / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


def _safe_scale(s: Tensor) -> Tensor:
    """A zero range (dead channel, all-zero tensor) gets scale 1: every value is 0 and stays 0."""
    return torch.where(s > _TINY, s, torch.ones_like(s))


def mse_p_search(x: Tensor, bit_type: BitType, *, p: float = 2.4, per_row: bool = False,
                 xmin: Tensor | None = None, xmax: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Best (scale, zero_point) by mean |x − x̂|^p over 80 shrunken ranges.

    ``x`` is 1-D (per tensor) or 2-D with one row per channel (``per_row``). A signed ``bit_type`` gives the
    symmetric quantizer (clip = max|x|·(1 − 0.01 i), s = clip/qmax, z = 0); an unsigned one the asymmetric quantizer
    (range [min·(1 − 0.01 i), max·(1 − 0.01 i)] with 0 always inside, z = round(−min/s)). ``xmin``/``xmax`` override
    the observed extremes (used when ``x`` is a sample of a larger tensor whose exact extremes are known).
    Ties keep the widest range.
    """
    rows = x.detach().float().reshape(x.shape[0], -1) if per_row else x.detach().float().reshape(1, -1)
    lo = (rows.amin(1) if xmin is None else xmin.reshape(-1).float()).clamp(max=0.0)
    hi = (rows.amax(1) if xmax is None else xmax.reshape(-1).float()).clamp(min=0.0)
    chunk = max(1, _SEARCH_CHUNK // rows.shape[1])
    parts = [_search_rows(rows[r:r + chunk], lo[r:r + chunk], hi[r:r + chunk], bit_type, p)
             for r in range(0, rows.shape[0], chunk)]
    best_s, best_z = torch.cat([s for s, _ in parts]), torch.cat([z for _, z in parts])
    if not per_row:
        return best_s[0], best_z[0]
    return best_s, best_z


def _search_rows(rows: Tensor, lo: Tensor, hi: Tensor, bit_type: BitType, p: float) -> tuple[Tensor, Tensor]:
    """The search on a block of rows, in place on two scratch buffers (|x − x̂|^p = s^p·|x/s − q|^p)."""
    qmin, qmax = bit_type.qmin, bit_type.qmax
    t, q = torch.empty_like(rows), torch.empty_like(rows)
    best_err = torch.full((rows.shape[0],), math.inf)
    best_s, best_z = torch.ones(rows.shape[0]), torch.zeros(rows.shape[0])
    for i in range(SEARCH_STEPS):
        shrink = 1.0 - SEARCH_SHRINK * i
        if bit_type.signed:
            s = _safe_scale(torch.maximum(-lo, hi) * shrink / qmax)
            z = torch.zeros_like(s)
        else:
            s = _safe_scale((hi - lo) * shrink / (qmax - qmin))
            z = torch.round(-lo * shrink / s).clamp(qmin, qmax) + 0.0  # + 0.0: no negative zero
        torch.div(rows, s[:, None], out=t)
        torch.round(t, out=q)
        if bit_type.signed:
            q.clamp_(qmin, qmax)
        else:
            q.add_(z[:, None]).clamp_(qmin, qmax).sub_(z[:, None])
        err = t.sub_(q).abs_().log_().mul_(p).exp_().mean(1) * s.pow(p)  # exp(p·log) beats pow on CPU
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_s = torch.where(better, s, best_s)
        best_z = torch.where(better, z, best_z)
    return best_s, best_z


class Switchable(nn.Module):
    """A quantizer that calibration can switch off. ``enabled`` is runtime state, not saved in the state dict."""

    def __init__(self) -> None:
        super().__init__()
        self.enabled = True


class ActQuantizer(Switchable):
    """Per-tensor asymmetric activation quantizer (unsigned grid, zero point) with a learnable step size."""

    scale: Tensor
    zero_point: Tensor

    def __init__(self, bits: int, role: str) -> None:
        super().__init__()
        self.bit_type = BitType(bits, signed=False)
        self.role = role
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("zero_point", torch.zeros(()))
        self.quant_spec = QuantSpec(kind="act", act_bits=bits, out_bits=bits, weight_bits=None,
                                    act_granularity="tensor", symmetric_acts=False, extra={"role": role})

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        return fake_quant(x, self.scale.clamp_min(_TINY), self.zero_point, self.bit_type.qmin, self.bit_type.qmax)

    @torch.no_grad()
    def set_range(self, sample: Tensor, xmin: Tensor, xmax: Tensor, p: float) -> None:
        """MSE-p search on ``sample`` with the exact extremes of the full data."""
        s, z = mse_p_search(sample, self.bit_type, p=p, xmin=xmin, xmax=xmax)
        self.scale.copy_(s)
        self.zero_point.copy_(z)

    def extra_repr(self) -> str:
        return f"{self.bit_type.name}, role={self.role}"


class WeightQuantizer(Switchable):
    """Per-output-channel weight quantizer with nearest, AdaRound-soft or AdaRound-hard rounding.

    Rounding state during calibration is transient (``alpha``: AdaRound's V; ``round_up``: its hard decision).
    Calibration ends by *baking*: the parent's weight is overwritten with its fake-quantized value and the
    ``baked`` buffer set, after which the quantizer passes weights through (they are already on the grid).
    """

    scale: Tensor
    zero_point: Tensor
    baked: Tensor

    def __init__(self, out_channels: int, bits: int, symmetric: bool) -> None:
        super().__init__()
        self.bit_type = BitType(bits, signed=symmetric)
        self.register_buffer("scale", torch.ones(out_channels))
        self.register_buffer("zero_point", torch.zeros(out_channels))
        self.register_buffer("baked", torch.zeros((), dtype=torch.bool))
        self.alpha: nn.Parameter | None = None  # AdaRound V while reconstructing
        self.round_up: Tensor | None = None  # AdaRound's hard decision after reconstructing
        self.soft = False  # use the continuous h(V) (only during reconstruction, or the T3 parity option)

    def _view(self, t: Tensor, w: Tensor) -> Tensor:
        return t.reshape(-1, *([1] * (w.dim() - 1)))

    def forward(self, w: Tensor) -> Tensor:
        if not self.enabled or bool(self.baked):
            return w
        return self.quantize(w)

    def quantize(self, w: Tensor) -> Tensor:
        """Fake-quantize ``w`` with the current rounding state."""
        s, z = self._view(self.scale, w), self._view(self.zero_point, w)
        qmin, qmax = self.bit_type.qmin, self.bit_type.qmax
        if self.alpha is None and self.round_up is None:
            return fake_quant(w, s, z, qmin, qmax)
        base = torch.floor(w.detach() / s)
        if self.alpha is not None and self.soft:
            offset = self.h()
        elif self.alpha is not None:
            offset = (self.alpha >= 0).to(w.dtype)
        else:
            assert self.round_up is not None  # both None returned above
            offset = self.round_up.to(w.dtype)
        return (torch.clamp(base + offset + z, qmin, qmax) - z) * s

    @torch.no_grad()
    def set_range(self, w: Tensor, p: float) -> None:
        s, z = mse_p_search(w, self.bit_type, p=p, per_row=True)
        self.scale.copy_(s)
        self.zero_point.copy_(z)

    def h(self) -> Tensor:
        """AdaRound's rectified sigmoid of V, in [0, 1]."""
        assert self.alpha is not None
        return torch.clamp(torch.sigmoid(self.alpha) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)

    def regularizer(self, beta: float) -> Tensor:
        """Σ (1 − |2h − 1|^β): pushes every h to 0 or 1."""
        return (1.0 - (2.0 * self.h() - 1.0).abs().pow(beta)).sum()

    @torch.no_grad()
    def start_adaround(self, w: Tensor) -> nn.Parameter:
        """Create V so that h(V) equals the fractional part of w/s of the weights actually quantized (T4)."""
        s = self._view(self.scale, w)
        rest = (w / s - torch.floor(w / s)).clamp(1e-6, 1.0 - 1e-6)
        self.alpha = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1.0))
        self.soft = True
        self.round_up = None
        return self.alpha

    def finish_adaround(self, keep_soft: bool = False) -> None:
        """Fix the hard decision (V ≥ 0 rounds up), or keep soft rounding (T3 parity option)."""
        if self.alpha is None:
            return
        if keep_soft:
            self.alpha = nn.Parameter(self.alpha.detach(), requires_grad=False)
            return
        self.round_up = (self.alpha.detach() >= 0)
        self.alpha = None
        self.soft = False

    @torch.no_grad()
    def bake(self, weight: nn.Parameter) -> None:
        """Write the fake-quantized weight into ``weight`` and pass weights through from now on."""
        weight.copy_(self.quantize(weight))
        self.alpha, self.round_up, self.soft = None, None, False
        self.baked.fill_(True)

    def extra_repr(self) -> str:
        return f"{self.bit_type.name}, per-channel"


class QLayer(nn.Module):
    """Shared parts of QConv2d and QLinear: weight, bias, weight quantizer, optional input/output quantizers."""

    quant_spec: QuantSpec

    def __init__(self, weight: Tensor, bias: Tensor | None, *, w_bits: int, symmetric: bool,
                 in_q: ActQuantizer | None, out_q: ActQuantizer | None, act: nn.Module | None,
                 role: str = "") -> None:
        super().__init__()
        self.role = role  # where the layer sits (e.g. "mbconv_dw"); used for specs and the T3 parity option
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self.w_q = WeightQuantizer(weight.shape[0], w_bits, symmetric)
        self.in_q = in_q
        self.out_q = out_q
        self.act = act if act is not None else nn.Identity()

    def qweight(self) -> Tensor:
        """The weight the layer computes with (fake-quantized unless weight quantization is off)."""
        return self.w_q(self.weight)

    def bake(self) -> None:
        self.w_q.bake(self.weight)


class QConv2d(QLayer):
    """Conv2d (BN folded) + fused nonlinearity, with Trio-ViT's two input transforms.

    ``migrate`` (DW conv of MBConv): the input is divided per channel by ``mig`` before its per-tensor
    quantizer, and the weights hold W·mig, so the float result is unchanged (a depthwise filter sees one channel).
    ``shift`` (PW conv of MBConv): the input minus the per-channel centre ``shift`` is quantized, and the bias gains
    Σ_c W̃_{o,c}·shift_c with the *quantized* weights W̃, so the result is exact up to the input's rounding.
    """

    def __init__(self, conv: nn.Conv2d, weight: Tensor, bias: Tensor | None, *, w_bits: int, symmetric: bool,
                 in_q: ActQuantizer | None = None, out_q: ActQuantizer | None = None,
                 act: nn.Module | None = None, migrate: bool = False, shift: bool = False, role: str = "") -> None:
        if shift and bias is None:
            bias = torch.zeros(weight.shape[0])
        super().__init__(weight, bias, w_bits=w_bits, symmetric=symmetric, in_q=in_q, out_q=out_q, act=act,
                         role=role)
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        in_ch = weight.shape[1] * conv.groups
        if migrate and not (conv.groups == in_ch == weight.shape[0]):
            raise UsageError("channel-wise migration needs a depthwise conv")
        if shift and (weight.shape[2:] != (1, 1) or any(self._pad_amount())):
            raise UsageError("filter-wise shifting needs a 1x1 conv without padding")
        self.mig: Tensor | None
        self.shift: Tensor | None
        self.register_buffer("mig", torch.ones(in_ch) if migrate else None)
        self.register_buffer("shift", torch.zeros(in_ch) if shift else None)

    def _pad_amount(self) -> tuple[int, ...]:
        return tuple(self.padding) if not isinstance(self.padding, str) else (1,)

    def shift_compensation(self, w: Tensor) -> Tensor:
        """Σ_c Σ_kernel W[o, c]·shift_c for each output o (grouped convs: c runs over o's group)."""
        assert self.shift is not None
        out_ch, per_group = w.shape[0], w.shape[1]
        centres = self.shift.reshape(self.groups, per_group).repeat_interleave(out_ch // self.groups, dim=0)
        return (w.sum(dim=(2, 3)) * centres).sum(dim=1)

    @torch.no_grad()
    def apply_migration(self, factors: Tensor) -> None:
        """Set the migration factors d and fold them into the depthwise weights (W ← W·d)."""
        assert self.mig is not None
        if not torch.all(self.mig == 1):
            raise UsageError("channel-wise migration was already applied to this layer")
        self.mig.copy_(factors)
        self.weight.mul_(factors.reshape(-1, 1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if self.mig is not None:
            x = x / self.mig.reshape(1, -1, 1, 1)
        if self.shift is not None:
            x = x - self.shift.reshape(1, -1, 1, 1)
        if self.in_q is not None:
            x = self.in_q(x)
        w = self.qweight()
        b: Tensor | None = self.bias
        if self.shift is not None:
            assert b is not None
            b = b + self.shift_compensation(w)
        y = self.act(F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups))
        return self.out_q(y) if self.out_q is not None else y


class QLinear(QLayer):
    """Linear layer with a per-channel weight quantizer and optional input/output quantizers."""

    def forward(self, x: Tensor) -> Tensor:
        if self.in_q is not None:
            x = self.in_q(x)
        y = self.act(F.linear(x, self.qweight(), self.bias))
        return self.out_q(y) if self.out_q is not None else y


def fold_bn(conv: nn.Conv2d, bn: nn.Module | None) -> tuple[Tensor, Tensor | None]:
    """Weights and bias of ``conv`` followed by eval-mode BatchNorm ``bn`` as one conv.

    W' = W·γ/σ per output channel, b' = β + γ·(b − μ)/σ with σ = sqrt(var + eps). No BN: the conv's own tensors.
    """
    w = conv.weight.detach().clone()
    b = conv.bias.detach().clone() if conv.bias is not None else None
    if bn is None or isinstance(bn, nn.Identity):
        return w, b
    if not isinstance(bn, nn.BatchNorm2d) or bn.running_mean is None or bn.running_var is None:
        raise UsageError(f"cannot fold {type(bn).__name__} into a conv (expected BatchNorm2d with running stats)")
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_mean)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(bn.running_mean)
    inv_sigma = torch.rsqrt(bn.running_var.detach() + bn.eps)
    factor = gamma * inv_sigma
    w = w * factor.reshape(-1, 1, 1, 1)
    b0 = b if b is not None else torch.zeros_like(beta)
    return w, beta + factor * (b0 - bn.running_mean.detach())


def quantizers(model: nn.Module) -> Iterator[Switchable]:
    """Every switchable quantizer in ``model`` (weight, activation and divisor quantizers)."""
    for m in model.modules():
        if isinstance(m, Switchable):
            yield m


@contextmanager
def quant_mode(model: nn.Module, *, weights: bool, acts: bool) -> Iterator[None]:
    """Temporarily switch weight quantizers and activation/divisor quantizers on or off."""
    saved = [(m, m.enabled) for m in quantizers(model)]
    for m, _ in saved:
        m.enabled = weights if isinstance(m, WeightQuantizer) else acts
    try:
        yield
    finally:
        for m, state in saved:
            m.enabled = state
