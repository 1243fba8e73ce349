"""Mapping policies on single blocks, against cycle counts computed by hand from the authors' rules.

Trio runs with one processing group per engine (``groups=1``) so Rules B-E of the Trio-ViT authors' cycle model
(shihuihong214/Trio-ViT, latency_v2.py) apply as written: MAT and R-MAC are 8 lanes x 8 multipliers each.
"""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from archsim.api import simulate
from archsim.config import load_config
from archsim.mapping.schedule import build_taskgraph
from archsim.workloads.ir import Workload
from archsim.workloads.yaml_format import load_yaml_workload
from helpers import GENERIC, MLP_YAML, P2VIT, ROOT, TRIO

ONE_PG = ["engines.mat.groups=1", "engines.rmac.groups=1", "engines.ksum.groups=1"]
RULES = [*ONE_PG, "mapping.search=fixed"]  # the authors' loop nests, which the rule tests count by hand

MBCONV = """
name: mbconv
inputs: {x: [1, 32, 14, 14]}
ops:
  - {name: expand, kind: conv2d, in: [x], weights: {expand.weight: [128, 32, 1, 1]}, out: [1, 128, 14, 14],
     kernel: [1, 1], groups: 1}
  - {name: act1, kind: activation, fn: hardswish, in: [expand], out: [1, 128, 14, 14]}
  - {name: dw, kind: conv2d, in: [act1], weights: {dw.weight: [128, 1, 3, 3]}, out: [1, 128, 14, 14],
     kernel: [3, 3], groups: 128}
  - {name: act2, kind: activation, fn: hardswish, in: [dw], out: [1, 128, 14, 14]}
  - {name: project, kind: conv2d, in: [act2], weights: {project.weight: [32, 128, 1, 1]}, out: [1, 32, 14, 14],
     kernel: [1, 1], groups: 1}
"""

# EfficientViT ReLU linear attention, h = 4 heads, N = 49 tokens, dim = 16 (K already transposed)
LINEAR_ATTENTION = """
name: lite_msa
inputs: {q: [4, 49, 16], kt: [4, 16, 49], v: [4, 49, 16]}
ops:
  - {name: vpad, kind: data_movement, fn: constant_pad_nd, in: [v], out: [4, 49, 17]}
  - {name: kv, kind: matmul, in: [kt, vpad], out: [4, 16, 17]}
  - {name: qkv, kind: matmul, in: [q, kv], out: [4, 49, 17]}
"""


def _workload(tmp_path: Path, text: str):
    path = tmp_path / "w.yaml"
    path.write_text(text)
    return load_yaml_workload(path)


def _tasks(graph):
    return {t.name: t for t in graph.tasks}


