"""The optional onnxruntime baseline: the bundle's own ONNX (model.onnx), run on the board with
the same protocol and the same thread count, side by side with the TVM build."""
from __future__ import annotations

import os
import time

import numpy as np

from .bundle import AgentFailure
from .measure import parity, percentiles, time_calls

ONNX = "model.onnx"
ORIGINAL = "original.onnx"  # the user's original dense fp32 model (toolkit/original.py puts it there)


def ort_bench(bundle, *, threads: int, warmup: int, repeat: int, min_repeat_ms: float, number: int,
              x: np.ndarray, reference: np.ndarray | None, keep_samples: bool, onnx: str = ONNX) -> dict:
    if onnx not in bundle.manifest.get("files", {}):
        raise AgentFailure("baseline_unavailable",
                           f"bundle has no {onnx}, so there is nothing for onnxruntime to run "
                           + ("(compile it without --no-onnx)" if onnx == ONNX else "(build it with `edgeopt run`)"))
    try:
        import onnxruntime as ort
    except ImportError:
        raise AgentFailure("baseline_unavailable",
                           "onnxruntime is not installed on this board (edgeopt board setup --with-ort installs it)") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    t0 = time.perf_counter()
    sess = ort.InferenceSession(os.path.join(bundle.dir, onnx), opts, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1e3
    name = sess.get_inputs()[0].name
    shape = bundle.input["shape"]
    x1 = np.ascontiguousarray(x[:1], dtype=np.float32).reshape(shape)
    timed = time_calls(lambda: sess.run(None, {name: x1}), warmup=warmup, repeat=repeat,
                       min_repeat_ms=min_repeat_ms, number=number)
    result = {
        "engine": "onnxruntime",
        "version": ort.__version__,
        "threads": threads,
        "latency_ms": percentiles(timed["samples"]),
        "load_ms": load_ms,
        "first_inference_ms": timed["first_ms"],
        "calls_per_repeat": timed["per_repeat"],
    }
    if reference is not None and onnx == ONNX:  # the original model's outputs are not the bundle's
        outs = np.concatenate([sess.run(None, {name: x[i:i + 1].reshape(shape)})[0] for i in range(len(x))])
        result["parity"] = parity(outs, reference)
    if keep_samples:
        result["samples_ms"] = timed["samples"]
    return result
