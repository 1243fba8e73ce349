"""TLM-style transactions on SimPy: a generic payload, targets that serve it, and approximately-timed transport.

An initiator (a loader, an engine, a writer) builds a :class:`Payload` and calls :func:`transport` with the path of
targets it crosses (DRAM channels, NoC link, SRAM port). The request phase acquires every target's resource in a
fixed global rank order (so transactions can never deadlock one another); the data phase holds each resource for
its own service time (bytes / its bandwidth), all hops streaming concurrently; the response phase adds the sum of
the hops' latencies. Contention shows as waiting in the request phase; pipelining as overlapping transactions.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Generator, NamedTuple, Protocol, Sequence

import simpy

if TYPE_CHECKING:
    from archsim.kernel.kernel import Simulator


#: The body of a SimPy process: yields events, is sent their values.
Process = Generator[simpy.Event, Any, None]


class Command(Enum):
    READ = "read"
    WRITE = "write"


@dataclass(slots=True)
class Payload:
    """What moves: a command, a tensor, a byte count, who asked, for which op and tile, and its timing points."""

    command: Command
    tensor: str
    nbytes: int
    initiator: str
    op: str
    op_kind: str
    tile: int = 0
    t_request: int = -1
    t_begin: int = -1
    t_end: int = -1


class Resource(Protocol):
    """What a target holds during a data phase: a :class:`~archsim.kernel.port.Port` or a ``simpy.Resource``."""

    def request(self) -> simpy.Event: ...

    def release(self, request: Any) -> object: ...


class Service(NamedTuple):
    """A target's answer for one payload: one or more (resource, hold cycles, component name) plus a latency.
    (A named tuple: immutable and built once per hop of every transaction, so it must be cheap to make.)"""

    holds: tuple[tuple[Resource, int, str], ...]
    latency: int


class Target(Protocol):
    """Anything that serves payloads: DRAM, an SRAM buffer, a NoC link."""

    name: str
    rank: int

    def serve(self, payload: Payload) -> Service:
        """Timing of ``payload`` at this target; charge its energy and traffic to the ledger."""
        ...


def _rank(target: Target) -> int:
    return target.rank


def transport(sim: "Simulator", path: Sequence[Target], payload: Payload, category: str) -> Process:
    """Carry ``payload`` across ``path`` (a SimPy process body). Returns when the response phase ends."""
    return transport_ranked(sim, sorted(path, key=_rank), payload, category)


def transport_ranked(sim: "Simulator", path: Sequence[Target], payload: Payload, category: str) -> Process:
    """:func:`transport` over a ``path`` already in rank order (the runner builds its paths so, once per task)."""
    env = sim.env
    ledger = sim.ledger
    t_request = int(env.now)
    payload.t_request = t_request
    holds = []
    latency = 0
    for target in path:
        service = target.serve(payload)
        latency += service.latency
        for hold in service.holds:
            if hold[1] > 0:
                holds.append(hold)
    if len(holds) == 1:  # one hop holds a resource (the common case): no ordering of releases
        resource, cycles, component = holds[0]
        request = resource.request()
        yield request  # request phase
        start = int(env.now)
        payload.t_begin = start
        yield env.timeout(cycles)  # data phase
        resource.release(request)
        ledger.span(component, start, start + cycles, payload.op, category, payload.tile, payload.nbytes)
    else:
        requests = []
        for resource, _, _ in holds:  # request phase: acquire in rank order
            request = resource.request()
            requests.append(request)
            yield request
        start = int(env.now)
        payload.t_begin = start
        order = sorted(range(len(holds)), key=[hold[1] for hold in holds].__getitem__)  # by cycles, stable
        elapsed = 0
        for i in order:  # data phase: every hop streams concurrently and is released after its own service time
            resource, cycles, component = holds[i]
            if cycles > elapsed:
                yield env.timeout(cycles - elapsed)
                elapsed = cycles
            resource.release(requests[i])
            ledger.span(component, start, start + cycles, payload.op, category, payload.tile, payload.nbytes)
    if latency:
        yield env.timeout(latency)  # response phase
    t_end = int(env.now)
    payload.t_end = t_end
    ledger.touch(payload.op, t_request, t_end)
