"""The main command of the README on a real timm model, in a fresh process, as a new user runs it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

OUTPUTS = ["summary.json", "layers.csv", "timeline.png", "trace.json", "energy.png", "report.md"]


@pytest.mark.slow
def test_trio_efficientvit_b1(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "archsim", "run", "arch_configs/trio.yaml", "--model", "efficientvit_b1", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "efficientvit_b1" and summary["config"] == "trio"
    assert abs(summary["total_macs"] - 0.519e9) / 0.519e9 < 0.01
    assert summary["unmodelled_ops"] == 0
    assert 0 < summary["latency_cycles"] and summary["fps"] > 0
    assert "random weights" in proc.stdout  # the run says it used no real weights
    assert "random weights" in (out / "report.md").read_text()


@pytest.mark.slow
def test_deit_small_on_generic_config_and_cached_retrace(tmp_path: Path) -> None:
    from archsim.cli import main

    for i in range(2):  # the second run hits the trace cache and must give the same layers.csv
        assert main(["run", str(ROOT / "arch_configs" / "generic16.yaml"), "--model", "deit_small",
                     "--out", str(tmp_path / f"r{i}"), "--quiet"]) == 0
    assert (tmp_path / "r0" / "layers.csv").read_bytes() == (tmp_path / "r1" / "layers.csv").read_bytes()
