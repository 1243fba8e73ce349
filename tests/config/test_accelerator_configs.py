"""The shipped accelerator configs and the keys issue 5 added: policy, row-stationary arrays, stream buffers."""
from __future__ import annotations

import re

import pytest

from archsim.config import load_config
from archsim.errors import ConfigError
from helpers import GENERIC, P2VIT, P2VIT_FP, ROOT, TRIO


def test_trio_is_the_published_engine() -> None:
    cfg = load_config(TRIO)
    mat, rmac = cfg.engines["mat"], cfg.engines["rmac"]
    assert (mat.lanes, mat.multipliers, mat.groups) == (8, 8, 16)  # S x T x L
    assert (rmac.lanes, rmac.pes, rmac.groups) == (8, 8, 16)  # M x N x L
    assert mat.peak_macs_per_cycle + rmac.peak_macs_per_cycle == 2048
    assert mat.dsps + rmac.dsps == 1024  # two 8-bit multiplies per DSP
    assert cfg.clock_mhz == 200 and cfg.mapping.policy == "trio"
    assert cfg.stream_buffer() == "aux_buf"
    budget_kib = 912 * 36 * 1024 / 8 / 1024  # ZCU102 BRAM36
    assert sum(b.capacity_kib for b in cfg.buffers.values()) <= budget_kib


@pytest.mark.parametrize("path", [TRIO, P2VIT, P2VIT_FP])
def test_every_parameter_line_names_its_source(path) -> None:
    """Each engine, buffer and DRAM block and each sizing key carries a comment ([P], [C], [E] or assumed)."""
    keys = ("lanes:", "multipliers:", "pes:", "groups:", "rows:", "cols:", "capacity_kib:", "bandwidth_gbps:",
            "clock_mhz:", "macs_per_multiplier:", "multipliers_per_dsp:", "policy:")
    for line in path.read_text().splitlines():
        if line.strip().startswith(keys):
            assert "#" in line, line


def test_p2vit_variants_differ_only_in_requantization() -> None:
    pot, flt = load_config(P2VIT), load_config(P2VIT_FP)
    assert pot.engines["pe"] == flt.engines["pe"] and pot.buffers == flt.buffers
    assert pot.defaults.scale_kind == "pot" and flt.defaults.scale_kind == "float"
    assert pot.engines["pe"].dataflow == "row_stationary"
    assert pot.mapping.pipeline.inter_layer and pot.mapping.pipeline.intra_layer
    assert pot.quant is not None and flt.quant is not None
    assert pot.quant.method == flt.quant.method == "p2vit"
    assert pot.quant.options == {} and flt.quant.options == {"scale_rounding": "float"}


@pytest.mark.parametrize("override, message", [
    ("mapping.policy=eyeriss", r"mapping\.policy: unknown mapping policy 'eyeriss' \(known: generic, p2vit, trio\)"),
    ("engines.pe.dataflow=weight_stationary", r"engines\.pe\.dataflow: must be one of"),
    ("mapping.pipeline.min_tiles=0", r"mapping\.pipeline\.min_tiles: must be a positive integer, got 0"),
    ("engines.pe.multipliers_per_dsp=-1", r"engines\.pe\.multipliers_per_dsp: must be a positive integer"),
    ("buffers.wgt_gb.holds=[weight, stream]", r"buffers: at most one buffer may hold stream tensors"),
    ("buffers.qkv_gb.holds=[tensors]", r"buffers\.qkv_gb\.holds\.0: must be one of"),
])
def test_bad_new_keys_are_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        load_config(P2VIT, [override])
    assert "\n" not in str(exc.value) and str(exc.value).startswith(str(P2VIT))


def test_generic_keeps_its_defaults() -> None:
    cfg = load_config(GENERIC)
    assert cfg.mapping.policy == "generic" and cfg.mapping.pipeline.min_tiles == 1
    assert cfg.stream_buffer() is None and cfg.engines["pe"].dataflow == "output_stationary"


def test_configs_in_readme_table_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in re.findall(r"`arch_configs/(\w+)\.yaml`", readme):
        assert (ROOT / "arch_configs" / f"{name}.yaml").exists(), name
