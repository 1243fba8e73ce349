"""The ``quantizer`` command: evaluate float and quantized zoo models, save quantized models, list what exists.

Errors from bad input are one line ``quantizer: error: ...`` on stderr with exit status 2 (never a traceback).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from quantizer.data import DEFAULT_CALIB_BATCHSIZE, DEFAULT_CALIB_ITER, DEFAULT_HOLDOUT_ITER
from quantizer.errors import QuantizerError, UsageError
from quantizer.methods.base import OBSERVERS
from quantizer.outputs import check_output_path, write_text_atomic

if TYPE_CHECKING:
    from torch import nn

    from quantizer.data import CalibrationSplit, DataSource
    from quantizer.evaluate import Evaluation
    from quantizer.methods.base import Method, QuantConfig

DESCRIPTION = """\
quantizer: post-training quantization of Vision Transformers (FQ-ViT, P2-ViT, Trio-ViT) on CPU.

Models come from the zoo (quantizer.zoo) with random weights unless --checkpoint gives trained ones. Without --data,
calibration and evaluation use synthetic Gaussian images and the figures are fidelity of the quantized model to
the float model (top-1 agreement, logits cosine, SQNR), not accuracy.

Typical use:
  quantizer eval deit_small --quant --quant-method minmax
  quantizer eval deit_small --checkpoint deit_small.pth --data ~/imagenet --quant --ptf --lis
  quantizer save efficientvit_b1 --method trio --w-bits 8 --a-bits 8 --out b1_w8a8.pt
  quantizer list
