"""The IR validates itself: a bad trace file (bytes, JSON, types, bounds, graph, shapes, meta) is a one-line
WorkloadError naming the file and the op, tensor or key at fault; good traces still load and round-trip."""
from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any, Callable

import pytest

from archsim.errors import WorkloadError
from archsim.workloads import jsonfile
from archsim.workloads.ir import Op, Tensor, Workload, make_workload
from helpers import ROOT

PINNED = ROOT / "tests" / "data" / "pinned"


def sample() -> Workload:
    """conv2d -> (separate) linear -> matmul -> broadcast add: one op of each kind whose shapes are checked."""
    tensors = [
        Tensor("x", (1, 3, 8, 8)), Tensor("conv.w", (4, 3, 3, 3), is_weight=True), Tensor("conv", (1, 4, 8, 8)),
        Tensor("t", (1, 16, 32)), Tensor("fc.w", (8, 32), is_weight=True), Tensor("fc.b", (8,), 32, is_weight=True),
        Tensor("fc", (1, 16, 8)), Tensor("k", (1, 8, 16)), Tensor("qk", (1, 16, 16)), Tensor("m", (1, 1, 16)),
        Tensor("add", (1, 16, 16)),
    ]
    ops = [
        Op("conv", "conv2d", ("x",), "conv", ("conv.w",), {"groups": 1, "kernel": (3, 3), "stride": (1, 1),
                                                          "padding": (1, 1)}, macs=256 * 27),
        Op("fc", "linear", ("t",), "fc", ("fc.w", "fc.b"), macs=128 * 32),
        Op("qk", "matmul", ("fc", "k"), "qk", macs=256 * 8),
        Op("add", "eltwise", ("qk", "m"), "add", attrs={"fn": "add"}),
    ]
    meta = {"model": "sample", "batch": 1, "resolution": 8, "quant": {"method": "fqvit", "w_bits": 8, "a_bits": 8}}
    return make_workload("sample", tensors, ops, meta)


def _op(d: dict[str, Any], name: str) -> dict[str, Any]:
    return next(o for o in d["ops"] if o["name"] == name)


def _tensor(d: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in d["tensors"] if t["name"] == name)


def _expect_error(path: Path, *needles: str) -> str:
    with pytest.raises(WorkloadError) as info:
        Workload.load(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    for needle in needles:
        assert needle in message
    return message


# ---- good traces ------------------------------------------------------------------------------------------------
def test_a_trace_round_trips(tmp_path: Path) -> None:
    w = sample()
    w.save(tmp_path / "t.json")
    back = Workload.load(tmp_path / "t.json")
    assert back.ops == w.ops and back.tensors == w.tensors and back.meta == w.meta
    assert back.total_macs == 256 * 27 + 128 * 32 + 256 * 8 == w.total_macs


@pytest.mark.parametrize("name", sorted(p.name for p in PINNED.glob("*.json.gz")))
def test_the_saved_traces_the_tests_use_still_load(name: str) -> None:
    w = Workload.from_dict(json.loads(gzip.decompress((PINNED / name).read_bytes())), source=name)
    assert w.ops and w.total_macs > 0


# ---- bytes and JSON syntax --------------------------------------------------------------------------------------
def _text(w: Workload) -> str:
    return json.dumps(w.to_dict())


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\x00\x01\xff\xfe binary", "not UTF-8"),
        (_text(sample()).replace('"sample"', '"s\u00e9"').encode("latin-1"), "not UTF-8 text (byte 0xe9"),
        (_text(sample()).replace('"macs": 0', '"macs": Infinity').encode(), "Infinity is not a valid number"),
        (_text(sample()).replace('"macs": 0', '"macs": -Infinity').encode(), "-Infinity"),
        (_text(sample()).replace('"macs": 0', '"macs": NaN').encode(), "NaN"),
        (_text(sample()).replace('"macs": 0', '"macs": 1e999').encode(), "out of range"),
        (_text(sample()).replace('"macs": 0', '"macs": ' + "9" * 5000).encode(), "5000 digits"),
        (_text(sample()).replace('"macs": 0', '"macs": 0.' + "1" * 500).encode(), "characters"),
        (b"[" * 5000 + b"]" * 5000, "nested more than 64 levels"),
        (b'{"schema_version": 1, "meta": ' + b"[" * 200 + b"]" * 200 + b"}", "nested more than 64 levels"),
        (b"[" * 100000, "nested more than 64 levels"),
        (b"", "invalid JSON at line 1 column 1"),
        (b"{not json", "invalid JSON"),
        (b"[]", "expected a JSON object at the top level"),
        (b'{"schema_version": 2}', "unsupported schema_version 2"),
        (b'{"schema_version": true}', "unsupported schema_version True"),
    ],
)
def test_bad_bytes_are_one_line_errors(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(content)
    _expect_error(path, needle)


def test_a_file_too_large_is_refused_before_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonfile, "MAX_BYTES", 64)
    path = tmp_path / "t.json"
    path.write_text(_text(sample()))
    _expect_error(path, "larger than")


