"""The ``archsim`` command: parses arguments and calls the API. Errors are one line on stderr with exit status 2
(usage, config, workload, mapping) or 3 (a simulation that could make no progress)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Sequence

from archsim.errors import ArchsimError, UnsupportedModelError, UsageError
from archsim.outputs import check_output_path, safe_name, staged_file
from archsim.workloads.bridge import QuantizerError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from archsim.report.render import Renderer
    from archsim.result import Result
    from archsim.run.guard import Limits
    from archsim.workloads.bridge import QuantConfig
    from archsim.workloads.ir import Workload

DESCRIPTION = """\
archsim: an event-driven, TLM-style simulator of accelerators for quantized Vision Transformers.

Typical use (no data set or weights needed; the model gets random weights):
  archsim run arch_configs/trio.yaml --model efficientvit_b1
  archsim run arch_configs/generic16.yaml --workload examples/workloads/mlp_block.yaml
  archsim trace --model deit_small --out deit_small.json
  archsim compare arch_configs/p2vit.yaml arch_configs/p2vit_fp.yaml --model deit_small
  archsim compare arch_configs/p2vit.yaml --set mapping.pipeline.inter_layer=false --model deit_small
  archsim plot reports/trio-efficientvit_b1 --zoom stages.3
  archsim validate arch_configs/trio.yaml
  archsim list
