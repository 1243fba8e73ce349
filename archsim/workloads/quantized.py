"""The torch side of quantized traces: a zoo model prepared by a quantizer method, ready to trace, and its specs.

Bit widths and scale kinds are decided by the method's ``prepare`` and the QuantConfig, not by calibration, so a
prepared but *uncalibrated* model, switched to float mode and built on the ``meta`` device, traces in seconds
into exactly the ops the quantized model runs. Only mixed precision picks bits from data: then the specs come from
a file written by ``quantizer save`` (``--quantized``) or, failing that, from a calibration and search run here on
synthetic images (slow; it says so on stderr). The trace is always taken from a freshly prepared model; the specs
are what :func:`archsim.workloads.quant.apply_specs` applies to it.

torch is imported inside functions only; the quantizer is reached through :mod:`archsim.workloads.bridge`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from archsim.errors import UsageError
from archsim.workloads import bridge
from archsim.workloads.bridge import QuantConfig

__all__ = ["PreparedModel", "prepare_for_trace"]


@dataclass(frozen=True)
class PreparedModel:
    """A quantizer-prepared model in float mode (meta or CPU), with the specs and provenance of its quantization."""

    module: Any  # torch.nn.Module
    input_shape: tuple[int, ...]
    device: str
    config: QuantConfig  # resolved: a saved file's method and bits
    quantized: str | None  # the saved file it came from, if any
    specs: Mapping[str, Mapping[str, Any]]  # module path -> QuantSpec.to_dict()
    quant_buffers: frozenset[str]  # buffers the quantizer added (scales, migration factors, shift centres)
    meta: Mapping[str, Any] = field(default_factory=dict)


def _status(message: str) -> None:
    print(f"archsim: {message}", file=sys.stderr, flush=True)


def _to_meta(module: Any) -> None:
    """Move every parameter and buffer with a dimension to ``meta``; 0-d ones (flags, format indices) stay on CPU
    so that Python-level reads such as ``int(weight_format)`` still work while tracing."""
    import torch

    for sub in module.modules():
        for store in (sub._parameters, sub._buffers):
            for key, t in list(store.items()):
                if t is None or t.dim() == 0 or t.device.type == "meta":
                    continue
                moved = t.detach().to("meta")
                store[key] = torch.nn.Parameter(moved, requires_grad=False) if key in sub._parameters else moved


def _build(name: str, resolution: int, batch: int, device: str, checkpoint: str | None) -> tuple[Any, tuple[int, ...]]:
    built = bridge.build(name, resolution, batch, device=device)
    if not bridge.is_module_and_shape(built):
        raise UsageError(f"{name} is not a PyTorch model; it cannot be quantized")
    module, shape = built
    if checkpoint is not None:
        bridge.load_checkpoint(module, checkpoint, model=name)
    return module, shape


def _prepare(method: Any, cfg: QuantConfig, name: str, resolution: int, batch: int, device: str,
             checkpoint: str | None) -> tuple[Any, tuple[int, ...], str, frozenset[str]]:
    """Build, check support, prepare; returns (module, input shape, device, buffers the quantizer added)."""
    module, shape = _build(name, resolution, batch, device, checkpoint)
    bridge.check_support(method, module, name)
    before = {n for n, _ in module.named_buffers()}
    try:
        method.prepare(module, cfg)
    except (RuntimeError, NotImplementedError):
        if device != "meta":
            raise
        # a method whose prepare computes on weight values cannot run on meta tensors: prepare on CPU instead
        module, shape = _build(name, resolution, batch, "cpu", checkpoint)
        before = {n for n, _ in module.named_buffers()}
        method.prepare(module, cfg)
        device = "cpu-then-meta"
    added = frozenset(n for n, _ in module.named_buffers() if n not in before)
    return module.eval(), shape, device, added


def _calibrated_specs(method: Any, cfg: QuantConfig, name: str, resolution: int, checkpoint: str | None,
                      progress: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Mixed precision without a saved model: calibrate and search here, as ``quantizer save`` would without
    ``--data`` (synthetic images, the quantizer CLI's default batch counts, seed 0)."""
    import torch

    module, shape = _build(name, resolution, 1, "cpu", checkpoint)
    bridge.check_support(method, module, name)
    split = bridge.synthetic_data(shape[1:], seed=cfg.seed).calibration(
        bridge.DEFAULT_CALIB_BATCHSIZE, bridge.DEFAULT_CALIB_ITER, holdout_batches=bridge.DEFAULT_HOLDOUT_ITER)
    progress(f"{cfg.method} mixed precision needs calibration: calibrating {name} on {split.calib.images} "
             f"synthetic images and searching bit widths (minutes; `quantizer save {name} --method {cfg.method} "
             f"--mixed --out FILE` once, then `--quantized FILE`, skips this)")
    torch.manual_seed(cfg.seed)
    method.quantize(module, split.calib, cfg, split.holdout)
    return bridge.collect_specs(module)


