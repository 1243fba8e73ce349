"""archsim.extend without a package: an engine kind, a mapping policy and an op kind registered by a test run end to
end through ``archsim.simulate``, and registering before the built-ins load hides none of them."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import ClassVar, Iterator, Literal, Mapping

import pytest

import archsim
from archsim.extend import (ENGINE_KINDS, OP_KINDS, POLICIES, Depthwise, EngineBase, EngineKind, Gemm, Op, OpCost,
                            Policy, PosInt, Tensor, Workload, geometry, register_engine_kind, register_op_kind,
                            register_policy)

ENGINE, POLICY, KIND = "test_lane_array", "test_split_groups", "test_swish_glu"


class LaneEngine(EngineBase):
    """``lanes`` MACs per cycle, one output channel per lane, no fill or drain."""

    type: Literal["test_lane_array"] = "test_lane_array"
    lanes: PosInt = 32


class LaneKind(EngineKind):
    name: ClassVar[str] = ENGINE
    config_model: ClassVar[type[EngineBase]] = LaneEngine
    shares_work: ClassVar[bool] = True
    description: ClassVar[str] = "test: lanes over output channels"

    def supports(self, cfg: EngineBase, op: Op, classes: list[str]) -> str | None:
        return op.kind if op.kind == "linear" else None

    def peak_macs_per_cycle(self, cfg: EngineBase) -> int:
        assert isinstance(cfg, LaneEngine)
        return cfg.lanes

    def cost(self, cfg: EngineBase, op: Op, tensors: Mapping[str, Tensor], cls: str,
             share: Gemm | Depthwise | None = None) -> OpCost:
        assert isinstance(cfg, LaneEngine)
        g = geometry(op, tensors) if share is None else share
        assert isinstance(g, Gemm)
        return OpCost(cycles=g.groups * g.m * g.k * -(-g.n // cfg.lanes), macs=g.macs, elements=g.m * g.n,
                      act_read_bytes=g.m * g.k, weight_read_bytes=g.n * g.k, write_bytes=g.m * g.n)


class SplitGroups(Policy):
    """Every op opens a new fusion group; records which ops it was asked about."""

    name: ClassVar[str] = POLICY
    description: ClassVar[str] = "test: no fusion"
    seen: ClassVar[list[str]] = []

    def starts_group(self, op: Op, tensors: Mapping[str, Tensor]) -> bool:
        SplitGroups.seen.append(op.name)
        return True


@pytest.fixture
def registered() -> Iterator[None]:
    """The three registrations, removed again afterwards (the registries are process-global)."""
    register_engine_kind(LaneKind)
    register_policy(SplitGroups)
    register_op_kind(KIND, "vector", description="test: gated activation")
    try:
        yield
    finally:
        for registry, name in ((ENGINE_KINDS, ENGINE), (POLICIES, POLICY), (OP_KINDS, KIND)):
            registry.unregister(name)


CONFIG = f"""
name: test_extend
clock_mhz: 100
buffers:
  sram: {{capacity_kib: 1024, holds: [activation, weight]}}
engines:
  lanes_a: {{type: {ENGINE}, lanes: 32}}
  lanes_b: {{type: {ENGINE}, lanes: 32}}
  vec: {{type: nonlinear, lanes: 8, ops: {{{KIND}: {{cycles_per_element: 2, latency_cycles: 4}}}}}}
mapping:
  requant: false
  policy: {POLICY}
  assign: {{linear: [lanes_a, lanes_b], {KIND}: vec}}
"""


def _workload(tokens: int = 16, dim: int = 64, hidden: int = 128) -> Workload:
    """fc1 (dim -> 2 hidden) -> the new gated op (-> hidden) -> fc2 (hidden -> dim)."""
    shapes = {"x": (1, tokens, dim), "fc1.weight": (2 * hidden, dim), "fc1": (1, tokens, 2 * hidden),
              "gate": (1, tokens, hidden), "fc2.weight": (dim, hidden), "fc2": (1, tokens, dim)}
    tensors = {n: Tensor(n, s, 8, is_weight=n.endswith("weight")) for n, s in shapes.items()}
    ops = (Op("fc1", "linear", ("x",), "fc1", weights=("fc1.weight",), macs=tokens * dim * 2 * hidden),
           Op("gate", KIND, ("fc1",), "gate"),
           Op("fc2", "linear", ("gate",), "fc2", weights=("fc2.weight",), macs=tokens * hidden * dim))
    return Workload("gated_mlp", tensors, ops, {"model": "gated_mlp"})


def test_a_kind_policy_and_op_kind_defined_here_simulate_end_to_end(registered: None, tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(CONFIG)
    SplitGroups.seen.clear()
    result = archsim.simulate(path, _workload())
    assert result.latency_cycles > 0 and not result.unmodelled_ops
    records = {r.op: r for r in result.ops}
    assert records["gate"].engine == "vec" and records["gate"].status == "simulated"
    assert all(r.group == "" for r in result.ops)  # the policy's hook kept every op apart
    assert {"gate", "fc2"} <= set(SplitGroups.seen)  # asked about every op after the first
    # both lane arrays share each linear by output channels: fc1 = 16 tokens x 64 inputs x ceil(128 / 32) each
    for name in ("lanes_a", "lanes_b"):
        stat = result.engines[name]
        assert stat.macs == (16 * 64 * 256 + 16 * 128 * 64) // 2
        assert stat.busy_cycles >= 16 * 64 * 4 + 16 * 128 * 1 and 0 < stat.utilization <= 1
    assert result.peak_macs_per_cycle == 64


def test_unknown_names_still_fail_after_unregistering(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(CONFIG)
    assert ENGINE not in ENGINE_KINDS
    with pytest.raises(Exception, match=f"unknown engine type '{ENGINE}'"):
        archsim.load_config(path)


def test_registering_twice_names_the_first_origin(registered: None) -> None:
    with pytest.raises(Exception, match=rf"engine type '{ENGINE}' is already registered \(by {__name__}\)"):
        register_engine_kind(LaneKind)
    entry = next(e for e in ENGINE_KINDS.entries() if e.name == ENGINE)
    assert entry.origin == __name__


def test_a_kind_registered_before_the_builtins_load_does_not_hide_them() -> None:
    """In a fresh interpreter: register first, then the first lookup loads the built-ins next to it."""
    script = textwrap.dedent(f"""
        from typing import ClassVar
        from archsim import registry
        from archsim.hardware.kind import ENGINE_KINDS, EngineKind, register_engine_kind

        assert not registry._state["loaded"], "the built-ins loaded before the test could register"

        @register_engine_kind
        class Early(EngineKind):
            name: ClassVar[str] = "early_kind"

        names = set(ENGINE_KINDS.names())
        assert {{"early_kind", "mat", "rmac", "pe_array", "nonlinear", "requant", "dma"}} <= names, names
        origins = {{e.name: e.origin for e in ENGINE_KINDS.entries()}}
        assert origins["early_kind"] == "__main__" and origins["mat"] == "archsim", origins
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr

