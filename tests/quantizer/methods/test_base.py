"""The method registry and the QuantConfig record: lazy built-ins, decorator and entry-point registration,
validation on construction."""
from __future__ import annotations

import importlib.metadata
import re
import sys
import types
from collections.abc import Iterator

import pytest

from quantizer.errors import UsageError
from quantizer.methods import base
from quantizer.methods.base import (METHODS, Method, QuantConfig, get_method, method_class, method_description,
                                    method_names, method_origin, register_method)


class _Toy(Method):
    """A toy method (tests only)."""

    name = "toy"
    families = ("vit",)


@pytest.fixture
def toy() -> Iterator[type[Method]]:
    register_method(_Toy)
    yield _Toy
    METHODS.pop("toy", None)


def test_builtins_are_known_by_name_and_imported_on_first_use() -> None:
    assert {"fqvit", "p2vit", "trio"} <= set(method_names())
    assert method_origin("p2vit") == "quantizer.methods.p2vit"
    cls = method_class("p2vit")
    assert cls.name == "p2vit" and METHODS["p2vit"] is cls
    assert method_description("p2vit") == (cls.__doc__ or "").strip().splitlines()[0]  # same line either way


def test_a_decorated_method_is_listed_with_its_module_as_origin(toy: type[Method]) -> None:
    assert "toy" in method_names()
    assert method_origin("toy") == __name__
    assert method_description("toy") == "A toy method (tests only)."
    assert isinstance(get_method("toy"), _Toy)
    assert QuantConfig("toy").method == "toy"


def test_unknown_method_is_one_line() -> None:
    known = ", ".join(method_names())  # the built-ins and any installed plugin's
    assert {"fqvit", "p2vit", "trio"} <= set(method_names())
    with pytest.raises(UsageError, match=re.escape(f"unknown quantization method 'gptq' (known: {known})")):
        get_method("gptq")
    with pytest.raises(UsageError, match="unknown quantization method 'gptq'"):
        QuantConfig("gptq")


def test_entry_points_of_the_quantizer_methods_group_register_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pip-installed package names a module in the ``quantizer.methods`` group; loading it registers methods."""
    plugin = types.ModuleType("toy_quant_plugin")

    class Plugged(Method):
        """Plugged in through an entry point."""

        name = "plugged"
        families = ("vit",)

    Plugged.__module__ = plugin.__name__
    plugin.Plugged = Plugged  # type: ignore[attr-defined]
    ep = importlib.metadata.EntryPoint("plugged", "toy_quant_plugin", base.ENTRY_POINT_GROUP)

    def fake_entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        return [ep] if group == base.ENTRY_POINT_GROUP else []

    def load(self: importlib.metadata.EntryPoint) -> object:
        register_method(Plugged)
        return plugin

    monkeypatch.setitem(sys.modules, "toy_quant_plugin", plugin)
    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    monkeypatch.setattr(importlib.metadata.EntryPoint, "load", load)
    base.load_entry_points.cache_clear()
    try:
        assert "plugged" in method_names()
        assert method_origin("plugged") == "toy_quant_plugin"
    finally:
        METHODS.pop("plugged", None)
        base.load_entry_points.cache_clear()


def test_a_broken_plugin_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = importlib.metadata.EntryPoint("broken", "no_such_module_xyz", base.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda *, group: [ep])
    base.load_entry_points.cache_clear()
    try:
        with pytest.raises(UsageError, match=r"quantization plugin 'broken' \(no_such_module_xyz\) failed to load"):
            method_names()
    finally:
        monkeypatch.undo()
        base.load_entry_points.cache_clear()


@pytest.mark.parametrize("kwargs, match", [
    ({"w_bits": 1}, "w_bits must be an integer from 2 to 8, got 1"),
    ({"a_bits": 9}, "a_bits must be an integer from 2 to 8, got 9"),
    ({"w_bits": True}, "w_bits must be an integer from 2 to 8, got True"),
    ({"observer": "max"}, "observer must be one of minmax, ema, percentile, omse, got 'max'"),
    ({"ptf": "yes"}, "ptf must be true or false, got 'yes'"),
])
def test_quant_config_validates_itself(kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        QuantConfig("fqvit", **kwargs)


def test_ptf_and_lis_default_to_the_method_and_round_trip() -> None:
    p2 = QuantConfig("p2vit", options={"alpha_fc1": 0.6})
    assert (p2.ptf, p2.lis) == (True, True)
    assert (QuantConfig("fqvit").ptf, QuantConfig("p2vit", ptf=False).ptf) == (False, False)
    assert QuantConfig.from_dict(p2.to_dict()) == p2