def prepare_for_trace(name: str | None, resolution: int | None, batch: int, quant: QuantConfig | None, *,
                      quantized: str | None = None, checkpoint: str | None = None,
                      progress: Callable[[str], None] = _status) -> PreparedModel:
    """The zoo model ``name`` prepared by ``quant``'s method, in float mode, with the specs to apply to its trace.

    With ``quantized`` (then ``quant`` is None), the saved file gives the model (``name`` may be None, else it must
    match), the resolution (likewise), the QuantConfig and the specs. Errors are one-line archsim errors: an unknown
    method, a model the method does not support (UnsupportedModelError), a file that is not a saved quantized model.
    """
    with bridge.archsim_errors():
        return _prepare_for_trace(name, resolution, batch, quant, quantized, checkpoint, progress)


def _prepare_for_trace(name: str | None, resolution: int | None, batch: int, quant: QuantConfig | None,
                       quantized: str | None, checkpoint: str | None,
                       progress: Callable[[str], None]) -> PreparedModel:
    source = "prepared"
    specs: dict[str, dict[str, Any]] | None = None
    if quantized is not None:
        if quant is not None:
            raise UsageError(f"--quantized {quantized} fixes the method and the bit widths: give no quantizer "
                             "settings with it")
        _, info = bridge.read_quantized(quantized)
        if name is not None and name != info.model:
            raise UsageError(f"--quantized {quantized} holds {info.model}, not {name}")
        if resolution is not None and resolution != info.resolution:
            raise UsageError(f"--quantized {quantized} was quantized at resolution {info.resolution}, "
                             f"not {resolution}")
        name, resolution = info.model, info.resolution
        quant = info.config
        specs = bridge.specs_mapping(info.quant_specs)
        source = "file"
    if quant is None:
        raise UsageError("prepare_for_trace needs a QuantConfig or a saved quantized model")
    if name is None:
        raise UsageError("give --model NAME (or --quantized FILE)")
    spec = bridge.model_spec(name)
    resolution = spec.check_resolution(spec.default_resolution if resolution is None else resolution)
    method = bridge.get_method(quant.method)
    if specs is None and quant.mixed:
        specs = _calibrated_specs(method, quant, name, resolution, checkpoint, progress)
        source = "calibrated"
    device = "cpu" if checkpoint is not None or not spec.meta_device else "meta"
    module, shape, device, added = _prepare(method, quant, name, resolution, batch, device, checkpoint)
    if specs is None:
        specs = bridge.collect_specs(module)
    bridge.float_view(module)
    if device != "cpu":
        _to_meta(module)
        device = "meta"
    meta = {"model": name, "resolution": resolution, "batch": batch,
            "quant": {**quant.to_dict(), "quantized": quantized, "source": source, "modules": len(specs)}}
    return PreparedModel(module, shape, device, quant, quantized, specs, added, meta)
