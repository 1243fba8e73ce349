"""Trio-ViT calibration passes over reconstruction units: statistics, activation ranges, AdaRound, step sizes.

A *unit* is a piece of the network run in order (stem conv, each residual block, head): BRECQ's block granularity.
Every pass streams the calibration set unit by unit, keeping two copies of the data: the float model's activations
(targets) and the quantized model's (inputs), so each unit is fitted to what the quantized model really feeds it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from quantizer.methods.trio_attention import Log2Divisor
from quantizer.methods.trio_quant import ActQuantizer, NonFiniteError, QLayer, quant_mode


@dataclass(frozen=True)
class Unit:
    """One reconstruction block: ``run`` maps its input to its output; ``module`` holds all its quantizers."""

    name: str
    module: nn.Module
    run: Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class ReconSettings:
    """AdaRound and step-size learning knobs (see docs/quantization/trio.md for the defaults)."""

    weight_iters: int
    act_iters: int
    batch: int
    lam: float
    warmup: float
    beta_start: float
    beta_end: float
    lr_weights: float
    lr_acts: float
    p_acts: float
    soft_roles: frozenset[str] = frozenset()  # T3 parity: layers left in soft rounding, without regularizer


class RangeCollector:
    """Exact min/max (overall and, for NCHW, per channel) plus a bounded random sample of the values seen."""

    def __init__(self, per_call: int, gen: torch.Generator, channels: bool = False) -> None:
        self.per_call, self.gen, self.channels = per_call, gen, channels
        self.lo: Tensor | None = None
        self.hi: Tensor | None = None
        self.parts: list[Tensor] = []

    def __call__(self, x: Tensor) -> None:
        x = x.detach().float()
        if self.channels:
            dims = [d for d in range(x.dim()) if d != 1]
            lo, hi = x.amin(dim=dims), x.amax(dim=dims)
        else:
            lo, hi = x.amin(), x.amax()
        self.lo = lo if self.lo is None else torch.minimum(self.lo, lo)
        self.hi = hi if self.hi is None else torch.maximum(self.hi, hi)
        flat = x.reshape(-1)
        if flat.numel() > self.per_call:
            flat = flat[torch.randint(flat.numel(), (self.per_call,), generator=self.gen)]
        self.parts.append(flat.clone())

    def sample(self) -> Tensor:
        return torch.cat(self.parts)


def collect(model: nn.Module, targets: Sequence[nn.Module], batches: Sequence[Tensor], per_call: int,
            gen: torch.Generator, *, channels: bool, run: Callable[[Tensor], Tensor] | None = None,
            arg: Callable[[nn.Module], int] = lambda _m: 0) -> list[RangeCollector]:
    """Forward ``batches`` (through ``run``, default the model) and record one input (``arg``) of each target."""
    collectors = [RangeCollector(per_call, gen, channels) for _ in targets]
    hooks = [t.register_forward_pre_hook(lambda _m, args, c=c, i=arg(t): c(args[i]))
             for t, c in zip(targets, collectors)]
    try:
        with torch.no_grad():
            for x in batches:
                check_finite((run or model)(x), "calibration forward")
    finally:
        for h in hooks:
            h.remove()
    return collectors


def check_finite(t: Tensor, where: str) -> Tensor:
    """Raise NonFiniteError (T10) instead of letting NaN/inf run on."""
    if not torch.isfinite(t).all():
        raise NonFiniteError(f"non-finite values in {where}; try more calibration data or higher bit widths")
    return t


def lp_loss(out: Tensor, target: Tensor, p: float) -> Tensor:
    """Σ over channels (dim 1) of |out − target|^p, averaged over every other dimension."""
    return (out - target).abs().pow(p).sum(1).mean()


def _run_all(unit: Unit, xs: list[Tensor]) -> list[Tensor]:
    with torch.no_grad():
        return [check_finite(unit.run(x), unit.name) for x in xs]


def _layers(unit: Unit) -> list[QLayer]:
    return [m for m in unit.module.modules() if isinstance(m, QLayer)]


def _act_quantizers(unit: Unit) -> list[ActQuantizer]:
    return [m for m in unit.module.modules() if isinstance(m, ActQuantizer)]


def _divisors(unit: Unit) -> list[Log2Divisor]:
    return [m for m in unit.module.modules() if isinstance(m, Log2Divisor)]


def init_act_ranges(model: nn.Module, units: Sequence[Unit], batches: list[Tensor], *, p: float,
                    sample_budget: int, gen: torch.Generator) -> None:
    """MSE-p range of every activation quantizer, and the window of every calibrated log2 divisor, unit by unit.

    A unit sees the quantized model's output of the previous units (as in BRECQ's initialization); inside the
    unit, activations stay float while its ranges are collected.
    """
    per_call = max(1, sample_budget // len(batches))
    xs = batches
    for unit in units:
        targets: list[ActQuantizer | Log2Divisor] = [
            *_act_quantizers(unit), *(d for d in _divisors(unit) if d.window == "calibrated")]
        if targets:
            with quant_mode(model, weights=True, acts=False):
                cols = collect(model, targets, xs, per_call, gen, channels=False, run=unit.run,
                               arg=lambda m: 1 if isinstance(m, Log2Divisor) else 0)
            for target, col in zip(targets, cols):
                assert col.lo is not None and col.hi is not None, f"{unit.name}: a quantizer saw no data"
                if isinstance(target, Log2Divisor):
                    target.set_window(col.hi)
                else:
                    target.set_range(col.sample(), col.lo, col.hi, p)
        with quant_mode(model, weights=True, acts=True):
            xs = _run_all(unit, xs)


def _beta(it: int, iters: int, s: ReconSettings) -> float | None:
    """AdaRound's annealed exponent; None during warm-up (no regularizer)."""
    warm = int(s.warmup * iters)
    if it < warm:
        return None
    rel = (it - warm) / max(1, iters - warm)
    return s.beta_end + (s.beta_start - s.beta_end) * max(0.0, 1.0 - rel)


