"""P2-ViT's coarse-to-fine mixed-precision search over 4/8-bit weights (research notes 2.11), with its defects
fixed: distances indexed by bit type (P1), no fitness recorded for unevaluated children (P2), Hessian traces
computed for the model at hand (P13), fitness on hold-out batches only (P14), and the coarse stage's constraints
(qkv/proj and fc1/fc2 tied, first/last layers fixed) kept by every stage (P15).

* **Cost**: MACs of each weight layer for one image, measured by hooks (exact for any model and resolution).
  Budget: Σ MAC·bits ≤ ``mixed_budget``·Σ MAC (4.4 = 1.1 × 4, P2-ViT's).
* **Sensitivity**: per layer, the Hutchinson estimate of the Hessian trace of the float model's loss (cross
  entropy against the float model's own top-1, as no labels are needed), min-max normalised across layers.
* **Coarse**: feasible random configurations, ranked by Ω = Σ trace_i·MSE(W_i, Q_b(W_i)).
* **Fine**: evolutionary search (mutation keeps each gene with probability 0.5, crossover takes each gene from
  either parent), fitness = minus the mean KL divergence of the quantized model's predictions from the float
  model's on the hold-out images (label-free, smooth; P2-ViT used ImageNet-val accuracy).

Random rejection sampling from uniform choices almost never meets a 4.4-bit budget on a 12-block model, so the
coarse stage draws feasible configurations directly: groups in random order, each raised to 8 bits with
probability 1/2 while the budget allows. Children are drawn until ``mixed_children`` feasible, unseen ones exist
or 50 times that many draws have been made.
"""
from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quantizer.calibrate import set_mode
from quantizer.core.modules import QConv2d, _QWeighted
from quantizer.methods.p2vit import P2VitOptions, embed_head_names, select_bits, weight_format_name, weight_layers
from quantizer.methods.p2vit_smooth import QSmoothLinear

CHOICES: tuple[int, ...] = (4, 8)
Genome = tuple[int, ...]  # one bit width per group


@dataclass(frozen=True)
class Group:
    """Layers that share one bit width (a gene): qkv+proj, fc1+fc2, or a single layer."""

    layers: tuple[str, ...]
    macs: int
    fixed: int | None = None  # a width no stage may change (the patch embedding at 8 bits)


def layer_macs(model: nn.Module, image: Tensor) -> dict[str, int]:
    """MACs of each weight layer of ``model`` for one image (forward hooks, float mode)."""
    counts: dict[str, int] = {}
    hooks = []
    for name, layer in weight_layers(model):
        def hook(mod: _QWeighted, args: tuple[Tensor, ...], out: Tensor, name: str = name) -> None:
            w = mod.weight
            per_output = w[0].numel() if isinstance(mod, QConv2d) else w.shape[1]
            counts[name] = counts.get(name, 0) + out.numel() * per_output
        hooks.append(layer.register_forward_hook(hook))
    try:
        set_mode(model, "float")
        with torch.no_grad():
            model(image[:1])
    finally:
        for h in hooks:
            h.remove()
    return counts


def make_groups(model: nn.Module, macs: Mapping[str, int], fixed_embed_bits: int | None) -> list[Group]:
    """Genes: per attention, qkv and proj tied; per MLP, fc1 and fc2 tied; every other layer alone."""
    names = [name for name, _ in weight_layers(model)]
    tied: dict[str, str] = {}
    for name in names:
        for first, second in ((".qkv", ".proj"), (".fc1", ".fc2")):
            if name.endswith(first) and name[: -len(first)] + second in macs:
                tied[name[: -len(first)] + second] = name
    embed = set(embed_head_names(model)[:1]) if fixed_embed_bits else set()
    groups: list[Group] = []
    for name in names:
        if name in tied:
            continue
        members = (name,) + tuple(k for k, v in tied.items() if v == name)
        groups.append(Group(members, sum(macs[m] for m in members),
                            fixed_embed_bits if name in embed else None))
    return groups


