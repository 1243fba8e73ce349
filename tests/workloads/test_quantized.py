"""Quantized traces of zoo models: bits and scale kinds from the quantizer, MAC totals against an independent count,
saved models, bad input, the trace cache, and coverage of every zoo model (the exhaustive sweep is slow)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from archsim import load_config, simulate
from archsim.errors import UsageError
from archsim.mapping.schedule import build_taskgraph
from archsim.workloads import zoo
from archsim.workloads.ir import MAC_KINDS, Workload
from archsim.workloads.bridge import QuantConfig
from archsim.workloads.zoo import list_models, trace_model
from helpers import GENERIC, TRIO


def _p2vit_installed() -> bool:
    from archsim.workloads.bridge import get_method

    try:
        get_method("p2vit")
    except UsageError:
        return False
    return True


needs_p2vit = pytest.mark.skipif(not _p2vit_installed(), reason="the p2vit method is not installed yet")


def mac_weight_bytes(w: Workload) -> int:
    """Bytes of the weight matrices of MAC ops (biases excluded)."""
    return sum(w.tensors[op.weights[0]].nbytes for op in w.ops if op.kind in MAC_KINDS and op.weights)


def default_request(model: str, **kw) -> QuantConfig:
    return QuantConfig("trio" if model.startswith("efficientvit") else "fqvit", **kw)


# ---- bits ----------------------------------------------------------------------------------------------------------
def test_w4_and_w8_traces_differ_by_2x_in_weight_bytes() -> None:
    w8 = trace_model("deit_tiny", quant=QuantConfig("fqvit", w_bits=8))
    w4 = trace_model("deit_tiny", quant=QuantConfig("fqvit", w_bits=4))
    assert mac_weight_bytes(w8) == 2 * mac_weight_bytes(w4)
    assert w8.total_macs == w4.total_macs and len(w8.ops) == len(w4.ops)


def test_trio_w4_keeps_stem_and_classifier_at_8_bits_unless_told() -> None:
    w4 = trace_model("efficientvit_b1", quant=QuantConfig("trio", w_bits=4))
    bits = {op.attrs["quant"]["module"]: w4.tensors[op.weights[0]].bits
            for op in w4.ops if op.kind in MAC_KINDS and op.weights}
    assert bits["stem.in_conv"] == 8 and bits["head.classifier.4"] == 8
    assert {b for m, b in bits.items() if m not in ("stem.in_conv", "head.classifier.4")} == {4}
    w8 = trace_model("efficientvit_b1", quant=QuantConfig("trio", w_bits=8, options={"head_stem_8bit": False}))
    w4 = trace_model("efficientvit_b1", quant=QuantConfig("trio", w_bits=4, options={"head_stem_8bit": False}))
    assert mac_weight_bytes(w8) == 2 * mac_weight_bytes(w4)


def test_trio_trace_records_log2_divisor_hardswish_and_requant_points() -> None:
    w = trace_model("efficientvit_b1", quant=QuantConfig("trio"))
    kinds = w.op_kinds()
    assert kinds["log2"] == kinds["divide"] > 0 and "other" not in kinds
    divides = [op for op in w.ops if op.kind == "divide"]
    assert all(op.attrs["quant"]["impl"] == "shift" and op.scale_kind == "log2" for op in divides)
    assert all(w.tensors[op.output].bits == 4 for op in w.ops if op.kind == "log2")
    hswish = [op for op in w.ops if op.fn == "hardswish" and "quant" in op.attrs]
    assert hswish and all(op.attrs["quant"]["impl"] == "int" for op in hswish)
    macs = [op for op in w.ops if op.kind in MAC_KINDS]
    assert all("quant" in op.attrs for op in macs), "every MAC op maps to a quantized module"
    assert [op.attrs["quant"]["module"] for op in macs if op.attrs["quant"]["requant"] == "none"] == \
        ["head.classifier.4"]
    assert w.tensors[macs[-1].output].bits == 32
    folded = [f for op in w.ops for f in op.attrs.get("quant", {}).get("folded_inputs", ())]
    assert {"div by mig", "sub by shift"} <= set(folded)
    assert w.meta["quant"]["method"] == "trio" and w.meta["quant"]["source"] == "prepared"


def test_fqvit_ptf_lis_trace_has_integer_layernorm_and_4_bit_lis_softmax() -> None:
    w = trace_model("deit_tiny", quant=QuantConfig("fqvit", ptf=True, lis=True))
    softmax = [op for op in w.ops if op.kind == "softmax"]
    norms = [op for op in w.ops if op.kind == "layernorm"]
    assert softmax and all(op.attrs["quant"]["impl"] == "lis" and w.tensors[op.output].bits == 4 for op in softmax)
    assert norms and all(op.attrs["quant"]["impl"] == "int" for op in norms)
    av = [op for op in w.ops if op.kind == "matmul" and op.inputs[0] in {s.output for s in softmax}]
    assert av and all(op.attrs["quant"]["in_bits"][0] == 4 for op in av)
    plain = trace_model("deit_tiny", quant=QuantConfig("fqvit"))
    assert not any("impl" in op.attrs.get("quant", {}) for op in plain.ops if op.kind == "softmax")


@needs_p2vit
def test_p2vit_trace_has_power_of_two_scales() -> None:
    w = trace_model("deit_small", quant=QuantConfig("p2vit"))
    kinds = {op.scale_kind for op in w.ops if op.kind in MAC_KINDS}
    assert "pot" in kinds and "float" not in kinds
    result = simulate(load_config(GENERIC), w)
    assert result.unmodelled_ops == ()


# ---- MAC totals against an independent count from the model's shapes -----------------------------------------------
def deit_macs(tokens: int, dim: int, heads: int, depth: int, patches: int, mlp: int, classes: int = 1000) -> int:
    """DeiT/ViT MACs from the architecture's shapes (patch embedding, blocks, head)."""
    head_dim = dim // heads
    block = (tokens * dim * 3 * dim + 2 * heads * tokens * tokens * head_dim + tokens * dim * dim
             + 2 * tokens * dim * mlp)
    return patches * dim * 3 * 16 * 16 + depth * block + dim * classes


