"""Run orchestration: build the components of a config, play a task graph on them, assemble the Result.

This sits above the kernel (which knows nothing of configs or mapping) and the hardware models."""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator

from archsim.config.load import ArchConfig
from archsim.kernel.kernel import Simulator
from archsim.mapping.taskgraph import TaskGraph
from archsim.result import Result
from archsim.run.assemble import assemble
from archsim.run.runner import Runner
from archsim.workloads.ir import Workload


def execute(cfg: ArchConfig, workload: Workload, graph: TaskGraph) -> Result:
    """Simulate ``graph`` (the mapping of ``workload`` onto ``cfg``) and return its Result."""
    with _cyclic_gc_paused():
        sim = Simulator(cfg.clock_mhz)
        runner = Runner(sim, cfg, graph)
        runner.run()
        return assemble(cfg, workload, graph, sim, runner)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one run, and restore it after, however the run ends.

    A run allocates hundreds of thousands of short-lived events, generators and tuples; reference counting frees
    them, but they would trigger about a hundred collections that scan the young objects (and the whole heap once),
    about a tenth of a run's time. Nothing a run makes needs the cyclic collector while it runs.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


__all__ = ["Runner", "assemble", "execute"]
