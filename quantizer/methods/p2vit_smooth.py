"""P2-ViT's PoT-aware smoothing of a LayerNorm -> Linear pair (qkv and fc1), with per-bit-width factors.

SmoothQuant migrates activation outliers into the weights: X' = X / t, W' = W * t per input channel, so
X'·W'ᵀ = X·Wᵀ in float. P2-ViT rounds t to the nearest power of two, so the division costs nothing on hardware:
it folds into the LayerNorm's output scale, which becomes per channel, s_out,c = s_in'·t_c, still a power of two
(research notes 2.8). The factor t_c = a_c^α / w_c^(1-α) depends on α, which P2-ViT picks per weight bit width by
the layer-output MSE of the quantized layer; so this module keeps one factor set, one input grid and one weight
grid per weight bit type, and the active weight format selects all three together.

Calibration takes three passes (see :class:`~quantizer.methods.p2vit.P2Vit`): a float pass collects a_c over all
calibration batches (:meth:`QSmoothLinear.observe_channels`), the observe phase feeds X/t_α to one candidate
input quantizer per α, and the search phase picks, per bit type, the α whose quantized output is nearest the
float output. The float output propagates, so calibration proceeds on float activations (as in P2-ViT).
"""
from __future__ import annotations

from typing import Sequence, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quantizer.core.modules import GridScore, QLinear, QuantFormat, UniformQuantizer, _act_spec, _quantizing
from quantizer.core.quantizers import Conventions, fake_quantize, mse_per_channel, pot_exponent, pow2
from quantizer.core.spec import QuantSpec


def pot_smoothing_factors(act_absmax: Tensor, weight_absmax: Tensor, alpha: float) -> Tensor:
    """t_c = a_c^α / w_c^(1-α), rounded to the nearest power of two in the linear domain (P2-ViT 2.8).

    Channels that never saw a non-zero input or have an all-zero weight column get t = 1 (nothing to migrate).
    """
    a = act_absmax.double()
    w = weight_absmax.double()
    usable = (a > 0) & (w > 0)
    raw = torch.where(usable, a.clamp(min=1e-30).pow(alpha) / w.clamp(min=1e-30).pow(1.0 - alpha),
                      torch.ones_like(a))
    return pow2(pot_exponent(raw, "nearest"), raw).float()


