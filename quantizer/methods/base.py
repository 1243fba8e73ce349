"""The method interface and its registry (the quantization extension point).

A method is two steps so that a saved quantized model can be rebuilt:
``prepare`` rewrites the float model in place (inserts quantized modules, folds batchnorm, migrates
channels...) and allocates every scale as a registered buffer of fixed shape; ``calibrate`` fills those buffers
from calibration data. ``quantize`` = prepare + calibrate. Loading a saved model = build the float model,
``prepare`` it with the saved QuantConfig, then ``load_state_dict(strict=True)``.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping, Sequence, get_args

from quantizer.core.bits import check_bits
from quantizer.errors import UnsupportedModelError, UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

Observer = Literal["minmax", "ema", "percentile", "omse"]

#: The observers a QuantConfig may name (``--quant-method`` of the quantizer CLI, ``quant.observer`` in archsim).
OBSERVERS: tuple[str, ...] = get_args(Observer)

#: Methods whose scheme includes PTF + integer LayerNorm and LIS: on unless turned off (--no-ptf / --no-lis).
PTF_LIS_BY_DEFAULT: frozenset[str] = frozenset({"p2vit"})


def ptf_lis_flag(value: bool | None, method: str) -> bool:
    """A --ptf / --lis choice, or the method's default when it was not given (None)."""
    return (method in PTF_LIS_BY_DEFAULT) if value is None else bool(value)


