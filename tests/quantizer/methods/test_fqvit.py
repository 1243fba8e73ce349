"""FQ-ViT on timm models: accuracy against the float model, placement, specs, state dicts, and the protocol."""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from quantizer.errors import UsageError
from quantizer.zoo import build
from quantizer.calibrate import calibrate_model, quant_modules, set_mode, uncalibrated
from quantizer.core.bits import BitType
from quantizer.core.modules import QAct, QConv2d, QIntLayerNorm, QIntSoftmax, QLinear, QuantFormat
from quantizer.core.spec import collect_specs
from quantizer.methods import QuantConfig, get_method
from quantizer.methods.fqvit import FqVit, FqVitRecipe
from quant_helpers import cosine, small_vit, with_trained_scale_cls

BATCH = 2


def images(shape: tuple[int, ...], count: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for _ in range(count)]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def deit() -> tuple[nn.Module, tuple[int, ...]]:
    return build("deit_tiny", batch=BATCH, device="cpu")


def quantize(model: nn.Module, shape: tuple[int, ...], calib_batches: int = 3, **cfg: Any) -> tuple[nn.Module, float]:
    """Quantize a copy of ``model`` with fqvit; return it and the logits' cosine similarity to the float model."""
    x = images(shape, 1, seed=99)[0]
    with torch.no_grad():
        reference = model(x)
    qmodel = copy.deepcopy(model)
    config = QuantConfig(method="fqvit", **cfg)
    get_method("fqvit").quantize(qmodel, images(shape, calib_batches, seed=1), config)
    with torch.no_grad():
        out = qmodel(x)
    assert out.shape == reference.shape and torch.isfinite(out).all()
    return qmodel, cosine(reference, out)


# --- accuracy on deit_tiny ---------------------------------------------------------------------------------------
@pytest.mark.xfail(strict=True, reason="random-init cls token (|x| ≈ 0.016) is below one uint8 step of the residual "
                   "stream (≈ 0.021): cosine 0.885; see with_trained_scale_cls and docs/quantization/core-fqvit.md")
def test_w8a8_minmax_on_the_zoo_deit_tiny(deit: tuple[nn.Module, tuple[int, ...]]) -> None:
    _, cos = quantize(*deit)
    assert cos > 0.99


def test_w8a8_minmax_keeps_the_logits(deit: tuple[nn.Module, tuple[int, ...]]) -> None:
    model, shape = deit
    _, cos = quantize(with_trained_scale_cls(copy.deepcopy(model)), shape)
    assert cos > 0.99


def test_ptf_and_lis(deit: tuple[nn.Module, tuple[int, ...]]) -> None:
    model, shape = deit
    qmodel, cos = quantize(with_trained_scale_cls(copy.deepcopy(model)), shape, ptf=True, lis=True)
    assert cos > 0.99
    block = qmodel.blocks[0]
    assert block.norm1.integer_active(qmodel.qact1, block.qact1)  # the integer LayerNorm runs
    assert block.norm2.integer_active(block.qact2, block.qact3)
    assert isinstance(block.attn.softmax, QIntSoftmax) and block.attn.softmax.lis_active(block.attn.qact_attn1)
    ptf_scale = block.qact2.scale
    assert ptf_scale.shape == (192,)
    shifts = torch.log2(ptf_scale / ptf_scale.min())
    assert torch.allclose(shifts, shifts.round()) and shifts.max() <= 3  # s_c = s1 * 2^alpha, alpha in 0..3
    specs = collect_specs(qmodel)
    assert specs["blocks.0.norm1"].extra["layernorm"] == "int"
    assert specs["blocks.0.attn.softmax"].out_bits == 4 and specs["blocks.0.attn.softmax"].scale_kind == "log2"
    assert specs["blocks.0.qact2"].act_granularity == "channel"
    assert specs["blocks.0.attn.matmul_av"].extra["lhs_bits"] == 4


def test_w4a8(deit: tuple[nn.Module, tuple[int, ...]]) -> None:
    model, shape = deit
    qmodel, cos = quantize(with_trained_scale_cls(copy.deepcopy(model)), shape, w_bits=4)
    assert cos > 0.97  # measured 0.986; 4-bit minmax weights, no PoT search
    weighted = [s for s in collect_specs(qmodel).values() if s.weight_bits is not None]
    assert weighted and all(s.weight_bits == 4 for s in weighted)


