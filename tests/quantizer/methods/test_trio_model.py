"""Trio-ViT on a tiny EfficientViT (same block types as B1, seconds to calibrate): rewrite, calibration, saving."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from timm.models.efficientvit_mit import EfficientVit

from quantizer.errors import UsageError
from quantizer.core.spec import QuantSpec, collect_specs
from quantizer.methods import QuantConfig, get_method
from quantizer.methods.trio import NonFiniteError, TrioOptions, build_units
from quantizer.methods.trio_attention import Log2Divisor, QLiteMLA
from quantizer.methods.trio_quant import QConv2d, QLayer, quant_mode

# calibrates and quantizes a whole (small) EfficientViT per test: about 30 s of single-core work, in CI's full run
pytestmark = pytest.mark.slow

RES = 64


def tiny_efficientvit(seed: int = 0) -> nn.Module:
    """EfficientViT-B layout in miniature (stem + DSConv, 2 MBConv stages, 2 attention stages, head)."""
    torch.manual_seed(seed)
    model = EfficientVit(widths=(8, 16, 16, 32, 32), depths=(1, 2, 1, 1, 1), head_dim=8, head_widths=(64, 48),
                         num_classes=10)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():  # non-trivial BN statistics, so folding is really exercised
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return model.eval()


def calib_batches(n: int = 3, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, RES, RES, generator=g) for _ in range(n)]


def quantized(options: dict | None = None, w_bits: int = 8, seed: int = 0) -> nn.Module:
    model = tiny_efficientvit()
    cfg = QuantConfig(method="trio", w_bits=w_bits, a_bits=8, seed=seed, options=options or {})
    return get_method("trio").quantize(model, calib_batches(), cfg)


def on_grid(layer: QLayer) -> bool:
    q = layer.weight.detach() / layer.w_q.scale.reshape(-1, *([1] * (layer.weight.dim() - 1)))
    return bool(torch.allclose(q, q.round(), atol=1e-3, rtol=0))


@pytest.fixture(scope="module")
def calibrated() -> nn.Module:
    return quantized({"recon_iters": 2, "recon_batch": 4})


# --- prepare --------------------------------------------------------------------------------------------------
def test_prepare_quantizes_every_conv_and_linear() -> None:
    model = tiny_efficientvit()
    get_method("trio").prepare(model, QuantConfig(method="trio"))
    plain = [n for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear, nn.BatchNorm2d)]
    assert plain == []
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, QLayer)]
    # stem conv + DSConv (3), three stage-1/2 MBConvs (9), per attention stage an MBConv and an EfficientViT
    # block (3 + 4 + 3, twice), head conv + two linears (3)
    assert len(layers) == 3 + 9 + 2 * 10 + 3
    for name, layer in layers:
        spec = layer.quant_spec
        assert isinstance(spec, QuantSpec), name
        assert spec.kind == ("conv2d" if isinstance(layer, QConv2d) else "linear")
        assert spec.weight_bits == 8 and spec.weight_granularity == "channel" and spec.symmetric_weights
    specs = collect_specs(model)
    kinds = {s.kind for s in specs.values()}
    assert {"conv2d", "linear", "act", "add", "linear_attention", "divisor", "layernorm"} <= kinds
    div = [s for s in specs.values() if s.kind == "divisor"]
    assert len(div) == 2 * 2 and all(s.scale_kind == "log2" and s.extra["divisor"] == "log2" for s in div)
    assert all(s.extra["exp_bits"] == 4 and s.extra["division"] == "shift" for s in div)
    roles = {m.quant_spec.extra["role"]: m.quant_spec.extra for m in model.modules() if isinstance(m, QConv2d)}
    assert roles["mbconv_dw"]["migration"] == "channel" and roles["mbconv_pw"]["shift"] == "filter"


def test_prepared_model_in_float_mode_equals_the_original() -> None:
    """BN folding and the rewrite are exact: with every quantizer off the prepared model is the original."""
    model = tiny_efficientvit()
    reference = copy.deepcopy(model)
    get_method("trio").prepare(model, QuantConfig(method="trio"))
    x = torch.randn(2, 3, RES, RES)
    with torch.no_grad(), quant_mode(model, weights=False, acts=False):
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)


def test_units_chain_to_the_model() -> None:
    model = tiny_efficientvit()
    get_method("trio").prepare(model, QuantConfig(method="trio"))
    units = build_units(model)
    x = torch.randn(2, 3, RES, RES)
    with torch.no_grad(), quant_mode(model, weights=False, acts=False):
        y = x
        for unit in units:
            y = unit.run(y)
        torch.testing.assert_close(y, model(x))
    covered = {id(m) for u in units for m in u.module.modules()}
    assert all(id(m) in covered for m in model.modules() if isinstance(m, (QLayer, QLiteMLA)))


def test_head_and_stem_stay_8bit_with_4bit_weights() -> None:
    """T6: --disable_8bit_head_stem was a no-op; here the first conv and last linear really stay at 8 bits."""
    for flag, edge in ((True, 8), (False, 4)):
        model = tiny_efficientvit()
        get_method("trio").prepare(model, QuantConfig(method="trio", w_bits=4, a_bits=6,
                                                      options={"head_stem_8bit": flag}))
        stem, last = model.stem.in_conv, model.head.classifier[-1]
        assert stem.w_q.bit_type.bits == last.w_q.bit_type.bits == edge
        assert stem.in_q.bit_type.bits == last.in_q.bit_type.bits == (8 if flag else 6)
        assert stem.quant_spec.weight_bits == edge and last.quant_spec.out_bits == 32  # logits unquantized
        assert model.head.classifier[0].w_q.bit_type.bits == 4


# --- calibrate ------------------------------------------------------------------------------------------------
def test_every_layer_ends_on_the_integer_grid(calibrated: nn.Module) -> None:
    """T3: hard rounding reaches every quantized layer, including the MBConv DW and PW convs."""
    layers = [m for m in calibrated.modules() if isinstance(m, QLayer)]
    assert {m.role for m in layers} >= {"mbconv_dw", "mbconv_pw", "stem", "classifier"}
    for layer in layers:
        assert bool(layer.w_q.baked) and on_grid(layer), layer.role
        q = layer.weight / layer.w_q.scale.reshape(-1, *([1] * (layer.weight.dim() - 1)))
        assert q.min() >= layer.w_q.bit_type.qmin - 1e-3 and q.max() <= layer.w_q.bit_type.qmax + 1e-3


def test_soft_rounding_parity_leaves_mbconv_dw_pw_off_grid() -> None:
    """T3 parity option: the reference's MBConv DW/PW layers keep soft rounding; every other layer is on grid."""
    model = quantized({"recon_iters": 2, "recon_batch": 4, "parity_soft_rounding": True})
    for layer in (m for m in model.modules() if isinstance(m, QLayer)):
        assert on_grid(layer) == (layer.role not in ("mbconv_dw", "mbconv_pw")), layer.role


