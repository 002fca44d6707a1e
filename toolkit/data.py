"""Data sets: the built-in digits, or a user's .npz (samples of any shape, labels optional)."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    """Train/validation/test splits: samples as float32 in the shape the model takes (N x C x H x W,
    N x C x L, N x F), labels int64 (None: unlabelled, calibration only).

    Models train on `train`; stages decide (sensitivity, calibrator, fallback) on `val`, which no
    training ever sees; `test` is only reported."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_val: np.ndarray
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    splits: dict = field(default_factory=dict)  # split -> where its samples came from, in words

    @property
    def labelled(self) -> bool:
        return self.y_train is not None

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

    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y)
    x_tr, x_val, y_tr, y_val = train_test_split(
        x_tr, y_tr, test_size=VALIDATION_FRACTION, random_state=SPLIT_SEED, stratify=y_tr
    )
    return Dataset(
        name,
        x_tr,
        y_tr,
        x_val,
        y_val,
        x_te,
        y_te,
        splits={
            "train": f"{name}: the rest after the held-out splits",
            "val": f"{name}: {VALIDATION_FRACTION:.0%} of the training part held out (seed {SPLIT_SEED})",
            "test": f"{name}: {TEST_FRACTION:.0%} held out (stratified, seed {SPLIT_SEED}), never trained on",
        },
    )


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


DATA_HINT = "save with np.savez(PATH, x=samples, y=labels[, x_val=..., y_val=..., x_test=..., y_test=...])"


def _read_npz(path: Path, role: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"{role} file not found: {path}", hint=DATA_HINT)
    import zipfile

    if not zipfile.is_zipfile(path):
        raise InputError(f"{path} is not an .npz file", hint=DATA_HINT)
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise InputError(
                f"{path} holds pickled Python objects, which edgeopt never loads",
                hint="save plain numeric arrays: np.savez(PATH, x=x.astype('float32'), y=y.astype('int64'))",
            ) from None
        raise InputError(f"cannot read {path} as .npz: {str(exc).splitlines()[0]}", hint=DATA_HINT) from None
    except Exception as exc:  # zip/npy parse errors come in many kinds
        raise InputError(
            f"cannot read {path} as .npz: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            hint=DATA_HINT,
        ) from None


