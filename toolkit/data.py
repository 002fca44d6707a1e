"""Labelled image data sets: the built-in digits, or a user's .npz (arrays `x`, `y`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeopt.errors import InputError

BUILTIN_DATASETS = ("digits",)
IMAGE_SIZE = 28
TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.15  # of the training part: held out from all training, for decisions
SPLIT_SEED = 0


@dataclass(frozen=True)
class Dataset:
    """Train/validation/test splits, images as float32 NCHW in [0, 1], labels as int64.

    Models train on `train`; stages decide (sensitivity, calibrator, fallback) on `val`, which no
    training ever sees; `test` is only reported."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max(), self.y_test.max())) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample with a batch dimension of 1."""
        return (1, *self.x_train.shape[1:])

    def calibration(self, n: int, *, seed: int = 0) -> np.ndarray:
        """`n` training samples, drawn without replacement with a fixed seed."""
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(self.x_train), size=min(n, len(self.x_train)), replace=False)
        return self.x_train[np.sort(idx)]


def _split(name: str, x: np.ndarray, y: np.ndarray) -> Dataset:
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    x_tr, x_val, y_tr, y_val = train_test_split(
        x_tr, y_tr, test_size=VALIDATION_FRACTION, random_state=SPLIT_SEED, stratify=y_tr
    )
    return Dataset(name, x_tr, y_tr, x_val, y_val, x_te, y_te)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(images[:, None].astype(np.float32))
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return out.clamp_(0.0, 1.0).numpy()


def load_digits() -> Dataset:
    """scikit-learn's bundled 1,797 8x8 digits, upsampled to 28x28 and scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = bunch.images.astype(np.float32) / 16.0
    return _split("digits", _resize(images, IMAGE_SIZE), bunch.target.astype(np.int64))


def load_npz(path: Path) -> Dataset:
    """A user's data set: an .npz with `x` (N, ...) float images and `y` (N,) integer labels."""
    if not path.is_file():
        raise InputError(f"data file not found: {path}", hint="pass an .npz with arrays x and y, or 'digits'")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f or "y" not in f:
                raise InputError(
                    f"{path} has arrays {sorted(f.files)}; expected 'x' (images) and 'y' (labels)"
                )
            x, y = f["x"], f["y"]
    except InputError:
        raise
    except Exception as exc:  # zip/npy parse errors come in many types
        raise InputError(f"cannot read {path} as .npz: {exc}") from exc
    if len(x) != len(y) or len(x) < 10:
        raise InputError(f"{path}: need at least 10 samples and len(x) == len(y), got {len(x)} and {len(y)}")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{path}: labels 'y' must be integers, got {y.dtype}")
    x = x.astype(np.float32)
    if x.ndim == 3:  # (N, H, W) grey images: add the channel axis
        x = x[:, None]
    return _split(path.stem, x, y.astype(np.int64))


def load_dataset(spec: str) -> Dataset:
    """`digits` or a path to an .npz file."""
    if spec == "digits":
        return load_digits()
    if spec.endswith(".npz") or Path(spec).exists():
        return load_npz(Path(spec))
    raise InputError(
        f"unknown data set {spec!r}", hint=f"use one of {', '.join(BUILTIN_DATASETS)} or a path to an .npz file"
    )
