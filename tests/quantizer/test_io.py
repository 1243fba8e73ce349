"""Saving and loading quantized models, with a fake method registered by the test."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from quantizer.errors import UsageError
from quantizer import zoo
from quantizer.core.spec import QuantSpec, collect_specs
from quantizer.data import SyntheticData
from quantizer.io import FORMAT, FORMAT_VERSION, load_quantized, read_quantized, save_quantized
from quantizer.methods.base import METHODS, QuantConfig

RES = 32


def _fake() -> ModuleType:
    """tests/quantizer/fake_method.py, loaded by path (tests/quantizer is not an importable package)."""
    name = "quantizer_tests_fake_method"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("fake_method.py"))
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    mod = _fake()
    monkeypatch.setitem(METHODS, mod.NAME, mod.FakeLinearMethod)
    return mod


@pytest.fixture
def quantized(fake: ModuleType) -> tuple[torch.nn.Module, QuantConfig]:
    model, shape = zoo.build("deit_tiny", RES)
    cfg = QuantConfig(method=fake.NAME, w_bits=4, a_bits=6, options={"note": "test", "alpha": [0.5, 0.35]})
    calib = SyntheticData(shape[1:], seed=0).calibration(batch_size=2, n_batches=2).calib
    fake.FakeLinearMethod().quantize(model, calib, cfg)
    return model.eval(), cfg


def test_round_trip_rebuilds_the_same_quantized_model(tmp_path: Path, quantized) -> None:
    model, cfg = quantized
    path = save_quantized(tmp_path / "q.pt", "deit_tiny", RES, cfg, model)
    loaded, info = load_quantized(path)
    assert info.model == "deit_tiny" and info.resolution == RES and info.config == cfg
    assert info.format_version == FORMAT_VERSION and info.path == path
    assert info.quant_specs == collect_specs(model) and len(info.quant_specs) > 10
    assert all(isinstance(s, QuantSpec) for s in info.quant_specs.values())
    x = torch.randn(3, 3, RES, RES, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training


def test_file_is_a_plain_dict_readable_without_pickled_code(tmp_path: Path, quantized) -> None:
    model, cfg = quantized
    path = save_quantized(tmp_path / "q.pt", "deit_tiny", RES, cfg, model)
    data = torch.load(path, weights_only=True)
    assert data["format"] == FORMAT and data["format_version"] == FORMAT_VERSION
    assert {"archsim_version", "model", "resolution", "quant_config", "state_dict", "quant_specs"} <= set(data)
    assert data["quant_config"]["w_bits"] == 4 and data["quant_config"]["options"]["alpha"] == [0.5, 0.35]
    spec = data["quant_specs"]["blocks.0.attn.qkv"]
    assert spec["kind"] == "linear" and spec["weight_bits"] == 4 and spec["act_bits"] == 6
    assert "blocks.0.attn.qkv.w_scale" in data["state_dict"]


def test_save_is_atomic(tmp_path: Path, quantized, monkeypatch: pytest.MonkeyPatch) -> None:
    model, cfg = quantized
    path = tmp_path / "q.pt"
    path.write_bytes(b"previous")

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError):
        save_quantized(path, "deit_tiny", RES, cfg, model)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["q.pt"]  # no temporary file left behind


def test_save_into_a_missing_folder_is_a_usage_error(tmp_path: Path, quantized) -> None:
    model, cfg = quantized
    with pytest.raises(UsageError, match="does not exist"):
        save_quantized(tmp_path / "nope" / "q.pt", "deit_tiny", RES, cfg, model)


def test_options_must_be_plain_values(tmp_path: Path, quantized) -> None:
    model, cfg = quantized
    bad = QuantConfig(method=cfg.method, options={"fn": object()})
    with pytest.raises(TypeError, match="options.fn"):
        save_quantized(tmp_path / "q.pt", "deit_tiny", RES, bad, model)


def test_a_plain_state_dict_is_not_one_of_ours(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(UsageError, match=rf"{path}: not a quantized model saved by quantizer"):
        load_quantized(path)


def test_garbage_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(UsageError, match=rf"{junk}: not a quantized model") as info:
        load_quantized(junk)
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="no such file"):
        load_quantized(tmp_path / "missing.pt")


def _tamper(path: Path, **changes) -> None:
    data = torch.load(path, weights_only=True)
    data.update(changes)
    torch.save(data, path)


def test_wrong_format_version(tmp_path: Path, quantized) -> None:
    path = save_quantized(tmp_path / "q.pt", "deit_tiny", RES, quantized[1], quantized[0])
    _tamper(path, format_version=99)
    with pytest.raises(UsageError, match=rf"{path}: format version 99 is not supported"):
        read_quantized(path)


def test_mismatched_keys_name_the_file_and_the_keys(tmp_path: Path, quantized) -> None:
    path = save_quantized(tmp_path / "q.pt", "deit_tiny", RES, quantized[1], quantized[0])
    state = torch.load(path, weights_only=True)["state_dict"]
    state["head.renamed"] = state.pop("head.linear.weight")
    _tamper(path, state_dict=state)
    with pytest.raises(UsageError, match=r"missing keys: head\.linear\.weight; unexpected keys: head\.renamed") as e:
        load_quantized(path)
    assert str(path) in str(e.value)


def test_misshaped_keys(tmp_path: Path, quantized) -> None:
    path = save_quantized(tmp_path / "q.pt", "deit_tiny", RES, quantized[1], quantized[0])
    state = torch.load(path, weights_only=True)["state_dict"]
    state["blocks.0.attn.qkv.w_scale"] = torch.ones(3, 1)
    _tamper(path, state_dict=state)
    with pytest.raises(UsageError, match=r"mis-shaped keys: blocks\.0\.attn\.qkv\.w_scale \(file \[3, 1\]"):
        load_quantized(path)


def test_unknown_method_in_the_file(tmp_path: Path, quantized, monkeypatch: pytest.MonkeyPatch, fake) -> None:
    path = save_quantized(tmp_path / "q.pt", "deit_tiny", RES, quantized[1], quantized[0])
    monkeypatch.delitem(METHODS, fake.NAME)
    with pytest.raises(UsageError, match=rf"{path}: cannot rebuild the model \(unknown quantization method"):
        load_quantized(path)


@pytest.mark.skipif(importlib.util.find_spec("quantizer.methods.fqvit") is None,
                    reason="quantizer/methods/fqvit.py is not written yet")
def test_fqvit_round_trip(tmp_path: Path) -> None:
    """The real FQ-ViT method honours the rebuild contract: prepare allocates every buffer, load is strict."""
    from quantizer.methods.base import get_method

    model, shape = zoo.build("deit_tiny", RES)
    cfg = QuantConfig(method="fqvit", ptf=True, lis=True)
    calib = SyntheticData(shape[1:], seed=0).calibration(batch_size=2, n_batches=2).calib
    model = get_method("fqvit").quantize(model, calib, cfg).eval()
    loaded, info = load_quantized(save_quantized(tmp_path / "fq.pt", "deit_tiny", RES, cfg, model))
    assert info.config == cfg and info.quant_specs == collect_specs(model)
    x = torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
