"""The onnxruntime engine of a plan (board/agent/plan.py): the bundle's own ONNX (model.onnx) or
the user's original model, on the board with the same protocol and thread count as the TVM build."""

from __future__ import annotations

import os

ONNX = "model.onnx"
ORIGINAL = "original.onnx"  # the user's original dense fp32 model (toolkit/original.py puts it there)


def ort_session(bundle, threads: int, onnx: str = ONNX):
    """(session, None), or (None, why there is none): the file is not in the bundle, or this
    board has no onnxruntime."""
    if onnx not in bundle.manifest.get("files", {}):
        return None, (
            f"bundle has no {onnx}, so there is nothing for onnxruntime to run "
            + ("(compile it without --no-onnx)" if onnx == ONNX else "(build it with `edgeopt run`)")
        )
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime is not installed on this board (edgeopt board setup --with-ort installs it)"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(os.path.join(bundle.dir, onnx), opts, providers=["CPUExecutionProvider"]), None
