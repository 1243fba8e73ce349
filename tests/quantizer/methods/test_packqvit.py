"""PackQViT: the integer base-2 kernels against their float references, log2 grids, outlier-aware residual grids,
QAT (loss, determinism), specs, state dicts and options, on a small timm DeiT; the digits accuracy gain is slow."""
from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from quantizer.calibrate import set_mode
from quantizer.core.bits import BitType
from quantizer.core.int_exp2 import (EXP2_LINE_MAX_ERROR, GELU_SIGMOID_COEFF, exp2_neg, int2n_softmax, int_gelu,
                                     int_gelu_values)
from quantizer.core.modules import QAct, QuantFormat
from quantizer.core.quantizers import log2_codes
from quantizer.core.spec import collect_specs
from quantizer.errors import UnsupportedModelError, UsageError
from quantizer.methods import QuantConfig, get_method
from quantizer.methods.base import check_support
from quantizer.methods.packqvit import (PackIntLayerNorm, PackQVit, QInt2nSoftmax, QLog2Act, QOutlierAct,
                                        _make_outlier_act, distillation_loss)
from quant_helpers import images, with_trained_scale_cls

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 16
CALIB = 3  # calibration batches of 4 images
FEW_STEPS = {"qat_steps": 2, "qat_batch": 4}


