"""What the fuzz suite found, pinned as plain cases through the CLI: each was accepted (or slow) before its fix and
is now a clean one-line error that names the file and the key."""
from __future__ import annotations

import pytest

from fuzz.harness import GENERIC, MLP_YAML, WORKLOADS, Case, run_case
from fuzz.mutate import trace_json

MLP = MLP_YAML.read_text()


def _clean(case: Case, *needles: str) -> str:
    outcome = run_case(case)
    assert outcome.kind == "clean", outcome.report()
    for needle in needles:
        assert needle in outcome.stderr, outcome.report()
    return outcome.stderr


@pytest.mark.parametrize("command", ["run", "trace"])
def test_a_workload_key_given_twice_is_refused(command: str) -> None:
    """YAML keeps the last of two equal keys silently: a workload with ``name`` twice ran under the second name."""
    text = MLP.replace("name: deit_small_mlp_block\n", "name: deit_small_mlp_block\nname: other\n")
    _clean(Case("workload", command, MLP_YAML.name, text.encode(), ("name twice",)),
           ": name: duplicate key at line 4 (first at line 3")


def test_a_workload_alias_bomb_is_refused_before_it_is_built() -> None:
    """Nine aliases of nine aliases ... as an op's output shape: 9**8 values once expanded."""
    bomb = "b0: &b0 [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 9)}]\n" for i in range(1, 8))
    text = bomb + MLP.replace("out: [1, 197, 1536]}", "out: *b7}", 1)
    _clean(Case("workload", "trace", MLP_YAML.name, text.encode(), ("alias bomb",)),
           "the document expands to more than 200000 values")


def test_a_deeply_nested_workload_is_refused_unparsed() -> None:
    text = MLP + "deep: " + "[" * 20_000 + "]" * 20_000 + "\n"
    _clean(Case("workload", "run", MLP_YAML.name, text.encode(), ("deep",)), ": deep.0.0.0.0.0.....0: nested deeper")


def test_a_trace_key_given_twice_is_refused() -> None:
    text = trace_json(str(WORKLOADS[1])).replace('"schema_version": 1,', '"schema_version": 1,\n "name": "x",', 1)
    _clean(Case("trace", "run", "conv_attention trace", text.encode(), ("name twice",)),
           "key 'name' is given twice in one object")


@pytest.mark.parametrize("old, new, key", [
    ("      gelu:      {", "      GELU:      {", "engines.vec.ops.GELU"),
    ("      divide_shift:", "      divide_shfit:", "engines.vec.ops.divide_shfit"),
])
def test_a_typo_in_an_op_table_is_refused(old: str, new: str, key: str) -> None:
    """An ``ops`` key no op answers to was accepted and never used: the op fell back to a generic entry."""
    text = GENERIC.read_text()
    assert text.count(old) == 1
    _clean(Case("config", "validate", GENERIC.name, text.replace(old, new).encode(), (key,)),
           f": {key}: unknown op class")
