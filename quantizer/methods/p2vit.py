"""P2-ViT (Shi et al., 2024): power-of-two post-training quantization of ViT/DeiT and Swin.

Built on the FQ-ViT placement (``fqvit.prepare_vit`` / ``prepare_swin``) with P2-ViT's changes (research notes
2.1-2.11):

* every scale is a power of two, chosen by *adaptive* rounding: among 2**(floor(log2 s) + {-1, 0, 1, 2}), the one
  with the lowest layer-output MSE (weights) or tensor MSE (activations);
* activations are signed, hence symmetric (z = 0), per tensor; attention probabilities are 4-bit Log-Int-Softmax
  with exp shift n = 32;
* weights have two formats, int4 per output channel and int8 per tensor, each with its own observer (P4), both
  calibrated; ``cfg.w_bits`` picks the active one (another width gets its own per-channel format);
* symmetric PTF on every tensor that feeds a LayerNorm *and* on the attention and MLP branch outputs, with a
  power-of-two base scale by default (P10);
* PoT-aware smoothing of LN1 -> qkv and LN2 -> fc1 (:mod:`p2vit_smooth`), folded into each LayerNorm's output
  scale, each LayerNorm using its own consumer's factors (P3);
* with ``cfg.mixed``, the coarse-to-fine mixed-precision search (:mod:`p2vit_mixed`), scored on the hold-out
  batches, never on evaluation data (P14).

``cfg.ptf`` / ``cfg.lis`` switch the integer LayerNorm (with PTF) and Log-Int-Softmax as in FQ-ViT; P2-ViT always
uses both, so the ``quantizer`` CLI turns them on for ``p2vit`` unless ``--no-ptf`` / ``--no-lis`` is given.

``cfg.options`` (all optional):

=================  =====================================  ========================================================
key                values (default first)                 meaning
=================  =====================================  ========================================================
scale_rounding     adaptive, nearest, ceil, floor, float   how scales become powers of two (float: the FP baseline)
ptf_scale          pot, float                              PTF base scale rounded to a power of two (P10) or not
smoothing          true, false                             PoT-aware smoothing of LN -> qkv and LN -> fc1
alpha_qkv          0.35 (0..1, or "a/b/c" for a pool)      SmoothQuant migration strength(s) for qkv
alpha_fc1          0.5 (0..1, or "a/b/c")                  ... for fc1
embed_head_bits    8 (2..8, or 0 = follow w_bits)          weight bits of patch embedding and head (P16)
sym_denominator    qmax, half_span                         symmetric scale max/127 or max/127.5 (P2-ViT code)
exp_shift          32 (1..40)                              n of LIS's integer exp
attn_bits          4 (2..8)                                bits of the LIS output
log2_rule          linear, log                             LIS rounding of 1/p
input_quant        auto, true, false                       quantize the image (auto: not for mean = std = 0.5)
mixed_budget       4.4 (4..8)                              mixed: MAC-weighted mean weight bits allowed
mixed_coarse       50, mixed_population 25, mixed_iters 8, mixed_children 11: search sizes (2.11)
hessian_samples    8 (1..1000)                             mixed: Hutchinson probes per layer trace
hessian_images     16 (1..4096)                            mixed: calibration images the traces use
=================  =====================================  ========================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence, cast

import torch
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock, SwinTransformerStage
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from quantizer.errors import UsageError
from quantizer.calibrate import calibrate_model, set_mode
from quantizer.core.bits import BitType, check_bits
from quantizer.core.modules import QAct, QIntLayerNorm, QLinear, QuantFormat, _QWeighted
from quantizer.core.quantizers import Conventions, Log2Rule, ScaleRounding
from quantizer.methods.base import Method, QuantConfig, register_method
from quantizer.methods.fqvit import (ACT_OBSERVERS, FqVitRecipe, QAttention, QBlock, QMlp, QSwinBlock,
                                     QWindowAttention, prepare_swin, prepare_vit)
from quantizer.methods.p2vit_smooth import QSmoothLinear
from quantizer.models import family_of

_CHOICES: dict[str, tuple[Any, ...]] = {
    "scale_rounding": ("adaptive", "nearest", "ceil", "floor", "float"),
    "ptf_scale": ("pot", "float"),
    "smoothing": (True, False),
    "sym_denominator": ("qmax", "half_span"),
    "log2_rule": ("linear", "log"),
    "input_quant": ("auto", True, False),
}
_INTS: dict[str, tuple[int, int, int]] = {  # key: (default, lo, hi)
    "embed_head_bits": (8, 0, 8), "exp_shift": (32, 1, 40), "attn_bits": (4, 2, 8),
    "mixed_coarse": (50, 1, 100_000), "mixed_population": (25, 1, 10_000), "mixed_iters": (8, 0, 10_000),
    "mixed_children": (11, 0, 10_000), "hessian_samples": (8, 1, 1000), "hessian_images": (16, 1, 4096),
}
_ALPHAS = {"alpha_qkv": (0.35,), "alpha_fc1": (0.5,)}


def _choice(options: Mapping[str, Any], key: str) -> Any:
    choices = _CHOICES[key]
    value = options.get(key, choices[0])
    if not any(type(value) is type(c) and value == c for c in choices):
        raise UsageError(f"p2vit option {key} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def _int(options: Mapping[str, Any], key: str) -> int:
    default, lo, hi = _INTS[key]
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UsageError(f"p2vit option {key} must be an integer from {lo} to {hi}, got {value!r}")
    return value


def _alphas(options: Mapping[str, Any], key: str) -> tuple[float, ...]:
    """A migration-strength pool: a number or numbers joined by '/' (e.g. "0.3/0.35/0.4"), each in [0, 1]."""
    value = options.get(key, _ALPHAS[key])
    items = value if isinstance(value, tuple) else str(value).split("/")
    try:
        pool = tuple(float(v) for v in items)
    except ValueError:
        pool = ()
    if not pool or any(isinstance(v, bool) or not 0.0 <= a <= 1.0 for v, a in zip(items, pool)):
        raise UsageError(f"p2vit option {key} must be a number in 0..1 or numbers joined by '/', got {value!r}")
    return pool


@dataclass(frozen=True)
class P2VitOptions:
    """The validated ``cfg.options`` of a p2vit run (see the module docstring)."""

    scale_rounding: ScaleRounding = "adaptive"
    ptf_scale: str = "pot"
    smoothing: bool = True
    alpha_qkv: tuple[float, ...] = (0.35,)
    alpha_fc1: tuple[float, ...] = (0.5,)
    embed_head_bits: int = 8
    sym_denominator: str = "qmax"
    exp_shift: int = 32
    attn_bits: int = 4
    log2_rule: Log2Rule = "linear"
    input_quant: bool | None = None
    mixed_budget: float = 4.4
    mixed_coarse: int = 50
    mixed_population: int = 25
    mixed_iters: int = 8
    mixed_children: int = 11
    hessian_samples: int = 8
    hessian_images: int = 16

    @classmethod
    def from_config(cls, cfg: QuantConfig) -> "P2VitOptions":
        options = dict(cfg.options)
        unknown = sorted(set(options) - set(_CHOICES) - set(_INTS) - set(_ALPHAS) - {"mixed_budget"})
        if unknown:
            raise UsageError(f"unknown p2vit option(s): {', '.join(unknown)}")
        budget = options.get("mixed_budget", 4.4)
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 4.0 <= budget <= 8.0:
            raise UsageError(f"p2vit option mixed_budget must be a number from 4 to 8 (mean bits), got {budget!r}")
        input_quant = _choice(options, "input_quant")
        return cls(
            scale_rounding=_choice(options, "scale_rounding"), ptf_scale=_choice(options, "ptf_scale"),
            smoothing=_choice(options, "smoothing"), alpha_qkv=_alphas(options, "alpha_qkv"),
            alpha_fc1=_alphas(options, "alpha_fc1"), sym_denominator=_choice(options, "sym_denominator"),
            log2_rule=_choice(options, "log2_rule"), input_quant=None if input_quant == "auto" else input_quant,
            mixed_budget=float(budget), **{key: _int(options, key) for key in _INTS},
        )


def weight_format_name(bits: int) -> str:
    """The weight bit type a layer at ``bits`` uses: int8 (per tensor) for 8, int{bits} (per channel) otherwise."""
    return f"int{bits}"


def build_recipe(cfg: QuantConfig, opts: P2VitOptions) -> FqVitRecipe:
    """The FQ-ViT-placement recipe with P2-ViT's formats (symmetric PoT activations, int4 + int8 PoT weights)."""
    w_bits = check_bits(cfg.w_bits, "weight bits")
    a_bits = check_bits(cfg.a_bits, "activation bits")
    if cfg.observer not in ACT_OBSERVERS:
        raise UsageError(f"p2vit observer must be one of {', '.join(ACT_OBSERVERS)}, got {cfg.observer!r}")
    rounding = opts.scale_rounding
    signed = BitType(a_bits, signed=True)
    act = QuantFormat(signed, "tensor", cfg.observer, rounding)
    ptf_rounding: ScaleRounding = "float" if opts.ptf_scale == "float" or rounding == "float" else "nearest"
    residual = QuantFormat(signed, "channel", "ptf", ptf_rounding) if cfg.ptf else act
    weights = [QuantFormat(BitType(4, True), "channel", "minmax", rounding),
               QuantFormat(BitType(8, True), "tensor", "minmax", rounding)]
    extra_bits = {w_bits, opts.embed_head_bits} - {0, 4, 8}
    weights += [QuantFormat(BitType(b, True), "channel", "minmax", rounding) for b in sorted(extra_bits)]
    assert cfg.ptf is not None and cfg.lis is not None  # QuantConfig resolves them to bools
    return FqVitRecipe(
        act=act, residual=residual, weights=tuple(weights),
        conventions=Conventions(sym_denominator=opts.sym_denominator),  # type: ignore[arg-type]
        integer_layernorm=cfg.ptf, lis=cfg.lis, attn_bits=opts.attn_bits, log2_rule=opts.log2_rule,
        exp_shift=opts.exp_shift, input_quant=opts.input_quant,
    )


