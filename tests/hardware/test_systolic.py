"""The ``systolic`` engine kind: SCALE-Sim's fold and cycle counts worked by hand, its SRAM access counts, the
compute bound, the recorded SCALE-Sim reference (tests/data/scalesim/reference.json) and a starved array."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

import archsim
from archsim.config import load_config
from archsim.errors import ConfigError
from archsim.hardware.kind import ENGINE_KINDS, OpCost, kind_of
from archsim.hardware.systolic import SystolicDataflow, SystolicEngine, counts, gemm_counts
from archsim.workloads.geometry import Depthwise, Gemm
from archsim.workloads.ir import Op, Tensor, make_workload
from helpers import ROOT, linear_op

REFERENCE = ROOT / "tests" / "data" / "scalesim" / "reference.json"
DATAFLOWS: tuple[SystolicDataflow, ...] = ("os", "ws", "is")


def linear(m: int, k: int, n: int, a_bits: int = 8, w_bits: int = 8) -> tuple[Op, dict[str, Tensor]]:
    ts = {t.name: t for t in (Tensor("x", (m, k), a_bits), Tensor("w", (n, k), w_bits, is_weight=True),
                              Tensor("y", (m, n)))}
    return Op("fc", "linear", ("x",), "y", ("w",), macs=m * k * n), ts


def cost(cfg: SystolicEngine, m: int, k: int, n: int, a_bits: int = 8, w_bits: int = 8) -> OpCost:
    op, ts = linear(m, k, n, a_bits, w_bits)
    return kind_of(cfg).cost(cfg, op, ts, op.kind)


def test_registered_and_configured_through_the_registry() -> None:
    assert "systolic" in ENGINE_KINDS.names()
    for df in DATAFLOWS:
        cfg = load_config(ROOT / "arch_configs" / f"systolic_32x32_{df}.yaml")
        sa = cfg.engines["sa"]
        assert isinstance(sa, SystolicEngine) and sa.dataflow == df
        assert kind_of(sa).peak_macs_per_cycle(sa) == 1024


@pytest.mark.parametrize("key, value", [("rows", 0), ("cols", -2), ("dataflow", "rs"), ("psum_bits", 0)])
def test_bad_keys_are_named(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"engines.sa.{key}"):
        load_config(ROOT / "arch_configs" / "systolic_32x32_ws.yaml", [f"engines.sa.{key}={value}"])


# A 4x4 array on (M=4 x K=8) @ (K=8 x N=4). Sr x Sc is the part of the GEMM spread over rows x cols, T is streamed:
#   os: Sr=M=4, Sc=N=4, T=K=8: 1 x 1 folds of T + R + C - 2 = 8 + 4 + 4 - 2 = 14 cycles -> 14
#   ws: Sr=K=8, Sc=N=4, T=M=4: 2 x 1 folds of 2R + C + T - 2 = 8 + 4 + 4 - 2 = 14 cycles -> 28
#   is: Sr=K=8, Sc=M=4, T=N=4: 2 x 1 folds of 2R + C + T - 2 = 8 + 4 + 4 - 2 = 14 cycles -> 28
# (SCALE-Sim 3.0.0 reports 13, 27 and 27: the 0-based index of the last of these cycles.)
@pytest.mark.parametrize("dataflow, folds, cycles", [("os", 1, 14), ("ws", 2, 28), ("is", 2, 28)])
def test_4x4_array_on_a_4x8x4_gemm(dataflow: SystolicDataflow, folds: int, cycles: int) -> None:
    cfg = SystolicEngine(rows=4, cols=4, dataflow=dataflow)
    c = cost(cfg, 4, 8, 4)
    assert (c.cycles, c.macs) == (cycles, 4 * 8 * 4)
    assert c.detail == f"dataflow={dataflow},folds={folds}"


# Several folds each way: a 4x4 array on (M=10 x K=13) @ (K=13 x N=9):
#   os: ceil(10/4) x ceil(9/4) = 3 x 3 = 9 folds of 13 + 4 + 4 - 2 = 19 -> 171
#   ws: ceil(13/4) x ceil(9/4) = 4 x 3 = 12 folds of 8 + 4 + 10 - 2 = 20 -> 240
#   is: ceil(13/4) x ceil(10/4) = 4 x 3 = 12 folds of 8 + 4 + 9 - 2 = 19 -> 228
# SRAM element accesses (ifmap reads, filter reads, output writes, partial-sum writes):
#   os: inputs once per column fold 10*13*3 = 390, weights once per row fold 13*9*3 = 351, 90 outputs
#   ws: inputs once per column fold 390, weights once 117, 90 outputs + 90 partial sums per extra K fold (3) = 270
#   is: inputs once 130, weights once per column fold (over M) 117*3 = 351, 90 outputs + 270 partial sums
# (SCALE-Sim 3.0.0: 170, 239, 227 cycles; the same reads; ofmap writes 162 = 90 + 9 folds x (4 + 4), 360, 360.)
@pytest.mark.parametrize("dataflow, cycles, accesses", [
    ("os", 171, (390, 351, 90, 0)), ("ws", 240, (390, 117, 90, 270)), ("is", 228, (130, 351, 90, 270))])
def test_multi_fold_cycles_and_sram_accesses(dataflow: SystolicDataflow, cycles: int, accesses: tuple[int, ...]) -> None:
    c = gemm_counts(m=10, k=13, n=9, rows=4, cols=4, dataflow=dataflow)
    assert c.cycles == cycles
    assert (c.ifmap_reads, c.filter_reads, c.output_writes, c.psum_writes) == accesses


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_sram_traffic_in_bytes(dataflow: SystolicDataflow) -> None:
    """8-bit operands and outputs: one byte per element; partial sums at psum_bits (32: four bytes)."""
    c = gemm_counts(m=10, k=13, n=9, rows=4, cols=4, dataflow=dataflow)
    got = cost(SystolicEngine(rows=4, cols=4, dataflow=dataflow), 10, 13, 9)
    assert (got.act_read_bytes, got.weight_read_bytes) == (c.ifmap_reads, c.filter_reads)
    assert got.write_bytes == c.output_writes + 4 * c.psum_writes
    assert got.energy_pj == pytest.approx(10 * 13 * 9 * 0.23)


def test_activation_times_activation_reads_both_operands_from_the_activation_buffer() -> None:
    a, b, y = Tensor("a", (1, 2, 16, 8)), Tensor("b", (1, 2, 8, 16)), Tensor("y", (1, 2, 16, 16))
    op = Op("qk", "matmul", ("a", "b"), "y", macs=2 * 16 * 8 * 16)
    cfg = SystolicEngine(rows=4, cols=4, dataflow="os")
    c = kind_of(cfg).cost(cfg, op, {"a": a, "b": b, "y": y}, "matmul")
    one = gemm_counts(m=16, k=8, n=16, rows=4, cols=4, dataflow="os")
    assert c.cycles == 2 * one.cycles  # the two heads run one after the other
    assert (c.act_read_bytes, c.weight_read_bytes) == (2 * (one.ifmap_reads + one.filter_reads), 0)


def test_conv_reduces_over_channels_and_taps() -> None:
    """A 3x3 conv, 8 -> 16 channels, 6x6 outputs: GEMM M=36, K=8*9=72, N=16 (SCALE-Sim's im2col window)."""
    cfg = SystolicEngine(rows=8, cols=8, dataflow="ws")
    assert counts(cfg, Gemm(groups=1, m=36, k=8, n=16, taps=9)) == gemm_counts(36, 72, 16, 8, 8, "ws")


def test_depthwise_runs_channel_by_channel_on_one_column() -> None:
    """3 channels of 4x4 outputs, 3x3 taps: per channel a (16 x 9) @ (9 x 1) GEMM on a 4x4 array.
    os: ceil(16/4) x 1 = 4 folds of 9 + 4 + 4 - 2 = 15 -> 60; ws: ceil(9/4) x 1 = 3 folds of 8 + 4 + 16 - 2 = 26 -> 78;
    is: ceil(9/4) x ceil(16/4) = 12 folds of 8 + 4 + 1 - 2 = 11 -> 132; times 3 channels."""
    dw = Depthwise(channels=3, rows=4, width=4, taps=9, kernel_rows=3)
    got = {df: counts(SystolicEngine(rows=4, cols=4, dataflow=df), dw).cycles for df in DATAFLOWS}
    assert got == {"os": 3 * 60, "ws": 3 * 78, "is": 3 * 132}


def test_operands_wider_than_the_multiplier_take_several_passes() -> None:
    cfg = SystolicEngine(rows=4, cols=4, dataflow="ws", multiplier_bits=8)
    base, wide = cost(cfg, 10, 13, 9), cost(cfg, 10, 13, 9, a_bits=16)
    assert wide.cycles == 2 * base.cycles  # two 8-bit activation slices per weight
    assert wide.act_read_bytes == 2 * base.act_read_bytes and wide.weight_read_bytes == 2 * base.weight_read_bytes
    assert wide.energy_pj == pytest.approx(2 * base.energy_pj)


def test_never_faster_than_the_compute_bound() -> None:
    for (r, c), (m, k, n), df in itertools.product([(1, 1), (1, 4), (4, 4), (8, 2), (32, 32)],
                                                   [(1, 1, 1), (3, 5, 7), (16, 16, 16), (197, 64, 197)], DATAFLOWS):
        cfg = SystolicEngine(rows=r, cols=c, dataflow=df)
        got = cost(cfg, m, k, n)
        assert got.cycles >= math.ceil(m * k * n / (r * c)), (r, c, m, k, n, df)
        assert 0 < got.macs / (got.cycles * r * c) <= 1


def _reference() -> dict:
    return json.loads(REFERENCE.read_text())


def test_recorded_reference_says_what_produced_it() -> None:
    ref = _reference()
    assert ref["scalesim"].startswith("scalesim ") and "scalesim.scale" in ref["command"]
    assert ref["array"] == {"rows": 32, "cols": 32} and len(ref["layers"]) >= 12


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_recorded_scalesim_reference_within_2_percent(dataflow: SystolicDataflow) -> None:
    """Every recorded layer: archsim's cycles are SCALE-Sim's last cycle index + 1, and its SRAM element accesses
    equal SCALE-Sim's (whose OS ofmap count adds rows + cols per fold)."""
    ref = _reference()
    rows, cols = ref["array"]["rows"], ref["array"]["cols"]
    cfg = SystolicEngine(rows=rows, cols=cols, dataflow=dataflow)
    for layer in ref["layers"]:
        s = layer[dataflow]
        assert s["stall_cycles"] == 0, layer["label"]
        got = cost(cfg, layer["m"], layer["k"], layer["n"]).cycles
        assert abs(got / s["cycles"] - 1) <= 0.02, (layer["label"], got, s["cycles"])
        assert got == s["cycles"] + 1, layer["label"]
        c = counts(cfg, Gemm(1, layer["m"], layer["k"], layer["n"]))
        extra = c.folds * (rows + cols) if dataflow == "os" else 0
        assert (c.ifmap_reads, c.filter_reads, c.output_writes + c.psum_writes + extra) == \
            (s["ifmap_reads"], s["filter_reads"], s["ofmap_writes"]), layer["label"]


STARVED = """
name: starved
clock_mhz: 500
buffers:
  act_buf: {{capacity_kib: 256, banks: {banks}, port_bits: 8, holds: [activation]}}
  wgt_buf: {{capacity_kib: 256, banks: 8, port_bits: 64, holds: [weight]}}
engines:
  sa: {{type: systolic, rows: 8, cols: 8, dataflow: ws}}
mapping:
  requant: false
  assign: {{linear: sa}}
"""


def test_a_narrow_buffer_port_stalls_the_array(tmp_path: Path) -> None:
    """(64 x 64) @ (64 x 64) on 8x8 WS: 8 x 8 folds of 16 + 8 + 64 - 2 = 86 -> 5,504 compute cycles, while the
    inputs are read once per column fold: 64 * 64 * 8 = 32,768 bytes. At 1 byte per cycle (one 8-bit bank) the
    array waits for them; at 64 bytes per cycle it does not."""
    x = Tensor("x", (1, 64, 64))
    fc, ts = linear_op("fc", x, 64)
    workload = make_workload("one_fc", [x, *ts], [fc], {"model": "one_fc"})
    compute = gemm_counts(64, 64, 64, 8, 8, "ws")
    assert compute.cycles == 5504 and compute.ifmap_reads == 32768
    runs = {}
    for banks in (1, 64):
        path = tmp_path / f"starved{banks}.yaml"
        path.write_text(STARVED.format(banks=banks))
        runs[banks] = archsim.simulate(path, workload)
    for result in runs.values():
        assert result.engines["sa"].busy_cycles == compute.cycles  # the array computes for as long either way
    narrow, wide = (next(r for r in runs[b].ops if r.op == "fc") for b in (1, 64))
    assert narrow.end_cycle - narrow.start_cycle >= compute.ifmap_reads > compute.cycles
    assert runs[1].components["act_buf"].busy_cycles >= compute.ifmap_reads
    assert wide.end_cycle - wide.start_cycle < narrow.end_cycle - narrow.start_cycle
    assert runs[64].latency_cycles < runs[1].latency_cycles
