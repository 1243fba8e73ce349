"""Shared test helpers: paths to the shipped configs and small hand-built workloads (no torch)."""
from __future__ import annotations

from pathlib import Path

from archsim.workloads.ir import Op, Tensor, Workload, make_workload
from archsim.workloads.macs import count_macs

ROOT = Path(__file__).resolve().parents[1]
GENERIC = ROOT / "arch_configs" / "generic16.yaml"
TRIO = ROOT / "arch_configs" / "trio.yaml"
P2VIT = ROOT / "arch_configs" / "p2vit.yaml"
P2VIT_FP = ROOT / "arch_configs" / "p2vit_fp.yaml"
MLP_YAML = ROOT / "examples" / "workloads" / "mlp_block.yaml"
def linear_op(name: str, x: Tensor, out_features: int, bits: int = 8) -> tuple[Op, list[Tensor]]:
    """A linear op on ``x`` with its weight and output tensors."""
    w = Tensor(f"{name}.weight", (out_features, x.shape[-1]), bits, is_weight=True)
    y = Tensor(name, (*x.shape[:-1], out_features), bits)
    op = Op(name=name, kind="linear", inputs=(x.name,), weights=(w.name,), output=y.name,
            macs=count_macs("linear", [x.shape], w.shape, y.shape), scope=name)
    return op, [w, y]


def mlp(tokens: int = 197, dim: int = 384, hidden: int = 1536, bits: int = 8, name: str = "mlp") -> Workload:
    """fc1 -> gelu -> fc2: a transformer MLP, the smallest workload with MACs, a non-linear op and fusion."""
    x = Tensor("x", (1, tokens, dim), bits)
    fc1, t1 = linear_op("fc1", x, hidden, bits)
    act_out = Tensor("act", t1[1].shape, bits)
    act = Op(name="act", kind="activation", inputs=("fc1",), output="act", attrs={"fn": "gelu"})
    fc2, t2 = linear_op("fc2", act_out, dim, bits)
    return make_workload(name, [x, *t1, act_out, *t2], [fc1, act, fc2], {"model": name, "source": "test"})
