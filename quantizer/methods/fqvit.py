"""FQ-ViT (Lin et al., IJCAI 2022): fully quantized ViT/DeiT and Swin, rewritten in place from timm models.

Recipe (research notes 1.3-1.10): int8 per-channel minmax weights everywhere (patch embedding and head
included), uint8 per-tensor activations with the configured observer, PTF on every LayerNorm input and the
integer LayerNorm when ``cfg.ptf``, 4-bit Log-Int-Softmax when ``cfg.lis`` (else a float softmax followed by a
uint8 quantizer). The protocol is ``quantizer.calibrate``: statistics on every batch, search on the last.

How the rewrite works: leaf modules are *replaced* by quantized modules that keep the float parameters under the
same names (Linear -> QLinear, patch Conv2d -> QConv2d, LayerNorm -> QIntLayerNorm, timm Attention /
WindowAttention -> QAttention / QWindowAttention, Mlp -> QMlp); containers (the model, blocks, patch embedding,
patch merging) keep their class's data and get a subclass whose forward places the quantizers
(``module.__class__ = Q...``), so every float state-dict key survives and the quantizer buffers are added.

``cfg.options`` (all optional; defaults are the corrected behaviour, see docs/quantization/core-fqvit.md):

==================  ========================  =========================================================
key                 values (default first)    meaning
==================  ========================  =========================================================
parity              false, true               FQ-ViT code conventions: half_span, clamp, shared (below)
sym_denominator     qmax, half_span           symmetric scale max/127 or max/127.5 (F6)
zero_point          extend, clamp             asymmetric range widened to contain 0, or clamped z
ptf_zero_point      channel, shared           PTF zero point per channel and candidate, or FQ-ViT's (F1)
log2_rule           linear, log               LIS rounding of 1/p to a power of two (F8)
exp_shift           30 (int 1..40)            n of the integer exp (P2-ViT uses 32)
attn_bits           4 (int 2..8)              bits of the LIS output
input_quant         auto, true, false         quantize the image (auto: not for mean = std = 0.5 models)
==================  ========================  =========================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence, cast

import torch
from timm.layers import Format, Mlp, nchw_to
from timm.layers.attention import Attention
from timm.layers.patch_embed import PatchEmbed
from timm.models.swin_transformer import (
    PatchMerging, SwinTransformer, SwinTransformerBlock, SwinTransformerStage, WindowAttention,
)
from timm.models.vision_transformer import Block, VisionTransformer
from torch import Tensor, nn

from quantizer.errors import UsageError
from quantizer.calibrate import calibrate_model
from quantizer.core.bits import BitType, check_bits
from quantizer.core.modules import QAct, QConv2d, QIntLayerNorm, QIntSoftmax, QLinear, QMatMul, QuantFormat
from quantizer.core.quantizers import Conventions, Log2Rule
from quantizer.methods.base import Method, QuantConfig, register_method
from quantizer.models import family_of

ACT_OBSERVERS = ("minmax", "ema", "percentile", "omse")
_OPTION_CHOICES: dict[str, tuple[Any, ...]] = {
    "parity": (False, True),
    "sym_denominator": ("qmax", "half_span"),
    "zero_point": ("extend", "clamp"),
    "ptf_zero_point": ("channel", "shared"),
    "log2_rule": ("linear", "log"),
    "input_quant": ("auto", True, False),
}
_PARITY = {"sym_denominator": "half_span", "zero_point": "clamp", "ptf_zero_point": "shared"}


def _option(options: Mapping[str, Any], key: str, default: Any) -> Any:
    value = options.get(key, default)
    choices = _OPTION_CHOICES[key]
    if not any(type(value) is type(c) and value == c for c in choices):  # 1 is not True here
        raise UsageError(f"fqvit option {key} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def _int_option(options: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UsageError(f"fqvit option {key} must be an integer from {lo} to {hi}, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------------------------
# The recipe: formats and factories of quantized pieces (reusable by recipes that place quantizers like FQ-ViT)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FqVitRecipe:
    """Formats and switches of one FQ-ViT-style quantization, and factories for its quantized modules.

    ``act``: every activation quantizer; ``residual``: the quantizers whose output feeds a LayerNorm (PTF when
    ``integer_layernorm``); ``weights``: the weight formats of every Linear/Conv (one quantizer each, the first
    active). P2-ViT-like recipes reuse the placement by building this with other formats (symmetric int8
    power-of-two activations, int4 and int8 weights with adaptive power-of-two scales, ...).
    """

    act: QuantFormat
    residual: QuantFormat
    weights: tuple[QuantFormat, ...]
    conventions: Conventions = Conventions()
    integer_layernorm: bool = False
    lis: bool = False
    attn_bits: int = 4
    log2_rule: Log2Rule = "linear"
    exp_shift: int = 30
    input_quant: bool | None = None  # None: decide from the model's input normalization

    @classmethod
    def from_config(cls, cfg: QuantConfig) -> "FqVitRecipe":
        """The FQ-ViT recipe of ``cfg`` (one-line UsageError for anything FQ-ViT does not have)."""
        w_bits = check_bits(cfg.w_bits, "weight bits")
        a_bits = check_bits(cfg.a_bits, "activation bits")
        if cfg.observer not in ACT_OBSERVERS:
            raise UsageError(f"fqvit observer must be one of {', '.join(ACT_OBSERVERS)}, got {cfg.observer!r}")
        if cfg.mixed:
            raise UsageError("fqvit has no mixed precision (that is p2vit)")
        options = dict(cfg.options)
        unknown = sorted(set(options) - set(_OPTION_CHOICES) - {"exp_shift", "attn_bits"})
        if unknown:
            raise UsageError(f"unknown fqvit option(s): {', '.join(unknown)}")
        defaults = _PARITY if _option(options, "parity", False) else {}
        conventions = Conventions(
            sym_denominator=_option(options, "sym_denominator", defaults.get("sym_denominator", "qmax")),
            zero_point=_option(options, "zero_point", defaults.get("zero_point", "extend")),
            ptf_zero_point=_option(options, "ptf_zero_point", defaults.get("ptf_zero_point", "channel")),
        )
        input_quant = _option(options, "input_quant", "auto")
        act = QuantFormat(BitType(a_bits, signed=False), "tensor", cfg.observer)
        residual = QuantFormat(act.bit_type, "channel", "ptf") if cfg.ptf else act
        assert cfg.ptf is not None and cfg.lis is not None  # QuantConfig resolves them to bools
        return cls(
            act=act, residual=residual,
            weights=(QuantFormat(BitType(w_bits, signed=True), "channel", "minmax"),),
            conventions=conventions, integer_layernorm=cfg.ptf, lis=cfg.lis,
            attn_bits=_int_option(options, "attn_bits", 4, 2, 8),
            log2_rule=_option(options, "log2_rule", "linear"),
            exp_shift=_int_option(options, "exp_shift", 30, 1, 40),
            input_quant=None if input_quant == "auto" else input_quant,
        )

    # factories ---------------------------------------------------------------------------------------------
    def qact(self) -> QAct:
        """A per-tensor activation quantizer."""
        return QAct(self.act, 1, -1, self.conventions)

    def residual_qact(self, channels: int) -> QAct:
        """Quantizer of a tensor that feeds a LayerNorm (residual stream): PTF when the LayerNorm is integer."""
        return QAct(self.residual, channels, -1, self.conventions)

    def linear(self, linear: nn.Module) -> QLinear:
        assert isinstance(linear, nn.Linear)
        return QLinear.from_float(linear, weight_formats=self.weights, act_format=self.act,
                                  conventions=self.conventions)

    def conv(self, conv: nn.Module) -> QConv2d:
        assert isinstance(conv, nn.Conv2d)
        return QConv2d.from_float(conv, weight_formats=self.weights, act_format=self.act,
                                  conventions=self.conventions)

    def layernorm(self, norm: nn.Module, input_format: QuantFormat | None = None) -> QIntLayerNorm:
        """The LayerNorm, integer when ``integer_layernorm``; ``input_format`` (default ``residual``) is the format
        of the quantizer feeding it, for its QuantSpec."""
        if not isinstance(norm, nn.LayerNorm):
            raise UsageError(f"fqvit needs LayerNorm normalization, found {type(norm).__name__}")
        return QIntLayerNorm.from_float(norm, act_format=input_format or self.residual,
                                        out_bits=self.act.bit_type.bits, integer=self.integer_layernorm)

    def softmax(self) -> QIntSoftmax | None:
        """Log-Int-Softmax when ``lis``; None means a float softmax followed by :meth:`qact`."""
        if not self.lis:
            return None
        return QIntSoftmax(act_format=self.act, bits=self.attn_bits, rule=self.log2_rule, exp_shift=self.exp_shift)

    def matmuls(self) -> tuple[QMatMul, QMatMul]:
        """(q·kᵀ, attn·v) product modules; attn·v reads the LIS log2 codes when ``lis``."""
        probs = {"lhs_bits": self.attn_bits, "lhs_scale": "log2"} if self.lis else {}
        return QMatMul(self.act), QMatMul(self.act, extra=probs)


# ---------------------------------------------------------------------------------------------------------------
# Attention and MLP (replaced modules)
# ---------------------------------------------------------------------------------------------------------------
class _QAttentionBase(nn.Module):
    """The softmax of an attention module: LIS on the logits' quantizer, or float softmax + uint8 quantizer."""

    softmax: nn.Module

    def _init_softmax(self, recipe: FqVitRecipe) -> None:
        lis = recipe.softmax()
        if lis is not None:
            self.softmax = lis
        else:
            self.softmax = nn.Softmax(dim=-1)
            self.qact_softmax = recipe.qact()

    def _softmax(self, logits: Tensor, logits_q: QAct) -> Tensor:
        if isinstance(self.softmax, QIntSoftmax):
            return self.softmax(logits, logits_q)
        return self.qact_softmax(self.softmax(logits))


