"""Unit tests of the PyTorch trace front end on tiny hand-made modules."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archsim.errors import UsageError
from archsim.workloads import extract as extract_mod
from archsim.workloads.extract import LOWERINGS, extract, register_lowering
from archsim.workloads.ir import Workload


# ---- helpers ---------------------------------------------------------------------------------------------------
def by_name(w: Workload) -> dict[str, object]:
    return {op.name: op for op in w.ops}


def shape(w: Workload, tensor: str) -> tuple[int, ...]:
    return w.tensors[tensor].shape


def assert_topological(w: Workload) -> None:
    """Every input is a graph input or written by an earlier op; every tensor is written once."""
    written: set[str] = set()
    graph_inputs = set(w.graph_inputs())
    for op in w.ops:
        for t in op.inputs:
            assert t in written or t in graph_inputs, (op.name, t)
        assert op.output not in written
        written.add(op.output)


# ---- modules ---------------------------------------------------------------------------------------------------
class ConvBnRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DwPw(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False)
        self.pw = nn.Conv2d(8, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class TinyAttention(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 2, masked: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.masked = masked
        self.register_buffer("mask", torch.zeros(10, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask if self.masked else None)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Net(nn.Module):
    """A block nested in a container, for scope paths."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.Sequential(nn.Sequential(ConvBnRelu()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.act = nn.Hardswish(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        flat = y.view(-1)  # an alias taken before the in-place writes
        y = self.act(y)
        y.add_(1.0)
        return flat * 2.0


class Unknown(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x, dim=1) + x


# ---- conv / bn / relu ------------------------------------------------------------------------------------------
def test_conv_bn_relu_ops_shapes_macs_and_weights() -> None:
    w = extract(ConvBnRelu().eval(), torch.randn(2, 3, 16, 16), name="cbr")
    assert [op.kind for op in w.ops] == ["conv2d", "batchnorm", "activation"]
    conv, bn, act = w.ops
    assert conv.name == "conv.convolution" and conv.scope == "conv" and conv.source == "aten.convolution"
    assert conv.inputs == ("input",) and conv.weights == ("conv.weight",)
    assert dict(conv.attrs)["kernel"] == (3, 3)
    assert (conv.attrs["stride"], conv.attrs["padding"], conv.attrs["dilation"]) == ((1, 1), (1, 1), (1, 1))
    assert conv.attrs["groups"] == 1
    assert conv.macs == 2 * 8 * 16 * 16 * 3 * 3 * 3
    assert shape(w, conv.output) == (2, 8, 16, 16)
    assert bn.inputs == (conv.output,) and bn.scope == "bn" and bn.macs == 0
    assert bn.weights == ("bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")
    assert act.fn == "relu" and act.inputs == (bn.output,) and act.scope == "act"
    assert w.total_macs == conv.macs
    assert shape(w, "input") == (2, 3, 16, 16)
    assert_topological(w)


