"""The models the Arm int8 checks and benchmarks/arm_speed.py run: the built-in mlp, cnn and
ResNet-style models, and a MobileNetV2-style one (inverted residual blocks: 1x1 expand,
depthwise 3x3 -- strided in some blocks -- and 1x1 project, residual adds where the shape
allows), defined here because the toolkit's model zoo does not have one; and two small ones for
the convolution shapes the fused path runs as others (compile/int8/geometry.py): 1-D convolutions
(keyword-spotting style: features x time) and grouped 2-D ones. Each is exported to
ONNX and PTQ-quantized to QDQ (min-max, per channel) on fixed random calibration data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from edgeopt.toolkit.export import export_onnx
from edgeopt.toolkit.models import InputSpec, Model, build_model
from edgeopt.toolkit.quantize import ort_ptq
from edgeopt.toolkit.quantize.config import Calibrator
from torch import nn

SHAPES = {
    "mlp": (1, 1, 28, 28),
    "cnn": (1, 1, 28, 28),
    "resnet": (1, 3, 32, 32),
    "mobilenetv2": (1, 3, 32, 32),
    "conv1d": (1, 16, 48),
    "grouped": (1, 3, 16, 16),
}


class _Inverted(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4):
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU6(),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU6(),
            nn.Conv2d(mid, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


def mobilenetv2(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU6(),
        _Inverted(16, 16, 1),
        _Inverted(16, 24, 2),
        _Inverted(24, 24, 1),
        _Inverted(24, 32, 2),
        nn.Conv2d(32, 128, 1, bias=False),
        nn.BatchNorm2d(128),
        nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, num_classes),
    )


class _Conv1d(nn.Module):
    """Strided, padded, depthwise 1-D convs over time, a global mean, a classifier."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(16, 32, 5, 2, 2, bias=False),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.Conv1d(32, 32, 3, 1, 1, groups=32, bias=False),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.Conv1d(32, 32, 3, 2, 1, groups=4, bias=False),
            nn.BatchNorm1d(32),
            nn.ReLU(),
        )
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.fc(self.body(x).mean(dim=2))


def grouped(num_classes: int = 10) -> nn.Module:
    """Grouped 2-D convs (1 < groups < channels): 4 strided groups of 4 channels, 2 of 16."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 1, 1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, 2, 1, groups=4, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 1, groups=2, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )


BUILD = {"mobilenetv2": mobilenetv2, "conv1d": _Conv1d, "grouped": grouped}


def make(name: str, out: Path, *, seed: int = 0, module: nn.Module | None = None) -> dict:
    """fp32.onnx, int8.onnx (QDQ) and x.npy (8 inputs) in `out`; returns their paths."""
    shape = SHAPES[name]
    torch.manual_seed(seed)
    if module is None:
        module = BUILD[name]() if name in BUILD else build_model(name, num_classes=10, input_shape=shape)
    module.eval()
    if name in BUILD:  # BatchNorm statistics that are not the identity
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
    out.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(Model(module, InputSpec("input", shape)), out / "fp32.onnx")
    pre = ort_ptq.preprocess(fp32, out / "pre.onnx")
    rng = np.random.default_rng(seed)
    calib = rng.random((32, *shape[1:]), dtype=np.float32)
    int8 = ort_ptq.quantize(
        pre, out / "int8.onnx", input_name="input", calib=calib, calibrator=Calibrator.minmax, bits=8, per_channel=True
    )
    x = rng.random((8, *shape), dtype=np.float32)
    np.save(out / "x.npy", x)
    return {"fp32": fp32, "int8": int8, "x": x}
