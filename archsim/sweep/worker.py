"""What runs on a worker for one point: map and simulate, then reduce the result to one row of metrics.

Torch-free and free of plotting: a point costs its mapping and simulation. A failure is caught and returned as
the row's error, so one bad point never stops a sweep.
"""
from __future__ import annotations

import time
from typing import Any

from archsim.api import run_stages
from archsim.result import Result
from archsim.sweep.plan import Task, error_line
from archsim.workloads.ir import Workload

#: The metric columns of a row, in table order.
METRICS = ("latency_cycles", "latency_ms", "fps", "energy_uj", "energy_uj_per_inference", "edp", "mac_utilization",
           "achieved_gops", "peak_gops", "dram_mb", "dram_read_mb", "dram_write_mb", "area_mm2", "multipliers",
           "sram_kib")


def metrics(result: Result) -> dict[str, Any]:
    """The row's figures from one result (energy per inference divides by the batch; EDP is µJ x ms)."""
    energy_uj = result.energy_pj_total / 1e6
    per_inference = energy_uj / max(1, result.batch)
    return {
        "latency_cycles": result.latency_cycles, "latency_ms": result.latency_ms, "fps": result.fps,
        "energy_uj": energy_uj, "energy_uj_per_inference": per_inference,
        "edp": per_inference * result.latency_ms, "mac_utilization": result.mac_utilization,
        "achieved_gops": result.achieved_gops, "peak_gops": result.peak_gops,
        "dram_mb": (result.dram_read_bytes + result.dram_write_bytes) / 1e6,
        "dram_read_mb": result.dram_read_bytes / 1e6, "dram_write_mb": result.dram_write_bytes / 1e6,
        "events": result.events,
    }


def area_metrics(task: Task) -> dict[str, Any]:
    """The config's area proxy: total mm², multipliers and on-chip SRAM."""
    from archsim.hardware.area import area_of

    area = area_of(task.config)
    return {"area_mm2": area.total_mm2, "multipliers": area.multipliers, "sram_kib": area.sram_kib}


def run_point(task: Task, workload: Workload) -> dict[str, Any]:
    """One point's outcome: ``index``, ``id``, ``status`` (ok / error), ``error``, the metrics, and two figures of
    the tooling kept out of the results table (which depends on the design and workload only): ``wall_s``, the
    point's wall time on its worker, and ``events``, the simulation events it took."""
    from archsim.registry import load_plugins

    load_plugins()  # once per process: a Dask worker has not run the CLI
    t0 = time.perf_counter()
    out: dict[str, Any] = {"index": task.index, "id": task.id, "status": "ok", "error": ""}
    try:
        out.update(area_metrics(task))
        out.update(metrics(run_stages(task.config, workload)))
    except Exception as exc:  # noqa: BLE001 - a failing point is recorded, never fatal to the sweep
        out.update(status="error", error=error_line(exc))
    out["wall_s"] = time.perf_counter() - t0
    return out


__all__ = ["METRICS", "area_metrics", "metrics", "run_point"]