# ---------------------------------------------------------------------------------------------------------------
# Blocks: the LayerNorm output scale carries the smoothing factors of its consumer (class-swapped)
# ---------------------------------------------------------------------------------------------------------------
class P2Block(QBlock):
    """ViT block: LN1 (output grid s_qkv_in·t_qkv) -> attention (qkv divides by t, quantizes) -> residual ->
    qact2 (PTF) -> LN2 (output grid s_fc1_in·t_fc1) -> MLP -> residual -> qact4 (PTF)."""

    def forward(self, x: Tensor, in_q: QAct) -> Tensor:  # type: ignore[override]
        qkv, fc1 = cast(QSmoothLinear, self.attn.qkv), cast(QSmoothLinear, self.mlp.fc1)  # set by _rewrite_block
        h = self.norm1(x, in_q, qkv, qkv.scale)
        x = self.qact2(x + self.drop_path1(self.ls1(self.attn(h))))
        h = self.norm2(x, self.qact2, fc1, fc1.scale)  # the MLP's own factors (P3)
        return self.qact4(x + self.drop_path2(self.ls2(self.mlp(h))))


class P2SwinBlock(QSwinBlock):
    """Swin block with the same fold; windows, shifts and masks are timm's."""

    def forward(self, x: Tensor, in_q: QAct) -> Tensor:  # type: ignore[override]
        batch, height, width, channels = x.shape
        qkv, fc1 = cast(QSmoothLinear, self.attn.qkv), cast(QSmoothLinear, self.mlp.fc1)  # set by _rewrite_block
        h = self.norm1(x, in_q, qkv, qkv.scale)
        x = self.qact2(x + self.drop_path1(self._attn(h))).reshape(batch, -1, channels)
        h = self.norm2(x, self.qact2, fc1, fc1.scale)
        x = self.qact4(x + self.drop_path2(self.mlp(h)))
        return x.reshape(batch, height, width, channels)