def test_a_missing_file_or_a_directory_is_one_line(tmp_path: Path) -> None:
    _expect_error(tmp_path / "absent.json", "no such file")
    _expect_error(tmp_path, "cannot read")


# ---- types, bounds, graph, shapes, meta -------------------------------------------------------------------------
Edit = Callable[[dict[str, Any]], Any]


def _set(where: str, dotted: str, value: Any) -> Edit:
    """An edit setting ``dotted`` (``a.b``) under the top level (``where=""``), op ``op:NAME`` or tensor
    ``tensor:NAME``."""
    def edit(d: dict[str, Any]) -> None:
        if where.startswith("op:"):
            target = _op(d, where[3:])
        elif where.startswith("tensor:"):
            target = _tensor(d, where[7:])
        else:
            target = d
        *parents, last = dotted.split(".")
        for k in parents:
            target = target[k]
        target[last] = value
    return edit


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        # meta
        (_set("", "meta", [1, 2]), ("meta: must be an object",)),
        (_set("", "meta", "hello"), ("meta: must be an object",)),
        (_set("", "meta.batch", -1), ("meta.batch: must be a positive integer, got -1",)),
        (_set("", "meta.batch", 0), ("meta.batch",)),
        (_set("", "meta.batch", 2.5), ("meta.batch",)),
        (_set("", "meta.batch", True), ("meta.batch",)),
        (_set("", "meta.batch", "1"), ("meta.batch",)),
        (_set("", "meta.resolution", -224), ("meta.resolution",)),
        (_set("", "meta.act_bits", 0), ("meta.act_bits",)),
        (_set("", "meta.model", 7), ("meta.model: must be a string",)),
        (_set("", "meta.quant", {"method": "fqvit", "a_bits": 8}), ("meta.quant: lacks w_bits",)),
        (_set("", "meta.quant", "fqvit"), ("meta.quant: must be a mapping",)),
        (_set("", "meta.quant.w_bits", 99), ("meta.quant.w_bits",)),
        (_set("", "meta.note", {"a": [{"b": 1.5}, {"c": None}]}), ()),  # free-form meta is fine
        # tensors
        (_set("tensor:x", "shape", [1, 3, 8.5, 8]), ("tensors[0] (x).shape", "must hold integers, got 8.5")),
        (_set("tensor:x", "shape", [1, 3, 8.0, 8]), ("tensors[0] (x).shape",)),
        (_set("tensor:x", "shape", [1, 3, 0, 8]), ("tensors[0] (x).shape", "in 1..2^31")),
        (_set("tensor:x", "shape", [1, 2**31 + 1]), ("tensors[0] (x).shape",)),
        (_set("tensor:x", "shape", [2**21, 2**21]), ("more than 2^40 elements",)),
        (_set("tensor:x", "shape", "abc"), ("tensors[0] (x).shape: must be a list",)),
        (_set("tensor:x", "shape", [True, 3]), ("tensors[0] (x).shape",)),
        (_set("tensor:x", "bits", 0), ("tensors[0] (x).bits", "1..64")),
        (_set("tensor:x", "bits", 65), ("tensors[0] (x).bits",)),
        (_set("tensor:x", "is_weight", "no"), ("tensors[0] (x).is_weight",)),
        (_set("tensor:x", "name", "y" * 2000), ("tensors[0].name",)),
        (lambda d: d["tensors"].append(dict(d["tensors"][0])), ("duplicate tensor name",)),
        # ops: fields
        (_set("", "ops", []), ("ops: the workload has no ops",)),
        (_set("op:fc", "kind", "bogus"), ("ops[1] (fc).kind: unknown op kind 'bogus'",)),
        (_set("op:fc", "macs", -5), ("ops[1] (fc).macs",)),
        (_set("op:fc", "macs", "12"), ("ops[1] (fc).macs: must be an integer",)),
        (_set("op:fc", "inputs", "t"), ("ops[1] (fc).inputs: must be a list",)),
        (_set("op:fc", "attrs", []), ("ops[1] (fc).attrs: must be an object",)),
        (_set("op:fc", "scale_kind", "magic"), ("ops[1] (fc).scale_kind",)),
        (_set("op:fc", "name", 5), ("ops[1].name: must be a string",)),
        (_set("op:fc", "attrs", {"deep": json.loads("[" * 40 + "]" * 40)}), ("ops[1] (fc).attrs.deep", "nested")),
        (_set("op:fc", "attrs", {"in_shapes": [[1, 16, 0]]}), ("ops[1] (fc).attrs.in_shapes[0]",)),
        (_set("op:fc", "attrs", {"in_shapes": [[1, 16, 32], [1, 16, 32]]}), ("ops[1] (fc).attrs.in_shapes",)),
        # ops: graph
        (_set("op:fc", "inputs", ["nope"]), ("ops[1] (fc).inputs: names unknown tensor 'nope'",)),
        (_set("op:fc", "weights", ["nope"]), ("ops[1] (fc).weights: names unknown tensor 'nope'",)),
        (_set("op:fc", "weights", ["t"]), ("ops[1] (fc).weights", "not a weight tensor")),
        (_set("op:fc", "inputs", ["add"]), ("ops[1] (fc).inputs", "topological order")),  # a cycle
        (_set("op:qk", "output", "fc"), ("ops[2] (qk).output", "more than one op")),
        (_set("op:qk", "output", "k"), ("ops[2] (qk)",)),  # k is read as an input before qk writes it
        (_set("op:add", "output", "m"), ("ops[3] (add)",)),
        (_set("op:fc", "output", "fc.w"), ("ops[1] (fc).output: writes weight tensor",)),
        (_set("op:qk", "name", "fc"), ("ops[2] (fc)", "duplicate op name")),
        # ops: shapes of the built-in kinds
        (_set("op:conv", "attrs.groups", 0), ("ops[0] (conv).attrs.groups", "integer >= 1, got 0")),
        (_set("op:conv", "attrs.groups", -1), ("ops[0] (conv).attrs.groups",)),
        (_set("op:conv", "attrs.groups", 1.5), ("ops[0] (conv).attrs.groups",)),
        (_set("op:conv", "attrs.groups", 2), ("ops[0] (conv)", "not divisible by groups 2")),
        (_set("op:conv", "attrs.stride", [0, 1]), ("ops[0] (conv).attrs.stride",)),
        (_set("op:conv", "attrs.padding", [1, 1, 1]), ("ops[0] (conv).attrs.padding",)),
        (_set("op:conv", "attrs.kernel", [5, 5]), ("ops[0] (conv).attrs.kernel", "differs from the weight's [3, 3]")),
        (_set("op:conv", "attrs.stride", 2), ()),  # a single integer means both directions
        (_set("op:add", "attrs.fn", 3), ("ops[3] (add).attrs.fn: fn must be a string",)),
        (_set("op:add", "macs", 5), ("ops[3] (add).macs", "does no multiply-accumulates")),
        (_set("tensor:conv.w", "shape", [4, 2, 3, 3]), ("ops[0] (conv)", "3 channels")),
        (_set("tensor:conv", "shape", [1, 5, 8, 8]), ("ops[0] (conv)",)),
        (_set("tensor:t", "shape", [1, 16, 999]), ("ops[1] (fc)", "999 features", "takes 32")),
        (_set("tensor:fc", "shape", [1, 16, 9]), ("ops[1] (fc)",)),
        (_set("tensor:fc.w", "shape", [8, 32, 1]), ("ops[1] (fc)", "2-d")),
        (_set("op:fc", "weights", []), ("ops[1] (fc)", "needs an input and a weight")),
        (_set("tensor:k", "shape", [1, 9, 16]), ("ops[2] (qk)", "inner dimensions")),
        (_set("op:qk", "inputs", ["fc"]), ("ops[2] (qk)", "two inputs")),
        (_set("tensor:m", "shape", [1, 2, 16]), ("ops[3] (add)", "does not broadcast")),
        (_set("op:fc", "macs", 128 * 32 + 1), ("ops[1] (fc).macs", "says 4097 MACs but its shapes give 4096")),
        (_set("op:conv", "macs", 0), ("ops[0] (conv).macs",)),
    ],
)
def test_a_bad_trace_names_the_file_and_the_culprit(tmp_path: Path, edit: Edit, needles: tuple[str, ...]) -> None:
    data = copy.deepcopy(sample().to_dict())
    edit(data)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    if not needles:
        assert Workload.load(path).to_dict() == data
        return
    _expect_error(path, *needles)


