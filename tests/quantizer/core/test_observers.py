"""Observers: statistics phase, search phase, and the grids they produce, against hand-computed values."""
from __future__ import annotations

import pytest
import torch

from quantizer.errors import UsageError
from quantizer.core.bits import BitType
from quantizer.core.observers import (
    OBSERVERS,
    EmaObserver,
    MinMaxObserver,
    OmseObserver,
    PercentileObserver,
    PtfObserver,
    make_observer,
    quantile,
)
from quantizer.core.quantizers import Conventions

INT8, UINT8, INT4, UINT4 = BitType(8, True), BitType(8, False), BitType(4, True), BitType(4, False)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_registry_names() -> None:
    assert set(OBSERVERS) == {"minmax", "ema", "percentile", "omse", "ptf"}
    with pytest.raises(UsageError, match="unknown observer 'mse'"):
        make_observer("mse", UINT8)


def test_compute_before_update_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        MinMaxObserver(UINT8).compute()


# --- minmax ------------------------------------------------------------------------------------------------------
def test_minmax_per_tensor_over_batches() -> None:
    obs = MinMaxObserver(UINT8)
    obs.update(t(-1.0, 2.0))
    obs.update(t(0.5, 3.0))
    p = obs.compute()
    assert p.scale.tolist() == pytest.approx([4 / 255]) and p.zero_point.tolist() == [64.0]


def test_minmax_per_channel_weights() -> None:
    w = torch.tensor([[1.0, -2.0], [0.5, 0.25]])
    obs = MinMaxObserver(INT8, "channel", channel_dim=0)
    obs.update(w)
    p = obs.compute()
    assert p.scale.tolist() == pytest.approx([2 / 127, 0.5 / 127]) and p.zero_point.tolist() == [0.0, 0.0]
    obs = MinMaxObserver(INT8, "channel", channel_dim=0, conventions=Conventions(sym_denominator="half_span"))
    obs.update(w)
    assert obs.compute().scale.tolist() == pytest.approx([2 / 127.5, 0.5 / 127.5])


def test_channel_axis_of_token_and_nchw_tensors() -> None:
    tokens = torch.zeros(2, 3, 4)
    tokens[..., 2] = 5.0
    obs = MinMaxObserver(INT8, "channel", channel_dim=-1)
    obs.update(tokens)
    assert obs.compute().scale.tolist() == pytest.approx([0, 0, 5 / 127, 0], abs=1e-6)
    nchw = torch.zeros(1, 3, 2, 2)
    nchw[:, 1] = -2.0
    obs = MinMaxObserver(INT8, "channel", channel_dim=1)
    obs.update(nchw)
    assert obs.compute().scale.tolist() == pytest.approx([0, 2 / 127, 0], abs=1e-6)


# --- ema and percentile --------------------------------------------------------------------------------------------
def test_ema_moves_by_one_percent() -> None:
    obs = EmaObserver(UINT8)
    obs.update(t(-1.0, 1.0))
    obs.update(t(-3.0, 5.0))
    # lo = -1 + 0.01 (-3 + 1) = -1.02; hi = 1 + 0.01 (5 - 1) = 1.04
    assert (obs.lo.item(), obs.hi.item()) == pytest.approx((-1.02, 1.04))
    p = obs.compute()
    assert p.scale.item() == pytest.approx(2.06 / 255)
    assert p.zero_point.item() == 126  # round(1.02 / (2.06 / 255)) = round(126.26)


def test_ema_per_channel() -> None:
    obs = EmaObserver(INT8, "channel", channel_dim=-1)
    obs.update(torch.tensor([[1.0, -2.0]]))
    obs.update(torch.tensor([[3.0, -2.0]]))
    assert obs.compute().scale.tolist() == pytest.approx([1.02 / 127, 2 / 127])


def test_quantile_matches_torch() -> None:
    x = torch.randn(1001, generator=torch.Generator().manual_seed(0))
    for q in (0.00001, 0.3, 0.99999):
        assert quantile(x, q).item() == pytest.approx(torch.quantile(x, q).item(), rel=1e-5)


def test_percentile_per_tensor() -> None:
    x = torch.arange(100001, dtype=torch.float32)  # quantiles 0.00001 and 0.99999 are 1 and 99999
    obs = PercentileObserver(UINT8)
    obs.update(x)
    assert (obs.lo.item(), obs.hi.item()) == pytest.approx((1.0, 99999.0))
    obs.update(x + 100.0)  # EMA with sigma 0.01 across batches
    assert (obs.lo.item(), obs.hi.item()) == pytest.approx((2.0, 100000.0))
    assert obs.compute().scale.item() == pytest.approx(100000.0 / 255)  # [2, 1e5] extended to contain 0


def test_percentile_is_per_tensor_only() -> None:
    with pytest.raises(UsageError, match="per-tensor granularity only"):
        make_observer("percentile", UINT8, "channel")


