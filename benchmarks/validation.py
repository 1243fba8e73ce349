"""Validation tables of docs/validation.md: the papers' models on trio.yaml and p2vit.yaml.

    python benchmarks/validation.py            # all models (a few minutes; traces are cached)
    python benchmarks/validation.py --quick    # EfficientViT-B1 and DeiT-Tiny only

Each row is one ``archsim run`` (the CLI, so the config's quant: section applies as it does for users); the
script prints Markdown tables: simulated FPS and latency next to the analytical compute bound (MACs / peak MACs
per cycle of the MAC arrays) and the DRAM bound (DRAM bytes / peak DRAM bytes per cycle), engine utilization,
where the time goes (busy share of each unit over the run), energy, and ablations of the pipelines and policies.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archsim.cli import main as archsim  # noqa: E402
from archsim.config import load_config  # noqa: E402
from archsim.hardware.kind import kind_of  # noqa: E402

TRIO, P2VIT, P2VIT_FP = (ROOT / "arch_configs" / f"{n}.yaml" for n in ("trio", "p2vit", "p2vit_fp"))


def run(config: Path, model: str, overrides: tuple[str, ...] = ()) -> dict:
    """One simulation through the CLI; returns its summary.json with layers.csv rows under ``layers``."""
    with tempfile.TemporaryDirectory() as out:
        args = ["run", str(config), "--model", model, "--out", out, "--quiet"]
        for o in overrides:
            args += ["--set", o]
        if archsim(args) != 0:
            raise SystemExit(f"archsim {' '.join(args)} failed")
        summary = json.loads((Path(out) / "summary.json").read_text())
        summary["layers"] = list(csv.DictReader((Path(out) / "layers.csv").open()))
    cfg = load_config(config, overrides)
    # the bound of the arrays in the peak (adder trees such as Trio's K-sum work beside them)
    array_macs = sum(e["macs"] for e in summary["engines"].values() if e["peak_macs_per_cycle"] and not e["adder_tree"])
    dsps = sum(kind_of(e).resources(e).get("dsps", 0) for e in cfg.engines.values())
    dram = cfg.dram
    summary["compute_bound_cycles"] = -(-array_macs // summary["peak_macs_per_cycle"])
    summary["dram_bound_cycles"] = -(-(summary["dram_read_bytes"] + summary["dram_write_bytes"]) * cfg.clock_mhz * 1e6
                                     // (dram.bandwidth_gbps * 1e9 * dram.channels))
    summary["dsps"] = dsps
    return summary


def fps(cycles: float, clock_mhz: float) -> float:
    return clock_mhz * 1e6 / cycles if cycles else 0.0


def bound_of(s: dict) -> str:
    """What limits the run: the larger analytical bound, and how close the simulation gets to it."""
    cb, db, lat = s["compute_bound_cycles"], s["dram_bound_cycles"], s["latency_cycles"]
    which = "compute" if cb >= db else "DRAM"
    return f"{which} ({100 * max(cb, db) / lat:.0f}% of latency)"


def main_table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| config | model | GMACs | latency (ms) | FPS | compute-bound FPS | DRAM-bound FPS | MAC util. | "
             "bound | energy (mJ) | FPS/DSP |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for cfg, s in rows:
        util = s["mac_utilization"]
        lines.append(
            f"| {cfg} | {s['model']} | {s['total_macs'] / 1e9:.3f} | {s['latency_ms']:.3f} | {s['fps']:.1f} | "
            f"{fps(s['compute_bound_cycles'], s['clock_mhz']):.1f} | {fps(s['dram_bound_cycles'], s['clock_mhz']):.1f} | "
            f"{100 * util:.1f}% | {bound_of(s)} | {s['energy_pj_total'] / 1e9:.3f} | "
            f"{s['fps'] / s['dsps']:.3f} |")
    return "\n".join(lines)


def busy_table(rows: list[tuple[str, dict]]) -> str:
    """Busy share of each unit over the run (units overlap, so the shares do not sum to 100%)."""
    units = sorted({n for _, s in rows for n, c in s["components"].items()
                    if c["type"] not in ("sram", "noc") and c.get("busy_cycles", 0)})
    lines = ["| config | model | " + " | ".join(units) + " |", "|---|---|" + "---:|" * len(units)]
    for cfg, s in rows:
        cells = []
        for u in units:
            c = s["components"].get(u)
            cells.append(f"{100 * c['busy_cycles'] / s['latency_cycles']:.0f}%" if c else "-")
        lines.append(f"| {cfg} | {s['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def energy_table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| config | model | total (mJ) | DRAM | MAC arrays | SRAM buffers | other |", "|---|---|---:|---:|---:|---:|---:|"]
    for cfg, s in rows:
        e = s["energy_pj_by_component"]
        total = s["energy_pj_total"]
        comp = s["components"]
        dram = sum(v for k, v in e.items() if k.startswith("dram"))
        macs = sum(v for k, v in e.items() if k in s["engines"] and s["engines"][k]["peak_macs_per_cycle"])
        sram = sum(v for k, v in e.items() if comp.get(k, {}).get("type") == "sram")
        other = total - dram - macs - sram
        lines.append(f"| {cfg} | {s['model']} | {total / 1e9:.3f} | " + " | ".join(
            f"{100 * v / total:.0f}%" for v in (dram, macs, sram, other)) + " |")
    return "\n".join(lines)


def ablation_table(config: Path, model: str, variants: list[tuple[str, tuple[str, ...]]]) -> str:
    base = run(config, model)
    lines = [f"| {config.stem} / {model} | latency (ms) | FPS | speed-up | energy (mJ) |", "|---|---:|---:|---:|---:|",
             f"| as shipped | {base['latency_ms']:.3f} | {base['fps']:.1f} | 1.000x | {base['energy_pj_total'] / 1e9:.3f} |"]
    for label, overrides in variants:
        s = run(config, model, overrides)
        lines.append(f"| {label} | {s['latency_ms']:.3f} | {s['fps']:.1f} | "
                     f"{base['latency_ms'] / s['latency_ms']:.3f}x | {s['energy_pj_total'] / 1e9:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="EfficientViT-B1 and DeiT-Tiny only")
    args = parser.parse_args()
    trio_models = ["efficientvit_b1"] if args.quick else ["efficientvit_b1", "efficientvit_b2", "efficientvit_b3"]
    p2_models = ["deit_tiny"] if args.quick else ["deit_tiny", "deit_small", "deit_base", "swin_tiny"]
    rows = [("trio", run(TRIO, m)) for m in trio_models] + [("p2vit", run(P2VIT, m)) for m in p2_models]
    rows += [("p2vit_fp", run(P2VIT_FP, m)) for m in p2_models[:2]]
    print("## Throughput and bounds\n\n" + main_table(rows))
    print("\n## Where the time goes (busy share of each unit over the run)\n\n" + busy_table(rows))
    print("\n## Energy per inference\n\n" + energy_table(rows))
    print("\n## Ablations\n")
    print(ablation_table(TRIO, "efficientvit_b1", [
        ("inter-layer pipeline off (PW on all PEs after the DW)", ("mapping.pipeline.inter_layer=false",)),
        ("intra-layer pipeline off", ("mapping.pipeline.intra_layer=false",)),
        ("generic policy (no Rule D tail, no K-sum tree, no head pipeline)", ("mapping.policy=generic",)),
        ("two MACs per multiplier (alternative reading, 3.3)",
         ("engines.mat.macs_per_multiplier=2", "engines.rmac.macs_per_multiplier=2")),
    ]))
    print()
    print(ablation_table(P2VIT, "deit_small", [
        ("inter-layer pipeline off", ("mapping.pipeline.inter_layer=false",)),
        ("intra-layer pipeline off", ("mapping.pipeline.intra_layer=false",)),
        ("output-stationary array instead of row-stationary", ("engines.pe.dataflow=output_stationary",)),
    ]))


if __name__ == "__main__":
    main()
