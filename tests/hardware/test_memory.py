"""DRAM, SRAM buffer and NoC targets: timing and energy against hand-computed values."""
from __future__ import annotations

import math

import pytest

from archsim.hardware.sram import SramBuffer
from archsim.hardware.dram import Dram
from archsim.hardware.noc import Noc
from archsim.config.schema import Buffer, Dram as DramCfg, Noc as NocCfg, RowBuffer
from archsim.kernel.kernel import Simulator
from archsim.kernel.tlm import Command, Payload, transport


def _run(sim: Simulator, path, nbytes: int, command=Command.READ) -> Payload:
    p = Payload(command, "t", nbytes, "init", "op", "linear")
    sim.env.process(transport(sim, path, p, "x"))
    sim.env.run()
    return p


def test_dram_bandwidth_latency_and_energy() -> None:
    sim = Simulator(200.0)  # 19.2 GB/s at 200 MHz = 96 B/cycle
    dram = Dram(sim, DramCfg(type="ddr4", channels=1, bandwidth_gbps=19.2, latency_ns=45, burst_bytes=64))
    assert dram.bytes_per_cycle == pytest.approx(96.0)
    p = _run(sim, [dram], 9600)
    assert p.t_end == math.ceil(9600 / 96) + 9  # 100 cycles of data + 45 ns = 9 cycles of latency
    assert sim.ledger.energy[("dram.ch0", "linear")] == pytest.approx(9600 * 8 * 12.5)
    assert sim.ledger.op_dram_read["op"] == 9600


def test_dram_channels_share_a_transfer() -> None:
    sim = Simulator(200.0)
    dram = Dram(sim, DramCfg(channels=4, bandwidth_gbps=19.2, latency_ns=0, burst_bytes=64))
    assert dram.split(64 * 10) == [192, 192, 128, 128]
    p = _run(sim, [dram], 64 * 10)
    assert p.t_end == math.ceil(192 / 96)
    assert sum(sim.ledger.read_bytes[n] for n in dram.channel_names) == 640


def test_dram_rounds_up_to_bursts() -> None:
    sim = Simulator(200.0)
    dram = Dram(sim, DramCfg(channels=1, burst_bytes=64))
    assert dram.split(1) == [64]


def test_row_buffer_adds_row_switches_and_activation_energy() -> None:
    sim = Simulator(200.0)
    row = RowBuffer(row_bytes=1024, banks=1, trcd_ns=15, tcl_ns=15, trp_ns=15, activate_pj=1000)
    dram = Dram(sim, DramCfg(channels=1, bandwidth_gbps=19.2, latency_ns=0, burst_bytes=64, row_buffer=row))
    p = _run(sim, [dram], 4096)  # 4 rows: 3 switches of tRP + tRCD = 30 ns = 6 cycles each
    assert p.t_end == math.ceil(4096 / 96) + 3 * 6 + sim.cycles(30)
    assert sim.ledger.energy[("dram.ch0", "linear")] == pytest.approx(4096 * 8 * 12.5 + 4 * 1000)


def test_sram_port_bandwidth_and_energy() -> None:
    sim = Simulator(100.0)
    buf = SramBuffer(sim, "buf", Buffer(capacity_kib=64, banks=4, port_bits=64, read_pj_per_bit=0.5,
                                        write_pj_per_bit=0.7))
    p = _run(sim, [buf], 320, Command.WRITE)  # 32 B per cycle
    assert p.t_end == 10 + 1
    assert sim.ledger.energy[("buf", "linear")] == pytest.approx(320 * 8 * 0.7)
    assert sim.ledger.write_bytes["buf"] == 320


def test_bus_is_shared_crossbar_is_per_destination() -> None:
    for topology, expect_second_begin in (("bus", 2), ("crossbar", 0)):
        sim = Simulator(100.0)
        noc = Noc(sim, NocCfg(topology=topology, link_bits=256, hop_latency_cycles=1), ["a", "b", "c"])
        p1 = Payload(Command.READ, "t", 64, "x", "op1", "linear")
        p2 = Payload(Command.READ, "t", 64, "x", "op2", "linear")
        sim.env.process(transport(sim, [noc.route("a", "b")], p1, "noc"))
        sim.env.process(transport(sim, [noc.route("a", "c")], p2, "noc"))
        sim.env.run()
        assert p2.t_begin == expect_second_begin, topology


def test_mesh_hops_are_manhattan_distance() -> None:
    sim = Simulator(100.0)
    noc = Noc(sim, NocCfg(topology="mesh", mesh_cols=2, hop_latency_cycles=3, pj_per_bit_hop=0.1),
              ["a", "b", "c", "d"])  # a b / c d
    assert noc.route("a", "d").hops == 2
    assert noc.route("a", "b").hops == 1
    p = _run(sim, [noc.route("a", "d")], 64)
    assert p.t_end == 1 + 2 * 3
    assert sim.ledger.energy[("noc.d", "linear")] == pytest.approx(64 * 8 * 2 * 0.1)
