"""Uniform, power-of-two and log2 quantizer arithmetic against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from quantizer.errors import UsageError
from quantizer.core.bits import BitType
from quantizer.core.quantizers import (
    Conventions,
    adaptive_pot_exponent,
    broadcast_to_channels,
    dequantize,
    fake_quantize,
    floor_log2,
    grid_from_range,
    log2_codes,
    log2_fake_quantize,
    log2_round,
    mse_per_channel,
    pot_exponent,
    pow2,
    quantize,
    round_scale,
)

INT8, UINT8, INT4, UINT4 = BitType(8, True), BitType(8, False), BitType(4, True), BitType(4, False)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# --- conventions and grids ------------------------------------------------------------------------------------
def test_symmetric_denominator_is_configurable() -> None:
    assert Conventions().sym_levels(INT8) == 127
    assert Conventions(sym_denominator="half_span").sym_levels(INT8) == 127.5
    assert Conventions().sym_levels(INT4) == 7
    assert Conventions(sym_denominator="half_span").sym_levels(INT4) == 7.5


@pytest.mark.parametrize("kwargs", [{"sym_denominator": 127}, {"zero_point": "floor"}, {"ptf_zero_point": "x"}])
def test_bad_conventions_are_usage_errors(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        Conventions(**kwargs)


def test_symmetric_grid() -> None:
    scale, zero = grid_from_range(t(-2.0), t(1.27), INT8)
    assert scale.item() == pytest.approx(2 / 127) and zero.item() == 0
    scale, _ = grid_from_range(t(-2.0), t(1.27), INT8, Conventions(sym_denominator="half_span"))
    assert scale.item() == pytest.approx(2 / 127.5)


def test_asymmetric_grid() -> None:
    # s = (3 - (-1)) / 255; z = 0 - round(-1 / s) = -round(-63.75) = 64
    scale, zero = grid_from_range(t(-1.0), t(3.0), UINT8)
    assert scale.item() == pytest.approx(4 / 255) and zero.item() == 64


def test_zero_point_rules_for_a_range_without_zero() -> None:
    # extend: [1, 3] becomes [0, 3], s = 3/255, z = 0.  clamp (FQ-ViT): s = 2/255, z = clamp(-round(127.5)) = 0,
    # so 3 lands on code 255 = 2.0: FQ-ViT's rule cannot represent this range.
    scale, zero = grid_from_range(t(1.0), t(3.0), UINT8)
    assert scale.item() == pytest.approx(3 / 255) and zero.item() == 0
    assert fake_quantize(t(3.0), scale, zero, UINT8).item() == pytest.approx(3.0)
    scale, zero = grid_from_range(t(1.0), t(3.0), UINT8, Conventions(zero_point="clamp"))
    assert scale.item() == pytest.approx(2 / 255) and zero.item() == 0
    assert fake_quantize(t(3.0), scale, zero, UINT8).item() == pytest.approx(2.0)


def test_degenerate_range_keeps_a_positive_scale() -> None:
    scale, _ = grid_from_range(t(0.0), t(0.0), INT8)
    assert scale.item() > 0


def test_quantize_dequantize_by_hand() -> None:
    scale, zero = t(4 / 255), t(64.0)
    x = t(-1.0, 0.0, 0.5, 3.0, 5.0)
    q = quantize(x, scale, zero, UINT8)
    # -63.75 -> -64; 31.875 -> 32; 191.25 -> 191; 318.75 -> clamped to 255
    assert q.tolist() == [0.0, 64.0, 96.0, 255.0, 255.0]
    assert dequantize(q, scale, zero).tolist() == pytest.approx([-256 / 255, 0.0, 128 / 255, 764 / 255, 764 / 255])


def test_rounding_is_half_to_even() -> None:
    q = quantize(t(0.5, 1.5, 2.5, -0.5, -1.5, 200.0, -200.0), t(1.0), t(0.0), INT8)
    assert q.tolist() == [0.0, 2.0, 2.0, 0.0, -2.0, 127.0, -128.0]


@pytest.mark.parametrize("bit_type", [INT8, UINT8, INT4, UINT4])
@pytest.mark.parametrize("per_channel", [False, True])
def test_round_trip_error_is_at_most_half_a_step_inside_the_range(bit_type: BitType, per_channel: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 50, generator=gen) * torch.tensor([0.01, 0.1, 1.0, 3.0, 10.0, 0.5]).unsqueeze(1) + 0.2
    if per_channel:
        lo, hi = x.amin(dim=1), x.amax(dim=1)
    else:
        lo, hi = x.amin().reshape(1), x.amax().reshape(1)
    scale, zero = grid_from_range(lo, hi, bit_type)
    err = (fake_quantize(x, scale, zero, bit_type, channel_dim=0) - x).abs()
    step = broadcast_to_channels(scale, 2, 0)
    assert torch.all(err <= step / 2 * (1 + 1e-5))


def test_broadcasting_along_a_channel_axis() -> None:
    scale = t(1.0, 2.0, 3.0)
    assert broadcast_to_channels(scale, 4, 1).shape == (1, 3, 1, 1)
    assert broadcast_to_channels(scale, 3, -1).shape == (1, 1, 3)
    assert broadcast_to_channels(t(2.0), 3, -1).shape == ()


def test_mse_per_channel() -> None:
    x = torch.zeros(2, 3)
    x_hat = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]])
    assert mse_per_channel(x, x_hat, 0, True).tolist() == pytest.approx([1.0, 4 / 3])
    assert mse_per_channel(x, x_hat, 0, False).tolist() == pytest.approx([7 / 6])


# --- power-of-two scales -----------------------------------------------------------------------------------------
def test_floor_log2_is_exact() -> None:
    assert floor_log2(t(0.3, 1.0, 0.5, 7.99, 8.0, 0.25)).tolist() == [-2, 0, -1, 2, 3, -2]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_pow2_is_exact_in_every_range(dtype: torch.dtype) -> None:
    like = torch.empty((), dtype=dtype)
    normal = torch.arange(-10, 11)
    assert pow2(normal, like).tolist() == [2.0 ** e for e in range(-10, 11)]
    # subnormals, overflow to inf and the edges of the normal range take the ldexp path: same values
    for exponents in (torch.arange(-1100, 1100), torch.arange(-126, 128), torch.arange(-1022, 1024)):
        ref = torch.ldexp(torch.ones(exponents.shape, dtype=dtype), exponents)
        assert torch.equal(pow2(exponents, like), ref)
    assert pow2(torch.tensor([[3, -2]])).dtype == torch.float32
    assert pow2(torch.tensor([], dtype=torch.int64)).numel() == 0


@pytest.mark.parametrize(
    ("scale", "floor", "ceil", "nearest"),
    [
        (0.3, -2, -1, -2),  # 0.25 <= 0.3 < 0.375 = 1.5 * 0.25
        (0.4, -2, -1, -1),  # above the linear midpoint 0.375
        (0.25, -2, -2, -2),  # already a power of two
        (0.375, -2, -1, -2),  # exact linear midpoint: a tie goes down
        (3.0, 1, 2, 1),  # tie at 1.5 * 2
        (3.1, 1, 2, 2),
    ],
)
def test_pot_exponents(scale: float, floor: int, ceil: int, nearest: int) -> None:
    s = t(scale)
    assert pot_exponent(s, "floor").item() == floor
    assert pot_exponent(s, "ceil").item() == ceil
    assert pot_exponent(s, "nearest").item() == nearest
    assert round_scale(s, "ceil").item() == 2.0 ** ceil


def test_adaptive_pot_uses_the_callers_score() -> None:
    # candidates for s = 0.3: 2^(-2 + {-1, 0, 1, 2}) = 0.125, 0.25, 0.5, 1
    targets = t(0.5, 0.0625, 1.0)
    exponent = adaptive_pot_exponent(t(0.3, 0.3, 0.3), lambda s: (s - targets).abs())
    assert exponent.tolist() == [-1, -3, 0]
    # ties go to the first offset (-1)
    assert adaptive_pot_exponent(t(0.3), lambda s: torch.zeros_like(s)).tolist() == [-3]


def test_adaptive_pot_with_a_tensor_mse_picks_the_best_candidate() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1000, generator=gen)
    x[0] = 12.0  # an outlier makes the float scale too coarse for the bulk
    float_scale = x.abs().max().reshape(1) / 127

    def mse(s: torch.Tensor) -> torch.Tensor:
        return ((fake_quantize(x, s, torch.zeros(1), INT8) - x) ** 2).mean().reshape(1)

    chosen = round_scale(float_scale, "adaptive", mse)
    f = int(floor_log2(float_scale))
    losses = {e: mse(torch.tensor([2.0 ** e])).item() for e in range(f - 1, f + 3)}
    assert chosen.item() == 2.0 ** min(losses, key=losses.__getitem__)
    with pytest.raises(ValueError):
        round_scale(float_scale, "adaptive")


# --- log2 --------------------------------------------------------------------------------------------------------
def test_log2_round_rules() -> None:
    ratios = t(1.0, 1.4, 1.5, 2.0, 2.9, 3.0, 5.0, 6.0)
    # linear: up iff r >= 1.5 * 2^floor;  log: up iff r >= sqrt(2) * 2^floor
    assert log2_round(ratios, "linear").tolist() == [0, 0, 1, 1, 1, 2, 2, 3]
    assert log2_round(ratios, "log").tolist() == [0, 0, 1, 1, 2, 2, 2, 3]
    with pytest.raises(UsageError):
        log2_round(ratios, "nearest")  # type: ignore[arg-type]


def test_log2_codes_4_bit() -> None:
    x = t(1.0, 0.5, 0.3, 2.0 ** -15, 2.0 ** -16, 0.0, 1.5)
    # 0.3 -> ratio 3.33 >= 3 -> k = 2;  2^-16 needs code 16 >= 2^4 -> zero;  values above 1 saturate at code 0
    assert log2_codes(x, 4).tolist() == [0, 1, 2, 15, -1, -1, 0]
    assert log2_fake_quantize(x, 4).tolist() == [1.0, 0.5, 0.25, 2.0 ** -15, 0.0, 0.0, 1.0]
    assert log2_codes(t(2.0 ** -16), 8).tolist() == [16]
    assert math.isclose(log2_fake_quantize(t(0.3), 4, "log").item(), 0.25)