"""

DEFAULT_VAL_BATCHSIZE = 32
DEFAULT_SYNTHETIC_VAL_ITER = 4
CALIB_SOURCES = ("train", "gaussian")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are UsageErrors, so every error has the same one-line form."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


# ---- argument groups ----------------------------------------------------------------------------------------------


def _add_model_and_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="a model of the zoo, e.g. deit_small (see `quantizer list`)")
    g = p.add_argument_group("model and data")
    g.add_argument("--data", metavar="DIR", help="ImageNet-style folder with train/<class>/* and val/<class>/*; "
                   "without it, synthetic Gaussian images are used (fidelity, not accuracy)")
    g.add_argument("--checkpoint", metavar="PATH", help="float weights (a local state dict), loaded with strict key "
                   "and shape checking; default: random weights")
    g.add_argument("--resolution", type=_positive_int, metavar="R", help="input resolution (default: the model's, "
                   "e.g. 224)")
    g.add_argument("--seed", type=_non_negative_int, default=0, metavar="N", help="seed of the calibration draw, the "
                   "synthetic images and the method (default: 0)")
    g.add_argument("--calib-batchsize", type=_positive_int, default=DEFAULT_CALIB_BATCHSIZE, metavar="N",
                   help=f"calibration batch size (default: {DEFAULT_CALIB_BATCHSIZE}; FQ-ViT used 100)")
    g.add_argument("--calib-iter", type=_positive_int, default=DEFAULT_CALIB_ITER, metavar="N",
                   help=f"calibration batches, all of them used (default: {DEFAULT_CALIB_ITER}; FQ-ViT used 10)")
    g.add_argument("--calib-data", choices=CALIB_SOURCES, help="calibration images: 'train' (a seeded draw from "
                   "train/ of --data) or 'gaussian' (synthetic N(0, 1) images, data-free) (default: train with "
                   "--data, gaussian without)")


def _add_quant(p: argparse.ArgumentParser, method_required: bool) -> None:
    g = p.add_argument_group("quantization")
    g.add_argument("--method", required=method_required, metavar="M",
                   help="a registered quantization method, e.g. fqvit, p2vit, trio or packqvit (see `quantizer list`)"
                   + ("" if method_required else "; default: fqvit"))
    g.add_argument("--quant-method", choices=OBSERVERS, metavar="OBSERVER",
                   help="activation observer: minmax, ema, percentile or omse (default: minmax)")
    g.add_argument("--ptf", action=argparse.BooleanOptionalAction,
                   help="power-of-two factor for LayerNorm inputs, integer LayerNorm (default: on for p2vit, else off)")
    g.add_argument("--lis", action=argparse.BooleanOptionalAction,
                   help="log-int-softmax, 4-bit log2 attention probabilities (default: on for p2vit, else off)")
    g.add_argument("--mixed", action=argparse.BooleanOptionalAction,
                   help="mixed-precision search, scored on a hold-out of train/, never on val/ (default: off)")
    g.add_argument("--w-bits", type=int, metavar="N", help="weight bits, 2 to 8 (default: 8)")
    g.add_argument("--a-bits", type=int, metavar="N", help="activation bits, 2 to 8 (default: 8)")
    g.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a method-specific option, e.g. --option recon_iters=20000 (repeatable; values are read as "
                   "numbers, true/false or text; see the method's documentation)")
    g.add_argument("--holdout-iter", type=_positive_int, metavar="N",
                   help=f"with --mixed: hold-out batches of --calib-batchsize images drawn from train/, disjoint "
                   f"from calibration (default: {DEFAULT_HOLDOUT_ITER})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="quantizer", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"quantizer (archsim {_version()})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    ev = sub.add_parser(
        "eval", help="evaluate a float model and, with --quant, its quantized version",
        description="Evaluate a zoo model. With --data: top-1/top-5 accuracy on val/ of the float model and, with "
        "--quant, of the quantized model (calibrated on train/). Without --data: synthetic Gaussian images; with "
        "--quant the figures are fidelity to the float model (top-1 agreement, logits cosine, SQNR), not accuracy.")
    _add_model_and_data(ev)
    ev.add_argument("--quant", action="store_true", help="calibrate and quantize the model, then evaluate both")
    _add_quant(ev, method_required=False)
    e = ev.add_argument_group("evaluation")
    e.add_argument("--val-batchsize", type=_positive_int, default=DEFAULT_VAL_BATCHSIZE, metavar="N",
                   help=f"evaluation batch size (default: {DEFAULT_VAL_BATCHSIZE})")
    e.add_argument("--val-iter", type=_positive_int, metavar="N",
                   help=f"evaluation batches (default: all of val/ with --data, {DEFAULT_SYNTHETIC_VAL_ITER} "
                   f"synthetic batches without)")
    e.add_argument("--json", metavar="OUT", help="also write the figures, the QuantConfig and the data mode as JSON")

    sv = sub.add_parser(
        "save", help="quantize a model and save it to one file",
        description="Calibrate and quantize a zoo model (on train/ of --data, or on synthetic images) and save the "
        "quantized model to one file that `quantizer` and archsim can load.")
    _add_model_and_data(sv)
    _add_quant(sv, method_required=True)
    sv.add_argument("--out", required=True, metavar="FILE.pt", help="where to write the quantized model")

    sub.add_parser("list", help="list quantization methods and zoo models",
                   description="List the quantization methods (with the model families they support) and the models "
                   "of the zoo (with their family and preprocessing).")
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("archsim")
    except Exception:  # noqa: BLE001 - a source tree that is not installed
        return "0.0.0+local"


# ---- shared steps -------------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """What eval and save share: the float model, its data source and, when quantizing, the method and config."""

    model_name: str
    resolution: int
    model: "nn.Module"
    data: "DataSource"  # evaluation data
    split: "CalibrationSplit | None"  # calibration and hold-out batches (lazy), when quantizing
    calib_synthetic: bool
    method: "Method | None"
    cfg: "QuantConfig | None"
    weights: str


def _status(message: str) -> None:
    """Progress notes on an interactive terminal only, so pipes and logs carry just the results."""
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)


def _quant_config(args: argparse.Namespace, method: str) -> "QuantConfig":
    from quantizer.core.bits import check_bits
    from quantizer.methods.base import QuantConfig, ptf_lis_flag

    return QuantConfig(
        method=method,
        observer=args.quant_method or "minmax",
        w_bits=check_bits(8 if args.w_bits is None else args.w_bits, "--w-bits"),
        a_bits=check_bits(8 if args.a_bits is None else args.a_bits, "--a-bits"),
        ptf=ptf_lis_flag(args.ptf, method),
        lis=ptf_lis_flag(args.lis, method),
        mixed=bool(args.mixed),
        seed=args.seed,
        options=_parse_options(args.option or []),
    )


def _parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` items to a dict; values through YAML's scalar rules (8 -> int, 0.5 -> float, true -> bool)."""
    import yaml

    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--option {item!r}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            value = text  # lists, mappings, dates ...: keep the text and let the method decide
        options[key] = value
    return options


