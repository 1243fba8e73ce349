"""P2-ViT's mixed-precision search: costs, genes, sensitivities, distances, the budget and the search's rules."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from quantizer.core.spec import collect_specs
from quantizer.methods import QuantConfig, get_method
from quantizer.methods.p2vit_mixed import (MixedSearch, hessian_traces, layer_macs, make_groups, mean_weight_bits,
                                           weight_distances)
from quantizer.methods.p2vit import P2VitOptions
from quant_helpers import images, small_vit

SEARCH = {"mixed_coarse": 12, "mixed_population": 5, "mixed_iters": 2, "mixed_children": 3, "hessian_samples": 3,
          "hessian_images": 4}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def calibrated() -> nn.Module:
    model = small_vit()
    cfg = QuantConfig(method="p2vit", w_bits=4, ptf=True, lis=True)
    return get_method("p2vit").quantize(model, images(2, 1), cfg)


def test_layer_macs_by_hand(calibrated: nn.Module) -> None:
    macs = layer_macs(calibrated, images(1, 1)[0])
    tokens = (32 // 4) ** 2 + 1  # 64 patches + cls
    assert macs["patch_embed.proj"] == 64 * 64 * 3 * 4 * 4
    assert macs["blocks.0.attn.qkv"] == tokens * 64 * 192
    assert macs["blocks.1.mlp.fc2"] == tokens * 256 * 64
    assert macs["head"] == 64 * 10  # one token reaches the head
    assert len(macs) == 1 + 2 * 4 + 1


def test_groups_tie_pairs_and_fix_the_patch_embedding(calibrated: nn.Module) -> None:
    macs = layer_macs(calibrated, images(1, 1)[0])
    groups = make_groups(calibrated, macs, 8)
    layers = [g.layers for g in groups]
    assert layers[0] == ("patch_embed.proj",) and groups[0].fixed == 8
    assert ("blocks.0.attn.qkv", "blocks.0.attn.proj") in layers and ("blocks.1.mlp.fc1", "blocks.1.mlp.fc2") in layers
    assert layers[-1] == ("head",) and groups[-1].fixed is None
    assert sum(g.macs for g in groups) == sum(macs.values())


def test_distances_are_indexed_by_bit_width(calibrated: nn.Module) -> None:  # P1
    dist = weight_distances(calibrated)
    assert all(d[4] > d[8] > 0 for d in dist.values())


def test_hessian_traces_are_normalised(calibrated: nn.Module) -> None:
    traces = hessian_traces(calibrated, images(1, 1)[0], samples=3, seed=0)
    assert set(traces) == set(layer_macs(calibrated, images(1, 1)[0]))
    assert min(traces.values()) == 0.0 and max(traces.values()) == 1.0
    assert all(p.requires_grad for p in calibrated.parameters())  # flags restored
    again = hessian_traces(calibrated, images(1, 1)[0], samples=3, seed=0)
    assert again == traces  # seeded


def test_search_respects_budget_ties_and_only_records_evaluated_fitness(calibrated: nn.Module) -> None:
    model = copy.deepcopy(calibrated)
    opts = P2VitOptions(**{**SEARCH, "mixed_budget": 5.0})
    search = MixedSearch(model, opts, seed=0)
    evaluated: list[tuple[int, ...]] = []
    original = search.evaluate

    def spy(genome, holdout, reference):  # type: ignore[no-untyped-def]
        if genome not in search.fitness:
            evaluated.append(genome)
        return original(genome, holdout, reference)

    search.evaluate = spy  # type: ignore[method-assign]
    bits = search.run(images(2, 1), images(1, 9))
    assert set(search.fitness) == set(evaluated)  # never a stale or made-up fitness (P2)
    assert all(search.feasible(g) for g in search.fitness)  # every stage keeps the constraints (P15)
    assert bits["patch_embed.proj"] == 8
    assert bits["blocks.0.attn.qkv"] == bits["blocks.0.attn.proj"] and bits["blocks.1.mlp.fc1"] == bits["blocks.1.mlp.fc2"]
    x = images(1, 1)[0]
    assert mean_weight_bits(model, x) <= 5.0 + 1e-9
    specs = collect_specs(model)
    assert all(specs[name].weight_bits == b for name, b in bits.items())  # the choice is what the model runs
    best = max(search.fitness.values())
    chosen = tuple(bits[g.layers[0]] for g in search.groups)
    assert search.fitness[chosen] == best


def test_mixed_method_end_to_end_is_deterministic() -> None:
    def run() -> tuple[dict[str, int], torch.Tensor]:
        model = small_vit()
        cfg = QuantConfig(method="p2vit", w_bits=4, ptf=True, lis=True, mixed=True, seed=0, options=SEARCH)
        get_method("p2vit").quantize(model, images(2, 1), cfg, images(1, 9))
        with torch.no_grad():
            y = model(images(1, 2)[0])
        return {n: s.weight_bits for n, s in collect_specs(model).items() if s.weight_bits is not None}, y

    bits_a, y_a = run()
    bits_b, y_b = run()
    assert bits_a == bits_b and torch.equal(y_a, y_b)
    assert set(bits_a.values()) <= {4, 8}
