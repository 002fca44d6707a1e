"""The prune stage's artifact: pruned.pt (a whole module, so new shapes load back without the
original class being patched) + spec.json + prune.json."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..models import Model
from ..sparsity import LayerSparsity, totals
from .config import PruneConfig

SCHEMA = "edgeopt.prune/1"
FILENAME = "pruned.pt"


@dataclass
class PrunedModel:
    model: Model
    layers: list[LayerSparsity]
    accuracy_before: float
    accuracy_after: float
    config: PruneConfig = field(default_factory=PruneConfig)
    steps: list[dict] = field(default_factory=list)
    sensitivity: dict | None = None
    allocation: dict[str, float] | None = None
    layer_latency_share: dict[str, float] | None = None
    transfer: dict | None = None  # the transfer-learning fine-tune before pruning, if there was one
    meta: dict | None = None  # what load() read, for a faithful re-save

    @property
    def params_before(self) -> int:
        return sum(layer.params_before for layer in self.layers)

    @property
    def params_after(self) -> int:
        return sum(layer.params_after for layer in self.layers)

    @property
    def global_sparsity(self) -> float:
        return 1.0 - self.params_after / self.params_before

    def to_json(self) -> dict:
        if self.meta is not None:
            return self.meta
        return {
            "schema": SCHEMA,
            **totals(self.layers),
            "accuracy": {
                "before": self.accuracy_before,
                "after": self.accuracy_after,
                "drop": self.accuracy_before - self.accuracy_after,
            },
            "config": self.config.to_json(),
            "sparsity_definition": "zero or removed weights of Linear/Conv layers over the original count "
            "(biases and norms excluded)",
            "layers": [layer.to_json() for layer in self.layers],
            "steps": self.steps,
            "allocation": self.allocation,
            "sensitivity": self.sensitivity,
            "layer_latency_share": self.layer_latency_share,
            **({"transfer": self.transfer} if self.transfer else {}),
        }

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(directory, filename=FILENAME)
        (directory / "prune.json").write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: Path) -> "PrunedModel":
        meta = json.loads((directory / "prune.json").read_text())
        model = Model.load(directory, filename=FILENAME)
        layers = [LayerSparsity.from_json(layer) for layer in meta["layers"]]
        return cls(
            model,
            layers,
            meta["accuracy"]["before"],
            meta["accuracy"]["after"],
            steps=meta.get("steps", []),
            sensitivity=meta.get("sensitivity"),
            allocation=meta.get("allocation"),
            transfer=meta.get("transfer"),
            meta=meta,
        )
