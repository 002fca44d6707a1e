"""Static int8 post-training quantization to a QDQ ONNX model; the `QuantizedModel` artifact."""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from .data import Dataset
from .errors import UsageError
from .onnx_run import predict
from .train import accuracy

SCHEMA = "edgeopt.quant/1"


class Calibrator(str, Enum):
    minmax = "minmax"
    percentile = "percentile"
    entropy = "entropy"


def _ort_method(calibrator: Calibrator):
    from onnxruntime.quantization import CalibrationMethod

    return {
        Calibrator.minmax: CalibrationMethod.MinMax,
        Calibrator.percentile: CalibrationMethod.Percentile,
        Calibrator.entropy: CalibrationMethod.Entropy,
    }[calibrator]


@dataclass(frozen=True)
class QuantConfig:
    bits: int = 8
    calibrator: Calibrator = Calibrator.minmax
    calibration_samples: int = 256
    budget: float = 0.01  # allowed top-1 drop below the float model, as a fraction
    seed: int = 0

    def validate(self) -> None:
        if self.bits != 8:
            raise UsageError(f"only 8-bit quantization is available so far, got --bits {self.bits}")
        if self.calibration_samples < 1:
            raise UsageError("calibration needs at least one sample")
        if not 0.0 <= self.budget < 1.0:
            raise UsageError(f"accuracy budget is a fraction (0.01 = 1 point), got {self.budget}")


@dataclass
class QuantizedModel:
    """An int8 QDQ ONNX model and what it cost."""

    path: Path
    accuracy_float: float
    accuracy_quantized: float
    config: QuantConfig = field(default_factory=QuantConfig)
    steps: list[dict] = field(default_factory=list)
    quant_path: str = "ptq"
    filename = "model.int8.onnx"

    @property
    def within_budget(self) -> bool:
        return self.accuracy_float - self.accuracy_quantized <= self.config.budget + 1e-12

    def to_json(self) -> dict:
        cfg = asdict(self.config)
        cfg["calibrator"] = self.config.calibrator.value
        return {
            "schema": SCHEMA,
            "quantization": {"path": self.quant_path, "bits": self.config.bits, "format": "QDQ"},
            "accuracy": {"float": self.accuracy_float, "quantized": self.accuracy_quantized},
            "within_budget": self.within_budget,
            "steps": self.steps,
            "config": cfg,
        }

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / self.filename
        if self.path.resolve() != target.resolve():
            shutil.copyfile(self.path, target)
            self.path = target
        (directory / "quant.json").write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: Path) -> "QuantizedModel":
        meta = json.loads((directory / "quant.json").read_text())
        cfg = dict(meta["config"])
        cfg["calibrator"] = Calibrator(cfg["calibrator"])
        return cls(
            directory / cls.filename,
            meta["accuracy"]["float"],
            meta["accuracy"]["quantized"],
            QuantConfig(**cfg),
            meta["steps"],
            meta["quantization"]["path"],
        )


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over an array of batch-1 samples."""

    def __init__(self, name: str, samples: np.ndarray) -> None:
        self._it = iter(samples[i : i + 1] for i in range(len(samples)))
        self._name = name

    def get_next(self):
        x = next(self._it, None)
        return None if x is None else {self._name: x}


def _quantize_once(fp32: Path, out: Path, input_name: str, calib: np.ndarray, calibrator: Calibrator) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization logs on the root logger
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out),
            _Reader(input_name, calib),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=_ort_method(calibrator),
            # symmetric weights keep a pruned zero an exact int8 zero
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
    return out


def quantize_ptq(
    fp32: Path, data: Dataset, *, input_name: str, out_dir: Path, config: QuantConfig
) -> QuantizedModel:
    """Static int8 PTQ of an fp32 ONNX model, calibrated on training samples; both models scored
    with onnxruntime on the test split."""
    config.validate()
    out_dir.mkdir(parents=True, exist_ok=True)
    calib = data.calibration(config.calibration_samples, seed=config.seed)
    acc_float = accuracy(predict(fp32, data.x_test), data.y_test)
    out = _quantize_once(fp32, out_dir / QuantizedModel.filename, input_name, calib, config.calibrator)
    acc_q = accuracy(predict(out, data.x_test), data.y_test)
    steps = [{"name": f"ptq:{config.calibrator.value}", "accuracy": acc_q, "drop": acc_float - acc_q}]
    return QuantizedModel(out, acc_float, acc_q, config, steps, "ptq")