def test_every_linear_is_replaced_and_carries_a_spec(deit: tuple[nn.Module, tuple[int, ...]]) -> None:
    model, _ = deit
    linears = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    qmodel = get_method("fqvit").prepare(copy.deepcopy(model), QuantConfig(method="fqvit"))
    modules = dict(qmodel.named_modules())
    assert not any(isinstance(m, nn.Linear) for m in modules.values())
    assert all(isinstance(modules[n], QLinear) for n in linears) and len(linears) == 12 * 4 + 1
    specs = collect_specs(qmodel)
    assert all(specs[n].kind == "linear" and specs[n].weight_bits == 8 and specs[n].act_bits == 8 for n in linears)
    assert isinstance(modules["patch_embed.proj"], QConv2d) and specs["patch_embed.proj"].kind == "conv2d"
    assert not any(type(m) is nn.LayerNorm for m in modules.values())
    kinds = {s.kind for s in specs.values()}
    assert kinds == {"act", "linear", "conv2d", "layernorm", "matmul"}
    # the float parameters keep their keys; quantizer buffers are added
    float_keys = set(model.state_dict())
    assert float_keys <= set(qmodel.state_dict())


def test_state_dict_round_trip(deit: tuple[nn.Module, tuple[int, ...]]) -> None:
    model, shape = deit
    cfg: dict[str, Any] = {"ptf": True, "lis": True}
    qmodel, _ = quantize(model, shape, **cfg)
    state = qmodel.state_dict()
    fresh = get_method("fqvit").prepare(copy.deepcopy(model), QuantConfig(method="fqvit", **cfg))
    assert uncalibrated(fresh)
    fresh.load_state_dict(state, strict=True)
    assert not uncalibrated(fresh)
    x = images(shape, 1, seed=7)[0]
    with torch.no_grad():
        assert torch.equal(fresh(x), qmodel(x))


# --- other models ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", [{}, {"global_pool": "avg"}, {"global_pool": "avg", "class_token": False}])
def test_small_custom_vit(variant: dict[str, Any]) -> None:
    model = small_vit(**variant)  # with a trained-scale cls token, if it has one
    for cfg in ({}, {"ptf": True, "lis": True}):
        qmodel, cos = quantize(model, (BATCH, 3, 32, 32), **cfg)
        assert cos > 0.99
        assert not any(isinstance(m, nn.Linear) for m in qmodel.modules())


@pytest.mark.parametrize("observer", ["ema", "percentile", "omse"])
def test_activation_observers(observer: str) -> None:
    model = small_vit()
    qmodel, cos = quantize(model, (BATCH, 3, 32, 32), observer=observer)
    assert cos > 0.99
    assert collect_specs(qmodel)["blocks.0.qact1"].extra["observer"] == observer


def test_swin_tiny() -> None:
    model, shape = build("swin_tiny", batch=1, device="cpu")
    linears = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    qmodel, cos = quantize(model, shape, calib_batches=2, ptf=True, lis=True)
    assert cos > 0.99  # measured 0.998
    modules = dict(qmodel.named_modules())
    assert all(isinstance(modules[n], QLinear) for n in linears) and "head.fc" in linears
    merge = qmodel.layers[1].downsample
    assert merge.norm.integer_active(qmodel.layers[0].blocks[-1].qact4, merge.qact1)  # 4C LN, C scales tiled
    assert isinstance(qmodel.patch_embed.norm, QIntLayerNorm)
    specs = collect_specs(qmodel)
    assert specs["layers.0.blocks.0.attn.qact_table"].kind == "act"
    assert specs["layers.1.downsample.qact2"].act_granularity == "channel"


