"""Model zoo: :func:`trace_model`, which turns a zoo model's name into a (cached) Workload.

The zoo itself (named builders, :func:`build`, :func:`load_checkpoint`) is the quantizer's (``quantizer.zoo``),
re-exported here through :mod:`archsim.workloads.bridge`. Built-in models are timm architectures with random
weights. Without a checkpoint they are built and traced on the ``meta`` device (shapes only, no memory, see
``archsim.workloads.extract``); with a checkpoint they are built on CPU, the state dict is loaded with strict key and
shape checking, and the real model is traced.

New models register with :func:`register_model`; a builder takes ``(resolution, batch)`` and returns either
``(module, input_shape)`` or a ready :class:`~archsim.workloads.ir.Workload`. Builders must not pick a device:
:func:`build` calls them inside a ``torch.device`` context. torch and timm are imported inside functions only.
"""
from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path
from typing import Any, Iterable

from archsim.errors import UsageError
from archsim.registry import PLUGINS, load_plugins
from archsim.workloads import bridge
from archsim.workloads import cache as trace_cache
from archsim.workloads.bridge import (ModelSpec, QuantConfig, build, check_batch, list_models, load_checkpoint,
                                      model_spec, register_model)
from archsim.workloads.extract import check_bits, check_scale_kind
from archsim.workloads.ir import Workload

__all__ = ["ModelSpec", "build", "list_models", "load_checkpoint", "model_spec", "register_model", "trace_model"]


# ---------------------------------------------------------------------------------------------------------------
# Tracing with the cache
# ---------------------------------------------------------------------------------------------------------------
def _source_digest(root: Path, names: Iterable[str]) -> str:
    """Digest of source files under ``root`` (names and contents; a missing file counts by its name)."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        try:
            digest.update((root / name).read_bytes())
        except OSError:
            pass
    return digest.hexdigest()[:16]


def _code_digest() -> str:
    """Digest of the trace front end's source and of the zoo's builders (``quantizer/zoo.py``), so a changed
    lowering or builder invalidates cached traces."""
    front = _source_digest(Path(__file__).resolve().parent,
                           ("extract.py", "zoo.py", "ir.py", "macs.py", "quant.py", "quantized.py", "bridge.py"))
    return front + _source_digest(bridge.quantizer_root(), ("zoo.py",))


def _checkpoint_identity(checkpoint: str | os.PathLike[str] | None) -> dict[str, Any]:
    if checkpoint is None:
        return {"checkpoint": None}
    path = Path(checkpoint).expanduser()
    try:
        stat = path.stat()
    except OSError:
        raise UsageError(f"checkpoint: no such file {str(path)!r}") from None
    if not path.is_file():
        raise UsageError(f"checkpoint: {str(path)!r} is not a file")
    return {"checkpoint": str(path.resolve()), "checkpoint_size": stat.st_size,
            "checkpoint_mtime_ns": stat.st_mtime_ns}


def _quantizer_digest() -> str:
    """Digest of the quantizer package's source: its methods decide every spec a quantized trace carries."""
    root = bridge.quantizer_root()
    return _source_digest(root, (str(p.relative_to(root)) for p in sorted(root.rglob("*.py"))))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _quant_identity(quant: QuantConfig | None, quantized: str | None) -> dict[str, Any]:
    """Cache-key fields of the quantizer to run: its settings (and where its method comes from), or the saved file's
    path and content hash; and the quantizer's code."""
    if quant is None and quantized is None:
        return {"quant": None}
    fields: dict[str, Any] = {"quantizer_code": _quantizer_digest()}
    if quantized is not None:
        path = Path(quantized).expanduser()
        if not path.is_file():
            raise UsageError(f"{quantized}: no such file")
        fields["quant"] = {"quantized": str(path.resolve())}
        fields["quantized_sha256"] = _file_sha256(path)
    else:
        assert quant is not None
        fields["quant"] = {**quant.to_dict(), "origin": bridge.method_origin(quant.method)}
    return fields


def trace_model(
    name: str | None,
    resolution: int | None = None,
    batch: int = 1,
    act_bits: int = 8,
    weight_bits: int = 8,
    scale_kind: str = "none",
    checkpoint: str | os.PathLike[str] | None = None,
    cache: bool = True,
    bias_bits: int = 32,
    quant: QuantConfig | None = None,
    quantized: str | os.PathLike[str] | None = None,
) -> Workload:
    """Trace a zoo model into a Workload, reusing the on-disk cache when ``cache`` is true.

    ``bias_bits`` is the width of biases and batch-norm tensors (the other weights use ``weight_bits``). With
    ``quant`` (e.g. ``cfg.quant`` of a loaded config), the model is first prepared by that quantizer and the trace
    carries its per-op bit widths and scale kinds (``act_bits``, ``weight_bits`` and ``scale_kind`` are then unused).
    With ``quantized``, a file written by ``quantizer save``, that file decides the method, bits and every layer's
    choice instead (``quant`` must then be None); ``name`` may be None, the file then supplies the model and
    resolution.
    """
    with bridge.archsim_errors():
        return _trace_model(name, resolution, batch, act_bits, weight_bits, scale_kind, checkpoint, cache, bias_bits,
                            quant, None if quantized is None else str(quantized))


