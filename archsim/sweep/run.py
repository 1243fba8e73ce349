"""A sweep from start to end: check every axis, trace each workload once on the client, run the points (the whole
grid, or a seeded Optuna search in generations) on an executor, log each point as it finishes, then write the
table, the Pareto set and its plot. A run is a chain of these stages; each is a function of the previous one's
output, so a rerun with the same folder resumes where the last one stopped.
"""
from __future__ import annotations

import itertools
import sys
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from archsim.sweep.execute import Executor, make_executor
from archsim.sweep.pareto import markdown, pareto_set, plot
from archsim.sweep.plan import (Point, Task, check_axes, config_of, error_line, grid, point_from, task_of,
                                workload_key)
from archsim.sweep.spec import MAXIMISE, WORKLOAD_AXES, Axis, SweepSpec
from archsim.sweep.store import Store
from archsim.sweep.table import build_rows, write_table
from archsim.sweep.workloads import make_workloads

Row = dict[str, Any]


@dataclass(frozen=True)
class SweepOutcome:
    """What a sweep left behind: its table rows, the Pareto set (indices into rows) and the files written."""

    folder: Path
    rows: list[Row]
    front: list[int]
    files: tuple[Path, ...]
    ran: int  # points run by this invocation (the others came from the log)
    failed: int


def _shapes_workload(axis: Axis) -> bool:
    """Axes that can change a point's IR: the workload axes and the config's defaults: and quant: sections."""
    return any(k in WORKLOAD_AXES or k.split(".")[0] in ("defaults", "quant") for k in axis.keys)


def _workload_keys(spec: SweepSpec, tasks: list[Task] | None) -> list[str]:
    """The distinct workloads of a sweep: from the tasks of a grid, or, for a search, from the sub-grid of the
    axes that shape the IR (every other axis at its first value)."""
    if tasks is not None:
        return list(dict.fromkeys(t.workload_key for t in tasks))
    shaping = [a for a in spec.axes if _shapes_workload(a)]
    others = {a.name: (a.grid_values()[0] if a.range is None or a.range.step is not None else a.range.bounds[0])
              for a in spec.axes if not _shapes_workload(a)}
    keys = []
    for combo in itertools.product(*(a.grid_values() for a in shaping)):
        choice = {**others, **{a.name: v for a, v in zip(shaping, combo)}}
        point = point_from(spec, 0, choice)
        keys.append(workload_key(spec, config_of(spec, point.values), point.values))
    return list(dict.fromkeys(keys))


class _Runner:
    """Runs the points not yet logged and logs each as it finishes."""

    def __init__(self, spec: SweepSpec, store: Store, executor: Executor, bar: Any) -> None:
        self.spec, self.store, self.executor, self.bar = spec, store, executor, bar
        self.ran = 0

    def evaluate(self, points: list[Point], tasks: list[Task] | None = None) -> list[Row]:
        """Rows for ``points`` (in order), running those the log does not hold."""
        todo: dict[str, Task] = {}
        by_id = {t.id: t for t in tasks} if tasks is not None else {}
        for p in points:
            if p.id in self.store.done or p.id in todo:
                continue
            try:
                todo[p.id] = by_id.get(p.id) or task_of(self.spec, p)
            except Exception as exc:  # noqa: BLE001 - a search may combine values into an invalid config
                self._done({"index": p.index, "id": p.id, "status": "error", "error": error_line(exc)}, p)
        values = {p.id: p for p in points}

        def on_done(row: Row) -> None:
            self._done(row, values[row["id"]])

        self.executor.run(list(todo.values()), on_done)
        return [self.store.done[p.id] for p in points]

    def _done(self, row: Row, point: Point) -> None:
        self.store.add({**row, "values": point.values})
        self.ran += 1
        if self.bar is not None:
            self.bar.update(1)


