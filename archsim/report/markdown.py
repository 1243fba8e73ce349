"""report.md: a human-readable report of one run that ties the other outputs together.

All numbers come from :func:`archsim.report.summary.build_summary` (and the op records for the per-op table), so
the report never disagrees with summary.json.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from archsim.report.units import energy_unit
from archsim.report.layers import op_bound
from archsim.report.summary import build_summary, compute_engines, safe_ratio, top_stalls, write_text_atomic
from archsim.result import STALL_REASONS, Result

TOP_OPS = 10

#: Keys of the ``files`` argument that get special treatment (image embeds, the Perfetto hint).
IMAGE_FILES: tuple[str, ...] = ("timeline", "energy")
FILE_DESCRIPTIONS: dict[str, str] = {
    "trace": "open it in https://ui.perfetto.dev (drag and drop the file) to browse every span and op",
    "layers": "one row per op: timing, MACs, DRAM traffic, energy",
    "summary": "the headline numbers, machine-readable",
    "timeline": "Gantt chart of component activity",
    "energy": "energy by component and by op kind",
}


# ---- formatting helpers ------------------------------------------------------------------------------------------


def cell(value: Any) -> str:
    """Text of a table cell, with pipes and newlines made harmless."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str) -> list[str]:
    """A GitHub-flavoured markdown table; ``align`` has one letter per column, ``l`` or ``r``."""
    rule = ["---:" if letter == "r" else "---" for letter in align]
    lines = ["| " + " | ".join(cell(name) for name in header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines


def percent(fraction: float) -> str:
    """A fraction as a percentage with one decimal."""
    return f"{100 * fraction:.1f}%"


def format_number(value: float) -> str:
    """Four significant digits, but large values in full with separators (1,234,567 rather than 1.235e+06)."""
    return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def micro_joules(value_pj: float) -> str:
    """An energy in µJ, the unit of the headline numbers."""
    return f"{format_number(value_pj / 1e6)} µJ"


def format_bytes(count: int) -> str:
    """Bytes in decimal units (1 MB = 1e6 B) with the exact count alongside."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit} ({count:,} B)"
    return f"{count:,} B"


def destination(target: str) -> str:
    """A link destination; one with spaces is wrapped in angle brackets."""
    return f"<{target}>" if " " in target else target


# ---- sections ----------------------------------------------------------------------------------------------------


def _headline(s: Mapping[str, Any]) -> list[str]:
    """The one table a reader must see."""
    ops = s["ops"]
    rows = [
        ("latency", f"{s['latency_cycles']:,} cycles = {format_number(s['latency_ms'])} ms"),
        ("throughput", f"{format_number(s['fps'])} FPS (batch {s['batch']})"),
        ("total MACs", f"{s['total_macs']:,}"),
        ("achieved GOPS (2 ops/MAC)",
         f"{format_number(s['achieved_gops'])} of {format_number(s['peak_gops'])} peak "
         f"({percent(safe_ratio(s['achieved_gops'], s['peak_gops']))})"),
        ("energy", micro_joules(s["energy_pj_total"])),
        ("energy per inference", micro_joules(s["energy_pj_per_inference"])),
        *_area_rows(s),
        ("DRAM read", format_bytes(s["dram_read_bytes"])),
        ("DRAM write", format_bytes(s["dram_write_bytes"])),
        ("DRAM traffic per cycle", f"{format_number(s['dram_bytes_per_cycle'])} B/cycle"),
        ("ops", f"{ops['simulated']} simulated, {ops['folded']} folded, {ops['unmodelled']} unmodelled"),
        ("simulator events", f"{s['events']:,}"),
    ]
    return ["## Headline", "", *table(("metric", "value"), rows, "lr")]


def _area_rows(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The area proxy's headline row (total, how it was obtained, largest component); none when not recorded."""
    total = s.get("area_mm2")
    if total is None:
        return []
    top = max(s["area_by_component"].items(), key=lambda item: (item[1], item[0]), default=None)
    largest = f"; largest: {top[0]}, {percent(safe_ratio(top[1], total))}" if top else ""
    return [("area (45 nm proxy)", f"{format_number(total)} mm² ({s['area_source']}{largest})")]


def _engines(s: Mapping[str, Any]) -> list[str]:
    """Engine utilisation: MAC utilisation (work done vs peak) next to busy time (time occupied)."""
    rows = [
        (name, e["type"], e["peak_macs_per_cycle"], f"{e['macs']:,}", f"{e['busy_cycles']:,}",
         percent(e["busy_fraction"]), percent(e["utilization"]) if e["peak_macs_per_cycle"] else "n/a", e["ops"])
        for name, e in s["engines"].items()
    ]
    header = ("engine", "type", "peak MACs/cycle", "MACs", "busy cycles", "busy", "utilization", "ops")
    return ["## Engines", "", "*busy* = share of the latency the engine was occupied; *utilization* = MACs done "
            "over peak MACs/cycle x latency.", "", *table(header, rows, "llrrrrrr")]


def _components(s: Mapping[str, Any]) -> list[str]:
    """Busy time and traffic per component."""
    rows = [
        (name, c["type"], f"{c['busy_cycles']:,}", percent(c["busy_fraction"]), f"{c['read_bytes']:,}",
         f"{c['write_bytes']:,}")
        for name, c in s["components"].items()
    ]
    header = ("component", "type", "busy cycles", "busy", "read bytes", "write bytes")
    return ["## Components", "", *table(header, rows, "llrrrr")]


def _top_ops(result: Result) -> list[str]:
    """The ops their engines computed longest for (busy cycles), with the elapsed time beside: an op that mostly
    waited inside a slow fusion group is long but not costly. Elapsed times overlap when fused or pipelined."""
    timed = [r for r in result.ops if r.status == "simulated" and r.cycles > 0]
    ranked = sorted(enumerate(timed), key=lambda pair: (-pair[1].busy_cycles, -pair[1].cycles, pair[0]))[:TOP_OPS]
    unit = energy_unit(max((r.energy_pj for _, r in ranked), default=0.0))
    rows = [
        (rank, r.op, r.kind, r.engine, f"{r.busy_cycles:,}", f"{r.cycles:,}",
         percent(safe_ratio(r.cycles, result.latency_cycles)), f"{r.macs:,}",
         f"{r.dram_read_bytes + r.dram_write_bytes:,}", unit.format(r.energy_pj), op_bound(r) or "-",
         r.bottleneck or "-")
        for rank, (_, r) in enumerate(ranked, start=1)
    ]
    header = ("#", "op", "kind", "engine", "busy cycles", "elapsed cycles", "elapsed % of latency", "MACs",
              "DRAM bytes", "energy", "bound", "bottleneck")
    lines = [f"## Top {TOP_OPS} ops by busy cycles", ""]
    if not rows:
        return lines + ["No simulated op took any cycles."]
    note = ("*busy*: cycles its engines computed for the op; *elapsed*: its first to last activity, waits included. "
            "Ops in a fusion group or pipeline overlap in time, so the elapsed shares need not add up to 100%.")
    return lines + [*table(header, rows, "rlllrrrrrrll"), "", note]


def _bottlenecks(result: Result) -> list[str]:
    """Why the engines waited (stall attribution, docs/insight.md): the run's top reasons for the compute engines,
    every engine's split of the run, and each layer's bottleneck (the reason that took most of its elapsed time)."""
    lines = ["## Bottlenecks", ""]
    if not result.stalls:
        return lines + ["This run recorded no stall attribution."]
    engines = compute_engines(result) or list(result.stalls)
    top = top_stalls(result, engines)
    waits = ", ".join(f"**{reason}** {percent(fraction)}" for reason, fraction in top[:3]) or "nothing"
    lines += [f"Top stall reasons of the compute engines ({', '.join(engines)}): {waits} of their time.", "",
              "*busy*: computing; *dram*: blocked on a DRAM transfer it needs; *buffer*: on a buffer port, buffer "
              "or FIFO space (back-pressure); *producer*: an input not yet produced (a pipeline bubble); *noc*: on "
              "a NoC link; *idle*: nothing to do. Each engine's figures add up to the latency.", ""]
    rows = [(name, *(percent(safe_ratio(stalls.get(reason, 0), result.latency_cycles)) for reason in STALL_REASONS))
            for name, stalls in result.stalls.items()]
    lines += [*table(("engine", *STALL_REASONS), rows, "l" + "r" * len(STALL_REASONS)), ""]
    timed = [r for r in result.ops if r.status == "simulated" and r.cycles > 0 and r.stalls]
    rows = [(r.op, r.kind, r.engine, f"{r.cycles:,}", f"{r.busy_cycles:,}", r.bottleneck or "-",
             percent(safe_ratio(r.stalls.get(r.bottleneck, 0), r.cycles)) if r.bottleneck else "-") for r in timed]
    header = ("layer", "kind", "engine", "elapsed cycles", "busy cycles", "bottleneck", "of its time")
    return lines + ["Each layer's bottleneck: the reason that took most of its elapsed time (*busy*: compute-bound).",
                    "", *table(header, rows, "lllrrlr")]


def _mapping(result: Result) -> list[str]:
    """One line per simulated op: the mapper's choice and what the processing groups lose against one group."""
    timed = [r for r in result.ops if r.status == "simulated" and r.mapping]
    lines = ["## Mapping", ""]
    if not timed:
        return lines + ["No op was mapped."]
    mac_ops = [r for r in timed if r.macs]
    lost = sum(r.group_loss_cycles for r in mac_ops)
    compute = sum(r.compute_bound_cycles for r in mac_ops)
    lines += [
        "Each engine's dataflow in brackets (`split`: how its processing groups share the op; `reduce`: what a "
        "lane's multipliers reduce over; `lanes`: what its lanes run in parallel), the tile count, the loop order "
        "when neither operand fits on chip, and where the output goes (`fifo` to the next fused op, `chip` kept "
        "in the activation buffer, `dram`). *Groups lose*: cycles of the op's slowest part over a perfect share "
        "of one processing group's cycles, and why.",
        "",
        f"Over all MAC ops the processing groups lose {lost:,} cycles against one group "
        f"({percent(safe_ratio(lost, compute))} of their compute bound).",
        "",
    ]
    rows = [(r.op, r.kind, f"`{r.mapping}`", f"{r.group_loss_cycles:,}" if r.group_loss_cycles else "",
             r.group_loss) for r in timed]
    return lines + table(("op", "kind", "mapping", "groups lose (cycles)", "why"), rows, "lllrl")


def _energy_table(title: str, what: str, values: Mapping[str, float]) -> list[str]:
    """One energy breakdown, largest first, with each entry's share."""
    total = sum(values.values())
    items = sorted(values.items(), key=lambda item: (-item[1], item[0]))
    unit = energy_unit(max(values.values(), default=0.0))
    rows = [(name, unit.format(value), percent(safe_ratio(value, total))) for name, value in items]
    body = table((what, "energy", "share"), rows, "lrr") if rows else ["No energy recorded."]
    return [f"### {title}", "", *body, ""]


def _energy(s: Mapping[str, Any]) -> list[str]:
    """Energy by component and by op kind, and whether the two breakdowns add up to the same total."""
    by_component, by_kind = s["energy_pj_by_component"], s["energy_pj_by_op_kind"]
    lines = ["## Energy", "", f"Total {micro_joules(s['energy_pj_total'])}, "
             f"{micro_joules(s['energy_pj_per_inference'])} per inference.", ""]
    lines += _energy_table("By component", "component", by_component)
    lines += _energy_table("By op kind", "op kind", by_kind)
    gap = sum(by_component.values()) - sum(by_kind.values())
    if abs(gap) > 1e-6 * max(abs(s["energy_pj_total"]), 1.0):
        direction = "less" if gap > 0 else "more"
        lines += [f"The op-kind breakdown sums to {micro_joules(sum(by_kind.values()))}, {micro_joules(abs(gap))} "
                  f"{direction} than the component total: that energy is not attributed to an op kind.", ""]
    return lines


def _unmodelled(result: Result) -> list[str]:
    """Every op whose cost is missing from the numbers, by name; never hidden."""
    missing = result.unmodelled_ops
    lines = ["## Unmodelled ops", ""]
    if not missing:
        return lines + ["None: every op was simulated or folded."]
    lines += [f"**{len(missing)} unmodelled op(s): their cost is NOT included in any number of this report.**", ""]
    return lines + table(("op", "kind", "scope"), [(r.op, r.kind, r.scope or "-") for r in missing], "lll")


def _notes(result: Result) -> list[str]:
    """The simulator's caveats about this run."""
    return ["## Notes", "", *([f"- {note}" for note in result.notes] or ["None."])]


def _files(files: Mapping[str, str]) -> list[str]:
    """Links to the other outputs, with the plots embedded."""
    lines = ["## Files", ""]
    for key in IMAGE_FILES:
        if key in files:
            lines += [f"![{key}]({destination(files[key])})", ""]
    for key, target in files.items():
        description = FILE_DESCRIPTIONS.get(key, key)
        lines.append(f"- [{Path(target).name}]({destination(target)}): {description}")
    return lines


# ---- report ------------------------------------------------------------------------------------------------------


def render_report_md(result: Result, files: Mapping[str, str], run: Mapping[str, Any] | None = None) -> str:
    """The report.md text; ``files`` maps output kinds (timeline, energy, trace, layers, summary) to link targets;
    ``run`` (see :func:`archsim.provenance.record`) adds how to make the run again."""
    s = build_summary(result)
    sections = [
        [f"# {result.model} on {result.config}", "",
         f"Batch {result.batch} at {result.clock_mhz:g} MHz. Generated by archsim."],
        _reproduce(run),
        _headline(s),
        _engines(s),
        _components(s),
        _bottlenecks(result),
        _top_ops(result),
        _energy(s),
        _unmodelled(result),
        _notes(result),
        _files(files),
        _mapping(result),
    ]
    return "\n\n".join("\n".join(section).rstrip("\n") for section in sections) + "\n"


def write_report_md(result: Result, path: str | os.PathLike[str], files: Mapping[str, str],
                    run: Mapping[str, Any] | None = None) -> Path:
    """Write report.md atomically; link targets in ``files`` should be relative to ``path``'s folder."""
    return write_text_atomic(path, render_report_md(result, files, run))


def _reproduce(run: Mapping[str, Any] | None) -> list[str]:
    """How the run was made: the command, the config file and each ``--set`` override (the resolved config is in
    summary.json under ``run.config``)."""
    if run is None:
        return []
    lines = ["## How to make this run again", "", "```bash", str(run.get("command", "")), "```", ""]
    lines.append(f"Config file `{run.get('config_file', '')}`"
                 + (", overrides: " + ", ".join(f"`{o}`" for o in run.get("overrides", ())) if run.get("overrides")
                    else ", no overrides") + "; the resolved config is in summary.json (`run.config`).")
    return lines
