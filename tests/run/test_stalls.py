"""Stall attribution measured by the simulation: every engine's cycles split into busy and the stall reasons, adding
up to the latency; every op's window split likewise; starved DRAM or a narrow NoC show up as what the engines waited
on; buffer occupancy and NoC bytes recorded; all deterministic and with no effect on the run's figures."""
from __future__ import annotations

from functools import lru_cache

import pytest

from archsim.api import simulate
from archsim.config import load_config
from archsim.kernel.stall import REASONS
from archsim.report.summary import compute_engines, top_stalls
from archsim.result import DRAM_BOUND_SHARE, STALL_REASONS, Result
from archsim.run.stalls import engine_stalls, merge, occupancy_series
from archsim.workloads.yaml_format import load_yaml_workload
from helpers import GENERIC, MLP_YAML, P2VIT, TRIO

CASES = [
    (GENERIC, ()),
    (GENERIC, ("mapping.pipeline.intra_layer=false",)),
    (GENERIC, ("mapping.pipeline.double_buffering=false",)),
    (GENERIC, ("mapping.pipeline.inter_layer=false", "noc.topology=mesh")),
    (TRIO, ()),
    (P2VIT, ()),
]
DRAM_STARVED = ("dram.bandwidth_gbps=0.5",)
NARROW_NOC = ("noc.link_bits=8",)


@lru_cache(maxsize=None)
def run(config: str, overrides: tuple[str, ...] = ()) -> Result:
    return simulate(load_config(config, list(overrides)), load_yaml_workload(MLP_YAML))


@pytest.fixture(params=CASES, ids=lambda c: c[0].stem + "".join(f"+{o}" for o in c[1]))
def result(request: pytest.FixtureRequest) -> Result:
    path, overrides = request.param
    return run(str(path), overrides)


def test_reason_codes_name_the_result_reasons() -> None:
    assert STALL_REASONS[:len(REASONS)] == REASONS and STALL_REASONS[-1] == "idle"


def test_every_engine_adds_up_to_the_latency(result: Result) -> None:
    assert set(result.stalls) == set(result.engines)
    for name, stalls in result.stalls.items():
        assert tuple(stalls) == STALL_REASONS
        assert all(v >= 0 for v in stalls.values()), name
        assert sum(stalls.values()) == result.latency_cycles, name


def test_busy_is_the_time_the_engine_computed(result: Result) -> None:
    for name, stalls in result.stalls.items():
        intervals = merge((s.start, s.end) for s in result.spans if s.component == name)
        assert stalls["busy"] == sum(e - s for s, e in intervals), name
        assert stalls["busy"] <= result.engines[name].busy_cycles


def test_every_op_window_is_split_into_its_reasons(result: Result) -> None:
    names = {r.op for r in result.ops}
    for r in result.ops:
        assert set(r.inputs) <= names, r.op
        if r.status != "simulated":
            continue
        assert set(r.stalls) == set(STALL_REASONS[:-1]), r.op
        assert sum(r.stalls.values()) == r.cycles, r.op
        assert r.busy_cycles == r.stalls["busy"] <= r.cycles
        assert r.bottleneck in STALL_REASONS[:-1]
        if r.memory_bound_cycles >= DRAM_BOUND_SHARE * r.cycles:  # its DRAM traffic alone fills its window
            assert r.bottleneck == "dram", r.op
        else:  # else the reason that took most of it
            assert r.stalls[r.bottleneck] == max(r.stalls.values()), r.op
    macs = [r for r in result.ops if r.macs and r.status == "simulated"]
    assert macs and all(r.busy_cycles > 0 for r in macs)


def test_starved_dram_is_what_the_engines_wait_on() -> None:
    base, starved = run(str(GENERIC)), run(str(GENERIC), DRAM_STARVED)
    assert starved.latency_cycles > base.latency_cycles
    top = top_stalls(starved)
    assert top[0][0] == "dram" and top[0][1] > 0.3
    assert starved.stalls["pe"]["dram"] > 100 * max(base.stalls["pe"]["dram"], 1)
    assert sum(r.bottleneck == "dram" for r in starved.ops) > sum(r.bottleneck == "dram" for r in base.ops)