class QAttention(_QAttentionBase):
    """timm ``Attention`` with explicit q·kᵀ, softmax and attn·v, quantized as FQ-ViT: qkv -> qact1,
    q·kᵀ·d^-1/2 -> qact_attn1 -> softmax, attn·v -> qact2, proj -> qact3."""

    def __init__(self, attn: nn.Module, recipe: FqVitRecipe) -> None:
        super().__init__()
        if type(attn) is not Attention:
            raise UsageError(f"fqvit supports timm Attention, found {type(attn).__name__}")
        for extra in ("q_norm", "k_norm", "norm"):
            if not isinstance(getattr(attn, extra, nn.Identity()), nn.Identity):
                raise UsageError(f"fqvit does not support attention with {extra} (qk_norm / scale_norm)")
        if getattr(attn, "gate", None) is not None:
            raise UsageError("fqvit does not support gated attention")
        self.num_heads, self.head_dim, self.scale = attn.num_heads, attn.head_dim, attn.scale
        self.qkv = recipe.linear(attn.qkv)
        self.qact1 = recipe.qact()
        self.matmul_qk, self.matmul_av = recipe.matmuls()
        self.qact_attn1 = recipe.qact()
        self._init_softmax(recipe)
        self.attn_drop = attn.attn_drop
        self.qact2 = recipe.qact()
        self.proj = recipe.linear(attn.proj)
        self.qact3 = recipe.qact()
        self.proj_drop = attn.proj_drop

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        if attn_mask is not None or is_causal:
            raise UsageError("fqvit attention does not support attention masks")
        batch, tokens, _ = x.shape
        qkv = self.qact1(self.qkv(x)).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = self.qact_attn1(self.matmul_qk(q, k.transpose(-2, -1)) * self.scale)
        attn = self.attn_drop(self._softmax(attn, self.qact_attn1))
        x = self.matmul_av(attn, v).transpose(1, 2).reshape(batch, tokens, self.num_heads * self.head_dim)
        return self.proj_drop(self.qact3(self.proj(self.qact2(x))))


