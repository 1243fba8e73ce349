"""Off-chip DRAM: address-interleaved channels with bandwidth, access latency, bursts and optional row timing."""
from __future__ import annotations

import math

from archsim.config.schema import Dram as DramConfig
from archsim.kernel.kernel import Simulator
from archsim.kernel.port import Port
from archsim.kernel.stall import DRAM
from archsim.kernel.tlm import Command, Payload, Service


class Dram:
    """A TLM target. A payload is striped over all channels (burst granularity); each channel is busy for its
    share at its bandwidth, plus row-switch overhead when row timing is on; the access latency is a response delay."""

    rank = 0
    stall = DRAM  # what a transaction waiting on its access latency is blocked on

    def __init__(self, sim: Simulator, cfg: DramConfig, name: str = "dram") -> None:
        self.sim = sim
        self.cfg = cfg
        self.name = name
        self.channel_names = [f"{name}.ch{i}" for i in range(cfg.channels)]
        self.channels = [Port(sim.env, DRAM) for _ in range(cfg.channels)]
        # bytes one channel moves per accelerator cycle
        self.bytes_per_cycle = cfg.bandwidth_gbps * 1e9 / (sim.clock_mhz * 1e6)
        row = cfg.row_buffer
        self.latency = sim.cycles(cfg.latency_ns + (row.trcd_ns + row.tcl_ns if row else 0.0))
        self.row_switch = sim.cycles(row.trp_ns + row.trcd_ns) / row.banks if row else 0.0

    @property
    def total_bytes_per_cycle(self) -> float:
        return self.bytes_per_cycle * self.cfg.channels

    def split(self, nbytes: int) -> list[int]:
        """Bytes per channel for a striped access, rounded up to whole bursts."""
        burst = self.cfg.burst_bytes
        bursts = math.ceil(nbytes / burst)
        n = self.cfg.channels
        per = [bursts // n + (1 if i < bursts % n else 0) for i in range(n)]
        return [b * burst for b in per]

    def serve(self, payload: Payload) -> Service:
        cfg, ledger = self.cfg, self.sim.ledger
        reading = payload.command is Command.READ
        pj_bit = cfg.read_energy if reading else cfg.write_energy
        holds = []
        for ch, name, nbytes in zip(self.channels, self.channel_names, self.split(payload.nbytes)):
            if nbytes == 0:
                continue
            cycles = math.ceil(nbytes / self.bytes_per_cycle)
            pj = nbytes * 8 * pj_bit
            if cfg.row_buffer is not None:
                rows = math.ceil(nbytes / cfg.row_buffer.row_bytes)
                cycles += math.ceil((rows - 1) * self.row_switch)
                pj += rows * cfg.row_buffer.activate_pj
            holds.append((ch, cycles, name))
            ledger.charge(name, payload.op, payload.op_kind, pj)
            (ledger.read_bytes if reading else ledger.write_bytes)[name] += nbytes
        if reading:
            ledger.op_dram_read[payload.op] += payload.nbytes
        else:
            ledger.op_dram_write[payload.op] += payload.nbytes
        return Service(tuple(holds), self.latency)
