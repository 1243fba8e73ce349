"""Simulator invariants on whole runs: bounds, conservation, utilisation, energy, determinism, monotonicity."""
from __future__ import annotations

import math

import pytest

from archsim.api import simulate
from archsim.config import load_config
from archsim.errors import SimulationError
from archsim.workloads.yaml_format import load_yaml_workload
from helpers import GENERIC, MLP_YAML, P2VIT, P2VIT_FP, TRIO, mlp

CONFIGS = [
    (GENERIC, []),
    (GENERIC, ["mapping.pipeline.inter_layer=false"]),
    (GENERIC, ["mapping.pipeline.intra_layer=false"]),
    (GENERIC, ["dram.channels=2", "noc.topology=mesh"]),
    (GENERIC, ["dram.row_buffer={row_bytes: 2048, banks: 4}"]),
    (TRIO, []),
    (TRIO, ["mapping.pipeline.inter_layer=false"]),
    (P2VIT, []),
    (P2VIT_FP, []),
]


@pytest.fixture(params=CONFIGS, ids=lambda c: f"{c[0].stem}{'+' if c[1] else ''}{','.join(c[1])}")
def run(request):
    path, overrides = request.param
    cfg = load_config(path, overrides)
    workload = load_yaml_workload(MLP_YAML)
    return cfg, workload, simulate(cfg, workload)


def test_no_op_beats_its_compute_or_memory_bound(run) -> None:
    cfg, _, r = run
    for rec in r.ops:
        if rec.status != "simulated":
            continue
        assert rec.cycles >= rec.compute_bound_cycles, rec.op
        assert rec.cycles >= rec.memory_bound_cycles, rec.op
    assert r.latency_cycles >= math.ceil(r.total_macs / sum(e.peak_macs_per_cycle for e in r.engines.values()))


def test_dram_bytes_are_conserved(run) -> None:
    cfg, w, r = run
    by_ops_read = sum(rec.dram_read_bytes for rec in r.ops)
    by_ops_write = sum(rec.dram_write_bytes for rec in r.ops)
    assert by_ops_read == r.dram_read_bytes and by_ops_write == r.dram_write_bytes
    # channels move at least the bytes asked for (rounded up to whole bursts), never fewer
    channel_read = sum(c.read_bytes for n, c in r.components.items() if n.startswith("dram"))
    burst = cfg.dram.burst_bytes
    transactions = 2 * sum(rec.tiles for rec in r.ops)  # at most one weight and one activation load per tile
    assert r.dram_read_bytes <= channel_read <= r.dram_read_bytes + transactions * burst * cfg.dram.channels
    # every weight is read at least once; the graph's output is written once
    weights = sum(t.nbytes for t in w.tensors.values() if t.is_weight)
    assert r.dram_read_bytes >= weights
    assert r.dram_write_bytes >= sum(w.tensors[t].nbytes for t in w.graph_outputs())


def test_utilisation_is_a_fraction(run) -> None:
    _, _, r = run
    for e in r.engines.values():
        assert 0.0 <= e.utilization <= 1.0
        assert e.busy_cycles <= r.latency_cycles
    for c in r.components.values():
        assert 0 <= c.busy_cycles <= r.latency_cycles, c.name


def test_energy_is_the_sum_of_its_parts(run) -> None:
    _, _, r = run
    total = r.energy_pj_total
    assert total > 0
    assert sum(r.energy_pj_by_op_kind.values()) == pytest.approx(total, rel=1e-12)
    static = r.energy_pj_by_op_kind.get("static", 0.0)
    assert sum(rec.energy_pj for rec in r.ops) + static == pytest.approx(total, rel=1e-12)
    assert all(v >= 0 for v in r.energy_pj_by_component.values())


def test_same_inputs_same_outputs(run) -> None:
    cfg, w, r = run
    again = simulate(cfg, w)
    assert again.ops == r.ops
    assert again.spans == r.spans
    assert again.energy_pj_by_component == r.energy_pj_by_component
    assert again.events == r.events


def test_macs_match_the_workload(run) -> None:
    _, w, r = run
    assert r.total_macs == w.total_macs
    assert sum(e.macs for e in r.engines.values()) == w.total_macs


@pytest.mark.parametrize("path", [GENERIC, TRIO])
def test_doubling_dram_bandwidth_never_slows(path) -> None:
    w = mlp(tokens=197, dim=384, hidden=1536)
    base = load_config(path)
    bw = base.dram.bandwidth_gbps
    r1 = simulate(base, w)
    r2 = simulate(load_config(path, [f"dram.bandwidth_gbps={2 * bw}"]), w)
    assert r2.latency_cycles <= r1.latency_cycles


@pytest.mark.parametrize("switch", ["inter_layer", "intra_layer"])
def test_turning_a_pipeline_off_never_speeds_up(switch) -> None:
    w = mlp()
    on = simulate(load_config(GENERIC), w)
    off = simulate(load_config(GENERIC, [f"mapping.pipeline.{switch}=false"]), w)
    assert off.latency_cycles >= on.latency_cycles


def test_deadlock_is_detected_and_named(generic_cfg, monkeypatch) -> None:
    from archsim.mapping import schedule

    real = schedule.build_taskgraph

    def cyclic(w, cfg):
        graph = real(w, cfg)
        first, last = graph.tasks[0], graph.tasks[-1]
        first.deps = (last.name,)  # the first op waits for the last, which waits for the engine the first holds
        return graph

    monkeypatch.setattr("archsim.api.build_taskgraph", cyclic)
    with pytest.raises(SimulationError, match=r"unfinished; first: fc1 \(waiting"):
        simulate(generic_cfg, mlp())