class QWindowAttention(_QAttentionBase):
    """timm Swin ``WindowAttention``, quantized as FQ-ViT: qkv -> qact1, q·kᵀ·d^-1/2 -> qact_attn1, bias table
    -> qact_table, logits + bias -> qact2 (LIS reads its scale; the shift mask is added after it), attn·v ->
    qact3, proj -> qact4."""

    relative_position_index: Tensor

    def __init__(self, attn: nn.Module, recipe: FqVitRecipe) -> None:
        super().__init__()
        if type(attn) is not WindowAttention:
            raise UsageError(f"fqvit supports timm WindowAttention, found {type(attn).__name__}")
        self.num_heads, self.scale = attn.num_heads, attn.scale
        self.window_size, self.window_area = attn.window_size, attn.window_area
        self.relative_position_bias_table = attn.relative_position_bias_table
        self.register_buffer("relative_position_index", attn.get_buffer("relative_position_index"),
                             persistent=False)
        self.qkv = recipe.linear(attn.qkv)
        self.qact1 = recipe.qact()
        self.matmul_qk, self.matmul_av = recipe.matmuls()
        self.qact_attn1 = recipe.qact()
        self.qact_table = recipe.qact()
        self.qact2 = recipe.qact()
        self._init_softmax(recipe)
        self.attn_drop = attn.attn_drop
        self.qact3 = recipe.qact()
        self.proj = recipe.linear(attn.proj)
        self.qact4 = recipe.qact()
        self.proj_drop = attn.proj_drop

    def _rel_pos_bias(self) -> Tensor:
        table = self.qact_table(self.relative_position_bias_table)
        bias = table[self.relative_position_index.view(-1)].view(self.window_area, self.window_area, -1)
        return bias.permute(2, 0, 1).unsqueeze(0)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        windows, tokens, _ = x.shape
        qkv = self.qact1(self.qkv(x)).reshape(windows, tokens, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = self.qact_attn1(self.matmul_qk(q, k.transpose(-2, -1)) * self.scale)
        attn = self.qact2(attn + self._rel_pos_bias())
        if mask is not None:
            num_win = mask.shape[0]
            attn = attn.view(-1, num_win, self.num_heads, tokens, tokens) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, tokens, tokens)
        attn = self.attn_drop(self._softmax(attn, self.qact2))
        x = self.qact3(self.matmul_av(attn, v).transpose(1, 2).reshape(windows, tokens, -1))
        return self.proj_drop(self.qact4(self.proj(x)))


