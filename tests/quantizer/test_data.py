"""Data sources: preprocessing per family, the ImageNet-style folder (shapes, labels, splits, bad folders), synthetic."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from quantizer.errors import UsageError
from quantizer.data import PREPROCESSING, ImageFolderData, SyntheticData, preprocessing_for

SIZE = 32


def make_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 3) -> Path:
    """root/{train,val}/<class>/ with ``per_class`` small images each, alternating PNG and JPEG, distinct colours."""
    for split in ("train", "val"):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                colour = (40 * c + 10 * i, 200 - 30 * i, 90 + 50 * c)
                img = Image.new("RGB", (48 + 8 * i, 40), colour)
                ext = "png" if i % 2 == 0 else "JPEG"
                img.save(folder / f"{split}_{name}_{i}.{ext}")
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "imagenet")


def deit(root: Path, seed: int = 0) -> ImageFolderData:
    return ImageFolderData(root, PREPROCESSING["deit"], SIZE, seed=seed)


# ---- preprocessing ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family, size, resize", [
    ("deit", 224, 256), ("vit", 224, 248), ("swin", 224, 248),
    ("efficientvit", 224, 236), ("efficientvit", 256, 270), ("efficientvit", 288, 304),
])
def test_resize_sizes_match_the_original_tools(family: str, size: int, resize: int) -> None:
    assert PREPROCESSING[family].resize_size(size) == resize


def test_preprocessing_is_chosen_by_model_name() -> None:
    assert preprocessing_for("deit_small").name == "deit"
    assert preprocessing_for("vit_base").name == "vit" and preprocessing_for("vit_base").mean == (0.5, 0.5, 0.5)
    assert preprocessing_for("swin_tiny").name == "swin" and preprocessing_for("swin_tiny").crop_pct == 0.9
    assert preprocessing_for("efficientvit_b1").name == "efficientvit"


def test_transform_normalizes_with_the_family_statistics() -> None:
    img = Image.new("RGB", (300, 260), (128, 128, 128))
    x_vit = PREPROCESSING["vit"].transform(224)(img)
    x_deit = PREPROCESSING["deit"].transform(224)(img)
    assert x_vit.shape == x_deit.shape == (3, 224, 224)
    assert torch.allclose(x_vit, torch.full_like(x_vit, (128 / 255 - 0.5) / 0.5), atol=1e-5)
    assert torch.allclose(x_deit[0], torch.full_like(x_deit[0], (128 / 255 - 0.485) / 0.229), atol=1e-5)


# ---- image folder -------------------------------------------------------------------------------------------------


def test_calibration_batches_have_model_shape_and_are_deterministic(folder: Path) -> None:
    data = deit(folder)
    split = data.calibration(batch_size=2, n_batches=2, holdout_batches=1)
    assert len(split.calib) == 2 and len(split.holdout) == 1 and split.calib.images == 4
    assert all(b.shape == (2, 3, SIZE, SIZE) for b in split.calib)
    again = deit(folder).calibration(2, 2, 1)
    assert all(torch.equal(a, b) for a, b in zip(split.calib, again.calib))
    assert torch.equal(split.calib[1], split.calib[-1])


def test_holdout_is_disjoint_from_calibration(folder: Path) -> None:
    split = deit(folder).calibration(batch_size=2, n_batches=2, holdout_batches=1)
    rows = [img.flatten() for b in [*split.calib, *split.holdout] for img in b]
    assert len(rows) == 6  # every train image exactly once
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            assert not torch.equal(rows[i], rows[j])


def test_seed_changes_the_calibration_draw(folder: Path) -> None:
    a = torch.cat(list(deit(folder, seed=0).calibration(3, 2).calib))
    b = torch.cat(list(deit(folder, seed=1).calibration(3, 2).calib))
    assert a.shape == b.shape and not torch.equal(a, b)


def test_calibration_larger_than_train_is_a_usage_error(folder: Path) -> None:
    with pytest.raises(UsageError, match=r"train/ has 6 images.*8 for calibration"):
        deit(folder).calibration(batch_size=4, n_batches=2)


def test_evaluation_covers_val_with_labels_in_sorted_class_order(folder: Path) -> None:
    data = deit(folder)
    assert data.label_scheme == "sorted class folders" and data.num_labels == 2 and not data.synthetic
    batches = data.evaluation(batch_size=4)
    assert len(batches) == 2 and batches.images == 6
    (x0, y0), (x1, y1) = batches
    assert x0.shape == (4, 3, SIZE, SIZE) and x1.shape == (2, 3, SIZE, SIZE)
    labels = torch.cat([y0, y1])
    assert labels.dtype == torch.long and sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert len(data.evaluation(batch_size=4, n_batches=1)) == 1


def test_imagenet_synset_folders_get_their_imagenet_index(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "subset", classes=("n01484850", "n15075141"), per_class=1)
    data = deit(root)
    assert data.num_labels == 1000 and data.label_scheme.startswith("imagenet")
    labels = sorted(torch.cat([y for _, y in data.evaluation(batch_size=2)]).tolist())
    assert labels == [2, 999]


def _break(root: Path, problem: str) -> str:
    """Damage the folder; return a regex the error must match."""
    if problem == "missing val":
        shutil.rmtree(root / "val")
        return r"missing val/"
    if problem == "missing train":
        (root / "train").rename(root / "training")
        return r"missing train/"
    if problem == "empty class":
        for f in (root / "val" / "dog").iterdir():
            f.unlink()
        return r"class folder val/dog has no images"
    if problem == "different classes":
        (root / "val" / "dog").rename(root / "val" / "wolf")
        return r"different classes \(only in train/: dog; only in val/: wolf\)"
    if problem == "no classes":
        (root / "val").rename(root / "old_val")
        (root / "val").mkdir()
        return r"val/ has no class folders"
    raise AssertionError(problem)


@pytest.mark.parametrize("problem", ["missing val", "missing train", "empty class", "different classes",
                                     "no classes"])
def test_bad_folders_are_one_line_usage_errors(folder: Path, problem: str) -> None:
    expected = _break(folder, problem)
    with pytest.raises(UsageError, match=expected) as info:
        deit(folder)
    assert "\n" not in str(info.value) and str(folder) in str(info.value)


def test_missing_root_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such folder"):
        deit(tmp_path / "nowhere")


@pytest.mark.parametrize("content", [b"", b"this is not a jpeg at all", b"\xff\xd8\xff\xe0 truncated"])
def test_corrupt_image_names_the_file(folder: Path, content: bytes) -> None:
    bad = folder / "train" / "cat" / "broken.JPEG"
    bad.write_bytes(content)
    data = deit(folder)  # the layout is fine; the image is read lazily
    with pytest.raises(UsageError, match=r"broken\.JPEG: cannot be read") as info:
        list(data.calibration(batch_size=7, n_batches=1).calib)
    assert "\n" not in str(info.value)


# ---- synthetic ----------------------------------------------------------------------------------------------------


def test_synthetic_data_is_seeded_gaussian_without_labels() -> None:
    data = SyntheticData((3, SIZE, SIZE), seed=0)
    assert data.synthetic and data.num_labels is None and "synthetic" in data.describe()
    split = data.calibration(batch_size=4, n_batches=3, holdout_batches=2)
    assert len(split.calib) == 3 and len(split.holdout) == 2
    assert split.calib[0].shape == (4, 3, SIZE, SIZE)
    assert torch.equal(split.calib[2], SyntheticData((3, SIZE, SIZE), seed=0).calibration(4, 3).calib[2])
    assert not torch.equal(split.calib[0], split.calib[1])
    assert not torch.equal(split.calib[0], split.holdout[0])
    ev = data.evaluation(batch_size=4, n_batches=2)
    x, y = ev[0]
    assert y is None and not torch.equal(x, split.calib[0])
    big = torch.cat([*split.calib, *split.holdout])
    assert abs(float(big.mean())) < 0.05 and abs(float(big.std()) - 1) < 0.05
    assert not torch.equal(SyntheticData((3, SIZE, SIZE), seed=1).calibration(4, 1).calib[0], split.calib[0])


def test_synthetic_evaluation_needs_a_batch_count() -> None:
    with pytest.raises(UsageError):
        SyntheticData((3, SIZE, SIZE)).evaluation(batch_size=4)
