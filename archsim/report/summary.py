"""summary.json: the headline numbers of one run, in a stable, diffable form.

Besides :func:`build_summary` and :func:`write_summary`, this module holds the small helpers every report writer
shares (deterministic float rounding, JSON-safe conversion, atomic file writes), so that all outputs of a run agree
on their numbers and none is ever left half-written.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import platform
import secrets
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from archsim.result import STALL_REASONS, Result

#: Bumped when a key of summary.json changes meaning or disappears (adding keys does not bump it).
SUMMARY_SCHEMA_VERSION = 1

#: Significant digits kept for every float written by the report package.
SIG_DIGITS = 6

#: Op statuses always present in ``summary["ops"]``, so the key set does not depend on the model.
OP_STATUSES: tuple[str, ...] = ("simulated", "folded", "unmodelled")


# ---- shared helpers ----------------------------------------------------------------------------------------------


def round_sig(value: float, digits: int = SIG_DIGITS) -> float:
    """Round to ``digits`` significant digits, so float noise never shows up as a diff between two runs."""
    value = float(value)
    if value == 0.0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def format_float(value: float) -> str:
    """A float as text, rounded like :func:`round_sig` (for CSV cells and the like)."""
    return repr(round_sig(value))


def json_safe(value: Any) -> Any:
    """Turn ``value`` into plain JSON data: floats rounded, non-finite floats as ``None``, containers recursed.

    Unknown objects (numpy scalars/arrays, paths, enums) become their ``tolist()``/``str()`` form rather than
    making ``json.dumps`` fail on some user-supplied workload metadata.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return round_sig(number) if math.isfinite(number) else None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted((json_safe(item) for item in value), key=repr)
    if hasattr(value, "tolist"):
        return json_safe(value.tolist())
    return str(value)


