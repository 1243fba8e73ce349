"""Run orchestration: build the components of a config, play a task graph on them, assemble the Result.

This sits above the kernel (which knows nothing of configs or mapping) and the hardware models."""
from __future__ import annotations


from archsim.config.load import ArchConfig
from archsim.kernel.kernel import Simulator, gc_paused
from archsim.mapping.taskgraph import TaskGraph
from archsim.result import Result
from archsim.run.assemble import assemble
from archsim.run.runner import Runner
from archsim.workloads.ir import Workload


def execute(cfg: ArchConfig, workload: Workload, graph: TaskGraph) -> Result:
    """Simulate ``graph`` (the mapping of ``workload`` onto ``cfg``) and return its Result."""
    with gc_paused():
        sim = Simulator(cfg.clock_mhz)
        runner = Runner(sim, cfg, graph)
        runner.run()
        return assemble(cfg, workload, graph, sim, runner)


__all__ = ["Runner", "assemble", "execute"]