"""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors raised as UsageError, so every error has the same one-line form."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _add_workload_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    src = p.add_argument_group("workload (give exactly one of --model, --workload, --trace)")
    src.add_argument("--model", metavar="NAME", help="a model of the zoo, traced from PyTorch (see `archsim list`)")
    src.add_argument("--workload", metavar="FILE.yaml", help="a hand-written YAML workload (no torch needed)")
    src.add_argument("--trace", metavar="FILE.json", help="a saved trace from `archsim trace` (no torch needed)")
    m = p.add_argument_group("model options (with --model)")
    m.add_argument("--resolution", type=int, metavar="PX", help="input resolution (default: the model's own, e.g. 224)")
    m.add_argument("--batch", type=int, metavar="N", help="batch size (default: 1)")
    m.add_argument("--checkpoint", metavar="PATH", help="load weights from a local state dict instead of random ones")
    m.add_argument("--no-cache", action="store_true", help="re-trace even if a cached trace exists")
    q = p.add_argument_group("quantization (with --model; default: the config's quant: section)")
    q.add_argument("--quant", metavar="METHOD", help="quantize the model first with a registered method (fqvit, "
                   "p2vit, trio, packqvit, or a plugin's; see `archsim list methods`), or none for the float model with the "
                   "config's defaults: bit widths")
    q.add_argument("--w-bits", type=int, metavar="N", help="weight bits of the quantizer, 2 to 8 (default: 8)")
    q.add_argument("--a-bits", type=int, metavar="N", help="activation bits of the quantizer, 2 to 8 (default: 8)")
    q.add_argument("--quantized", metavar="FILE.pt", help="a model saved by `quantizer save`: its method, bits and "
                   "per-layer choices (mixed precision) are used; gives the model when --model is omitted")


def _add_limit_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("size guard (a run estimated to cost more is refused before it starts)")
    g.add_argument("--max-events", type=int, metavar="N",
                   help="most simulation events a run may take (default: 20 million, about a minute; 0: no limit)")
    g.add_argument("--max-memory", type=float, metavar="GIB",
                   help="most memory a run may take, in GiB (default: 3/4 of this machine's; 0: no limit)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="archsim", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"archsim {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="simulate a model on an architecture and write a report",
                         description="Simulate one workload on one architecture config. Writes summary.json, "
                         "layers.csv, timeline.png, trace.json (Perfetto), energy.png and report.md to the output "
                         "folder and prints a summary.")
    run.add_argument("config", metavar="CONFIG.yaml", help="architecture config, e.g. arch_configs/trio.yaml")
    _add_workload_args(run)
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set mapping.pipeline.inter_layer=false (repeatable)")
    run.add_argument("--out", metavar="DIR", help="output folder (default: reports/<config>-<model>[-<options>])")
    run.add_argument("--no-plots", action="store_true", help="write no PNG plots (the tables, trace and reports only)")
    run.add_argument("--zoom", metavar="BLOCK", help="also draw timeline_zoom.png: one block (e.g. blocks.3, "
                     "stages.2) at tile resolution")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no summary on stdout")
    _add_limit_args(run)

    tr = sub.add_parser("trace", help="extract a model's op trace to JSON",
                        description="Trace a zoo model (or load a YAML workload) and save the op trace as JSON.")
    _add_workload_args(tr)
    tr.add_argument("--config", metavar="CONFIG.yaml", help="take default bit widths from this config")
    tr.add_argument("--out", metavar="FILE.json", required=True, help="where to write the trace")
    tr.add_argument("--quiet", action="store_true", help="print nothing but errors")

    cmp_ = sub.add_parser("compare", help="simulate one workload on several configs and tabulate the ratios",
                          description="Run one workload on each config (or on one config with and without the --set "
                          "overrides, an ablation) and print and write a table of latency, FPS, energy and ratios to "
                          "the first. Writes compare.csv and compare.md to the output folder.")
    cmp_.add_argument("configs", nargs="+", metavar="CONFIG.yaml", help="architecture configs; the first is the baseline")
    _add_workload_args(cmp_)
    cmp_.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key in every config; with a single config, compares it against itself "
                      "with the overrides (repeatable)")
    cmp_.add_argument("--out", metavar="DIR", help="output folder (default: reports/compare-<model>)")
    cmp_.add_argument("--quiet", action="store_true", help="print nothing but errors")
    _add_limit_args(cmp_)

    sw = sub.add_parser("sweep", help="explore a design space: many configs and workloads, a table and a Pareto set",
                        description="Run every point of a sweep (a YAML file, or --config with --grid flags) on a "
                        "local process pool or a Dask cluster. Each model is traced once on this machine; workers "
                        "get the IR. Writes points.jsonl (appended as each point finishes: a rerun resumes), "
                        "results.parquet, results.csv, pareto.png and pareto.md to the output folder.")
    sw.add_argument("sweep", nargs="?", metavar="SWEEP.yaml", help="the sweep file, e.g. examples/sweeps/trio_dse.yaml")
    sw.add_argument("--config", metavar="CONFIG.yaml", help="the base config (instead of, or over, the file's)")
    sw.add_argument("--model", metavar="NAME", help="the zoo model (instead of the file's workload)")
    sw.add_argument("--workload", metavar="FILE.yaml", help="a hand-written YAML workload (no torch needed)")
    sw.add_argument("--trace", metavar="FILE.json", help="a saved trace from `archsim trace` (no torch needed)")
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                    help="sweep a config key (or model, batch, resolution) over these values (repeatable)")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key at every point (repeatable)")
    sw.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: every core)")
    sw.add_argument("--dask", metavar="ADDRESS", help="run the points on this Dask scheduler, e.g. "
                    "tcp://127.0.0.1:8786")
    sw.add_argument("--out", metavar="DIR", help="output folder (default: reports/sweep-<name>)")
    sw.add_argument("--fresh", action="store_true", help="discard the points logged in the output folder")
    sw.add_argument("--no-cache", action="store_true", help="re-trace models even if a cached trace exists")
    sw.add_argument("--report", metavar="DIR", help="redraw the Pareto plot and set from a sweep folder's table, "
                    "without running anything")
    sw.add_argument("--quiet", action="store_true", help="no progress bar, print nothing but errors")

    plot = sub.add_parser("plot", help="redraw the plots and report.html of a finished run, without simulating",
                          description="Draw timeline.png, energy.png and report.html of a run folder again from its "
                          "result.json.gz (e.g. after a --no-plots run, or to zoom on a block).")
    plot.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by `archsim run`")
    plot.add_argument("--zoom", metavar="BLOCK", help="also draw timeline_zoom.png: one block at tile resolution")
    plot.add_argument("--quiet", action="store_true", help="print nothing but errors")

    val = sub.add_parser("validate", help="check an architecture config and print what it describes",
                         description="Load and validate a config; print its engines, buffers and peak throughput.")
    val.add_argument("config", metavar="CONFIG.yaml")
    val.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")

    lst = sub.add_parser("list", help="list what is registered: models, engines, policies, ops, methods",
                         description="List the registered zoo models, engine types, mapping policies, op kinds and "
                         "quantization methods, each with where it came from (archsim, quantizer, or a plugin).")
    lst.add_argument("what", nargs="?", choices=LISTINGS, help="one listing only (default: all)")
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("archsim")
    except Exception:  # noqa: BLE001 - running from a source tree that is not installed
        return "0.0.0+local"


# ---- commands -----------------------------------------------------------------------------------------------------


def _check_workload_args(args: argparse.Namespace) -> None:
    given = [x for x in (args.model or args.quantized, args.workload, args.trace) if x]
    if len(given) != 1:
        raise UsageError("give exactly one of --model, --workload or --trace (--quantized FILE counts as --model)")
    if not (args.model or args.quantized):
        model_flags = (("--resolution", args.resolution), ("--batch", args.batch), ("--checkpoint", args.checkpoint))
        flags = [f for f, v in model_flags if v is not None]
        if flags:
            raise UsageError(f"{', '.join(flags)} only apply with --model (a saved trace or workload has its own "
                             "shapes and weights)")
        bits_flags = (("--quant", args.quant), ("--w-bits", args.w_bits), ("--a-bits", args.a_bits))
        flags = [f for f, v in bits_flags if v is not None]
        if flags:
            raise UsageError(f"{', '.join(flags)} only apply with --model (a saved trace or workload is already "
                             "quantized)")
    if args.batch is not None and args.batch < 1:
        raise UsageError(f"--batch must be a positive integer, got {args.batch}")
    if args.resolution is not None and args.resolution < 1:
        raise UsageError(f"--resolution must be a positive integer, got {args.resolution}")


def _limits(args: argparse.Namespace) -> Limits:
    """The size guard's limits from --max-events / --max-memory (0 lifts one; absent keeps the default)."""
    from archsim.run.guard import Limits

    limits = Limits()
    if args.max_events is not None:
        if args.max_events < 0:
            raise UsageError(f"--max-events must be 0 (no limit) or a positive integer, got {args.max_events}")
        limits = replace(limits, max_events=args.max_events or None)
    if args.max_memory is not None:
        if not (args.max_memory >= 0 and args.max_memory < 1e9):  # also refuses nan and inf
            raise UsageError(f"--max-memory must be 0 (no limit) or a size in GiB, got {args.max_memory}")
        limits = replace(limits, max_memory_bytes=int(args.max_memory * 2**30))
    return limits


