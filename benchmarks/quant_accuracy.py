"""Offline end-to-end accuracy check of the quantizers on a real data set (scikit-learn's handwritten digits).

No ImageNet and no pretrained weights can be downloaded here, so this benchmark trains two small models of the
families the methods target on the digits data set that scikit-learn ships (1,797 8x8 images, 10 classes,
upsampled to 32x32 RGB): a small DeiT (timm VisionTransformer) and a small EfficientViT-B-style model (timm
EfficientVit). It caches the trained weights, then prints the float accuracy next to each method at W8A8, W4A8,
W4A4 and mixed precision, on a held-out test split (PackQViT's rows include its quantization-aware training: 300
steps on the calibration images, a few minutes). This is the project's honest accuracy check; ImageNet figures need
real data (`quantizer eval MODEL --data DIR`).

    pip install -e ".[bench]"
    python benchmarks/quant_accuracy.py            # trains once (a few minutes, one thread), then evaluates
    python benchmarks/quant_accuracy.py --quick    # a fast smoke run: few epochs, small calibration
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

SIDE = 32  # digits are upsampled from 8x8 to 32x32
#: Torch threads for training and evaluation. Parallel float reductions round differently with the thread count, so
#: the trained weights (and the table) would change with the machine's cores; one thread makes them independent of it.
THREADS = 1


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
                       "threads": THREADS})
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few epochs and little calibration: a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="also write the table as JSON")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    xtr, ytr, xte, yte = digits(args.seed)
    print(f"data: scikit-learn digits, {len(ytr)} train / {len(yte)} test images, {SIDE}x{SIDE} RGB, 10 classes")
    rows: list[dict[str, object]] = []
    for spec in MODELS:
        epochs = 3 if args.quick else spec.epochs
        t0 = time.perf_counter()
        model = trained(spec, xtr, ytr, epochs, args.seed)
        float_acc = accuracy(model, xte, yte)
        print(f"\n{spec.name} ({spec.family}, {sum(p.numel() for p in model.parameters()):,} params, "
              f"{epochs} epochs, ready in {time.perf_counter() - t0:.1f} s): float top-1 {float_acc:.2f}%")
        rows.append({"model": spec.name, "setting": "float", "top1": float_acc})
        for setting in SETTINGS[spec.family]:
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
