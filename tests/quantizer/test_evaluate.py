"""Metrics on hand-made logits, and the batched evaluation loop on tiny models."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from quantizer.evaluate import accuracy, evaluate, fidelity, sqnr_db


def test_identical_logits_are_perfectly_faithful() -> None:
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    f = fidelity(logits, logits.clone())
    assert f.images == 16 and f.top1_agreement == 1.0
    assert f.cosine == pytest.approx(1.0, abs=1e-12)
    assert f.sqnr_db == math.inf


def test_known_perturbation_gives_the_expected_sqnr() -> None:
    ref = torch.randn(8, 100, generator=torch.Generator().manual_seed(1))
    # noise = 0.1 * ref -> noise energy is 1% of the signal energy -> 20 dB, and every vector keeps its direction
    f = fidelity(ref, ref * 1.1)
    assert f.sqnr_db == pytest.approx(20.0, abs=1e-5)  # float32 rounding of ref * 1.1
    assert f.cosine == pytest.approx(1.0, abs=1e-12) and f.top1_agreement == 1.0
    # an explicit energy budget: signal 4 * 2^2 = 16, noise 1^2 = 1 -> 10*log10(16) dB
    a = torch.full((1, 4), 2.0)
    b = a.clone()
    b[0, 3] += 1.0
    assert fidelity(a, b).sqnr_db == pytest.approx(10 * math.log10(16))


def test_agreement_and_cosine_on_hand_made_logits() -> None:
    ref = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 5.0], [1.0, 2.0, 3.0]])
    test = torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, 2.0], [1.0, 0.0, 5.0], [-1.0, -2.0, -3.0]])
    f = fidelity(ref, test)
    assert f.top1_agreement == 0.5  # rows 0 and 2 agree; row 1 swaps classes; row 3 is negated
    expected_row1 = (2 * 1 + 1 * 2) / 5
    assert f.cosine == pytest.approx((1 + expected_row1 + 1 - 1) / 4)


def test_sqnr_edge_cases() -> None:
    assert sqnr_db(1.0, 0.0) == math.inf
    assert math.isnan(sqnr_db(0.0, 0.0))
    assert sqnr_db(100.0, 1.0) == pytest.approx(20.0)


def test_top1_and_top5_accuracy() -> None:
    logits = torch.arange(10, dtype=torch.float32).repeat(4, 1)  # class 9 best, then 8, 7, 6, 5 ...
    labels = torch.tensor([9, 5, 4, 0])
    acc = accuracy(logits, labels)
    assert acc.images == 4 and acc.top1 == 0.25 and acc.top5 == 0.5
    few = accuracy(torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([0]))  # fewer than 5 classes: top-5 = any
    assert few.top1 == 0.0 and few.top5 == 1.0


def _linear(seed: int, scale: float = 1.0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Linear(6, 5)
    with torch.no_grad():
        m.weight.mul_(scale)
    return m


def test_evaluate_without_labels_measures_fidelity_only() -> None:
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(2))
    batches = [(x[:5], None), (x[5:], None)]
    seen: list[int] = []
    ev = evaluate(_linear(0), batches, _linear(0), progress=seen.append)
    assert ev.images == 12 and seen == [5, 7]
    assert ev.float_accuracy is None and ev.quant_accuracy is None
    assert ev.fidelity is not None and ev.fidelity.sqnr_db == math.inf and ev.fidelity.images == 12
    assert set(ev.seconds) == {"float", "quantized"}
    float_only = evaluate(_linear(0), batches)
    assert float_only.fidelity is None and float_only.float_accuracy is None and float_only.images == 12


def test_evaluate_with_labels_reports_both_accuracies_and_matches_one_big_batch() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(20, 6, generator=gen)
    y = torch.randint(0, 5, (20,), generator=gen)
    ref, other = _linear(0), _linear(1)
    ev = evaluate(ref, [(x[:8], y[:8]), (x[8:], y[8:])], other)
    with torch.no_grad():
        whole_ref, whole_other = ref(x), other(x)
    assert ev.float_accuracy == accuracy(whole_ref, y)
    assert ev.quant_accuracy == accuracy(whole_other, y)
    expected = fidelity(whole_ref, whole_other)
    assert ev.fidelity is not None
    assert ev.fidelity.top1_agreement == expected.top1_agreement
    assert ev.fidelity.sqnr_db == pytest.approx(expected.sqnr_db)
    assert ev.fidelity.cosine == pytest.approx(expected.cosine)
    assert ev.to_dict()["quantized"]["top1"] == ev.quant_accuracy.top1


def test_evaluate_does_not_track_gradients() -> None:
    grads: list[bool] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            grads.append(torch.is_grad_enabled())
            return x

    evaluate(Probe(), [(torch.randn(2, 3), None)], Probe())
    assert grads == [False, False]
