"""The stall attribution in the reports: summary.json per engine, layers.csv columns, report.md's bottlenecks and
busy-ranked top ops, the console's stall and pJ/MAC line; on a real (small) run."""
from __future__ import annotations

import csv
import json
from functools import lru_cache
from pathlib import Path

import pytest

from archsim.api import simulate
from archsim.config import load_config
from archsim.report import format_summary
from archsim.report.layers import STALL_COLUMNS, write_layers_csv
from archsim.report.markdown import render_report_md
from archsim.report.summary import build_summary, dumps_summary
from archsim.result import STALL_REASONS, Result
from archsim.workloads.yaml_format import load_yaml_workload
from helpers import GENERIC, MLP_YAML


@lru_cache(maxsize=None)
def starved() -> Result:
    """The MLP block on generic16 with a DRAM too slow for it."""
    return simulate(load_config(GENERIC, ["dram.bandwidth_gbps=0.5"]), load_yaml_workload(MLP_YAML))


def test_summary_has_each_engines_stall_cycles() -> None:
    r = starved()
    s = json.loads(dumps_summary(build_summary(r)))
    assert set(s["stall_cycles_by_reason"]) == set(r.engines)
    for stalls in s["stall_cycles_by_reason"].values():
        assert list(stalls) == sorted(STALL_REASONS) and sum(stalls.values()) == s["latency_cycles"]
    assert s["top_stall_reasons"][0]["reason"] == "dram"
    fractions = [item["fraction"] for item in s["top_stall_reasons"]]
    assert fractions == sorted(fractions, reverse=True) and sum(fractions) <= 1
    assert s["energy_pj_per_mac"] == pytest.approx(s["energy_pj_total"] / s["total_macs"], rel=1e-5)
    links = [c for c in s["components"].values() if c["type"] == "noc"]
    assert links and all(c["bytes_per_busy_cycle"] > 0 for c in links)


def test_layers_csv_has_busy_stall_and_bottleneck_columns(tmp_path: Path) -> None:
    r = starved()
    with open(write_layers_csv(r, tmp_path / "layers.csv"), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row, record in zip(rows, r.ops, strict=True):
        if record.status == "simulated":
            parts = int(row["busy_cycles"]) + sum(int(row[c]) for c in STALL_COLUMNS)
            assert parts == int(row["cycles"]), record.op
            assert row["bottleneck"] == record.bottleneck
    assert {row["bottleneck"] for row in rows} >= {"dram", "busy"}


def test_report_names_bottlenecks_and_ranks_ops_by_busy_cycles() -> None:
    r = starved()
    text = render_report_md(r, {})
    section = text.split("## Bottlenecks")[1].split("\n## ")[0]
    assert "Top stall reasons of the compute engines (pe): **dram**" in section
    for record in r.ops:
        if record.status == "simulated" and record.cycles:
            assert f"| {record.op} | {record.kind} |" in section
    top = text.split("## Top 10 ops by busy cycles")[1].split("\n## ")[0]
    ranked = [line.split(" | ")[1] for line in top.splitlines() if line.startswith("| ") and line[2].isdigit()]
    busy = {rec.op: rec.busy_cycles for rec in r.ops}
    assert [busy[op] for op in ranked] == sorted((busy[op] for op in ranked), reverse=True)
    assert "| elapsed cycles |" in top


def test_console_prints_the_stall_line_and_pj_per_mac() -> None:
    lines = format_summary(starved()).splitlines()
    stall = [line for line in lines if line.startswith("stalls ")]
    assert len(stall) == 1 and stall[0].startswith("stalls     pe busy ") and "waiting on dram" in stall[0]
    energy = next(line for line in lines if line.startswith("energy "))
    assert "uJ per image" in energy and "pJ/MAC" in energy and "µ" not in energy
