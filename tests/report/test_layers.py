"""layers.csv: one row per op in trace order, required columns, numbers that parse back unchanged."""
from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from archsim.report.layers import LAYER_COLUMNS, op_utilization, write_layers_csv
from archsim.result import Result

REQUIRED = (
    "op", "kind", "engine", "status", "group", "start_cycle", "end_cycle", "cycles", "macs", "elements", "tiles",
    "dram_read_bytes", "dram_write_bytes", "energy_pj", "compute_bound_cycles", "memory_bound_cycles", "scope",
)
INT_COLUMNS = ("start_cycle", "end_cycle", "cycles", "macs", "elements", "tiles", "dram_read_bytes",
               "dram_write_bytes", "compute_bound_cycles", "memory_bound_cycles")


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_columns_and_one_row_per_op_in_order(result: Result, tmp_path: Path) -> None:
    path = write_layers_csv(result, tmp_path / "layers.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == LAYER_COLUMNS
    assert set(REQUIRED) <= set(header)
    rows = read_rows(path)
    assert [row["op"] for row in rows] == [record.op for record in result.ops]


def test_numbers_parse_back(result: Result, tmp_path: Path) -> None:
    rows = read_rows(write_layers_csv(result, tmp_path / "layers.csv"))
    for row, record in zip(rows, result.ops, strict=True):
        for column in INT_COLUMNS:
            assert int(row[column]) == getattr(record, column), column
        assert float(row["energy_pj"]) == pytest.approx(record.energy_pj, rel=1e-5)  # 6 significant digits
        for column in ("kind", "engine", "status", "group", "scope"):
            assert row[column] == getattr(record, column)


def test_derived_columns(result: Result, tmp_path: Path) -> None:
    rows = {row["op"]: row for row in read_rows(write_layers_csv(result, tmp_path / "layers.csv"))}
    assert float(rows["patch_embed"]["utilization"]) == pytest.approx(9600 / (64 * 200))
    assert rows["patch_embed"]["bound"] == "compute"
    assert rows["blocks.0.attn.softmax"]["bound"] == "memory"
    assert rows["blocks.0.attn.softmax"]["utilization"] == ""  # engine without MACs
    assert rows["patch_embed.bn"]["utilization"] == "" and rows["patch_embed.bn"]["bound"] == ""


def test_output_is_deterministic(result: Result, tmp_path: Path) -> None:
    first = write_layers_csv(result, tmp_path / "a.csv").read_bytes()
    assert first == write_layers_csv(result, tmp_path / "b.csv").read_bytes()
    assert b"1234.57" in first  # energy rounded to 6 significant digits


def test_utilization_of_an_op_split_over_engines(result: Result) -> None:
    split = replace(result.ops[0], engine="mac0+mac1")
    assert op_utilization(result, split) == pytest.approx(9600 / ((64 + 32) * 200))
