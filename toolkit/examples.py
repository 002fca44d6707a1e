"""Model families a user brings, built in code (nothing downloaded), and synthetic-but-learnable
data for each: the tests and the benchmarks feed them through the flow as a user's own models.

    mobilenet  MobileNetV2-style: depthwise convs, BatchNorm, ReLU6, inverted residual adds (3x16x16)
    kws        1-D convolutions over 40 MFCC-like features x 98 frames (keyword-spotting style)
    resnet     ResNet-style: BatchNorm, residual adds, a strided stage (3x16x16)
    mlp        a tabular MLP over 20 features

`make_data(family)` returns a dict of arrays (x, y, x_val, y_val, x_test, y_test) to save with
np.savez: each class is a fixed random prototype, each sample a noisy, scaled copy of one, so a
model learns it well but not perfectly (accuracy means something)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from .models import resnet


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand -> 3x3 depthwise -> 1x1 project; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.body = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.use_res else self.body(x)


class MobileNetV2Style(nn.Module):
    def __init__(self, num_classes: int = 4, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU6(),
            InvertedResidual(width, width, 1),
            InvertedResidual(width, 2 * width, 2),
            InvertedResidual(2 * width, 2 * width, 1),
            nn.Conv2d(2 * width, 4 * width, 1, bias=False),
            nn.BatchNorm2d(4 * width),
            nn.ReLU6(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class KeywordSpotter1D(nn.Module):
    """1-D convolutions over time with the features as channels: input N x 40 x 98."""

    def __init__(self, num_classes: int = 4, features: int = 40, width: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(features, width, 5, stride=2, padding=2, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Conv1d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x).mean(dim=2))


def tabular_mlp(num_classes: int = 4, features: int = 20, hidden: int = 128) -> nn.Module:
    return nn.Sequential(
        nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
    )


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[[], nn.Module]
    sample_shape: tuple[int, ...]  # one sample, no batch axis
    num_classes: int = 4
    noise: float = 1.0


FAMILIES: dict[str, Family] = {
    "mobilenet": Family("mobilenet", lambda: MobileNetV2Style(width=8), (3, 16, 16), noise=1.6),
    "kws": Family("kws", lambda: KeywordSpotter1D(), (40, 98), noise=3.0),
    "resnet": Family("resnet", lambda: resnet(num_classes=4, in_channels=3, width=8), (3, 16, 16), noise=1.6),
    "mlp": Family("mlp", lambda: tabular_mlp(), (20,), noise=1.2),
}


def build(family: str) -> nn.Module:
    """An untrained model of `family` (seeded: the same weights every time)."""
    torch.manual_seed(0)
    return FAMILIES[family].build()


def make_data(
    family: str, *, train: int = 640, val: int = 160, test: int = 400, seed: int = 0
) -> dict[str, np.ndarray]:
    """Noisy copies of one smooth random prototype per class; three disjoint splits."""
    fam = FAMILIES[family]
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(fam.num_classes, *fam.sample_shape)).astype(np.float32)
    if len(fam.sample_shape) > 1:  # smooth along the last axis, so convolutions have structure to find
        k = np.ones(5, dtype=np.float32) / 5
        protos = np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), -1, protos)
        protos /= protos.std()

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, fam.num_classes, size=n)
        gain = rng.uniform(0.6, 1.4, size=(n,) + (1,) * len(fam.sample_shape))
        x = gain * protos[y] + fam.noise * rng.normal(size=(n, *fam.sample_shape))
        return x.astype(np.float32), y.astype(np.int64)

    (x, y), (xv, yv), (xt, yt) = draw(train), draw(val), draw(test)
    return {"x": x, "y": y, "x_val": xv, "y_val": yv, "x_test": xt, "y_test": yt}


def trained(family: str, data: dict[str, np.ndarray] | None = None, *, epochs: int = 8, seed: int = 0) -> nn.Module:
    """`build(family)` trained on `data` (make_data's by default): a user's model, ready to bring."""
    from .train import seed_everything, train

    data = data if data is not None else make_data(family)
    seed_everything(seed)
    module = build(family)
    return train(module, data["x"], data["y"], epochs=epochs, seed=seed, lr=3e-3)
