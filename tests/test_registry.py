"""The registries: names, origins, duplicate and unknown names, and what the built-ins register."""
from __future__ import annotations

import pytest

from archsim.errors import UsageError
from archsim.registry import ENGINE_KINDS, OP_KINDS, POLICIES, Registry


def test_an_entry_remembers_its_origin_and_names_are_sorted() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("b", 2)
    reg.register("a", 1, origin="somewhere")
    assert reg.names() == ["a", "b"]
    assert [e.origin for e in reg.entries()] == ["somewhere", __name__]
    assert reg.get("b") == 2 and reg.find("c") is None and "a" in reg


def test_a_name_registers_once_unless_replaced() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1, origin="first")
    with pytest.raises(UsageError, match=r"widget 'a' is already registered \(by first\)"):
        reg.register("a", 2)
    reg.register("a", 2, replace=True)
    assert reg.get("a") == 2


def test_unknown_names_are_one_line_errors_listing_the_known() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(UsageError, match=r"^unknown widget 'z' \(known: a\)$"):
        reg.get("z")
    with pytest.raises(UsageError, match="non-empty name"):
        reg.register("", 1)


def test_the_builtins_register_through_the_public_calls() -> None:
    assert {"mat", "rmac", "pe_array", "nonlinear", "requant", "dma"} <= set(ENGINE_KINDS.names())
    assert {"generic", "trio", "p2vit"} <= set(POLICIES.names())
    assert {"conv2d", "linear", "matmul", "softmax", "requant", "other"} <= set(OP_KINDS.names())
    builtin = {"mat", "nonlinear", "trio", "generic", "conv2d", "softmax", "other"}
    for registry in (ENGINE_KINDS, POLICIES, OP_KINDS):
        assert {e.origin for e in registry.entries() if e.name in builtin} == {"archsim"}
