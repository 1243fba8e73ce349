"""Integer bit types: width, signedness and their representable range."""
from __future__ import annotations

from dataclasses import dataclass

from quantizer.errors import UsageError

MIN_BITS, MAX_BITS = 2, 8


@dataclass(frozen=True, slots=True)
class BitType:
    """A b-bit integer grid. Signed: [-2^(b-1), 2^(b-1) - 1]; unsigned: [0, 2^b - 1]."""

    bits: int
    signed: bool

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 32:
            raise UsageError(f"bit width must be an integer in 1..32, got {self.bits!r}")

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def name(self) -> str:
        return f"{'int' if self.signed else 'uint'}{self.bits}"


def check_bits(value: object, what: str) -> int:
    """A user-given bit width for weights or activations: an integer in 2..8, else a one-line UsageError."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
        raise UsageError(f"{what} must be an integer from {MIN_BITS} to {MAX_BITS}, got {value!r}")
    return value
