"""report.md, the console summary and write_all."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from archsim.report import OUTPUT_FILES, format_summary, write_all
from archsim.report.markdown import render_report_md, write_report_md
from archsim.result import Result

LINKS = {"timeline": "timeline.png", "energy": "energy.png", "trace": "trace.json", "layers": "layers.csv",
         "summary": "summary.json"}


def test_report_sections_and_numbers(result: Result) -> None:
    text = render_report_md(result, LINKS)
    for heading in ("## Headline", "## Engines", "## Components", "## Top 10 ops by busy cycles", "## Energy",
                    "## Unmodelled ops", "## Notes", "## Files"):
        assert heading in text
    assert "1,000 cycles = 0.002 ms" in text
    assert "| total MACs | 43,800 |" in text
    assert "43.8 of 96 peak" in text  # GOPS achieved vs peak
    assert "- random weights and synthetic inputs" in text
    top = text.split("## Top 10 ops by busy cycles")[1].split("##")[0]
    assert top.index("patch_embed") < top.index("blocks.0.proj")  # 200 cycles before 150


def test_area_in_the_headline_and_the_console_only_when_recorded(result: Result) -> None:
    assert "area" not in render_report_md(result, LINKS).split("## Engines")[0]
    assert "\narea " not in format_summary(result)
    with_area = replace(result, area_mm2=2.0, area_by_component={"mac0": 0.5, "sram": 1.5}, area_source="mixed")
    assert "| area (45 nm proxy) | 2 mm² (mixed; largest: sram, 75.0%) |" in render_report_md(with_area, LINKS)
    assert "\narea       2 mm2 (mixed, 45 nm proxy); sram 75.0%, mac0 25.0%\n" in format_summary(with_area)


def test_report_lists_unmodelled_ops_loudly(result: Result) -> None:
    text = render_report_md(result, LINKS)
    section = text.split("## Unmodelled ops")[1].split("##")[0]
    assert "1 unmodelled op(s)" in section and "NOT included" in section
    assert "aten.weird\\|op" in section  # pipe escaped inside the table


def test_report_says_none_when_everything_is_modelled(clean_result: Result) -> None:
    text = render_report_md(clean_result, LINKS)
    assert "None: every op was simulated or folded." in text
    assert text.split("## Notes")[1].split("##")[0].strip() == "None."


def test_report_links_every_file(result: Result, tmp_path: Path) -> None:
    text = write_report_md(result, tmp_path / "report.md", LINKS).read_text(encoding="utf-8")
    assert "![timeline](timeline.png)" in text and "![energy](energy.png)" in text
    for name in ("trace.json", "layers.csv", "summary.json"):
        assert f"[{name}]({name})" in text
    assert "ui.perfetto.dev" in text


def test_console_summary_fits_one_screen(result: Result) -> None:
    text = format_summary(result, "reports/test_accel-tiny_vit")
    lines = text.splitlines()
    assert len(lines) <= 30
    assert max(len(line) for line in lines) <= 100
    assert "tiny_vit" in text and "test_accel" in text and "batch 2" in text
    assert "1,000 cycles" in text and "FPS" in text and "GOPS" in text
    assert "UNMODELLED" in text and "aten.weird|op" in text
    assert "random weights" in text
    assert lines[-1].endswith("reports/test_accel-tiny_vit")
    assert text.isascii()


def test_console_quiet_when_everything_is_modelled(clean_result: Result) -> None:
    text = format_summary(clean_result)
    assert "UNMODELLED" not in text and "0 unmodelled" in text
    assert "output" not in text


def test_write_all_writes_every_file_reproducibly(result: Result, tmp_path: Path) -> None:
    first = write_all(result, tmp_path / "one")
    second = write_all(result, tmp_path / "two" / "nested")
    assert set(first) == set(OUTPUT_FILES)
    for kind, path in first.items():
        assert path.is_file() and path.stat().st_size > 0
        assert path.parent == tmp_path / "one"
        if not path.name.endswith(".png"):
            assert path.read_bytes() == second[kind].read_bytes(), kind
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == sorted(OUTPUT_FILES.values())
    report = first["report"].read_text(encoding="utf-8")
    assert all(name in report for name in OUTPUT_FILES.values() if name != "report.md")
