"""On-disk trace cache: keys, hits, misses, corrupt entries, atomic writes, and its use by trace_model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from archsim.errors import UsageError
from archsim.workloads import cache, zoo
from archsim.workloads.ir import Op, Tensor, Workload, make_workload


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "traces"
    monkeypatch.setenv("ARCHSIM_CACHE_DIR", str(root))
    return root


def small_workload(name: str = "w") -> Workload:
    return make_workload(
        name,
        [Tensor("x", (1, 8)), Tensor("w", (4, 8), is_weight=True), Tensor("y", (1, 4))],
        [Op(name="fc", kind="linear", inputs=("x",), weights=("w",), output="y", macs=32, attrs={"in_shapes": ((1, 8),)})],
        meta={"model": name},
    )


# ---- keys and paths --------------------------------------------------------------------------------------------
def test_cache_dir_from_env_or_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHSIM_CACHE_DIR", str(tmp_path / "c"))
    assert cache.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ARCHSIM_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / ".cache" / "archsim" / "traces"


def test_cache_key_is_canonical_and_sensitive() -> None:
    a = cache.cache_key(model="deit_small", resolution=224, batch=1)
    assert a == cache.cache_key(batch=1, resolution=224, model="deit_small")
    assert len(a) == 64 and int(a, 16) >= 0
    assert a != cache.cache_key(model="deit_small", resolution=224, batch=8)
    assert a != cache.cache_key(model="deit_small", resolution=224, batch=1, checkpoint=Path("/x.pt"))


def test_cache_key_includes_package_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    before = cache.cache_key(model="m")
    monkeypatch.setattr(cache, "package_versions", lambda: {"archsim": "9", "torch": "9", "timm": "9"})
    assert cache.cache_key(model="m") != before


def test_bad_keys_and_fields_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="cache key"):
        cache.load("../../etc/passwd")
    with pytest.raises(UsageError, match="JSON"):
        cache.cache_key(model=object())


# ---- load / store ----------------------------------------------------------------------------------------------
def test_store_then_load_round_trips(cache_root: Path) -> None:
    key = cache.cache_key(model="w")
    assert cache.load(key) is None
    path = cache.store(key, small_workload())
    assert path == cache_root / f"{key}.json" and path.is_file()
    loaded = cache.load(key)
    assert loaded is not None and loaded.ops == small_workload().ops and loaded.tensors == small_workload().tensors
    assert [p.name for p in cache_root.iterdir()] == [path.name]  # no temporary file left behind


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"\xff\xfe\x00", json.dumps({"schema_version": 999}).encode(),
     json.dumps({"schema_version": 1, "tensors": [], "ops": [{"name": "a"}]}).encode(), b"[]"],
)
def test_corrupt_entry_is_a_miss(cache_root: Path, content: bytes) -> None:
    key = cache.cache_key(model="w")
    cache_root.mkdir(parents=True)
    (cache_root / f"{key}.json").write_bytes(content)
    assert cache.load(key) is None
    cache.store(key, small_workload())
    assert cache.load(key) is not None


# ---- trace_model uses the cache --------------------------------------------------------------------------------
def test_trace_model_hit_miss_and_corrupt(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    real = zoo._trace_uncached

    def counting(spec: zoo.ModelSpec, resolution: int, batch: int, *args: object) -> Workload:
        calls.append((spec.name, batch))
        return real(spec, resolution, batch, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(zoo, "_trace_uncached", counting)

    first = zoo.trace_model("deit_tiny")
    assert calls == [("deit_tiny", 1)]
    files = list(cache_root.glob("*.json"))
    assert len(files) == 1

    again = zoo.trace_model("deit_tiny")  # hit: no new trace
    assert calls == [("deit_tiny", 1)]
    assert again.ops == first.ops and again.tensors == first.tensors and again.meta == first.meta

    zoo.trace_model("deit_tiny", batch=2)  # changed field: miss
    assert calls[-1] == ("deit_tiny", 2) and len(list(cache_root.glob("*.json"))) == 2

    zoo.trace_model("deit_tiny", act_bits=4)  # another changed field: miss
    assert len(calls) == 3

    files[0].write_text("{ truncated")  # corrupt entry: miss, re-trace, overwrite
    repaired = zoo.trace_model("deit_tiny")
    assert len(calls) == 4 and repaired.ops == first.ops
    assert Workload.load(files[0]).ops == first.ops

    zoo.trace_model("deit_tiny", cache=False)  # cache disabled: always traces
    assert len(calls) == 5


def test_unwritable_cache_only_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("ARCHSIM_CACHE_DIR", str(blocker / "traces"))
    with pytest.warns(RuntimeWarning, match="trace cache"):
        w = zoo.trace_model("deit_tiny")
    assert w.total_macs > 0
