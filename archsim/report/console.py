"""A one-screen plain-text summary of a run for stdout: at most ~30 lines of 100 columns, ASCII units."""
from __future__ import annotations

import os
import textwrap
from typing import Any, Mapping

from archsim.report.markdown import format_bytes, format_number
from archsim.report.summary import build_summary, compute_engines, safe_ratio, top_stalls
from archsim.result import Result

WIDTH = 100
MAX_ENGINES = 8
MAX_NOTES = 3
TOP_COMPONENTS = 3
MAX_UNMODELLED_NAMES = 5
TOP_STALLS = 3


def micro_joules(value_pj: float) -> str:
    """An energy in uJ (ASCII, for any terminal) with four significant digits."""
    return f"{format_number(value_pj / 1e6)} uJ"


def _engine_lines(s: Mapping[str, Any]) -> list[str]:
    """One line per engine (the first few), with MAC utilisation and busy share."""
    engines = list(s["engines"].items())
    lines = [f"  {'engine':<20} {'type':<12} {'util':>7} {'busy':>7} {'ops':>6} {'MACs':>16}"]
    for name, e in engines[:MAX_ENGINES]:
        util = f"{100 * e['utilization']:.1f}%" if e["peak_macs_per_cycle"] else "-"
        kind = f"{e['type']} (adds)" if e.get("adder_tree") else e["type"]
        lines.append(
            f"  {name[:20]:<20} {kind[:12]:<12} {util:>7} {100 * e['busy_fraction']:>6.1f}% {e['ops']:>6} "
            f"{e['macs']:>16,}"
        )
    if len(engines) > MAX_ENGINES:
        lines.append(f"  ... and {len(engines) - MAX_ENGINES} more engines (see summary.json)")
    return lines


def _energy_lines(s: Mapping[str, Any]) -> list[str]:
    """Total energy and the components that spend most of it."""
    total = s["energy_pj_total"]
    top = sorted(s["energy_pj_by_component"].items(), key=lambda item: (-item[1], item[0]))[:TOP_COMPONENTS]
    shares = ", ".join(f"{name} {100 * safe_ratio(value, total):.1f}%" for name, value in top)
    lines = [f"energy     {micro_joules(total)} total, {micro_joules(s['energy_pj_per_inference'])} per image, "
             f"{format_number(s['energy_pj_per_mac'])} pJ/MAC"]
    return lines + ([f"  top      {shares}"] if shares else [])


def _stall_lines(result: Result) -> list[str]:
    """Where the compute engines' time went besides computing: their top stall reasons (nothing if none)."""
    engines = compute_engines(result)
    top = top_stalls(result, engines)[:TOP_STALLS]
    if not top:
        return []
    time = sum(sum(result.stalls.get(name, {}).values()) for name in engines)
    busy = safe_ratio(sum(result.stalls.get(name, {}).get("busy", 0) for name in engines), time)
    waits = ", ".join(f"{reason} {100 * fraction:.1f}%" for reason, fraction in top)
    return [f"stalls     {'+'.join(engines)} busy {100 * busy:.1f}%, waiting on {waits}"]


def _area_lines(s: Mapping[str, Any]) -> list[str]:
    """The area proxy's total and its largest components; nothing when the run did not record it."""
    total = s.get("area_mm2")
    if total is None:
        return []
    top = sorted(s["area_by_component"].items(), key=lambda item: (-item[1], item[0]))[:TOP_COMPONENTS]
    shares = ", ".join(f"{name} {100 * safe_ratio(value, total):.1f}%" for name, value in top)
    line = f"area       {format_number(total)} mm2 ({s['area_source']}, 45 nm proxy)"
    return [line + (f"; {shares}" if shares else "")]


def _unmodelled_lines(s: Mapping[str, Any]) -> list[str]:
    """Nothing when every op was modelled; otherwise a line that cannot be missed."""
    names = s["unmodelled"]
    if not names:
        return []
    shown = ", ".join(names[:MAX_UNMODELLED_NAMES]) + (", ..." if len(names) > MAX_UNMODELLED_NAMES else "")
    return [f"!! WARNING: {len(names)} UNMODELLED OP(S), their cost is NOT included: {shown}"]


def _quant_lines(s: Mapping[str, Any]) -> list[str]:
    """Which quantizer prepared the model (nothing for a float trace, whose bits came from ``defaults``)."""
    q = s.get("workload", {}).get("quant")
    if not isinstance(q, Mapping):
        return []
    flags = [name for name in ("ptf", "lis", "mixed") if q.get(name)]
    line = f"quant      {q.get('method')} W{q.get('w_bits')}A{q.get('a_bits')}"
    line += f" ({', '.join(flags)})" if flags else ""
    if q.get("quantized"):
        line += f", from {q['quantized']}"
    return [line]


def _note_lines(notes: list[str]) -> list[str]:
    """The run's caveats, the first few."""
    lines = []
    for note in notes[:MAX_NOTES]:
        lines += textwrap.wrap(note, WIDTH, initial_indent="note       ", subsequent_indent=" " * 11)
    if len(notes) > MAX_NOTES:
        lines.append(f"           ... and {len(notes) - MAX_NOTES} more notes (see report.md)")
    return lines


def format_summary(result: Result, out_dir: str | os.PathLike[str] | None = None) -> str:
    """The stdout summary of a run; ``out_dir`` is where the report files went (omitted if None)."""
    s = build_summary(result)
    ops = s["ops"]
    lines = [
        f"archsim: {s['model']} on {s['config']} (batch {s['batch']}, {s['clock_mhz']:g} MHz)",
        f"latency    {s['latency_cycles']:,} cycles = {format_number(s['latency_ms'])} ms   "
        f"FPS {format_number(s['fps'])}",
        *_quant_lines(s),
        f"compute    {s['total_macs']:,} MACs; {format_number(s['achieved_gops'])} GOPS achieved of "
        f"{format_number(s['peak_gops'])} "
        f"peak ({100 * safe_ratio(s['achieved_gops'], s['peak_gops']):.1f}%)",
        "engines",
        *_engine_lines(s),
        *_stall_lines(result),
        f"DRAM       read {format_bytes(s['dram_read_bytes'])}, write {format_bytes(s['dram_write_bytes'])}, "
        f"{format_number(s['dram_bytes_per_cycle'])} B/cycle",
        *_energy_lines(s),
        *_area_lines(s),
        f"ops        {ops['simulated']} simulated, {ops['folded']} folded, {ops['unmodelled']} unmodelled",
        *_unmodelled_lines(s),
        *_note_lines(s["notes"]),
    ]
    if out_dir is not None:
        lines.append(f"output     {os.fspath(out_dir)}")
    return "\n".join(clip(line) for line in lines)


def clip(line: str) -> str:
    """Cut a line to the screen width, marking the cut."""
    return line if len(line) <= WIDTH else line[: WIDTH - 3] + "..."
