"""On-chip SRAM buffer: a banked port with a bandwidth; capacity is enforced by the tiler (archsim.mapping)."""
from __future__ import annotations

import math

from archsim.config.schema import Buffer as BufferConfig
from archsim.kernel.kernel import Simulator
from archsim.kernel.port import Port
from archsim.kernel.stall import BUFFER
from archsim.kernel.tlm import Command, Payload, Service


class SramBuffer:
    """A TLM target: one port moving ``banks * port_bits`` bits per cycle, read and write energy per bit."""

    rank = 2
    stall = BUFFER  # what a transaction waiting on its access latency is blocked on
    latency = 1  # cycles of access latency (the response phase)

    def __init__(self, sim: Simulator, name: str, cfg: BufferConfig) -> None:
        self.sim = sim
        self.name = name
        self.cfg = cfg
        self.port = Port(sim.env, BUFFER)
        self.bytes_per_cycle = cfg.bytes_per_cycle  # read once: serve() runs for every transfer

    @property
    def capacity_bytes(self) -> int:
        return self.cfg.capacity_bytes

    def serve(self, payload: Payload) -> Service:
        reading = payload.command is Command.READ
        pj = payload.nbytes * 8 * (self.cfg.read_pj_per_bit if reading else self.cfg.write_pj_per_bit)
        ledger = self.sim.ledger
        ledger.charge(self.name, payload.op, payload.op_kind, pj)
        (ledger.read_bytes if reading else ledger.write_bytes)[self.name] += payload.nbytes
        cycles = math.ceil(payload.nbytes / self.bytes_per_cycle)
        return Service(((self.port, cycles, self.name),), self.latency)
