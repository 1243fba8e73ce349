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

from archsim.kernel.stall import BUFFER, SHIFT

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


def transport(sim: "Simulator", path: Sequence[Target], payload: Payload, category: str,
              marks: list[int] | None = None) -> Process:
    """Carry ``payload`` across ``path`` (a SimPy process body). Returns when the response phase ends."""
    ranked = sorted(path, key=_rank)
    return transport_ranked(sim, ranked, payload, category, marks, response_stall(ranked))


def response_stall(path: Sequence[Target]) -> int:
    """The stall code of a path's response phase: that of its target with the longest latency (ties: the later in
    rank order, e.g. the SRAM buffer over a one-hop NoC link). Targets without a ``latency`` count as 0."""
    most, code = -1, BUFFER
    for target in path:
        latency = getattr(target, "latency", 0)
        if latency >= most:
            most, code = latency, getattr(target, "stall", BUFFER)
    return code


def transport_ranked(sim: "Simulator", path: Sequence[Target], payload: Payload, category: str,
                     marks: list[int] | None = None, late: int = BUFFER) -> Process:
    """:func:`transport` over a ``path`` already in rank order (the runner builds its paths so, once per task).

    With ``marks``, the initiator's stage log (archsim.kernel.stall), it appends ``cycle << SHIFT | code`` when what
    the transaction is blocked on changes: the ``stall`` of the hop that sets the data phase (its longest hold) from
    the request on, that of a resource whose request has to queue while it queues, and ``late`` (the path's
    :func:`response_stall`) in the response phase. It schedules no extra event."""
    env = sim.env
    ledger = sim.ledger
    t_request = int(env.now)
    payload.t_request = t_request
    holds = []
    latency = 0
    code = late
    for target in path:
        service = target.serve(payload)
        latency += service.latency
        for hold in service.holds:
            if hold[1] > 0:
                holds.append(hold)
    if len(holds) == 1:  # one hop holds a resource: no ordering of releases
        resource, cycles, component = holds[0]
        if marks is not None:  # queueing for the resource and streaming through it: the same reason
            code = resource.stall  # type: ignore[attr-defined]
            marks.append(t_request << SHIFT | code)
        request = resource.request()
        yield request  # request phase
        start = int(env.now)
        payload.t_begin = start
        yield env.timeout(cycles)  # data phase
        resource.release(request)
        ledger.span(component, start, start + cycles, payload.op, category, payload.tile, payload.nbytes)
    elif holds:
        order = sorted(range(len(holds)), key=[hold[1] for hold in holds].__getitem__)  # by cycles, stable
        waited = False
        if marks is not None:  # the data phase lasts as long as its longest hold
            code = holds[order[-1]][0].stall  # type: ignore[attr-defined]
            marks.append(t_request << SHIFT | code)
        requests = []
        for resource, _, _ in holds:  # request phase: acquire in rank order
            request = resource.request()
            requests.append(request)
            if marks is not None and resource.user is not request:  # type: ignore[attr-defined]
                marks.append(int(env.now) << SHIFT | resource.stall)  # type: ignore[attr-defined]  # it queues
                waited = True
            yield request
        start = int(env.now)
        payload.t_begin = start
        if waited:
            marks.append(start << SHIFT | code)  # type: ignore[union-attr]
        elapsed = 0
        for i in order:  # data phase: every hop streams concurrently and is released after its own service time
            resource, cycles, component = holds[i]
            if cycles > elapsed:
                yield env.timeout(cycles - elapsed)
                elapsed = cycles
            resource.release(requests[i])
            ledger.span(component, start, start + cycles, payload.op, category, payload.tile, payload.nbytes)
    else:
        payload.t_begin = t_request
    if latency:
        if marks is not None and code != late:
            marks.append(int(env.now) << SHIFT | late)
        yield env.timeout(latency)  # response phase
    t_end = int(env.now)
    payload.t_end = t_end
    ledger.touch(payload.op, t_request, t_end)