def test_asymmetric_weights_parity() -> None:
    """T7 parity option: unsigned per-channel grid with zero points."""
    model = quantized({"asymmetric": True})
    layers = [m for m in model.modules() if isinstance(m, QLayer)]
    assert all(not m.quant_spec.symmetric_weights and not m.w_q.bit_type.signed for m in layers)
    assert any(bool((m.w_q.zero_point != 0).any()) for m in layers)
    for layer in layers:
        z = layer.w_q.zero_point.reshape(-1, *([1] * (layer.weight.dim() - 1)))
        q = layer.weight / layer.w_q.scale.reshape(z.shape) + z
        torch.testing.assert_close(q, q.round(), atol=1e-3, rtol=0)
        assert q.min() >= -1e-3 and q.max() <= 255 + 1e-3


def test_migration_and_shift_constants_follow_the_formulas() -> None:
    """T9: constants come from the float model on the calibration set (explicit step, not a side effect)."""
    model = tiny_efficientvit()
    cfg = QuantConfig(method="trio", options={"act_sample": 1 << 20})  # no subsampling: the quantile is exact
    get_method("trio").prepare(model, cfg)
    dw = next(m for m in model.modules() if isinstance(m, QConv2d) and m.role == "mbconv_dw")
    pw = next(m for m in model.modules() if isinstance(m, QConv2d) and m.role == "mbconv_pw")
    seen: dict[str, list[torch.Tensor]] = {"dw": [], "pw": []}
    hooks = [dw.register_forward_pre_hook(lambda _m, a: seen["dw"].append(a[0])),
             pw.register_forward_pre_hook(lambda _m, a: seen["pw"].append(a[0]))]
    with torch.no_grad(), quant_mode(model, weights=False, acts=False):
        for x in calib_batches():
            model(x)
    for h in hooks:
        h.remove()
    x_dw, x_pw = torch.cat(seen["dw"]), torch.cat(seen["pw"])
    cmax = x_dw.amax(dim=(0, 2, 3))
    ref = torch.maximum(torch.quantile(x_dw.flatten(), 0.99), cmax.mean())
    expected_d = (cmax / ref).clamp(0.1, 64.0)
    w_before = dw.weight.detach().clone()
    get_method("trio").calibrate(model, calib_batches(), cfg)
    torch.testing.assert_close(dw.mig, expected_d, rtol=1e-5, atol=1e-6)
    expected_z = (x_pw.amax(dim=(0, 2, 3)) + x_pw.amin(dim=(0, 2, 3))) / 2
    torch.testing.assert_close(pw.shift, expected_z, rtol=1e-5, atol=1e-6)
    # the migrated weights W·d are what got quantized (T4): baked weights are within half a step of W·d
    half_step = dw.w_q.scale.reshape(-1, 1, 1, 1) / 2 + 1e-6
    assert ((dw.weight - w_before * expected_d.reshape(-1, 1, 1, 1)).abs() <= half_step).all()


