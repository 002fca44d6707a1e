"""The quantize stage's artifact: the quantized ONNX model + quant.json (every step tried)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .config import Calibrator, QuantConfig, Scheme

SCHEMA = "edgeopt.quant/1"


def filename_for(config: QuantConfig) -> str:
    if config.scheme is Scheme.kmeans:
        return f"model.kmeans{config.bits}.onnx"
    return {8: "model.int8.onnx", 16: "model.int16.onnx", 4: "model.int4w.onnx"}[config.bits]


@dataclass
class QuantizedModel:
    path: Path
    accuracy_float: float  # test split, the float ONNX model this stage started from
    accuracy_quantized: float  # test split
    config: QuantConfig = field(default_factory=QuantConfig)
    steps: list[dict] = field(default_factory=list)
    quant_path: str = "ptq"  # "ptq" | "ptq+fallback" | "qat" | "kmeans"
    calibrator: Calibrator = Calibrator.minmax  # the one the chosen step used
    float_layers: list[str] = field(default_factory=list)  # kept in float by the fallback
    within_budget: bool = True
    validation: dict = field(default_factory=dict)
    measured_on: str | None = None  # the test split the accuracies are measured on
    sparsity: dict | None = None  # the pruning stage's, carried to the bundle's manifest (compile)

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "quantization": {
                "path": self.quant_path,
                "bits": self.config.bits,
                "scheme": self.config.scheme.value,
                "format": "QDQ" if self.config.scheme is Scheme.uniform else "float (shared values)",
                "calibrator": self.calibrator.value,
                "float_layers": self.float_layers,
                "file": self.path.name,
            },
            "accuracy": {
                "float": self.accuracy_float,
                "quantized": self.accuracy_quantized,
                "drop": None if self.accuracy_quantized is None else self.accuracy_float - self.accuracy_quantized,
                "measured_on": self.measured_on,
            },
            "within_budget": self.within_budget,
            "validation": self.validation,
            "steps": self.steps,
            "config": self.config.to_json(),
            **({"sparsity": self.sparsity} if self.sparsity else {}),
        }

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "quant.json").write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: Path) -> "QuantizedModel":
        meta = json.loads((directory / "quant.json").read_text())
        cfg = dict(meta["config"])
        cfg["scheme"], cfg["calibrator"] = Scheme(cfg["scheme"]), Calibrator(cfg["calibrator"])
        q = meta["quantization"]
        return cls(
            directory / q["file"],
            meta["accuracy"]["float"],
            meta["accuracy"]["quantized"],
            QuantConfig(**cfg),
            meta["steps"],
            q["path"],
            Calibrator(q["calibrator"]),
            q["float_layers"],
            meta["within_budget"],
            meta.get("validation", {}),
            meta["accuracy"].get("measured_on"),
            meta.get("sparsity"),
        )
