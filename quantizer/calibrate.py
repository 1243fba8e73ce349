"""The calibration protocol (FQ-ViT 1.4) as reusable steps.

1. :func:`observe`: every batch but the search batch runs in ``calibrate`` mode: a float forward in which each
   quantizer only updates its observer's statistics;
2. :func:`search`: the declared search batch (FQ-ViT: the last one) runs in ``search`` mode: statistics are
   updated with it, then every quantizer computes its grid; OMSE, PTF and the adaptive power-of-two choice score
   their candidates on this batch only;
3. :func:`set_mode` ``quant``: fake quantization on; the integer LayerNorm and Log-Int-Softmax switch to their
   integer forms only now, because they need the grids found in step 2.

:func:`calibrate_model` runs the three steps under ``torch.no_grad`` on CPU, with a seed, in eval mode.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from quantizer.errors import UsageError
from quantizer.core.modules import MODES, Mode, QuantModule, UniformQuantizer


def quant_modules(model: nn.Module) -> Iterator[tuple[str, QuantModule]]:
    """(path, module) of every quantized module of ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, QuantModule):
            yield name, module


def set_mode(model: nn.Module, mode: Mode) -> None:
    """Put every quantized module of ``model`` in ``mode`` (float, calibrate, search, quant or auto)."""
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    for _, module in quant_modules(model):
        module.set_mode(mode)


def uncalibrated(model: nn.Module) -> list[str]:
    """Paths of the quantizers of ``model`` that have no grid yet."""
    return [name for name, m in model.named_modules() if isinstance(m, UniformQuantizer) and not m.is_calibrated]


def _check_batches(model: nn.Module, batches: Sequence[Tensor]) -> None:
    if len(batches) == 0:
        raise UsageError("calibration needs at least one batch")
    if any(not isinstance(b, Tensor) for b in batches):
        raise UsageError("calibration batches must be tensors")
    devices = {p.device.type for p in model.parameters()} | {b.device.type for b in batches}
    if devices - {"cpu"}:
        raise UsageError(f"calibration runs on CPU only (found {', '.join(sorted(devices))})")


@torch.no_grad()
def observe(model: nn.Module, batches: Sequence[Tensor]) -> None:
    """Statistics phase: a float forward of each batch with every quantizer observing."""
    set_mode(model, "calibrate")
    for batch in batches:
        model(batch)


@torch.no_grad()
def search(model: nn.Module, batch: Tensor) -> None:
    """Search phase on the declared search batch: update statistics, then compute and store every grid."""
    set_mode(model, "search")
    model(batch)
    missing = uncalibrated(model)
    if missing:
        more = f", ... (+{len(missing) - 3})" if len(missing) > 3 else ""
        raise UsageError(f"calibration did not reach {len(missing)} quantizer(s): {', '.join(missing[:3])}{more}")


def calibrate_model(model: nn.Module, batches: Sequence[Tensor], *, seed: int = 0) -> nn.Module:
    """The whole protocol: observe all batches but the last, search on the last, switch to quant mode."""
    _check_batches(model, batches)
    torch.manual_seed(seed)
    model.eval()
    observe(model, batches[:-1])
    search(model, batches[-1])
    set_mode(model, "quant")
    return model