def _check_unused_quant_options(args: argparse.Namespace) -> None:
    """Quantization options without --quant would be silently ignored: refuse them instead."""
    given = [flag for flag, value in (("--method", args.method), ("--quant-method", args.quant_method),
                                      ("--ptf/--no-ptf", args.ptf), ("--lis/--no-lis", args.lis),
                                      ("--mixed/--no-mixed", args.mixed), ("--w-bits", args.w_bits),
                                      ("--a-bits", args.a_bits), ("--holdout-iter", args.holdout_iter),
                                      ("--calib-data", args.calib_data), ("--option", args.option))
             if value is not None]
    if given:
        raise UsageError(f"{', '.join(given)} only apply with --quant")


def _prepare_out(path: str, option: str, args: argparse.Namespace) -> Path:
    """Fail before the long work if the output cannot be written (see :func:`quantizer.outputs.check_output_path`):
    an empty path, a symlink, a device, a folder, the --checkpoint read, or a place that cannot be created."""
    return check_output_path(path, option, inputs=(args.checkpoint,))


def _setup(args: argparse.Namespace, quant: bool) -> _Run:
    """Validate everything cheap first (bits, names, folders), then build the model and check it fits."""
    from quantizer import zoo
    from quantizer.data import ImageFolderData, SyntheticData, preprocessing_for
    from quantizer.methods.base import check_support, get_method

    cfg = _quant_config(args, args.method or "fqvit") if quant else None
    if args.holdout_iter is not None and cfg is not None and not cfg.mixed:
        raise UsageError("--holdout-iter only applies with --mixed (the hold-out scores the mixed-precision search)")
    if args.calib_data == "train" and not args.data:
        raise UsageError("--calib-data train needs --data DIR (without it, calibration uses synthetic images)")
    spec = zoo.model_spec(args.model)
    resolution = spec.check_resolution(spec.default_resolution if args.resolution is None else args.resolution)
    method = get_method(cfg.method) if cfg is not None else None
    data: DataSource
    if args.data:
        data = ImageFolderData(args.data, preprocessing_for(args.model), resolution, seed=args.seed)
    model, input_shape = zoo.build(args.model, resolution)
    if args.checkpoint:
        zoo.load_checkpoint(model, args.checkpoint, model=args.model)
        weights = f"checkpoint {args.checkpoint}"
    else:
        weights = "random weights (timm init, torch seed 0); pass --checkpoint for trained ones"
    synthetic = SyntheticData(input_shape[1:], seed=args.seed)
    if not args.data:
        data = synthetic
    calib = synthetic if args.calib_data == "gaussian" else data
    split = None
    if cfg is not None and method is not None:
        check_support(method, model, args.model)
        holdout = (args.holdout_iter or DEFAULT_HOLDOUT_ITER) if cfg.mixed else 0
        split = calib.calibration(args.calib_batchsize, args.calib_iter, holdout_batches=holdout)
    classes = getattr(model, "num_classes", None)
    if data.num_labels is not None and isinstance(classes, int) and data.num_labels > classes:
        raise UsageError(f"data folder {args.data}: labels need {data.num_labels} outputs but {args.model} has "
                         f"{classes}")
    return _Run(args.model, resolution, model, data, split, calib.synthetic, method, cfg, weights)