class QMlp(nn.Module):
    """timm ``Mlp`` quantized as FQ-ViT: fc1 -> GELU -> qact1, fc2 -> qact2."""

    def __init__(self, mlp: nn.Module, recipe: FqVitRecipe) -> None:
        super().__init__()
        if type(mlp) is not Mlp or not isinstance(mlp.norm, nn.Identity):
            raise UsageError(f"fqvit supports the plain timm Mlp, found {type(mlp).__name__}")
        self.fc1 = recipe.linear(mlp.fc1)
        self.act = mlp.act
        self.drop1 = mlp.drop1
        self.qact1 = recipe.qact()
        self.fc2 = recipe.linear(mlp.fc2)
        self.qact2 = recipe.qact()
        self.drop2 = mlp.drop2

    def forward(self, x: Tensor) -> Tensor:
        x = self.qact1(self.drop1(self.act(self.fc1(x))))
        return self.drop2(self.qact2(self.fc2(x)))


# ---------------------------------------------------------------------------------------------------------------
# Containers (class-swapped: same data, forward that places the quantizers)
# ---------------------------------------------------------------------------------------------------------------
class QPatchEmbed(PatchEmbed):
    """Patch embedding: conv (QConv2d) -> tokens -> [qact_before_norm -> integer LayerNorm] -> qact."""

    qact: QAct
    qact_before_norm: QAct  # only with a LayerNorm

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)
        elif self.output_fmt != Format.NCHW:
            x = nchw_to(x, self.output_fmt)
        if isinstance(self.norm, QIntLayerNorm):
            x = self.qact_before_norm(x)
            x = self.norm(x, self.qact_before_norm, self.qact)
        return self.qact(x)


def _quantize_patch_embed(embed: nn.Module, recipe: FqVitRecipe) -> None:
    if type(embed) is not PatchEmbed or getattr(embed, "dynamic_img_pad", False):
        raise UsageError(f"fqvit supports the plain timm PatchEmbed, found {type(embed).__name__}")
    setattr(embed, "proj", recipe.conv(embed.proj))  # surgery: timm declares proj an nn.Conv2d
    if isinstance(embed.norm, nn.LayerNorm):
        embed.qact_before_norm = recipe.qact()
        embed.norm = recipe.layernorm(embed.norm, recipe.act)
    elif not isinstance(embed.norm, nn.Identity):
        raise UsageError(f"fqvit does not support a {type(embed.norm).__name__} after the patch embedding")
    embed.qact = recipe.qact()
    embed.__class__ = QPatchEmbed