def _samples(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.dtype.kind not in "fiu":
        raise InputError(
            f"{path}: {key!r} has dtype {x.dtype}; samples must be numbers",
            hint="save them as float32: x.astype('float32')",
        )
    if x.ndim < 2:
        raise InputError(
            f"{path}: {key!r} has shape {x.shape}; samples are N x features (or N x C x L, N x C x H x W)",
            hint="one row per sample: x.reshape(len(x), -1) for features",
        )
    if len(x) == 0:
        raise InputError(f"{path}: {key!r} is empty", hint="give at least one sample per split")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise InputError(f"{path}: {key!r} holds NaN or infinite values", hint="clean or drop those samples first")
    return x


def _labels(path: Path, key: str, y: np.ndarray, n: int) -> np.ndarray:
    if y.dtype.kind not in "iu":
        raise InputError(
            f"{path}: labels {key!r} have dtype {y.dtype}; they must be integer class indices",
            hint="y.astype('int64'), classes numbered from 0",
        )
    if y.ndim != 1 or len(y) != n:
        raise InputError(
            f"{path}: labels {key!r} have shape {y.shape}; expected ({n},), one per sample",
            hint="one integer class index per sample",
        )
    if (y < 0).any():
        raise InputError(f"{path}: labels {key!r} hold negative values", hint="classes are numbered from 0")
    return y.astype(np.int64)


def _pair(path: Path, arrays: dict, xk: str, yk: str) -> tuple[np.ndarray, np.ndarray | None] | None:
    if xk not in arrays:
        if yk in arrays:
            raise InputError(f"{path} has {yk!r} but no {xk!r}", hint=DATA_HINT)
        return None
    x = _samples(path, xk, arrays[xk])
    y = _labels(path, yk, arrays[yk], len(x)) if yk in arrays else None
    return x, y


def _carve(x, y, fraction: float):
    """(rest, held_out), stratified where every class can give a sample to both."""
    from sklearn.model_selection import train_test_split

    try:
        x_a, x_b, y_a, y_b = train_test_split(x, y, test_size=fraction, random_state=SPLIT_SEED, stratify=y)
    except ValueError:
        x_a, x_b, y_a, y_b = train_test_split(x, y, test_size=fraction, random_state=SPLIT_SEED)
    return (x_a, y_a), (x_b, y_b)


def load_npz(path: Path, *, val: Path | None = None, test: Path | None = None) -> Dataset:
    """A user's data: an .npz with `x` (N samples of any shape, as the model takes them; never
    reshaped) and `y` (N integer labels), and optionally `x_val`/`y_val` and `x_test`/`y_test`, or
    separate --val-data / --test-data files with `x`, `y`. Without `y` anywhere the data is
    unlabelled: calibration only, no accuracy. Splits not given are carved out of x/y (seeded)."""
    arrays = _read_npz(path, "data")
    if "x" not in arrays:
        raise InputError(f"{path} has arrays {sorted(arrays)}; expected 'x' (samples) and 'y' (labels)", hint=DATA_HINT)
    train = _pair(path, arrays, "x", "y")
    given = {"val": _pair(path, arrays, "x_val", "y_val"), "test": _pair(path, arrays, "x_test", "y_test")}
    where = {"train": f"{path} x/y", "val": f"{path} x_val/y_val", "test": f"{path} x_test/y_test"}
    for split, extra in (("val", val), ("test", test)):
        if extra is not None:
            if given[split] is not None:
                raise InputError(
                    f"{path} already has x_{split}; --{split}-data {extra} would be a second {split} split",
                    hint="drop one of them",
                )
            given[split] = _pair(extra, _read_npz(extra, f"--{split}-data"), "x", "y")
            if given[split] is None:
                raise InputError(f"--{split}-data {extra} has no array 'x'", hint=DATA_HINT)
            where[split] = f"{extra} x/y"
    shapes = {k: v[0].shape[1:] for k, v in {"train": train, **given}.items() if v is not None}
    if len(set(shapes.values())) > 1:
        raise InputError(
            f"{path}: the splits' samples differ in shape: " + ", ".join(f"{k} {tuple(s)}" for k, s in shapes.items()),
            hint="every split's samples must have one shape",
        )
    labelled = [v[1] is not None for v in (train, *given.values()) if v is not None]
    if not any(labelled):  # calibration data for a model whose labels we do not have
        x = train[0]
        empty = x[:0]
        return Dataset(
            str(path),
            x,
            None,
            empty,
            None,
            empty,
            None,
            splits={"train": where["train"], "calibration": where["train"], "val": None, "test": None},
        )
    if not all(labelled):
        raise InputError(f"{path}: some splits have labels and some do not", hint="give y for every x, or for none")
    x, y = train
    if given["test"] is None:
        if len(x) < 10:
            raise InputError(
                f"{path}: need at least 10 labelled samples to hold out a test split, got {len(x)}",
                hint="give more samples, or x_test/y_test",
            )
        (x, y), given["test"] = _carve(x, y, TEST_FRACTION)
        where["test"] = f"{TEST_FRACTION:.0%} of {path} x/y held out (seed {SPLIT_SEED}), never trained on"
    if given["val"] is None:
        if len(x) < 10:
            raise InputError(
                f"{path}: need at least 10 labelled training samples to hold out a validation split",
                hint="give more samples, or x_val/y_val",
            )
        (x, y), given["val"] = _carve(x, y, VALIDATION_FRACTION)
        where["val"] = f"{VALIDATION_FRACTION:.0%} of the rest of {path} x/y held out (seed {SPLIT_SEED})"
    where["train"] = f"{path} x/y" + (
        " (what remains after the held-out splits)" if "held out" in where["val"] + where["test"] else ""
    )
    (xv, yv), (xt, yt) = given["val"], given["test"]
    return Dataset(str(path), x, y, xv, yv, xt, yt, splits=where)


def label_with(data: Dataset, top1, *, source: str) -> Dataset:
    """An unlabelled set labelled with a model's top-1 (`top1`: samples -> class indices), the
    validation and test splits carved from it as for labelled data. Every accuracy measured on it
    is agreement with that model (fidelity), and the splits say so."""
    x = data.x_train
    if len(x) < 20:
        raise InputError(
            f"{data.name}: need at least 20 unlabelled samples to hold out validation and test splits, got {len(x)}",
            hint="give more samples, or labels (y)",
        )
    y = np.asarray(top1(x), dtype=np.int64)
    (x, y), test = _carve(x, y, TEST_FRACTION)
    (x, y), val = _carve(x, y, VALIDATION_FRACTION)
    label = f"labels: {source}'s top-1 (the data has none), so accuracy here is agreement with it"
    where = {
        "train": f"{data.name} x, what remains after the held-out splits; {label}",
        "val": f"{VALIDATION_FRACTION:.0%} of the rest of {data.name} x held out (seed {SPLIT_SEED}); {label}",
        "test": f"{TEST_FRACTION:.0%} of {data.name} x held out (seed {SPLIT_SEED}), never trained on; {label}",
        "labels": source,
    }
    return Dataset(data.name, x, y, *val, *test, splits=where)


def load_dataset(spec: str, *, val: Path | None = None, test: Path | None = None) -> Dataset:
    """`digits` or a path to an .npz file (with optional separate validation / test files)."""
    if spec == "digits":
        if val is not None or test is not None:
            raise InputError("--val-data/--test-data go with your own --data file", hint="digits has its own splits")
        return load_digits()
    if spec.endswith(".npz") or Path(spec).exists():
        return load_npz(Path(spec), val=val, test=test)
    raise InputError(
        f"unknown data set {spec!r}", hint=f"use one of {', '.join(BUILTIN_DATASETS)} or a path to an .npz file"
    )
