"""Sweep speed: points per minute with 1 and 2 local workers (and optionally a Dask cluster), and what a point
costs beyond its simulation.

    python benchmarks/sweep_speed.py                      # 12 points of trio.yaml on efficientvit_b1
    python benchmarks/sweep_speed.py --points 24 --workers 1 2 4
    python benchmarks/sweep_speed.py --dask tcp://127.0.0.1:8786

Each setting runs the same grid into a fresh folder (the model is traced once, from the trace cache). For each it
prints the wall time of the run phase (after tracing), points per minute, the mean simulation time of a point on
its worker (mapping + simulation, measured inside the worker) and the per-point overhead: wall time x workers /
points - simulation time, i.e. what the tooling (process start, shipping configs and rows, logging, the table and
plot) adds to each point. For scale it also times one separate `archsim run` command of the first point, the way a
sweep ran before `archsim sweep` (a process per point that imports everything and writes every report).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep_file(folder: Path, points: int) -> Path:
    """A grid of ``points`` points over DRAM bandwidth and the activation buffer of trio.yaml."""
    bandwidths = [round(3.2 * (i + 1), 1) for i in range(max(1, points // 2))]
    path = folder / "speed.yaml"
    path.write_text(json.dumps({
        "name": "speed", "config": str(ROOT / "arch_configs" / "trio.yaml"),
        "workload": {"model": "efficientvit_b1"},
        "axes": {"dram.bandwidth_gbps": bandwidths, "buffers.buf_ab.capacity_kib": [1024, 2048]},
    }))
    return path


def timed_run(path: Path, out: Path, workers: int | None, dask: str | None) -> dict[str, float]:
    from archsim.sweep.run import run_sweep
    from archsim.sweep.spec import load_sweep
    from archsim.sweep.store import POINTS

    spec = load_sweep(path)
    t0 = time.perf_counter()
    outcome = run_sweep(spec, out, workers=workers, dask=dask, progress=False)
    wall = time.perf_counter() - t0
    logged = [json.loads(line) for line in (out / POINTS).read_text().splitlines()]
    sim = statistics.fmean(r["wall_s"] for r in logged)
    n = len(outcome.rows)
    used = 1 if workers == 1 and not dask else (workers or 1)
    return {"points": n, "wall": wall, "per_min": 60.0 * n / wall, "sim": sim,
            "overhead": wall * used / n - sim, "failed": outcome.failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=12, help="grid points (rounded to an even number)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="local worker counts to time")
    parser.add_argument("--dask", metavar="ADDRESS", help="also time this Dask scheduler")
    args = parser.parse_args()

    from archsim.sweep.plan import grid, task_of
    from archsim.sweep.spec import load_sweep
    from archsim.sweep.workloads import make_workload

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = sweep_file(folder, args.points)
        t0 = time.perf_counter()
        spec = load_sweep(path)
        make_workload(task_of(spec, next(grid(spec))).workload_key)  # warm the trace cache (and torch) once
        print(f"trace cache warm-up: {time.perf_counter() - t0:.1f} s (not counted below)")
        settings: list[tuple[str, int | None, str | None]] = [(f"{w} local", w, None) for w in args.workers]
        if args.dask:
            settings.append(("dask", None, args.dask))
        header = f"{'workers':<10} {'points':>6} {'wall s':>8} {'points/min':>11} {'sim s/point':>12} {'overhead s/point':>17}"
        print(header)
        print("-" * len(header))
        base = None
        for label, workers, dask in settings:
            r = timed_run(path, folder / label.replace(" ", "_"), workers, dask)
            base = base or r["per_min"]
            print(f"{label:<10} {int(r['points']):>6} {r['wall']:>8.2f} {r['per_min']:>11.1f} {r['sim']:>12.3f} "
                  f"{r['overhead']:>17.3f}   ({r['per_min'] / base:.2f}x the first)")
        cmd = [sys.executable, "-m", "archsim", "run", str(ROOT / "arch_configs" / "trio.yaml"), "--model",
               "efficientvit_b1", "--set", "dram.bandwidth_gbps=3.2", "--quiet", "--out", str(folder / "one")]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT)
        print(f"one `archsim run` process per point (imports, trace cache, every report): "
              f"{time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
