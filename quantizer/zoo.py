"""Model zoo: named model builders, built on a chosen device with reproducible random weights, and checkpoints.

Built-in models are timm architectures with random weights (``pretrained=False``, ``torch.manual_seed(0)``, eval
mode); :func:`load_checkpoint` loads a local state dict into one with strict key and shape checking.

New models register with :func:`register_model`; a builder takes ``(resolution, batch)`` and returns either
``(module, input_shape)`` or another ready object (e.g. an archsim Workload), which :func:`build` returns
unchanged. Builders must not pick a device: :func:`build` calls them inside a ``torch.device`` context. torch and
timm are imported inside functions only, so importing this module (and listing models) is torch-free.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from quantizer.errors import UsageError

__all__ = ["BUILTIN_ORIGIN", "ModelSpec", "build", "check_batch", "is_module_and_shape", "list_models", "load_checkpoint",
           "model_spec", "register_model"]

#: Origin of the models registered here.
BUILTIN_ORIGIN = "quantizer.zoo"

Builder = Callable[[int, int], Any]  # (resolution, batch) -> (nn.Module, input_shape) | a ready object


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, the resolutions it accepts (positive multiples of ``multiple_of``) and
    ``origin``, the module that registered it (``quantizer.zoo`` for the built-ins)."""

    name: str
    builder: Builder
    default_resolution: int = 224
    multiple_of: int = 1
    meta_device: bool = True  # False if the model cannot run on the meta device (then it is traced on CPU)
    description: str = ""
    origin: str = BUILTIN_ORIGIN

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
    origin: str | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(resolution, batch)`` under ``name``; ``origin`` defaults to the builder's
    module (where it came from, shown by ``archsim list models``)."""

    def decorate(builder: Builder) -> Builder:
        if name in _MODELS:
            raise UsageError(f"model {name!r} is already registered")
        where = origin or getattr(builder, "__module__", None) or "unknown"
        _MODELS[name] = ModelSpec(name, builder, default_resolution, multiple_of, meta_device, description, where)
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


def check_batch(batch: Any) -> int:
    """``batch`` if it is a positive integer, else a one-line UsageError."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UsageError(f"batch must be a positive integer, got {batch!r}")
    return batch


def is_module_and_shape(built: Any) -> bool:
    """True for what a torch model's builder returns: a ``(module, input_shape)`` pair."""
    return isinstance(built, tuple) and len(built) == 2 and hasattr(built[0], "eval")


def build(name: str, resolution: int | None = None, batch: int = 1, *, device: str = "cpu") -> Any:
    """Build a registered model: ``(module in eval mode, input_shape)``, or what a builder of a non-torch model
    (e.g. an archsim Workload) returned, unchanged.

    The builder runs inside ``torch.device(device)`` after ``torch.manual_seed(0)``, so random weights are
    reproducible on CPU; ``device="meta"`` allocates nothing.
    """
    import torch

    spec = model_spec(name)
    resolution = spec.check_resolution(spec.default_resolution if resolution is None else resolution)
    batch = check_batch(batch)
    torch.manual_seed(0)
    with torch.device(device):
        built = spec.builder(resolution, batch)
    if not is_module_and_shape(built):
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


def key_mismatches(expected: Mapping[str, Any], state: Mapping[str, Any], optional: tuple[str, ...] = ()) -> list[str]:
    """What keeps ``state`` from loading strictly into a model whose state dict is ``expected``: its missing,
    unexpected and mis-shaped keys, the first few of each (keys ending in one of ``optional`` may be missing)."""
    missing = [k for k in expected if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f"{k} (file {list(state[k].shape)}, model {list(expected[k].shape)})"
                 for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    return [f"{label}: {_preview(keys)}" for label, keys in
            (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped keys", misshaped)) if keys]


def load_checkpoint(module: Any, path: str | os.PathLike[str], *, model: str = "model") -> None:
    """Load a local state dict into ``module`` with strict key and shape checking (UsageError naming the keys)."""
    path = Path(path)
    state = _read_state_dict(path)
    problems = key_mismatches(module.state_dict(), state, optional=("num_batches_tracked",))
    if problems:
        raise UsageError(f"checkpoint {path} does not match {model}: {'; '.join(problems)}")
    try:
        module.load_state_dict(state, strict=False)  # keys and shapes were checked above
    except RuntimeError as exc:
        detail = (str(exc).strip().splitlines() or ["load_state_dict failed"])[0]
        raise UsageError(f"checkpoint {path}: {detail}") from None
