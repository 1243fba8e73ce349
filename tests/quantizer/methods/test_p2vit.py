"""P2-ViT: PoT smoothing factors, the LayerNorm fold, power-of-two grids, per-bit-type formats, the method on
timm ViT and Swin, options and errors. The mixed-precision search is tested in test_p2vit_mixed.py."""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from quantizer.errors import UsageError
from quantizer.calibrate import set_mode
from quantizer.core.bits import BitType
from quantizer.core.modules import QIntLayerNorm, QuantFormat, UniformQuantizer, _QWeighted
from quantizer.core.spec import collect_specs
from quantizer.methods import QuantConfig, get_method
from quantizer.methods.p2vit import P2Block, P2Vit, P2VitOptions, select_bits
from quantizer.methods.p2vit_smooth import QSmoothLinear, pot_smoothing_factors
from quant_helpers import cosine, images, small_vit


pytestmark = pytest.mark.usefixtures("one_thread")


def quantize(model: nn.Module, calib: int = 2, **cfg: Any) -> tuple[nn.Module, float]:
    reference = copy.deepcopy(model).eval()
    qmodel = copy.deepcopy(model)
    config = QuantConfig(method="p2vit", **{"ptf": True, "lis": True, **cfg})
    get_method("p2vit").quantize(qmodel, images(calib, 1), config, images(1, 9))
    x = images(1, 2)[0]
    with torch.no_grad():
        return qmodel, cosine(reference(x), qmodel(x))


def is_pot(t: torch.Tensor) -> bool:
    exponents = torch.log2(t.double())
    return bool(torch.equal(exponents, exponents.round()))


# --- smoothing factors (research notes 2.8) ----------------------------------------------------------------------------
def test_smoothing_factors_by_hand() -> None:
    a = torch.tensor([4.0, 1.0, 9.0, 9.61, 0.0, 2.0])
    w = torch.tensor([1.0, 4.0, 1.0, 1.0, 1.0, 0.0])
    # alpha 0.5: sqrt(a)/sqrt(w) = 2, 0.5, 3 (tie between 2 and 4: down), 3.1 (up), unused channel, zero column
    t = pot_smoothing_factors(a, w, 0.5)
    assert t.tolist() == [2.0, 0.5, 2.0, 4.0, 1.0, 1.0]
    # alpha 0.35 on a = 8, w = 0.5: 8^0.35 / 0.5^0.65 = 2.07 * 1.569 = 3.25 -> 4
    assert pot_smoothing_factors(torch.tensor([8.0]), torch.tensor([0.5]), 0.35).item() == 4.0


def test_smoothing_is_exact_in_float() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(8, 5)
    fmt = QuantFormat(BitType(8, True), "tensor", "minmax", "adaptive")
    weights = (QuantFormat(BitType(4, True), "channel", "minmax", "adaptive"), fmt)
    layer = QSmoothLinear(linear.weight, linear.bias, weight_formats=weights, act_format=fmt, alphas=(0.5,))
    x = torch.randn(3, 7, 8) * torch.tensor([10.0, 1, 1, 1, 0.1, 1, 1, 1])
    layer.observe_channels(x)
    layer.start_candidates()
    t = layer._candidates[0][0]
    assert is_pot(t) and not torch.equal(t, torch.ones(8))
    assert torch.allclose(F.linear(x / t, linear.weight * t, linear.bias), linear(x), atol=1e-5)
    layer.set_mode("search")
    assert torch.equal(layer(x), linear(x))  # the search passes the float output on
    layer.set_mode("quant")
    for name in ("int4", "int8"):
        assert torch.equal(layer.smoothing(name), t) and layer.alpha_int8.item() == 0.5
    assert is_pot(layer.scale) and layer.scale.shape == (8,)  # s_in * t, the LayerNorm's folded output grid
    assert cosine(layer(x), linear(x)) > 0.99


