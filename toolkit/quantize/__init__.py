"""Quantization: PTQ first, an accuracy budget, per-layer fallback, QAT only when needed."""
from .artifact import QuantizedModel
from .config import Calibrator, QuantConfig, Scheme
from .controller import quantize

__all__ = ["Calibrator", "QuantConfig", "QuantizedModel", "Scheme", "quantize"]