def _quant_config(args: argparse.Namespace, section: QuantConfig | None) -> QuantConfig | None:
    """The quantizer to run before tracing: ``--quant``/``--w-bits``/``--a-bits`` over the config's ``quant:``
    section (``section``; its other keys carry over when ``--quant`` names the same method), else none. None too
    with ``--quantized`` (the saved file decides; see :func:`_load_workload`) and without --model: a saved trace or
    workload is already what it is."""
    from archsim.workloads import bridge

    if not (args.model or args.quantized):
        return None
    w_bits = None if args.w_bits is None else bridge.check_bits(args.w_bits, "--w-bits")
    a_bits = None if args.a_bits is None else bridge.check_bits(args.a_bits, "--a-bits")
    bits_given = w_bits is not None or a_bits is not None
    if args.quantized:
        if args.quant or bits_given:
            raise UsageError("--quantized fixes the method and the bit widths; drop --quant, --w-bits and --a-bits")
        return None
    if args.quant is not None and args.quant != "none" and args.quant not in bridge.method_names():
        raise UsageError(f"--quant: unknown method {args.quant!r} (known: {', '.join(bridge.method_names())}, "
                         "or none)")
    if args.quant == "none" or (args.quant is None and section is None):
        if bits_given:
            raise UsageError("--w-bits and --a-bits need a quantizer: add --quant METHOD (or a quant: section to "
                             "the config)")
        return None
    method = args.quant or section.method  # type: ignore[union-attr]
    base = section if section is not None and section.method == method else bridge.quant_config(method)
    return replace(base, w_bits=base.w_bits if w_bits is None else w_bits,
                   a_bits=base.a_bits if a_bits is None else a_bits)


