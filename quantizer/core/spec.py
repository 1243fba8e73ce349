"""QuantSpec: what a quantized module computes with, the record trace extraction reads (issue 4).

Every quantized module carries one as its ``quant_spec`` attribute: operand and output bit widths, the
granularity of its scales and the kind of scale, which decides how the accelerator re-quantizes its output
(a shift for power-of-two or log2 scales, a multiply for float scales).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping

Granularity = Literal["tensor", "channel"]
ScaleKind = Literal["float", "pot", "log2"]


@dataclass(frozen=True)
class QuantSpec:
    """Bit widths and scale kinds of one quantized module.

    ``weight_bits`` is None for modules without weights (activation quantizers, softmax, layernorm).
    ``extra`` holds method-specific facts the simulator may charge, e.g. ``{"softmax": "lis"}``,
    ``{"layernorm": "int"}``, ``{"divisor": "log2"}``, ``{"smoothing": "pot"}``.
    """

    kind: str  # linear, conv2d, act, layernorm, softmax, matmul, divisor, ...
    act_bits: int
    out_bits: int
    weight_bits: int | None = None
    weight_granularity: Granularity = "channel"
    act_granularity: Granularity = "tensor"
    scale_kind: ScaleKind = "float"
    symmetric_weights: bool = True
    symmetric_acts: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "QuantSpec":
        return cls(**{**d, "extra": dict(d.get("extra", {}))})


def collect_specs(model: Any) -> dict[str, QuantSpec]:
    """Module path -> QuantSpec for every quantized submodule of ``model`` (a torch.nn.Module)."""
    return {name: m.quant_spec for name, m in model.named_modules() if isinstance(getattr(m, "quant_spec", None), QuantSpec)}
