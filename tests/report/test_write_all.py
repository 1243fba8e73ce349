"""write_all with and without plots, with a forked renderer, and redraw of a finished run folder from its
result.json.gz: every file in place, the others carried over byte for byte, a failure leaving the folder as it was.
Plots are cheap fakes here (test_plots.py draws the real ones)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import archsim.report
from archsim.errors import UsageError
from archsim.report import OUTPUT_FILES, PLOTS, ZOOM_FILE, Renderer, load_result, redraw, write_all
from archsim.report.render import can_fork
from archsim.result import Result

PNG = b"\x89PNG\r\n\x1a\n"


def fake_png(result: Result, path: Path, zoom: str | None = None) -> None:
    Path(path).write_bytes(PNG + f"{Path(path).name} {zoom}".encode())


@pytest.fixture(autouse=True)
def fake_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    for function in PLOTS.values():
        monkeypatch.setattr(archsim.report, function, fake_png)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_without_plots_there_is_no_png_and_the_html_says_so(result: Result, tmp_path: Path) -> None:
    paths = write_all(result, tmp_path / "r", plots=False)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(
        name for kind, name in OUTPUT_FILES.items() if kind not in PLOTS)
    assert set(paths) == set(OUTPUT_FILES) - set(PLOTS)
    html = paths["html"].read_text(encoding="utf-8")
    assert "data:image/png" not in html and "archsim plot RUN_DIR" in html
    assert "timeline.png" not in paths["report"].read_text(encoding="utf-8")
    assert load_result(paths["result"]) == result


@pytest.mark.parametrize("forked", [pytest.param(True, marks=pytest.mark.skipif(not can_fork(), reason="no fork")),
                                    False], ids=["renderer", "inline"])
def test_write_all_with_a_renderer_matches_inline(result: Result, tmp_path: Path, forked: bool) -> None:
    inline = write_all(result, tmp_path / "inline", command="archsim run x.yaml", zoom="blocks.0")
    renderer = Renderer(preload=(), fork=forked)
    drawn = write_all(result, tmp_path / "drawn", command="archsim run x.yaml", zoom="blocks.0", renderer=renderer)
    assert set(drawn) == set(inline) == {*OUTPUT_FILES, "zoom"}
    assert snapshot(tmp_path / "drawn") == snapshot(tmp_path / "inline")
    assert (tmp_path / "drawn" / ZOOM_FILE).read_bytes().endswith(b"timeline_zoom.png blocks.0")
    html = drawn["html"].read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 3 and "archsim run x.yaml" in html
    assert not renderer.forked  # used up: its worker is gone


def test_redraw_rewrites_plots_and_html_and_keeps_the_rest(result: Result, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r"
    write_all(result, out, plots=False, command="archsim run x.yaml --no-plots")
    before = snapshot(out)
    monkeypatch.setattr(archsim.report, "recorded_command", lambda run_dir: "archsim run x.yaml --no-plots")
    drawn = redraw(out, zoom="blocks.0", renderer=Renderer(preload=(), fork=False))
    after = snapshot(out)
    assert set(drawn) == {*PLOTS, "html", "zoom"}
    assert sorted(after) == sorted([*before, *(OUTPUT_FILES[k] for k in PLOTS), ZOOM_FILE])
    assert all(after[name] == data for name, data in before.items() if name != OUTPUT_FILES["html"])
    html = after[OUTPUT_FILES["html"]].decode()
    assert html.count("data:image/png;base64,") == 3 and "archsim run x.yaml --no-plots" in html
    assert os.listdir(tmp_path) == ["r"]  # swapped whole, nothing left beside it


def test_redraw_of_a_folder_without_a_result_file_changes_nothing(result: Result, tmp_path: Path) -> None:
    out = tmp_path / "r"
    write_all(result, out, plots=False)
    (out / OUTPUT_FILES["result"]).unlink()
    before = snapshot(out)
    with pytest.raises(UsageError, match="result.json.gz: no such file"):
        redraw(out, renderer=Renderer(fork=False))
    assert snapshot(out) == before
    with pytest.raises(UsageError, match="not a run folder"):
        redraw(tmp_path / "missing", renderer=Renderer(fork=False))


def test_a_failing_plot_in_redraw_leaves_the_folder_as_it_was(result: Result, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r"
    write_all(result, out)
    before = snapshot(out)

    def broken(result: Result, path: Path, zoom: str | None = None) -> None:
        Path(path).write_bytes(b"half")
        raise ValueError("no block named stages.9")

    monkeypatch.setattr(archsim.report, "write_timeline_png", broken)
    with pytest.raises(ValueError, match="stages.9"):
        redraw(out, renderer=Renderer(fork=False))
    assert snapshot(out) == before and os.listdir(tmp_path) == ["r"]