def _load_workload(args: argparse.Namespace, act_bits: int, weight_bits: int, bias_bits: int, scale_kind: str,
                   quant: QuantConfig | None = None, config: str | None = None):
    """The workload from --workload, --trace or --model; ``config`` is the file whose ``quant:`` section chose the
    method (named in the error when that method cannot prepare the model)."""
    _check_workload_args(args)
    if args.workload:
        from archsim.workloads.yaml_format import load_yaml_workload

        return load_yaml_workload(args.workload, act_bits=act_bits, weight_bits=weight_bits, bias_bits=bias_bits)
    if args.trace:
        from archsim.workloads.ir import Workload

        return Workload.load(args.trace)
    from archsim.workloads.zoo import trace_model  # imports torch

    try:
        return trace_model(args.model, resolution=args.resolution, batch=args.batch or 1, act_bits=act_bits,
                           weight_bits=weight_bits, bias_bits=bias_bits, scale_kind=scale_kind,
                           checkpoint=args.checkpoint, cache=not args.no_cache, quant=quant,
                           quantized=args.quantized)
    except UnsupportedModelError as exc:
        if config is None or args.quant is not None or args.quantized:
            raise
        raise UsageError(f"{exc.detail}; pass --quant METHOD, or --quant none for the float graph",
                         source=config, key="quant.method") from None


def _cmd_run(args: argparse.Namespace) -> int:
    from archsim.report import start_renderer

    # forked first, before anything heavy is imported: the worker imports matplotlib on the other core while this
    # process loads the workload and simulates, then draws the plots while this one writes the rest
    renderer = None if args.no_plots else start_renderer()
    try:
        return _run(args, renderer)
    finally:
        if renderer is not None:
            renderer.close()


def _run(args: argparse.Namespace, renderer: Renderer | None) -> int:
    from tqdm import tqdm

    from archsim.api import run_stages
    from archsim.config import load_config
    from archsim.provenance import record, run_key
    from archsim.report import OWNED_FILES, write_all
    from archsim.report.console import format_summary

    _check_workload_args(args)
    limits = _limits(args)
    if args.out is not None:  # a bad --out fails before any work; the folder itself appears only with the report
        check_output_path(args.out, "--out", _inputs(args), folder=True, owned=OWNED_FILES)
    if args.zoom is not None and args.no_plots:
        raise UsageError("--zoom draws a plot: drop --no-plots")
    cfg = load_config(args.config, args.set)
    d = cfg.defaults
    quant = _quant_config(args, cfg.quant)
    key = run_key(_run_parts(args))
    # the bar shows on a terminal only (disable=None), so logs and pipes stay clean
    with tqdm(total=4, desc="trace", unit="stage", file=sys.stderr, disable=True if args.quiet else None,
              leave=False) as bar:
        t0 = time.perf_counter()
        workload = _load_workload(args, d.act_bits, d.weight_bits, d.bias_bits, d.scale_kind, quant, args.config)
        t_trace = time.perf_counter() - t0
        if args.zoom is not None:
            _check_zoom(args.zoom, workload)
        bar.update(1)
        model = str(workload.meta.get("model", workload.name))
        out = _out_folder(args, _run_name(args, cfg.name, model), OWNED_FILES, key=key)
        bar.set_description("map+simulate")
        t1 = time.perf_counter()
        result = _named(args, lambda: run_stages(cfg, workload, progress=bar, limits=limits))
        t_sim = time.perf_counter() - t1
        bar.set_description("report")
        host = {"python": platform.python_version(), "machine": platform.machine(),
                "wall_seconds": {"trace": round(t_trace, 3), "simulate": round(t_sim, 3)}}
        try:  # the whole folder, or nothing if it fails or is interrupted
            write_all(result, out, host=host, run=record(args.argv, cfg, args.set, key), plots=not args.no_plots,
                      renderer=renderer, zoom=args.zoom, parallel=True)  # trace.json written by a forked child
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot write the report ({exc.strerror or exc})") from None
        bar.update(1)
    if not args.quiet:
        print(format_summary(result, out))
    return 0


def _check_zoom(block: str, workload: Workload) -> None:
    """``--zoom`` names a block or scope of the workload (checked before simulating, not when drawing)."""
    from archsim.report.blocks import scope_block

    prefix = block.rstrip(".") + "."
    if any(op.scope == block or op.scope.startswith(prefix) or op.name.startswith(prefix)
           or scope_block(op.scope) == block for op in workload.ops):
        return
    blocks = list(dict.fromkeys(b for b in (scope_block(op.scope) for op in workload.ops) if b))
    shown = ", ".join(blocks[:8]) + (f" ... ({len(blocks)} blocks)" if len(blocks) > 8 else "")
    raise UsageError(f"--zoom: no block or scope {block!r} in {workload.name}; blocks: {shown or 'none'}")


