"""result.json.gz: a Result saved and loaded back is equal field for field (stalls, counters, inputs, metadata
tuples, floats exactly), the bytes are deterministic, files from an archsim with fewer or more fields still load,
and a damaged or foreign file is a one-line UsageError naming it."""
from __future__ import annotations

import gzip
import json
from dataclasses import fields, replace
from pathlib import Path

import pytest

from archsim.errors import UsageError
from archsim.report.store import dumps_result, load_result, result_to_data, save_result
from archsim.result import Result


def rich(result: Result) -> Result:
    """The synthetic result with every new field filled in, awkward floats and nested metadata."""
    ops = tuple(replace(r, busy_cycles=r.cycles // 2, stalls={"busy": r.cycles // 2, "dram": r.cycles - r.cycles // 2},
                        inputs=("patch_embed", "x") if r.op == "head" else ()) for r in result.ops)
    stalls = {name: {"busy": 600, "dram": 100, "buffer": 50, "producer": 150, "noc": 0, "idle": 100}
              for name in result.engines}
    return replace(result, ops=ops, stalls=stalls, area_mm2=0.1 + 0.2,
                   counters={"sram.occupancy_bytes": ((0, 0.0), (10, 1.5e-7), (20, 3.0))},
                   workload_meta={**result.workload_meta, "nested": {"a": (1, [2, (3,)]), "b": None},
                                  "big": 2**70, "neg": -0.0})


def test_round_trip_is_exact(result: Result, tmp_path: Path) -> None:
    original = rich(result)
    loaded = load_result(save_result(original, tmp_path / "result.json.gz"))
    assert loaded == original
    for f in fields(Result):  # tuples stay tuples, floats stay floats
        assert isinstance(getattr(loaded, f.name), type(getattr(original, f.name))), f.name
    assert loaded.workload_meta["image_size"] == (224, 224) and loaded.workload_meta["nested"]["a"] == (1, [2, (3,)])
    assert type(loaded.spans[0]) is type(original.spans[0]) and loaded.ops[-1].inputs == ("patch_embed", "x")
    assert loaded.area_mm2 == 0.1 + 0.2 and str(loaded.workload_meta["neg"]) == "-0.0"


def test_bytes_are_deterministic_and_columnar(result: Result, tmp_path: Path) -> None:
    first = save_result(rich(result), tmp_path / "a.json.gz").read_bytes()
    assert first == save_result(rich(result), tmp_path / "b.json.gz").read_bytes() == dumps_result(rich(result))
    data = json.loads(gzip.decompress(first))
    assert data["format"] == "archsim-result" and data["version"] == 1
    spans = data["result"]["spans"]
    assert isinstance(spans, dict) and len(spans["start"]) == len(result.spans)  # one list per field


def test_a_file_from_an_archsim_with_fewer_or_more_fields_loads(result: Result, tmp_path: Path) -> None:
    data = result_to_data(rich(result))
    del data["result"]["counters"]  # written before the field existed: its default
    del data["result"]["ops"]["inputs"]
    data["result"]["from_the_future"] = 1  # written by a later archsim: ignored
    data["result"]["ops"]["later_field"] = [0] * len(result.ops)
    path = tmp_path / "old.json.gz"
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    loaded = load_result(path)
    assert loaded.counters == {} and all(r.inputs == () for r in loaded.ops)
    assert loaded.stalls == rich(result).stalls


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"not gzip", "not a gzip file"),
    (gzip.compress(b"{not json"), "damaged"),
    (gzip.compress(b'{"format": "something-else"}'), "not a result"),
    (gzip.compress(b'{"format": "archsim-result", "version": 99, "result": {}}'), "newer"),
    (gzip.compress(b'{"format": "archsim-result", "version": 1, "result": {"model": "m"}}'), "not a result"),
], ids=["missing", "not-gzip", "not-json", "foreign", "newer", "incomplete"])
def test_a_bad_file_is_one_line_naming_it(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "result.json.gz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError, match=message) as info:
        load_result(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
