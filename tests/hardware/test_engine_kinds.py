"""The built-in engine kinds' cost models against hand-computed counts (the authors' rules B and C;
output-stationary folds; vector, re-quantization and DMA units), asked through the registry as the mapper does."""
from __future__ import annotations

import math
from typing import Mapping

from archsim.config.schema import EngineBase
from archsim.hardware.kind import OpCost, kind_of
from archsim.hardware.mac import MatEngine, PeArrayEngine, RmacEngine
from archsim.workloads.geometry import Depthwise, Gemm, geometry
from archsim.workloads.ir import Op, Tensor


def mac_cost(op: Op, ts: Mapping[str, Tensor], geom: Gemm | Depthwise, cfg: EngineBase) -> OpCost:
    return kind_of(cfg).cost(cfg, op, ts, op.kind, geom)


def _conv(cin: int, cout: int, h: int, k: int, groups: int = 1, stride: int = 1):
    ho = h // stride
    x = Tensor("x", (1, cin, h, h))
    w = Tensor("w", (cout, cin // groups, k, k), is_weight=True)
    y = Tensor("y", (1, cout, ho, ho))
    macs = cout * ho * ho * (cin // groups) * k * k
    op = Op("conv", "conv2d", ("x",), "y", ("w",), {"kernel": (k, k), "groups": groups}, macs)
    return op, {t.name: t for t in (x, w, y)}


def test_pointwise_on_mat_matches_rule_b_single_pg() -> None:
    op, ts = _conv(cin=64, cout=256, h=28, k=1)
    mat = MatEngine(lanes=8, multipliers=8, groups=1)
    cost = mac_cost(op, ts, geometry(op, ts), mat)
    assert cost.cycles == math.ceil(256 / 8) * math.ceil(64 / 8) * 28 * 28
    assert cost.macs == 64 * 256 * 28 * 28


def test_processing_groups_split_the_better_way() -> None:
    op, ts = _conv(cin=64, cout=24, h=28, k=1)
    mat = MatEngine(lanes=8, multipliers=8, groups=16)
    cost = mac_cost(op, ts, geometry(op, ts), mat)
    by_channels = math.ceil(math.ceil(24 / 16) / 8) * 8 * 784
    by_pixels = math.ceil(24 / 8) * 8 * math.ceil(784 / 16)
    assert cost.cycles == min(by_channels, by_pixels)
    assert cost.detail == "pg_split=pixels"


def test_depthwise_on_rmac_matches_rule_c() -> None:
    op, ts = _conv(cin=128, cout=128, h=14, k=3, groups=128)
    geom = geometry(op, ts)
    assert isinstance(geom, Depthwise)
    rmac = RmacEngine(lanes=8, pes=8, groups=1)
    cost = mac_cost(op, ts, geom, rmac)
    assert cost.cycles == math.ceil(14 / 8) * math.ceil(128 / 8) * 14 * 9


def test_depthwise_on_mat_is_poorly_utilised() -> None:
    op, ts = _conv(cin=128, cout=128, h=14, k=3, groups=128)
    mat = MatEngine(lanes=8, multipliers=8, groups=1)
    rmac = RmacEngine(lanes=8, pes=8, groups=1)
    geom = geometry(op, ts)
    assert mac_cost(op, ts, geom, mat).cycles > 4 * mac_cost(op, ts, geom, rmac).cycles


def test_output_stationary_pe_array_folds() -> None:
    x = Tensor("x", (1, 197, 384))
    w = Tensor("w", (1536, 384), is_weight=True)
    y = Tensor("y", (1, 197, 1536))
    op = Op("fc", "linear", ("x",), "y", ("w",), {}, 197 * 384 * 1536)
    ts = {t.name: t for t in (x, w, y)}
    geom = geometry(op, ts)
    assert geom == Gemm(groups=1, m=197, k=384, n=1536)
    pe = PeArrayEngine(rows=16, cols=16)
    cost = mac_cost(op, ts, geom, pe)
    assert cost.cycles == math.ceil(197 / 16) * math.ceil(1536 / 16) * (384 + 16 + 16 - 1)
    assert cost.cycles >= cost.macs / pe.peak_macs_per_cycle


def test_mac_energy_scales_with_operand_bits() -> None:
    x8 = Tensor("x", (1, 16, 64), bits=8)
    w8 = Tensor("w", (64, 64), bits=8, is_weight=True)
    w4 = Tensor("w", (64, 64), bits=4, is_weight=True)
    y = Tensor("y", (1, 16, 64))
    op = Op("fc", "linear", ("x",), "y", ("w",), {}, 16 * 64 * 64)
    mat = MatEngine(mac_pj=0.2)
    e8 = mac_cost(op, {"x": x8, "w": w8, "y": y}, Gemm(1, 16, 64, 64), mat).energy_pj
    e4 = mac_cost(op, {"x": x8, "w": w4, "y": y}, Gemm(1, 16, 64, 64), mat).energy_pj
    assert e8 == 16 * 64 * 64 * 0.2
    assert e4 == e8 / 2


def test_two_products_per_dsp_halve_cycles() -> None:
    op, ts = _conv(cin=64, cout=64, h=8, k=1)
    one = mac_cost(op, ts, geometry(op, ts), MatEngine(groups=1))
    two = mac_cost(op, ts, geometry(op, ts), MatEngine(groups=1, macs_per_multiplier=2))
    assert two.cycles == math.ceil(one.cycles / 2)


def test_requant_is_a_shift_for_pot_and_a_multiply_for_float() -> None:
    from archsim.hardware.requant import RequantEngine, RequantMode

    def requant_cost(elements: int, scale: str, cfg: RequantEngine) -> OpCost:
        op = Op("r", "requant", ("acc",), "out", scale_kind=scale)
        return kind_of(cfg).cost(cfg, op, {"acc": Tensor("acc", (elements,), 32), "out": Tensor("out", (elements,))},
                                 "requant")

    unit = RequantEngine(lanes=16, shift=RequantMode(cycles_per_element=1, latency_cycles=1, pj_per_element=0.03),
                         multiply=RequantMode(cycles_per_element=1, latency_cycles=3, pj_per_element=0.25))
    pot = requant_cost(1000, "pot", unit)
    log2 = requant_cost(1000, "log2", unit)
    flt = requant_cost(1000, "float", unit)
    assert (pot.cycles, pot.energy_pj, pot.detail) == (1 + 63, 1000 * 0.03, "shift")
    assert log2 == pot
    assert (flt.cycles, flt.energy_pj, flt.detail) == (3 + 63, 1000 * 0.25, "multiply")


def test_nonlinear_unit_cost_uses_the_most_specific_function() -> None:
    from archsim.hardware.vector import NonlinearEngine, NonlinearOp
    from archsim.mapping.assign import op_classes

    vec = NonlinearEngine(lanes=8, ops={"gelu": NonlinearOp(cycles_per_element=2, latency_cycles=5, pj_per_element=1.0),
                                        "activation": NonlinearOp(cycles_per_element=1, latency_cycles=1)})
    x = Tensor("x", (1, 10, 16))
    y = Tensor("y", (1, 10, 16))
    op = Op("g", "activation", ("x",), "y", attrs={"fn": "gelu"})
    ts = {"x": x, "y": y}
    cls = kind_of(vec).supports(vec, op, op_classes(op, ts))
    assert cls == "gelu"
    cost = kind_of(vec).cost(vec, op, ts, cls)
    assert cost.cycles == 5 + math.ceil(160 * 2 / 8)
    assert cost.energy_pj == 160.0 and cost.act_read_bytes == 160 and cost.write_bytes == 160


def test_dma_copy_cost() -> None:
    from archsim.hardware.dma import DmaEngine

    a, b = Tensor("a", (1, 64, 8, 8)), Tensor("b", (1, 64, 8, 8))
    out = Tensor("c", (1, 128, 8, 8))
    op = Op("cat", "data_movement", ("a", "b"), "c", attrs={"fn": "cat"})
    dma = DmaEngine(bytes_per_cycle=64, latency_cycles=4)
    cost = kind_of(dma).cost(dma, op, {"a": a, "b": b, "c": out}, "data_movement")
    assert cost.cycles == 4 + 8192 // 64
    assert cost.act_read_bytes == 8192 and cost.write_bytes == 8192


def test_packed_4bit_weights_double_the_rate_only_when_configured() -> None:
    x = Tensor("x", (1, 16, 64), bits=8)
    w4 = Tensor("w", (64, 64), bits=4, is_weight=True)
    y = Tensor("y", (1, 16, 64))
    op = Op("fc", "linear", ("x",), "y", ("w",), {}, 16 * 64 * 64)
    ts = {"x": x, "w": w4, "y": y}
    plain = mac_cost(op, ts, Gemm(1, 16, 64, 64), MatEngine(groups=1))
    packed = mac_cost(op, ts, Gemm(1, 16, 64, 64), MatEngine(groups=1, pack_weights=True))
    assert packed.cycles == math.ceil(plain.cycles / 2)
    ts8 = {"x": x, "w": Tensor("w", (64, 64), bits=8, is_weight=True), "y": y}
    assert mac_cost(op, ts8, Gemm(1, 16, 64, 64), MatEngine(groups=1, pack_weights=True)).cycles == plain.cycles