def _quantize(run: _Run) -> tuple["nn.Module", int, float]:
    """A calibrated, quantized copy of the float model: (model, calibration images, seconds)."""
    import torch

    assert run.method is not None and run.cfg is not None and run.split is not None
    split = run.split
    _status(f"calibrating {run.cfg.method} on {split.calib.images} {_calib_kind(run)} images ...")
    qmodel = copy.deepcopy(run.model)
    torch.manual_seed(run.cfg.seed)
    t0 = time.perf_counter()
    qmodel = run.method.quantize(qmodel, split.calib, run.cfg, split.holdout)
    return qmodel.eval(), split.calib.images, time.perf_counter() - t0


def _calib_kind(run: _Run) -> str:
    return "synthetic" if run.calib_synthetic else "train"


def _describe_cfg(cfg: "QuantConfig") -> str:
    flags = ", ".join(f"{name} {'on' if getattr(cfg, name) else 'off'}" for name in ("ptf", "lis", "mixed"))
    options = "".join(f", {k}={v}" for k, v in cfg.options.items())
    return f"{cfg.method}: observer {cfg.observer}, W{cfg.w_bits}/A{cfg.a_bits}, {flags}{options}"


# ---- commands -----------------------------------------------------------------------------------------------------


def _cmd_eval(args: argparse.Namespace) -> int:
    if not args.quant:
        _check_unused_quant_options(args)
    json_out = _prepare_out(args.json, "--json", args) if args.json is not None else None
    run = _setup(args, quant=args.quant)
    qmodel, calib_images, calib_seconds = None, 0, 0.0
    if args.quant:
        qmodel, calib_images, calib_seconds = _quantize(run)
    n_val = args.val_iter if args.val_iter is not None or not run.data.synthetic else DEFAULT_SYNTHETIC_VAL_ITER
    batches = run.data.evaluation(args.val_batchsize, n_val)
    result = _evaluate(run, batches, qmodel)
    print(_format_eval(run, result, calib_images, calib_seconds, args))
    if json_out is not None:
        _write_json(json_out, _eval_record(run, result, calib_images, calib_seconds, args))
    return 0


def _evaluate(run: _Run, batches: Any, qmodel: "nn.Module | None") -> "Evaluation":
    from tqdm import tqdm

    from quantizer.evaluate import evaluate

    _status(f"evaluating on {batches.images} {'synthetic' if run.data.synthetic else 'val'} images ...")
    with tqdm(total=batches.images, unit="img", file=sys.stderr, leave=False, disable=None) as bar:
        return evaluate(run.model, batches, qmodel, progress=bar.update)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _format_eval(run: _Run, ev: "Evaluation", calib_images: int, calib_seconds: float,
                 args: argparse.Namespace) -> str:
    lines = [f"model      {run.model_name} @{run.resolution}, {run.weights}",
             f"data       {run.data.describe()}"]
    if run.cfg is not None:
        lines.append(f"quantizer  {_describe_cfg(run.cfg)}")
        lines.append(f"           calibrated on {calib_images} {_calib_kind(run)} images "
                     f"({args.calib_iter} x {args.calib_batchsize}) in {calib_seconds:.1f} s")
    lines.append("")
    if ev.float_accuracy is not None:
        lines.append(f"{'':10} {'images':>7} {'top-1':>8} {'top-5':>8} {'seconds':>8}")
        rows = [("float", ev.float_accuracy, ev.seconds.get("float", 0.0))]
        if ev.quant_accuracy is not None:
            rows.append(("quantized", ev.quant_accuracy, ev.seconds.get("quantized", 0.0)))
        for name, acc, sec in rows:
            lines.append(f"{name:10} {acc.images:>7} {_pct(acc.top1):>8} {_pct(acc.top5):>8} {sec:>8.1f}")
    else:
        lines.append("SYNTHETIC DATA: no labels, so no accuracy.")
        lines.append("The figures below are fidelity of the quantized model to the float model." if ev.fidelity else
                     "Add --quant to measure a quantized model's fidelity to it, or --data DIR for accuracy.")
        lines.append(f"{'':10} {'images':>7} {'seconds':>8} {'images/s':>9}")
        for name, sec in ev.seconds.items():
            rate = ev.images / sec if sec > 0 else math.inf
            lines.append(f"{name:10} {ev.images:>7} {sec:>8.1f} {rate:>9.1f}")
    if ev.fidelity is not None:
        f = ev.fidelity
        lines.append("")
        lines.append(f"fidelity to float ({f.images} images): top-1 agreement {_pct(f.top1_agreement)}, "
                     f"logits cosine {f.cosine:.4f}, SQNR {f.sqnr_db:.2f} dB")
    return "\n".join(lines)


