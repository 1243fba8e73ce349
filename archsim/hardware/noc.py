"""The on-chip network between buffers, DRAM interface and engines: a shared bus, a crossbar, or a 2-D mesh."""
from __future__ import annotations

import math
from typing import Sequence

from archsim.config.schema import Noc as NocConfig
from archsim.kernel.kernel import Simulator
from archsim.kernel.port import Port
from archsim.kernel.stall import NOC
from archsim.kernel.tlm import Command, Payload, Service


class NocLink:
    """A TLM target for one route: the link resource it contends for and the hops it crosses."""

    rank = 1
    stall = NOC  # what a transaction waiting on its hop latency is blocked on

    def __init__(self, noc: "Noc", resource: Port, component: str, hops: int) -> None:
        self.noc = noc
        self.resource = resource
        self.name = component
        self.hops = hops
        self.bytes_per_cycle = noc.cfg.bytes_per_cycle  # read once: serve() runs for every transfer
        self.latency = hops * noc.cfg.hop_latency_cycles

    def serve(self, payload: Payload) -> Service:
        cfg = self.noc.cfg
        ledger = self.noc.sim.ledger
        ledger.charge(self.name, payload.op, payload.op_kind, payload.nbytes * 8 * self.hops * cfg.pj_per_bit_hop)
        # the bytes the link carried: reads flow toward the engines, writes away from them
        (ledger.read_bytes if payload.command is Command.READ else ledger.write_bytes)[self.name] += payload.nbytes
        cycles = math.ceil(payload.nbytes / self.bytes_per_cycle)
        return Service(((self.resource, cycles, self.name),), self.latency)


class Noc:
    """Bus: every transfer shares one link. Crossbar: one link per destination port, one hop. Mesh: one link per
    destination router, hops by XY (Manhattan) distance between the endpoints' grid positions."""

    def __init__(self, sim: Simulator, cfg: NocConfig, endpoints: Sequence[str]) -> None:
        self.sim = sim
        self.cfg = cfg
        self.position = {name: divmod(i, cfg.mesh_cols) for i, name in enumerate(endpoints)}
        self._links: dict[str, Port] = {}
        self._routes: dict[tuple[str, str], NocLink] = {}

    def _resource(self, key: str) -> Port:
        res = self._links.get(key)
        if res is None:
            res = self._links[key] = Port(self.sim.env, NOC)
        return res

    def route(self, src: str, dst: str) -> NocLink:
        """The link target for a transfer from ``src`` to ``dst`` (cached)."""
        key = (src, dst)
        link = self._routes.get(key)
        if link is None:
            topo = self.cfg.topology
            if topo == "bus":
                link = NocLink(self, self._resource("noc.bus"), "noc.bus", 1)
            else:
                name = f"noc.{dst}"
                hops = 1
                if topo == "mesh":
                    (r0, c0), (r1, c1) = self.position[src], self.position[dst]
                    hops = max(1, abs(r0 - r1) + abs(c0 - c1))
                link = NocLink(self, self._resource(name), name, hops)
            self._routes[key] = link
        return link
