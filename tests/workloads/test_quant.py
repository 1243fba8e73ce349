"""Quantization facts applied to a trace (torch-free): spec lookup, bits, scale kinds, folding, the log2 divisor,
and what the simulator charges for them."""
from __future__ import annotations

import pytest

from archsim import simulate
from archsim.errors import UsageError
from archsim.mapping.assign import op_classes
from archsim.mapping.schedule import build_taskgraph
from archsim.workloads.ir import Op, Tensor, Workload, make_workload
from archsim.workloads.macs import count_macs
from archsim.workloads.bridge import QuantConfig, quant_config
from archsim.workloads.quant import apply_specs, owner_of, with_scale_kind
from helpers import GENERIC, P2VIT, P2VIT_FP, TRIO, mlp


def spec(kind: str, *, act: int = 8, out: int = 8, w: int | None = None, scale: str = "float",
         **extra: object) -> dict:
    return {"kind": kind, "act_bits": act, "out_bits": out, "weight_bits": w, "scale_kind": scale, "extra": extra}


MLP_SPECS = {"fc1": spec("linear", w=4), "fc2": spec("linear", w=8, scale="pot")}


def test_owner_is_the_deepest_enclosing_quantized_module() -> None:
    specs = {"blocks.0.attn": spec("act"), "blocks.0.attn.qkv": spec("linear", w=8)}
    assert owner_of("blocks.0.attn.qkv", specs) == "blocks.0.attn.qkv"
    assert owner_of("blocks.0.attn.softmax", specs) == "blocks.0.attn"
    assert owner_of("blocks.1.mlp", specs) is None


def test_mac_ops_get_weight_bits_scale_kind_and_requant_facts() -> None:
    w = apply_specs(mlp(), MLP_SPECS, QuantConfig("fqvit", w_bits=4))
    fc1, fc2 = (next(op for op in w.ops if op.name == n) for n in ("fc1", "fc2"))
    assert w.tensors["fc1.weight"].bits == 4 and w.tensors["fc2.weight"].bits == 8
    assert w.tensors["fc1.weight"].nbytes * 2 == mlp().tensors["fc1.weight"].nbytes
    assert (fc1.scale_kind, fc2.scale_kind) == ("float", "pot")
    assert fc1.attrs["quant"]["requant"] == "after" and fc1.attrs["quant"]["requant_mode"] == "multiply"
    assert fc2.attrs["quant"]["requant_mode"] == "shift"
    assert w.meta["scale_kind"] == "mixed" and w.meta["weight_bits"] == 4


def test_unquantized_ops_are_untouched() -> None:
    w = apply_specs(mlp(), {}, QuantConfig("fqvit"))
    assert [op.to_dict() for op in w.ops] == [op.to_dict() for op in mlp().ops]


def _attention_like() -> Workload:
    """q @ k -> * 0.125 -> softmax -> @ v: the scalar rescale of a MAC result folds into its re-quantization."""
    q, k, v = Tensor("q", (1, 4, 8)), Tensor("k", (1, 8, 4)), Tensor("v", (1, 4, 8))
    s, sm, p, o = Tensor("qk", (1, 4, 4)), Tensor("scaled", (1, 4, 4)), Tensor("p", (1, 4, 4)), Tensor("o", (1, 4, 8))
    ops = [
        Op("qk", "matmul", ("q", "k"), "qk", macs=count_macs("matmul", [q.shape], None, s.shape), scope="attn.mm1"),
        Op("scaled", "eltwise", ("qk",), "scaled", attrs={"fn": "mul", "scalar": 0.125}, scope="attn"),
        Op("p", "softmax", ("scaled",), "p", scope="attn.softmax"),
        Op("o", "matmul", ("p", "v"), "o", macs=count_macs("matmul", [p.shape], None, o.shape), scope="attn.mm2"),
    ]
    return make_workload("attn", [q, k, v, s, sm, p, o], ops)


def test_scalar_rescale_folds_and_lis_softmax_is_4_bit_log2() -> None:
    specs = {"attn.mm1": spec("matmul"), "attn.softmax": spec("softmax", out=4, scale="log2", softmax="lis"),
             "attn.mm2": spec("matmul", lhs_bits=4)}
    w = apply_specs(_attention_like(), specs, QuantConfig("fqvit", lis=True))
    assert [op.name for op in w.ops] == ["qk", "p", "o"]
    assert w.meta["folded_ops"] == 1
    ops = {op.name: op for op in w.ops}
    assert ops["p"].inputs == ("qk",)
    assert ops["qk"].attrs["quant"]["folded"] == ("mul by 0.125",)
    assert ops["p"].attrs["quant"]["impl"] == "lis" and w.tensors["p"].bits == 4
    assert ops["o"].attrs["quant"]["in_bits"] == (4, 8)
    assert op_classes(ops["p"], w.tensors) == ["softmax_lis", "softmax"]


