"""Quantization: PTQ first, an accuracy budget, per-layer fallback, QAT only when needed."""

from .config import Calibrator, QuantConfig, Scheme

__all__ = ["Calibrator", "QuantConfig", "QuantizedModel", "Scheme", "quantize"]


def __getattr__(name: str):
    # the torch and onnxruntime parts load on first use: the CLI reads QuantConfig's defaults without them
    if name == "QuantizedModel":
        from .artifact import QuantizedModel

        return QuantizedModel
    if name == "quantize":
        from .controller import quantize

        return quantize
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