# --- the method on ViT --------------------------------------------------------------------------------------------
def test_w8a8_keeps_the_logits_and_every_scale_is_a_power_of_two() -> None:
    qmodel, cos = quantize(small_vit())
    assert cos > 0.99
    grids = [m for m in qmodel.modules() if isinstance(m, UniformQuantizer) and m.is_calibrated]
    assert grids and all(is_pot(g.scale) for g in grids)
    assert all(bool((g.zero_point == 0).all()) for g in grids)  # symmetric everywhere
    specs = collect_specs(qmodel)
    weighted = {n: s for n, s in specs.items() if s.weight_bits is not None}
    assert all(s.scale_kind == "pot" for s in weighted.values())
    assert specs["blocks.0.attn.qkv"].weight_bits == 8 and specs["blocks.0.attn.qkv"].weight_granularity == "tensor"
    assert specs["blocks.0.attn.qkv"].extra["smoothing"] == "pot" and specs["blocks.0.attn.qkv"].symmetric_acts
    assert specs["blocks.0.norm1"].extra["out_scale"] == "channel_pot"
    assert specs["blocks.0.attn.softmax"].extra.get("exp_shift", 32) == 32
    assert specs["blocks.0.attn.qact3"].act_granularity == "channel"  # PTF on the branch output (2.7)


def test_w4a8_is_per_channel_int4_but_first_and_last_layers_stay_8_bit() -> None:
    qmodel, cos = quantize(small_vit(), w_bits=4)
    assert cos > 0.95
    specs = collect_specs(qmodel)
    assert specs["blocks.1.mlp.fc2"].weight_bits == 4 and specs["blocks.1.mlp.fc2"].weight_granularity == "channel"
    assert specs["patch_embed.proj"].weight_bits == 8 and specs["head"].weight_bits == 8  # P16, explicit
    qmodel, _ = quantize(small_vit(), w_bits=4, options={"embed_head_bits": 0})
    assert collect_specs(qmodel)["head"].weight_bits == 4


def test_each_bit_type_has_its_own_grid_and_switching_is_instant() -> None:
    qmodel, _ = quantize(small_vit(), w_bits=8)
    fc2 = qmodel.blocks[0].mlp.fc2
    assert isinstance(fc2, _QWeighted) and set(fc2.weight_quantizers) == {"int4", "int8"}
    assert fc2.weight_quantizers["int4"].scale.shape == (64,) and fc2.weight_quantizers["int8"].scale.shape == (1,)
    x = images(1, 2)[0]
    with torch.no_grad():
        y8 = qmodel(x)
        select_bits(qmodel, {"blocks.0.mlp.fc2": 4, "blocks.0.attn.qkv": 4})
        y4 = qmodel(x)
    assert not torch.equal(y8, y4)
    qkv = qmodel.blocks[0].attn.qkv
    assert collect_specs(qmodel)["blocks.0.attn.qkv"].weight_bits == 4
    assert torch.equal(qkv.scale, qkv.input_quantizers["int4"].scale * qkv.smooth_int4)


def test_each_layernorm_folds_its_own_consumers_factors(monkeypatch: pytest.MonkeyPatch) -> None:
    qmodel, _ = quantize(small_vit())
    block = qmodel.blocks[0]
    assert isinstance(block, P2Block)
    seen: dict[int, torch.Tensor] = {}
    original = QIntLayerNorm.forward

    def spy(self: QIntLayerNorm, x: torch.Tensor, in_q: Any = None, out_q: Any = None,
            out_scale: torch.Tensor | None = None) -> torch.Tensor:
        seen[id(self)] = out_scale
        assert self.integer_active(in_q, out_q)
        return original(self, x, in_q, out_q, out_scale)

    monkeypatch.setattr(QIntLayerNorm, "forward", spy)
    with torch.no_grad():
        qmodel(images(1, 2)[0])
    assert torch.equal(seen[id(block.norm1)], block.attn.qkv.scale)
    assert torch.equal(seen[id(block.norm2)], block.mlp.fc1.scale)  # not the attention's (P3)
    assert not torch.equal(block.attn.qkv.smooth_int8, torch.ones(64))


def test_ln_fold_equals_dividing_then_quantizing() -> None:
    """The integer LayerNorm on the folded grid s·t, divided by t, lies on the input grid s of qkv."""
    qmodel, _ = quantize(small_vit())
    block, x = qmodel.blocks[0], images(1, 2)[0]
    captured: dict[str, torch.Tensor] = {}
    block.attn.qkv.register_forward_pre_hook(lambda m, args: captured.setdefault("h", args[0]))
    with torch.no_grad():
        qmodel(x)
    qkv = block.attn.qkv
    codes = captured["h"] / qkv.scale
    assert torch.allclose(codes, codes.round(), atol=1e-3)  # on the folded per-channel grid


