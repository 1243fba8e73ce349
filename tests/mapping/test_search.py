"""The mapper's search: never worse than the fixed mapping by its own objective, within the buffers, deterministic,
cached by shape and engine config; and the dataflow choices it adds, counted by hand."""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from archsim import load_config, simulate
from archsim.config.load import ArchConfig
from archsim.mapping.schedule import build_taskgraph
from archsim.mapping.search import Mapper, group_cycles, op_score
from archsim.mapping.taskgraph import TaskGraph
from archsim.workloads.ir import Workload
from archsim.workloads.yaml_format import load_yaml_workload
from helpers import ROOT, TRIO

PINNED = ROOT / "tests" / "data" / "pinned"
# the shipped configs whose saved traces tests/data/pinned holds (the accelerators; the baselines have their own tests)
SHIPPED = sorted({ROOT / "arch_configs" / f"{p.name.split('-')[0]}.yaml" for p in PINNED.glob("*.json.gz")})
MODELS = ("deit_tiny", "efficientvit_b1")


def _trace(config: Path, model: str) -> Workload:
    """The saved trace of ``model`` as ``config``'s quantizer prepares it (tests/data/pinned)."""
    name = f"{config.stem}-{model}.json.gz"
    return Workload.from_dict(json.loads(gzip.decompress((PINNED / name).read_bytes())), source=name)


def _graphs(config: Path, w: Workload, *extra: str) -> dict[str, tuple[ArchConfig, TaskGraph]]:
    out = {}
    for search in ("fixed", "heuristic", "exhaustive"):
        cfg = load_config(config, [f"mapping.search={search}", *extra])
        out[search] = cfg, build_taskgraph(w, cfg)
    return out


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.stem)
def test_search_is_never_worse_than_fixed_by_its_objective(config: Path, model: str) -> None:
    """Per op and engine part, the searched dataflow rates no worse than the fixed one; per fusion group, the
    searched tile count's estimate is no worse; every tile count is at least the fewest that fit the buffers."""
    w = _trace(config, model)
    for objective in ("latency", "energy", "edp"):
        _check_never_worse(config, w, objective)


def _check_never_worse(config: Path, w: Workload, objective: str) -> None:
    graphs = _graphs(config, w, f"mapping.objective={objective}")
    cfg_fixed, fixed = graphs["fixed"]
    fixed_tasks = {t.name: t for t in fixed.tasks}
    for search in ("heuristic", "exhaustive"):
        cfg, graph = graphs[search]
        assert [[t.name for t in g] for g in graph.groups] == [[t.name for t in g] for g in fixed.groups]
        for t in graph.tasks:
            f = fixed_tasks[t.name]
            assert sum(p.macs for p in (*t.parts, *t.tail)) == sum(p.macs for p in (*f.parts, *f.tail)), t.name
            if not t.tail and not f.tail and len(t.parts) == 1:
                assert op_score(cfg, t.cost) <= op_score(cfg, f.cost), t.name
        for g, gf in zip(graph.groups, fixed.groups):
            assert g[0].tiles >= gf[0].tiles  # never fewer than the fewest that fit: the buffers hold every tile
            assert all(t.tiles == g[0].tiles for t in g)
            if objective != "energy":
                assert group_cycles(cfg, g, g[0].tiles) <= group_cycles(cfg, g, gf[0].tiles), g[0].name


def test_search_is_deterministic_and_its_cache_is_keyed_by_engine_config() -> None:
    w = _trace(TRIO, "efficientvit_b1")
    cfg = load_config(TRIO)
    mapper = Mapper()
    first = build_taskgraph(w, cfg, mapper)
    scored, cached = mapper.dataflows_scored, len(mapper.cache)
    assert scored > 0 and cached > 0
    again = build_taskgraph(w, cfg, mapper)  # every op shape is a cache hit
    assert mapper.dataflows_scored == scored and len(mapper.cache) == cached
    fresh = build_taskgraph(w, cfg)
    labels = [(t.name, t.tiles, tuple(p.dataflow for p in t.parts)) for t in first.tasks]
    assert labels == [(t.name, t.tiles, tuple(p.dataflow for p in t.parts)) for t in again.tasks]
    assert labels == [(t.name, t.tiles, tuple(p.dataflow for p in t.parts)) for t in fresh.tasks]
    # the same mapper on another engine config: its entries are not reused, the result equals a fresh mapper's
    other = load_config(TRIO, ["engines.mat.lanes=4"])
    shared, alone = build_taskgraph(w, other, mapper), build_taskgraph(w, other)
    assert len(mapper.cache) > cached
    assert [p.cycles for t in shared.tasks for p in t.parts] == [p.cycles for t in alone.tasks for p in t.parts]


