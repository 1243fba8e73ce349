"""Observers: turn calibration statistics into a uniform grid (scale, zero point).

Every observer has two explicit phases, so the calibration protocol can be stated and tested:

* :meth:`Observer.update` folds one calibration batch into running statistics (all batches);
* :meth:`Observer.compute` returns the grid; observers that search (OMSE, PTF) score their candidates on the
  tensor passed here, the declared *search batch* (FQ-ViT: the last calibration batch), while their ranges come
  from the statistics of every batch.

Observers are plain objects, not modules: their statistics are calibration-time state and never saved. Each
quantizer owns its own observer, so a layer calibrated for several bit types keeps one observer per bit type
(P2-ViT defect P4).

Layout: statistics are kept per row of ``x`` viewed as (C, -1), the channel axis being ``channel_dim`` (0 for
weights, the last axis for token activations (B, N, C) and (B, H, W, C)). Per-tensor observers reduce the rows
to one value after every update.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from quantizer.errors import UsageError
from quantizer.core.bits import BitType
from quantizer.core.quantizers import (
    Conventions,
    channel_rows,
    fake_quantize,
    grid_from_range,
    mse_per_channel,
    zero_point_for,
)

Granularity = Literal["tensor", "channel"]

EMA_MOMENTUM = 0.01  # sigma of FQ-ViT's EMA and percentile observers
PERCENTILE_HIGH, PERCENTILE_LOW = 0.99999, 0.00001
OMSE_STEPS = 90  # candidates i = 0..89 shrink the range by (1 - 0.01 i)
PTF_K = 3  # PTF factors 2**alpha, alpha in 0..K


@dataclass(frozen=True)
class QParams:
    """A grid: scale and zero point, each (C,) or (1,); ``alpha`` holds PTF's per-channel exponents."""

    scale: Tensor
    zero_point: Tensor
    alpha: Tensor | None = None