def test_bits_weights_biases_and_batchnorm() -> None:
    w = extract(ConvBnRelu().eval(), torch.randn(1, 3, 8, 8), name="cbr", act_bits=6, weight_bits=4, bias_bits=16)
    t = w.tensors
    assert t["conv.weight"].is_weight and t["conv.weight"].bits == 4 and t["conv.weight"].shape == (8, 3, 3, 3)
    for stat in ("bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
        assert t[stat].is_weight and t[stat].bits == 16
    assert "bn.num_batches_tracked" not in t  # unused buffers are pruned
    assert not t["input"].is_weight and t["input"].bits == 6
    assert all(t[op.output].bits == 6 and not t[op.output].is_weight for op in w.ops)


def test_scope_is_the_dotted_module_path() -> None:
    w = extract(Net().eval(), torch.randn(1, 3, 8, 8), name="net")
    assert [op.scope for op in w.ops] == ["stages.0.0.conv", "stages.0.0.bn", "stages.0.0.act"]
    assert w.ops[0].name == "stages.0.0.conv.convolution"


def test_depthwise_and_pointwise() -> None:
    w = extract(DwPw().eval(), torch.randn(1, 8, 16, 16), name="dwpw")
    dw, pw = w.ops
    assert (dw.kind, pw.kind) == ("conv2d", "conv2d")
    assert dw.attrs["groups"] == 8 and dw.attrs["stride"] == (2, 2) and dw.attrs["kernel"] == (3, 3)
    assert shape(w, dw.output) == (1, 8, 8, 8)
    assert dw.macs == 8 * 8 * 8 * 9
    assert pw.macs == 16 * 8 * 8 * 8 and pw.attrs["kernel"] == (1, 1)
    assert pw.weights == ("pw.weight", "pw.bias")
    assert w.tensors["pw.bias"].bits == 32 and w.tensors["pw.weight"].bits == 8


# ---- attention -------------------------------------------------------------------------------------------------
def test_sdpa_lowers_to_three_ops_with_aliased_qkv() -> None:
    w = extract(TinyAttention().eval(), torch.randn(1, 10, 16), name="attn", scale_kind="pot")
    assert [op.kind for op in w.ops] == ["linear", "matmul", "softmax", "matmul", "linear"]
    qkv, qk, sm, av, proj = w.ops
    assert qkv.weights == ("qkv.weight", "qkv.bias") and qkv.macs == 10 * 48 * 16
    # q, k, v are views of the qkv output: no ops, same IR tensor
    assert qk.inputs == (qkv.output, qkv.output) and av.inputs == (sm.output, qkv.output)
    assert qk.attrs["in_shapes"] == ((1, 2, 10, 8), (1, 2, 8, 10))
    assert shape(w, qk.output) == (1, 2, 10, 10) and qk.macs == 2 * 10 * 10 * 8
    assert shape(w, sm.output) == (1, 2, 10, 10) and sm.inputs == (qk.output,)
    assert shape(w, av.output) == (1, 2, 10, 8) and av.macs == 2 * 10 * 8 * 10
    assert proj.inputs == (av.output,)  # transpose + reshape of the attention output is free
    assert {op.source for op in (qk, sm, av)} == {"aten.scaled_dot_product_attention"}
    assert [op.scale_kind for op in w.ops] == ["pot", "pot", "none", "pot", "pot"]
    assert qk.scope == "" and qkv.scope == "qkv"
    assert_topological(w)


def test_sdpa_with_mask_adds_a_mask_op() -> None:
    w = extract(TinyAttention(masked=True).eval(), torch.randn(1, 10, 16), name="attn")
    kinds = [op.kind for op in w.ops]
    assert kinds == ["linear", "matmul", "eltwise", "softmax", "matmul", "linear"]
    mask_op = w.ops[2]
    assert mask_op.weights == ("mask",) and mask_op.fn == "add"


def test_meta_and_cpu_traces_are_identical() -> None:
    torch.manual_seed(0)
    cpu = extract(TinyAttention().eval(), torch.randn(2, 10, 16), name="attn")
    with torch.device("meta"):
        module = TinyAttention().eval()
    meta = extract(module, torch.empty(2, 10, 16, device="meta"), name="attn")
    assert cpu.ops == meta.ops
    assert cpu.tensors == meta.tensors


def test_matmul_between_activations() -> None:
    class Mm(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a @ b.transpose(-1, -2)

    w = extract(Mm(), (torch.randn(3, 5, 4), torch.randn(3, 6, 4)), name="mm")
    (op,) = w.ops
    assert op.kind == "matmul" and op.inputs == ("input0", "input1") and op.macs == 3 * 5 * 6 * 4
    assert shape(w, op.output) == (3, 5, 6)


# ---- views, in-place, unknown ops ------------------------------------------------------------------------------
def test_views_create_no_ops_and_alias_their_input() -> None:
    class Views(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(12, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(x)
            y = y.permute(0, 2, 1).unsqueeze(1).squeeze(1)[:, 1].t().t().unsqueeze(0).expand(3, 2, 12)
            return self.fc(y[0])

    w = extract(Views(), torch.randn(2, 12, 3), name="views")
    assert [op.kind for op in w.ops] == ["activation", "linear"]
    relu, fc = w.ops
    assert fc.inputs == (relu.output,)  # the chain of views maps to the relu output
    assert fc.attrs["in_shapes"] == ((2, 12),)
    assert fc.macs == 2 * 5 * 12 and shape(w, fc.output) == (2, 5)


def test_inplace_ops_write_new_versions_and_repoint_aliases() -> None:
    w = extract(InPlace().eval(), torch.randn(1, 3, 4, 4), name="inplace")
    conv, hsw, add, mul = w.ops
    assert (hsw.kind, hsw.fn, hsw.source) == ("activation", "hardswish", "aten.hardswish_")
    assert hsw.inputs == (conv.output,) and hsw.output != conv.output
    assert (add.kind, add.fn, add.inputs) == ("eltwise", "add", (hsw.output,))
    assert add.attrs["scalar"] == 1.0
    # `flat` was a view taken before both in-place writes: it now reads the latest version
    assert mul.inputs == (add.output,) and mul.fn == "mul"
    assert len({op.output for op in w.ops}) == 4


def test_unknown_aten_op_becomes_other() -> None:
    w = extract(Unknown(), torch.randn(2, 5), name="unknown")
    other, add = w.ops
    assert other.kind == "other" and other.attrs["aten"] == "aten.cumsum" and other.inputs == ("input",)
    assert add.inputs == (other.output, "input")


def test_register_lowering_is_the_extension_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(LOWERINGS, "cumsum", extract_mod._lower_other)  # restored (removed) after the test

    @register_lowering("cumsum")
    def lower_cumsum(ctx: extract_mod.TraceContext, call: extract_mod.AtenCall) -> None:
        acts, weights = ctx.operands(call.args[0])
        ctx.emit(call, "reduce", acts, call.out, weights=weights, attrs={"fn": "cumsum"})

    w = extract(Unknown(), torch.randn(2, 5), name="unknown")
    assert (w.ops[0].kind, w.ops[0].fn) == ("reduce", "cumsum")
    with pytest.raises(UsageError):
        register_lowering()


def test_a_bug_in_a_lowering_is_not_reported_as_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ctx: extract_mod.TraceContext, call: extract_mod.AtenCall) -> None:
        raise ZeroDivisionError("lowering bug")

    monkeypatch.setitem(LOWERINGS, "relu", broken)
    with pytest.raises(ZeroDivisionError):
        extract(ConvBnRelu().eval(), torch.randn(1, 3, 4, 4), name="cbr")


# ---- weights, constants, arithmetic ----------------------------------------------------------------------------
def test_parameter_only_computation_is_folded_into_a_derived_weight() -> None:
    class Bias(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Parameter(torch.randn(7, 2))
            self.register_buffer("idx", torch.randint(0, 7, (9,)))
            self.pos = nn.Parameter(torch.randn(1, 9, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            bias = self.table[self.idx].unsqueeze(0).contiguous()
            return x + self.pos + bias

    w = extract(Bias(), torch.randn(1, 9, 2), name="bias")
    assert [op.kind for op in w.ops] == ["eltwise", "eltwise"]
    first, second = w.ops
    assert first.weights == ("pos",) and first.inputs == ("input",)
    (derived,) = second.weights
    assert derived == "table@index" and w.tensors[derived].is_weight and w.tensors[derived].shape == (9, 2)
    assert "idx" not in w.tensors


def test_divide_between_activations_and_by_scalar() -> None:
    class Div(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            num = torch.relu(x)
            den = num[..., -1:] + 1e-5
            return (num[..., :-1] / den) / 2

    w = extract(Div(), torch.randn(2, 4, 5), name="div")
    relu, add, divide, half = w.ops
    assert (add.kind, add.fn, add.attrs["scalar"]) == ("eltwise", "add", 1e-5)
    assert divide.kind == "divide" and divide.inputs == (relu.output, add.output)
    assert shape(w, divide.output) == (2, 4, 4)
    assert (half.kind, half.fn, half.attrs["scalar"]) == ("eltwise", "div", 2)


def test_pool_reduce_data_movement_and_softmax() -> None:
    class Misc(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = F.avg_pool2d(x, 2)
            b = F.max_pool2d(x, 2)
            c = torch.cat([a, b], dim=1)
            d = F.pad(c, (1, 1, 1, 1))
            e = torch.roll(d, 1, dims=2).mean(dim=(2, 3))
            return torch.softmax(e, dim=-1) + F.adaptive_avg_pool2d(x, 2).sum()

    w = extract(Misc(), torch.randn(1, 3, 8, 8), name="misc")
    kinds = [(op.kind, op.fn or op.attrs.get("dim")) for op in w.ops]
    assert kinds[:6] == [("pool", "avg"), ("pool", "max"), ("data_movement", "cat"),
                         ("data_movement", "constant_pad_nd"), ("data_movement", "roll"), ("reduce", "mean")]
    assert w.ops[0].attrs["kernel"] == (2, 2) and w.ops[0].attrs["stride"] == (2, 2)
    assert w.ops[5].attrs["dims"] == (2, 3)
    assert {op.kind for op in w.ops[6:]} <= {"softmax", "pool", "reduce", "eltwise"}
    assert "other" not in w.op_kinds()


def test_bias_add_after_mm_is_folded_into_the_linear() -> None:
    class Strided(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.transpose(0, 1))  # non-contiguous 3-d input: PyTorch copies, runs mm, adds the bias

    w = extract(Strided(), torch.randn(3, 2, 4), name="strided")
    copy, fc = w.ops
    assert copy.kind == "data_movement" and fc.inputs == (copy.output,)
    assert fc.kind == "linear" and fc.weights == ("fc.weight", "fc.bias") and fc.macs == 2 * 3 * 6 * 4


def test_op_names_are_unique_with_numbered_repeats() -> None:
    class Twice(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(torch.relu(x) + 1)

    w = extract(Twice(), torch.randn(2, 2), name="twice")
    assert [op.name for op in w.ops] == ["relu", "add", "relu#1"]


# ---- provenance and errors -------------------------------------------------------------------------------------
def test_meta_has_provenance_and_caller_overrides() -> None:
    w = extract(DwPw().eval(), torch.randn(4, 8, 16, 16), name="dwpw", act_bits=6, scale_kind="log2",
                meta={"weights": "random", "model": "custom"})
    m = w.meta
    assert (m["model"], m["resolution"], m["batch"], m["act_bits"], m["weight_bits"]) == ("custom", 16, 4, 6, 8)
    assert (m["scale_kind"], m["weights"]) == ("log2", "random")
    assert m["torch"] and m["timm"] and m["archsim"]


def test_round_trip_through_json_is_lossless() -> None:
    w = extract(TinyAttention().eval(), torch.randn(1, 10, 16), name="attn")
    back = Workload.from_dict(w.to_dict())
    assert back.ops == w.ops and back.tensors == w.tensors


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"act_bits": 0}, "act_bits"),
        ({"weight_bits": 33}, "weight_bits"),
        ({"bias_bits": 8.0}, "bias_bits"),
        ({"scale_kind": "exp"}, "scale_kind"),
    ],
)
def test_bad_arguments_raise_usage_error(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        extract(DwPw(), torch.randn(1, 8, 4, 4), name="x", **kwargs)  # type: ignore[arg-type]


def test_bad_input_and_failing_forward_raise_usage_error() -> None:
    with pytest.raises(UsageError, match="example_input"):
        extract(DwPw(), "not a tensor", name="x")
    with pytest.raises(UsageError, match="module"):
        extract(lambda x: x, torch.randn(1), name="x")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="forward pass failed"):
        extract(DwPw(), torch.randn(1, 3, 4, 4), name="x")


def test_hooks_are_removed_after_tracing() -> None:
    module = ConvBnRelu()
    extract(module.eval(), torch.randn(1, 3, 4, 4), name="cbr")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())
    with torch.no_grad():
        assert math.isfinite(float(module(torch.randn(1, 3, 4, 4)).sum()))
