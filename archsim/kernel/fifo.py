"""Bounded FIFOs between pipelined stages: a full FIFO blocks its producer (back-pressure)."""
from __future__ import annotations

import simpy


class Fifo(simpy.Store):
    """A simpy.Store with a name and a bounded capacity in tiles."""

    def __init__(self, env: simpy.Environment, name: str, depth: int) -> None:
        if depth < 1:
            raise ValueError("a FIFO needs a depth of at least one tile")
        super().__init__(env, capacity=depth)
        self.name = name
