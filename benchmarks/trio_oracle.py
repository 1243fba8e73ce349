"""archsim against the Trio-ViT authors' analytical cycle model (Shi et al., TCAS-I 2024), Rules A-F.

    python benchmarks/trio_oracle.py                 # EfficientViT-B1 at 288, the authors' v2 setting
    python benchmarks/trio_oracle.py --resolution 224

The authors' model is compute-only, for one (MAT + R-MAC) slice with no memory system. archsim is put in the
matching setting with ``--set`` overrides (:data:`RECIPE`): one processing group per MAC engine (MAT, R-MAC, K-sum
tree), DRAM bandwidth and buffer capacities / ports / NoC links effectively unbounded and no DRAM latency or row
timing. Everything else is ``arch_configs/trio.yaml`` as shipped (trio mapping policy, pipelines on, Trio-ViT W8A8
quantized trace).

The oracle is ``tests/oracles/trio_rules.py`` (independent of archsim's mapping and hardware code). archsim runs
twice:

* **with the extra ops**: the whole trace as ``archsim run`` simulates it (through the CLI), including what the
  authors' model omits: re-quantization, activations, residual adds, the K-sum reduction, the divisor matmuls
  (Q times the K-sum: the matmuls whose output feeds a ``log2`` op), log2 / divide, data movement and the head;
* **without them**: the same trace with every op the authors do not model made free (kind ``other``, which the
  mapper skips and aliases to its first input) and ``mapping.requant=false``, so only their layers remain: kind
  ``conv2d`` (stem, depthwise, pointwise, grouped 1x1) and kind ``matmul`` except the divisor matmuls.

For each block (an op scope: ``stem.in_conv``, ``stem.res0``, ``stages.i.blocks.j`` and, in the attention stages,
``stages.i.blocks.j.context_module`` / ``.local_module``), archsim's cycles are the block's span: the last
``end_cycle`` minus the first ``start_cycle`` of its ops. Per block it also checks that archsim's MACs over the
authors' ops equal the oracle's MACs (same layers, counted independently). Prints a Markdown table (pasted into
docs/validation.md).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from archsim.api import run_stages  # noqa: E402
from archsim.cli import main as archsim  # noqa: E402
from archsim.config import load_config  # noqa: E402
from archsim.workloads.ir import Workload  # noqa: E402
from oracles.trio_rules import V2, Block, efficientvit_blocks  # noqa: E402

TRIO = ROOT / "arch_configs" / "trio.yaml"
MODEL = "efficientvit_b1"
BIG_KIB = 10_000_000          # 10 GiB per buffer: nothing spills, nothing is tiled for capacity
WIDE_BANKS, WIDE_PORT = 1024, 4096

# The idealized-memory, one-processing-group setting (docs/validation.md, "Against the Trio-ViT authors' cycle model")
RECIPE: tuple[str, ...] = (
    "engines.mat.groups=1", "engines.rmac.groups=1", "engines.ksum.groups=1",
    "dram.bandwidth_gbps=1e6", "dram.latency_ns=0", "dram.row_buffer=null",
    *(f"buffers.{b}.{k}={v}" for b in ("buf_ab", "buf_c", "aux_buf")
      for k, v in (("capacity_kib", BIG_KIB), ("banks", WIDE_BANKS), ("port_bits", WIDE_PORT))),
    "noc.link_bits=1048576",
    "mapping.search=fixed",  # the authors' loop nests (Rules A-F), not the mapper's search
    "mapping.pipeline.double_buffering=false",  # no memory system: nothing to prefetch, op spans start at compute
)


def run_archsim(resolution: int, overrides: tuple[str, ...] = RECIPE) -> tuple[list[dict], dict]:
    """One ``archsim run`` through the CLI; returns the layers.csv rows and summary.json."""
    with tempfile.TemporaryDirectory() as out:
        args = ["run", str(TRIO), "--model", MODEL, "--resolution", str(resolution), "--out", out, "--quiet"]
        for o in overrides:
            args += ["--set", o]
        if archsim(args) != 0:
            raise SystemExit(f"archsim {' '.join(args)} failed")
        rows = list(csv.DictReader((Path(out) / "layers.csv").open()))
        summary = json.loads((Path(out) / "summary.json").read_text())
    return rows, summary


def divisor_matmuls(resolution: int, overrides: tuple[str, ...] = RECIPE) -> set[str]:
    """Names of the matmuls whose output feeds a log2 op (Q times the K-sum: the divisors), from the trace the run
    used (same arguments as ``archsim run``, so it comes from the trace cache)."""
    from archsim.workloads.zoo import trace_model

    cfg = load_config(TRIO, overrides)
    d = cfg.defaults
    w = trace_model(MODEL, resolution=resolution, act_bits=d.act_bits, weight_bits=d.weight_bits,
                    bias_bits=d.bias_bits, scale_kind=d.scale_kind, quant=cfg.quant)
    by_output = {op.output: op for op in w.ops}
    return {by_output[i].name for op in w.ops if op.kind == "log2" for i in op.inputs
            if i in by_output and by_output[i].kind == "matmul"}


def block_of(scope: str, names: list[str]) -> str | None:
    """The longest block name that is ``scope`` or a dotted prefix of it."""
    best = None
    for n in names:
        if (scope == n or scope.startswith(n + ".")) and (best is None or len(n) > len(best)):
            best = n
    return best


def is_authors_op(row: dict, divisors: set[str]) -> bool:
    return row["kind"] == "conv2d" or (row["kind"] == "matmul" and row["op"] not in divisors)


def span(rows: list[dict]) -> int:
    return max(int(r["end_cycle"]) for r in rows) - min(int(r["start_cycle"]) for r in rows) if rows else 0


def authors_only(w: Workload, divisors: set[str]) -> Workload:
    """``w`` with every op the authors' model omits made free: kind ``other`` (skipped, aliased to its input), with
    no MACs (an ``other`` op does none: the IR refuses one that claims some)."""
    ops = tuple(op if is_authors_op({"kind": op.kind, "op": op.name}, divisors) else replace(op, kind="other", macs=0)
                for op in w.ops)
    return Workload(name=w.name, tensors=w.tensors, ops=ops, meta=w.meta)


def run_without_extra_ops(resolution: int, divisors: set[str]) -> list[dict]:
    """The authors' layers alone, in the recipe's setting: op records as dicts with layers.csv's keys."""
    from archsim.workloads.zoo import trace_model

    cfg = load_config(TRIO, (*RECIPE, "mapping.requant=false"))
    d = cfg.defaults
    w = trace_model(MODEL, resolution=resolution, act_bits=d.act_bits, weight_bits=d.weight_bits,
                    bias_bits=d.bias_bits, scale_kind=d.scale_kind, quant=cfg.quant)
    result = run_stages(cfg, authors_only(w, divisors))
    return [{"op": r.op, "kind": r.kind, "scope": r.scope, "start_cycle": r.start_cycle, "end_cycle": r.end_cycle,
             "cycles": r.cycles, "macs": r.macs, "status": r.status} for r in result.ops if r.status == "simulated"]


