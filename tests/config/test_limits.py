"""Configs validated at the edge (issue 14): every number finite and in range, strict types, YAML read within bounds
(size, nesting, aliases, duplicate keys), ``mapping.assign`` keys that are op classes. Each bad input is one line
that starts with ``<file>: <key>: ``; every shipped config still loads."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from archsim.config import load_config
from archsim.config.load import MAX_DEPTH, MAX_DOCUMENT_BYTES
from archsim.config.schema import (ACTIVATION_FUNCTIONS, IMPL_CLASSES, MAX_SHOWN, OTHER_FUNCTIONS, ROLE_CLASSES,
                                   op_class_names)
from archsim.errors import ConfigError, UsageError
from archsim.registry import ENGINE_KINDS
from helpers import GENERIC, ROOT

BASE = GENERIC.read_text()
GPU = ROOT / "arch_configs" / "gpu_turing.yaml"
#: The longest message a bad config gives: the file, a key path and a short phrase with at most MAX_SHOWN
#: characters of the value, never the whole value.
MAX_MESSAGE = 300


def _write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    """generic16.yaml with one line (which occurs once) rewritten, as the adversary's YAML was written."""
    assert BASE.count(old) == 1, old
    return _write(tmp_path, BASE.replace(old, new))


def _error(path: Path, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message and len(message) <= MAX_MESSAGE, message
    return message


# ---- numbers: finite, within range, strict ---------------------------------------------------------------------------

NUMBERS = [
    ("clock_mhz: 500", "clock_mhz: .inf", "clock_mhz", "must be a finite number, got inf"),
    ("clock_mhz: 500", "clock_mhz: .nan", "clock_mhz", "must be a finite number, got nan"),
    ("clock_mhz: 500", "clock_mhz: 1e300", "clock_mhz", "must be a number <= 100000, got '1e300'"),
    ("clock_mhz: 500", "clock_mhz: 1.0e+300", "clock_mhz", "must be a number <= 100000, got 1e+300"),
    ("clock_mhz: 500", "clock_mhz: 1.0e-320", "clock_mhz", "must be a number >= 1, got 1e-320"),
    ("clock_mhz: 500", "clock_mhz: true", "clock_mhz", "must be a number, got true"),
    ("capacity_kib: 384", "capacity_kib: .inf", "buffers.act_buf.capacity_kib", "must be a finite number, got inf"),
    ("capacity_kib: 384", "capacity_kib: 0", "buffers.act_buf.capacity_kib", "must be a positive number, got 0"),
    ("capacity_kib: 384", "capacity_kib: 2.0e+30", "buffers.act_buf.capacity_kib", "must be a number <= 1073741824"),
    ("latency_ns: 50", "latency_ns: .inf", "dram.latency_ns", "must be a finite number, got inf"),
    ("latency_ns: 50", "latency_ns: -1", "dram.latency_ns", "must be a number >= 0, got -1"),
    ("mac_pj: 0.23", "mac_pj: .inf", "engines.pe.mac_pj", "must be a finite number, got inf"),
    ("mac_pj: 0.23", "mac_pj: 1.0e+7", "engines.pe.mac_pj", "must be a number <= 1000000"),
    ("mac_pj: 0.23", "mac_pj: yes", "engines.pe.mac_pj", "must be a number, got true"),
    ("rows: 16", "rows: 1e30", "engines.pe.rows", "must be an integer, got '1e30'"),
    ("rows: 16", "rows: 1000000000000000000000000000000", "engines.pe.rows", "must be an integer <= 65536"),
    ("rows: 16", "rows: true", "engines.pe.rows", "must be an integer, got true"),
    ("rows: 16", "rows: 16.0", "engines.pe.rows", "must be an integer, got 16.0"),
    ("softmax:   {cycles_per_element: 4,", "softmax:   {cycles_per_element: 1e15,",
     "engines.vec.ops.softmax.cycles_per_element", "must be a number <= 1000000, got '1e15'"),
    ("softmax:   {cycles_per_element: 4,", "softmax:   {cycles_per_element: 1.0e-9,",
     "engines.vec.ops.softmax.cycles_per_element", "must be a number >= 1e-06"),
    ("channels: 1", "channels: 100000", "dram.channels", "must be an integer <= 64, got 100000"),
    ("bandwidth_gbps: 12.8", "bandwidth_gbps: 0", "dram.bandwidth_gbps", "must be a positive number, got 0"),
    ("fifo_depth: 2", "fifo_depth: 1000000000", "mapping.pipeline.fifo_depth", "must be an integer <= 64"),
    ("fifo_depth: 2", "fifo_depth: 1e9", "mapping.pipeline.fifo_depth", "must be an integer, got '1e9'"),
    ("fifo_depth: 2", "fifo_depth: 2\n    min_tiles: 1000000", "mapping.pipeline.min_tiles",
     "must be an integer <= 1024, got 1000000"),
    ("fifo_depth: 2", "fifo_depth: 2\n    max_tiles: 100000", "mapping.pipeline.max_tiles",
     "must be an integer <= 1024"),
    ("  act_bits: 8", "  act_bits: 0", "defaults.act_bits", "must be an integer >= 1, got 0"),
    ("  acc_bits: 32", "  acc_bits: 64", "defaults.acc_bits", "must be an integer <= 32, got 64"),
    ("link_bits: 512", "link_bits: -8", "noc.link_bits", "must be a positive integer, got -8"),
    ("hop_latency_cycles: 1", "hop_latency_cycles: 10000000", "noc.hop_latency_cycles",
     "must be an integer <= 1000000"),
]


@pytest.mark.parametrize("old, new, key, phrase", NUMBERS, ids=[n[1].split("\n")[-1].strip() for n in NUMBERS])
def test_bad_number_names_file_and_key(tmp_path: Path, old: str, new: str, key: str, phrase: str) -> None:
    path = _edited(tmp_path, old, new)
    message = _error(path)
    assert message.startswith(f"{path}: {key}: "), message
    assert phrase in message, message


@pytest.mark.parametrize("override, key, phrase", [
    ("mapping.resident_fraction=1", "mapping.resident_fraction", "must be a number < 1, got 1"),
    ("mapping.budget=100000", "mapping.budget", "must be an integer <= 4096"),
    ("area.sram_array_efficiency=0", "area.sram_array_efficiency", "must be a positive number, got 0"),
    ("engines.pe.area_mm2=.inf", "engines.pe.area_mm2", "must be a finite number, got inf"),
    ("engines.dma.bytes_per_cycle=true", "engines.dma.bytes_per_cycle", "must be a number, got true"),
    ("engines.vec.ops.gelu.latency_cycles=-1", "engines.vec.ops.gelu.latency_cycles", "must be an integer >= 0"),
    ("dram.row_buffer={row_bytes: 0}", "dram.row_buffer.row_bytes", "must be a positive integer, got 0"),
])
def test_bad_override_names_file_and_key(override: str, key: str, phrase: str) -> None:
    message = _error(GENERIC, (override,))
    assert message.startswith(f"{GENERIC}: {key}: ") and phrase in message, message


def test_float_key_of_an_engine_kind_says_number() -> None:
    """A float key whose own bound is written as an integer (gpu_roofline's efficiency, gt=0) is still a number."""
    message = _error(GPU, ("engines.gpu.efficiency.linear=0",))
    assert message.startswith(f"{GPU}: engines.gpu.efficiency.linear: must be a positive number, got 0"), message


# ---- YAML: duplicate keys, size, nesting, aliases --------------------------------------------------------------------

@pytest.mark.parametrize("old, new, key, line", [
    ("clock_mhz: 500", "clock_mhz: 500\nclock_mhz: 600", "clock_mhz", 7),
    ("    rows: 16", "    rows: 16\n    rows: 32", "engines.pe.rows", 48),
    ("softmax:   {cycles_per_element: 4,", "softmax:   {cycles_per_element: 4, cycles_per_element: 5,",
     "engines.vec.ops.softmax.cycles_per_element", 54),
    ("  pe:\n", "  pe:\n    type: pe_array\n", "engines.pe.type", 47),
    ("    conv2d: pe", "    conv2d: pe\n    'conv2d': vec", "mapping.assign.conv2d", 76),
], ids=["top", "nested", "flow", "engine-type", "quoted"])
def test_duplicate_key_names_path_and_line(tmp_path: Path, old: str, new: str, key: str, line: int) -> None:
    path = _edited(tmp_path, old, new)
    message = _error(path)
    assert message.startswith(f"{path}: {key}: duplicate key at line {line} (first at line "), message


def test_keys_equal_once_loaded_are_duplicates(tmp_path: Path) -> None:
    """``yes`` and ``true`` are the same key once YAML 1.1 loads them: the second would replace the first."""
    path = _write(tmp_path, BASE + "extra: {yes: 1, true: 2}\n")
    assert "extra.true: duplicate key at line" in _error(path)


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    """``<<: *anchor`` then an explicit key overrides the merged one, as YAML means it: not a duplicate."""
    text = BASE.replace("  rq:\n    type: requant\n    lanes: 16\n",
                        "  rq0: &rq\n    type: requant\n    lanes: 8\n  rq:\n    <<: *rq\n    lanes: 16\n")
    cfg = load_config(_write(tmp_path, text))
    assert cfg.engines["rq"].lanes == 16 and cfg.engines["rq0"].lanes == 8


@pytest.mark.parametrize("tail, key", [
    ("extra: " + "[" * 5000 + "]" * 5000 + "\n", "extra.0.0.0.0.0.....0"),
    ("extra: " + "[" * 200_000 + "\n", "extra.0.0.0.0.0.....0"),  # unclosed: refused before the syntax error
    ("extra:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 100)) + "  " * 100 + "v: 1\n",
     "extra.k1.k2.k3.k4.k5.....k63"),
], ids=["flow", "unclosed-flow", "block"])
def test_deep_nesting_is_refused(tmp_path: Path, tail: str, key: str) -> None:
    path = _write(tmp_path, BASE + tail)
    message = _error(path)
    assert message.startswith(f"{path}: {key}: nested deeper than {MAX_DEPTH} levels at line"), message


def _bomb(levels: int) -> str:
    """Anchors a..: each a list of nine aliases of the one before: 9**levels values once expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_before_it_is_built(tmp_path: Path) -> None:
    path = _write(tmp_path, _bomb(9) + BASE.replace("clock_mhz: 500", "clock_mhz: *a8"))
    message = _error(path)
    assert re.match(rf"{re.escape(str(path))}: a\d[.\d]*: the document expands to more than 100000 values", message)


def test_alias_within_bounds_as_a_typed_value_quotes_a_short_prefix(tmp_path: Path) -> None:
    """59 049 values under clock_mhz: the message abridges the value instead of expanding it."""
    path = _write(tmp_path, _bomb(4) + BASE.replace("clock_mhz: 500", "clock_mhz: [*a3, *a3, *a3, *a3, *a3]"))
    assert _error(path).startswith(f"{path}: clock_mhz: must be a number, got [[[...], [...], [...], [...], ...], ")
    path = _write(tmp_path, BASE.replace("clock_mhz: 500", "clock_mhz: &c [[1, 2, 3], [4, 5, 6]]\nx: [*c, *c]"),
                  "y.yaml")
    assert _error(path).startswith(f"{path}: clock_mhz: must be a number, got [[1, 2, 3], [4, 5, 6]]")


def test_an_alias_that_nests_too_deep_is_refused(tmp_path: Path) -> None:
    deep = "[" * 40 + "1" + "]" * 40
    path = _write(tmp_path, BASE + f"extra: &d {deep}\nmore: {'[' * 28}*d{']' * 28}\n")
    assert f"an alias nests values deeper than {MAX_DEPTH} levels" in _error(path)


def test_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + "# " + "x" * MAX_DOCUMENT_BYTES + "\n")
    message = _error(path)
    assert message.startswith(f"{path}: is larger than {MAX_DOCUMENT_BYTES} bytes"), message


def test_long_values_and_keys_are_quoted_short(tmp_path: Path) -> None:
    path = _edited(tmp_path, "clock_mhz: 500", "clock_mhz: '" + "z" * 10_000 + "'")
    message = _error(path)
    assert message.startswith(f"{path}: clock_mhz: must be a number, got 'zzz")
    assert len(message.split("got ", 1)[1]) <= MAX_SHOWN
    path = _edited(tmp_path, "clock_mhz: 500", "clock_mhz: " + "9" * 5000)  # Python refuses to convert it
    assert _error(path).startswith(f"{path}: clock_mhz: an integer of 5000 characters at line 6")
    path = _edited(tmp_path, "    type: dma", "    type: " + "q" * 10_000)
    message = _error(path)
    assert message.startswith(f"{path}: engines.dma.type: unknown engine type 'qqq") and "q" * 100 not in message
    path = _edited(tmp_path, "  pe:\n", "  " + "p" * 10_000 + ":\n")
    assert "p" * 100 not in _error(path)


def test_set_values_are_bounded_as_files_are() -> None:
    with pytest.raises(UsageError, match=r"^--set dram: channels: duplicate key at line 1"):
        load_config(GENERIC, ["dram={channels: 2, channels: 3}"])
    with pytest.raises(UsageError, match=rf"^--set noc: 0.0.0.0.0.0.....0: nested deeper than {MAX_DEPTH} levels"):
        load_config(GENERIC, ["noc=" + "[" * 100_000])
    message = _error(GENERIC, ("clock_mhz=[" + "x, " * 5_000 + "]",))
    assert message.startswith(f"{GENERIC}: clock_mhz: must be a number, got ['x', 'x',"), message


# ---- mapping.assign ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("override, key, phrase", [
    ("mapping.assign.gleu=vec", "mapping.assign.gleu", "unknown op class 'gleu'"),
    ("mapping.assign.softmax_lsi=vec", "mapping.assign.softmax_lsi", "did you mean 'softmax_lis'"),
    ("mapping.assign.Linear=pe", "mapping.assign.Linear", "did you mean 'linear'"),
    ("mapping.assign.dwconv2d=pe", "mapping.assign.dwconv2d", "did you mean 'dwconv'"),
    ("mapping.assign.linear=[pe, pe]", "mapping.assign.linear", "engine 'pe' is listed twice"),
    ("mapping.assign.linear=[]", "mapping.assign.linear", "must name at least one engine"),
])
def test_bad_assign_names_file_and_key(override: str, key: str, phrase: str) -> None:
    message = _error(GENERIC, (override,))
    assert message.startswith(f"{GENERIC}: {key}: ") and phrase in message, message


def test_every_class_an_op_answers_to_is_a_valid_assign_key(tmp_path: Path) -> None:
    """The loader's vocabulary covers what archsim.mapping.assign.op_classes returns, on every op shape, role,
    tracer function and quantizer integer form (so a valid key is never refused)."""
    from archsim.mapping.assign import Neighbours, op_classes
    from archsim.workloads import extract
    from archsim.workloads.ir import Op
    from archsim.workloads.yaml_format import load_yaml_workload

    tracer_fns = {*extract._ACTIVATIONS, "relu6", *extract._ELTWISE_BINARY, *extract._ELTWISE_UNARY, "div", "mask",
                  *extract._REDUCE_FN.values(), "avg", "max"}
    assert tracer_fns <= {*ACTIVATION_FUNCTIONS, *OTHER_FUNCTIONS}
    quant_impls = set(re.findall(r'impl="(\w+)"', (ROOT / "archsim" / "workloads" / "quant.py").read_text()))
    assert quant_impls <= {c.rsplit("_", 1)[-1] if not c.endswith("leading_one") else "leading_one"
                           for c in IMPL_CLASSES} | {"int"}

    spec = tmp_path / "w.yaml"
    spec.write_text("""
inputs: {x: [1, 16, 8, 8], q: [1, 2, 16, 8], k: [1, 2, 8, 16], v: [1, 2, 16, 8]}
ops:
  - {name: dw, kind: conv2d, in: [x], weights: {dw.w: [16, 1, 3, 3]}, out: [1, 16, 8, 8], kernel: [3, 3], groups: 16}
  - {name: act, kind: activation, fn: relu, in: [dw], out: [1, 16, 8, 8]}
  - {name: pw, kind: conv2d, in: [act], weights: {pw.w: [16, 16, 1, 1]}, out: [1, 16, 8, 8], kernel: [1, 1]}
  - {name: gc, kind: conv2d, in: [pw], weights: {gc.w: [16, 8, 1, 1]}, out: [1, 16, 8, 8], kernel: [1, 1], groups: 2}
  - {name: gk, kind: conv2d, in: [gc], weights: {gk.w: [16, 8, 3, 3]}, out: [1, 16, 8, 8], kernel: [3, 3], groups: 2}
  - {name: cv, kind: conv2d, in: [gk], weights: {cv.w: [16, 16, 3, 3]}, out: [1, 16, 8, 8], kernel: [3, 3]}
  - {name: kv, kind: matmul, in: [k, v], out: [1, 2, 8, 8]}
  - {name: qkv, kind: matmul, in: [q, kv], out: [1, 2, 16, 8]}
""")
    w = load_yaml_workload(spec)
    ctx = Neighbours.of(w)
    classes = {c for op in w.ops for c in op_classes(op, w.tensors, ctx)}
    assert set(ROLE_CLASSES) <= classes
    x = w.ops[1]
    facts = [("softmax", "", "lis"), ("softmax", "", "int2n"), ("layernorm", "", "int"), ("divide", "", "shift"),
             ("log2", "", "leading_one"), *(("activation", fn, "int") for fn in ACTIVATION_FUNCTIONS),
             *(("eltwise", fn, "") for fn in OTHER_FUNCTIONS)]
    for kind, fn, impl in facts:
        attrs = {"fn": fn} if fn else {}
        if impl:
            attrs["quant"] = {"impl": impl}
        op = Op(name="o", kind=kind, inputs=x.inputs, output=x.output, attrs=attrs)
        classes.update(op_classes(op, w.tensors, ctx))
    missing = classes - op_class_names()
    assert not missing, missing


# ---- shipped configs ----------------------------------------------------------------------------------------------

def _arch_configs() -> list[Path]:
    found = [*sorted((ROOT / "arch_configs").glob("*.yaml")), *sorted((ROOT / "examples").rglob("*.yaml"))]
    return [p for p in found if re.search(r"^engines:", p.read_text(), re.M)]  # not sweeps or workloads


@pytest.mark.parametrize("path", _arch_configs(), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    if "bitserial" in path.read_text() and ENGINE_KINDS.find("bitserial") is None:
        pytest.skip("needs archsim-example-plugin installed")
    cfg = load_config(path)
    assert cfg.engines and set(cfg.mapping.assign) <= op_class_names()


def test_validate_refuses_an_infinite_clock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``archsim validate`` used to call ``clock_mhz: .inf`` valid; now it is one line on stderr and status 2."""
    from archsim.cli import main

    path = _edited(tmp_path, "clock_mhz: 500", "clock_mhz: .inf")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"archsim: error: {path}: clock_mhz: must be a finite number, got inf\n"


# ---- op-class tables of the engine kinds ------------------------------------------------------------------------

@pytest.mark.parametrize("config, override, key, hint", [
    (GENERIC, "engines.vec.ops.GELU={cycles_per_element: 2}", "engines.vec.ops.GELU", "did you mean 'gelu'"),
    (GENERIC, "engines.vec.ops.softmx={}", "engines.vec.ops.softmx", "did you mean 'softmax'"),
    (GPU, "engines.gpu.efficiency.convv=0.5", "engines.gpu.efficiency.convv", "did you mean 'conv'"),
    (ROOT / "arch_configs" / "packqvit_mobile.yaml", "engines.cpu.ops.sofmax={}", "engines.cpu.ops.sofmax",
     "did you mean 'softmax'"),
])
def test_op_class_tables_of_engines_are_checked(config: Path, override: str, key: str, hint: str) -> None:
    """A non-linear unit's ``ops``, a mobile CPU's ``ops`` and a GPU's ``efficiency`` are keyed by op class, as
    ``mapping.assign`` is: a key no op answers to (a typo, a capital letter) would never be used, so it is refused."""
    message = _error(config, (override,))
    assert message.startswith(f"{config}: {key}: unknown op class ") and hint in message, message


# ---- docs/configuration.md ---------------------------------------------------------------------------------------

def _keys(model: object, seen: set[object]) -> set[str]:
    """Every key name of a config model and of the models under it (through dicts, optionals, unions)."""
    from typing import get_args

    from pydantic import BaseModel

    names: set[str] = set()
    stack = [model]
    while stack:
        tp = stack.pop()
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in seen:
                continue
            seen.add(tp)
            for name, field in tp.model_fields.items():
                names.add(name)
                stack.append(field.annotation)
        else:
            stack.extend(get_args(tp))
    return names


def test_every_key_is_in_the_docs() -> None:
    """docs/configuration.md names every key of the schema and of every built-in engine kind (with its range:
    the tables there give one per key or per kind of key)."""
    from archsim.config.schema import ArchConfigRaw, QuantSection

    docs = (ROOT / "docs" / "configuration.md").read_text()
    seen: set[object] = set()
    keys = _keys(ArchConfigRaw, seen) | _keys(QuantSection, seen)
    for entry in ENGINE_KINDS.entries():
        if entry.origin == "archsim":
            keys |= _keys(entry.value.config_model, seen)
    missing = sorted(k for k in keys if not re.search(rf"`[\w.<>*]*\b{re.escape(k)}\b[\w.<>*]*`", docs))
    assert not missing, missing
