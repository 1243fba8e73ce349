"""Accuracy (with labels) and fidelity to the float model (without labels), batched on CPU under no_grad.

Fidelity compares the quantized model's logits with the float model's on the same images:

* top-1 agreement: the fraction of images on which both models predict the same class;
* cosine: the mean over images of the cosine similarity of the two logit vectors;
* SQNR: 10 * log10(sum ||float||^2 / sum ||float - quant||^2) in dB over all logits of all images (inf when the two
  are identical).

These are what synthetic data can measure; they say how closely the quantized model follows the float one, not how
accurate either is.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["Accuracy", "AccuracyMeter", "Evaluation", "Fidelity", "FidelityMeter", "accuracy", "evaluate",
           "fidelity", "sqnr_db"]


@dataclass(frozen=True)
class Accuracy:
    """Top-1 and top-5 accuracy as fractions in [0, 1]."""

    images: int
    top1: float
    top5: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Fidelity:
    """How closely test logits follow reference logits (see the module docstring)."""

    images: int
    top1_agreement: float
    cosine: float
    sqnr_db: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AccuracyMeter:
    """Accumulates top-1/top-5 hits over batches."""

    def __init__(self) -> None:
        self.images = self.top1 = self.top5 = 0

    def update(self, logits: "torch.Tensor", labels: "torch.Tensor") -> None:
        k = min(5, logits.shape[-1])
        top = logits.topk(k, dim=-1).indices
        hits = top == labels.reshape(-1, 1)
        self.images += int(labels.numel())
        self.top1 += int(hits[:, 0].sum())
        self.top5 += int(hits.any(dim=-1).sum())

    def result(self) -> Accuracy:
        n = max(self.images, 1)
        return Accuracy(self.images, self.top1 / n, self.top5 / n)


class FidelityMeter:
    """Accumulates agreement, cosine and the signal and noise energies over batches (in float64)."""

    def __init__(self) -> None:
        self.images = self.agree = 0
        self.cosine_sum = self.signal = self.noise = 0.0

    def update(self, reference: "torch.Tensor", test: "torch.Tensor") -> None:
        import torch

        ref = reference.detach().double().reshape(reference.shape[0], -1)
        tst = test.detach().double().reshape(test.shape[0], -1)
        if ref.shape != tst.shape:
            raise ValueError(f"logit shapes differ: {tuple(ref.shape)} vs {tuple(tst.shape)}")
        self.images += ref.shape[0]
        self.agree += int((ref.argmax(-1) == tst.argmax(-1)).sum())
        self.cosine_sum += float(torch.nn.functional.cosine_similarity(ref, tst, dim=-1, eps=1e-12).sum())
        self.signal += float(ref.square().sum())
        self.noise += float((ref - tst).square().sum())

    def result(self) -> Fidelity:
        n = max(self.images, 1)
        return Fidelity(self.images, self.agree / n, self.cosine_sum / n, sqnr_db(self.signal, self.noise))


def sqnr_db(signal_energy: float, noise_energy: float) -> float:
    """10·log10(signal / noise); inf for zero noise, nan if both are zero."""
    if noise_energy == 0.0:
        return math.inf if signal_energy > 0.0 else math.nan
    if signal_energy == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal_energy / noise_energy)


def accuracy(logits: "torch.Tensor", labels: "torch.Tensor") -> Accuracy:
    """Accuracy of one tensor of logits (N, classes) against integer labels (N,)."""
    meter = AccuracyMeter()
    meter.update(logits, labels)
    return meter.result()


def fidelity(reference: "torch.Tensor", test: "torch.Tensor") -> Fidelity:
    """Fidelity of ``test`` logits to ``reference`` logits, both (N, classes)."""
    meter = FidelityMeter()
    meter.update(reference, test)
    return meter.result()


@dataclass
class Evaluation:
    """Figures of one pass over the evaluation batches; accuracies are None without labels."""

    images: int = 0
    float_accuracy: Optional[Accuracy] = None
    quant_accuracy: Optional[Accuracy] = None
    fidelity: Optional[Fidelity] = None
    seconds: dict[str, float] = field(default_factory=dict)  # forward time per model

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "float": self.float_accuracy.to_dict() if self.float_accuracy else None,
            "quantized": self.quant_accuracy.to_dict() if self.quant_accuracy else None,
            "fidelity": self.fidelity.to_dict() if self.fidelity else None,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def evaluate(float_model: "nn.Module", batches: Iterable[tuple["torch.Tensor", Optional["torch.Tensor"]]],
             quant_model: Optional["nn.Module"] = None,
             progress: Optional[Callable[[int], object]] = None) -> Evaluation:
    """Run the float model (and the quantized one, on the same images) over ``(images, labels)`` batches.

    Labels may be None (synthetic data): then only fidelity is measured. ``progress(n_images)`` is called after each
    batch. Both models are put in eval mode.
    """
    import torch

    float_model.eval()
    if quant_model is not None:
        quant_model.eval()
    float_meter, quant_meter, fid_meter = AccuracyMeter(), AccuracyMeter(), FidelityMeter()
    seconds = {"float": 0.0, **({"quantized": 0.0} if quant_model is not None else {})}
    labelled = True
    images = 0
    with torch.no_grad():
        for x, y in batches:
            t0 = time.perf_counter()
            ref = float_model(x)
            seconds["float"] += time.perf_counter() - t0
            if y is None:
                labelled = False
            else:
                float_meter.update(ref, y)
            if quant_model is not None:
                t0 = time.perf_counter()
                out = quant_model(x)
                seconds["quantized"] += time.perf_counter() - t0
                fid_meter.update(ref, out)
                if y is not None:
                    quant_meter.update(out, y)
            images += int(x.shape[0])
            if progress is not None:
                progress(int(x.shape[0]))
    has_acc = labelled and images > 0
    return Evaluation(
        images=images,
        float_accuracy=float_meter.result() if has_acc else None,
        quant_accuracy=quant_meter.result() if has_acc and quant_model is not None else None,
        fidelity=fid_meter.result() if quant_model is not None and images > 0 else None,
        seconds=seconds,
    )
