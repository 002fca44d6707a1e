"""Built-in models (a registry keyed by name) and the `Model` stage artifact."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from edgeopt.errors import InputError

SPEC_SCHEMA = "edgeopt.model/1"


@dataclass(frozen=True)
class InputSpec:
    """What the model eats: one named float input of a fixed shape, batch 1."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    layout: str = "NCHW"
    scale: float = 1.0  # pixel values are already in [0, 1]
    output_name: str = "logits"


def mlp(num_classes: int = 10, in_features: int = 28 * 28) -> nn.Module:
    """The user's MLP: flatten 784 -> 128 ReLU -> 10."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, 128), nn.ReLU(), nn.Linear(128, num_classes))


def cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """LeNet-5 for 28x28 inputs: conv 6 and 16 filters (5x5), fully connected 120 and 84."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


def resnet(num_classes: int = 10, in_channels: int = 3, width: int = 16) -> nn.Module:
    """A small ResNet-style CNN (stem, two residual stages with a strided transition, global
    pooling): any image size, e.g. 3x32x32 in the compile benchmark."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        _Residual(width),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        _Residual(2 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


def _mlp_for(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    in_features = 1
    for d in input_shape[1:]:
        in_features *= d
    return mlp(num_classes, in_features)


def _cnn_for(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    if tuple(input_shape[2:]) != (28, 28):
        raise InputError(f"the built-in cnn (LeNet-5) takes 28x28 images, the data has {input_shape[1:]}")
    return cnn(num_classes, input_shape[1])


# name -> factory(num_classes, input_shape)
BUILTIN_MODELS: dict[str, Callable[[int, tuple[int, ...]], nn.Module]] = {
    "mlp": _mlp_for,
    "cnn": _cnn_for,
    "resnet": lambda num_classes, input_shape: resnet(num_classes, input_shape[1]),
}


def check_model_name(name: str) -> None:
    if name not in BUILTIN_MODELS:
        raise InputError(f"unknown model {name!r}", hint=f"built-in models: {', '.join(sorted(BUILTIN_MODELS))}")


def build_model(name: str, *, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    check_model_name(name)
    return BUILTIN_MODELS[name](num_classes, input_shape)


def load_module(spec: str, *, factory: str | None = None) -> nn.Module:
    """A user's model file as a torch module (any format loader.py reads)."""
    from .loader import load

    return load(Path(spec), factory=factory).module


@dataclass
class Model:
    """A torch module with its input spec; saves as model.pt + spec.json."""

    module: nn.Module
    spec: InputSpec
    accuracy: float | None = None
    source: dict | None = None  # a user's model: its file, format, and the python modules it needs

    def save(self, directory: Path, *, filename: str = "model.pt") -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.module, directory / filename)
        from .loader import class_modules

        # what loading this folder again takes: the python modules the pickled classes live in
        needs = class_modules(self.module)
        meta = {
            "schema": SPEC_SCHEMA,
            "input": asdict(self.spec),
            "accuracy": self.accuracy,
            "source": self.source,
            "load_requires": {
                "python_modules": needs,
                "note": (
                    "loads with edgeopt alone"
                    if not needs
                    else f"the python module(s) {', '.join(needs)} must be importable (PYTHONPATH)"
                ),
            },
        }
        (directory / "spec.json").write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: Path, *, filename: str = "model.pt") -> "Model":
        path = directory / filename
        if not path.is_file():
            raise InputError(
                f"stage directory {directory} has no {filename}", hint="write it again with the stage that makes it"
            )
        try:
            meta = json.loads((directory / "spec.json").read_text())
            spec = meta["input"]
            spec["shape"] = tuple(spec["shape"])
            spec = InputSpec(**spec)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{directory / 'spec.json'} is missing or damaged: {exc}",
                hint="write the folder again with the stage that makes it",
            ) from None
        # Whole-module pickles (not state dicts) so pruned shapes load back without the class.
        try:
            module = torch.load(path, weights_only=False, map_location="cpu")
        except (ModuleNotFoundError, AttributeError, ImportError) as exc:
            needs = (meta.get("load_requires") or {}).get("python_modules") or []
            raise InputError(
                f"{path} needs python module(s) {', '.join(needs) or '?'} to load: {exc}",
                hint="put the module(s) that define the model's classes on PYTHONPATH "
                "(the folder's spec.json says which)",
            ) from None
        except Exception as exc:
            raise InputError(
                f"cannot load {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                hint="write the folder again with the stage that makes it",
            ) from None
        return cls(module.eval(), spec, meta.get("accuracy"), meta.get("source"))
