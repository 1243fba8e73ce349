"""Calibration, hold-out and evaluation data: an ImageNet-style folder or seeded synthetic images.

Both sources hand out *lazy* batch sequences: a batch is decoded (or generated) when it is indexed, so a large
calibration set never has to sit in memory and a method may iterate it as often as it likes, always getting the same
tensors. Everything is deterministic given the seed.

* :class:`ImageFolderData` reads ``DIR/train/<class>/*`` and ``DIR/val/<class>/*`` with the preprocessing of the
  model's family (see :data:`PREPROCESSING`). Calibration and hold-out images come from ``train/`` with the
  evaluation transform (no augmentation) and are disjoint; ``val/`` is only ever used for the final evaluation, so a
  method that searches (e.g. mixed precision) never sees it.
* :class:`SyntheticData` draws N(0, 1) images of the model's input shape (in normalized space, like P2-ViT's noise
  mode). It has no labels: evaluations on it measure fidelity to the float model, never accuracy.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Generic, Iterator, Literal, Optional, Protocol, Sequence, TypeVar, overload

from quantizer.errors import UsageError

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "DEFAULT_CALIB_BATCHSIZE", "DEFAULT_CALIB_ITER", "DEFAULT_HOLDOUT_ITER", "PREPROCESSING", "Batches", "CalibrationSplit", "DataSource", "ImageFolderData", "LabelledBatch", "Preprocessing",
    "SyntheticData", "preprocessing_for",
]

T = TypeVar("T")
LabelledBatch = tuple["torch.Tensor", Optional["torch.Tensor"]]  # (images, labels or None when synthetic)

#: Calibration defaults of ``quantizer eval``/``save`` (and of archsim's in-process mixed-precision calibration):
#: batch size, calibration batches, hold-out batches for the mixed-precision search.
DEFAULT_CALIB_BATCHSIZE = 32
DEFAULT_CALIB_ITER = 4
DEFAULT_HOLDOUT_ITER = 4

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------------------------
# Preprocessing per model family
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocessing:
    """Evaluation transform: bicubic resize of the short side to size/crop_pct, center crop, normalize."""

    name: str
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rounding: Literal["floor", "ceil"] = "floor"  # how size/crop_pct becomes a pixel count

    def resize_size(self, size: int) -> int:
        """Short-side length before the center crop (e.g. 256 for DeiT at 224, 236 for EfficientViT at 224)."""
        ratio = size / self.crop_pct
        # the epsilon keeps exact ratios such as 224/0.875 = 256 from landing one pixel off through float error
        return math.floor(ratio + 1e-6) if self.rounding == "floor" else math.ceil(ratio - 1e-6)

    def transform(self, size: int) -> Callable[["Image.Image"], "torch.Tensor"]:
        from torchvision import transforms

        return transforms.Compose([
            transforms.Resize(self.resize_size(size), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(self.mean, self.std),
        ])

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "crop_pct": self.crop_pct, "mean": list(self.mean), "std": list(self.std),
                "resize_rounding": self.rounding, "interpolation": "bicubic"}


#: The evaluation transforms of the original tools (FQ-ViT for DeiT/ViT/Swin, Trio-ViT for EfficientViT).
PREPROCESSING: dict[str, Preprocessing] = {
    "deit": Preprocessing("deit", 0.875, IMAGENET_MEAN, IMAGENET_STD),
    "vit": Preprocessing("vit", 0.9, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "swin": Preprocessing("swin", 0.9, IMAGENET_MEAN, IMAGENET_STD),
    "efficientvit": Preprocessing("efficientvit", 0.95, IMAGENET_MEAN, IMAGENET_STD, rounding="ceil"),
}


def preprocessing_for(model_name: str) -> Preprocessing:
    """The transform of a zoo model, chosen by its name (DeiT and ViT share a family but not a transform).

    Names outside the four families get the DeiT transform (the common ImageNet default: crop 0.875, ImageNet
    mean/std).
    """
    for prefix in ("efficientvit", "deit", "swin", "vit"):
        if model_name.startswith(prefix):
            return PREPROCESSING[prefix]
    return PREPROCESSING["deit"]


# ---------------------------------------------------------------------------------------------------------------
# Lazy batch sequences
# ---------------------------------------------------------------------------------------------------------------
class Batches(Sequence[T], Generic[T]):
    """``n`` batches made on demand by ``make(i)``: random access, deterministic, nothing held in memory."""

    def __init__(self, n: int, make: Callable[[int], T], images: int) -> None:
        self._n = n
        self._make = make
        self.images = images  # total number of images over all batches

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> T: ...

    @overload
    def __getitem__(self, i: slice) -> list[T]: ...

    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"batch {i} out of range (0..{self._n - 1})")
        return self._make(i)

    def __iter__(self) -> Iterator[T]:
        return (self._make(i) for i in range(self._n))


@dataclass(frozen=True)
class CalibrationSplit:
    """Calibration batches and, disjoint from them, hold-out batches for methods that search (P14)."""

    calib: Batches["torch.Tensor"]
    holdout: Batches["torch.Tensor"]


class DataSource(Protocol):
    """What the CLI needs from a data source (``synthetic`` and ``num_labels`` are read-only to it)."""

    @property
    def synthetic(self) -> bool: ...

    @property
    def num_labels(self) -> int | None: ...  # model output width the labels index into (None without labels)

    def describe(self) -> str: ...

    def to_dict(self) -> dict[str, object]: ...

    def calibration(self, batch_size: int, n_batches: int, holdout_batches: int = 0) -> CalibrationSplit: ...

    def evaluation(self, batch_size: int, n_batches: int | None = None) -> Batches[LabelledBatch]: ...


def _check_counts(batch_size: int, n_batches: int | None, what: str) -> None:
    """batch_size >= 1 and n_batches >= 0 (None = all), else a one-line UsageError."""
    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not is_int(batch_size) or batch_size < 1:
        raise UsageError(f"{what} batch size must be a positive integer, got {batch_size!r}")
    if n_batches is not None and (not is_int(n_batches) or n_batches < 0):
        raise UsageError(f"{what} number of batches must be a non-negative integer, got {n_batches!r}")


def _stream_seed(seed: int, *stream: int) -> int:
    """A 63-bit seed for one named stream of ``seed`` (independent streams, stable across runs and platforms)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, *stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