def compare(resolution: int = 288) -> dict:
    """Oracle vs archsim per block: a dict with ``blocks`` (list of per-block dicts), totals and the run summary."""
    blocks: list[Block] = efficientvit_blocks(resolution, V2)
    names = [b.name for b in blocks]
    rows, summary = run_archsim(resolution)
    divisors = divisor_matmuls(resolution)
    alone = run_without_extra_ops(resolution, divisors)
    grouped: dict[str | None, list[dict]] = {}
    for r in rows:
        grouped.setdefault(block_of(r["scope"], names), []).append(r)
    grouped_alone: dict[str | None, list[dict]] = {}
    for r in alone:
        grouped_alone.setdefault(block_of(r["scope"], names), []).append(r)
    out = []
    for b in blocks:
        mine = grouped_alone.get(b.name, [])
        out.append({"block": b.name, "oracle": b.cycles, "authors_ops": span(mine),
                    "all_ops": span(grouped.get(b.name, [])), "oracle_macs": b.macs,
                    "archsim_macs": sum(int(r["macs"]) for r in mine),
                    "rules": "+".join(layer.rule for layer in b.layers)})
    return {"blocks": out, "unassigned": grouped.get(None, []), "summary": summary, "divisors": divisors,
            "rows": alone, "all_rows": rows}


