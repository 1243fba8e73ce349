"""The quantizer's output files (quantizer/outputs.py): `save --out` and `eval --json` refuse an empty path, a
symlink, a FIFO, a folder and their own --checkpoint in one line before any work, and write whole or not at all;
a closed pipe and Ctrl-C end quietly with 141 and 130."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

import quantizer.cli
from quantizer.cli import main
from quantizer.outputs import write_text_atomic


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any model building fails the test: every refusal here must come before the work."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was built before the output check")

    monkeypatch.setattr(quantizer.cli, "_setup", refuse)


def _symlink(t: Path) -> Path:
    (t / "target").write_text("keep\n")
    (t / "link").symlink_to(t / "target")
    return t / "link"


def _fifo(t: Path) -> Path:
    os.mkfifo(t / "fifo")
    return t / "fifo"


def _checkpoint(t: Path) -> Path:
    (t / "float.pth").write_bytes(b"weights")
    return t / "float.pth"


CASES = [
    (lambda t: "", "empty path"),
    (_symlink, "is a symbolic link"),
    (_fifo, "is not a regular file"),
    (lambda t: t, "is a folder"),
    (_checkpoint, "would overwrite the input"),
]


@pytest.mark.parametrize("make_out, phrase", CASES, ids=["empty", "symlink", "fifo", "folder", "checkpoint"])
@pytest.mark.parametrize("command", ["save", "eval"])
def test_bad_outputs_are_one_line_before_the_work(tmp_path: Path, capsys, no_work, command: str, make_out,
                                                  phrase: str) -> None:
    out = str(make_out(tmp_path))
    before = sorted(os.listdir(tmp_path))
    args = (["save", "deit_tiny", "--method", "fqvit", "--out", out] if command == "save"
            else ["eval", "deit_tiny", "--json", out])
    code = main([*args, "--checkpoint", str(tmp_path / "float.pth")])
    stdout, err = capsys.readouterr()
    option = "--out" if command == "save" else "--json"
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert err.startswith(f"quantizer: error: {option}") and phrase in err, err
    assert sorted(os.listdir(tmp_path)) == before
    if phrase == "is a symbolic link":
        assert (tmp_path / "link").is_symlink() and (tmp_path / "target").read_text() == "keep\n"


def test_an_interrupted_json_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "eval.json"
    path.write_text("previous\n")

    def ctrl_c(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic(path, "new\n")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["eval.json"] and path.read_text() == "previous\n"
    write_text_atomic(path, "new\n")
    assert os.listdir(tmp_path) == ["eval.json"] and path.read_text() == "new\n"


@pytest.mark.parametrize("raised, code, err", [(BrokenPipeError, 141, ""),
                                               (KeyboardInterrupt, 130, "quantizer: interrupted\n")])
def test_a_closed_pipe_and_ctrl_c_end_quietly(monkeypatch: pytest.MonkeyPatch, capsys, raised: type[BaseException],
                                              code: int, err: str) -> None:
    def command(args: argparse.Namespace) -> int:
        raise raised

    monkeypatch.setitem(quantizer.cli.COMMANDS, "list", command)
    assert main(["list"]) == code
    assert capsys.readouterr().err == err
