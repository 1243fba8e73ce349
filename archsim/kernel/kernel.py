"""Simulator: a SimPy environment whose time unit is one accelerator clock cycle, plus the run's Ledger."""
from __future__ import annotations

import math

import simpy

from archsim.kernel.ledger import Ledger


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it schedules (the simulator's unit of work)."""

    def __init__(self) -> None:
        super().__init__()
        self.scheduled = 0

    def schedule(self, event: simpy.events.Event, priority: simpy.events.EventPriority = simpy.events.NORMAL,
                 delay: float = 0) -> None:
        self.scheduled += 1
        super().schedule(event, priority, delay)


class Simulator:
    """Owns the environment, the clock and the ledger of one run. Time is in integer accelerator cycles."""

    def __init__(self, clock_mhz: float) -> None:
        self.env = CountingEnvironment()
        self.clock_mhz = clock_mhz
        self.ledger = Ledger()

    @property
    def now(self) -> int:
        return int(self.env.now)

    def cycles(self, ns: float) -> int:
        """Convert a duration in ns (another clock domain's edge) to whole accelerator cycles, rounding up."""
        return math.ceil(ns * self.clock_mhz / 1e3 - 1e-9)

    def ns(self, cycles: int) -> float:
        return cycles * 1e3 / self.clock_mhz