STEM = """
name: stem
inputs: {x: [1, 3, 32, 32]}
ops:
  - {name: conv, kind: conv2d, in: [x], weights: {conv.weight: [16, 3, 3, 3]}, out: [1, 16, 16, 16],
     kernel: [3, 3], stride: [2, 2], groups: 1}
"""

DIVISOR = """
name: divisor
inputs: {q: [1, 4, 49, 16], s: [1, 4, 16, 1]}
ops:
  - {name: qs, kind: matmul, in: [q, s], out: [1, 4, 49, 1]}
"""


def _one(text: str, tmp_path: Path, config: Path, *overrides: str):
    path = tmp_path / "w.yaml"
    path.write_text(text)
    graph = build_taskgraph(load_yaml_workload(path), load_config(config, list(overrides)))
    return graph.tasks[0]


def test_stem_conv_unrolls_its_taps_into_the_reduction(tmp_path: Path) -> None:
    """A 3-channel 3x3 conv on 8-wide lanes: reducing over channels fills 3 of 8 multipliers per tap (9 passes);
    unrolling channels x taps (27) needs ceil(27 / 8) = 4."""
    one_pg = ["engines.mat.groups=1", "engines.rmac.groups=1", "mapping.assign.conv=mat"]
    fixed = _one(STEM, tmp_path, TRIO, *one_pg, "mapping.search=fixed")
    searched = _one(STEM, tmp_path, TRIO, *one_pg)
    pixels, passes = 16 * 16, math.ceil(16 / 8)
    assert fixed.cycles == passes * math.ceil(3 / 8) * 9 * pixels
    assert searched.cycles == passes * math.ceil(27 / 8) * pixels
    assert searched.parts[0].dataflow == "reduce=k*taps,lanes=channels"
    assert searched.cost.macs == fixed.cost.macs


def test_one_column_matmul_runs_its_lanes_over_tokens(tmp_path: Path) -> None:
    """Q times the K-sum column (n = 1): lanes over output columns leave 7 of 8 lanes idle; lanes over the 49
    tokens with the column broadcast fill them."""
    cfg = ["engines.mat.groups=1", "mapping.assign.matmul=mat"]
    fixed = _one(DIVISOR, tmp_path, TRIO, *cfg, "mapping.search=fixed")
    searched = _one(DIVISOR, tmp_path, TRIO, *cfg)
    assert fixed.cycles == 4 * 1 * math.ceil(16 / 8) * 49
    assert searched.cycles == 4 * math.ceil(49 / 8) * math.ceil(16 / 8) * 1
    assert searched.parts[0].dataflow == "lanes=pixels"


def test_processing_groups_report_what_they_lose(tmp_path: Path) -> None:
    """16 processing groups splitting a 4-head matmul by heads leave 12 idle; the report names it."""
    t = _one(DIVISOR, tmp_path, TRIO, "mapping.assign.matmul=mat", "engines.mat.pg_split=heads",
             "mapping.search=fixed")
    part = t.parts[0]
    one_group = 4 * math.ceil(1 / 8) * math.ceil(16 / 8) * 49
    assert part.cycles == one_group // 4  # one head per busy group
    assert part.group_loss == part.cycles - math.ceil(one_group / 16)
    assert part.group_loss_why == "12 of 16 groups idle (heads: 4)"


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.stem)
def test_search_gains_on_the_shipped_configs(config: Path, model: str) -> None:
    """Simulated end to end, the searched mapping of each saved trace is faster than the fixed one (the mapper's
    estimate is not the simulation, so this is a measurement on the shipped configs, not a law)."""
    w = _trace(config, model)
    fixed = simulate(load_config(config, ["mapping.search=fixed"]), w)
    searched = simulate(load_config(config), w)
    assert searched.latency_cycles < fixed.latency_cycles
    assert searched.total_macs == fixed.total_macs