_CALIB, _HOLDOUT, _EVAL = 0, 1, 2  # stream ids


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


# ---------------------------------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------------------------------
class SyntheticData:
    """Seeded Gaussian N(0, 1) images of shape ``(C, H, W)``; no labels, so only fidelity can be measured."""

    synthetic = True
    num_labels = None

    def __init__(self, image_shape: Sequence[int], seed: int = 0) -> None:
        self.image_shape = tuple(int(s) for s in image_shape)
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise UsageError(f"synthetic images need a (C, H, W) shape, got {self.image_shape}")
        self.seed = _check_seed(seed)

    def describe(self) -> str:
        c, h, w = self.image_shape
        return f"synthetic Gaussian N(0, 1) images {c}x{h}x{w} (seed {self.seed}), no labels"

    def to_dict(self) -> dict[str, object]:
        return {"mode": "synthetic", "distribution": "normal(0, 1)", "image_shape": list(self.image_shape),
                "seed": self.seed}

    def _batches(self, stream: int, batch_size: int, n_batches: int) -> Batches["torch.Tensor"]:
        import torch

        def make(i: int) -> torch.Tensor:
            gen = torch.Generator().manual_seed(_stream_seed(self.seed, stream, i))
            return torch.randn((batch_size, *self.image_shape), generator=gen)

        return Batches(n_batches, make, batch_size * n_batches)

    def calibration(self, batch_size: int, n_batches: int, holdout_batches: int = 0) -> CalibrationSplit:
        _check_counts(batch_size, n_batches, "calibration")
        _check_counts(batch_size, holdout_batches, "hold-out")
        return CalibrationSplit(self._batches(_CALIB, batch_size, n_batches),
                                self._batches(_HOLDOUT, batch_size, holdout_batches))

    def evaluation(self, batch_size: int, n_batches: int | None = None) -> Batches[LabelledBatch]:
        if n_batches is None:
            raise UsageError("synthetic evaluation needs a number of batches")
        _check_counts(batch_size, n_batches, "evaluation")
        images = self._batches(_EVAL, batch_size, n_batches)
        return Batches(n_batches, lambda i: (images[i], None), images.images)