def test_a_narrow_noc_is_what_the_engines_wait_on() -> None:
    narrow = run(str(GENERIC), NARROW_NOC)
    reason, share = top_stalls(narrow)[0]
    assert reason == "noc" and share > 0.5
    for name in compute_engines(narrow):
        assert narrow.stalls[name]["noc"] == max(narrow.stalls[name].values())


def test_noc_links_report_the_bytes_they_carried(result: Result) -> None:
    links = [c for c in result.components.values() if c.type == "noc"]
    assert links
    for link in links:
        assert (link.read_bytes + link.write_bytes > 0) == (link.busy_cycles > 0), link.name
    # every transfer crosses one link: the links carry what the buffers and DRAM channels move
    memory = sum(c.read_bytes + c.write_bytes for c in result.components.values() if c.type in ("sram", "dram"))
    assert sum(c.read_bytes + c.write_bytes for c in links) <= memory


def test_buffer_occupancy_is_a_step_series(result: Result) -> None:
    cfg = load_config(GENERIC if result.config == "generic16" else TRIO if result.config == "trio" else P2VIT)
    assert set(result.counters) >= {f"{b}.occupancy_bytes" for b in cfg.buffers}
    for name, series in result.counters.items():
        assert series[0] == (0, 0.0), name
        cycles = [c for c, _ in series]
        assert cycles == sorted(set(cycles)) and cycles[-1] <= result.latency_cycles
        assert all(v >= 0 and v == int(v) for _, v in series)
        assert all(a[1] != b[1] for a, b in zip(series, series[1:]))  # value changes only
    assert any(len(series) > 2 for series in result.counters.values())


def test_attribution_is_deterministic_and_leaves_the_run_alone() -> None:
    a = simulate(load_config(TRIO), load_yaml_workload(MLP_YAML))
    b = run(str(TRIO))
    assert a.stalls == b.stalls and a.counters == b.counters and a.ops == b.ops and a.spans == b.spans
    assert a.events == b.events and a.latency_cycles == b.latency_cycles


# ---- the resolution on hand-made inputs ---------------------------------------------------------------------------


def test_engine_stalls_count_each_cycle_once() -> None:
    busy = merge([(0, 10), (5, 20), (40, 50)])
    assert busy == [(0, 20), (40, 50)]
    # 0-30 its op computes (on other engines after 20: idle), 30-45 waits for DRAM, 45-60 nothing left
    reasons = [(0, 30, 0), (30, 45, 1), (45, 60, STALL_REASONS.index("idle"))]
    got = engine_stalls(busy, reasons, 60)
    assert got == {"busy": 30, "dram": 10, "buffer": 0, "producer": 0, "noc": 0, "idle": 20}
    assert sum(got.values()) == 60


def test_occupancy_series_keeps_changes_only() -> None:
    log = {"a": [0, 5, 3, 4, 3, -4, 7, -5], "b": []}
    assert occupancy_series(log, ["a", "b"]) == {"a.occupancy_bytes": ((0, 5.0), (7, 0.0)),
                                                 "b.occupancy_bytes": ((0, 0.0),)}


def test_a_weight_stream_from_dram_is_a_dram_bottleneck(tmp_path) -> None:
    """A 1-token classifier streams its weights from DRAM: the DRAM channel is busy for its whole window while
    the MAC engines wait, at that moment, on the buffer port the next tile's weights are written through. Its
    bottleneck is DRAM (the limit), even though its largest immediate wait is the buffer."""
    from archsim import load_config, simulate
    from archsim.workloads.yaml_format import load_yaml_workload
    from helpers import TRIO

    path = tmp_path / "head.yaml"
    path.write_text("name: head\ninputs:\n  x: [1, 1, 1536]\nops:\n  - {name: fc, kind: linear, in: [x], "
                    "weights: {fc.weight: [1600, 1536]}, out: [1, 1, 1600]}\n")
    result = simulate(load_config(TRIO), load_yaml_workload(path))
    (fc,) = [r for r in result.ops if r.op == "fc"]
    assert fc.memory_bound_cycles >= 0.9 * fc.cycles
    assert fc.stalls["buffer"] > fc.stalls["dram"]  # the immediate wait ...
    assert fc.bottleneck == "dram"  # ... is not the limit
