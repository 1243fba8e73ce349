"""Trio-ViT's quantized ReLU linear attention (EfficientViT LiteMLA) with a log2-quantized divisor.

Per scale branch i (the plain qkv and each multi-scale aggregation) the attention is
    KV = Kᵀ·V, Ksum = Σ_n K, N = Q·KV̂, D = Q·Ksûm, out = N̂ / D̂,
with Q = ReLU(q), K = ReLU(k); KV, Ksum, N and out go through per-tensor uniform quantizers, and D is replaced by
D̂ = 2^e with a 4-bit exponent e ∈ [−6, 9], so the division is a right/left shift.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quantizer.errors import UsageError
from quantizer.core.spec import QuantSpec
from quantizer.methods.trio_quant import ActQuantizer, QConv2d, Switchable

if TYPE_CHECKING:
    from timm.models.efficientvit_mit import LiteMLA

DivisorRounding = Literal["linear", "log"]
DIVISOR_RULES: tuple[str, ...] = ("linear", "log")
#: The divisor's exponent range: 16 levels, a 4-bit code (real units, like the reference code).
EXP_MIN, EXP_MAX = -6, 9
EXP_LEVELS = EXP_MAX - EXP_MIN + 1
DIVISOR_WINDOWS: tuple[str, ...] = ("fixed", "calibrated")


def log2_exponent(d: Tensor, rule: DivisorRounding = "linear", emin: int = EXP_MIN, emax: int = EXP_MAX) -> Tensor:
    """Exponent e of the power of two nearest to ``d`` (≥ 0), clamped to [emin, emax]; a float tensor of integers.

    With d = m·2^i, m ∈ [1, 2) (i = position of the leading one):
    - ``linear`` (paper's rule, the default): round up when m ≥ 1.5, i.e. when the bit below the leading one is set;
    - ``log`` (reference code's rule, parity): round up when m > √2, i.e. nearest in the log domain.
    d = 0 (and anything below 2^emin) gives emin.
    """
    if rule not in DIVISOR_RULES:
        raise UsageError(f"divisor rounding must be one of {', '.join(DIVISOR_RULES)}, got {rule!r}")
    d = d.detach().float().clamp(2.0 ** (emin - 2), 2.0 ** min(emax + 2, 127))  # finite, so frexp is exact
    mantissa, exponent = torch.frexp(d)  # d = mantissa·2^exponent, mantissa ∈ [0.5, 1)
    m = mantissa * 2.0
    e = (exponent - 1).to(d.dtype)
    up = m >= 1.5 if rule == "linear" else m * m > 2.0
    return (e + up.to(d.dtype)).clamp(emin, emax)


class Log2Divisor(Switchable):
    """out = N / 2^e(D): the linear-attention division as a shift. Switched off: N / (D + eps) as in timm.

    The 16 exponents of the 4-bit code are [exp_min, exp_min + 15]; ``exp_min`` is a buffer, −6 from ``prepare``
    (the reference code's fixed window [−6, 9], in real units) and moved by calibration when the window is
    ``calibrated`` (the top exponent then covers the largest calibration divisor).
    """

    exp_min: Tensor

    def __init__(self, rule: DivisorRounding, act_bits: int, eps: float, window: str) -> None:
        super().__init__()
        if rule not in DIVISOR_RULES:
            raise UsageError(f"divisor rounding must be one of {', '.join(DIVISOR_RULES)}, got {rule!r}")
        self.rule: DivisorRounding = rule
        self.eps = eps
        self.window = window
        self.act_bits = act_bits
        self.register_buffer("exp_min", torch.tensor(float(EXP_MIN)))

    @property
    def exp_range(self) -> tuple[int, int]:
        lo = int(self.exp_min)
        return lo, lo + EXP_LEVELS - 1

    @property
    def quant_spec(self) -> QuantSpec:
        """Computed, so it shows the calibrated window (the buffer) after calibration or loading."""
        return QuantSpec(kind="divisor", act_bits=self.act_bits, out_bits=4, weight_bits=None, scale_kind="log2",
                         extra={"divisor": "log2", "exp_bits": 4, "exp_range": self.exp_range,
                                "exp_window": self.window, "rounding": self.rule, "division": "shift"})

    @torch.no_grad()
    def set_window(self, dmax: Tensor) -> None:
        """Place the 16-exponent window so that its top level is the rounded exponent of ``dmax``."""
        top = log2_exponent(dmax.reshape(1), self.rule, emin=-126, emax=126)[0]
        self.exp_min.fill_(float(top) - (EXP_LEVELS - 1))

    def forward(self, num: Tensor, den: Tensor) -> Tensor:
        if not self.enabled:
            return num / (den + self.eps)
        lo, hi = self.exp_range
        d_hat = torch.exp2(log2_exponent(den, self.rule, lo, hi))
        # Straight-through: the value is exactly 2^e (so the division is exact), the gradient flows to D.
        return num / (d_hat + (den - den.detach()))

    def extra_repr(self) -> str:
        lo, hi = self.exp_range
        return f"rule={self.rule}, e in [{lo}, {hi}], window={self.window}"


class QLiteMLA(nn.Module):
    """Drop-in replacement of timm's LiteMLA with Trio-ViT's quantization points (float when switched off)."""

    def __init__(self, src: LiteMLA, qkv: QConv2d, aggreg: nn.ModuleList, proj: QConv2d, *, a_bits: int,
                 rule: DivisorRounding, window: str) -> None:
        super().__init__()
        self.dim: int = src.dim
        self.eps: float = src.eps
        if not isinstance(src.kernel_func, nn.ReLU):
            raise UsageError(f"Trio-ViT needs ReLU linear attention, got kernel {type(src.kernel_func).__name__}")
        self.qkv, self.aggreg, self.proj = qkv, aggreg, proj
        n = 1 + len(aggreg)
        self.kv_q = nn.ModuleList(ActQuantizer(a_bits, "attn_kv") for _ in range(n))
        self.ksum_q = nn.ModuleList(ActQuantizer(a_bits, "attn_ksum") for _ in range(n))
        self.num_q = nn.ModuleList(ActQuantizer(a_bits, "attn_numerator") for _ in range(n))
        self.divide = nn.ModuleList(Log2Divisor(rule, a_bits, self.eps, window) for _ in range(n))
        self.out_q = nn.ModuleList(ActQuantizer(a_bits, "attn_out") for _ in range(n))
        heads = qkv.weight.shape[0] // (3 * self.dim)
        self.quant_spec = QuantSpec(
            kind="linear_attention", act_bits=a_bits, out_bits=a_bits, weight_bits=None,
            extra={"kernel": "relu", "heads": heads, "head_dim": self.dim, "scales": n, "divisor": "log2",
                   "divisor_exp_bits": 4, "divisor_window": window, "divisor_rounding": rule,
                   "division": "shift"})

    def _branch(self, i: int, t: Tensor, batch: int, tokens: int) -> Tensor:
        t = t.reshape(batch, -1, 3 * self.dim, tokens).transpose(-1, -2)
        q, k, v = t.chunk(3, dim=-1)
        q, k = F.relu(q), F.relu(k)
        kv = self.kv_q[i](k.transpose(-1, -2) @ v)
        ksum = self.ksum_q[i](k.sum(dim=-2, keepdim=True).transpose(-1, -2))
        num = self.num_q[i](q @ kv)
        den = q @ ksum
        return self.out_q[i](self.divide[i](num, den))

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        qkv = self.qkv(x)
        branches = [qkv, *(op(qkv) for op in self.aggreg)]
        out = torch.cat([self._branch(i, t, batch, height * width) for i, t in enumerate(branches)], dim=1)
        out = out.transpose(-1, -2).reshape(batch, -1, height, width)
        return self.proj(out)
