"""On-disk trace cache: keys, hits, misses, corrupt and tampered entries, atomic writes, and its use by
trace_model. Fast tests use a tiny hand-built workload (a zoo builder may return one); tracing a timm model is slow."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from archsim.errors import UsageError
from archsim.workloads import cache, zoo
from archsim.workloads.ir import Op, Tensor, Workload, make_workload


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "traces"
    monkeypatch.setenv("ARCHSIM_CACHE_DIR", str(root))
    return root


def small_workload(name: str = "w", features: int = 8) -> Workload:
    x, y = Tensor("x", (1, features)), Tensor("y", (1, 4))
    return make_workload(
        name,
        [x, Tensor("w", (4, features), is_weight=True), y],
        [Op(name="fc", kind="linear", inputs=("x",), weights=("w",), output="y", macs=4 * features,
            attrs={"in_shapes": ((1, features),)})],
        meta={"model": name},
    )


def _entry(path: Path) -> dict:
    return json.loads(path.read_text())


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
    assert len(a.digest) == 64 and int(a.digest, 16) >= 0 and str(a) == a.digest
    assert json.loads(a.text)["fields"] == {"model": "deit_small", "resolution": 224, "batch": 1}
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
    with pytest.raises(UsageError, match="JSON"):
        cache.cache_key(scale=float("nan"))
    with pytest.raises(UsageError, match="CacheKey"):
        cache.store("0" * 64, small_workload())  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="SHA-256"):
        cache.CacheKey("{}", "0" * 64)


# ---- load / store ----------------------------------------------------------------------------------------------
def test_store_then_load_round_trips(cache_root: Path) -> None:
    key = cache.cache_key(model="w")
    assert cache.load(key) is None
    path = cache.store(key, small_workload())
    assert path == cache_root / f"{key.digest}.json" and path.is_file()
    loaded = cache.load(key)
    assert loaded is not None and loaded.ops == small_workload().ops and loaded.tensors == small_workload().tensors
    assert cache.load(key.digest) is not None  # the digest alone finds it too
    assert [p.name for p in cache_root.iterdir()] == [path.name]  # no temporary file left behind


def test_an_entry_records_its_whole_key_and_content_digest(cache_root: Path) -> None:
    key = cache.cache_key(model="w", batch=1)
    entry = _entry(cache.store(key, small_workload()))
    assert entry["format"] == cache.ENTRY_FORMAT and entry["key"] == key.text and entry["key_sha256"] == key.digest
    assert len(entry["content_sha256"]) == 64 and entry["workload"]["name"] == "w"


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"\xff\xfe\x00", json.dumps({"schema_version": 999}).encode(),
     json.dumps({"schema_version": 1, "tensors": [], "ops": [{"name": "a"}]}).encode(), b"[]", b"[" * 5000,
     b'{"format": 2, "key": NaN}', json.dumps(small_workload().to_dict()).encode()],  # last: the old format
)
def test_corrupt_entry_is_a_miss(cache_root: Path, content: bytes) -> None:
    key = cache.cache_key(model="w")
    cache_root.mkdir(parents=True)
    (cache_root / f"{key.digest}.json").write_bytes(content)
    assert cache.load(key) is None
    cache.store(key, small_workload())
    assert cache.load(key) is not None


def test_another_workloads_entry_is_a_miss(cache_root: Path) -> None:
    """An entry copied over another key's file (``--model deit_tiny`` finding deit_small's trace) is not used."""
    tiny, small = cache.cache_key(model="tiny"), cache.cache_key(model="small")
    cache.store(tiny, small_workload("tiny"))
    small_path = cache.store(small, small_workload("small", features=16))
    cache.cache_path(tiny).write_bytes(small_path.read_bytes())
    assert cache.load(tiny) is None
    assert cache.load(small) is not None and cache.load(small).name == "small"  # type: ignore[union-attr]


Edit = Callable[[dict[str, Any]], Any]


def _tamper(path: Path, edit: Edit, *, fix_digest: bool) -> None:
    """Apply ``edit`` to the entry in ``path``; with ``fix_digest``, recompute its content digest as a forger would."""
    entry = _entry(path)
    edit(entry)
    if fix_digest:
        body = json.dumps(entry["workload"], sort_keys=True, separators=(",", ":"))
        entry["content_sha256"] = hashlib.sha256(body.encode()).hexdigest()
    path.write_text(json.dumps(entry))


def _set_macs(macs: int) -> Edit:
    def edit(entry: dict[str, Any]) -> None:
        entry["workload"]["ops"][0]["macs"] = macs
    return edit


@pytest.mark.parametrize(
    ("edit", "fix_digest"),
    [
        (_set_macs(33), False),  # content changed, digest not: a miss
        (_set_macs(33), True),  # digest recomputed, but the shapes give 32 MACs: fails validation, a miss
        (lambda e: e["workload"]["meta"].update(batch=-1), True),
        (lambda e: e.update(key=e["key"].replace('"w"', '"v"')), False),  # the recorded key is another one
        (lambda e: e.update(key_sha256="0" * 64), False),
        (lambda e: e.pop("content_sha256"), False),
    ],
)
def test_tampered_entry_is_a_miss_and_is_overwritten(cache_root: Path, edit: Edit, fix_digest: bool) -> None:
    key = cache.cache_key(model="w")
    path = cache.store(key, small_workload())
    _tamper(path, edit, fix_digest=fix_digest)
    assert cache.load(key) is None
    cache.store(key, small_workload())
    assert cache.load(key) is not None


def test_an_entry_that_is_a_directory_is_a_miss(cache_root: Path) -> None:
    key = cache.cache_key(model="w")
    (cache_root / f"{key.digest}.json").mkdir(parents=True)
    assert cache.load(key) is None


# ---- trace_model uses the cache --------------------------------------------------------------------------------
@pytest.fixture
def hand_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A zoo model ``hand`` traced by a stub that returns a tiny workload (no torch); yields the list of traces."""
    import quantizer.zoo

    monkeypatch.setattr(quantizer.zoo, "_MODELS", dict(quantizer.zoo._MODELS))
    zoo.register_model("hand")(lambda resolution, batch: small_workload("hand"))
    traces: list[str] = []

    def trace(spec: zoo.ModelSpec, resolution: int, batch: int, *args: object) -> Workload:
        traces.append(f"{spec.name}/{batch}")
        return small_workload(spec.name)

    monkeypatch.setattr(zoo, "_trace_uncached", trace)
    yield traces


