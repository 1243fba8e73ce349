"""The area proxy (archsim.hardware.area): hand-computed figures, scaling, given areas, the shipped configs."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from archsim.cli import main
from archsim.config import load_config
from archsim.hardware.area import area_of, multiplier_um2
from archsim.hardware.kind import EngineKind, kind_of
from helpers import GENERIC, ROOT

#: A tiny design whose area is easy to work out by hand, with per-unit figures chosen so every sum is exact.
TINY = """
name: tiny
clock_mhz: 100
defaults: {acc_bits: 16}
area: {int_mult8_um2: 200, int_add8_um2: 40, fp16_mult_um2: 1000, fp16_add_um2: 600,
       sram_bitcell_um2: 0.5, sram_array_efficiency: 0.5}
buffers:
  act: {capacity_kib: 1, holds: [activation]}
  wgt: {capacity_kib: 2, holds: [weight]}
engines:
  pe: {type: pe_array, rows: 4, cols: 4}
  vec: {type: nonlinear, lanes: 2, ops: {softmax: {}}}
  rq: {type: requant, lanes: 2}
  dma: {type: dma}
mapping: {assign: {linear: pe, softmax: vec, requant: rq, data_movement: dma}}
"""


def _tiny(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY + extra)
    return path


def test_tiny_config_gives_the_hand_computed_area(tmp_path: Path) -> None:
    report = area_of(load_config(_tiny(tmp_path)))
    pe = 16 * 200 + 16 * 40 * 16 // 8  # 16 8-bit multipliers, 16 16-bit accumulators: 3200 + 1280 um2
    vec = 2 * (1000 + 600)  # two FP16 multiply-add lanes
    rq = 2 * 200 * 4 + 2 * 40 * 2  # two 16-bit scale multipliers ((16/8)^2 x 200), two 16-bit adders
    act, wgt = 1 * 8192 * 0.5 / 0.5, 2 * 8192 * 0.5 / 0.5  # bits x cell / efficiency
    assert (pe, vec, rq, act, wgt) == (4480, 3200, 1760, 8192, 16384)
    assert report.by_component == {"pe": 4480 / 1e6, "vec": 3200 / 1e6, "rq": 1760 / 1e6, "dma": 0.0,
                                   "act": 8192 / 1e6, "wgt": 16384 / 1e6}
    assert report.total_mm2 == 34016 / 1e6
    assert report.multipliers == 16  # MAC multipliers only: the re-quantization lanes are not MACs
    assert report.sram_kib == 3
    assert report.source == "derived" and report.given == () and report.notes == ()


def test_generic16_with_the_cited_defaults() -> None:
    report = area_of(load_config(GENERIC))
    assert report.by_component["pe"] == (256 * 282 + 256 * 36 * 4) / 1e6  # Horowitz 45 nm: 8b mult + 32b add
    assert report.by_component["vec"] == 16 * (1640 + 1360) / 1e6
    assert report.by_component["act_buf"] == pytest.approx(384 * 8192 * 0.346 / 0.7 / 1e6, rel=1e-12)
    assert report.total_mm2 == pytest.approx(sum(report.by_component.values()), rel=1e-12)
    assert area_of(load_config(GENERIC)) == report  # deterministic


@pytest.mark.parametrize("config, engine, key, value", [
    ("generic16.yaml", "pe", "rows", 32),
    ("trio.yaml", "mat", "lanes", 16),
    ("systolic_32x32_ws.yaml", "sa", "cols", 64),
])
def test_doubling_an_arrays_multipliers_doubles_its_arithmetic_area(config: str, engine: str, key: str,
                                                                     value: int) -> None:
    base = load_config(ROOT / "arch_configs" / config)
    bigger = load_config(ROOT / "arch_configs" / config, [f"engines.{engine}.{key}={value}"])
    assert getattr(bigger.engines[engine], key) == 2 * getattr(base.engines[engine], key)
    before, after = area_of(base), area_of(bigger)
    assert after.by_component[engine] == 2 * before.by_component[engine] > 0
    assert after.multipliers - before.multipliers == kind_of(base.engines[engine]).area_units(
        base.engines[engine], base.defaults).multipliers
    others = {k: v for k, v in after.by_component.items() if k != engine}
    assert others == {k: v for k, v in before.by_component.items() if k != engine}


def test_multiplier_area_grows_with_the_square_of_the_width(tmp_path: Path) -> None:
    cfg = load_config(GENERIC)
    assert multiplier_um2(cfg.area, 16) == 4 * multiplier_um2(cfg.area, 8) == 4 * 282
    wide = area_of(load_config(GENERIC, ["engines.pe.multiplier_bits=16"]))
    assert wide.by_component["pe"] == (256 * 282 * 4 + 256 * 144) / 1e6


def test_doubling_a_buffer_doubles_its_sram_area() -> None:
    base = area_of(load_config(GENERIC))
    bigger = area_of(load_config(GENERIC, ["buffers.act_buf.capacity_kib=768"]))
    assert bigger.by_component["act_buf"] == pytest.approx(2 * base.by_component["act_buf"], rel=1e-15)
    assert bigger.by_component["wgt_buf"] == base.by_component["wgt_buf"]
    assert bigger.sram_kib == base.sram_kib + 384


def test_area_mm2_overrides_the_derived_area(tmp_path: Path) -> None:
    base = area_of(load_config(GENERIC))
    mixed = area_of(load_config(GENERIC, ["engines.pe.area_mm2=1.5", "buffers.wgt_buf.area_mm2=0.25"]))
    assert mixed.by_component["pe"] == 1.5 and mixed.by_component["wgt_buf"] == 0.25
    assert mixed.source == "mixed" and mixed.given == ("pe", "wgt_buf")
    assert mixed.multipliers == base.multipliers  # a given area does not change what the design is built from
    expected = base.total_mm2 - base.by_component["pe"] - base.by_component["wgt_buf"] + 1.75
    assert mixed.total_mm2 == pytest.approx(expected, rel=1e-12)
    names = ["pe", "vec", "rq", "dma", "act_buf", "wgt_buf"]
    kinds = ["engines"] * 4 + ["buffers"] * 2
    given = area_of(load_config(GENERIC, [f"{k}.{n}.area_mm2={i + 1}" for i, (k, n) in enumerate(zip(kinds, names))]))
    assert given.source == "given" and given.total_mm2 == 21.0


def test_gpu_and_cpu_are_not_derived_but_take_a_given_area() -> None:
    gpu = area_of(load_config(ROOT / "arch_configs" / "gpu_turing.yaml"))
    assert gpu.by_component["gpu"] == 0.0 and gpu.notes and "area_mm2" in gpu.notes[0]
    given = area_of(load_config(ROOT / "arch_configs" / "gpu_turing.yaml", ["engines.gpu.area_mm2=754"]))
    assert given.by_component["gpu"] == 754 and given.notes == () and given.source == "mixed"
    cpu = area_of(load_config(ROOT / "arch_configs" / "packqvit_mobile.yaml"))
    assert cpu.by_component["cpu"] == 0.0 and cpu.notes[0].startswith("cpu: ")


def test_default_hook_is_one_multiplier_and_one_accumulator_per_mac() -> None:
    cfg = load_config(GENERIC, ["defaults.act_bits=4", "defaults.weight_bits=6"])
    pe = cfg.engines["pe"]
    units = EngineKind.area_units(kind_of(pe), pe, cfg.defaults)  # the base class's default, as a plugin gets it
    assert (units.multipliers, units.multiplier_bits, units.adders, units.adder_bits) == (256, 6, 256, 32)
    dma = cfg.engines["dma"]
    assert kind_of(dma).area_units(dma, cfg.defaults).multipliers == 0 and area_of(cfg).by_component["dma"] == 0


@pytest.mark.parametrize("override, key, phrase", [
    ("engines.pe.area_mm2=-1", "engines.pe.area_mm2", ">= 0, got -1"),
    ("engines.pe.area_mm2=.inf", "engines.pe.area_mm2", "must be a finite number, got inf"),
    ("engines.vec.area_mm2=.nan", "engines.vec.area_mm2", "must be a finite number, got nan"),
    ("buffers.act_buf.area_mm2=-0.5", "buffers.act_buf.area_mm2", ">= 0, got -0.5"),
    ("area.int_mult8_um2=-282", "area.int_mult8_um2", ">= 0, got -282"),
    ("area.sram_bitcell_um2=.inf", "area.sram_bitcell_um2", "must be a finite number, got inf"),
    ("area.sram_array_efficiency=0", "area.sram_array_efficiency", "must be a positive"),
    ("area.sram_array_efficiency=1.5", "area.sram_array_efficiency", "<= 1, got 1.5"),
    ("area.fp16_mult_um2=big", "area.fp16_mult_um2", "must be a number, got 'big'"),
    ("area.colour=3", "area.colour", "unknown key"),
])
def test_bad_area_values_are_one_line_errors_naming_the_key(override: str, key: str, phrase: str) -> None:
    from archsim.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(GENERIC, [override])
    message = str(info.value)
    assert message.startswith(f"{GENERIC}: {key}: "), message
    assert phrase in message and "\n" not in message


@pytest.mark.parametrize("path", sorted((ROOT / "arch_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_has_a_finite_non_negative_area(path: Path) -> None:
    report = area_of(load_config(path))
    assert math.isfinite(report.total_mm2) and report.total_mm2 > 0  # their buffers alone have area
    assert all(math.isfinite(v) and v >= 0 for v in report.by_component.values())
    cfg = load_config(path)
    assert list(report.by_component) == [*cfg.engines, *cfg.buffers]
    assert report.total_mm2 == pytest.approx(sum(report.by_component.values()), rel=1e-12)
    assert report.sram_kib == sum(b.capacity_kib for b in cfg.buffers.values())
    assert report.source == "derived"


def test_validate_prints_the_area(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(_tiny(tmp_path)), "--set", "buffers.wgt.area_mm2=0.5"]) == 0
    out = capsys.readouterr().out
    assert "  area: 0.5176 mm2 mixed (45 nm proxy: arithmetic and SRAM only), 16 multipliers, 3 KiB SRAM" in out
    assert "    pe: 0.00448 mm2\n" in out and "    wgt: 0.5 mm2 (given)\n" in out
    assert main(["validate", str(ROOT / "arch_configs" / "gpu_turing.yaml")]) == 0
    assert "  area note: gpu: a GPU's area is not derived" in capsys.readouterr().out
