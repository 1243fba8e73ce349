"""Port: a resource one transaction holds at a time (a DRAM channel, an SRAM port, a NoC link, a requant unit).

It grants requests first come, first served, at exactly the points in the event queue where ``simpy.Resource``
(capacity one) grants them, so a run is the same cycle for cycle and charge for charge; it is only cheaper. SimPy
schedules an event for every release, and a waiting request is granted when that event is processed; when nobody
waits, the event does nothing. A Port schedules it only when a request waits (about one release in five in the
reference runs), and keeps no per-request bookkeeping beyond a FIFO of waiting events.

The equivalence needs what every initiator here does: a request is released only after its grant was processed
(the holder has resumed), so no other request can be granted in between a release and its (skipped) event.
"""
from __future__ import annotations

from collections import deque

import simpy
from simpy.events import Event

from archsim.kernel.stall import BUFFER


class Port:
    """A capacity-one, first-come-first-served resource: ``request()`` returns the event to wait on,
    ``release(request)`` frees it for the next waiting request. ``stall`` is the code (archsim.kernel.stall) of what
    a transaction waiting on it or streaming through it is blocked on (DRAM, NOC or BUFFER)."""

    __slots__ = ("env", "user", "waiting", "stall")

    def __init__(self, env: simpy.Environment, stall: int = BUFFER) -> None:
        self.env = env
        self.stall = stall  # the stall code (archsim.kernel.stall) of a request waiting here
        self.user: Event | None = None  # the granted request holding the port
        self.waiting: deque[Event] = deque()

    @property
    def count(self) -> int:
        """Requests holding the port (0 or 1), as ``simpy.Resource.count``."""
        return 0 if self.user is None else 1

    def request(self) -> Event:
        """An event that succeeds when the port is granted to this request."""
        event = Event(self.env)
        if self.user is not None:
            self.waiting.append(event)
        elif self.waiting:  # a release with waiters is pending: the oldest waiter goes first, as in SimPy
            self.waiting.append(event)
            self._grant(self.waiting.popleft())
        else:
            self.user = event
            event.succeed()
        return event

    def release(self, request: Event) -> None:
        """Free the port held by ``request``; the oldest waiting request is granted once the release is processed."""
        if self.user is request:
            self.user = None
        if self.waiting:
            release = Event(self.env)
            release.callbacks.append(self._grant_next)
            release.succeed()

    def _grant_next(self, _: Event) -> None:
        if self.user is None and self.waiting:
            self._grant(self.waiting.popleft())

    def _grant(self, event: Event) -> None:
        self.user = event
        event.succeed()