def hessian_traces(model: nn.Module, images: Tensor, samples: int, seed: int) -> dict[str, float]:
    """Hutchinson estimates E[vᵀHv] (Rademacher v) of each weight layer's Hessian block, on the float model, with
    cross entropy against the float model's own predictions; min-max normalised to [0, 1] across layers."""
    layers = weight_layers(model)
    params = [layer.weight for _, layer in layers]
    flags = [p.requires_grad for p in params]
    gen = torch.Generator().manual_seed(seed)
    set_mode(model, "float")
    traces = torch.zeros(len(params), dtype=torch.float64)
    try:
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            logits = model(images)
            loss = F.cross_entropy(logits, logits.detach().argmax(dim=-1))
            grads = torch.autograd.grad(loss, params, create_graph=True)
            for i in range(samples):
                vs = [torch.randint(0, 2, p.shape, generator=gen).to(p.dtype) * 2 - 1 for p in params]
                hvs = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=i < samples - 1)
                traces += torch.tensor([float((hv * v).sum()) for hv, v in zip(hvs, vs)], dtype=torch.float64)
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
    traces = (traces / samples).abs()
    lo, hi = traces.min(), traces.max()
    normalised = (traces - lo) / (hi - lo) if hi > lo else torch.ones_like(traces)
    return {name: float(t) for (name, _), t in zip(layers, normalised)}


@torch.no_grad()
def weight_distances(model: nn.Module) -> dict[str, dict[int, float]]:
    """MSE(W, Q_b(W)) per layer and bit width b in CHOICES, in the original weight space (a smoothed layer's
    quantized W·t is divided by t again), indexed by bit width (P1)."""
    out: dict[str, dict[int, float]] = {}
    for name, layer in weight_layers(model):
        w = layer.weight
        out[name] = {}
        for b in CHOICES:
            quantizer = layer.weight_quantizers[weight_format_name(b)]
            if isinstance(layer, QSmoothLinear):
                t = layer.smoothing(weight_format_name(b))
                w_hat = quantizer(w * t) / t
            else:
                w_hat = quantizer(w)
            out[name][b] = float((w_hat - w).pow(2).mean())
    return out