def test_int2n_softmax_reads_the_accumulator_and_writes_log2_codes() -> None:
    """PackQViT: q·kᵀ stays at 32 bits, Int-2^n-Softmax writes 4-bit log2 codes that attn·v reads."""
    specs = {"attn.mm1": spec("matmul", out=32), "attn.mm2": spec("matmul", lhs_bits=4),
             "attn.softmax": spec("softmax", act=32, out=4, scale="log2", softmax="int2n", output="log2")}
    w = apply_specs(_attention_like(), specs, QuantConfig("packqvit"))
    ops = {op.name: op for op in w.ops}
    assert ops["qk"].attrs["quant"]["requant"] == "none" and w.tensors["qk"].bits == 32
    facts = ops["p"].attrs["quant"]
    assert (facts["impl"], facts["scale_kind"], facts["requant"]) == ("int2n", "log2", "folded")
    assert w.tensors["p"].bits == 4
    assert op_classes(ops["p"], w.tensors) == ["softmax_int2n", "softmax"]
    uniform = dict(specs, **{"attn.softmax": spec("softmax", act=32, out=4, scale="pot", softmax="int2n",
                                                      output="uniform")})
    p = next(op for op in apply_specs(_attention_like(), uniform, QuantConfig("packqvit")).ops if op.name == "p")
    assert p.attrs["quant"]["scale_kind"] == "pot"


def test_integer_gelu_is_its_own_class() -> None:
    t = [Tensor("x", (1, 4, 8)), Tensor("fc1.weight", (16, 8), 8, True), Tensor("h", (1, 4, 16)),
         Tensor("g", (1, 4, 16))]
    ops = [Op("h", "linear", ("x",), "h", weights=("fc1.weight",), macs=4 * 8 * 16, scope="mlp.fc1"),
           Op("g", "activation", ("h",), "g", attrs={"fn": "gelu"}, scope="mlp.act.gelu")]
    specs = {"mlp.fc1": spec("linear", w=4, out=32), "mlp.act": spec("gelu", act=32, out=32, gelu="int")}
    w = apply_specs(make_workload("mlp", t, ops), specs, QuantConfig("packqvit"))
    g = next(op for op in w.ops if op.name == "g")
    assert g.attrs["quant"]["impl"] == "int" and op_classes(g, w.tensors) == ["gelu_int", "gelu", "activation"]


def _divisor_like() -> Workload:
    """num / (den + eps) inside a log2 divisor module, and x / mig before a conv-like linear."""
    t = [Tensor("num", (1, 16, 8)), Tensor("den", (1, 16, 1)), Tensor("d", (1, 16, 1)), Tensor("q", (1, 16, 8)),
         Tensor("mig", (8,), is_weight=True), Tensor("m", (1, 16, 8)), Tensor("fc.weight", (4, 8), 8, True),
         Tensor("fc", (1, 16, 4))]
    ops = [
        Op("div.add", "eltwise", ("den",), "div.add", attrs={"fn": "add", "scalar": 1e-15}, scope="attn.divide"),
        Op("div.div", "divide", ("num", "div.add"), "div.div", attrs={"fn": "div"}, scope="attn.divide"),
        Op("mig.div", "eltwise", ("div.div",), "mig.div", weights=("mig",), attrs={"fn": "div"}, scope="fc"),
        Op("fc", "linear", ("mig.div",), "fc", weights=("fc.weight",), scope="fc",
           macs=count_macs("linear", [(1, 16, 8)], (4, 8), (1, 16, 4))),
    ]
    renamed = {"d": "div.add", "q": "div.div", "m": "mig.div"}
    return make_workload("div", [Tensor(renamed.get(x.name, x.name), x.shape, x.bits, x.is_weight) for x in t], ops)


def test_log2_divisor_becomes_leading_one_and_shift_and_quantizer_transforms_fold() -> None:
    specs = {"attn.divide": spec("divisor", out=4, scale="log2", divisor="log2", exp_bits=4),
             "fc": spec("linear", w=8, out=32)}
    w = apply_specs(_divisor_like(), specs, QuantConfig("trio"), quant_buffers={"mig"})
    kinds = [(op.name, op.kind) for op in w.ops]
    assert kinds == [("attn.divide.log2", "log2"), ("div.div", "divide"), ("fc", "linear")]
    log2, div, fc = w.ops
    assert w.tensors[log2.output].bits == 4 and div.inputs == ("num", "attn.divide.log2")
    assert div.attrs["quant"]["impl"] == "shift" and op_classes(div, w.tensors) == ["divide_shift", "divide"]
    assert fc.inputs == ("div.div",) and fc.attrs["quant"]["folded_inputs"] == ("div by mig",)
    assert fc.attrs["quant"]["requant"] == "none" and w.tensors["fc"].bits == 32


def test_mac_op_left_at_accumulator_width_gets_no_requant_stage(generic_cfg) -> None:
    specs = {"fc1": spec("linear", w=8), "fc2": spec("linear", w=8, out=32)}
    graph = build_taskgraph(apply_specs(mlp(), specs, QuantConfig("fqvit")), generic_cfg)
    stages = {t.name: t.requant for t in graph.tasks}
    assert stages["fc1"] is not None and stages["fc2"] is None


