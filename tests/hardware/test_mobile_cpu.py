"""The ``mobile_cpu`` engine kind (PackQViT's Snapdragon 870 target): SIMD instruction counts by hand, packed
sub-8-bit operands halving a 4-bit GEMM's instructions and nothing else, the compute bound, one-line config errors,
and the 8-bit vs packed 4-bit comparison of arch_configs/packqvit_mobile.yaml on DeiT-Tiny (slow)."""
from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import pytest

from archsim.api import simulate
from archsim.cli import main
from archsim.config import load_config
from archsim.errors import ConfigError
from archsim.hardware.cpu import CpuVectorOp, MobileCpuEngine
from archsim.hardware.kind import kind_of
from archsim.result import Result
from archsim.workloads.geometry import geometry
from archsim.workloads.ir import Op, Tensor, Workload, make_workload
from helpers import ROOT

MOBILE = ROOT / "arch_configs" / "packqvit_mobile.yaml"
MAC_KINDS = ("linear", "matmul", "conv2d")


def _linear(m: int, k: int, n: int, a_bits: int, w_bits: int) -> tuple[Op, dict[str, Tensor]]:
    x = Tensor("x", (1, m, k), a_bits)
    w = Tensor("w", (n, k), w_bits, is_weight=True)
    y = Tensor("y", (1, m, n), a_bits)
    return Op("fc", "linear", ("x",), "y", ("w",), macs=m * k * n), {t.name: t for t in (x, w, y)}


def _cost(cfg: MobileCpuEngine, op: Op, ts: dict[str, Tensor], cls: str | None = None):
    return kind_of(cfg).cost(cfg, op, ts, cls or op.kind)


def _mlp(bits: int, tokens: int = 64, dim: int = 64, hidden: int = 128) -> Workload:
    """fc1 -> GELU -> fc2 -> residual add, every tensor at ``bits`` (no torch)."""
    t = {
        "x": Tensor("x", (1, tokens, dim), bits),
        "fc1.weight": Tensor("fc1.weight", (hidden, dim), bits, is_weight=True),
        "fc1": Tensor("fc1", (1, tokens, hidden), bits),
        "act": Tensor("act", (1, tokens, hidden), bits),
        "fc2.weight": Tensor("fc2.weight", (dim, hidden), bits, is_weight=True),
        "fc2": Tensor("fc2", (1, tokens, dim), bits),
        "out": Tensor("out", (1, tokens, dim), bits),
    }
    ops = [Op("fc1", "linear", ("x",), "fc1", ("fc1.weight",), macs=tokens * dim * hidden),
           Op("act", "activation", ("fc1",), "act", attrs={"fn": "gelu"}),
           Op("fc2", "linear", ("act",), "fc2", ("fc2.weight",), macs=tokens * hidden * dim),
           Op("res", "eltwise", ("fc2", "x"), "out", attrs={"fn": "add"})]
    return make_workload(f"mlp_w{bits}a{bits}", t.values(), ops, {"model": "mlp", "source": "test"})


def _busy_by_kind(r: Result) -> Counter[str]:
    """Busy cycles of the CPU by the kind of op it worked on."""
    kinds = {rec.op: rec.kind for rec in r.ops}
    busy: Counter[str] = Counter()
    for s in r.spans:
        if s.component == "cpu":
            busy[kinds[s.op]] += s.end - s.start
    return busy


# ---- cost model, by hand -------------------------------------------------------------------------------------------


