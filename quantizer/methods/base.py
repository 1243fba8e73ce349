"""The method interface and its registry (the quantization extension point).

A method is two steps so that a saved quantized model can be rebuilt:
``prepare`` rewrites the float model in place (inserts quantized modules, folds batchnorm, migrates
channels...) and allocates every scale as a registered buffer of fixed shape; ``calibrate`` fills those buffers
from calibration data. ``quantize`` = prepare + calibrate. Loading a saved model = build the float model,
``prepare`` it with the saved QuantConfig, then ``load_state_dict(strict=True)``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping, Sequence

from archsim.errors import UnsupportedModelError, UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

Observer = Literal["minmax", "ema", "percentile", "omse"]


@dataclass(frozen=True)
class QuantConfig:
    """Everything that decides a quantized model. Recorded in saved models and in result files."""

    method: str
    observer: Observer = "minmax"
    w_bits: int = 8
    a_bits: int = 8
    ptf: bool = False
    lis: bool = False
    mixed: bool = False
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)  # method-specific knobs, documented per method

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "QuantConfig":
        return cls(**{**d, "options": dict(d.get("options", {}))})


#: Methods whose scheme includes PTF + integer LayerNorm and LIS: on unless turned off (--no-ptf / --no-lis).
PTF_LIS_BY_DEFAULT: frozenset[str] = frozenset({"p2vit"})


def ptf_lis_flag(value: bool | None, method: str) -> bool:
    """A --ptf / --lis choice, or the method's default when it was not given (None)."""
    return (method in PTF_LIS_BY_DEFAULT) if value is None else bool(value)


class Method:
    """Base class of a quantization recipe. Subclasses set ``name`` and ``families`` and implement the steps."""

    name: ClassVar[str] = ""
    families: ClassVar[tuple[str, ...]] = ()  # model families it supports: "vit", "swin", "efficientvit"

    def supports(self, model: "nn.Module") -> bool:
        """True if this recipe knows how to rewrite ``model`` (decided from its module types, not its name)."""
        from quantizer.models import family_of

        return family_of(model) in self.families

    def check_supported(self, model: "nn.Module") -> None:
        """UsageError unless this recipe can rewrite ``model`` (the CLIs say more: :func:`check_support`)."""
        if not self.supports(model):
            raise UsageError(f"method {self.name!r} does not support this model (it supports: "
                             f"{', '.join(self.families)})")

    @staticmethod
    def check_not_quantized(model: "nn.Module") -> None:
        """UsageError if ``model`` already holds fake-quant modules: a recipe prepares float models only."""
        from quantizer.calibrate import quant_modules

        if any(True for _ in quant_modules(model)):
            raise UsageError("this model is already quantized: prepare a float model")

    def prepare(self, model: "nn.Module", cfg: QuantConfig) -> "nn.Module":
        raise NotImplementedError

    def calibrate(self, model: "nn.Module", calib: Sequence["torch.Tensor"], cfg: QuantConfig,
                  holdout: Sequence["torch.Tensor"] = ()) -> "nn.Module":
        raise NotImplementedError

    def quantize(self, model: "nn.Module", calib: Sequence["torch.Tensor"], cfg: QuantConfig,
                 holdout: Sequence["torch.Tensor"] = ()) -> "nn.Module":
        self.check_supported(model)
        self.prepare(model, cfg)
        return self.calibrate(model, calib, cfg, holdout)


METHODS: dict[str, type[Method]] = {}


def check_support(method: Method, model: "nn.Module", model_name: str) -> None:
    """One line naming the model's family, what ``method`` supports and which methods fit (e.g. trio on DeiT)."""
    from quantizer.models import family_of

    if method.supports(model):
        return
    family = family_of(model) or "unknown"
    others = sorted(name for name, cls in METHODS.items() if name != method.name and family in cls.families)
    hint = f"; methods for {family}: {', '.join(others)}" if others else ""
    raise UnsupportedModelError(f"method {method.name!r} does not support {model_name} (family {family}; it "
                                f"supports {', '.join(method.families) or 'nothing yet'}){hint}")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make a Method available by its ``name``."""
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> Method:
    _load_builtins()
    cls = METHODS.get(name)
    if cls is None:
        raise UsageError(f"unknown quantization method {name!r} (known: {', '.join(sorted(METHODS))})")
    return cls()


def _load_builtins() -> None:
    import importlib

    for module in ("fqvit", "p2vit", "trio"):
        try:
            importlib.import_module(f"quantizer.methods.{module}")
        except ModuleNotFoundError as exc:  # a method not written yet
            if exc.name != f"quantizer.methods.{module}":
                raise