def test_a_broadcast_that_adds_leading_ones_is_fine(tmp_path: Path) -> None:
    data = sample().to_dict()
    _tensor(data, "m")["shape"] = [1, 1, 1, 16]  # leading 1s beyond the output's rank broadcast away
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    assert Workload.load(path).tensors["m"].shape == (1, 1, 1, 16)


# ---- building in code is validated too --------------------------------------------------------------------------
def test_make_workload_validates() -> None:
    x, w, y = Tensor("x", (1, 3, 8, 8)), Tensor("w", (4, 3, 3, 3), is_weight=True), Tensor("y", (1, 4, 8, 8))
    conv = Op("conv", "conv2d", ("x",), "y", ("w",), {"groups": 0}, macs=256 * 27)
    with pytest.raises(WorkloadError, match=r"ops\[0\] \(conv\).attrs.groups"):
        make_workload("w", [x, w, y], [conv])
    with pytest.raises(WorkloadError, match="no ops"):
        make_workload("w", [x], [])
    with pytest.raises(WorkloadError, match="meta.batch"):
        make_workload("w", [x, y], [Op("a", "activation", ("x",), "y")], {"batch": -1})
    with pytest.raises(WorkloadError, match=r"tensors\[0\] \(x\).shape"):
        make_workload("w", [Tensor("x", (1, 2.5)), y], [Op("a", "activation", ("x",), "y")])  # type: ignore[arg-type]


def test_a_plugin_kind_with_its_own_geometry_is_not_second_guessed() -> None:
    from archsim.workloads.geometry import Gemm
    from archsim.workloads.kinds import register_op_kind

    register_op_kind("test_ir_conv3d", "mac", geometry=lambda op, t: Gemm(1, 1, 1, 1), replace=True)
    x, y = Tensor("x", (1, 2, 3, 4, 5)), Tensor("y", (1, 7))
    w = make_workload("w", [x, y], [Op("c", "test_ir_conv3d", ("x",), "y", macs=1)])
    assert w.total_macs == 1