def safe_ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or 0.0 when the denominator is zero (an empty or zero-latency run)."""
    return numerator / denominator if denominator else 0.0


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds.

    The writer inside the block must create the temporary file itself (so it gets the usual umask permissions).
    On any failure the temporary file is removed and ``path`` keeps its previous content, if any.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` as UTF-8 with ``\\n`` line ends, atomically; return the final path."""
    with atomic_path(path) as tmp, open(tmp, "x", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    return Path(path)


# ---- derived metrics ---------------------------------------------------------------------------------------------


def count_by_status(result: Result) -> dict[str, int]:
    """Number of ops per status; the known statuses are always present, possibly with 0."""
    counts = {status: 0 for status in OP_STATUSES}
    for record in result.ops:
        counts[record.status] = counts.get(record.status, 0) + 1
    return counts


def compute_engines(result: Result) -> list[str]:
    """The engines of the design's peak (MAC engines, adder trees left out): whose waiting matters most."""
    return [name for name, e in result.engines.items() if e.peak_macs_per_cycle and not e.adder_tree]


def top_stalls(result: Result, engines: Sequence[str] | None = None) -> list[tuple[str, float]]:
    """The stall reasons of ``engines`` (default: the compute engines) summed over them, as fractions of their
    combined time, largest first; busy and idle left out, reasons that took no cycle dropped."""
    names = compute_engines(result) if engines is None else list(engines)
    total = sum(sum(result.stalls.get(name, {}).values()) for name in names)
    shares = [(reason, safe_ratio(sum(result.stalls.get(name, {}).get(reason, 0) for name in names), total))
              for reason in STALL_REASONS if reason not in ("busy", "idle")]
    return sorted(((r, f) for r, f in shares if f > 0), key=lambda item: (-item[1], STALL_REASONS.index(item[0])))


def pj_per_mac(result: Result) -> float:
    """Energy of the run (static included) per MAC; 0 for a run without MACs."""
    return safe_ratio(result.energy_pj_total, result.total_macs)


# ---- summary.json ------------------------------------------------------------------------------------------------


def host_info(**wall_times_s: float) -> dict[str, Any]:
    """What a caller may put under ``host``: machine, Python, and the wall times it measured (seconds).

    Kept separate from the rest of the summary because it differs between two otherwise identical runs.
    """
    return {
        "hostname": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "wall_time_s": dict(wall_times_s),
    }


def _engines(result: Result) -> dict[str, dict[str, Any]]:
    """Per-engine utilisation block of the summary."""
    return {
        name: {
            "type": stat.type,
            "peak_macs_per_cycle": stat.peak_macs_per_cycle,
            "busy_cycles": stat.busy_cycles,
            "busy_fraction": safe_ratio(stat.busy_cycles, result.latency_cycles),
            "utilization": stat.utilization,
            "macs": stat.macs,
            "ops": stat.ops,
            "adder_tree": stat.adder_tree,
        }
        for name, stat in result.engines.items()
    }


def _components(result: Result) -> dict[str, dict[str, Any]]:
    """Per-component busy time and traffic block of the summary."""
    return {
        name: {
            "type": stat.type,
            "busy_cycles": stat.busy_cycles,
            "busy_fraction": safe_ratio(stat.busy_cycles, result.latency_cycles),
            "read_bytes": stat.read_bytes,
            "write_bytes": stat.write_bytes,
            # achieved bandwidth: bytes moved per cycle it was busy (and over the whole run)
            "bytes_per_busy_cycle": safe_ratio(stat.read_bytes + stat.write_bytes, stat.busy_cycles),
            "bytes_per_cycle": safe_ratio(stat.read_bytes + stat.write_bytes, result.latency_cycles),
        }
        for name, stat in result.components.items()
    }


def build_summary(result: Result, host: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The summary.json content: plain, rounded JSON data; no wall-clock data unless ``host`` is given."""
    energy_total = result.energy_pj_total
    summary: dict[str, Any] = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "model": result.model,
        "config": result.config,
        "clock_mhz": result.clock_mhz,
        "batch": result.batch,
        "latency_cycles": result.latency_cycles,
        "latency_ms": result.latency_ms,
        "fps": result.fps,
        "total_macs": result.total_macs,
        "achieved_gops": result.achieved_gops,
        "peak_gops": result.peak_gops,
        "peak_macs_per_cycle": result.peak_macs_per_cycle,
        "mac_utilization": result.mac_utilization,
        "dram_read_bytes": result.dram_read_bytes,
        "dram_write_bytes": result.dram_write_bytes,
        "dram_bytes_per_cycle": safe_ratio(
            result.dram_read_bytes + result.dram_write_bytes, result.latency_cycles
        ),
        "energy_pj_total": energy_total,
        "energy_pj_per_inference": safe_ratio(energy_total, result.batch),
        "energy_pj_per_mac": pj_per_mac(result),
        "energy_pj_by_component": dict(result.energy_pj_by_component),
        "energy_pj_by_op_kind": dict(result.energy_pj_by_op_kind),
        "area_mm2": result.area_mm2,
        "area_by_component": dict(result.area_by_component),
        "area_source": result.area_source,
        "engines": _engines(result),
        "components": _components(result),
        # per engine, STALL_REASONS -> cycles; each engine's figures sum to latency_cycles (docs/insight.md)
        "stall_cycles_by_reason": {name: {reason: int(result.stalls.get(name, {}).get(reason, 0))
                                          for reason in STALL_REASONS} for name in result.engines},
        # the compute engines' waiting, largest first: reason and fraction of their combined time
        "top_stall_reasons": [{"reason": reason, "fraction": fraction} for reason, fraction in top_stalls(result)],
        "unmodelled_ops": len(result.unmodelled_ops),
        "unmodelled": [record.op for record in result.unmodelled_ops],
        "ops": count_by_status(result),
        "events": result.events,
        "workload": dict(result.workload_meta),
        "notes": list(result.notes),
    }
    if host is not None:
        summary["host"] = dict(host)
    cleaned: dict[str, Any] = json_safe(summary)
    return cleaned


def dumps_summary(summary: Mapping[str, Any]) -> str:
    """Serialise a summary deterministically: sorted keys, two-space indent, trailing newline, strict JSON."""
    return json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def write_summary(result: Result, path: str | os.PathLike[str], host: Mapping[str, Any] | None = None,
                  run: Mapping[str, Any] | None = None) -> Path:
    """Write summary.json atomically; with ``host=None`` the bytes depend only on the result (and ``run``: how the
    run was made, see :func:`archsim.provenance.record`)."""
    summary = build_summary(result, host)
    if run is not None:
        summary["run"] = json_safe(run)
    return write_text_atomic(path, dumps_summary(summary))