def _trace_model(name: str | None, resolution: int | None, batch: int, act_bits: int, weight_bits: int,
                 scale_kind: str, checkpoint: str | os.PathLike[str] | None, cache: bool, bias_bits: int,
                 quant: QuantConfig | None, quantized: str | None) -> Workload:
    """:func:`trace_model` with quantizer errors not yet translated."""
    if quant is not None and quantized is not None:
        raise UsageError("a saved quantized model fixes the method and the bit widths: give quant or quantized, "
                         "not both")
    if quantized is not None and name is None:
        _, info = bridge.read_quantized(quantized)
        name = info.model
        resolution = info.resolution if resolution is None else resolution
    if name is None:
        raise UsageError("trace_model needs a model name")
    load_plugins()  # a plugin's model, op kinds and lowerings
    spec = model_spec(name)
    resolution = spec.check_resolution(spec.default_resolution if resolution is None else resolution)
    batch = check_batch(batch)
    act_bits = check_bits(act_bits, "act_bits")
    weight_bits = check_bits(weight_bits, "weight_bits")
    bias_bits = check_bits(bias_bits, "bias_bits")
    scale_kind = check_scale_kind(scale_kind)
    ckpt = _checkpoint_identity(checkpoint)
    key = trace_cache.cache_key(
        model=name, resolution=resolution, batch=batch, act_bits=act_bits, weight_bits=weight_bits,
        bias_bits=bias_bits, scale_kind=scale_kind, code=_code_digest(), **ckpt, **_quant_identity(quant, quantized),
        plugins=dict(PLUGINS),  # a plugin's lowerings change traces
    )
    if cache:
        hit = trace_cache.load(key)
        if hit is not None:
            return hit
    if quant is not None or quantized is not None:
        workload = _trace_quantized(spec, resolution, batch, bias_bits, ckpt["checkpoint"], quant, quantized)
    else:
        workload = _trace_uncached(spec, resolution, batch, act_bits, weight_bits, bias_bits, scale_kind,
                                   ckpt["checkpoint"])
    if cache:
        try:
            trace_cache.store(key, workload)
        except OSError as exc:  # an unwritable cache directory or HOME: carry on without the cache
            where = f"{exc.filename}: " if exc.filename else ""
            _warn_once(f"archsim: warning: trace cache not written ({where}{exc.strerror or exc}); "
                       "continuing without it")
    return workload


@functools.cache
def _warn_once(line: str) -> None:
    """Print ``line`` on stderr the first time only: a sweep or a compare that traces many workloads into the same
    unwritable cache says so once, not once per workload (memoised, like a registry: no other state)."""
    print(line, file=sys.stderr)


def _trace_uncached(spec: ModelSpec, resolution: int, batch: int, act_bits: int, weight_bits: int,
                    bias_bits: int, scale_kind: str, checkpoint: str | None) -> Workload:
    import torch

    from archsim.workloads.extract import extract

    device = "meta" if checkpoint is None and spec.meta_device else "cpu"
    built = build(spec.name, resolution, batch, device=device)
    if isinstance(built, Workload):
        return built
    module, input_shape = built
    if checkpoint is not None:
        load_checkpoint(module, checkpoint, model=spec.name)
    if device == "meta":
        example = torch.empty(input_shape, device="meta")
    else:
        example = torch.randn(input_shape, generator=torch.Generator().manual_seed(0))
    meta = {"model": spec.name, "resolution": resolution, "batch": batch,
            "weights": checkpoint if checkpoint is not None else "random"}
    return extract(module, example, name=spec.name, act_bits=act_bits, weight_bits=weight_bits,
                   bias_bits=bias_bits, scale_kind=scale_kind, meta=meta)


def _trace_quantized(spec: ModelSpec, resolution: int, batch: int, bias_bits: int, checkpoint: str | None,
                     quant: QuantConfig | None, quantized: str | None) -> Workload:
    """Trace the quantizer-prepared model (float mode) and apply the quantizer's per-op facts."""
    import torch

    from archsim.workloads.extract import extract
    from archsim.workloads.quant import apply_specs
    from archsim.workloads.quantized import prepare_for_trace

    prepared = prepare_for_trace(spec.name, resolution, batch, quant, quantized=quantized, checkpoint=checkpoint)
    if prepared.device == "meta":
        example = torch.empty(prepared.input_shape, device="meta")
    else:
        example = torch.randn(prepared.input_shape, generator=torch.Generator().manual_seed(0))
    cfg = prepared.config
    meta = {**prepared.meta, "weights": checkpoint if checkpoint is not None else "random"}
    traced = extract(prepared.module, example, name=spec.name, act_bits=cfg.a_bits, weight_bits=cfg.w_bits,
                     bias_bits=bias_bits, scale_kind="none", meta=meta)
    return apply_specs(traced, prepared.specs, cfg, quant_buffers=prepared.quant_buffers, bias_bits=bias_bits)
