"""The ``archsim`` command: parses arguments and calls the API. Errors are one line on stderr with exit status 2
(usage, config, workload, mapping) or 3 (a simulation that could make no progress)."""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Sequence

from archsim.errors import ArchsimError, UsageError

DESCRIPTION = """\
archsim: an event-driven, TLM-style simulator of accelerators for quantized Vision Transformers.

Typical use (no data set or weights needed; the model gets random weights):
  archsim run arch_configs/trio.yaml --model efficientvit_b1
  archsim run arch_configs/generic16.yaml --workload examples/workloads/mlp_block.yaml
  archsim trace --model deit_small --out deit_small.json
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
    given = [x for x in (args.model, args.workload, args.trace) if x]
    if len(given) != 1:
        raise UsageError("give exactly one of --model, --workload or --trace")
    if args.batch is not None and args.batch < 1:
        raise UsageError(f"--batch must be a positive integer, got {args.batch}")
    if args.resolution is not None and args.resolution < 1:
        raise UsageError(f"--resolution must be a positive integer, got {args.resolution}")


def _load_workload(args: argparse.Namespace, act_bits: int, weight_bits: int, bias_bits: int, scale_kind: str):
    _check_workload_args(args)
    if args.workload:
        from archsim.workloads.yaml_format import load_yaml_workload

        return load_yaml_workload(args.workload, act_bits=act_bits, weight_bits=weight_bits, bias_bits=bias_bits)
    if args.trace:
        from archsim.workloads.ir import Workload

        return Workload.load(args.trace)
    from archsim.workloads.zoo import trace_model  # imports torch

    return trace_model(args.model, resolution=args.resolution, batch=args.batch, act_bits=act_bits,
                       weight_bits=weight_bits, bias_bits=bias_bits, scale_kind=scale_kind,
                       checkpoint=args.checkpoint, cache=not args.no_cache)


def _cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from archsim.api import run_stages
    from archsim.config import load_config
    from archsim.report import write_all
    from archsim.report.console import format_summary

    _check_workload_args(args)
    cfg = load_config(args.config, args.set)
    d = cfg.raw.defaults
    # the bar shows on a terminal only (disable=None), so logs and pipes stay clean
    with tqdm(total=4, desc="trace", unit="stage", file=sys.stderr, disable=True if args.quiet else None,
              leave=False) as bar:
        t0 = time.perf_counter()
        workload = _load_workload(args, d.act_bits, d.weight_bits, d.bias_bits, d.scale_kind)
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


def _cmd_trace(args: argparse.Namespace) -> int:
    from archsim.config import load_config

    if args.config:
        d = load_config(args.config).raw.defaults
        bits = (d.act_bits, d.weight_bits, d.bias_bits, d.scale_kind)
    else:
        bits = (8, 8, 32, "none")
    w = _load_workload(args, *bits)
    _make_folder(Path(args.out).parent, "--out")
    try:
        w.save(args.out)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot write ({exc.strerror or exc})") from None
    if not args.quiet:
        print(f"{args.out}: {len(w.ops)} ops, {w.total_macs / 1e9:.3f} GMACs, kinds {w.op_kinds()}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from archsim.config import load_config

    cfg = load_config(args.config, args.set)
    peak = sum(e.peak_macs_per_cycle for e in cfg.engines.values())
    print(f"{cfg.source}: valid ({cfg.name}, {cfg.clock_mhz:g} MHz)")
    for name, e in cfg.engines.items():
        extra = f", {e.peak_macs_per_cycle} MACs/cycle" if e.peak_macs_per_cycle else ""
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


COMMANDS = {"run": _cmd_run, "trace": _cmd_trace, "validate": _cmd_validate, "list": _cmd_list}


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