class QSmoothLinear(QLinear):
    """A Linear whose input arrives unquantized from a LayerNorm: divide by the PoT factors t, quantize with the
    active bit type's input grid, multiply by the weights W·t quantized on that bit type's grid.

    ``alphas`` is the migration-strength pool (empty: no smoothing, t = 1). Buffers per weight bit type ``bt``:
    ``smooth_{bt}`` (t, shape (in_features,)) and ``alpha_{bt}`` (the α chosen, NaN without smoothing); the
    input grids are ``input_quantizers[bt]``. ``channel_absmax`` holds a_c from the calibration pass.
    """

    channel_absmax: Tensor

    def __init__(self, weight: Tensor, bias: Tensor | None, *, weight_formats: Sequence[QuantFormat],
                 act_format: QuantFormat, alphas: Sequence[float], out_bits: int | None = None,
                 conventions: Conventions = Conventions()) -> None:
        super().__init__(weight, bias, weight_formats=weight_formats, act_format=act_format, out_bits=out_bits,
                         conventions=conventions)
        self.alphas = tuple(float(a) for a in alphas)
        self.conventions = conventions
        in_features = weight.shape[1]
        self.input_quantizers = nn.ModuleDict({
            name: UniformQuantizer(act_format, 1, -1, conventions) for name in self.weight_quantizers})
        for name in self.weight_quantizers:
            self.register_buffer(f"smooth_{name}", torch.ones(in_features))
            self.register_buffer(f"alpha_{name}", torch.tensor(float("nan")))
        self.register_buffer("channel_absmax", torch.zeros(in_features))
        self._candidates: list[tuple[Tensor, UniformQuantizer]] = []  # (t_α, input quantizer of X/t_α)

    @classmethod
    def from_qlinear(cls, layer: QLinear, alphas: Sequence[float], conventions: Conventions) -> "QSmoothLinear":
        formats = [cast(UniformQuantizer, q).fmt for q in layer.weight_quantizers.values()]
        new = cls(layer.weight, layer.bias, weight_formats=formats, act_format=layer.act_format, alphas=alphas,
                  out_bits=layer.out_bits, conventions=conventions)
        new.weight_format.copy_(layer.weight_format)
        return new

    # the active bit type's pieces ----------------------------------------------------------------------------
    @property
    def active_name(self) -> str:
        return list(self.weight_quantizers.keys())[int(self.weight_format)]

    def smoothing(self, name: str | None = None) -> Tensor:
        """The factors t of bit type ``name`` (default: the active one)."""
        return getattr(self, f"smooth_{name or self.active_name}")

    @property
    def input_quantizer(self) -> UniformQuantizer:
        return cast(UniformQuantizer, self.input_quantizers[self.active_name])

    @property
    def quantizing(self) -> bool:
        """Whether the next forward quantizes its input (what an integer LayerNorm feeding it checks)."""
        return self.mode not in ("float", "calibrate", "search") and _quantizing(
            self.mode, self.input_quantizer.is_calibrated, "smoothed linear input quantizer")

    @property
    def scale(self) -> Tensor:
        """The per-channel output scale of the LayerNorm that feeds this layer: s_in·t (the fold, 2.8)."""
        return self.input_quantizer.scale * self.smoothing()

    @property
    def quant_spec(self) -> QuantSpec:
        extra = {"smoothing": "pot", "smoothing_fold": "layernorm"} if self.alphas else {}
        return _act_spec(self.kind, self.act_format, self.out_bits, extra, weight=self.weight_quantizer.fmt)

    # calibration -----------------------------------------------------------------------------------------------
    def observe_channels(self, x: Tensor) -> None:
        """Fold one float calibration input into a_c = max |X[..., c]| (the first calibration pass)."""
        absmax = x.detach().abs().reshape(-1, x.shape[-1]).amax(dim=0)
        self.channel_absmax.copy_(torch.maximum(self.channel_absmax, absmax))

    def start_candidates(self) -> None:
        """Fix one t per α from a_c and W, each with a fresh input quantizer to observe X/t (phase two)."""
        w_absmax = self.weight.detach().abs().amax(dim=0)
        self._candidates = [
            (pot_smoothing_factors(self.channel_absmax, w_absmax, alpha),
             UniformQuantizer(self.act_format, 1, -1, self.conventions))
            for alpha in self.alphas]
        if not self._candidates:  # no smoothing: a single candidate with t = 1
            self._candidates = [(torch.ones_like(self.channel_absmax),
                                 UniformQuantizer(self.act_format, 1, -1, self.conventions))]

    @torch.no_grad()
    def _search(self, x: Tensor) -> None:
        """Per bit type: the α whose quantized layer output is nearest (MSE) the float output on ``x``."""
        reference = F.linear(x, self.weight, self.bias)
        w = self.weight.detach()
        best: dict[str, float] = {}
        for index, (t, in_q) in enumerate(self._candidates):
            x_s = x / t
            in_q.observe(x_s)
            in_q.search(x_s)
            x_hat = in_q(x_s)
            w_s = w * t
            for name, w_q in self.weight_quantizers.items():
                assert isinstance(w_q, UniformQuantizer)
                trial = UniformQuantizer(w_q.fmt, w.shape[0], 0, self.conventions)
                trial.observe(w_s)
                score = self._output_score(x_s, w_s, trial) if w_q.fmt.scale_rounding == "adaptive" else None
                trial.search(w_s, score)
                err = float((F.linear(x_hat, trial(w_s), self.bias) - reference).pow(2).mean())
                if name not in best or err < best[name]:
                    best[name] = err
                    w_q.set_grid(trial.scale, trial.zero_point)
                    cast(UniformQuantizer, self.input_quantizers[name]).set_grid(in_q.scale, in_q.zero_point)
                    getattr(self, f"smooth_{name}").copy_(t)
                    getattr(self, f"alpha_{name}").fill_(self.alphas[index] if self.alphas else float("nan"))
        self._candidates = []

    def _output_score(self, x: Tensor, w: Tensor, quantizer: UniformQuantizer) -> GridScore:
        """Layer-output MSE of a candidate grid for the smoothed weights ``w`` on smoothed input ``x``."""
        reference = F.linear(x, w, self.bias)

        def score(scale: Tensor, zero_point: Tensor) -> Tensor:
            w_hat = fake_quantize(w, scale, zero_point, quantizer.bit_type, 0)
            return mse_per_channel(reference, F.linear(x, w_hat, self.bias), -1, quantizer.per_channel)

        return score

    def search_weights(self, x: Tensor) -> None:  # the search is joint with the input grid: see _search
        self._search(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "calibrate":
            if self._candidates:
                for t, in_q in self._candidates:
                    in_q.observe(x / t)
            return F.linear(x, self.weight, self.bias)
        if self.mode == "search":
            if not self._candidates:  # no separate statistics pass: P2-ViT's single-batch protocol
                if not bool(self.channel_absmax.any()):
                    self.observe_channels(x)
                self.start_candidates()
            self._search(x)
            return F.linear(x, self.weight, self.bias)
        if self.mode == "float" or not self.quantizing:
            return F.linear(x, self.weight, self.bias)
        t = self.smoothing()
        w_q = self.weight_quantizer
        return F.linear(self.input_quantizer(x / t), w_q(self.weight * t), self.bias)


__all__ = ["QSmoothLinear", "pot_smoothing_factors"]