def test_float_scales_baseline_and_options() -> None:
    qmodel, cos = quantize(small_vit(), options={"scale_rounding": "float", "smoothing": False})
    assert cos > 0.99
    specs = collect_specs(qmodel)
    assert specs["blocks.0.attn.proj"].scale_kind == "float" and "smoothing" not in specs["blocks.0.attn.qkv"].extra
    assert torch.equal(qmodel.blocks[0].attn.qkv.smooth_int8, torch.ones(64))
    opts = P2VitOptions.from_config(QuantConfig(method="p2vit", options={"alpha_qkv": "0.3/0.4", "alpha_fc1": 0.6}))
    assert opts.alpha_qkv == (0.3, 0.4) and opts.alpha_fc1 == (0.6,)
    qmodel, _ = quantize(small_vit(), options={"alpha_qkv": "0.3/0.5"})
    assert round(qmodel.blocks[0].attn.qkv.alpha_int8.item(), 6) in (0.3, 0.5)


@pytest.mark.parametrize("observer", ["ema", "percentile", "omse"])
def test_every_observer_gives_power_of_two_scales(observer: str) -> None:  # P8
    qmodel, cos = quantize(small_vit(), observer=observer)
    assert cos > 0.98
    assert is_pot(qmodel.blocks[0].attn.qact1.scale)


def test_without_ptf_and_lis() -> None:
    qmodel, cos = quantize(small_vit(), ptf=False, lis=False)
    assert cos > 0.99
    assert collect_specs(qmodel)["blocks.0.norm1"].extra["layernorm"] == "float"


def test_state_dict_round_trip() -> None:
    qmodel, _ = quantize(small_vit(), w_bits=4)
    select_bits(qmodel, {"blocks.1.attn.qkv": 8})
    fresh = small_vit()
    get_method("p2vit").prepare(fresh, QuantConfig(method="p2vit", w_bits=4, ptf=True, lis=True))
    fresh.load_state_dict(qmodel.state_dict(), strict=True)
    set_mode(fresh, "quant")
    x = images(1, 2)[0]
    with torch.no_grad():
        assert torch.equal(fresh(x), qmodel(x))
    assert collect_specs(fresh)["blocks.1.attn.qkv"].weight_bits == 8


def test_swin() -> None:
    from timm.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    model = SwinTransformer(img_size=32, patch_size=2, window_size=4, embed_dim=32, depths=(2, 2),
                            num_heads=(2, 4), num_classes=10).eval()
    qmodel, cos = quantize(model, w_bits=8)
    assert cos > 0.98
    specs = collect_specs(qmodel)
    assert specs["layers.0.blocks.1.attn.qkv"].extra["smoothing"] == "pot"
    assert specs["layers.1.blocks.0.mlp.fc1"].scale_kind == "pot"


# --- configuration and errors ----------------------------------------------------------------------------------------
def test_registry_and_support() -> None:
    method = get_method("p2vit")
    assert isinstance(method, P2Vit) and method.families == ("vit", "swin")
    with pytest.raises(UsageError, match="does not support this model"):
        method.quantize(nn.Sequential(nn.Linear(2, 2)), [torch.zeros(1, 2)], QuantConfig(method="p2vit"))


@pytest.mark.parametrize(("options", "message"), [
    ({"scale_rounding": "round"}, "scale_rounding must be one of"),
    ({"alpha_qkv": 1.5}, "alpha_qkv must be a number in 0..1"),
    ({"alpha_fc1": "a/b"}, "alpha_fc1 must be"),
    ({"mixed_budget": 3}, "mixed_budget must be a number from 4 to 8"),
    ({"embed_head_bits": 9}, "embed_head_bits must be an integer from 0 to 8"),
    ({"bogus": 1}, "unknown p2vit option"),
])
def test_option_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        get_method("p2vit").prepare(small_vit(), QuantConfig(method="p2vit", options=options))


def test_mixed_needs_a_holdout_and_bits_are_checked() -> None:
    model = get_method("p2vit").prepare(small_vit(), QuantConfig(method="p2vit"))
    with pytest.raises(UsageError, match="hold-out"):
        get_method("p2vit").calibrate(model, images(1, 1), QuantConfig(method="p2vit", mixed=True), ())
    with pytest.raises(UsageError, match="w_bits must be an integer from 2 to 8"):  # checked by QuantConfig
        get_method("p2vit").prepare(small_vit(), QuantConfig(method="p2vit", w_bits=9))
