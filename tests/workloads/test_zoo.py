"""Model zoo tests: registry, resolutions, MAC totals against the research tables, batching, checkpoints."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from archsim.errors import UsageError
from archsim.workloads import zoo
from archsim.workloads.ir import Op, Tensor, make_workload
from archsim.workloads.zoo import build, list_models, load_checkpoint, register_model, trace_model

BUILT_IN = [
    "deit_base", "deit_small", "deit_tiny", "efficientvit_b1", "efficientvit_b2", "efficientvit_b3",
    "swin_base", "swin_small", "swin_tiny", "vit_base", "vit_large",
]
HEAVY = {"deit_base", "vit_base", "vit_large", "swin_base"}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's ~/.cache from tests."""
    monkeypatch.setenv("ARCHSIM_CACHE_DIR", str(tmp_path / "cache"))


class Tiny(nn.Module):
    """A small model for checkpoint tests."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


@pytest.fixture
def tiny_model(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register ``tiny`` for the duration of one test (the registry is the quantizer's zoo)."""
    import quantizer.zoo

    monkeypatch.setattr(quantizer.zoo, "_MODELS", dict(quantizer.zoo._MODELS))
    register_model("tiny", default_resolution=8, multiple_of=4)(lambda r, b: (Tiny(), (b, 3, r, r)))
    return "tiny"


def rel_err(value: float, reference: float) -> float:
    return abs(value - reference) / reference


# ---- registry --------------------------------------------------------------------------------------------------
def test_list_models_has_every_built_in() -> None:
    assert set(BUILT_IN) <= set(list_models())
    assert list_models() == sorted(list_models())


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match=r"unknown model 'resnet50' \(known: .*deit_small"):
        trace_model("resnet50")
    with pytest.raises(UsageError, match="unknown model"):
        build("nope")


def test_models_know_where_they_came_from(tiny_model: str) -> None:
    """``archsim list models`` shows each model's origin: the built-ins are the quantizer zoo's, others their
    registering module's."""
    assert zoo.model_spec("deit_tiny").origin == "quantizer.zoo"
    assert zoo.model_spec(tiny_model).origin == __name__


def test_duplicate_registration_is_refused(tiny_model: str) -> None:
    with pytest.raises(UsageError, match="already registered"):
        register_model(tiny_model)(lambda r, b: (Tiny(), (b, 3, r, r)))


def test_a_builder_may_return_a_workload(tiny_model: str) -> None:
    w = make_workload("hand", [Tensor("x", (1, 4)), Tensor("y", (1, 4))],
                      [Op(name="relu", kind="activation", inputs=("x",), output="y", attrs={"fn": "relu"})])
    register_model("hand")(lambda r, b: w)
    assert trace_model("hand", cache=False) is w


# ---- resolutions and arguments ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "resolution", "needle"),
    [
        ("swin_tiny", 256, "multiple of 224"),
        ("deit_small", 225, "multiple of 16"),
        ("efficientvit_b1", 240, "multiple of 32"),
        ("efficientvit_b1", 0, "positive integer"),
        ("deit_small", "224", "positive integer"),
    ],
)
def test_unsupported_resolution_is_a_usage_error(name: str, resolution: object, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        trace_model(name, resolution)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"batch": 0}, "batch"), ({"act_bits": 0}, "act_bits"), ({"weight_bits": 64}, "weight_bits"),
     ({"bias_bits": True}, "bias_bits"),
     ({"scale_kind": "fp"}, "scale_kind"), ({"checkpoint": "/no/such/file.pt"}, "no such file")],
)
def test_bad_trace_arguments(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        trace_model("deit_tiny", **kwargs)  # type: ignore[arg-type]


# ---- MAC totals against the EfficientViT and DeiT papers --------------------------------------------------------
def test_efficientvit_b1_macs_match_the_table() -> None:
    w = trace_model("efficientvit_b1", cache=False)
    assert rel_err(w.total_macs, 0.519e9) < 0.01
    head = sum(op.macs for op in w.ops if op.scope.startswith("head"))
    assert rel_err(head, 23.3e6) < 0.01  # 1x1 conv 256->1536 and both Linear layers
    kinds = w.op_kinds()
    assert kinds["divide"] == 7 and kinds["matmul"] == 14 and "softmax" not in kinds  # 7 LiteMSA blocks
    assert kinds["layernorm"] == 1  # the one LayerNorm sits in the classifier head
    assert (w.meta["model"], w.meta["resolution"], w.meta["batch"], w.meta["weights"]) == (
        "efficientvit_b1", 224, 1, "random")


@pytest.mark.parametrize(("resolution", "gmacs"), [(256, 0.677), (288, 0.856)])
def test_efficientvit_b1_other_resolutions(resolution: int, gmacs: float) -> None:
    w = trace_model("efficientvit_b1", resolution, cache=False)
    assert rel_err(w.total_macs, gmacs * 1e9) < 0.01
    assert w.tensors["input"].shape == (1, 3, resolution, resolution)


def test_deit_small_macs_match_the_table() -> None:
    w = trace_model("deit_small", cache=False)
    assert rel_err(w.total_macs, 4.599e9) < 0.01
    matmul = sum(op.macs for op in w.ops if op.kind == "matmul")
    assert rel_err(matmul, 357.7e6) < 0.01  # Q·Kᵀ and A·V, 2·N²·D per block
    kinds = w.op_kinds()
    assert (kinds["linear"], kinds["matmul"], kinds["softmax"], kinds["layernorm"]) == (49, 24, 12, 25)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in BUILT_IN]
)
def test_every_model_traces_at_its_default_resolution_without_other_ops(name: str) -> None:
    w = trace_model(name, cache=False)
    assert "other" not in w.op_kinds()
    assert w.total_macs > 0 and w.tensors["input"].shape == (1, 3, 224, 224)
    assert all(op.scale_kind == "none" for op in w.ops)