def tiny_vit() -> nn.Module:
    """A one-block timm DeiT on 16x16 images (17 tokens, 32 channels, 2 heads), its cls token at a trained scale."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(img_size=SIZE, patch_size=4, embed_dim=32, depth=1, num_heads=2, num_classes=10)
    return with_trained_scale_cls(model.eval())


def calib_images(seed: int = 1) -> list[torch.Tensor]:
    return images(CALIB, seed, size=SIZE, batch=4)


def eval_images(seed: int = 2) -> torch.Tensor:
    return images(1, seed, size=SIZE, batch=4)[0]


def quantize(model: nn.Module | None = None, *, w_bits: int = 4, a_bits: int = 4, seed: int = 0,
             **options: Any) -> nn.Module:
    qmodel = copy.deepcopy(model) if model is not None else tiny_vit()
    cfg = QuantConfig(method="packqvit", w_bits=w_bits, a_bits=a_bits, seed=seed, options={**FEW_STEPS, **options})
    return get_method("packqvit").quantize(qmodel, calib_images(), cfg)


def capture(model: nn.Module, module: nn.Module, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """(inputs, output) of ``module`` during one forward of ``model`` on ``x``."""
    seen: list[Any] = []
    handle = module.register_forward_hook(lambda _m, args, out: seen.append((args, out)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[0]


# --- the base-2 exponential ------------------------------------------------------------------------------------
def test_exp2_line_is_exact_at_integers_and_never_below() -> None:
    # u = 0, 1, 2.5, 3: 2^-u at 30 fractional bits; the line 1 - f/2 is exact at f = 0 and 0.75·2^-2 at u = 2.5
    u = torch.tensor([0, 1 << 16, (5 << 16) // 2, 3 << 16])
    assert exp2_neg(u).tolist() == [1 << 30, 1 << 29, (3 << 30) // 16, 1 << 27]
    f = torch.arange(0, 1 << 16, 97)
    ratio = exp2_neg(f).double() / 2.0 ** 30 / torch.pow(2.0, -f.double() / 2 ** 16)
    assert ratio.min() >= 1.0 and ratio.max() <= 1.0 + EXP2_LINE_MAX_ERROR
    assert EXP2_LINE_MAX_ERROR == pytest.approx(0.0615, abs=1e-4)


# --- Int-2^n-Softmax ------------------------------------------------------------------------------------------------
def test_int2n_softmax_by_hand() -> None:
    """Step ln 2, logits 0, -ln 2, -2 ln 2: exponents are whole (u = 0, 1, 2), so exp = 1, 1/2, 1/4 exactly and
    p = 4/7, 2/7, 1/7; 1/p = 1.75, 3.5, 7 round (linear rule, up from 1.5·2^k) to 2, 4, 8: codes 1, 2, 3."""
    step = math.log(2.0)
    result = int2n_softmax(torch.tensor([[0.0, -step, -2 * step]]), step, bits=4)
    assert result.exp_int.tolist() == [[1 << 30, 1 << 29, 1 << 28]]
    assert result.codes.tolist() == [[1, 2, 3]]
    assert result.values.tolist() == [[0.5, 0.25, 0.125]]
    uniform = int2n_softmax(torch.tensor([[0.0, -step, -2 * step]]), step, bits=4, output="uniform")
    assert uniform.codes.tolist() == [[9, 5, 2]]  # round(16·4/7 = 9.14), round(4.57), round(2.29)


@pytest.mark.parametrize("step", [1e-3, 0.02, 0.3])
def test_int2n_softmax_matches_softmax(step: float) -> None:
    """Tolerance: every 2^x of the integer form lies in [1, 1 + δ]·2^x (δ = 6.15 %, the line 1 - f/2, never below
    2^-f), so p_int / p lies in [1/(1 + δ), 1 + δ], plus 1e-3 for the 16-bit dyadic constant and the truncating
    shift; checked where p >= 2^-12 (below that the 30-bit exp keeps fewer than 18 significant bits)."""
    g = torch.Generator().manual_seed(0)
    x = torch.round(torch.randn(3, 4, 50, generator=g) * 4 / step) * step
    result = int2n_softmax(x, step, bits=4)
    p = x.double().softmax(-1)
    ratio = (result.exp_int.double() / result.total.double() / p)[p >= 2 ** -12]
    slack = 1e-3
    assert ratio.min() >= 1 / (1 + EXP2_LINE_MAX_ERROR) - slack and ratio.max() <= 1 + EXP2_LINE_MAX_ERROR + slack
    # the 4-bit log2 output is at most one code from the log2 codes of the float softmax
    reference = log2_codes(p, 4)
    both = (reference >= 0) & (result.codes >= 0)
    assert (result.codes[both] - reference[both]).abs().max() <= 1
    assert bool(((reference >= 0) == (result.codes >= 0)).float().mean() > 0.95)


# --- integer GELU -----------------------------------------------------------------------------------------------------
def test_int_gelu_by_hand() -> None:
    s = torch.tensor([0.5])
    result = int_gelu(torch.tensor([0.0, 20.0, -20.0]), s)
    assert result.y_int[0] == 0
    assert result.sigmoid[1] == 1 << 15 and result.sigmoid[2] == 0  # σ(34) = 1 and σ(-34) = 0 at 15 bits
    assert int_gelu_values(torch.tensor([20.0, -20.0]), s).tolist() == [20.0, 0.0]


@pytest.mark.parametrize("per_channel", [False, True])
def test_int_gelu_matches_gelu(per_channel: bool) -> None:
    """Tolerance: σ is built from e = 2^-u with relative error δ <= 6.15 %, which moves σ = 1/(1 + e) or
    e/(1 + e) by at most δ·e/(1 + e)² <= δ/4, so |y - x·σ(1.702x)| <= (δ/4)·|x| + 2^-14·|x| (σ's 15-bit rounding);
    against the exact GELU add 0.0205, the largest gap of x·σ(1.702x) to GELU (Hendrycks & Gimpel's form)."""
    g = torch.Generator().manual_seed(0)
    scale = torch.rand(8, generator=g) * 0.05 + 0.001 if per_channel else torch.tensor([0.02])
    x = torch.round(torch.randn(64, 8, generator=g) * 3 / scale) * scale
    y = int_gelu_values(x, scale)
    bound = (EXP2_LINE_MAX_ERROR / 4 + 2 ** -14) * x.abs() + 1e-6
    assert bool(((y - x * torch.sigmoid(GELU_SIGMOID_COEFF * x)).abs() <= bound).all())
    assert bool(((y - F.gelu(x)).abs() <= bound + 0.0205).all())
    grid = torch.linspace(-8, 8, 20001)
    assert (grid * torch.sigmoid(GELU_SIGMOID_COEFF * grid) - F.gelu(grid)).abs().max() < 0.0205


# --- log2 grids in the model ------------------------------------------------------------------------------------------
def test_post_softmax_values_are_on_the_power_of_two_grid() -> None:
    qmodel = quantize()
    softmax = qmodel.blocks[0].attn.softmax
    assert isinstance(softmax, QInt2nSoftmax) and softmax.integer_active(qmodel.blocks[0].attn.qact1)
    _, probs = capture(qmodel, softmax, eval_images())
    nonzero = probs[probs > 0]
    exponents = -torch.log2(nonzero)
    assert torch.equal(exponents, exponents.round()) and exponents.max() <= 15 and exponents.min() >= 0
    assert bool((probs.amax(dim=-1) > 0).all())  # every row keeps its largest entry


def test_post_gelu_values_are_signed_powers_of_two_of_the_scale() -> None:
    qmodel = quantize()
    qact = qmodel.blocks[0].mlp.qact1
    assert isinstance(qact, QLog2Act) and qact.quantizing
    _, out = capture(qmodel, qact, eval_images())
    units = (out / qact.scale)[out != 0].abs()
    k = -torch.log2(units)
    assert torch.allclose(k, k.round(), atol=1e-5) and k.round().max() <= 7 and k.round().min() >= 0  # 3-bit codes
    assert bool((out < 0).any()) and bool((out > 0).any())  # GELU's negative lobe keeps its sign


# --- outlier-aware residual grids ------------------------------------------------------------------------------------
def test_outlier_grid_by_hand() -> None:
    """Channel ranges [1, 1, 1, 8, 3] at uint4 with 2 outliers: outliers are channels 3 and 4, R = 1, s = 1/15,
    a = ceil(log2 8) = 3 and ceil(log2 3) = 2: scales s·[1, 1, 1, 8, 4]; every zero point 0 (ranges start at 0)."""
    qact = QAct(QuantFormat(BitType(4, signed=False), "channel", "minmax"), channels=5)
    outlier = _make_outlier_act(qact, 2, 3)
    outlier.set_mode("calibrate")
    outlier(torch.tensor([[0.0] * 5, [1.0, 1.0, 1.0, 8.0, 3.0]]))
    outlier.set_outlier_grid()
    assert outlier.outlier_index.tolist() == [3, 4]
    assert torch.allclose(outlier.scale * 15, torch.tensor([1.0, 1.0, 1.0, 8.0, 4.0]))
    assert outlier.zero_point.tolist() == [0.0] * 5


def test_outlier_channels_get_their_own_scales_and_stay_fixed() -> None:
    ptq = quantize(qat_steps=0)
    qat = quantize(qat_steps=4, qat_batch=4)
    for name in ("qact1", "blocks.0.qact2", "blocks.0.qact4"):
        before, after = ptq.get_submodule(name), qat.get_submodule(name)
        assert isinstance(before, QOutlierAct) and isinstance(after, QOutlierAct)
        assert before.outliers == 2  # 5 % of 32 channels, rounded
        lo, hi = before.quantizer.observer.observed_range()
        span = hi.clamp(min=0) - lo.clamp(max=0)
        assert set(before.outlier_index.tolist()) == set(span.topk(2).indices.tolist())  # the widest ranges
        assert torch.equal(before.outlier_index, after.outlier_index)  # predicted once, kept through QAT
        for grid in (before.scale, after.scale):
            ordinary = torch.ones(32, dtype=torch.bool)
            ordinary[before.outlier_index] = False
            base = grid[ordinary]
            assert torch.equal(base, base[:1].expand_as(base))  # one shared scale for ordinary channels
            shift = torch.log2(grid / base[0])
            assert torch.allclose(shift, shift.round(), atol=1e-5) and 0 <= shift.min() and shift.max() <= 3
        assert not torch.equal(before.scale, after.scale)  # QAT learned the shared scale
    index = qat.blocks[0].qact2.outlier_index.clone()
    with torch.no_grad():
        qat(eval_images(7) * 3)  # other data at inference: no runtime selection
    assert torch.equal(qat.blocks[0].qact2.outlier_index, index)


def test_integer_layernorm_runs_on_the_outlier_grid() -> None:
    """The integer LayerNorm's documented bound (core-fqvit.md): |y - LN(x)| <= s_out + |LN(x) - β| / 128, the
    output step plus the 8-bit dyadic multiplier's relative error."""
    qmodel = quantize()
    block = qmodel.blocks[0]
    norm = block.norm2
    assert isinstance(norm, PackIntLayerNorm) and norm.integer_active(block.qact2, block.qact3)
    (x, *_), y = capture(qmodel, norm, eval_images())
    reference = F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    bound = block.qact3.scale + (reference - norm.bias).abs() / 128
    assert bool(((y - reference).abs() <= bound + 1e-6).all())


# --- training ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("distill", "factor"), [("hard", 0.95), ("soft", 0.5)])
def test_qat_reduces_the_task_loss_on_the_calibration_data(distill: str, factor: float) -> None:
    """The QAT objective (distillation from the float model) on the calibration images, PTQ init vs 10 QAT steps.
    A random model's logits are nearly flat (its argmax is one class for every image), so the hard loss starts near
    ln 10 and moves less than the KL to the teacher's whole distribution."""
    teacher = tiny_vit()
    x = torch.cat(calib_images())
    ptq = quantize(teacher, qat_steps=0)
    qat = quantize(teacher, qat_steps=10, qat_batch=12, lr=1e-3, distill=distill)
    with torch.no_grad():
        target = teacher(x)
        before, after = (float(distillation_loss(m(x), target, distill)) for m in (ptq, qat))
    assert after < factor * before


def test_fixed_scales_train_the_weights_through_the_rounding() -> None:
    """learn_scales false: every grid stays the PTQ one, the weights still learn (straight-through rounding)."""
    teacher = tiny_vit()
    x = torch.cat(calib_images())
    ptq = quantize(teacher, qat_steps=0)
    qat = quantize(teacher, qat_steps=10, qat_batch=12, lr=1e-3, distill="soft", learn_scales=False)
    before, after = ptq.state_dict(), qat.state_dict()
    scales = [k for k in before if k.endswith(".scale")]
    assert scales and all(torch.equal(before[k], after[k]) for k in scales)
    assert not torch.equal(before["blocks.0.mlp.fc1.weight"], after["blocks.0.mlp.fc1.weight"])
    with torch.no_grad():
        target = teacher(x)
        assert distillation_loss(qat(x), target, "soft") < 0.5 * distillation_loss(ptq(x), target, "soft")


def test_deterministic_for_a_seed() -> None:
    a, b, c = quantize(seed=0), quantize(seed=0), quantize(seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)  # the seed draws the QAT minibatches


def test_state_dict_round_trip_and_float_mode() -> None:
    qmodel = quantize()
    fresh = tiny_vit()
    get_method("packqvit").prepare(fresh, QuantConfig(method="packqvit", w_bits=4, a_bits=4, options=FEW_STEPS))
    fresh.load_state_dict(qmodel.state_dict(), strict=True)
    x = eval_images()
    with torch.no_grad():
        assert torch.equal(fresh(x), qmodel(x))  # auto mode: calibrated grids quantize
        set_mode(fresh, "float")
        reference = tiny_vit()
        reference.load_state_dict({k: v for k, v in qmodel.state_dict().items() if k in reference.state_dict()})
        torch.testing.assert_close(fresh(x), reference(x), rtol=1e-4, atol=1e-5)  # float mode = the float model


def test_prepare_on_meta_device() -> None:
    """archsim traces a prepared model built on the meta device: prepare must not compute on weight values."""
    from timm.models.vision_transformer import VisionTransformer

    with torch.device("meta"):
        model = VisionTransformer(img_size=SIZE, patch_size=4, embed_dim=32, depth=1, num_heads=2, num_classes=10)
    get_method("packqvit").prepare(model, QuantConfig(method="packqvit", w_bits=4, a_bits=4))
    assert collect_specs(model)["blocks.0.attn.softmax"].extra["softmax"] == "int2n"


# --- specs ------------------------------------------------------------------------------------------------------------
def test_specs_carry_bits_scale_kinds_and_integer_forms() -> None:
    specs = collect_specs(quantize(qat_steps=0))
    assert specs["blocks.0.attn.qkv"].weight_bits == 4 and specs["blocks.0.attn.qkv"].act_bits == 4
    assert specs["head"].weight_bits == 8 and specs["head"].act_bits == 8  # the classifier stays at 8 bits
    assert specs["patch_embed.proj"].weight_bits == 8 and specs["patch_embed.proj"].out_bits == 4
    softmax = specs["blocks.0.attn.softmax"]
    assert (softmax.kind, softmax.out_bits, softmax.scale_kind, softmax.extra["softmax"]) == ("softmax", 4, "log2",
                                                                                               "int2n")
    assert specs["blocks.0.attn.matmul_qk"].out_bits == 32  # the softmax reads the accumulator
    assert specs["blocks.0.attn.matmul_av"].extra == {"lhs_bits": 4, "lhs_scale": "log2"}
    assert specs["blocks.0.mlp.fc1"].out_bits == 32 and specs["blocks.0.mlp.act"].extra["gelu"] == "int"
    assert specs["blocks.0.mlp.qact1"].scale_kind == "log2" and specs["blocks.0.mlp.qact1"].symmetric_acts
    assert specs["blocks.0.mlp.fc2"].extra["lhs_scale"] == "log2"
    assert specs["blocks.0.norm1"].extra["layernorm"] == "int"
    residual = specs["blocks.0.qact4"]
    assert residual.act_granularity == "channel" and residual.extra["outliers"] == 2
    w8 = collect_specs(quantize(w_bits=8, a_bits=8, qat_steps=0, log2_gelu=False, log2_softmax=False))
    assert w8["blocks.0.attn.qkv"].weight_bits == 8 and w8["blocks.0.mlp.qact1"].scale_kind == "float"
    assert w8["blocks.0.attn.softmax"].scale_kind == "pot" and w8["blocks.0.attn.softmax"].extra["output"] == "uniform"


# --- configuration and errors ---------------------------------------------------------------------------------------
def test_registry_and_support() -> None:
    method = get_method("packqvit")
    assert isinstance(method, PackQVit) and method.families == ("vit",)
    from timm.models.swin_transformer import SwinTransformer

    swin = SwinTransformer(img_size=32, patch_size=2, window_size=4, embed_dim=16, depths=(1,), num_heads=(1,))
    with pytest.raises(UnsupportedModelError, match="family swin"):
        check_support(method, swin, "swin")


@pytest.mark.parametrize(("cfg", "message"), [
    ({"options": {"bogus": 1}}, "unknown packqvit option"),
    ({"options": {"qat_steps": -1}}, "qat_steps must be an integer from 0"),
    ({"options": {"lr": "fast"}}, "lr must be a number > 0"),
    ({"options": {"weight_decay": -0.1}}, "weight_decay must be a number >= 0"),
    ({"options": {"outlier_channels": 1.5}}, "outlier_channels must be a channel count"),
    ({"options": {"distill": "kl"}}, "distill must be one of hard, soft"),
    ({"ptf": True}, "--ptf / --lis do not apply"),
    ({"mixed": True}, "no mixed precision"),
])
def test_option_errors(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        get_method("packqvit").prepare(tiny_vit(), QuantConfig(method="packqvit", **cfg))


def test_text_numbers_and_outlier_counts() -> None:
    from quantizer.methods.packqvit import PackQVitOptions

    opts = PackQVitOptions.from_config(QuantConfig(method="packqvit", options={"lr": "1e-4", "outlier_channels": 2}))
    assert opts.lr == 1e-4 and opts.outlier_count(64) == 2
    assert PackQVitOptions().outlier_count(192) == 10 and PackQVitOptions().outlier_count(1) == 0


# --- accuracy on a real data set (slow) -------------------------------------------------------------------------------
@pytest.mark.slow
def test_w4a4_qat_beats_post_training_w4a4_on_digits() -> None:
    """A small DeiT trained on scikit-learn's digits (as benchmarks/quant_accuracy.py does, 2 blocks, 12 epochs):
    PackQViT's W4A4 QAT (60 steps on 256 training images) beats FQ-ViT's post-training W4A4 on the test split."""
    pytest.importorskip("sklearn")
    from timm.models.vision_transformer import VisionTransformer
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1) - 0.5) / 0.5
    y = torch.tensor(data.target)
    tr, te = train_test_split(torch.arange(len(y)).numpy(), test_size=0.2, random_state=0, stratify=y.numpy())
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4, num_classes=10)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    gen = torch.Generator().manual_seed(0)
    for _ in range(12):
        order = torch.from_numpy(tr)[torch.randperm(len(tr), generator=gen)]
        for i in range(0, len(order), 64):
            loss = F.cross_entropy(model(x[order[i:i + 64]]), y[order[i:i + 64]])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    calib = [x[tr[i * 32:(i + 1) * 32]] for i in range(8)]

    def accuracy(m: nn.Module) -> float:
        with torch.no_grad():
            return float((m(x[te]).argmax(1) == y[te]).float().mean())

    fqvit = copy.deepcopy(model)
    get_method("fqvit").quantize(fqvit, calib, QuantConfig(method="fqvit", w_bits=4, a_bits=4, ptf=True, lis=True))
    packq = copy.deepcopy(model)
    get_method("packqvit").quantize(packq, calib, QuantConfig(method="packqvit", w_bits=4, a_bits=4,
                                                              options={"qat_steps": 60}))
    assert accuracy(model) > 0.85  # 88.6 % when written; FQ-ViT W4A4 39.4 %, PackQViT W4A4 82.5 %
    assert accuracy(packq) > accuracy(fqvit) + 0.2