def efficientvit_macs(name: str, resolution: int) -> int:
    """Conv and linear MACs from forward hooks on the float model, plus Trio-ViT's linear attention per LiteMLA:
    KᵀV (d x d x N), Q·KV (N x d x d) and Q·Σk (N x d) for every head of every scale branch."""
    from timm.models.efficientvit_mit import LiteMLA

    model, shape = zoo.build(name, resolution, 1, device="meta")
    total = 0

    def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            total += output.numel() * module.in_channels // module.groups * math.prod(module.kernel_size)
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features
        elif isinstance(module, LiteMLA):
            _, _, h, w = inputs[0].shape
            heads = module.qkv.conv.out_channels // (3 * module.dim)
            total += (1 + len(module.aggreg)) * heads * h * w * module.dim * (2 * module.dim + 1)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, LiteMLA))]
    with torch.no_grad():
        model(torch.empty(shape, device="meta"))
    for h in handles:
        h.remove()
    return total


def test_deit_small_macs_equal_the_count_from_shapes() -> None:
    w = trace_model("deit_small", quant=QuantConfig("fqvit"))
    expected = deit_macs(tokens=197, dim=384, heads=6, depth=12, patches=196, mlp=1536)
    assert w.total_macs == expected
    assert w.total_macs == pytest.approx(4.6e9, rel=0.01)


def test_efficientvit_b1_macs_equal_the_count_from_shapes() -> None:
    w = trace_model("efficientvit_b1", quant=QuantConfig("trio"))
    assert w.total_macs == efficientvit_macs("efficientvit_b1", 224)
    assert w.total_macs == pytest.approx(0.52e9, rel=0.01)


