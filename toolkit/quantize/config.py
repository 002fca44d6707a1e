"""Quantization options: validated before anything runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum

from edgeopt.errors import UsageError


class Calibrator(str, Enum):
    minmax = "minmax"
    percentile = "percentile"
    entropy = "entropy"


class Scheme(str, Enum):
    uniform = "uniform"  # integer QDQ: int8, int16, or 4-bit weights with 8-bit activations
    kmeans = "kmeans"  # non-uniform: k-means weight sharing (Deep Compression), 2**bits shared values per layer


BITS = (4, 8, 16)


@dataclass(frozen=True)
class QuantConfig:
    bits: int = 8
    scheme: Scheme = Scheme.uniform
    calibrator: Calibrator = Calibrator.minmax
    per_channel: bool = True  # weights: one scale per output channel (False: one per tensor)
    calibration_samples: int = 256
    percentile: float = 99.99
    budget: float = 0.01  # allowed top-1 drop below the float model (this stage's input), a fraction
    budget_relative: bool = False  # budget is a fraction of the float accuracy instead
    fallback_max_fraction: float = 0.5  # keep at most this share of the layers in float
    qat: bool = True  # allowed to fall back to quantization-aware training
    qat_epochs: int = 4
    qat_lr: float = 2e-4
    seed: int = 0

    def validate(self) -> None:
        if self.bits not in BITS:
            raise UsageError(f"--bits must be one of {', '.join(map(str, BITS))}, got {self.bits}")
        if self.scheme is Scheme.kmeans and not 2 <= self.bits <= 8:
            raise UsageError("k-means weight sharing takes --bits 4 or 8 (index bits)")
        if self.calibration_samples < 1:
            raise UsageError("calibration needs at least one sample")
        if not 0.0 <= self.budget < 1.0:
            raise UsageError(f"accuracy budget is a fraction (0.01 = 1 point), got {self.budget}")
        if not 50.0 < self.percentile <= 100.0:
            raise UsageError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.qat_epochs < 1:
            raise UsageError("QAT needs at least one epoch")

    def budget_for(self, float_accuracy: float) -> float:
        return self.budget * float_accuracy if self.budget_relative else self.budget

    def to_json(self) -> dict:
        d = asdict(self)
        d["scheme"], d["calibrator"] = self.scheme.value, self.calibrator.value
        return d
