"""Static post-training quantization to QDQ ONNX with onnxruntime.quantization: per-channel
symmetric weights (a pruned zero stays an exact zero), per-tensor asymmetric activations."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .config import Calibrator

QUANTIZABLE = ("Gemm", "MatMul", "Conv")


def _types(bits: int):
    from onnxruntime.quantization import QuantType

    # (weights, activations); 4-bit weights keep 8-bit activations
    return {
        8: (QuantType.QInt8, QuantType.QUInt8),
        16: (QuantType.QInt16, QuantType.QInt16),
        4: (QuantType.QInt4, QuantType.QUInt8),
    }[bits]


def _method(calibrator: Calibrator):
    from onnxruntime.quantization import CalibrationMethod

    return {
        Calibrator.minmax: CalibrationMethod.MinMax,
        Calibrator.percentile: CalibrationMethod.Percentile,
        Calibrator.entropy: CalibrationMethod.Entropy,
    }[calibrator]


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over batch-1 samples."""

    def __init__(self, name: str, samples: np.ndarray) -> None:
        self._it = iter(samples[i : i + 1] for i in range(len(samples)))
        self._name = name

    def get_next(self):
        x = next(self._it, None)
        return None if x is None else {self._name: x}


def preprocess(fp32: Path, out: Path) -> Path:
    """onnxruntime's recommended pre-processing (shape inference, graph clean-up), done once so
    node names stay the same across every quantization attempt."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32), str(out), skip_symbolic_shape=True)
    return out


def quantizable_nodes(path: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in QUANTIZABLE]


def quantize(
    pre: Path,
    out: Path,
    *,
    input_name: str,
    calib: np.ndarray,
    calibrator: Calibrator,
    bits: int,
    percentile: float = 99.99,
    exclude: tuple[str, ...] = (),
    per_channel: bool = True,
) -> Path:
    """QDQ-quantize `pre` into `out`; nodes in `exclude` stay in float."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization logs on the root logger
    weight_type, activation_type = _types(bits)
    quantize_static(
        str(pre),
        str(out),
        _Reader(input_name, calib),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        weight_type=weight_type,
        activation_type=activation_type,
        calibrate_method=_method(calibrator),
        nodes_to_exclude=list(exclude),
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False, "CalibPercentile": percentile},
    )
    return out
