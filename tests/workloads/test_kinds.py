"""Open op kinds: a registered kind is valid in workloads and classified as registered; an op no engine supports
is a mapping error naming it, never priced by a default."""
from __future__ import annotations

import pytest

from archsim import simulate
from archsim.errors import MappingError, UsageError, WorkloadError
from archsim.workloads.ir import Op, Tensor, make_workload
from archsim.workloads.kinds import OP_KINDS, category_of, is_mac, register_op_kind
from helpers import GENERIC


def _one_op(kind: str, attrs: dict | None = None):
    x, y = Tensor("x", (1, 64, 32)), Tensor("y", (1, 64, 32))
    return make_workload("w", [x, y], [Op("op", kind, ("x",), "y", attrs=attrs or {})], {"model": "w"})


def test_builtin_kinds_are_classified() -> None:
    assert is_mac("conv2d") and is_mac("linear") and is_mac("matmul")
    assert not is_mac("softmax") and category_of("other") == "unmodelled" and category_of("nope") == ""
    assert not OP_KINDS.get("reduce").streamable and OP_KINDS.get("eltwise").by_function


def test_an_unregistered_kind_is_a_workload_error() -> None:
    with pytest.raises(WorkloadError, match=r"unknown op kind 'rotary'"):
        _one_op("rotary")


def test_a_category_must_be_known() -> None:
    with pytest.raises(UsageError, match="category must be one of"):
        register_op_kind("test_kinds_bad", "magic")  # type: ignore[arg-type]


def test_a_registered_kind_runs_where_an_engine_lists_it(tmp_path) -> None:
    register_op_kind("test_kinds_rotary", "vector", description="rotary position embedding", replace=True)
    w = _one_op("test_kinds_rotary")
    # generic16's vector unit does not list it: a mapping error naming the op and its kind, not a default price
    with pytest.raises(MappingError, match=r"op op \(test_kinds_rotary\) has no engine"):
        simulate(GENERIC, w)
    with pytest.raises(MappingError, match=r"op op \(test_kinds_rotary\) is assigned to engine 'pe'"):
        simulate(GENERIC, w, overrides=["mapping.assign.test_kinds_rotary=pe"])
    r = simulate(GENERIC, w, overrides=["mapping.assign.test_kinds_rotary=vec",
                                        "engines.vec.ops.test_kinds_rotary={cycles_per_element: 2}"])
    (rec,) = [o for o in r.ops if o.op == "op"]
    assert rec.kind == "test_kinds_rotary" and rec.engine == "vec" and rec.status == "simulated"
    assert rec.cycles >= 64 * 32 * 2 // 16


def test_an_unmodelled_kind_is_reported_not_simulated() -> None:
    register_op_kind("test_kinds_opaque", "unmodelled", replace=True)
    r = simulate(GENERIC, _one_op("test_kinds_opaque"))
    assert [o.status for o in r.ops] == ["unmodelled"] and r.latency_cycles == 0
