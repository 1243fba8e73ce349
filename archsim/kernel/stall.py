"""Stall codes: what a process is blocked on, packed with the cycle into one int per mark of a stage log.

A stage log is a list of ints ``cycle << SHIFT | code`` in time order (an int, not a tuple: a run appends hundreds of
thousands and ints cost no garbage-collector work). Codes below POINTERS are reasons (their names in REASONS, the
order of archsim.result.STALL_REASONS); UP, DOWN and FETCH point at another stage of the same task.
"""
from __future__ import annotations

BUSY, DRAM, BUFFER, PRODUCER, NOC = 0, 1, 2, 3, 4
UP, DOWN, FETCH = 5, 6, 7  # waiting for the previous stage, the next stage, the tile's operand fetch
POINTERS = UP
SHIFT = 3
MASK = (1 << SHIFT) - 1

#: The name of each reason code.
REASONS: tuple[str, ...] = ("busy", "dram", "buffer", "producer", "noc")