def _smooth(layer: nn.Module, alphas: Sequence[float], recipe: FqVitRecipe) -> QSmoothLinear:
    assert isinstance(layer, QLinear)
    return QSmoothLinear.from_qlinear(layer, alphas, recipe.conventions)


def _rewrite_block(block: nn.Module, recipe: FqVitRecipe, opts: P2VitOptions, dim: int) -> None:
    """Smoothing on qkv and fc1, LN output quantizers removed (their grid is the consumer's), PTF on branches."""
    attn, mlp = block.attn, block.mlp
    assert isinstance(attn, (QAttention, QWindowAttention)) and isinstance(mlp, QMlp)
    attn.qkv = _smooth(attn.qkv, opts.alpha_qkv if opts.smoothing else (), recipe)
    mlp.fc1 = _smooth(mlp.fc1, opts.alpha_fc1 if opts.smoothing else (), recipe)
    block.qact1 = nn.Identity()
    block.qact3 = nn.Identity()
    if isinstance(attn, QAttention):
        attn.qact3 = recipe.residual_qact(dim)
    else:
        attn.qact4 = recipe.residual_qact(dim)
    mlp.qact2 = recipe.residual_qact(dim)
    for norm in (block.norm1, block.norm2):
        assert isinstance(norm, QIntLayerNorm)
        norm.spec_extra = {"out_scale": "channel_pot", "folds": "smoothing"} if opts.smoothing else {}
    block.__class__ = P2Block if isinstance(block, QBlock) else P2SwinBlock