def table(res: dict) -> str:
    lines = ["| block | rules | oracle cycles | archsim without the extra ops | ratio | archsim with them | ratio | "
             "MACs equal |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for b in res["blocks"]:
        lines.append(f"| `{b['block']}` | {b['rules']} | {b['oracle']:,} | {b['authors_ops']:,} | "
                     f"{b['authors_ops'] / b['oracle']:.3f} | {b['all_ops']:,} | {b['all_ops'] / b['oracle']:.3f} | "
                     f"{'yes' if b['oracle_macs'] == b['archsim_macs'] else 'NO'} |")
    o = sum(b["oracle"] for b in res["blocks"])
    a = sum(b["authors_ops"] for b in res["blocks"])
    al = sum(b["all_ops"] for b in res["blocks"])
    lines.append(f"| **total (sum of blocks)** | | **{o:,}** | **{a:,}** | **{a / o:.3f}** | **{al:,}** | "
                 f"**{al / o:.3f}** | |")
    return "\n".join(lines)


def layer_table(res: dict, resolution: int) -> str:
    """Per layer of the authors' list: the oracle's cycles and the span of archsim's rows for the same layer(s), in
    the run without the extra ops."""
    lines = ["| block | layer | rule | oracle cycles | archsim cycles | ratio |", "|---|---|---|---:|---:|---:|"]
    rows, divisors = res["rows"], res["divisors"]
    for b in efficientvit_blocks(resolution, V2):
        for layer in b.layers:
            ops = [r for r in rows if is_authors_op(r, divisors) and r["scope"] in layer.scopes]
            what = " + ".join(sc[len(b.name) + 1:] or sc for sc in layer.scopes)
            what += " (matmuls)" if layer.rule == "E" else ""
            lines.append(f"| `{b.name}` | {what} | {layer.rule} | {layer.cycles:,} | {span(ops):,} | "
                         f"{span(ops) / layer.cycles:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=288, help="input resolution (the authors' v2 setting: 288)")
    p.add_argument("--layers", action="store_true", help="also print the per-layer comparison")
    args = p.parse_args(argv)
    res = compare(args.resolution)
    s = res["summary"]
    print(f"## {MODEL} at {args.resolution}, trio.yaml with the idealized-memory one-PG recipe\n")
    print("```\n" + " ".join(f"--set {o}" for o in RECIPE) + "\n```\n")
    print(table(res))
    head = span(res["unassigned"])
    o = sum(b["oracle"] for b in res["blocks"])
    print(f"\nEnd-to-end archsim latency: {s['latency_cycles']:,} cycles ({s['latency_ms']:.3f} ms at "
          f"{s['clock_mhz']:g} MHz), of which the classifier head (not in the oracle) spans {head:,}; "
          f"end-to-end / oracle total = {s['latency_cycles'] / o:.3f}.")
    print(f"Oracle MACs {sum(b['oracle_macs'] for b in res['blocks']):,}; archsim MACs over the authors' ops "
          f"{sum(b['archsim_macs'] for b in res['blocks']):,}; divisor matmuls left out: {len(res['divisors'])}.")
    worst = sorted(res["blocks"], key=lambda b: -abs(b["authors_ops"] / b["oracle"] - 1))[:5]
    within = sum(1 for b in res["blocks"] if abs(b["authors_ops"] / b["oracle"] - 1) <= 0.05)
    print(f"Without the extra ops, {within} of {len(res['blocks'])} blocks are within 5% of the oracle. Largest "
          "disagreements: " + ", ".join(f"{b['block']} {b['authors_ops'] / b['oracle']:.3f}" for b in worst))
    if args.layers:
        print("\n" + layer_table(res, args.resolution))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
