"""archsim's one door to the quantizer package: the only archsim module that imports ``quantizer``.

The quantizer stands alone (it imports nothing of archsim); archsim reaches its model zoo, its method registry, its
:class:`QuantConfig` record, saved models and calibration helpers through the names here. At import time only
torch-free quantizer modules are loaded (importing this module does not import torch); the ones that need torch
are imported inside the functions that use them.

Quantizer errors keep their one-line message and become archsim's (:func:`archsim_errors`):
``UnsupportedModelError`` stays an :class:`archsim.errors.UnsupportedModelError`, any other is a ``UsageError``.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, TypeVar

import quantizer
from archsim.errors import UnsupportedModelError, UsageError
from quantizer import zoo as _zoo
from quantizer.core import spec as _spec
from quantizer.core.bits import MAX_BITS, MIN_BITS
from quantizer.core.bits import check_bits as _check_bits
from quantizer.data import DEFAULT_CALIB_BATCHSIZE, DEFAULT_CALIB_ITER, DEFAULT_HOLDOUT_ITER
from quantizer.errors import QuantizerError
from quantizer.errors import UnsupportedModelError as QuantizerUnsupportedModelError
from quantizer.methods import base as _methods
from quantizer.methods.base import OBSERVERS, QuantConfig, register_method
from quantizer.zoo import Builder, ModelSpec, is_module_and_shape

if TYPE_CHECKING:
    from quantizer.data import SyntheticData
    from quantizer.io import SavedInfo

__all__ = [
    "Builder", "DEFAULT_CALIB_BATCHSIZE", "DEFAULT_CALIB_ITER", "DEFAULT_HOLDOUT_ITER",
    "MAX_BITS", "MIN_BITS", "ModelSpec", "OBSERVERS", "QuantConfig",
    "QuantizerError", "QuantizerUnsupportedModelError", "archsim_errors", "build", "check_batch", "check_bits",
    "check_method", "check_support", "collect_specs", "float_view", "get_method", "is_module_and_shape",
    "list_models", "load_checkpoint", "method_description", "method_names", "method_origin", "model_spec",
    "quant_config", "quantizer_root", "read_quantized", "register_method",
    "register_model", "specs_mapping", "synthetic_data",
]

F = TypeVar("F", bound=Callable[..., Any])


# ---- errors --------------------------------------------------------------------------------------------------------


@contextmanager
def archsim_errors() -> Iterator[None]:
    """Re-raise a quantizer error inside as the archsim error of the same meaning and one-line message."""
    try:
        yield
    except QuantizerUnsupportedModelError as exc:
        raise UnsupportedModelError(exc.detail) from None
    except QuantizerError as exc:
        raise UsageError(exc.detail) from None


def _translated(fn: F) -> F:
    """``fn`` raising archsim errors in place of the quantizer's."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with archsim_errors():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# ---- the model zoo (quantizer.zoo) ----------------------------------------------------------------------------------

list_models = _zoo.list_models
model_spec = _translated(_zoo.model_spec)
build = _translated(_zoo.build)
load_checkpoint = _translated(_zoo.load_checkpoint)
check_batch = _translated(_zoo.check_batch)


def register_model(name: str, *, default_resolution: int = 224, multiple_of: int = 1, meta_device: bool = True,
                   description: str = "", origin: str | None = None) -> Callable[[Builder], Builder]:
    """:func:`quantizer.zoo.register_model` (origin: the builder's module unless given), with archsim errors."""
    decorate = _zoo.register_model(name, default_resolution=default_resolution, multiple_of=multiple_of,
                                   meta_device=meta_device, description=description, origin=origin)
    return _translated(decorate)


# ---- methods and their record (quantizer.methods) -------------------------------------------------------------------

method_names = _translated(_methods.method_names)
method_origin = _translated(_methods.method_origin)
method_description = _translated(_methods.method_description)
check_method = _translated(_methods.check_method)
get_method = _translated(_methods.get_method)
check_support = _translated(_methods.check_support)
check_bits = _translated(_check_bits)


@_translated
def quant_config(method: str, **settings: Any) -> QuantConfig:
    """A validated :class:`QuantConfig` (unknown method, bits out of range... are one-line archsim UsageErrors)."""
    return QuantConfig(method=method, **settings)


# ---- saved models, specs, calibration --------------------------------------------------------------------------------


@_translated
def read_quantized(path: str | Path) -> tuple[dict[str, Any], SavedInfo]:
    """A file written by ``quantizer save``: its state dict and metadata (model, resolution, config, specs)."""
    from quantizer.io import read_quantized as read

    return read(path)


def collect_specs(module: Any) -> dict[str, dict[str, Any]]:
    """Module path -> ``QuantSpec.to_dict()`` of every quantized module of ``module``."""
    return {path: spec.to_dict() for path, spec in _spec.collect_specs(module).items()}


def float_view(module: Any) -> None:
    """Make every quantizer of ``module`` pass values through, so a trace records the model's ops only."""
    from quantizer.calibrate import set_mode
    from quantizer.methods.trio_quant import Switchable

    set_mode(module, "float")
    for sub in module.modules():
        if isinstance(sub, Switchable):
            sub.enabled = False


def synthetic_data(shape: tuple[int, ...], seed: int = 0) -> SyntheticData:
    """Seeded synthetic images of ``shape`` (C, H, W): the quantizer CLI's calibration data without ``--data``."""
    from quantizer.data import SyntheticData

    return SyntheticData(shape, seed=seed)


def quantizer_root() -> Path:
    """The quantizer package's source folder (its code decides every spec a quantized trace carries)."""
    return Path(quantizer.__file__).resolve().parent


def specs_mapping(specs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Saved ``{path: QuantSpec}`` as plain dicts (the form :func:`archsim.workloads.quant.apply_specs` reads)."""
    return {str(path): spec.to_dict() for path, spec in specs.items()}
