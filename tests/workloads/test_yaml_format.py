"""Hand-written YAML workloads: the shipped one loads; a bad one is a one-line WorkloadError naming the file and the
op or key, never a traceback, a truncated shape or an inconsistent workload accepted."""
from __future__ import annotations

from pathlib import Path

import pytest

from archsim.errors import WorkloadError
from archsim.workloads import jsonfile
from archsim.workloads.yaml_format import load_yaml_workload
from helpers import MLP_YAML

HEAD = "name: t\ninputs: {x: [1, 16, 8, 8], t: [1, 197, 384]}\n"
CONV = "  - {name: conv, kind: conv2d, in: [x], weights: {conv.weight: [16, 16, 3, 3]}, out: [1, 16, 8, 8]%s}\n"
FC = "  - {name: fc, kind: linear, in: [%s], weights: {fc.weight: [1536, 384]}, out: [1, 197, 1536]}\n"


def test_the_shipped_workload_loads() -> None:
    w = load_yaml_workload(MLP_YAML)
    assert [op.name for op in w.ops] == ["norm", "fc1", "act", "fc2", "residual"]
    assert w.total_macs == 2 * 197 * 384 * 1536 and w.meta["batch"] == 1


def test_a_good_conv_and_linear_load(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(HEAD + "ops:\n" + CONV % ", groups: 1" + FC % "t")
    w = load_yaml_workload(path)
    assert w.total_macs == 16 * 64 * 16 * 9 + 197 * 1536 * 384


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ("ops:\n" + CONV % ", groups: 0", ("ops[0] (conv).attrs.groups", "got 0")),
        ("ops:\n" + CONV % ", groups: 1.5", ("ops[0] (conv).attrs.groups",)),
        ("ops:\n" + CONV % ", groups: 3", ("ops[0] (conv)", "not divisible by groups 3")),
        ("ops:\n" + CONV % ", groups: 2", ("ops[0] (conv)", "expects 32")),
        ("ops:\n" + CONV % ", stride: [0, 1]", ("ops[0] (conv).attrs.stride",)),
        ("ops:\n" + CONV % ", when: 2020-01-01", ("ops[0] (conv).attrs.when", "unsupported value of type date")),
        ("ops:\n" + CONV % ", ratio: .nan", ("ops[0] (conv).attrs.ratio", "finite")),
        ("ops:\n" + FC % "x", ("ops[0] (fc)", "has 8 features but the weight [1536, 384] takes 384")),
        ("ops: []\n", ("ops: the workload has no ops",)),
        ("ops:\n" + FC % "t" + "  - {name: g, kind: activation, in: [fc.weight], out: [1, 4]}\n",
         ("ops[1].in", "neither a graph input nor an earlier op")),
        ("ops:\n  - {name: fc, kind: linear, in: [t], weights: {t: [1536, 384]}, out: [1, 197, 1536]}\n",
         ("ops[0].weights", "'t' is already used")),
        ("ops:\n  - {name: q, kind: matmul, in: [t, t], out: [1, 197, 197]}\n", ("ops[0] (q)", "inner dimensions")),
        ("ops:\n  - {name: a, kind: eltwise, fn: add, in: [t, x], out: [1, 197, 384]}\n", ("ops[0] (a)", "broadcast")),
        ("act_bits: 0\nops:\n" + FC % "t", ("act_bits", "greater than or equal to 1")),
        ("weight_bits: 65\nops:\n" + FC % "t", ("weight_bits",)),
        ("ops:\n  - {name: g, kind: activation, in: [t], out: [1, 197, 384], bits: 0}\n", ("ops[0].bits",)),
    ],
)
def test_a_bad_op_names_the_file_and_the_op(tmp_path: Path, body: str, needles: tuple[str, ...]) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(HEAD + body)
    with pytest.raises(WorkloadError) as info:
        load_yaml_workload(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: t\ninputs: {x: [1, 197.5, 384]}\nops: []\n", "inputs.x[1]"),
        ("name: t\ninputs: {x: [1, 197.0, 384]}\nops: []\n", "inputs.x[1]"),  # refused, not truncated to 197
        ("name: t\ninputs: {x: [1, '197', 384]}\nops: []\n", "inputs.x[1]"),
        ("name: t\ninputs: {x: [1, 4]}\nops:\n  - {name: a, kind: activation, in: [x], out: [1, 4.5]}\n",
         "ops[0].out[1]"),
        ("name: t\ninputs: {x: [1, 0]}\nops:\n  - {name: a, kind: activation, in: [x], out: [1, 4]}\n",
         "tensors[0] (x).shape"),
        ("name: t\ninputs: {x: [1, 4]}\nops:\n  - {name: a, kind: activation, in: [x], out: [1, 4], z: "
         + "[" * 600 + "]" * 600 + "}\n", "ops.0.z.0.0.0.....0: nested deeper than 64 levels at line 4"),
        ("name: t\ninputs: {x: [1, 4]}\nops:\n  - {name: a, kind: activation, in: [x], out: [1, 4], z: "
         + "[" * 100 + "]" * 100 + "}\n", "nested deeper than 64 levels"),  # refused before it is parsed
        ("[unclosed", "YAML syntax error"),
        ("just a string", "input should be a valid dictionary"),
    ],
    ids=["fraction", "float", "string", "fractional-out", "zero-dim", "deep", "deep-parsed", "syntax", "not-a-map"],
)
def test_a_bad_file_is_one_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    with pytest.raises(WorkloadError, match=r"^[^\n]*$") as info:
        load_yaml_workload(path)
    assert str(info.value).startswith(f"{path}: ") and needle in str(info.value)


def test_non_utf8_missing_and_alias_bombs_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: d\u00e9it\n".encode("latin-1"))
    with pytest.raises(WorkloadError, match="not UTF-8"):
        load_yaml_workload(latin)
    with pytest.raises(WorkloadError, match="no such file"):
        load_yaml_workload(tmp_path / "absent.yaml")
    monkeypatch.setattr(jsonfile, "MAX_CONTAINERS", 1000)  # the real bound is 2^20; a small one keeps this fast
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 5)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("name: t\ninputs: {x: [1, 4]}\nops:\n  - name: a\n    kind: activation\n    in: [x]\n"
                    "    out: [1, 4]\n    " + "\n    ".join(levels) + "\n")
    with pytest.raises(WorkloadError, match="more than 1000 lists and mappings"):
        load_yaml_workload(bomb)
