"""report.html: self-contained (images as data: URIs, inline style, nothing fetched), with the sections a reader
needs: headline, the command to reproduce, bottlenecks from the stall attribution, top layers by time and energy."""
from __future__ import annotations

import base64
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

from archsim.report.html import render_report_html, top_stall_reasons, write_report_html
from archsim.result import Result

PNG = b"\x89PNG\r\n\x1a\nfake image bytes"


class References(HTMLParser):
    """Every URL-valued attribute and every tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "action", "poster") and value is not None:
                self.urls.append((tag, name, value))


def parse(text: str) -> References:
    parser = References()
    parser.feed(text)
    return parser


def with_stalls(result: Result) -> Result:
    stalls = {"mac0": {"busy": 600, "dram": 250, "buffer": 0, "producer": 100, "noc": 0, "idle": 50},
              "mac1": {"busy": 330, "dram": 0, "buffer": 120, "producer": 500, "noc": 0, "idle": 50},
              "nl0": {"busy": 170, "dram": 0, "buffer": 0, "producer": 0, "noc": 30, "idle": 800}}
    ops = tuple(replace(r, busy_cycles=r.cycles // 2, stalls={"busy": r.cycles // 2, "dram": r.cycles - r.cycles // 2})
                if r.status == "simulated" else r for r in result.ops)
    return replace(result, stalls=stalls, ops=ops)


def test_self_contained_no_external_references(result: Result, tmp_path: Path) -> None:
    files = {"summary": "summary.json", "trace": "trace.json"}
    text = write_report_html(with_stalls(result), tmp_path / "report.html", {"timeline": PNG, "energy": PNG},
                             "archsim run a.yaml --model m", files).read_text(encoding="utf-8")
    page = parse(text)
    assert not {"script", "link", "iframe", "object", "embed"} & page.tags
    sources = [url for tag, name, url in page.urls if name == "src"]
    assert len(sources) == 2 and all(url.startswith("data:image/png;base64,") for url in sources)
    assert base64.b64decode(sources[0].split(",", 1)[1]) == PNG
    links = [url for tag, name, url in page.urls if name == "href"]
    assert links == ["summary.json", "trace.json"]  # sibling files only: no scheme, no absolute path
    assert not re.search(r"(https?:|ftp:|file:)?//", text.replace("<!DOCTYPE html>", ""))
    assert "@import" not in text and "url(" not in text


def test_sections_and_numbers(result: Result) -> None:
    text = render_report_html(with_stalls(result), {}, "archsim run a.yaml --model m --set x=1")
    for heading in ("Headline", "Reproduce", "Bottlenecks", "Top 10 layers", "Plots", "Configuration", "Workload"):
        assert f"<h2>{heading}</h2>" in text
    assert "<pre>archsim run a.yaml --model m --set x=1</pre>" in text
    assert "1,000 cycles" in text and "tiny_vit" in text and "test_accel" in text
    assert "blocks.0.qkv" in text and "aten.weird|op" in text  # top layer, unmodelled op named
    assert "Top stall reasons of the run (engine-cycles, all engines): producer 600, dram 250, buffer 120" in text
    assert "--no-plots" in text  # no images: says how to get them


def test_escapes_names_and_says_when_the_command_is_unknown(result: Result) -> None:
    odd = replace(result, model="<b>x</b>", notes=("a <script> note",))
    text = render_report_html(odd, {}, None)
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text and "<script>" not in text
    assert "Not recorded" in text


def test_top_stall_reasons_leave_out_busy_and_idle(result: Result) -> None:
    assert top_stall_reasons(with_stalls(result)) == [("producer", 600), ("dram", 250), ("buffer", 120),
                                                      ("noc", 30)]
    assert top_stall_reasons(result) == []
