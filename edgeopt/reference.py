"""Running an ONNX model on the host with onnxruntime: the reference every other number is
checked against (compile/ for its parity check, toolkit/ for accuracy and the board's references).
A leaf: the standard library, numpy, onnxruntime and edgeopt.errors only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeopt.errors import InputError


def session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # The reference runs a QDQ model as written (dequantize -> fp32 op -> quantize), not through
    # onnxruntime's fused integer kernels: on x86 without AVX512-VNNI those sum uint8 x int8 pairs
    # in saturating int16 (vpmaddubsw) and miss the model's own numbers by up to several
    # quantization steps. "basic" still folds constants; the arithmetic is the model's.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise InputError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}") from exc


def predict(path: Path, x: np.ndarray, *, batch: int = 1) -> np.ndarray:
    """Outputs of the first output for `x`, run `batch` samples at a time (a model compiled for
    a fixed batch takes exactly that many; len(x) must be a multiple of it)."""
    sess = session(path)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)])