class MixedSearch:
    """The search on one calibrated P2-ViT model; :meth:`run` leaves the best configuration selected."""

    def __init__(self, model: nn.Module, opts: P2VitOptions, seed: int = 0) -> None:
        self.model = model
        self.opts = opts
        self.rng = random.Random(seed)
        self.seed = seed
        self.groups: list[Group] = []
        self.fitness: dict[Genome, float] = {}  # evaluated configurations only (P2)

    # configurations --------------------------------------------------------------------------------------------
    def mean_bits(self, genome: Genome) -> float:
        total = sum(g.macs for g in self.groups)
        return sum(g.macs * b for g, b in zip(self.groups, genome)) / total

    def feasible(self, genome: Genome) -> bool:
        fixed_ok = all(g.fixed is None or b == g.fixed for g, b in zip(self.groups, genome))
        return fixed_ok and self.mean_bits(genome) <= self.opts.mixed_budget + 1e-12

    def baseline(self) -> Genome:
        """All free groups at 4 bits: the cheapest configuration."""
        return tuple(g.fixed or 4 for g in self.groups)

    def sample(self) -> Genome:
        genome = list(self.baseline())
        order = [i for i, g in enumerate(self.groups) if g.fixed is None]
        self.rng.shuffle(order)
        for i in order:
            if self.rng.random() < 0.5:
                genome[i] = 8
                if not self.feasible(tuple(genome)):
                    genome[i] = 4
        return tuple(genome)

    def bits_of(self, genome: Genome) -> dict[str, int]:
        return {name: b for g, b in zip(self.groups, genome) for name in g.layers}

    # scoring ---------------------------------------------------------------------------------------------------
    def omega(self, genome: Genome, traces: Mapping[str, float], dist: Mapping[str, Mapping[int, float]]) -> float:
        return sum(traces[name] * dist[name][b] for name, b in self.bits_of(genome).items())

    @torch.no_grad()
    def evaluate(self, genome: Genome, holdout: Sequence[Tensor], reference: Sequence[Tensor]) -> float:
        """Minus the mean KL(float ‖ quantized) over the hold-out images; cached per configuration."""
        if genome not in self.fitness:
            select_bits(self.model, self.bits_of(genome))
            set_mode(self.model, "quant")
            kl, n = 0.0, 0
            for batch, ref in zip(holdout, reference):
                logp = F.log_softmax(self.model(batch).double(), dim=-1)
                kl += float(F.kl_div(logp, ref, log_target=True, reduction="sum"))
                n += batch.shape[0]
            self.fitness[genome] = -kl / n
        return self.fitness[genome]

    # stages ----------------------------------------------------------------------------------------------------
    def children(self, population: list[Genome]) -> list[Genome]:
        """Mutation and crossover children that are feasible and unseen (at most ``mixed_children`` each)."""
        free = [i for i, g in enumerate(self.groups) if g.fixed is None]
        out: list[Genome] = []
        for kind in ("mutation", "crossover"):
            made, draws = 0, 0
            while made < self.opts.mixed_children and draws < 50 * max(self.opts.mixed_children, 1):
                draws += 1
                child = list(self.rng.choice(population))
                if kind == "mutation":
                    for i in free:
                        if self.rng.random() >= 0.5:
                            child[i] = self.rng.choice(CHOICES)
                elif len(population) > 1:
                    other = self.rng.choice([p for p in population if p != tuple(child)] or population)
                    for i in free:
                        if self.rng.random() >= 0.5:
                            child[i] = other[i]
                genome = tuple(child)
                if self.feasible(genome) and genome not in self.fitness and genome not in out:
                    out.append(genome)
                    made += 1
        return out

    def run(self, calib: Sequence[Tensor], holdout: Sequence[Tensor]) -> dict[str, int]:
        """Coarse then fine stage; selects and returns the best configuration (layer path -> bits)."""
        opts = self.opts
        macs = layer_macs(self.model, calib[0])
        self.groups = make_groups(self.model, macs, 8 if opts.embed_head_bits else None)
        _progress("mixed precision: Hessian traces")
        images = torch.cat(list(calib))[: opts.hessian_images]
        traces = hessian_traces(self.model, images, opts.hessian_samples, self.seed)
        dist = weight_distances(self.model)
        set_mode(self.model, "float")
        with torch.no_grad():
            reference = [F.log_softmax(self.model(b).double(), dim=-1) for b in holdout]

        coarse: set[Genome] = {self.baseline()}
        draws = 0
        while len(coarse) < opts.mixed_coarse and draws < 20 * opts.mixed_coarse:
            coarse.add(self.sample())
            draws += 1
        ranked = sorted(coarse, key=lambda g: (self.omega(g, traces, dist), g))
        population = ranked[: opts.mixed_population]
        _progress(f"mixed precision: {len(coarse)} feasible configurations, evaluating {len(population)}")
        for genome in population:
            self.evaluate(genome, holdout, reference)
        for it in range(opts.mixed_iters):
            for child in self.children(population):
                fit = self.evaluate(child, holdout, reference)
                worst = min(population, key=lambda g: self.fitness[g])
                if fit > self.fitness[worst]:
                    population.append(child)
            population = sorted(population, key=lambda g: -self.fitness[g])[: opts.mixed_population]
            _progress(f"mixed precision: iteration {it + 1}/{opts.mixed_iters}, best hold-out KL "
                      f"{-self.fitness[population[0]]:.4g}, {len(self.fitness)} evaluated")
        best = max(population, key=lambda g: (self.fitness[g], -self.mean_bits(g)))
        bits = self.bits_of(best)
        select_bits(self.model, bits)
        set_mode(self.model, "quant")
        return bits


def _progress(message: str) -> None:
    """Search progress on stderr, for terminals only (tests and pipes stay quiet)."""
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)


def mean_weight_bits(model: nn.Module, image: Tensor) -> float:
    """The MAC-weighted mean weight bit width of ``model``'s active formats (what the budget bounds)."""
    macs = layer_macs(model, image)
    layers = dict(weight_layers(model))
    total = sum(macs.values())
    return sum(m * layers[n].weight_quantizer.bit_type.bits for n, m in macs.items()) / total


__all__ = ["CHOICES", "Group", "MixedSearch", "hessian_traces", "layer_macs", "make_groups", "mean_weight_bits",
           "weight_distances"]
