"""Default report folders: named by what changes the result, never replacing another command's report; every
report records how it was made."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from archsim.cli import build_parser, main
from helpers import MLP_YAML, ROOT

TRIO = str(ROOT / "arch_configs" / "trio.yaml")


def _name(*argv: str) -> str:
    from archsim.cli import _run_name

    args = build_parser().parse_args(["run", TRIO, *argv])
    return _run_name(args, "trio", "efficientvit_b1")


def test_default_names_differ_by_every_option_that_changes_the_result() -> None:
    base = ["--model", "efficientvit_b1"]
    names = {
        _name(*base),
        _name(*base, "--batch", "8"),
        _name(*base, "--resolution", "256"),
        _name(*base, "--quant", "none"),
        _name(*base, "--quant", "trio", "--w-bits", "4"),
        _name(*base, "--set", "dram.channels=2"),
        _name(*base, "--set", "dram.channels=4"),
        _name(*base, "--checkpoint", "weights.pt"),
    }
    assert len(names) == 8
    assert _name(*base) == "trio-efficientvit_b1"
    # the order of --set flags does not change what is simulated, nor the name
    assert (_name(*base, "--set", "a.b=1", "--set", "c.d=2") == _name(*base, "--set", "c.d=2", "--set", "a.b=1"))


def test_summary_records_the_command_overrides_and_resolved_config(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["run", TRIO, "--workload", str(MLP_YAML), "--set", "dram.channels=2", "--quiet", "--no-plots"]
    assert main(argv) == 0
    folders = list((tmp_path / "reports").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("trio-deit_small_mlp_block-set_")
    run = json.loads((folders[0] / "summary.json").read_text())["run"]
    assert run["command"].startswith("archsim run ") and "--set dram.channels=2" in run["command"]
    assert run["overrides"] == ["dram.channels=2"]
    assert run["config"]["dram"]["channels"] == 2 and run["config"]["name"] == "trio"
    assert "archsim run " in (folders[0] / "report.md").read_text()
    assert main(argv) == 0  # the same command again replaces its own report


def test_a_default_folder_of_another_command_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["run", TRIO, "--workload", str(MLP_YAML), "--quiet", "--no-plots"]
    assert main(argv) == 0
    folder = tmp_path / "reports" / "trio-deit_small_mlp_block"
    summary = folder / "summary.json"
    data = json.loads(summary.read_text())
    data["run"]["key"] = "0" * 12  # as if another config file of the same name had made it
    summary.write_text(json.dumps(data))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another command" in err and "--out" in err
    assert json.loads(summary.read_text())["run"]["key"] == "0" * 12  # untouched


@pytest.mark.parametrize("program", ["archsim", "quantizer"])
def test_ctrl_c_while_the_cli_loads_is_one_line(program: str) -> None:
    """A Ctrl-C that lands while the console script imports the CLI (before its own try) is no traceback."""
    code = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def imp(name, *a, **k):\n"
        f"    if name == '{program}.cli':\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = imp\n"
        f"from {program}.entry import main\n"
        "sys.exit(main())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130
    assert proc.stderr == f"{program}: interrupted\n"


@pytest.mark.parametrize("flag,value", [("--resolution", "300"), ("--batch", "4"), ("--checkpoint", "w.pt")])
def test_model_options_without_a_model_are_refused(flag: str, value: str, capsys) -> None:
    """A saved trace or workload has its own shapes: --resolution or --batch would be silently ignored."""
    assert main(["run", TRIO, "--workload", str(MLP_YAML), flag, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and "only apply with --model" in err