def _minibatches(n: int, size: int, iters: int, gen: torch.Generator) -> list[Tensor]:
    return [torch.randint(n, (min(size, n),), generator=gen) for _ in range(iters)]


def _adaround_unit(model: nn.Module, unit: Unit, x: Tensor, y: Tensor, s: ReconSettings,
                   gen: torch.Generator) -> None:
    layers = _layers(unit)
    alphas = [layer.w_q.start_adaround(layer.weight) for layer in layers]
    regularized = [layer for layer in layers if layer.role not in s.soft_roles]
    opt = torch.optim.Adam(alphas, lr=s.lr_weights)
    with quant_mode(model, weights=True, acts=False), torch.enable_grad():
        for it, idx in enumerate(_minibatches(x.shape[0], s.batch, s.weight_iters, gen)):
            loss = lp_loss(unit.run(x[idx]), y[idx], 2.0)
            beta = _beta(it, s.weight_iters, s)
            if beta is not None and regularized:
                loss = loss + s.lam * sum(layer.w_q.regularizer(beta) for layer in regularized)
            check_finite(loss.detach(), f"{unit.name} weight reconstruction")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for layer in layers:
        layer.w_q.finish_adaround(keep_soft=layer.role in s.soft_roles)


def _learn_steps_unit(model: nn.Module, unit: Unit, x: Tensor, y: Tensor, s: ReconSettings,
                      gen: torch.Generator) -> None:
    """Learn every activation step size of the unit as Δ = Δ0·exp(θ) (relative updates, any tensor scale)."""
    aqs = _act_quantizers(unit)
    base = [aq.scale.detach().clone() for aq in aqs]
    thetas = [torch.zeros((), requires_grad=True) for _ in aqs]
    opt = torch.optim.Adam(thetas, lr=s.lr_acts)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s.act_iters, eta_min=0.0)
    try:
        with quant_mode(model, weights=True, acts=True), torch.enable_grad():
            for idx in _minibatches(x.shape[0], s.batch, s.act_iters, gen):
                for aq, b, theta in zip(aqs, base, thetas):
                    aq._buffers["scale"] = b * torch.exp(theta)  # a graph tensor in the buffer slot
                loss = check_finite(lp_loss(unit.run(x[idx]), y[idx], s.p_acts), f"{unit.name} step-size learning")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    finally:
        with torch.no_grad():
            for aq, b, theta in zip(aqs, base, thetas):
                aq._buffers["scale"] = (b * torch.exp(theta)).detach()


def reconstruct(model: nn.Module, units: Sequence[Unit], batches: list[Tensor], s: ReconSettings,
                gen: torch.Generator, *, phase: str) -> None:
    """One BRECQ pass: ``phase`` "weights" (AdaRound, activations float) or "acts" (learned step sizes)."""
    weights_only = phase == "weights"
    iters = s.weight_iters if weights_only else s.act_iters
    x_fp, x_q = batches, batches
    for unit in units:
        with quant_mode(model, weights=False, acts=False):
            y_fp = _run_all(unit, x_fp)
        if iters > 0:
            x_cat, y_cat = torch.cat(x_q), torch.cat(y_fp)
            if weights_only and _layers(unit):
                _adaround_unit(model, unit, x_cat, y_cat, s, gen)
            elif not weights_only and _act_quantizers(unit):
                _learn_steps_unit(model, unit, x_cat, y_cat, s, gen)
        with quant_mode(model, weights=True, acts=not weights_only):
            x_q = _run_all(unit, x_q)
        x_fp = y_fp


def quantile_of(sample: Tensor, q: float) -> Tensor:
    """``torch.quantile`` on a 1-D sample (subsampled deterministically if beyond torch's size limit)."""
    limit = 1 << 24
    if sample.numel() > limit:
        sample = sample[:: math.ceil(sample.numel() / limit)]
    return torch.quantile(sample, q)
