"""Where points run: inline (one worker), a local process pool, or an existing Dask cluster. All three run the same
function (:func:`archsim.sweep.worker.run_point`) on the same tasks, so they give the same rows.

Workloads are shipped once per worker (the pool's initializer; Dask's broadcast scatter), never once per point.
Workers start with ``spawn``: they import archsim only, never torch.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Mapping, Protocol, Sequence

from archsim.errors import UsageError
from archsim.sweep.plan import Task
from archsim.sweep.worker import run_point
from archsim.workloads.ir import Workload

Row = dict[str, Any]
OnDone = Callable[[Row], None]


class Executor(Protocol):
    """Runs tasks and reports each row as it finishes (in any order). Made before the workloads exist (so a bad
    address fails before any tracing), then started with them."""

    workers: int

    def start(self, workloads: Mapping[str, Workload]) -> None: ...

    def run(self, tasks: Sequence[Task], on_done: OnDone) -> None: ...

    def close(self) -> None: ...


class InlineExecutor:
    """Points one after another in this process: no start-up cost, the reference for the others."""

    workers = 1

    def __init__(self) -> None:
        self.workloads: dict[str, Workload] = {}

    def start(self, workloads: Mapping[str, Workload]) -> None:
        self.workloads = dict(workloads)

    def run(self, tasks: Sequence[Task], on_done: OnDone) -> None:
        for task in tasks:
            on_done(run_point(task, self.workloads[task.workload_key]))

    def close(self) -> None:
        pass


_WORKLOADS: dict[str, Workload] = {}  # a pool worker's workloads, set once by its initializer


def _init_worker(workloads: Mapping[str, Workload]) -> None:
    from archsim.registry import load_plugins

    load_plugins()  # a plugin's engine kinds and policies, as in the client
    _WORKLOADS.update(workloads)


def _run_pooled(task: Task) -> Row:
    return run_point(task, _WORKLOADS[task.workload_key])


class PoolExecutor:
    """A local process pool of ``workers`` processes (default: every core)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.pool: ProcessPoolExecutor | None = None

    def start(self, workloads: Mapping[str, Workload]) -> None:
        self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker, initargs=(dict(workloads),))

    def run(self, tasks: Sequence[Task], on_done: OnDone) -> None:
        assert self.pool is not None, "start() first"
        pending: set[Future[Row]] = {self.pool.submit(_run_pooled, t) for t in tasks}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    on_done(f.result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """The points on an existing Dask cluster (``address``: its scheduler, e.g. tcp://127.0.0.1:8786). Workers need
    archsim installed (not torch): they receive the traced IR."""

    def __init__(self, address: str) -> None:
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover - a dependency of archsim
            raise UsageError("--dask needs dask.distributed (pip install 'dask[distributed]')") from None
        try:
            self.client = Client(address, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(f"--dask {address}: cannot reach the scheduler ({' '.join(str(exc).split())})") from None
        self.workers = max(1, sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values()))
        self.workloads: dict[str, Any] = {}

    def start(self, workloads: Mapping[str, Workload]) -> None:
        self.workloads = self.client.scatter(dict(workloads), broadcast=True)

    def run(self, tasks: Sequence[Task], on_done: OnDone) -> None:
        from distributed import as_completed

        futures = [self.client.submit(run_point, t, self.workloads[t.workload_key], pure=False) for t in tasks]
        try:
            for f in as_completed(futures, loop=self.client.loop):
                on_done(f.result())
        except BaseException:
            self.client.cancel(futures)
            raise

    def close(self) -> None:
        self.client.close()


def make_executor(*, workers: int | None = None, dask: str | None = None) -> Executor:
    """Dask when an address is given; else inline for one worker and a process pool for more."""
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be a positive integer, got {workers}")
    if dask:
        if workers is not None:
            raise UsageError("--workers is for local runs; a Dask cluster has its own workers")
        return DaskExecutor(dask)
    n = workers or os.cpu_count() or 1
    return InlineExecutor() if n == 1 else PoolExecutor(n)


__all__ = ["DaskExecutor", "Executor", "InlineExecutor", "PoolExecutor", "make_executor"]
