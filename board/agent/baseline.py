"""The optional onnxruntime baseline: the bundle's own ONNX (model.onnx), run on the board with
the same protocol and the same thread count, side by side with the TVM build."""
from __future__ import annotations

import os
import time

import numpy as np

from .bundle import AgentFailure
from .measure import Engine, parity, percentiles, run_protocol

ONNX = "model.onnx"
ORIGINAL = "original.onnx"  # the user's original dense fp32 model (toolkit/original.py puts it there)


def ort_session(bundle, threads: int, onnx: str = ONNX):
    """(session, None), or (None, why there is none): the file is not in the bundle, or this
    board has no onnxruntime."""
    if onnx not in bundle.manifest.get("files", {}):
        return None, (f"bundle has no {onnx}, so there is nothing for onnxruntime to run "
                      + ("(compile it without --no-onnx)" if onnx == ONNX else "(build it with `edgeopt run`)"))
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime is not installed on this board (edgeopt board setup --with-ort installs it)"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(os.path.join(bundle.dir, onnx), opts, providers=["CPUExecutionProvider"]), None


def ort_bench(bundle, *, threads: int, warmup: int, repeat: int, min_repeat_ms: float, number: int,
              x: np.ndarray, reference: np.ndarray | None, keep_samples: bool, onnx: str = ONNX) -> dict:
    """onnxruntime through the same protocol as the bundle (measure.run_protocol), after it."""
    t0 = time.perf_counter()
    sess, why = ort_session(bundle, threads, onnx)
    if sess is None:
        raise AgentFailure("baseline_unavailable", why)
    load_ms = (time.perf_counter() - t0) * 1e3
    import onnxruntime as ort

    name = sess.get_inputs()[0].name
    shape = bundle.input["shape"]
    x1 = np.ascontiguousarray(x[:1], dtype=np.float32).reshape(shape)
    engine = Engine(onnx, "onnxruntime", lambda: sess.run(None, {name: x1}), load_ms)
    run_protocol([engine], warmup=warmup, rounds=repeat, number=number, min_round_ms=min_repeat_ms)
    result = {
        "engine": "onnxruntime",
        "version": ort.__version__,
        "threads": threads,
        "latency_ms": percentiles(engine.samples),
        "load_ms": load_ms,
        "first_inference_ms": engine.first_ms,
        "calls_per_repeat": engine.per_round,
    }
    if reference is not None and onnx == ONNX:  # the original model's outputs are not the bundle's
        outs = np.concatenate([sess.run(None, {name: x[i:i + 1].reshape(shape)})[0] for i in range(len(x))])
        result["parity"] = parity(outs, reference)
    if keep_samples:
        result["samples_ms"] = engine.samples
    return result
