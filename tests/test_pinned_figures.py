"""The shipped configs keep their figures: cycles, energy and DRAM traffic pinned on two models.

The figures in tests/data/pinned/figures.json were last re-pinned when the mapper learnt to search (dataflows and
tile counts), double buffering got its own switch and an engine started its next task as soon as its previous one
ended; any change to the simulator's numbers must be deliberate and re-pinned with
``python tests/data/pinned/repin.py``. The fast test simulates the saved traces; the slow one traces the models afresh through ``archsim run``, so
trace extraction and the quantizer bridge are held too.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from archsim import load_config, simulate
from archsim.workloads.ir import Workload
from helpers import ROOT

PINNED = Path(__file__).parent / "data" / "pinned"
FIGURES: dict[str, dict] = json.loads((PINNED / "figures.json").read_text())


def _trace(name: str) -> Workload:
    return Workload.from_dict(json.loads(gzip.decompress((PINNED / name).read_bytes())), source=name)


@pytest.mark.parametrize("key", sorted(FIGURES))
def test_saved_trace_gives_the_pinned_figures(key: str) -> None:
    pin = FIGURES[key]
    result = simulate(load_config(ROOT / pin["config"]), _trace(pin["trace"]))
    assert result.latency_cycles == pin["latency_cycles"]
    assert result.total_macs == pin["total_macs"]
    assert result.dram_read_bytes == pin["dram_read_bytes"]
    assert result.dram_write_bytes == pin["dram_write_bytes"]
    # energy is a float sum of many charges: only the order of additions may move its last bits
    assert result.energy_pj_total == pytest.approx(pin["energy_pj_total"], rel=1e-12, abs=0)


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(FIGURES))
def test_archsim_run_gives_the_pinned_figures(key: str, tmp_path: Path) -> None:
    from archsim.cli import main
    from archsim.report.summary import round_sig

    pin = FIGURES[key]
    args = ["run", str(ROOT / pin["config"]), "--model", pin["model"], "--quiet", "--out", str(tmp_path)]
    if pin["quant"] == "defaults":
        args += ["--quant", "none"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["latency_cycles"] == pin["latency_cycles"]
    assert summary["total_macs"] == pin["total_macs"]
    assert summary["dram_read_bytes"] == pin["dram_read_bytes"]
    assert summary["dram_write_bytes"] == pin["dram_write_bytes"]
    assert summary["energy_pj_total"] == round_sig(pin["energy_pj_total"])


def repin() -> None:
    """Record the current figures of every saved trace in figures.json: run only after a deliberate change to the
    simulator's numbers, and say why in the commit (``python tests/data/pinned/repin.py``)."""
    for pin in FIGURES.values():
        result = simulate(load_config(ROOT / pin["config"]), _trace(pin["trace"]))
        pin.update(latency_cycles=result.latency_cycles, total_macs=result.total_macs,
                   dram_read_bytes=result.dram_read_bytes, dram_write_bytes=result.dram_write_bytes,
                   energy_pj_total=result.energy_pj_total)
    (PINNED / "figures.json").write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")

