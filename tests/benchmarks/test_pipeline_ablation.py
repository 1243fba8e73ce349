"""benchmarks/pipeline_ablation.py: the end-time attribution and the scope classification on hand-built records
(no simulation, no tracing), and one slow run of the script on DeiT-Tiny."""
from __future__ import annotations

import importlib.util
import re
from types import ModuleType

import pytest

from archsim.result import OpRecord
from helpers import ROOT


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pipeline_ablation_bench",
                                                  ROOT / "benchmarks" / "pipeline_ablation.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _bench()


def rec(scope: str, start: int, end: int, status: str = "simulated") -> OpRecord:
    return OpRecord(op=scope, kind="linear", engine="mac", start_cycle=start, end_cycle=end, macs=0, elements=0,
                    dram_read_bytes=0, dram_write_bytes=0, energy_pj=0.0, tiles=1, status=status, scope=scope)


def test_parts_add_up_to_the_last_end() -> None:
    records = [
        rec("blocks.0.mlp.fc1", 40, 100),    # frontier 30 -> 100: 70
        rec("patch_embed.proj", 0, 10),      # 0 -> 10: 10
        rec("blocks.0.attn.qkv", 5, 30),     # 10 -> 30: 20 (overlaps the patch embed, charged its tail only)
        rec("blocks.0.norm2", 50, 60, status="folded"),  # not simulated: ignored
        rec("head", 100, 130),               # 100 -> 130: 30
    ]
    parts = bench.attribute(records, "deit_tiny")
    assert parts == {"attention": 20, "MLP": 70, "other": 40}
    assert sum(parts.values()) == max(r.end_cycle for r in records)


def test_an_op_not_advancing_the_frontier_is_charged_zero() -> None:
    # the MLP op runs inside the attention op's span and ends with it: the attention op already moved the frontier
    records = [rec("blocks.0.attn.proj", 0, 100), rec("blocks.0.mlp.fc2", 20, 100), rec("blocks.0.norm1", 0, 0)]
    assert bench.attribute(records, "deit_small") == {"attention": 100, "MLP": 0, "other": 0}
    assert bench.attribute([], "deit_small") == {"attention": 0, "MLP": 0, "other": 0}


@pytest.mark.parametrize("scope, part", [
    ("blocks.3.attn.qkv", "attention"), ("blocks.3.attn", "attention"), ("blocks.3.norm1", "attention"),
    ("blocks.3.mlp.fc1", "MLP"), ("blocks.11.mlp.act", "MLP"), ("blocks.3.norm2", "MLP"),
    ("blocks.3", "other"), ("patch_embed.proj", "other"), ("norm", "other"), ("head", "other"), ("", "other"),
])
def test_vit_scopes(scope: str, part: str) -> None:
    assert bench.part_of(scope, "deit_tiny") == part


@pytest.mark.parametrize("scope, part", [
    ("stages.2.blocks.1.context_module.main.qkv", "LiteMSA"),
    ("stages.3.blocks.2.context_module.main.aggreg.0.0", "LiteMSA"), ("stages.2.blocks.1.context_module", "LiteMSA"),
    ("stages.2.blocks.1.local_module.main.point_conv", "MBConv"), ("stages.2.blocks.1.local_module", "MBConv"),
    ("stages.0.blocks.1.main.depth_conv", "MBConv"), ("stages.1.blocks.0", "MBConv"),
    ("stem.in_conv", "MBConv"), ("stem.res0.main.point_conv", "MBConv"),
    ("head.in_conv", "other"), ("head.classifier.4", "other"), ("head.global_pool.pool", "other"),
])
def test_efficientvit_scopes(scope: str, part: str) -> None:
    assert bench.part_of(scope, "efficientvit_b1") == part


@pytest.mark.slow
def test_script_on_deit_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--pairs", "arch_configs/generic16.yaml:deit_tiny"]) == 0
    out = capsys.readouterr().out
    latency = {m[1]: int(m[2].replace(",", "")) for m in re.finditer(r"^\| (both on|inter off|intra off|both off) "
                                                                       r"\| ([\d,]+) \|", out, re.M)}
    assert set(latency) == {"both on", "inter off", "intra off", "both off"}, out
    assert latency["both off"] >= latency["both on"]
    assert "python benchmarks/pipeline_ablation.py" in out