def test_pot_vs_float_scales_change_requant_cost_and_nothing_else(generic_cfg) -> None:
    base = apply_specs(mlp(), {"fc1": spec("linear", w=8), "fc2": spec("linear", w=8)}, QuantConfig("fqvit"))
    runs = {kind: simulate(generic_cfg, with_scale_kind(base, kind)) for kind in ("float", "pot")}
    rows = {kind: {(r.op, r.kind): r for r in res.ops} for kind, res in runs.items()}
    assert rows["float"].keys() == rows["pot"].keys()
    requant = [key for key in rows["float"] if key[1] == "requant"]
    assert len(requant) == 2
    for key in requant:
        assert rows["pot"][key].energy_pj < rows["float"][key].energy_pj
    for key in rows["float"]:
        if key[1] != "requant":
            f, p = rows["float"][key], rows["pot"][key]
            assert (f.macs, f.dram_read_bytes, f.dram_write_bytes, f.energy_pj) == \
                (p.macs, p.dram_read_bytes, p.dram_write_bytes, p.energy_pj)
    assert runs["float"].energy_pj_by_op_kind["linear"] == runs["pot"].energy_pj_by_op_kind["linear"]
    assert runs["pot"].energy_pj_by_op_kind["requant"] < runs["float"].energy_pj_by_op_kind["requant"]


def test_w4_weights_halve_weight_traffic_and_mac_energy(generic_cfg) -> None:
    res = {}
    for bits in (8, 4):
        specs = {n: spec("linear", w=bits) for n in ("fc1", "fc2")}
        res[bits] = simulate(generic_cfg, apply_specs(mlp(), specs, QuantConfig("fqvit", w_bits=bits)))
    assert res[4].energy_pj_by_component["pe"] == pytest.approx(res[8].energy_pj_by_component["pe"] / 2)
    assert res[4].dram_read_bytes < res[8].dram_read_bytes


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "gptq"}, r"unknown quantization method 'gptq' \(known: fqvit, "),  # + installed plugins'
    ({"method": "fqvit", "w_bits": 1}, "w_bits must be an integer from 2 to 8, got 1"),
    ({"method": "fqvit", "a_bits": 16}, "a_bits must be an integer from 2 to 8, got 16"),
    ({"method": "fqvit", "observer": "max"}, "observer must be one of minmax, ema, percentile, omse, got 'max'"),
])
def test_bad_quant_configs_are_one_line_usage_errors(kwargs: dict, match: str) -> None:
    """The quantizer's record validates itself; through the bridge its errors are archsim's."""
    with pytest.raises(UsageError, match=match):
        quant_config(**kwargs)


def test_quant_config_describes_itself() -> None:
    assert QuantConfig("fqvit", w_bits=4, ptf=True, lis=True).describe() == "fqvit W4A8 (ptf, lis)"


def test_ptf_and_lis_default_to_the_methods_recipe() -> None:
    """As in ``quantizer eval``: P2-ViT's recipe includes PTF and LIS unless turned off; the others' does not."""
    p2 = QuantConfig("p2vit")
    assert (p2.ptf, p2.lis) == (True, True)
    assert (QuantConfig("fqvit").ptf, QuantConfig("fqvit").lis) == (False, False)
    assert QuantConfig("p2vit", lis=False).lis is False


def test_a_configs_quant_section_becomes_the_config_the_cli_makes() -> None:
    """The Python API gets from a config (``cfg.quant``) the same quantizer `archsim run CONFIG --model M` applies."""
    import argparse

    from archsim.cli import _quant_config
    from archsim.config import load_config

    no_flags = argparse.Namespace(model="m", quantized=None, quant=None, w_bits=None, a_bits=None)
    for path in (TRIO, P2VIT, P2VIT_FP, GENERIC):
        cfg = load_config(path)
        assert cfg.quant == _quant_config(no_flags, cfg.quant)
    assert load_config(GENERIC).quant is None
    assert load_config(GENERIC, ["quant.method=none"]).quant is None
    fp = load_config(P2VIT_FP).quant
    assert isinstance(fp, QuantConfig) and (fp.method, fp.ptf, fp.lis) == ("p2vit", True, True)
    assert dict(fp.options) == {"scale_rounding": "float"}
    w4 = _quant_config(argparse.Namespace(model="m", quantized=None, quant=None, w_bits=4, a_bits=None),
                       load_config(P2VIT_FP).quant)
    assert w4 is not None and (w4.w_bits, w4.a_bits, dict(w4.options)) == (4, 8, {"scale_rounding": "float"})
    other = _quant_config(argparse.Namespace(model="m", quantized=None, quant="fqvit", w_bits=None, a_bits=None),
                          load_config(P2VIT_FP).quant)
    assert other == QuantConfig("fqvit")  # another method does not inherit p2vit's settings