def _cmd_plot(args: argparse.Namespace) -> int:
    from archsim.report import redraw

    drawn = redraw(args.run_dir, zoom=args.zoom)
    if not args.quiet:
        print(f"redrawn: {', '.join(str(p) for p in drawn.values())}")
    return 0


def _named(args: argparse.Namespace, stage: Callable[[], Result]) -> Result:
    """``stage()``, with a size-guard refusal (which names no file of its own) put on the workload it is about."""
    try:
        return stage()
    except UsageError as exc:
        if exc.source is not None:
            raise
        source = args.workload or args.trace or args.quantized or args.model
        raise UsageError(exc.detail, source=source, key=exc.key) from None


def _run_parts(args: argparse.Namespace) -> dict[str, object]:
    """The options of a run that decide its result (its config file, overrides and workload), for its run key."""
    return {"config": args.config, "set": list(args.set), "model": args.model, "workload": args.workload,
            "trace": args.trace, "batch": args.batch or 1, "resolution": args.resolution, "checkpoint": args.checkpoint,
            "quant": args.quant, "w_bits": args.w_bits, "a_bits": args.a_bits, "quantized": args.quantized}


def _run_name(args: argparse.Namespace, config: str, model: str) -> str:
    """The default report folder's name: ``<config>-<model>``, then each option that changes the result (batch,
    resolution, quantizer and bits, checkpoint, saved quantized model, and a digest of the --set overrides), so two
    commands that differ in any of them write to two folders."""
    from archsim.provenance import run_key

    parts = [config, model]
    if args.model or args.quantized:
        if args.batch not in (None, 1):
            parts.append(f"b{args.batch}")
        if args.resolution is not None:
            parts.append(f"r{args.resolution}")
        if args.quant is not None:
            parts.append(args.quant)
        if args.w_bits is not None or args.a_bits is not None:
            parts.append(f"w{args.w_bits or ''}a{args.a_bits or ''}")
        if args.checkpoint:
            parts.append(f"ckpt_{Path(args.checkpoint).stem}")
        if args.quantized:
            parts.append(f"q_{Path(args.quantized).stem}")
    if args.set:
        parts.append(f"set_{run_key({'set': sorted(args.set)})[:8]}")
    return "-".join(parts)


def _cmd_compare(args: argparse.Namespace) -> int:
    from archsim.api import run_stages
    from archsim.compare import rows, variants
    from archsim.config import load_config
    from archsim.report.compare import COMPARE_FILES, format_markdown, write_compare

    _check_workload_args(args)
    limits = _limits(args)
    if args.out is not None:
        check_output_path(args.out, "--out", [*args.configs, *_inputs(args)], folder=True, owned=COMPARE_FILES)
    plan = variants(args.configs, args.set)
    cfgs = [load_config(v.config, v.overrides) for v in plan]  # every config is checked before anything runs
    results = []
    workloads: dict[str, Workload] = {}  # an ablation's variants share one workload: load it once
    for v, cfg in zip(plan, cfgs):
        d = cfg.defaults
        quant = _quant_config(args, cfg.quant)
        key = json.dumps([d.act_bits, d.weight_bits, d.bias_bits, d.scale_kind, quant and quant.to_dict()])
        if key not in workloads:
            workloads[key] = _load_workload(args, d.act_bits, d.weight_bits, d.bias_bits, d.scale_kind, quant,
                                            v.config)
        results.append((v, _named(args, lambda: run_stages(cfg, workloads[key], limits=limits))))
    model = str(results[0][1].model)
    out = _out_folder(args, f"compare-{model}", COMPARE_FILES)
    table = rows(results)
    try:
        csv_path, md_path = write_compare(table, model, out, results=[(v.label, r) for v, r in results])
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write the table ({exc.strerror or exc})") from None
    if not args.quiet:
        print(format_markdown(table, model), end="")
        print(f"\nwritten: {csv_path}, {md_path}, {out / 'compare.png'}")
    return 0


