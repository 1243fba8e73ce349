"""Offline end-to-end accuracy check of the quantizers on a real data set (scikit-learn's handwritten digits).

No ImageNet and no pretrained weights can be downloaded here, so this benchmark trains two small models of the
families the methods target on the digits data set that scikit-learn ships (1,797 8x8 images, 10 classes,
upsampled to 32x32 RGB): a small DeiT (timm VisionTransformer) and a small EfficientViT-B-style model (timm
EfficientVit). It caches the trained weights, then prints the float accuracy next to each method at W8A8, W4A8,
W4A4 and mixed precision, on a held-out test split (PackQViT's rows include its quantization-aware training: 300
steps on the calibration images, about 4 minutes each). This is the project's honest accuracy check; ImageNet
figures need real data (`quantizer eval MODEL --data DIR`).

    pip install -e ".[bench]"
    python benchmarks/quant_accuracy.py            # trains once (one thread), then evaluates: about 20 minutes
    python benchmarks/quant_accuracy.py --quick    # a fast smoke run: few epochs, small calibration
    python benchmarks/quant_accuracy.py --model tiny_deit --rows "FQ-ViT W8A8"   # float + the rows matching

The figures are the same bit for bit on every x86-64 CPU: the script pins every kernel choice that depends on the
CPU before torch loads (``PINNED_ENV``, ``pin_torch``) and prints a digest of each trained model's weights.
"""
from __future__ import annotations

import os
import sys

#: Torch threads for training and evaluation. Parallel float reductions round differently with the thread count, so
#: the trained weights (and the table) would change with the machine's cores; one thread makes them independent of it.
THREADS = 1
#: Environment read when torch and its libraries load. Each knob picks kernels by the CPU's vector instructions, and
#: kernels of different widths sum in a different order or fuse multiply-adds, so the trained weights (and the table)
#: changed with the CPU (docs/quantization.md). Pinned to code paths every x86-64 CPU runs the same way:
#: ATen's kernels built for the x86-64 baseline instead of its AVX2 or AVX-512 builds; MKL's BLAS on its SSE2 branch
#: without approximate reciprocals (Conditional Numerical Reproducibility, the branch meant to agree across Intel and
#: compatible CPUs); glibc's libm without its FMA variants (built from the same source with fused multiply-adds, so
#: they may round differently); one thread. oneDNN and NNPACK, which pick kernels by CPU with no such switch, are
#: turned off in ``pin_torch``.
PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA",
    "OMP_NUM_THREADS": str(THREADS),
    "MKL_NUM_THREADS": str(THREADS),
}