# --- configuration and errors ----------------------------------------------------------------------------------------
def test_registry_and_support(deit: tuple[nn.Module, tuple[int, ...]]) -> None:
    method = get_method("fqvit")
    assert isinstance(method, FqVit) and method.families == ("vit", "swin")
    assert method.supports(deit[0]) and not method.supports(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(UsageError, match="does not support this model"):
        method.quantize(nn.Sequential(nn.Linear(2, 2)), [torch.zeros(1, 2)], QuantConfig(method="fqvit"))


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"mixed": True}, "no mixed precision"),
        ({"observer": "ptf"}, "observer must be one of"),
        ({"w_bits": 9}, "w_bits must be an integer from 2 to 8"),  # checked by QuantConfig itself
        ({"options": {"zero_point": "nearest"}}, "option zero_point"),
        ({"options": {"parity": 1}}, "option parity"),
        ({"options": {"exp_shift": 64}}, "option exp_shift"),
        ({"options": {"smoothing": True}}, "unknown fqvit option"),
    ],
)
def test_config_errors(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        get_method("fqvit").prepare(small_vit(), QuantConfig(method="fqvit", **cfg))


def test_unsupported_variants_and_double_prepare() -> None:
    method, cfg = get_method("fqvit"), QuantConfig(method="fqvit")
    with pytest.raises(UsageError, match="qk_norm"):
        method.prepare(small_vit(qk_norm=True), cfg)
    with pytest.raises(UsageError, match="no_embed_class"):
        method.prepare(small_vit(no_embed_class=True), cfg)
    model = method.prepare(small_vit(), cfg)
    with pytest.raises(UsageError, match="already quantized"):
        method.prepare(model, cfg)


def test_options() -> None:
    parity = FqVitRecipe.from_config(QuantConfig(method="fqvit", options={"parity": True, "zero_point": "extend"}))
    assert (parity.conventions.sym_denominator, parity.conventions.zero_point,
            parity.conventions.ptf_zero_point) == ("half_span", "extend", "shared")
    default = FqVitRecipe.from_config(QuantConfig(method="fqvit", ptf=True, lis=True))
    assert (default.conventions.sym_denominator, default.conventions.zero_point,
            default.conventions.ptf_zero_point) == ("qmax", "extend", "channel")
    assert default.residual.observer == "ptf" and default.integer_layernorm and default.weights[0].bit_type.signed
    assert (default.attn_bits, default.exp_shift, default.log2_rule) == (4, 30, "linear")
    model = get_method("fqvit").prepare(small_vit(), QuantConfig(method="fqvit", options={"input_quant": False}))
    assert isinstance(model.qact_input, nn.Identity)
    vit = small_vit()
    vit.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # ViT-B/L: input not quantized
    assert isinstance(get_method("fqvit").prepare(vit, QuantConfig(method="fqvit")).qact_input, nn.Identity)
    assert isinstance(get_method("fqvit").prepare(small_vit(), QuantConfig(method="fqvit")).qact_input, QAct)


# --- the calibration protocol -----------------------------------------------------------------------------------------
class SpyAct(QAct):
    """Records the mode of each forward."""

    def __init__(self, log: list[str]) -> None:
        super().__init__(QuantFormat(BitType(8, False)))
        self.log = log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.mode)
        return super().forward(x)


def test_protocol_observes_all_batches_and_searches_on_the_last() -> None:
    log: list[str] = []
    model = nn.Sequential(SpyAct(log))
    batches = [torch.tensor([-1.0, 1.0]), torch.tensor([0.0, 4.0]), torch.tensor([-2.0, 0.5])]
    calibrate_model(model, batches)
    assert log == ["calibrate", "calibrate", "search"]
    spy = model[0]
    assert spy.mode == "quant" and spy.scale.item() == pytest.approx(6 / 255)  # range of all three: [-2, 4]


class OneUnused(nn.Module):
    """Two quantizers, one never reached by the forward."""

    def __init__(self) -> None:
        super().__init__()
        self.used = QAct(QuantFormat(BitType(8, False)))
        self.unused = QAct(QuantFormat(BitType(8, False)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


def test_protocol_errors() -> None:
    model = nn.Sequential(QAct(QuantFormat(BitType(8, False))))
    with pytest.raises(UsageError, match="at least one batch"):
        calibrate_model(model, [])
    with pytest.raises(UsageError, match="mode must be one of"):
        set_mode(model, "train")  # type: ignore[arg-type]
    model = OneUnused()
    assert [name for name, _ in quant_modules(model)] == ["used", "unused"]
    with pytest.raises(UsageError, match="did not reach 1 quantizer.*unused.quantizer"):
        calibrate_model(model, [torch.zeros(2)])