def _cmd_trace(args: argparse.Namespace) -> int:
    from archsim.config import load_config

    _check_workload_args(args)
    out = check_output_path(args.out, "--out", _inputs(args))  # before tracing; refuses to replace an input
    section = None
    if args.config:
        loaded = load_config(args.config)
        d, section = loaded.defaults, loaded.quant
        bits: tuple[int, int, int, str] = (d.act_bits, d.weight_bits, d.bias_bits, d.scale_kind)
    else:
        bits = (8, 8, 32, "none")
    quant = _quant_config(args, section)
    w = _load_workload(args, *bits, quant=quant, config=args.config)
    try:
        with staged_file(out) as tmp:  # whole or not at all, and no temporary file left beside it
            w.save(tmp)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot write ({exc.strerror or exc})") from None
    if not args.quiet:
        quant = w.meta.get("quant")
        how = f", quantized by {quant['method']} W{quant['w_bits']}A{quant['a_bits']}" if isinstance(quant, dict) else ""
        print(f"{args.out}: {len(w.ops)} ops, {w.total_macs / 1e9:.3f} GMACs{how}, kinds {w.op_kinds()}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from archsim.config import load_config
    from archsim.hardware.area import area_of
    from archsim.hardware.kind import design_peak_macs, kind_of

    cfg = load_config(args.config, args.set)
    peak = design_peak_macs(cfg.engines)
    print(f"{cfg.source}: valid ({cfg.name}, {cfg.clock_mhz:g} MHz)")
    for name, e in cfg.engines.items():
        print(f"  engine {name}: {kind_of(e).summary(e)}")
    for name, b in cfg.buffers.items():
        print(f"  buffer {name}: {b.capacity_kib:g} KiB, {b.bytes_per_cycle:g} B/cycle, holds {', '.join(b.holds)}")
    dram = cfg.dram
    print(f"  dram: {dram.type}, {dram.channels} x {dram.bandwidth_gbps:g} GB/s")
    print(f"  mapping policy: {cfg.mapping.policy}")
    print(f"  peak: {peak} MACs/cycle = {2 * peak * cfg.clock_mhz / 1e3:g} GOPS")
    area = area_of(cfg)
    print(f"  area: {area.total_mm2:.4g} mm2 {area.source} (45 nm proxy: arithmetic and SRAM only), "
          f"{area.multipliers} multipliers, {area.sram_kib:g} KiB SRAM")
    for name, mm2 in area.by_component.items():
        print(f"    {name}: {mm2:.4g} mm2{' (given)' if name in area.given else ''}")
    for note in area.notes:
        print(f"  area note: {note}")
    return 0


#: What `archsim list` can show, in its default order.
LISTINGS = ("models", "engines", "policies", "ops", "methods")


def _listing(what: str) -> list[tuple[str, str, str]]:
    """(name, origin, description) of every registered entry of one kind."""
    from archsim.hardware.kind import ENGINE_KINDS
    from archsim.mapping.policy import POLICIES
    from archsim.workloads.kinds import OP_KINDS

    if what == "engines":
        return [(e.name, e.origin, e.value.description) for e in ENGINE_KINDS.entries()]
    if what == "policies":
        return [(e.name, e.origin, e.value.description) for e in POLICIES.entries()]
    if what == "ops":
        return [(e.name, e.origin, f"{e.value.category}: {e.value.description}") for e in OP_KINDS.entries()]
    if what == "models":
        from archsim.workloads import zoo

        specs = [zoo.model_spec(n) for n in zoo.list_models()]
        return [(spec.name, spec.origin, spec.description) for spec in specs]
    from archsim.workloads import bridge

    return [(n, bridge.method_origin(n), bridge.method_description(n)) for n in bridge.method_names()]


def _cmd_sweep(args: argparse.Namespace) -> int:
    from archsim.sweep.pareto import markdown
    from archsim.sweep.run import redraw, run_sweep
    from archsim.sweep.spec import load_sweep
    from archsim.sweep.store import read_manifest
    from archsim.sweep.table import read_table

    if args.report:
        if args.sweep or args.grid or args.config or args.model or args.workload or args.trace:
            raise UsageError("--report redraws an existing sweep folder: give no sweep file, --config, a workload "
                             "or --grid with it")
        folder = Path(args.report)
        manifest = read_manifest(folder)
        outcome = redraw(folder, read_table(folder), manifest)
    else:
        spec = load_sweep(args.sweep, grid=args.grid, config=args.config, model=args.model, trace=args.trace,
                          workload=args.workload, overrides=args.set)
        folder = (check_output_path(args.out, "--out", folder=True) if args.out is not None
                  else Path("reports") / f"sweep-{safe_name(spec.name)}")
        _make_folder(folder, "--out")
        t0 = time.perf_counter()
        # status lines, like the progress bar, go to a terminal only: logs and pipes get the summary alone
        say = None if args.quiet or not sys.stderr.isatty() else (
            lambda text: print(f"sweep {spec.name}: {text}", file=sys.stderr))
        outcome = run_sweep(spec, folder, workers=args.workers, dask=args.dask, fresh=args.fresh,
                            progress=False if args.quiet else None, cache=not args.no_cache, say=say)
        manifest = read_manifest(folder)
        if not args.quiet:
            print(f"sweep {spec.name}: {len(outcome.rows)} points ({outcome.ran} run now, "
                  f"{len(outcome.rows) - outcome.ran} from the log, {outcome.failed} failed) in "
                  f"{time.perf_counter() - t0:.1f} s")
    if not args.quiet:
        errors = [r for r in outcome.rows if r["status"] != "ok"]
        for r in errors[:5]:
            print(f"  point {r['index']} failed: {r['error']}")
        if len(errors) > 5:
            print(f"  ... and {len(errors) - 5} more failed points (see results.csv)")
        print(f"\nPareto set ({len(outcome.front)} of {len(outcome.rows)} points; "
              f"{', '.join(manifest['objectives'])}):\n")
        print(markdown(outcome.rows, outcome.front, manifest["keys"], manifest["objectives"]), end="")
        print(f"\nwritten: {', '.join(str(f) for f in outcome.files)}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    for what in ([args.what] if args.what else LISTINGS):
        rows = _listing(what)
        print(f"{what}:")
        width = max((len(name) for name, _, _ in rows), default=0)
        for name, origin, description in rows:
            print(f"  {name:<{width}}  [{origin}]  {description}".rstrip())
    return 0


def _make_folder(path: Path, option: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot create the folder ({exc.strerror or exc})") from None


def _inputs(args: argparse.Namespace) -> list[str | None]:
    """The files a run, trace or compare reads, which its outputs must never replace."""
    return [getattr(args, "config", None), args.workload, args.trace, args.checkpoint, args.quantized]


def _out_folder(args: argparse.Namespace, default: str, owned: Collection[str], key: str | None = None) -> Path:
    """``--out`` (already checked), else ``reports/<default>`` as one safe name, checked now that it is known: a
    config ``name:`` or a model name cannot point it outside reports/. A default folder holding a run of another
    command (its summary.json's ``run.key`` differs from ``key``) is refused, never silently replaced."""
    if args.out is not None:
        return Path(args.out).expanduser()
    folder = check_output_path(Path("reports") / safe_name(default), "--out", _inputs(args), folder=True, owned=owned)
    made_by = _recorded_run(folder)
    if key is not None and made_by is not None and made_by.get("key") != key:
        raise UsageError(f"{folder} holds the report of another command ({made_by.get('command', 'unknown')}); "
                         "pass --out DIR to write elsewhere, or delete the folder")
    return folder


def _recorded_run(folder: Path) -> dict[str, str] | None:
    """The ``run`` record of the report in ``folder`` (None when there is none, or it predates run records)."""
    try:
        data = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    run = data.get("run") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in run.items() if k in ("key", "command")} if isinstance(run, dict) else None


COMMANDS = {"run": _cmd_run, "compare": _cmd_compare, "sweep": _cmd_sweep, "trace": _cmd_trace,
            "plot": _cmd_plot, "validate": _cmd_validate, "list": _cmd_list}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in the report: how to run it again
        if args.command is None:
            parser.print_help()
            return 2
        from archsim.registry import load_plugins

        load_plugins()  # built-ins, then every installed plugin: its models, engines and methods are usable below
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at interpreter exit
        return code
    except ArchsimError as exc:
        print(f"archsim: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except QuantizerError as exc:  # reached archsim untranslated: the same one-line form
        print(f"archsim: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("archsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`archsim list | head`): stop quietly, as Unix tools do
        _silence_stdout()
        return 141


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of a closed pipe prints no second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):  # stdout is no real file (captured in a test): nothing will flush to the pipe
        pass


if __name__ == "__main__":
    sys.exit(main())
