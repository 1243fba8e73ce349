"""The quantization options of `archsim run` and `archsim trace`: defaults from the config's quant: section, the
flags that override it, and bad input -> one line on stderr, exit 2, no traceback."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from archsim.cli import main
from archsim.workloads.ir import Workload
from helpers import GENERIC, MLP_YAML, ROOT, TRIO


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _trace(tmp_path: Path, capsys, *args: str) -> Workload:
    out = tmp_path / "t.json"
    code, _, err = _cli(["trace", *args, "--out", str(out), "--quiet"], capsys)
    assert code == 0, err
    return Workload.load(out)


def test_trio_config_quantizes_with_trio_by_default(tmp_path: Path, capsys) -> None:
    code, out, err = _cli(["run", str(TRIO), "--model", "efficientvit_b1", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "quant      trio W8A8" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    quant = summary["workload"]["quant"]
    assert (quant["method"], quant["w_bits"], quant["a_bits"]) == ("trio", 8, 8)
    assert summary["energy_pj_by_op_kind"]["requant"] > 0 and summary["energy_pj_by_op_kind"]["log2"] > 0


def test_quant_none_falls_back_to_the_defaults_section(tmp_path: Path, capsys) -> None:
    w = _trace(tmp_path, capsys, "--model", "efficientvit_b1", "--config", str(TRIO), "--quant", "none")
    assert "quant" not in w.meta and w.meta["scale_kind"] == "pot"
    assert "log2" not in w.op_kinds()


def test_flags_override_the_config_section(tmp_path: Path, capsys) -> None:
    w = _trace(tmp_path, capsys, "--model", "efficientvit_b1", "--config", str(TRIO), "--w-bits", "4")
    assert (w.meta["quant"]["method"], w.meta["quant"]["w_bits"]) == ("trio", 4)
    w = _trace(tmp_path, capsys, "--model", "deit_tiny", "--quant", "fqvit", "--a-bits", "6")
    assert (w.meta["quant"]["method"], w.meta["quant"]["a_bits"]) == ("fqvit", 6)
    assert w.meta["act_bits"] == 6


def test_set_reaches_the_quant_section(tmp_path: Path, capsys) -> None:
    code, _, err = _cli(["run", str(GENERIC), "--model", "deit_tiny", "--set", "quant={method: fqvit, lis: true}",
                         "--out", str(tmp_path), "--quiet"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["workload"]["quant"]["lis"] is True


@pytest.mark.parametrize("args, message", [
    (["run", str(GENERIC), "--model", "deit_small", "--quant", "trio"],
     "method 'trio' does not support deit_small (family vit; it supports efficientvit)"),
    (["run", str(TRIO), "--model", "deit_small"],
     ("trio.yaml: quant.method: method 'trio' does not support deit_small (family vit; it supports efficientvit); "
      "methods for vit: fqvit, ", "p2vit, packqvit; pass --quant METHOD, or --quant none for the float graph")),  # + plugins
    (["run", str(GENERIC), "--model", "deit_small", "--quant", "gptq"], "--quant: unknown method 'gptq'"),
    (["run", str(GENERIC), "--model", "deit_small", "--quant", "fqvit", "--w-bits", "12"],
     "--w-bits must be an integer from 2 to 8, got 12"),
    (["run", str(GENERIC), "--model", "deit_small", "--w-bits", "4"], "--w-bits and --a-bits need a quantizer"),
    (["run", str(GENERIC), "--workload", str(MLP_YAML), "--quant", "fqvit"], "--quant only apply with --model"),
    (["run", str(GENERIC), "--model", "deit_small", "--set", "quant.method=gptq"],
     "generic16.yaml: quant.method: unknown quantization method 'gptq' (known: fqvit, "),
    (["run", str(GENERIC), "--model", "deit_small", "--set", "quant={method: fqvit, w_bits: 16}"],
     "generic16.yaml: quant.w_bits: must be an integer from 2 to 8, got 16"),
    (["run", str(GENERIC), "--model", "deit_small", "--set", "quant={method: fqvit, observer: best}"],
     "generic16.yaml: quant.observer: must be one of"),
    (["trace", "--quantized", str(MLP_YAML), "--out", "x.json"], "not a quantized model saved by quantizer"),
    (["trace", "--quantized", "missing.pt", "--out", "x.json"], "missing.pt: no such file"),
    (["trace", "--model", "deit_tiny", "--quantized", "m.pt", "--quant", "fqvit", "--out", "x.json"],
     "--quantized fixes the method and the bit widths"),
])
def test_bad_quant_input_is_one_line_and_exit_2(args: list[str], message: str | tuple[str, ...], capsys,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``message``: a part of the error line, or parts in order (installed plugins may add methods between)."""
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(args, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("archsim: error: "), err
    parts = (message,) if isinstance(message, str) else message
    assert all(part in err for part in parts), err
    assert [err.index(part) for part in parts] == sorted(err.index(part) for part in parts)


def test_bad_yaml_quant_section_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GENERIC.read_text() + "\nquant:\n  method: trio\n  a_bits: 1\n")
    proc = subprocess.run([sys.executable, "-m", "archsim", "run", str(bad), "--model", "efficientvit_b1"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"archsim: error: {bad}: quant.a_bits: must be an integer from 2 to 8, got 1"
    assert "Traceback" not in proc.stderr
