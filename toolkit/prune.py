"""Magnitude pruning to a sparsity target, gradually, with fine-tuning; the `PrunedModel` artifact."""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from .data import Dataset
from .errors import UsageError
from .models import Model
from .sparsity import LayerSparsity, measure, prunable_layers
from .train import evaluate, train

MIN_TARGET = 0.70
SCHEMA = "edgeopt.prune/1"


@dataclass(frozen=True)
class PruneConfig:
    target: float = MIN_TARGET
    steps: int = 3  # gradual: Zhu & Gupta's cubic schedule over this many pruning steps
    epochs_per_step: int = 2
    final_epochs: int = 4
    lr: float = 5e-4
    seed: int = 0
    allow_below_70: bool = False

    def validate(self) -> None:
        if not 0.0 < self.target < 1.0:
            raise UsageError(f"sparsity target must be between 0 and 1 (a fraction), got {self.target}")
        if self.target < MIN_TARGET and not self.allow_below_70:
            raise UsageError(
                f"sparsity target {self.target} is below {MIN_TARGET}",
                hint="the DRP-AI-style flow prunes at least 70%; pass --allow-below-70 to go lower",
            )
        if self.steps < 1:
            raise UsageError(f"pruning steps must be >= 1, got {self.steps}")


def cubic_schedule(target: float, steps: int) -> list[float]:
    """Sparsity after each step: s_t = s_f * (1 - (1 - t/n)^3)  (Zhu & Gupta 2017)."""
    return [target * (1.0 - (1.0 - t / steps) ** 3) for t in range(1, steps + 1)]


@dataclass
class PrunedModel:
    """A pruned torch module (zeros made permanent) with its per-layer sparsity report."""

    model: Model
    layers: list[LayerSparsity]
    accuracy_before: float
    accuracy_after: float
    config: PruneConfig = field(default_factory=PruneConfig)
    filename = "pruned.pt"

    @property
    def params_before(self) -> int:
        return sum(l.params for l in self.layers)

    @property
    def params_after(self) -> int:
        return sum(l.params - l.zeros for l in self.layers)

    @property
    def global_sparsity(self) -> float:
        return 1.0 - self.params_after / self.params_before

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "method": "magnitude",
            "schedule": "gradual",
            "target": self.config.target,
            "sparsity": {"global": round(self.global_sparsity, 6)},
            "params": {"before": self.params_before, "after": self.params_after},
            "macs": {
                "before": sum(l.macs for l in self.layers),
                "after": sum(l.nonzero_macs for l in self.layers),
                # unstructured zeros do not shrink what a dense kernel executes
                "after_dense_kernel": sum(l.macs for l in self.layers),
            },
            "accuracy": {"before": self.accuracy_before, "after": self.accuracy_after},
            "layers": [l.to_json() for l in self.layers],
        }

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(directory, filename=self.filename)
        (directory / "prune.json").write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: Path) -> "PrunedModel":
        meta = json.loads((directory / "prune.json").read_text())
        model = Model.load(directory, filename=cls.filename)
        fields = LayerSparsity.__dataclass_fields__
        layers = [LayerSparsity(**{k: v for k, v in l.items() if k in fields}) for l in meta["layers"]]
        return cls(model, layers, meta["accuracy"]["before"], meta["accuracy"]["after"],
                   PruneConfig(target=meta["target"]))


def prune_magnitude(model: Model, data: Dataset, *, config: PruneConfig) -> PrunedModel:
    """Global L1 magnitude pruning of Linear/Conv weights along a cubic schedule, fine-tuning
    after each step with the masks held, then made permanent."""
    config.validate()
    module = copy.deepcopy(model.module)  # the dense model stays as it was
    accuracy_before = evaluate(module, data.x_test, data.y_test)
    params = [(layer, "weight") for _, layer in prunable_layers(module)]
    total = sum(layer.weight.numel() for layer, _ in params)

    for step, sparsity in enumerate(cubic_schedule(config.target, config.steps)):
        already = sum(int((getattr(l, "weight_mask", torch.ones(1)) == 0).sum()) for l, _ in params)
        # absolute counts, so rounding never leaves us below the target
        torch_prune.global_unstructured(
            params, pruning_method=torch_prune.L1Unstructured, amount=math.ceil(sparsity * total) - already
        )
        last = step == config.steps - 1
        train(
            module,
            data.x_train,
            data.y_train,
            epochs=config.final_epochs if last else config.epochs_per_step,
            seed=config.seed + step,
            lr=config.lr,
        )
    for layer, name in params:
        torch_prune.remove(layer, name)
    module.eval()
    accuracy_after = evaluate(module, data.x_test, data.y_test)
    pruned = Model(module, model.spec, accuracy_after)
    return PrunedModel(pruned, measure(module, model.spec.shape), accuracy_before, accuracy_after, config)