# ---------------------------------------------------------------------------------------------------------------
# ImageNet-style folder
# ---------------------------------------------------------------------------------------------------------------
def _load_image(path: str) -> "Image.Image":
    """Open an image as RGB; an unreadable file is the user's input error and names the file."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"image {path}: cannot be read ({detail})") from None


def _imagenet_wnids() -> list[str]:
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


class ImageFolderData:
    """``root/train/<class>/*`` and ``root/val/<class>/*`` with the evaluation transform of ``preprocessing``.

    Labels: if every class folder is an ImageNet-1k synset id (``n01440764`` ...), a class gets its standard
    ImageNet index, so a subset of ImageNet is scored correctly against a 1000-class model; otherwise classes are
    numbered in sorted order. The folder layout is checked on construction (missing split, no classes, an empty
    class, different classes in train and val); unreadable images are reported when they are first read.
    """

    synthetic = False

    def __init__(self, root: str | os.PathLike[str], preprocessing: Preprocessing, size: int, seed: int = 0) -> None:
        from torchvision.datasets import ImageFolder

        self.root = Path(root).expanduser()
        self.preprocessing = preprocessing
        self.size = size
        self.seed = _check_seed(seed)
        if not self.root.is_dir():
            raise UsageError(f"data folder {self.root}: no such folder")
        train_classes = self._classes("train")
        val_classes = self._classes("val")
        if train_classes != val_classes:
            only_train = sorted(set(train_classes) - set(val_classes))
            only_val = sorted(set(val_classes) - set(train_classes))
            parts = [f"only in {split}/: {_preview(names)}"
                     for split, names in (("train", only_train), ("val", only_val)) if names]
            raise UsageError(f"data folder {self.root}: train/ and val/ have different classes ({'; '.join(parts)})")
        self.classes = train_classes
        wnids = _imagenet_wnids()
        index = {w: i for i, w in enumerate(wnids)}
        if all(c in index for c in self.classes):
            self.label_scheme = "imagenet-1k synset index"
            self.num_labels = len(wnids)
            labels = [index[c] for c in self.classes]
        else:
            self.label_scheme = "sorted class folders"
            self.num_labels = len(self.classes)
            labels = list(range(len(self.classes)))
        transform = preprocessing.transform(size)
        try:
            self.train, self.val = (ImageFolder(str(self.root / split), transform=transform, loader=_load_image,
                                                allow_empty=True) for split in ("train", "val"))
        except OSError as exc:
            raise UsageError(f"data folder {self.root}: cannot be scanned ({exc.strerror or exc})") from None
        self._labels = labels  # folder index (sorted) -> model label
        for split, ds in (("train", self.train), ("val", self.val)):
            counts = [0] * len(self.classes)
            for target in ds.targets:
                counts[target] += 1
            empty = [c for c, n in zip(self.classes, counts) if n == 0]
            if empty:
                raise UsageError(f"data folder {self.root}: class folder {split}/{empty[0]} has no images "
                                 f"({_ext_hint()})" + (f" (also empty: {_preview(empty[1:])})" if empty[1:] else ""))

    def _classes(self, split: str) -> list[str]:
        folder = self.root / split
        if not folder.is_dir():
            raise UsageError(f"data folder {self.root}: missing {split}/ (expected {self.root}/{split}/<class>/<image>)")
        try:
            classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())  # as torchvision finds them
        except OSError as exc:
            raise UsageError(f"data folder {self.root}: cannot list {split}/ ({exc.strerror or exc})") from None
        if not classes:
            raise UsageError(f"data folder {self.root}: {split}/ has no class folders")
        return classes

    def describe(self) -> str:
        p = self.preprocessing
        return (f"image folder {self.root} ({len(self.classes)} classes, {len(self.train)} train / {len(self.val)} "
                f"val images; {p.name} preprocessing: resize {p.resize_size(self.size)} bicubic, crop {self.size})")

    def to_dict(self) -> dict[str, object]:
        return {"mode": "imagefolder", "root": str(self.root), "classes": len(self.classes),
                "train_images": len(self.train), "val_images": len(self.val), "labels": self.label_scheme,
                "preprocessing": {**self.preprocessing.to_dict(), "resize": self.preprocessing.resize_size(self.size),
                                  "crop": self.size}, "seed": self.seed}

    def _images(self, dataset: "torch.utils.data.Dataset", indices: list[int]) -> "torch.Tensor":
        import torch

        return torch.stack([dataset[i][0] for i in indices])

    def calibration(self, batch_size: int, n_batches: int, holdout_batches: int = 0) -> CalibrationSplit:
        """Seeded draw without replacement from train/: calibration images first, then the hold-out."""
        import torch

        _check_counts(batch_size, n_batches, "calibration")
        _check_counts(batch_size, holdout_batches, "hold-out")
        n_calib, n_hold = batch_size * n_batches, batch_size * holdout_batches
        if n_calib + n_hold > len(self.train):
            need = f"{n_calib} for calibration ({n_batches} x {batch_size})"
            if n_hold:
                need += f" and {n_hold} for the hold-out ({holdout_batches} x {batch_size})"
            raise UsageError(f"data folder {self.root}: train/ has {len(self.train)} images, {need} are needed")
        gen = torch.Generator().manual_seed(_stream_seed(self.seed, _CALIB))
        order = torch.randperm(len(self.train), generator=gen).tolist()

        def batches(start: int, n: int) -> Batches[torch.Tensor]:
            def make(i: int) -> torch.Tensor:
                lo = start + i * batch_size
                return self._images(self.train, order[lo:lo + batch_size])

            return Batches(n, make, n * batch_size)

        return CalibrationSplit(batches(0, n_batches), batches(n_calib, holdout_batches))

    def evaluation(self, batch_size: int, n_batches: int | None = None) -> Batches[LabelledBatch]:
        """val/ in a seeded shuffled order, so ``n_batches`` < all gives a uniform sample, not the first classes."""
        import torch

        _check_counts(batch_size, n_batches, "evaluation")
        gen = torch.Generator().manual_seed(_stream_seed(self.seed, _EVAL))
        order = torch.randperm(len(self.val), generator=gen).tolist()
        total = math.ceil(len(order) / batch_size)
        n = total if n_batches is None else min(n_batches, total)
        targets = self.val.targets

        def make(i: int) -> LabelledBatch:
            idx = order[i * batch_size:(i + 1) * batch_size]
            labels = torch.tensor([self._labels[targets[j]] for j in idx], dtype=torch.long)
            return self._images(self.val, idx), labels

        return Batches(n, make, min(len(order), n * batch_size))


def _preview(names: Sequence[str], limit: int = 3) -> str:
    more = f", ... (+{len(names) - limit})" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _ext_hint() -> str:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return "looked for " + " ".join(IMG_EXTENSIONS)
