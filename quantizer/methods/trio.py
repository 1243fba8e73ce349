"""Trio-ViT post-training quantization for MIT EfficientViT-B (timm ``efficientvit_b*``).

Recipe (docs/quantization/trio.md has the full description, defaults and the fixed defects):
``prepare`` folds BatchNorm into the convs and rewrites the model into fake-quantized modules (QConv2d, QLinear,
QLiteMLA with a log2 divisor, QResidual), allocating every scale, migration factor and shift centre as a buffer.
``calibrate`` is an explicit sequence: (1) migration factors and shift centres from float activations, (2) MSE-p
weight ranges, (3) optional AdaRound block reconstruction, (4) MSE-p activation ranges, (5) optional step-size
learning, (6) hard rounding of every layer (weights written back on the integer grid).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import torch
from torch import Tensor, nn

from quantizer.errors import UsageError
from quantizer.core.bits import check_bits
from quantizer.core.spec import QuantSpec
from quantizer.methods.base import Method, QuantConfig, register_method
from quantizer.methods.trio_attention import DIVISOR_RULES, DIVISOR_WINDOWS, QLiteMLA
from quantizer.methods.trio_quant import (
    ActQuantizer, NonFiniteError, QConv2d, QLayer, QLinear, WeightQuantizer, fold_bn, quant_mode,
)
from quantizer.methods.trio_recon import ReconSettings, Unit, collect, init_act_ranges, quantile_of, reconstruct

if TYPE_CHECKING:
    from timm.models.efficientvit_mit import ClassifierHead, EfficientVit, LiteMLA, ResidualBlock

__all__ = ["NonFiniteError", "QResidual", "TrioOptions", "TrioVit", "build_units"]

#: Migration factor limits (reference "version 1") and the PoT variant's exponent range.
MIG_MIN, MIG_MAX, MIG_QUANTILE = 0.1, 64.0, 0.99
MIG_POT_EXP = (0, 5)
#: Layers whose weights the reference code left in soft rounding (defect T3), reproduced by the parity option.
T3_ROLES = frozenset({"mbconv_dw", "mbconv_pw"})


@dataclass(frozen=True)
class TrioOptions:
    """``QuantConfig.options`` of the ``trio`` method, validated. Keys are the field names, except ``lambda``."""

    asymmetric: bool = False  # T7 parity: asymmetric per-channel weights (the reference code's forced mode)
    p: float = 2.4  # norm of the MSE-p range search and of the step-size reconstruction loss
    recon_iters: int = 0  # AdaRound iterations per unit (reference: 20000); 0 = nearest rounding, no recon
    recon_act_iters: int = -1  # step-size iterations per unit (reference: 5000); -1 = same as recon_iters
    recon_batch: int = 32
    lam: float = 0.5  # AdaRound regularizer weight λ (README value; the reference CLI default is 0.01, T12)
    warmup: float = 0.2
    beta_start: float = 20.0
    beta_end: float = 2.0
    lr_weights: float = 1e-3
    lr_acts: float = 4e-4
    divisor_rounding: str = "log"  # T8: "log" (code, threshold √2·2^i) or "linear" (paper, 1.5·2^i)
    divisor_window: str = "calibrated"  # 16-exponent window of the 4-bit code: "calibrated" or "fixed" [−6, 9]
    head_stem_8bit: bool = True  # T6: first conv and last linear (and their inputs) at 8 bits
    migration: bool = True  # channel-wise migration of the MBConv DW input
    migration_pot: bool = False  # power-of-two migration factors 2^clamp(round(log2 d), 0, 5)
    shifting: bool = True  # filter-wise shifting of the MBConv PW input
    parity_soft_rounding: bool = False  # T3 parity: MBConv DW/PW keep soft AdaRound rounding, no regularizer
    act_sample: int = 1 << 16  # values per activation quantizer kept for the MSE-p search (min/max are exact)

    _OPTION_KEY: ClassVar[dict[str, str]] = {"lam": "lambda"}  # field -> option key where they differ

    @classmethod
    def from_config(cls, cfg: QuantConfig) -> "TrioOptions":
        by_key = {cls._OPTION_KEY.get(f.name, f.name): f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in dict(cfg.options).items():
            if key not in by_key:
                raise UsageError(f"unknown trio option {key!r} (known: {', '.join(sorted(by_key))})")
            values[by_key[key].name] = _check_option(key, value, by_key[key].default)
        opts = cls(**values)
        if opts.divisor_window not in DIVISOR_WINDOWS:
            raise UsageError(f"trio option divisor_window must be one of {', '.join(DIVISOR_WINDOWS)}, "
                             f"got {opts.divisor_window!r}")
        if opts.divisor_rounding not in DIVISOR_RULES:
            raise UsageError(f"trio option divisor_rounding must be one of {', '.join(DIVISOR_RULES)}, "
                             f"got {opts.divisor_rounding!r}")
        for key in ("recon_iters", "act_sample"):
            if getattr(opts, key) < (1 if key == "act_sample" else 0):
                raise UsageError(f"trio option {key} must be {'positive' if key == 'act_sample' else '>= 0'}")
        if opts.recon_act_iters < -1 or opts.recon_batch < 1:
            raise UsageError("trio options: recon_act_iters must be >= -1 and recon_batch >= 1")
        if not 0.0 <= opts.warmup < 1.0 or opts.p <= 0 or opts.lam < 0 or opts.lr_weights <= 0 or opts.lr_acts <= 0:
            raise UsageError("trio options: need 0 <= warmup < 1, p > 0, lambda >= 0 and positive learning rates")
        return opts

    @property
    def act_iters(self) -> int:
        return self.recon_iters if self.recon_act_iters == -1 else self.recon_act_iters


def _check_option(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UsageError(f"trio option {key} must be true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"trio option {key} must be an integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"trio option {key} must be a number, got {value!r}")
        value = float(value)
    elif isinstance(default, str) and not isinstance(value, str):
        raise UsageError(f"trio option {key} must be a string, got {value!r}")
    return value


class QResidual(nn.Module):
    """timm's ResidualBlock with the block's output quantizer after the residual sum."""

    def __init__(self, main: nn.Module, shortcut: nn.Module | None, out_q: ActQuantizer) -> None:
        super().__init__()
        self.main = main
        self.shortcut = shortcut
        self.out_q = out_q
        self.quant_spec = QuantSpec(kind="add" if shortcut is not None else "act", act_bits=out_q.bit_type.bits,
                                    out_bits=out_q.bit_type.bits, weight_bits=None,
                                    extra={"residual": shortcut is not None})

    def forward(self, x: Tensor) -> Tensor:
        res = self.main(x)
        if self.shortcut is not None:
            res = res + self.shortcut(x)
        return self.out_q(res)


def _fresh_act(act: nn.Module) -> nn.Module | None:
    """A non-inplace copy of a ConvNormAct nonlinearity (in-place ops break reconstruction's autograd)."""
    for kind in (nn.Hardswish, nn.ReLU6, nn.ReLU):
        if type(act) is kind:
            return kind()
    if isinstance(act, nn.Identity):
        return None
    raise UsageError(f"trio: unsupported activation {type(act).__name__} in an EfficientViT conv")


def _plain_conv(conv: nn.Module) -> nn.Conv2d:
    if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros":
        raise UsageError(f"trio: unsupported conv type {type(conv).__name__} (expected a zero-padded nn.Conv2d)")
    return conv


class _Builder:
    """Rewrites one EfficientViT into quantized modules (prepare's worker; holds the bit widths and options)."""

    def __init__(self, cfg: QuantConfig, opts: TrioOptions) -> None:
        self.w_bits = check_bits(cfg.w_bits, "weight bits")
        self.a_bits = check_bits(cfg.a_bits, "activation bits")
        self.opts = opts
        self.symmetric = not opts.asymmetric

    def act_q(self, role: str, bits: int | None = None) -> ActQuantizer:
        return ActQuantizer(self.a_bits if bits is None else bits, role)

    def conv(self, cna: nn.Module, role: str, *, in_bits: int, in_q: ActQuantizer | None = None,
             out_q: ActQuantizer | None = None, out_bits: int | None = None, w_bits: int | None = None,
             migrate: bool = False, shift: bool = False) -> QConv2d:
        """A QConv2d from a timm ConvNormAct (BN folded) or a bare nn.Conv2d."""
        if isinstance(cna, nn.Conv2d):
            conv, norm, act = _plain_conv(cna), None, None
        else:
            from timm.models.efficientvit_mit import ConvNormAct

            assert isinstance(cna, ConvNormAct)  # EfficientViT's convs are ConvNormActs or bare Conv2ds
            conv, norm, act = _plain_conv(cna.conv), cna.norm, _fresh_act(cna.act)
        weight, bias = fold_bn(conv, norm)
        wb = self.w_bits if w_bits is None else w_bits
        layer = QConv2d(conv, weight, bias, w_bits=wb, symmetric=self.symmetric, in_q=in_q, out_q=out_q, act=act,
                        migrate=migrate, shift=shift, role=role)
        extra: dict[str, Any] = {"role": role, "groups": conv.groups,
                                 "bn_folded": norm is not None and not isinstance(norm, nn.Identity),
                                 "act_fn": type(act).__name__.lower() if act is not None else None}
        if migrate:
            extra["migration"] = "channel"
            extra["migration_scale"] = "pot" if self.opts.migration_pot else "float"
        if shift:
            extra["shift"] = "filter"
        layer.quant_spec = self._spec("conv2d", layer, wb, in_bits, out_bits, extra)
        return layer

    def linear(self, lin: nn.Module, role: str, *, in_q: ActQuantizer, out_q: ActQuantizer | None,
               w_bits: int | None = None) -> QLinear:
        if type(lin) is not nn.Linear:
            raise UsageError(f"trio: unsupported linear type {type(lin).__name__}")
        wb = self.w_bits if w_bits is None else w_bits
        layer = QLinear(lin.weight, lin.bias, w_bits=wb, symmetric=self.symmetric, in_q=in_q, out_q=out_q,
                        act=None, role=role)
        layer.quant_spec = self._spec("linear", layer, wb, in_q.bit_type.bits,
                                      out_q.bit_type.bits if out_q is not None else None, {"role": role})
        return layer

    def _spec(self, kind: str, layer: QLayer, w_bits: int, in_bits: int, out_bits: int | None,
              extra: dict[str, Any]) -> QuantSpec:
        """Input and output bits say where each tensor is quantized: here ("self") or by a neighbour."""
        extra["input_quant"] = "self" if layer.in_q is not None else "producer"
        if layer.out_q is not None:
            extra["output_quant"] = "self"
        else:
            extra["output_quant"] = "consumer" if out_bits is not None else "none"
        return QuantSpec(kind=kind, act_bits=in_bits, out_bits=32 if out_bits is None else out_bits,
                         weight_bits=w_bits, weight_granularity="channel", act_granularity="tensor",
                         scale_kind="float", symmetric_weights=self.symmetric, symmetric_acts=False,
                         extra=extra)

    # --- blocks --------------------------------------------------------------------------------------------
    def residual(self, block: ResidualBlock) -> QResidual:
        from timm.models.efficientvit_mit import DSConv, LiteMLA, MBConv

        if not isinstance(block.pre_norm, nn.Identity) or not isinstance(block.shortcut, (nn.Identity, type(None))):
            raise UsageError("trio: only residual blocks with identity (or no) shortcut and no pre-norm are supported")
        main, a = block.main, self.a_bits
        # Module surgery by setattr: timm declares these attributes as ConvNormAct, we put QConv2ds there.
        if isinstance(main, DSConv):
            setattr(main, "depth_conv", self.conv(main.depth_conv, "dsconv_dw", in_bits=a,
                                                  out_q=self.act_q("output"), out_bits=a))
            setattr(main, "point_conv", self.conv(main.point_conv, "dsconv_pw", in_bits=a,
                                                  out_q=self.act_q("output"), out_bits=a))
        elif isinstance(main, MBConv):
            setattr(main, "inverted_conv", self.conv(main.inverted_conv, "mbconv_expand", in_bits=a, out_bits=a))
            setattr(main, "depth_conv", self.conv(main.depth_conv, "mbconv_dw", in_bits=a, out_bits=a,
                                                  in_q=self.act_q("dw_input"), migrate=self.opts.migration))
            setattr(main, "point_conv", self.conv(main.point_conv, "mbconv_pw", in_bits=a, out_bits=a,
                                                  in_q=self.act_q("pw_input"), shift=self.opts.shifting))
        elif isinstance(main, LiteMLA):
            main = self.attention(main)
        else:
            raise UsageError(f"trio: unsupported EfficientViT block {type(main).__name__}")
        return QResidual(main, block.shortcut, self.act_q("residual" if block.shortcut is not None else "output"))

    def attention(self, mla: LiteMLA) -> QLiteMLA:
        a = self.a_bits
        qkv = self.conv(mla.qkv, "attn_qkv", in_bits=a, out_q=self.act_q("output"), out_bits=a)
        aggreg = nn.ModuleList()
        for seq in mla.aggreg:
            assert isinstance(seq, nn.Sequential)  # timm builds each aggregation as a Sequential
            if len(seq) != 2:
                raise UsageError("trio: unexpected LiteMLA aggregation (expected a DW conv and a grouped 1x1 conv)")
            aggreg.append(nn.Sequential(
                self.conv(seq[0], "attn_aggreg_dw", in_bits=a, out_q=self.act_q("output"), out_bits=a),
                self.conv(seq[1], "attn_aggreg_pw", in_bits=a, out_q=self.act_q("output"), out_bits=a)))
        proj = self.conv(mla.proj, "attn_proj", in_bits=a, out_q=self.act_q("output"), out_bits=a)
        return QLiteMLA(mla, qkv, aggreg, proj, a_bits=a, rule=self.opts.divisor_rounding,  # type: ignore[arg-type]
                        window=self.opts.divisor_window)

    def model(self, model: "EfficientVit") -> None:
        from timm.models.efficientvit_mit import EfficientVitBlock, EfficientVitStage, ResidualBlock

        edge = 8 if self.opts.head_stem_8bit else None
        a = self.a_bits
        stem = model.stem
        stem.in_conv = self.conv(stem.get_submodule("in_conv"), "stem", in_bits=edge or a,
                                 in_q=self.act_q("input", edge), out_q=self.act_q("output"), out_bits=a, w_bits=edge)
        for name, child in list(stem.named_children()):
            if name != "in_conv":
                assert isinstance(child, ResidualBlock)  # the stem is in_conv then residual blocks
                setattr(stem, name, self.residual(child))
        for stage in model.stages:
            assert isinstance(stage, EfficientVitStage)
            for j, blk in enumerate(stage.blocks):
                if isinstance(blk, EfficientVitBlock):
                    setattr(blk, "context_module", self.residual(blk.context_module))  # surgery, as in residual
                    setattr(blk, "local_module", self.residual(blk.local_module))
                elif isinstance(blk, ResidualBlock):
                    stage.blocks[j] = self.residual(blk)
                else:
                    raise UsageError(f"trio: unsupported stage block {type(blk).__name__}")
        self.head(model.head)

    def head(self, head: ClassifierHead) -> None:
        cls = head.classifier
        kinds = [type(m) for m in cls]
        if kinds[:2] != [nn.Linear, nn.LayerNorm] or kinds[-1] is not nn.Linear:
            raise UsageError("trio: unsupported classifier head (expected Linear, LayerNorm, ..., Linear)")
        edge = 8 if self.opts.head_stem_8bit else None
        setattr(head, "in_conv", self.conv(head.in_conv, "head_conv", in_bits=self.a_bits,
                                           out_q=self.act_q("output"), out_bits=self.a_bits))  # surgery
        cls[0] = self.linear(cls[0], "head_fc", in_q=self.act_q("pooled"), out_q=self.act_q("output"))
        # quant_spec: a plain attribute added to timm's float LayerNorm, which nn.Module's typing does not know
        cls[1].quant_spec = QuantSpec(kind="layernorm", act_bits=self.a_bits,  # type: ignore[assignment]
                                      out_bits=32, weight_bits=None, extra={"layernorm": "float"})
        last = len(cls) - 1
        cls[last] = self.linear(cls[last], "classifier", in_q=self.act_q("classifier_input", edge), out_q=None,
                                w_bits=edge)


def build_units(model: nn.Module) -> list[Unit]:
    """The reconstruction units of a prepared EfficientViT, in forward order (their chain equals the model)."""
    from timm.models.efficientvit_mit import EfficientVit, EfficientVitBlock, EfficientVitStage

    assert isinstance(model, EfficientVit)  # trio prepares EfficientViTs only
    units = [Unit(f"stem.{name}", child, child) for name, child in model.stem.named_children()]
    for i, stage in enumerate(model.stages):
        assert isinstance(stage, EfficientVitStage)
        for j, blk in enumerate(stage.blocks):
            prefix = f"stages.{i}.blocks.{j}"
            if isinstance(blk, EfficientVitBlock):
                units.append(Unit(f"{prefix}.context_module", blk.context_module, blk.context_module))
                units.append(Unit(f"{prefix}.local_module", blk.local_module, blk.local_module))
            else:
                units.append(Unit(prefix, blk, blk))
    head = model.head
    units.append(Unit("head.in_conv", head.in_conv, head.in_conv))
    units.append(Unit("head.classifier", head.classifier, lambda x: head.classifier(head.global_pool(x))))
    return units


def _check_calib(calib: Sequence[Tensor]) -> list[Tensor]:
    batches = list(calib)
    if not batches:
        raise UsageError("trio calibration needs at least one batch of images")
    for b in batches:
        if not isinstance(b, Tensor) or b.dim() != 4 or not b.is_floating_point():
            raise UsageError("trio calibration batches must be float tensors of shape (batch, channels, H, W)")
    return [b.detach().float() for b in batches]


def _layers(model: nn.Module) -> list[QLayer]:
    return [m for m in model.modules() if isinstance(m, QLayer)]


@register_method
class TrioVit(Method):
    """Trio-ViT: BN folding, DW-input migration, PW-input shifting, log2 divisors, MSE-p ranges, AdaRound."""

    name = "trio"
    families = ("efficientvit",)

    def prepare(self, model: nn.Module, cfg: QuantConfig) -> nn.Module:
        """Rewrite ``model`` in place into its fake-quantized form; every scale is a buffer (uncalibrated)."""
        if cfg.method != self.name:
            raise UsageError(f"trio got a config for method {cfg.method!r}")
        if cfg.ptf or cfg.lis or cfg.mixed:
            raise UsageError("trio does not use ptf, lis or mixed precision (FQ-ViT/P2-ViT features)")
        self.check_supported(model)
        if _layers(model):
            raise UsageError("this model is already prepared for quantization")
        opts = TrioOptions.from_config(cfg)
        model.eval()
        _Builder(cfg, opts).model(model)  # type: ignore[arg-type]
        left = [n for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
        if left:
            raise UsageError(f"trio: layers left unquantized: {', '.join(left[:3])}")
        return model

    def calibrate(self, model: nn.Module, calib: Sequence[Tensor], cfg: QuantConfig,
                  holdout: Sequence[Tensor] = ()) -> nn.Module:
        """Fill every buffer from ``calib`` (a list of image batches); ``holdout`` is not used by this method."""
        opts = TrioOptions.from_config(cfg)
        layers = _layers(model)
        if not layers:
            raise UsageError("calibrate needs a model prepared by the trio method")
        if any(bool(layer.w_q.baked) for layer in layers):
            raise UsageError("this model is already calibrated; prepare a fresh model to calibrate again")
        batches = _check_calib(calib)
        gen = torch.Generator().manual_seed(cfg.seed)
        settings = ReconSettings(
            weight_iters=opts.recon_iters, act_iters=opts.act_iters, batch=opts.recon_batch, lam=opts.lam,
            warmup=opts.warmup, beta_start=opts.beta_start, beta_end=opts.beta_end, lr_weights=opts.lr_weights,
            lr_acts=opts.lr_acts, p_acts=opts.p,
            soft_roles=T3_ROLES if opts.parity_soft_rounding else frozenset())
        model.eval()
        grads = [(p, p.requires_grad) for p in model.parameters()]
        for p, _ in grads:
            p.requires_grad_(False)
        try:
            units = build_units(model)
            with torch.no_grad():
                _calibrate_transforms(model, batches, opts, gen)
                for layer in layers:
                    layer.w_q.set_range(layer.weight, opts.p)
            if settings.weight_iters > 0:
                reconstruct(model, units, batches, settings, gen, phase="weights")
            init_act_ranges(model, units, batches, p=opts.p, sample_budget=opts.act_sample, gen=gen)
            if settings.act_iters > 0:
                reconstruct(model, units, batches, settings, gen, phase="acts")
            _hard_round(layers, settings.soft_roles)
        finally:
            for p, flag in grads:
                p.requires_grad_(flag)
        return model


def _calibrate_transforms(model: nn.Module, batches: list[Tensor], opts: TrioOptions, gen: torch.Generator) -> None:
    """T9: migration factors and shift centres from the float model's activations on the calibration set.

    Migration (DW input x, per channel c): cmax_c = max x[:, c] (signed); ref = max(q_0.99(x), mean_c cmax_c);
    d_c = clamp(cmax_c/ref, 0.1, 64), folded into the weights before weight ranges are searched.
    Shift (PW input): centre_c = (max_c + min_c)/2.
    """
    convs = [m for m in model.modules() if isinstance(m, QConv2d) and (m.mig is not None or m.shift is not None)]
    if not convs:
        return
    per_call = max(1, opts.act_sample // len(batches))
    with quant_mode(model, weights=False, acts=False):
        cols = collect(model, convs, batches, per_call, gen, channels=True)
    for conv, col in zip(convs, cols):
        assert col.lo is not None and col.hi is not None
        if conv.shift is not None:
            conv.shift.copy_((col.hi + col.lo) / 2)
        if conv.mig is not None:
            ref = torch.maximum(quantile_of(col.sample(), MIG_QUANTILE), col.hi.mean())
            d = (col.hi / ref).clamp(MIG_MIN, MIG_MAX) if ref > 0 else torch.ones_like(col.hi)
            if opts.migration_pot:
                d = torch.exp2(torch.round(torch.log2(d)).clamp(*MIG_POT_EXP))
            conv.apply_migration(d)


def _hard_round(layers: list[QLayer], soft_roles: frozenset[str]) -> None:
    """T3: every layer ends with its weights on the integer grid (nearest or AdaRound's hard decision).

    With the parity option, MBConv DW/PW layers keep AdaRound's soft value (started here if no reconstruction
    ran, i.e. h(V) = the fractional part), which is off the grid, as in the reference code.
    """
    for layer in layers:
        wq: WeightQuantizer = layer.w_q
        if layer.role in soft_roles and wq.alpha is None:
            wq.start_adaround(layer.weight)
        layer.bake()
