"""report.html: the run on one page that works offline: configuration, workload, headline figures, why the engines
waited, the top layers by time and by energy, the plots and the command that reproduces the run.

Self-contained: the PNGs are embedded as base64 ``data:`` URIs, the style sheet is inline, and nothing is fetched
(no scripts, fonts or remote images), so the file can be mailed or archived alone. Numbers come from the same
:func:`~archsim.report.summary.build_summary` and formatting helpers as report.md, so the two always agree.
"""
from __future__ import annotations

import base64
import os
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from archsim.report.markdown import format_bytes, format_number, micro_joules, percent
from archsim.report.summary import build_summary, safe_ratio, write_text_atomic
from archsim.result import STALL_REASONS, OpRecord, Result

#: How many layers the two top-N tables list.
TOP_LAYERS = 10

#: Caption of each embedded image kind; others are captioned by their kind.
IMAGE_CAPTIONS: dict[str, str] = {
    "timeline": "Timeline: what each component did over the run",
    "energy": "Energy by component and op kind",
}

#: Colour of each stall reason in the bars of the bottleneck table.
REASON_COLORS: dict[str, str] = {"busy": "#2ca02c", "dram": "#d62728", "buffer": "#ff7f0e", "producer": "#9467bd",
                                 "noc": "#17becf", "idle": "#c7c7c7"}

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;vertical-align:top}
th{background:#f5f5f5;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f5f5f5;padding:.6em;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
img{max-width:100%;height:auto;border:1px solid #eee}figure{margin:1em 0}figcaption{color:#555}
.bar{display:flex;width:240px;height:12px;border:1px solid #ccc}.bar span{display:block;height:100%}
.key span{display:inline-block;width:10px;height:10px;margin:0 .3em 0 1em;vertical-align:middle}
.muted{color:#666}
"""


# ---- building blocks ------------------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: str = "") -> str:
    """An HTML table; ``numeric`` has one letter per column, ``r`` for right-aligned numbers (cells are escaped
    unless they are :class:`_Raw`)."""
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = []
    for row in rows:
        cells = []
        for index, value in enumerate(row):
            css = ' class="n"' if index < len(numeric) and numeric[index] == "r" else ""
            text = value.html if isinstance(value, _Raw) else escape(str(value))
            cells.append(f"<td{css}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Raw:
    """Cell content that is already HTML."""

    def __init__(self, html: str) -> None:
        self.html = html


def _section(title: str, *parts: str, anchor: str = "") -> str:
    ident = f' id="{escape(anchor)}"' if anchor else ""
    return f"<section{ident}><h2>{escape(title)}</h2>{''.join(parts)}</section>"


def _p(text: str, css: str = "") -> str:
    return f'<p{f" class={chr(34)}{css}{chr(34)}" if css else ""}>{escape(text)}</p>'


def _bar(shares: Mapping[str, float]) -> _Raw:
    """A horizontal stacked bar of stall-reason shares (fractions of the run)."""
    spans = "".join(f'<span style="width:{100 * share:.2f}%;background:{REASON_COLORS.get(reason, "#888")}" '
                    f'title="{escape(reason)} {percent(share)}"></span>' for reason, share in shares.items() if share > 0)
    return _Raw(f'<div class="bar">{spans}</div>')


def data_uri(png: bytes) -> str:
    """A PNG as a ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ---- sections -------------------------------------------------------------------------------------------------------


def _reproduce(command: str | None) -> str:
    if not command:
        return _section("Reproduce", _p("Not recorded: this report was written through the Python API, not the "
                                        "archsim command.", "muted"), anchor="reproduce")
    return _section("Reproduce", f"<pre>{escape(command)}</pre>", anchor="reproduce")


def _headline(s: Mapping[str, Any], result: Result) -> str:
    macs = s["total_macs"]
    rows: list[tuple[str, str]] = [
        ("latency", f"{s['latency_cycles']:,} cycles = {format_number(s['latency_ms'])} ms"),
        ("throughput", f"{format_number(s['fps'])} FPS (batch {s['batch']})"),
        ("achieved GOPS (2 ops/MAC)", f"{format_number(s['achieved_gops'])} of {format_number(s['peak_gops'])} "
                                      f"peak ({percent(safe_ratio(s['achieved_gops'], s['peak_gops']))})"),
        ("MAC utilization", percent(s["mac_utilization"])),
        ("total MACs", f"{macs:,}"),
        ("energy per inference", micro_joules(s["energy_pj_per_inference"])),
        ("energy per MAC", f"{format_number(safe_ratio(s['energy_pj_total'], macs))} pJ/MAC" if macs else "n/a"),
        ("DRAM read / write", f"{format_bytes(s['dram_read_bytes'])} / {format_bytes(s['dram_write_bytes'])}"),
    ]
    if s.get("area_mm2") is not None:
        rows.append(("area (45 nm proxy)", f"{format_number(s['area_mm2'])} mm² ({s['area_source']})"))
    return _section("Headline", _table(("metric", "value"), rows, "lr"), anchor="headline")


def _configuration(s: Mapping[str, Any], result: Result) -> str:
    engines = [(name, e["type"], e["peak_macs_per_cycle"] or "-", percent(e["busy_fraction"]),
                percent(e["utilization"]) if e["peak_macs_per_cycle"] else "n/a", e["ops"])
               for name, e in s["engines"].items()]
    others = [(name, c["type"], percent(c["busy_fraction"]), f"{c['read_bytes']:,}", f"{c['write_bytes']:,}")
              for name, c in s["components"].items() if name not in s["engines"]]
    return _section(
        "Configuration",
        _p(f"{result.config}: clock {result.clock_mhz:g} MHz, batch {result.batch}, peak "
           f"{s['peak_macs_per_cycle']:,} MACs/cycle."),
        _table(("engine", "type", "peak MACs/cycle", "busy", "utilization", "ops"), engines, "llrrrr"),
        _table(("component", "type", "busy", "read bytes", "write bytes"), others, "llrrr") if others else "",
        anchor="configuration",
    )


def _workload(s: Mapping[str, Any], result: Result) -> str:
    ops = s["ops"]
    meta = [(key, value if isinstance(value, (str, int, float)) else repr(value))
            for key, value in sorted(result.workload_meta.items())]
    parts = [_p(f"{result.model}: {ops['simulated']} simulated ops, {ops['folded']} folded, {ops['unmodelled']} "
                f"unmodelled; {s['total_macs']:,} MACs.")]
    if meta:
        parts.append(_table(("key", "value"), meta))
    if result.unmodelled_ops:
        names = ", ".join(record.op for record in result.unmodelled_ops)
        parts.append(_p(f"UNMODELLED (no time, no energy): {names}"))
    return _section("Workload", *parts, anchor="workload")


def top_stall_reasons(result: Result) -> list[tuple[str, int]]:
    """Stall reasons (not busy, not idle) summed over the engines, largest first; zero ones left out."""
    totals: Counter[str] = Counter()
    for reasons in result.stalls.values():
        for reason, cycles in reasons.items():
            if reason not in ("busy", "idle") and cycles > 0:
                totals[reason] += cycles
    return sorted(totals.items(), key=lambda item: (-item[1], STALL_REASONS.index(item[0])
                                                    if item[0] in STALL_REASONS else len(STALL_REASONS)))


def _bottlenecks(result: Result) -> str:
    if not result.stalls:
        return _section("Bottlenecks", _p("Not recorded by this run.", "muted"), anchor="bottlenecks")
    latency = max(result.latency_cycles, 1)
    reasons = [r for r in STALL_REASONS if any(r in stalls for stalls in result.stalls.values())] or list(
        STALL_REASONS)
    rows = []
    for engine, stalls in result.stalls.items():
        shares = {reason: stalls.get(reason, 0) / latency for reason in reasons}
        rows.append((engine, _bar(shares), *(percent(shares[reason]) for reason in reasons)))
    key = "".join(f'<span style="background:{REASON_COLORS.get(r, "#888")}"></span>{escape(r)}' for r in reasons)
    top = top_stall_reasons(result)
    summary = ("Top stall reasons of the run (engine-cycles, all engines): "
               + ", ".join(f"{reason} {cycles:,}" for reason, cycles in top[:3])) if top else "No stalls recorded."
    counts = Counter(r.bottleneck for r in result.ops if r.status == "simulated" and r.bottleneck)
    by_layer = ("Layers by bottleneck: " + ", ".join(f"{reason} {count}" for reason, count in counts.most_common())
                if counts else "")
    return _section(
        "Bottlenecks",
        _p("Share of the run each engine spent computing (busy) or waiting, and on what: dram = a DRAM transfer it "
           "needs, buffer = a buffer port or space, producer = an input not yet produced (a pipeline bubble), "
           "noc = a NoC link, idle = nothing to do."),
        f'<p class="key">{key}</p>',
        _table(("engine", "", *reasons), rows, "ll" + "r" * len(reasons)),
        _p(summary),
        _p(by_layer) if by_layer else "",
        anchor="bottlenecks",
    )


def _top_layers(result: Result) -> str:
    timed = [r for r in result.ops if r.status == "simulated"]
    by_time = sorted(enumerate(timed), key=lambda pair: (-pair[1].cycles, pair[0]))[:TOP_LAYERS]
    by_energy = sorted(enumerate(timed), key=lambda pair: (-pair[1].energy_pj, pair[0]))[:TOP_LAYERS]
    total = result.energy_pj_total

    def time_row(record: OpRecord) -> tuple[Any, ...]:
        return (record.op, record.kind, record.engine, f"{record.cycles:,}", f"{record.busy_cycles:,}",
                percent(safe_ratio(record.cycles, result.latency_cycles)), record.bottleneck or "-")

    def energy_row(record: OpRecord) -> tuple[Any, ...]:
        return (record.op, record.kind, record.engine, micro_joules(record.energy_pj),
                percent(safe_ratio(record.energy_pj, total)),
                f"{format_number(safe_ratio(record.energy_pj, record.macs))}" if record.macs else "-")

    return _section(
        f"Top {TOP_LAYERS} layers",
        "<h3>By time</h3>",
        _p("Elapsed cycles from first to last activity; busy = cycles its engines computed. Fused or pipelined "
           "ops overlap, so shares need not add up.", "muted"),
        _table(("op", "kind", "engine", "cycles", "busy cycles", "of latency", "bottleneck"),
               [time_row(r) for _, r in by_time], "lllrrrl"),
        "<h3>By energy</h3>",
        _table(("op", "kind", "engine", "energy", "of total", "pJ/MAC"), [energy_row(r) for _, r in by_energy],
               "lllrrr"),
        anchor="layers",
    )


def _plots(images: Mapping[str, bytes]) -> str:
    if not images:
        return _section("Plots", _p("No plots in this run (--no-plots); `archsim plot RUN_DIR` draws them.", "muted"),
                        anchor="plots")
    figures = [f'<figure><img alt="{escape(kind)}" src="{data_uri(png)}"><figcaption>'
               f"{escape(IMAGE_CAPTIONS.get(kind, kind))}</figcaption></figure>" for kind, png in images.items()]
    return _section("Plots", *figures, anchor="plots")


def _notes(result: Result, files: Mapping[str, str]) -> str:
    parts = []
    if result.notes:
        parts.append("<ul>" + "".join(f"<li>{escape(note)}</li>" for note in result.notes) + "</ul>")
    if files:
        links = "".join(f'<li><a href="{escape(Path(target).name)}">{escape(Path(target).name)}</a></li>'
                        for target in files.values())
        parts.append(f"<p>Files beside this one:</p><ul>{links}</ul>")
    return _section("Notes and files", *parts, anchor="notes") if parts else ""


# ---- page -----------------------------------------------------------------------------------------------------------


def render_report_html(result: Result, images: Mapping[str, bytes] | None = None, command: str | None = None,
                       files: Mapping[str, str] | None = None) -> str:
    """The report.html text. ``images`` maps a plot kind (timeline, energy, ...) to PNG bytes, embedded in that
    order; ``command`` is the command line that reproduces the run (None: written through the API); ``files``
    maps output kinds to the sibling files to link (their names only)."""
    s = build_summary(result)
    title = f"{result.model} on {result.config}"
    body = [
        f"<h1>{escape(title)}</h1>",
        _p(f"Batch {result.batch} at {result.clock_mhz:g} MHz. Generated by archsim.", "muted"),
        _headline(s, result),
        _reproduce(command),
        _bottlenecks(result),
        _top_layers(result),
        _plots(images or {}),
        _configuration(s, result),
        _workload(s, result),
        _notes(result, files or {}),
    ]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)} - archsim</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(part for part in body if part) + "\n</body></html>\n")


def write_report_html(result: Result, path: str | os.PathLike[str], images: Mapping[str, bytes] | None = None,
                      command: str | None = None, files: Mapping[str, str] | None = None) -> Path:
    """Write report.html atomically (see :func:`render_report_html`)."""
    return write_text_atomic(path, render_report_html(result, images, command, files))
