"""Simulator: a SimPy environment whose time unit is one accelerator clock cycle, plus the run's Ledger."""
from __future__ import annotations

import gc
import math
from contextlib import contextmanager
from heapq import heappop
from typing import Any, Iterator

import simpy
import simpy.core

from archsim.kernel.ledger import Ledger


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it processes (the simulator's unit of work).

    ``run()`` to the end (no ``until``) is SimPy's own loop of ``step()`` inlined: the same events in the same order
    with the same failure handling, without a method call and a ``try`` per event. Every event a run schedules is
    processed, so ``events`` is also the number of events scheduled. It reads SimPy's private queue and event fields,
    which is why simpy is pinned below 5 (pyproject.toml).
    """

    def __init__(self) -> None:
        super().__init__()
        self.events = 0
        # SimPy binds env.timeout, env.process, ... to the instance only for its own class (BoundClass.bind_early
        # reads type(self).__dict__); without this a subclass makes a new bound method at every env.timeout().
        for name, attr in vars(simpy.Environment).items():
            if isinstance(attr, simpy.core.BoundClass):
                setattr(self, name, getattr(self, name))

    def step(self) -> None:
        self.events += 1
        super().step()

    def run(self, until: simpy.core.SimTime | simpy.Event | None = None) -> Any:
        if until is not None:
            return super().run(until)  # counted by step()
        queue = self._queue
        n = 0
        try:
            while queue:
                self._now, _, _, event = heappop(queue)
                n += 1
                callbacks, event.callbacks = event.callbacks, None  # type: ignore[assignment]
                for callback in callbacks:
                    callback(event)
                if not event._ok and not hasattr(event, "_defused"):
                    exc = type(event._value)(*event._value.args)  # a failed event nobody handled: crash, as SimPy does
                    exc.__cause__ = event._value
                    raise exc
        finally:
            self.events += n
        return None


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


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a block, and restore it after, however the block ends.

    A run (or a report of one) allocates hundreds of thousands of short-lived events, generators and tuples;
    reference counting frees them, but they would trigger about a hundred collections that scan the young objects
    (and the whole heap once), about a tenth of a run's time. Nothing they make needs the cyclic collector meanwhile.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