class Observer:
    """Base class: running min/max per row, reduced to one value for per-tensor granularity."""

    name: ClassVar[str] = ""
    supports_channel: ClassVar[bool] = True
    supports_tensor: ClassVar[bool] = True
    needs_search_batch: ClassVar[bool] = False

    def __init__(self, bit_type: BitType, granularity: Granularity = "tensor", channel_dim: int = -1,
                 conventions: Conventions = Conventions()) -> None:
        if granularity not in ("tensor", "channel"):
            raise UsageError(f"granularity must be 'tensor' or 'channel', got {granularity!r}")
        if granularity == "channel" and not self.supports_channel:
            raise UsageError(f"the {self.name} observer supports per-tensor granularity only")
        if granularity == "tensor" and not self.supports_tensor:
            raise UsageError(f"the {self.name} observer supports per-channel granularity only")
        self.bit_type = bit_type
        self.granularity = granularity
        self.channel_dim = channel_dim
        self.conventions = conventions
        self.lo: Tensor | None = None
        self.hi: Tensor | None = None

    @property
    def per_channel(self) -> bool:
        return self.granularity == "channel"

    def reset(self) -> None:
        """Forget all statistics."""
        self.lo = self.hi = None

    def batch_range(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(min, max) of one batch, per channel (C,) or per tensor (1,)."""
        x = x.detach().float()
        if self.per_channel:
            rows = channel_rows(x, self.channel_dim)
            return rows.amin(dim=1), rows.amax(dim=1)
        return x.amin().reshape(1), x.amax().reshape(1)

    def update(self, x: Tensor) -> None:
        """Fold one calibration batch into the statistics."""
        lo, hi = self.batch_range(x)
        self._merge(lo, hi)

    def _merge(self, lo: Tensor, hi: Tensor) -> None:
        if self.lo is None or self.hi is None:
            self.lo, self.hi = lo, hi
        else:
            self.lo, self.hi = torch.minimum(self.lo, lo), torch.maximum(self.hi, hi)

    def observed_range(self) -> tuple[Tensor, Tensor]:
        if self.lo is None or self.hi is None:
            raise RuntimeError(f"{self.name} observer has no statistics: call update() before compute()")
        return self.lo, self.hi

    def compute(self, x: Tensor | None = None) -> QParams:
        """The grid from the statistics (``x``, the search batch, is used only by searching observers)."""
        scale, zero_point = grid_from_range(*self.observed_range(), self.bit_type, self.conventions)
        return QParams(scale, zero_point)


class MinMaxObserver(Observer):
    """Running global min and max over every calibration batch."""

    name = "minmax"


class EmaObserver(Observer):
    """First batch sets min/max; later batches move them by sigma = 0.01 towards the batch's min/max."""

    name = "ema"

    def _merge(self, lo: Tensor, hi: Tensor) -> None:
        if self.lo is None or self.hi is None:
            self.lo, self.hi = lo, hi
        else:
            self.lo = self.lo + EMA_MOMENTUM * (lo - self.lo)
            self.hi = self.hi + EMA_MOMENTUM * (hi - self.hi)


def quantile(x: Tensor, q: float) -> Tensor:
    """Linear-interpolated quantile of all elements (like ``torch.quantile``, without its size limit)."""
    flat = x.detach().reshape(-1).float()
    pos = q * (flat.numel() - 1)
    below = int(pos)
    above = min(below + 1, flat.numel() - 1)
    lo_val = flat.kthvalue(below + 1).values
    hi_val = flat.kthvalue(above + 1).values if above != below else lo_val
    return lo_val + (pos - below) * (hi_val - lo_val)


class PercentileObserver(EmaObserver):
    """Per-batch 0.00001 / 0.99999 quantiles, EMA-smoothed across batches. Per-tensor only (defect F7, kept:
    per-channel quantiles cost one selection per channel)."""

    name = "percentile"
    supports_channel = False

    def batch_range(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return quantile(x, PERCENTILE_LOW).reshape(1), quantile(x, PERCENTILE_HIGH).reshape(1)


class OmseObserver(Observer):
    """Min/max over all batches, then on the search batch a grid search over ranges shrunk by (1 - 0.01 i),
    i = 0..89, keeping the range with the lowest MSE(x, x̂).

    Fixes F2: the candidates follow the bit type's symmetry (signed: z = 0, s = max|x| (1 - 0.01 i) / levels).
    Per channel, every channel picks its own i (channels are quantized independently).
    """

    name = "omse"
    needs_search_batch = True

    def compute(self, x: Tensor | None = None) -> QParams:
        if x is None:
            raise ValueError("the omse observer needs the search batch")
        lo, hi = self.observed_range()
        x = x.detach().float()
        best_loss = best_scale = best_zero = None
        for i in range(OMSE_STEPS):
            shrink = 1.0 - 0.01 * i
            scale, zero = grid_from_range(lo * shrink, hi * shrink, self.bit_type, self.conventions)
            x_hat = fake_quantize(x, scale, zero, self.bit_type, self.channel_dim)
            loss = mse_per_channel(x, x_hat, self.channel_dim, self.per_channel)
            if best_loss is None or best_scale is None or best_zero is None:
                best_loss, best_scale, best_zero = loss, scale, zero
                continue
            better = loss < best_loss
            best_loss = torch.where(better, loss, best_loss)
            best_scale = torch.where(better, scale, best_scale)
            best_zero = torch.where(better, zero, best_zero)
        assert best_scale is not None and best_zero is not None
        return QParams(best_scale, best_zero)


class PtfObserver(Observer):
    """FQ-ViT's Power-of-Two Factor: one layer-wise base grid, each channel scaled by 2**alpha_c, alpha in 0..3.

    Ranges are per channel over all batches; the base scale ``s8`` covers the widest channel, candidates are
    s_alpha = s8 / 2**(3 - alpha), and each channel keeps the alpha with the lowest MSE on the search batch.

    Zero points (unsigned bit types; signed ones are symmetric, z = 0, P2-ViT's symmetric PTF) follow
    ``conventions.ptf_zero_point``:

    * ``channel`` (default, fixes F1): each candidate scale gets the zero point computed from the channel's own
      minimum with that scale, so every candidate is a consistent grid for its channel;
    * ``shared`` (FQ-ViT parity): one zero point computed from the global minimum with ``s8`` and reused for
      every candidate and channel.
    """

    name = "ptf"
    supports_tensor = False
    needs_search_batch = True

    def candidates(self) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """(s8, candidate scales for alpha = 0..K, matching zero points), each candidate shaped (C,)."""
        lo, hi = self.observed_range()
        s8, z8 = grid_from_range(lo.amin(), hi.amax(), self.bit_type, self.conventions)
        scales = [(s8 / 2 ** (PTF_K - alpha)).expand_as(lo) for alpha in range(PTF_K + 1)]
        if self.bit_type.signed:
            zeros = [torch.zeros_like(lo) for _ in scales]
        elif self.conventions.ptf_zero_point == "shared":
            zeros = [z8.expand_as(lo) for _ in scales]
        else:
            channel_lo = torch.clamp(lo, max=0.0) if self.conventions.zero_point == "extend" else lo
            zeros = [zero_point_for(channel_lo, s, self.bit_type) for s in scales]
        return s8, scales, zeros

    def compute(self, x: Tensor | None = None) -> QParams:
        if x is None:
            raise ValueError("the ptf observer needs the search batch")
        x = x.detach().float()
        _, scales, zeros = self.candidates()
        losses = torch.stack([
            mse_per_channel(x, fake_quantize(x, s, z, self.bit_type, self.channel_dim), self.channel_dim, True)
            for s, z in zip(scales, zeros)
        ])
        alpha = torch.argmin(losses, dim=0)
        pick = alpha.unsqueeze(0)
        scale = torch.gather(torch.stack(scales), 0, pick).squeeze(0)
        zero = torch.gather(torch.stack(zeros), 0, pick).squeeze(0)
        return QParams(scale.contiguous(), zero.contiguous(), alpha)


#: Observer registry: name -> class. Activation observers selectable by ``QuantConfig.observer`` plus ``ptf``.
OBSERVERS: dict[str, type[Observer]] = {
    cls.name: cls for cls in (MinMaxObserver, EmaObserver, PercentileObserver, OmseObserver, PtfObserver)
}


def make_observer(name: str, bit_type: BitType, granularity: Granularity = "tensor", channel_dim: int = -1,
                  conventions: Conventions = Conventions()) -> Observer:
    """Build a registered observer by name (one-line UsageError for unknown names or unsupported granularity)."""
    cls = OBSERVERS.get(name)
    if cls is None:
        raise UsageError(f"unknown observer {name!r} (known: {', '.join(sorted(OBSERVERS))})")
    return cls(bit_type, granularity, channel_dim, conventions)