def _pinned(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` with ``PINNED_ENV`` applied (glibc's tunables are appended to any the user set)."""
    env = {**environ, **PINNED_ENV}
    user = environ.get("GLIBC_TUNABLES", "")
    if user and PINNED_ENV["GLIBC_TUNABLES"] not in user.split(":"):
        env["GLIBC_TUNABLES"] = f"{user}:{PINNED_ENV['GLIBC_TUNABLES']}"
    elif user:
        env["GLIBC_TUNABLES"] = user  # pinned already (by the restart below)
    return env


if __name__ == "__main__" and _pinned(dict(os.environ)) != dict(os.environ):
    # The dynamic loader reads GLIBC_TUNABLES at process start, so the pins need a fresh process: restart this
    # script with them before anything loads torch.
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], _pinned(dict(os.environ)))

import argparse  # noqa: E402  (after the re-exec above)
import hashlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

SIDE = 32  # digits are upsampled from 8x8 to 32x32


def pin_torch() -> str:
    """Set the torch flags that complete ``PINNED_ENV``; returns a one-line description of the kernels in use."""
    torch.set_num_threads(THREADS)
    torch.backends.mkldnn.enabled = False  # oneDNN convolutions pick AVX2 / AVX-512 kernels by CPU
    torch.backends.nnpack.set_flags(False)  # NNPACK (inference convolutions) picks AVX2 kernels by CPU
    torch.use_deterministic_algorithms(True)
    env = {key: os.environ.get(key, "(unset)") for key in PINNED_ENV}
    return (f"kernels: ATen {torch.backends.cpu.get_cpu_capability()}, MKL_CBWR={env['MKL_CBWR']}, "
            f"GLIBC_TUNABLES={env['GLIBC_TUNABLES']}, oneDNN and NNPACK off, {torch.get_num_threads()} thread, "
            f"torch {torch.__version__}")


@dataclass(frozen=True)
class TinyModel:
    """A small model of one family, its builder and training recipe."""

    name: str
    family: str
    build: Callable[[], nn.Module]
    epochs: int
    lr: float


def _tiny_deit() -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=SIDE, patch_size=4, embed_dim=64, depth=4, num_heads=4, mlp_ratio=4,
                             num_classes=10)


def _tiny_efficientvit() -> nn.Module:
    from timm.models.efficientvit_mit import EfficientVit

    return EfficientVit(in_chans=3, widths=(8, 16, 32, 64, 128), depths=(1, 1, 1, 1, 1), head_dim=16,
                        head_widths=(256, 256), num_classes=10)


MODELS = [
    TinyModel("tiny_deit", "vit", _tiny_deit, epochs=40, lr=1e-3),
    TinyModel("tiny_efficientvit", "efficientvit", _tiny_efficientvit, epochs=40, lr=2e-3),
]

@dataclass(frozen=True)
class Setting:
    """One row of the table: a method at some bit widths, with its flags and options."""

    label: str
    method: str
    w_bits: int
    a_bits: int = 8
    mixed: bool = False
    ptf_lis: bool = False  # FQ-ViT's PTF + integer LayerNorm and Log-Int-Softmax (P2-ViT always has them)
    options: tuple[tuple[str, Any], ...] = ()


#: Rows per family; "FP scales" is P2-ViT's recipe with float scales (its paper's baseline for the PoT claim).
SETTINGS = {
    "vit": [Setting("FQ-ViT W8A8", "fqvit", 8, ptf_lis=True), Setting("FQ-ViT W4A8", "fqvit", 4, ptf_lis=True),
            Setting("P2-ViT W8A8", "p2vit", 8, ptf_lis=True), Setting("P2-ViT W4A8", "p2vit", 4, ptf_lis=True),
            Setting("P2-ViT W4A8 FP scales", "p2vit", 4, ptf_lis=True, options=(("scale_rounding", "float"),)),
            Setting("P2-ViT mixed", "p2vit", 4, mixed=True, ptf_lis=True),
            Setting("FQ-ViT W4A4", "fqvit", 4, a_bits=4, ptf_lis=True),
            Setting("P2-ViT W4A4", "p2vit", 4, a_bits=4, ptf_lis=True),
            Setting("PackQViT W8A8 (QAT)", "packqvit", 8),
            Setting("PackQViT W4A4 PTQ init", "packqvit", 4, a_bits=4, options=(("qat_steps", 0),)),
            Setting("PackQViT W4A4 (QAT)", "packqvit", 4, a_bits=4)],
    "efficientvit": [Setting("Trio-ViT W8A8", "trio", 8), Setting("Trio-ViT W4A8", "trio", 4)],
}


def digits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, test images, test labels): a stratified 80/20 split, normalised RGB 32x32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    x = (x - 0.5) / 0.5
    y = torch.tensor(data.target, dtype=torch.long)
    idx = torch.arange(len(y)).numpy()
    tr, te = train_test_split(idx, test_size=0.2, random_state=seed, stratify=y.numpy())
    return x[tr], y[tr], x[te], y[te]


def cache_dir() -> Path:
    base = os.environ.get("ARCHSIM_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "archsim") / "bench"


def _key(spec: TinyModel, epochs: int, seed: int) -> str:
    text = json.dumps({"name": spec.name, "epochs": epochs, "lr": spec.lr, "seed": seed, "torch": torch.__version__,
                       "threads": THREADS, "env": {key: os.environ.get(key) for key in PINNED_ENV},
                       "onednn": torch.backends.mkldnn.enabled})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def trained(spec: TinyModel, xtr: torch.Tensor, ytr: torch.Tensor, epochs: int, seed: int) -> nn.Module:
    """The model trained on the digits training split, from the cache when present."""
    path = cache_dir() / f"{spec.name}-{_key(spec, epochs, seed)}.pt"
    torch.manual_seed(seed)
    model = spec.build()
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(order), 64):
            b = order[i:i + 64]
            loss = F.cross_entropy(model(xtr[b]), ytr[b], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    return model


def weights_digest(model: nn.Module) -> str:
    """The first 12 hex digits of a SHA-256 over the model's state dict: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        h.update(name.encode())
        h.update(value.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    correct = sum(int((model(x[i:i + 256]).argmax(1) == y[i:i + 256]).sum()) for i in range(0, len(y), 256))
    return 100.0 * correct / len(y)


def quantized_accuracy(spec: TinyModel, float_model: nn.Module, setting: Setting, xtr: torch.Tensor,
                       xte: torch.Tensor, yte: torch.Tensor, calib_batches: int, seed: int, quick: bool) -> float:
    """Accuracy of a fresh copy of the float model quantized per ``setting`` (calibration on training images)."""
    from quantizer.methods import QuantConfig, get_method

    model = spec.build()
    model.load_state_dict(float_model.state_dict())
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(xtr), generator=gen)
    calib = [xtr[order[i * 32:(i + 1) * 32]] for i in range(calib_batches)]
    holdout = [xtr[order[-256:]]]  # searches score on training images, never on the test split
    options = dict(setting.options)
    if setting.mixed and quick:
        options.update(mixed_coarse=10, mixed_population=4, mixed_iters=1, mixed_children=3, hessian_samples=2)
    if setting.method == "packqvit" and quick:
        options.setdefault("qat_steps", 20)  # the smoke run only checks that QAT runs
    cfg = QuantConfig(method=setting.method, w_bits=setting.w_bits, a_bits=setting.a_bits, mixed=setting.mixed,
                      ptf=setting.ptf_lis, lis=setting.ptf_lis, seed=seed, options=options)
    get_method(setting.method).quantize(model, calib, cfg, holdout)
    return accuracy(model.eval(), xte, yte)


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a regular expression: {text!r} ({exc})") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few epochs and little calibration: a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", action="append", choices=[m.name for m in MODELS],
                        help="only this model (repeatable; default: all)")
    parser.add_argument("--rows", metavar="REGEX", type=_regex,
                        help="only the quantized rows whose label matches (the float row always)")
    parser.add_argument("--json", metavar="OUT", help="also write the table as JSON")
    args = parser.parse_args()
    kernels = pin_torch()
    xtr, ytr, xte, yte = digits(args.seed)
    print(f"data: scikit-learn digits, {len(ytr)} train / {len(yte)} test images, {SIDE}x{SIDE} RGB, 10 classes")
    print(kernels)
    rows: list[dict[str, object]] = []
    for spec in MODELS:
        if args.model and spec.name not in args.model:
            continue
        epochs = 3 if args.quick else spec.epochs
        t0 = time.perf_counter()
        model = trained(spec, xtr, ytr, epochs, args.seed)
        float_acc = accuracy(model, xte, yte)
        digest = weights_digest(model)
        print(f"\n{spec.name} ({spec.family}, {sum(p.numel() for p in model.parameters()):,} params, "
              f"{epochs} epochs, weights {digest}, ready in {time.perf_counter() - t0:.1f} s): "
              f"float top-1 {float_acc:.2f}%")
        rows.append({"model": spec.name, "setting": "float", "top1": float_acc, "weights": digest})
        for setting in SETTINGS[spec.family]:
            if args.rows and not args.rows.search(setting.label):
                continue
            t1 = time.perf_counter()
            acc = quantized_accuracy(spec, model, setting, xtr, xte, yte, 2 if args.quick else 8, args.seed,
                                     args.quick)
            print(f"  {setting.label:<22} top-1 {acc:6.2f}%  (drop {float_acc - acc:+.2f})  "
                  f"[{time.perf_counter() - t1:.1f} s]")
            rows.append({"model": spec.name, "setting": setting.label, "top1": acc})
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