@dataclass(frozen=True)
class QuantConfig:
    """Everything that decides a quantized model, validated on construction. Recorded in saved models and in
    result files; the one quantizer record (archsim's ``quant:`` config section validates into it too).

    ``method`` must be registered, the bit widths within ``quantizer.core.bits``' range, ``observer`` one of
    :data:`OBSERVERS`; ``ptf``/``lis`` left None become the method's default (on for p2vit).
    """

    method: str
    observer: Observer = "minmax"
    w_bits: int = 8
    a_bits: int = 8
    ptf: bool | None = None  # resolved to a bool on construction
    lis: bool | None = None
    mixed: bool = False
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)  # method-specific knobs, documented per method

    def __post_init__(self) -> None:
        check_method(self.method)
        check_bits(self.w_bits, "w_bits")
        check_bits(self.a_bits, "a_bits")
        if self.observer not in OBSERVERS:
            raise UsageError(f"observer must be one of {', '.join(OBSERVERS)}, got {self.observer!r}")
        for flag in ("mixed", "ptf", "lis"):
            value = getattr(self, flag)
            if value is not None and not isinstance(value, bool):
                raise UsageError(f"{flag} must be true or false, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise UsageError(f"seed must be an integer, got {self.seed!r}")
        for flag in ("ptf", "lis"):
            object.__setattr__(self, flag, ptf_lis_flag(getattr(self, flag), self.method))
        object.__setattr__(self, "options", dict(self.options))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "QuantConfig":
        return cls(**{**d, "options": dict(d.get("options", {}))})

    def describe(self) -> str:
        """One line for reports, e.g. ``fqvit W8A8 (ptf, lis)``."""
        flags = [name for name in ("ptf", "lis", "mixed") if getattr(self, name)]
        flags += [f"{k}={v}" for k, v in sorted(self.options.items())]
        return f"{self.method} W{self.w_bits}A{self.a_bits}" + (f" ({', '.join(flags)})" if flags else "")


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


# ---- the registry ---------------------------------------------------------------------------------------------------
#
# Names are listable without torch: the built-ins are registered lazily (name -> "module:Class", imported on first
# use); plugins register their classes with the decorator, on import of a module named in the ``quantizer.methods``
# entry-point group (or imported by archsim's own plugins).

#: Entry-point group whose modules register quantization methods when loaded.
ENTRY_POINT_GROUP = "quantizer.methods"


@dataclass(frozen=True)
class LazyMethod:
    """A method known by name whose class is imported on first use: ``target`` is ``module:Class``."""

    name: str
    target: str
    description: str = ""

    @property
    def origin(self) -> str:
        return self.target.partition(":")[0]


#: Method classes by name (the built-ins once imported, and every class registered with the decorator).
METHODS: dict[str, type[Method]] = {}

#: Methods registered by name only (the built-ins); their modules import torch.
LAZY_METHODS: dict[str, LazyMethod] = {}

def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make a Method available by its ``name`` (a later registration replaces an earlier one)."""
    if not cls.name:
        raise UsageError(f"method class {cls.__qualname__} has no name")
    METHODS[cls.name] = cls
    return cls


def register_lazy_method(name: str, target: str, description: str = "") -> None:
    """Make a method known by ``name`` without importing it: ``target`` (``module:Class``) is imported on first use."""
    if ":" not in target:
        raise UsageError(f"method {name!r}: target must be 'module:Class', got {target!r}")
    LAZY_METHODS[name] = LazyMethod(name, target, description)


for _name, _target, _description in (
    ("fqvit", "quantizer.methods.fqvit:FqVit", "FQ-ViT post-training quantization of timm ViT/DeiT and Swin models."),
    ("p2vit", "quantizer.methods.p2vit:P2Vit",
     "P2-ViT power-of-two post-training quantization of timm ViT/DeiT and Swin models."),
    ("trio", "quantizer.methods.trio:TrioVit",
     "Trio-ViT: BN folding, DW-input migration, PW-input shifting, log2 divisors, MSE-p ranges, AdaRound."),
    ("packqvit", "quantizer.methods.packqvit:PackQVit",
     "PackQViT: sub-8-bit QAT of timm ViT/DeiT (log2 softmax/GELU, outlier-aware residuals, integer non-linears)."),
):
    register_lazy_method(_name, _target, _description)
del _name, _target, _description


@functools.cache
def load_entry_points() -> None:
    """Import every module named in the ``quantizer.methods`` entry-point group, once per process (they register
    methods); ``load_entry_points.cache_clear()`` rescans."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin is reported as one line
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UsageError(f"quantization plugin {ep.name!r} ({ep.value}) failed to load: {detail}") from None


def method_names() -> list[str]:
    """Every registered method's name, sorted (torch is not imported)."""
    load_entry_points()
    return sorted(set(METHODS) | set(LAZY_METHODS))


def check_method(name: str) -> str:
    """``name`` if it is a registered method, else a one-line UsageError listing the known ones."""
    if not isinstance(name, str) or name not in method_names():
        raise UsageError(f"unknown quantization method {name!r} (known: {', '.join(method_names())})")
    return name


def method_origin(name: str) -> str:
    """The module that provides method ``name`` (``quantizer.methods.fqvit``, a plugin's module...)."""
    check_method(name)
    cls = METHODS.get(name)
    return cls.__module__ if cls is not None else LAZY_METHODS[name].origin


def method_description(name: str) -> str:
    """One line describing method ``name`` (its class docstring's first line), without importing it."""
    check_method(name)
    cls = METHODS.get(name)
    if cls is None:
        return LAZY_METHODS[name].description
    doc = (cls.__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


def method_class(name: str) -> type[Method]:
    """The class of method ``name``, importing it if it was registered lazily (built-ins import torch)."""
    check_method(name)
    cls = METHODS.get(name)
    if cls is None:
        module, _, qualname = LAZY_METHODS[name].target.partition(":")
        cls = getattr(importlib.import_module(module), qualname)
        METHODS.setdefault(name, cls)
    return cls


def all_methods() -> dict[str, type[Method]]:
    """Every registered method's class by name (imports the lazily registered ones)."""
    return {name: method_class(name) for name in method_names()}


def get_method(name: str) -> Method:
    """A fresh instance of method ``name``; a one-line UsageError for an unknown one."""
    return method_class(name)()


def check_support(method: Method, model: "nn.Module", model_name: str) -> None:
    """One line naming the model's family, what ``method`` supports and which methods fit (e.g. trio on DeiT)."""
    from quantizer.models import family_of

    if method.supports(model):
        return
    family = family_of(model) or "unknown"
    others = sorted(name for name, cls in all_methods().items() if name != method.name and family in cls.families)
    hint = f"; methods for {family}: {', '.join(others)}" if others else ""
    raise UnsupportedModelError(f"method {method.name!r} does not support {model_name} (family {family}; it "
                                f"supports {', '.join(method.families) or 'nothing yet'}){hint}")