class QBlock(Block):
    """ViT block: LN1 (input = the previous residual quantizer) -> qact1 -> attention -> residual -> qact2
    (PTF) -> LN2 -> qact3 -> MLP -> residual -> qact4 (PTF)."""

    qact1: QAct
    qact2: QAct
    qact3: QAct
    qact4: QAct

    def forward(self, x: Tensor, in_q: QAct) -> Tensor:  # type: ignore[override]
        h = self.qact1(self.norm1(x, in_q, self.qact1))
        x = self.qact2(x + self.drop_path1(self.ls1(self.attn(h))))
        h = self.qact3(self.norm2(x, self.qact2, self.qact3))
        return self.qact4(x + self.drop_path2(self.ls2(self.mlp(h))))


def _quantize_block(block: nn.Module, recipe: FqVitRecipe) -> None:
    if type(block) is not Block:
        raise UsageError(f"fqvit supports the timm ViT Block, found {type(block).__name__}")
    norm1 = recipe.layernorm(block.norm1)
    dim = norm1.normalized_shape[0]
    block.norm1 = norm1
    block.qact1 = recipe.qact()
    block.attn = QAttention(block.attn, recipe)
    block.qact2 = recipe.residual_qact(dim)
    block.norm2 = recipe.layernorm(block.norm2)
    block.qact3 = recipe.qact()
    block.mlp = QMlp(block.mlp, recipe)
    block.qact4 = recipe.residual_qact(dim)
    block.__class__ = QBlock


class FqVitVisionTransformer(VisionTransformer):
    """timm VisionTransformer with FQ-ViT's quantizers: input -> patch embedding -> [cls] -> qact_embed,
    + qact_pos(pos_embed) -> qact1 (PTF) -> blocks -> final LN -> qact2 -> cls token -> head -> act_out.
    Average-pooling variants: blocks -> [LN -> qact2] -> mean -> qact3 -> [fc_norm LN -> qact4] -> head."""

    qact_input: nn.Module  # QAct, or Identity for inputs already on an 8-bit grid
    qact_embed: QAct
    qact_pos: QAct
    qact1: QAct
    qact2: nn.Module  # qact2..qact4: QAct where that part of the model exists, else Identity
    qact3: nn.Module
    qact4: nn.Module
    act_out: nn.Module  # QAct after a linear head, else Identity

    def _pos_embed(self, x: Tensor) -> Tensor:
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        x = self.qact_embed(torch.cat([*prefix, x], dim=1))
        return self.qact1(self.pos_drop(x + self.qact_pos(self.pos_embed)))

    def forward_features(self, x: Tensor, attn_mask: Tensor | None = None,
                         is_causal: bool = False) -> Tensor:
        if attn_mask is not None or is_causal:
            raise UsageError("fqvit models do not support attention masks")
        x = self.patch_embed(self.qact_input(x))
        x = self.norm_pre(self.patch_drop(self._pos_embed(x)))
        in_q = self.qact1
        for block in cast("Iterable[QBlock]", self.blocks):  # prepare_vit made every block a QBlock
            x = block(x, in_q)
            in_q = block.qact4
        if isinstance(self.norm, QIntLayerNorm):
            x = self.qact2(self.norm(x, in_q, self.qact2))
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.qact3(self.pool(x))
        if isinstance(self.fc_norm, QIntLayerNorm):
            x = self.qact4(self.fc_norm(x, self.qact3, self.qact4))
        x = self.head_drop(x)
        return x if pre_logits else self.act_out(self.head(x))


def _input_quant(model: nn.Module, recipe: FqVitRecipe) -> bool:
    """FQ-ViT quantizes the image except for models normalized with mean = std = 0.5 (already 8-bit exact)."""
    if recipe.input_quant is not None:
        return recipe.input_quant
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return not (tuple(cfg.get("mean", ())) == (0.5, 0.5, 0.5) and tuple(cfg.get("std", ())) == (0.5, 0.5, 0.5))


def _quantize_head(model: nn.Module, head_attr: Sequence[str], recipe: FqVitRecipe) -> None:
    owner = model
    for name in head_attr[:-1]:
        owner = getattr(owner, name)
    head = getattr(owner, head_attr[-1])
    if isinstance(head, nn.Linear):
        setattr(owner, head_attr[-1], recipe.linear(head))
        model.act_out = recipe.qact()
    else:
        model.act_out = nn.Identity()


