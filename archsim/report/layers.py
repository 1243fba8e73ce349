"""layers.csv: one row per op in trace order, to sort and filter in a spreadsheet or pandas."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from archsim.report.summary import atomic_path, format_float
from archsim.result import STALL_REASONS, OpRecord, Result

#: The op's stall reasons as columns (idle is an engine's, not an op's): ``stall_<reason>_cycles``.
STALL_COLUMNS: tuple[str, ...] = tuple(f"stall_{reason}_cycles" for reason in STALL_REASONS[1:-1])

#: Column order of layers.csv. ``bound`` and ``utilization`` are derived; the rest are OpRecord fields (the stall
#: columns from ``OpRecord.stalls``: with ``busy_cycles`` they add up to ``cycles``).
LAYER_COLUMNS: tuple[str, ...] = (
    "op",
    "kind",
    "engine",
    "status",
    "group",
    "start_cycle",
    "end_cycle",
    "cycles",
    "macs",
    "elements",
    "tiles",
    "dram_read_bytes",
    "dram_write_bytes",
    "energy_pj",
    "compute_bound_cycles",
    "memory_bound_cycles",
    "bound",
    "utilization",
    "scope",
    "mapping",
    "group_loss_cycles",
    "group_loss",
    "busy_cycles",
    *STALL_COLUMNS,
    "bottleneck",
)


def op_bound(record: OpRecord) -> str:
    """``compute`` or ``memory``, whichever bound is larger for this op; '' when neither is known."""
    if record.compute_bound_cycles == 0 and record.memory_bound_cycles == 0:
        return ""
    return "memory" if record.memory_bound_cycles > record.compute_bound_cycles else "compute"


def op_utilization(result: Result, record: OpRecord) -> float | None:
    """MACs over what the op's engine(s) could have done in its cycles; None for ops without MAC peak or time.

    An op split over several engines names them joined by ``+`` (e.g. ``mat+rmac``); their peaks add up.
    """
    peak = sum(result.engines[name].peak_macs_per_cycle for name in record.engine.split("+") if name in result.engines)
    if peak <= 0 or record.cycles <= 0:
        return None
    return record.macs / (peak * record.cycles)


def layer_row(result: Result, record: OpRecord) -> list[str | int]:
    """One CSV row in :data:`LAYER_COLUMNS` order; floats rounded, missing values as ''."""
    utilization = op_utilization(result, record)
    return [
        record.op,
        record.kind,
        record.engine,
        record.status,
        record.group,
        record.start_cycle,
        record.end_cycle,
        record.cycles,
        record.macs,
        record.elements,
        record.tiles,
        record.dram_read_bytes,
        record.dram_write_bytes,
        format_float(record.energy_pj),
        record.compute_bound_cycles,
        record.memory_bound_cycles,
        op_bound(record),
        "" if utilization is None else format_float(utilization),
        record.scope,
        record.mapping,
        record.group_loss_cycles,
        record.group_loss,
        record.busy_cycles,
        *(record.stalls.get(reason, 0) for reason in STALL_REASONS[1:-1]),
        record.bottleneck,
    ]


def write_layers_csv(result: Result, path: str | os.PathLike[str]) -> Path:
    """Write layers.csv atomically (header + one row per OpRecord, trace order)."""
    with atomic_path(path) as tmp, open(tmp, "x", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(LAYER_COLUMNS)
        writer.writerows(layer_row(result, record) for record in result.ops)
    return Path(path)
