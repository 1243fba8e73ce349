"""Fake-quant modules: modes, buffers and state dicts, weights per bit type, integer LayerNorm, Log-Int-Softmax."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from quantizer.errors import UsageError
from quantizer.core.bits import BitType
from quantizer.core.modules import (
    QAct,
    QConv2d,
    QIntLayerNorm,
    QIntSoftmax,
    QLinear,
    QMatMul,
    QuantFormat,
    by_row_blocks,
    div_round_half_even,
    dyadic,
    int_exp,
    int_layernorm,
    log_int_softmax,
    shift_round_half_even,
)
from quantizer.core.quantizers import fake_quantize, floor_log2, pot_exponent
from quantizer.core.spec import QuantSpec

INT8, UINT8, INT4 = BitType(8, True), BitType(8, False), BitType(4, True)
ACT = QuantFormat(UINT8)
W8 = QuantFormat(INT8, "channel")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def calibrate(module: nn.Module, *batches: torch.Tensor) -> None:
    """Observe all batches but the last, search on the last (the protocol, on one module)."""
    with torch.no_grad():
        module.set_mode("calibrate")
        for b in batches[:-1]:
            module(b)
        module.set_mode("search")
        module(batches[-1])
        module.set_mode("quant")


# --- QAct ----------------------------------------------------------------------------------------------------------
def test_qact_modes() -> None:
    qact = QAct(ACT)
    x = torch.tensor([-1.0, 0.3, 3.0])
    assert qact.mode == "auto" and torch.equal(qact(x), x)  # uncalibrated auto = float
    qact.set_mode("quant")
    with pytest.raises(UsageError, match="no calibrated grid"):
        qact(x)
    qact.set_mode("calibrate")
    assert torch.equal(qact(torch.tensor([-1.0, 2.0])), torch.tensor([-1.0, 2.0]))  # observes, passes through
    assert not qact.quantizer.is_calibrated
    qact.set_mode("search")
    assert torch.equal(qact(x), x)
    assert qact.quantizer.is_calibrated
    assert qact.scale.tolist() == pytest.approx([4 / 255]) and qact.zero_point.tolist() == [64.0]
    qact.set_mode("quant")
    assert qact(x).tolist() == pytest.approx([-256 / 255, 76 / 255, 764 / 255])  # 0.3 / s = 19.1 -> 19
    qact.set_mode("float")
    assert torch.equal(qact(x), x)
    qact.set_mode("auto")
    assert not torch.equal(qact(x), x)  # auto with a grid = quant
    with pytest.raises(UsageError):
        qact.set_mode("train")  # type: ignore[arg-type]


def test_qact_buffers_have_their_final_shape_before_calibration() -> None:
    per_tensor, ptf = QAct(ACT), QAct(QuantFormat(UINT8, "channel", "ptf"), channels=5)
    assert per_tensor.state_dict()["quantizer.scale"].shape == (1,)
    assert ptf.state_dict()["quantizer.scale"].shape == (5,)
    assert set(ptf.state_dict()) == {"quantizer.scale", "quantizer.zero_point", "quantizer.calibrated"}


def test_qact_state_dict_round_trip() -> None:
    qact = QAct(QuantFormat(UINT8, "channel", "ptf"), channels=4)
    x = torch.randn(2, 5, 4, generator=gen()) * torch.tensor([0.1, 1.0, 3.0, 0.5])
    calibrate(qact, x)
    fresh = QAct(QuantFormat(UINT8, "channel", "ptf"), channels=4)
    fresh.load_state_dict(qact.state_dict(), strict=True)
    assert torch.equal(fresh(x), qact(x))  # auto mode + calibrated buffers = quantized


def test_qact_power_of_two_scales() -> None:
    x = torch.randn(4, 10, 8, generator=gen())
    float_scale = x.abs().max().reshape(1) / 127
    for rounding in ("nearest", "ceil", "floor"):
        qact = QAct(QuantFormat(INT8, scale_rounding=rounding))
        calibrate(qact, x)
        assert qact.scale.item() == 2.0 ** pot_exponent(float_scale, rounding).item()
    adaptive = QAct(QuantFormat(INT8, scale_rounding="adaptive"))
    calibrate(adaptive, x)
    f = int(floor_log2(x.abs().max().reshape(1) / 127))
    mse = {e: ((fake_quantize(x, torch.tensor([2.0 ** e]), torch.zeros(1), INT8) - x) ** 2).mean().item()
           for e in range(f - 1, f + 3)}
    assert adaptive.scale.item() == 2.0 ** min(mse, key=mse.__getitem__)
    assert adaptive.quant_spec.scale_kind == "pot" and adaptive.quant_spec.symmetric_acts


def test_qact_spec() -> None:
    spec = QAct(QuantFormat(UINT8, "channel", "ptf"), channels=3).quant_spec
    assert isinstance(spec, QuantSpec)
    assert (spec.kind, spec.act_bits, spec.act_granularity, spec.scale_kind, spec.weight_bits) == (
        "act", 8, "channel", "float", None)
    assert spec.extra["ptf"] is True


# --- QLinear / QConv2d ----------------------------------------------------------------------------------------------
def _linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(6, 4)


def test_qlinear_keeps_parameters_and_quantizes_weights_per_channel() -> None:
    linear = _linear()
    q = QLinear.from_float(linear, weight_formats=[W8], act_format=ACT)
    assert q.weight is linear.weight and q.bias is linear.bias
    assert (q.in_features, q.out_features) == (6, 4)
    assert set(q.state_dict()) == {"weight", "bias", "weight_format", "weight_quantizers.int8.scale",
                                   "weight_quantizers.int8.zero_point", "weight_quantizers.int8.calibrated"}
    x = torch.randn(3, 6, generator=gen())
    assert torch.equal(q(x), linear(x))  # uncalibrated: float
    calibrate(q, x)
    scale = q.weight_quantizer.scale
    assert scale.tolist() == pytest.approx((linear.weight.abs().amax(dim=1) / 127).tolist())
    w_hat = torch.round(linear.weight / scale[:, None]) * scale[:, None]
    assert torch.allclose(q(x), F.linear(x, w_hat, linear.bias))
    spec = q.quant_spec
    assert (spec.kind, spec.weight_bits, spec.act_bits, spec.out_bits, spec.weight_granularity) == (
        "linear", 8, 8, 8, "channel")
    assert spec.symmetric_weights and not spec.symmetric_acts


def test_one_weight_quantizer_per_bit_type() -> None:
    linear = _linear()
    formats = [QuantFormat(INT4, "channel", scale_rounding="adaptive"),
               QuantFormat(INT8, "tensor", scale_rounding="adaptive")]
    q = QLinear.from_float(linear, weight_formats=formats, act_format=QuantFormat(INT8))
    int4, int8 = q.weight_quantizers["int4"], q.weight_quantizers["int8"]
    assert int4.observer is not int8.observer  # P4: no shared statistics
    assert int4.scale.shape == (4,) and int8.scale.shape == (1,)
    x = torch.randn(5, 6, generator=gen())
    calibrate(q, x)
    assert int4.is_calibrated and int8.is_calibrated
    for s in (*int4.scale.tolist(), *int8.scale.tolist()):
        assert s == 2.0 ** round(torch.log2(torch.tensor(s)).item())  # power-of-two scales
    assert q.quant_spec.weight_bits == 4
    out4 = q(x)
    q.select_weight_format("int8")
    assert q.quant_spec.weight_bits == 8 and q.quant_spec.weight_granularity == "tensor"
    assert not torch.equal(q(x), out4)
    fresh = QLinear.from_float(_linear(), weight_formats=formats, act_format=QuantFormat(INT8))
    fresh.load_state_dict(q.state_dict(), strict=True)
    assert fresh.quant_spec.weight_bits == 8 and torch.equal(fresh(x), q(x))  # the choice is saved
    with pytest.raises(UsageError, match="no weight format 'int2'"):
        q.select_weight_format("int2")
    with pytest.raises(ValueError):
        QLinear.from_float(linear, weight_formats=[W8, W8], act_format=ACT)


def test_adaptive_weight_scales_minimize_the_layer_output_error_per_channel() -> None:
    linear = _linear()
    q = QLinear.from_float(linear, weight_formats=[QuantFormat(INT4, "channel", scale_rounding="adaptive")],
                           act_format=ACT)
    x = torch.randn(20, 6, generator=gen(3))
    calibrate(q, x)
    w = linear.weight.detach()
    float_scale = w.abs().amax(dim=1) / 7
    for row in range(4):
        f = int(floor_log2(float_scale[row:row + 1]))
        errors = {}
        for e in range(f - 1, f + 3):
            w_hat = torch.clamp(torch.round(w[row] / 2.0 ** e), -8, 7) * 2.0 ** e
            errors[e] = ((x @ w_hat - x @ w[row]) ** 2).mean().item()
        assert q.weight_quantizer.scale[row].item() == 2.0 ** min(errors, key=errors.__getitem__)


def test_qconv2d() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 4, stride=4)
    q = QConv2d.from_float(conv, weight_formats=[W8], act_format=ACT)
    x = torch.randn(2, 3, 8, 8, generator=gen())
    assert torch.equal(q(x), conv(x))
    calibrate(q, x)
    scale = q.weight_quantizer.scale
    assert scale.shape == (5,)
    assert scale.tolist() == pytest.approx((conv.weight.abs().flatten(1).amax(dim=1) / 127).tolist())
    w_hat = torch.round(conv.weight / scale.view(-1, 1, 1, 1)) * scale.view(-1, 1, 1, 1)
    assert torch.allclose(q(x), F.conv2d(x, w_hat, conv.bias, stride=4), atol=1e-6)
    assert q.quant_spec.kind == "conv2d"


def test_qmatmul() -> None:
    mm = QMatMul(ACT, extra={"lhs_bits": 4})
    a, b = torch.randn(2, 3, generator=gen()), torch.randn(3, 4, generator=gen(1))
    assert torch.equal(mm(a, b), a @ b)
    assert mm.quant_spec.kind == "matmul" and mm.quant_spec.extra["lhs_bits"] == 4


# --- integer LayerNorm ------------------------------------------------------------------------------------------------
def test_dyadic_multiplier_and_shift() -> None:
    # N = 7 - floor(log2 |A|), M = floor(|A| 2^N): 0.3 -> N = 9, M = floor(153.6); 5 -> N = 5, M = 160;
    # 300 -> N clamps at 0 and M saturates at 255
    m, n = dyadic(torch.tensor([0.3, 5.0, 300.0, -0.3]))
    assert m.tolist() == [153, 160, 255, 153] and n.tolist() == [9, 5, 0, 9]


def test_integer_rounding_helpers() -> None:
    num = torch.tensor([5, 6, 7, -5, -6, 3, 9])
    assert shift_round_half_even(num, torch.ones_like(num)).tolist() == [2, 3, 4, -2, -3, 2, 4]
    assert shift_round_half_even(num, torch.zeros_like(num)).tolist() == num.tolist()
    assert div_round_half_even(torch.tensor([3, 5, 7, 486]), torch.tensor([2, 2, 2, 279])).tolist() == [2, 2, 4, 2]


def test_int_layernorm_by_hand() -> None:
    # x = [-1, 0, 0.5, 1.5] on a 0.5 grid (codes -2, 0, 1, 3), gamma 1, beta 0, output scale 0.1, eps 0:
    # Σx = 2, Σx² = 14, C Σx² - (Σx)² = 52, mean = 0.25, std = 0.125 sqrt(52) = 0.90139,
    # A = 0.5 / (0.90139 * 0.1) = 5.547 -> N = 5, M = floor(177.5) = 177, B = -0.25 / 0.90139 / 0.1 = -2.7735
    # -> B_int = round(-88.75) = -89, y = round((177 x - 89) / 32) = [-14, -3, 3, 14]
    x = torch.tensor([[-1.0, 0.0, 0.5, 1.5]])
    r = int_layernorm(x, torch.tensor([0.5]), torch.tensor([0.1]), torch.ones(4), torch.zeros(4), eps=0.0)
    assert r.x_int.tolist() == [[-2, 0, 1, 3]]
    assert r.m.tolist() == [[177] * 4] and r.n.tolist() == [[5] * 4]
    assert r.y_int.tolist() == [[-14, -3, 3, 14]]
    assert torch.round(F.layer_norm(x, (4,), eps=0.0) / 0.1).tolist() == [[-14, -3, 3, 14]]


def test_int_layernorm_aligns_ptf_channels_by_shifts() -> None:
    in_scale = torch.tensor([0.5, 1.0, 0.5, 2.0])  # s_min 0.5, shifts 0, 1, 0, 2
    x = torch.tensor([[-1.0, 0.0, 0.5, 6.0]])
    r = int_layernorm(x, in_scale, torch.tensor([0.05]), None, None, eps=1e-6)
    assert r.x_int.tolist() == [[-2, 0, 1, 12]]
    with pytest.raises(ValueError, match="power-of-two"):
        int_layernorm(x, torch.tensor([0.5, 0.75, 0.5, 2.0]), torch.tensor([0.05]), None, None, eps=1e-6)


def test_int_layernorm_tiles_scales_of_merged_patches() -> None:
    x = torch.randn(3, 8, generator=gen())
    in_scale = torch.tensor([0.05, 0.1])
    x_q = torch.round(x / in_scale.repeat(4)) * in_scale.repeat(4)
    r = int_layernorm(x_q, in_scale, torch.tensor([0.02]), None, None, eps=1e-6)
    assert r.x_int.shape == (3, 8)
    assert torch.equal(r.x_int, (torch.round(x_q / in_scale.repeat(4)) * in_scale.repeat(4) / 0.05).round().long())


@pytest.mark.parametrize("out_scale", [[0.03], [0.02, 0.04, 0.03, 0.05, 0.02, 0.04, 0.03, 0.05]])
def test_int_layernorm_is_close_to_float_layernorm(out_scale: list[float]) -> None:
    # |y - LN(x)| <= s_out (rounding 0.5 + B_int and M truncations) + |LN(x) - beta| / 128 (8-bit mantissa)
    g = gen(5)
    channels = 8
    in_scale = 0.01 * 2.0 ** torch.randint(0, 4, (channels,), generator=g).float()
    x = torch.round(torch.randn(4, 6, channels, generator=g) * 2 / in_scale) * in_scale
    gamma, beta = torch.rand(channels, generator=g) + 0.5, torch.randn(channels, generator=g) * 0.1
    s_out = torch.tensor(out_scale)
    r = int_layernorm(x, in_scale, s_out, gamma, beta, eps=1e-5)
    y = r.y_int * s_out
    ref = F.layer_norm(x, (channels,), gamma, beta, eps=1e-5)
    assert torch.all((y - ref).abs() <= s_out + (ref - beta).abs() / 128 + 1e-6)
    assert torch.all((r.m >= 128) & (r.m <= 255))  # a full 8-bit mantissa for every |A| < 256


def test_qintlayernorm_modes() -> None:
    torch.manual_seed(0)
    norm = nn.LayerNorm(6)
    ptf = QuantFormat(UINT8, "channel", "ptf")
    q = QIntLayerNorm.from_float(norm, act_format=ptf)
    assert q.weight is norm.weight and set(q.state_dict()) == {"weight", "bias"}
    in_q, out_q = QAct(ptf, channels=6), QAct(ACT)
    x = torch.randn(2, 5, 6, generator=gen()) * torch.tensor([0.1, 1, 2, 0.5, 4, 1])
    ref = norm(x)
    for m in (q, in_q, out_q):
        m.set_mode("search")
    xq = in_q(x)
    assert torch.equal(q(xq, in_q, out_q), norm(xq))  # float during calibration
    out_q(q(xq, in_q, out_q))
    for m in (q, in_q, out_q):
        m.set_mode("quant")
    assert q.integer_active(in_q, out_q)
    xq = in_q(x)
    y = out_q(q(xq, in_q, out_q))
    assert torch.allclose(y, ref, atol=4 * out_q.scale.item() + 0.05)
    codes = y / out_q.scale - out_q.zero_point
    assert torch.allclose(codes, codes.round(), atol=1e-3)  # on the output grid
    float_only = QIntLayerNorm.from_float(norm, act_format=ptf, integer=False)
    float_only.set_mode("quant")
    assert not float_only.integer_active(in_q, out_q)
    assert float_only.quant_spec.extra["layernorm"] == "float"
    assert q.quant_spec.extra["layernorm"] == "int" and "sqrt" in q.quant_spec.extra["float_parts"]
    with pytest.raises(ValueError):
        q(xq)


# --- Log-Int-Softmax ------------------------------------------------------------------------------------------------
def test_lis_equal_logits() -> None:
    r = log_int_softmax(torch.zeros(1, 4), 0.1)
    assert r.ratio.tolist() == [[4] * 4] and r.codes.tolist() == [[2] * 4]
    assert r.values.tolist() == [[0.25] * 4]


def test_lis_by_hand() -> None:
    # S = 0.1: x0_int = floor(-6.931) = -7, b_int = floor(27.07) = 27, c_int = floor(279.2) = 279.
    # x_int = [0, -7]: q = [0, 1], r = 0, z = 279 -> exp = [279 2^30, 279 2^29]; ratios 1.5 -> 2 (half to
    # even), 3 -> 3; codes: 2 -> 1, 3 >= 1.5 * 2 -> 2; output [0.5, 0.25].
    r = log_int_softmax(torch.tensor([[0.0, -0.7]]), 0.1)
    assert r.exp_int.dtype == torch.int64
    assert r.exp_int.tolist() == [[279 * 2 ** 30, 279 * 2 ** 29]]
    assert r.ratio.tolist() == [[2, 3]] and r.codes.tolist() == [[1, 2]]
    assert r.values.tolist() == [[0.5, 0.25]]
    # x_int = [0, -3]: q = 0, r = -3, z = -3 (-3 + 27) + 279 = 207 (exp(-0.3) ≈ 207/279 = 0.742);
    # ratios round(486/279 = 1.74) = 2 and round(486/207 = 2.35) = 2 -> codes 1, 1
    r = log_int_softmax(torch.tensor([[0.0, -0.3]]), 0.1)
    assert r.exp_int.tolist() == [[279 * 2 ** 30, 207 * 2 ** 30]]
    assert r.codes.tolist() == [[1, 1]] and r.values.tolist() == [[0.5, 0.5]]


def test_lis_small_probabilities_become_zero_in_4_bits() -> None:
    # S = 1: x0_int = -1, c_int = 2; x_int = -20 -> q = 20 -> exp = 2 * 2^10; ratio = 2^20 + 1 -> k = 20 >= 16
    r = log_int_softmax(torch.tensor([[0.0, -20.0]]), 1.0)
    assert r.exp_int.tolist() == [[2 ** 31, 2 ** 11]]
    assert r.codes.tolist() == [[0, -1]] and r.values.tolist() == [[1.0, 0.0]]
    assert log_int_softmax(torch.tensor([[0.0, -20.0]]), 1.0, bits=8).codes.tolist() == [[0, 20]]


def test_lis_log_rule_is_selectable() -> None:
    # ratio 3 rounds up under both rules; pick logits whose ratio lands in [2.83, 3): x_int = [0, -5], S = 0.1
    r_lin = log_int_softmax(torch.tensor([[0.0, -0.5]]), 0.1, rule="linear")
    r_log = log_int_softmax(torch.tensor([[0.0, -0.5]]), 0.1, rule="log")
    ratio = r_lin.ratio[0, 1].item()
    assert ratio == r_log.ratio[0, 1].item()
    assert r_lin.codes[0, 1].item() == (2 if ratio >= 3 else 1)
    assert r_log.codes[0, 1].item() == (2 if ratio * ratio >= 8 else 1)


def test_int_exp_range_analysis() -> None:
    # a tiny scale would overflow even int64 at n = 30 over 197 tokens: low bits are dropped before the sum
    exp_int, pre_shift = int_exp(torch.zeros(1, 197, dtype=torch.int64), 1e-6, 30, 197)
    assert pre_shift > 0 and int(exp_int.sum()) < 2 ** 62
    r = log_int_softmax(torch.zeros(1, 197), 1e-6)
    assert r.codes.tolist() == [[8] * 197]  # ratio 197 >= 1.5 * 128 -> 2^-8
    _, pre_shift = int_exp(torch.zeros(1, 197, dtype=torch.int64), 0.01, 30, 197)
    assert pre_shift == 0


def test_lis_tracks_the_float_softmax() -> None:
    logits = torch.randn(3, 4, 50, generator=gen()) * 2
    scale = 0.05
    x = torch.round(logits / scale) * scale
    r = log_int_softmax(x, scale)
    p = x.softmax(-1)
    # 2^-k rounds 1/p to a power of two (linear rule: p̂/p in [0.75, 1.5)) after rounding 1/p to an integer,
    # which moves small ratios further (1/p = 2.5+ -> 3 -> k = 2: p̂/p = 0.625). The i-exp adds an error that
    # grows with the number q of halvings (x0_int = floor(-ln2 / S) makes every halving step -0.70 instead of
    # -0.693 at S = 0.05): about 5 % for p >= 1 % (q <= 7), 8 % for p = 0.015 % (q = 18).
    large = p >= 0.01
    ratio = r.values[large] / p[large]
    assert ratio.min() > 0.6 and ratio.max() < 1.6
    assert torch.all(p[r.codes < 0] < 2.0 ** -14)


def test_row_blocks_change_nothing_but_the_temporaries(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.round(torch.randn(3, 4, 7, 9, generator=gen()) * 40) / 20
    whole = log_int_softmax(x, 0.05).values
    monkeypatch.setattr("quantizer.core.modules.ROW_BLOCK_ELEMENTS", 20)  # 2 rows per block, 84 rows in all
    seen: list[int] = []

    def rows(block: torch.Tensor) -> torch.Tensor:
        seen.append(block.shape[0])
        return log_int_softmax(block, 0.05).values

    assert torch.equal(by_row_blocks(rows, x), whole)
    assert seen == [2] * 42
    # the module forwards use it too: LIS and the integer LayerNorm, bit for bit
    sm, in_q = QIntSoftmax(act_format=ACT), QAct(ACT)
    calibrate(in_q, x)
    xq = in_q(x)
    assert torch.equal(sm(xq, in_q), log_int_softmax(xq, in_q.scale.item()).values)
    norm = nn.LayerNorm(9)
    ln, ln_in, ln_out = QIntLayerNorm.from_float(norm, act_format=ACT), QAct(ACT), QAct(ACT)
    calibrate(ln_in, x)
    calibrate(ln_out, norm(x))
    for m in (ln, ln_in, ln_out):
        m.set_mode("quant")
    xq = ln_in(x)
    ref = int_layernorm(xq, ln_in.scale, ln_out.scale, norm.weight, norm.bias, norm.eps)
    assert torch.equal(ln(xq, ln_in, ln_out), (ref.y_int.double() * ln_out.scale.double()).float())


def test_qintsoftmax_switches_on_with_its_input_grid() -> None:
    sm = QIntSoftmax(act_format=ACT)
    in_q = QAct(ACT)
    x = torch.randn(2, 3, 5, 5, generator=gen())
    assert torch.equal(sm(x, in_q), x.softmax(-1))  # no input scale yet: float softmax
    calibrate(in_q, x)
    xq = in_q(x)
    out = sm(xq, in_q)
    assert torch.equal(out, log_int_softmax(xq, in_q.scale.item()).values)
    sm.set_mode("calibrate")
    assert torch.equal(sm(xq, in_q), xq.softmax(-1))
    spec = sm.quant_spec
    assert (spec.kind, spec.out_bits, spec.scale_kind, spec.extra["softmax"]) == ("softmax", 4, "log2", "lis")
    with pytest.raises(UsageError):
        QIntSoftmax(act_format=ACT, rule="round")  # type: ignore[arg-type]