def test_8bit_gemm_counts_sdot_instructions_over_cores_and_pipes() -> None:
    op, ts = _linear(m=16, k=64, n=64, a_bits=8, w_bits=8)
    cpu = MobileCpuEngine(cores=4, pipes=2, instr_pj=10.0)
    cost = _cost(cpu, op, ts)
    instructions = (16 * 64 // 4) * (64 // 4)  # 4 int32 outputs per instruction, each 4 products deep
    assert instructions * 16 == op.macs  # 16 int8 MACs per 128-bit SDOT
    assert cost.cycles == instructions // (4 * 2)
    assert cost.macs == op.macs and cost.energy_pj == instructions * 10.0
    assert cost.act_read_bytes == 16 * 64  # one pass: 64 output channels fit one block_n
    assert cost.weight_read_bytes == 64 * 64 and cost.write_bytes == 16 * 64
    assert cpu.peak_macs_per_cycle == 4 * 2 * 16


def test_packing_halves_the_instructions_of_a_4bit_gemm_and_nothing_else() -> None:
    op, ts = _linear(m=16, k=64, n=192, a_bits=4, w_bits=4)
    plain = _cost(MobileCpuEngine(instr_pj=1.0), op, ts)
    packed = _cost(MobileCpuEngine(instr_pj=1.0, pack_subbyte=True), op, ts)
    assert plain.cycles == (16 * 192 // 4) * (64 // 4) // 8  # unpacked: a 4-bit operand fills an 8-bit lane
    assert packed.cycles * 2 == plain.cycles
    assert packed.energy_pj * 2 == plain.energy_pj  # half the instructions issued
    assert (packed.macs, packed.elements) == (plain.macs, plain.elements) == (op.macs, 16 * 192)
    assert (packed.act_read_bytes, packed.weight_read_bytes, packed.write_bytes) == \
        (plain.act_read_bytes, plain.weight_read_bytes, plain.write_bytes) == (16 * 64 * 3 // 2, 192 * 64 // 2, 16 * 192 // 2)


@pytest.mark.parametrize("a_bits, w_bits", [(8, 8), (8, 4), (4, 8), (6, 6)])
def test_operands_of_half_a_lane_or_more_are_not_packed(a_bits: int, w_bits: int) -> None:
    op, ts = _linear(m=8, k=32, n=32, a_bits=a_bits, w_bits=w_bits)
    plain = _cost(MobileCpuEngine(), op, ts)
    packed = _cost(MobileCpuEngine(pack_subbyte=True), op, ts)
    assert packed == plain
    assert packed.cycles == (8 * 32 // 4) * (32 // 4) // 8


def test_packing_stops_at_pack_per_lane() -> None:
    cpu = MobileCpuEngine(pack_subbyte=True, pack_per_lane=2)
    assert [cpu.packing(b) for b in (1, 2, 3, 4, 5, 8, 16)] == [2, 2, 2, 2, 1, 1, 1]
    assert MobileCpuEngine(pack_subbyte=True, pack_per_lane=4).packing(2) == 4
    assert MobileCpuEngine(pack_subbyte=True, pack_per_lane=4).packing(4) == 2  # two 4-bit values fill 8 bits
    assert cpu.macs_per_instruction(16) == 8  # 16-bit operands: two per 32-bit lane, four lanes


def test_clock_ratio_converts_core_cycles_to_config_cycles() -> None:
    op, ts = _linear(m=16, k=64, n=64, a_bits=8, w_bits=8)
    at_1 = _cost(MobileCpuEngine(op_overhead_cycles=100), op, ts).cycles
    assert at_1 == 512 + 100
    assert _cost(MobileCpuEngine(op_overhead_cycles=100, clock_ratio=0.5), op, ts).cycles == 2 * at_1
    assert _cost(MobileCpuEngine(op_overhead_cycles=100, clock_ratio=2.0), op, ts).cycles == at_1 // 2


@pytest.mark.parametrize("ratio", [0.3, 0.75, 1.0, 2420 / 1800, 3.19])
@pytest.mark.parametrize("bits, pack", [(8, False), (8, True), (4, True), (4, False), (2, True)])
def test_no_gemm_beats_the_peak(ratio: float, bits: int, pack: bool) -> None:
    cpu = MobileCpuEngine(clock_ratio=ratio, pack_subbyte=pack)
    for m, k, n in ((1, 1, 1), (3, 5, 7), (197, 192, 576), (16, 64, 64)):
        op, ts = _linear(m, k, n, bits, bits)
        assert _cost(cpu, op, ts).cycles >= math.ceil(op.macs / cpu.peak_macs_per_cycle)


def test_activation_by_activation_matmul_reads_both_operands_from_l2() -> None:
    q = Tensor("q", (1, 3, 16, 64), 8)
    k = Tensor("kt", (1, 3, 64, 16), 8)
    s = Tensor("s", (1, 3, 16, 16), 8)
    op = Op("qk", "matmul", ("q", "kt"), "s", macs=3 * 16 * 64 * 16)
    ts = {t.name: t for t in (q, k, s)}
    assert geometry(op, ts).groups == 3
    cost = _cost(MobileCpuEngine(), op, ts)
    assert cost.weight_read_bytes == 0
    assert cost.act_read_bytes == 3 * 16 * 64 + 3 * 16 * 64
    assert cost.cycles == 3 * (16 * 16 // 4) * (64 // 4) // 8


def test_vector_ops_run_at_elements_per_cycle_on_every_core_whatever_their_bits() -> None:
    cpu = MobileCpuEngine(cores=4, ops={"softmax": CpuVectorOp(elements_per_cycle=0.5, latency_cycles=10,
                                                                pj_per_element=2.0)})
    for bits in (8, 4):
        x, y = Tensor("x", (1, 3, 16, 16), bits), Tensor("y", (1, 3, 16, 16), bits)
        op = Op("sm", "softmax", ("x",), "y")
        ts = {"x": x, "y": y}
        assert kind_of(cpu).supports(cpu, op, ["softmax"]) == "softmax"
        cost = _cost(cpu, op, ts, "softmax")
        assert cost.cycles == 10 + 768 // (0.5 * 4)
        assert cost.energy_pj == 768 * 2.0 and cost.act_read_bytes == cost.write_bytes == 768 * bits // 8
    assert kind_of(cpu).supports(cpu, Op("g", "activation", ("x",), "y", attrs={"fn": "gelu"}),
                                 ["gelu", "activation"]) is None


# ---- whole runs on arch_configs/packqvit_mobile.yaml ------------------------------------------------------------------


def test_packing_halves_gemm_cycles_and_moves_the_same_bytes_in_a_run() -> None:
    overrides = ["engines.cpu.op_overhead_cycles=0"]
    w = _mlp(bits=4)
    packed = simulate(load_config(MOBILE, overrides), w)
    plain = simulate(load_config(MOBILE, [*overrides, "engines.cpu.pack_subbyte=false"]), w)
    assert packed.total_macs == plain.total_macs == w.total_macs
    assert (packed.dram_read_bytes, packed.dram_write_bytes) == (plain.dram_read_bytes, plain.dram_write_bytes)
    for buf in ("l2", "l3"):
        a, b = packed.components[buf], plain.components[buf]
        assert (a.read_bytes, a.write_bytes) == (b.read_bytes, b.write_bytes), buf
    busy_packed, busy_plain = _busy_by_kind(packed), _busy_by_kind(plain)
    # fc1 (64 x 64 -> 128) and fc2 (64 x 128 -> 64): 32768 unpacked instructions each, over 4 cores x 2 pipes
    assert 2 * busy_packed["linear"] == busy_plain["linear"] == 2 * (64 * 128 // 4) * (64 // 4) // 8
    for kind in ("activation", "eltwise", "requant"):
        assert busy_packed[kind] == busy_plain[kind] > 0, kind
    assert packed.latency_cycles < plain.latency_cycles


def test_8bit_runs_are_the_same_with_or_without_packing() -> None:
    w = _mlp(bits=8)
    on = simulate(load_config(MOBILE), w)
    off = simulate(load_config(MOBILE, ["engines.cpu.pack_subbyte=false"]), w)
    assert on.latency_cycles == off.latency_cycles
    assert _busy_by_kind(on) == _busy_by_kind(off)
    assert on.energy_pj_total == off.energy_pj_total


@pytest.mark.parametrize("bits", [8, 4])
def test_no_op_beats_its_compute_bound_and_utilization_is_a_fraction(bits: int) -> None:
    cfg = load_config(MOBILE)
    r = simulate(cfg, _mlp(bits=bits))
    cpu = cfg.engines["cpu"]
    assert isinstance(cpu, MobileCpuEngine)
    peak = cpu.peak_macs_per_cycle
    assert peak == 4 * 2 * 16 * 2  # counted at packed 4-bit operands
    for rec in r.ops:
        if rec.kind in MAC_KINDS:
            assert rec.cycles >= rec.compute_bound_cycles == math.ceil(rec.macs / peak) > 0, rec.op
    assert r.latency_cycles >= math.ceil(r.total_macs / peak)
    assert 0.0 < r.engines["cpu"].utilization <= 1.0
    assert r.energy_pj_total == pytest.approx(sum(r.energy_pj_by_component.values()), rel=1e-12)


@pytest.mark.parametrize("override, key, phrase", [
    ("engines.cpu.cores=0", "engines.cpu.cores", "must be a positive"),
    ("engines.cpu.pipes=-1", "engines.cpu.pipes", "must be a positive"),
    ("engines.cpu.clock_ratio=0", "engines.cpu.clock_ratio", "must be a positive"),
    ("engines.cpu.pack_per_lane=0", "engines.cpu.pack_per_lane", "must be a positive"),
    ("engines.cpu.dot_bits=0", "engines.cpu.dot_bits", "must be an integer >= 1, got 0"),
    ("engines.cpu.acc_bits=12", "engines.cpu.acc_bits", "must be a multiple of dot_bits (8), got 12"),
    ("engines.cpu.simd_bits=100", "engines.cpu.simd_bits", "must be a multiple of acc_bits (32), got 100"),
    ("engines.cpu.pack_subbyte=maybe", "engines.cpu.pack_subbyte", "true or false"),
    ("engines.cpu.ops.softmax.elements_per_cycle=0", "engines.cpu.ops.softmax.elements_per_cycle", "must be a positive"),
    ("engines.cpu.lanes=4", "engines.cpu.lanes", "unknown key"),
])
def test_bad_values_are_one_line_errors_naming_the_key(override: str, key: str, phrase: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(MOBILE, [override])
    message = str(info.value)
    assert message.startswith(f"{MOBILE}: {key}: ") and phrase in message and "\n" not in message


# ---- the PackQViT comparison on a traced model -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("how", [
    ["--set", "defaults.act_bits=4", "--set", "defaults.weight_bits=4", "--quant", "none"],  # the float graph
    ["--set", "quant.w_bits=4", "--set", "quant.a_bits=4"],  # the config's quant: section, PackQViT's quantizer
])
def test_packed_4bit_vs_8bit_on_deit_tiny(how: list[str], tmp_path: Path) -> None:
    code = main(["compare", str(MOBILE), *how, "--model", "deit_tiny", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    w8, w4 = csv.DictReader((tmp_path / "compare.csv").open())
    # only the GEMMs' SIMD instructions halve (softmax, LayerNorm, GELU, re-quantization do not): between 1x and 2x
    assert 1.0 < float(w4["speedup"]) < 2.0
    assert float(w4["dram_mb"]) < float(w8["dram_mb"])  # 4-bit tensors take half the bytes
    assert float(w4["energy_ratio"]) < 1.0
    for row in (w8, w4):
        assert 0.0 < float(row["mac_utilization"]) <= 1.0
