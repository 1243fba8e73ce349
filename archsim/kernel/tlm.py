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
from typing import TYPE_CHECKING, Any, Generator, Protocol, Sequence

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


@dataclass(frozen=True, slots=True)
class Service:
    """A target's answer for one payload: one or more (resource, hold cycles, component name) plus a latency."""

    holds: tuple[tuple[simpy.Resource, int, str], ...]
    latency: int


class Target(Protocol):
    """Anything that serves payloads: DRAM, an SRAM buffer, a NoC link."""

    name: str
    rank: int

    def serve(self, payload: Payload) -> Service:
        """Timing of ``payload`` at this target; charge its energy and traffic to the ledger."""
        ...


def transport(sim: "Simulator", path: Sequence[Target], payload: Payload, category: str) -> Process:
    """Carry ``payload`` across ``path`` (a SimPy process body). Returns when the response phase ends."""
    env = sim.env
    payload.t_request = int(env.now)
    services = [t.serve(payload) for t in sorted(path, key=lambda t: t.rank)]
    holds = [h for s in services for h in s.holds if h[1] > 0]
    requests = []
    for resource, _, _ in holds:  # request phase: acquire in rank order
        req = resource.request()
        requests.append(req)
        yield req
    start = int(env.now)
    payload.t_begin = start
    order = sorted(range(len(holds)), key=lambda i: holds[i][1])
    elapsed = 0
    ledger = sim.ledger
    for i in order:  # data phase: every hop streams concurrently and is released after its own service time
        resource, cycles, component = holds[i]
        if cycles > elapsed:
            yield env.timeout(cycles - elapsed)
            elapsed = cycles
        resource.release(requests[i])
        ledger.span(component, start, start + cycles, payload.op, category, payload.tile, payload.nbytes)
    latency = sum(s.latency for s in services)
    if latency:
        yield env.timeout(latency)  # response phase
    payload.t_end = int(env.now)
    ledger.touch(payload.op, payload.t_request, payload.t_end)