def test_saved_state_reloads_strictly_into_a_fresh_prepare(calibrated: nn.Module) -> None:
    cfg = QuantConfig(method="trio", options={"recon_iters": 2, "recon_batch": 4})
    fresh = tiny_efficientvit(seed=5)  # different float weights: everything must come from the state dict
    get_method("trio").prepare(fresh, cfg)
    fresh.load_state_dict(calibrated.state_dict(), strict=True)
    x = torch.randn(2, 3, RES, RES)
    with torch.no_grad():
        assert torch.equal(fresh(x), calibrated(x))
    keys = calibrated.state_dict().keys()
    assert any(k.endswith(".mig") for k in keys) and any(k.endswith(".shift") for k in keys)
    assert any(k.endswith("divide.0.exp_min") for k in keys)


def test_calibration_is_deterministic() -> None:
    a = quantized({"recon_iters": 2, "recon_batch": 2}, seed=3).state_dict()
    b = quantized({"recon_iters": 2, "recon_batch": 2}, seed=3).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_quantized_tiny_model_tracks_the_float_model() -> None:
    model = tiny_efficientvit()
    reference = copy.deepcopy(model)
    get_method("trio").quantize(model, calib_batches(4), QuantConfig(method="trio"))
    x = torch.randn(4, 3, RES, RES, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        cos = nn.functional.cosine_similarity(model(x), reference(x), dim=1)
    assert cos.min() > 0.95, cos


def test_fixed_divisor_window_is_the_reference_range() -> None:
    model = quantized({"divisor_window": "fixed", "divisor_rounding": "linear"})
    divs = [m for m in model.modules() if isinstance(m, Log2Divisor)]
    assert divs and all(d.exp_range == (-6, 9) and d.rule == "linear" for d in divs)


def test_non_finite_calibration_raises_a_typed_error() -> None:
    """T10: NaN during calibration raises NonFiniteError instead of exiting the process."""
    model = tiny_efficientvit()
    bad = calib_batches()
    bad[0][0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        get_method("trio").quantize(model, bad, QuantConfig(method="trio"))


# --- user errors ----------------------------------------------------------------------------------------------
def test_non_efficientvit_models_are_rejected() -> None:
    from quantizer import zoo

    deit, _ = zoo.build("deit_tiny", resolution=224, batch=1)
    method = get_method("trio")
    assert not method.supports(deit)
    assert method.supports(tiny_efficientvit())
    with pytest.raises(UsageError, match="does not support"):
        method.prepare(deit, QuantConfig(method="trio"))


@pytest.mark.parametrize("options,match", [
    ({"recon_itters": 5}, "unknown trio option"),
    ({"lam": 0.1}, "unknown trio option"),
    ({"asymmetric": 1}, "true or false"),
    ({"recon_iters": 2.5}, "integer"),
    ({"lambda": "big"}, "number"),
    ({"divisor_rounding": "nearest"}, "divisor_rounding"),
    ({"divisor_window": "wide"}, "divisor_window"),
    ({"recon_iters": -1}, ">= 0"),
])
def test_bad_options_are_usage_errors(options: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        TrioOptions.from_config(QuantConfig(method="trio", options=options))


def test_lambda_option_and_defaults() -> None:
    opts = TrioOptions.from_config(QuantConfig(method="trio", options={"lambda": 0.01, "recon_iters": 10}))
    assert opts.lam == 0.01 and opts.act_iters == 10
    default = TrioOptions()
    assert (default.p, default.recon_iters, default.lam, default.divisor_rounding, default.divisor_window) == \
        (2.4, 0, 0.5, "log", "calibrated")
    assert not default.asymmetric and default.head_stem_8bit and not default.parity_soft_rounding


def test_misuse_is_reported() -> None:
    method = get_method("trio")
    with pytest.raises(UsageError, match="prepared"):
        method.calibrate(tiny_efficientvit(), calib_batches(), QuantConfig(method="trio"))
    model = tiny_efficientvit()
    with pytest.raises(UsageError):
        method.prepare(model, QuantConfig(method="fqvit"))
    with pytest.raises(UsageError):
        method.prepare(model, QuantConfig(method="trio", w_bits=9))
    with pytest.raises(UsageError):
        method.prepare(model, QuantConfig(method="trio", ptf=True))
    method.prepare(model, QuantConfig(method="trio"))
    with pytest.raises(UsageError, match="already prepared"):
        method.prepare(model, QuantConfig(method="trio"))
    with pytest.raises(UsageError, match="batch"):
        method.calibrate(model, [], QuantConfig(method="trio"))
    with pytest.raises(UsageError, match="batch"):
        method.calibrate(model, [torch.randn(3, RES, RES)], QuantConfig(method="trio"))
    method.calibrate(model, calib_batches(1), QuantConfig(method="trio"))
    with pytest.raises(UsageError, match="already calibrated"):
        method.calibrate(model, calib_batches(1), QuantConfig(method="trio"))
