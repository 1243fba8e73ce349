"""archsim reaches the quantizer through one module, archsim.workloads.bridge: it alone imports quantizer, it is
torch-free to import, and quantizer methods registered anywhere are accepted by config validation and --quant."""
from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from archsim.config import load_config
from archsim.errors import ConfigError, UnsupportedModelError, UsageError
from archsim.workloads import bridge
from helpers import GENERIC, ROOT


def _imports_quantizer(path: Path) -> bool:
    """True if ``path`` imports quantizer anywhere (module top, inside a function, under TYPE_CHECKING)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "quantizer" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "quantizer":
            return True
    return False


def test_the_bridge_is_the_only_archsim_module_importing_quantizer() -> None:
    importers = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "archsim").rglob("*.py") if _imports_quantizer(p))
    assert importers == ["archsim/workloads/bridge.py"]


def test_importing_the_bridge_does_not_import_torch() -> None:
    code = "import archsim.workloads.bridge, sys; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_quantizer_errors_become_archsim_errors() -> None:
    with pytest.raises(UsageError, match="unknown model 'nope'"):
        bridge.model_spec("nope")
    with pytest.raises(UsageError, match="unknown quantization method 'gptq'"):
        bridge.quant_config("gptq")
    with pytest.raises(UnsupportedModelError, match="no"):
        with bridge.archsim_errors():
            raise bridge.QuantizerUnsupportedModelError("no")


# ---- a method registered with the quantizer's register_method ---------------------------------------------------------
def _fake() -> ModuleType:
    """tests/quantizer/fake_method.py, loaded by path (tests/quantizer is not an importable package)."""
    name = "quantizer_tests_fake_method"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "quantizer" / "fake_method.py")
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


@pytest.fixture
def fake_method() -> Iterator[str]:
    """The fake method, registered as a plugin would (``register_method``), for one test."""
    from quantizer.methods.base import METHODS

    mod = _fake()
    bridge.register_method(mod.FakeLinearMethod)
    yield mod.NAME
    METHODS.pop(mod.NAME, None)


def test_a_registered_method_is_listed_with_its_origin(fake_method: str) -> None:
    assert fake_method in bridge.method_names()
    assert bridge.method_origin(fake_method) == "quantizer_tests_fake_method"


def test_a_registered_method_is_accepted_by_config_validation(fake_method: str) -> None:
    cfg = load_config(GENERIC, [f"quant.method={fake_method}", "quant.w_bits=4"])
    assert isinstance(cfg.quant, bridge.QuantConfig)
    assert (cfg.quant.method, cfg.quant.w_bits) == (fake_method, 4)


def test_a_registered_method_is_accepted_by_the_quant_flag(fake_method: str) -> None:
    from archsim.cli import _quant_config

    args = argparse.Namespace(model="deit_tiny", quantized=None, quant=fake_method, w_bits=None, a_bits=6)
    assert _quant_config(args, None) == bridge.QuantConfig(fake_method, a_bits=6)


def test_an_unknown_method_names_the_file_and_key_or_the_flag() -> None:
    known = ", ".join(bridge.method_names())  # the built-ins and any installed plugin's
    with pytest.raises(ConfigError, match=re.escape(f"generic16.yaml: quant.method: unknown quantization method "
                                                    f"'gptq' (known: {known}, or none)")):
        load_config(GENERIC, ["quant.method=gptq"])
    from archsim.cli import _quant_config

    args = argparse.Namespace(model="deit_tiny", quantized=None, quant="gptq", w_bits=None, a_bits=None)
    with pytest.raises(UsageError, match=re.escape(f"--quant: unknown method 'gptq' (known: {known}, or none)")):
        _quant_config(args, None)
