"""Trio-ViT building blocks on small hand-made tensors: BN folding, migration, shifting, MSE-p, log2 divisor."""
from __future__ import annotations


import pytest
import torch
from torch import nn

from quantizer.errors import UsageError
from quantizer.core.bits import BitType
from quantizer.methods.trio_attention import Log2Divisor, log2_exponent
from quantizer.methods.trio_quant import ActQuantizer, QConv2d, WeightQuantizer, fold_bn, mse_p_search


def _bn(channels: int, seed: int = 0) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels, eps=1e-3).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(channels, generator=g))
        bn.running_mean.copy_(torch.randn(channels, generator=g))
        bn.running_var.copy_(torch.rand(channels, generator=g) + 0.1)
    return bn


# --- BN folding -----------------------------------------------------------------------------------------------
def test_fold_bn_by_hand() -> None:
    """1x1 conv, one channel: w = 2, b = 1; BN γ = 3, β = 0.5, μ = 1, var = 3, eps = 1 -> σ = 2.

    W' = 2·3/2 = 3 and b' = 0.5 + 3·(1 − 1)/2 = 0.5.
    """
    conv = nn.Conv2d(1, 1, 1, bias=True)
    bn = nn.BatchNorm2d(1, eps=1.0).eval()
    with torch.no_grad():
        conv.weight.fill_(2.0)
        conv.bias.fill_(1.0)
        bn.weight.fill_(3.0)
        bn.bias.fill_(0.5)
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(3.0)
    w, b = fold_bn(conv, bn)
    assert w.flatten().tolist() == [3.0]
    assert b is not None and b.tolist() == [0.5]


