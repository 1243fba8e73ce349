"""Where the CLI writes (archsim/outputs.py): report folders swapped in whole or not at all, outputs that refuse
symlinks, FIFOs, their own inputs and empty paths in one line, default folders that stay under reports/, and a
closed pipe that ends quietly."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import archsim.report
import archsim.report.layers
from archsim.cli import main
from archsim.outputs import safe_name
from archsim.report import OUTPUT_FILES
from helpers import GENERIC, MLP_YAML, ROOT

RUN = ["run", str(GENERIC), "--workload", str(MLP_YAML), "--quiet"]


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def no_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip drawing the two PNGs (the slow part of a report); the tests here are about where files go."""
    for name in ("write_timeline_png", "write_energy_png"):
        monkeypatch.setattr(archsim.report, name, lambda result, path: Path(path).write_bytes(b"png"))


def test_an_interrupted_report_leaves_the_previous_folder_as_it_was(tmp_path: Path, capsys,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r"
    out.mkdir()
    for i, name in enumerate(OUTPUT_FILES.values()):  # an earlier run's report
        (out / name).write_text(f"previous run {i}\n")
    before = _snapshot(out)

    def half_then_ctrl_c(result: object, path: Path) -> None:
        Path(path).write_text("op,kind\nhalf")
        raise KeyboardInterrupt

    monkeypatch.setattr(archsim.report.layers, "write_layers_csv", half_then_ctrl_c)  # after summary.json
    code, _, err = _cli([*RUN, "--out", str(out)], capsys)
    assert code == 130 and err == "archsim: interrupted\n"
    assert _snapshot(out) == before
    assert os.listdir(tmp_path) == ["r"]  # no staging folder, no old copy beside it


def test_a_rerun_replaces_the_whole_folder(tmp_path: Path, capsys, no_plots) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "report.md").write_text("old\n")
    (out / ".summary.json.0123456789ab.tmp").write_text("left by a crashed writer\n")
    assert _cli([*RUN, "--out", str(out)], capsys)[0] == 0
    assert sorted(os.listdir(out)) == sorted(OUTPUT_FILES.values())
    assert (out / "report.md").read_text() != "old\n" and os.listdir(tmp_path) == ["r"]


def test_a_folder_with_other_files_is_refused_not_replaced(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    code, out, err = _cli([*RUN, "--out", str(tmp_path)], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--out" in err and "notes.txt" in err
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_a_mapping_error_leaves_no_folder(tmp_path: Path, capsys) -> None:
    code, _, err = _cli([*RUN, "--set", "mapping.assign.activation=rq", "--out", str(tmp_path / "a" / "b")], capsys)
    assert code == 2 and "which cannot run it" in err and err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def _symlink(t: Path) -> Path:
    (t / "target.json").write_text("keep\n")
    (t / "link.json").symlink_to(t / "target.json")
    return t / "link.json"


def _fifo(t: Path) -> Path:
    os.mkfifo(t / "fifo")
    return t / "fifo"


def _own_input(t: Path) -> Path:
    copy = t / "w.yaml"
    copy.write_bytes(MLP_YAML.read_bytes())
    return copy


@pytest.mark.parametrize("make_out, phrase", [
    (_symlink, "is a symbolic link"),
    (_fifo, "is a device, FIFO or socket"),
    (_own_input, "would overwrite the input"),
    (lambda t: t, "is a folder, expected a file name"),
], ids=["symlink", "fifo", "own-input", "folder"])
def test_trace_out_refuses_what_it_must_not_replace(tmp_path: Path, capsys, make_out, phrase: str) -> None:
    out = make_out(tmp_path)
    workload = out if phrase == "would overwrite the input" else MLP_YAML
    before = sorted(os.listdir(tmp_path))
    code, stdout, err = _cli(["trace", "--workload", str(workload), "--out", str(out), "--quiet"], capsys)
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert err.startswith(f"archsim: error: --out {out}: {phrase}")
    assert sorted(os.listdir(tmp_path)) == before  # nothing written, nothing left
    if phrase == "is a symbolic link":
        assert out.is_symlink() and (tmp_path / "target.json").read_text() == "keep\n"
    if phrase == "would overwrite the input":
        assert out.read_bytes() == MLP_YAML.read_bytes()


def test_trace_writes_its_file_and_nothing_beside_it(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sub" / "mlp.json"
    assert _cli(["trace", "--workload", str(MLP_YAML), "--out", str(out), "--quiet"], capsys)[0] == 0
    assert os.listdir(tmp_path / "sub") == ["mlp.json"] and out.read_text().startswith("{")


@pytest.mark.parametrize("args", [
    RUN,
    ["trace", "--workload", str(MLP_YAML)],
    ["compare", str(GENERIC), "--set", "clock_mhz=400", "--workload", str(MLP_YAML)],
    ["sweep", "--config", str(GENERIC), "--workload", str(MLP_YAML), "--grid", "engines.pe.rows=8"],
], ids=["run", "trace", "compare", "sweep"])
def test_an_empty_out_is_an_error(args: list[str], capsys) -> None:
    code, stdout, err = _cli([*args, "--out", ""], capsys)
    assert code == 2 and stdout == "" and err == "archsim: error: --out: empty path\n"


def test_sweep_out_refuses_a_fifo(tmp_path: Path, capsys) -> None:
    out = _fifo(tmp_path)
    code, _, err = _cli(["sweep", "--config", str(GENERIC), "--workload", str(MLP_YAML), "--grid",
                         "engines.pe.rows=8", "--out", str(out)], capsys)
    assert code == 2 and "is a device, FIFO or socket" in err and err.count("\n") == 1


@pytest.mark.parametrize("name", ["../../x", "/abs/x", "..", ".hidden", "a/../../b"])
def test_safe_name_is_one_plain_component(name: str) -> None:
    safe = safe_name(name)
    assert "/" not in safe and "\\" not in safe and ".." not in safe and not safe.startswith(".") and safe


def test_a_config_name_cannot_send_the_default_folder_out_of_reports(tmp_path: Path, capsys, no_plots,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    code, out, err = _cli([*RUN, "--set", "name=../../x"], capsys)
    assert code == 0, err
    (folder,) = (work / "reports").iterdir()
    assert folder.name.startswith(safe_name("../../x-deit_small_mlp_block") + "-set_")
    assert sorted(os.listdir(folder)) == sorted(OUTPUT_FILES.values())
    assert sorted(os.listdir(tmp_path)) == ["a"] and os.listdir(tmp_path / "a") == ["b"]


def test_a_reader_that_stops_after_one_line_ends_it_quietly() -> None:
    """`archsim list | head -1`: the reader takes one line and closes the pipe; archsim exits 0 (it had written
    everything) or 141 (a later write met the closed pipe), never with a traceback or a second line."""
    proc = subprocess.Popen([sys.executable, "-m", "archsim", "list"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b"models:\n"
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141) and err == ""