def _blocks(model: nn.Module) -> list[tuple[nn.Module, int]]:
    if family_of(model) == "vit":
        assert isinstance(model, VisionTransformer)
        return [(b, model.embed_dim) for b in model.blocks]
    assert isinstance(model, SwinTransformer)
    blocks: list[tuple[nn.Module, int]] = []
    for stage in model.layers:
        assert isinstance(stage, SwinTransformerStage)
        for b in stage.blocks:
            assert isinstance(b, SwinTransformerBlock)
            blocks.append((b, b.dim))
    return blocks


def weight_layers(model: nn.Module) -> list[tuple[str, _QWeighted]]:
    """(path, layer) of every quantized Linear/Conv of ``model``, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _QWeighted)]


def embed_head_names(model: nn.Module) -> tuple[str, ...]:
    """Paths of the patch-embedding conv and the classifier (first and last weight layers, P16)."""
    head = "head.fc" if family_of(model) == "swin" else "head"
    names = {name for name, _ in weight_layers(model)}
    return tuple(n for n in ("patch_embed.proj", head) if n in names)


def select_bits(model: nn.Module, bits: Mapping[str, int]) -> None:
    """Activate the weight format of ``bits[path]`` on each named layer (e.g. a mixed-precision choice)."""
    layers = dict(weight_layers(model))
    for name, b in bits.items():
        layers[name].select_weight_format(weight_format_name(b))


# ---------------------------------------------------------------------------------------------------------------
# The method
# ---------------------------------------------------------------------------------------------------------------
@register_method
class P2Vit(Method):
    """P2-ViT power-of-two post-training quantization of timm ViT/DeiT and Swin models."""

    name = "p2vit"
    families = ("vit", "swin")

    def prepare(self, model: nn.Module, cfg: QuantConfig) -> nn.Module:
        self.check_supported(model)
        self.check_not_quantized(model)
        family = family_of(model)
        opts = P2VitOptions.from_config(cfg)
        recipe = build_recipe(cfg, opts)
        if family == "vit":
            prepare_vit(model, recipe)  # type: ignore[arg-type]
        else:
            prepare_swin(model, recipe)  # type: ignore[arg-type]
        for block, dim in _blocks(model):
            _rewrite_block(block, recipe, opts, dim)
        bits = {name: cfg.w_bits for name, _ in weight_layers(model)}
        if opts.embed_head_bits:
            bits.update({name: opts.embed_head_bits for name in embed_head_names(model)})
        select_bits(model, bits)
        return model

    def calibrate(self, model: nn.Module, calib: Sequence[Tensor], cfg: QuantConfig,
                  holdout: Sequence[Tensor] = ()) -> nn.Module:
        """Smoothing statistics on every batch, then FQ-ViT's protocol (statistics on every batch, search on the
        last), then, with ``cfg.mixed``, the mixed-precision search scored on ``holdout``."""
        opts = P2VitOptions.from_config(cfg)
        if cfg.mixed and len(holdout) == 0:
            raise UsageError("p2vit --mixed needs hold-out batches to score configurations (never evaluation data)")
        if len(calib) == 0:
            raise UsageError("calibration needs at least one batch")
        collect_smoothing_statistics(model, calib)
        calibrate_model(model, calib, seed=cfg.seed)
        if cfg.mixed:
            from quantizer.methods.p2vit_mixed import MixedSearch

            MixedSearch(model, opts, seed=cfg.seed).run(calib, holdout)
        return model


@torch.no_grad()
def collect_smoothing_statistics(model: nn.Module, batches: Sequence[Tensor]) -> None:
    """Float pass over ``batches`` recording each smoothed layer's input channel maxima a_c, then fixing its
    candidate factors (one per α) so the observe phase can feed X/t to each candidate's input quantizer."""
    layers = [m for m in model.modules() if isinstance(m, QSmoothLinear)]
    hooks = [m.register_forward_pre_hook(lambda mod, args: mod.observe_channels(args[0])) for m in layers]
    try:
        set_mode(model, "float")
        model.eval()
        for batch in batches:
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    for layer in layers:
        layer.start_candidates()


__all__ = ["P2Block", "P2SwinBlock", "P2Vit", "P2VitOptions", "build_recipe", "collect_smoothing_statistics",
           "embed_head_names", "select_bits", "weight_format_name", "weight_layers"]
