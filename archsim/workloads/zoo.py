"""Model zoo: named model builders and :func:`trace_model`, which turns a name into a (cached) Workload.

Built-in models are timm architectures with random weights (``pretrained=False``, ``torch.manual_seed(0)``, eval
mode). Without a checkpoint they are built and traced on the ``meta`` device (shapes only, no memory, see
``archsim.workloads.extract``); with a checkpoint they are built on CPU, the state dict is loaded with strict key and
shape checking, and the real model is traced.

New models register with :func:`register_model`; a builder takes ``(resolution, batch)`` and returns either
``(module, input_shape)`` or a ready :class:`~archsim.workloads.ir.Workload`. Builders must not pick a device:
:func:`build` calls them inside a ``torch.device`` context. torch and timm are imported inside functions only.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from archsim.errors import UsageError
from archsim.workloads import cache as trace_cache
from archsim.workloads.extract import check_bits, check_scale_kind
from archsim.workloads.ir import Workload
from archsim.workloads.quant import QuantRequest

__all__ = ["ModelSpec", "build", "list_models", "load_checkpoint", "model_spec", "register_model", "trace_model"]

Builder = Callable[[int, int], Any]  # (resolution, batch) -> (nn.Module, input_shape) | Workload


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder and the resolutions it accepts (positive multiples of ``multiple_of``)."""

    name: str
    builder: Builder
    default_resolution: int = 224
    multiple_of: int = 1
    meta_device: bool = True  # False if the model cannot run on the meta device (then it is traced on CPU)
    description: str = ""

    def check_resolution(self, resolution: Any) -> int:
        """Return ``resolution`` if this model accepts it, else raise a one-line UsageError."""
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution <= 0:
            raise UsageError(f"resolution must be a positive integer, got {resolution!r}")
        if resolution % self.multiple_of:
            raise UsageError(
                f"{self.name} cannot run at resolution {resolution}: it must be a multiple of {self.multiple_of}"
            )
        return resolution


#: The zoo: model name -> spec. Filled by :func:`register_model` only.
_MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    default_resolution: int = 224,
    multiple_of: int = 1,
    meta_device: bool = True,
    description: str = "",
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(resolution, batch)`` under ``name``."""

    def decorate(builder: Builder) -> Builder:
        if name in _MODELS:
            raise UsageError(f"model {name!r} is already registered")
        _MODELS[name] = ModelSpec(name, builder, default_resolution, multiple_of, meta_device, description)
        return builder

    return decorate


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_MODELS)


def model_spec(name: str) -> ModelSpec:
    """The spec of a registered model; UsageError naming the known models otherwise."""
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown model {name!r} (known: {', '.join(list_models())})") from None


def _check_batch(batch: Any) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UsageError(f"batch must be a positive integer, got {batch!r}")
    return batch


def build(name: str, resolution: int | None = None, batch: int = 1, *, device: str = "cpu") -> Any:
    """Build a registered model: ``(module in eval mode, input_shape)``, or a Workload for workload builders.

    The builder runs inside ``torch.device(device)`` after ``torch.manual_seed(0)``, so random weights are
    reproducible on CPU; ``device="meta"`` allocates nothing.
    """
    import torch

    spec = model_spec(name)
    resolution = spec.check_resolution(spec.default_resolution if resolution is None else resolution)
    batch = _check_batch(batch)
    torch.manual_seed(0)
    with torch.device(device):
        built = spec.builder(resolution, batch)
    if isinstance(built, Workload):
        return built
    module, input_shape = built
    return module.eval(), tuple(int(s) for s in input_shape)


# ---------------------------------------------------------------------------------------------------------------
# Built-in models (timm)
# ---------------------------------------------------------------------------------------------------------------
def _timm_builder(timm_name: str, *, pass_img_size: bool) -> Builder:
    """Builder for a timm architecture; ``img_size`` is passed only when the resolution is not timm's 224."""

    def builder(resolution: int, batch: int) -> tuple[Any, tuple[int, ...]]:
        import timm

        kwargs: dict[str, Any] = {}
        if pass_img_size and resolution != 224:
            kwargs["img_size"] = resolution
        module = timm.create_model(timm_name, pretrained=False, **kwargs)
        return module, (batch, 3, resolution, resolution)

    return builder


for _variant in ("b1", "b2", "b3"):
    # Any multiple of 32 works (global pooling before the head); the published checkpoints are 224, 256 and 288.
    register_model(f"efficientvit_{_variant}", multiple_of=32,
                   description=f"EfficientViT-{_variant.upper()} (timm efficientvit_{_variant})")(
        _timm_builder(f"efficientvit_{_variant}", pass_img_size=False))

for _name, _timm_name in (
    ("deit_tiny", "deit_tiny_patch16_224"),
    ("deit_small", "deit_small_patch16_224"),
    ("deit_base", "deit_base_patch16_224"),
    ("vit_base", "vit_base_patch16_224"),
    ("vit_large", "vit_large_patch16_224"),
):
    # Patch 16: the image must tile into whole patches.
    register_model(_name, multiple_of=16, description=f"timm {_timm_name}")(
        _timm_builder(_timm_name, pass_img_size=True))

for _name in ("swin_tiny", "swin_small", "swin_base"):
    # Patch 4 and three 2x patch merges make the last stage R/32 wide, and window 7 must tile every stage. timm
    # would accept other sizes by padding windows (or shrinking them), which is not the Swin workload any more.
    register_model(_name, multiple_of=224, description=f"timm {_name}_patch4_window7_224")(
        _timm_builder(f"{_name}_patch4_window7_224", pass_img_size=True))