def _search(spec: SweepSpec, runner: _Runner) -> None:
    """``budget`` points by an Optuna sampler, asked ``population`` at a time and told in order, so a seed gives
    the same points whatever the worker count, and a rerun replays the log without running it again."""
    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = spec.search
    dists: dict[str, BaseDistribution] = {}
    for a in spec.axes:
        r = a.range
        if r is None:
            dists[a.name] = CategoricalDistribution(tuple(range(len(a.values))))
        elif r.is_integer:
            dists[a.name] = IntDistribution(int(r.low), int(r.high), log=r.log, step=int(r.step or 1))
        else:
            dists[a.name] = FloatDistribution(float(r.low), float(r.high), log=r.log,
                                              step=None if r.log or r.step is None else float(r.step))
    samplers: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
        "random": lambda: optuna.samplers.RandomSampler(seed=s.seed),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(population_size=s.population, seed=s.seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=s.seed),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's ExperimentalWarning for multi-objective samplers
        study = optuna.create_study(directions=["maximize" if o in MAXIMISE else "minimize" for o in s.objectives],
                                    sampler=samplers[s.method]())
        assert s.budget is not None
        asked = 0
        while asked < s.budget:
            trials = [study.ask(dists) for _ in range(min(s.population, s.budget - asked))]
            points = []
            for t in trials:
                choice = {a.name: (a.values[t.params[a.name]] if a.range is None else t.params[a.name])
                          for a in spec.axes}
                points.append(point_from(spec, t.number, choice))
            rows = runner.evaluate(points)
            for t, row in zip(trials, rows):
                if row.get("status") == "ok":
                    study.tell(t, [float(row[o]) for o in s.objectives])
                else:
                    study.tell(t, state=TrialState.FAIL)
            asked += len(trials)


def run_sweep(spec: SweepSpec, folder: Path, *, workers: int | None = None, dask: str | None = None,
              fresh: bool = False, progress: bool | None = None, cache: bool = True,
              say: Callable[[str], None] | None = None) -> SweepOutcome:
    """Run (or resume) ``spec`` into ``folder``; ``progress``: None shows the bar on terminals only."""
    from tqdm import tqdm

    check_axes(spec)  # every key and value, before anything runs
    points = list(grid(spec)) if spec.search.method == "grid" else None
    tasks = [task_of(spec, p) for p in points] if points is not None else None  # every combination, up front
    manifest = {"name": spec.name, "fingerprint": spec.fingerprint(), "keys": list(spec.keys),
                "objectives": list(spec.search.objectives), "color": spec.color or spec.keys[0],
                "method": spec.search.method, "config": str(spec.config), "source": spec.source}
    with ExitStack() as stack:
        executor = make_executor(workers=workers, dask=dask)  # a bad --workers or --dask fails before tracing
        stack.callback(executor.close)
        store = Store(folder, manifest, fresh=fresh)  # so does a folder that holds another sweep
        stack.callback(store.close)
        keys = _workload_keys(spec, tasks)
        if say is not None:
            say(f"{len(keys)} workload(s) to prepare on this machine")
        workloads = make_workloads(keys, cache=cache,
                                   progress=(lambda name: say(f"preparing {name}")) if say is not None else None)
        executor.start(workloads)
        total = len(points) if points is not None else int(spec.search.budget or 0)
        planned = {p.id for p in points} if points is not None else None
        done_before = len(store.done) if planned is None else len(planned & set(store.done))
        bar = stack.enter_context(tqdm(total=total, initial=min(done_before, total), desc=f"sweep {spec.name}",
                                       unit="point", file=sys.stderr, leave=False,
                                       disable=None if progress is None else not progress))
        runner = _Runner(spec, store, executor, bar)
        if points is not None:
            runner.evaluate(points, tasks)
        else:
            _search(spec, runner)
    logged = [r for r in store.done.values() if planned is None or r["id"] in planned]
    return finish(folder, logged, manifest, ran=runner.ran)


def finish(folder: Path, logged: list[Row], manifest: dict[str, Any], ran: int = 0) -> SweepOutcome:
    """Table, Pareto set, plot and pareto.md from the logged points (also what ``--report`` redraws)."""
    keys = list(manifest["keys"])
    rows = build_rows(logged, keys)
    parquet, csv_path = write_table(rows, keys, folder)
    return redraw(folder, rows, manifest, extra=(parquet, csv_path), ran=ran)


def redraw(folder: Path, rows: list[Row], manifest: dict[str, Any], extra: tuple[Path, ...] = (),
           ran: int = 0) -> SweepOutcome:
    """The Pareto set, its plot and pareto.md from table rows."""
    keys = list(manifest["keys"])
    objectives = list(manifest["objectives"])
    front = pareto_set(rows, objectives)
    png = plot(rows, front, manifest.get("color"), folder / "pareto.png",
               f"{manifest['name']}: {len(front)} of {sum(r['status'] == 'ok' for r in rows)} points on the "
               f"Pareto set\nof {', '.join(objectives)}")
    md = folder / "pareto.md"
    md.write_text(f"# Pareto set of {manifest['name']} ({', '.join(objectives)}, all minimised unless fps or "
                  f"utilization)\n\n" + markdown(rows, front, keys, objectives), encoding="utf-8")
    failed = sum(r["status"] != "ok" for r in rows)
    return SweepOutcome(folder, rows, front, (*extra, png, md), ran, failed)


__all__ = ["SweepOutcome", "finish", "redraw", "run_sweep"]