# ---- batching --------------------------------------------------------------------------------------------------
def test_batch_scales_activations_and_macs_but_not_weights() -> None:
    one = trace_model("deit_tiny", batch=1, cache=False)
    eight = trace_model("deit_tiny", batch=8, scale_kind="pot", cache=False)
    assert [op.name for op in one.ops] == [op.name for op in eight.ops]
    assert eight.total_macs == 8 * one.total_macs
    for a, b in zip(one.ops, eight.ops):
        assert b.macs == 8 * a.macs
        assert eight.tensors[b.output].numel == 8 * one.tensors[a.output].numel
        assert a.weights == b.weights
        assert b.scale_kind == ("pot" if b.kind in ("linear", "matmul", "conv2d") else "none")
    weights = {n: t for n, t in one.tensors.items() if t.is_weight}
    assert {t.bits for n, t in weights.items() if n.endswith("bias")} == {32}
    assert weights == {n: t for n, t in eight.tensors.items() if t.is_weight}
    assert eight.meta["batch"] == 8


# ---- checkpoints -----------------------------------------------------------------------------------------------
def test_checkpoint_loads_and_traces_like_the_meta_model(tiny_model: str, tmp_path: Path) -> None:
    path = tmp_path / "tiny.pt"
    torch.manual_seed(1)
    torch.save({"model": Tiny().state_dict()}, path)
    with_ckpt = trace_model(tiny_model, checkpoint=path, cache=False)
    random = trace_model(tiny_model, cache=False)
    assert with_ckpt.ops == random.ops and with_ckpt.tensors == random.tensors
    assert with_ckpt.meta["weights"] == str(path.resolve()) and random.meta["weights"] == "random"


def test_bit_widths_reach_the_tensors() -> None:
    w = trace_model("efficientvit_b1", act_bits=6, weight_bits=4, bias_bits=16, cache=False)
    conv = w.ops[0]
    assert w.tensors[conv.output].bits == 6 and w.tensors[conv.weights[0]].bits == 4
    assert {w.tensors[n].bits for n in w.ops[1].weights} == {16}  # batch-norm tensors
    assert (w.meta["act_bits"], w.meta["weight_bits"], w.meta["bias_bits"]) == (6, 4, 16)


def test_checkpoint_values_really_load(tmp_path: Path) -> None:
    source = Tiny()
    path = tmp_path / "plain.pt"
    torch.save({"state_dict": source.state_dict()}, path)
    target = Tiny()
    load_checkpoint(target, path)
    assert torch.equal(target.conv.weight, source.conv.weight)


def test_corrupted_checkpoint_names_the_bad_keys(tiny_model: str, tmp_path: Path) -> None:
    state = Tiny().state_dict()
    state["fc.weights"] = state.pop("fc.weight")  # renamed key
    state["conv.bias"] = torch.zeros(5)  # wrong shape
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(UsageError) as info:
        trace_model(tiny_model, checkpoint=path, cache=False)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "missing keys: fc.weight" in message
    assert "unexpected keys: fc.weights" in message
    assert "mis-shaped keys: conv.bias (file [5], model [4])" in message


def test_unreadable_checkpoint_is_a_usage_error(tiny_model: str, tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="cannot load"):
        trace_model(tiny_model, checkpoint=path, cache=False)
    torch.save([1, 2, 3], path)
    with pytest.raises(UsageError, match="expected a state dict"):
        trace_model(tiny_model, checkpoint=path, cache=False)


def test_checkpoint_of_a_real_zoo_model(tmp_path: Path) -> None:
    module, _ = build("deit_tiny")
    path = tmp_path / "deit_tiny.pth"
    torch.save({"model": module.state_dict()}, path)
    w = trace_model("deit_tiny", checkpoint=path, cache=False)
    assert w.ops == trace_model("deit_tiny", cache=False).ops
    with pytest.raises(UsageError, match="mis-shaped keys: pos_embed"):
        trace_model("deit_tiny", 256, checkpoint=path, cache=False)