# ---- saved models (--quantized) -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_deit_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deit_tiny prepared by fqvit and saved, with one layer switched to 4-bit weights (as a mixed-precision
    search would). Calibration does not change bits or scale kinds, so it is skipped."""
    from quantizer.io import save_quantized
    from quantizer.methods.base import get_method

    path = tmp_path_factory.mktemp("saved") / "deit_tiny_fqvit.pt"
    model, _ = zoo.build("deit_tiny", 224)
    cfg = QuantConfig(method="fqvit")
    get_method("fqvit").prepare(model, cfg)
    save_quantized(path, "deit_tiny", 224, cfg, model)
    payload = torch.load(path, weights_only=True)
    payload["quant_specs"]["blocks.0.mlp.fc1"]["weight_bits"] = 4
    torch.save(payload, path)
    return path


def test_saved_model_decides_the_per_layer_bits(saved_deit_tiny: Path) -> None:
    w = trace_model(None, quantized=str(saved_deit_tiny))
    assert w.meta["model"] == "deit_tiny" and w.meta["quant"]["source"] == "file"
    assert w.meta["quant"]["method"] == "fqvit"
    bits = {op.attrs["quant"]["module"]: w.tensors[op.weights[0]].bits
            for op in w.ops if op.kind in MAC_KINDS and op.weights}
    assert bits["blocks.0.mlp.fc1"] == 4
    assert {b for m, b in bits.items() if m != "blocks.0.mlp.fc1"} == {8}


def test_saved_model_for_another_model_or_resolution_is_refused(saved_deit_tiny: Path) -> None:
    with pytest.raises(UsageError, match="holds deit_tiny, not deit_small"):
        trace_model("deit_small", quantized=str(saved_deit_tiny), cache=False)
    with pytest.raises(UsageError, match="quantized at resolution 224, not 256"):
        trace_model("deit_tiny", resolution=256, quantized=str(saved_deit_tiny),
                    cache=False)


def test_a_file_that_is_not_a_saved_model_is_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pt"
    bogus.write_text("not a model")
    with pytest.raises(UsageError, match="not a quantized model saved by quantizer") as err:
        trace_model("deit_tiny", quantized=str(bogus))
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="no such file"):
        trace_model("deit_tiny", quantized=str(tmp_path / "missing.pt"))


def test_method_that_does_not_support_the_model_is_one_line() -> None:
    with pytest.raises(UsageError, match=r"method 'trio' does not support deit_small \(family vit; it supports "
                                         r"efficientvit\); methods for vit: fqvit"):
        trace_model("deit_small", quant=QuantConfig("trio"), cache=False)


def test_method_options_are_checked_by_the_method() -> None:
    with pytest.raises(UsageError, match="unknown trio option 'nope'"):
        trace_model("efficientvit_b1", quant=QuantConfig("trio", options={"nope": 1}), cache=False)


# ---- the cache -------------------------------------------------------------------------------------------------------
@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Records the model of every quantized trace that was really extracted (a miss of a fresh cache)."""
    monkeypatch.setenv("ARCHSIM_CACHE_DIR", str(tmp_path / "fresh-cache"))
    calls: list[str] = []
    real = zoo._trace_quantized

    def spy(spec, *args, **kwargs):
        calls.append(spec.name)
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(zoo, "_trace_quantized", spy)
    return calls


