"""End-to-end CLI tests: outputs of a run, byte-identical reruns, and bad input -> one line + exit 2."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from archsim.cli import main
from helpers import GENERIC, MLP_YAML, ROOT, TRIO

OUTPUTS = ["summary.json", "layers.csv", "timeline.png", "trace.json", "energy.png", "report.md"]


def _run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_run_yaml_workload_writes_every_output(tmp_path: Path, capsys) -> None:
    code, out, _ = _run_cli(["run", str(GENERIC), "--workload", str(MLP_YAML), "--out", str(tmp_path), "--quiet"], capsys)
    assert code == 0 and out == ""
    for name in OUTPUTS:
        assert (tmp_path / name).stat().st_size > 0, name
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ["model", "config", "clock_mhz", "batch", "latency_cycles", "latency_ms", "fps", "total_macs",
                "dram_read_bytes", "dram_write_bytes", "dram_bytes_per_cycle", "energy_pj_total",
                "energy_pj_by_component", "energy_pj_by_op_kind", "engines", "unmodelled_ops"]:
        assert key in summary, key
    for e in summary["engines"].values():
        assert {"peak_macs_per_cycle", "busy_cycles", "utilization", "macs"} <= set(e)
    rows = list(csv.DictReader((tmp_path / "layers.csv").open()))
    assert {"op", "kind", "engine", "start_cycle", "end_cycle", "macs", "dram_read_bytes", "dram_write_bytes",
            "energy_pj"} <= set(rows[0])
    assert sum(int(r["macs"]) for r in rows) == summary["total_macs"]


def test_two_runs_are_byte_identical(tmp_path: Path, capsys) -> None:
    outs = []
    for i in range(2):
        out = tmp_path / f"r{i}"
        assert _run_cli(["run", str(TRIO), "--workload", str(MLP_YAML), "--out", str(out), "--quiet"], capsys)[0] == 0
        outs.append(out)
    summaries = [json.loads((o / "summary.json").read_text()) for o in outs]
    for s, out in zip(summaries, outs):
        s.pop("host", None)
        assert f"--out {out}" in s["run"].pop("command")  # the one difference: each run records its own command
    assert summaries[0] == summaries[1]
    assert (outs[0] / "layers.csv").read_bytes() == (outs[1] / "layers.csv").read_bytes()
    assert (outs[0] / "trace.json").read_bytes() == (outs[1] / "trace.json").read_bytes()


def test_summary_on_stdout(tmp_path: Path, capsys) -> None:
    code, out, _ = _run_cli(["run", str(GENERIC), "--workload", str(MLP_YAML), "--out", str(tmp_path)], capsys)
    assert code == 0
    assert "latency" in out and "FPS" in out and str(tmp_path) in out
    assert len(out.splitlines()) <= 30


def test_saved_trace_runs(tmp_path: Path, capsys) -> None:
    trace = tmp_path / "mlp.json"
    assert _run_cli(["trace", "--workload", str(MLP_YAML), "--out", str(trace), "--quiet"], capsys)[0] == 0
    code, _, _ = _run_cli(["run", str(GENERIC), "--trace", str(trace), "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert code == 0


def test_validate_and_list(capsys) -> None:
    code, out, _ = _run_cli(["validate", str(TRIO)], capsys)
    # 2,048 multipliers of MAT + R-MAC: the paper's 819.2 GOPS; the K-sum adder tree's 16 x 8 inputs are not in it
    assert code == 0 and "peak: 2048 MACs/cycle = 819.2 GOPS" in out and "engine mat: mat, 1024 MACs/cycle" in out
    assert "engine ksum: mat, 128 MACs/cycle (adder tree: not in the peak)" in out
    code, out, _ = _run_cli(["list"], capsys)
    assert code == 0 and "mat" in out and "conv2d" in out


def _bad_config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return p


def _generic_with(tmp_path: Path, old: str, new: str) -> Path:
    text = GENERIC.read_text()
    assert old in text
    return _bad_config(tmp_path, text.replace(old, new, 1))


BAD = [
    (lambda t: ["run", str(t / "missing.yaml"), "--workload", str(MLP_YAML)], "missing.yaml: no such file"),
    (lambda t: ["run", str(_bad_config(t, "clock_mhz: [\n")), "--workload", str(MLP_YAML)], "YAML syntax error"),
    (lambda t: ["run", str(_generic_with(t, "rows: 16", "rows: -3")), "--workload", str(MLP_YAML)],
     "engines.pe.rows: must be a positive integer, got -3"),
    (lambda t: ["run", str(_generic_with(t, "rows: 16", "rows: 16\n    bogus: 1")), "--workload", str(MLP_YAML)],
     "engines.pe.bogus: unknown key"),
    (lambda t: ["run", str(_generic_with(t, "type: pe_array", "type: warp_drive")), "--workload", str(MLP_YAML)],
     "engines.pe.type: unknown engine type 'warp_drive'"),
    (lambda t: ["run", str(_generic_with(t, "capacity_kib: 128", "capacity_kib: 0.25")), "--workload", str(MLP_YAML)],
     "a tile can never fit"),
    (lambda t: ["run", str(GENERIC), "--workload", str(MLP_YAML), "--set", "mapping.assign.activation=rq"],
     "which cannot run it"),
    (lambda t: ["run", str(GENERIC), "--model", "resnet9000"], "unknown model 'resnet9000'"),
    (lambda t: ["run", str(GENERIC)], "give exactly one of --model, --workload or --trace"),
    (lambda t: ["run", str(GENERIC), "--model", "deit_tiny", "--batch", "0"], "--batch must be a positive"),
    (lambda t: ["run", str(GENERIC), "--workload", str(MLP_YAML), "--set", "nokey"], "expected KEY=VALUE"),
    (lambda t: ["run", str(GENERIC), "--workload", str(MLP_YAML), "--bogus"], "unrecognized arguments: --bogus"),
    (lambda t: ["run", str(GENERIC), "--trace", str(_bad_config(t, "{not json"))], "invalid JSON"),
    (lambda t: ["run", str(GENERIC), "--workload", str(MLP_YAML), "--out", str(_bad_config(t, "x") / "sub")],
     "cannot create the folder"),
    (lambda t: ["trace", "--workload", str(MLP_YAML), "--out", str(_bad_config(t, "x") / "w.json")],
     "cannot create the folder"),
]


@pytest.mark.parametrize("make_args, phrase", BAD, ids=range(len(BAD)))
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, make_args, phrase: str) -> None:
    code, out, err = _run_cli(make_args(tmp_path), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("archsim: error: ")
    assert phrase in lines[0]
    assert "Traceback" not in err


def test_bad_workload_yaml_names_the_key(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "w.yaml"
    bad.write_text("inputs: {x: [1, 4]}\nops:\n  - {name: a, kind: telepathy, in: [x], out: [1, 4]}\n")
    code, _, err = _run_cli(["run", str(GENERIC), "--workload", str(bad)], capsys)
    assert code == 2 and f"{bad}: ops[0].kind: unknown op kind 'telepathy'" in err


def test_console_script_entry_point(tmp_path: Path) -> None:
    """The installed command, in a fresh process: help text and a config error's exit status."""
    proc = subprocess.run([sys.executable, "-m", "archsim", "run", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0
    for option in ["--model", "--workload", "--trace", "--resolution", "--batch", "--set", "--out", "--quiet",
                   "--checkpoint", "--no-cache"]:
        assert option in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "archsim", "run", str(tmp_path / "x.yaml"), "--workload",
                           str(MLP_YAML)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_core_does_not_import_torch(tmp_path: Path) -> None:
    code = ("import sys; from archsim.cli import main; "
            f"rc = main(['run', r'{GENERIC}', '--workload', r'{MLP_YAML}', '--out', r'{tmp_path}', '--quiet']); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch was imported'; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_a_reader_that_goes_away_is_no_traceback() -> None:
    """`archsim list | head -1`: output meets a closed pipe; archsim stops quietly with 141 (128 + SIGPIPE, as
    Unix tools do), without a BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "archsim", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before archsim writes anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""
