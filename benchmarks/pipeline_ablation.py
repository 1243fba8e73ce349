"""What the inter- and intra-layer pipelines buy: latency with each switch on and off, split by model structure.

    python benchmarks/pipeline_ablation.py
    python benchmarks/pipeline_ablation.py --pairs arch_configs/trio.yaml:efficientvit_b1 --batch 2

For each (config, model) pair the model is simulated four times: ``mapping.pipeline.inter_layer`` and
``mapping.pipeline.intra_layer`` both on, one of them off, both off (``mapping.pipeline.double_buffering`` is kept
on in all four). Everything else is the config as shipped; the trace is the one ``archsim run CONFIG --model MODEL``
uses (the config's bit widths and ``quant:`` section).

Each latency is split into parts by op scope (:func:`part_of`):

* ViTs (``blocks.3.attn.qkv``): *attention* = ``attn`` and ``norm1``, *MLP* = ``mlp`` and ``norm2``, *other* = the
  rest (patch embed, residual adds scoped to ``blocks.N``, final norm, head);
* EfficientViT: *LiteMSA* = ``context_module``, *MBConv* = every other ``stages.*.blocks.*`` op (``local_module``,
  MBConv / DSConv blocks) and the ``stem``, *other* = the rest (head).

Ops overlap, so their cycles do not add up to the latency. The parts are charged by end times instead
(:func:`attribute`): the simulated op records are sorted by ``end_cycle`` and each op is charged the time by which
it advances the frontier, ``end_cycle - previous end_cycle`` clipped at 0. The parts then add up exactly to the
latency (the last ``end_cycle``), and overlapped time goes to the op that finishes last in it.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archsim.api import run_stages  # noqa: E402
from archsim.config import load_config  # noqa: E402
from archsim.result import OpRecord, Result  # noqa: E402

PAIRS: tuple[str, ...] = ("arch_configs/trio.yaml:efficientvit_b1", "arch_configs/p2vit.yaml:deit_small",
                          "arch_configs/generic16.yaml:deit_tiny")
# (label, inter_layer, intra_layer)
SETTINGS: tuple[tuple[str, bool, bool], ...] = (
    ("both on", True, True), ("inter off", False, True), ("intra off", True, False), ("both off", False, False))
VIT_PARTS = ("attention", "MLP", "other")
EFFICIENTVIT_PARTS = ("LiteMSA", "MBConv", "other")
FOOTNOTE = ("Parts are charged by end times: simulated ops sorted by end_cycle, each op charged "
            "end_cycle - previous end_cycle (clipped at 0), the time by which it advances the frontier; "
            "the parts add up exactly to the latency.")


def parts_for(model: str) -> tuple[str, str, str]:
    """The part labels of a model family: EfficientViT's blocks, or a plain ViT's."""
    return EFFICIENTVIT_PARTS if "efficientvit" in model else VIT_PARTS


def part_of(scope: str, model: str) -> str:
    """The structural part an op scope belongs to (module docstring), matched on dotted scope components."""
    names = scope.split(".")
    if "efficientvit" in model:
        if "context_module" in names:
            return "LiteMSA"
        if names[0] == "stem" or (names[0] == "stages" and "blocks" in names):  # local_module, MBConv, DSConv
            return "MBConv"
        return "other"
    if "attn" in names or "norm1" in names:
        return "attention"
    if "mlp" in names or "norm2" in names:
        return "MLP"
    return "other"


def attribute(records: Iterable[OpRecord], model: str) -> dict[str, int]:
    """Cycles per part, each simulated op charged what it advances the end-time frontier; sums to the last end."""
    charged = dict.fromkeys(parts_for(model), 0)
    frontier = 0
    for r in sorted((r for r in records if r.status == "simulated"), key=lambda r: r.end_cycle):
        charged[part_of(r.scope, model)] += max(0, r.end_cycle - frontier)
        frontier = max(frontier, r.end_cycle)
    return charged


def resolve(config: str) -> Path:
    """A config path as given, or relative to the repository root (so the script runs from anywhere)."""
    path = Path(config)
    return path if path.is_absolute() or path.exists() else ROOT / path


def ablate(config: str, model: str, batch: int = 1) -> list[tuple[str, Result]]:
    """The four pipeline settings of one pair, traced once (the switches change neither bit widths nor quant)."""
    from archsim.workloads.zoo import trace_model  # imports torch

    results = []
    workload = None
    for label, inter, intra in SETTINGS:
        cfg = load_config(resolve(config), [f"mapping.pipeline.inter_layer={str(inter).lower()}",
                                            f"mapping.pipeline.intra_layer={str(intra).lower()}",
                                            "mapping.pipeline.double_buffering=true"])
        if workload is None:
            d = cfg.defaults
            workload = trace_model(model, batch=batch, act_bits=d.act_bits, weight_bits=d.weight_bits,
                                   bias_bits=d.bias_bits, scale_kind=d.scale_kind, quant=cfg.quant)
        results.append((label, run_stages(cfg, workload)))
    return results


def table(model: str, results: list[tuple[str, Result]]) -> str:
    """The Markdown table of one pair: latency, its parts (cycles and share) and the ratio to both on."""
    names = parts_for(model)
    lines = ["| setting | latency (cycles) | ms | " + " | ".join(names) + " | vs both on (ratio) |",
             "|---|---:|---:|" + "---:|" * len(names) + "---:|"]
    base = results[0][1].latency_cycles
    for label, r in results:
        lat = r.latency_cycles
        parts = attribute(r.ops, model)
        if sum(parts.values()) != lat:
            raise RuntimeError(f"{label}: parts sum to {sum(parts.values())}, latency is {lat}")
        cells = " | ".join(f"{c:,} ({c / lat:.1%})" for c in parts.values())
        lines.append(f"| {label} | {lat:,} | {r.latency_ms:.3f} | {cells} | {lat / base:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), metavar="CONFIG:MODEL",
                   help="(config, zoo model) pairs to ablate (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the traces")
    args = p.parse_args(argv)
    for pair in args.pairs:
        config, sep, model = pair.rpartition(":")
        if not sep or not config or not model:
            p.error(f"--pairs {pair!r}: expected CONFIG:MODEL")
        print(f"### {config} with {model} (batch {args.batch})\n")
        print(table(model, ablate(config, model, args.batch)) + "\n")
    print(FOOTNOTE)
    given = sys.argv[1:] if argv is None else argv
    print(f"Regenerate with `{shlex.join(['python', 'benchmarks/pipeline_ablation.py', *given])}`.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
