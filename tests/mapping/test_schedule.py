"""TaskGraph construction: folding, assignment errors, fusion groups, residency and tile fitting."""
from __future__ import annotations

import pytest

from archsim.config import load_config
from archsim.errors import MappingError
from archsim.mapping.schedule import build_taskgraph
from archsim.workloads.ir import Op, Tensor, make_workload

from helpers import GENERIC, linear_op, mlp


def _conv_bn_relu():
    x = Tensor("x", (1, 16, 28, 28))
    w = Tensor("c.weight", (32, 16, 3, 3), is_weight=True)
    y = Tensor("c", (1, 32, 28, 28))
    g = Tensor("bn.weight", (32,), 32, is_weight=True)
    b = Tensor("bn", (1, 32, 28, 28))
    r = Tensor("r", (1, 32, 28, 28))
    ops = [
        Op("c", "conv2d", ("x",), "c", ("c.weight",), {"kernel": (3, 3), "groups": 1}, 32 * 28 * 28 * 16 * 9),
        Op("bn", "batchnorm", ("c",), "bn", ("bn.weight",)),
        Op("r", "activation", ("bn",), "r", attrs={"fn": "relu"}),
    ]
    return make_workload("cbr", [x, w, y, g, b, r], ops)


def test_batchnorm_after_conv_is_folded(generic_cfg) -> None:
    graph = build_taskgraph(_conv_bn_relu(), generic_cfg)
    assert [s.op.name for s in graph.skipped if s.status == "folded"] == ["bn"]
    names = [t.name for t in graph.tasks]
    assert names == ["c", "r"]
    # the relu reads the conv's output directly: it streams in the same fusion group
    assert graph.groups[0][1].stream_in == "c"


def test_fusion_groups_stream_and_keep_intermediate_off_dram(generic_cfg) -> None:
    graph = build_taskgraph(mlp(), generic_cfg)
    groups = [[t.name for t in g] for g in graph.groups]
    assert groups == [["fc1", "act"], ["fc2"]]
    fc1 = graph.groups[0][0]
    assert fc1.stream_out and fc1.out_dram_bytes == 0 and not fc1.resident_out


def test_fusion_cut_keeps_the_larger_tensor_on_chip(generic_cfg) -> None:
    """gelu -> fc1 (4x wider) -> gelu: chaining greedily would put fc1 with the first gelu and leave the second,
    which needs the same vector unit, alone, so fc1's 4x wider output would go through memory. The cut streams
    fc1's output instead (the Trio-ViT stem's add -> expansion conv -> hardswish has this shape)."""
    x = Tensor("x", (1, 197, 384))
    pre = Tensor("pre", (1, 197, 384))
    fc1, t1 = linear_op("fc1", pre, 1536)
    act = Tensor("act", t1[1].shape)
    ops = [Op("pre", "activation", ("x",), "pre", attrs={"fn": "gelu"}), fc1,
           Op("act", "activation", ("fc1",), "act", attrs={"fn": "gelu"})]
    graph = build_taskgraph(make_workload("pre_fc_act", [x, pre, *t1, act], ops), generic_cfg)
    assert [[t.name for t in g] for g in graph.groups] == [["pre"], ["fc1", "act"]]
    assert graph.groups[1][0].stream_out and graph.groups[1][0].out_dram_bytes == 0


def test_inter_layer_off_gives_single_op_groups() -> None:
    cfg = load_config(GENERIC, ["mapping.pipeline.inter_layer=false"])
    graph = build_taskgraph(mlp(), cfg)
    assert all(len(g) == 1 for g in graph.groups)


def test_unmapped_op(tmp_path) -> None:
    import yaml

    data = yaml.safe_load(GENERIC.read_text())
    del data["mapping"]["assign"]["activation"]
    path = tmp_path / "no_act.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(MappingError, match=r"op act \(gelu / activation\) has no engine"):
        build_taskgraph(mlp(), load_config(path))
    graph = build_taskgraph(mlp(), load_config(path, ["mapping.on_unmapped=report"]))
    assert [(s.op.name, s.status) for s in graph.skipped] == [("act", "unmodelled")]


def test_engine_that_cannot_run_the_op(tmp_path) -> None:
    cfg = load_config(GENERIC, ["mapping.assign.linear=vec"])
    with pytest.raises(MappingError, match="assigned to engine 'vec' \\(type nonlinear\\), which cannot run it"):
        build_taskgraph(mlp(), cfg)


def test_tile_that_can_never_fit_is_reported() -> None:
    cfg = load_config(GENERIC, ["buffers.wgt_buf.capacity_kib=0.25"])  # 256 B: one fc1 channel needs 2 x 384 B
    with pytest.raises(MappingError, match="a tile can never fit"):
        build_taskgraph(mlp(), cfg)


def test_weights_larger_than_buffer_are_tiled(generic_cfg) -> None:
    graph = build_taskgraph(mlp(), generic_cfg)
    fc1 = graph.groups[0][0]
    wgt_work = generic_cfg.buffers["wgt_buf"].capacity_bytes
    assert fc1.tiles * wgt_work >= 2 * fc1.weight_dram_bytes  # double-buffered weight tiles fit


def test_graph_output_goes_to_dram(generic_cfg) -> None:
    graph = build_taskgraph(mlp(), generic_cfg)
    fc2 = graph.groups[-1][-1]
    assert fc2.out_dram_bytes == 197 * 384


def test_non_mac_weights_are_tiled_by_row(generic_cfg) -> None:
    """A position embedding larger than the weight buffer is cut by token, not refused."""
    x = Tensor("x", (1, 197, 768))
    pos = Tensor("pos", (1, 197, 768), 32, is_weight=True)  # 605 KB at 32 bits > the 128 KiB weight buffer
    y = Tensor("y", (1, 197, 768))
    w = make_workload("pos", [x, pos, y], [Op("add", "eltwise", ("x",), "y", ("pos",), {"fn": "add"})])
    graph = build_taskgraph(w, generic_cfg)
    assert graph.tasks[0].tiles >= 2 * pos.nbytes // generic_cfg.buffers["wgt_buf"].capacity_bytes
