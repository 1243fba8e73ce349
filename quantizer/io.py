"""Saving and loading quantized models as one self-describing file.

The file is ``torch.save`` of a plain dict (readable with ``torch.load(..., weights_only=True)``)::

    format            "archsim-quantized-model"
    format_version    1
    archsim_version   version of the package that wrote it
    model             zoo model name, e.g. "deit_small"
    resolution        input resolution (pixels)
    quant_config      QuantConfig.to_dict()
    state_dict        the prepared and calibrated model's state dict (weights and every scale buffer)
    quant_specs       {module path: QuantSpec.to_dict()}, what the simulator reads

Loading rebuilds the model the way the method contract allows: build the float zoo model, ``prepare`` it with the
saved QuantConfig (which allocates every buffer with its final shape), then ``load_state_dict(strict=True)``.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from quantizer.errors import UsageError
from quantizer.core.spec import QuantSpec, collect_specs
from quantizer.methods.base import QuantConfig
from quantizer import zoo
from quantizer.zoo import key_mismatches

if TYPE_CHECKING:
    from torch import nn

__all__ = ["FORMAT", "FORMAT_VERSION", "SavedInfo", "load_quantized", "read_quantized", "save_quantized"]

FORMAT = "archsim-quantized-model"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SavedInfo:
    """The metadata of a saved quantized model."""

    path: Path
    model: str
    resolution: int
    config: QuantConfig
    quant_specs: dict[str, QuantSpec]
    archsim_version: str
    format_version: int


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("archsim")
    except Exception:  # noqa: BLE001 - a source tree that is not installed
        return "0.0.0+local"


def _check_plain(value: Any, where: str) -> None:
    """Only str/int/float/bool/None, lists, tuples and str-keyed dicts: what weights_only loading accepts."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string")
            _check_plain(v, f"{where}.{k}")
        return
    raise TypeError(f"{where}: {type(value).__name__} cannot be saved in a quantized model file (plain values only)")


def save_quantized(path: str | os.PathLike[str], model_name: str, resolution: int, cfg: QuantConfig,
                   model: "nn.Module") -> Path:
    """Write ``model`` (prepared and calibrated with ``cfg``) to ``path`` atomically; return the path.

    The file appears complete or not at all: it is written to a temporary file in the same folder, flushed, then
    renamed over ``path``.
    """
    import torch

    path = Path(path).expanduser()
    specs = {name: spec.to_dict() for name, spec in collect_specs(model).items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "archsim_version": _version(),
        "model": model_name,
        "resolution": int(resolution),
        "quant_config": cfg.to_dict(),
        "quant_specs": specs,
    }
    _check_plain(payload, "quantized model")
    payload["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"{path}: folder {folder} does not exist")
    # a fresh name opened with "x" (not mkstemp) so the file gets the usual umask permissions, not 0600
    tmp = str(folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise UsageError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        _remove(tmp)
        raise
    return path


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def read_quantized(path: str | os.PathLike[str]) -> tuple[dict[str, Any], SavedInfo]:
    """Read and check a saved file without building the model: ``(state_dict, info)``."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"{path}: not a quantized model saved by quantizer (cannot load: {detail})") from None
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise UsageError(f"{path}: not a quantized model saved by quantizer (no {FORMAT!r} header)")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise UsageError(f"{path}: format version {version!r} is not supported (this quantizer reads version "
                         f"{FORMAT_VERSION})")
    try:
        state = data["state_dict"]
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise TypeError("state_dict is not a dict of tensors")
        info = SavedInfo(
            path=path,
            model=str(data["model"]),
            resolution=int(data["resolution"]),
            config=QuantConfig.from_dict(data["quant_config"]),
            quant_specs={str(k): QuantSpec.from_dict(v) for k, v in data["quant_specs"].items()},
            archsim_version=str(data.get("archsim_version", "unknown")),
            format_version=int(version),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{path}: damaged quantized model file ({type(exc).__name__}: {exc})") from None
    except UsageError as exc:  # a valid file whose config this install cannot honour (e.g. an unknown method)
        raise UsageError(f"{path}: cannot rebuild the model ({exc})") from None
    return dict(state), info


def load_quantized(path: str | os.PathLike[str]) -> tuple["nn.Module", SavedInfo]:
    """Rebuild a saved quantized model (in eval mode) and return it with its metadata."""
    from quantizer.methods.base import get_method

    state, info = read_quantized(path)
    try:
        model, _ = zoo.build(info.model, info.resolution)
        get_method(info.config.method).prepare(model, info.config)
    except UsageError as exc:
        raise UsageError(f"{info.path}: cannot rebuild the model ({exc})") from None
    _check_keys(model, state, info.path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = (str(exc).strip().splitlines() or ["load_state_dict failed"])[0]
        raise UsageError(f"{info.path}: {detail}") from None
    return model.eval(), info


def _check_keys(model: "nn.Module", state: Mapping[str, Any], path: Path) -> None:
    """UsageError naming the first missing, unexpected and mis-shaped keys, if any."""
    problems = key_mismatches(model.state_dict(), state)
    if problems:
        raise UsageError(f"{path}: does not match the rebuilt model ({'; '.join(problems)})")