# --- omse --------------------------------------------------------------------------------------------------------
def test_omse_signed_is_symmetric_and_finds_the_hand_computed_shrink() -> None:
    # int4, 99 ones and one 10. Candidates s_i = 10 (1 - 0.01 i) / 7, z = 0 (F2: signed stays symmetric). For
    # s in (2/3, 10/7] the ones round to 1 and 10 clips to 7 s: loss 99 (1 - s)^2 + (10 - 7 s)^2, minimal at
    # s = 338/296 = 1.142, i.e. i = 20 (s = 8/7), the best integer i (i = 19: 6.055, 20: 6.020, 21: 6.047).
    x = torch.cat([torch.ones(99), t(10.0)])
    obs = OmseObserver(INT4)
    obs.update(t(10.0, 1.0))  # statistics batch: its range is all that counts
    obs.update(x)  # the search batch
    p = obs.compute(x)
    assert p.zero_point.item() == 0
    assert p.scale.item() == pytest.approx(8 / 7, rel=1e-6)


def test_omse_per_channel_searches_each_channel() -> None:
    x = torch.stack([torch.cat([torch.ones(99), t(10.0)]), torch.ones(100)])
    obs = OmseObserver(INT4, "channel", channel_dim=0)
    obs.update(x)
    p = obs.compute(x)
    # channel 1: i = 0 (s = 1/7) represents 1 exactly, every other candidate does not
    assert p.scale.tolist() == pytest.approx([8 / 7, 1 / 7], rel=1e-6)


def test_omse_unsigned_keeps_the_exact_grid() -> None:
    x = torch.cat([torch.full((99,), -1.0), t(14.0)])
    obs = OmseObserver(UINT4)
    obs.update(x)
    p = obs.compute(x)  # i = 0: s = 15/15 = 1, z = 1 represents every value exactly
    assert (p.scale.item(), p.zero_point.item()) == pytest.approx((1.0, 1.0))
    with pytest.raises(ValueError):
        obs.compute()


# --- ptf -----------------------------------------------------------------------------------------------------------
def _ptf_batch() -> torch.Tensor:
    """(B=1, N=3, C=2): channel 0 spans [-8, 7] (the whole layer range), channel 1 holds 1 and 2."""
    return torch.tensor([[[-8.0, 1.0], [7.0, 2.0], [0.0, 1.0]]])


def test_ptf_factors_and_per_channel_zero_points() -> None:
    # uint4: s8 = 15/15 = 1, candidates 1/8, 1/4, 1/2, 1. Channel 0 needs alpha = 3 (z = 8); channel 1 with its
    # own zero point (0, from min(1, 0)): s = 1/8 clips 2 to 1.875, s = 1/4 is exact -> alpha = 1.
    obs = make_observer("ptf", UINT4, "channel", -1)
    x = _ptf_batch()
    obs.update(x)
    p = obs.compute(x)
    assert p.alpha is not None and p.alpha.tolist() == [3, 1]
    assert p.scale.tolist() == [1.0, 0.25] and p.zero_point.tolist() == [8.0, 0.0]


def test_ptf_shared_zero_point_parity() -> None:
    # FQ-ViT: z = 8 from the global minimum at s8 for every candidate. Channel 1 then sees [-8 s, 7 s]:
    # s = 1/8 and 1/4 clip 2 (max 0.875, 1.75), s = 1/2 is exact -> alpha = 2.
    obs = PtfObserver(UINT4, "channel", -1, Conventions(ptf_zero_point="shared"))
    x = _ptf_batch()
    obs.update(x)
    p = obs.compute(x)
    assert p.alpha is not None and p.alpha.tolist() == [3, 2]
    assert p.scale.tolist() == [1.0, 0.5] and p.zero_point.tolist() == [8.0, 8.0]


def test_symmetric_ptf() -> None:
    # int4: s8 = 7/7 = 1; channel 1 = {-0.875, 0.5} is exact at s = 1/8 (codes -7, 4) -> alpha 0; z = 0
    x = torch.tensor([[[-7.0, -0.875], [7.0, 0.5]]])
    obs = PtfObserver(INT4, "channel", -1)
    obs.update(x)
    p = obs.compute(x)
    assert p.alpha is not None and p.alpha.tolist() == [3, 0]
    assert p.scale.tolist() == [1.0, 0.125] and p.zero_point.tolist() == [0.0, 0.0]


def test_ptf_ranges_come_from_all_batches() -> None:
    obs = PtfObserver(UINT4, "channel", -1)
    obs.update(torch.tensor([[[-16.0, 0.0]]]))  # a statistics batch widens the layer range to [-16, 7]
    x = _ptf_batch()
    obs.update(x)
    s8, scales, _ = obs.candidates()
    assert s8.item() == pytest.approx(23 / 15)  # [-16, 7]
    assert [s[0].item() for s in scales] == pytest.approx([23 / 120, 23 / 60, 23 / 30, 23 / 15])


def test_ptf_needs_channels_and_a_search_batch() -> None:
    with pytest.raises(UsageError, match="per-channel granularity only"):
        make_observer("ptf", UINT8, "tensor")
    obs = PtfObserver(UINT8, "channel")
    obs.update(_ptf_batch())
    with pytest.raises(ValueError):
        obs.compute()
