"""The size guard: a run's events, memory and time estimated from its task graph, before anything is simulated.

A simulation's cost grows with its tiles, and a workload's tiles grow with its size once its tensors outgrow the
buffers (a batch of a million images, a 10^12-MAC layer). Such a run would take hours and tens of GB and look like a
hang; the guard refuses it up front, printing the estimate and the flag that lifts the limit.

The coefficients were measured on this project's reference machine (2 cores, Python 3.11) with the shipped configs:
one tile costs about 30 kernel events with one DRAM channel and 1.5 to 3 more per channel its traffic is striped
over (``tests/run/test_guard.py`` checks the estimate stays within a factor of two of the events actually run);
the simulation holds about 85 bytes per event at its peak (the ledger's spans) and runs 2.5 to 3.5 µs per event.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from archsim.config.load import ArchConfig
from archsim.errors import UsageError
from archsim.mapping.taskgraph import TaskGraph

#: Kernel events per tile with one DRAM channel, and per additional channel (measured; see the module docstring).
EVENTS_PER_TILE = 32
EVENTS_PER_TILE_PER_CHANNEL = 3
#: Events a task costs whatever its tiles (its processes, group barriers, dependency events).
EVENTS_PER_TASK = 20
#: Peak memory per event while simulating, in bytes, and a margin for the reports written after it.
BYTES_PER_EVENT = 100
BASE_BYTES = 200 << 20
#: Wall time per event (the slower end of the measured range).
SECONDS_PER_EVENT = 3.5e-6

#: Default limit on estimated events: about a minute of simulation and 2 GB.
DEFAULT_MAX_EVENTS = 20_000_000
#: Default limit on estimated memory, as a fraction of the machine's physical memory.
DEFAULT_MEMORY_FRACTION = 0.75


@dataclass(frozen=True)
class Estimate:
    """What a run is expected to cost: kernel events, peak memory in bytes, wall seconds."""

    events: int
    memory_bytes: int
    seconds: float

    def describe(self) -> str:
        return (f"about {_count(self.events)} events, {self.memory_bytes / 2**30:.1f} GiB and "
                f"{_duration(self.seconds)}")


@dataclass(frozen=True)
class Limits:
    """The most a run may cost before it is refused; None lifts a limit."""

    max_events: int | None = DEFAULT_MAX_EVENTS
    max_memory_bytes: int | None = None  # None here means: a fraction of this machine's memory (see resolved)

    @staticmethod
    def none() -> Limits:
        return Limits(max_events=None, max_memory_bytes=0)

    def memory_limit(self) -> int | None:
        """The memory limit in bytes: the given one (0 for none), else a fraction of physical memory."""
        if self.max_memory_bytes is not None:
            return self.max_memory_bytes or None
        physical = physical_memory()
        return int(physical * DEFAULT_MEMORY_FRACTION) if physical else None


def physical_memory() -> int:
    """This machine's physical memory in bytes, 0 when the OS does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 0


def estimate(cfg: ArchConfig, graph: TaskGraph) -> Estimate:
    """The cost of simulating ``graph`` on ``cfg``, from its tiles and the DRAM channels their traffic spreads over."""
    per_tile = EVENTS_PER_TILE + EVENTS_PER_TILE_PER_CHANNEL * (cfg.dram.channels - 1)
    tiles = sum(t.tiles for t in graph.tasks)
    events = tiles * per_tile + EVENTS_PER_TASK * len(graph.tasks)
    return Estimate(events=events, memory_bytes=BASE_BYTES + BYTES_PER_EVENT * events,
                    seconds=SECONDS_PER_EVENT * events)


def check(cfg: ArchConfig, graph: TaskGraph, limits: Limits) -> Estimate:
    """The estimate of the run, or UsageError naming the limit it exceeds and the flag that lifts it."""
    est = estimate(cfg, graph)
    if limits.max_events is not None and est.events > limits.max_events:
        raise UsageError(
            f"this run would simulate {est.describe()} ({sum(t.tiles for t in graph.tasks):,} tiles), over the "
            f"limit of {_count(limits.max_events)} events; pass --max-events {_round_up(est.events)} (or 0 for no "
            "limit) to run it anyway")
    memory = limits.memory_limit()
    if memory is not None and est.memory_bytes > memory:
        raise UsageError(
            f"this run would need {est.describe()}, more than the memory limit of {memory / 2**30:.1f} GiB; pass "
            f"--max-memory {-(-est.memory_bytes // 2**30) + 1} (GiB, or 0 for no limit) to run it anyway")
    return est


def _count(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1_000_000 else f"{n:,}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _round_up(n: int) -> int:
    """``n`` rounded up to two significant digits: a limit a user can type."""
    step = 10 ** max(len(str(n)) - 2, 0)
    return -(-n // step) * step
