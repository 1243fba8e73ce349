"""benchmarks/systolic_parity.py: archsim's systolic array against SCALE-Sim on DeiT-S and EfficientViT-B1 GEMMs.

archsim is checked against the recorded SCALE-Sim figures, on the layer shapes traced now. Running SCALE-Sim itself
takes over ten minutes, so only with ``ARCHSIM_SCALESIM=1`` and its venv (``python benchmarks/systolic_parity.py
--setup``) does the test also rerun it and require its fresh figures to equal the recorded ones."""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from helpers import ROOT


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("systolic_parity_bench", ROOT / "benchmarks" / "systolic_parity.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


bench = _bench()


@pytest.mark.slow
def test_parity_with_scalesim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recorded = json.loads(bench.REFERENCE.read_text())
    layers = bench.trace_layers()
    # the recorded layers are the traced models' GEMMs
    assert [(x.label, x.m, x.n, x.k) for x in layers] == \
        [(x["label"], x["m"], x["n"], x["k"]) for x in recorded["layers"]]
    if os.environ.get("ARCHSIM_SCALESIM") == "1":
        assert bench.venv_python(bench.VENV).exists(), \
            "ARCHSIM_SCALESIM=1 needs SCALE-Sim's venv: python benchmarks/systolic_parity.py --setup"
        fresh = tmp_path / "reference.json"
        assert bench.main(["--record", str(fresh)]) == 0  # within 2 %, equal SRAM accesses, no stalls
        assert "| deit_s.qkv | 197 | 1152 | 384 | os |" in capsys.readouterr().out
        assert json.loads(fresh.read_text())["layers"] == recorded["layers"]  # SCALE-Sim is deterministic
    ours = bench.archsim_cycles(layers)
    for x in recorded["layers"]:
        for df in bench.DATAFLOWS:
            assert abs(ours[x["label"], df] / x[df]["cycles"] - 1) <= bench.TOLERANCE, (x["label"], df)