@pytest.mark.parametrize("groups,bias", [(1, False), (1, True), (4, False)])
def test_fold_bn_matches_conv_then_bn(groups: int, bias: bool) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, padding=1, groups=groups, bias=bias)
    bn = _bn(8)
    x = torch.randn(2, 4, 6, 6)
    w, b = fold_bn(conv, bn)
    folded = QConv2d(conv, w, b, w_bits=8, symmetric=True)
    folded.w_q.enabled = False  # float: folding must be exact
    torch.testing.assert_close(folded(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_fold_bn_rejects_other_norms() -> None:
    with pytest.raises(UsageError):
        fold_bn(nn.Conv2d(2, 2, 1), nn.GroupNorm(1, 2))


# --- channel-wise migration (DW conv) -------------------------------------------------------------------------
def test_migration_is_exact_in_float() -> None:
    """Dividing DW input channel c by d_c and multiplying filter c by d_c leaves the output unchanged."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=True)
    x = torch.randn(2, 3, 5, 5) * torch.tensor([1.0, 20.0, 0.05]).reshape(1, 3, 1, 1)
    reference = conv(x)
    layer = QConv2d(conv, conv.weight, conv.bias, w_bits=8, symmetric=True, migrate=True)
    layer.w_q.enabled = False
    d = torch.tensor([0.5, 16.0, 0.1])
    layer.apply_migration(d)
    torch.testing.assert_close(layer.weight, conv.weight * d.reshape(3, 1, 1, 1))
    torch.testing.assert_close(layer(x), reference, rtol=1e-5, atol=1e-5)
    with pytest.raises(UsageError):
        layer.apply_migration(d)  # applying twice would double-scale the weights


def test_migration_needs_a_depthwise_conv() -> None:
    conv = nn.Conv2d(3, 6, 1)
    with pytest.raises(UsageError):
        QConv2d(conv, conv.weight, conv.bias, w_bits=8, symmetric=True, migrate=True)


def test_migration_hand_values() -> None:
    """One channel, 1x1 depthwise weight 2, input 3, d = 4: input 3/4, weight 8, output 6 = 2·3."""
    conv = nn.Conv2d(1, 1, 1, groups=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(2.0)
    layer = QConv2d(conv, conv.weight, None, w_bits=8, symmetric=True, migrate=True)
    layer.w_q.enabled = False
    layer.apply_migration(torch.tensor([4.0]))
    assert layer.weight.item() == 8.0
    assert layer(torch.full((1, 1, 1, 1), 3.0)).item() == 6.0


# --- filter-wise shifting (PW conv) ---------------------------------------------------------------------------
def test_shift_hand_values() -> None:
    """W = [[1, 2]], b = 0.5, centres z = (3, −1): b' = 0.5 + 1·3 + 2·(−1) = 1.5.

    x = (4, 1) is shifted to (1, 2): 1·1 + 2·2 + 1.5 = 6.5 = 1·4 + 2·1 + 0.5.
    """
    conv = nn.Conv2d(2, 1, 1)
    layer = QConv2d(conv, torch.tensor([[[[1.0]], [[2.0]]]]), torch.tensor([0.5]), w_bits=8, symmetric=True,
                    shift=True)
    layer.w_q.enabled = False
    layer.shift.copy_(torch.tensor([3.0, -1.0]))
    assert layer.shift_compensation(layer.weight).tolist() == [1.0]
    x = torch.tensor([4.0, 1.0]).reshape(1, 2, 1, 1)
    assert layer(x).item() == pytest.approx(1 * 4 + 2 * 1 + 0.5)


@pytest.mark.parametrize("groups", [1, 2])
def test_shift_is_exact_in_float(groups: int) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 1, groups=groups, bias=True)
    x = torch.rand(2, 4, 5, 5) * 3 - 0.375
    layer = QConv2d(conv, conv.weight, conv.bias, w_bits=8, symmetric=True, shift=True)
    layer.w_q.enabled = False
    layer.shift.copy_(torch.tensor([0.2, 1.5, -0.3, 0.9]))
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-5)


def test_shift_compensation_uses_the_quantized_weights() -> None:
    """With weight quantization on, shifted == unshifted conv with the same quantized weights (no input quant)."""
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 3, 1, bias=True)
    layer = QConv2d(conv, conv.weight, conv.bias, w_bits=4, symmetric=True, shift=True)
    layer.w_q.set_range(layer.weight, 2.4)
    layer.shift.copy_(torch.tensor([0.7, -0.2, 2.0, 0.1]))
    x = torch.randn(2, 4, 3, 3)
    wq = layer.qweight()
    assert not torch.allclose(wq, layer.weight)  # 4-bit weights really differ from the float ones
    expected = nn.functional.conv2d(x, wq, conv.bias)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_shift_needs_a_pointwise_conv() -> None:
    conv = nn.Conv2d(2, 2, 3, padding=1)
    with pytest.raises(UsageError):
        QConv2d(conv, conv.weight, conv.bias, w_bits=8, symmetric=True, shift=True)


# --- MSE-p range search ---------------------------------------------------------------------------------------
def test_mse_p_search_clips_a_lone_outlier() -> None:
    """100 copies of 0, 1, 2, 3 and one 10/3, 2-bit unsigned grid (4 levels).

    Candidate i = 10 shrinks the range to 0.9·10/3 = 3: Δ = 1, every bulk value exact, only the outlier errs
    (by 1/3): mean error ∝ (1/3)^2.4 ≈ 0.072. The full range (i = 0, Δ = 10/9) errs on every bulk value
    (≈ 10.4 summed) and i = 9 or 11 leave small errors on all 400 bulk values (≈ 0.096 and 0.13).
    """
    x = torch.tensor([0.0, 1.0, 2.0, 3.0] * 100 + [10.0 / 3.0])
    scale, zero = mse_p_search(x, BitType(2, signed=False), p=2.4)
    assert scale.item() == pytest.approx(1.0, abs=1e-6)
    assert zero.item() == 0.0


def test_mse_p_search_per_channel_symmetric() -> None:
    """3-bit signed (levels −4..3, s = clip/3). Row 0: −3..3 plus 10/3 -> clip 3, s = 1 (as above).

    Row 1: −1.5..1.5 in steps of 0.5, no outlier -> full range, s = 0.5, zero error.
    """
    row0 = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0] * 50 + [10.0 / 3.0]
    row1 = [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5] * 50 + [0.0]
    scale, zero = mse_p_search(torch.tensor([row0, row1]), BitType(3, signed=True), p=2.4, per_row=True)
    torch.testing.assert_close(scale, torch.tensor([1.0, 0.5]))
    assert zero.tolist() == [0.0, 0.0]


def test_mse_p_search_asymmetric_zero_point() -> None:
    """Values in [−1, 3] on an 8-bit unsigned grid: full range wins (uniform data), z = round(1/Δ) with Δ = 4/255."""
    x = torch.linspace(-1.0, 3.0, 1001)
    scale, zero = mse_p_search(x, BitType(8, signed=False), p=2.4)
    assert scale.item() == pytest.approx(4.0 / 255.0, rel=1e-5)
    assert zero.item() == round(255.0 / 4.0)


def test_mse_p_search_all_zero_tensor() -> None:
    scale, zero = mse_p_search(torch.zeros(10), BitType(8, signed=False))
    assert scale.item() == 1.0 and zero.item() == 0.0


def test_act_quantizer_uses_exact_extremes() -> None:
    aq = ActQuantizer(8, "test")
    sample = torch.linspace(0.0, 1.0, 256)
    aq.set_range(sample, torch.tensor(0.0), torch.tensor(2.0), p=2.4)  # true max 2 was not sampled
    assert aq.scale.item() <= 2.0 / 255.0 + 1e-9


# --- log2 divisor ---------------------------------------------------------------------------------------------
def test_log2_paper_example() -> None:
    """(0110 0011)₂ = 99: leading one at bit 6, bit 5 set -> 2^7 with the paper's rule (and the code's)."""
    assert log2_exponent(torch.tensor([0b01100011 * 1.0]), "linear").item() == 7
    assert log2_exponent(torch.tensor([99.0]), "log").item() == 7


@pytest.mark.parametrize("value,linear,log", [
    (64.0, 6, 6),  # exact power of two
    (90.0, 6, 6),  # 90/64 = 1.406 < √2 < 1.5
    (91.0, 6, 7),  # 91/64 = 1.422: above √2, below 1.5 -> the rules differ
    (95.0, 6, 7),  # (0101 1111)₂: bit 5 clear -> the paper rounds down; 95/64 > √2 -> the code rounds up
    (96.0, 7, 7),  # (0110 0000)₂: bit 5 set -> the paper rounds up
    (127.0, 7, 7),
    (1.0, 0, 0),
    (0.75, 0, 0),  # 1.5·2^-1: paper up (threshold reached), code up (1.5 > √2)
    (0.7, -1, -1),  # 1.4·2^-1: below both thresholds
])
def test_log2_rounding_rules(value: float, linear: int, log: int) -> None:
    d = torch.tensor([value])
    assert log2_exponent(d, "linear").item() == linear
    assert log2_exponent(d, "log").item() == log


@pytest.mark.parametrize("value,expected", [
    (0.0, -6), (1e-3, -6), (2.0 ** -7, -6), (2.0 ** -6, -6), (2.0 ** -5, -5),
    (512.0, 9), (614.4, 9), (768.0, 9), (1e5, 9), (float("inf"), 9),
])
def test_log2_exponent_clamped_to_4_bit_range(value: float, expected: int) -> None:
    for rule in ("linear", "log"):
        assert log2_exponent(torch.tensor([value]), rule).item() == expected  # type: ignore[arg-type]


def test_log2_rejects_unknown_rule() -> None:
    with pytest.raises(UsageError):
        log2_exponent(torch.ones(1), "nearest")  # type: ignore[arg-type]


def test_divisor_divides_by_a_power_of_two() -> None:
    div = Log2Divisor("linear", act_bits=8, eps=1e-5, window="fixed")
    num = torch.tensor([3.0, 3.0, 3.0, 1.0])
    den = torch.tensor([99.0, 93.0, 0.0, 1e4])
    out = div(num, den)
    assert out.tolist() == [3.0 / 128, 3.0 / 64, 3.0 * 64, 1.0 / 512]  # exact: a shift
    assert div.quant_spec.extra["exp_range"] == (-6, 9)
    div.enabled = False
    torch.testing.assert_close(div(num, den), num / (den + 1e-5))


def test_divisor_window_calibration() -> None:
    """A largest calibration divisor of 4000 (≈ 2^11.97) puts the top exponent at 12: window [−3, 12]."""
    div = Log2Divisor("log", act_bits=8, eps=1e-5, window="calibrated")
    div.set_window(torch.tensor(4000.0))
    assert div.exp_range == (-3, 12)
    assert div.quant_spec.extra["exp_range"] == (-3, 12)
    assert div(torch.ones(1), torch.tensor([1e6])).item() == 2.0 ** -12
    assert div(torch.ones(1), torch.tensor([0.0])).item() == 2.0 ** 3


# --- weight quantizer: AdaRound and hard rounding -------------------------------------------------------------
def test_adaround_starts_at_the_fractional_part_and_hardens() -> None:
    """h(V) starts at frac(w/s) of the weights actually quantized (T4); V ≥ 0 rounds up when hardened."""
    wq = WeightQuantizer(1, 4, symmetric=True)
    wq.scale.fill_(0.5)
    w = torch.tensor([[0.1, 0.3, -0.6, 0.74]])  # w/s = 0.2, 0.6, −1.2, 1.48
    wq.start_adaround(w)
    torch.testing.assert_close(wq.h(), torch.tensor([[0.2, 0.6, 0.8, 0.48]]), atol=1e-5, rtol=0)
    torch.testing.assert_close(wq.quantize(w), w, atol=1e-5, rtol=0)  # soft start reproduces the weight
    wq.finish_adaround()
    assert (wq.quantize(w) / 0.5).tolist() == [[0.0, 1.0, -1.0, 1.0]]  # nearest, since V ≥ 0 ⇔ h ≥ 0.5


def test_bake_puts_weights_on_the_grid() -> None:
    torch.manual_seed(0)
    layer_w = nn.Parameter(torch.randn(3, 5))
    wq = WeightQuantizer(3, 4, symmetric=True)
    wq.set_range(layer_w, 2.4)
    wq.start_adaround(layer_w)
    with torch.no_grad():
        wq.alpha.add_(torch.randn_like(wq.alpha))  # some learned state
    wq.finish_adaround()
    wq.bake(layer_w)
    q = layer_w / wq.scale[:, None]
    torch.testing.assert_close(q, q.round(), atol=1e-4, rtol=0)
    assert q.abs().max() <= 8 and bool(wq.baked)
    assert wq(layer_w) is layer_w  # baked weights pass through
