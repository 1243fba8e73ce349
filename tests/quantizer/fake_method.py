"""A tiny quantization method for testing the user-facing path without the real methods.

``FakeLinearMethod`` wraps every nn.Linear of a ViT in :class:`FakeQuantLinear`: per-output-channel symmetric weight
scales and one per-tensor activation scale, both registered buffers allocated by ``prepare`` (so a saved model can be
rebuilt), filled by ``calibrate`` from the max |input| seen over all calibration batches.

Test files load this module by its path (tests/ is on sys.path, so ``tests/quantizer`` cannot be imported as a
package without shadowing the real ``quantizer``).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from quantizer.core.spec import QuantSpec
from quantizer.methods.base import Method, QuantConfig

NAME = "fakelinear"


def _fake_quant(x: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    qmax = 2 ** (bits - 1) - 1
    return torch.clamp(torch.round(x / scale), -qmax - 1, qmax) * scale


class FakeQuantLinear(nn.Module):
    """nn.Linear with fake-quantized weights and inputs once ``calibrated`` is set."""

    def __init__(self, linear: nn.Linear, w_bits: int, a_bits: int) -> None:
        super().__init__()
        self.linear = linear
        self.w_bits, self.a_bits = w_bits, a_bits
        self.register_buffer("w_scale", torch.ones(linear.out_features, 1))
        self.register_buffer("a_scale", torch.ones(()))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))
        self.quant_spec = QuantSpec(kind="linear", act_bits=a_bits, out_bits=a_bits, weight_bits=w_bits,
                                    symmetric_acts=True)
        self.observed = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.calibrated):
            self.observed = max(self.observed, float(x.detach().abs().max()))
            return self.linear(x)
        w = _fake_quant(self.linear.weight, self.w_scale, self.w_bits)
        return nn.functional.linear(_fake_quant(x, self.a_scale, self.a_bits), w, self.linear.bias)


class FakeLinearMethod(Method):
    """Fake-quantizes the Linear layers of a ViT (tests only)."""

    name = NAME
    families = ("vit",)

    def prepare(self, model: nn.Module, cfg: QuantConfig) -> nn.Module:
        for parent in list(model.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, child_name, FakeQuantLinear(child, cfg.w_bits, cfg.a_bits))
        return model

    def calibrate(self, model: nn.Module, calib: Sequence[torch.Tensor], cfg: QuantConfig,
                  holdout: Sequence[torch.Tensor] = ()) -> nn.Module:
        layers = [m for m in model.modules() if isinstance(m, FakeQuantLinear)]
        self.batches_seen = 0
        with torch.no_grad():
            for x in calib:
                model(x)
                self.batches_seen += 1
            for m in layers:
                qmax = 2 ** (m.w_bits - 1) - 1
                m.w_scale.copy_(m.linear.weight.abs().amax(dim=1, keepdim=True).clamp_min(1e-8) / qmax)
                m.a_scale.fill_(max(m.observed, 1e-8) / (2 ** (m.a_bits - 1) - 1))
                m.calibrated.fill_(True)
        return model