def test_cache_is_keyed_on_method_bits_options_and_quantizer_code(traced: list[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    base = QuantConfig("trio", w_bits=8)
    first = trace_model("efficientvit_b1", quant=base)
    assert trace_model("efficientvit_b1", quant=base).to_dict() == first.to_dict()
    assert len(traced) == 1
    for other in (QuantConfig("trio", w_bits=4), QuantConfig("trio", a_bits=6),
                  QuantConfig("trio", options={"migration": False})):
        trace_model("efficientvit_b1", quant=other)
    assert len(traced) == 4
    float_trace = trace_model("efficientvit_b1")
    assert "quant" not in float_trace.meta and len(traced) == 4
    monkeypatch.setattr(zoo, "_quantizer_digest", lambda: "changed-quantizer")
    trace_model("efficientvit_b1", quant=base)
    assert len(traced) == 5


def test_cache_is_keyed_on_the_saved_file_content(saved_deit_tiny: Path, tmp_path: Path,
                                                  traced: list[str]) -> None:
    copy = tmp_path / "model.pt"
    copy.write_bytes(saved_deit_tiny.read_bytes())
    trace_model(None, quantized=str(copy))
    trace_model(None, quantized=str(copy))
    assert len(traced) == 1
    payload = torch.load(copy, weights_only=True)
    payload["quant_specs"]["blocks.0.mlp.fc1"]["weight_bits"] = 8
    torch.save(payload, copy)
    w = trace_model(None, quantized=copy)
    assert len(traced) == 2
    assert w.tensors["blocks.0.mlp.fc1.weight"].bits == 8


# ---- coverage: every zoo model traces and maps without an unmodelled op --------------------------------------------
def resolutions(model: str) -> list[int]:
    return [224] if model.startswith("swin") else [224, 256, 288]


def assert_fully_modelled(w: Workload, config: Path) -> None:
    """Every op kind of the trace has a lowering and an engine: no ``other`` op, nothing skipped as unmodelled."""
    kinds = w.op_kinds()
    assert "other" not in kinds, f"{w.name}: ops without a lowering in {kinds}"
    graph = build_taskgraph(w, load_config(config))  # raises MappingError naming any op with no engine
    unmodelled = [s.op.name for s in graph.skipped if s.status == "unmodelled"]
    assert not unmodelled, f"{w.name} ({kinds}): unmodelled {unmodelled[:5]}"


FAST = [("deit_tiny", 224, 1), ("swin_tiny", 224, 1), ("efficientvit_b1", 256, 8)]


@pytest.mark.parametrize("model, resolution, batch", FAST)
def test_representative_models_trace_and_simulate_fully_modelled(model: str, resolution: int, batch: int) -> None:
    w = trace_model(model, resolution=resolution, batch=batch, quant=default_request(model, ptf=True, lis=True)
                    if not model.startswith("efficientvit") else default_request(model))
    config = TRIO if model.startswith("efficientvit") else GENERIC
    assert_fully_modelled(w, config)
    result = simulate(load_config(config), w)
    assert result.unmodelled_ops == () and result.total_macs == w.total_macs


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(m for m in list_models() if zoo.model_spec(m).origin == "quantizer.zoo"))
def test_every_zoo_model_at_every_resolution_and_batch_is_fully_modelled(model: str) -> None:
    """Every built-in model (a plugin's model, e.g. the example plugin's GLU ViT, need not suit fqvit or trio)."""
    for resolution in resolutions(model):
        for batch in (1, 8):
            w = trace_model(model, resolution=resolution, batch=batch, quant=default_request(model))
            assert w.meta["resolution"] == resolution and w.meta["batch"] == batch
            assert_fully_modelled(w, GENERIC)
            if model.startswith("efficientvit"):
                assert_fully_modelled(w, TRIO)
    w = trace_model(model, quant=default_request(model))
    result = simulate(load_config(TRIO if model.startswith("efficientvit") else GENERIC), w)
    assert result.unmodelled_ops == ()


@needs_p2vit
def test_mixed_precision_without_a_saved_model_takes_the_searched_specs(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys) -> None:
    """The search itself is the quantizer's (slow); here it is replaced by its result: one layer at 4 bits."""
    from archsim.workloads import bridge, quantized

    def searched(method, cfg, name, resolution, checkpoint, progress):  # noqa: ANN001 - the patched signature
        progress("searching (stub)")
        model, _ = zoo.build(name, resolution)
        method.prepare(model, cfg)
        specs = bridge.collect_specs(model)
        specs["blocks.0.mlp.fc1"] = {**specs["blocks.0.mlp.fc1"], "weight_bits": 4}
        return specs

    monkeypatch.setattr(quantized, "_calibrated_specs", searched)
    w = trace_model("deit_tiny", quant=QuantConfig("p2vit", mixed=True), cache=False)
    assert capsys.readouterr().err == "archsim: searching (stub)\n"
    assert w.meta["quant"]["source"] == "calibrated" and w.meta["quant"]["mixed"] is True
    fc1 = next(op for op in w.ops if op.attrs.get("quant", {}).get("module") == "blocks.0.mlp.fc1")
    assert fc1.attrs["quant"]["mixed"] is True and w.tensors[fc1.weights[0]].bits == 4
