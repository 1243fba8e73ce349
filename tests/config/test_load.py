"""Config loading: the shipped configs validate; every kind of bad input gives one line naming file and key."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim.hardware.kind import design_peak_macs
from archsim.config import load_config
from archsim.errors import ConfigError, UsageError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["generic16.yaml", "trio.yaml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(ROOT / "arch_configs" / name)
    assert cfg.clock_mhz > 0
    assert design_peak_macs(cfg.engines) > 0


def test_trio_peak_is_iscas_sizing() -> None:
    cfg = load_config(ROOT / "arch_configs" / "trio.yaml")
    assert cfg.engines["mat"].peak_macs_per_cycle == 8 * 8 * 16
    assert cfg.engines["rmac"].peak_macs_per_cycle == 8 * 8 * 16


def _write(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((ROOT / "arch_configs" / "generic16.yaml").read_text())
    edit(data)
    p = tmp_path / "x.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _set(path: list, value):
    def edit(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return edit


def _delete(path: list):
    def edit(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
    return edit


@pytest.mark.parametrize(
    "edit, key, phrase",
    [
        (_set(["engines", "pe", "rows"], -3), "engines.pe.rows", "must be a positive integer, got -3"),
        (_set(["engines", "pe", "rows"], "many"), "engines.pe.rows", "must be an integer"),
        (_set(["engines", "pe", "type"], "tpu"), "engines.pe.type", "unknown engine type 'tpu'"),
        (_set(["engines", "pe", "colour"], 3), "engines.pe.colour", "unknown key"),
        (_set(["buffers", "act_buf", "capacity_kib"], 0), "buffers.act_buf.capacity_kib", "must be a positive"),
        (_set(["dram", "bandwidth_gbps"], -1), "dram.bandwidth_gbps", "must be a positive"),
        (_set(["dram", "type"], "sdram"), "dram.type", "must be one of"),
        (_set(["noc", "topology"], "ring"), "noc.topology", "must be one of"),
        (_set(["clock_mhz"], "fast"), "clock_mhz", "must be a number"),
        (_delete(["clock_mhz"]), "clock_mhz", "missing required key"),
        (_set(["mapping", "assign", "linear"], "gpu"), "mapping.assign.linear", "unknown engine 'gpu'"),
        (_set(["mapping", "pipeline", "inter_layer"], "sometimes"), "mapping.pipeline.inter_layer", "true or false"),
        (_set(["buffers", "wgt_buf", "holds"], ["activation"]), "buffers", "exactly one buffer must hold"),
        (_delete(["mapping", "assign", "requant"]), "mapping.assign.requant", "no engine is assigned"),
        (_set(["engines", "pe", "area_mm2"], -2.5), "engines.pe.area_mm2", "must be a number >= 0, got -2.5"),
        (_set(["buffers", "wgt_buf", "area_mm2"], float("inf")), "buffers.wgt_buf.area_mm2", "must be a finite number"),
        (_set(["area"], {"sram_bitcell_um2": -1}), "area.sram_bitcell_um2", "must be a number >= 0, got -1"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, edit, key: str, phrase: str) -> None:
    path = _write(tmp_path, edit)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert phrase in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("clock_mhz: 200\nengines: [unclosed\n")
    with pytest.raises(ConfigError, match=r"YAML syntax error at line \d+"):
        load_config(p)


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(p)


def test_override_changes_value_and_is_validated() -> None:
    path = ROOT / "arch_configs" / "generic16.yaml"
    cfg = load_config(path, ["mapping.pipeline.inter_layer=false", "engines.pe.rows=32"])
    assert cfg.mapping.pipeline.inter_layer is False
    assert cfg.engines["pe"].rows == 32
    with pytest.raises(ConfigError, match="engines.pe.rows: must be a positive integer, got 0"):
        load_config(path, ["engines.pe.rows=0"])
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        load_config(path, ["engines.pe.rows"])


def test_config_is_frozen() -> None:
    cfg = load_config(ROOT / "arch_configs" / "generic16.yaml")
    with pytest.raises(Exception):
        cfg.clock_mhz = 1  # type: ignore[misc]
