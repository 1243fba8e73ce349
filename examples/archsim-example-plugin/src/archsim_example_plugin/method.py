"""Quantization method ``minmax_linear``: per-tensor min-max uniform quantization of every Linear layer.

The simplest post-training recipe (the uniform affine scheme of Jacob et al., "Quantization and Training of Neural
Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018, with min-max ranges): each ``nn.Linear`` of a
ViT-family model becomes a quantizer ``QLinear`` with one signed symmetric ``w_bits`` weight scale per tensor and an
unsigned asymmetric ``a_bits`` quantizer on its input, whose range is the min and max seen over the calibration
batches. Everything else (patch embedding, attention products, LayerNorm, softmax) stays float, so archsim prices
those ops at the config's ``defaults``. It reuses the quantizer's fake-quant modules and calibration protocol, so
its scales are buffers and a calibrated model saves and loads like the built-in methods' (prepare, then
``load_state_dict(strict=True)``); each module's ``quant_spec`` is what archsim turns into per-op bit widths.

The quantizer finds this module through the ``quantizer.methods`` entry point. torch is imported inside the
method's steps only, so listing methods stays torch-free.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Sequence, cast

from quantizer.errors import UsageError
from quantizer.methods.base import Method, QuantConfig, register_method

if TYPE_CHECKING:
    import torch
    from torch import nn

NAME = "minmax_linear"


@functools.cache
def minmax_linear_class() -> type[nn.Module]:
    """``MinMaxQLinear``: QLinear with a per-tensor quantizer on its input (defined on first use, with torch)."""
    from quantizer.core.modules import QAct, QLinear, QuantFormat

    class MinMaxQLinear(QLinear):
        """A QLinear that also fake-quantizes its input (``input_q``); parameters keep the float layer's names."""

        def __init__(self, linear: nn.Linear, weight_format: QuantFormat, act_format: QuantFormat) -> None:
            super().__init__(cast("nn.Parameter", linear.weight), cast("nn.Parameter | None", linear.bias),
                             weight_formats=(weight_format,), act_format=act_format)
            self.input_q = QAct(act_format)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(self.input_q(x))

    return MinMaxQLinear


@register_method
class MinMaxLinear(Method):
    """Per-tensor min-max uniform W/A quantization of the Linear layers of timm ViT/DeiT models (example plugin)."""

    name = NAME
    families = ("vit",)

    @staticmethod
    def check_config(cfg: QuantConfig) -> None:
        """A one-line UsageError for a setting this recipe does not have."""
        if cfg.observer != "minmax":
            raise UsageError(f"{NAME} takes min-max ranges: observer must be minmax, got {cfg.observer!r}")
        for flag in ("ptf", "lis", "mixed"):
            if getattr(cfg, flag):
                raise UsageError(f"{NAME} has no {flag}")
        if cfg.options:
            raise UsageError(f"{NAME} has no options, got {', '.join(sorted(cfg.options))}")

    def prepare(self, model: nn.Module, cfg: QuantConfig) -> nn.Module:
        """Replace every ``nn.Linear`` (exactly that class) in place; allocates every scale as a buffer."""
        from torch import nn

        from quantizer.core.bits import BitType
        from quantizer.core.modules import QuantFormat

        self.check_config(cfg)
        self.check_supported(model)
        self.check_not_quantized(model)
        weight = QuantFormat(BitType(cfg.w_bits, signed=True), "tensor", "minmax")
        act = QuantFormat(BitType(cfg.a_bits, signed=False), "tensor", "minmax")
        quantized = minmax_linear_class()
        for parent in list(model.modules()):
            for child_name, child in list(parent.named_children()):
                if type(child) is nn.Linear:
                    setattr(parent, child_name, quantized(child, weight, act))
        return model

    def calibrate(self, model: nn.Module, calib: Sequence[torch.Tensor], cfg: QuantConfig,
                  holdout: Sequence[torch.Tensor] = ()) -> nn.Module:
        """The quantizer's protocol: observe every batch, compute the grids on the last one, switch to quant."""
        from quantizer.calibrate import calibrate_model

        return calibrate_model(model, calib, seed=cfg.seed)

