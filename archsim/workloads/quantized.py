"""The torch side of quantized traces: a zoo model prepared by a quantizer method, ready to trace, and its specs.

Bit widths and scale kinds are decided by the method's ``prepare`` and the QuantConfig, not by calibration, so a
prepared but *uncalibrated* model, switched to float mode and built on the ``meta`` device, traces in seconds
into exactly the ops the quantized model runs. Only mixed precision picks bits from data: then the specs come from
a file written by ``quantizer save`` (``--quantized``) or, failing that, from a calibration and search run here on
synthetic images (slow; it says so on stderr). The trace is always taken from a freshly prepared model; the specs
are what :func:`archsim.workloads.quant.apply_specs` applies to it.

torch and the quantizer package are imported inside functions only.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from archsim.errors import UsageError
from archsim.workloads.quant import QuantRequest

__all__ = ["PreparedModel", "prepare_for_trace"]


@dataclass(frozen=True)
class PreparedModel:
    """A quantizer-prepared model in float mode (meta or CPU), with the specs and provenance of its quantization."""

    module: Any  # torch.nn.Module
    input_shape: tuple[int, ...]
    device: str
    request: QuantRequest  # resolved: a saved file's method and bits are filled in
    specs: Mapping[str, Mapping[str, Any]]  # module path -> QuantSpec.to_dict()
    quant_buffers: frozenset[str]  # buffers the quantizer added (scales, migration factors, shift centres)
    meta: Mapping[str, Any] = field(default_factory=dict)


def _status(message: str) -> None:
    print(f"archsim: {message}", file=sys.stderr, flush=True)


def _config(request: QuantRequest) -> Any:
    from quantizer.methods.base import QuantConfig

    return QuantConfig(method=request.method, observer=request.observer, w_bits=request.w_bits,  # type: ignore[arg-type]
                       a_bits=request.a_bits, ptf=request.ptf, lis=request.lis, mixed=request.mixed, seed=0,
                       options=dict(request.options))


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


def _float_view(module: Any) -> None:
    """Every quantizer of ``module`` passes values through, so the trace records the model's ops only."""
    from quantizer.calibrate import set_mode
    from quantizer.methods.trio_quant import Switchable

    set_mode(module, "float")
    for sub in module.modules():
        if isinstance(sub, Switchable):
            sub.enabled = False


def _specs_of(module: Any) -> dict[str, dict[str, Any]]:
    from quantizer.core.spec import collect_specs

    return {path: spec.to_dict() for path, spec in collect_specs(module).items()}


def _build(name: str, resolution: int, batch: int, device: str, checkpoint: str | None) -> tuple[Any, tuple[int, ...]]:
    from archsim.workloads import zoo

    built = zoo.build(name, resolution, batch, device=device)
    if not isinstance(built, tuple):
        raise UsageError(f"{name} is not a PyTorch model; it cannot be quantized")
    module, shape = built
    if checkpoint is not None:
        zoo.load_checkpoint(module, checkpoint, model=name)
    return module, shape


def _prepare(method: Any, cfg: Any, name: str, resolution: int, batch: int, device: str,
             checkpoint: str | None) -> tuple[Any, tuple[int, ...], str, frozenset[str]]:
    """Build, check support, prepare; returns (module, input shape, device, buffers the quantizer added)."""
    from quantizer.methods.base import check_support

    module, shape = _build(name, resolution, batch, device, checkpoint)
    check_support(method, module, name)
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


def _calibrated_specs(method: Any, cfg: Any, name: str, resolution: int, checkpoint: str | None,
                      progress: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Mixed precision without a saved model: calibrate and search here, as ``quantizer save`` would without
    ``--data`` (synthetic images, the quantizer CLI's default batch counts, seed 0)."""
    import torch

    from quantizer.cli import DEFAULT_CALIB_BATCHSIZE, DEFAULT_CALIB_ITER, DEFAULT_HOLDOUT_ITER
    from quantizer.data import SyntheticData
    from quantizer.methods.base import check_support

    module, shape = _build(name, resolution, 1, "cpu", checkpoint)
    check_support(method, module, name)
    split = SyntheticData(shape[1:], seed=cfg.seed).calibration(DEFAULT_CALIB_BATCHSIZE, DEFAULT_CALIB_ITER,
                                                                holdout_batches=DEFAULT_HOLDOUT_ITER)
    progress(f"{cfg.method} mixed precision needs calibration: calibrating {name} on {split.calib.images} "
             f"synthetic images and searching bit widths (minutes; `quantizer save {name} --method {cfg.method} "
             f"--mixed --out FILE` once, then `--quantized FILE`, skips this)")
    torch.manual_seed(cfg.seed)
    method.quantize(module, split.calib, cfg, split.holdout)
    return _specs_of(module)


def prepare_for_trace(name: str | None, resolution: int | None, batch: int, request: QuantRequest, *,
                      checkpoint: str | None = None,
                      progress: Callable[[str], None] = _status) -> PreparedModel:
    """The zoo model ``name`` prepared by ``request``'s method, in float mode, with the specs to apply to its trace.

    With ``request.quantized``, the saved file gives the model (``name`` may be None, else it must match), the
    resolution (likewise), the QuantConfig and the specs. Errors are one-line UsageErrors: an unknown or
    uninstalled method, a model the method does not support, a file that is not a saved quantized model.
    """
    from archsim.workloads import zoo
    from quantizer.methods.base import get_method

    source = "prepared"
    specs: dict[str, dict[str, Any]] | None = None
    cfg = _config(request) if request.quantized is None else None
    if request.quantized is not None:
        from quantizer.io import read_quantized

        _, info = read_quantized(request.quantized)
        if name is not None and name != info.model:
            raise UsageError(f"--quantized {request.quantized} holds {info.model}, not {name}")
        if resolution is not None and resolution != info.resolution:
            raise UsageError(f"--quantized {request.quantized} was quantized at resolution {info.resolution}, "
                             f"not {resolution}")
        name, resolution = info.model, info.resolution
        cfg = info.config
        request = QuantRequest(method=cfg.method, w_bits=cfg.w_bits, a_bits=cfg.a_bits, observer=cfg.observer,
                               ptf=cfg.ptf, lis=cfg.lis, mixed=cfg.mixed, options=dict(cfg.options),
                               quantized=request.quantized)
        specs = {path: spec.to_dict() for path, spec in info.quant_specs.items()}
        source = "file"
    if name is None:
        raise UsageError("give --model NAME (or --quantized FILE)")
    spec = zoo.model_spec(name)
    resolution = spec.check_resolution(spec.default_resolution if resolution is None else resolution)
    method = get_method(cfg.method)
    if specs is None and cfg.mixed:
        specs = _calibrated_specs(method, cfg, name, resolution, checkpoint, progress)
        source = "calibrated"
    device = "cpu" if checkpoint is not None or not spec.meta_device else "meta"
    module, shape, device, added = _prepare(method, cfg, name, resolution, batch, device, checkpoint)
    if specs is None:
        specs = _specs_of(module)
    _float_view(module)
    if device != "cpu":
        _to_meta(module)
        device = "meta"
    meta = {"model": name, "resolution": resolution, "batch": batch,
            "quant": {**request.to_dict(), "source": source, "modules": len(specs)}}
    return PreparedModel(module, shape, device, request, specs, added, meta)