def prepare_vit(model: VisionTransformer, recipe: FqVitRecipe) -> None:
    """Rewrite a timm VisionTransformer (DeiT/ViT, any size) in place with FQ-ViT's quantizers."""
    avg = model.global_pool == "avg"
    fc_norm = isinstance(model.fc_norm, nn.LayerNorm)
    unsupported = {
        "no_embed_class": model.no_embed_class, "dynamic_img_size": model.dynamic_img_size,
        "attention pooling": model.attn_pool is not None, "no pos_embed": model.pos_embed is None,
        "norm_pre": not isinstance(model.norm_pre, nn.Identity),
        f"global_pool={model.global_pool!r}": model.global_pool not in ("token", "avg"),
        "fc_norm without average pooling": fc_norm and not avg,
    }
    found = [k for k, v in unsupported.items() if v]
    if found:
        raise UsageError(f"fqvit does not support this VisionTransformer variant ({', '.join(found)})")
    dim = model.embed_dim
    model.qact_input = recipe.qact() if _input_quant(model, recipe) else nn.Identity()
    _quantize_patch_embed(model.patch_embed, recipe)
    model.qact_embed = recipe.qact()
    model.qact_pos = recipe.qact()
    model.qact1 = recipe.residual_qact(dim)
    for block in model.blocks:
        _quantize_block(block, recipe)
    if not isinstance(model.norm, nn.Identity):
        model.norm = recipe.layernorm(model.norm)
    model.qact2 = recipe.qact() if isinstance(model.norm, QIntLayerNorm) else nn.Identity()
    # A mean leaves the grid, so it is quantized again; per tensor even before fc_norm: PTF's per-channel choice
    # would rest on only one pooled value per image and channel (the integer LayerNorm takes per-tensor inputs).
    model.qact3 = recipe.qact() if avg else nn.Identity()
    if fc_norm:
        model.fc_norm = recipe.layernorm(model.fc_norm, recipe.act)
    model.qact4 = recipe.qact() if fc_norm else nn.Identity()
    _quantize_head(model, ("head",), recipe)
    model.__class__ = FqVitVisionTransformer


# ---------------------------------------------------------------------------------------------------------------
# Swin
# ---------------------------------------------------------------------------------------------------------------
class QSwinBlock(SwinTransformerBlock):
    """Swin block with the ViT block's quantizers; windows, shifts and masks are timm's (``_attn``)."""

    qact1: QAct
    qact2: QAct
    qact3: QAct
    qact4: QAct

    def forward(self, x: Tensor, in_q: QAct) -> Tensor:  # type: ignore[override]
        batch, height, width, channels = x.shape
        h = self.qact1(self.norm1(x, in_q, self.qact1))
        x = self.qact2(x + self.drop_path1(self._attn(h))).reshape(batch, -1, channels)
        h = self.qact3(self.norm2(x, self.qact2, self.qact3))
        x = self.qact4(x + self.drop_path2(self.mlp(h)))
        return x.reshape(batch, height, width, channels)


def _quantize_swin_block(block: nn.Module, recipe: FqVitRecipe, input_format: QuantFormat) -> None:
    if type(block) is not SwinTransformerBlock:
        raise UsageError(f"fqvit supports the timm SwinTransformerBlock, found {type(block).__name__}")
    block.norm1 = recipe.layernorm(block.norm1, input_format)
    block.qact1 = recipe.qact()
    setattr(block, "attn", QWindowAttention(block.attn, recipe))  # surgery: timm declares a WindowAttention
    block.qact2 = recipe.residual_qact(block.dim)
    block.norm2 = recipe.layernorm(block.norm2)
    block.qact3 = recipe.qact()
    setattr(block, "mlp", QMlp(block.mlp, recipe))  # and an Mlp
    block.qact4 = recipe.residual_qact(block.dim)
    block.__class__ = QSwinBlock


