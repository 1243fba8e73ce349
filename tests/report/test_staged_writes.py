"""write_all and write_compare replace their folder whole or not at all (archsim/outputs.py's staged_folder): an
interrupted writer leaves the previous folder byte-identical and nothing beside it, on the atomic-exchange path and
on the two-rename fallback; a folder holding other files is refused, not deleted."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import archsim.outputs
import archsim.report
from archsim.compare import Variant, rows
from archsim.errors import UsageError
from archsim.report import OUTPUT_FILES, write_all
from archsim.report.compare import COMPARE_FILES, write_compare
from archsim.result import Result


@pytest.fixture(autouse=True)
def no_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """The PNGs are tested in test_plots.py; here only where the files go matters, so skip drawing them."""
    for name in ("write_timeline_png", "write_energy_png"):
        monkeypatch.setattr(archsim.report, name, lambda result, path: Path(path).write_bytes(b"png"))


def _previous(folder: Path, names: tuple[str, ...] | list[str]) -> dict[str, bytes]:
    folder.mkdir()
    for i, name in enumerate(names):
        (folder / name).write_text(f"previous {i}\n")
    return _snapshot(folder)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _interrupt(result: Result, path: Path) -> None:
    Path(path).write_bytes(b"\x89PNG half")
    raise KeyboardInterrupt


def test_an_interrupted_write_into_a_new_nested_folder_leaves_nothing(result: Result, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archsim.report, "write_timeline_png", _interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_all(result, tmp_path / "a" / "b" / "report")
    assert os.listdir(tmp_path) == []  # nor the parents it had to create


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_rerun_replaces_the_folder_whole(result: Result, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           exchange: bool) -> None:
    if not exchange:
        monkeypatch.setattr(archsim.outputs, "_exchange", lambda a, b: False)
    out = tmp_path / "r"
    _previous(out, ["report.md", "summary.json"])
    paths = write_all(result, out)
    assert sorted(os.listdir(out)) == sorted(OUTPUT_FILES.values()) and os.listdir(tmp_path) == ["r"]
    assert {p.parent for p in paths.values()} == {out} and all(p.stat().st_size > 0 for p in paths.values())


def test_an_interrupted_rerun_leaves_the_previous_folder_byte_identical(result: Result, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r"
    before = _previous(out, list(OUTPUT_FILES.values()))
    monkeypatch.setattr(archsim.report, "write_timeline_png", _interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_all(result, out)
    assert _snapshot(out) == before and os.listdir(tmp_path) == ["r"]


def test_ctrl_c_between_the_two_renames_puts_the_previous_folder_back(result: Result, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archsim.outputs, "_exchange", lambda a, b: False)
    real_rename = os.rename

    def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(src).name == "new":  # the staged folder moving in: the old one is already aside
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(archsim.outputs.os, "rename", rename)
    out = tmp_path / "r"
    before = _previous(out, list(OUTPUT_FILES.values()))
    with pytest.raises(KeyboardInterrupt):
        write_all(result, out)
    assert _snapshot(out) == before and os.listdir(tmp_path) == ["r"]


@pytest.mark.parametrize("make", [
    lambda out: (out / "notes.txt").write_text("mine\n"),
    lambda out: (out / "sub").mkdir(),
], ids=["file", "subfolder"])
def test_a_folder_with_other_files_is_refused(result: Result, tmp_path: Path, make) -> None:
    out = tmp_path / "r"
    _previous(out, ["report.md"])
    make(out)
    before = {p.name for p in out.iterdir()}
    with pytest.raises(UsageError, match="holds files this command did not write"):
        write_all(result, out)
    assert {p.name for p in out.iterdir()} == before and os.listdir(tmp_path) == ["r"]


def test_compare_tables_are_written_whole_or_not_at_all(result: Result, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    table = rows([(Variant("a.yaml"), result), (Variant("a.yaml", ("clock_mhz=400",)), result)])
    out = tmp_path / "cmp"
    before = _previous(out, list(COMPARE_FILES))

    def broken(table: object, model: str) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(archsim.report.compare, "format_markdown", broken)  # after compare.csv is written
    with pytest.raises(KeyboardInterrupt):
        write_compare(table, "tiny_vit", out)
    assert _snapshot(out) == before and os.listdir(tmp_path) == ["cmp"]
    monkeypatch.undo()
    assert write_compare(table, "tiny_vit", out) == (out / "compare.csv", out / "compare.md")
    assert sorted(os.listdir(out)) == ["compare.csv", "compare.md"]  # given no results, write_compare draws no chart
    assert os.listdir(tmp_path) == ["cmp"]
    assert (out / "compare.md").read_text().startswith("# archsim compare: tiny_vit")
