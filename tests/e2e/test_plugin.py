"""The example plugin (examples/archsim-example-plugin), installed: archsim finds its engine kind, op kind,
lowering, model and quantization method through entry points, and its config runs end to end.

Without the plugin installed these tests skip, except under CI (``CI`` set), which installs it (.ci/run)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

from archsim.workloads.ir import Op, Tensor, Workload
from helpers import ROOT

PLUGIN = ROOT / "examples" / "archsim-example-plugin"
CONFIG = PLUGIN / "configs" / "bitserial.yaml"


def _installed() -> bool:
    try:
        distribution("archsim-example-plugin")
    except PackageNotFoundError:
        return False
    return True


if not _installed():
    if os.environ.get("CI"):
        pytest.fail("archsim-example-plugin is not installed, and CI must install it (.ci/run)", pytrace=False)
    pytest.skip("archsim-example-plugin is not installed (pip install -e examples/archsim-example-plugin)",
                allow_module_level=True)


def archsim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``archsim ARGS`` in a fresh interpreter, so plugins load from their entry points as for a user."""
    return subprocess.run([sys.executable, "-m", "archsim", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def _row(listing: str, name: str) -> str:
    return next((line for line in listing.splitlines() if line.split()[:1] == [name]), "")


@pytest.mark.parametrize("what, name, origin", [
    ("engines", "bitserial", "archsim_example_plugin.engine"),
    ("ops", "glu", "archsim_example_plugin.ops"),
    ("models", "example_vit", "archsim_example_plugin.model"),
    ("methods", "minmax_linear", "archsim_example_plugin.method"),
])
def test_archsim_list_shows_the_plugins_names_with_their_origin(what: str, name: str, origin: str) -> None:
    proc = archsim("list", what)
    assert proc.returncode == 0, proc.stderr
    row = _row(proc.stdout, name)
    assert f"[{origin}]" in row, proc.stdout
    if what == "engines":  # the built-ins are still there, and still archsim's
        assert "[archsim]" in _row(proc.stdout, "mat") and "[archsim]" in _row(proc.stdout, "pe_array")


def test_importing_the_plugin_does_not_import_torch() -> None:
    code = ("import sys, archsim_example_plugin, archsim_example_plugin.method\n"
            "from archsim.registry import load_plugins\n"
            "load_plugins()\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_validate_the_plugins_config() -> None:
    proc = archsim("validate", str(CONFIG))
    assert proc.returncode == 0, proc.stderr
    assert "engine bsa: bitserial 32x32, weight-serial, 256 MACs/cycle at 4-bit" in proc.stdout


@pytest.mark.slow  # traces the plugin's model with torch
def test_run_the_plugins_config_on_its_model(tmp_path: Path) -> None:
    proc = archsim("run", str(CONFIG), "--model", "example_vit", "--quiet", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["latency_cycles"] > 0
    assert summary["unmodelled_ops"] == 0 and summary["ops"]["unmodelled"] == 0
    bsa = summary["engines"]["bsa"]
    assert bsa["type"] == "bitserial" and 0 <= bsa["utilization"] <= 1
    assert summary["latency_cycles"] >= summary["total_macs"] / summary["peak_macs_per_cycle"]
    assert summary["workload"]["quant"]["method"] == "minmax_linear" and summary["workload"]["quant"]["w_bits"] == 4
    rows = list(csv.DictReader((tmp_path / "layers.csv").open()))
    glu = [r for r in rows if r["kind"] == "glu"]
    assert len(glu) == 2 and {r["engine"] for r in glu} == {"vec"}  # one GLU per block, on the vector unit
    assert {r["engine"] for r in rows if r["kind"] in ("linear", "matmul", "conv2d")} == {"bsa"}


# ---- the engine kind's cost model, in-process (the plugin registered when archsim loaded its entry points) ------


def _linear(bits_w: int, m: int = 64, k: int = 96, n: int = 384) -> Workload:
    tensors = {"x": Tensor("x", (1, m, k), 8), "w": Tensor("w", (n, k), bits_w, is_weight=True),
               "y": Tensor("y", (1, m, n), 8)}
    return Workload("fc", tensors, (Op("fc", "linear", ("x",), "y", weights=("w",), macs=m * k * n),), {})


def test_bitserial_cycles_follow_the_closed_form_and_scale_with_the_serial_bits() -> None:
    from archsim.extend import ENGINE_KINDS, MappingError
    from archsim_example_plugin.engine import BitSerialEngine

    kind = ENGINE_KINDS.get("bitserial")
    assert kind.config_model is BitSerialEngine
    cfg = BitSerialEngine(rows=32, cols=32, serial_operand="weight", peak_bits=4)
    costs = {}
    for bits in (8, 4):
        w = _linear(bits)
        costs[bits] = kind.cost(cfg, w.ops[0], w.tensors, "linear")
    # ceil(384 / 32) output-channel folds x ceil(96 / 32) reduction folds x 64 tokens x weight bits
    assert costs[8].cycles == 12 * 3 * 64 * 8 == 2 * costs[4].cycles
    assert costs[8].energy_pj == pytest.approx(64 * 96 * 384 * 8 * cfg.step_pj)
    assert costs[4].weight_read_bytes == 384 * 96 // 2 and costs[4].act_read_bytes == 64 * 96 * 12
    assert kind.peak_macs_per_cycle(cfg) == 32 * 32 // 4  # quoted at the narrowest serial width it runs
    with pytest.raises(MappingError, match="narrower than peak_bits"):  # it would beat its own peak
        kind.cost(cfg, _linear(2).ops[0], _linear(2).tensors, "linear")
    act_serial = cfg.model_copy(update={"serial_operand": "activation"})
    assert kind.cost(act_serial, w.ops[0], w.tensors, "linear").cycles == costs[8].cycles  # 8-bit activations


def test_the_quantization_method_calibrates_and_reloads() -> None:
    """minmax_linear on example_vit: per-tensor specs, W8A8 output close to float, strict state-dict round trip."""
    torch = pytest.importorskip("torch")
    from archsim.extend import load_plugins
    from quantizer.core.spec import collect_specs
    from quantizer.methods.base import QuantConfig, get_method
    from quantizer.zoo import build

    load_plugins()  # example_vit is registered by the archsim plugin, which the quantizer alone does not load
    model, shape = build("example_vit")
    batches = [torch.randn(shape, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    with torch.no_grad():
        reference = model(batches[0])
    cfg = QuantConfig("minmax_linear", w_bits=8, a_bits=8)
    method = get_method("minmax_linear")
    method.quantize(model, batches, cfg)
    with torch.no_grad():
        out = model(batches[0])
    error = float((out - reference).norm() / reference.norm())
    assert 0 < error < 0.1, error
    specs = collect_specs(model)
    linears = {name: s for name, s in specs.items() if s.kind == "linear"}
    assert len(linears) == 2 * 4 + 1  # qkv, proj, fc1, fc2 per block, and the head
    assert all(s.weight_granularity == "tensor" and s.weight_bits == 8 for s in linears.values())
    rebuilt, _ = build("example_vit")
    method.prepare(rebuilt, cfg)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(rebuilt(batches[0]), out)