class QPatchMerging(PatchMerging):
    """Patch merging: 2x2 concat -> integer LN (input = previous residual quantizer, its C scales tiled 4x) ->
    qact1 -> reduction -> qact2 (PTF, the next stage's residual input)."""

    qact1: QAct
    qact2: QAct

    def forward(self, x: Tensor, in_q: QAct) -> Tensor:  # type: ignore[override]
        batch, height, width, channels = x.shape
        x = nn.functional.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        _, height, width, _ = x.shape
        x = x.reshape(batch, height // 2, 2, width // 2, 2, channels).permute(0, 1, 3, 4, 2, 5).flatten(3)
        x = self.qact1(self.norm(x, in_q, self.qact1))
        return self.qact2(self.reduction(x))


def _quantize_patch_merging(merge: nn.Module, recipe: FqVitRecipe) -> None:
    if type(merge) is not PatchMerging:
        raise UsageError(f"fqvit supports the timm PatchMerging, found {type(merge).__name__}")
    merge.norm = recipe.layernorm(merge.norm)
    merge.qact1 = recipe.qact()
    setattr(merge, "reduction", recipe.linear(merge.reduction))  # surgery: timm declares an nn.Linear
    merge.qact2 = recipe.residual_qact(merge.out_dim)
    merge.__class__ = QPatchMerging


class FqVitSwinTransformer(SwinTransformer):
    """timm SwinTransformer with FQ-ViT's quantizers: input -> patch embedding (LN inside) -> stages (patch
    merging, blocks) -> final LN -> qact2 -> average pool -> qact3 -> head -> act_out."""

    qact_input: nn.Module  # QAct, or Identity for inputs already on an 8-bit grid
    qact2: QAct
    qact3: QAct
    act_out: nn.Module  # QAct after a linear head, else Identity

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.patch_embed(self.qact_input(x))
        in_q = self.patch_embed.qact
        for stage in cast("Iterable[SwinTransformerStage]", self.layers):
            if isinstance(stage.downsample, QPatchMerging):
                x = stage.downsample(x, in_q)
                in_q = stage.downsample.qact2
            for block in cast("Iterable[QSwinBlock]", stage.blocks):  # prepare_swin made them QSwinBlocks
                x = block(x, in_q)
                in_q = block.qact4
        return self.qact2(self.norm(x, in_q, self.qact2))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        head = self.head
        x = head.drop(self.qact3(head.global_pool(x)))
        return head.flatten(x) if pre_logits else self.act_out(head.flatten(head.fc(x)))


def prepare_swin(model: SwinTransformer, recipe: FqVitRecipe) -> None:
    """Rewrite a timm SwinTransformer in place with FQ-ViT's quantizers."""
    if model.head.global_pool.pool_type != "avg" or model.head.use_conv:
        raise UsageError("fqvit supports Swin with an average-pool linear head only")
    model.qact_input = recipe.qact() if _input_quant(model, recipe) else nn.Identity()
    _quantize_patch_embed(model.patch_embed, recipe)
    input_format = recipe.act  # the patch embedding's output quantizer is per tensor (FQ-ViT)
    for stage in model.layers:
        assert isinstance(stage, SwinTransformerStage)
        if not isinstance(stage.downsample, nn.Identity):
            _quantize_patch_merging(stage.downsample, recipe)
            input_format = recipe.residual
        for block in stage.blocks:
            _quantize_swin_block(block, recipe, input_format)
            input_format = recipe.residual
    model.norm = recipe.layernorm(model.norm)
    model.qact2 = recipe.qact()
    model.qact3 = recipe.qact()
    _quantize_head(model, ("head", "fc"), recipe)
    model.__class__ = FqVitSwinTransformer


# ---------------------------------------------------------------------------------------------------------------
# The method
# ---------------------------------------------------------------------------------------------------------------
@register_method
class FqVit(Method):
    """FQ-ViT post-training quantization of timm ViT/DeiT and Swin models."""

    name = "fqvit"
    families = ("vit", "swin")

    def recipe(self, cfg: QuantConfig) -> FqVitRecipe:
        return FqVitRecipe.from_config(cfg)

    def prepare(self, model: nn.Module, cfg: QuantConfig) -> nn.Module:
        self.check_supported(model)
        self.check_not_quantized(model)
        family = family_of(model)
        recipe = self.recipe(cfg)
        if family == "vit":
            prepare_vit(model, recipe)  # type: ignore[arg-type]
        else:
            prepare_swin(model, recipe)  # type: ignore[arg-type]
        return model

    def calibrate(self, model: nn.Module, calib: Sequence[Tensor], cfg: QuantConfig,
                  holdout: Sequence[Tensor] = ()) -> nn.Module:
        """FQ-ViT's protocol: statistics on every batch, search on the last (``holdout`` is not used)."""
        return calibrate_model(model, calib, seed=cfg.seed)


__all__ = ["FqVit", "FqVitRecipe", "FqVitSwinTransformer", "FqVitVisionTransformer", "QAttention", "QBlock",
           "QMlp", "QPatchEmbed", "QPatchMerging", "QSwinBlock", "QWindowAttention", "prepare_swin", "prepare_vit"]
