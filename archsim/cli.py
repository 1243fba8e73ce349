"""The ``archsim`` command: parses arguments and calls the API. Errors are one line on stderr with exit status 2
(usage, config, workload, mapping) or 3 (a simulation that could make no progress)."""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from archsim.errors import ArchsimError, UnsupportedModelError, UsageError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from archsim.config.schema import Quant
    from archsim.workloads.ir import Workload
    from archsim.workloads.quant import QuantRequest

DESCRIPTION = """\
archsim: an event-driven, TLM-style simulator of accelerators for quantized Vision Transformers.

Typical use (no data set or weights needed; the model gets random weights):
  archsim run arch_configs/trio.yaml --model efficientvit_b1
  archsim run arch_configs/generic16.yaml --workload examples/workloads/mlp_block.yaml
  archsim trace --model deit_small --out deit_small.json
  archsim compare arch_configs/p2vit.yaml arch_configs/p2vit_fp.yaml --model deit_small
  archsim compare arch_configs/p2vit.yaml --set mapping.pipeline.inter_layer=false --model deit_small
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
    m.add_argument("--batch", type=int, default=1, metavar="N", help="batch size (default: 1)")
    m.add_argument("--checkpoint", metavar="PATH", help="load weights from a local state dict instead of random ones")
    m.add_argument("--no-cache", action="store_true", help="re-trace even if a cached trace exists")
    q = p.add_argument_group("quantization (with --model; default: the config's quant: section)")
    q.add_argument("--quant", metavar="METHOD", help="quantize the model first: fqvit, p2vit, trio, or none for the "
                   "float model with the config's defaults: bit widths")
    q.add_argument("--w-bits", type=int, metavar="N", help="weight bits of the quantizer, 2 to 8 (default: 8)")
    q.add_argument("--a-bits", type=int, metavar="N", help="activation bits of the quantizer, 2 to 8 (default: 8)")
    q.add_argument("--quantized", metavar="FILE.pt", help="a model saved by `quantizer save`: its method, bits and "
                   "per-layer choices (mixed precision) are used; gives the model when --model is omitted")


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
    run.add_argument("--out", metavar="DIR", help="output folder (default: reports/<config>-<model>)")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no summary on stdout")

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

    val = sub.add_parser("validate", help="check an architecture config and print what it describes",
                         description="Load and validate a config; print its engines, buffers and peak throughput.")
    val.add_argument("config", metavar="CONFIG.yaml")
    val.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")

    sub.add_parser("list", help="list zoo models, engine types and op kinds",
                   description="List the models of the zoo, the engine types configs may use, and the IR op kinds.")
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
        flags = [f for f, v in (("--quant", args.quant), ("--w-bits", args.w_bits), ("--a-bits", args.a_bits)) if v]
        if flags:
            raise UsageError(f"{', '.join(flags)} only apply with --model (a saved trace or workload is already "
                             "quantized)")
    if args.batch is not None and args.batch < 1:
        raise UsageError(f"--batch must be a positive integer, got {args.batch}")
    if args.resolution is not None and args.resolution < 1:
        raise UsageError(f"--resolution must be a positive integer, got {args.resolution}")


def _quant_bits(value: int | None, flag: str) -> int | None:
    if value is not None and not 2 <= value <= 8:
        raise UsageError(f"{flag} must be an integer from 2 to 8, got {value}")
    return value


def _quant_request(args: argparse.Namespace, section: Quant | None) -> QuantRequest | None:
    """The quantizer to run before tracing: ``--quantized``, else ``--quant``/``--w-bits``/``--a-bits`` over the
    config's ``quant:`` section (its other keys carry over when ``--quant`` names the same method), else none.
    None too without --model or --quantized: a saved trace or workload is already what it is."""
    from archsim.workloads.quant import QUANT_METHODS, QuantRequest

    if not (args.model or args.quantized):
        return None
    w_bits, a_bits = _quant_bits(args.w_bits, "--w-bits"), _quant_bits(args.a_bits, "--a-bits")
    bits_given = w_bits is not None or a_bits is not None
    if args.quantized:
        if args.quant or bits_given:
            raise UsageError("--quantized fixes the method and the bit widths; drop --quant, --w-bits and --a-bits")
        return QuantRequest(method="", quantized=args.quantized)
    if args.quant is not None and args.quant not in (*QUANT_METHODS, "none"):
        raise UsageError(f"--quant: unknown method {args.quant!r} (known: {', '.join(QUANT_METHODS)}, or none)")
    base = section if section is not None and section.enabled else None
    if args.quant == "none" or (args.quant is None and base is None):
        if bits_given:
            raise UsageError("--w-bits and --a-bits need a quantizer: add --quant METHOD (or a quant: section to "
                             "the config)")
        return None
    method = args.quant or base.method  # type: ignore[union-attr]
    request = (QuantRequest.from_section(base) if base is not None and base.method == method else None) or \
        QuantRequest(method=method)
    return replace(request, w_bits=request.w_bits if w_bits is None else w_bits,
                   a_bits=request.a_bits if a_bits is None else a_bits)


def _load_workload(args: argparse.Namespace, act_bits: int, weight_bits: int, bias_bits: int, scale_kind: str,
                   quant: QuantRequest | None = None, config: str | None = None):
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
        return trace_model(args.model, resolution=args.resolution, batch=args.batch, act_bits=act_bits,
                           weight_bits=weight_bits, bias_bits=bias_bits, scale_kind=scale_kind,
                           checkpoint=args.checkpoint, cache=not args.no_cache, quant=quant)
    except UnsupportedModelError as exc:
        if config is None or args.quant is not None or args.quantized:
            raise
        raise UsageError(f"{exc.detail}; pass --quant METHOD, or --quant none for the float graph",
                         source=config, key="quant.method") from None


def _cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from archsim.api import run_stages
    from archsim.config import load_config
    from archsim.report import write_all
    from archsim.report.console import format_summary

    _check_workload_args(args)
    cfg = load_config(args.config, args.set)
    d = cfg.raw.defaults
    quant = _quant_request(args, cfg.raw.quant)
    # the bar shows on a terminal only (disable=None), so logs and pipes stay clean
    with tqdm(total=4, desc="trace", unit="stage", file=sys.stderr, disable=True if args.quiet else None,
              leave=False) as bar:
        t0 = time.perf_counter()
        workload = _load_workload(args, d.act_bits, d.weight_bits, d.bias_bits, d.scale_kind, quant, args.config)
        t_trace = time.perf_counter() - t0
        bar.update(1)
        model = str(workload.meta.get("model", workload.name))
        out = Path(args.out) if args.out else Path("reports") / f"{cfg.name}-{_slug(model)}"
        _make_folder(out, "--out")  # fail before simulating, not after
        bar.set_description("map+simulate")
        t1 = time.perf_counter()
        result = run_stages(cfg, workload, progress=bar)
        t_sim = time.perf_counter() - t1
        bar.set_description("report")
        host = {"python": platform.python_version(), "machine": platform.machine(),
                "wall_seconds": {"trace": round(t_trace, 3), "simulate": round(t_sim, 3)}}
        try:
            write_all(result, out, host=host)
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot write the report ({exc.strerror or exc})") from None
        bar.update(1)
    if not args.quiet:
        print(format_summary(result, out))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from archsim.api import run_stages
    from archsim.compare import rows, variants
    from archsim.config import load_config
    from archsim.report.compare import format_markdown, write_compare

    _check_workload_args(args)
    plan = variants(args.configs, args.set)
    cfgs = [load_config(v.config, v.overrides) for v in plan]  # every config is checked before anything runs
    results = []
    workloads: dict[str, Workload] = {}  # an ablation's variants share one workload: load it once
    for v, cfg in zip(plan, cfgs):
        d = cfg.raw.defaults
        quant = _quant_request(args, cfg.raw.quant)
        key = json.dumps([d.act_bits, d.weight_bits, d.bias_bits, d.scale_kind, quant and quant.to_dict()])
        if key not in workloads:
            workloads[key] = _load_workload(args, d.act_bits, d.weight_bits, d.bias_bits, d.scale_kind, quant,
                                            v.config)
        results.append((v, run_stages(cfg, workloads[key])))
    model = str(results[0][1].model)
    out = Path(args.out) if args.out else Path("reports") / f"compare-{_slug(model)}"
    _make_folder(out, "--out")
    table = rows(results)
    try:
        csv_path, md_path = write_compare(table, model, out)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write the table ({exc.strerror or exc})") from None
    if not args.quiet:
        print(format_markdown(table, model), end="")
        print(f"\nwritten: {csv_path}, {md_path}")
    return 0


def _cmd_trace(args: argparse.Namespace) -> int:
    from archsim.config import load_config

    _check_workload_args(args)
    section = None
    if args.config:
        raw = load_config(args.config).raw
        d, section = raw.defaults, raw.quant
        bits = (d.act_bits, d.weight_bits, d.bias_bits, d.scale_kind)
    else:
        bits = (8, 8, 32, "none")
    quant = _quant_request(args, section)
    w = _load_workload(args, *bits, quant=quant, config=args.config)
    _make_folder(Path(args.out).parent, "--out")
    try:
        w.save(args.out)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot write ({exc.strerror or exc})") from None
    if not args.quiet:
        quant = w.meta.get("quant")
        how = f", quantized by {quant['method']} W{quant['w_bits']}A{quant['a_bits']}" if isinstance(quant, dict) else ""
        print(f"{args.out}: {len(w.ops)} ops, {w.total_macs / 1e9:.3f} GMACs{how}, kinds {w.op_kinds()}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from archsim.config import load_config
    from archsim.config.schema import MacArrayBase

    cfg = load_config(args.config, args.set)
    peak = sum(e.peak_macs_per_cycle for e in cfg.engines.values()
               if isinstance(e, MacArrayBase) and not e.adder_tree)
    print(f"{cfg.source}: valid ({cfg.name}, {cfg.clock_mhz:g} MHz)")
    for name, e in cfg.engines.items():
        extra = f", {e.peak_macs_per_cycle} MACs/cycle" if e.peak_macs_per_cycle else ""
        if isinstance(e, MacArrayBase) and e.adder_tree:
            extra += " (adder tree: not in the peak)"
        print(f"  engine {name}: {e.type}{extra}")
    for name, b in cfg.buffers.items():
        print(f"  buffer {name}: {b.capacity_kib:g} KiB, {b.bytes_per_cycle:g} B/cycle, holds {', '.join(b.holds)}")
    dram = cfg.raw.dram
    print(f"  dram: {dram.type}, {dram.channels} x {dram.bandwidth_gbps:g} GB/s")
    print(f"  peak: {peak} MACs/cycle = {2 * peak * cfg.clock_mhz / 1e3:g} GOPS")
    return 0


def _cmd_list(_: argparse.Namespace) -> int:
    from archsim.components.registry import known_types
    from archsim.workloads.ir import OP_KINDS

    try:
        from archsim.workloads.zoo import list_models

        models = ", ".join(list_models())
    except ImportError as exc:  # torch or timm missing
        models = f"(unavailable: {exc})"
    print(f"models: {models}")
    print(f"engine types: {', '.join(known_types())}")
    print(f"op kinds: {', '.join(sorted(OP_KINDS))}")
    return 0


def _make_folder(path: Path, option: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot create the folder ({exc.strerror or exc})") from None


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


COMMANDS = {"run": _cmd_run, "compare": _cmd_compare, "trace": _cmd_trace, "validate": _cmd_validate, "list": _cmd_list}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return COMMANDS[args.command](args)
    except ArchsimError as exc:
        print(f"archsim: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("archsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