del _variant, _name, _timm_name


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------------
def _read_state_dict(path: Path) -> dict[str, Any]:
    """Load a state dict (also inside a 'model' or 'state_dict' key) with ``weights_only=True``."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"checkpoint {path}: cannot load ({detail})") from None
    for key in ("model", "state_dict"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
            break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UsageError(f"checkpoint {path}: expected a state dict of tensors (optionally under 'model' or "
                         f"'state_dict')")
    state = {str(k): v for k, v in data.items()}
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _preview(keys: list[str], limit: int = 3) -> str:
    more = f", ... (+{len(keys) - limit})" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_checkpoint(module: Any, path: str | os.PathLike[str], *, model: str = "model") -> None:
    """Load a local state dict into ``module`` with strict key and shape checking (UsageError naming the keys)."""
    path = Path(path)
    state = _read_state_dict(path)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} (file {list(state[k].shape)}, model {list(expected[k].shape)})"
        for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = [
        f"{label}: {_preview(keys)}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                            ("mis-shaped keys", misshaped))
        if keys
    ]
    if problems:
        raise UsageError(f"checkpoint {path} does not match {model}: {'; '.join(problems)}")
    try:
        module.load_state_dict(state, strict=False)  # keys and shapes were checked above
    except RuntimeError as exc:
        detail = (str(exc).strip().splitlines() or ["load_state_dict failed"])[0]
        raise UsageError(f"checkpoint {path}: {detail}") from None


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
    """Digest of the trace front end's source, so a changed lowering invalidates cached traces."""
    return _source_digest(Path(__file__).resolve().parent,
                          ("extract.py", "zoo.py", "ir.py", "macs.py", "quant.py", "quantized.py"))


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
    import quantizer

    root = Path(quantizer.__file__).resolve().parent
    return _source_digest(root, (str(p.relative_to(root)) for p in sorted(root.rglob("*.py"))))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _quant_identity(quant: QuantRequest | None) -> dict[str, Any]:
    """Cache-key fields of a quantization request: its settings, the saved file's content hash, the quantizer code."""
    if quant is None:
        return {"quant": None}
    fields: dict[str, Any] = {"quant": quant.to_dict(), "quantizer_code": _quantizer_digest()}
    if quant.quantized is not None:
        path = Path(quant.quantized).expanduser()
        if not path.is_file():
            raise UsageError(f"{quant.quantized}: no such file")
        fields["quant"]["quantized"] = str(path.resolve())
        fields["quantized_sha256"] = _file_sha256(path)
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
    quant: QuantRequest | None = None,
) -> Workload:
    """Trace a zoo model into a Workload, reusing the on-disk cache when ``cache`` is true.

    ``bias_bits`` is the width of biases and batch-norm tensors (the other weights use ``weight_bits``). With
    ``quant``, the model is first prepared by that quantizer and the trace carries its per-op bit widths and scale
    kinds (``act_bits``, ``weight_bits`` and ``scale_kind`` are then unused); ``name`` may be None when
    ``quant.quantized`` names a saved model, which then supplies the model and resolution.
    """
    if quant is not None and quant.quantized is not None and name is None:
        from quantizer.io import read_quantized

        _, info = read_quantized(quant.quantized)
        name = info.model
        resolution = info.resolution if resolution is None else resolution
    if name is None:
        raise UsageError("trace_model needs a model name")
    spec = model_spec(name)
    resolution = spec.check_resolution(spec.default_resolution if resolution is None else resolution)
    batch = _check_batch(batch)
    act_bits = check_bits(act_bits, "act_bits")
    weight_bits = check_bits(weight_bits, "weight_bits")
    bias_bits = check_bits(bias_bits, "bias_bits")
    scale_kind = check_scale_kind(scale_kind)
    ckpt = _checkpoint_identity(checkpoint)
    key = trace_cache.cache_key(
        model=name, resolution=resolution, batch=batch, act_bits=act_bits, weight_bits=weight_bits,
        bias_bits=bias_bits, scale_kind=scale_kind, code=_code_digest(), **ckpt, **_quant_identity(quant),
    )
    if cache:
        hit = trace_cache.load(key)
        if hit is not None:
            return hit
    if quant is not None:
        workload = _trace_quantized(spec, resolution, batch, bias_bits, ckpt["checkpoint"], quant)
    else:
        workload = _trace_uncached(spec, resolution, batch, act_bits, weight_bits, bias_bits, scale_kind,
                                   ckpt["checkpoint"])
    if cache:
        try:
            trace_cache.store(key, workload)
        except OSError as exc:
            import warnings

            warnings.warn(f"archsim: could not write the trace cache ({exc})", RuntimeWarning, stacklevel=2)
    return workload


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
                     quant: QuantRequest) -> Workload:
    """Trace the quantizer-prepared model (float mode) and apply the quantizer's per-op facts."""
    import torch

    from archsim.workloads.extract import extract
    from archsim.workloads.quant import apply_specs
    from archsim.workloads.quantized import prepare_for_trace

    prepared = prepare_for_trace(spec.name, resolution, batch, quant, checkpoint=checkpoint)
    if prepared.device == "meta":
        example = torch.empty(prepared.input_shape, device="meta")
    else:
        example = torch.randn(prepared.input_shape, generator=torch.Generator().manual_seed(0))
    req = prepared.request
    meta = {**prepared.meta, "weights": checkpoint if checkpoint is not None else "random"}
    traced = extract(prepared.module, example, name=spec.name, act_bits=req.a_bits, weight_bits=req.w_bits,
                     bias_bits=bias_bits, scale_kind="none", meta=meta)
    return apply_specs(traced, prepared.specs, req, quant_buffers=prepared.quant_buffers, bias_bits=bias_bits)