def _eval_record(run: _Run, ev: "Evaluation", calib_images: int, calib_seconds: float,
                 args: argparse.Namespace) -> dict[str, Any]:
    record = {
        "tool": "quantizer eval",
        "version": _version(),
        "model": run.model_name,
        "resolution": run.resolution,
        "weights": args.checkpoint or "random",
        "data": run.data.to_dict(),
        "metrics": "accuracy" if not run.data.synthetic else "fidelity to the float model (synthetic data)",
        "quant_config": run.cfg.to_dict() if run.cfg is not None else None,
        "calibration": ({"source": _calib_kind(run), "images": calib_images, "batches": args.calib_iter,
                         "batch_size": args.calib_batchsize, "seconds": round(calib_seconds, 3)}
                        if run.cfg is not None else None),
        **ev.to_dict(),
    }
    return record


def _json_safe(value: Any) -> Any:
    """Strict JSON: non-finite floats (SQNR of identical logits is inf) become the strings "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_json(path: Path, record: dict[str, Any]) -> None:
    try:
        write_text_atomic(path, json.dumps(_json_safe(record), indent=2, allow_nan=False) + "\n")
    except OSError as exc:
        raise UsageError(f"--json {path}: cannot write ({exc.strerror or exc})") from None


def _cmd_save(args: argparse.Namespace) -> int:
    from quantizer.core.spec import collect_specs
    from quantizer.io import save_quantized

    out = _prepare_out(args.out, "--out", args)
    run = _setup(args, quant=True)
    qmodel, calib_images, seconds = _quantize(run)
    assert run.cfg is not None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # only now: a failed run leaves no empty folder
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    save_quantized(out, run.model_name, run.resolution, run.cfg, qmodel)  # atomic: temporary file + os.replace
    size_mb = out.stat().st_size / 1e6
    print(f"{out}: {run.model_name} @{run.resolution}, {_describe_cfg(run.cfg)}; "
          f"{len(collect_specs(qmodel))} quantized modules; calibrated on {calib_images} {_calib_kind(run)} "
          f"images in {seconds:.1f} s; {size_mb:.1f} MB")
    return 0


def _cmd_list(_: argparse.Namespace) -> int:
    from quantizer import zoo
    from quantizer.data import preprocessing_for
    from quantizer.methods.base import all_methods, method_description
    from quantizer.models import family_of

    methods_by_name = all_methods()
    print("methods:")
    if not methods_by_name:
        print("  (none registered yet)")
    for name, cls in methods_by_name.items():
        summary = method_description(name)
        summary = f"  {summary}" if summary else ""
        print(f"  {name:10} families: {', '.join(cls.families) or '-':18}{summary}")
    print("models:")
    for name in zoo.list_models():
        built = zoo.build(name, device="meta")
        family = family_of(built[0]) if isinstance(built, tuple) else None
        methods = [m for m, cls in methods_by_name.items() if family in cls.families]
        spec = zoo.model_spec(name)
        print(f"  {name:16} family {family or '-':13} {spec.default_resolution} px, "
              f"{preprocessing_for(name).name} preprocessing; methods: {', '.join(methods) or '-'}")
    return 0


COMMANDS = {"eval": _cmd_eval, "save": _cmd_save, "list": _cmd_list}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at interpreter exit
        return code
    except QuantizerError as exc:
        print(f"quantizer: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("quantizer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`quantizer list | head`): stop quietly with 128 + SIGPIPE
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
    except (OSError, ValueError):  # stdout is no real file (captured in a test)
        pass


if __name__ == "__main__":
    sys.exit(main())