def test_trio_mbconv_rules_b_c_d(tmp_path: Path) -> None:
    cfg = load_config(TRIO, RULES)
    graph = build_taskgraph(_workload(tmp_path, MBCONV), cfg)
    t = _tasks(graph)
    # Rule B: the expansion 1x1 on all PEs: ceil(128 / (8 + 8)) * ceil(32 / 8) * 14^2 on each array
    rule_b = math.ceil(128 / 16) * math.ceil(32 / 8) * 14 * 14
    assert t["expand"].engines == ("mat", "rmac")
    assert [p.cycles for p in t["expand"].parts] == [rule_b, rule_b]
    # Rule C: depthwise on the R-MAC: ceil(E / L_R) * ceil(C / P_R) * E * k^2
    t_dw = math.ceil(14 / 8) * math.ceil(128 / 8) * 14 * 9
    assert t["dw"].engines == ("rmac",) and t["dw"].cycles == t_dw == 4032
    # Rule D: the projection streams behind the DW on the MAT; the MAT works through what fits in T_dw - T_setup
    # (T_setup = one DW output row): whole passes of 8 output channels, then the first pixels of its next pass.
    # Once the DW ends, both arrays share the rest of that pass by pixels and the remaining channels by channels.
    assert t["dw"].group == t["project"].group != ""
    window = t_dw - math.ceil(t_dw / 14)
    per_pixel = math.ceil(128 / 8)  # one pixel of one pass of 8 output channels on the MAT
    per_pass = per_pixel * 14 * 14
    done = 8 * (window // per_pass)
    pixels = (window - per_pass) // per_pixel
    assert (done, pixels) == (8, 38)
    assert [(p.engine, p.cycles) for p in t["project"].parts] == [("mat", per_pass + pixels * per_pixel)]
    rest_of_pass = (196 - pixels) // 2 * per_pixel  # 158 pixels of 8 channels over two arrays of 8 lanes
    tail = rest_of_pass + math.ceil((32 - done - 8) / 16) * per_pass
    assert [(p.engine, p.cycles) for p in t["project"].tail] == [("mat", tail), ("rmac", tail)]
    assert sum(p.macs for p in (*t["project"].parts, *t["project"].tail)) == 14 * 14 * 128 * 32
    # one tile per DW output row: a finished row releases PW work
    assert t["dw"].tiles == 14


def test_trio_fused_dw_pw_keeps_its_intermediate_on_chip(tmp_path: Path) -> None:
    cfg = load_config(TRIO, RULES)
    w = _workload(tmp_path, MBCONV)
    r = simulate(cfg, w)
    rec = {x.op: x for x in r.ops}
    assert rec["dw"].dram_write_bytes == 0 and rec["act2"].dram_write_bytes == 0
    assert rec["act2"].dram_read_bytes == 0
    assert rec["project"].dram_read_bytes == 32 * 128  # its weights only; the DW output never leaves the chip
    assert rec["project"].engine == "mat+rmac"
    # the tail runs after the depthwise conv: the op cannot end before T_dw + tail
    tail = max(p.cycles for p in _tasks(build_taskgraph(w, cfg))["project"].tail)
    assert rec["project"].end_cycle >= rec["dw"].start_cycle + 4032 + tail
    # the R-MAC's spans (DW, then the tail) never overlap: utilisation stays a fraction
    spans = sorted((s.start, s.end) for s in r.spans if s.component == "rmac")
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_trio_without_inter_layer_pipeline_runs_the_pw_on_all_pes(tmp_path: Path) -> None:
    cfg = load_config(TRIO, [*RULES, "mapping.pipeline.inter_layer=false"])
    t = _tasks(build_taskgraph(_workload(tmp_path, MBCONV), cfg))
    rule_b = math.ceil(32 / 16) * math.ceil(128 / 8) * 14 * 14
    assert [(p.engine, p.cycles) for p in t["project"].parts] == [("mat", rule_b), ("rmac", rule_b)]
    assert t["project"].tail == ()


def test_trio_linear_attention_rule_e_with_k_sum_and_head_pipeline(tmp_path: Path) -> None:
    cfg = load_config(TRIO, RULES)
    w = _workload(tmp_path, LINEAR_ATTENTION)
    t = _tasks(build_taskgraph(w, cfg))
    h, n, dim = 4, 49, 16
    assert t["kv"].role == "kv_matmul" and t["qkv"].role == "matmul"
    # R-MAC: K^T V without the ones column, T_KV = h * ceil(dim / L_R) * ceil(N / P) * dim
    t_kv = h * math.ceil(dim / 8) * math.ceil(n / 8) * dim
    # the K-sum adder tree (1 lane x 8 inputs) takes the ones column alongside
    t_ksum = h * math.ceil(n / 8) * dim
    assert [(p.engine, p.cycles) for p in t["kv"].parts] == [("rmac", t_kv), ("ksum", t_ksum)]
    # MAT: dividends (dim columns) then divisors (the ones column), T = h * ceil((dim + 1) / L_M) * ceil(dim / P) * N
    t_q = h * math.ceil((dim + 1) / 8) * math.ceil(dim / 8) * n
    assert [(p.engine, p.cycles) for p in t["qkv"].parts] == [("mat", t_q)]
    # the two products stream head by head (Q S takes S as its second operand)
    assert t["kv"].group == t["qkv"].group != "" and t["qkv"].tiles == h and t["qkv"].stream_in == "kv"
    r = simulate(cfg, w)
    rec = {x.op: x for x in r.ops}
    assert rec["qkv"].start_cycle < rec["kv"].end_cycle  # head i on the MAT while head i+1 is on the R-MAC
    # the search gives the MAT's lanes the 49 tokens instead of the 17 output columns: h x ceil(49/8) x 2 x 17
    searched = _tasks(build_taskgraph(w, load_config(TRIO, ONE_PG)))
    assert [(p.engine, p.cycles, p.dataflow) for p in searched["qkv"].parts] == [
        ("mat", h * math.ceil(n / 8) * math.ceil(dim / 8) * (dim + 1), "lanes=pixels")]
    assert rec["kv"].dram_write_bytes == 0  # S stays on chip
    assert rec["qkv"].dram_read_bytes == 4 * 49 * 16  # only Q, a graph input, comes from DRAM


def test_p2vit_row_stationary_linear_and_shift_requant() -> None:
    cfg = load_config(P2VIT)
    w = load_yaml_workload(MLP_YAML)
    t = _tasks(build_taskgraph(w, cfg))
    # 32 x 32 row-stationary array, 2 chunks: the chunks split output channels; per chunk
    # ceil(n_chunk / rows) * ceil(k / cols) folds, each streaming the 197 tokens, plus one fill and drain
    fc1 = math.ceil(768 / 32) * math.ceil(384 / 32) * 197 + 32 + 32 - 1
    fc2 = math.ceil(192 / 32) * math.ceil(1536 / 32) * 197 + 32 + 32 - 1
    assert t["fc1"].cycles == fc1 and t["fc2"].cycles == fc2
    assert t["fc1"].cycles >= math.ceil(t["fc1"].cost.macs / 2048)
    # PoT scales: re-quantization is a shift on 64 lanes, pipelined behind the array's output tiles
    rq = t["fc1"].requant
    assert rq is not None and rq.mode == "shift" and rq.cycles == 1 + math.ceil(197 * 1536 / 64)
    # LN streams into fc1 in row bands (min_tiles)
    assert t["norm"].group == t["fc1"].group != "" and t["fc1"].tiles >= 8


def test_p2vit_float_scales_use_the_multiplier_unit(tmp_path: Path) -> None:
    from helpers import P2VIT_FP

    w = load_yaml_workload(MLP_YAML)
    pot, flt = simulate(load_config(P2VIT), w), simulate(load_config(P2VIT_FP), w)
    assert flt.latency_cycles >= pot.latency_cycles
    assert flt.energy_pj_by_component["requant"] > pot.energy_pj_by_component["requant"]


@pytest.mark.parametrize("path, overrides, text", [
    (TRIO, ONE_PG, MBCONV),
    (TRIO, [], MBCONV),
    (TRIO, ONE_PG, LINEAR_ATTENTION),
    (P2VIT, [], None),
    (GENERIC, [], None),
])
@pytest.mark.parametrize("switch", ["inter_layer", "intra_layer", "double_buffering"])
def test_turning_a_pipeline_off_never_speeds_a_run_up(tmp_path: Path, path, overrides, text, switch) -> None:
    w = _workload(tmp_path, text) if text else load_yaml_workload(MLP_YAML)
    on = simulate(load_config(path, overrides), w)
    off = simulate(load_config(path, [*overrides, f"mapping.pipeline.{switch}=false"]), w)
    assert off.latency_cycles >= on.latency_cycles


@pytest.mark.slow
@pytest.mark.parametrize("model", ["deit_tiny", "efficientvit_b1"])
@pytest.mark.parametrize("path", [TRIO, P2VIT, GENERIC], ids=lambda p: p.stem)
def test_on_the_zoo_no_pipeline_switch_off_speeds_a_run_up(path: Path, model: str) -> None:
    """The saved traces of two zoo models on the shipped configs: each switch off, and all of them off."""
    name = f"{path.stem}-{model}.json.gz"
    w = Workload.from_dict(json.loads(gzip.decompress((ROOT / "tests" / "data" / "pinned" / name).read_bytes())))
    on = simulate(load_config(path), w).latency_cycles
    switches = ["inter_layer", "intra_layer", "double_buffering"]
    for off in [[s] for s in switches] + [switches]:
        cfg = load_config(path, [f"mapping.pipeline.{s}=false" for s in off])
        assert simulate(cfg, w).latency_cycles >= on, off


def test_generic_policy_is_the_default_and_ignores_role_classes() -> None:
    cfg = load_config(GENERIC)
    assert cfg.mapping.policy == "generic"
    graph = build_taskgraph(load_yaml_workload(MLP_YAML), cfg)
    assert all(not t.tail for t in graph.tasks)
