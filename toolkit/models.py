"""Built-in models (a registry keyed by name) and the `Model` stage artifact."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import InputError

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
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_features, 128), nn.ReLU(), nn.Linear(128, num_classes)
    )


# name -> factory(num_classes, in_features)
BUILTIN_MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp}


def check_model_name(name: str) -> None:
    if name not in BUILTIN_MODELS:
        raise InputError(f"unknown model {name!r}", hint=f"built-in models: {', '.join(sorted(BUILTIN_MODELS))}")


def build_model(name: str, *, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    check_model_name(name)
    factory = BUILTIN_MODELS[name]
    in_features = 1
    for d in input_shape[1:]:
        in_features *= d
    return factory(num_classes=num_classes, in_features=in_features)


@dataclass
class Model:
    """A torch module with its input spec; saves as model.pt + spec.json."""

    module: nn.Module
    spec: InputSpec
    accuracy: float | None = None

    def save(self, directory: Path, *, filename: str = "model.pt") -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.module, directory / filename)
        meta = {"schema": SPEC_SCHEMA, "input": asdict(self.spec), "accuracy": self.accuracy}
        (directory / "spec.json").write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: Path, *, filename: str = "model.pt") -> "Model":
        path = directory / filename
        if not path.is_file():
            raise InputError(f"no {filename} in {directory}")
        meta = json.loads((directory / "spec.json").read_text())
        spec = meta["input"]
        spec["shape"] = tuple(spec["shape"])
        # Whole-module pickles (not state dicts) so pruned shapes load back without the class.
        module = torch.load(path, weights_only=False, map_location="cpu")
        return cls(module.eval(), InputSpec(**spec), meta.get("accuracy"))