def test_trace_model_hits_misses_and_repairs_a_tampered_entry(cache_root: Path, hand_model: list[str]) -> None:
    first = zoo.trace_model("hand")
    assert hand_model == ["hand/1"] and len(list(cache_root.glob("*.json"))) == 1
    again = zoo.trace_model("hand")  # hit: no new build
    assert hand_model == ["hand/1"] and again.ops == first.ops and again.meta == first.meta
    zoo.trace_model("hand", batch=2)  # another key: miss
    assert hand_model == ["hand/1", "hand/2"] and len(list(cache_root.glob("*.json"))) == 2

    (path,) = [p for p in cache_root.glob("*.json") if json.loads(_entry(p)["key"])["fields"]["batch"] == 1]
    _tamper(path, _set_macs(33), fix_digest=True)
    repaired = zoo.trace_model("hand")  # the tampered entry is a miss: rebuilt and overwritten
    assert hand_model[-1] == "hand/1" and len(hand_model) == 3 and repaired.total_macs == 32
    assert cache.load(cache.CacheKey(_entry(path)["key"], path.stem)) is not None

    path.write_text("{ truncated")  # a corrupt entry: the same
    zoo.trace_model("hand")
    assert len(hand_model) == 4 and _entry(path)["workload"]["ops"][0]["macs"] == 32

    zoo.trace_model("hand", cache=False)  # cache disabled: always builds
    assert len(hand_model) == 5


@pytest.mark.parametrize("where", ["cache_dir", "home", "no_home"])
def test_an_unwritable_cache_is_one_warning_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capfd: pytest.CaptureFixture[str], hand_model: list[str],
                                                 where: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    if where == "cache_dir":
        monkeypatch.setenv("ARCHSIM_CACHE_DIR", str(blocker / "traces"))
    else:
        monkeypatch.delenv("ARCHSIM_CACHE_DIR")
        monkeypatch.setenv("HOME", str(blocker))
        if where == "no_home":
            def no_home() -> Path:
                raise RuntimeError("Could not determine home directory.")
            monkeypatch.setattr(Path, "home", staticmethod(no_home))
    zoo._warn_once.cache_clear()
    w = zoo.trace_model("hand")
    zoo.trace_model("hand", batch=2)  # a second workload into the same unwritable cache: no second line
    assert w.total_macs == 32 and hand_model == ["hand/1", "hand/2"]
    err = capfd.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("archsim: warning: trace cache not written")


@pytest.mark.slow
def test_a_swapped_zoo_entry_is_retraced(cache_root: Path) -> None:
    """End to end with real traces: deit_small's entry copied over deit_tiny's is a miss, re-traced."""
    zoo.trace_model("deit_tiny")
    zoo.trace_model("deit_small")
    by_model = {json.loads(_entry(p)["key"])["fields"]["model"]: p for p in cache_root.glob("*.json")}
    by_model["deit_tiny"].write_bytes(by_model["deit_small"].read_bytes())
    again = zoo.trace_model("deit_tiny")
    assert again.meta["model"] == "deit_tiny"
    assert _entry(by_model["deit_tiny"])["workload"]["meta"]["model"] == "deit_tiny"
