"""BitType ranges and the user-facing bit-width check."""
from __future__ import annotations

import pytest

from quantizer.errors import UsageError
from quantizer.core.bits import BitType, check_bits


@pytest.mark.parametrize(
    ("bits", "signed", "qmin", "qmax", "name"),
    [(8, True, -128, 127, "int8"), (8, False, 0, 255, "uint8"), (4, True, -8, 7, "int4"), (4, False, 0, 15, "uint4"),
     (3, False, 0, 7, "uint3")],
)
def test_ranges_and_names(bits: int, signed: bool, qmin: int, qmax: int, name: str) -> None:
    bt = BitType(bits, signed)
    assert (bt.qmin, bt.qmax, bt.name) == (qmin, qmax, name)


def test_bit_types_are_values() -> None:
    assert BitType(8, True) == BitType(8, True)
    assert len({BitType(8, True), BitType(8, True), BitType(8, False)}) == 2


@pytest.mark.parametrize("bits", [0, 33, 2.0, "8"])
def test_invalid_widths_are_usage_errors(bits: object) -> None:
    with pytest.raises(UsageError, match="bit width"):
        BitType(bits, True)  # type: ignore[arg-type]


def test_check_bits() -> None:
    assert check_bits(2, "weight bits") == 2
    assert check_bits(8, "weight bits") == 8
    for bad in (1, 9, True, "8", 4.0):
        with pytest.raises(UsageError, match="activation bits must be an integer from 2 to 8"):
            check_bits(bad, "activation bits")
